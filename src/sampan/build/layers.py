"""What an image's layers do to each other: "images only grow".

A layer can only add; deleting a file in a later layer adds a whiteout and leaves the bytes in the earlier layer.
``analyze`` walks the layers' tar streams (headers only) and charges each layer with the bytes of files that a
later layer deletes (``.wh.name``, an opaque directory, a non-directory replacing a directory) or overwrites
(the same path again): those bytes are shipped and stored but never seen. Efficiency is
``1 - wasted / added`` over all layers, as dive reports it.

``squash`` merges a run of layers into one tar with the same effect (the last entry of each path wins, a
whiteout drops what the merged layers added below it and stays to hide the base image's copy).
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import IO, Any

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


@dataclass
class LayerWaste:
    index: int
    created_by: str
    size: int  # bytes of regular files the layer adds
    wasted: int = 0  # of those, bytes a later layer deletes or overwrites
    paths: list[str] = field(default_factory=list)  # the wasted paths, largest first


@dataclass
class Analysis:
    layers: list[LayerWaste]

    @property
    def added(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def wasted(self) -> int:
        return sum(layer.wasted for layer in self.layers)

    @property
    def efficiency(self) -> float:
        return 1.0 - self.wasted / self.added if self.added else 1.0


def _clean(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


def _under(path: str, directory: str) -> bool:
    return not directory or path.startswith(directory + "/")


def _members(stream: IO[bytes]) -> Iterator[tarfile.TarInfo]:
    with tarfile.open(fileobj=stream, mode="r|", encoding="utf-8", errors="surrogateescape") as archive:
        yield from archive


def analyze(layers: Iterable[tuple[str, IO[bytes]]]) -> Analysis:
    """``layers``: (created_by, uncompressed tar stream) from the bottom layer up."""
    live: dict[str, tuple[int, int]] = {}  # path -> (layer index, size) of the visible regular files
    out: list[LayerWaste] = []

    def drop(path: str, contents_only: bool) -> None:
        for key in [k for k in live if _under(k, path) or (k == path and not contents_only)]:
            index, size = live.pop(key)
            out[index].wasted += size
            out[index].paths.append(key)

    for index, (created_by, stream) in enumerate(layers):
        layer = LayerWaste(index, created_by, 0)
        out.append(layer)
        for member in _members(stream):
            path = _clean(member.name)
            base = posixpath.basename(path)
            parent = posixpath.dirname(path)
            if base == OPAQUE:
                drop(parent, True)
            elif base.startswith(WHITEOUT):
                drop(posixpath.join(parent, base[len(WHITEOUT):]), False)
            else:
                if not member.isdir():
                    drop(path, False)
                if member.isreg():
                    layer.size += member.size
                    live[path] = (index, member.size)
    for layer in out:
        layer.paths.sort(key=lambda p: -live.get(p, (0, 0))[1])
    return Analysis(out)


def squash(layers: Iterable[IO[bytes]], add: Any) -> None:
    """Merge uncompressed layer tars (bottom first) into one, written through ``add(info, fileobj)``.
    The streams must be seekable: members are read back by offset after the merge is known."""
    merged: dict[str, tuple[tarfile.TarFile, tarfile.TarInfo]] = {}
    with ExitStack() as stack:
        for stream in layers:
            archive = stack.enter_context(tarfile.open(fileobj=stream, mode="r:", encoding="utf-8",
                                                       errors="surrogateescape"))
            for member in archive.getmembers():
                path = _clean(member.name)
                base = posixpath.basename(path)
                parent = posixpath.dirname(path)
                if base == OPAQUE:
                    for key in [k for k in merged if _under(k, parent)]:
                        del merged[key]
                elif base.startswith(WHITEOUT):
                    gone = posixpath.join(parent, base[len(WHITEOUT):])
                    for key in [k for k in merged if k == gone or _under(k, gone)]:
                        del merged[key]
                else:
                    whiteout = posixpath.join(parent, WHITEOUT + base)
                    if whiteout in merged:
                        del merged[whiteout]  # re-added: the whiteout would hide it again
                        if member.isdir():  # ...but what the base has below it stays deleted
                            merged[posixpath.join(path, OPAQUE)] = (archive, _opaque(path))
                    old = merged.get(path)
                    if old is not None and old[1].isdir() and not member.isdir():
                        for key in [k for k in merged if _under(k, path)]:
                            del merged[key]
                member.name = path
                merged[path] = (archive, member)
        for path in sorted(merged, key=lambda p: p.split("/")):
            archive, member = merged[path]
            add(member, archive.extractfile(member) if member.isreg() else None)


def _opaque(directory: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(posixpath.join(directory, OPAQUE))
    info.mode = 0o644
    return info
