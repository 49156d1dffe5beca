"""The service's fast path: plain ``/_ping`` and ``/containers/json`` requests answered before aiohttp.

Why: every docker command starts with ``HEAD /_ping``, and ``docker ps`` adds ``GET /containers/json``. aiohttp's
own floor for that pair (parsing, request and response objects, its handler task), with no application at all,
is about 85 µs more than a bare protocol on the same loop, and dockerd answers the whole pair in about 76 µs: with
aiohttp in the way, ``docker ps`` cannot be as fast against sampan as against dockerd (issue 9, ``bench/api.py``).

What: one protocol object per connection reads request heads. A plain request (HTTP/1.1, GET or HEAD, no body,
no upgrade, no expectation, on ``/_ping`` or ``GET /containers/json``, unprefixed or under a ``/vX.Y`` prefix
this service serves) is answered here, through the same functions aiohttp's handlers call
(``sampan.api.containers.listing``). The first request that is anything else, or whose answer raises, hands the
connection, with every byte read so far, to aiohttp's protocol, which serves it from then on: errors, streams,
hijacking and every other endpoint keep one implementation, and this module never answers with an error.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

import sampan
from sampan.api.containers import list_options, listing
from sampan.api.server import API_VERSION, Backend, refuse_version

MAX_HEAD = 16 << 10  # a longer head goes to aiohttp, which applies its own limits
IDLE_S = 75.0  # aiohttp's keep-alive timeout: an idle connection is closed after it, as there
SWEEP_S = 15.0  # how often idle connections are looked for (one timer for all: not one per connection)
_VERSIONED = re.compile(r"/v([0-9]+\.[0-9]+)(/.*)")
# the headers of aiohttp's answers: the handler's, then the middleware's (sampan.api.server)
_COMMON = (f"Api-Version: {API_VERSION}\r\nDocker-Experimental: false\r\n"
           f"Server: sampan/{sampan.__version__} (linux)\r\n")
_PING = (_COMMON + "OSType: linux\r\nBuilder-Version: 1\r\nCache-Control: no-cache, no-store, must-revalidate\r\n"
         "Pragma: no-cache\r\nContent-Type: text/plain; charset=utf-8\r\n")
_JSON = _COMMON + "Ostype: linux\r\nContent-Type: application/json\r\n"


@dataclass(frozen=True)
class PlainRequest:
    """A request's query string, as the ``query_*`` parsers of ``sampan.api.server`` read it."""

    query: Mapping[str, str]


class FastPaths:
    """The protocol factory the listening sockets use; it remembers its open connections, to close idle ones
    and, at the end, all of them."""

    def __init__(self, aiohttp_factory: Callable[[], asyncio.Protocol], api: Backend) -> None:
        self.aiohttp_factory = aiohttp_factory
        self.api = api
        self.connections: set[FastPath] = set()
        self._date = (0, "")
        self._sweeper: asyncio.TimerHandle | None = None

    def __call__(self) -> FastPath:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(SWEEP_S, self._sweep)
        return FastPath(self)

    def date(self) -> str:
        """The Date header's value, formatted once a second."""
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, email.utils.formatdate(now, usegmt=True))
        return self._date[1]

    def _sweep(self) -> None:
        idle_since = time.monotonic() - IDLE_S
        for connection in [c for c in self.connections if c.last < idle_since]:
            connection.close()
        self._sweeper = asyncio.get_running_loop().call_later(SWEEP_S, self._sweep)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for connection in list(self.connections):
            connection.close()


class FastPath(asyncio.Protocol):
    """One connection, until its first request that is not plain (see the module's docstring)."""

    def __init__(self, paths: FastPaths) -> None:
        self._paths = paths
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self.last = time.monotonic()  # of the last bytes read (FastPaths closes idle connections)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._paths.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()

    def eof_received(self) -> bool:
        return False  # the client is done: close

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self.last = time.monotonic()
        while self._transport is not None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD:
                    self._hand_over()
                return
            try:
                answer = self._answer(self._buffer[:end])
            except Exception:  # noqa: BLE001 - aiohttp's handlers answer it again, with their error handling
                answer = None
            if answer is None:
                self._hand_over()
                return
            self._buffer = self._buffer[end + 4:]
            response, close = answer
            self._transport.write(response)
            if close:
                self._transport.close()
                return

    def _answer(self, head: bytes) -> tuple[bytes, bool] | None:
        """The whole response to a plain request and whether to close after it; None for any other."""
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or parts[2] != b"HTTP/1.1" or parts[0] not in (b"GET", b"HEAD"):
            return None
        close = False
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            name = name.lower()
            if not sep or not name or name != name.strip():
                return None
            if name == b"content-length":
                if value.strip() != b"0":
                    return None
            elif name in (b"transfer-encoding", b"upgrade", b"expect"):
                return None
            elif name == b"connection":
                token = value.strip().lower()
                if token not in (b"close", b"keep-alive"):
                    return None
                close = token == b"close"
        path, _, query = parts[1].decode("ascii").partition("?")
        versioned = _VERSIONED.fullmatch(path)
        if versioned:
            if versioned.group(1) != API_VERSION and refuse_version(versioned.group(1)) is not None:
                return None
            path = versioned.group(2)
        head_only = parts[0] == b"HEAD"
        if path == "/_ping":
            return self._response(_PING, b"" if head_only else b"OK", close, head_only), close
        if path == "/containers/json" and not head_only:
            return self._containers(query, close)
        return None

    def _containers(self, query: str, close: bool) -> tuple[bytes, bool] | None:
        values: dict[str, str] = {}
        if query:
            for key, value in parse_qsl(query, keep_blank_values=True):
                values.setdefault(key, value)  # the first, as aiohttp's request.query.get gives
        options, size = list_options(PlainRequest(values))
        api = self._paths.api
        if size or not api.is_quick(listing):  # a worker's job: aiohttp's handler sends it there
            return None
        body = json.dumps(api.run_quick(listing, options)).encode() + b"\n"
        return self._response(_JSON, body, close), close

    def _response(self, headers: str, body: bytes, close: bool, head_only: bool = False) -> bytes:
        length = "0" if head_only else str(len(body))
        text = (f"HTTP/1.1 200 OK\r\n{headers}Date: {self._paths.date()}\r\nContent-Length: {length}\r\n"
                + ("Connection: close\r\n" if close else "") + "\r\n")
        return text.encode() + body

    def _hand_over(self) -> None:
        """aiohttp's protocol takes the connection over, with what was read and not answered."""
        transport, buffered = self._transport, self._buffer
        self._forget()
        if transport is None or transport.is_closing():
            return
        protocol = self._paths.aiohttp_factory()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if buffered:
            protocol.data_received(buffered)

    def _forget(self) -> None:
        self._transport, self._buffer = None, b""
        self._paths.connections.discard(self)
