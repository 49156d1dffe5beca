"""``RUN --mount=...`` and ``build --secret``: BuildKit's syntax, parsed into plain data.

The classic builder has no ``--mount``; sampan follows BuildKit's documented behaviour (Dockerfile reference,
"RUN --mount"):

- ``type=bind`` (the default): ``source`` (default the root) of ``from`` (a stage, an image, or the build
  context when absent) at ``target``, read-only unless ``rw`` (writes are then thrown away);
- ``type=cache``: a directory that persists across builds, keyed by ``id`` (default: the target), optionally
  seeded from ``from``/``source``; ``sharing`` shared|private|locked, ``mode``/``uid``/``gid`` of a new one;
- ``type=tmpfs``: an empty tmpfs (``size``);
- ``type=secret``: the secret ``id`` given to ``build --secret``, at ``target`` (default ``/run/secrets/<id>``),
  ``mode`` 0400, skipped when not given unless ``required``.

Nothing under a mount ends up in the step's layer, and a mount point the step had to create is removed from it.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass

from sampan.errors import InvalidArgument

TYPES = ("bind", "cache", "tmpfs", "secret")
_BOOLS = {"true": True, "1": True, "false": False, "0": False}


@dataclass
class RunMount:
    type: str
    target: str
    source: str = ""
    from_: str = ""  # a stage or an image; "" = the build context (bind), nothing (cache)
    readonly: bool = False
    id: str = ""
    sharing: str = "shared"
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    required: bool = False
    size: str = ""


def _bool(key: str, value: str | None) -> bool:
    if value is None:
        return True
    parsed = _BOOLS.get(value.lower())
    if parsed is None:
        raise InvalidArgument(f"invalid value for {key}: {value}")
    return parsed


def _int(key: str, value: str, base: int = 10) -> int:
    try:
        return int(value, base)
    except ValueError:
        raise InvalidArgument(f"invalid value for {key}: {value}") from None


def parse_mount(spec: str) -> RunMount:
    """One ``--mount`` value (already substituted); raises InvalidArgument in BuildKit's words."""
    fields: dict[str, str | None] = {}
    for item in spec.split(","):
        if not item:
            continue
        key, eq, value = item.partition("=")
        fields[key.strip().lower()] = value if eq else None
    kind = fields.pop("type", None) or "bind"
    if kind not in TYPES:
        raise InvalidArgument(f"unsupported mount type \"{kind}\"" + (" (ssh: not supported by sampan)"
                                                                      if kind == "ssh" else ""))
    mount = RunMount(kind, "", readonly=kind == "bind")
    for key, value in fields.items():
        if key in ("target", "dst", "destination"):
            mount.target = value or ""
        elif key in ("source", "src"):
            mount.source = value or ""
        elif key == "from":
            mount.from_ = value or ""
        elif key in ("readonly", "ro"):
            mount.readonly = _bool(key, value)
        elif key in ("rw", "readwrite"):
            mount.readonly = not _bool(key, value)
        elif key == "id":
            mount.id = value or ""
        elif key == "sharing":
            if value not in ("shared", "private", "locked"):
                raise InvalidArgument(f"unsupported sharing value \"{value}\"")
            mount.sharing = value
        elif key == "mode":
            mount.mode = _int(key, value or "", 8)
        elif key in ("uid", "gid"):
            setattr(mount, key, _int(key, value or ""))
        elif key == "required":
            mount.required = _bool(key, value)
        elif key == "size" and kind == "tmpfs":
            mount.size = value or ""
        else:
            raise InvalidArgument(f"unexpected key '{key}' in '{_item(spec, key)}'")
    if kind == "secret":
        if not mount.id:
            mount.id = posixpath.basename(mount.target) if mount.target else ""
        if not mount.id:
            raise InvalidArgument("secret mount requires an id or a target")
        mount.target = mount.target or f"/run/secrets/{mount.id}"
        if mount.mode is None:
            mount.mode = 0o400
    if not mount.target:
        raise InvalidArgument(f"mount {kind}: target is required")
    if kind == "cache" and not mount.id:
        mount.id = mount.target
    mount.target = posixpath.normpath(mount.target if mount.target.startswith("/") else "/" + mount.target)
    return mount


def _item(spec: str, key: str) -> str:
    return next((item for item in spec.split(",") if item.partition("=")[0].strip().lower() == key), key)


def parse_secret(spec: str) -> tuple[str, bytes]:
    """A ``build --secret`` value: ``id=ID[,src=FILE|,env=VAR]`` (``type=file|env`` too); without a source,
    the file or variable named like the id. Returns (id, the secret's bytes), read now: the build never reads
    host paths again."""
    fields = dict(item.partition("=")[::2] for item in spec.split(",") if item)
    secret_id = fields.get("id", "")
    source = fields.get("src") or fields.get("source") or ""
    env = fields.get("env", "")
    kind = fields.get("type", "env" if env else "file")
    unknown = set(fields) - {"id", "src", "source", "env", "type"}
    if unknown or kind not in ("file", "env"):
        raise InvalidArgument(f"invalid secret {spec!r}: use id=ID,src=FILE or id=ID,env=VAR")
    if not secret_id:
        secret_id = posixpath.basename(source) or env
    if not secret_id:
        raise InvalidArgument(f"invalid secret {spec!r}: no id")
    if kind == "env" or (not source and secret_id in os.environ):
        value = os.environ.get(env or secret_id)
        if value is None:
            raise InvalidArgument(f"secret {secret_id}: environment variable {env or secret_id} is not set")
        return secret_id, value.encode()
    try:
        with open(source or secret_id, "rb") as f:
            return secret_id, f.read()
    except OSError as e:
        raise InvalidArgument(f"secret {secret_id}: {e.strerror}: {source or secret_id}") from None
