"""The processes that become the container: namespace entry, rootfs setup, privileges, exec.

``create`` forks a first child, which re-executes as a fresh interpreter from a read-only view of itself
(``first_process``, ``boot``, ``exe``), receives this plan over the channel, then joins or creates the namespaces
(a user namespace first, mapped by the parent) and forks again, so the grandchild is PID 1 of a new PID namespace;
the first child exits. The grandchild sets up the root filesystem, reports "ready", blocks on the exec fifo until
``start``, drops privileges and execs. ``exec`` takes the same path but joins an existing container's namespaces.

Everything this code needs is imported before ``pivot_root``: after it, the filesystem belongs to the container
and nothing may be loaded from it (CVE-2019-14271). The processes are non-dumpable until the final exec and run
from a read-only view of the interpreter, so the container can neither reach nor overwrite the host interpreter
through /proc/PID/exe (CVE-2019-5736). All fds other than stdio (and explicitly preserved ones) are
closed-on-exec and the cwd is checked after ``chdir`` (CVE-2024-21626).
"""

from __future__ import annotations

import _signal  # not ``signal``: its enum wrappers cost milliseconds of this process's start-up
import errno
import os
import resource
import stat
import sys

from sampan._linux import flags as kflags
from sampan._linux import process as sys_
from sampan._linux.fs import fstatfs_type
from sampan._linux.syscalls import (
    RESOLVE_BENEATH,
    RESOLVE_NO_MAGICLINKS,
    RESOLVE_NO_SYMLINKS,
    RESOLVE_NO_XDEV,
    openat2,
)
from sampan.runtime import rootfs
from sampan.runtime.capabilities import CapabilityPlan
from sampan.runtime.channel import Channel
from sampan.runtime.constants import NAMESPACE_FLAGS, PERSONALITY_DOMAINS, RLIMITS
from sampan.runtime.hooks import run_hooks

TYPE_CHECKING = False  # typing/collections.abc are not imported at run time: start-up cost
if TYPE_CHECKING:
    from typing import Any

NS_FILES = {"user": "user", "ipc": "ipc", "uts": "uts", "network": "net", "pid": "pid", "mount": "mnt",
            "cgroup": "cgroup", "time": "time"}
# setns order: the user namespace first (it owns the others), mount last but one (it changes path lookups).
NS_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount")


class InitPlan:
    """Everything the children need, computed by the parent before forking; it travels to the re-executed init
    as plain data (``wire``), so it holds nothing but JSON-like values and fd numbers."""

    _FIELDS = ("spec", "rootfs", "bundle", "process", "namespaces", "fifo_fd", "console_fd", "seccomp",
               "join_pid", "no_pivot", "preserve_fds", "cgroup_version", "state")

    def __init__(self, spec: dict[str, Any], rootfs: str, bundle: str, process: dict[str, Any],
                 namespaces: list[dict[str, Any]], *, fifo_fd: int = -1, console_fd: int = -1,
                 seccomp: tuple[bytes, int] | None = None, join_pid: int = 0, no_pivot: bool = False,
                 preserve_fds: int = 0, cgroup_version: int = 1, state: dict[str, Any] | None = None) -> None:
        self.spec, self.rootfs, self.bundle, self.process = spec, rootfs, bundle, process
        self.namespaces = namespaces
        self.fifo_fd, self.console_fd = fifo_fd, console_fd
        self.seccomp = seccomp  # the compiled program and its seccomp(2) flags
        self.join_pid = join_pid  # exec: the container init whose namespaces are joined
        self.no_pivot, self.preserve_fds = no_pivot, preserve_fds
        self.cgroup_version = cgroup_version  # for the "cgroup" mount: read by the parent, not in the container
        self.state: dict[str, Any] = state or {}
        self.agent_optional = False  # exec for an engine whose agent may be gone: run without it (parent only)
        self.caps: CapabilityPlan | None = None  # computed by the init itself (see ``boot``)

    def wire(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._FIELDS}

    @classmethod
    def from_wire(cls, data: dict[str, Any], fds: list[int]) -> InitPlan:
        """The plan as sent by ``InitProcess.send_plan``: its fds are the ones received with it, in order."""
        fields = dict(data)
        received = iter(fds)
        for name in ("fifo_fd", "console_fd"):
            if fields[name] >= 0:
                fields[name] = next(received)
        return cls(fields.pop("spec"), fields.pop("rootfs"), fields.pop("bundle"), fields.pop("process"),
                   fields.pop("namespaces"), **fields)

    @property
    def new_ns(self) -> set[str]:
        return {ns["type"] for ns in self.namespaces if not ns.get("path")}

    @property
    def seccomp_notify(self) -> bool:
        return self.seccomp is not None and bool(self.seccomp[1] & sys_.SECCOMP_FILTER_FLAG_NEW_LISTENER)

    def load_seccomp(self) -> int | None:
        """Install the filter in this process; the listener fd when it has NOTIFY rules."""
        program, flags = self.seccomp  # type: ignore[misc]
        fd = sys_.seccomp_set_mode_filter(program, flags)
        return fd if self.seccomp_notify else None


def boot(fd: int) -> None:
    """The re-executed init: receive the plan, load what the plan will need, then run stage 1. Never returns."""
    channel = Channel.from_fd(fd)
    try:
        sys_.prctl(sys_.PR_SET_DUMPABLE, 0)
        message = channel.recv()
        if message.get("type") != "plan":
            os._exit(1)
        plan = InitPlan.from_wire(message["plan"], message.get("fds") or [])
        _preload(plan)
        plan.caps = CapabilityPlan(plan.process.get("capabilities"))  # read before entering the container
    except BaseException as exc:  # noqa: BLE001
        channel.fail(exc)
        os._exit(1)
    stage1(channel, plan)


def _preload(plan: InitPlan) -> None:
    """Import now what this plan will use later: after ``pivot_root`` nothing may be loaded (CVE-2019-14271),
    and what a plan does not need is not worth this process's start-up time."""
    hooks = plan.spec.get("hooks") or {}
    if hooks.get("createContainer") or hooks.get("startContainer"):
        import json  # noqa: F401 - run_hooks imports these two when it has hooks to run
        import subprocess  # noqa: F401
    if plan.process.get("terminal"):
        import sampan.runtime.console  # noqa: F401 - with socket, for the console socket
    if any("tmpcopyup" in (m.get("options") or []) for m in plan.spec.get("mounts") or []):
        import shutil  # noqa: F401 - rootfs copies up with it


# ---------------------------------------------------------------------------------------------- stage 1


def stage1(channel: Channel, plan: InitPlan) -> None:
    """First child: once the runtime has put it in the cgroup, enter namespaces, then fork the container
    process. Never returns."""
    try:
        if channel.recv().get("type") != "go":
            os._exit(1)
        if plan.join_pid:
            _join_all(plan.join_pid)
        else:
            _enter_namespaces(channel, plan)
        reported, report = os.pipe()
        pid = os.fork()
        if pid:
            channel.send(type="pid", pid=pid)
            os._exit(0)
        os.close(report)
        os.read(reported, 1)  # EOF once the pid is sent: the runtime must know it before any message of ours
        os.close(reported)
        stage2(channel, plan)
    except BaseException as exc:  # noqa: BLE001 - report and die: this process must never return to the caller
        channel.fail(exc)
    os._exit(1)


def _join_all(pid: int) -> None:
    fds = {}
    for name in NS_ORDER:
        path = f"/proc/{pid}/ns/{NS_FILES[name]}"
        if os.path.exists(path) and os.readlink(path) != os.readlink(f"/proc/self/ns/{NS_FILES[name]}"):
            fds[name] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    for name in NS_ORDER:
        if name in fds:
            sys_.setns(fds[name], 0)
            os.close(fds[name])


def _enter_namespaces(channel: Channel, plan: InitPlan) -> None:
    by_type = {ns["type"]: ns for ns in plan.namespaces}
    for name in NS_ORDER:  # join the ones given by path, user first
        ns = by_type.get(name)
        if ns and ns.get("path"):
            fd = os.open(ns["path"], os.O_RDONLY | os.O_CLOEXEC)
            sys_.setns(fd, 0)
            os.close(fd)
    if "user" in plan.new_ns:
        sys_.unshare(kflags.CLONE_NEWUSER)
        channel.send(type="map-user")
        if channel.recv().get("type") != "mapped":
            os._exit(1)
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    flags = 0
    for name in plan.new_ns - {"user"}:
        flags |= NAMESPACE_FLAGS[name]
    if flags:
        sys_.unshare(flags)
    if "time" in plan.new_ns:
        offsets = (plan.spec.get("linux") or {}).get("timeOffsets") or {}
        lines = [f"{clock} {v.get('secs', 0)} {v.get('nanosecs', 0)}" for clock, v in offsets.items()]
        if lines:
            with open("/proc/self/timens_offsets", "w") as f:
                f.write("\n".join(lines))


# ---------------------------------------------------------------------------------------------- stage 2


def stage2(channel: Channel, plan: InitPlan) -> None:
    """The container process: set up, report ready, wait for start, exec. Never returns."""
    try:
        os.setsid()
        if plan.join_pid:
            if plan.process.get("terminal"):
                _setup_console(plan)
        else:
            _container_setup(channel, plan)
        _finish_and_exec(channel, plan)
    except BaseException as exc:  # noqa: BLE001
        channel.fail(exc)
        os._exit(1)


def _container_setup(channel: Channel, plan: InitPlan) -> None:
    spec, linux = plan.spec, plan.spec.get("linux") or {}
    old_umask = os.umask(0)
    if "mount" in plan.new_ns:
        rootfs.prepare_root(plan.rootfs, linux.get("rootfsPropagation"))
        root_fd = os.open(plan.rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for entry in spec.get("mounts") or []:
                rootfs.mount_entry(root_fd, entry, plan.bundle, plan.cgroup_version)
            os.close(rootfs.make_in_root(root_fd, plan.process.get("cwd") or "/", directory=True))  # as runc
            if not rootfs.has_dev_bind(spec.get("mounts") or []):
                rootfs.create_devices(root_fd, linux.get("devices") or [], bind_from_host="user" in plan.new_ns)
                rootfs.dev_symlinks(root_fd)
        finally:
            os.close(root_fd)
    _hook_point(channel, "createRuntime")
    run_hooks(spec, "createContainer", dict(plan.state, pid=os.getpid(), status="creating"))
    if "mount" in plan.new_ns:
        rootfs.pivot(plan.rootfs, plan.no_pivot)
    else:
        os.chroot(plan.rootfs)
        os.chdir("/")
    if plan.process.get("terminal"):
        _setup_console(plan)
    if spec.get("hostname") is not None and "uts" in plan.new_ns:
        sys_.sethostname(spec["hostname"])
    if spec.get("domainname") is not None and "uts" in plan.new_ns:
        sys_.setdomainname(spec["domainname"])
    for key, value in (linux.get("sysctl") or {}).items():  # before /proc/sys becomes read-only
        _write_proc("sys/" + key.replace(".", "/"), value)
    if "mount" in plan.new_ns:
        rootfs.readonly_paths(linux.get("readonlyPaths") or [])
        rootfs.mask_paths(linux.get("maskedPaths") or [])
    if (spec.get("root") or {}).get("readonly") and "mount" in plan.new_ns:
        rootfs.readonly_root()
    os.umask(old_umask)


def _setup_console(plan: InitPlan) -> None:
    from sampan.runtime import console  # preloaded (see _preload)

    master, slave = console.open_pty()
    _send_console(plan, master)
    console.make_controlling(slave)


def _send_console(plan: InitPlan, master: int) -> None:
    if plan.console_fd < 0:
        raise OSError(errno.EINVAL, "a terminal was requested but no console socket was given")
    from sampan.runtime import console  # preloaded (see _preload)

    with console.socket_from_fd(plan.console_fd) as s:
        console.send_fd(s, master, "/dev/ptmx")
    plan.console_fd = -1
    size = plan.process.get("consoleSize")
    if size:
        sys_.set_winsize(master, size.get("height", 0), size.get("width", 0))
    os.close(master)


def _write_proc(relative: str, value: str) -> None:
    """Write under /proc only through a private, verified procfs (CVE-2025-52881).

    ``open_tree`` without AT_RECURSIVE clones the /proc mount alone, so nothing mounted over a file inside it
    (even another procfs file) can redirect the write; the lookup may not cross mounts or follow links.
    """
    proc = sys_.open_tree("/proc")
    try:
        _check_procfs(proc)
        if os.fstat(proc).st_ino != 1:
            raise OSError(errno.EXDEV, "refusing to write to /proc: its root is not the procfs root")
        fd = openat2(proc, relative, os.O_WRONLY | os.O_CLOEXEC,
                     RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)
        try:
            _check_procfs(fd)
            os.write(fd, str(value).encode())
        finally:
            os.close(fd)
    finally:
        os.close(proc)


PROC_SUPER_MAGIC = 0x9FA0


def _check_procfs(fd: int) -> None:
    if fstatfs_type(fd) != PROC_SUPER_MAGIC:
        raise OSError(errno.EXDEV, "refusing to write to /proc: it is not procfs")


def _hook_point(channel: Channel, stage: str) -> None:
    channel.send(type="hooks", stage=stage)
    reply = channel.recv()
    if reply.get("type") != "continue":
        os._exit(1)


def _apply_rlimits(process: dict[str, Any]) -> None:
    for limit in process.get("rlimits") or []:
        resource.setrlimit(RLIMITS[limit["type"]], (limit["soft"], limit["hard"]))


def _switch_user(process: dict[str, Any], caps: CapabilityPlan) -> None:
    user = process.get("user") or {}
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    caps.drop_bounding()
    sys_.prctl(sys_.PR_SET_KEEPCAPS, 1)
    try:
        os.setgroups(list(user.get("additionalGids") or []))
    except PermissionError:
        if user.get("additionalGids"):
            raise
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    sys_.prctl(sys_.PR_SET_KEEPCAPS, 0)
    caps.apply()
    if user.get("umask") is not None:
        os.umask(user["umask"])


def _finish_and_exec(channel: Channel, plan: InitPlan) -> None:
    process, spec = plan.process, plan.spec
    _apply_rlimits(process)
    if process.get("oomScoreAdj") is not None:
        _write_proc(f"{os.getpid()}/oom_score_adj", str(process["oomScoreAdj"]))  # not "self": a symlink
    personality = ((spec.get("linux") or {}).get("personality") or {}).get("domain")
    if personality:
        sys_.personality(PERSONALITY_DOMAINS[personality])
    sys_.close_range_cloexec(3 + plan.preserve_fds)
    nnp = bool(process.get("noNewPrivileges"))
    if plan.seccomp is not None and (not nnp or plan.seccomp_notify):
        # Without no_new_privs loading needs CAP_SYS_ADMIN, which the user switch drops; a notify filter
        # must be loaded while the runtime still listens, to hand its listener fd to the seccomp agent.
        if nnp:
            sys_.prctl(sys_.PR_SET_NO_NEW_PRIVS, 1)
        listener = plan.load_seccomp()
        if listener is not None:
            channel.send(fds=[listener], type="seccomp-listener")
            os.close(listener)
            if channel.recv().get("type") != "continue":
                os._exit(1)
    _switch_user(process, plan.caps)
    env = dict(item.split("=", 1) for item in process.get("env") or [] if "=" in item)
    cwd = process.get("cwd") or "/"
    os.chdir(cwd)
    if not os.getcwd().startswith("/") or os.getcwd().startswith("(unreachable)"):
        raise OSError(errno.EPERM, f"current working directory {cwd} is outside of the container root")
    args = process["args"]
    program = _look_path(args[0], env.get("PATH", ""))  # a missing program fails create, as with runc
    channel.send(type="ready")
    if not plan.join_pid:
        fifo = os.open(f"/proc/self/fd/{plan.fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
        os.write(fifo, b"0")
        os.close(fifo)
        run_hooks(spec, "startContainer", dict(plan.state, pid=os.getpid(), status="created"))
    channel.close()
    if nnp and not plan.seccomp_notify:
        sys_.prctl(sys_.PR_SET_NO_NEW_PRIVS, 1)
        if plan.seccomp is not None:
            plan.load_seccomp()  # as late as possible: the filter then constrains only the container
    for sig in range(1, _signal.NSIG):
        try:
            _signal.signal(sig, _signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    try:
        os.execve(program, args, env)
    except OSError as e:
        sys.stderr.write(f"sampan-runc: exec {args[0]}: {e.strerror}\n")
        sys.stderr.flush()
        os._exit(127 if e.errno == errno.ENOENT else 126)


def _look_path(name: str, path: str) -> str:
    """Go's exec.LookPath, as runc resolves the program before reporting ready: a name with "/" is used as is."""
    candidates = [name] if "/" in name else [os.path.join(d or ".", name) for d in path.split(":")]
    for candidate in candidates:
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
            return candidate
        if "/" in name:  # Go's findExecutable: there, but not something we may run
            raise OSError(errno.EACCES, f'exec: "{name}": permission denied')
    where = "" if "/" in name else " in $PATH"
    raise OSError(errno.ENOENT, f'exec: "{name}": executable file not found{where}')

