"""``save``: write images as one tarball that is both a docker-archive and an OCI image layout (as Docker 25+).

``manifest.json`` serves ``docker load`` (old and new) and skopeo's ``docker-archive:``; ``index.json`` with
``oci-layout`` serves OCI tools. Both point at the same ``blobs/sha256/<hex>`` files, stored once. The stored
manifest and config bytes are written unchanged, so image IDs and manifest digests survive the round trip.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from typing import BinaryIO

from sampan.engine import images
from sampan.engine.context import Engine
from sampan.errors import CorruptContent
from sampan.image import digest as _digest
from sampan.image import manifest as manifests
from sampan.image import mediatypes as mt
from sampan.image import reference as refs
from sampan.store import images as records

_NAME_ANNOTATION = "io.containerd.image.name"
_REF_ANNOTATION = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class _Selected:
    image_id: str
    tags: list[refs.Reference]


def _select(engine: Engine, names: list[str]) -> list[_Selected]:
    """Resolve names; a bare repository name means every tag of that repository, as in Docker."""
    conn = engine.db.conn
    chosen: dict[str, list[refs.Reference]] = {}
    for name in names:
        image_id, ref = images.lookup(engine, name)
        chosen.setdefault(image_id, [])
        if ref is None or ref.digest is not None:
            continue
        if refs.parse(name).tag is None:
            for row in records.all_tags(conn):
                if row["repo"] == ref.name:
                    chosen.setdefault(row["image_id"], []).append(ref.tagged(row["tag"]))
        else:
            chosen[image_id].append(ref)
    return [_Selected(image_id, tags) for image_id, tags in chosen.items()]


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, *, source: BinaryIO | None = None,
         size: int = 0) -> None:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    info.mtime = 0
    if data is not None:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        info.size = size
        tar.addfile(info, source)


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = 0
    tar.addfile(info)


def save(engine: Engine, names: list[str], out: BinaryIO) -> None:
    """Write the named images (with their tags) to ``out`` as an uncompressed tar stream."""
    selected = _select(engine, names)
    written: set[str] = set()
    docker_manifest = []
    index_entries = []
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_dir(tar, "blobs")
        _add_dir(tar, "blobs/sha256")

        def blob(digest: str) -> str:
            path = f"blobs/sha256/{_digest.hex_of(digest)}"
            if digest not in written:
                with engine.content.open(digest) as f:
                    _add(tar, path, source=f, size=engine.content.size(digest))
                written.add(digest)
            return path

        for item in selected:
            row = records.get(engine.db.conn, item.image_id)
            manifest_bytes = engine.content.read(row["manifest_digest"])
            manifest = manifests.parse(manifest_bytes)
            if not isinstance(manifest, manifests.Manifest) or manifest.config.digest != item.image_id:
                raise CorruptContent(f"stored manifest of image {item.image_id} is inconsistent")
            config_path = blob(item.image_id)
            layer_paths = [blob(layer.digest) for layer in manifest.layers]
            manifest_desc = manifests.Descriptor(manifest.media_type, row["manifest_digest"], len(manifest_bytes))
            blob(row["manifest_digest"])
            docker_manifest.append({"Config": config_path,
                                    "RepoTags": [ref.familiar() for ref in item.tags] or None,
                                    "Layers": layer_paths})
            for ref in item.tags or [None]:
                annotations = {_NAME_ANNOTATION: str(ref), _REF_ANNOTATION: ref.tag or ""} if ref else {}
                index_entries.append(manifests.Descriptor(manifest_desc.media_type, manifest_desc.digest,
                                                          manifest_desc.size, annotations).to_json())
        index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": index_entries}
        _add(tar, "index.json", json.dumps(index, separators=(",", ":")).encode())
        _add(tar, "manifest.json", json.dumps(docker_manifest, separators=(",", ":")).encode())
        _add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
