"""The attach protocol between a container's monitor and its clients (``run``, ``start -a``, ``attach``).

Every message both ways is a frame: Docker's stdcopy header (one byte of kind, three zero bytes, a big-endian
32-bit length) and the payload. Docker's kinds carry the streams (0 stdin, 1 stdout, 2 stderr); sampan's own
control kinds carry what Docker's API puts in separate calls: which streams a client wants, a terminal resize,
a signal to proxy, the end of stdin, a request to start the embedded DNS responder, and at the end the container's exit status.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager

STDIN, STDOUT, STDERR = 0, 1, 2
HELLO = 0xF0  # client -> monitor: {"stdin": bool, "stdout": bool, "stderr": bool} as JSON
RESIZE = 0xF1  # client -> monitor: b"ROWS COLS"
SIGNAL = 0xF2  # client -> monitor: the signal number, ASCII
STDIN_EOF = 0xF3  # client -> monitor: no more stdin from this client
DNS = 0xF4  # client -> monitor: start the embedded DNS responder, {"servers": [...]} as JSON; answered with an
#             empty DNS frame once it answers (or ERROR)
EXIT = 0xF8  # monitor -> client: the exit status, ASCII; the last frame
ERROR = 0xF9  # monitor -> client: the container could not start (a one-line message)

HEADER = struct.Struct(">BxxxI")


def frame(kind: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


class Decoder:
    """Splits a byte stream into (kind, payload) frames as data arrives."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buffer += data
        out = []
        while len(self._buffer) >= HEADER.size:
            kind, size = HEADER.unpack_from(self._buffer)
            end = HEADER.size + size
            if len(self._buffer) < end:
                break
            out.append((kind, bytes(self._buffer[HEADER.size:end])))
            del self._buffer[:end]
        return out


@contextmanager
def socket_name(path: str) -> Iterator[str]:
    """A name for a unix socket at ``path`` that fits sun_path (108 bytes): deep storage roots go through
    ``/proc/self/fd`` of the socket's directory."""
    if len(os.fsencode(path)) < 100:
        yield path
        return
    fd = os.open(os.path.dirname(path), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{os.path.basename(path)}"
    finally:
        os.close(fd)
