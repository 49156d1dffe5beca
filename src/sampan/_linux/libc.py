"""The one shared libc handle for the ``_linux`` wrappers, loaded on first use.

Every wrapper raises ``OSError`` with the real errno on failure, exactly like the ``os`` module, so callers need
no special cases. Syscall numbers live here, per architecture, so a new port has one table to fill.
"""

from __future__ import annotations

import ctypes
import errno
import os

TYPE_CHECKING = False  # typing/collections.abc are not imported at run time: start-up cost
if TYPE_CHECKING:
    from typing import Any

SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {"pivot_root": 155, "setns": 308, "unshare": 272, "capget": 125, "capset": 126,
               "bpf": 321, "openat2": 437, "fchmodat2": 452, "pidfd_open": 434, "pidfd_send_signal": 424,
               "move_mount": 429, "open_tree": 428, "mount_setattr": 442, "personality": 135,
               "seccomp": 317, "sethostname": 170, "setdomainname": 171, "close_range": 436, "execveat": 322,
               "sched_getaffinity": 204},
    "aarch64": {"pivot_root": 41, "setns": 268, "unshare": 97, "capget": 90, "capset": 91,
                "bpf": 280, "openat2": 437, "fchmodat2": 452, "pidfd_open": 434, "pidfd_send_signal": 424,
                "move_mount": 429, "open_tree": 428, "mount_setattr": 442, "personality": 92,
                "seccomp": 277, "sethostname": 161, "setdomainname": 162, "close_range": 436, "execveat": 281,
                "sched_getaffinity": 123},
}


_libc: ctypes.CDLL | None = None


def libc() -> ctypes.CDLL:
    """The process's libc, loaded once (a global rather than ``functools.cache``: the container's init imports
    this module and ``functools`` costs it a millisecond)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def check(result: int) -> int:
    """Turn a libc ``-1``/negative return into ``OSError`` with the thread's errno."""
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def syscall(name: str, *args: Any) -> int:
    """Run a raw syscall by name; ENOSYS when this architecture's number is not in the table."""
    number = SYSCALLS.get(os.uname().machine, {}).get(name)
    if number is None:
        raise OSError(errno.ENOSYS, f"{name} is not wired for {os.uname().machine}")
    fn = libc().syscall
    fn.restype = ctypes.c_long
    return check(fn(ctypes.c_long(number), *args))
