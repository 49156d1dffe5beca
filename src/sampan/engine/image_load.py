"""``load``: images from a docker-archive tarball (``docker save``), an OCI image layout tarball, or both at once.

The archive is untrusted and may arrive on stdin, so it is read in one pass: every regular member is streamed into
the content store (hashed and verified where its name claims a digest), then the small JSON documents are read
back from the store and the images assembled. Member names are only ever keys into that map, never host paths.
Layers are verified against the config's diff IDs while they are unpacked; any failure drops the whole load.
"""

from __future__ import annotations

import json
import posixpath
import tarfile
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from sampan.engine.context import Engine
from sampan.engine.image_store import Layer, StoredImage, commit_image, put_blob, unpack_layer_blob
from sampan.engine.operation import storing
from sampan.errors import CorruptContent, InvalidReference, NotFound, SampanError
from sampan.image import digest as _digest
from sampan.image import manifest as manifests
from sampan.image import mediatypes as mt
from sampan.image import reference as refs
from sampan.image.compression import detect, open_decompressed
from sampan.image.config import ImageConfig, host_architecture
from sampan.store.leases import Lease

_MAX_MEMBERS = 100_000
_NAME_ANNOTATION = "io.containerd.image.name"
_REF_ANNOTATION = "org.opencontainers.image.ref.name"


@dataclass
class _Archive:
    """Member name -> stored blob descriptor (symlinked members resolved)."""

    blobs: dict[str, manifests.Descriptor] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> manifests.Descriptor:
        path = _normalize(name)
        for _ in range(40):
            if path in self.blobs:
                return self.blobs[path]
            if path not in self.links:
                break
            path = self.links[path]
        raise CorruptContent(f"invalid archive: {name!r} is referenced but not in the archive")

    def has(self, name: str) -> bool:
        return _normalize(name) in self.blobs


def _normalize(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


@dataclass(frozen=True)
class LoadedImage:
    id: str
    tags: list[str]


def load(engine: Engine, source: BinaryIO) -> list[LoadedImage]:
    """Load every image in the archive; returns them with the tags they received."""
    with storing(engine) as lease:
        archive = _ingest(engine, lease, source)
        if archive.has("manifest.json"):
            loaded = _load_docker_archive(engine, lease, archive)
        elif archive.has("index.json"):
            loaded = _load_oci_layout(engine, lease, archive)
        else:
            raise CorruptContent("invalid archive: no manifest.json or index.json (not a docker-archive or an "
                                 "OCI image layout)")
    from sampan.engine import events

    for image in loaded:
        events.record(engine, "image", "load", image.id, {"name": ",".join(image.tags) or image.id})
    return loaded


def _ingest(engine: Engine, lease: Lease, source: BinaryIO) -> _Archive:
    archive = _Archive()
    try:
        with open_decompressed(source) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for count, member in enumerate(tar):
                if count > _MAX_MEMBERS:
                    raise CorruptContent("invalid archive: too many members")
                name = _normalize(member.name)
                if member.issym() or member.islnk():
                    target = member.linkname if member.islnk() else posixpath.join(
                        posixpath.dirname(name), member.linkname)
                    archive.links[name] = _normalize(target)
                elif member.isfile():
                    archive.blobs[name] = _store_member(engine, lease, name, tar.extractfile(member),
                                                         member.size)
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        if isinstance(e, SampanError):
            raise
        raise CorruptContent(f"invalid archive: {e}") from None
    return archive


def _store_member(engine: Engine, lease: Lease, name: str, data: BinaryIO | None,
                  size: int) -> manifests.Descriptor:
    """OCI layout blobs are named by their digest: verify it. Other members are hashed as they come."""
    assert data is not None
    expected = None
    parts = name.split("/")
    if len(parts) == 3 and parts[0] == "blobs":
        candidate = f"{parts[1]}:{parts[2]}"
        if _digest.is_digest(candidate):
            expected = candidate
    return put_blob(engine, lease, data, expected_digest=expected, expected_size=size)


def _read_json(engine: Engine, archive: _Archive, name: str) -> Any:
    data = engine.content.read(archive.get(name).digest)
    try:
        return json.loads(data)
    except ValueError as e:
        raise CorruptContent(f"invalid archive: {name} is not valid JSON: {e}") from None


def _layers(engine: Engine, lease: Lease, config: ImageConfig,
            blobs: list[manifests.Descriptor]) -> list[Layer]:
    diff_ids = config.diff_ids
    if len(diff_ids) != len(blobs):
        raise CorruptContent(f"invalid archive: the config lists {len(diff_ids)} layers, the manifest "
                             f"{len(blobs)}")
    layers: list[Layer] = []
    parent: str | None = None
    for blob, diff_id in zip(blobs, diff_ids, strict=True):
        layer = unpack_layer_blob(engine, lease, blob, parent, diff_id)
        layers.append(layer)
        parent = layer.snapshot.chain_id
    return layers


def _with_media_type(engine: Engine, blob: manifests.Descriptor) -> manifests.Descriptor:
    with engine.content.open(blob.digest) as f:
        media_type = mt.oci_layer_type(detect(f.read(8)))
    return manifests.Descriptor(media_type, blob.digest, blob.size)


def _load_docker_archive(engine: Engine, lease: Lease, archive: _Archive) -> list[LoadedImage]:
    entries = _read_json(engine, archive, "manifest.json")
    if not isinstance(entries, list):
        raise CorruptContent("invalid archive: manifest.json must be a list")
    oci_manifests = _oci_manifests_by_config(engine, archive) if archive.has("index.json") else {}
    loaded = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) \
                or not isinstance(entry.get("Layers"), list) \
                or not all(isinstance(layer, str) for layer in entry["Layers"]):
            raise CorruptContent("invalid archive: manifest.json entries need 'Config' and 'Layers'")
        config_blob = archive.get(entry["Config"])
        config_bytes = engine.content.read(config_blob.digest)
        config = ImageConfig.parse(config_bytes)
        blobs = [_with_media_type(engine, archive.get(layer)) for layer in entry["Layers"]]
        layers = _layers(engine, lease, config, blobs)
        tags = _parse_tags(entry.get("RepoTags") or [])
        manifest_bytes = oci_manifests.get(config_blob.digest)
        stored = commit_image(engine, lease, config_bytes, layers, tags=tags, manifest_bytes=manifest_bytes)
        loaded.append(_loaded(stored))
    return loaded


def _parse_tags(values: list[Any]) -> list[refs.Reference]:
    tags = []
    for value in values:
        if not isinstance(value, str):
            raise CorruptContent("invalid archive: RepoTags must be strings")
        try:
            tags.append(refs.parse_tag_target(value))
        except InvalidReference as e:
            raise CorruptContent(f"invalid archive: bad tag {value!r}: {e}") from None
    return tags


def _loaded(stored: StoredImage) -> LoadedImage:
    return LoadedImage(stored.id, [ref.familiar() for ref in stored.tags])


def _oci_manifests_by_config(engine: Engine, archive: _Archive) -> dict[str, bytes]:
    """In a combined archive, keep the OCI manifests so the image keeps its manifest digest."""
    out = {}
    for desc, _names in _index_images(engine, archive):
        data = engine.content.read(desc.digest)
        parsed = manifests.parse(data, desc.media_type)
        if isinstance(parsed, manifests.Manifest):
            out[parsed.config.digest] = data
    return out


def _index_images(engine: Engine, archive: _Archive) -> list[tuple[manifests.Descriptor, list[str]]]:
    """Image manifests named by index.json (descending into nested indexes for the host platform)."""
    index = manifests.parse(engine.content.read(archive.get("index.json").digest), mt.OCI_INDEX, "index.json")
    if not isinstance(index, manifests.Index):
        raise CorruptContent("invalid archive: index.json is not an image index")
    out = []
    for desc in index.manifests:
        names = [desc.annotations[key] for key in (_NAME_ANNOTATION, _REF_ANNOTATION) if key in desc.annotations]
        out.append((_select_manifest(engine, desc), names))
    return out


def _select_manifest(engine: Engine, desc: manifests.Descriptor, depth: int = 0) -> manifests.Descriptor:
    if desc.media_type not in mt.INDEXES:
        return desc
    if depth > 4:
        raise CorruptContent("invalid archive: image indexes nested too deeply")
    if not engine.content.exists(desc.digest):
        raise NotFound(f"invalid archive: blob {desc.digest} is missing")
    nested = manifests.parse(engine.content.read(desc.digest), desc.media_type)
    if not isinstance(nested, manifests.Index):
        raise CorruptContent(f"invalid archive: {desc.digest} is not an index")
    arch = host_architecture()
    for candidate in nested.manifests:
        if candidate.platform is None or (candidate.platform.os == "linux"
                                          and candidate.platform.architecture == arch):
            if engine.content.exists(candidate.digest):
                return _select_manifest(engine, candidate, depth + 1)
    raise NotFound(f"invalid archive: no image for linux/{arch} in index {desc.digest}")


def _name_from_annotations(names: list[str]) -> list[refs.Reference]:
    """A full reference from the annotations; a bare tag ("latest", as skopeo writes) names nothing."""
    for name in names:
        if "/" in name or ":" in name:
            try:
                return [refs.parse_tag_target(name)]
            except InvalidReference:
                continue
    return []


def _load_oci_layout(engine: Engine, lease: Lease, archive: _Archive) -> list[LoadedImage]:
    loaded = []
    for desc, names in _index_images(engine, archive):
        if not engine.content.exists(desc.digest):
            raise CorruptContent(f"invalid archive: manifest blob {desc.digest} is missing")
        manifest_bytes = engine.content.read(desc.digest)
        manifest = manifests.parse(manifest_bytes, desc.media_type)
        if not isinstance(manifest, manifests.Manifest):
            raise CorruptContent(f"invalid archive: {desc.digest} is not an image manifest")
        config_bytes = _verified_blob(engine, manifest.config)
        config = ImageConfig.parse(config_bytes)
        for layer in manifest.layers:
            _verified_size(engine, layer)
        layers = _layers(engine, lease, config, list(manifest.layers))
        stored = commit_image(engine, lease, config_bytes, layers, tags=_name_from_annotations(names),
                              manifest_bytes=manifest_bytes)
        loaded.append(_loaded(stored))
    return loaded


def _verified_size(engine: Engine, desc: manifests.Descriptor) -> None:
    if not engine.content.exists(desc.digest):
        raise CorruptContent(f"invalid archive: blob {desc.digest} is missing")
    if engine.content.size(desc.digest) != desc.size:
        raise CorruptContent(f"invalid archive: blob {desc.digest} has the wrong size")


def _verified_blob(engine: Engine, desc: manifests.Descriptor) -> bytes:
    _verified_size(engine, desc)
    return engine.content.read(desc.digest)
