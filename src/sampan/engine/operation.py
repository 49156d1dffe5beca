"""A storing operation's life: a lease while it runs, and no garbage left if it fails.

Whatever an import, load or bootstrap stored before failing (verified blobs, unpacked snapshots) is referenced only
by its lease; when the operation fails, dropping the lease and collecting garbage removes it, so a corrupt archive
leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sampan.engine.context import Engine
from sampan.store import gc
from sampan.store.leases import Lease


@contextmanager
def storing(engine: Engine) -> Iterator[Lease]:
    lease = engine.lease()
    try:
        yield lease
    except BaseException:
        lease.release()
        with engine.db.transaction() as tx:
            gc.collect(tx, engine.layout, engine.content)
        gc.empty_trash(engine.layout)
        raise
    lease.release()
