"""Registry commands: pull, push, login, logout.

``pull`` and ``push`` print Docker's lines: per-layer bars updated in place (sizes and speed) on a terminal, one line per
status change otherwise, only the pulled reference with ``-q``.
"""

from __future__ import annotations

import sys
import threading
import time
from argparse import Namespace
from collections.abc import Callable
from typing import Any, TextIO

from sampan.cli.command import arg, command
from sampan.engine.context import Engine

_BAR_WIDTH = 50
_REDRAW_S = 0.1


def _size(n: float) -> str:
    """Docker's progress sizes: decimal units with 3 significant digits (``12.3MB``)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.3g}{unit}"
        n /= 1000
    return f"{n:.3g}TB"


class _Printer:
    """Plain lines, as the docker CLI prints when not on a terminal: one per status change, no byte progress."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.lock = threading.Lock()
        self.last: dict[str, str] = {}

    def __call__(self, event: Any) -> None:
        if event.status in ("Downloading", "Extracting", "Pushing"):
            return
        with self.lock:
            if event.status.startswith("Pulling from") or not event.id:
                self.last.clear()  # the next image of ``pull -a``: its layers report afresh
            elif event.id and self.last.get(event.id) == event.status:
                return
            self.last[event.id] = event.status
            self.out.write(f"{event.id}: {event.status}\n" if event.id else f"{event.status}\n")
            self.out.flush()


class _Bars:
    """Terminal: one line per layer, redrawn in place with ANSI cursor moves, as the docker CLI does."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.lock = threading.Lock()
        self.order: list[str] = []
        self.lines: dict[str, str] = {}
        self.drawn: dict[str, float] = {}
        self.started: dict[str, tuple[float, int]] = {}

    def __call__(self, event: Any) -> None:
        with self.lock:
            if not event.id or event.status.startswith("Pulling from"):
                self._print(f"{event.id}: {event.status}" if event.id else event.status)
                return
            now = time.monotonic()
            text = f"{event.id}: {event.status}"
            if event.status in ("Downloading", "Pushing") and event.total:
                if event.current < event.total and now - self.drawn.get(event.id, 0.0) < _REDRAW_S:
                    return
                text += " " + self._bar(event, now)
            self.drawn[event.id] = now
            if event.id not in self.lines:
                self.order.append(event.id)
                self.lines[event.id] = text
                self.out.write(text + "\n")
            else:
                self.lines[event.id] = text
                up = len(self.order) - self.order.index(event.id)
                self.out.write(f"\x1b[{up}A\r\x1b[2K{text}\r\x1b[{up}B")
            self.out.flush()

    def _bar(self, event: Any, now: float) -> str:
        start = self.started.setdefault(event.id, (now, event.current))
        filled = min(_BAR_WIDTH, _BAR_WIDTH * event.current // max(1, event.total))
        bar = "=" * max(0, filled - 1) + (">" if filled else "") + " " * (_BAR_WIDTH - filled)
        elapsed = now - start[0]
        speed = f"  {_size((event.current - start[1]) / elapsed)}/s" if elapsed > 0.2 else ""
        return f"[{bar}]  {_size(event.current)}/{_size(event.total)}{speed}"

    def _print(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()
        self.order.clear()  # lines printed after a block are not redrawn into
        self.lines.clear()


def progress_printer(out: TextIO) -> _Printer | _Bars:
    """Pull progress as the docker CLI shows it on ``out``: bars on a terminal, plain lines otherwise."""
    return _Bars(out) if out.isatty() else _Printer(out)


def _transfer(a: Namespace, run: Callable[[_Printer | _Bars | None], list[Any]]) -> tuple[Any, list[Any]]:
    """What pull and push print before and around the engine call: "Using default tag: latest" for a bare
    name, then progress (none with ``-q``). Returns the parsed reference and the engine's results."""
    from sampan.image import reference

    ref = reference.parse(a.name)
    printer: _Printer | _Bars | None = None
    if not a.quiet:
        printer = progress_printer(sys.stdout)
        if not a.all_tags and ref.tag is None and ref.digest is None:
            print("Using default tag: latest", flush=True)
    return ref, run(printer)


@command("Download an image from a registry",
         arg("name", metavar="NAME[:TAG|@DIGEST]"),
         arg("-a", "--all-tags", action="store_true", help="Download all tagged images in the repository"),
         arg("--disable-content-trust", action="store_true", default=True, help="Skip image verification "
             "(always: content trust is not supported)"),
         arg("--platform", default="", help="Set platform if server is multi-platform capable (os/arch[/variant])"),
         arg("-q", "--quiet", action="store_true", help="Suppress verbose output"))
def pull(engine: Engine, a: Namespace) -> None:
    from sampan.engine.pull import pull as pull_image

    ref, results = _transfer(a, lambda progress: pull_image(engine, a.name, platform=a.platform or None,
                                                            all_tags=a.all_tags, progress=progress))
    print(ref.repository() if a.all_tags else results[0].reference)  # Docker ends a pull with the name


@command("Upload an image to a registry",
         arg("name", metavar="NAME[:TAG]"),
         arg("-a", "--all-tags", action="store_true", help="Push all tags of an image to the repository"),
         arg("--disable-content-trust", action="store_true", default=True, help="Skip image signing "
             "(always: content trust is not supported)"),
         arg("-q", "--quiet", action="store_true", help="Suppress verbose output"))
def push(engine: Engine, a: Namespace) -> None:
    from sampan.engine.push import push as push_image

    ref, results = _transfer(a, lambda progress: push_image(engine, a.name, all_tags=a.all_tags,
                                                            progress=progress))
    if a.quiet:  # Docker ends a push with the digest line, or with -q the name only
        print(ref.repository() if a.all_tags else results[0].reference)


def _read_password_stdin() -> str:
    data = sys.stdin.read()
    return data.rstrip("\n").rstrip("\r")


@command("Log in to a registry",
         arg("server", nargs="?", metavar="SERVER", help="Registry (default: Docker Hub)"),
         arg("-p", "--password", default="", help="Password"),
         arg("--password-stdin", action="store_true", help="Take the password from stdin"),
         arg("-u", "--username", default="", help="Username"),
         needs_engine=False)
def login(_: None, a: Namespace) -> int:
    from sampan.engine import login as logins
    from sampan.errors import InvalidArgument

    if a.password_stdin:
        if a.password:
            raise InvalidArgument("--password and --password-stdin are mutually exclusive")
        if not a.username:
            raise InvalidArgument("Must provide --username with --password-stdin")
        a.password = _read_password_stdin()
    elif a.password:
        print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", file=sys.stderr)
    if not a.username and not a.password:
        stored = logins.stored_credentials(a.server)
        if stored is not None and logins.verify_stored(a.server):
            print("Authenticating with existing credentials...")
            print("Login Succeeded")
            return 0
    if not a.username:
        a.username = _prompt("Username: ")
    if not a.password:
        import getpass

        if not sys.stdin.isatty():
            raise InvalidArgument("Cannot perform an interactive login from a non TTY device")
        a.password = getpass.getpass("Password: ")
    result = logins.login(a.server, a.username.strip(), a.password)
    if result.plaintext:
        print(f"WARNING! Your password will be stored unencrypted in {result.stored_in}.\n"
              "Configure a credential helper to remove this warning.\n", file=sys.stderr)
    print("Login Succeeded")
    return 0


def _prompt(text: str) -> str:
    from sampan.errors import InvalidArgument

    if not sys.stdin.isatty():
        raise InvalidArgument("Cannot perform an interactive login from a non TTY device")
    sys.stdout.write(text)
    sys.stdout.flush()
    return sys.stdin.readline().strip()


@command("Log out from a registry",
         arg("server", nargs="?", metavar="SERVER", help="Registry (default: Docker Hub)"),
         needs_engine=False)
def logout(_: None, a: Namespace) -> None:
    from sampan.engine import login as logins

    name, found = logins.logout(a.server)
    if found:
        print(f"Removing login credentials for {name}")
    else:
        print(f"Not logged in to {name}")
