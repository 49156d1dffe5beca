"""``docker rm`` and ``container prune``: a container's record, runtime state, mounts and directories go together.

The record is marked "removing" first, so a concurrent ``start`` refuses it; then the runtime's state and cgroup
are deleted, the root unmounted and the bundle renamed into the trash; the row (and its volume links) is deleted
last, so a crash at any point leaves a record that the next ``rm`` or ``system check --repair`` finishes.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field

from sampan.engine import events, networks
from sampan.engine import volumes as volume_engine
from sampan.engine.containers import model, rootfs
from sampan.engine.containers.lifecycle import locked, stop
from sampan.engine.containers.model import ACTIVE
from sampan.engine.containers.runtimes import driver_of
from sampan.engine.context import Engine
from sampan.engine.filters import check_filters, labels_match
from sampan.errors import Conflict, SampanError
from sampan.store import containers as records
from sampan.store import gc
from sampan.store.layout import unique_name


def remove(engine: Engine, name: str, *, force: bool = False, volumes: bool = False) -> str:
    """Remove a container (``force`` kills a running one first); ``volumes`` also removes its anonymous volumes.
    Returns the container's ID."""
    record = model.lookup(engine, name)
    if record.status in ACTIVE:
        if not force:
            verb = "Stop" if record.status != "paused" else "Unpause and then stop"
            raise Conflict(f"You cannot remove a {record.status} container {record.id}. {verb} the container "
                           "before attempting removal or force remove")
        stop(engine, record.id, timeout=0)
    with locked(engine, record.id):
        with engine.db.transaction() as tx:
            fresh = records.get(tx, record.id)
            if fresh is None:
                return record.id
            if model.current(engine, fresh).status in ACTIVE:
                raise Conflict(f"container {record.id[:12]} was started again meanwhile")
            records.update_state(tx, record.id, status="removing")
        driver_of(engine, record).delete(record.id)
        networks.teardown(engine, record.id)
        where = model.places(engine, record.id)
        rootfs.unmount(where)
        if where.bundle.exists():
            where.bundle.rename(engine.layout.trash / unique_name(f"container-{record.id}"))
        shutil.rmtree(where.run, ignore_errors=True)
        anonymous = []
        with engine.db.transaction() as tx:
            for volume in records.volumes_of(tx, record.id):
                if volumes and _anonymous(tx, volume):
                    anonymous.append(volume)
            records.delete(tx, record.id)
        gc.empty_trash(engine.layout)
    events.record(engine, "container", "destroy", record.id, events.container_attributes(record))
    for volume in anonymous:
        try:
            volume_engine.remove(engine, volume)
        except SampanError:
            pass  # used by another container meanwhile: kept, as Docker
    return record.id


def _anonymous(tx: object, volume: str) -> bool:
    from sampan.store import volumes as volume_records

    found = volume_records.get(tx, volume)  # type: ignore[arg-type]
    return found is not None and found.anonymous


@dataclass
class PruneReport:
    removed: list[str] = field(default_factory=list)
    reclaimed: int = 0


def prune(engine: Engine, filters: dict[str, list[str]] | None = None) -> PruneReport:
    """``container prune``: remove every stopped container (filters: until, label, label!)."""
    from sampan.engine.containers.query import container_size
    from sampan.units import parse_timestamp

    filters = dict(filters or {})
    check_filters(filters, frozenset({"until", "label", "label!"}))
    import time

    now = time.time()
    until = min((parse_timestamp(v, now) for v in filters.get("until", [])), default=None)
    report = PruneReport()
    for record in model.all_current(engine):
        if record.status in ACTIVE or record.status == "removing":
            continue
        if until is not None and record.created >= until:
            continue
        labels = record.config.get("Labels") or {}
        if not labels_match(labels, filters.get("label", [])) or \
                any(labels_match(labels, [item]) for item in filters.get("label!", [])):
            continue
        size = container_size(engine, record.id)
        try:
            remove(engine, record.id)
        except SampanError:
            continue
        report.removed.append(record.id)
        report.reclaimed += size
    return report


def leftovers(engine: Engine) -> list[str]:
    """Bundle directories without a record and run directories of containers that are not running."""
    known = {row[0] for row in engine.db.conn.execute("SELECT id FROM containers")}
    out = []
    for directory in (engine.layout.containers, engine.layout.container_runs):
        if directory.is_dir():
            out += [str(directory / name) for name in os.listdir(directory) if name not in known]
    return out
