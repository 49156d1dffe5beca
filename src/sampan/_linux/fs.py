"""Filesystem facts the ``os`` module does not expose: the filesystem type of an fd (``fstatfs``)."""

from __future__ import annotations

import ctypes

from sampan._linux.libc import check, libc


def fstatfs_type(fd: int) -> int:
    """``f_type`` of the filesystem holding ``fd`` (e.g. PROC_SUPER_MAGIC 0x9fa0)."""
    buf = ctypes.create_string_buffer(256)  # struct statfs; f_type is its first field
    fn = libc().fstatfs
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p]
    check(fn(fd, buf))
    return ctypes.c_long.from_buffer(buf).value
