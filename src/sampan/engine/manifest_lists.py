"""``manifest``: multi-platform manifest lists made from images already in a registry, as ``docker manifest`` does.

A list being made lives under the storage root, one JSON file per list in ``manifests/`` (Docker keeps them in
``~/.docker/manifests``): each entry is a referenced image manifest as the registry served it (its bytes, media
type, digest and size) plus the platform read from its config, which ``annotate`` may change. ``push`` makes every
entry exist in the list's own repository (blobs mounted from the repository the entry came from, or copied when the
registry refuses the mount; the manifest put by digest), then puts the list under its tag with Docker's manifest
list media type, written as Docker's distribution library writes it (three-space indented JSON).

``inspect`` shows a local list first, else asks the registry: an image manifest or a list, printed as Docker prints
them (tab-indented; ``-v`` adds each entry's reference, descriptor and raw bytes).
"""

from __future__ import annotations

import base64
import json
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sampan.engine.context import Engine
from sampan.engine.pull import ProgressEvent, ProgressFn
from sampan.engine.push import open_client, push_blobs
from sampan.errors import Conflict, InvalidArgument, NotFound, Unsupported
from sampan.image import manifest as manifests
from sampan.image import mediatypes as mt
from sampan.image import reference as refs
from sampan.image.config import ImageConfig

_OS = frozenset({"aix", "android", "darwin", "dragonfly", "freebsd", "illumos", "ios", "js", "linux", "netbsd",
                 "openbsd", "plan9", "solaris", "wasip1", "windows"})
_ARCH = frozenset({"386", "amd64", "arm", "arm64", "loong64", "mips", "mips64", "mips64le", "mipsle", "ppc64",
                   "ppc64le", "riscv64", "s390x", "wasm"})


@dataclass
class Entry:
    """One image manifest of a list: where it came from, its bytes, and the platform it is listed for."""

    ref: str  # the image as named to ``create`` (normalised)
    media_type: str
    digest: str
    size: int
    platform: dict[str, Any]  # architecture, os[, os.version][, os.features][, variant][, features]
    raw: bytes

    def to_json(self) -> dict[str, Any]:
        return {"ref": self.ref, "mediaType": self.media_type, "digest": self.digest, "size": self.size,
                "platform": self.platform, "raw": base64.b64encode(self.raw).decode()}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Entry:
        return cls(obj["ref"], obj["mediaType"], obj["digest"], obj["size"], obj["platform"],
                   base64.b64decode(obj["raw"]))

    def descriptor(self) -> dict[str, Any]:
        """The entry as a manifest list names it (distribution's ManifestDescriptor field order)."""
        return {"mediaType": self.media_type, "size": self.size, "digest": self.digest,
                "platform": _platform_json(self.platform)}

    def verbose(self) -> dict[str, Any]:
        """Docker's ``manifest inspect -v`` form of one image manifest."""
        body = json.loads(self.raw)
        key = "OCIManifest" if self.media_type == mt.OCI_MANIFEST else "SchemaV2Manifest"
        return {"Ref": self.ref, "Descriptor": {"mediaType": self.media_type, "digest": self.digest,
                                                "size": self.size, "platform": _platform_json(self.platform)},
                "Raw": base64.b64encode(self.raw).decode(), key: body}


def _platform_json(platform: dict[str, Any]) -> dict[str, Any]:
    order = ("architecture", "os", "os.version", "os.features", "variant", "features")
    return {k: platform[k] for k in order if platform.get(k)}


# ---------------------------------------------------------------------------------------------- local lists


def _directory(engine: Engine) -> Path:
    return engine.layout.root / "manifests"


def _path(engine: Engine, ref: refs.Reference) -> Path:
    return _directory(engine) / (urllib.parse.quote(str(ref), safe="") + ".json")


def _list_ref(name: str) -> refs.Reference:
    ref = refs.parse(name)
    if ref.digest is not None:
        raise InvalidArgument(f"a manifest list is named by a tag, not a digest: {name}")
    return ref.with_default_tag()


def _load(engine: Engine, ref: refs.Reference) -> list[Entry] | None:
    try:
        data = json.loads(_path(engine, ref).read_bytes())
    except FileNotFoundError:
        return None
    return [Entry.from_json(e) for e in data["manifests"]]


def _save(engine: Engine, ref: refs.Reference, entries: list[Entry]) -> None:
    directory = _directory(engine)
    directory.mkdir(mode=0o700, exist_ok=True)
    path = _path(engine, ref)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"name": str(ref), "manifests": [e.to_json() for e in entries]}))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------- verbs


def create(engine: Engine, name: str, images: list[str], amend: bool = False) -> refs.Reference:
    """A local list named ``name`` of the (already pushed) ``images``; ``amend`` adds to an existing one."""
    target = _list_ref(name)
    existing = _load(engine, target)
    if existing is not None and not amend:
        raise Conflict(f"refusing to amend an existing manifest list with no --amend flag: {target.familiar()}")
    entries = list(existing or [])
    client = open_client(target.domain)
    try:
        for image in images:
            ref = refs.parse(image)
            if ref.domain != target.domain:
                raise InvalidArgument(f"cannot use source images from a different registry than the target "
                                      f"image: {ref.domain} != {target.domain}")
            entry = _fetch_entry(client, ref.with_default_tag())
            same = [i for i, e in enumerate(entries) if e.digest == entry.digest]
            if same:
                entries[same[0]] = entry  # amended: fetched afresh, in its place
            else:
                entries.append(entry)
    finally:
        client.close()
    _save(engine, target, entries)
    return target


def _fetch_entry(client: Any, ref: refs.Reference) -> Entry:
    fetched = client.get_manifest(ref.path, ref.digest or ref.tag or refs.DEFAULT_TAG)
    parsed = manifests.parse(fetched.data, fetched.media_type or None, f"manifest for {ref.familiar()}")
    if isinstance(parsed, manifests.Index):
        raise Unsupported(f"{ref.familiar()} is a manifest list")
    config = ImageConfig.parse(client.fetch_blob(ref.path, parsed.config.digest, parsed.config.size))
    platform: dict[str, Any] = {"architecture": config.architecture or "", "os": config.os or ""}
    for key in ("os.version", "os.features", "variant"):
        if config.raw.get(key):
            platform[key] = config.raw[key]
    return Entry(str(ref), parsed.media_type, fetched.digest, len(fetched.data), platform, fetched.data)


def annotate(engine: Engine, name: str, image: str, *, os_name: str = "", arch: str = "", variant: str = "",
             os_version: str = "", os_features: list[str] | None = None) -> None:
    """Set the platform an entry of a local list is listed for."""
    target = _list_ref(name)
    entries = _load(engine, target)
    if entries is None:
        raise NotFound(f"No such manifest: {target.familiar()}")
    entry = _find(entries, refs.parse(image), target)
    if os_name:
        entry.platform["os"] = os_name
    if arch:
        entry.platform["architecture"] = arch
    if variant:
        entry.platform["variant"] = variant
    if os_version:
        entry.platform["os.version"] = os_version
    if os_features:
        entry.platform["os.features"] = list(os_features)
    os_value, arch_value = entry.platform.get("os", ""), entry.platform.get("architecture", "")
    if os_value not in _OS or arch_value not in _ARCH:
        raise InvalidArgument(f"manifest entry for image has unsupported os/arch combination: "
                              f"{os_value}/{arch_value}")
    _save(engine, target, entries)


def _find(entries: list[Entry], ref: refs.Reference, target: refs.Reference) -> Entry:
    wanted = str(ref.with_default_tag())
    for entry in entries:
        if entry.ref == wanted or (ref.digest and entry.digest == ref.digest):
            return entry
    raise NotFound(f"manifest for image {ref.familiar()} does not exist in {target.familiar()}")


def remove(engine: Engine, name: str) -> None:
    target = _list_ref(name)
    try:
        _path(engine, target).unlink()
    except FileNotFoundError:
        raise NotFound(f"No such manifest: {target.familiar()}") from None


def list_json(entries: list[Entry]) -> bytes:
    """The manifest list as Docker writes it (distribution's manifestlist: three-space indented JSON)."""
    body = {"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST_LIST,
            "manifests": [e.descriptor() for e in entries]}
    return json.dumps(body, indent=3).encode()


def push(engine: Engine, name: str, purge: bool = False, progress: ProgressFn | None = None) -> str:
    """Push a local list (and, into its repository, every image manifest it references); returns its digest."""
    emit = progress or (lambda _: None)
    target = _list_ref(name)
    entries = _load(engine, target)
    if entries is None:
        raise NotFound(f"No such manifest: {target.familiar()}")
    if not entries:
        raise InvalidArgument(f"manifest list {target.familiar()} is empty")
    for entry in entries:
        if not entry.platform.get("os") or not entry.platform.get("architecture"):
            raise InvalidArgument(f"manifest {entry.ref} must have an OS and Architecture to be pushed to a "
                                  "registry")
    client = open_client(target.domain)
    try:
        for entry in entries:
            source = refs.parse(entry.ref)
            if source.name == target.name:
                continue
            parsed = manifests.parse(entry.raw, entry.media_type, f"manifest {entry.digest}")
            assert isinstance(parsed, manifests.Manifest)
            blobs = [parsed.config, *parsed.layers]
            push_blobs(engine, client, target, [("", b) for b in blobs], emit,
                       sources={b.digest: [source.path] for b in blobs})
            client.put_manifest(target.path, entry.digest, entry.raw, entry.media_type)
            emit(ProgressEvent("", f"Pushed ref {target.name}@{entry.digest} with digest: {entry.digest}"))
        digest = client.put_manifest(target.path, target.tag or refs.DEFAULT_TAG, list_json(entries),
                                     mt.DOCKER_MANIFEST_LIST)
    finally:
        client.close()
    if purge:
        remove(engine, name)
    return digest


def inspect(engine: Engine, name: str, verbose: bool = False) -> str:
    """Docker's ``manifest inspect`` output: a local list, else the registry's manifest or list."""
    ref = refs.parse(name)
    if ref.digest is None:
        entries = _load(engine, ref.with_default_tag())
        if entries is not None:
            if verbose:
                return json.dumps([e.verbose() for e in entries], indent="\t")
            return _tabbed(list_json(entries))
    ref = ref.with_default_tag()
    client = open_client(ref.domain)
    try:
        fetched = client.get_manifest(ref.path, ref.digest or ref.tag or refs.DEFAULT_TAG)
        parsed = manifests.parse(fetched.data, fetched.media_type or None, f"manifest for {ref.familiar()}")
        if not verbose:
            return _tabbed(fetched.data)
        if isinstance(parsed, manifests.Manifest):
            return json.dumps(_fetch_entry(client, ref).verbose(), indent="\t")
        out = []
        for desc in parsed.manifests:
            if desc.media_type not in mt.MANIFESTS:
                continue
            entry = _fetch_entry(client, ref.with_digest(desc.digest))
            if desc.platform is not None:
                entry.platform = _platform_json(desc.platform.to_json())
            entry.ref = str(ref.with_digest(desc.digest))
            out.append(entry.verbose())
        return json.dumps(out, indent="\t")
    finally:
        client.close()


def _tabbed(data: bytes) -> str:
    """Go's ``json.Indent(raw, "", "\\t")``: key order and values kept."""
    return json.dumps(json.loads(data), indent="\t", ensure_ascii=False)

