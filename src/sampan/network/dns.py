"""The embedded DNS responder of user networks (Docker's 127.0.0.11), run by each container's monitor.

The monitor's start child binds a UDP socket to 127.0.0.11:53 inside the container's network namespace and
hands it to the monitor, which answers from its pump loop: A queries for names of the container's networks
(container names, aliases, short IDs, from the small ``<network id>.names`` files the engine rewrites as
members come and go, listed in the container's ``<container id>.dns`` index, rewritten when it joins or leaves a
network while running: the monitor never opens the database), an empty answer for other types of those names, and
everything else is forwarded to the host's resolvers from the host's namespace (so a resolver on the host's
loopback works too) and relayed back. Small and allocation-light: it runs in every monitor.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import time

ADDRESS = "127.0.0.11"
_FORWARD_TIMEOUT_S = 5.0


def bind_sockets() -> list[int]:
    """In the container's namespace (lo up): the UDP socket the responder answers on."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    udp.bind((ADDRESS, 53))
    return [udp.detach()]


def upstreams(path: str = "/etc/resolv.conf") -> list[str]:
    try:
        with open(path) as f:
            return [line.split()[1] for line in f if line.startswith("nameserver") and len(line.split()) > 1]
    except OSError:
        return []


def _question(packet: bytes) -> tuple[str, int, int] | None:
    """(lower-case name, qtype, offset after the question) of a standard query, or None."""
    if len(packet) < 12:
        return None
    flags, qdcount = struct.unpack_from("!HH", packet, 2)
    if flags & 0x8000 or qdcount != 1:
        return None
    labels, i = [], 12
    while i < len(packet):
        length = packet[i]
        if length == 0:
            i += 1
            break
        if length & 0xC0:
            return None
        labels.append(packet[i + 1:i + 1 + length].decode("ascii", "replace").lower())
        i += 1 + length
    if i + 4 > len(packet):
        return None
    qtype = struct.unpack_from("!H", packet, i)[0]
    return ".".join(labels), qtype, i + 4


class Responder:
    def __init__(self, fd: int, names_files: list[str], servers: list[str], index: str = "") -> None:
        self.sock = socket.socket(fileno=fd)
        self.sock.setblocking(False)
        self.files = names_files
        self.index = index  # a file listing the names files, rewritten when the container joins or leaves one
        self._index_seen: tuple[int, int] | None = None
        self.servers = [s for s in servers if s != ADDRESS] or ["8.8.8.8"]
        self.forward = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.forward.setblocking(False)
        self.pending: dict[int, tuple[int, object, float]] = {}  # our id -> (their id, their address, sent)
        self._cache: dict[str, tuple[float, dict[str, str]]] = {}

    def fds(self) -> dict[int, object]:
        return {self.sock.fileno(): self.on_query, self.forward.fileno(): self.on_reply}

    def _refresh_files(self) -> None:
        try:
            st = os.stat(self.index)
        except OSError:
            return
        if self._index_seen != (st.st_ino, st.st_mtime_ns):
            try:
                with open(self.index) as f:
                    self.files = [line.strip() for line in f if line.strip()]
            except OSError:
                return
            self._index_seen = (st.st_ino, st.st_mtime_ns)

    def _names(self) -> dict[str, str]:
        if self.index:
            self._refresh_files()
        out: dict[str, str] = {}
        for path in self.files:
            try:
                mtime = os.stat(path).st_mtime_ns
            except OSError:
                continue
            cached = self._cache.get(path)
            if cached is None or cached[0] != mtime:
                table = {}
                with open(path) as f:
                    for line in f:
                        name, _, address = line.strip().partition(" ")
                        table.setdefault(name, address)
                cached = self._cache[path] = (mtime, table)
            for name, address in cached[1].items():
                out.setdefault(name, address)
        return out

    def on_query(self, _fd: int) -> None:
        try:
            packet, peer = self.sock.recvfrom(4096)
        except OSError:
            return
        question = _question(packet)
        if question is None:
            return
        name, qtype, end = question
        address = self._names().get(name)
        if address is not None:
            self._answer(packet, end, peer, address if qtype == 1 else None)
            return
        self._forward(packet, peer)

    def _answer(self, packet: bytes, end: int, peer: object, address: str | None) -> None:
        (query_id,) = struct.unpack_from("!H", packet, 0)
        rd = struct.unpack_from("!H", packet, 2)[0] & 0x0100
        header = struct.pack("!HHHHHH", query_id, 0x8000 | 0x0400 | rd | 0x0080, 1, 1 if address else 0, 0, 0)
        answer = b""
        if address:
            answer = struct.pack("!HHHIH", 0xC00C, 1, 1, 600, 4) + socket.inet_aton(address)
        try:
            self.sock.sendto(header + packet[12:end] + answer, peer)  # type: ignore[arg-type]
        except OSError:
            pass

    def _forward(self, packet: bytes, peer: object) -> None:
        now = time.monotonic()
        for key in [k for k, v in self.pending.items() if now - v[2] > _FORWARD_TIMEOUT_S]:
            del self.pending[key]
        ours = random.randrange(65536)
        while ours in self.pending:
            ours = random.randrange(65536)
        self.pending[ours] = (struct.unpack_from("!H", packet, 0)[0], peer, now)
        message = struct.pack("!H", ours) + packet[2:]
        for server in self.servers[:1]:
            try:
                self.forward.sendto(message, (server, 53))
            except OSError:
                pass

    def on_reply(self, _fd: int) -> None:
        try:
            packet, _ = self.forward.recvfrom(65535)
        except OSError:
            return
        if len(packet) < 12:
            return
        entry = self.pending.pop(struct.unpack_from("!H", packet, 0)[0], None)
        if entry is None:
            return
        try:
            self.sock.sendto(struct.pack("!H", entry[0]) + packet[2:], entry[1])  # type: ignore[arg-type]
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()
        self.forward.close()
