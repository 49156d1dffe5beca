"""``pull``: images from registries into the store, fast and verified.

The name resolves to a registry (``docker.io`` is ``registry-1.docker.io``, tried after any configured mirrors),
the manifest or index comes first (an index picks the platform: the host's by default, with Docker's matching
rules), then the config. Layers whose snapshot already exists (by chain ID) are skipped; the others are
downloaded *in parallel*, each streamed into the content store, which hashes while writing and publishes a blob
only when its digest and size match, and each layer is unpacked as soon as its own blob is there: snapshots are
independent directories (overlayfs stacks them later), so a layer's unpacking needs only its parent's chain ID,
never its parent's files, and all layers unpack concurrently. The image (config, manifest, layers, tag and repo
digest) is then committed in one transaction through ``image_store.commit_image``, as every image source does.

Failure leaves no image, and nothing unverified: a blob is visible only once verified, a snapshot only once its
diff ID matched. A layer download that stops early (the connection gave up, another layer failed, Ctrl-C, a kill)
keeps its bytes in the ingest area as a partial file named for the digest, and the next pull continues it with a
``Range`` request and verifies the digest over the whole blob; a mismatch discards it. Unlike ``load`` (``operation.storing``), a failed pull does not collect what it stored: the
verified blobs and unpacked snapshots stay (unreferenced, so the next ``rmi``/``prune`` may collect them) and a
retried pull only fetches what is still missing. While it runs, everything is protected by the pull's lease.

Foreign (non-distributable) layers are fetched from the registry like any other blob; the URLs a manifest lists
for them are never followed, so no manifest can send a request, let alone credentials, to a host it chooses.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

from sampan.engine.context import Engine
from sampan.engine.image_store import Layer, commit_image, put_blob, unpack_layer_blob
from sampan.errors import CorruptContent, InvalidArgument, NotFound, RegistryError, SampanError, Unsupported
from sampan.image import digest as _digest
from sampan.image import manifest as manifests
from sampan.image import mediatypes as mt
from sampan.image import platforms
from sampan.image import reference as refs
from sampan.image.config import ImageConfig
from sampan.store.leases import Lease

if TYPE_CHECKING:  # the HTTP stack is imported only when a pull really happens (run/create import this module)
    from sampan.registry.client import FetchedManifest, RegistryClient
    from sampan.registry.credentials import Credentials

HUB_DOMAIN = refs.DEFAULT_DOMAIN
HUB_REGISTRY = "registry-1.docker.io"
MAX_PARALLEL_LAYERS = 6
_PROGRESS_STEP = 512 << 10  # bytes between "Downloading" events of one layer


@dataclass(frozen=True)
class ProgressEvent:
    """One line of Docker's pull progress: ``id`` is the layer's short ID (or the tag), ``status`` the words."""

    id: str
    status: str
    current: int = 0
    total: int = 0


ProgressFn = Callable[[ProgressEvent], None]


@dataclass(frozen=True)
class PullResult:
    reference: refs.Reference  # what was pulled, normalised (docker.io/library/busybox:latest, or @digest)
    image_id: str
    digest: str  # the repo digest: of the manifest, or of the index when the tag names one
    downloaded: bool  # False: "Image is up to date"
    platform: manifests.Platform | None  # the index entry chosen, if the reference named an index
    new: bool  # a new image record was created

    @property
    def status(self) -> str:
        verb = "Downloaded newer image for" if self.downloaded else "Image is up to date for"
        return f"{verb} {self.reference.familiar()}"


def registry_host(domain: str) -> str:
    """The host that serves a reference's domain (Docker Hub's API lives on registry-1.docker.io)."""
    return HUB_REGISTRY if domain == HUB_DOMAIN else domain


def _noop(_: ProgressEvent) -> None:
    pass


# ---------------------------------------------------------------------------------------------- public verbs


def pull(engine: Engine, reference: str, platform: str | None = None, all_tags: bool = False,
         progress: ProgressFn | None = None, credentials: Credentials | None = None) -> list[PullResult]:
    """Pull ``reference`` (``name[:tag|@digest]``; with ``all_tags`` every tag of the repository).

    ``credentials`` (the API's ``X-Registry-Auth``) are used for the reference's own registry instead of the
    stored ones; mirrors keep their stored credentials, so these are never sent to another host."""
    emit = progress or _noop
    ref = refs.parse(reference)
    wanted = platforms.parse(platform) if platform else None
    with _Session(ref, credentials) as session:
        if all_tags:
            if ref.tag is not None or ref.digest is not None:
                raise InvalidArgument("tag can't be used with --all-tags/-a")
            tags = session.list_tags()
            if not tags:
                raise NotFound(f"no tags found for {ref.familiar_name} in {ref.domain}")
            return _recorded(engine, [_pull_one(engine, session, ref.tagged(tag), wanted, emit) for tag in tags])
        return _recorded(engine, [_pull_one(engine, session, ref.with_default_tag(), wanted, emit)])


def _recorded(engine: Engine, results: list[PullResult]) -> list[PullResult]:
    from sampan.engine import events

    for result in results:
        events.record(engine, "image", "pull", result.reference.familiar(), {"name": result.reference.familiar()})
    return results


def ensure_image(engine: Engine, name: str, platform: str | None = None,
                 progress: ProgressFn | None = None) -> str:
    """The image ID ``name`` denotes, pulling it first when it is a reference not in the store (run/create)."""
    from sampan.engine import images

    try:
        return images.resolve(engine, name)
    except NotFound:
        pass
    try:
        refs.parse(name)
    except SampanError:
        raise NotFound(f"No such image: {name}") from None
    results = pull(engine, name, platform=platform, progress=progress)
    return results[0].image_id


# ---------------------------------------------------------------------------------------------- registry session


class _Session:
    """The registry endpoints of one repository: mirrors (Docker Hub only) then the registry itself."""

    def __init__(self, ref: refs.Reference, credentials: Credentials | None = None) -> None:
        from sampan.registry.client import RegistryClient
        from sampan.registry.config import RegistryConfig
        from sampan.registry.credentials import DockerConfig
        from sampan.registry.transport import Transport

        self.ref = ref
        self.repo = ref.path
        config = RegistryConfig.load()
        self.transport = Transport(config, pool_size=MAX_PARALLEL_LAYERS + 2)
        docker_config = DockerConfig()
        candidates = []
        if ref.domain == HUB_DOMAIN:
            for mirror in config.mirrors:
                host = mirror.split("://", 1)[1].split("/", 1)[0]
                candidates.append(RegistryClient(host, transport=self.transport, base_url=mirror, name=mirror,
                                                 credentials=lambda h=host: docker_config.get(h)))
        candidates.append(RegistryClient(registry_host(ref.domain), transport=self.transport, name=ref.domain,
                                         credentials=(lambda: credentials) if credentials is not None else
                                         lambda: docker_config.get(ref.domain)))
        self.candidates = candidates
        self.client = candidates[-1]

    def get_manifest(self, reference: str) -> FetchedManifest:
        """The manifest from the first endpoint that has it; that endpoint then serves the blobs too."""
        errors: list[SampanError] = []
        for client in self.candidates:
            try:
                fetched = client.get_manifest(self.repo, reference)
            except SampanError as e:
                errors.append(e)
                continue
            self.client = client
            return fetched
        raise errors[-1]

    def list_tags(self) -> list[str]:
        return self.client.list_tags(self.repo)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------- one image


def _pull_one(engine: Engine, session: _Session, ref: refs.Reference, wanted: manifests.Platform | None,
              emit: ProgressFn) -> PullResult:
    target = ref.digest or ref.tag or refs.DEFAULT_TAG
    fetched = session.get_manifest(target)
    emit(ProgressEvent(target, f"Pulling from {ref.path}"))
    client = session.client
    what = f"manifest for {ref.domain}/{ref.path}{'@' if ref.digest else ':'}{target}"
    parsed = manifests.parse(fetched.data, fetched.media_type or None, what)
    repo_digest = fetched.digest
    chosen: manifests.Platform | None = None
    manifest_bytes = fetched.data
    if isinstance(parsed, manifests.Index):
        platform = wanted or platforms.host()
        entry = platforms.choose(parsed.manifests, platform)
        if entry is None:
            raise NotFound(f"no matching manifest for {platform} in the manifest list entries of "
                           f"{ref.familiar()} (available: "
                           f"{platforms.describe([m.platform for m in parsed.manifests])})")
        if entry.media_type not in mt.MANIFESTS:
            raise Unsupported(f"{what}: unsupported media type {entry.media_type} for {platform}")
        chosen = entry.platform
        inner = client.get_manifest(session.repo, entry.digest)
        if len(inner.data) != entry.size:
            raise CorruptContent(f"manifest {entry.digest} of {ref.familiar()}: size mismatch")
        what = f"manifest {entry.digest} of {ref.familiar()}"
        parsed = manifests.parse(inner.data, inner.media_type or entry.media_type, what)
        manifest_bytes = inner.data
        if not isinstance(parsed, manifests.Manifest):
            raise Unsupported(f"{what}: an index inside an index is not supported")
    assert isinstance(parsed, manifests.Manifest)
    if parsed.config.media_type not in mt.CONFIGS:
        raise Unsupported(f"{what}: unsupported config media type {parsed.config.media_type} "
                          "(not a container image)")
    previous = _current_image(engine, ref)
    with engine.lease() as lease:
        config_bytes = _config(engine, lease, client, session.repo, parsed.config)
        config = ImageConfig.parse(config_bytes)
        if wanted is not None and chosen is None:
            _check_platform(config, wanted, ref)
        diff_ids = config.diff_ids
        if len(diff_ids) != len(parsed.layers):
            raise CorruptContent(f"{what}: the config lists {len(diff_ids)} layers, the manifest "
                                 f"{len(parsed.layers)}")
        layers, fetched_any = _layers(engine, lease, client, session.repo, parsed.layers, diff_ids, emit)
        stored = commit_image(engine, lease, config_bytes, layers,
                              tags=[ref] if ref.digest is None else [], manifest_bytes=manifest_bytes,
                              repo_digests=[ref.repository().with_digest(repo_digest)])
    downloaded = fetched_any or previous != stored.id
    result = PullResult(ref, stored.id, repo_digest, downloaded, chosen, stored.new)
    emit(ProgressEvent("", f"Digest: {repo_digest}"))
    emit(ProgressEvent("", f"Status: {result.status}"))
    return result


def _current_image(engine: Engine, ref: refs.Reference) -> str | None:
    from sampan.store import images as records

    conn = engine.db.conn
    if ref.digest:
        return records.by_digest(conn, ref.name, ref.digest)
    return records.by_tag(conn, ref.name, ref.tag or refs.DEFAULT_TAG)


def _check_platform(config: ImageConfig, wanted: manifests.Platform, ref: refs.Reference) -> None:
    actual = platforms.normalize(manifests.Platform(config.os or "linux", config.architecture or "",
                                                    config.raw.get("variant") or None))
    if (actual.os, actual.architecture) != (wanted.os, wanted.architecture):
        raise NotFound(f"image with reference {ref.familiar()} was found but does not match the specified "
                       f"platform: wanted {wanted}, actual: {actual}")


def _config(engine: Engine, lease: Lease, client: RegistryClient, repo: str, desc: manifests.Descriptor) -> bytes:
    if engine.content.exists(desc.digest):
        with engine.db.transaction() as tx:
            lease.add(tx, "blob", desc.digest)
        if engine.content.exists(desc.digest):
            return engine.content.read(desc.digest)
    data = client.fetch_blob(repo, desc.digest, desc.size)
    put_blob(engine, lease, data, expected_digest=desc.digest, expected_size=desc.size,
             media_type=desc.media_type)
    return data


# ---------------------------------------------------------------------------------------------- layers


class _Cancelled(Exception):
    """Another layer failed, or the user interrupted: stop downloading."""


class _Workers:
    """Per-thread engines (SQLite connections are not shared between threads that write concurrently) and the
    flag that stops every download when one layer fails."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.cancelled = threading.Event()
        self._local = threading.local()
        self._opened: list[Engine] = []
        self._lock = threading.Lock()

    def get(self) -> Engine:
        mine = getattr(self._local, "engine", None)
        if mine is None:
            mine = Engine(str(self.engine.layout.root), str(self.engine.layout.runroot), check=False)
            self._local.engine = mine
            with self._lock:
                self._opened.append(mine)
        return mine

    def close(self) -> None:
        for engine in self._opened:
            engine.close()


def _layers(engine: Engine, lease: Lease, client: RegistryClient, repo: str, blobs: tuple[manifests.Descriptor, ...],
            diff_ids: list[str], emit: ProgressFn) -> tuple[list[Layer], bool]:
    """Every layer as a stored blob plus its snapshot; True if anything was downloaded or unpacked."""
    chains = _digest.chain_ids(diff_ids)
    layers: list[Layer | None] = [None] * len(blobs)
    todo: list[int] = []
    for i, (blob, chain) in enumerate(zip(blobs, chains, strict=True)):
        if not mt.is_layer(blob.media_type):
            raise Unsupported(f"layer {blob.digest}: unsupported media type {blob.media_type}")
        snapshot = engine.snapshots.lookup(lease, chain)
        if snapshot is not None and _have_blob(engine, lease, blob):
            layers[i] = Layer(_plain(blob), snapshot)
            emit(ProgressEvent(_digest.short_id(blob.digest), "Already exists"))
        else:
            todo.append(i)
            emit(ProgressEvent(_digest.short_id(blob.digest), "Pulling fs layer"))
    if not todo:
        return [layer for layer in layers if layer is not None], False
    workers = _Workers(engine)
    pool = ThreadPoolExecutor(max_workers=min(len(todo), MAX_PARALLEL_LAYERS), thread_name_prefix="pull")
    try:
        futures: dict[Future[Layer], int] = {
            pool.submit(_layer, workers, lease, client, repo, blobs[i], chains[i - 1] if i else None,
                        diff_ids[i], emit): i for i in todo}
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        errors = [e for f in done if (e := f.exception()) is not None and not isinstance(e, _Cancelled)]
        if errors:
            workers.cancelled.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise _first_error(errors)
        for future, i in futures.items():
            layers[i] = future.result()
    except BaseException:
        workers.cancelled.set()  # Ctrl-C: in-flight downloads stop at their next chunk
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        workers.close()
    return [layer for layer in layers if layer is not None], True


def _first_error(errors: list[BaseException]) -> BaseException:
    """A digest or protocol error says more than the cancellations and interruptions it caused."""
    for kind in (CorruptContent, Unsupported, RegistryError, SampanError):
        for error in errors:
            if isinstance(error, kind):
                return error
    return errors[0]


def _plain(blob: manifests.Descriptor) -> manifests.Descriptor:
    """The layer descriptor as sampan records it: the URLs of foreign layers are dropped, never used."""
    return manifests.Descriptor(blob.media_type, blob.digest, blob.size, dict(blob.annotations))


def _have_blob(engine: Engine, lease: Lease, blob: manifests.Descriptor) -> bool:
    if not engine.content.exists(blob.digest):
        return False
    with engine.db.transaction() as tx:
        lease.add(tx, "blob", blob.digest)
    return engine.content.exists(blob.digest)


def _layer(workers: _Workers, lease: Lease, client: RegistryClient, repo: str, blob: manifests.Descriptor,
           parent: str | None, diff_id: str, emit: ProgressFn) -> Layer:
    engine = workers.get()
    short = _digest.short_id(blob.digest)
    if not _have_blob(engine, lease, blob):
        _download(engine, lease, client, repo, blob, short, emit, workers.cancelled)
    if workers.cancelled.is_set():
        raise _Cancelled
    emit(ProgressEvent(short, "Extracting", blob.size, blob.size))
    layer = unpack_layer_blob(engine, lease, _plain(blob), parent, diff_id)
    emit(ProgressEvent(short, "Pull complete"))
    return layer


def _download(engine: Engine, lease: Lease, client: RegistryClient, repo: str, blob: manifests.Descriptor, short: str,
              emit: ProgressFn, cancelled: threading.Event) -> None:
    state = {"done": 0, "shown": 0}

    def advance(n: int) -> None:
        if cancelled.is_set():
            raise _Cancelled
        state["done"] += n
        if state["done"] - state["shown"] >= _PROGRESS_STEP or state["done"] == blob.size:
            state["shown"] = state["done"]
            emit(ProgressEvent(short, "Downloading", state["done"], blob.size))

    emit(ProgressEvent(short, "Downloading", 0, blob.size))
    with client.open_blob(repo, blob.digest, blob.size, advance) as reader:
        put_blob(engine, lease, reader, expected_digest=blob.digest, expected_size=blob.size,
                 media_type=blob.media_type, resume=True)
        emit(ProgressEvent(short, "Verifying Checksum"))
    emit(ProgressEvent(short, "Download complete"))
