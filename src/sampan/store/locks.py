"""Cross-process file locks (``flock``) under the run-time root.

Used for exclusion that SQLite transactions cannot give, such as "one process at a time works on this container".
Locks are per object, never one global lock held during I/O. The kernel releases a lock when its holder dies, so a
killed process never leaves a lock behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path
from types import TracebackType


class FileLock:
    def __init__(self, directory: Path, name: str) -> None:
        safe = hashlib.sha256(name.encode()).hexdigest()[:32]
        self.path = directory / f"{safe}.lock"
        self._fd: int | None = None

    def acquire(self, shared: bool = False, blocking: bool = True) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        flags = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)
        try:
            fcntl.flock(fd, flags)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
