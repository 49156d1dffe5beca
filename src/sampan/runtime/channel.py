"""The sync channel between the runtime and the container's processes: framed messages over a Unix socket pair.

Both ends use it, and one end is the container's init in a fresh interpreter (see ``init.boot``) whose every
import is start-up time. So frames are ``marshal``-encoded dicts (builtin, and the peer is our own code, never the
container) sent over the ``_socket`` C type directly: ``json`` would pull in ``re`` and ``enum``, and the
``socket`` module ``enum`` and ``selectors``, several milliseconds before the container can start.
"""

from __future__ import annotations

import _socket
import marshal
import os
import sys

TYPE_CHECKING = False  # typing/collections.abc are not imported at run time: start-up cost
if TYPE_CHECKING:
    from typing import Any

_HEADER = 4  # little-endian frame length
_MAX_FDS = 8


class Channel:
    """One end of the pair. ``send`` writes a frame (fds travel with it as SCM_RIGHTS); ``recv`` reads one."""

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self._buffer = b""
        self._fds: list[int] = []

    @classmethod
    def pair(cls) -> tuple[Channel, Channel]:
        a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
        return cls(a), cls(b)

    @classmethod
    def from_fd(cls, fd: int) -> Channel:
        """The end a re-executed process inherited (the fd number travels on its command line)."""
        os.set_inheritable(fd, False)
        return cls(_socket.socket(fileno=fd))

    def fileno(self) -> int:
        return self.sock.fileno()

    def inheritable(self) -> int:
        """Keep this end across ``execve``; returns its fd number."""
        os.set_inheritable(self.sock.fileno(), True)
        return self.sock.fileno()

    def detach(self) -> int:
        """Give up this end's fd, to be taken over by ``from_fd`` in the same process."""
        return self.sock.detach()

    def close(self) -> None:
        self.sock.close()

    def send(self, fds: list[int] | tuple[int, ...] = (), **message: Any) -> None:
        if fds:
            message["nfds"] = len(fds)
        body = marshal.dumps(message)
        data = len(body).to_bytes(_HEADER, "little") + body
        if fds:
            rights = b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds)
            sent = self.sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
            data = data[sent:]
        while data:
            data = data[self.sock.send(data):]

    def recv(self) -> dict[str, Any]:
        """The next message, with its fds under ``"fds"``; ``{"type": "eof"}`` when the peer closed its end, or
        died, before a whole frame arrived.

        A stream socket may deliver several frames in one read (from different senders too) with the fds of the
        last one, so each frame says how many fds it carries and takes them in order from what has arrived: a
        frame's fds come with its first byte, never after it.
        """
        while len(self._buffer) < _HEADER or len(self._buffer) < _HEADER + self._length():
            if not self._fill():
                return {"type": "eof"}
        end = _HEADER + self._length()
        message = marshal.loads(self._buffer[_HEADER:end])
        self._buffer = self._buffer[end:]
        count = message.pop("nfds", 0)
        if count:
            message["fds"], self._fds = self._fds[:count], self._fds[count:]
        return message

    def fail(self, exc: BaseException) -> None:
        """Tell the peer why this process is about to die (one line; with SAMPAN_RUNC_DEBUG set, the frames)."""
        message = str(exc)
        if isinstance(exc, OSError) and exc.strerror:
            message = exc.strerror + (f": {exc.filename}" if exc.filename else "")
        if os.environ.get("SAMPAN_RUNC_DEBUG"):  # frames only: source lines would be read from the container's root
            tb = exc.__traceback__
            while tb is not None:
                code = tb.tb_frame.f_code
                message += f'\n  File "{code.co_filename}", line {tb.tb_lineno}, in {code.co_name}'
                tb = tb.tb_next
        try:
            self.send(type="error", message=message)
        except OSError:  # the runtime is gone (after start): the container's stderr is all that is left
            os.write(2, f"sampan-runc: {message}\n".encode(errors="replace"))

    def _length(self) -> int:
        return int.from_bytes(self._buffer[:_HEADER], "little")

    def _fill(self) -> bool:
        try:
            data, ancillary, _, _ = self.sock.recvmsg(65536, _socket.CMSG_SPACE(4 * _MAX_FDS),
                                                         _socket.MSG_CMSG_CLOEXEC)
        except ConnectionResetError:
            return False
        for level, kind, payload in ancillary:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                usable = len(payload) - len(payload) % 4
                self._fds += [int.from_bytes(payload[i:i + 4], sys.byteorder, signed=True)
                              for i in range(0, usable, 4)]
        self._buffer += data
        return bool(data)
