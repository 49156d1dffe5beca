"""A minimal inotify watcher for the security tests: which watched files were opened, written or had their
metadata changed while a runtime ran.

Tests may use ctypes (the "only ``_linux`` touches ctypes" rule is for ``src/``); nothing here is imported by
sampan itself.
"""

from __future__ import annotations

import ctypes
import os
import struct
from pathlib import Path
from typing import Self

IN_ACCESS = 0x001
IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_OPEN = 0x020
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
IN_ISDIR = 0x40000000

_NAMES = {IN_ACCESS: "access", IN_MODIFY: "modify", IN_ATTRIB: "attrib", IN_OPEN: "open", IN_CREATE: "create",
          IN_DELETE: "delete"}


class Watcher:
    """Watches paths (files or directories, not recursively); ``events()`` drains what happened so far."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self._paths: dict[int, str] = {}

    def watch(self, path: str | Path, mask: int = IN_OPEN | IN_MODIFY | IN_ATTRIB | IN_CREATE | IN_DELETE) -> None:
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(str(path)), mask)
        if wd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {path}")
        self._paths[wd] = str(path)

    def events(self) -> list[tuple[str, str]]:
        """(path, event name) pairs; a directory's own events carry its path, its entries' carry path/name."""
        out: list[tuple[str, str]] = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return out
            offset = 0
            while offset < len(data):
                wd, mask, _, length = struct.unpack_from("iIII", data, offset)
                name = data[offset + 16: offset + 16 + length].rstrip(b"\0").decode(errors="replace")
                offset += 16 + length
                base = self._paths.get(wd)
                if base is None:
                    continue
                for bit, label in _NAMES.items():
                    if mask & bit:
                        out.append((os.path.join(base, name) if name else base, label))

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
