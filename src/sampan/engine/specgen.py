"""From an image and ``docker run`` options to the OCI runtime spec (``config.json``) of a container.

``build_spec`` turns an image's ``config`` object and a ``RunOptions`` into the spec Docker 20.10's dockerd
writes for the same ``docker run`` (tests/test_specgen.py compares the two against a real dockerd), and
refuses bad values with Docker's own messages: the checks of the docker CLI (flag parsing), of dockerd
(``verifyContainerSettings``, ``verifyPlatformContainerResources``) and of ``daemon/oci_linux.go`` (user
lookup, devices, tmpfs options) in one place. The module is pure data translation: it reads nothing but what a
``docker run`` reads too (the host facts in ``HostInfo``, host device nodes named by ``--device`` or
``--privileged``, a ``seccomp=`` profile file, and the image's ``/etc/passwd`` and ``/etc/group`` through
``lookup_user``/``lookup_groups``, which open them under ``openat2(RESOLVE_IN_ROOT)`` so a hostile image
cannot point them at host files).

Without ``--security-opt seccomp=...`` (and without ``seccomp=unconfined`` or ``--privileged``) a
container gets Docker 20.10's default seccomp profile, kept as package data (``seccomp_default.json``, read
on first use) and filtered exactly as a profile file is: by the host's architecture, the container's
bounding capabilities and the kernel version; a kernel without seccomp gets none, as with dockerd.

The caller adds the container's ``/etc/hosts``, ``/etc/hostname`` and ``/etc/resolv.conf``
(``hosts_files``) and resolves names Docker resolves itself: volumes to host paths, and ``container:NAME``
namespace modes to ``container:/proc/<pid>/ns/<type>``.

Where sampan deliberately differs from Docker 20.10 (each is what later Docker releases do):
- ``--privileged`` and ``--cap-add ALL`` grant every capability the running kernel knows (20.10's list
  stops at CAP_AUDIT_READ);
- ``/proc/interrupts`` and ``/sys/devices/virtual/powercap`` are masked too (DESIGN.md's security baseline);
- a seccomp profile's ``defaultErrnoRet`` is kept;
- ``--network host`` leaves out the network namespace instead of joining dockerd's copy of the host's;
- no AppArmor profile, SELinux label or libnetwork hook is set.
"""

from __future__ import annotations

import errno
import json
import os
import posixpath
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from sampan.errors import InvalidArgument, NotFound, Unsupported
from sampan.runtime.constants import CAPABILITIES
from sampan.units import parse_size

OCI_VERSION = "1.0.2-dev"  # what dockerd 20.10 writes
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
MIN_MEMORY = 6 * 1024 * 1024  # dockerd's linuxMinMemory
CPU_PERIOD = 100_000  # microseconds: the CFS period --cpus uses
INIT_PATH_IN_CONTAINER = "/sbin/docker-init"
CGROUP_PARENT = "/sampan"
DEFAULT_SECCOMP_PROFILE = "seccomp_default.json"  # package data: Docker 20.10's default profile

DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# Sysctls dockerd sets in a container with a network namespace of its own (users may override them).
DEFAULT_SYSCTLS = {"net.ipv4.ip_unprivileged_port_start": "0", "net.ipv4.ping_group_range": "0 2147483647"}

# The docker CLI's sysctl allowlist (opts.ValidateSysctl): sysctls that a namespace isolates.
_IPC_SYSCTLS = frozenset({"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                          "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"})

# go-units ulimit names (``--ulimit nofile=...``).
_ULIMITS = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss",
            "rtprio", "rttime", "sigpending", "stack")

# moby/sys/mount's option table for MergeTmpfsOptions: name -> the flag it sets or clears (its collision key).
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_SYNC, _MS_REMOUNT, _MS_MAND = 1, 2, 4, 8, 16, 32, 64
_MS_DIRSYNC, _MS_NOATIME, _MS_NODIRATIME, _MS_BIND, _MS_REC = 128, 1024, 2048, 4096, 16384
_MS_RELATIME, _MS_STRICTATIME = 1 << 21, 1 << 24
_PROPAGATION_KEY = -1  # all propagation modes collide with each other
_MOUNT_FLAGS: dict[str, int] = {
    "ro": _MS_RDONLY, "rw": _MS_RDONLY, "suid": _MS_NOSUID, "nosuid": _MS_NOSUID, "dev": _MS_NODEV,
    "nodev": _MS_NODEV, "exec": _MS_NOEXEC, "noexec": _MS_NOEXEC, "sync": _MS_SYNC, "async": _MS_SYNC,
    "dirsync": _MS_DIRSYNC, "remount": _MS_REMOUNT, "mand": _MS_MAND, "nomand": _MS_MAND,
    "atime": _MS_NOATIME, "noatime": _MS_NOATIME, "diratime": _MS_NODIRATIME, "nodiratime": _MS_NODIRATIME,
    "bind": _MS_BIND, "rbind": _MS_BIND | _MS_REC, "relatime": _MS_RELATIME, "norelatime": _MS_RELATIME,
    "strictatime": _MS_STRICTATIME, "nostrictatime": _MS_STRICTATIME,
    **dict.fromkeys(("unbindable", "runbindable", "private", "rprivate", "shared", "rshared", "slave",
                     "rslave"), _PROPAGATION_KEY),
}
_TMPFS_DATA = frozenset({"", "size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol"})
_PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")

# Directories and files of /dev that --privileged does not pass through (runc's devices.HostDevices).
_SKIPPED_DEV_DIRS = frozenset({"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"})

# Docker's seccomp profiles name architectures by GOARCH in includes/excludes and by libseccomp in archMap.
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le",
           "s390x": "s390x", "riscv64": "riscv64", "mips64": "mips64"}
_SECCOMP_ARCH = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64", "arm": "SCMP_ARCH_ARM",
                 "386": "SCMP_ARCH_X86", "ppc64le": "SCMP_ARCH_PPC64LE", "s390x": "SCMP_ARCH_S390X",
                 "riscv64": "SCMP_ARCH_RISCV64", "mips64": "SCMP_ARCH_MIPS64"}

_NAMESPACE_FILES = {"pid": "pid", "ipc": "ipc", "uts": "uts", "network": "net"}
_MAX_ID = 2**31 - 1  # runc's user package: uids and gids must be in range 0-2147483647
_MAX_INT64 = 2**63 - 1
_GO_INT = re.compile(r"[+-]?[0-9]+")
_RATIONAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?(?:/[0-9]+)?")
_PASSWD_LINE_MAX = 64 * 1024  # bufio.Scanner's MaxScanTokenSize: runc fails longer passwd lines
_GROUP_LINE_MAX = 1024 * 1024

UserLookup = Callable[[str], tuple[int, int, list[int]]]
GroupLookup = Callable[[list[str]], list[int]]
# A mount the caller resolved: (source, destination, options). A source of "tmpfs" is a tmpfs whose options
# are tmpfs data and flags ("size=64m", "mode=1777", "noexec"); any other source is a host path bind-mounted
# with Docker's bind options ("ro", "bind" for a non-recursive bind, a propagation such as "rprivate"; "rw",
# "rbind", "z", "Z" and "nocopy" change nothing in the spec).
Mount = tuple[str, str, list[str]]


@dataclass
class RunOptions:
    """The ``docker run`` options that shape a container's OCI spec, as the CLI parsed them.

    Sizes (``memory``, ``memory_swap``, ``memory_reservation``, ``shm_size``) are bytes or Docker's size
    strings ("64m"); ``memory_swap`` may be -1 (unlimited). ``cpus`` is a float or Docker's string ("0.5",
    "1/2"). ``entrypoint`` None keeps the image's; ``[]`` is ``--entrypoint ""`` (no entrypoint and no image
    command). Namespace modes are "", "host", or "container:<namespace path>" (the caller resolves a
    container's name to ``/proc/<pid>/ns/<type>``); ``ipc_mode`` also takes "private", "shareable" and "none",
    ``network_mode`` "none", "host", "private" (also "bridge"/"default") or "container:<path>". ``labels`` and
    ``stop_signal`` do not appear in the spec (Docker keeps them in the container's record) but are checked
    here.
    """

    command: list[str] = field(default_factory=list)
    entrypoint: list[str] | None = None
    env: list[str] = field(default_factory=list)
    workdir: str = ""
    user: str = ""
    group_add: list[str] = field(default_factory=list)
    hostname: str = ""
    domainname: str = ""
    tty: bool = False
    stdin_open: bool = False
    read_only: bool = False
    privileged: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    security_opt: list[str] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)
    ulimits: list[str] = field(default_factory=list)
    memory: int | str | None = None
    memory_swap: int | str | None = None
    memory_reservation: int | str | None = None
    cpus: float | str | None = None
    cpu_shares: int | None = None
    cpuset_cpus: str = ""
    pids_limit: int | None = None
    oom_kill_disable: bool = False
    devices: list[str] = field(default_factory=list)
    tmpfs: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    shm_size: int | str | None = None
    init: bool = False
    network_mode: str = "private"
    pid_mode: str = ""
    ipc_mode: str = ""
    uts_mode: str = ""
    cgroupns_mode: str = ""  # "" is Docker's default: private on cgroup v2, host on v1
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    cgroup_parent: str = ""
    oom_score_adj: int = 0


@dataclass(frozen=True)
class HostInfo:
    """The host facts dockerd's checks depend on (its ``sysinfo``); ``detect()`` reads them from this host."""

    ncpu: int
    cpuset_cpus: str  # the CPUs containers may use, as a list ("0-3")
    swap_limit: bool  # the memory controller can limit swap (memory.memsw.* / memory.swap.max)
    oom_kill_disable: bool  # cgroup v1's memory.oom_control
    kernel: tuple[int, int]
    hostname: str
    last_cap: int
    default_sysctls: tuple[str, ...]  # those of DEFAULT_SYSCTLS this kernel has
    dev_root: str = "/dev"
    seccomp: bool = True  # the kernel has seccomp (CONFIG_SECCOMP): without it dockerd runs unconfined
    cgroup_version: int = 1  # 2 on a unified host, where a container gets its own cgroup namespace by default

    @classmethod
    def detect(cls, cgroup_root: str = "/sys/fs/cgroup") -> HostInfo:
        ncpu = len(os.sched_getaffinity(0))
        unified = os.path.exists(os.path.join(cgroup_root, "cgroup.controllers"))
        if unified:
            cpuset = _read_first_line(os.path.join(cgroup_root, "cpuset.cpus.effective"))
            controllers = (_read_first_line(os.path.join(cgroup_root, "cgroup.controllers")) or "").split()
            swap, oom = "memory" in controllers, False
        else:
            cpuset = _read_first_line(os.path.join(cgroup_root, "cpuset", "cpuset.cpus"))
            swap = os.path.exists(os.path.join(cgroup_root, "memory", "memory.memsw.limit_in_bytes"))
            oom = os.path.exists(os.path.join(cgroup_root, "memory", "memory.oom_control"))
        release = re.match(r"(\d+)\.(\d+)", os.uname().release)
        kernel = (int(release.group(1)), int(release.group(2))) if release else (0, 0)
        try:
            last_cap = int(_read_first_line("/proc/sys/kernel/cap_last_cap") or "")
        except ValueError:
            last_cap = max(CAPABILITIES.values())
        sysctls = tuple(name for name in DEFAULT_SYSCTLS
                        if os.path.exists("/proc/sys/" + name.replace(".", "/")))
        try:
            with open("/proc/self/status") as f:
                seccomp = any(line.startswith("Seccomp:") for line in f)
        except OSError:
            seccomp = True
        return cls(ncpu=ncpu, cpuset_cpus=cpuset or f"0-{ncpu - 1}", swap_limit=swap, oom_kill_disable=oom,
                   kernel=kernel, hostname=os.uname().nodename, last_cap=last_cap, default_sysctls=sysctls,
                   seccomp=seccomp, cgroup_version=2 if unified else 1)


def _read_first_line(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.readline().strip()
    except OSError:
        return None


# --- small Go-compatible parsers ---------------------------------------------------------------------------


def _go_atoi(text: str) -> int | None:
    """strconv.Atoi: an optionally signed decimal in int64 range, or None."""
    if not _GO_INT.fullmatch(text):
        return None
    value = int(text)
    return value if -(2**63) <= value <= _MAX_INT64 else None


def _go_atoi_lenient(text: str) -> int:
    """What runc's passwd/group parser stores for a number field: Atoi's value, 0 when it is not a number,
    and the int64 limit it was clamped to when out of range."""
    if not _GO_INT.fullmatch(text):
        return 0
    return max(-(2**63), min(_MAX_INT64, int(text)))


def _go_quote_list(items: list[str]) -> str:
    """Go's ``%q`` of a []string: ``["a" "b"]``."""
    return "[" + " ".join(json.dumps(item) for item in items) + "]"


def _go_clean(path: str) -> str:
    """Go's path.Clean (posixpath.normpath keeps a leading "//", Go does not)."""
    cleaned = posixpath.normpath(path) if path else "."
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def _flag_error(value: str, flag: str, message: str) -> InvalidArgument:
    """How the docker CLI (pflag) reports a value its flag type refused."""
    return InvalidArgument(f'invalid argument "{value}" for "{flag}" flag: {message}')


def _size(value: int | str | None, flag: str, *, allow_unlimited: bool = False) -> int:
    """A size option in bytes (0 when unset), parsed like the docker CLI's MemBytes/MemSwapBytes flags."""
    if value is None or value == "":
        return 0
    if isinstance(value, int):
        return value
    if allow_unlimited and value == "-1":
        return -1
    try:
        return parse_size(value)
    except InvalidArgument as e:
        raise _flag_error(value, flag, str(e)) from None


def nano_cpus(value: float | str | None) -> int:
    """The docker CLI's NanoCPUs flag: a rational number of CPUs, in billionths, which must be exact."""
    if value is None or value == "":
        return 0
    from fractions import Fraction  # only when --cpus is given: 1.5 ms of every run's start-up otherwise

    text = value if isinstance(value, str) else repr(float(value))
    try:
        if not _RATIONAL.fullmatch(text):
            raise ValueError(text)
        cpus = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise _flag_error(text, "--cpus", f"failed to parse {text} as a rational number") from None
    nano = cpus * 10**9
    if nano.denominator != 1:
        raise _flag_error(text, "--cpus", "value is too precise")
    return int(nano)


def parse_signal(name: str) -> int:
    """docker's signal.ParseSignal: a number or a name with or without "SIG" ("TERM", "SIGRTMIN+3")."""
    import signal

    number = _go_atoi(name)
    if number is not None:
        if number == 0:
            raise InvalidArgument(f"Invalid signal: {name}")
        return number
    upper = name.upper().removeprefix("SIG")
    rt = re.fullmatch(r"RTM(IN|AX)([+-]\d+)?", upper)
    if rt:
        offset = int(rt.group(2) or 0)
        base = signal.SIGRTMIN if rt.group(1) == "IN" else signal.SIGRTMAX
        if (rt.group(1) == "IN" and 0 <= offset <= 15) or (rt.group(1) == "AX" and -14 <= offset <= 0):
            return int(base) + offset
        raise InvalidArgument(f"Invalid signal: {name}")
    aliases = {"CLD": "CHLD", "IOT": "ABRT", "POLL": "IO"}
    member = getattr(signal.Signals, "SIG" + aliases.get(upper, upper), None)
    if member is None or not upper.isalnum():
        raise InvalidArgument(f"Invalid signal: {name}")
    return int(member)


# --- users and groups ---------------------------------------------------------------------------------------


def _fields(line: str, count: int) -> list[str]:
    parts = line.split(":")
    return parts[:count] + [""] * (count - len(parts))


def _entries(lines: Iterable[str] | None) -> Iterator[list[str]]:
    """Non-blank, non-comment lines of a passwd or group file (glibc's rules, which runc follows)."""
    for raw in lines or ():
        line = raw.strip()
        if line and not line.startswith("#"):
            yield line.split(":")


def _passwd(lines: Iterable[str] | None) -> list[tuple[str, int, int]]:
    out = []
    for parts in _entries(lines):
        name, _, uid, gid = _fields(":".join(parts), 4)
        out.append((name, _go_atoi_lenient(uid), _go_atoi_lenient(gid)))
    return out


def _groups(lines: Iterable[str] | None) -> list[tuple[str, int, list[str]]]:
    out = []
    for parts in _entries(lines):
        name, _, gid, members = _fields(":".join(parts), 4)
        out.append((name, _go_atoi_lenient(gid), members.split(",") if members else []))
    return out


def resolve_user(user: str, passwd: Iterable[str] | None,
                 group: Iterable[str] | None) -> tuple[int, int, list[int]]:
    """runc's user.GetExecUser, as dockerd uses it: ``user`` ("", "uid", "name", "uid:gid", "name:group")
    against the lines of the image's passwd and group files (None when a file does not exist).

    Returns (uid, gid, supplementary gids): the groups listing the user as a member, unless a group is given.
    """
    user_arg, _, rest = user.partition(":")
    group_arg = rest.partition(":")[0]
    uid_arg = _go_atoi(user_arg)
    users = _passwd(passwd)
    if user_arg == "":
        matches = [u for u in users if u[1] == 0]
    elif uid_arg is not None:
        matches = [u for u in users if u[1] == uid_arg]
    else:
        matches = [u for u in users if u[0] == user_arg]
    uid, gid, matched_name = 0, 0, ""
    if matches:
        matched_name, uid, gid = matches[0]
    elif user_arg != "":
        if uid_arg is None:
            raise InvalidArgument(f"unable to find user {user_arg}: no matching entries in passwd file")
        if not 0 <= uid_arg <= _MAX_ID:
            raise InvalidArgument(f"uids and gids must be in range 0-{_MAX_ID}")
        uid = uid_arg
    supplementary: list[int] = []
    if group_arg or matched_name:
        groups = _groups(group)
        if group_arg:
            gid_arg = _go_atoi(group_arg)
            found = [g for g in groups if (g[1] == gid_arg if gid_arg is not None else g[0] == group_arg)]
            if found:
                gid = found[0][1]
            elif gid_arg is None:
                raise InvalidArgument(f"unable to find group {group_arg}: no matching entries in group file")
            elif not 0 <= gid_arg <= _MAX_ID:
                raise InvalidArgument(f"uids and gids must be in range 0-{_MAX_ID}")
            else:
                gid = gid_arg
        else:
            supplementary = [g[1] for g in groups if matched_name in g[2]]
    return uid, gid, supplementary


def resolve_groups(names: list[str], group: Iterable[str] | None) -> list[int]:
    """runc's user.GetAdditionalGroups for ``--group-add``: group names or gids (numbers need no entry)."""
    wanted = set(names)
    groups = [g for g in _groups(group) if g[0] in wanted or str(g[1]) in wanted]
    gids: list[int] = []
    for name in names:
        match = next((g[1] for g in groups if (g[0] == name or str(g[1]) == name) and g[1] not in gids), None)
        if match is not None:
            gids.append(match)
            continue
        number = _go_atoi(name)
        if number is None:
            raise InvalidArgument(f"Unable to find group {name}: no matching entries in group file")
        if not 0 <= number <= _MAX_ID:
            raise InvalidArgument(f"uids and gids must be in range 0-{_MAX_ID}")
        if number not in gids:
            gids.append(number)
    return gids


def _read_rootfs_lines(rootfs: str, path: str, max_line: int, who: str) -> list[str] | None:
    """The lines of ``path`` inside ``rootfs``, resolved with the rootfs as "/" (symlinks and ".." cannot
    leave it), or None when it does not exist. Only a regular file is read: a fifo or a device node in an
    image must not hang or flood the caller."""
    from sampan._linux.syscalls import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2

    try:
        root = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise NotFound(f"rootfs {rootfs}: {e.strerror}") from None
    try:
        fd = openat2(root, path.lstrip("/"), os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK,
                     RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise InvalidArgument(f"{who}: open {path}: {e.strerror}") from None
    finally:
        os.close(root)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InvalidArgument(f"{who}: {path} is not a regular file")
    with os.fdopen(fd, "rb") as f:
        lines: list[str] = []
        while True:
            line = f.readline(max_line + 1)
            if not line:
                return lines
            if len(line.rstrip(b"\n")) > max_line:
                raise InvalidArgument(f"{who}: bufio.Scanner: token too long")
            lines.append(line.decode("utf-8", "surrogateescape"))


class _LazyLines:
    """A rootfs file read only when iterated (an absent file has no lines): runc reads /etc/group only when
    the user spec needs it, so a broken group file does not matter to ``-u 1000``."""

    def __init__(self, rootfs: str, path: str, max_line: int, who: str) -> None:
        self.args = (rootfs, path, max_line, who)

    def __iter__(self) -> Iterator[str]:
        return iter(_read_rootfs_lines(*self.args) or ())


def lookup_user(rootfs: str, user: str) -> tuple[int, int, list[int]]:
    """Resolve ``user`` against the image's /etc/passwd and /etc/group in ``rootfs`` (see ``resolve_user``),
    opening them contained in the rootfs; the errors are Docker's ("unable to find user x: no matching entries
    in passwd file")."""
    who = f"unable to find user {user.partition(':')[0] or '0'}"
    passwd = _read_rootfs_lines(rootfs, "/etc/passwd", _PASSWD_LINE_MAX, who)
    group = _LazyLines(rootfs, "/etc/group", _GROUP_LINE_MAX, f"unable to find groups for {user}")
    return resolve_user(user, passwd, group)


def lookup_groups(rootfs: str, names: list[str]) -> list[int]:
    """Resolve ``--group-add`` values against the image's /etc/group in ``rootfs`` (``resolve_groups``)."""
    who = f"Unable to find additional groups {names}"
    group = _read_rootfs_lines(rootfs, "/etc/group", _GROUP_LINE_MAX, who)
    return resolve_groups(names, group)


# --- process ------------------------------------------------------------------------------------------------


def _args(image: dict[str, Any], options: RunOptions) -> list[str]:
    """Docker's entrypoint and command rules: a given --entrypoint (even "") drops the image's Cmd too."""
    command = list(options.command)
    if options.entrypoint is None:
        entrypoint = list(image.get("Entrypoint") or [])
        if not command:
            command = list(image.get("Cmd") or [])
    else:
        entrypoint = list(options.entrypoint)
    args = entrypoint + command
    if not args:
        raise InvalidArgument("No command specified")
    return args


def _replace_or_append(defaults: list[str], overrides: list[str]) -> list[str]:
    """docker's ReplaceOrAppendEnvValues: set in place or append; a bare NAME removes NAME."""
    env: list[str | None] = list(defaults)
    index = {entry.partition("=")[0]: i for i, entry in enumerate(defaults)}
    for entry in overrides:
        name, sep, _ = entry.partition("=")
        if not sep:
            if name in index:
                env[index[name]] = None
        elif name in index:
            env[index[name]] = entry
        else:
            index[name] = len(env)
            env.append(entry)
    return [entry for entry in env if entry is not None]


def _env(image: dict[str, Any], options: RunOptions, hostname: str) -> list[str]:
    """PATH, HOSTNAME and (with -t) TERM, then the user's -e values and the image's Env they do not name."""
    for entry in options.env:
        if entry.startswith("="):
            raise InvalidArgument(f"invalid environment variable: {entry}")
    user_names = {entry.partition("=")[0] for entry in options.env}
    image_env = [entry for entry in image.get("Env") or [] if entry.partition("=")[0] not in user_names]
    config_env = list(options.env) + image_env
    defaults = ["PATH=" + DEFAULT_PATH, "HOSTNAME=" + hostname] + (["TERM=xterm"] if options.tty else [])
    return _replace_or_append(defaults, config_env)


def _cwd(image: dict[str, Any], options: RunOptions) -> str:
    workdir = options.workdir or image.get("WorkingDir") or ""
    if not workdir:
        return "/"
    if not workdir.startswith("/"):
        raise InvalidArgument(f"the working directory '{workdir}' is invalid, it needs to be an absolute "
                              "path")
    return _go_clean(workdir)


def _all_capabilities(host: HostInfo) -> list[str]:
    return [name for name, number in CAPABILITIES.items() if number <= host.last_cap]


def _normalize_caps(names: list[str]) -> set[str]:
    """The docker CLI's normalizeCaps: upper case, CAP_ prefix, "ALL" kept as is."""
    out = set()
    for name in names:
        name = name.strip().upper()
        if name:
            out.add(name if name == "ALL" or name.startswith("CAP_") else "CAP_" + name)
    return out


def _capabilities(options: RunOptions, host: HostInfo) -> list[str]:
    """The CLI's EffectiveCapAddCapDrop, then dockerd's TweakCapabilities."""
    known = _all_capabilities(host)
    if options.privileged:
        return known
    add, drop = _normalize_caps(options.cap_add), _normalize_caps(options.cap_drop)
    if "ALL" in add:
        add = {"ALL"}
    if "ALL" in drop:
        drop = {"ALL"}
    drop -= add
    adds, drops = sorted(add), sorted(drop)
    if not adds and not drops:
        return list(DEFAULT_CAPABILITIES)
    for which, names in (("CapDrop", drops), ("CapAdd", adds)):
        for name in names:
            if name != "ALL" and name not in known:
                raise InvalidArgument(f'invalid {which}: unknown capability: "{name}"')
    if "ALL" in adds:
        return [name for name in known if name not in drops]
    if "ALL" in drops:
        return adds
    return [name for name in DEFAULT_CAPABILITIES if name not in drops] + adds


def _rlimits(ulimits: list[str]) -> list[dict[str, Any]]:
    """go-units ParseUlimit for each ``--ulimit``; a name given twice keeps its last value."""
    parsed: dict[str, tuple[int, int]] = {}
    for text in ulimits:
        def fail(message: str, text: str = text) -> InvalidArgument:
            return _flag_error(text, "--ulimit", message)

        name, sep, values = text.partition("=")
        if not sep:
            raise fail(f"invalid ulimit argument: {text}")
        if name not in _ULIMITS:
            raise fail(f"invalid ulimit type: {name}")
        limits = values.split(":")
        if len(limits) > 2:
            raise fail(f"too many limit value arguments - {values}, can only have up to two, `soft[:hard]`")
        numbers = []
        for limit in limits:
            number = _go_atoi(limit)
            if number is None:
                reason = "value out of range" if _GO_INT.fullmatch(limit) else "invalid syntax"
                raise fail(f'strconv.ParseInt: parsing "{limit}": {reason}')
            numbers.append(number)
        soft, hard = numbers[0], numbers[-1]
        if hard != -1 and soft > hard:
            raise fail(f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
        parsed[name] = (soft, hard)
    return [{"type": "RLIMIT_" + name.upper(), "hard": hard % 2**64, "soft": soft % 2**64}
            for name, (soft, hard) in parsed.items()]


def _security_options(options: RunOptions) -> tuple[bool, str | None]:
    """The CLI's parseSecurityOpts and dockerd's parseSecurityOpt: (no-new-privileges, seccomp profile path,
    "unconfined" or None)."""
    no_new_privileges, seccomp = False, None
    for opt in options.security_opt:
        if opt == "no-new-privileges":
            no_new_privileges = True
            continue
        if opt == "disable":
            continue
        if "=" in opt:
            key, _, value = opt.partition("=")
        elif ":" in opt:
            key, _, value = opt.partition(":")
        else:
            raise InvalidArgument(f'Invalid --security-opt: "{opt}"')
        if key == "seccomp":
            seccomp = value
        elif key == "no-new-privileges":
            truth = {"1": True, "t": True, "T": True, "true": True, "TRUE": True, "True": True,
                     "0": False, "f": False, "F": False, "false": False, "FALSE": False, "False": False}
            if value not in truth:
                raise InvalidArgument(f'invalid --security-opt 2: "{opt}"')
            no_new_privileges = truth[value]
        elif (key, value) in (("apparmor", "unconfined"), ("label", "disable")):
            continue  # what a host without AppArmor/SELinux (and sampan) does anyway
        elif key in ("apparmor", "label"):
            raise Unsupported(f"--security-opt {opt}: {key} is not supported by sampan yet")
        else:
            raise InvalidArgument(f'invalid --security-opt 2: "{opt}"')
    return no_new_privileges, seccomp


# --- seccomp ------------------------------------------------------------------------------------------------


def _kernel_at_least(host: HostInfo, version: Any) -> bool:
    match = re.fullmatch(r"(\d+)\.(\d+)", str(version))
    if match is None:
        raise InvalidArgument(f"Decoding seccomp profile failed: invalid kernel version: {version}")
    return host.kernel >= (int(match.group(1)), int(match.group(2)))


def _read_seccomp_file(path: str) -> bytes:
    """A ``--security-opt seccomp=<file>`` profile, read as the docker CLI reads it."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        reason = (e.strerror or str(e)).lower()
        raise InvalidArgument(f"opening seccomp profile ({path}) failed: open {path}: {reason}") from None


@cache
def _default_seccomp_data() -> bytes:
    """Docker 20.10's default profile (package data, a file beside this module: importlib.resources costs every
    run 1 ms to import), read once and only when a spec needs it."""
    with open(os.path.join(os.path.dirname(__file__), DEFAULT_SECCOMP_PROFILE), "rb") as f:
        return f.read()


def _seccomp_profile(data: bytes, source: str, bounding: list[str], host: HostInfo) -> dict[str, Any] | None:
    """Docker's seccomp.LoadProfile: a Docker profile (archMap, names, includes/excludes by arch, capability
    and kernel version) turned into the OCI ``linux.seccomp`` for this host and capability set. ``data`` is
    the profile's JSON (a file's or the built-in default's, parsed afresh so no result shares state),
    ``source`` names it in errors."""
    try:
        profile = json.loads(data)
    except ValueError as e:
        raise InvalidArgument(f"compacting json for seccomp profile ({source}) failed: {e}") from None
    if not isinstance(profile, dict) or not isinstance(profile.get("syscalls") or [], list):
        raise InvalidArgument("Decoding seccomp profile failed: the profile must be a JSON object with a "
                              "syscalls array")
    if not profile.get("defaultAction") and not profile.get("syscalls"):
        return None
    if profile.get("architectures") and profile.get("archMap"):
        raise InvalidArgument("both 'architectures' and 'archMap' are specified in the seccomp profile, use "
                              "either 'architectures' or 'archMap'")
    goarch = _GOARCH.get(os.uname().machine, os.uname().machine)
    architectures = list(profile.get("architectures") or [])
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == _SECCOMP_ARCH.get(goarch):
            architectures += [entry["architecture"], *(entry.get("subArchitectures") or [])]
    out: dict[str, Any] = {"defaultAction": profile["defaultAction"]}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    if architectures:
        out["architectures"] = architectures
    for key in ("flags", "listenerPath", "listenerMetadata"):
        if profile.get(key):
            out[key] = profile[key]
    syscalls = []
    for call in profile.get("syscalls") or []:
        names = list(call.get("names") or [])
        if call.get("name"):
            if names:
                raise InvalidArgument("use either 'name' or 'names'")
            names = [call["name"]]
        includes, excludes = call.get("includes") or {}, call.get("excludes") or {}
        if goarch in (excludes.get("arches") or []):
            continue
        if any(cap in bounding for cap in excludes.get("caps") or []):
            continue
        if excludes.get("minKernel") and _kernel_at_least(host, excludes["minKernel"]):
            continue
        if includes.get("arches") and goarch not in includes["arches"]:
            continue
        if not all(cap in bounding for cap in includes.get("caps") or []):
            continue
        if includes.get("minKernel") and not _kernel_at_least(host, includes["minKernel"]):
            continue
        rule: dict[str, Any] = {"names": names, "action": call.get("action", "")}
        if call.get("errnoRet") is not None:
            rule["errnoRet"] = call["errnoRet"]
        if call.get("args"):
            rule["args"] = [{k: v for k, v in arg.items() if k in ("index", "value", "valueTwo", "op")
                             and not (k == "valueTwo" and not v)} for arg in call["args"]]
        syscalls.append(rule)
    if syscalls:
        out["syscalls"] = syscalls
    return out


# --- resources ----------------------------------------------------------------------------------------------


def _parse_cpu_list(value: str, maximum: int) -> set[int]:
    """docker's parsers.ParseUintListMaximum ("0-2,5")."""
    if value == "":
        return set()
    out: set[int] = set()
    for part in value.split(","):
        low_text, dash, high_text = part.partition("-")
        low, high = _go_atoi(low_text), _go_atoi(high_text) if dash else _go_atoi(low_text)
        if low is None or high is None or high < low:
            raise InvalidArgument(f"invalid format: {value}")
        if maximum and high > maximum:
            raise InvalidArgument(f"value of out range, maximum is {maximum}")
        out.update(range(low, high + 1))
    return out


def _check_cpuset(cpus: str, host: HostInfo) -> None:
    available = _parse_cpu_list(host.cpuset_cpus, 0)
    try:
        wanted = _parse_cpu_list(cpus, max([8192, *available]))
    except InvalidArgument as e:
        raise InvalidArgument(f"Invalid value {cpus} for cpuset cpus: {e}") from None
    if not wanted <= available:
        raise InvalidArgument(f"Requested CPUs are not available - requested {cpus}, available: "
                              f"{host.cpuset_cpus}")


def _resources(options: RunOptions, host: HostInfo) -> dict[str, Any]:
    """dockerd's adaptContainerSettings, verifyPlatformContainerResources and WithResources."""
    memory = _size(options.memory, "-m, --memory")
    swap = _size(options.memory_swap, "--memory-swap", allow_unlimited=True)
    reservation = _size(options.memory_reservation, "--memory-reservation")
    if memory > 0 and swap == 0:
        swap = memory * 2  # dockerd's default: as much swap as memory
    if memory != 0 and memory < MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if memory > 0 and swap != -1 and not host.swap_limit:
        swap = -1
    if memory > 0 and 0 < swap < memory:
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
    if memory == 0 and swap > 0:
        raise InvalidArgument("You should always set the Memory limit when using Memoryswap limit, see usage")
    if reservation > 0 and reservation < MIN_MEMORY:
        raise InvalidArgument("Minimum memory reservation allowed is 6MB")
    if memory > 0 and reservation > 0 and memory < reservation:
        raise InvalidArgument("Minimum memory limit can not be less than memory reservation limit, see usage")
    nano = nano_cpus(options.cpus)
    if nano < 0 or nano > host.ncpu * 10**9:
        raise InvalidArgument(f"Range of CPUs is from 0.01 to {host.ncpu}.00, as there are only {host.ncpu} "
                              "CPUs available")
    _check_cpuset(options.cpuset_cpus, host)
    shares = options.cpu_shares or 0
    if shares < 0:
        raise InvalidArgument("shares: invalid argument")

    mem: dict[str, Any] = {}
    if memory > 0:
        mem["limit"] = memory
    if reservation > 0:
        mem["reservation"] = reservation
    if swap > 0:
        mem["swap"] = swap
    if host.oom_kill_disable:
        mem["disableOOMKiller"] = options.oom_kill_disable
    cpu: dict[str, Any] = {"shares": shares}
    if nano > 0:
        cpu["quota"] = nano * CPU_PERIOD // 10**9
        cpu["period"] = CPU_PERIOD
    if options.cpuset_cpus:
        cpu["cpus"] = options.cpuset_cpus
    resources: dict[str, Any] = {"memory": mem, "cpu": cpu}
    if options.pids_limit is not None and options.pids_limit > 0:
        resources["pids"] = {"limit": options.pids_limit}
    resources["blockIO"] = {"weight": 0}
    return resources


# --- devices ------------------------------------------------------------------------------------------------


_DEFAULT_DEVICE_RULES: list[dict[str, Any]] = [
    {"allow": False, "access": "rwm"},
    *({"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"}
      for major, minor in ((1, 5), (1, 3), (1, 9), (1, 8), (5, 0), (5, 1))),
    {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"},  # fuse, unless --device'd
]


def _device(path: str, permissions: str) -> dict[str, Any] | None:
    """runc's devices.DeviceFromPath: the node at ``path`` (not followed), or None when it is not a device."""
    st = os.lstat(path)
    kinds = {stat.S_IFCHR: "c", stat.S_IFBLK: "b", stat.S_IFIFO: "p"}
    kind = kinds.get(stat.S_IFMT(st.st_mode))
    if kind is None:
        return None
    return {"path": path, "type": kind, "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
            "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid, "access": permissions}


def host_devices(root: str = "/dev") -> list[dict[str, Any]]:
    """runc's devices.HostDevices: every device node under /dev (in name order), for --privileged."""
    out: list[dict[str, Any]] = []
    try:
        entries = sorted(os.scandir(root), key=lambda e: os.fsencode(e.name))
    except OSError as e:
        raise InvalidArgument(f"reading host devices: {root}: {e.strerror}") from None
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            if entry.name not in _SKIPPED_DEV_DIRS:
                out += host_devices(entry.path)
            continue
        if entry.name == "console":
            continue
        try:
            device = _device(entry.path, "rwm")
        except FileNotFoundError:
            continue
        if device is not None and device["type"] != "p":
            out.append(device)
    return out


def _valid_device_mode(mode: str) -> bool:
    return mode != "" and set(mode) <= set("rwm") and len(set(mode)) == len(mode)


def _parse_device(text: str) -> tuple[str, str, str]:
    """The docker CLI's validateLinuxPath and parseLinuxDevice: (host path, container path, permissions)."""
    def fail(message: str) -> InvalidArgument:
        return InvalidArgument(f"invalid --device: {message}")

    if text.count(":") > 2 or text.split(":")[0] == "":
        raise fail(f"bad format for path: {text}")
    parts = text.split(":")
    if len(parts) == 1:
        container_path, value = parts[0], _go_clean(parts[0])
    elif len(parts) == 2:
        if _valid_device_mode(parts[1]):
            container_path, value = parts[0], f"{_go_clean(parts[0])}:{parts[1]}"
        else:
            container_path, value = parts[1], f"{parts[0]}:{_go_clean(parts[1])}"
    else:
        container_path = parts[1]
        if not _valid_device_mode(parts[2]):
            raise fail(f"bad mode specified: {parts[2]}")
        value = text
    if not container_path.startswith("/"):
        raise fail(f"{container_path} is not an absolute path")
    src, dst, permissions = value, "", "rwm"
    fields = value.split(":")
    if len(fields) == 3:
        src, dst, permissions = fields
    elif len(fields) == 2:
        src = fields[0]
        if _valid_device_mode(fields[1]):
            permissions = fields[1]
        else:
            dst = fields[1]
    return src, dst or src, permissions


def _walk(top: str) -> Iterator[str]:
    """Go's filepath.Walk order below ``top``: entries in name order, a directory's content right after it;
    symbolic links are not followed."""
    try:
        entries = sorted(os.scandir(top), key=lambda e: os.fsencode(e.name))
    except OSError:
        return
    for entry in entries:
        yield entry.path
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(entry.path)


def _devices_from_path(host_path: str, container_path: str, permissions: str) -> list[dict[str, Any]]:
    """dockerd's oci.DevicesFromPath: one device node, or every device under a directory."""
    resolved = host_path
    if os.path.islink(host_path):
        resolved = os.path.realpath(host_path)
    try:
        device = _device(resolved, permissions)
        reason = "not a device node"
    except OSError as e:
        device, reason = None, (e.strerror or str(e)).lower()
    if device is not None:
        return [{**device, "path": container_path}]
    found: list[dict[str, Any]] = []
    if reason == "not a device node" and os.path.isdir(resolved):
        for path in _walk(resolved):
            try:
                child = _device(path, permissions)
            except OSError:
                continue
            if child is not None:
                found.append({**child, "path": path.replace(resolved, container_path, 1)})
    if found:
        return found
    raise InvalidArgument(f'error gathering device information while adding custom device "{host_path}": '
                          f"{reason}")


def _devices(options: RunOptions, host: HostInfo) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(linux.devices, linux.resources.devices), as dockerd's WithDevices builds them."""
    parsed = [_parse_device(text) for text in options.devices]
    nodes: list[dict[str, Any]] = []
    if options.privileged:
        nodes = host_devices(host.dev_root)
        for src, dst, _ in parsed:
            if src != dst:
                nodes += _devices_from_path(src, dst, "rwm")
        rules = [{"allow": True, "access": "rwm"}]
    else:
        rules = [dict(rule) for rule in _DEFAULT_DEVICE_RULES]
        for src, dst, permissions in parsed:
            for device in _devices_from_path(src, dst, permissions):
                nodes.append(device)
                rules.append({"allow": True, "type": device["type"], "major": device["major"],
                              "minor": device["minor"], "access": device["access"]})
    return [{k: v for k, v in node.items() if k != "access"} for node in nodes], rules


# --- mounts -------------------------------------------------------------------------------------------------


def _default_mounts(shm_size: int) -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["ro", "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm_size}"]},
    ]


def merge_tmpfs_options(options: list[str]) -> list[str]:
    """moby/sys/mount's MergeTmpfsOptions: later options win, one per flag (one propagation) and data key."""
    flags_seen: set[int] = set()
    data_seen: set[str] = set()
    out: list[str] = []
    for option in reversed(options):
        if option == "defaults":
            continue
        if option in _MOUNT_FLAGS:
            key = _MOUNT_FLAGS[option]
            if key not in flags_seen:
                out.insert(0, option)
                flags_seen.add(key)
            continue
        parts = option.split("=", 1)
        if len(parts) != 2 or parts[0] not in _TMPFS_DATA:
            raise InvalidArgument(f"invalid tmpfs option {_go_quote_list(parts)}")
        if parts[0] not in data_seen:
            out.insert(0, option)
            data_seen.add(parts[0])
    return out


def _check_destination(destination: str) -> None:
    if not destination.startswith("/"):
        raise InvalidArgument(f"invalid mount path: '{destination}' mount path must be absolute")
    if _go_clean(destination) == "/":
        raise InvalidArgument("invalid specification: destination can't be '/'")


def _user_mounts(options: RunOptions, hosts_files: dict[str, str]) -> list[dict[str, Any]]:
    """The container's own mounts in dockerd's order (volumes and binds, the hosts files, the host's /dev/shm,
    tmpfs), stably sorted by depth so a mount never hides one inside it."""
    mounts: list[dict[str, Any]] = []
    tmpfs: list[tuple[str, str]] = [(dest, data) for dest, data in options.tmpfs.items()]
    for source, destination, opts in options.mounts:
        _check_destination(destination)
        if source == "tmpfs":
            tmpfs.append((destination, ",".join(opts)))
            continue
        binding = ["bind" if "bind" in opts else "rbind"]
        if "ro" in opts or "readonly" in opts:
            binding.append("ro")
        binding += [o for o in opts if o in _PROPAGATIONS][-1:]
        mounts.append({"destination": destination, "type": "bind", "source": source, "options": binding})
    taken = {m["destination"] for m in mounts} | {dest for dest, _ in tmpfs}
    order = ["/etc/resolv.conf", "/etc/hostname", "/etc/hosts"]
    for destination in sorted(hosts_files, key=lambda d: order.index(d) if d in order else len(order)):
        if destination not in taken:
            mounts.append({"destination": destination, "type": "bind", "source": hosts_files[destination],
                           "options": ["rbind"] + (["ro"] if options.read_only else []) + ["rprivate"]})
    if options.ipc_mode == "host" and "/dev/shm" not in taken:
        mounts.append({"destination": "/dev/shm", "type": "bind", "source": "/dev/shm",
                       "options": ["rbind", "rprivate"]})
    for destination, data in tmpfs:
        _check_destination(destination)
        given = data.split(",") if data else []
        merged = merge_tmpfs_options(["noexec", "nosuid", "nodev", "rprivate", *given])
        mounts.append({"destination": destination, "type": "tmpfs", "source": "tmpfs", "options": merged})
    return sorted(mounts, key=lambda m: _go_clean(m["destination"]).count("/"))


def _mounts(options: RunOptions, hosts_files: dict[str, str], init_path: str | None,
            shm_size: int) -> list[dict[str, Any]]:
    """dockerd's WithMounts: the defaults a user mount does not replace, then the user mounts."""
    defaults = _default_mounts(shm_size)
    if init_path is not None:
        defaults.append({"destination": INIT_PATH_IN_CONTAINER, "type": "bind", "source": init_path,
                         "options": ["bind", "ro"]})
    user = _user_mounts(options, hosts_files)
    user_destinations = {m["destination"] for m in user}
    mounts = []
    for mount in defaults:
        destination = mount["destination"]
        if destination in user_destinations:
            continue
        if "/dev" in user_destinations and destination.startswith("/dev/"):
            continue
        if destination == "/dev/shm" and options.ipc_mode == "none":
            continue
        mounts.append(mount)
    mounts += user
    if options.read_only:
        for mount in mounts:
            if mount["destination"] in ("/proc", "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev"):
                continue
            if mount["destination"] not in user_destinations and "ro" not in mount["options"]:
                mount["options"].append("ro")
    if options.privileged:
        for mount in mounts:
            if mount["destination"] == "/sys" or mount["type"] == "cgroup":
                mount["options"] = [o for o in mount["options"] if o != "ro"]
    return mounts


# --- namespaces ---------------------------------------------------------------------------------------------


def _joined(mode: str, ns_type: str, what: str) -> str | None:
    """The namespace path of a "container:<path>" mode (None for other modes)."""
    if not mode.startswith("container:"):
        return None
    path = mode.removeprefix("container:")
    if not path.startswith("/"):
        raise InvalidArgument(f"{what}: expected container:/proc/<pid>/ns/{_NAMESPACE_FILES[ns_type]}, "
                              f"not {mode!r}")
    return path


def _namespaces(options: RunOptions, host: HostInfo) -> list[dict[str, str]]:
    """mount, network, uts, pid, ipc in Docker's order; host modes leave theirs out, container: joins.

    The cgroup namespace comes last, as Docker adds it: private by default on cgroup v2 (so the container's
    /sys/fs/cgroup is its own cgroup), the host's on v1.
    """
    modes = {"network": options.network_mode, "uts": options.uts_mode, "pid": options.pid_mode,
             "ipc": options.ipc_mode}
    valid = {"network": ("", "private", "bridge", "default", "none", "host"), "uts": ("", "host"),
             "pid": ("", "host"), "ipc": ("", "private", "shareable", "none", "host")}
    errors = {"network": "invalid network mode: {}", "uts": "--uts: invalid UTS mode",
              "pid": "--pid: invalid PID mode", "ipc": "Invalid IPC mode: {}"}
    namespaces = [{"type": "mount"}]
    for ns_type in ("network", "uts", "pid", "ipc"):
        mode = modes[ns_type]
        path = _joined(mode, ns_type, errors[ns_type].format(mode))
        if path is None and mode not in valid[ns_type]:
            raise InvalidArgument(errors[ns_type].format(mode))
        if mode == "host":
            continue
        namespaces.append({"type": ns_type, "path": path} if path else {"type": ns_type})
    if cgroupns_mode(options.cgroupns_mode, host.cgroup_version) == "private":
        namespaces.append({"type": "cgroup"})
    return namespaces


def cgroupns_mode(mode: str, cgroup_version: int) -> str:
    """``--cgroupns`` resolved as dockerd does at create: "" becomes private on cgroup v2, host on v1."""
    if mode not in ("", "private", "host"):
        raise InvalidArgument(f"invalid cgroup namespace mode: {mode}")
    return mode or ("private" if cgroup_version == 2 else "host")


def _sysctls(options: RunOptions, host: HostInfo, namespaces: list[dict[str, str]]) -> dict[str, str]:
    """The CLI's allowlist, runc's host-namespace rule, Docker's defaults and --domainname."""
    for name, value in options.sysctls.items():
        if not (name in _IPC_SYSCTLS or name.startswith(("net.", "fs.mqueue."))):
            raise _flag_error(f"{name}={value}", "--sysctl", f"sysctl '{name}={value}' is not allowed")
    own = {ns["type"] for ns in namespaces}
    for name in options.sysctls:
        if name.startswith("net.") and "network" not in own:
            raise InvalidArgument(f'sysctl "{name}" not allowed in host network namespace')
        if not name.startswith("net.") and "ipc" not in own:
            raise InvalidArgument(f'sysctl "{name}" is not allowed in the hosts ipc namespace')
    sysctls: dict[str, str] = {}
    if options.domainname:
        sysctls["kernel.domainname"] = options.domainname
    if options.network_mode in ("", "private", "bridge", "default", "none"):
        sysctls.update({name: DEFAULT_SYSCTLS[name] for name in host.default_sysctls})
    sysctls.update(options.sysctls)
    return dict(sorted(sysctls.items()))


# --- the spec -----------------------------------------------------------------------------------------------


def _user(image: dict[str, Any], options: RunOptions, passwd_lookup: UserLookup | None,
          group_lookup: GroupLookup | None) -> dict[str, Any]:
    """dockerd's getUser: the user, its primary group first in additionalGids, its groups, --group-add's."""
    user = options.user or image.get("User") or ""
    if passwd_lookup is not None:
        uid, gid, supplementary = passwd_lookup(user)
    else:
        uid, gid, supplementary = resolve_user(user, None, None)
    extra: list[int] = []
    if options.group_add:
        extra = group_lookup(list(options.group_add)) if group_lookup is not None \
            else resolve_groups(list(options.group_add), None)
    return {"uid": uid, "gid": gid, "additionalGids": [gid, *supplementary, *extra]}


def _check_options(options: RunOptions) -> None:
    """dockerd's verifyContainerSettings and runconfig checks that concern no single spec field."""
    if options.uts_mode == "host" and options.hostname:
        raise InvalidArgument("conflicting options: hostname and the UTS mode")
    if not -1000 <= options.oom_score_adj <= 1000:
        raise InvalidArgument(f"Invalid value {options.oom_score_adj}, range for oom score adj is "
                              "[-1000, 1000]")
    if options.stop_signal:
        parse_signal(options.stop_signal)
    for key, value in {**options.labels, **options.annotations}.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidArgument(f"labels and annotations must be strings: {key!r}={value!r}")


def merged_labels(image_config: dict[str, Any], options: RunOptions) -> dict[str, str]:
    """The container's labels as Docker records them: the image's, then the user's over them."""
    return {**(image_config.get("Labels") or {}), **options.labels}


def build_spec(image_config: dict[str, Any], options: RunOptions, *, rootfs: str, container_id: str,
               hosts_files: dict[str, str] | None = None, passwd_lookup: UserLookup | None = None,
               group_lookup: GroupLookup | None = None, init_path: str | None = None,
               host: HostInfo | None = None, bundle: str | None = None) -> dict[str, Any]:
    """The OCI runtime spec dockerd 20.10 writes for ``docker run OPTIONS IMAGE``, as a JSON-ready dict.

    ``image_config`` is the image's ``config`` (Env, Cmd, Entrypoint, WorkingDir, User, ...); ``rootfs``
    becomes ``root.path``; ``hosts_files`` maps /etc/hosts, /etc/hostname and /etc/resolv.conf to the host
    files to bind. User names are resolved with ``passwd_lookup`` (``lambda u: lookup_user(rootfs, u)``) and
    --group-add names with ``group_lookup`` (``lambda g: lookup_groups(rootfs, g)``); without them only
    numeric ids work, as for an image without /etc/passwd. ``init_path`` is the host's init binary for
    ``options.init``. ``host`` defaults to ``HostInfo.detect()``. With ``bundle`` the result is also checked
    with ``sampan.runtime.spec.validate`` as sampan-runc will check it in that bundle.

    Raises InvalidArgument with Docker's message for a value Docker refuses (the lookups may also raise
    NotFound for a missing rootfs), and Unsupported for an AppArmor profile or SELinux label.
    """
    host = host or HostInfo.detect()
    _check_options(options)
    namespaces = _namespaces(options, host)
    own = {ns["type"]: ns for ns in namespaces}
    if options.network_mode == "host" and not options.hostname:
        hostname = host.hostname
    else:
        hostname = options.hostname or container_id[:12]

    args = _args(image_config, options)
    init = None
    if options.init and options.pid_mode == "":  # only as the init of a pid namespace of its own
        if not init_path:
            raise InvalidArgument('--init: exec: "docker-init": executable file not found in $PATH')
        init = init_path
        args = [INIT_PATH_IN_CONTAINER, "--", *args]

    user = _user(image_config, options, passwd_lookup, group_lookup)
    capabilities = _capabilities(options, host)
    process: dict[str, Any] = {}
    if options.tty:
        process["terminal"] = True
    process.update({
        "user": user,
        "args": args,
        "env": _env(image_config, options, hostname),
        "cwd": _cwd(image_config, options),
        "capabilities": ({"bounding": capabilities, "effective": list(capabilities),
                          "permitted": list(capabilities)} if user["uid"] == 0
                         else {"bounding": capabilities}),
    })
    rlimits = _rlimits(options.ulimits)
    if rlimits:
        process["rlimits"] = rlimits
    no_new_privileges, seccomp_path = _security_options(options)
    if no_new_privileges:
        process["noNewPrivileges"] = True
    process["oomScoreAdj"] = options.oom_score_adj

    shm_size = _size(options.shm_size, "--shm-size")
    if shm_size < 0:
        raise InvalidArgument("SHM size can not be less than 0")
    resources = _resources(options, host)
    devices, device_rules = _devices(options, host)
    resources = {"devices": device_rules, **resources}

    spec: dict[str, Any] = {"ociVersion": OCI_VERSION, "process": process,
                            "root": {"path": rootfs, **({"readonly": True} if options.read_only else {})}}
    if "uts" in own and "path" not in own["uts"]:
        spec["hostname"] = hostname
    spec["mounts"] = _mounts(options, dict(hosts_files or {}), init, shm_size or DEFAULT_SHM_SIZE)
    linux: dict[str, Any] = {}
    sysctls = _sysctls(options, host, namespaces)
    if sysctls:
        linux["sysctl"] = sysctls
    linux["resources"] = resources
    linux["cgroupsPath"] = _go_clean((options.cgroup_parent or CGROUP_PARENT) + "/" + container_id)
    linux["namespaces"] = namespaces
    if devices:
        linux["devices"] = devices
    if seccomp_path != "unconfined" and not options.privileged:  # dockerd's WithSeccomp
        seccomp = None
        if host.seccomp:
            data = _default_seccomp_data() if seccomp_path is None else _read_seccomp_file(seccomp_path)
            seccomp = _seccomp_profile(data, seccomp_path or "default", capabilities, host)
        elif seccomp_path is not None:  # dockerd runs unconfined then, but not with a profile it was given
            raise InvalidArgument("seccomp is not enabled in your kernel, cannot run a custom seccomp "
                                  "profile")
        if seccomp is not None:
            linux["seccomp"] = seccomp
    if not options.privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
    spec["linux"] = linux
    if options.annotations:
        spec["annotations"] = dict(options.annotations)
    if bundle is not None:
        from sampan.runtime.spec import validate

        validate(spec, bundle)
    return spec
