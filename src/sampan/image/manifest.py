"""OCI image manifests and indexes, and Docker schema 2 manifests and manifest lists, as typed data.

Manifests arrive from archives and registries, so parsing is validation: every descriptor's digest, size and media
type is checked before anything uses it to name a file or decide what to unpack. The raw bytes are kept by the
caller (their digest is the manifest's identity), these classes are the checked reading of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sampan.errors import CorruptContent, Unsupported
from sampan.image import digest as _digest
from sampan.image import mediatypes as mt

MAX_MANIFEST_BYTES = 4 << 20


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.variant:
            out["variant"] = self.variant
        return out

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    urls: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = self.platform.to_json()
        return out


@dataclass(frozen=True)
class Manifest:
    """An image manifest (OCI or Docker schema 2): one config plus ordered layers."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schemaVersion": 2, "mediaType": self.media_type,
                               "config": self.config.to_json(),
                               "layers": [layer.to_json() for layer in self.layers]}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())


@dataclass(frozen=True)
class Index:
    """An OCI image index or Docker manifest list: manifests per platform."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schemaVersion": 2, "mediaType": self.media_type,
                               "manifests": [m.to_json() for m in self.manifests]}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())


def canonical_json(obj: Any) -> bytes:
    """Compact, key-order-preserving JSON, the form sampan writes and hashes."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def load_json(data: bytes, what: str) -> dict[str, Any]:
    """Parse untrusted JSON that must be an object, with a size cap."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise CorruptContent(f"{what} is too large ({len(data)} bytes)")
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptContent(f"{what} is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise CorruptContent(f"{what} is not a JSON object")
    return obj


def _str_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in value.items()):
        raise CorruptContent(f"{what}: annotations must map strings to strings")
    return dict(value)


def _platform(value: Any, what: str) -> Platform | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("os"), str) \
            or not isinstance(value.get("architecture"), str):
        raise CorruptContent(f"{what}: platform needs string 'os' and 'architecture'")
    return Platform(value["os"], value["architecture"], value.get("variant") or None,
                    value.get("os.version") or None)


def parse_descriptor(value: Any, what: str) -> Descriptor:
    if not isinstance(value, dict):
        raise CorruptContent(f"{what}: descriptor is not an object")
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise CorruptContent(f"{what}: descriptor has no mediaType")
    if not isinstance(digest, str) or not _digest.is_digest(digest):
        if isinstance(digest, str) and _digest.is_other_algorithm(digest):
            raise Unsupported(f"{what}: unsupported digest algorithm in {digest[:80]!r}")
        raise CorruptContent(f"{what}: invalid digest {str(digest)[:80]!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise CorruptContent(f"{what}: invalid size {size!r}")
    urls = value.get("urls") or ()
    if not isinstance(urls, list | tuple) or not all(isinstance(u, str) for u in urls):
        raise CorruptContent(f"{what}: urls must be strings")
    return Descriptor(media_type, digest, size, _str_map(value.get("annotations"), what),
                      _platform(value.get("platform"), what), tuple(urls))


def parse(data: bytes, media_type: str | None = None, what: str = "manifest") -> Manifest | Index:
    """Parse a manifest or index. ``media_type`` is the transport's (HTTP header, descriptor), if any."""
    obj = load_json(data, what)
    if obj.get("schemaVersion") != 2:
        raise Unsupported(f"{what}: unsupported schema version {obj.get('schemaVersion')!r}")
    declared = obj.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise CorruptContent(f"{what}: mediaType must be a string")
    kind = declared or media_type or (mt.OCI_INDEX if "manifests" in obj else mt.OCI_MANIFEST)
    if declared and media_type and media_type != declared and not (
            {media_type, declared} <= mt.INDEXES or {media_type, declared} <= mt.MANIFESTS):
        raise CorruptContent(f"{what}: media type {declared} does not match {media_type}")
    annotations = _str_map(obj.get("annotations"), what)
    if kind in mt.INDEXES:
        entries = obj.get("manifests")
        if not isinstance(entries, list):
            raise CorruptContent(f"{what}: 'manifests' must be a list")
        return Index(kind, tuple(parse_descriptor(m, what) for m in entries), annotations)
    if kind not in mt.MANIFESTS:
        raise Unsupported(f"{what}: unsupported media type {kind}")
    layers = obj.get("layers")
    if not isinstance(layers, list):
        raise CorruptContent(f"{what}: 'layers' must be a list")
    config = parse_descriptor(obj.get("config"), what)
    parsed = tuple(parse_descriptor(layer, what) for layer in layers)
    for layer in parsed:
        if not mt.is_layer(layer.media_type):
            raise Unsupported(f"{what}: unsupported layer media type {layer.media_type}")
    return Manifest(kind, config, parsed, annotations)
