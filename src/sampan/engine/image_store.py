"""Putting images into the store: the one path every source (import, load, bootstrap, later pull and build) uses.

Order matters for concurrent safety: each blob and snapshot is protected by the operation's lease before it
becomes visible, and the image row, its layers and its tags are committed together in one transaction, so a
concurrent ``rmi``/``prune`` either sees the whole image or none of it and never collects what we are using.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import BinaryIO

from sampan.engine.context import Engine
from sampan.errors import CorruptContent
from sampan.image import digest as _digest
from sampan.image import mediatypes as mt
from sampan.image.config import ImageConfig
from sampan.image.manifest import Descriptor, Manifest
from sampan.image.reference import Reference
from sampan.snapshot.snapshots import Snapshot
from sampan.store import images as records
from sampan.store.leases import Lease


@dataclass(frozen=True)
class Layer:
    """A stored layer blob together with the snapshot unpacked from it."""

    descriptor: Descriptor
    snapshot: Snapshot


@dataclass
class StoredImage:
    id: str
    new: bool
    tags: list[Reference] = field(default_factory=list)
    displaced: list[str] = field(default_factory=list)  # images a moved tag used to point at


def put_blob(engine: Engine, lease: Lease, data: bytes | BinaryIO, *, expected_digest: str | None = None,
             expected_size: int | None = None, media_type: str = "", diff_id: str | None = None,
             resume: bool = False) -> Descriptor:
    """Store verified content under the lease and record it; returns its descriptor.

    With ``resume`` (a download of ``expected_digest``), an interrupted earlier write is continued: ``data`` is
    ``seek``-ed past the bytes already there, and an interruption now keeps them for the next attempt."""
    content = engine.content
    if expected_digest is not None:
        with engine.db.transaction() as tx:
            lease.add(tx, "blob", expected_digest)
    if expected_digest is not None and content.exists(expected_digest):
        digest = expected_digest
    else:
        with content.writer(expected_digest if resume and not isinstance(data, bytes) else None) as writer:
            if writer.size and expected_size is not None and writer.size > expected_size:
                writer.restart()
            if writer.size and not isinstance(data, bytes):
                data.seek(writer.size)
            if isinstance(data, bytes):
                writer.write(data)
            else:
                while chunk := data.read(1 << 20):
                    writer.write(chunk)
            if expected_digest is None:
                with engine.db.transaction() as tx:
                    lease.add(tx, "blob", writer.digest)
            digest = writer.commit(expected_digest, expected_size)
    size = content.size(digest)
    with engine.db.transaction() as tx:
        records.register_blob(tx, digest, size, media_type, diff_id)
    return Descriptor(media_type, digest, size)


def unpack_layer_blob(engine: Engine, lease: Lease, blob: Descriptor, parent: str | None,
                      diff_id: str | None) -> Layer:
    snapshot = engine.snapshots.unpack(lease, blob.digest, parent, diff_id)
    with engine.db.transaction() as tx:
        records.register_blob(tx, blob.digest, blob.size, blob.media_type, snapshot.diff_id)
    return Layer(blob, snapshot)


def commit_image(engine: Engine, lease: Lease, config_bytes: bytes, layers: list[Layer], *,
                 tags: list[Reference] = (), manifest_bytes: bytes | None = None,
                 repo_digests: list[Reference] = (), parent: str = "") -> StoredImage:
    """Store config and manifest, then the image record, its layers and tags in one transaction."""
    config = ImageConfig.parse(config_bytes)
    diff_ids = [layer.snapshot.diff_id for layer in layers]
    if config.diff_ids != diff_ids:
        raise CorruptContent("image config's rootfs.diff_ids do not match its layers")
    config_desc = put_blob(engine, lease, config_bytes, expected_digest=_digest.sha256_bytes(config_bytes),
                           media_type=mt.OCI_CONFIG)
    if manifest_bytes is None:
        manifest_bytes = Manifest(mt.OCI_MANIFEST, config_desc,
                                  tuple(layer.descriptor for layer in layers)).to_bytes()
    manifest_desc = put_blob(engine, lease, manifest_bytes,
                             expected_digest=_digest.sha256_bytes(manifest_bytes), media_type=mt.OCI_MANIFEST)
    chains = _digest.chain_ids(diff_ids)
    record = records.ImageRecord(
        id=config_desc.digest, manifest_digest=manifest_desc.digest, created=config.created,
        size=sum(layer.snapshot.size for layer in layers), labels=config.labels,
        layers=tuple((chain, layer.descriptor.digest) for chain, layer in zip(chains, layers, strict=True)),
        parent=parent)
    stored = StoredImage(record.id, False, list(tags))
    with engine.db.transaction() as tx:
        stored.new = records.insert_image(tx, record)
        for ref in tags:
            previous = records.set_tag(tx, ref.name, ref.tag or "latest", record.id)
            if previous:
                stored.displaced.append(previous)
        for ref in repo_digests:
            records.add_repo_digest(tx, ref.name, ref.digest or "", record.id)
    return stored
