"""The Docker Engine API service: an aiohttp application over the engine library (``sampan system service``).

The service is a front end like the CLI: each handler parses Docker's request (query string, JSON body),
calls engine functions and writes Docker's response shape. Engine functions block (SQLite, the file system,
waiting for a monitor), so they run in a thread pool, each worker thread with its own ``Engine`` (SQLite
connections and transactions are per thread). Streams (logs, events, stats, attach, exec) are coroutines that
poll or bridge sockets; none holds a worker thread longer than one engine call, except ``logs --follow``
which reads through the log reader's own follow loop in a worker.

Errors: every ``SampanError`` becomes Docker's error JSON ``{"message": ...}`` with its ``http_status``; a bad
request body or query string is a 400 with a clear message; anything else is a 500 with one line, never a
traceback on the wire (the traceback goes to the service's stderr).

Paths are served both unprefixed and with a version prefix (``/v1.44/containers/json``). ``/_ping`` answers
HEAD and GET with the ``Api-Version``, ``OSType`` and ``Builder-Version`` headers clients negotiate with.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from aiohttp import web

import sampan
from sampan.engine.context import Engine
from sampan.errors import InvalidArgument, SampanError

API_VERSION = "1.45"
MIN_API_VERSION = "1.24"
MAX_JSON_BODY = 8 * 1024 * 1024
QUICK_LIMIT = 0.002  # seconds a read may hold the event loop (see ``Backend.quick``)
BACKEND: web.AppKey[Backend] = web.AppKey("backend")  # type: ignore[name-defined]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HasQuery(Protocol):
    """What the ``query_*`` parsers read: an aiohttp request, or the fast path's plain request."""

    @property
    def query(self) -> Mapping[str, str]: ...


class Backend:
    """Where handlers run engine calls: a thread pool whose threads each own one ``Engine`` of the root."""

    def __init__(self, root: str, runroot: str, workers: int = 64) -> None:
        self.root, self.runroot = root, runroot
        self._local = threading.local()
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sampan-api")
        self.state: dict[str, Any] = {}  # per-service state of the modules (pending attaches, execs)
        self._slow: dict[str, bool] = {}  # quick reads that were slow last time (see ``quick``)

    def engine(self) -> Engine:
        engine = getattr(self._local, "engine", None)
        if engine is None:
            engine = self._local.engine = Engine(self.root, self.runroot, check=False)
        return engine

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(engine, *args, **kwargs)`` in a worker thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: fn(self.engine(), *args, **kwargs))

    def is_quick(self, fn: Callable[..., Any]) -> bool:
        """Whether ``fn`` took under ``QUICK_LIMIT`` last time (see ``quick``)."""
        return not self._slow.get(getattr(fn, "__qualname__", ""), False)

    def run_quick(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(engine, *args)`` on the calling (the event loop's) thread, timed for ``is_quick``."""
        started = time.perf_counter()
        try:
            return fn(self.engine(), *args)
        finally:
            self._slow[getattr(fn, "__qualname__", "")] = time.perf_counter() - started > QUICK_LIMIT

    async def quick(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(engine, *args)`` for a read that is usually quick (``docker ps``): on the event loop's own
        thread, with its own ``Engine``, while the last such read took under ``QUICK_LIMIT`` seconds, else in a
        worker. The hop to a worker costs two thread switches (more CPU than a short list), and ``docker ps``
        is what clients call most; a store so full that the read gets slow goes back to the workers, so the
        loop stays free for the streams it carries, and comes back once the read is quick again."""
        if self.is_quick(fn):
            return self.run_quick(fn, *args)
        started = time.perf_counter()
        result = await self.call(fn, *args)
        self._slow[getattr(fn, "__qualname__", "")] = time.perf_counter() - started > QUICK_LIMIT
        return result

    async def run(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` in a worker thread (for work that needs no engine)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def backend(request: web.Request) -> Backend:
    return request.app[BACKEND]


# ---------------------------------------------------------------------------------------------- responses


def error_response(status: int, message: str) -> web.Response:
    return json_response({"message": message}, status)


def json_response(data: Any, status: int = 200) -> web.Response:
    """JSON as dockerd writes it: the docker CLI reads an error body only when the type is exactly this one."""
    return web.Response(status=status, body=json.dumps(data).encode() + b"\n",
                        headers={"Content-Type": "application/json"})


def no_content() -> web.Response:
    return web.Response(status=204)


class BadRequest(InvalidArgument):
    """A malformed request: bad JSON, a wrong type, a missing or bad parameter (400)."""


# ---------------------------------------------------------------------------------------------- request parsing


async def body_json(request: web.Request, *, required: bool = False) -> dict[str, Any]:
    """The request's JSON object (an empty dict for an empty body unless ``required``)."""
    if request.content_length is not None and request.content_length > MAX_JSON_BODY:
        raise BadRequest(f"request body too large (more than {MAX_JSON_BODY} bytes)")
    data = await request.content.read(MAX_JSON_BODY + 1)
    if len(data) > MAX_JSON_BODY:
        raise BadRequest(f"request body too large (more than {MAX_JSON_BODY} bytes)")
    if not data.strip():
        if required:
            raise BadRequest("invalid JSON: the request body is empty")
        return {}
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"invalid JSON: {e}") from None
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"invalid JSON: expected an object, got {type(value).__name__}")
    return value


_TRUE = ("1", "true", "True", "TRUE", "yes")
_FALSE = ("", "0", "false", "False", "FALSE", "no")


def query_bool(request: HasQuery, name: str, default: bool = False) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadRequest(f"invalid value for {name}: {value!r} (expected a boolean)")


def query_int(request: HasQuery, name: str, default: int | None = None) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"invalid value for {name}: {value!r} (expected an integer)") from None


def query_filters(request: HasQuery) -> dict[str, list[str]]:
    """Docker's ``filters`` parameter: ``{"key": ["v", ...]}`` or the old ``{"key": {"v": true}}``."""
    text = request.query.get("filters", "")
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise BadRequest(f"invalid filters: {e}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadRequest("invalid filters: expected a JSON object")
    out: dict[str, list[str]] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            out[key] = [str(k) for k, v in value.items() if v]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            out[key] = list(value)
        elif isinstance(value, str):
            out[key] = [value]
        else:
            raise BadRequest(f"invalid filters: bad value for {key!r}")
    return out


def field(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = None) -> Any:
    """``data[key]`` checked against ``kind`` (null is the default), with Go's unmarshal wording on mismatch."""
    value = data.get(key)
    if value is None:
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if bool not in kinds and isinstance(value, bool) and (int in kinds or float in kinds):
        raise _type_error(value, key, kinds, where)
    if not isinstance(value, kinds):
        raise _type_error(value, key, kinds, where)
    return value


def _type_error(value: Any, key: str, kinds: tuple[type, ...], where: str) -> BadRequest:
    names = {str: "string", int: "int64", float: "float64", bool: "bool", list: "array", dict: "object"}
    got = {str: "string", int: "number", float: "number", bool: "bool", list: "array", dict: "object"}
    return BadRequest(f"json: cannot unmarshal {got.get(type(value), type(value).__name__)} into Go struct field "
                      f"{where}.{key} of type {'/'.join(names.get(k, k.__name__) for k in kinds)}")


def str_list(data: dict[str, Any], key: str, where: str, *, split: bool = False) -> list[str] | None:
    """A list of strings (Docker's strslice also takes one string: ``split`` it as a shell would not)."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"json: cannot unmarshal {type(value).__name__} into Go struct field {where}.{key} of "
                         "type []string")
    return list(value)


def str_map(data: dict[str, Any], key: str, where: str) -> dict[str, str]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise BadRequest(f"json: cannot unmarshal {type(value).__name__} into Go struct field {where}.{key} of "
                         "type map[string]string")
    return dict(value)


def registry_auth(request: web.Request) -> Any:
    """The credentials of ``X-Registry-Auth`` (base64url JSON ``{username, password, serveraddress}``, or
    ``{identitytoken}``, or the old ``{auth: base64(user:password)}``) as ``Credentials``; None when the header
    is absent, empty or carries no credentials (then the stored ones apply). Like dockerd, an undecodable header
    counts as no credentials."""
    import base64
    import binascii

    from sampan.registry.credentials import Credentials

    text = request.headers.get("X-Registry-Auth", "").strip()
    if not text or len(text) > 64 << 10:
        return None
    text = text.replace("+", "-").replace("/", "_").rstrip("=")
    try:
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(data, dict):
        return None

    def get(key: str) -> str:
        value = data.get(key)
        return value if isinstance(value, str) else ""

    username, password, token = get("username"), get("password"), get("identitytoken")
    if not username and not password and get("auth"):
        try:
            username, _, password = base64.b64decode(get("auth")).decode().partition(":")
        except (binascii.Error, ValueError):
            return None
    if token:
        return Credentials(username=username, identity_token=token)
    if username or password:
        return Credentials(username=username, password=password)
    return None


# ---------------------------------------------------------------------------------------------- bodies in threads


class _ResponseWriter(io.RawIOBase):
    """A file a worker thread writes into; each write goes to the HTTP response (prepared on the first one),
    waiting for the event loop, so a slow client slows the writer down."""

    def __init__(self, request: web.Request, response: web.StreamResponse, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.request, self.response, self.loop = request, response, loop

    def writable(self) -> bool:
        return True

    async def _write(self, data: bytes) -> None:
        if not self.response.prepared:
            await self.response.prepare(self.request)
        await self.response.write(data)

    def write(self, data: Any) -> int:
        data = bytes(data)
        if data:
            asyncio.run_coroutine_threadsafe(self._write(data), self.loop).result()
        return len(data)


async def stream_from_thread(request: web.Request, produce: Callable[[Engine, Any], None],
                             content_type: str = "application/x-tar",
                             headers: dict[str, str] | None = None) -> web.StreamResponse:
    """Run ``produce(engine, out)`` in a worker, streaming what it writes to ``out``; an error raised before the
    first byte is an ordinary error response, one after it cuts the stream."""
    response = web.StreamResponse(headers={"Content-Type": content_type, **(headers or {})})
    out = _ResponseWriter(request, response, asyncio.get_running_loop())

    def run(engine: Engine) -> None:
        buffered = io.BufferedWriter(out, 1 << 16)
        produce(engine, buffered)
        buffered.flush()

    try:
        await backend(request).call(run)
    except Exception as e:
        if not response.prepared:
            raise
        if not isinstance(e, ConnectionError):  # the client went away: nothing to report
            traceback.print_exc(file=sys.stderr)
        return response
    if not response.prepared:
        await response.prepare(request)
    await response.write_eof()
    return response


class _End:
    """The end of a JSON-lines stream."""


async def json_lines(request: web.Request, work: Callable[[Engine, Callable[[dict[str, Any]], None]], Any],
                     finish: Callable[[Any], list[dict[str, Any]]] | None = None) -> web.StreamResponse:
    """Docker's streamed JSON lines (pull, push, build): ``work(engine, send)`` runs in a worker and ``send``s
    dicts, which go out one per line as they come (a bounded queue: a slow client slows the work down); then
    ``finish(result)`` gives the closing lines. An error before the first line is an ordinary error answer; one
    after it is an ``errorDetail`` line, as dockerd writes it. A client that goes away stops the work at its
    next ``send``."""
    import concurrent.futures

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=512)
    gone = threading.Event()

    def send(line: dict[str, Any]) -> None:
        if gone.is_set():
            raise ConnectionError("the client went away")
        future = asyncio.run_coroutine_threadsafe(queue.put(line), loop)
        while True:
            try:
                future.result(timeout=1)
                return
            except concurrent.futures.TimeoutError:
                if gone.is_set():
                    future.cancel()
                    raise ConnectionError("the client went away") from None

    def run(engine: Engine) -> Any:
        try:
            return work(engine, send)
        finally:
            if not gone.is_set():
                asyncio.run_coroutine_threadsafe(queue.put(_End), loop)

    task = asyncio.ensure_future(backend(request).call(run))
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    try:
        line = await queue.get()
        if line is _End:
            result = await task  # an error before any output: an ordinary error answer
            lines = finish(result) if finish is not None else []
            await response.prepare(request)
        else:
            await response.prepare(request)
            while line is not _End:
                await response.write(json.dumps(line).encode() + b"\r\n")
                line = await queue.get()
            try:
                result = await task
                lines = finish(result) if finish is not None else []
            except Exception as e:  # noqa: BLE001 - reported in the stream, as dockerd does
                if not isinstance(e, SampanError):
                    traceback.print_exc(file=sys.stderr)
                message = " ".join(str(e).split()) or type(e).__name__
                lines = [{"errorDetail": {"message": message}, "error": message}]
        for line in lines:
            await response.write(json.dumps(line).encode() + b"\r\n")
    except (ConnectionError, asyncio.CancelledError):
        gone.set()
        with contextlib.suppress(Exception):
            await asyncio.shield(task)  # let the work stop (and clean up) at its next send
        raise
    await response.write_eof()
    return response


async def body_to_file(request: web.Request, limit: int | None = None) -> Any:
    """The request body spooled into a temporary file (memory up to 16 MiB), positioned at its start."""
    import tempfile

    spool = tempfile.SpooledTemporaryFile(max_size=16 << 20)  # noqa: SIM115 - the caller closes it
    total = 0
    try:
        while chunk := await request.content.read(1 << 20):
            total += len(chunk)
            if limit is not None and total > limit:
                raise BadRequest(f"request body too large (more than {limit} bytes)")
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool


# ---------------------------------------------------------------------------------------------- hijacking


class _Hijacked(asyncio.Protocol):
    """The protocol of a connection taken over from aiohttp after ``101 UPGRADED``: bytes in, EOF, close."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    def data_received(self, data: bytes) -> None:
        self.queue.put_nowait(data)

    def eof_received(self) -> bool:
        self.queue.put_nowait(None)
        return True  # half-closed: we may still write

    def connection_lost(self, exc: Exception | None) -> None:
        self.queue.put_nowait(None)


class Hijack:
    """A raw two-way stream after Docker's connection hijacking (``Upgrade: tcp`` -> ``101 UPGRADED``)."""

    def __init__(self, transport: asyncio.Transport, protocol: _Hijacked) -> None:
        self.transport, self.protocol = transport, protocol

    async def read(self) -> bytes | None:
        """The next bytes the client sent; None once it closed its side."""
        return await self.protocol.queue.get()

    async def write(self, data: bytes) -> bool:
        if self.transport.is_closing():
            return False
        self.transport.write(data)
        while self.transport.get_write_buffer_size() > 1 << 20 and not self.transport.is_closing():
            await asyncio.sleep(0.005)
        return not self.transport.is_closing()

    def close(self) -> None:
        self.transport.close()


async def hijack(request: web.Request, content_type: str) -> tuple[web.StreamResponse, Hijack]:
    """Answer ``101 UPGRADED`` (or ``200`` to a client that asked for no upgrade) and take the connection over.

    The handler must return the response once it is done with the stream; aiohttp then writes nothing more."""
    upgrade = request.headers.get("Upgrade", "").lower() == "tcp"
    response = web.StreamResponse(status=101 if upgrade else 200,
                                  headers={"Content-Type": content_type, **({"Connection": "Upgrade",
                                                                             "Upgrade": "tcp"} if upgrade else {})})
    response.force_close()
    if not upgrade:
        response.enable_chunked_encoding()  # never used: the stream is written raw, then the connection closes
    await response.prepare(request)
    transport = request.transport
    assert transport is not None
    aio_protocol = request.protocol
    tail = getattr(aio_protocol, "_message_tail", b"")
    protocol = _Hijacked()
    if tail:
        protocol.queue.put_nowait(bytes(tail))
    transport.set_protocol(protocol)
    if not transport.is_reading():
        transport.resume_reading()
    return response, Hijack(transport, protocol)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- the application


_HEADERS = {"Api-Version": API_VERSION, "Server": f"sampan/{sampan.__version__} (linux)",
            "Docker-Experimental": "false", "Ostype": "linux"}


@web.middleware
async def _middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One layer around every handler (each layer costs a coroutine per request): refuse API versions outside
    what we serve (Docker's wording), turn errors into Docker's error JSON, and put our headers on answers."""
    version = request.match_info.get("_version")
    if version and version != API_VERSION:
        refused = refuse_version(version)
        if refused is not None:
            return refused
    try:
        response = await handler(request)
    except SampanError as e:
        response = error_response(e.http_status, " ".join(str(e).split()))
    except web.HTTPException as e:
        if e.status < 400:
            raise
        text = e.text or e.reason
        if e.status == 404 and text.startswith("404"):
            text = "page not found"
        if e.status == 413:
            text = "request body too large"
        response = error_response(e.status, text)
    except asyncio.CancelledError:
        raise
    except ConnectionError:  # the client went away mid-answer
        return web.Response(status=499)
    except Exception as e:  # noqa: BLE001 - one line to the client, the traceback to our stderr
        traceback.print_exc(file=sys.stderr)
        response = error_response(500, f"internal error: {type(e).__name__}: " + " ".join(str(e).split()))
    if not response.prepared:
        headers = response.headers
        for key, value in _HEADERS.items():
            if key not in headers:
                headers[key] = value
    return response


def refuse_version(version: str) -> web.Response | None:
    try:
        wanted = _version_tuple(version)
    except BadRequest as e:
        return error_response(400, str(e))
    if wanted > _version_tuple(API_VERSION):
        return error_response(400, f"client version {version} is too new. Maximum supported API version is "
                                   f"{API_VERSION}")
    if wanted < _version_tuple(MIN_API_VERSION):
        return error_response(400, f"client version {version} is too old. Minimum supported API version is "
                                   f"{MIN_API_VERSION}, please upgrade your client to a newer version")
    return None


def _version_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        raise BadRequest(f"invalid API version: {text}") from None


class Routes:
    """Route registration: each path served unprefixed and under ``/v{version}``."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    def add(self, method: str, path: str, handler: Handler) -> None:
        self.app.router.add_route(method, path, handler)
        self.app.router.add_route(method, r"/v{_version:[0-9]+\.[0-9]+}" + path, handler)


async def _ping(request: web.Request) -> web.StreamResponse:
    headers = {"Api-Version": API_VERSION, "OSType": "linux", "Builder-Version": "1",
               "Docker-Experimental": "false", "Cache-Control": "no-cache, no-store, must-revalidate",
               "Pragma": "no-cache"}
    if request.method == "HEAD":
        return web.Response(status=200, headers={**headers, "Content-Type": "text/plain; charset=utf-8",
                                                 "Content-Length": "0"})
    return web.Response(status=200, text="OK", headers=headers)


async def _not_implemented(request: web.Request) -> web.StreamResponse:
    return error_response(501, f"{request.method} {request.path}: not implemented by sampan yet")


def make_app(root: str, runroot: str) -> web.Application:
    from sampan.api import build, containers, images, networks, system, volumes
    from sampan.api import exec as exec_api

    app = web.Application(middlewares=[_middleware], client_max_size=MAX_JSON_BODY)
    app[BACKEND] = Backend(root, runroot)
    routes = Routes(app)
    routes.add("GET", "/_ping", _ping)
    routes.add("HEAD", "/_ping", _ping)
    for module in (system, containers, exec_api, images, build, volumes, networks):
        module.register(routes)
    for method, path in (("POST", "/commit"),
                         ("GET", "/plugins"), ("GET", "/swarm"), ("GET", "/services"), ("GET", "/nodes")):
        routes.add(method, path, _not_implemented)

    async def on_cleanup(app: web.Application) -> None:
        app[BACKEND].close()

    app.on_cleanup.append(on_cleanup)
    return app
