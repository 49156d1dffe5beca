"""``sampan-runc``: runc's command line over ``sampan.runtime.container.Runtime``.

Engines (containerd's shim, Docker) drive runtimes by this exact interface: global ``--root``, ``--log`` and
``--log-format json`` (the shim reads errors from the log file), the verbs and their flags, JSON on stdout for
``state``/``ps --format json``/``features``, and exit status 1 on errors.
"""

from __future__ import annotations

import os
import sys
import time

from sampan.errors import InvalidArgument, SampanError

TYPE_CHECKING = False  # typing/collections.abc are not imported at run time: start-up cost
if TYPE_CHECKING:
    from typing import Any

# The command line is runc's (urfave/cli): global flags, a verb, the verb's flags and its arguments. It is parsed
# by the small table-driven parser below rather than argparse: argparse with gettext, locale and shutil (which
# its help formatter imports) costs several milliseconds of every ``create``, more than the parsing is worth.
# A flag is (names, kind, default): "str" takes a value, "bool" none, "int" an integer, "list" a repeatable
# value, "ints" a repeatable integer; a str flag with a tuple default (choices) defaults to the first choice.
Flag = tuple  # (tuple[str, ...], str, object)

_GLOBAL: list[Flag] = [
    (("--root",), "str", "/run/sampan-runc"), (("--log",), "str", ""),
    (("--log-format",), "str", ("text", "json")), (("--debug",), "bool", False),
    (("--systemd-cgroup",), "bool", False), (("--rootless",), "str", "auto"), (("--criu",), "str", ""),
    (("-v", "--version"), "bool", False),
]
_CREATE: list[Flag] = [
    (("-b", "--bundle"), "str", "."), (("--pid-file",), "str", None), (("--console-socket",), "str", None),
    (("--no-pivot",), "bool", False), (("--no-new-keyring",), "bool", False), (("--preserve-fds",), "int", 0),
]
_EXEC: list[Flag] = [
    (("-p", "--process"), "str", None), (("-d", "--detach"), "bool", False), (("-t", "--tty"), "bool", False),
    (("--console-socket",), "str", None), (("--pid-file",), "str", None), (("-e", "--env"), "list", None),
    (("-u", "--user"), "str", None), (("-g", "--additional-gids"), "ints", None), (("--cwd",), "str", None),
    (("-c", "--cap"), "list", None), (("--no-new-privs",), "bool", False), (("--preserve-fds",), "int", 0),
    (("--process-label",), "str", None), (("--apparmor",), "str", None), (("--ignore-paused",), "bool", False),
    (("--cgroup",), "list", None),
]
_UPDATE: list[Flag] = [(("-r", "--resources"), "str", None)] + [
    ((flag,), "str", None) for flag in (
        "--memory", "--memory-swap", "--memory-reservation", "--kernel-memory", "--cpu-shares", "--cpu-quota",
        "--cpu-period", "--cpuset-cpus", "--cpuset-mems", "--pids-limit", "--blkio-weight", "--cpu-rt-period",
        "--cpu-rt-runtime", "--l3-cache-schema", "--mem-bw-schema")]
_FORMAT: Flag = (("-f", "--format"), "str", ("table", "json"))

# verb -> (its flags, its positional arguments; "*name" takes all the words that follow, flags included)
_VERBS: dict[str, tuple[list[Flag], tuple[str, ...]]] = {
    "create": (_CREATE, ("id",)),
    "run": (_CREATE + [(("-d", "--detach"), "bool", False), (("--keep",), "bool", False)], ("id",)),
    "start": ([], ("id",)), "state": ([], ("id",)), "pause": ([], ("id",)), "resume": ([], ("id",)),
    "delete": ([(("-f", "--force"), "bool", False)], ("id",)),
    "kill": ([(("-a", "--all"), "bool", False)], ("id", "?signal")),
    "list": ([_FORMAT, (("-q", "--quiet"), "bool", False)], ()),
    "ps": ([_FORMAT], ("id", "*ps_args")),
    "exec": (_EXEC, ("id", "*command")),
    "update": (_UPDATE, ("id",)),
    "events": ([(("--stats",), "bool", False), (("--interval",), "str", "5s")], ("id",)),
    "spec": ([(("-b", "--bundle"), "str", "."), (("--rootless",), "bool", False)], ()),
    "features": ([], ()),
}


class Args:
    """The parsed command line: one attribute per flag (dashes as underscores) and per positional argument."""

    verb: str | None
    help: bool
    id: str


def _option_key(flag: Flag) -> str:
    return flag[0][-1].lstrip("-").replace("-", "_")


def _defaults(args: Args, flags: list[Flag]) -> dict[str, Flag]:
    by_name = {}
    for flag in flags:
        names, kind, default = flag
        if kind in ("list", "ints"):
            default = []
        elif isinstance(default, tuple):
            default = default[0]
        setattr(args, _option_key(flag), default)
        by_name.update(dict.fromkeys(names, flag))
    return by_name


def _take_flag(args: Args, words: list[str], i: int, by_name: dict[str, Flag], where: str) -> int:
    """Apply the flag at ``words[i]``; returns the index of the next word."""
    word = words[i]
    name, has_value, value = word.partition("=")
    flag = by_name.get(name)
    if flag is None:
        raise InvalidArgument(f"flag provided but not defined: {name}" + (f" ({where})" if where else ""))
    _, kind, default = flag
    if kind == "bool":
        if has_value and value not in ("true", "false"):
            raise InvalidArgument(f"invalid boolean value {value!r} for flag {name}")
        setattr(args, _option_key(flag), value != "false")
        return i + 1
    if not has_value:
        if i + 1 >= len(words):
            raise InvalidArgument(f"flag needs an argument: {name}")
        value, i = words[i + 1], i + 1
    if isinstance(default, tuple) and value not in default:
        raise InvalidArgument(f"invalid value {value!r} for flag {name} (choose from {', '.join(default)})")
    if kind in ("int", "ints"):
        try:
            converted: Any = int(value)
        except ValueError:
            raise InvalidArgument(f"invalid value {value!r} for flag {name}: not an integer") from None
    else:
        converted = value
    if kind in ("list", "ints"):
        getattr(args, _option_key(flag)).append(converted)
    else:
        setattr(args, _option_key(flag), converted)
    return i + 1


def parse(argv: list[str]) -> Args:
    """runc's command line: global flags, the verb, then its flags and arguments in any order, except that a
    ``*`` argument (exec's command, ps's options) takes everything after it; ``--`` ends the flags."""
    args = Args()
    by_name = _defaults(args, _GLOBAL)
    args.verb, args.help = None, False
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] not in ("-", "--"):
        if argv[i] in ("-h", "--help"):
            args.help = True
            return args
        i = _take_flag(args, argv, i, by_name, "")
    if i == len(argv):
        return args
    args.verb = argv[i]
    if args.verb not in _VERBS:
        raise InvalidArgument(f"no such command: {args.verb}")
    flags, positionals = _VERBS[args.verb]
    by_name = _defaults(args, flags)
    for positional in positionals:
        setattr(args, positional.lstrip("*?"), [] if positional.startswith("*") else None)
    words, remaining, flags_done = argv[i + 1:], list(positionals), False
    j = 0
    while j < len(words):
        word = words[j]
        if remaining and remaining[0].startswith("*"):
            setattr(args, remaining.pop(0)[1:], words[j:])
            break
        if not flags_done and word == "--":
            flags_done = True
            j += 1
        elif not flags_done and word.startswith("-") and word != "-":
            j = _take_flag(args, words, j, by_name, args.verb)
        elif remaining:
            setattr(args, remaining.pop(0).lstrip("?"), word)
            j += 1
        else:
            raise InvalidArgument(f"{args.verb}: unexpected argument {word!r}")
    missing = [name for name in remaining if not name.startswith(("*", "?"))]
    if missing:
        raise InvalidArgument(f"{args.verb}: missing argument: {missing[0].replace('id', 'container id')}")
    if args.verb == "kill" and args.signal is None:
        args.signal = "SIGTERM"
    return args


def _signal(text: str) -> int:
    import signal

    name = text.upper()
    if name.isdigit():
        return int(name)
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(getattr(signal.Signals, name))
    except AttributeError:
        raise InvalidArgument(f"unknown signal {text!r}") from None


def _print_json(value: Any) -> None:
    import json

    print(json.dumps(value, indent=2))


def _exec_process(runtime: Any, a: Args) -> dict[str, Any]:
    """The process to exec: a process.json, or the container's process with runc's command-line overrides."""
    import json

    if a.process:
        from sampan.runtime import spec as specs

        with open(a.process) as f:
            process = json.load(f)
        specs.validate({"process": process}, "", for_exec=True)
        return process
    if not a.command:
        raise InvalidArgument("exec: no command given (and no --process)")
    base = dict(runtime.states.load(a.id).config.get("process") or {})
    base["args"] = a.command[1:] if a.command[:1] == ["--"] else a.command
    base["terminal"] = a.tty
    base["env"] = list(base.get("env") or []) + a.env
    if a.cwd:
        base["cwd"] = a.cwd
    if a.user:
        uid, _, gid = a.user.partition(":")
        base["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    if a.additional_gids:
        base.setdefault("user", {})["additionalGids"] = a.additional_gids
    if a.cap:
        caps = {k: list(v) for k, v in (base.get("capabilities") or {}).items()}
        for key in ("bounding", "effective", "permitted", "inheritable", "ambient"):
            caps[key] = list(dict.fromkeys(caps.get(key, []) + a.cap))
        base["capabilities"] = caps
    if a.no_new_privs:
        base["noNewPrivileges"] = True
    return base


def _update_resources(a: Args) -> dict[str, Any]:
    import json

    if a.resources:
        data = sys.stdin.read() if a.resources == "-" else open(a.resources).read()
        try:
            return json.loads(data)
        except ValueError as e:
            raise InvalidArgument(f"update: invalid resources JSON: {e}") from None
    res: dict[str, Any] = {}
    ints = {"memory": ("memory", "limit"), "memory_swap": ("memory", "swap"),
            "memory_reservation": ("memory", "reservation"), "cpu_shares": ("cpu", "shares"),
            "cpu_quota": ("cpu", "quota"), "cpu_period": ("cpu", "period"), "pids_limit": ("pids", "limit"),
            "blkio_weight": ("blockIO", "weight")}
    sizes = {"memory", "memory_swap", "memory_reservation"}
    for attr, (group, key) in ints.items():
        value = getattr(a, attr)
        if value is None:
            continue
        if attr in sizes and value != "-1":
            from sampan.units import parse_size

            res.setdefault(group, {})[key] = parse_size(value)  # runc takes "64m" as well as bytes
            continue
        try:
            res.setdefault(group, {})[key] = int(value)
        except ValueError:
            raise InvalidArgument(f"update: invalid value for --{attr.replace('_', '-')}: {value}") from None
    for attr, key in (("cpuset_cpus", "cpus"), ("cpuset_mems", "mems")):
        if getattr(a, attr) is not None:
            res.setdefault("cpu", {})[key] = getattr(a, attr)
    return res


def _ps(runtime: Any, a: Args) -> int:
    import json

    pids = runtime.pids(a.id)
    if a.format == "json":
        print(json.dumps(pids))
        return 0
    import subprocess

    args = [x for x in a.ps_args if x != "--"] or ["-ef"]
    out = subprocess.run(["ps", *args], capture_output=True, text=True, check=True).stdout.splitlines()
    if not out:
        return 0
    header = out[0].split()
    column = header.index("PID")
    print(out[0])
    for line in out[1:]:
        fields = line.split()
        if len(fields) > column and fields[column].isdigit() and int(fields[column]) in pids:
            print(line)
    return 0


def _owner(runtime: Any, container_id: str) -> str:
    """runc's owner: the user owning the state directory, by name where there is one."""
    import pwd

    uid = os.stat(runtime.states.dir(container_id)).st_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"#{uid}"


def _list(runtime: Any, a: Args) -> int:
    import json

    states = [dict(s, owner=_owner(runtime, s["id"])) for s in runtime.list()]
    if a.quiet:
        for s in states:
            print(s["id"])
    elif a.format == "json":
        print(json.dumps(states))
    else:
        rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
        rows += [[s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"]]
                 for s in states]
        widths = [max(12, max(len(r[i]) for r in rows) + 3) for i in range(5)]
        for r in rows:
            print("".join(cell.ljust(widths[i]) for i, cell in enumerate(r[:5])) + r[5])
    return 0


def _events(runtime: Any, a: Args) -> int:
    import json

    from sampan.units import parse_duration

    interval = parse_duration(a.interval)
    while True:
        print(json.dumps({"type": "stats", "id": a.id, "data": runtime.stats(a.id)}), flush=True)
        if a.stats:
            return 0
        time.sleep(interval)


def _spec(a: Args) -> int:
    import json

    from sampan.runtime import spec as specs

    path = os.path.join(a.bundle, "config.json")
    if os.path.exists(path):
        raise InvalidArgument("File config.json exists. Remove it first.")
    with open(path, "w") as f:
        json.dump(specs.default_spec(rootless=a.rootless), f, indent="\t")
    return 0


def _features() -> int:
    from sampan.runtime import seccomp
    from sampan.runtime import spec as specs

    _print_json(specs.features(seccomp=seccomp.supported()))
    return 0


def dispatch(a: Args, first: Any = None) -> int:
    """Run verb ``a.verb``; ``first``: the container's first process, already started for create/run/exec."""
    if a.verb == "spec":
        return _spec(a)
    if a.verb == "features":
        return _features()
    from sampan.runtime.container import Runtime

    runtime = Runtime(a.root)
    c = a.verb
    if c == "create":
        runtime.create(a.id, a.bundle, pid_file=a.pid_file, console_socket=a.console_socket,
                       no_pivot=a.no_pivot, preserve_fds=a.preserve_fds, first=first)
    elif c == "run":
        return runtime.run(a.id, a.bundle, detach=a.detach, pid_file=a.pid_file, console_socket=a.console_socket,
                           no_pivot=a.no_pivot, preserve_fds=a.preserve_fds, first=first)
    elif c == "start":
        runtime.start(a.id)
    elif c == "state":
        _print_json(runtime.state(a.id))
    elif c == "kill":
        runtime.kill(a.id, _signal(a.signal), all=a.all)
    elif c == "delete":
        runtime.delete(a.id, force=a.force)
    elif c == "pause":
        runtime.pause(a.id)
    elif c == "resume":
        runtime.resume(a.id)
    elif c == "list":
        return _list(runtime, a)
    elif c == "ps":
        return _ps(runtime, a)
    elif c == "exec":
        return runtime.exec(a.id, _exec_process(runtime, a), detach=a.detach, pid_file=a.pid_file,
                            console_socket=a.console_socket, preserve_fds=a.preserve_fds, first=first)
    elif c == "update":
        runtime.update(a.id, _update_resources(a))
    elif c == "events":
        return _events(runtime, a)
    return 0


def _log_error(a: Args | None, message: str) -> None:
    """Errors go where runc puts them: the --log file (JSON for the shim) or stderr."""
    import json

    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if a is not None and a.log_format == "json":
        line = json.dumps({"level": "error", "msg": message, "time": now})
    else:
        line = f'time="{now}" level=error msg={json.dumps(message)}'
    if a is not None and a.log:
        with open(a.log, "a") as f:
            f.write(line + "\n")
    print(line if a is None or a.log_format != "json" else message, file=sys.stderr)


def _fail(a: Args | None, message: str) -> int:
    """Log the error; ``exec`` failures exit 255 with runc's "exec failed:" prefix, everything else 1."""
    if a is not None and getattr(a, "verb", None) == "exec":
        _log_error(a, f"exec failed: {message}")
        return 255
    _log_error(a, message)
    return 1


def main(argv: list[str]) -> int:
    """Run one command; returns the exit status."""
    a = None
    try:
        a = parse(argv)
        if a.help:
            print(f"usage: sampan-runc [global options] {{{','.join(_VERBS)}}} [options] [arguments]")
            return 0
        if a.version:
            from sampan import __version__

            print(f"sampan-runc version {__version__}\nspec: 1.2.0")
            return 0
        if not a.verb:
            raise InvalidArgument("no command given (see sampan-runc --help)")
        if a.verb not in ("create", "run", "exec"):
            return dispatch(a)
        from sampan.runtime.first_process import InitProcess

        first = InitProcess(a.preserve_fds)  # before the imports and the spec: see first_process
        try:
            return dispatch(a, first)
        finally:
            first.abandon()
    except SampanError as e:
        return _fail(a, " ".join(str(e).split()))
    except OSError as e:
        return _fail(a, f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - engines read one error line, never a traceback
        _log_error(a, f"internal error: {type(e).__name__}: {e}")
        return 1

