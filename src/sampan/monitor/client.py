"""The client side of the attach protocol: what a foreground ``run``, ``start -a`` and ``attach`` do.

Our stdin goes to the monitor as STDIN frames (unless detached with the detach keys, ctrl-p ctrl-q by default),
the container's output comes back to our stdout/stderr, our terminal's size follows SIGWINCH, and with signal
proxying the signals we receive are passed to the container. The monitor's EXIT frame ends the session.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sys

from sampan.monitor import protocol

DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p ctrl-q
_PROXIED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


class Detached(Exception):
    """The user typed the detach keys."""


def parse_detach_keys(text: str) -> bytes:
    """Docker's --detach-keys: comma-separated "ctrl-<letter>", "ctrl-@", "ctrl-[" ... or single characters."""
    out = bytearray()
    for key in text.split(","):
        if key.startswith("ctrl-") and len(key) == 6:
            char = key[5]
            if "a" <= char <= "z":
                out.append(ord(char) - ord("a") + 1)
            elif char in "@[\\]^_":
                out.append(ord(char) - 64)
            else:
                raise ValueError(f"Invalid escape keys ({text}) provided")
        elif len(key) == 1:
            out.append(ord(key))
        else:
            raise ValueError(f"Invalid escape keys ({text}) provided")
    return bytes(out)


def connect(path: str) -> socket.socket:
    """A connection to a monitor's attach socket (a path longer than AF_UNIX allows goes through
    ``protocol.socket_name``); ``OSError`` with nothing left open when no monitor listens there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with protocol.socket_name(path) as name:
            sock.connect(name)
    except BaseException:
        sock.close()
        raise
    return sock


def hello(sock: socket.socket, stdin: bool, stdout: bool = True, stderr: bool = True) -> None:
    sock.sendall(protocol.frame(protocol.HELLO, json.dumps({"stdin": stdin, "stdout": stdout,
                                                            "stderr": stderr}).encode()))


def session(sock: socket.socket, *, stdin: bool, tty: bool, detach_keys: bytes = DEFAULT_DETACH_KEYS,
            proxy_signals: bool = True) -> int | None:
    """Run the attached session; the container's exit status, None when detached, -1 when the monitor hung up
    without one (the caller reads the record)."""
    out = sys.stdout.buffer
    err = sys.stderr.buffer
    saved_tty = None
    if tty and stdin and os.isatty(0):
        import termios
        import tty as tty_mod

        saved_tty = termios.tcgetattr(0)
        tty_mod.setraw(0)
    handlers = {}

    def send_signal(signum: int, _: object) -> None:
        try:
            sock.sendall(protocol.frame(protocol.SIGNAL, str(signum).encode()))
        except OSError:
            pass

    def send_size(*_: object) -> None:
        try:
            size = os.get_terminal_size(1 if os.isatty(1) else 0)
        except OSError:
            return
        try:
            sock.sendall(protocol.frame(protocol.RESIZE, f"{size.lines} {size.columns}".encode()))
        except OSError:
            pass

    if proxy_signals and not tty:
        for sig in _PROXIED:
            handlers[sig] = signal.signal(sig, send_signal)
    if tty:
        handlers[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, send_size)
        send_size()
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ, "sock")
    if stdin:
        selector.register(0, selectors.EVENT_READ, "stdin")
    decoder = protocol.Decoder()
    pending_keys = b""
    try:
        while True:
            try:
                events = selector.select()
            except InterruptedError:
                continue
            for key, _ in events:
                if key.data == "stdin":
                    data = os.read(0, 65536)
                    if not data:
                        selector.unregister(0)
                        sock.sendall(protocol.frame(protocol.STDIN_EOF))
                        continue
                    if detach_keys:
                        data, pending_keys = _scan_detach(pending_keys + data, detach_keys)
                    if data:
                        sock.sendall(protocol.frame(protocol.STDIN, data))
                    continue
                data = sock.recv(65536)
                if not data:
                    return -1
                for kind, payload in decoder.feed(data):
                    if kind == protocol.STDOUT:
                        out.write(payload)
                        out.flush()
                    elif kind == protocol.STDERR:
                        err.write(payload)
                        err.flush()
                    elif kind == protocol.EXIT:
                        return int(payload or b"0")
                    elif kind == protocol.ERROR:
                        raise OSError(payload.decode(errors="replace"))
    except Detached:
        return None
    finally:
        selector.close()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        if saved_tty is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, saved_tty)


def request(sock: socket.socket, kind: int, payload: bytes = b"") -> bytes:
    """One control request to a running container's monitor: the payload of its answer (a frame of the same
    kind). OSError with the monitor's message when it refuses, or when it hangs up (the container ended)."""
    sock.sendall(protocol.frame(kind, payload))
    decoder = protocol.Decoder()
    while data := sock.recv(65536):
        for got, answer in decoder.feed(data):
            if got == kind:
                return answer
            if got in (protocol.ERROR, protocol.EXIT):
                raise OSError(answer.decode(errors="replace") if got == protocol.ERROR else "the container exited")
    raise OSError("the container's monitor hung up")


def _scan_detach(data: bytes, keys: bytes) -> tuple[bytes, bytes]:
    """(bytes to send now, a held prefix of the detach sequence); raises Detached on the whole sequence."""
    if keys in data:
        raise Detached
    for size in range(min(len(keys) - 1, len(data)), 0, -1):
        if data.endswith(keys[:size]):
            return data[:-size], data[-size:]
    return data, b""
