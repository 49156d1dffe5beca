"""``docker events``: what happened to containers, images and volumes, recorded by whichever process did it.

Without a daemon there is no process to keep Docker's in-memory event ring, so events go to a file under the
storage root, one JSON object per line (podman keeps them the same way). Each event is one ``write`` of one line
with ``O_APPEND``, so processes writing at once never interleave within a line. The log is rotated to
``events.log.1`` past ``MAX_BYTES`` under a file lock; readers read the rotated file first.

Events have Docker's shape: ``Type``, ``Action``, ``Actor`` (``ID`` and ``Attributes``), ``scope``, ``time`` and
``timeNano``, plus the old top-level ``status``/``id``/``from`` for containers and images.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from sampan.engine.context import Engine
from sampan.engine.filters import check_filters
from sampan.errors import InvalidArgument

MAX_BYTES = 4 * 1024 * 1024
_FILE = "events.log"
_FILTERS = frozenset({"container", "event", "image", "label", "type", "volume", "network"})
_POLL_S = 0.1


def _path(engine: Engine) -> str:
    return str(engine.layout.root / _FILE)


def record(engine: Engine, type_: str, action: str, actor_id: str, attributes: dict[str, str] | None = None) -> None:
    """Append one event (best effort: a full disk must not fail the operation that caused it)."""
    now = time.time_ns()
    event: dict[str, Any] = {"Type": type_, "Action": action,
                             "Actor": {"ID": actor_id, "Attributes": dict(attributes or {})},
                             "scope": "local", "time": now // 10**9, "timeNano": now}
    if type_ in ("container", "image"):
        event = {"status": action, "id": actor_id,
                 **({"from": attributes["image"]} if attributes and "image" in attributes else {}), **event}
    line = (json.dumps(event, separators=(",", ":")) + "\n").encode()
    path = _path(engine)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if size > MAX_BYTES:
            _rotate(engine, path)
    except OSError:
        pass


def _rotate(engine: Engine, path: str) -> None:
    from sampan.store.locks import FileLock

    with FileLock(engine.layout.locks, "events"):
        try:
            if os.stat(path).st_size > MAX_BYTES:
                os.rename(path, path + ".1")
        except FileNotFoundError:
            pass


def container_attributes(record_: Any, **extra: str) -> dict[str, str]:
    """Docker's container event attributes: the image, the name and the labels."""
    return {**(record_.config.get("Labels") or {}), "image": record_.image, "name": record_.name, **extra}


# ---------------------------------------------------------------------------------------------- reading


def _matches(event: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    actor = event["Actor"]
    attributes = actor.get("Attributes") or {}
    checks: list[tuple[str, Callable[[str], bool]]] = [
        ("type", lambda v: event["Type"] == v),
        ("event", lambda v: event["Action"] == v or event["Action"].split(":")[0] == v),
        ("container", lambda v: event["Type"] == "container" and (actor["ID"].startswith(v)
                                                                  or attributes.get("name") == v)),
        ("image", lambda v: attributes.get("image") == v or (event["Type"] == "image" and
                                                              (actor["ID"] == v or attributes.get("name") == v))),
        ("volume", lambda v: event["Type"] == "volume" and actor["ID"] == v),
        ("network", lambda v: event["Type"] == "network" and (actor["ID"] == v or attributes.get("name") == v)),
        ("label", lambda v: attributes.get(v.partition("=")[0]) == v.partition("=")[2] if "=" in v
         else v in attributes),
    ]
    return all(any(test(value) for value in filters[key]) for key, test in checks if key in filters)


def _lines(path: str, offset: int = 0) -> tuple[list[bytes], int]:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], 0
    end = data.rfind(b"\n") + 1
    return data[:end].splitlines(), offset + end


def read(engine: Engine, *, since: float | None = None, until: float | None = None,
         filters: dict[str, list[str]] | None = None, follow: bool = False,
         stop: Callable[[], bool] | None = None) -> Iterator[dict[str, Any]]:
    """Events in order: those recorded since ``since`` (all without), then with ``follow`` new ones as they come
    until ``until`` passes (or ``stop()``)."""
    filters = dict(filters or {})
    check_filters(filters, _FILTERS)
    for value in filters.get("type", []):
        if value not in ("container", "image", "volume", "network", "daemon", "plugin", "service", "node",
                         "secret", "config"):
            raise InvalidArgument(f"Invalid filter 'type={value}'")
    path = _path(engine)
    since_ns = None if since is None else int(since * 1e9)
    until_ns = None if until is None else int(until * 1e9)
    old, _ = _lines(path + ".1")
    lines, offset = _lines(path)
    for line in old + lines:
        event = _decode(line)
        if event is None or (since_ns is not None and event["timeNano"] < since_ns):
            continue
        if until_ns is not None and event["timeNano"] > until_ns:
            return
        if _matches(event, filters):
            yield event
    while follow:
        if (until_ns is not None and time.time_ns() > until_ns) or (stop is not None and stop()):
            return
        time.sleep(_POLL_S)
        try:
            if os.stat(path).st_size < offset:
                offset = 0  # rotated
        except FileNotFoundError:
            offset = 0
        lines, offset = _lines(path, offset)
        for line in lines:
            event = _decode(line)
            if event is None:
                continue
            if until_ns is not None and event["timeNano"] > until_ns:
                return
            if _matches(event, filters):
                yield event


def _decode(line: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "timeNano" in event and "Actor" in event else None
