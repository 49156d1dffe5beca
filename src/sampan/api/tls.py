"""TLS on a TCP listener (``--tls``/``--tlsverify``), ended in a thread per connection instead of by the event loop.

Docker's attach and exec take the connection over, and the client half-closes it once its input ends (Go's
``CloseWrite``, which over TLS is a close_notify alert), then reads the output until the server closes. The event
loop's TLS transport (asyncio's and uvloop's alike) shuts the whole connection down when a close_notify arrives,
so the output written after it was lost: ``docker run`` over TLS printed nothing. Here each accepted connection
does its handshake (client certificates checked by the context) in its own thread, which then bridges the TLS
stream to a socket pair whose other end the service serves as an ordinary local connection: the client's
close_notify becomes a half-close of the pair, and what the service writes after it still goes out over TLS.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from collections.abc import Callable

HANDSHAKE_TIMEOUT = 10.0  # seconds a client may take to finish the handshake before its thread gives up


class TLSListener:
    """Accepts on ``listener``; each client that completes the handshake is served by ``serve(socket)`` (called
    from the accepting thread with the service's end of the pair)."""

    def __init__(self, listener: socket.socket, context: ssl.SSLContext,
                 serve: Callable[[socket.socket], None]) -> None:
        self.listener, self.context, self.serve = listener, context, serve
        self._thread = threading.Thread(target=self._accept, name="sampan-api-tls", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept
        self.listener.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._connection, args=(conn,), name="sampan-api-tls-conn",
                             daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        conn.settimeout(HANDSHAKE_TIMEOUT)
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
        except (OSError, ValueError):  # no or a refused certificate, plain HTTP, a client that gave up
            conn.close()
            return
        tls.settimeout(None)
        ours, theirs = socket.socketpair()
        try:
            self.serve(theirs)
        except Exception:  # noqa: BLE001 - the service is stopping
            theirs.close()
            ours.close()
            tls.close()
            return
        _bridge(tls, ours)


def _bridge(tls: ssl.SSLSocket, inner: socket.socket) -> None:
    """Copy both ways in one thread (an SSL object must not be used by two threads at once) until the service
    closes its end; the client's end of input (close_notify or EOF) is passed on as a half-close."""
    reading = True
    with tls, inner:
        while True:
            if reading and tls.pending():
                ready = [tls]
            else:
                ready, _, _ = select.select([inner, tls] if reading else [inner], [], [])
            if tls in ready:
                try:
                    data = tls.recv(1 << 16)
                except OSError:  # ssl.SSLError included: a broken or reset stream
                    data = b""
                if data:
                    try:
                        inner.sendall(data)
                    except OSError:  # the service closed its end
                        return
                else:
                    inner.shutdown(socket.SHUT_WR)
                    reading = False
            if inner in ready:
                data = inner.recv(1 << 16)
                if not data:
                    return
                try:
                    tls.sendall(data)
                except OSError:
                    return
