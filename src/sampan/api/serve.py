"""Running the service: listening sockets (unix, mode 0660; TCP only when asked, TLS as dockerd's flags say),
the monitor host started before any thread exists, and a clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import gc
import grp
import os
import signal
import socket
import ssl
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sampan.errors import InvalidArgument, UsageError

if TYPE_CHECKING:
    from sampan.api.tls import TLSListener


@dataclass(frozen=True)
class Listen:
    kind: str  # "unix" or "tcp"
    address: str  # the socket path, or the host
    port: int = 0

    @classmethod
    def parse(cls, text: str) -> Listen:
        if text.startswith("unix://"):
            path = text[len("unix://"):]
            if not path.startswith("/"):
                raise UsageError(f"invalid host {text!r}: the socket path must be absolute")
            return cls("unix", path)
        if text.startswith("tcp://"):
            rest = text[len("tcp://"):].rstrip("/")
            host, sep, port = rest.rpartition(":")
            if not sep or not port.isdigit() or not 0 < int(port) < 65536:
                raise UsageError(f"invalid host {text!r}: expected tcp://ADDR:PORT")
            return cls("tcp", host.strip("[]") or "127.0.0.1", int(port))
        if text.startswith("/"):
            return cls("unix", text)
        raise UsageError(f"invalid host {text!r}: expected unix:///path or tcp://ADDR:PORT")


def _group_id(group: str) -> int | None:
    """The gid of ``--group`` (a name or a number), checked before any socket exists."""
    if not group:
        return None
    try:
        return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise InvalidArgument(f"group {group!r} not found") from None


def _unix_socket(path: str, gid: int | None) -> socket.socket:
    os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
        raise InvalidArgument(f"{path}: another service is listening there")
    except OSError:
        pass  # nothing listens there (no file, or a stale socket)
    finally:
        probe.close()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o117)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, 0o660)
    if gid is not None:
        os.chown(path, 0, gid)
    sock.listen(128)
    return sock


def _tls_context(tlsverify: bool, cacert: str, cert: str, key: str) -> ssl.SSLContext:
    if not cert or not key:
        raise UsageError("--tls and --tlsverify need --tlscert and --tlskey")
    if tlsverify and not cacert:
        raise UsageError("--tlsverify needs --tlscacert to verify client certificates")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
        if tlsverify:
            context.load_verify_locations(cacert)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as e:  # a missing file, or one that holds no certificate or key
        raise InvalidArgument(f"could not load the TLS certificates: {e.strerror or e}") from None
    return context


def _prestart_monitor_host(root: str, runroot: str) -> None:
    """Have the monitor host running before the first start, serving the CLI's warm commands as well (a host
    launched by the CLI would, and the service's pings keep this one alive)."""
    from sampan.engine.containers import monitor_host
    from sampan.engine.context import Engine

    try:
        with Engine(root, runroot, check=False) as engine:
            monitor_host.offer("command", "sampan.cli.warm")
            monitor_host.ensure(engine)
    except Exception as e:  # noqa: BLE001 - an optimisation only
        print(f"sampan service: no monitor host ({type(e).__name__}: {e})", file=sys.stderr)


async def _keep_monitor_host(root: str, runroot: str) -> None:
    """Ping the monitor host now and then: it exits when idle, and the next start would wait for a new one."""
    from pathlib import Path

    from sampan.engine.containers import monitor_host

    path = str(Path(runroot) / "monitor-host.sock")
    while True:
        await asyncio.sleep(30)
        await asyncio.get_running_loop().run_in_executor(None, monitor_host._send, path, b"{}", [])


def _quiet_bad_requests() -> None:
    """aiohttp logs a malformed request (the client's error, which it answers with a 400) with a traceback;
    the service's log gets one line instead."""
    import logging

    from aiohttp.http_exceptions import HttpProcessingError

    class OneLine(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            error = record.exc_info[1] if record.exc_info else None
            if isinstance(error, HttpProcessingError):
                record.msg, record.args = "sampan service: bad request: %s", (" ".join(str(error).split()),)
                record.exc_info = record.exc_text = None
            return True

    logging.getLogger("aiohttp.server").addFilter(OneLine())


def _tls_listener(item: Listen, context: ssl.SSLContext, server: Any,
                  loop: asyncio.AbstractEventLoop) -> TLSListener:
    """A TCP listener whose connections, once through the TLS handshake, the protocol factory ``server`` serves
    as local ones (see ``sampan.api.tls`` for why the event loop does not do the TLS itself)."""
    from sampan.api.tls import TLSListener

    family = socket.AF_INET6 if ":" in item.address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((item.address, item.port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise InvalidArgument(f"tcp://{item.address}:{item.port}: {e.strerror or e}") from None

    def serve(conn: socket.socket) -> None:
        asyncio.run_coroutine_threadsafe(loop.connect_accepted_socket(server, conn), loop).result(timeout=30)

    return TLSListener(sock, context, serve)


def serve(root: str, runroot: str, listens: list[Listen], *, group: str = "", tls: bool = False,
          tlsverify: bool = False, cacert: str = "", cert: str = "", key: str = "") -> int:
    import uvloop
    from aiohttp import web

    from sampan.api.server import make_app

    context = _tls_context(tlsverify, cacert, cert, key) if (tls or tlsverify) else None
    if context is not None and not any(item.kind == "tcp" for item in listens):
        raise UsageError("--tls applies to tcp:// hosts only")
    gid = _group_id(group)
    sockets = []
    for item in listens:
        if item.kind == "unix":
            sockets.append((item, _unix_socket(item.address, gid)))
    _prestart_monitor_host(root, runroot)

    tls_listeners: list[TLSListener] = []

    async def main() -> None:
        from sampan.api.fastpath import FastPaths
        from sampan.api.server import BACKEND

        _quiet_bad_requests()
        app = make_app(root, runroot)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        # the listeners hand each connection to the fast path, which hands it to aiohttp's protocol
        # (runner.server) at its first request that is not a plain ping or listing (see sampan.api.fastpath)
        paths = FastPaths(runner.server, app[BACKEND])
        loop = asyncio.get_running_loop()
        servers = [await loop.create_unix_server(paths, sock=sock) for _, sock in sockets]
        for item in listens:
            if item.kind == "tcp" and context is None:
                try:
                    servers.append(await loop.create_server(paths, item.address, item.port))
                except OSError as e:  # a TCP port in use, an address not ours
                    raise InvalidArgument(f"tcp://{item.address}:{item.port}: {e.strerror or e}") from None
            elif item.kind == "tcp":
                tls_listeners.append(_tls_listener(item, context, paths, loop))
        for listener in tls_listeners:
            listener.start()
        gc.freeze()  # what start-up made lives as long as we do: keep the collector from walking it again
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        keeper = asyncio.ensure_future(_keep_monitor_host(root, runroot))
        print("sampan service: listening on " + ", ".join(
            f"unix://{i.address}" if i.kind == "unix" else f"tcp://{i.address}:{i.port}" for i in listens),
            file=sys.stderr, flush=True)
        await stop.wait()
        keeper.cancel()
        for listener in tls_listeners:
            listener.close()
        for server in servers:
            server.close()
        paths.close()
        await runner.cleanup()

    try:
        # uvloop: aiohttp on it takes about a third less CPU per request than on asyncio's own loop, which is
        # most of what the service adds to a quick call such as docker ps (bench/api.py)
        uvloop.run(main())
    finally:
        for item, sock in sockets:
            sock.close()
            try:
                os.unlink(item.address)
            except FileNotFoundError:
                pass
    return 0
