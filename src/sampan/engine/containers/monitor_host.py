"""The monitor host: a zygote that forks container monitors, so that they share its memory.

A monitor forked from a short-lived CLI owns every page of that CLI once it exits (~15 MB per container). A
monitor forked from a long-lived process that has already imported and warmed everything a monitor uses (with
``gc.freeze()``, so the collector does not touch those objects) shares those pages copy-on-write with it and
with every other monitor, and pays only for what it writes itself: about 3 MB, most of it the same in every
monitor, which the kernel shares again where the host runs KSM and sampan is told to offer it
(``page_merging``). It also starts faster: nothing is imported, and the default seccomp filter is already
compiled.

The host is an optimisation, never a dependency: ``spawn`` falls back to forking the monitor itself when no host
can be reached or started. One host serves one run-time root. A command that will start a container launches one
first thing when none runs (``launch_soon``); a start then waits for it to listen (about 0.2 s, once), but the
CLI's attached ``run`` and ``start -a`` fork their monitor themselves rather than wait (``request``). The host is a fresh interpreter,
executed from a read-only view of itself (``sampan.runtime.exe``), so the processes forked from it (monitors,
workers) can fork a container's init without a new interpreter and stay safe from CVE-2019-5736. A lock (a POSIX
lock on ``monitor-host.lock``, which forked children do not inherit) keeps it to one host per run-time root. The
host exits after ``IDLE_EXIT_S`` without requests, when its socket is removed (the run-time root was cleared),
or when a client runs different sampan code (an upgrade); the monitors it forked are double-forked and do not
depend on it. A request carries the status pipe and the attached client socket (SCM_RIGHTS) and the caller's
PATH; the monitor then reports to the caller exactly as a directly forked one.

A front end can have the hosts that its process launches serve more (``offer``): the CLI has them run whole
commands in a forked worker (``sampan.cli.warm``), so a ``run`` or an ``exec`` starts warm instead of importing
the engine. Such a request is answered only for a peer of this host's user and code; the worker gets the
connection and the request's fds, and the host goes on at once.
"""

from __future__ import annotations

import array
import fcntl
import json
import marshal
import os
import select
import socket
import struct
import sys
import time
from typing import Any

from sampan.code_identity import identity as fingerprint
from sampan.engine.containers import page_merging
from sampan.engine.context import Engine
from sampan.monitor.protocol import socket_name

IDLE_EXIT_S = 120.0
_SOCKET = "monitor-host.sock"
_PIDFILE = "monitor-host.pid"
_LOCKFILE = "monitor-host.lock"
_CONNECT_TIMEOUT_S = 10.0
_READY_TIMEOUT_S = 5.0
SERVICE_REQUEST = b"M"  # a service request: this byte, its length (4 bytes, big-endian), then marshal data
_MAX_FDS = 8
# the launched interpreter: argv[1] its sys.path (JSON), then main's arguments
_BOOT = ("import sys, json; sys.path[:0] = json.loads(sys.argv[1]); "
         "from sampan.engine.containers.monitor_host import main; main(sys.argv[2:])")

_SERVICES: dict[str, str] = {}  # kind -> module (with serve(conn, request, fds) and warm_up())
_LAUNCHED: dict[str, int] = {}  # run-time root -> the ready pipe of the host this process launched early


def offer(kind: str, module: str) -> None:
    """Have the hosts this process launches also serve ``kind`` requests with ``module``: its ``warm_up()`` runs
    once in the host (what it imports is shared by every worker); its ``serve(connection, request, fds)`` runs in
    a worker forked for each request, owns the connection and the fds, and must not return."""
    _SERVICES[kind] = module


def _paths(engine: Engine) -> tuple[str, str]:
    return str(engine.layout.runroot / _SOCKET), str(engine.layout.runroot / _PIDFILE)


# ---------------------------------------------------------------------------------------------- client side


def request(engine: Engine, container_id: str, status_w: int, client: socket.socket | None,
            attach: dict[str, Any] | None, *, wait: bool = True) -> bool:
    """Have the host fork the monitor; False when no host could be used (the caller forks it instead). When
    none listens, one is launched; without ``wait`` it is left to start for the commands that follow, and this
    one does not wait the ~0.2 s it takes."""
    path, _ = _paths(engine)
    message = json.dumps({"root": str(engine.layout.root), "runroot": str(engine.layout.runroot),
                          "id": container_id, "attach": attach, "client": client is not None,
                          "fingerprint": fingerprint(), "path": os.environ.get("PATH", "")}).encode()
    fds = [status_w] + ([client.fileno()] if client is not None else [])
    reply = _send(path, message, fds)
    if reply is None:  # none listened (a host that took it and hung is not waited for again)
        if not wait:
            launch_soon(engine)
            return False
        if ensure(engine):
            reply = _send(path, message, fds)
    return reply == b"ok"


def launch_soon(engine: Engine) -> None:
    """Launch a host unless one runs, without waiting for it: the commands that will need one call this first
    thing, so that it listens sooner (it takes ~0.2 s to start). Its ready pipe is kept for ``ensure``: until
    the new interpreter takes the lock, nothing else shows that it runs. A host that cannot be launched is no
    failure (the monitor is forked here then)."""
    runroot = str(engine.layout.runroot)
    if runroot in _LAUNCHED or _alive(engine):
        return
    try:
        _LAUNCHED[runroot] = launch(engine)
    except OSError:
        pass


def fork_procview(engine: Engine, mountpoint: str) -> bool:
    """Have the host fork the /proc view's server for ``mountpoint``, so that the server shares the host's warm
    pages as monitors do (``sampan.procview.server``); False when no host of this code answers."""
    path, _ = _paths(engine)
    return _send(path, json.dumps({"procview": mountpoint, "fingerprint": fingerprint()}).encode(), []) == b"ok"


def _send(path: str, message: bytes, fds: list[int], timeout: float = _CONNECT_TIMEOUT_S) -> bytes | None:
    """The host's answer; None when no host listens, b"" when one took the request but did not answer."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        with socket_name(path) as name:
            sock.connect(name)
    except OSError:
        sock.close()
        return None
    try:
        sock.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        sock.shutdown(socket.SHUT_WR)
        return sock.recv(16)
    except OSError:
        return b""
    finally:
        sock.close()


def ensure(engine: Engine) -> bool:
    """Launch a host unless one is running or starting, and wait (up to ``_READY_TIMEOUT_S``) until one
    listens; True once it does."""
    path, _ = _paths(engine)
    deadline = time.monotonic() + _READY_TIMEOUT_S
    ready = _LAUNCHED.pop(str(engine.layout.runroot), None)  # launched early by this process
    if ready is None and not _alive(engine):
        ready = launch(engine)
    if ready is not None:
        with os.fdopen(ready, "rb") as f:
            if select.select([f], [], [], _READY_TIMEOUT_S)[0] and f.read() == b"ready":
                return True
    while time.monotonic() < deadline:  # another process's host is starting (or ours lost the lock to it)
        if _send(path, b"{}", [], timeout=0.5) == b"ping":
            return True
        if not _alive(engine):
            return False  # it failed to start, or exited
        time.sleep(0.01)
    return False


def _alive(engine: Engine) -> bool:
    """Whether a host holds this run-time root's lock (it takes it first thing, and holds it for life)."""
    try:
        fd = os.open(engine.layout.runroot / _LOCKFILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)  # a POSIX lock goes with any close of the file by this process


def launch(engine: Engine) -> int:
    """Start a host in the background: double-forked, its own session, stdio on /dev/null, executed from a
    read-only view of the interpreter (``exe.exec_readonly``; a plain exec where that is not possible). Returns
    a pipe's read end, where the host writes "ready" once it listens (EOF if it exits first)."""
    from sampan.runtime import exe

    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    args = ["-I", "-S", "-B", "-c", _BOOT, json.dumps([exe.package_parent(), *sys.path]),
            str(engine.layout.root), str(engine.layout.runroot), json.dumps(_SERVICES), "3"]
    env = dict(os.environ)
    engine.db.close()  # never shared with a forked child
    sys.stdout.flush()
    sys.stderr.flush()
    first = os.fork()
    if first == 0:  # pragma: no cover - the forked launcher
        try:
            os.setsid()
            if os.fork() == 0:
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.dup2(ready_w, 3)
                os.set_inheritable(3, True)  # dup2 onto itself would keep close-on-exec
                os.closerange(4, 1 << 16)
                os.chdir("/")
                try:
                    exe.exec_readonly(args, env)
                except OSError:
                    os.execve(sys.executable, [sys.executable, *args], env)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.waitpid(first, 0)
    return ready_r


# ---------------------------------------------------------------------------------------------- the host


def main(argv: list[str]) -> None:  # pragma: no cover - the launched host
    """The launched host: take the run-time root's lock (or leave: another host has it), warm up, serve."""
    root, runroot, services, ready = argv[0], argv[1], json.loads(argv[2]), int(argv[3])
    os.set_inheritable(ready, False)
    engine = Engine(root, runroot, check=False)
    lock = os.open(engine.layout.runroot / _LOCKFILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    for _ in range(20):  # a stale host that was just told to exit still holds it for a moment
        try:
            fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            time.sleep(0.05)
    else:
        os._exit(0)
    _SERVICES.update(services)
    _serve(engine, ready)


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
                 "pyroute2", "sampan.runtime.exe", "sampan.runtime.first_process", "sampan.image.config",
                 "sampan.engine.containers.options"):
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
    for module in _SERVICES.values():
        importlib.import_module(module).warm_up()


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


def _serve(engine: Engine, ready_fd: int) -> None:  # pragma: no cover - the launched host
    import gc
    import signal

    try:
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
        try:
            os.write(ready_fd, b"ready")
        except BrokenPipeError:
            pass  # its launcher did not wait (``request`` without ``wait``)
        os.close(ready_fd)
        gc.collect()
        gc.freeze()
        if page_merging.wanted():
            page_merging.offer_own_memory()
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
        data, fds, _, _ = socket.recv_fds(conn, 65536, _MAX_FDS)
    except OSError:
        return True
    try:
        if data[:1] == SERVICE_REQUEST:
            return _serve_service(conn, data, fds, code)
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
    except (OSError, ValueError, EOFError, TypeError):
        return True
    finally:
        for fd in fds:
            os.close(fd)


def _serve_service(conn: socket.socket, data: bytes, fds: list[int], code: str) -> bool:  # pragma: no cover
    """A front end's request (see ``offer``): refused unless the peer runs as this host's user; "stale" (and the
    host exits) when it runs other code; otherwise "ok" and a worker forked to serve it."""
    (size,) = struct.unpack_from(">I", data, 1)
    while len(data) < 5 + size:
        more = conn.recv(65536)
        if not more:
            return True
        data += more
    request = marshal.loads(data[5:5 + size])
    _, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    module = _SERVICES.get(request.get("service"))
    if uid != os.geteuid() or module is None:
        conn.sendall(b"no")
        return True
    if request.get("fingerprint") != code:
        conn.sendall(b"stale")
        return False
    conn.sendall(b"ok")
    if os.fork() == 0:
        try:
            conn.setblocking(True)
            import importlib

            importlib.import_module(module).serve(conn, request, fds)
        finally:
            os._exit(1)
    return True


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
        # the monitor will migrate its container's init into a cgroup: the kernel's grace period for that
        # (``first_process``) is paid here, off its path, by this process that is about to exit anyway
        from sampan.runtime.first_process import migrate_to_own_cgroup

        migrate_to_own_cgroup()
    finally:
        os._exit(code)
