"""The engine object: one storage root's stores, opened lazily, shared by every verb.

Verbs are plain functions in the modules of ``sampan.engine`` taking an ``Engine`` first; this class only owns
the handles, so that the CLI, the API service and library users all reach the same state the same way.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from sampan.engine.preflight import check_host
from sampan.store.content import ContentStore
from sampan.store.layout import Layout
from sampan.store.leases import Lease
from sampan.store.metadata import Database

if TYPE_CHECKING:
    from sampan.snapshot.snapshots import SnapshotStore


class Engine:
    def __init__(self, root: str | None = None, runroot: str | None = None, *, check: bool = True) -> None:
        if check:
            check_host()
        self.layout = Layout.from_options(root, runroot)
        self.layout.ensure()

    @cached_property
    def db(self) -> Database:
        return Database(self.layout.database)

    @cached_property
    def content(self) -> ContentStore:
        return ContentStore(self.layout.blobs, self.layout.ingest)

    @cached_property
    def snapshots(self) -> SnapshotStore:
        from sampan.snapshot.snapshots import SnapshotStore  # tar handling: only for verbs that unpack

        return SnapshotStore(self.layout, self.db, self.content)

    def lease(self) -> Lease:
        """Protection for resources an operation creates before it commits the objects using them."""
        return Lease(self.db)

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
