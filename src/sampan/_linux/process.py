"""Process-level syscalls the ``os`` module lacks on Python 3.11: namespaces, mounts, pivot_root, prctl, capabilities.

Thin wrappers only: each raises ``OSError`` with the real errno, and takes and returns plain Python values.
"""

from __future__ import annotations

import ctypes
import errno

from sampan._linux.libc import check, libc, syscall

# prctl(2) options.
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

# ioctl requests for terminals.
TIOCSCTTY = 0x540E
TIOCGPTPEER = 0x5441
TIOCSWINSZ = 0x5414

CLOSE_RANGE_CLOEXEC = 1 << 2

# madvise(2) advice.
MADV_MERGEABLE = 12

SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3

_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def unshare(flags: int) -> None:
    syscall("unshare", ctypes.c_int(flags))


def setns(fd: int, nstype: int = 0) -> None:
    syscall("setns", ctypes.c_int(fd), ctypes.c_int(nstype))


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    fn = libc().mount
    fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    check(fn(source.encode() if source is not None else None, target.encode(),
             fstype.encode() if fstype is not None else None, flags, data.encode() if data else None))


def umount(target: str, flags: int = 0) -> None:
    fn = libc().umount2
    fn.argtypes = [ctypes.c_char_p, ctypes.c_int]
    check(fn(target.encode(), flags))


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64),
                ("userns_fd", ctypes.c_uint64)]


AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000


def mount_setattr(fd: int, attr_set: int, attr_clr: int, recursive: bool = True) -> None:
    """Change the attributes of the mount at ``fd`` (and, recursively, every mount below it)."""
    attr = _MountAttr(attr_set, attr_clr, 0, 0)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    syscall("mount_setattr", ctypes.c_int(fd), ctypes.c_char_p(b""), ctypes.c_uint(flags), ctypes.byref(attr),
            ctypes.c_size_t(ctypes.sizeof(attr)))


OPEN_TREE_CLONE = 0x1
OPEN_TREE_CLOEXEC = 0o2000000
MOUNT_ATTR_RDONLY = 0x1


def open_tree(path: str, flags: int = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC) -> int:
    """A detached copy of the mount at ``path`` (one file or directory, no submounts): an fd to mount or exec."""
    return syscall("open_tree", ctypes.c_int(-100), ctypes.c_char_p(path.encode()), ctypes.c_uint(flags))


def execveat(fd: int, argv: list[str], env: dict[str, str]) -> None:
    """Execute the file behind ``fd`` (AT_EMPTY_PATH); returns only on failure."""
    c_argv = (ctypes.c_char_p * (len(argv) + 1))(*[a.encode() for a in argv], None)
    items = [f"{k}={v}".encode() for k, v in env.items()]
    c_env = (ctypes.c_char_p * (len(items) + 1))(*items, None)
    syscall("execveat", ctypes.c_int(fd), ctypes.c_char_p(b""), c_argv, c_env, ctypes.c_int(AT_EMPTY_PATH))


def pivot_root(new_root: str, put_old: str) -> None:
    syscall("pivot_root", ctypes.c_char_p(new_root.encode()), ctypes.c_char_p(put_old.encode()))


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    fn = libc().prctl
    fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return check(fn(option, arg2, arg3, arg4, arg5))


def madvise(address: int, length: int, advice: int) -> None:
    fn = libc().madvise
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    check(fn(address, length, advice))


def sethostname(name: str) -> None:
    data = name.encode()
    syscall("sethostname", ctypes.c_char_p(data), ctypes.c_size_t(len(data)))


def setdomainname(name: str) -> None:
    data = name.encode()
    syscall("setdomainname", ctypes.c_char_p(data), ctypes.c_size_t(len(data)))


def personality(persona: int) -> None:
    syscall("personality", ctypes.c_ulong(persona))


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set this thread's capability sets (64-bit masks, as version 3 of the interface)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    syscall("capset", ctypes.byref(header), ctypes.byref(data))


def ioctl_int(fd: int, request: int, arg: int = 0) -> int:
    fn = libc().ioctl
    fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong]
    return check(fn(fd, request, arg))


def set_winsize(fd: int, rows: int, cols: int) -> None:
    packed = (ctypes.c_ushort * 4)(rows, cols, 0, 0)
    fn = libc().ioctl
    fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
    check(fn(fd, TIOCSWINSZ, ctypes.addressof(packed)))


def close_range_cloexec(first: int) -> None:
    """Mark every fd >= ``first`` close-on-exec, so no runtime fd can leak into the container (CVE-2024-21626)."""
    syscall("close_range", ctypes.c_uint(first), ctypes.c_uint(0xFFFFFFFF), ctypes.c_uint(CLOSE_RANGE_CLOEXEC))


SYSINFO_SIZE = 112  # struct sysinfo on 64-bit Linux (x86_64 and aarch64 share it)


def sysinfo() -> bytes:
    """The raw ``struct sysinfo`` of sysinfo(2), as the kernel fills it for this process."""
    buffer = ctypes.create_string_buffer(SYSINFO_SIZE)
    check(libc().sysinfo(buffer))
    return buffer.raw


def sched_getaffinity_raw(pid: int, size: int) -> bytes:
    """The raw sched_getaffinity(2) syscall: the CPU mask bytes the kernel copies for a ``size``-byte buffer
    (its return value is their count), as a task would see them."""
    buffer = ctypes.create_string_buffer(size)
    length = syscall("sched_getaffinity", ctypes.c_int(pid), ctypes.c_uint(size), buffer)
    return buffer.raw[:length]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_set_mode_filter(program: bytes, flags: int) -> int:
    """Install a BPF ``program`` in the calling thread with ``seccomp(SECCOMP_SET_MODE_FILTER, flags)``.

    Returns the syscall's result: the listener fd when ``flags`` has FILTER_FLAG_NEW_LISTENER, else 0. The
    kernel requires no_new_privs or CAP_SYS_ADMIN; the caller sets the former when the spec asks for it. It lives
    here, not beside the libseccomp bindings, because the container's init loads programs compiled by the parent
    and must not pay for importing those.
    """
    if not program or len(program) % 8:
        raise OSError(errno.EINVAL, "a BPF program is a non-empty array of 8-byte instructions")
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.addressof(buffer))
    return syscall("seccomp", ctypes.c_long(SECCOMP_SET_MODE_FILTER), ctypes.c_long(flags), ctypes.byref(fprog))
