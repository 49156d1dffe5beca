"""Unpacked layers ("snapshots"), one directory per chain ID, stacked later as overlayfs lower directories.

Each snapshot directory holds only its own layer's files, with whiteouts already in overlay form, so a container's
root is ``lowerdir=<top>:...:<bottom>`` with no copying. A snapshot is unpacked into a staging directory, verified
against the expected diff ID, and renamed into place inside a database transaction: a visible snapshot with a
database row is always complete. A per-chain file lock stops two processes unpacking the same layer twice.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from sampan.errors import CorruptContent
from sampan.image import digest as _digest
from sampan.image.compression import open_decompressed
from sampan.snapshot.unpack import unpack_layer
from sampan.store.content import ContentStore, fsync_dir
from sampan.store.layout import Layout, unique_name
from sampan.store.leases import Lease
from sampan.store.locks import FileLock
from sampan.store.metadata import Database


@dataclass(frozen=True)
class Snapshot:
    chain_id: str
    diff_id: str
    size: int


class SnapshotStore:
    def __init__(self, layout: Layout, db: Database, content: ContentStore) -> None:
        self.layout = layout
        self.db = db
        self.content = content

    def path(self, chain_id: str) -> Path:
        return self.layout.snapshots / _digest.hex_of(chain_id)

    def _present(self, tx: sqlite3.Connection, chain_id: str) -> Snapshot | None:
        row = tx.execute("SELECT diff_id, size FROM snapshots WHERE chain_id = ?", (chain_id,)).fetchone()
        if row is None or not self.path(chain_id).is_dir():
            return None
        return Snapshot(chain_id, row["diff_id"], row["size"])

    def lookup(self, lease: Lease, chain_id: str) -> Snapshot | None:
        """Protect ``chain_id`` with the lease and return it if it is already unpacked."""
        with self.db.transaction() as tx:
            lease.add(tx, "snapshot", chain_id)
            return self._present(tx, chain_id)

    def unpack(self, lease: Lease, blob_digest: str, parent: str | None,
               expected_diff_id: str | None = None) -> Snapshot:
        """Make the snapshot of a stored layer blob on top of ``parent`` (a chain ID) and return it.

        With a known diff ID (load, pull) an existing snapshot is reused without reading the blob; without one
        (import) the layer is unpacked first and its chain ID computed from what was read.
        """
        if expected_diff_id is not None:
            chain_id = _digest.chain_id(parent, expected_diff_id)
            if (found := self.lookup(lease, chain_id)) is not None:
                return found
            with FileLock(self.layout.locks, "snapshot:" + chain_id):
                if (found := self.lookup(lease, chain_id)) is not None:
                    return found
                return self._unpack_and_commit(lease, blob_digest, parent, expected_diff_id)
        return self._unpack_and_commit(lease, blob_digest, parent, None)

    def _unpack_and_commit(self, lease: Lease, blob_digest: str, parent: str | None,
                           expected_diff_id: str | None) -> Snapshot:
        staging = self.layout.tmp / unique_name(f"unpack-{os.getpid()}")
        staging.mkdir(mode=0o755)
        try:
            with self.content.open(blob_digest) as raw, open_decompressed(raw) as stream:
                result = unpack_layer(stream, staging)
            if expected_diff_id is not None and result.diff_id != expected_diff_id:
                raise CorruptContent(
                    f"layer {blob_digest} has diff ID {result.diff_id}, the image config says {expected_diff_id}")
            chain_id = _digest.chain_id(parent, result.diff_id)
            with self.db.transaction() as tx:
                lease.add(tx, "snapshot", chain_id)
                if (found := self._present(tx, chain_id)) is not None:
                    return found
                target = self.path(chain_id)
                if target.exists():  # left by a crash before its row was committed: never trusted
                    target.rename(self.layout.trash / unique_name(target.name))
                os.rename(staging, target)
                fsync_dir(target.parent)
                tx.execute("INSERT OR REPLACE INTO snapshots(chain_id, parent, diff_id, size, created) "
                           "VALUES (?, ?, ?, ?, ?)", (chain_id, parent or "", result.diff_id, result.size,
                                                      time.time()))
            return Snapshot(chain_id, result.diff_id, result.size)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
