"""How a CLI command is declared: a function plus its summary and argparse arguments.

Commands are declared next to their code (``@command(...)``) but only the module of the command being run is ever
imported, so ``sampan --version`` and ``sampan images`` pay for nothing else. argparse errors are turned into
``UsageError`` so every usage mistake is one line on stderr and exit status 125, as with Docker.
"""

from __future__ import annotations

import argparse

from sampan.errors import InvalidArgument, UsageError

TYPE_CHECKING = False  # typing is not imported at run time: start-up cost
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Runner = Callable[[Any, argparse.Namespace], int | None]


class Arg:
    """One argparse argument: its flags and keyword options."""

    __slots__ = ("flags", "options")

    def __init__(self, flags: tuple[str, ...], options: dict[str, Any]) -> None:
        self.flags, self.options = flags, options


def arg(*flags: str, **options: Any) -> Arg:
    return Arg(flags, options)


class Command:
    """A command's function with its summary and arguments (plain classes: dataclasses cost every start ~7 ms)."""

    __slots__ = ("run", "summary", "args", "needs_engine")

    def __init__(self, run: Runner, summary: str, args: tuple[Arg, ...], needs_engine: bool = True) -> None:
        self.run, self.summary, self.args, self.needs_engine = run, summary, args, needs_engine


def command(summary: str, *args: Arg, needs_engine: bool = True) -> Callable[[Runner], Command]:
    def wrap(func: Runner) -> Command:
        return Command(func, summary, args, needs_engine)

    return wrap


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of printing usage and exiting with status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


_PARSERS: dict[tuple[str, Command], Parser] = {}


def build_parser(prog: str, cmd: Command) -> Parser:
    """The command's parser, built once per process: ``run`` declares ~90 arguments (~1 ms to build), and a warm
    worker inherits the parsers its monitor host built (``sampan.cli.warm.warm_up``). Parsing does not change
    a parser, so one may serve every parse."""
    parser = _PARSERS.get((prog, cmd))
    if parser is None:
        parser = _PARSERS[prog, cmd] = _new_parser(prog, cmd)
    return parser


def _new_parser(prog: str, cmd: Command) -> Parser:
    takes_h = any("-h" in item.flags for item in cmd.args)  # run/create: -h is --hostname, as in Docker
    parser = Parser(prog=prog, description=cmd.summary, allow_abbrev=False, add_help=not takes_h)
    if takes_h:
        parser.add_argument("--help", action="help", help="show this help message and exit")
    for item in cmd.args:
        parser.add_argument(*item.flags, **item.options)
    return parser


def parse_filters(values: list[str] | None) -> dict[str, list[str]]:
    """``--filter key=value`` flags (repeatable) as Docker's filter map; ``label!=`` is its own key."""
    out: dict[str, list[str]] = {}
    for value in values or []:
        key, eq, rest = value.partition("=")
        if not eq or not key:
            raise InvalidArgument(f"bad format of filter (expected name=value): {value!r}")
        out.setdefault(key.strip(), []).append(rest)
    return out


def key_values(items: list[str] | None, what: str) -> dict[str, str]:
    """Docker's ``--label k=v`` / ``-o k=v`` flags: split at the first ``=``; a bare key has an empty value."""
    out: dict[str, str] = {}
    for item in items or []:
        key, _, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"invalid {what} '{item}': empty name")
        out[key] = value
    return out
