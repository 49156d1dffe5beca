"""The monitor's loop while its container runs: copy the container's output to the log and to attached clients,
feed clients' stdin to the container, and reap children until the container's init exits.

It knows nothing of the store or the engine (the engine's ``containers.monitor`` drives it): fds, a log writer, a
listening socket and a few callbacks in, the init's wait status out. One thread, ``selectors`` (epoll), and
SIGCHLD through ``signal.set_wakeup_fd``, so an idle monitor sleeps in one system call.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable

from sampan.monitor import protocol
from sampan.monitor.logs import JsonFileLog

_CHUNK = 65536
_DRAIN_S = 1.0  # after init exits, how long output that others still hold open may keep coming
_SEND_TIMEOUT_S = 10.0


class Client:
    """One attached client: the streams it wants and its half-read frames."""

    def __init__(self, sock: socket.socket, streams: dict[str, bool] | None) -> None:
        self.sock = sock
        self.streams = streams  # None until its HELLO arrives (clients handed over at start come with them)
        self.decoder = protocol.Decoder()
        sock.settimeout(_SEND_TIMEOUT_S)

    def send(self, kind: int, data: bytes) -> bool:
        try:
            self.sock.sendall(protocol.frame(kind, data))
            return True
        except OSError:
            return False


class Pump:
    def __init__(self, *, pid: int, outputs: dict[int, str], stdin_fd: int, tty_master: int,
                 log: JsonFileLog | None, listener: socket.socket | None, clients: list[Client],
                 stdin_once: bool, on_reaped: Callable[[int, int], None] | None = None,
                 tick: Callable[[], float | None] | None = None,
                 readers: dict[int, Callable[[int], None]] | None = None,
                 start_dns: Callable[[bytes], dict[int, Callable[[int], None]]] | None = None) -> None:
        self.pid = pid
        self.outputs = dict(outputs)  # fd -> "stdout"/"stderr" (a tty master is "stdout")
        self.stdin_fd = stdin_fd
        self.tty_master = tty_master
        self.log = log
        self.listener = listener
        self.clients = list(clients)
        self.stdin_once = stdin_once
        self.on_reaped = on_reaped
        self.tick = tick
        self.readers = dict(readers or {})  # extra fds and what to call when one is readable (the DNS responder)
        self.start_dns = start_dns  # a DNS request's payload -> the readers of a responder started now
        self.selector = selectors.DefaultSelector()

    # ------------------------------------------------------------------------------------------ the loop

    def run(self) -> int:
        """Serve until the init exits and its output is drained; returns its wait status."""
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        old_handler = signal.signal(signal.SIGCHLD, lambda *_: None)
        old_fd = signal.set_wakeup_fd(wake_w)
        try:
            self.selector.register(wake_r, selectors.EVENT_READ, "wake")
            for fd in self.outputs:
                os.set_blocking(fd, False)
                self.selector.register(fd, selectors.EVENT_READ, "output")
            if self.listener is not None:
                self.selector.register(self.listener, selectors.EVENT_READ, "listener")
            for fd in self.readers:
                self.selector.register(fd, selectors.EVENT_READ, "reader")
            for client in self.clients:
                self.selector.register(client.sock, selectors.EVENT_READ, client)
            status = self._reap()
            while status is None:
                timeout = self.tick() if self.tick else None
                for key, _ in self.selector.select(timeout):
                    self._dispatch(key, wake_r)
                status = self._reap()
            self._drain()
            return status
        finally:
            signal.set_wakeup_fd(old_fd)
            signal.signal(signal.SIGCHLD, old_handler)
            self.selector.close()
            os.close(wake_r)
            os.close(wake_w)

    def _dispatch(self, key: selectors.SelectorKey, wake_r: int) -> None:
        if key.data == "wake":
            try:
                os.read(wake_r, 4096)
            except BlockingIOError:
                pass
        elif key.data == "output":
            self._read_output(key.fd)
        elif key.data == "listener":
            self._accept()
        elif key.data == "reader":
            self.readers[key.fd](key.fd)
        else:
            self._from_client(key.data)

    def _reap(self) -> int | None:
        """Reap every exited child; the init's wait status once it is among them."""
        found = None
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return found if found is not None else 255 << 8
            if pid == 0:
                return found
            if pid == self.pid:
                found = status
            elif self.on_reaped is not None:
                self.on_reaped(pid, status)

    # ------------------------------------------------------------------------------------------ output

    def _read_output(self, fd: int) -> bool:
        try:
            data = os.read(fd, _CHUNK)
        except BlockingIOError:
            return True
        except OSError:  # EIO: the pty's last slave closed
            data = b""
        if not data:
            self.selector.unregister(fd)
            del self.outputs[fd]
            return False
        stream = self.outputs[fd]
        if self.log is not None:
            self.log.write(stream, data)  # type: ignore[arg-type]
        kind = protocol.STDERR if stream == "stderr" else protocol.STDOUT
        for client in list(self.clients):
            if client.streams and client.streams.get(stream) and not client.send(kind, data):
                self._drop(client)
        return True

    def _drain(self) -> None:
        deadline = time.monotonic() + _DRAIN_S
        while self.outputs and time.monotonic() < deadline:
            for key, _ in self.selector.select(max(0.0, deadline - time.monotonic())):
                if key.data == "output":
                    self._read_output(key.fd)
        if self.log is not None:
            self.log.flush_partial()

    # ------------------------------------------------------------------------------------------ clients

    def _accept(self) -> None:
        assert self.listener is not None
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        client = Client(sock, None)
        self.clients.append(client)
        self.selector.register(sock, selectors.EVENT_READ, client)

    def _drop(self, client: Client) -> None:
        if client in self.clients:
            self.clients.remove(client)
            try:
                self.selector.unregister(client.sock)
            except (KeyError, ValueError):
                pass
            client.sock.close()

    def _from_client(self, client: Client) -> None:
        try:
            data = client.sock.recv(_CHUNK)
        except OSError:
            data = b""
        if not data:
            if client.streams and client.streams.get("stdin"):
                self._stdin_eof()
            self._drop(client)
            return
        for kind, payload in client.decoder.feed(data):
            self._message(client, kind, payload)

    def _message(self, client: Client, kind: int, payload: bytes) -> None:
        if kind == protocol.HELLO:
            try:
                streams = json.loads(payload)
            except ValueError:
                streams = {}
            client.streams = {name: bool(streams.get(name)) for name in ("stdin", "stdout", "stderr")}
        elif kind == protocol.STDIN and client.streams and client.streams["stdin"] and self.stdin_fd >= 0:
            try:
                os.write(self.stdin_fd, payload)
            except OSError:
                pass
        elif kind == protocol.STDIN_EOF:
            self._stdin_eof()
        elif kind == protocol.RESIZE and self.tty_master >= 0:
            from sampan._linux.process import set_winsize

            try:
                rows, cols = (int(n) for n in payload.split())
                set_winsize(self.tty_master, rows, cols)
            except (ValueError, OSError):
                pass
        elif kind == protocol.DNS and self.start_dns is not None:
            self._start_dns(client, payload)
        elif kind == protocol.SIGNAL:
            try:
                os.kill(self.pid, int(payload))
            except (ValueError, OSError):
                pass

    def _start_dns(self, client: Client, payload: bytes) -> None:
        """A running container joined its first user network: serve its embedded DNS from now on."""
        try:
            added = self.start_dns(payload)  # type: ignore[misc]
        except (OSError, ValueError) as e:
            client.send(protocol.ERROR, f"cannot start the embedded DNS server: {e}".encode())
            return
        for fd, handler in added.items():
            if fd not in self.readers:
                self.readers[fd] = handler
                self.selector.register(fd, selectors.EVENT_READ, "reader")
        client.send(protocol.DNS, b"")

    def _stdin_eof(self) -> None:
        """The attached stdin ended: close the container's stdin when it was opened for one client only."""
        if self.stdin_once and self.stdin_fd >= 0 and self.stdin_fd != self.tty_master:
            os.close(self.stdin_fd)
            self.stdin_fd = -1

    def finish(self, status_text: str, kind: int = protocol.EXIT) -> None:
        """Tell every client the end (exit status or error) and hang up."""
        for client in self.clients:
            client.send(kind, status_text.encode())
            client.sock.close()
        self.clients.clear()
