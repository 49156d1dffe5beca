"""System verbs: version, info, disk usage, and the consistency check that reclaims leftovers.

``check`` is the other half of crash safety: any process may die at any instant, leaving an ingest file, a staging
directory, a trash directory or a snapshot directory whose row was never committed. None of these is ever
visible as content; ``check --repair`` removes them and reports whatever is really inconsistent.
"""

from __future__ import annotations

import os
import platform
import socket
import sqlite3
from dataclasses import dataclass, field
from typing import Any

import sampan
from sampan._linux.proc import process_start_time
from sampan.engine import volumes
from sampan.engine.context import Engine
from sampan.image import digest as _digest
from sampan.image.config import host_architecture
from sampan.store import gc, leases
from sampan.store import images as records


def version() -> dict[str, Any]:
    """Docker's ``/version`` shape for the engine."""
    return {
        "Platform": {"Name": "sampan"},
        "Version": sampan.__version__,
        "ApiVersion": sampan.API_VERSION,
        "MinAPIVersion": "1.24",
        "Os": "linux",
        "Arch": host_architecture(),
        "KernelVersion": platform.release(),
        "GoVersion": "python" + platform.python_version(),
        "Components": [{"Name": "Engine", "Version": sampan.__version__,
                        "Details": {"ApiVersion": sampan.API_VERSION, "Os": "linux", "Arch": host_architecture()}}],
    }


def cgroup_version() -> str:
    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _container_counts(engine: Engine) -> dict[str, int]:
    from sampan.engine.containers.model import all_current

    statuses = [record.status for record in all_current(engine)]
    running = sum(s in ("running", "restarting") for s in statuses)
    paused = statuses.count("paused")
    return {"Containers": len(statuses), "ContainersRunning": running, "ContainersPaused": paused,
            "ContainersStopped": len(statuses) - running - paused}


def info(engine: Engine) -> dict[str, Any]:
    """Docker's ``/info`` shape."""
    conn = engine.db.conn
    image_count = conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    with open("/proc/meminfo") as f:
        mem_total = int(f.readline().split()[1]) * 1024
    return {
        "ID": "", **_container_counts(engine),
        "Images": image_count, "Driver": "overlayfs",
        "DriverStatus": [["Root Dir", str(engine.layout.snapshots)]],
        "DockerRootDir": str(engine.layout.root), "ExecRoot": str(engine.layout.runroot),
        "KernelVersion": platform.release(), "OperatingSystem": _os_name(), "OSType": "linux",
        "Architecture": platform.machine(), "NCPU": os.cpu_count() or 1, "MemTotal": mem_total,
        "Name": socket.gethostname(), "ServerVersion": sampan.__version__,
        "CgroupDriver": "cgroupfs", "CgroupVersion": cgroup_version(), "LoggingDriver": "json-file",
        "DefaultRuntime": "sampan", "Runtimes": {"sampan": {"path": "sampan-runc"}},
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "Labels": [], "Debug": False, "Warnings": None,
    }


@dataclass(frozen=True)
class UsageLine:
    type: str
    total: int
    active: int
    size: int
    reclaimable: int


def disk_usage(engine: Engine) -> list[UsageLine]:
    """``system df``: shared layers are counted once in the images' total."""
    conn = engine.db.conn
    images = conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    layer_bytes = conn.execute(
        "SELECT COALESCE(SUM(size), 0) FROM snapshots WHERE chain_id IN (SELECT chain_id FROM image_layers)"
    ).fetchone()[0]
    used_bytes = conn.execute(
        "SELECT COALESCE(SUM(size), 0) FROM snapshots WHERE chain_id IN (SELECT chain_id FROM image_layers "
        "WHERE image_id IN (SELECT image_id FROM containers))").fetchone()[0]
    images_used = conn.execute("SELECT COUNT(DISTINCT image_id) FROM containers").fetchone()[0]
    from sampan.engine.containers.model import ACTIVE, all_current
    from sampan.engine.containers.query import container_size

    container_count = container_active = container_bytes = container_reclaimable = 0
    for record in all_current(engine):
        size = container_size(engine, record.id)
        container_count += 1
        container_bytes += size
        if record.status in ACTIVE:
            container_active += 1
        else:
            container_reclaimable += size
    volume_count, volume_active, volume_size, volume_reclaimable = volumes.disk_usage(engine)
    return [UsageLine("Images", images, images_used, layer_bytes, layer_bytes - used_bytes),
            UsageLine("Containers", container_count, container_active, container_bytes, container_reclaimable),
            UsageLine("Local Volumes", volume_count, volume_active, volume_size, volume_reclaimable),
            UsageLine("Build Cache", 0, 0, 0, 0)]


@dataclass
class SystemPruneReport:
    containers: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    image_actions: list[tuple[str, str]] = field(default_factory=list)
    reclaimed: int = 0


def prune(engine: Engine, *, all: bool = False, prune_volumes: bool = False,
          filters: dict[str, list[str]] | None = None) -> SystemPruneReport:
    """``system prune``: stopped containers, then (with ``prune_volumes``) unused anonymous volumes, then dangling
    images (``all``: every unused image), in Docker's order, so what the removed containers held goes too."""
    from sampan.engine import images as image_engine
    from sampan.engine.containers.remove import prune as prune_containers

    filters = dict(filters or {})
    report = SystemPruneReport()
    removed = prune_containers(engine, filters)
    report.containers, report.reclaimed = removed.removed, removed.reclaimed
    if prune_volumes:
        volume_filters = {k: v for k, v in filters.items() if k != "until"}
        pruned = volumes.prune(engine, filters=volume_filters)
        report.volumes, report.reclaimed = pruned.deleted, report.reclaimed + pruned.reclaimed
    image_report = image_engine.prune(engine, all=all, filters=filters)
    report.image_actions, report.reclaimed = image_report.actions, report.reclaimed + image_report.reclaimed
    return report


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)


def _owner_alive(name: str) -> bool:
    """Staging names start with the creating pid; a live process's leftovers are still in use."""
    head = name.split("-", 2)
    pid = next((part for part in head if part.isdigit()), None)
    return pid is not None and process_start_time(int(pid)) is not None


def check(engine: Engine, repair: bool = False) -> CheckReport:
    """Verify every image's content and find leftovers; with ``repair``, remove the leftovers."""
    report = CheckReport()
    layout, content, conn = engine.layout, engine.content, engine.db.conn
    for row in records.all_images(conn):
        short = _digest.short_id(row["id"])
        for digest in (row["id"], row["manifest_digest"]):
            if not content.exists(digest) or not content.verify(digest):
                report.problems.append(f"image {short}: blob {digest} is missing or corrupt")
        for layer in records.layers_of(conn, row["id"]):
            if not content.exists(layer["blob_digest"]):
                report.problems.append(f"image {short}: layer blob {layer['blob_digest']} is missing")
            if layer["diff_id"] is None or not (layout.snapshots / _digest.hex_of(layer["chain_id"])).is_dir():
                report.problems.append(f"image {short}: snapshot {layer['chain_id']} is missing")
    report.problems += volumes.problems(engine, conn)
    from sampan.engine import networks
    from sampan.engine.containers import recovery

    if not repair:
        report.problems += [description for _, description in recovery.find(engine)]
        report.problems += [f"leftover {path}" for path in _leftovers(engine, conn)]
        report.problems += networks.forwarding_problems(engine)
        return report
    report.repaired += recovery.repair(engine)
    report.repaired += networks.forwarding_problems(engine, repair=True)
    with engine.db.transaction() as tx:  # no operation can publish content while leftovers are judged
        leases.expire_dead(tx)
        for path in _leftovers(engine, tx):
            os.rename(path, layout.trash / f"leftover-{os.path.basename(path)}-{os.getpid()}")
            report.repaired.append(f"removed leftover {path}")
        collected = gc.collect(tx, layout, content)
    gc.empty_trash(layout)
    report.repaired += [f"removed unreferenced snapshot {c}" for c in collected.snapshots]
    report.repaired += [f"removed unreferenced blob {b}" for b in collected.blobs]
    return report


def _leftovers(engine: Engine, conn: sqlite3.Connection) -> list[str]:
    """Files and directories no committed row or live lease accounts for."""
    layout = engine.layout
    known_snapshots = {_digest.hex_of(r["chain_id"]) for r in conn.execute("SELECT chain_id FROM snapshots")}
    known_blobs = {_digest.hex_of(r["digest"]) for r in conn.execute("SELECT digest FROM blobs")}
    leased = {r["key"] for r in conn.execute(
        "SELECT key FROM lease_resources r JOIN leases l ON l.id = r.lease_id")}
    paths = [entry.path for entry in os.scandir(layout.snapshots) if entry.name not in known_snapshots
             and "sha256:" + entry.name not in leased]
    paths += [entry.path for entry in os.scandir(layout.blobs)
              if entry.name not in known_blobs and "sha256:" + entry.name not in leased]
    paths += [entry.path for directory in (layout.ingest, layout.tmp) for entry in os.scandir(directory)
              if not _owner_alive(entry.name)]
    paths += volumes.leftovers(engine, conn)
    return paths


def release_cgroup_parent() -> bool:
    """Remove the containers' parent cgroup (``/sampan``) in every hierarchy where it is empty: the runtime,
    as runc, never removes parents others may share, so whoever knows no container is left does it. A parent
    still in use is left as it is (rmdir refuses). True when none is left."""
    from sampan.engine.specgen import CGROUP_PARENT
    from sampan.runtime.cgroups import DEFAULT_ROOT

    name = CGROUP_PARENT.strip("/")
    left = False
    candidates = [os.path.join(DEFAULT_ROOT, name)]
    if os.path.isdir(DEFAULT_ROOT):
        candidates += [os.path.join(DEFAULT_ROOT, entry, name) for entry in os.listdir(DEFAULT_ROOT)]
    for path in candidates:
        try:
            os.rmdir(path)
        except FileNotFoundError:
            continue
        except OSError:
            left = os.path.isdir(path) or left
    return not left


def reset(engine: Engine) -> None:
    """``system reset`` (podman's): remove every container, the root's network kernel objects and /proc view,
    and then the whole storage and run-time roots."""
    import shutil

    from sampan.engine import networks
    from sampan.engine.containers.model import all_current
    from sampan.engine.containers.remove import remove
    from sampan.procview.server import mountpoint, unmount

    for record in all_current(engine):
        remove(engine, record.id, force=True, volumes=True)
    networks.purge_kernel(engine)
    unmount(mountpoint(str(engine.layout.runroot)))
    release_cgroup_parent()
    engine.close()
    for path in (engine.layout.root, engine.layout.runroot):
        shutil.rmtree(path, ignore_errors=True)
