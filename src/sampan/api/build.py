"""``POST /build``: the classic builder (``DOCKER_BUILDKIT=0``) behind Docker's API.

The body is the build context as a tar archive (plain or compressed; a body that is no archive is the Dockerfile
itself, with an empty context). It is unpacked through ``unpack_layer`` (no entry lands outside the temporary
context directory) under the storage root's ``tmp``, removed after the build. The Dockerfile named by
``dockerfile`` is read inside the context with ``openat2(RESOLVE_IN_ROOT)``, so neither ``..`` nor a symlink in
the context can make the service read a host file.

The builder's classic output goes out as ``{"stream": ...}`` lines as it is written; on success the image ID
comes as ``{"aux": {"ID": ...}}`` just before ``Successfully built`` (which is held back until then), as dockerd's
classic builder writes it; with ``q`` the only stream line is the image ID. A failed step is an ``errorDetail``
line.
"""

from __future__ import annotations

import codecs
import json
import os
import shutil
import tempfile
from typing import Any

from aiohttp import web

from sampan.api.server import BadRequest, Routes, body_to_file, error_response, json_lines, query_bool
from sampan.errors import NotFound

MAX_DOCKERFILE = 16 << 20


def _json_map(request: web.Request, name: str) -> dict[str, str]:
    """A ``{"KEY": "value"}`` query parameter (``buildargs``, ``labels``); null values are left out, as
    dockerd leaves out a build arg given without a value."""
    text = request.query.get(name, "")
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as e:
        raise BadRequest(f"invalid {name}: {e}") from None
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str | None) for v in value.values()):
        raise BadRequest(f"invalid {name}: expected a JSON object of strings")
    return {str(k): v for k, v in value.items() if v is not None}


def _unpack_context(body: Any, into: str) -> str | None:
    """Unpack the tar context into ``into``; the Dockerfile's text when the body is no archive."""
    import tarfile

    from sampan.image.compression import open_decompressed
    from sampan.snapshot.unpack import unpack_layer

    try:
        with tarfile.open(fileobj=body, mode="r:*"):
            pass
    except (tarfile.TarError, EOFError):
        body.seek(0)
        data = body.read(MAX_DOCKERFILE + 1)
        if not data:
            return None  # an empty body: an empty context (the Dockerfile is then missing)
        if len(data) > MAX_DOCKERFILE:
            raise BadRequest("the build context is no tar archive (and too large to be a Dockerfile)") from None
        return data.decode("utf-8", "surrogateescape")
    body.seek(0)
    unpack_layer(_Padded(open_decompressed(body)), into, whiteouts="keep")  # type: ignore[arg-type]
    return None


class _Padded:
    """A tar stream whose end is completed: the docker CLI sends a context rewritten for ``-f`` outside the
    context (``.dockerfile.<random>`` added) without the last entry's padding and the end-of-archive blocks, which
    dockerd accepts. When the stream does not end on a 512-byte block, zeros complete the block and the end
    blocks follow; a stream that ends on a block boundary is passed on as it is."""

    def __init__(self, raw: Any) -> None:
        self.raw, self.total, self.tail = raw, 0, b""
        self.ended = False

    def read(self, n: int = -1) -> bytes:
        if not self.ended:
            data = self.raw.read(n)
            if data:
                self.total += len(data)
                return bytes(data)
            self.ended = True
            if self.total % 512:
                self.tail = b"\0" * (512 - self.total % 512 + 1024)
        if n is None or n < 0:
            data, self.tail = self.tail, b""
        else:
            data, self.tail = self.tail[:n], self.tail[n:]
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _read_dockerfile(context: str, name: str) -> str:
    """The Dockerfile at ``name`` inside ``context``, resolved as if the context were the root."""
    from sampan._linux.syscalls import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2

    root = os.open(context, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = openat2(root, name, os.O_RDONLY | os.O_CLOEXEC, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    except FileNotFoundError:
        raise NotFound(f"Cannot locate specified Dockerfile: {name}") from None
    except OSError as e:
        raise NotFound(f"Cannot locate specified Dockerfile: {name} ({e.strerror})") from None
    finally:
        os.close(root)
    with os.fdopen(fd, "rb") as f:
        if not os.path.isfile(f"/proc/self/fd/{f.fileno()}"):
            raise BadRequest(f"the Dockerfile {name} is not a regular file")
        data = f.read(MAX_DOCKERFILE + 1)
    if len(data) > MAX_DOCKERFILE:
        raise BadRequest(f"the Dockerfile {name} is too large")
    return data.decode("utf-8", "surrogateescape")


class _StreamOut:
    """The builder's output file: what it writes goes out as ``{"stream": text}`` lines. From the
    ``Successfully built`` line on, output is held back so that the ``aux`` line with the image ID can go first."""

    def __init__(self, send: Any) -> None:
        self.send = send
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.held: list[str] | None = None

    def write(self, data: bytes) -> int:
        text = self.decoder.decode(bytes(data))
        if text:
            if self.held is None and text.startswith("Successfully built "):
                self.held = []
            if self.held is not None:
                self.held.append(text)
            else:
                self.send({"stream": text})
        return len(data)

    def flush(self) -> None:
        pass

    def release(self) -> None:
        for text in self.held or []:
            self.send({"stream": text})
        self.held = None


async def build(request: web.Request) -> web.StreamResponse:
    from sampan.engine.build import BuildOptions
    from sampan.engine.build import build as run_build

    if request.query.get("remote"):
        return error_response(501, "building from a remote context (remote) is not supported by sampan")
    version = request.query.get("version", "1")
    if version not in ("", "1"):
        return error_response(501, f"builder version {version} (BuildKit) is not supported by sampan: use the "
                                   "classic builder (DOCKER_BUILDKIT=0)")
    tags = request.query.getall("t", [])
    dockerfile = request.query.get("dockerfile", "") or "Dockerfile"
    build_args = _json_map(request, "buildargs")
    labels = _json_map(request, "labels")
    no_cache = query_bool(request, "nocache")
    quiet = query_bool(request, "q")
    pull = request.query.get("pull", "") not in ("", "0", "false", "False")
    target = request.query.get("target", "")
    network = request.query.get("networkmode", "") or "default"
    for name in ("rm", "forcerm"):
        query_bool(request, name, True)  # accepted: intermediate containers are always removed
    if "\0" in dockerfile:
        raise BadRequest("invalid dockerfile name")

    body = await body_to_file(request)

    def work(engine: Any, send: Any) -> str:
        tmp = tempfile.mkdtemp(prefix="sampan-build-", dir=str(engine.layout.tmp))
        try:
            text = _unpack_context(body, tmp)
            if text is None:
                text = _read_dockerfile(tmp, dockerfile)
            out = _StreamOut(send)
            options = BuildOptions(context=tmp, dockerfile_text=text, tags=tags, build_args=build_args,
                                   target=target, no_cache=no_cache, network=network, quiet=quiet, labels=labels,
                                   pull=pull)
            try:
                result = run_build(engine, options, out)  # type: ignore[arg-type]
            except BaseException:
                out.release()
                raise
            send({"aux": {"ID": result.image_id}})
            out.release()
            if quiet:
                send({"stream": result.image_id + "\n"})
            return result.image_id
        finally:
            body.close()
            shutil.rmtree(tmp, ignore_errors=True)

    return await json_lines(request, work)


def register(routes: Routes) -> None:
    routes.add("POST", "/build", build)
