"""Exec endpoints: ``POST /containers/{id}/exec`` (create), ``POST /exec/{id}/start`` (hijacked, tty or not, or
detached), ``GET /exec/{id}/json``, ``POST /exec/{id}/resize``.

The engine's exec (``containers.execute.exec_in``) runs the process on its caller's stdio and makes its caller
the child subreaper that waits for it: a whole-process arrangement a long-lived multi-threaded service cannot
share between concurrent execs. So each exec runs as one ``sampan exec`` process of the service's root, with
pipes (or a pty) for stdio that the service bridges to the client; its exit status is the exec's. Exec records
live in the service's memory, as dockerd's do, and are forgotten a while after they end.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from aiohttp import web

from sampan.api.server import (
    Backend,
    BadRequest,
    Routes,
    backend,
    body_json,
    field,
    hijack,
    json_response,
    query_int,
    str_list,
)
from sampan.errors import Conflict, NotFound
from sampan.monitor import protocol

_FORGET_AFTER_S = 300.0


@dataclass
class ExecRecord:
    id: str
    container_id: str
    command: list[str]
    tty: bool
    attach_stdin: bool
    attach_stdout: bool
    attach_stderr: bool
    env: list[str]
    user: str
    workdir: str
    privileged: bool
    detach_keys: str = ""
    console_size: list[int] | None = None
    running: bool = False
    started: bool = False
    exit_code: int | None = None
    pid: int = 0
    ended_at: float = 0.0
    master: int = -1
    process: Any = dc_field(default=None, repr=False)

    def inspect(self) -> dict[str, Any]:
        return {"ID": self.id, "Running": self.running, "ExitCode": self.exit_code, "ProcessConfig": {
            "tty": self.tty, "entrypoint": self.command[0] if self.command else "",
            "arguments": self.command[1:], "privileged": self.privileged, "user": self.user},
            "OpenStdin": self.attach_stdin, "OpenStderr": self.attach_stderr, "OpenStdout": self.attach_stdout,
            "CanRemove": not self.running and self.started, "ContainerID": self.container_id,
            "DetachKeys": self.detach_keys, "Pid": self.pid}


def _execs(api: Backend) -> dict[str, ExecRecord]:
    execs: dict[str, ExecRecord] = api.state.setdefault("execs", {})
    now = time.time()
    for key in [k for k, v in execs.items() if v.ended_at and now - v.ended_at > _FORGET_AFTER_S]:
        del execs[key]
    return execs


def _get(api: Backend, exec_id: str) -> ExecRecord:
    found = _execs(api).get(exec_id)
    if found is None:
        raise NotFound(f"No such exec instance: {exec_id}")
    return found


async def create(request: web.Request) -> web.StreamResponse:
    from sampan.engine.containers import model

    body = await body_json(request, required=True)
    where = "ExecConfig"
    command = str_list(body, "Cmd", where)
    if not command:
        raise BadRequest("No exec command specified")
    api = backend(request)
    record = await api.call(model.lookup, request.match_info["id"])
    if record.status == "paused":
        raise Conflict(f"Container {record.id} is paused, unpause the container before exec")
    if record.status != "running":
        raise Conflict(f"Container {record.id} is not running")
    size = field(body, "ConsoleSize", list, where, None)
    item = ExecRecord(
        id=secrets.token_hex(32), container_id=record.id, command=command, tty=field(body, "Tty", bool, where, False),
        attach_stdin=field(body, "AttachStdin", bool, where, False),
        attach_stdout=field(body, "AttachStdout", bool, where, False),
        attach_stderr=field(body, "AttachStderr", bool, where, False), env=str_list(body, "Env", where) or [],
        user=field(body, "User", str, where, ""), workdir=field(body, "WorkingDir", str, where, ""),
        privileged=field(body, "Privileged", bool, where, False),
        detach_keys=field(body, "DetachKeys", str, where, ""),
        console_size=size if size and len(size) == 2 and all(isinstance(n, int) and n > 0 for n in size) else None)
    _execs(api)[item.id] = item
    return json_response({"Id": item.id}, status=201)


def _argv(api: Backend, item: ExecRecord, detach: bool) -> list[str]:
    argv = [sys.executable, "-c", "import sys; from sampan.cli.main import main; sys.exit(main())",
            "--root", api.root, "--runroot", api.runroot, "exec"]
    if detach:
        argv.append("-d")
    if item.attach_stdin:
        argv.append("-i")
    if item.tty:
        argv.append("-t")
    for env in item.env:
        argv += ["-e", env]
    if item.user:
        argv += ["-u", item.user]
    if item.workdir:
        argv += ["-w", item.workdir]
    if item.privileged:
        argv.append("--privileged")
    return argv + [item.container_id, *item.command]


async def start(request: web.Request) -> web.StreamResponse:
    body = await body_json(request)
    detach = field(body, "Detach", bool, "ExecStartCheck", False)
    api = backend(request)
    item = _get(api, request.match_info["id"])
    if item.started:
        raise Conflict(f"Error: Exec command {item.id} has already run")
    item.started = True
    tty = field(body, "Tty", bool, "ExecStartCheck", item.tty) or item.tty
    item.tty = tty
    size = field(body, "ConsoleSize", list, "ExecStartCheck", None) or item.console_size
    argv = _argv(api, item, detach)
    if detach:
        process = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                       stdout=asyncio.subprocess.DEVNULL,
                                                       stderr=asyncio.subprocess.PIPE)
        _, err = await process.communicate()
        item.exit_code, item.ended_at = None, 0.0
        if process.returncode:
            raise Conflict(err.decode(errors="replace").strip().removeprefix("Error: ") or "exec failed")
        return json_response({})
    content_type = "application/vnd.docker.raw-stream" if tty else "application/vnd.docker.multiplexed-stream"
    response, stream = await hijack(request, content_type)
    try:
        if tty:
            await _run_tty(item, argv, stream, size)
        else:
            await _run_pipes(item, argv, stream)
    finally:
        item.running = False
        item.ended_at = time.time()
        stream.close()
    return response


async def _pump_client(stream: Any, write: Any, close: Any) -> None:
    while True:
        data = await stream.read()
        if data is None:
            close()
            if stream.transport.is_closing():
                return
            await asyncio.sleep(3600 * 24)
            return
        await write(data)


async def _run_pipes(item: ExecRecord, argv: list[str], stream: Any) -> None:
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE if item.attach_stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    item.process, item.running = process, True

    async def copy_out(source: asyncio.StreamReader, kind: int, wanted: bool) -> None:
        while data := await source.read(65536):
            if wanted:
                await stream.write(protocol.frame(kind, data))

    async def to_stdin(data: bytes) -> None:
        if process.stdin is not None and not process.stdin.is_closing():
            process.stdin.write(data)
            try:
                await process.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass

    def close_stdin() -> None:
        if process.stdin is not None:
            process.stdin.close()

    client = asyncio.ensure_future(_pump_client(stream, to_stdin, close_stdin))
    try:
        assert process.stdout is not None and process.stderr is not None
        await asyncio.gather(copy_out(process.stdout, protocol.STDOUT, item.attach_stdout),
                             copy_out(process.stderr, protocol.STDERR, item.attach_stderr))
        item.exit_code = await process.wait()
    finally:
        client.cancel()
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _run_tty(item: ExecRecord, argv: list[str], stream: Any, size: list[int] | None) -> None:
    import tty as tty_mod

    from sampan._linux.process import set_winsize

    master, slave = os.openpty()
    try:
        tty_mod.setraw(slave)
        if size:
            set_winsize(master, size[0], size[1])
        process = await asyncio.create_subprocess_exec(*argv, stdin=slave, stdout=slave, stderr=slave,
                                                       start_new_session=True)
    finally:
        os.close(slave)
    item.process, item.running, item.master = process, True, master
    loop = asyncio.get_running_loop()
    os.set_blocking(master, False)
    output: asyncio.Queue[bytes | None] = asyncio.Queue()

    def readable() -> None:
        try:
            data = os.read(master, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(master)
        output.put_nowait(data or None)

    loop.add_reader(master, readable)

    async def to_pty(data: bytes) -> None:
        try:
            os.write(master, data)
        except OSError:
            pass

    def eof() -> None:
        pass

    client = asyncio.ensure_future(_pump_client(stream, to_pty, eof))
    waiter = asyncio.ensure_future(process.wait())
    try:
        while True:
            getter = asyncio.ensure_future(output.get())
            done, _ = await asyncio.wait({getter, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                data = getter.result()
                if data is None:
                    break
                await stream.write(data)
                continue
            getter.cancel()
            while True:  # the process ended: what is left in the pty
                try:
                    data = os.read(master, 65536)
                except OSError:
                    break
                if not data:
                    break
                await stream.write(data)
            while not output.empty():
                data = output.get_nowait()
                if data:
                    await stream.write(data)
            break
        item.exit_code = await waiter
    finally:
        client.cancel()
        loop.remove_reader(master)
        item.master = -1
        os.close(master)
        if process.returncode is None:
            process.kill()
            await process.wait()


async def inspect(request: web.Request) -> web.StreamResponse:
    return json_response(_get(backend(request), request.match_info["id"]).inspect())


async def resize(request: web.Request) -> web.StreamResponse:
    from sampan._linux.process import set_winsize

    item = _get(backend(request), request.match_info["id"])
    height, width = query_int(request, "h"), query_int(request, "w")
    if not height or not width or height < 0 or width < 0:
        raise BadRequest("bad height or width: h and w must be positive integers")
    if item.master >= 0:
        try:
            set_winsize(item.master, height, width)
        except OSError:
            pass
    return web.Response(status=201)


def register(routes: Routes) -> None:
    routes.add("POST", "/containers/{id}/exec", create)
    routes.add("POST", "/exec/{id}/start", start)
    routes.add("POST", "/exec/{id}/resize", resize)
    routes.add("GET", "/exec/{id}/json", inspect)
