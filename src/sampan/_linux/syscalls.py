"""Raw Linux system calls the ``os`` module lacks: ``openat2`` and ``fchmodat2``, plus the helpers built on them.

This is the only module in sampan that uses ``ctypes``. ``ctypes`` and libc are loaded on the first call, not at
import, so importing this module stays cheap. Failures raise ``OSError`` (and its errno subclasses such as
``FileNotFoundError``) exactly like the ``os`` functions do, so callers handle both the same way.
"""

from __future__ import annotations

import errno
import os
import stat

TYPE_CHECKING = False  # typing/collections.abc are not imported at run time: start-up cost
if TYPE_CHECKING:
    from typing import Any

# openat2(2) resolve flags (linux/openat2.h).
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

AT_SYMLINK_NOFOLLOW = 0x100

# Syscall numbers. openat2 and fchmodat2 were added after the tables were unified, so they are the same on
# every architecture sampan supports; the table still names them so a new port has one place to check.
_SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {"openat2": 437, "fchmodat2": 452},
    "aarch64": {"openat2": 437, "fchmodat2": 452},
}

# openat2 fails with EAGAIN when a rename or mount raced with a RESOLVE_IN_ROOT/BENEATH lookup of "..";
# the kernel asks the caller to retry. Bounded so a hostile loop of renames cannot spin us forever.
_EAGAIN_RETRIES = 64


class _Api:
    """The libc entry points and C types, built once on first use."""

    def __init__(self) -> None:
        import ctypes

        class OpenHow(ctypes.Structure):
            _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]

        libc = ctypes.CDLL(None, use_errno=True)
        self.syscall = libc.syscall
        self.syscall.restype = ctypes.c_long
        self.long = ctypes.c_long
        self.byref = ctypes.byref
        self.get_errno = ctypes.get_errno
        self.open_how = OpenHow
        self.open_how_size = ctypes.sizeof(OpenHow)
        machine = os.uname().machine
        self.numbers = _SYSCALLS.get(machine, {})

    def call(self, name: str, *args: Any) -> int:
        """Run syscall ``name``; return its result or raise OSError (ENOSYS where the number is unknown)."""
        number = self.numbers.get(name)
        if number is None:
            raise OSError(errno.ENOSYS, f"{name} is not wired for {os.uname().machine}")
        result = self.syscall(self.long(number), *args)
        if result < 0:
            err = self.get_errno()
            raise OSError(err, os.strerror(err))
        return int(result)


_api: _Api | None = None
_have_fchmodat2 = True


def _get_api() -> _Api:
    global _api
    if _api is None:
        _api = _Api()
    return _api


def openat2(dir_fd: int, path: str | bytes, flags: int, resolve: int, mode: int = 0) -> int:
    """Open ``path`` relative to ``dir_fd`` under the given ``RESOLVE_*`` restrictions; return the new fd.

    With ``RESOLVE_IN_ROOT`` the kernel treats ``dir_fd`` as the root for the whole lookup, so absolute symlinks
    and ``..`` stay inside it — the containment layer unpacking relies on.
    """
    api = _get_api()
    raw = os.fsencode(path)
    how = api.open_how(flags, mode, resolve)
    for _ in range(_EAGAIN_RETRIES):
        try:
            return api.call("openat2", api.long(dir_fd), raw, api.byref(how), api.long(api.open_how_size))
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EINTR):
                raise OSError(exc.errno, exc.strerror, path) from None
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN), path)


def fchmodat_nofollow(dir_fd: int, name: str | bytes, mode: int) -> None:
    """Change the mode of ``name`` in ``dir_fd`` without ever following a symlink.

    glibc's ``fchmodat(AT_SYMLINK_NOFOLLOW)`` is not usable (Python refuses it), so use ``fchmodat2`` (Linux
    6.6) and, on older kernels, the O_PATH + ``/proc/self/fd`` method GNU tar uses. A symlink raises
    EOPNOTSUPP either way: Linux has no symlink modes.
    """
    global _have_fchmodat2
    if _have_fchmodat2:
        api = _get_api()
        try:
            api.call("fchmodat2", api.long(dir_fd), os.fsencode(name), api.long(mode),
                     api.long(AT_SYMLINK_NOFOLLOW))
            return
        except OSError as exc:
            if exc.errno != errno.ENOSYS:
                raise OSError(exc.errno, exc.strerror, name) from None
            _have_fchmodat2 = False
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if stat.S_ISLNK(os.fstat(fd).st_mode):
            raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP), name)
        os.chmod(f"/proc/self/fd/{fd}", mode)
    finally:
        os.close(fd)


def lsetxattr_at(dir_fd: int, name: str | bytes, attribute: str, value: bytes) -> None:
    """Set an extended attribute on ``name`` in ``dir_fd`` without following it if it is a symlink.

    Used for entries that must not be opened (device nodes, fifos, symlinks). The path goes through our own
    ``/proc/self/fd`` entry for ``dir_fd``, which names that directory exactly; only the last component is
    looked up, and ``follow_symlinks=False`` stops the kernel from following it.
    """
    path = b"/proc/self/fd/%d/%s" % (dir_fd, os.fsencode(name))
    os.setxattr(path, attribute, value, follow_symlinks=False)
