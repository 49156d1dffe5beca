"""The image configuration (OCI image config / Docker image JSON).

The config's bytes are kept verbatim in the content store, because their digest *is* the image ID: rewriting them
(even re-ordering keys) would change the ID. This class is a validated, read-only view of those bytes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sampan.errors import CorruptContent
from sampan.image import digest as _digest
from sampan.image.manifest import canonical_json, load_json

_MACHINE_TO_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
                      "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def host_architecture() -> str:
    """The host's architecture in Go's naming, which image configs and manifest lists use (from uname, as
    ``platform.machine`` reads it: that module costs every command a millisecond to import)."""
    machine = os.uname().machine
    return _MACHINE_TO_GOARCH.get(machine, machine)


def parse_time(value: str) -> float:
    """RFC 3339 timestamps as Go writes them (nanoseconds allowed); unparsable ones count as the epoch."""
    text = value.strip()
    if "." in text:
        head, _, frac = text.partition(".")
        digits = len(frac) - len(frac.lstrip("0123456789"))
        text = f"{head}.{frac[:digits][:6].ljust(6, '0')}{frac[digits:]}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return 0.0
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def format_time(ts: float) -> str:
    """Go's RFC3339Nano in UTC, as Docker writes ``created`` (trailing fraction zeros dropped)."""
    whole = int(ts // 1)
    nanos = round((ts - whole) * 1e9)
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, 0
    base = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return base + (f".{nanos:09d}".rstrip("0") if nanos else "") + "Z"


@dataclass(frozen=True)
class ImageConfig:
    raw: dict[str, Any]

    @classmethod
    def parse(cls, data: bytes) -> ImageConfig:
        obj = load_json(data, "image config")
        rootfs = obj.get("rootfs")
        if not isinstance(rootfs, dict) or rootfs.get("type") != "layers" \
                or not isinstance(rootfs.get("diff_ids"), list):
            raise CorruptContent("image config: rootfs must be {\"type\": \"layers\", \"diff_ids\": [...]}")
        for diff_id in rootfs["diff_ids"]:
            if not isinstance(diff_id, str) or not _digest.is_digest(diff_id):
                raise CorruptContent(f"image config: invalid diff_id {str(diff_id)[:80]!r}")
        for key in ("config", "container_config"):
            if obj.get(key) is not None and not isinstance(obj[key], dict):
                raise CorruptContent(f"image config: {key!r} must be an object")
        if obj.get("history") is not None and not (
                isinstance(obj["history"], list) and all(isinstance(h, dict) for h in obj["history"])):
            raise CorruptContent("image config: 'history' must be a list of objects")
        return cls(obj)

    def to_bytes(self) -> bytes:
        return canonical_json(self.raw)

    @property
    def diff_ids(self) -> list[str]:
        return list(self.raw["rootfs"]["diff_ids"])

    @property
    def container(self) -> dict[str, Any]:
        """The runtime defaults (Env, Cmd, Entrypoint, Labels, ...): the ``config`` key."""
        return self.raw.get("config") or {}

    @property
    def labels(self) -> dict[str, str]:
        labels = self.container.get("Labels") or {}
        return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}

    @property
    def created(self) -> float:
        created = self.raw.get("created")
        return parse_time(created) if isinstance(created, str) else 0.0

    @property
    def history(self) -> list[dict[str, Any]]:
        return list(self.raw.get("history") or [])

    @property
    def architecture(self) -> str:
        return str(self.raw.get("architecture") or "")

    @property
    def os(self) -> str:
        return str(self.raw.get("os") or "")


def new_config(diff_ids: list[str], *, created: float, container: dict[str, Any],
               history: list[dict[str, Any]], author: str = "", comment: str = "") -> ImageConfig:
    """A fresh config for an image sampan makes itself (import, bootstrap, commit, build)."""
    raw: dict[str, Any] = {"architecture": host_architecture(), "os": "linux"}
    if author:
        raw["author"] = author
    if comment:
        raw["comment"] = comment
    raw.update({"config": container, "created": format_time(created), "history": history,
                "rootfs": {"type": "layers", "diff_ids": diff_ids}})
    return ImageConfig(json.loads(json.dumps(raw)))
