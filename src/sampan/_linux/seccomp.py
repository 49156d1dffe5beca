"""ctypes binding to libseccomp (``libseccomp.so.2``), plus the raw ``seccomp(2)`` call that installs a program.

libseccomp turns rules into a BPF program for every architecture a filter covers; sampan's runtime builds the
filter with it, exports the program and installs it itself (``process.seccomp_set_mode_filter``) so that it can prepend runc's
``-ENOSYS`` stub first. The library is opened on first use, so importing this module costs only ``ctypes``.

Every function takes and returns plain Python values; a filter context is an opaque ``int``. libseccomp reports
failure as a negative errno, which becomes ``OSError`` with that errno, like the ``os`` module.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections import namedtuple
from functools import cache

from sampan._linux.process import SECCOMP_FILTER_FLAG_NEW_LISTENER as FILTER_FLAG_NEW_LISTENER  # noqa: F401

TYPE_CHECKING = False  # typing/collections.abc are not imported at run time: start-up cost
if TYPE_CHECKING:
    from collections.abc import Sequence

# Filter actions (seccomp.h). ERRNO and TRACE carry 16 bits of data: use act_errno / act_trace.
ACT_KILL_PROCESS = 0x80000000
ACT_KILL_THREAD = 0x00000000
ACT_TRAP = 0x00030000
ACT_NOTIFY = 0x7FC00000
ACT_LOG = 0x7FFC0000
ACT_ALLOW = 0x7FFF0000
_ACT_ERRNO = 0x00050000
_ACT_TRACE = 0x7FF00000

# enum scmp_compare.
CMP_NE = 1
CMP_LT = 2
CMP_LE = 3
CMP_EQ = 4
CMP_GE = 5
CMP_GT = 6
CMP_MASKED_EQ = 7

# enum scmp_filter_attr.
ATTR_ACT_DEFAULT = 1
ATTR_ACT_BADARCH = 2
ATTR_CTL_NNP = 3
ATTR_CTL_TSYNC = 4
ATTR_API_TSKIP = 5
ATTR_CTL_LOG = 6
ATTR_CTL_SSB = 7
ATTR_CTL_OPTIMIZE = 8
ATTR_API_SYSRAWRC = 9

# seccomp(2) (linux/seccomp.h).
FILTER_FLAG_LOG = 1 << 1
FILTER_FLAG_SPEC_ALLOW = 1 << 2
USER_NOTIF_FLAG_CONTINUE = 1 << 0

_NR_SCMP_ERROR = -1
_ARCH_BAD = 0
_LIBRARY = "libseccomp.so.2"


def act_errno(code: int) -> int:
    """SCMP_ACT_ERRNO(code): the syscall fails with ``code`` without running."""
    return _ACT_ERRNO | (code & 0xFFFF)


def act_trace(message: int) -> int:
    """SCMP_ACT_TRACE(message): a ptrace tracer is told, with ``message``; without a tracer, ENOSYS."""
    return _ACT_TRACE | (message & 0xFFFF)


class Notification(namedtuple("Notification", "id pid flags nr arch instruction_pointer args")):
    """One ``struct seccomp_notif``: a syscall that a NOTIFY rule stopped, waiting for an answer."""
    # fields: id, pid, flags, nr, arch, instruction_pointer, args
    __slots__ = ()


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


class _Notif(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint64), ("pid", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("nr", ctypes.c_int), ("arch", ctypes.c_uint32), ("instruction_pointer", ctypes.c_uint64),
                ("args", ctypes.c_uint64 * 6)]


class _NotifResp(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint64), ("val", ctypes.c_int64), ("error", ctypes.c_int32),
                ("flags", ctypes.c_uint32)]


_SIGNATURES: dict[str, tuple[object, list[object]]] = {
    "seccomp_version": (ctypes.POINTER(_Version), []),
    "seccomp_api_get": (ctypes.c_uint, []),
    "seccomp_init": (ctypes.c_void_p, [ctypes.c_uint32]),
    "seccomp_release": (None, [ctypes.c_void_p]),
    "seccomp_arch_add": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_uint32]),
    "seccomp_arch_exist": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_uint32]),
    "seccomp_arch_native": (ctypes.c_uint32, []),
    "seccomp_arch_resolve_name": (ctypes.c_uint32, [ctypes.c_char_p]),
    "seccomp_syscall_resolve_name": (ctypes.c_int, [ctypes.c_char_p]),
    "seccomp_syscall_resolve_name_arch": (ctypes.c_int, [ctypes.c_uint32, ctypes.c_char_p]),
    "seccomp_rule_add_array": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                              ctypes.POINTER(_ArgCmp)]),
    "seccomp_attr_set": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]),
    "seccomp_attr_get": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_uint32)]),
    "seccomp_load": (ctypes.c_int, [ctypes.c_void_p]),
    "seccomp_export_bpf": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_int]),
    "seccomp_notify_fd": (ctypes.c_int, [ctypes.c_void_p]),
    "seccomp_notify_alloc": (ctypes.c_int, [ctypes.POINTER(ctypes.POINTER(_Notif)),
                                            ctypes.POINTER(ctypes.POINTER(_NotifResp))]),
    "seccomp_notify_free": (None, [ctypes.POINTER(_Notif), ctypes.POINTER(_NotifResp)]),
    "seccomp_notify_receive": (ctypes.c_int, [ctypes.c_int, ctypes.POINTER(_Notif)]),
    "seccomp_notify_respond": (ctypes.c_int, [ctypes.c_int, ctypes.POINTER(_NotifResp)]),
    "seccomp_notify_id_valid": (ctypes.c_int, [ctypes.c_int, ctypes.c_uint64]),
}


@cache
def _lib() -> ctypes.CDLL:
    """Open libseccomp once, with every signature declared so ctypes never guesses an int width."""
    try:
        lib = ctypes.CDLL(_LIBRARY, use_errno=True)
    except OSError as exc:
        raise OSError(errno.ENOENT, f"cannot load {_LIBRARY}: {exc}") from None
    for name, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


def _check(rc: int, what: str) -> int:
    if rc < 0:
        raise OSError(-rc, f"{what}: {os.strerror(-rc)}")
    return rc


def available() -> bool:
    """Whether libseccomp can be loaded on this host."""
    try:
        _lib()
    except OSError:
        return False
    return True


def version() -> tuple[int, int, int]:
    """The library's (major, minor, micro) version."""
    v = _lib().seccomp_version().contents
    return (v.major, v.minor, v.micro)


def api_level() -> int:
    """libseccomp's API level for this kernel: 3 adds LOG, 4 SPEC_ALLOW, 6 user notification."""
    return int(_lib().seccomp_api_get())


def init(default_action: int) -> int:
    """A new filter context whose unmatched syscalls get ``default_action``."""
    ctx = _lib().seccomp_init(default_action)
    if not ctx:
        raise OSError(errno.EINVAL, f"seccomp_init: invalid default action {default_action:#x}")
    return int(ctx)


def release(ctx: int) -> None:
    _lib().seccomp_release(ctx)


def arch_add(ctx: int, arch: int) -> None:
    """Cover ``arch`` too; EEXIST when the filter already has it (the native one always is)."""
    _check(_lib().seccomp_arch_add(ctx, arch), "seccomp_arch_add")


def arch_exist(ctx: int, arch: int) -> bool:
    rc = _lib().seccomp_arch_exist(ctx, arch)
    if rc == -errno.EEXIST:
        return False
    _check(rc, "seccomp_arch_exist")
    return True


def arch_native() -> int:
    return int(_lib().seccomp_arch_native())


def arch_resolve_name(name: str) -> int | None:
    """The arch token for libseccomp's name (``"x86_64"``), or None when this libseccomp lacks it."""
    token = int(_lib().seccomp_arch_resolve_name(name.encode()))
    return None if token == _ARCH_BAD else token


def syscall_resolve_name(name: str) -> int | None:
    """The native syscall number for ``name`` or None when unknown.

    Names that exist only on other architectures resolve to negative pseudo numbers, which rules accept.
    """
    nr = int(_lib().seccomp_syscall_resolve_name(name.encode()))
    return None if nr == _NR_SCMP_ERROR else nr


def syscall_resolve_name_arch(arch: int, name: str) -> int | None:
    """The number of ``name`` on ``arch`` (x32 numbers include bit 30), or None when unknown."""
    nr = int(_lib().seccomp_syscall_resolve_name_arch(arch, name.encode()))
    return None if nr == _NR_SCMP_ERROR else nr


def rule_add_array(ctx: int, action: int, nr: int, conditions: Sequence[tuple[int, int, int, int]]) -> None:
    """Add one rule; its ``(arg index, CMP_*, datum_a, datum_b)`` conditions must all match (AND)."""
    array = (_ArgCmp * max(len(conditions), 1))(*(_ArgCmp(*c) for c in conditions))
    _check(_lib().seccomp_rule_add_array(ctx, action, nr, len(conditions), array), "seccomp_rule_add_array")


def attr_set(ctx: int, attr: int, value: int) -> None:
    _check(_lib().seccomp_attr_set(ctx, attr, value), "seccomp_attr_set")


def attr_get(ctx: int, attr: int) -> int:
    value = ctypes.c_uint32()
    _check(_lib().seccomp_attr_get(ctx, attr, ctypes.byref(value)), "seccomp_attr_get")
    return value.value


def load(ctx: int) -> None:
    """Install the filter in the calling thread through libseccomp itself (no -ENOSYS stub)."""
    _check(_lib().seccomp_load(ctx), "seccomp_load")


def export_bpf(ctx: int, fd: int) -> None:
    """Write the filter's BPF program (host-endian ``struct sock_filter`` records) to ``fd``."""
    _check(_lib().seccomp_export_bpf(ctx, fd), "seccomp_export_bpf")


def notify_fd(ctx: int) -> int:
    """The listener fd of a filter that libseccomp loaded with a NOTIFY rule."""
    return _check(_lib().seccomp_notify_fd(ctx), "seccomp_notify_fd")


def notify_receive(fd: int) -> Notification:
    """Block until a notification arrives on listener ``fd``, and return it."""
    lib = _lib()
    req, resp = ctypes.POINTER(_Notif)(), ctypes.POINTER(_NotifResp)()
    _check(lib.seccomp_notify_alloc(ctypes.byref(req), ctypes.byref(resp)), "seccomp_notify_alloc")
    try:
        while (rc := lib.seccomp_notify_receive(fd, req)) == -errno.EINTR:
            pass
        _check(rc, "seccomp_notify_receive")
        n = req.contents
        return Notification(n.id, n.pid, n.flags, n.nr, n.arch, n.instruction_pointer, tuple(n.args))
    finally:
        lib.seccomp_notify_free(req, resp)


def notify_respond(fd: int, notification_id: int, val: int = 0, error: int = 0, flags: int = 0) -> None:
    """Answer a notification: the syscall returns ``val``, or fails with ``error`` (a negative errno).

    ``flags=USER_NOTIF_FLAG_CONTINUE`` lets the kernel run the syscall as if no filter had stopped it.
    """
    lib = _lib()
    req, resp = ctypes.POINTER(_Notif)(), ctypes.POINTER(_NotifResp)()
    _check(lib.seccomp_notify_alloc(ctypes.byref(req), ctypes.byref(resp)), "seccomp_notify_alloc")
    try:
        r = resp.contents
        r.id, r.val, r.error, r.flags = notification_id, val, error, flags
        _check(lib.seccomp_notify_respond(fd, resp), "seccomp_notify_respond")
    finally:
        lib.seccomp_notify_free(req, resp)


def notify_id_valid(fd: int, notification_id: int) -> bool:
    """Whether the process behind a notification still waits (guards against pid reuse)."""
    return bool(_lib().seccomp_notify_id_valid(fd, notification_id) == 0)


# --- the supervisor's side of user notification, by raw ioctls (no libseccomp: a monitor answers with these) ----

# linux/seccomp.h: SECCOMP_IOCTL_NOTIF_RECV = _IOWR('!', 0, struct seccomp_notif) (80 bytes),
# SECCOMP_IOCTL_NOTIF_SEND = _IOWR('!', 1, struct seccomp_notif_resp) (24 bytes),
# SECCOMP_IOCTL_NOTIF_ID_VALID = _IOW('!', 2, __u64).
_IOCTL_NOTIF_RECV = 0xC0502100
_IOCTL_NOTIF_SEND = 0xC0182101
_IOCTL_NOTIF_ID_VALID = 0x40082102
_NOTIF = "=QIIiIQ6Q"  # id, pid, flags, nr, arch, instruction_pointer, args[6]
_NOTIF_RESP = "=QqiI"  # id, val, error, flags


def notif_recv(fd: int) -> Notification:
    """SECCOMP_IOCTL_NOTIF_RECV: the next notification on listener ``fd``. Blocks while none is pending; a
    caller that must not block polls ``fd`` for POLLIN first (a notification whose task died meanwhile makes
    this fail with ENOENT, it does not block)."""
    import fcntl
    import struct

    buffer = bytearray(struct.calcsize(_NOTIF))  # the kernel insists on a zeroed buffer
    while True:
        try:
            fcntl.ioctl(fd, _IOCTL_NOTIF_RECV, buffer, True)
            break
        except InterruptedError:
            continue
    id_, pid, flags, nr, arch, ip, *args = struct.unpack(_NOTIF, buffer)
    return Notification(id_, pid, flags, nr, arch, ip, tuple(args))


def notif_send(fd: int, notification_id: int, val: int = 0, error: int = 0, flags: int = 0) -> None:
    """SECCOMP_IOCTL_NOTIF_SEND: the syscall returns ``val``, fails with ``error`` (a negative errno), or, with
    ``flags=USER_NOTIF_FLAG_CONTINUE`` (and val and error 0), runs as if no filter had stopped it."""
    import fcntl
    import struct

    fcntl.ioctl(fd, _IOCTL_NOTIF_SEND, bytearray(struct.pack(_NOTIF_RESP, notification_id, val, error, flags)),
                True)


def notif_id_valid(fd: int, notification_id: int) -> bool:
    """SECCOMP_IOCTL_NOTIF_ID_VALID: whether the task behind the notification still waits for its answer (so
    its pid still names it)."""
    import fcntl
    import struct

    try:
        fcntl.ioctl(fd, _IOCTL_NOTIF_ID_VALID, bytearray(struct.pack("=Q", notification_id)), True)
    except OSError:
        return False
    return True
