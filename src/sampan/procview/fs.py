"""The FUSE filesystem of the /proc view: each file is rendered at open for the cgroup of the opening process.

Files are opened with ``direct_io`` (like procfs, they have no size), rendered whole at open and served from
that copy, so one ``read`` sequence sees one consistent snapshot. A reader outside any container's cgroup (the
host) gets the host's own file. Renderings are cached per cgroup for ``CACHE_S``, so a tight read loop costs
little more than the FUSE round trips.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
import threading
import time
from typing import Any

from sampan.procview import view

CACHE_S = 0.1
# A size that is not 0: with direct_io reads get the real length, but sendfile/splice (busybox cat) go through
# the page cache, which reads nothing from a file that says it is empty.
_SIZE = 4096
FILES = ("cpuinfo", "diskstats", "loadavg", "meminfo", "stat", "swaps", "uptime")


def _host(name: str) -> str:
    with open(f"/proc/{name}") as f:
        return f.read()


def _last_pid() -> int:
    return int(_host("loadavg").split()[-1])


class ProcView:
    """mfusepy operations (``raw_fi``: open sets direct_io on the file info)."""

    use_ns = True

    def __init__(self) -> None:
        self._handles: dict[int, bytes] = {}
        self._numbers = itertools.count(1)
        self._cache: dict[tuple[str, str], tuple[float, bytes]] = {}
        self._lock = threading.Lock()
        self.loads = view.LoadAverage()  # shared with the syscall hub
        self._mounted_at = time.time_ns()

    def render(self, name: str, pid: int) -> bytes:
        where = view.cgroup_of(pid)
        if where is None:
            return _host(name).encode()
        key = (f"{where[0]}:{where[1]}", name)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and now - cached[0] < CACHE_S:
                return cached[1]
        figures = view.Figures.read(*where)
        if name == "meminfo":
            text = view.meminfo(figures, _host("meminfo"))
        elif name == "cpuinfo":
            text = view.cpuinfo(figures, _host("cpuinfo"))
        elif name == "stat":
            text = view.stat(figures, _host("stat"))
        elif name == "uptime":
            text = view.uptime(figures)
        elif name == "loadavg":
            text = self.loads.render(key[0], figures, _last_pid())
        elif name == "diskstats":
            text = view.diskstats(figures, _host("diskstats"))
        else:
            text = view.swaps(figures)
        data = text.encode()
        with self._lock:
            self._cache[key] = (now, data)
            if len(self._cache) > 4096:
                self._cache.clear()
        return data

    # ------------------------------------------------------------------------------------------ operations

    def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
        if path == "/":
            return {"st_mode": stat.S_IFDIR | 0o555, "st_nlink": 2, "st_mtime": self._mounted_at,
                    "st_ctime": self._mounted_at, "st_atime": self._mounted_at}
        if path.lstrip("/") in FILES:
            return {"st_mode": stat.S_IFREG | 0o444, "st_nlink": 1, "st_size": _SIZE, "st_mtime": self._mounted_at,
                    "st_ctime": self._mounted_at, "st_atime": self._mounted_at}
        raise OSError(errno.ENOENT, "")

    def readdir(self, path: str, fh: Any) -> list[str]:
        if path != "/":
            raise OSError(errno.ENOTDIR, "")
        return [".", "..", *FILES]

    def open(self, path: str, fi: Any) -> int:
        name = path.lstrip("/")
        if name not in FILES:
            raise OSError(errno.ENOENT, "")
        if fi.flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EACCES, "")
        from mfusepy import fuse_get_context

        _, _, pid = fuse_get_context()
        data = self.render(name, pid)
        number = next(self._numbers)
        with self._lock:
            self._handles[number] = data
        fi.fh = number
        fi.direct_io = 1
        return 0

    def read(self, path: str, size: int, offset: int, fi: Any) -> bytes:
        with self._lock:
            data = self._handles.get(fi.fh, b"")
        return data[offset:offset + size]

    def release(self, path: str, fi: Any) -> int:
        with self._lock:
            self._handles.pop(fi.fh, None)
        return 0
