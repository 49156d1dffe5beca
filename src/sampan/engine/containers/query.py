"""Reading containers: ``ps`` (with Docker's filters and wording), ``inspect`` (Docker's JSON shape), ``top``,
``port`` and sizes.

Every answer starts from ``model.current``, so what is reported is what the live system says, not only what was
last recorded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sampan.engine import images, networks
from sampan.engine.containers import model
from sampan.engine.containers.model import ACTIVE
from sampan.engine.context import Engine
from sampan.engine.filters import check_filters, labels_match
from sampan.errors import InvalidArgument, NotFound
from sampan.image.config import format_time
from sampan.store.containers import ContainerRecord
from sampan.units import human_duration

ZERO_TIME = "0001-01-01T00:00:00Z"
_PS_FILTERS = frozenset({"status", "name", "label", "label!", "ancestor", "exited", "id", "before", "since",
                         "health", "volume"})
_STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


def docker_time(ts: float) -> str:
    return format_time(ts) if ts else ZERO_TIME


def status_text(record: ContainerRecord, now: float | None = None) -> str:
    """The STATUS column of ``docker ps``."""
    now = time.time() if now is None else now
    if record.status in ("running", "paused"):
        text = f"Up {human_duration(now - record.started_at)}"
        if record.status == "paused":
            return text + " (Paused)"
        health = (record.health or {}).get("Status")
        if health == "starting":
            return text + " (health: starting)"
        if health in ("healthy", "unhealthy"):
            return f"{text} ({health})"
        return text
    if record.status == "restarting":
        return f"Restarting ({record.exit_code}) {human_duration(now - record.finished_at)} ago"
    if record.status == "removing":
        return "Removal In Progress"
    if record.status == "exited" and record.finished_at:
        return f"Exited ({record.exit_code}) {human_duration(now - record.finished_at)} ago"
    return "Created"


def command_text(record: ContainerRecord) -> str:
    args = list(record.config.get("Entrypoint") or []) + list(record.config.get("Cmd") or [])
    return " ".join(args)


def container_size(engine: Engine, container_id: str) -> int:
    """Bytes in the writable layer."""
    from sampan.engine.volumes import directory_size

    path = model.places(engine, container_id).diff
    return directory_size(str(path)) if path.is_dir() else 0


def image_size(engine: Engine, image_id: str) -> int:
    row = engine.db.conn.execute("SELECT size FROM images WHERE id = ?", (image_id,)).fetchone()
    return int(row[0]) if row else 0


# ---------------------------------------------------------------------------------------------- ps


@dataclass
class ListOptions:
    all: bool = False
    last: int = -1
    latest: bool = False
    filters: dict[str, list[str]] | None = None


def _ancestor_ids(engine: Engine, names: list[str]) -> set[str]:
    out = set()
    for name in names:
        try:
            out.add(images.resolve(engine, name))
        except (NotFound, InvalidArgument):
            continue
    return out


def _matches(engine: Engine, record: ContainerRecord, filters: dict[str, list[str]],
             ancestors: set[str] | None) -> bool:
    if "status" in filters and record.status not in filters["status"]:
        return False
    if "name" in filters and not any(value.lstrip("/") in record.name for value in filters["name"]):
        return False
    if "id" in filters and not any(record.id.startswith(value) for value in filters["id"]):
        return False
    labels = record.config.get("Labels") or {}
    if not labels_match(labels, filters.get("label", [])):
        return False
    if any(labels_match(labels, [item]) for item in filters.get("label!", [])):
        return False
    if ancestors is not None and record.image_id not in ancestors:
        return False
    if "exited" in filters and (record.status != "exited" or str(record.exit_code) not in filters["exited"]):
        return False
    if "health" in filters:
        state = (record.health or {}).get("Status", "none")
        if state not in filters["health"]:
            return False
    if "volume" in filters:
        used = {m.get("Name") or m.get("Source") for m in record.mounts} | {m["Destination"] for m in record.mounts}
        if not used & set(filters["volume"]):
            return False
    return True


def list_containers(engine: Engine, options: ListOptions) -> list[ContainerRecord]:
    """``docker ps``: running containers (``all``: every one), newest first, filtered."""
    filters = dict(options.filters or {})
    check_filters(filters, _PS_FILTERS)
    for value in filters.get("status", []):
        if value not in _STATUSES:
            raise InvalidArgument(f"Invalid filter 'status={value}'")
    for value in filters.get("exited", []):
        if not value.lstrip("-").isdigit():
            raise InvalidArgument(f"invalid filter 'exited={value}'")
    ancestors = _ancestor_ids(engine, filters["ancestor"]) if "ancestor" in filters else None
    everything = model.all_current(engine)
    bounds = {key: model.lookup(engine, filters[key][0]).created for key in ("before", "since") if key in filters}
    show_all = options.all or options.last > 0 or options.latest or "status" in filters or "exited" in filters
    out = []
    for record in everything:
        if not show_all and record.status not in ("running", "paused", "restarting"):
            continue
        if "before" in bounds and record.created >= bounds["before"]:
            continue
        if "since" in bounds and record.created <= bounds["since"]:
            continue
        if _matches(engine, record, filters, ancestors):
            out.append(record)
    if options.latest:
        return out[:1]
    if options.last > 0:
        return out[:options.last]
    return out


# ---------------------------------------------------------------------------------------------- inspect


def state_of(record: ContainerRecord) -> dict[str, Any]:
    state: dict[str, Any] = {
        "Status": record.status, "Running": record.status in ("running", "paused"),
        "Paused": record.status == "paused", "Restarting": record.status == "restarting",
        "OOMKilled": record.oom_killed, "Dead": record.status == "dead",
        "Pid": record.pid if record.status in ACTIVE else 0, "ExitCode": record.exit_code, "Error": record.error,
        "StartedAt": docker_time(record.started_at), "FinishedAt": docker_time(record.finished_at),
    }
    if record.health is not None:
        state["Health"] = record.health
    return state


def inspect(engine: Engine, name: str, *, size: bool = False) -> dict[str, Any]:
    """``docker inspect`` of a container: Docker's JSON shape (the fields sampan has)."""
    record = model.lookup(engine, name)
    where = model.places(engine, record.id)
    log_path = str(where.log(record.id)) if (record.host_config.get("LogConfig") or {}).get("Type") == \
        "json-file" else ""
    out: dict[str, Any] = {
        "Id": record.id, "Created": docker_time(record.created), "Path": _path_and_args(record)[0],
        "Args": _path_and_args(record)[1], "State": state_of(record), "Image": record.image_id,
        "ResolvConfPath": str(where.resolv_conf), "HostnamePath": str(where.hostname),
        "HostsPath": str(where.hosts), "LogPath": log_path, "Name": "/" + record.name,
        "RestartCount": record.restart_count, "Driver": "overlay2", "Platform": "linux", "MountLabel": "",
        "ProcessLabel": "", "AppArmorProfile": "", "ExecIDs": None, "HostConfig": record.host_config,
        "GraphDriver": {"Name": "overlay2", "Data": {"MergedDir": str(where.rootfs), "UpperDir": str(where.diff),
                                                    "WorkDir": str(where.work)}},
        "Mounts": record.mounts, "Config": record.config,
        "NetworkSettings": networks.container_settings(engine, record),
    }
    if size:
        out["SizeRw"] = container_size(engine, record.id)
        out["SizeRootFs"] = out["SizeRw"] + image_size(engine, record.image_id)
    return out


def _path_and_args(record: ContainerRecord) -> tuple[str, list[str]]:
    args = list(record.config.get("Entrypoint") or []) + list(record.config.get("Cmd") or [])
    if record.host_config.get("Init"):
        args = ["/sbin/docker-init", "--", *args]
    return (args[0], args[1:]) if args else ("", [])


# ---------------------------------------------------------------------------------------------- top


def top(engine: Engine, name: str, ps_args: list[str]) -> tuple[list[str], list[list[str]]]:
    """``docker top``: the host's ``ps`` over the container's processes (titles, rows)."""
    import subprocess

    from sampan.engine.containers.runtimes import driver_of

    record = model.lookup(engine, name)
    if record.status not in ("running", "paused"):
        raise InvalidArgument(f"Container {record.id} is not running")
    pids = set(driver_of(engine, record).pids(record.id))
    args = ps_args or ["-ef"]
    result = subprocess.run(["ps", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InvalidArgument(f"Error running ps: {result.stderr.strip()}")
    lines = result.stdout.splitlines()
    titles = lines[0].split()
    if "PID" not in titles:
        raise InvalidArgument("Couldn't find PID field in ps output")
    column = titles.index("PID")
    rows = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) > column and fields[column].isdigit() and int(fields[column]) in pids:
            rows.append(fields)
    return titles, rows


def log_path(engine: Engine, record: ContainerRecord) -> str | None:
    if (record.host_config.get("LogConfig") or {}).get("Type", "json-file") != "json-file":
        return None
    return str(model.places(engine, record.id).log(record.id))

