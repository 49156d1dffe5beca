"""Entry point of the ``sampan`` command: global options, command lookup, error mapping.

Every failure ends here as one line on stderr and Docker's exit status (``SampanError.exit_code``); a traceback
is shown only with ``--debug``. Imports stay lazy: this module and the registry are all that ``--version`` loads.
"""

from __future__ import annotations

import os
import sys

from sampan.errors import SampanError, UsageError

_GLOBAL_HELP = """Usage:  sampan [OPTIONS] COMMAND

A Docker-compatible, daemonless container engine

Global options:
      --root string      Storage root (default /var/lib/sampan, env SAMPAN_ROOT)
      --runroot string   Run-time state root (default /run/sampan, env SAMPAN_RUNROOT)
  -D, --debug            Show tracebacks for internal errors
  -v, --version          Print version information and quit
  -h, --help             Print this help
"""


class _Globals:
    root: str | None = None
    runroot: str | None = None
    debug = False


def _parse_globals(argv: list[str]) -> tuple[_Globals, list[str], str | None]:
    """Options before the command name; returns (options, the rest, an immediate action)."""
    opts = _Globals()
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        word = argv[i]
        name, eq, value = word.partition("=")
        if name in ("--root", "--runroot"):
            if not eq:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"flag needs an argument: {name}")
                value = argv[i]
            setattr(opts, name[2:], value)
        elif word in ("-D", "--debug"):
            opts.debug = True
        elif word in ("-v", "--version"):
            return opts, [], "version"
        elif word in ("-h", "--help"):
            return opts, [], "help"
        else:
            raise UsageError(f"unknown flag: {word} (see 'sampan --help')")
        i += 1
    return opts, argv[i:], None


def _print_help() -> None:
    from sampan.cli import registry

    lines = [_GLOBAL_HELP, "Management commands:"]
    lines += [f"  {name:<12}{summary}" for name, (_, _, summary) in sorted(registry.GROUPS.items())]
    lines += ["", "Commands:"]
    lines += [f"  {name:<12}{summary}" for name, (_, summary) in sorted(registry.TOP.items())]
    lines += ["", "Run 'sampan COMMAND --help' for more information on a command."]
    print("\n".join(lines))


def _print_group_help(group: str) -> None:
    from sampan.cli import registry

    table, _, summary = registry.GROUPS[group]
    lines = [f"Usage:  sampan {group} COMMAND", "", summary, "", "Commands:"]
    lines += [f"  {name:<12}{text}" for name, (_, text) in sorted(table.items())]
    print("\n".join(lines))


def run(argv: list[str]) -> int:
    opts, rest, action = _parse_globals(argv)
    if action == "version":
        from sampan import __version__

        print(f"sampan version {__version__}")
        return 0
    if action == "help" or not rest:
        _print_help()
        return 0
    from importlib import import_module

    from sampan.cli import registry, warm
    from sampan.cli.command import build_parser

    found = registry.find(rest)
    if found is None:
        if rest[0] in registry.GROUPS:
            if len(rest) == 1 or rest[1] in ("-h", "--help"):
                _print_group_help(rest[0])
                return 0
            raise UsageError(f"'{rest[1]}' is not a sampan {rest[0]} command (see 'sampan {rest[0]} --help')")
        raise UsageError(f"'{rest[0]}' is not a sampan command (see 'sampan --help')")
    name, target, args = found
    module_name, attr = target.split(":")
    cmd = getattr(import_module(f"sampan.cli.{module_name}"), attr)
    namespace = build_parser(f"sampan {name}", cmd).parse_args(args)
    _collect_from_now_on()
    engine = None
    if cmd.needs_engine:
        from sampan.engine.context import Engine

        engine = Engine(opts.root, opts.runroot)
    if name.removeprefix("container ") in warm.LAUNCHERS:
        warm.offer(engine)  # a monitor host this command launches runs the next commands warm
    try:
        return cmd.run(engine, namespace) or 0
    finally:
        if engine is not None:
            engine.close()


def _collect_from_now_on() -> None:
    """The ``sampan`` command starts with the cyclic collector off (``entry``): imports allocate much and free
    little, so collections then only cost time (~4 ms of ``sampan ps``). What they made lives as long as the
    command: it is frozen out of later collections, and the collector runs again for the command itself (the
    API service and the streaming commands run for long)."""
    import gc

    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "-D" in argv[:1] or "--debug" in argv[:3]
    try:
        return run(argv)
    except SampanError as e:
        if debug:
            raise
        print("Error: " + " ".join(str(e).split()), file=sys.stderr)
        return e.exit_code
    except SystemExit as e:  # argparse --help
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as e:
        if debug:
            raise
        print(f"Error: internal error: {type(e).__name__}: " + " ".join(str(e).split()), file=sys.stderr)
        return 1


def entry() -> None:
    """The ``sampan`` command: ``main`` with the collector off until the command runs (see
    ``_collect_from_now_on``), then out without the interpreter's teardown (see ``quick_exit``). A standard fd
    the caller closed (``<&-``) is opened on /dev/null first: otherwise the next file or socket the command opens
    takes its number, and whatever is started on "stdin" (a container's process) would get that instead. A
    ``run`` or an ``exec`` goes to a warm worker when the run-time root has one (``sampan.cli.warm``)."""
    import gc

    from sampan.quick_exit import quick_exit

    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # the lowest free number: this one
    gc.disable()
    from sampan.cli.warm import hand_over

    code = hand_over(sys.argv[1:])
    quick_exit(main() if code is None else code)


if __name__ == "__main__":
    entry()
