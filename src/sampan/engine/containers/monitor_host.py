"""The monitor host: a zygote that forks container monitors, so that they share its memory.

A monitor forked from a short-lived CLI owns every page of that CLI once it exits (~15 MB per container). A
monitor forked from a long-lived process that has already imported and warmed everything a monitor uses (with
``gc.freeze()``, so the collector does not touch those objects) shares those pages copy-on-write with it and with
every other monitor, and pays only for what it writes itself: about 1-2 MB. It also starts faster: nothing is
imported, and the default seccomp filter is already compiled.

The host is an optimisation, never a dependency: ``spawn`` falls back to forking the monitor itself when no host
can be reached or started. One host serves one run-time root; the first ``start`` that finds none forks one
from itself (no exec). It exits after ``IDLE_EXIT_S`` without requests, when its socket is removed (the
run-time root was cleared), or when a client runs different sampan code (an upgrade); the monitors it forked
are double-forked and do not depend on it. A request carries the status pipe and the attached client socket
(SCM_RIGHTS) and the caller's PATH; the monitor then reports to the caller exactly as a directly forked one.
"""

from __future__ import annotations

import array
import json
import os
import select
import socket
import sys
import time
from typing import Any

from sampan.engine.context import Engine
from sampan.monitor.protocol import socket_name
from sampan.store.locks import FileLock

IDLE_EXIT_S = 120.0
_SOCKET = "monitor-host.sock"
_PIDFILE = "monitor-host.pid"
_CONNECT_TIMEOUT_S = 10.0
_FINGERPRINT_DIRS = ("engine", "engine/containers", "runtime", "runtime/cgroups", "monitor", "store", "_linux",
                     "procview", "network")


def fingerprint() -> str:
    """The running code, to refuse serving a client of another version (mtimes of the modules a monitor runs)."""
    import sampan

    base = os.path.dirname(sampan.__file__)
    newest = 0
    for sub in _FINGERPRINT_DIRS:
        with os.scandir(os.path.join(base, sub)) as entries:
            for entry in entries:
                if entry.name.endswith(".py"):
                    newest = max(newest, entry.stat().st_mtime_ns)
    return f"{sampan.__version__}:{newest}"


def _paths(engine: Engine) -> tuple[str, str]:
    return str(engine.layout.runroot / _SOCKET), str(engine.layout.runroot / _PIDFILE)


# ---------------------------------------------------------------------------------------------- client side


def request(engine: Engine, container_id: str, status_w: int, client: socket.socket | None,
            attach: dict[str, Any] | None) -> bool:
    """Have the host fork the monitor; False when no host could be used (the caller forks it instead)."""
    path, _ = _paths(engine)
    message = json.dumps({"root": str(engine.layout.root), "runroot": str(engine.layout.runroot),
                          "id": container_id, "attach": attach, "client": client is not None,
                          "fingerprint": fingerprint(), "path": os.environ.get("PATH", "")}).encode()
    fds = [status_w] + ([client.fileno()] if client is not None else [])
    for _ in range(2):
        reply = _send(path, message, fds)
        if reply == b"ok":
            return True
        if reply in (None, b"stale"):
            if not _start(engine):
                return False
            continue
        return False
    return False


def fork_procview(engine: Engine, mountpoint: str) -> bool:
    """Have the host fork the /proc view's server for ``mountpoint``, so that the server shares the host's warm
    pages as monitors do (``sampan.procview.server``); False when no host of this code answers."""
    path, _ = _paths(engine)
    return _send(path, json.dumps({"procview": mountpoint, "fingerprint": fingerprint()}).encode(), []) == b"ok"


def _send(path: str, message: bytes, fds: list[int]) -> bytes | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(_CONNECT_TIMEOUT_S)
    try:
        with socket_name(path) as name:
            sock.connect(name)
        sock.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        sock.shutdown(socket.SHUT_WR)
        return sock.recv(16)
    except OSError:
        return None
    finally:
        sock.close()


def _start(engine: Engine) -> bool:
    """Fork a host from this process (one at a time per run-time root); True once it listens."""
    with FileLock(engine.layout.locks, "monitor-host"):
        path, _ = _paths(engine)
        if _send(path, b"{}", []) == b"ping":
            return True
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        engine.db.close()  # never shared with a forked child
        sys.stdout.flush()
        sys.stderr.flush()
        first = os.fork()
        if first == 0:  # pragma: no cover - the forked host
            code = 1
            try:
                os.close(ready_r)
                os.setsid()
                if os.fork() == 0:
                    _serve(engine, ready_w)
                code = 0
            finally:
                os._exit(code)
        os.close(ready_w)
        os.waitpid(first, 0)
        with os.fdopen(ready_r, "rb") as f:
            return f.read() == b"ready"


# ---------------------------------------------------------------------------------------------- the host


def _warm() -> None:
    """Import what a monitor runs and compile the default seccomp filter, so monitors inherit them. An import
    in a monitor is costly: the import machinery dirties about 1.5 MB of shared pages (``array``, which
    ``socket.recv_fds`` imports on first use, is here for that reason alone)."""
    import importlib

    for name in ("array", "sqlite3", "sampan.engine.containers.monitor", "sampan.engine.containers.create",
                 "sampan.engine.containers.health", "sampan.engine.containers.remove",
                 "sampan.engine.containers.rootfs", "sampan.engine.containers.runtimes",
                 "sampan.engine.containers.execute", "sampan.engine.specgen", "sampan.engine.images",
                 "sampan.runtime.container", "sampan.runtime.init", "sampan.runtime.rootfs",
                 "sampan.runtime.seccomp", "sampan.runtime.cgroups.v1", "sampan.runtime.cgroups.v2",
                 "sampan.runtime.cgroups.devices", "sampan.monitor.pump", "sampan.monitor.logs",
                 "sampan.snapshot.snapshots", "sampan.units", "sampan.engine.networks", "sampan.network.netlink",
                 "sampan.network.firewall", "sampan.network.dns", "sampan.network.ports", "sampan.network.ipam",
                 "sampan.procview.syscalls", "sampan.procview.server", "mfusepy", "threading",
                 "pyroute2"):
        importlib.import_module(name)
    from sampan.engine.specgen import RunOptions, build_spec
    from sampan.runtime.container import compile_seccomp

    try:
        spec = build_spec({"Cmd": ["true"]}, RunOptions(), rootfs="/", container_id="0" * 64,
                          passwd_lookup=lambda _user: (0, 0, []))
        compile_seccomp(spec)
        from sampan.procview.syscalls import with_notify

        notify = with_notify(spec["linux"].get("seccomp"), "/")  # the /proc view's variant, which most use
        if notify is not None:
            compile_seccomp({"linux": {"seccomp": notify}})
    except Exception:  # noqa: BLE001, S110 - only a warm-up: monitors compile what they need themselves
        pass


def _rehearse(scratch: str) -> None:
    """Run a monitor's steady-state code once in the host: a first call (of ``recvmsg``, of the pump, of the
    log writer) allocates and initialises things that a monitor would otherwise dirty for itself, ~1.5 MB."""
    from sampan.monitor.logs import JsonFileLog
    from sampan.monitor.pump import Pump

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs:
        theirs.sendmsg([b"{}"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [theirs.fileno()]))])
        _, fds, _, _ = socket.recv_fds(ours, 65536, 8)
        for fd in fds:
            os.close(fd)
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - a trivial child
        os.write(out_w, b"rehearsal\n")
        os._exit(0)
    os.close(out_w)
    log_path = os.path.join(scratch, f"rehearsal-{os.getpid()}.log")
    log = JsonFileLog.open(log_path, max_size=None)
    try:
        Pump(pid=pid, outputs={out_r: "stdout"}, stdin_fd=-1, tty_master=-1, log=log, listener=None, clients=[],
             stdin_once=False).run()
    finally:
        log.close()
        os.close(out_r)
        os.unlink(log_path)


def _serve(engine: Engine, ready_w: int) -> None:  # pragma: no cover - the forked host
    import gc
    import signal

    from sampan.engine.containers.monitor import forget_inherited

    try:
        forget_inherited(engine, {ready_w})
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        os.chdir("/")
        for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_IGN)
        _warm()
        _rehearse(str(engine.layout.runroot))
        path, pidfile = _paths(engine)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        with socket_name(path) as name:
            listener.bind(name)
        os.chmod(path, 0o600)
        listener.listen(64)
        inode = os.stat(path).st_ino
        with open(pidfile, "w") as f:
            f.write(str(os.getpid()))
        os.write(ready_w, b"ready")
        os.close(ready_w)
        gc.collect()
        gc.freeze()
        code = fingerprint()
        idle_since = time.monotonic()
        while True:
            ready, _, _ = select.select([listener], [], [], 1.0)
            _reap()
            if ready:
                conn, _ = listener.accept()
                with conn:
                    if not _handle(conn, code):
                        break
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > IDLE_EXIT_S:
                break
            try:
                if os.stat(path).st_ino != inode:
                    break
            except FileNotFoundError:
                break
        listener.close()
        for name in (path, pidfile):
            try:
                if name != path or os.stat(path).st_ino == inode:
                    os.unlink(name)
            except FileNotFoundError:
                pass
    finally:
        os._exit(0)


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _handle(conn: socket.socket, code: str) -> bool:  # pragma: no cover - the forked host
    """Serve one request; False when the host must exit (a client of other code)."""
    conn.settimeout(_CONNECT_TIMEOUT_S)
    try:
        data, fds, _, _ = socket.recv_fds(conn, 65536, 2)
    except OSError:
        return True
    try:
        message = json.loads(data or b"{}")
        if not message:
            conn.sendall(b"ping")
            return True
        if message.get("fingerprint") != code:
            conn.sendall(b"stale")
            return False
        if os.fork() == 0:
            if message.get("procview"):
                _fork_procview(message["procview"])
            _fork_monitor(message, fds)
        conn.sendall(b"ok")
        return True
    except (OSError, ValueError):
        return True
    finally:
        for fd in fds:
            os.close(fd)


def _fork_procview(mountpoint: str) -> None:  # pragma: no cover - forked
    from sampan.procview.server import serve

    code = 1
    try:
        os.setsid()
        if os.fork() == 0:
            serve(mountpoint)
        code = 0
    finally:
        os._exit(code)


def _fork_monitor(message: dict[str, Any], fds: list[int]) -> None:  # pragma: no cover - forked
    from sampan.engine.containers.monitor import _become_monitor

    code = 1
    try:
        os.setsid()
        if os.fork() == 0:
            os.environ["PATH"] = message.get("path") or os.environ.get("PATH", "")
            engine = Engine(message["root"], message["runroot"], check=False)
            client = socket.socket(fileno=fds[1]) if message.get("client") and len(fds) > 1 else None
            _become_monitor(engine, message["id"], fds[0], client, message.get("attach"))
        code = 0
    finally:
        os._exit(code)
