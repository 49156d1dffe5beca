"""``docker exec``: a new process in a running container, built from the container's own process spec.

The exec'd process starts detached from the runtime and becomes the caller's child (the caller is a child
subreaper), so the caller waits for it like any child, proxies its terminal and forwards signals to it.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from sampan._linux import process as sys_
from sampan.engine.containers import model
from sampan.engine.containers.runtimes import driver_of
from sampan.engine.context import Engine
from sampan.errors import Conflict, SampanError
from sampan.store.containers import ContainerRecord


class ExecError(SampanError):
    """The process could not be started in the container: Docker's ``exec`` exits 126 then."""

    exit_code = 126


@dataclass
class ExecOptions:
    command: list[str]
    detach: bool = False
    interactive: bool = False
    tty: bool = False
    env: list[str] = field(default_factory=list)
    user: str = ""
    workdir: str = ""
    privileged: bool = False


def process_spec(engine: Engine, record: ContainerRecord, command: list[str], *, tty: bool,
                 env: list[str] | None = None, user: str = "", workdir: str = "",
                 privileged: bool = False) -> dict[str, Any]:
    """The container's process spec with the exec's command, terminal, extra env, user, cwd and capabilities."""
    from sampan.engine.specgen import HostInfo, _all_capabilities, _replace_or_append, lookup_user
    from sampan.runtime.constants import CAPABILITIES

    where = model.places(engine, record.id)
    with open(where.config) as f:
        process = dict(json.load(f)["process"])
    process["args"] = list(command)
    process["terminal"] = tty
    process["env"] = _replace_or_append(list(process.get("env") or []), list(env or []))
    if tty and not any(e.startswith("TERM=") for e in process["env"]):
        process["env"].append("TERM=xterm")
    if user:
        uid, gid, groups = lookup_user(str(where.rootfs), user)
        process["user"] = {"uid": uid, "gid": gid, **({"additionalGids": groups} if groups else {})}
    if workdir:
        process["cwd"] = workdir
    if privileged:  # every capability this process may hand on (a confined host may lack some)
        bounding = _own_bounding_set()
        every = [name for name in _all_capabilities(HostInfo.detect()) if bounding >> CAPABILITIES[name] & 1]
        process["capabilities"] = {name: list(every) for name in ("bounding", "effective", "permitted")}
    process.pop("consoleSize", None)
    return process


def _own_bounding_set() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                return int(line.split()[1], 16)
    return 0


def exec_in(engine: Engine, name: str, options: ExecOptions, first: Any = None) -> int:
    """Run the command; returns its exit status (0 at once with ``detach``). ``first``: the built-in runtime's
    first process, when the caller forked it early (``InitProcess``; an external runtime does not use it)."""
    record = model.lookup(engine, name)
    if record.status == "paused":
        raise Conflict(f"Container {record.id} is paused, unpause the container before exec")
    if record.status != "running":
        raise Conflict(f"Container {record.id} is not running")
    process = process_spec(engine, record, options.command, tty=options.tty, env=options.env, user=options.user,
                           workdir=options.workdir, privileged=options.privileged)
    if options.tty:  # the pty gets our terminal's size before the program runs (`stty size` at once is right)
        for fd in (0, 1):
            if os.isatty(fd):
                size = os.get_terminal_size(fd)
                process["consoleSize"] = {"height": size.lines, "width": size.columns}
                break
    driver = driver_of(engine, record)
    pid_file = str(model.places(engine, record.id).run / f"exec-{os.getpid()}.pid")
    ours = theirs = None
    if options.tty:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    saved_stdin = -1
    if not options.interactive:
        saved_stdin = os.dup(0)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
    sys_.prctl(sys_.PR_SET_CHILD_SUBREAPER, 1)
    try:
        try:
            driver.exec(record.id, process, theirs, True, pid_file=pid_file, first=first)
        except SampanError as e:
            raise ExecError(str(e)) from None
        with open(pid_file) as f:
            pid = int(f.read())
    finally:
        if os.path.exists(pid_file):
            os.unlink(pid_file)
        if saved_stdin >= 0:
            os.dup2(saved_stdin, 0)
            os.close(saved_stdin)
    if options.detach:
        if ours is not None:
            ours.close()
        return 0
    if ours is not None:
        from sampan._linux.proc import process_state
        from sampan.runtime.console import proxy, recv_fd

        master = recv_fd(ours)
        ours.close()
        proxy(master, lambda: process_state(pid) in (None, "Z"))
        os.close(master)
    from sampan.runtime.container import wait_forwarding_signals

    return wait_forwarding_signals(pid)

