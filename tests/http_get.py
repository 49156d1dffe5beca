"""A plain HTTP/1.0 GET that retries while nothing answers yet, for the network tests."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable


def http_get(host: str, port: int, new_socket: Callable[[], socket.socket] = socket.socket,
             attempts: int = 50) -> bytes:
    """The whole answer of ``GET /`` at ``host:port``; ``new_socket`` makes each attempt's socket (e.g. inside
    another network namespace)."""
    for _ in range(attempts):
        with new_socket() as client:
            client.settimeout(5)
            try:
                client.connect((host, port))
                client.sendall(b"GET / HTTP/1.0\r\n\r\n")
                data = b""
                while chunk := client.recv(65536):
                    data += chunk
                return data
            except OSError:
                time.sleep(0.1)
    raise AssertionError(f"nothing answers on {host}:{port}")
