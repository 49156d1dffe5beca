"""Leases: what an in-flight operation is using, so a concurrent garbage collection leaves it alone.

A ``load`` writes blobs and snapshots before the image that references them is committed; an ``rmi`` running at the
same moment must not collect them. Like containerd's leases, the operation records each resource under its lease
in the database *before* relying on it. A lease belongs to a process (pid plus start time, so a recycled pid does
not keep a dead lease alive) and is dropped when the process finishes or is found dead.
"""

from __future__ import annotations

import os
import sqlite3
import time
from types import TracebackType

from sampan._linux.proc import process_start_time
from sampan.store.metadata import Database


class Lease:
    def __init__(self, db: Database) -> None:
        self._db = db
        self.id = os.urandom(16).hex()  # as uuid4().hex, without uuid's import cost
        with db.transaction() as tx:
            tx.execute("INSERT INTO leases(id, pid, start_time, created) VALUES (?, ?, ?, ?)",
                       (self.id, os.getpid(), process_start_time(os.getpid()) or "", time.time()))

    def add(self, tx: sqlite3.Connection, kind: str, key: str) -> None:
        """Protect a resource; call inside the transaction that checks whether the resource exists."""
        tx.execute("INSERT OR IGNORE INTO lease_resources(lease_id, kind, key) VALUES (?, ?, ?)",
                   (self.id, kind, key))

    def release(self) -> None:
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM leases WHERE id = ?", (self.id,))

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def expire_dead(tx: sqlite3.Connection) -> int:
    """Delete leases whose process is gone; returns how many."""
    dead = [row["id"] for row in tx.execute("SELECT id, pid, start_time FROM leases")
            if process_start_time(row["pid"]) != row["start_time"]]
    tx.executemany("DELETE FROM leases WHERE id = ?", [(lease_id,) for lease_id in dead])
    return len(dead)
