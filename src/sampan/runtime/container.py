"""The runtime's lifecycle verbs, on the runtime side (the parent): create, start, run, exec, kill, delete, ...

The parent validates everything before anything is created, then forks the container (see ``init``), which
re-executes from a read-only view of the interpreter while the parent puts it in its cgroup, and answers its
requests over a socket pair: map the user namespace, run the createRuntime hooks, and wait for "ready". Any
failure before "ready" removes what was made: the init process, the cgroup and the state directory.
"""

from __future__ import annotations

import os
import signal
import time

from sampan._linux import process as sys_
from sampan._linux.proc import process_start_time, process_state
from sampan.errors import Conflict, InvalidArgument, NotFound, SampanError
from sampan.runtime import init
from sampan.runtime import spec as specs
from sampan.runtime.cgroups import open_cgroup
from sampan.runtime.first_process import InitProcess
from sampan.runtime.hooks import HookError, run_hooks
from sampan.runtime.state import EXEC_FIFO, OCI_VERSION, State, StateStore

TYPE_CHECKING = False  # typing/collections.abc are not imported at run time: start-up cost
if TYPE_CHECKING:
    from typing import Any


class ContainerError(SampanError):
    pass


def _now() -> str:
    now = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now // 10**9)) + f".{now % 10**9:09d}Z"


def _write_pid_file(path: str | None, pid: int) -> None:
    if not path:
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def _connect_console(path: str | None) -> int:
    if not path:
        return -1
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise InvalidArgument(f"console socket {path}: {e.strerror}") from None
    return sock.detach()


_FILTERS: dict[str, Any] = {}  # compiled filters by profile: a process serving many containers compiles each once


def compile_seccomp(config: dict[str, Any]) -> Any:
    seccomp = (config.get("linux") or {}).get("seccomp")
    if not seccomp:
        return None
    import json

    # listenerPath and listenerMetadata are read at hand-over, not compiled: one filter serves every container
    key = json.dumps({k: v for k, v in seccomp.items() if k not in ("listenerPath", "listenerMetadata")},
                     sort_keys=True)
    if key not in _FILTERS:
        from sampan.runtime import seccomp as seccomp_mod

        seccomp_mod.validate(seccomp)
        _FILTERS[key] = seccomp_mod.compile_filter(seccomp)
    return _FILTERS[key]


def _program(seccomp_filter: Any) -> tuple[bytes, int] | None:
    """What the container's init needs of a compiled filter: the program and its seccomp(2) flags."""
    return None if seccomp_filter is None else (seccomp_filter.export_bpf(), seccomp_filter.flags)


_KEPT_PROGRAM = "seccomp.bpf"  # in the state directory: the flags (4 bytes, little-endian), then the program


def _keep_program(state_dir: str, program: tuple[bytes, int] | None) -> None:
    """``create`` keeps the container's compiled filter: each ``exec`` joins the very same filter (its spec is the
    container's with another process), and compiling it again with libseccomp costs ~3 ms per exec."""
    if program is not None:
        with open(os.path.join(state_dir, _KEPT_PROGRAM), "wb") as f:
            f.write(program[1].to_bytes(4, "little") + program[0])


def _kept_program(state_dir: str, config: dict[str, Any]) -> tuple[bytes, int] | None:
    """The filter ``create`` kept, or, for a container without one (no seccomp, or created by an older
    sampan), the spec's compiled now."""
    try:
        with open(os.path.join(state_dir, _KEPT_PROGRAM), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return _program(compile_seccomp(config))
    return data[4:], int.from_bytes(data[:4], "little")


# runc's AllowedDevices: mknod of anything, the default devices, ptys and tun, on top of the spec's own rules.
_DEFAULT_DEVICE_RULES: list[dict[str, Any]] = [
    {"allow": True, "type": "c", "access": "m"}, {"allow": True, "type": "b", "access": "m"},
    *({"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"}
      for major, minor in ((1, 3), (1, 8), (1, 7), (5, 0), (1, 5), (1, 9), (5, 2), (10, 200))),
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
]


def _cgroup_resources(linux: dict[str, Any]) -> dict[str, Any]:
    """The spec's resources plus the device rules runc always adds (defaults, then the spec's devices)."""
    resources = dict(linux.get("resources") or {})
    spec_devices = [{"allow": True, "type": d.get("type", "c"), "major": d.get("major"), "minor": d.get("minor"),
                     "access": "rwm"} for d in linux.get("devices") or [] if d.get("type") in ("c", "b")]
    resources["devices"] = list(resources.get("devices") or []) + _DEFAULT_DEVICE_RULES + spec_devices
    return resources


def _write_maps(pid: int, linux: dict[str, Any]) -> None:
    def lines(maps: list[dict[str, int]]) -> str:
        return "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in maps)

    with open(f"/proc/{pid}/uid_map", "w") as f:
        f.write(lines(linux.get("uidMappings") or []))
    with open(f"/proc/{pid}/gid_map", "w") as f:
        f.write(lines(linux.get("gidMappings") or []))


class Runtime:
    """One state root (runc's ``--root``); every verb is a method taking the container ID."""

    def __init__(self, root: str = "/run/sampan-runc") -> None:
        self.root = root
        self.states = StateStore(root)

    # ------------------------------------------------------------------------------------------ create/start

    def create(self, container_id: str, bundle: str, *, pid_file: str | None = None,
               console_socket: str | None = None, no_pivot: bool = False, preserve_fds: int = 0,
               console_fd: int = -1, config: dict[str, Any] | None = None, first: InitProcess | None = None) -> State:
        """``first``: the container's first process, if the caller started it already (see ``first_process``)."""
        bundle = os.path.abspath(bundle)
        first = first or InitProcess(preserve_fds)  # its interpreter starts while we load the spec and the cgroup
        try:
            return self._create(first, container_id, bundle, pid_file=pid_file, console_socket=console_socket,
                                no_pivot=no_pivot, preserve_fds=preserve_fds, console_fd=console_fd, config=config)
        finally:
            first.abandon()

    def _create(self, first: InitProcess, container_id: str, bundle: str, *, pid_file: str | None,
                console_socket: str | None, no_pivot: bool, preserve_fds: int, console_fd: int,
                config: dict[str, Any] | None) -> State:
        config = specs.load(bundle) if config is None else config
        rootfs = specs.rootfs_path(config, bundle)
        linux = config.get("linux") or {}
        process = config.get("process") or {}
        if process.get("terminal") and not console_socket and console_fd < 0:
            raise InvalidArgument("cannot allocate tty if runc will detach without setting console socket")
        seccomp_filter = compile_seccomp(config)
        state_dir = self.states.reserve(container_id)
        cgroup = open_cgroup(linux.get("cgroupsPath") or f"/sampan-runc-{container_id}")  # flat: nothing left on delete
        init_pid = 0
        try:
            fifo = os.path.join(state_dir, EXEC_FIFO)
            os.mkfifo(fifo, 0o622)
            os.chmod(fifo, 0o622)
            cgroup.create()
            cgroup.apply(_cgroup_resources(linux))
            state = State(id=container_id, bundle=bundle, rootfs=rootfs, pid=0, pid_start="", created=_now(),
                          cgroup_path=cgroup.path, config=config, annotations=config.get("annotations") or {})
            plan = init.InitPlan(spec=config, rootfs=rootfs, bundle=bundle, process=process,
                                 namespaces=list(linux.get("namespaces") or []),
                                 fifo_fd=os.open(fifo, os.O_PATH | os.O_CLOEXEC),
                                 console_fd=console_fd if console_fd >= 0 else _connect_console(console_socket),
                                 seccomp=_program(seccomp_filter), no_pivot=no_pivot, preserve_fds=preserve_fds,
                                 cgroup_version=cgroup.version)
            _keep_program(state_dir, plan.seccomp)
            init_pid = self._spawn(first, plan, cgroup, state)
            state.pid, state.pid_start = init_pid, process_start_time(init_pid) or ""
            self.states.save(state)
            _write_pid_file(pid_file, init_pid)
            return state
        except BaseException:
            if init_pid:
                _kill_and_wait(init_pid)
            if cgroup.exists():
                cgroup.kill_all(signal.SIGKILL)
            cgroup.destroy()
            self.states.remove(container_id)
            try:  # the runtime-spec's lifecycle: a failed create still runs the poststop hooks
                run_hooks(config, "poststop", {"ociVersion": OCI_VERSION, "id": container_id, "status": "stopped",
                                               "bundle": bundle, "annotations": config.get("annotations") or {}})
            except HookError:
                pass
            raise

    def _spawn(self, first: InitProcess, plan: init.InitPlan, cgroup: Any, state: State) -> int:
        """Hand the plan to the container's first process and serve its requests until the container is ready;
        returns the container's pid."""
        parent = first.channel
        plan.state = state.oci_state("")
        container_pid = 0
        try:
            try:
                try:
                    first.send_plan(plan)
                finally:
                    for fd in (plan.fifo_fd, plan.console_fd):
                        if fd >= 0:
                            os.close(fd)
                # On cgroup v1 the first migration waits for an RCU grace period (~10 ms): the child spends it
                # starting its interpreter, and waits for "go" before it enters any namespace.
                cgroup.add(first.pid)
                parent.send(type="go")
            except (BrokenPipeError, ConnectionResetError):  # it failed first: its error message may be waiting
                reason = parent.recv()
                raise ContainerError(reason.get("message") or "container init exited before it started") \
                    from None
            while True:
                message = parent.recv()
                kind = message.get("type")
                if kind == "map-user":
                    _write_maps(first.pid, plan.spec.get("linux") or {})
                    parent.send(type="mapped")
                elif kind == "pid":
                    container_pid = message["pid"]
                elif kind == "hooks":
                    hook_state = dict(plan.state, pid=container_pid, status="creating")
                    run_hooks(plan.spec, "prestart", hook_state)
                    run_hooks(plan.spec, "createRuntime", hook_state)
                    parent.send(type="continue")
                elif kind == "seccomp-listener":
                    self._hand_listener(plan, message.get("fds") or [], container_pid)
                    parent.send(type="continue")
                elif kind == "ready":
                    return container_pid
                elif kind == "error":
                    raise ContainerError(message["message"])
                else:
                    raise ContainerError("container init exited unexpectedly")
        except BaseException:
            if container_pid:
                _kill_and_wait(container_pid)
            raise
        finally:
            first.reap()

    @staticmethod
    def _hand_listener(plan: init.InitPlan, fds: list[int], container_pid: int) -> None:
        """Send the seccomp notify fd, with the container state, to the agent at ``listenerPath``."""
        from sampan.runtime.seccomp import send_listener_fd

        seccomp = (plan.spec.get("linux") or {}).get("seccomp") or {}
        try:
            if not fds:
                raise ContainerError("the container sent no seccomp listener fd")
            send_listener_fd(seccomp["listenerPath"], fds[0], dict(plan.state, pid=container_pid,
                                                                   status="creating"),
                             seccomp.get("listenerMetadata") or "")
        except OSError as e:
            if not plan.agent_optional:  # runc fails too; the engine's own agent may be gone (a dead monitor)
                raise ContainerError(f"seccomp agent at {seccomp.get('listenerPath')}: {e.strerror}") from None
        finally:
            for fd in fds:
                os.close(fd)

    def start(self, container_id: str) -> None:
        state = self.states.load(container_id)
        state_dir = self.states.dir(container_id)
        status = state.status(state_dir)
        if status != "created":
            raise Conflict(f"cannot start a container that has {status}" if status == "stopped"
                           else f"cannot start an already {status} container")
        fifo_path = os.path.join(state_dir, EXEC_FIFO)
        fd = os.open(fifo_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if not os.read(fd, 1):
                raise ContainerError("cannot start container: its init exited before it was started")
        finally:
            os.close(fd)
            os.unlink(fifo_path)
        try:
            run_hooks(state.config, "poststart", state.oci_state(state_dir))
        except HookError as e:
            self.kill(container_id, signal.SIGKILL)
            raise ContainerError(str(e)) from None

    # ------------------------------------------------------------------------------------------ run/exec

    def run(self, container_id: str, bundle: str, *, detach: bool = False, pid_file: str | None = None,
            console_socket: str | None = None, no_pivot: bool = False, preserve_fds: int = 0,
            first: InitProcess | None = None) -> int:
        """create + start; in the foreground, wait for the container and delete it, returning its status."""
        if not detach:
            sys_.prctl(sys_.PR_SET_CHILD_SUBREAPER, 1)
        config = specs.load(os.path.abspath(bundle))
        ours = theirs = None
        if not detach and not console_socket and (config.get("process") or {}).get("terminal"):
            import socket

            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        state = self.create(container_id, bundle, pid_file=pid_file, console_socket=console_socket,
                            no_pivot=no_pivot, preserve_fds=preserve_fds,
                            console_fd=theirs.detach() if theirs else -1, config=config, first=first)
        try:
            self.start(container_id)
        except BaseException:
            self.delete(container_id, force=True)
            raise
        if detach:
            return 0
        if ours is not None:
            from sampan.runtime import console

            master = console.recv_fd(ours)
            ours.close()
            console.proxy(master, lambda: process_state(state.pid) in (None, "Z"))
            os.close(master)
        code = wait_forwarding_signals(state.pid)
        self.delete(container_id, force=True)
        return code

    def exec(self, container_id: str, process: dict[str, Any], *, detach: bool = False,
             pid_file: str | None = None, console_socket: str | None = None, preserve_fds: int = 0,
             console_fd: int = -1, agent_optional: bool = False, first: InitProcess | None = None) -> int:
        if not detach:
            sys_.prctl(sys_.PR_SET_CHILD_SUBREAPER, 1)
        first = first or InitProcess(preserve_fds)  # its interpreter starts while we check the container
        try:
            state = self.states.load(container_id)
            status = state.status(self.states.dir(container_id))
            if status not in ("running", "created"):
                raise Conflict(f"cannot exec in a {status} container")
            if process.get("terminal") and not console_socket and console_fd < 0:
                raise InvalidArgument("cannot allocate tty if runc will detach without setting console socket")
            config = dict(state.config, process=process)
            cgroup = open_cgroup(state.cgroup_path)
            plan = init.InitPlan(spec=config, rootfs=state.rootfs, bundle=state.bundle, process=process,
                                 namespaces=[],
                                 console_fd=console_fd if console_fd >= 0 else _connect_console(console_socket),
                                 seccomp=_kept_program(self.states.dir(container_id), config),
                                 join_pid=state.pid,
                                 preserve_fds=preserve_fds, cgroup_version=cgroup.version)
            plan.agent_optional = agent_optional
            pid = self._spawn(first, plan, cgroup, state)
        finally:
            first.abandon()
        _write_pid_file(pid_file, pid)
        return 0 if detach else wait_forwarding_signals(pid)

    # ------------------------------------------------------------------------------------------ queries

    def state(self, container_id: str) -> dict[str, Any]:
        return self.states.load(container_id).oci_state(self.states.dir(container_id))

    def list(self) -> list[dict[str, Any]]:
        out = []
        for container_id in self.states.ids():
            try:
                out.append(self.state(container_id))
            except NotFound:
                continue
        return out

    def pids(self, container_id: str) -> list[int]:
        state = self.states.load(container_id)
        return open_cgroup(state.cgroup_path).pids()

    # ------------------------------------------------------------------------------------------ signals, delete

    def kill(self, container_id: str, sig: int, all: bool = False) -> None:
        state = self.states.load(container_id)
        status = state.status(self.states.dir(container_id))
        if status == "stopped" and not all:
            raise Conflict("container not running")
        if all:
            open_cgroup(state.cgroup_path).kill_all(sig)
        else:
            os.kill(state.pid, sig)

    def delete(self, container_id: str, force: bool = False) -> None:
        try:
            state = self.states.load(container_id)
        except NotFound:
            if force:  # as runc: forcing the delete of a container that is already gone succeeds
                return
            raise
        state_dir = self.states.dir(container_id)
        status = state.status(state_dir)
        cgroup = open_cgroup(state.cgroup_path)
        if status in ("running", "paused") and not force:
            raise Conflict(f"cannot delete container {container_id} that is not stopped: {status}")
        if status != "stopped" or cgroup.pids():
            if status == "paused":
                cgroup.thaw()
            if cgroup.exists():
                cgroup.kill_all(signal.SIGKILL)
            _kill_and_wait(state.pid if status != "stopped" else 0)
            _wait_empty(cgroup)
        oci = dict(state.oci_state(state_dir), status="stopped")
        cgroup.destroy()
        self.states.remove(container_id)
        try:
            run_hooks(state.config, "poststop", oci)
        except HookError:
            pass  # runc only warns: the container is gone either way

    def pause(self, container_id: str) -> None:
        self._require(container_id, ("running", "created"), "pause")
        open_cgroup(self.states.load(container_id).cgroup_path).freeze()

    def resume(self, container_id: str) -> None:
        self._require(container_id, ("paused",), "resume")
        open_cgroup(self.states.load(container_id).cgroup_path).thaw()

    def update(self, container_id: str, resources: dict[str, Any]) -> None:
        state = self.states.load(container_id)
        open_cgroup(state.cgroup_path).apply(resources)
        linux = dict(state.config.get("linux") or {})
        merged = dict(linux.get("resources") or {})
        merged.update(resources)
        state.config = dict(state.config, linux=dict(linux, resources=merged))
        self.states.save(state)

    def stats(self, container_id: str) -> dict[str, Any]:
        state = self.states.load(container_id)
        return open_cgroup(state.cgroup_path).stats()

    def _require(self, container_id: str, allowed: tuple[str, ...], verb: str) -> None:
        status = self.states.load(container_id).status(self.states.dir(container_id))
        if status not in allowed:
            raise Conflict(f"container not {'paused' if verb == 'resume' else 'running'}")


def _kill_and_wait(pid: int, timeout: float = 10.0) -> None:
    if pid <= 0:
        return
    start = process_start_time(pid)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        if process_start_time(pid) != start or process_state(pid) in (None, "Z", "X"):
            return
        time.sleep(0.005)


def _wait_empty(cgroup: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while cgroup.exists() and cgroup.pids() and time.monotonic() < deadline:
        time.sleep(0.005)


def wait_forwarding_signals(pid: int) -> int:
    """Wait for ``pid`` (our child by subreaping), passing on the signals a foreground runc forwards."""
    def forward(signum: int, _: Any) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
                signal.SIGWINCH):
        signal.signal(sig, forward)
    while True:
        try:
            reaped, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        except InterruptedError:
            continue
        if reaped == pid:
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
