"""``sampan-runc``: runc's command line over ``sampan.runtime.container.Runtime``.

Engines (containerd's shim, Docker) drive runtimes by this exact interface: global ``--root``, ``--log`` and
``--log-format json`` (the shim reads errors from the log file), the verbs and their flags, JSON on stdout for
``state``/``ps --format json``/``features``, and exit status 1 on errors.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

from sampan.errors import InvalidArgument, SampanError

TYPE_CHECKING = False  # typing/collections.abc are not imported at run time: start-up cost
if TYPE_CHECKING:
    from argparse import ArgumentParser as _Parser
    from argparse import Namespace
    from typing import Any


REMAINDER = "..."  # argparse.REMAINDER, without importing argparse before a re-exec




def _create_args(c: _Parser, run: bool = False) -> None:
    c.add_argument("-b", "--bundle", default=".")
    c.add_argument("--pid-file")
    c.add_argument("--console-socket")
    c.add_argument("--no-pivot", action="store_true")
    c.add_argument("--no-new-keyring", action="store_true")
    c.add_argument("--preserve-fds", type=int, default=0)
    if run:
        c.add_argument("-d", "--detach", action="store_true")
        c.add_argument("--keep", action="store_true")


def _exec_args(c: _Parser) -> None:
    c.add_argument("command", nargs=REMAINDER)
    c.add_argument("-p", "--process")
    c.add_argument("-d", "--detach", action="store_true")
    c.add_argument("-t", "--tty", action="store_true")
    c.add_argument("--console-socket")
    c.add_argument("--pid-file")
    c.add_argument("-e", "--env", action="append", default=[])
    c.add_argument("-u", "--user")
    c.add_argument("-g", "--additional-gids", action="append", type=int, default=[])
    c.add_argument("--cwd")
    c.add_argument("-c", "--cap", action="append", default=[])
    c.add_argument("--no-new-privs", action="store_true")
    c.add_argument("--preserve-fds", type=int, default=0)
    c.add_argument("--process-label")
    c.add_argument("--apparmor")
    c.add_argument("--ignore-paused", action="store_true")
    c.add_argument("--cgroup", action="append", default=[])


def _update_args(c: _Parser) -> None:
    c.add_argument("-r", "--resources")
    for flag in ("--memory", "--memory-swap", "--memory-reservation", "--kernel-memory", "--cpu-shares",
                 "--cpu-quota", "--cpu-period", "--cpuset-cpus", "--cpuset-mems", "--pids-limit",
                 "--blkio-weight", "--cpu-rt-period", "--cpu-rt-runtime", "--l3-cache-schema", "--mem-bw-schema"):
        c.add_argument(flag)


def _list_args(c: _Parser, ps: bool = False) -> None:
    c.add_argument("-f", "--format", default="table", choices=["table", "json"])
    if ps:
        c.add_argument("ps_args", nargs=REMAINDER)
    else:
        c.add_argument("-q", "--quiet", action="store_true")


def _none(_: _Parser) -> None:
    return None


# verb -> (takes a container id, adds the verb's own flags)
_VERBS: dict[str, tuple[bool, Any]] = {
    "create": (True, _create_args), "run": (True, lambda c: _create_args(c, run=True)),
    "start": (True, _none), "state": (True, _none), "pause": (True, _none), "resume": (True, _none),
    "delete": (True, lambda c: c.add_argument("-f", "--force", action="store_true")),
    "kill": (True, lambda c: (c.add_argument("signal", nargs="?", default="SIGTERM"),
                              c.add_argument("-a", "--all", action="store_true"))),
    "list": (False, _list_args), "ps": (True, lambda c: _list_args(c, ps=True)),
    "exec": (True, _exec_args), "update": (True, _update_args),
    "events": (True, lambda c: (c.add_argument("--stats", action="store_true"),
                                c.add_argument("--interval", default="5s"))),
    "spec": (False, lambda c: (c.add_argument("-b", "--bundle", default="."),
                               c.add_argument("--rootless", action="store_true"))),
    "features": (False, _none),
}


def _parser(verb: str | None) -> _Parser:
    """Only the verb being run gets its sub-parser built: building all of them costs more than the verb."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # type: ignore[override]
            raise InvalidArgument(message)

    p = Parser(prog="sampan-runc", allow_abbrev=False)
    p.add_argument("--root", default="/run/sampan-runc")
    p.add_argument("--log", default="")
    p.add_argument("--log-format", default="text", choices=["text", "json"])
    p.add_argument("--debug", action="store_true")
    p.add_argument("--systemd-cgroup", action="store_true")
    p.add_argument("--rootless", default="auto")
    p.add_argument("--criu", default="")
    p.add_argument("-v", "--version", action="store_true")
    sub = p.add_subparsers(dest="verb")
    for name, (takes_id, add) in _VERBS.items():
        if verb in _VERBS and name != verb:
            continue
        c = sub.add_parser(name)
        if takes_id:
            c.add_argument("id")
        add(c)
    return p


def _signal(text: str) -> int:
    name = text.upper()
    if name.isdigit():
        return int(name)
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(getattr(signal.Signals, name))
    except AttributeError:
        raise InvalidArgument(f"unknown signal {text!r}") from None


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _exec_process(runtime: Any, a: Namespace) -> dict[str, Any]:
    """The process to exec: a process.json, or the container's process with runc's command-line overrides."""
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


def _update_resources(a: Namespace) -> dict[str, Any]:
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


def _ps(runtime: Any, a: Namespace) -> int:
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


def _list(runtime: Any, a: Namespace) -> int:
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


def _events(runtime: Any, a: Namespace) -> int:
    from sampan.units import parse_duration

    interval = parse_duration(a.interval)
    while True:
        print(json.dumps({"type": "stats", "id": a.id, "data": runtime.stats(a.id)}), flush=True)
        if a.stats:
            return 0
        time.sleep(interval)


def _spec(a: Namespace) -> int:
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


def dispatch(a: Namespace) -> int:
    if a.verb == "spec":
        return _spec(a)
    if a.verb == "features":
        return _features()
    from sampan.runtime.container import Runtime

    runtime = Runtime(a.root)
    c = a.verb
    if c == "create":
        runtime.create(a.id, a.bundle, pid_file=a.pid_file, console_socket=a.console_socket,
                       no_pivot=a.no_pivot, preserve_fds=a.preserve_fds)
    elif c == "run":
        return runtime.run(a.id, a.bundle, detach=a.detach, pid_file=a.pid_file, console_socket=a.console_socket,
                           no_pivot=a.no_pivot, preserve_fds=a.preserve_fds)
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
                            console_socket=a.console_socket, preserve_fds=a.preserve_fds)
    elif c == "update":
        runtime.update(a.id, _update_resources(a))
    elif c == "events":
        return _events(runtime, a)
    return 0


def _log_error(a: Namespace | None, message: str) -> None:
    """Errors go where runc puts them: the --log file (JSON for the shim) or stderr."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if a is not None and a.log_format == "json":
        line = json.dumps({"level": "error", "msg": message, "time": now})
    else:
        line = f'time="{now}" level=error msg={json.dumps(message)}'
    if a is not None and a.log:
        with open(a.log, "a") as f:
            f.write(line + "\n")
    print(line if a is None or a.log_format != "json" else message, file=sys.stderr)


def _fail(a: Namespace | None, message: str) -> int:
    """Log the error; ``exec`` failures exit 255 with runc's "exec failed:" prefix, everything else 1."""
    if a is not None and getattr(a, "verb", None) == "exec":
        _log_error(a, f"exec failed: {message}")
        return 255
    _log_error(a, message)
    return 1


def main(argv: list[str], verb: str | None) -> int:
    """Run one command; ``entry.main`` found the verb (and re-executed read-only where needed)."""
    a = None
    try:
        a = _parser(verb).parse_args(argv)
        if a.version:
            from sampan import __version__

            print(f"sampan-runc version {__version__}\nspec: 1.2.0")
            return 0
        if not a.verb:
            raise InvalidArgument("no command given (see sampan-runc --help)")
        return dispatch(a)
    except SampanError as e:
        return _fail(a, " ".join(str(e).split()))
    except OSError as e:
        return _fail(a, f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - engines read one error line, never a traceback
        _log_error(a, f"internal error: {type(e).__name__}: {e}")
        return 1

