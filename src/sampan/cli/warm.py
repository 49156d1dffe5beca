"""Warm commands: a ``run``, an ``exec`` or a ``ps`` handed to a worker forked from the monitor host.

Most of a cold ``sampan run`` is the interpreter importing the engine (~60 ms of ~140); the container itself
takes less. A cold ``ps``, ``inspect`` or ``logs`` is mostly imports too (~45 ms; ~20 ms warm). The monitor host
(``sampan.engine.containers.monitor_host``) has all of that imported already, so when one is listening, the
``sampan`` process only hands its command over: its arguments, environment, umask, resource limits, working
directory and standard streams (the fds themselves, SCM_RIGHTS) go to a worker forked from the host, which runs
the very same ``main`` as this process would, as if it were this process, and sends back the exit status.
Meanwhile this process relays the signals it gets (the worker's code then acts on them as its own: ``run``
proxies them to the container) and, when the worker dies of one, dies of the same signal.
If this process dies, its connection closes and the worker is killed, as the command would have been. The host's
"ok" and this process's "go" commit the command to the worker: when no "ok" comes in time (a hung host), this
process runs the command itself, and the worker, seeing no "go", never does.

It is a cache, never a dependency: with no host listening, with one of other code (which then exits), or with
``SAMPAN_WARM=0``, the command runs here, cold, as before. A cold ``run``, ``start`` or ``restart`` launches a
host first thing (it exits after two idle minutes), and only a host started by the CLI serves commands.

The client half imports nothing but C modules and ``sampan.code_identity``: it must cost well under the 60 ms it
saves. What the worker cannot take over from its caller: the controlling terminal (it has none; the terminal's
fds are enough for everything the commands do), the caller's cgroup, scheduling and credentials (both are root).
"""

from __future__ import annotations

import _signal
import _socket
import marshal
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

SERVICE = "command"
# the commands a worker runs (also as `container X`): those that start containers, whose cold start costs most,
# and the everyday ones, whose cold start is mostly imports (~45 ms of a cold `ps`, ~15 ms warm)
COMMANDS = frozenset({"run", "exec", "create", "start", "ps", "ls", "inspect", "logs", "top", "stop", "kill", "rm",
                      "restart", "wait", "port", "pause", "unpause", "rename", "attach", "images"})
LAUNCHERS = frozenset({"run", "start", "restart"})  # the commands that may launch a monitor host
_SOCKET = "monitor-host.sock"  # monitor_host's name; that module is too heavy to import here
_DEFAULT_RUNROOT = "/run/sampan"  # store.layout's default, likewise
_RELAYED = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGALRM")
_EXIT = b"X"  # worker -> caller: the exit status, 4 bytes big-endian signed; the last message
_SIGNAL = b"S"  # caller -> worker: a signal's number, 1 byte
_GO = b"G"  # caller -> worker, after the host's "ok": run the command
_ANSWER_TIMEOUT_S = 2.0


# --------------------------------------------------------------------------------------------- the caller


def hand_over(argv: list[str]) -> int | None:
    """Run the command in a warm worker and return its exit status; None when no warm worker took it."""
    name, runroot = _eligible(argv)
    if name is None or os.environ.get("SAMPAN_WARM") == "0":
        return None
    from sampan.code_identity import identity

    sock = _connect(os.path.join(os.path.abspath(runroot), _SOCKET))
    if sock is None:
        return None
    try:
        return _converse(sock, argv, identity())
    finally:
        sock.close()


def _eligible(argv: list[str]) -> tuple[str | None, str]:
    """The command's name if it is one that goes warm, and the run-time root the command line names."""
    runroot = os.environ.get("SAMPAN_RUNROOT") or _DEFAULT_RUNROOT
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        name, eq, value = argv[i].partition("=")
        if name in ("--root", "--runroot"):
            if not eq:
                i += 1
                if i >= len(argv):
                    return None, runroot
                value = argv[i]
            if name == "--runroot":
                runroot = value
        elif name not in ("-D", "--debug"):
            return None, runroot  # --version, --help, mistakes: cheap, or best reported cold
        i += 1
    words = argv[i:i + 2]
    if words[:1] == ["container"]:
        words = words[1:]
    return (words[0] if words and words[0] in COMMANDS else None), runroot


def _connect(path: str) -> Any:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    directory = -1
    try:
        if len(os.fsencode(path)) >= 100:  # as monitor.protocol.socket_name (not imported: start-up cost)
            directory = os.open(os.path.dirname(path), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            path = f"/proc/self/fd/{directory}/{os.path.basename(path)}"
        sock.connect(path)
        return sock
    except OSError:
        sock.close()
        return None
    finally:
        if directory >= 0:
            os.close(directory)


def _converse(sock: Any, argv: list[str], identity: str) -> int | None:
    import resource

    umask = os.umask(0o022)
    os.umask(umask)
    request = marshal.dumps({
        "service": SERVICE, "fingerprint": identity, "argv": argv, "argv0": sys.argv[0], "env": dict(os.environ),
        "umask": umask, "rlimits": [(getattr(resource, name), resource.getrlimit(getattr(resource, name)))
                              for name in dir(resource) if name.startswith("RLIMIT_")]})
    try:
        sock.sendall(b"M" + len(request).to_bytes(4, "big") + request)
    except OSError:
        return None
    sock.settimeout(_ANSWER_TIMEOUT_S)  # a host that hangs must not hang the command
    if _recv_exactly(sock, 2) != b"ok":
        return None  # refused, stale (that host now exits) or no answer: run it here
    sock.settimeout(None)
    # only now may the worker run it: a command given up on above never runs twice, and a hung host holds none
    # of our fds (in flight, they would keep a pipe that our output goes to open)
    cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        sock.sendmsg([_GO], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, bytes(_fd_array([0, 1, 2, cwd])))])
    except OSError:
        return None
    finally:
        os.close(cwd)
    relayed = _relay_signals(sock)
    reply = _recv_exactly(sock, 5)
    if len(reply) == 5 and reply[:1] == _EXIT:
        return int.from_bytes(reply[1:], "big", signed=True)
    if relayed:  # the worker died of a signal we relayed: so do we
        _signal.signal(relayed[-1], _signal.SIG_DFL)
        os.kill(os.getpid(), relayed[-1])
    os.write(2, b"Error: the command's warm worker ended without an exit status\n")
    return 125


def _fd_array(fds: list[int]) -> bytes:
    return b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds)


def _recv_exactly(sock: Any, size: int) -> bytes:
    data = b""
    while len(data) < size:
        try:
            chunk = sock.recv(size - len(data))
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data


def _relay_signals(sock: Any) -> list[int]:
    """Send each relayed signal on to the worker; returns the list they are recorded in."""
    relayed: list[int] = []

    def relay(signum: int, _frame: object) -> None:
        relayed.append(signum)
        try:
            sock.sendall(_SIGNAL + bytes([signum]))
        except OSError:
            pass

    for name in _RELAYED:
        _signal.signal(getattr(_signal, name), relay)
    return relayed


# --------------------------------------------------------------------------------------------- the worker


def offer(engine: Any) -> None:
    """Have a monitor host that this process starts serve warm commands too, and start one now when none
    runs: this command will use it, and it starts while the command imports and creates (``launch_soon``)."""
    from sampan.engine.containers import monitor_host

    monitor_host.offer(SERVICE, __name__)
    monitor_host.launch_soon(engine)


def warm_up() -> None:
    """In the host: import what the warm commands run and build their parsers (``build_parser`` keeps them), and
    parse the container-starting ones once (argparse compiles and caches)."""
    import importlib

    import sampan.monitor.client
    import sampan.quick_exit  # noqa: F401 - imported by the commands' code
    from sampan.cli import containers, registry
    from sampan.cli.command import build_parser

    for word in sorted(COMMANDS):
        found = registry.find([word]) or registry.find(["container", word])
        if found is not None:
            name, target, _ = found
            module, attr = target.split(":")
            build_parser(f"sampan {name}", getattr(importlib.import_module(f"sampan.cli.{module}"), attr))
    for name, cmd, args in (("run", containers.run, ["-d", "--rm", "-i", "-t", "-e", "A=1", "-v", "/x:/y", "i"]),
                            ("exec", containers.exec_, ["-i", "c", "true"]), ("create", containers.create, ["i"]),
                            ("start", containers.start, ["-a", "c"])):
        build_parser(f"sampan {name}", cmd).parse_args(args)


def serve(conn: Any, request: dict[str, Any], _fds: list[int]) -> NoReturn:  # pragma: no cover - forked worker
    """The worker: take the caller's fds (sent with its "go"), become the caller, run its command, send the
    status back."""
    import socket

    go, fds, _, _ = socket.recv_fds(conn, 1, 4)
    if go != _GO:  # the caller gave up waiting for the host's "ok", and runs the command itself
        os._exit(0)
    code = 125
    try:
        _become_caller(conn, request, fds)
        from sampan.cli.main import main

        code = main(list(request["argv"]))
        _finish()
    except BaseException:  # noqa: BLE001 - nothing may escape a forked worker
        code = 125
    try:
        conn.sendall(_EXIT + code.to_bytes(4, "big", signed=True))
    finally:
        os._exit(code & 0xFF)


def _become_caller(conn: Any, request: dict[str, Any], fds: list[int]) -> None:  # pragma: no cover - forked
    import atexit
    import fcntl
    import io
    import resource
    import signal

    atexit._clear()  # the host's handlers are not the command's
    for target, fd in enumerate(fds[:3]):
        os.dup2(fd, target)
    os.fchdir(fds[3])
    keep = sorted({0, 1, 2, conn.fileno()})
    for low, high in zip(keep, [*keep[1:], 1 << 16], strict=True):
        os.closerange(low + 1, high)
    os.environ.clear()
    os.environ.update(request["env"])
    os.umask(request["umask"])
    for which, limits in request["rlimits"]:
        try:
            resource.setrlimit(which, limits)
        except (OSError, ValueError):
            pass
    sys.argv = [request["argv0"], *request["argv"]]
    encoding, errors = sys.stdout.encoding, sys.stdout.errors
    # the host's streams are on /dev/null: new ones on the caller's fds, buffered as Python would at its start
    sys.stdin = io.TextIOWrapper(open(0, "rb", closefd=False), encoding=encoding, errors=errors)  # noqa: SIM115
    sys.stdout = io.TextIOWrapper(open(1, "wb", closefd=False), encoding=encoding, errors=errors,  # noqa: SIM115
                                  line_buffering=os.isatty(1))
    sys.stderr = io.TextIOWrapper(open(2, "wb", closefd=False), encoding=encoding,  # noqa: SIM115
                                  errors="backslashreplace", line_buffering=True)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    def relayed(_signum: int, _frame: object) -> None:
        while True:
            try:
                data = conn.recv(64, _socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:  # the caller is gone: so is its command
                os.kill(os.getpid(), signal.SIGKILL)
            for i in range(0, len(data) - 1, 2):
                if data[i:i + 1] == _SIGNAL:
                    signal.raise_signal(data[i + 1])

    signal.signal(signal.SIGIO, relayed)
    fcntl.fcntl(conn.fileno(), fcntl.F_SETOWN, os.getpid())
    fcntl.fcntl(conn.fileno(), fcntl.F_SETFL, fcntl.fcntl(conn.fileno(), fcntl.F_GETFL) | os.O_ASYNC)
    relayed(signal.SIGIO, None)  # anything sent before O_ASYNC was set


def _finish() -> None:  # pragma: no cover - forked worker
    """What the caller's exit would do (``quick_exit``): wait for its threads, flush, run its exit handlers."""
    import atexit

    threading = sys.modules.get("threading")
    if threading is not None:
        for thread in threading.enumerate():
            if thread is not threading.current_thread() and not thread.daemon:
                thread.join()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    atexit._run_exitfuncs()
