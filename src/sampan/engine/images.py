"""Image verbs: look up, list, tag, remove, inspect, history and prune — with Docker's semantics.

Lookups follow the Docker daemon: a name is first a reference (``busybox`` means ``docker.io/library/busybox:latest``,
``name@sha256:...`` a repo digest), then an image ID or unique ID prefix.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from typing import Any

from sampan.engine import events
from sampan.engine.context import Engine
from sampan.engine.filters import bool_filter, check_filters, labels_match
from sampan.errors import Conflict, InvalidArgument, InvalidReference, NotFound
from sampan.image import digest as _digest
from sampan.image import reference as refs
from sampan.patterns import glob_regex
from sampan.store import images as records

TYPE_CHECKING = False
if TYPE_CHECKING:
    from sampan.image.config import ImageConfig

# Lookups and tags are all that some verbs need (a cached build): the config parser, the garbage collector, the
# container records and the time units are imported by the verbs that use them.

_HEX_PREFIX = re.compile(r"(?:sha256:)?([0-9a-f]{1,64})")


# ---------------------------------------------------------------------------------------------- lookups


def _lookup(conn: sqlite3.Connection, text: str) -> tuple[str, refs.Reference | None]:
    """(image ID, the reference it was found by, if any)."""
    if text.startswith("sha256:") and _digest.is_digest(text):
        if records.get(conn, text) is not None:
            return text, None
        raise NotFound(f"No such image: {text}")
    ref: refs.Reference | None = None
    try:
        ref = refs.parse_tagged(text)
    except InvalidReference:
        if not _HEX_PREFIX.fullmatch(text):
            raise
    if ref is not None:
        found = (records.by_digest(conn, ref.name, ref.digest) if ref.digest
                 else records.by_tag(conn, ref.name, ref.tag or refs.DEFAULT_TAG))
        if found:
            return found, ref
    if (match := _HEX_PREFIX.fullmatch(text)) is not None:
        candidates = records.by_id_prefix(conn, match.group(1))
        if len(candidates) > 1:
            raise InvalidArgument(f"ambiguous image ID prefix {text!r}: more than one image matches")
        if candidates:
            return candidates[0], None
    raise NotFound(f"No such image: {ref.familiar() if ref else text}")


def resolve(engine: Engine, name: str) -> str:
    """The image ID that ``name`` (reference, ID or ID prefix) denotes."""
    return _lookup(engine.db.conn, name)[0]


def lookup(engine: Engine, name: str) -> tuple[str, refs.Reference | None]:
    """The image ID and, when ``name`` was a reference rather than an ID, that reference (tag defaulted)."""
    return _lookup(engine.db.conn, name)


def _repo_tags(conn: sqlite3.Connection, image_id: str) -> list[str]:
    return [refs.Reference(*_split_repo(repo), tag=tag).familiar() for repo, tag in records.tags_of(conn, image_id)]


def _repo_digests(conn: sqlite3.Connection, image_id: str) -> list[str]:
    return [refs.Reference(*_split_repo(repo), digest=digest).familiar()
            for repo, digest in records.digests_of(conn, image_id)]


def _split_repo(repo: str) -> tuple[str, str]:
    domain, _, path = repo.partition("/")
    return domain, path


def load_config(engine: Engine, image_id: str) -> ImageConfig:
    from sampan.image.config import ImageConfig

    return ImageConfig.parse(engine.content.read(image_id))


# ---------------------------------------------------------------------------------------------- listing


class ImageSummary:
    """One image as ``images`` and the API's ``/images/json`` see it. This module's records are plain classes:
    a dataclass costs about a millisecond at every start of a command that looks images up (a cached build)."""

    def __init__(self, id: str, repo_tags: list[str], repo_digests: list[str], created: float, size: int,
                 labels: dict[str, str], parent: str, containers: int = 0) -> None:
        self.id, self.repo_tags, self.repo_digests, self.created = id, repo_tags, repo_digests, created
        self.size, self.labels, self.parent, self.containers = size, labels, parent, containers


def _glob(pattern: str) -> re.Pattern[str]:
    """Go's path.Match (see ``sampan.patterns``)."""
    try:
        return re.compile(glob_regex(pattern))
    except ValueError:
        raise InvalidArgument(f"invalid reference filter pattern: {pattern!r}") from None


IMAGE_FILTERS = frozenset({"dangling", "reference", "label", "before", "since"})


def list_images(engine: Engine, *, all: bool = False, filters: dict[str, list[str]] | None = None,
                repository: str | None = None) -> list[ImageSummary]:
    """Images newest first, with Docker's filters (dangling, reference, label, before, since)."""
    filters = filters or {}
    check_filters(filters, IMAGE_FILTERS)
    conn = engine.db.conn
    rows = records.all_images(conn)
    tags: dict[str, list[str]] = {}
    for row in records.all_tags(conn):
        tags.setdefault(row["image_id"], []).append(
            refs.Reference(*_split_repo(row["repo"]), tag=row["tag"]).familiar())
    digests: dict[str, list[str]] = {}
    for row in records.all_repo_digests(conn):
        digests.setdefault(row["image_id"], []).append(
            refs.Reference(*_split_repo(row["repo"]), digest=row["digest"]).familiar())
    parents = {row["parent"] for row in rows if row["parent"]}
    dangling = bool_filter(filters, "dangling")
    patterns = [_glob(p) for p in filters.get("reference", [])]
    if repository:
        patterns.append(_repository_pattern(repository))
    created_bounds = _time_bounds(engine, filters)
    out = []
    for row in rows:
        image_tags = tags.get(row["id"], [])
        if not all and not image_tags and row["id"] in parents:
            continue  # an intermediate image: shown only with --all
        if dangling is not None and dangling != (not image_tags):
            continue
        if patterns:
            image_tags = [t for t in image_tags if any(_ref_matches(p, t) for p in patterns)]
            if not image_tags:
                continue
        labels = json.loads(row["labels"])
        if "label" in filters and not labels_match(labels, filters["label"]):
            continue
        if not created_bounds[0] < row["created"] < created_bounds[1]:
            continue
        out.append(ImageSummary(row["id"], image_tags, digests.get(row["id"], []), row["created"], row["size"],
                                labels, row["parent"]))
    return out


def _repository_pattern(repository: str) -> re.Pattern[str]:
    ref = refs.parse(repository)
    return re.compile(re.escape(ref.familiar_name) + (":" + re.escape(ref.tag) if ref.tag else r"(?::.*)?"))


def _ref_matches(pattern: re.Pattern[str], familiar: str) -> bool:
    """Docker's FamiliarMatch: the pattern may match ``name:tag`` or just ``name``."""
    return bool(pattern.fullmatch(familiar) or pattern.fullmatch(familiar.rsplit(":", 1)[0]))


def _time_bounds(engine: Engine, filters: dict[str, list[str]]) -> tuple[float, float]:
    conn = engine.db.conn
    low, high = float("-inf"), float("inf")
    for name in filters.get("since", []):
        low = max(low, records.get(conn, resolve(engine, name))["created"])
    for name in filters.get("before", []):
        high = min(high, records.get(conn, resolve(engine, name))["created"])
    return low, high


# ---------------------------------------------------------------------------------------------- tag / remove


def tag(engine: Engine, source: str, target: str) -> str:
    """``docker tag SOURCE TARGET``: point TARGET (a name, ``:latest`` by default) at SOURCE's image."""
    new = refs.parse_tag_target(target)
    with engine.db.transaction() as tx:
        image_id, _ = _lookup(tx, source)
        records.set_tag(tx, new.name, new.tag or refs.DEFAULT_TAG, image_id)
    events.record(engine, "image", "tag", image_id, {"name": new.familiar()})
    return image_id


class RemoveReport:
    """What ``rmi``/``prune`` did, in Docker's order: ("Untagged", ref) and ("Deleted", id) lines; ``events``
    are (action, image ID, name) to record."""

    def __init__(self) -> None:
        self.actions: list[tuple[str, str]] = []
        self.reclaimed = 0
        self.events: list[tuple[str, str, str]] = []


def remove(engine: Engine, name: str, *, force: bool = False) -> RemoveReport:
    """``docker rmi NAME``: untag a reference, or delete an image by ID; unused layers go with it."""
    from sampan.store import gc

    report = RemoveReport()
    with engine.db.transaction() as tx:
        _remove_in(tx, engine, name, force, report)
    gc.empty_trash(engine.layout)
    _record_events(engine, report)
    return report


def _remove_in(tx: sqlite3.Connection, engine: Engine, name: str, force: bool, report: RemoveReport) -> None:
    from sampan.store import containers as container_records

    image_id, ref = _lookup(tx, name)
    users = container_records.image_users(tx, image_id)
    if ref is not None:
        last = len(records.tags_of(tx, image_id)) + len(records.digests_of(tx, image_id)) <= 1
        if users and last and not force:
            raise Conflict(f'conflict: unable to remove repository reference "{name}" (must force) - '
                           f"container {users[0][:12]} is using its referenced image "
                           f"{_digest.short_id(image_id)}")
        _untag(tx, ref, report, image_id)
        if records.tags_of(tx, image_id) or records.children_of(tx, image_id) or users:
            return
        for repo, digest in records.digests_of(tx, image_id):
            records.remove_repo_digest(tx, repo, digest)
            report.actions.append(("Untagged", refs.Reference(*_split_repo(repo), digest=digest).familiar()))
    else:
        _check_deletable(tx, image_id, force)
        if users:
            _check_users(tx, image_id, users, force)
            _untag_all(tx, image_id, report)
            return  # forced: untagged, kept for its containers (dangling, as Docker)
        _untag_all(tx, image_id, report)
    _delete(tx, engine, image_id, report)


def _record_events(engine: Engine, report: RemoveReport) -> None:
    for action, image_id, name in report.events:
        events.record(engine, "image", action, image_id, {"name": name or image_id})


def _check_users(tx: sqlite3.Connection, image_id: str, users: list[str], force: bool) -> None:
    from sampan.store import containers as container_records

    short = _digest.short_id(image_id)
    for container_id in users:
        record = container_records.get(tx, container_id)
        if record is not None and record.status in ("running", "paused", "restarting"):
            raise Conflict(f"conflict: unable to delete {short} (cannot be forced) - image is being used by "
                           f"running container {container_id[:12]}")
    if not force:
        raise Conflict(f"conflict: unable to delete {short} (must be forced) - image is being used by stopped "
                       f"container {users[0][:12]}")


def _check_deletable(tx: sqlite3.Connection, image_id: str, force: bool) -> None:
    short = _digest.short_id(image_id)
    if records.children_of(tx, image_id):
        raise Conflict(f"conflict: unable to delete {short} (cannot be forced) - image has dependent child images")
    repos = {repo for repo, _ in records.tags_of(tx, image_id)}
    if len(repos) > 1 and not force:
        raise Conflict(
            f"conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories")


def _untag(tx: sqlite3.Connection, ref: refs.Reference, report: RemoveReport, image_id: str) -> None:
    if ref.digest:
        records.remove_repo_digest(tx, ref.name, ref.digest)
    else:
        records.remove_tag(tx, ref.name, ref.tag or refs.DEFAULT_TAG)
    report.actions.append(("Untagged", ref.familiar()))
    report.events.append(("untag", image_id, ref.familiar()))


def _untag_all(tx: sqlite3.Connection, image_id: str, report: RemoveReport) -> None:
    for repo, tag_name in records.tags_of(tx, image_id):
        _untag(tx, refs.Reference(*_split_repo(repo), tag=tag_name), report, image_id)
    for repo, digest in records.digests_of(tx, image_id):
        _untag(tx, refs.Reference(*_split_repo(repo), digest=digest), report, image_id)


def _delete(tx: sqlite3.Connection, engine: Engine, image_id: str, report: RemoveReport) -> None:
    from sampan.store import gc

    records.delete_image(tx, image_id)
    report.actions.append(("Deleted", image_id))
    report.events.append(("delete", image_id, ""))
    collected = gc.collect(tx, engine.layout, engine.content)
    report.actions.extend(("Deleted", chain) for chain in collected.snapshots)
    report.reclaimed += collected.reclaimed


def prune(engine: Engine, *, all: bool = False, filters: dict[str, list[str]] | None = None) -> RemoveReport:
    """``image prune``: remove dangling images (``all``: every image not in use)."""
    from sampan.store import containers as container_records
    from sampan.store import gc

    filters = dict(filters or {})
    check_filters(filters, frozenset({"label", "until", "label!"}))
    report = RemoveReport()
    with engine.db.transaction() as tx:
        tagged = {row["image_id"] for row in records.all_tags(tx)}
        for row in records.all_images(tx):
            if (row["id"] in tagged and not all) or records.children_of(tx, row["id"]):
                continue
            if container_records.image_users(tx, row["id"]):
                continue
            if not _prune_filter_matches(json.loads(row["labels"]), row["created"], filters):
                continue
            _untag_all(tx, row["id"], report)
            _delete(tx, engine, row["id"], report)
    gc.empty_trash(engine.layout)
    _record_events(engine, report)
    return report


def _prune_filter_matches(labels: dict[str, str], created: float, filters: dict[str, list[str]]) -> bool:
    if "label" in filters and not labels_match(labels, filters["label"]):
        return False
    if "label!" in filters and any(labels_match(labels, [item]) for item in filters["label!"]):
        return False
    if "until" in filters:
        from sampan.units import parse_timestamp

        if created >= min(parse_timestamp(value, time.time()) for value in filters["until"]):
            return False
    return True


# ---------------------------------------------------------------------------------------------- inspect / history


_CONFIG_DEFAULTS: dict[str, Any] = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None, "Cmd": None,
    "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": None,
}


def _docker_config(container: dict[str, Any]) -> dict[str, Any]:
    out = dict(_CONFIG_DEFAULTS)
    out.update(container)
    return out


def inspect(engine: Engine, name: str) -> dict[str, Any]:
    """Docker's ``ImageInspect`` JSON for one image."""
    from sampan.image.config import format_time

    conn = engine.db.conn
    image_id = resolve(engine, name)
    row = records.get(conn, image_id)
    config = load_config(engine, image_id)
    raw = config.raw
    layer_dirs = [str(engine.layout.snapshots / _digest.hex_of(layer["chain_id"]))
                  for layer in records.layers_of(conn, image_id)]
    out: dict[str, Any] = {
        "Id": image_id,
        "RepoTags": _repo_tags(conn, image_id),
        "RepoDigests": _repo_digests(conn, image_id),
        "Parent": row["parent"],
        "Comment": raw.get("comment", ""),
        "Created": raw.get("created") or format_time(0),
        "Container": raw.get("container", ""),
        "ContainerConfig": _docker_config(raw.get("container_config") or {}),
        "DockerVersion": raw.get("docker_version", ""),
        "Author": raw.get("author", ""),
        "Config": _docker_config(config.container),
        "Architecture": config.architecture,
        "Os": config.os,
        "Size": row["size"],
        "GraphDriver": {"Data": {"LowerDir": ":".join(reversed(layer_dirs))} if layer_dirs else None,
                        "Name": "overlayfs"},
        "RootFS": {"Type": "layers", "Layers": config.diff_ids},
        "Metadata": {"LastTagTime": format_time(row["last_tag_time"]) if row["last_tag_time"]
                     else "0001-01-01T00:00:00Z"},
    }
    if raw.get("variant"):
        out["Variant"] = raw["variant"]
    if raw.get("os.version"):
        out["OsVersion"] = raw["os.version"]
    return out


class HistoryEntry:
    """``id`` is the image ID for the top entry, "<missing>" for the others (as Docker)."""

    def __init__(self, id: str, created: float, created_by: str, size: int, comment: str, tags: list[str]) -> None:
        self.id, self.created, self.created_by, self.size, self.comment, self.tags = \
            id, created, created_by, size, comment, tags


def history(engine: Engine, name: str) -> list[HistoryEntry]:
    """The image's history, newest first, with each non-empty entry's layer size."""
    from sampan.image.config import parse_time

    conn = engine.db.conn
    image_id = resolve(engine, name)
    config = load_config(engine, image_id)
    sizes = [layer["size"] or 0 for layer in records.layers_of(conn, image_id)]
    entries = config.history or [{"created": config.raw.get("created", ""), "created_by": ""}
                                 for _ in sizes]
    out: list[HistoryEntry] = []
    layer_index = 0
    for entry in entries:
        size = 0
        if not entry.get("empty_layer"):
            size = sizes[layer_index] if layer_index < len(sizes) else 0
            layer_index += 1
        created = entry.get("created")
        out.append(HistoryEntry("<missing>", parse_time(created) if isinstance(created, str) else 0.0,
                                str(entry.get("created_by", "")), size, str(entry.get("comment", "")), []))
    out.reverse()
    if out:
        top = out[0]
        out[0] = HistoryEntry(image_id, top.created, top.created_by, top.size, top.comment,
                              _repo_tags(conn, image_id))
    return out
