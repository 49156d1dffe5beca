"""Volume verbs: create, list, inspect, remove, prune, and the numbers ``system df`` shows.

Only Docker's "local" driver exists. A volume is a row in ``volumes`` plus the directory
``<root>/volumes/<name>/_data``; both appear and disappear in one transaction:

- create stages ``<name>/_data`` under ``tmp/`` (named after the pid, so ``system check`` can tell a live
  process's staging from a dead one's), then inside one ``BEGIN IMMEDIATE`` inserts the row and renames the
  staged directory into place. A crash before the commit rolls the row back and leaves at worst the directory,
  which the next create of that name (holding the write lock, so no other process can be mid-create) moves to the
  trash, and which ``leftovers`` reports for ``system check``;
- remove renames the directory into ``trash/`` inside the transaction that deletes the row, and empties the trash
  after the commit, as ``store.gc`` does for snapshots.

Options follow the local driver: ``type``, ``device`` and ``o`` (each requires the others as Docker's
``mandatoryOpts`` says); ``type=tmpfs`` checks its ``o`` mount options, ``o=bind`` needs an existing absolute
``device`` directory. Nothing is mounted here: that happens when a container uses the volume.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sampan.engine import events
from sampan.engine.context import Engine
from sampan.engine.filters import bool_filter, check_filters, labels_match
from sampan.errors import Conflict, InvalidArgument, NotFound
from sampan.store import gc
from sampan.store import volumes as records
from sampan.store.layout import unique_name
from sampan.store.volumes import VolumeRecord, volume_users

DRIVER = "local"
ANONYMOUS_LABEL = "com.docker.volume.anonymous"  # Docker (23+) marks unnamed volumes with this label
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
_VALID_OPTIONS = ("type", "device", "o")
_MANDATORY = {"device": ("type",), "type": ("device",), "o": ("device", "type")}
_TMPFS_SIZE = re.compile(r"\d+[kKmMgGtTpPeE%]?")
_TMPFS_NUMBER = re.compile(r"\d+[kKmMgG]?")
_TMPFS_OPTIONS = {"size", "nr_blocks", "nr_inodes", "mode", "uid", "gid", "huge", "mpol", "noswap",
                  "ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "noatime", "atime",
                  "nodiratime", "diratime", "relatime", "norelatime", "strictatime", "sync", "async"}
_BIND_FLAGS = {"bind", "rbind", "ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "noatime",
               "atime", "relatime", "strictatime", "private", "rprivate", "shared", "rshared", "slave", "rslave"}
LS_FILTERS = frozenset({"dangling", "name", "label", "driver"})
PRUNE_FILTERS = frozenset({"label", "label!", "all"})


@dataclass(frozen=True)
class Volume(VolumeRecord):
    """What ``volume ls`` and ``volume inspect`` show: the stored record plus where it lives and who uses it."""

    mountpoint: str
    users: tuple[str, ...]


@dataclass
class PruneReport:
    deleted: list[str] = field(default_factory=list)
    reclaimed: int = 0


# -- validation -------------------------------------------------------------------------------------------------


def validate_name(name: str) -> None:
    if len(name) == 1:
        raise InvalidArgument(f"create {name}: volume name is too short, names should be at least two "
                              "alphanumeric characters")
    if not _NAME.fullmatch(name) or len(name) > 255:
        raise InvalidArgument(f'create {name}: "{name}" includes invalid characters for a local volume name, only '
                              '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, '
                              "use absolute path")


def _check_driver(driver: str) -> None:
    if driver != DRIVER:
        raise NotFound(f'error looking up volume plugin {driver}: plugin "{driver}" not found '
                       f'(only the "{DRIVER}" driver is available)')


def validate_options(name: str, options: dict[str, str]) -> None:
    """The local driver's rules (Docker's ``validateOpts``), plus checks of what a later mount would reject."""
    for key in options:
        if key not in _VALID_OPTIONS:
            raise InvalidArgument(f'create {name}: invalid option: "{key}"')
    for key, required in _MANDATORY.items():
        if key in options:
            for other in required:
                if other not in options:
                    raise InvalidArgument(f'create {name}: missing required option: "{other}"')
    if not options:
        return
    kind, device = options["type"], options["device"]
    mount_opts = [item for item in options.get("o", "").split(",") if item]
    if kind == "tmpfs":
        for item in mount_opts:
            key, _, value = item.partition("=")
            if key not in _TMPFS_OPTIONS:
                raise InvalidArgument(f'create {name}: invalid tmpfs mount option: "{item}"')
            if key == "size" and not _TMPFS_SIZE.fullmatch(value):
                raise InvalidArgument(f'create {name}: invalid tmpfs size: "{value}"')
            if key in ("nr_blocks", "nr_inodes") and not _TMPFS_NUMBER.fullmatch(value):
                raise InvalidArgument(f'create {name}: invalid tmpfs {key}: "{value}"')
            if key == "mode" and not re.fullmatch(r"[0-7]{1,4}", value):
                raise InvalidArgument(f'create {name}: invalid tmpfs mode: "{value}"')
            if key in ("uid", "gid") and not value.isdigit():
                raise InvalidArgument(f'create {name}: invalid tmpfs {key}: "{value}"')
    elif "bind" in mount_opts or "rbind" in mount_opts:
        for item in mount_opts:
            if item not in _BIND_FLAGS:
                raise InvalidArgument(f'create {name}: invalid bind mount option: "{item}"')
        if not os.path.isabs(device):
            raise InvalidArgument(f'create {name}: bind device must be an absolute path: "{device}"')
        if not os.path.isdir(device):
            raise InvalidArgument(f"create {name}: bind device {device} does not exist or is not a directory")
    elif kind == "none":
        raise InvalidArgument(f'create {name}: type "none" needs "o=bind"')


def _check_labels(labels: dict[str, str]) -> None:
    for key in labels:
        if not key:
            raise InvalidArgument("invalid label: empty name")


# -- helpers ----------------------------------------------------------------------------------------------------


def _path(engine: Engine, name: str) -> Path:
    return engine.layout.volumes / name


def mountpoint(engine: Engine, name: str) -> str:
    return str(_path(engine, name) / "_data")


def _volume(engine: Engine, conn: sqlite3.Connection, record: VolumeRecord) -> Volume:
    return Volume(**vars(record), mountpoint=mountpoint(engine, record.name),
                  users=tuple(volume_users(conn, record.name)))


def _to_trash(engine: Engine, path: Path) -> None:
    if path.exists() or path.is_symlink():
        path.rename(engine.layout.trash / unique_name(f"volume-{path.name}"))


def directory_size(path: str) -> int:
    """Bytes in regular files below ``path`` (hard links once, symlinks not followed), as Docker's du."""
    total, seen = 0, set()
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def created_at(ts: float) -> str:
    """Go's RFC 3339 in local time, as Docker prints a volume's CreatedAt ("2024-01-02T03:04:05Z" in UTC)."""
    local = datetime.fromtimestamp(int(ts), UTC).astimezone()
    text = local.isoformat(timespec="seconds")
    return text[:-6] + "Z" if local.utcoffset().total_seconds() == 0 else text  # type: ignore[union-attr]


# -- verbs ------------------------------------------------------------------------------------------------------


def create(engine: Engine, name: str | None = None, *, driver: str = DRIVER, labels: dict[str, str] | None = None,
           options: dict[str, str] | None = None) -> Volume:
    """Create a volume; an existing one with the same driver, options and labels is returned as it is."""
    labels = dict(labels or {})
    options = dict(options or {})
    anonymous = not name
    if not name:
        name = os.urandom(32).hex()
        labels.setdefault(ANONYMOUS_LABEL, "")
    validate_name(name)
    _check_driver(driver)
    _check_labels(labels)
    validate_options(name, options)
    layout = engine.layout
    staging = layout.tmp / unique_name(f"volume-{os.getpid()}")
    staging.mkdir(mode=0o701)
    try:
        data = staging / "_data"
        data.mkdir()
        os.chmod(data, 0o755)  # whatever the umask
        os.chmod(staging, 0o701)
        with engine.db.transaction() as tx:
            existing = records.get(tx, name)
            if existing is not None:
                if (existing.driver, existing.options, existing.labels) != (driver, options, labels):
                    raise Conflict(f"create {name}: a volume with this name already exists with different "
                                   "driver, options or labels")
                return _volume(engine, tx, existing)
            target = _path(engine, name)
            _to_trash(engine, target)  # a directory without a row: a crashed create (we hold the write lock)
            record = VolumeRecord(name, driver, labels, options, anonymous, time.time())
            records.insert(tx, record)
            os.rename(staging, target)
            volume = _volume(engine, tx, record)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    gc.empty_trash(layout)
    events.record(engine, "volume", "create", volume.name, {"driver": driver})  # only a new volume gets here
    return volume


def list_volumes(engine: Engine, filters: dict[str, list[str]] | None = None) -> list[Volume]:
    """Volumes sorted by name, with Docker's filters: dangling, name (regexp search), label, driver."""
    filters = filters or {}
    check_filters(filters, LS_FILTERS)
    dangling = bool_filter(filters, "dangling")
    try:
        name_patterns = [re.compile(p) for p in filters.get("name", [])]
    except re.error as e:
        raise InvalidArgument(f"invalid name filter: {e}") from None
    conn = engine.db.conn
    out = []
    for record in records.all_volumes(conn):
        volume = _volume(engine, conn, record)
        if dangling is not None and dangling != (not volume.users):
            continue
        if name_patterns and not any(p.search(volume.name) for p in name_patterns):
            continue
        if "driver" in filters and volume.driver not in filters["driver"]:
            continue
        if "label" in filters and not labels_match(volume.labels, filters["label"]):
            continue
        out.append(volume)
    return out


def get(engine: Engine, name: str) -> Volume:
    conn = engine.db.conn
    record = records.get(conn, name)
    if record is None:
        raise NotFound(f"No such volume: {name}")
    return _volume(engine, conn, record)


def inspect(engine: Engine, name: str) -> dict[str, Any]:
    """Docker's ``volume inspect`` object (keys in Docker's order)."""
    volume = get(engine, name)
    return {"CreatedAt": created_at(volume.created), "Driver": volume.driver, "Labels": volume.labels or None,
            "Mountpoint": volume.mountpoint, "Name": volume.name, "Options": volume.options or None,
            "Scope": "local"}


def _remove_in(engine: Engine, tx: sqlite3.Connection, name: str) -> int:
    """Delete the row and move the directory to the trash; returns the bytes it held."""
    path = _path(engine, name)
    size = directory_size(str(path / "_data"))
    records.delete(tx, name)
    _to_trash(engine, path)
    return size


def remove(engine: Engine, name: str, *, force: bool = False) -> bool:
    """Remove a volume; False when it did not exist and ``force`` was given (Docker's ``rm -f``)."""
    with engine.db.transaction() as tx:
        if records.get(tx, name) is None:
            if force:
                return False
            raise NotFound(f"No such volume: {name}")
        users = volume_users(tx, name)
        if users:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
        _remove_in(engine, tx, name)
    gc.empty_trash(engine.layout)
    events.record(engine, "volume", "destroy", name, {"driver": DRIVER})
    return True


def check_prune_filters(filters: dict[str, list[str]]) -> None:
    check_filters(filters, PRUNE_FILTERS)
    bool_filter(filters, "all")


def prune(engine: Engine, *, all: bool = False, filters: dict[str, list[str]] | None = None) -> PruneReport:
    """Remove unused volumes: only anonymous ones unless ``all`` (Docker 23+), with label/label! filters."""
    filters = dict(filters or {})
    check_prune_filters(filters)
    if bool_filter(filters, "all"):
        all = True
    report = PruneReport()
    with engine.db.transaction() as tx:
        for record in records.all_volumes(tx):
            if not all and not record.anonymous:
                continue
            if "label" in filters and not labels_match(record.labels, filters["label"]):
                continue
            if "label!" in filters and any(labels_match(record.labels, [item]) for item in filters["label!"]):
                continue
            if volume_users(tx, record.name):
                continue
            report.reclaimed += _remove_in(engine, tx, record.name)
            report.deleted.append(record.name)
    gc.empty_trash(engine.layout)
    return report


def disk_usage(engine: Engine) -> tuple[int, int, int, int]:
    """(volumes, volumes in use, bytes in all volumes, bytes in unused volumes) for ``system df``."""
    conn = engine.db.conn
    count = active = size = reclaimable = 0
    for record in records.all_volumes(conn):
        count += 1
        used = directory_size(mountpoint(engine, record.name))
        size += used
        if volume_users(conn, record.name):
            active += 1
        else:
            reclaimable += used
    return count, active, size, reclaimable


def leftovers(engine: Engine, conn: sqlite3.Connection) -> list[str]:
    """Directories under ``volumes/`` that no row accounts for (a create killed between rename and commit):
    for ``system check`` to report and ``--repair`` to move to the trash."""
    known = records.names(conn)
    return [entry.path for entry in os.scandir(engine.layout.volumes) if entry.name not in known]


def problems(engine: Engine, conn: sqlite3.Connection) -> list[str]:
    """Rows whose data directory is missing: never produced by sampan, reported by ``system check``."""
    return [f"volume {record.name}: directory {mountpoint(engine, record.name)} is missing"
            for record in records.all_volumes(conn) if not os.path.isdir(mountpoint(engine, record.name))]
