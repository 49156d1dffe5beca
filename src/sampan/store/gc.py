"""Garbage collection: remove snapshots and blobs that nothing references any more.

References are rows: image layers, image configs and manifests, and the resources of live leases (operations in
flight in other processes). Collection runs inside the caller's write transaction; the snapshot directories it
drops are renamed into ``trash/`` within that transaction (a cheap rename) and deleted after it commits, so no
lock is held during the slow part and a crash leaves at worst a trash directory for the next run.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import dataclass, field

from sampan.image import digest as _digest
from sampan.store import leases
from sampan.store.content import ContentStore
from sampan.store.layout import Layout, unique_name

_LIVE_SNAPSHOTS = """
    SELECT chain_id, size FROM snapshots WHERE chain_id NOT IN (SELECT chain_id FROM image_layers)
    AND chain_id NOT IN (SELECT key FROM lease_resources WHERE kind = 'snapshot')
"""
_LIVE_BLOBS = """
    SELECT digest, size FROM blobs WHERE digest NOT IN (SELECT id FROM images)
    AND digest NOT IN (SELECT manifest_digest FROM images)
    AND digest NOT IN (SELECT blob_digest FROM image_layers)
    AND digest NOT IN (SELECT key FROM lease_resources WHERE kind = 'blob')
"""


@dataclass
class Collected:
    snapshots: list[str] = field(default_factory=list)
    blobs: list[str] = field(default_factory=list)
    reclaimed: int = 0


def collect(tx: sqlite3.Connection, layout: Layout, content: ContentStore) -> Collected:
    """Drop unreferenced snapshots and blobs; call ``empty_trash`` after the transaction commits."""
    leases.expire_dead(tx)
    out = Collected()
    for row in tx.execute(_LIVE_SNAPSHOTS).fetchall():
        chain_id = row["chain_id"]
        tx.execute("DELETE FROM snapshots WHERE chain_id = ?", (chain_id,))
        path = layout.snapshots / _digest.hex_of(chain_id)
        if path.exists():
            path.rename(layout.trash / unique_name(path.name))
        out.snapshots.append(chain_id)
        out.reclaimed += row["size"]
    for row in tx.execute(_LIVE_BLOBS).fetchall():
        tx.execute("DELETE FROM blobs WHERE digest = ?", (row["digest"],))
        content.delete(row["digest"])
        out.blobs.append(row["digest"])
        out.reclaimed += row["size"]
    return out


def empty_trash(layout: Layout) -> None:
    for entry in os.scandir(layout.trash):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            os.unlink(entry.path)
