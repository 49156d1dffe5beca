"""``POST /containers/{id}/attach``: the hijacked stream between a client and the container's monitor.

The monitor speaks sampan's attach protocol (``sampan.monitor.protocol``): its frames for stdout and stderr are
Docker's stdcopy frames already, so without a tty they are passed on as they are; with a tty only the payload
goes (Docker's raw stream). What the client writes becomes STDIN frames, its half-close a STDIN_EOF frame.

No output may be lost when a client attaches before the container starts, which is what ``docker run`` and
``docker start -a`` do (create, attach, wait, start): the monitor accepts clients on its socket only once the
container runs, so an attach to a container that is not running is kept pending, and ``start`` (see
``containers.start``) starts the container through the engine with that attach request, which hands over a
socket attached before the container's program runs. The pending attach then bridges that socket.

``logs=1`` first replays the json-file log up to the moment the live stream was attached (dockerd's order); with
``stream=0`` the answer ends after the replay, so it also serves a container that has stopped.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

from aiohttp import web

from sampan.api.server import Backend, Hijack, backend, hijack, query_bool
from sampan.errors import Conflict
from sampan.monitor import protocol


class PendingAttach:
    """An attach waiting for its container's start: ``start`` hands it a socket (or None: connect yourself)."""

    def __init__(self, streams: dict[str, bool]) -> None:
        self.streams = streams
        self.future: asyncio.Future[socket.socket | None] = asyncio.get_running_loop().create_future()

    def hand(self, sock: socket.socket | None) -> None:
        if not self.future.done():
            self.future.set_result(sock)
        elif sock is not None:
            sock.close()

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


def _pending(api: Backend) -> dict[str, list[PendingAttach]]:
    return api.state.setdefault("pending_attach", {})


def take_pending(api: Backend, container_id: str) -> list[PendingAttach]:
    return [item for item in _pending(api).pop(container_id, []) if not item.future.done()]


async def attach(request: web.Request) -> web.StreamResponse:
    from sampan.engine.containers import model
    from sampan.engine.containers.model import ACTIVE

    api = backend(request)
    streams = {"stdin": query_bool(request, "stdin"), "stdout": query_bool(request, "stdout"),
               "stderr": query_bool(request, "stderr")}
    logs, live = query_bool(request, "logs"), query_bool(request, "stream")
    record = await api.call(model.lookup, request.match_info["id"])
    if record.status == "paused":
        raise Conflict("You cannot attach to a paused container, unpause it first")
    tty = bool(record.config.get("Tty"))
    streams["stdin"] = streams["stdin"] and bool(record.config.get("OpenStdin"))
    content_type = "application/vnd.docker.raw-stream" if tty else "application/vnd.docker.multiplexed-stream"
    sock: socket.socket | None = None
    pending = None
    if live and record.status not in ACTIVE:
        pending = PendingAttach(streams)
        _pending(api).setdefault(record.id, []).append(pending)
    elif live:
        sock = await api.call(model.connect_monitor, record.id)
        sock.sendall(protocol.frame(protocol.HELLO, json.dumps(streams).encode()))
    attached_at = time.time()  # output after this comes through the monitor's socket, not the log
    response, stream = await hijack(request, content_type)
    try:
        if logs:
            await _replay_log(api, record, stream, tty=tty, stdout=streams["stdout"], stderr=streams["stderr"],
                              until=attached_at)
        if not live:
            return response
        if pending is not None:
            try:
                sock = await _wait_for_start(pending, stream)
            except Exception:  # noqa: BLE001 - the start failed: its caller got the error
                return response
            if sock is None and stream.transport.is_closing():
                return response
            if sock is None:
                try:
                    sock = await api.call(model.connect_monitor, record.id)
                except Conflict:
                    return response  # it started and ended already
                sock.sendall(protocol.frame(protocol.HELLO, json.dumps(streams).encode()))
        assert sock is not None
        await bridge(api, record.id, sock, stream, tty=tty, stdin=streams["stdin"])
    finally:
        if pending is not None:
            waiting = _pending(api).get(record.id, [])
            if pending in waiting:
                waiting.remove(pending)
        if sock is not None:
            sock.close()  # not bridged (the replay failed), or closed with the bridge already
        stream.close()
    return response


async def _replay_log(api: Backend, record: Any, stream: Hijack, *, tty: bool, stdout: bool, stderr: bool,
                      until: float) -> None:
    """``logs=1``: the container's log up to ``until`` (when the live stream was attached), in the stream's format,
    written in blocks as a worker reads them (a long log is never held whole)."""
    from sampan.engine.containers.query import log_path
    from sampan.monitor.logs import read_logs

    loop = asyncio.get_running_loop()

    def send(block: bytearray) -> None:
        asyncio.run_coroutine_threadsafe(stream.write(bytes(block)), loop).result()
        block.clear()

    def replay(engine: Any) -> None:
        path = log_path(engine, record)
        if path is None:
            return  # a log driver that cannot be read: nothing to replay, as dockerd
        block = bytearray()
        for kind, data in read_logs(path, until=until):
            if (kind == "stderr" and not stderr) or (kind != "stderr" and not stdout):
                continue
            block += data if tty else protocol.frame(protocol.STDERR if kind == "stderr" else protocol.STDOUT, data)
            if len(block) >= 1 << 16:
                send(block)
        if block:
            send(block)

    await api.call(replay)


async def _wait_for_start(pending: PendingAttach, stream: Hijack) -> socket.socket | None:
    """The socket ``start`` hands over (what the client writes meanwhile waits in the stream's queue)."""
    while True:
        try:
            return await asyncio.wait_for(asyncio.shield(pending.future), 0.5)
        except TimeoutError:
            if stream.transport.is_closing():
                pending.future.cancel()
                return None


async def bridge(api: Backend, container_id: str, sock: socket.socket, stream: Hijack, *, tty: bool,
                 stdin: bool) -> int | None:
    """Copy between the monitor's socket and the client until the monitor ends the session; the exit status."""
    sock.setblocking(False)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    exit_code: int | None = None

    async def from_client() -> None:
        while True:
            data = await stream.read()
            if data is None:
                if stdin:
                    writer.write(protocol.frame(protocol.STDIN_EOF))
                    await writer.drain()
                if stream.transport.is_closing():
                    return
                await asyncio.sleep(3600 * 24)  # half-closed: the output goes on
                return
            if stdin:
                writer.write(protocol.frame(protocol.STDIN, data))
                await writer.drain()

    async def from_monitor() -> None:
        nonlocal exit_code
        decoder = protocol.Decoder()
        while True:
            data = await reader.read(65536)
            if not data:
                return
            for kind, payload in decoder.feed(data):
                if kind in (protocol.STDOUT, protocol.STDERR):
                    if not await stream.write(payload if tty else protocol.frame(kind, payload)):
                        return
                elif kind == protocol.EXIT:
                    try:
                        exit_code = int(payload or b"0")
                    except ValueError:
                        exit_code = None
                    return
                elif kind == protocol.ERROR:
                    text = payload + b"\n"
                    await stream.write(text if tty else protocol.frame(protocol.STDERR, text))
                    return

    client_task = asyncio.ensure_future(from_client())
    monitor_task = asyncio.ensure_future(from_monitor())
    try:
        await asyncio.wait({client_task, monitor_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (client_task, monitor_task):
            task.cancel()
        writer.close()
    if exit_code is not None:
        api.state.setdefault("exit_codes", {})[container_id] = exit_code
    return exit_code


async def resize(api: Backend, name: str, height: int, width: int) -> None:
    from sampan.engine.containers import model

    record = await api.call(model.lookup, name)
    if record.status not in ("running", "paused", "restarting"):
        raise Conflict(f"Container {record.id} is not running")

    def send(engine: Any) -> None:
        sock = model.connect_monitor(engine, record.id)
        with sock:
            sock.sendall(protocol.frame(protocol.HELLO, json.dumps({"stdin": False, "stdout": False,
                                                                    "stderr": False}).encode()) +
                         protocol.frame(protocol.RESIZE, f"{height} {width}".encode()))

    await api.call(send)
