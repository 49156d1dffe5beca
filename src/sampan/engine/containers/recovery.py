"""What a killed process or a reboot can leave of containers, found and removed by ``system check [--repair]``.

A container that is not active (see ``model.current``) owns nothing live: no rootfs mount, no runtime state, no
cgroup, no process, no run-time directory. Anything of those found for it is a leftover, as are bundle and
run-time directories without a record, and records stuck in "removing" (an ``rm`` that was killed). Only
containers of this storage root are looked at: cgroups are found by the container IDs in its store.
"""

from __future__ import annotations

import os
import shutil
import signal
import time

from sampan.engine.containers import model, rootfs
from sampan.engine.containers.model import ACTIVE
from sampan.engine.context import Engine
from sampan.engine.specgen import CGROUP_PARENT
from sampan.errors import SampanError
from sampan.store import containers as records
from sampan.store.layout import unique_name


def _cgroup(record: records.ContainerRecord):
    from sampan.runtime.cgroups import open_cgroup

    parent = (record.host_config.get("CgroupParent") or CGROUP_PARENT).rstrip("/")
    return open_cgroup(f"{parent}/{record.id}")


def _runtime_states(engine: Engine) -> set[str]:
    base = engine.layout.runtime / "sampan"
    return set(os.listdir(base)) if base.is_dir() else set()


def find(engine: Engine) -> list[tuple[str, str]]:
    """(container ID or "", description) of every leftover."""
    out: list[tuple[str, str]] = []
    states = _runtime_states(engine)
    known = set()
    for record in model.all_current(engine):
        known.add(record.id)
        short = record.id[:12]
        if record.status == "removing":
            out.append((record.id, f"container {short}: an interrupted removal"))
            continue
        if record.status in ACTIVE:
            continue
        where = model.places(engine, record.id)
        if rootfs.mounted(where.rootfs):
            out.append((record.id, f"container {short}: root filesystem still mounted at {where.rootfs}"))
        if record.id in states:
            out.append((record.id, f"container {short}: runtime state left"))
        cgroup = _cgroup(record)
        if cgroup.exists():
            pids = cgroup.pids()
            out.append((record.id, f"container {short}: cgroup {cgroup.path} left" +
                        (f" with processes {pids}" if pids else "")))
        if where.run.exists():
            out.append((record.id, f"container {short}: run-time directory {where.run} left"))
    from sampan.engine import networks

    active = {r.id for r in model.all_current(engine) if r.status in ACTIVE}
    out += [item for item in networks.leftovers(engine, active) if item[0] in known]
    from sampan.procview.server import mounted, mountpoint, serving

    view = mountpoint(str(engine.layout.runroot))
    if mounted(view) and not serving(view):
        out.append(("", f"leftover {view}: the /proc view, its server gone"))
    for directory in (engine.layout.containers, engine.layout.container_runs):
        for name in sorted(os.listdir(directory)) if directory.is_dir() else []:
            if name not in known:
                out.append(("", f"leftover {directory / name}"))
    return out


def repair(engine: Engine) -> list[str]:
    """Remove every leftover ``find`` reports; returns what was done."""
    from sampan.engine.containers.remove import remove
    from sampan.engine.containers.runtimes import driver_of

    done = []
    for container_id, description in find(engine):
        if not container_id and description.endswith("the /proc view, its server gone"):
            from sampan.procview.server import unmount

            path = description.removeprefix("leftover ").partition(":")[0]
            unmount(path)
            done.append(f"unmounted {path}")
            continue
        if not container_id:
            path = description.removeprefix("leftover ")
            if rootfs.mounted(os.path.join(path, "merged")):
                rootfs.unmount(model.Places(engine.layout, os.path.basename(path)))
            if path.startswith(str(engine.layout.containers)):
                os.rename(path, engine.layout.trash / unique_name("container"))
            else:
                shutil.rmtree(path, ignore_errors=True)
            done.append(f"removed {path}")
            continue
        record = records.get(engine.db.conn, container_id)
        if record is None:
            continue
        try:
            if record.status == "removing":
                remove(engine, container_id, force=True)
                done.append(f"finished removing container {container_id[:12]}")
                continue
            driver_of(engine, record).delete(container_id)
            from sampan.engine import networks

            networks.teardown(engine, container_id)
            cgroup = _cgroup(record)
            if cgroup.exists():
                cgroup.kill_all(signal.SIGKILL)
                deadline = time.monotonic() + 5
                while cgroup.pids() and time.monotonic() < deadline:
                    time.sleep(0.01)
                cgroup.destroy()
            rootfs.unmount(model.places(engine, container_id))
            shutil.rmtree(model.places(engine, container_id).run, ignore_errors=True)
        except (SampanError, OSError) as e:
            done.append(f"could not repair container {container_id[:12]}: {e}")
            continue
        done.append(f"repaired {description}")
    return done
