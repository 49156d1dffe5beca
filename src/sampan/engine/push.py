"""``push``: an image from the store to a registry, with the manifest it is stored with.

Every image in the store has a manifest (pulled: the registry's own bytes; loaded, imported, committed or
bootstrapped: the one ``image_store.commit_image`` wrote), and push sends exactly that manifest and the blobs it
references, so a pulled-then-pushed image keeps its digest. Layers stored uncompressed (``commit``, ``load``,
``import`` of a plain tar, ``build``) are pushed gzip-compressed, as Docker pushes them: the manifest sent names
the compressed blobs (their ``+gzip`` media type, digest and size), the config and its ``diff_ids`` stay as they
are, so the image ID does not change. The compressed blob is kept in the content store, registered with its diff
ID, so a second push finds it (the same bytes, a ``HEAD`` hit); the compressor (ISA-L level 1, no timestamp) is
deterministic, so even after garbage collection has dropped it the same bytes, and digest, come out again.

For each blob (layers, then the config) the registry is asked first (``HEAD``): present means "Layer already
exists". Otherwise, when the store knows the blob from another repository of the same registry (the repo digests
recorded by pull and push), a cross-repository mount is tried; the registry either mounts it ("Mounted from x") or
opens an ordinary upload, which is then used. Uploads are monolithic (one ``PUT``) up to ``CHUNK_THRESHOLD`` and
chunked (``PATCH`` per ``CHUNK_SIZE``) above it. Layers go up in parallel; the manifest goes last, under the tag,
and its repo digest is recorded so that later pushes to other repositories can mount from it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from sampan.engine.context import Engine
from sampan.engine.pull import ProgressEvent, ProgressFn, registry_host
from sampan.errors import CorruptContent, InvalidArgument, NotFound, SampanError
from sampan.image import digest as _digest
from sampan.image import manifest as manifests
from sampan.image import mediatypes as mt
from sampan.image import reference as refs
from sampan.image.config import ImageConfig
from sampan.store import images as records

if TYPE_CHECKING:
    from sampan.registry.client import RegistryClient
    from sampan.registry.credentials import Credentials
    from sampan.store.leases import Lease

CHUNK_THRESHOLD = 64 << 20  # bigger blobs go up in chunks
CHUNK_SIZE = 16 << 20
MAX_PARALLEL_UPLOADS = 4
MAX_MOUNT_SOURCES = 3
_PROGRESS_STEP = 512 << 10
GZIP_LEVEL = 1  # ISA-L: about 0.5 GB/s on one core, within a few % of level 3's size
_GZIPPED = {mt.OCI_LAYER: mt.OCI_LAYER_GZIP, mt.DOCKER_LAYER: mt.DOCKER_LAYER_GZIP}


@dataclass(frozen=True)
class PushResult:
    reference: refs.Reference  # the tag pushed
    digest: str  # the manifest's digest in the registry
    size: int  # the manifest's size

    @property
    def status(self) -> str:
        return f"{self.reference.tag}: digest: {self.digest} size: {self.size}"


@dataclass(frozen=True)
class StoredManifest:
    """An image's manifest as stored: its bytes, media type, and the parsed reading of them."""

    data: bytes
    media_type: str
    digest: str
    manifest: manifests.Manifest


def _noop(_: ProgressEvent) -> None:
    pass


def open_client(domain: str, pool_size: int = MAX_PARALLEL_UPLOADS + 2,
                credentials: Credentials | None = None) -> RegistryClient:
    """A client for the registry serving ``domain``, with ``credentials`` or else the user's stored ones (no
    mirrors: pushes and manifest lists go to the registry itself)."""
    from sampan.registry.client import RegistryClient
    from sampan.registry.config import RegistryConfig
    from sampan.registry.credentials import DockerConfig
    from sampan.registry.transport import Transport

    docker_config = DockerConfig()
    transport = Transport(RegistryConfig.load(), pool_size=pool_size)
    return RegistryClient(registry_host(domain), transport=transport, name=domain,
                          credentials=(lambda: credentials) if credentials is not None else
                          lambda: docker_config.get(domain))


def stored_manifest(engine: Engine, image_id: str) -> StoredManifest:
    row = records.get(engine.db.conn, image_id)
    if row is None:
        raise NotFound(f"No such image: {image_id}")
    digest = row["manifest_digest"]
    if not digest or not engine.content.exists(digest):
        raise NotFound(f"the manifest of image {_digest.short_id(image_id)} is not in the store")
    data = engine.content.read(digest)
    parsed = manifests.parse(data, None, f"manifest {digest}")
    if not isinstance(parsed, manifests.Manifest):
        raise NotFound(f"the manifest of image {_digest.short_id(image_id)} is an index")
    return StoredManifest(data, parsed.media_type, digest, parsed)


def mount_sources(engine: Engine, blob_digest: str, domain: str, exclude: str) -> list[str]:
    """Repositories (paths) of ``domain`` the store knows ``blob_digest`` from, for cross-repository mounts."""
    rows = engine.db.conn.execute(  # images holding the blob, or its uncompressed form (pushed compressed)
        "SELECT DISTINCT d.repo FROM repo_digests d WHERE d.image_id = ? OR d.image_id IN "
        "(SELECT l.image_id FROM image_layers l LEFT JOIN blobs b ON b.digest = l.blob_digest WHERE l.blob_digest = ? "
        "OR b.diff_id = (SELECT diff_id FROM blobs WHERE digest = ?)) ORDER BY d.repo",
        (blob_digest, blob_digest, blob_digest)).fetchall()
    out = []
    for row in rows:
        repo_domain, _, path = row["repo"].partition("/")
        if repo_domain == domain and row["repo"] != exclude and path not in out:
            out.append(path)
    return out[:MAX_MOUNT_SOURCES]


# ---------------------------------------------------------------------------------------------- public verb


def push(engine: Engine, reference: str, all_tags: bool = False,
         progress: ProgressFn | None = None, credentials: Credentials | None = None) -> list[PushResult]:
    """Push ``reference`` (``name[:tag]``; with ``all_tags`` every local tag of the repository); ``credentials``
    (the API's ``X-Registry-Auth``) instead of the stored ones."""
    emit = progress or _noop
    ref = refs.parse(reference)
    if ref.digest is not None:
        raise InvalidArgument(f"cannot push a digest reference: {reference}")
    conn = engine.db.conn
    if all_tags:
        if ref.tag is not None:
            raise InvalidArgument("tag can't be used with --all-tags/-a")
        tags = [row["tag"] for row in conn.execute("SELECT tag FROM tags WHERE repo = ? ORDER BY tag",
                                                     (ref.name,))]
        if not tags:
            raise NotFound(f"An image does not exist locally with the tag: {ref.familiar_name}")
        targets = [ref.tagged(tag) for tag in tags]
    else:
        targets = [ref.with_default_tag()]
    images = []
    for target in targets:
        image_id = records.by_tag(conn, target.name, target.tag or refs.DEFAULT_TAG)
        if image_id is None:  # Docker's two wordings: nothing of the repository, or not this tag
            if conn.execute("SELECT 1 FROM tags WHERE repo = ? LIMIT 1", (target.name,)).fetchone() is None:
                raise NotFound(f"An image does not exist locally with the tag: {target.familiar_name}")
            raise NotFound(f"tag does not exist: {target.familiar()}")
        images.append((target, image_id))
    emit(ProgressEvent("", f"The push refers to repository [{ref.name}]"))
    client = open_client(ref.domain, credentials=credentials)
    try:
        results = [_push_one(engine, client, target, image_id, emit) for target, image_id in images]
    finally:
        client.close()
    from sampan.engine import events

    for result in results:
        events.record(engine, "image", "push", result.reference.familiar(), {"name": result.reference.familiar()})
    return results


def _push_one(engine: Engine, client: RegistryClient, ref: refs.Reference, image_id: str,
              emit: ProgressFn) -> PushResult:
    stored = stored_manifest(engine, image_id)
    config = ImageConfig.parse(engine.content.read(stored.manifest.config.digest))
    diff_ids = config.diff_ids
    # Docker names pushed layers by their diff IDs, top layer first
    names = [_digest.short_id(d) for d in diff_ids] if len(diff_ids) == len(stored.manifest.layers) else \
        [_digest.short_id(layer.digest) for layer in stored.manifest.layers]
    for name in reversed(names):
        emit(ProgressEvent(name, "Preparing"))
    with engine.lease() as lease:  # the compressed blobs stay out of garbage collection until pushed
        data, manifest = _distributable(engine, lease, stored, diff_ids)
        jobs = [(names[i], manifest.layers[i]) for i in reversed(range(len(manifest.layers)))]
        push_blobs(engine, client, ref, jobs, emit)
        push_blobs(engine, client, ref, [("", manifest.config)], emit)
    digest = client.put_manifest(ref.path, ref.tag or refs.DEFAULT_TAG, data, stored.media_type)
    with engine.db.transaction() as tx:
        records.add_repo_digest(tx, ref.name, digest, image_id)
    result = PushResult(ref, digest, len(data))
    emit(ProgressEvent("", result.status))
    return result


# ---------------------------------------------------------------------------------------------- compression


def _distributable(engine: Engine, lease: Lease, stored: StoredManifest,
                   diff_ids: list[str]) -> tuple[bytes, manifests.Manifest]:
    """The manifest to push: the stored one byte for byte, or, when it has uncompressed layers, the same
    manifest naming their gzip-compressed blobs instead."""
    plain = [i for i, layer in enumerate(stored.manifest.layers) if layer.media_type in _GZIPPED]
    if not plain:
        return stored.data, stored.manifest
    if len(diff_ids) != len(stored.manifest.layers):
        raise CorruptContent(f"manifest {stored.digest}: the config lists {len(diff_ids)} layers, the manifest "
                             f"{len(stored.manifest.layers)}")
    body = manifests.load_json(stored.data, f"manifest {stored.digest}")
    layers = list(stored.manifest.layers)
    for i in plain:
        layers[i] = _gzipped(engine, lease, layers[i], diff_ids[i])
        body["layers"][i].update(mediaType=layers[i].media_type, digest=layers[i].digest, size=layers[i].size)
    manifest = manifests.Manifest(stored.manifest.media_type, stored.manifest.config, tuple(layers),
                                  stored.manifest.annotations)
    return manifests.canonical_json(body), manifest


def _gzipped(engine: Engine, lease: Lease, layer: manifests.Descriptor, diff_id: str) -> manifests.Descriptor:
    """The gzip-compressed blob of an uncompressed layer: the one compressed before, else compressed now."""
    from isal import isal_zlib

    media_type = _GZIPPED[layer.media_type]
    with engine.db.transaction() as tx:
        known = tx.execute("SELECT digest, size FROM blobs WHERE diff_id = ? AND media_type = ? ORDER BY digest",
                           (diff_id, media_type)).fetchall()
        for row in known:
            lease.add(tx, "blob", row["digest"])
    for row in known:
        if engine.content.exists(row["digest"]):
            return manifests.Descriptor(media_type, row["digest"], row["size"], dict(layer.annotations))
    compressor = isal_zlib.compressobj(GZIP_LEVEL, isal_zlib.DEFLATED, 16 + isal_zlib.MAX_WBITS)
    with engine.content.open(layer.digest) as source, engine.content.writer() as writer:
        while chunk := source.read(1 << 20):
            writer.write(compressor.compress(chunk))
        writer.write(compressor.flush())
        with engine.db.transaction() as tx:
            lease.add(tx, "blob", writer.digest)
        digest = writer.commit()
    size = engine.content.size(digest)
    with engine.db.transaction() as tx:
        records.register_blob(tx, digest, size, media_type, diff_id)
    return manifests.Descriptor(media_type, digest, size, dict(layer.annotations))


# ---------------------------------------------------------------------------------------------- blobs


def push_blobs(engine: Engine, client: RegistryClient, ref: refs.Reference,
               jobs: list[tuple[str, manifests.Descriptor]], emit: ProgressFn,
               sources: dict[str, list[str]] | None = None) -> None:
    """Make every blob exist in ``ref``'s repository: present, mounted or uploaded. ``jobs`` are (display
    name, descriptor); an empty name reports nothing. ``sources`` adds known source repositories per digest."""
    plans = []
    for name, desc in jobs:
        known = list((sources or {}).get(desc.digest, []))
        known += [s for s in mount_sources(engine, desc.digest, ref.domain, ref.name) if s not in known]
        plans.append((name, desc, known))
    if len(plans) == 1:
        _push_blob(engine, client, ref.path, *plans[0], emit)
        return
    cancelled = threading.Event()
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_UPLOADS, max(1, len(plans))),
                            thread_name_prefix="push") as pool:
        futures = [pool.submit(_push_blob, engine, client, ref.path, name, desc, known, emit, cancelled)
                   for name, desc, known in plans]
        try:
            errors = []
            for future in futures:
                try:
                    future.result()
                except BaseException as e:  # noqa: BLE001 - the first error is re-raised below
                    cancelled.set()
                    errors.append(e)
            if errors:
                raise next((e for e in errors if not isinstance(e, _Cancelled)), errors[0])
        except BaseException:
            cancelled.set()
            raise


class _Cancelled(SampanError):
    """Another upload failed: stop."""


def _push_blob(engine: Engine, client: RegistryClient, repo: str, name: str, desc: manifests.Descriptor,
               sources: list[str], emit: ProgressFn, cancelled: threading.Event | None = None) -> None:
    from sampan.registry.client import push_scope

    def say(status: str, current: int = 0, total: int = 0) -> None:
        if name:
            emit(ProgressEvent(name, status, current, total))

    if cancelled is not None and cancelled.is_set():
        raise _Cancelled("cancelled")
    if client.blob_size(repo, desc.digest, scopes=(push_scope(repo),)) is not None:
        say("Layer already exists")
        return
    location = None
    for source in sources:
        location = client.mount_blob(repo, desc.digest, source)
        if location is None:
            say(f"Mounted from {source}")
            return
        break  # the registry opened an upload instead: use it
    if engine.content.exists(desc.digest):
        size = engine.content.size(desc.digest)
        opened: Any = engine.content.open(desc.digest)
    elif sources:  # not stored here (manifest push): copied from the repository that has it
        size = desc.size
        opened = client.open_blob(sources[0], desc.digest, size)
    else:
        raise NotFound(f"blob {desc.digest} is not in the store")
    say("Pushing", 0, size)
    with opened as f:
        reader = _Counting(f, size, lambda n: say("Pushing", n, size), cancelled)
        chunk = CHUNK_SIZE if size > CHUNK_THRESHOLD else None
        client.upload_blob(repo, desc.digest, size, reader, location=location, chunk_size=chunk)
    say("Pushed")


class _Counting:
    """A blob file read by the upload, reporting progress and stopping when another upload failed."""

    def __init__(self, f: BinaryIO, size: int, report: Callable[[int], None],
                 cancelled: threading.Event | None) -> None:
        self.f, self.size, self.report, self.cancelled = f, size, report, cancelled
        self.done = self.shown = 0

    def read(self, n: int = -1) -> bytes:
        if self.cancelled is not None and self.cancelled.is_set():
            raise _Cancelled("cancelled")
        data = self.f.read(n)
        self.done += len(data)
        if self.done - self.shown >= _PROGRESS_STEP or (data and self.done == self.size):
            self.shown = self.done
            self.report(self.done)
        return data
