"""The few bpf(2) commands a cgroup v2 device filter needs: load, attach, detach, query and open-by-id.

Each command gets its own ``ctypes`` structure laid out like its arm of the kernel's ``union bpf_attr``; the
kernel accepts a shorter attr than its own and zero-fills the rest, so only the fields used are declared. Only
this module and its siblings under ``_linux`` touch ``ctypes``; callers pass and receive plain ints and bytes.
"""

from __future__ import annotations

import ctypes
import errno
import resource

from sampan._linux.libc import syscall

# Commands (enum bpf_cmd).
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16

BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 1 << 1

# A query returns at most this many ids in one call; the kernel says how many there really are (ENOSPC).
_QUERY_BATCH = 64
_LOG_SIZE = 1 << 16


_u32, _u64 = ctypes.c_uint32, ctypes.c_uint64


class _ProgLoad(ctypes.Structure):
    _fields_ = [("prog_type", _u32), ("insn_cnt", _u32), ("insns", _u64), ("license", _u64),
                ("log_level", _u32), ("log_size", _u32), ("log_buf", _u64), ("kern_version", _u32),
                ("prog_flags", _u32),
                ("prog_name", ctypes.c_char * 16), ("prog_ifindex", _u32), ("expected_attach_type", _u32)]


class _Attach(ctypes.Structure):
    """PROG_ATTACH and PROG_DETACH share this arm."""

    _fields_ = [("target_fd", _u32), ("attach_bpf_fd", _u32), ("attach_type", _u32), ("attach_flags", _u32),
                ("replace_bpf_fd", _u32)]


class _Query(ctypes.Structure):
    _fields_ = [("target_fd", _u32), ("attach_type", _u32), ("query_flags", _u32), ("attach_flags", _u32),
                ("prog_ids", _u64), ("prog_cnt", _u32)]


class _GetFdById(ctypes.Structure):
    _fields_ = [("prog_id", _u32), ("next_id", _u32), ("open_flags", _u32)]


def _bpf(cmd: int, attr: ctypes.Structure) -> int:
    return syscall("bpf", ctypes.c_int(cmd), ctypes.byref(attr), ctypes.c_uint(ctypes.sizeof(attr)))


def prog_load(prog_type: int, insns: bytes, license: str, name: str) -> int:
    """Load a program and return its fd; a verifier rejection carries the verifier's log in the message.

    Kernels before 5.11 charge programs to RLIMIT_MEMLOCK, whose default is tiny: on EPERM the limit is lifted
    once and the load retried, as runc does.
    """
    code = (ctypes.c_char * len(insns)).from_buffer_copy(insns)
    lic = ctypes.create_string_buffer(license.encode())
    attr = _ProgLoad(prog_type=prog_type, insn_cnt=len(insns) // 8, insns=ctypes.addressof(code),
                     license=ctypes.addressof(lic), prog_name=name.encode()[:15])
    try:
        return _bpf(BPF_PROG_LOAD, attr)
    except PermissionError:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        return _bpf(BPF_PROG_LOAD, attr)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.EACCES):
            raise
        log = ctypes.create_string_buffer(_LOG_SIZE)
        attr.log_level, attr.log_size, attr.log_buf = 1, _LOG_SIZE, ctypes.addressof(log)
        try:
            return _bpf(BPF_PROG_LOAD, attr)
        except OSError as again:
            verifier = log.value.decode(errors="replace").strip()
            raise OSError(again.errno, f"{again.strerror}: {verifier}") from None


def prog_attach(target_fd: int, prog_fd: int, attach_type: int, flags: int) -> None:
    _bpf(BPF_PROG_ATTACH, _Attach(target_fd=target_fd, attach_bpf_fd=prog_fd, attach_type=attach_type,
                                  attach_flags=flags))


def prog_detach(target_fd: int, prog_fd: int, attach_type: int) -> None:
    _bpf(BPF_PROG_DETACH, _Attach(target_fd=target_fd, attach_bpf_fd=prog_fd, attach_type=attach_type))


def prog_query(target_fd: int, attach_type: int) -> list[int]:
    """The ids of the programs attached directly to ``target_fd`` (not those inherited from ancestors)."""
    capacity = _QUERY_BATCH
    while True:
        ids = (ctypes.c_uint32 * capacity)()
        attr = _Query(target_fd=target_fd, attach_type=attach_type, prog_ids=ctypes.addressof(ids),
                      prog_cnt=capacity)
        try:
            _bpf(BPF_PROG_QUERY, attr)
        except OSError as err:
            if err.errno != errno.ENOSPC:
                raise
            capacity = attr.prog_cnt
            continue
        return list(ids[:attr.prog_cnt])


def prog_get_fd_by_id(prog_id: int) -> int:
    return _bpf(BPF_PROG_GET_FD_BY_ID, _GetFdById(prog_id=prog_id))
