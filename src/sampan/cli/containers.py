"""Container commands: run, create, start, stop, restart, kill, rm, ps, logs, exec, attach, wait, top, rename,
pause, unpause, update, port, container inspect and prune.

Each parses Docker's flags, calls one engine verb and formats the answer. ``run`` and ``create`` map every
engine error to Docker's status 125; a container that started and failed to exec its program gives 126/127.
"""

from __future__ import annotations

import argparse
import os
import sys
from argparse import Namespace
from typing import Any

from sampan.cli.command import arg, command, parse_filters
from sampan.engine.context import Engine
from sampan.errors import InvalidArgument, SampanError

# ---------------------------------------------------------------------------------------------- run/create flags

_CREATE_ARGS = (
    arg("image", metavar="IMAGE"),
    arg("command", nargs=argparse.REMAINDER, metavar="COMMAND"),
    arg("--name", default="", help="Assign a name to the container"),
    arg("-i", "--interactive", action="store_true", help="Keep STDIN open even if not attached"),
    arg("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY"),
    arg("-a", "--attach", action="append", choices=["stdin", "stdout", "stderr", "STDIN", "STDOUT", "STDERR"],
        help="Attach to STDIN, STDOUT or STDERR"),
    arg("-e", "--env", action="append", default=[], help="Set environment variables"),
    arg("--env-file", action="append", default=[], help="Read in a file of environment variables"),
    arg("-w", "--workdir", default="", help="Working directory inside the container"),
    arg("-u", "--user", default="", help="Username or UID (format: <name|uid>[:<group|gid>])"),
    arg("--group-add", action="append", default=[], help="Add additional groups to join"),
    arg("--entrypoint", default=None, help="Overwrite the default ENTRYPOINT of the image"),
    arg("-h", "--hostname", default="", help="Container host name"),
    arg("--domainname", default="", help="Container NIS domain name"),
    arg("--init", action="store_true", help="Run an init inside the container that forwards signals and reaps"),
    arg("-l", "--label", action="append", default=[], help="Set meta data on a container"),
    arg("--label-file", action="append", default=[], help="Read in a line delimited file of labels"),
    arg("--stop-signal", default="", help="Signal to stop the container"),
    arg("--stop-timeout", type=int, default=None, help="Timeout (in seconds) to stop a container"),
    arg("-v", "--volume", action="append", default=[], help="Bind mount a volume"),
    arg("--mount", action="append", default=[], help="Attach a filesystem mount to the container"),
    arg("--tmpfs", action="append", default=[], help="Mount a tmpfs directory"),
    arg("--volumes-from", action="append", default=[], help="Mount volumes from the specified container(s)"),
    arg("--read-only", action="store_true", help="Mount the container's root filesystem as read only"),
    arg("--shm-size", default=None, help="Size of /dev/shm"),
    arg("-m", "--memory", default=None, help="Memory limit"),
    arg("--memory-swap", default=None, help="Swap limit equal to memory plus swap: '-1' for unlimited swap"),
    arg("--memory-reservation", default=None, help="Memory soft limit"),
    arg("--cpus", default=None, help="Number of CPUs"),
    arg("-c", "--cpu-shares", type=int, default=None, help="CPU shares (relative weight)"),
    arg("--cpuset-cpus", default="", help="CPUs in which to allow execution (0-3, 0,1)"),
    arg("--pids-limit", type=int, default=None, help="Tune container pids limit (-1 for unlimited)"),
    arg("--ulimit", action="append", default=[], help="Ulimit options"),
    arg("--oom-kill-disable", action="store_true", help="Disable OOM Killer"),
    arg("--oom-score-adj", type=int, default=0, help="Tune host's OOM preferences (-1000 to 1000)"),
    arg("--device", action="append", default=[], help="Add a host device to the container"),
    arg("--cap-add", action="append", default=[], help="Add Linux capabilities"),
    arg("--cap-drop", action="append", default=[], help="Drop Linux capabilities"),
    arg("--privileged", action="store_true", help="Give extended privileges to this container"),
    arg("--security-opt", action="append", default=[], help="Security Options"),
    arg("--sysctl", action="append", default=[], help="Sysctl options"),
    arg("--pid", default="", help="PID namespace to use"),
    arg("--ipc", default="", help="IPC mode to use"),
    arg("--uts", default="", help="UTS namespace to use"),
    arg("--cgroupns", default="", help="Cgroup namespace to use (host|private); default: private on cgroup v2, "
        "host on v1"),
    arg("--network", "--net", default="", help="Connect a container to a network (bridge, NAME, none, host, "
        "container:NAME)"),
    arg("--network-alias", "--net-alias", action="append", default=[], help="Add network-scoped alias"),
    arg("--ip", default="", help="IPv4 address (e.g., 172.30.100.104)"),
    arg("--mac-address", default="", help="Container MAC address (e.g., 92:d0:c6:0a:29:33)"),
    arg("-p", "--publish", action="append", default=[], help="Publish a container's port(s) to the host"),
    arg("-P", "--publish-all", action="store_true", help="Publish all exposed ports to random ports"),
    arg("--dns", action="append", default=[], help="Set custom DNS servers"),
    arg("--dns-search", action="append", default=[], help="Set custom DNS search domains"),
    arg("--dns-option", "--dns-opt", action="append", default=[], help="Set DNS options"),
    arg("--add-host", action="append", default=[], help="Add a custom host-to-IP mapping (host:ip)"),
    arg("--restart", default="no", help="Restart policy to apply when a container exits"),
    arg("--health-cmd", default="", help="Command to run to check health"),
    arg("--health-interval", default="", help="Time between running the check (ms|s|m|h)"),
    arg("--health-timeout", default="", help="Maximum time to allow one check to run (ms|s|m|h)"),
    arg("--health-retries", type=int, default=0, help="Consecutive failures needed to report unhealthy"),
    arg("--health-start-period", default="", help="Start period for the container to initialize (ms|s|m|h)"),
    arg("--no-healthcheck", action="store_true", help="Disable any container-specified HEALTHCHECK"),
    arg("--log-driver", default="json-file", help="Logging driver for the container"),
    arg("--log-opt", action="append", default=[], help="Log driver options"),
    arg("--runtime", default="", help="Runtime to use for this container (sampan, or an OCI runtime binary)"),
    arg("--cgroup-parent", default="", help="Optional parent cgroup for the container"),
    arg("--pull", default="missing", help='Pull image before running ("always", "missing", "never")'),
    arg("--platform", default="", help="Set platform if server is multi-platform capable"),
    arg("--proc-view", default="true", choices=["true", "false"],
        help="Show the container's limits in /proc/meminfo, cpuinfo, stat, uptime, loadavg, diskstats, swaps"),
    arg("--rm", action="store_true", help="Automatically remove the container when it exits"),
)

_RUN_ARGS = (
    arg("-d", "--detach", action="store_true", help="Run container in background and print container ID"),
    arg("--sig-proxy", default="true", choices=["true", "false"], help="Proxy received signals to the process"),
    arg("--detach-keys", default="", help="Override the key sequence for detaching a container"),
)


def _key_values(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"invalid {what}: '{item}'")
        out[key] = value
    return out


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
    except OSError as e:
        raise InvalidArgument(f"open {path}: {e.strerror.lower() if e.strerror else e}") from None


def _env(a: Namespace) -> list[str]:
    """--env-file lines then -e values; a bare NAME takes the value from our environment (or is dropped)."""
    out = []
    for item in [line for path in a.env_file for line in _read_lines(path)] + a.env:
        name, eq, _ = item.partition("=")
        if not name:
            raise InvalidArgument(f"invalid environment variable: {item}")
        if eq:
            out.append(item)
        elif name in os.environ:
            out.append(f"{name}={os.environ[name]}")
    return out


def _duration_ns(text: str, flag: str) -> int:
    from sampan.units import parse_duration

    if not text:
        return 0
    seconds = parse_duration(text)
    if seconds < 0:
        raise InvalidArgument(f"{flag} cannot be negative")
    return int(seconds * 1e9)


def _parse_mount(text: str) -> dict[str, Any]:
    """--mount's CSV (type=,source=/src=,target=/dst=/destination=,readonly,bind-propagation=,volume-nocopy,
    tmpfs-size=,tmpfs-mode=) as a Docker Mount object."""
    import csv

    mount: dict[str, Any] = {"Type": "volume"}
    for field in next(csv.reader([text])) if text else []:
        key, eq, value = field.partition("=")
        key = key.strip().lower()
        if key == "type":
            mount["Type"] = value
        elif key in ("source", "src"):
            mount["Source"] = value
        elif key in ("target", "dst", "destination"):
            mount["Target"] = value
        elif key in ("readonly", "ro"):
            mount["ReadOnly"] = not eq or value in ("1", "true")
        elif key == "bind-propagation":
            mount.setdefault("BindOptions", {})["Propagation"] = value
        elif key == "volume-nocopy":
            mount.setdefault("VolumeOptions", {})["NoCopy"] = not eq or value in ("1", "true")
        elif key == "tmpfs-size":
            from sampan.units import parse_size

            mount.setdefault("TmpfsOptions", {})["SizeBytes"] = parse_size(value)
        elif key == "tmpfs-mode":
            try:
                mount.setdefault("TmpfsOptions", {})["Mode"] = int(value, 8)
            except ValueError:
                raise InvalidArgument(f"invalid value for tmpfs-mode: {value}") from None
        elif key in ("consistency", "bind-nonrecursive", "volume-driver", "volume-label", "volume-opt"):
            continue
        else:
            raise InvalidArgument(f"invalid field '{key}' must be a key=value pair")
    if "Target" not in mount:
        raise InvalidArgument("invalid argument for --mount: target is required")
    return mount


def _create_options(a: Namespace, *, detach: bool = True, auto_remove: bool = False) -> Any:
    from sampan.engine.containers import options
    from sampan.engine.containers.create import CreateOptions
    from sampan.engine.specgen import RunOptions

    network_mode, network = options.network_mode(a.network)
    tmpfs = {}
    for item in a.tmpfs:
        destination, _, tmpfs_options = item.partition(":")
        tmpfs[destination] = tmpfs_options
    labels = _key_values([line for path in a.label_file for line in _read_lines(path)] + a.label, "label")
    attach = {s.lower() for s in a.attach or []}
    if not detach and not attach:
        attach = {"stdout", "stderr"} | ({"stdin"} if a.interactive else set())
    healthcheck: dict[str, Any] = {}
    if a.health_cmd:
        healthcheck["Test"] = ["CMD-SHELL", a.health_cmd]
    for key, flag in (("Interval", "interval"), ("Timeout", "timeout"), ("StartPeriod", "start-period")):
        value = getattr(a, "health_" + flag.replace("-", "_"))
        if value:
            healthcheck[key] = _duration_ns(value, f"--health-{flag}")
    if a.health_retries:
        if a.health_retries < 0:
            raise InvalidArgument("--health-retries cannot be negative")
        healthcheck["Retries"] = a.health_retries
    run = RunOptions(
        command=list(a.command), entrypoint=options.entrypoint(None if a.entrypoint is None else [a.entrypoint]),
        env=_env(a), workdir=a.workdir, user=a.user, group_add=a.group_add, hostname=a.hostname,
        domainname=a.domainname, tty=a.tty, stdin_open=a.interactive, read_only=a.read_only, privileged=a.privileged, cap_add=a.cap_add, cap_drop=a.cap_drop,
        security_opt=a.security_opt, sysctls=_key_values(a.sysctl, "sysctl"), ulimits=a.ulimit, memory=a.memory,
        memory_swap=a.memory_swap, memory_reservation=a.memory_reservation, cpus=a.cpus,
        cpu_shares=a.cpu_shares, cpuset_cpus=a.cpuset_cpus, pids_limit=a.pids_limit,
        oom_kill_disable=a.oom_kill_disable, devices=a.device, tmpfs=tmpfs, shm_size=a.shm_size, init=a.init,
        network_mode=network_mode, pid_mode=a.pid, ipc_mode=a.ipc, uts_mode=a.uts, cgroupns_mode=a.cgroupns,
        labels=labels, stop_signal=a.stop_signal, cgroup_parent=a.cgroup_parent, oom_score_adj=a.oom_score_adj)
    return CreateOptions(
        image=a.image, run=run, name=a.name, binds=a.volume, mounts=[_parse_mount(m) for m in a.mount],
        volumes_from=a.volumes_from, restart=a.restart, auto_remove=auto_remove, log_driver=a.log_driver,
        log_opts=_key_values(a.log_opt, "log-opt"), healthcheck=healthcheck, no_healthcheck=a.no_healthcheck,
        stop_timeout=a.stop_timeout, runtime=a.runtime, proc_view=a.proc_view == "true",
        attach_stdin="stdin" in attach,
        attach_stdout="stdout" in attach, attach_stderr="stderr" in attach,
        network=network, network_aliases=a.network_alias, ip=a.ip, mac_address=a.mac_address,
        publish=a.publish, publish_all=a.publish_all, dns=a.dns, dns_search=a.dns_search,
        dns_options=a.dns_option, extra_hosts=a.add_host)


def _create(engine: Engine, a: Namespace, *, detach: bool, auto_remove: bool) -> Any:
    from sampan.engine.containers.create import create

    options = _create_options(a, detach=detach, auto_remove=auto_remove)
    _ensure_image(engine, a.image, a.pull, a.platform)
    return create(engine, options)


def _ensure_image(engine: Engine, name: str, policy: str, platform: str) -> None:
    """``--pull missing|always|never``: pull as ``docker run`` does, its progress on stderr."""
    from sampan.engine import images
    from sampan.errors import NotFound
    from sampan.image import reference

    if policy not in ("missing", "always", "never"):
        raise InvalidArgument(f'invalid pull option: "{policy}": must be one of "always", "missing" or "never"')
    if policy != "always":
        try:
            images.resolve(engine, name)
            return
        except NotFound:
            if policy == "never":
                raise
    ref = reference.parse(name)
    from sampan.cli.distribution import progress_printer
    from sampan.engine.pull import pull

    if policy == "missing":
        print(f"Unable to find image '{ref.with_default_tag().familiar()}' locally", file=sys.stderr, flush=True)
    pull(engine, name, platform=platform or None, progress=progress_printer(sys.stderr))


def _as_engine_error(e: SampanError) -> SampanError:
    """``docker run/create`` exit 125 for every error of the engine (not of the container's program)."""
    from sampan.engine.containers.monitor import StartError

    if not isinstance(e, StartError):
        e.exit_code = 125
    return e


@command("Create a new container", *_CREATE_ARGS)
def create(engine: Engine, a: Namespace) -> None:
    try:
        record = _create(engine, a, detach=True, auto_remove=a.rm)
    except SampanError as e:
        raise _as_engine_error(e) from None
    print(record.id)


@command("Create and run a new container from an image", *_CREATE_ARGS, *_RUN_ARGS)
def run(engine: Engine, a: Namespace) -> int:
    from sampan.engine.containers import lifecycle

    try:
        if a.detach and a.attach:
            raise InvalidArgument("Conflicting options: -a and -d")
        detach_keys = _detach_keys(a.detach_keys)
        record = _create(engine, a, detach=a.detach, auto_remove=a.rm)
        attach = None
        if not a.detach:
            attach = {"stdin": record.config["AttachStdin"], "stdout": record.config["AttachStdout"],
                      "stderr": record.config["AttachStderr"], **_terminal_size(a.tty)}
        _, sock = lifecycle.start(engine, record.id, attach, wait_for_host=a.detach)
    except SampanError as e:
        raise _as_engine_error(e) from None
    if a.detach:
        print(record.id)
        return 0
    return _attached(engine, record.id, sock, stdin=bool(attach and attach["stdin"]), tty=a.tty,
                     detach_keys=detach_keys, proxy=a.sig_proxy == "true")


def _terminal_size(tty: bool) -> dict[str, Any]:
    """Our terminal's size, for the container's pty before its program starts (Docker's ConsoleSize)."""
    for fd in (1, 0):
        if tty and os.isatty(fd):
            size = os.get_terminal_size(fd)
            return {"size": [size.lines, size.columns]}
    return {}


def _detach_keys(text: str) -> bytes:
    from sampan.monitor.client import DEFAULT_DETACH_KEYS, parse_detach_keys

    if not text:
        return DEFAULT_DETACH_KEYS
    try:
        return parse_detach_keys(text)
    except ValueError as e:
        raise InvalidArgument(str(e)) from None


def _attached(engine: Engine, container_id: str, sock: Any, *, stdin: bool, tty: bool, detach_keys: bytes,
              proxy: bool) -> int:
    from sampan.monitor.client import session
    from sampan.store import containers as records

    if sock is None:
        return 0
    with sock:
        code = session(sock, stdin=stdin, tty=tty, detach_keys=detach_keys, proxy_signals=proxy)
    if code is None:
        print("\nread escape sequence", file=sys.stderr)
        return 0
    if code < 0:
        record = records.get(engine.db.conn, container_id)
        return record.exit_code if record is not None else 0
    return code


# ---------------------------------------------------------------------------------------------- lifecycle


def _each(names: list[str], verb: Any) -> int:
    """Docker's multi-container verbs: the name on success, one error line per failure, status 1 if any."""
    status = 0
    for name in names:
        try:
            verb(name)
        except SampanError as e:
            print("Error: " + " ".join(str(e).split()), file=sys.stderr)
            status = 1
            continue
        print(name)
    return status


@command("Start one or more stopped containers",
         arg("containers", nargs="+", metavar="CONTAINER"),
         arg("-a", "--attach", action="store_true", help="Attach STDOUT/STDERR and forward signals"),
         arg("-i", "--interactive", action="store_true", help="Attach container's STDIN"),
         arg("--detach-keys", default="", help="Override the key sequence for detaching a container"))
def start(engine: Engine, a: Namespace) -> int:
    from sampan.engine.containers import lifecycle

    if a.attach or a.interactive:
        if len(a.containers) > 1:
            raise InvalidArgument("you cannot start and attach multiple containers at once")
        keys = _detach_keys(a.detach_keys)
        record, sock = lifecycle.start(engine, a.containers[0], {"stdin": a.interactive, "stdout": True,
                                                                 "stderr": True}, wait_for_host=False)
        if sock is None:  # already running: attach through its monitor's socket
            sock = _connect(engine, record.id, a.interactive)
        return _attached(engine, record.id, sock, stdin=a.interactive, tty=bool(record.config.get("Tty")),
                         detach_keys=keys, proxy=True)
    return _each(a.containers, lambda name: lifecycle.start(engine, name))


def _connect(engine: Engine, container_id: str, stdin: bool) -> Any:
    from sampan.engine.containers.model import connect_monitor
    from sampan.monitor.client import hello

    sock = connect_monitor(engine, container_id)
    hello(sock, stdin)
    return sock


@command("Stop one or more running containers",
         arg("containers", nargs="+", metavar="CONTAINER"),
         arg("-t", "--time", type=int, default=None, help="Seconds to wait before killing the container"),
         arg("-s", "--signal", default=None, help="Signal to send to the container"))
def stop(engine: Engine, a: Namespace) -> int:
    from sampan.engine.containers import lifecycle

    return _each(a.containers, lambda name: lifecycle.stop(engine, name, timeout=a.time, sig=a.signal))


@command("Restart one or more containers",
         arg("containers", nargs="+", metavar="CONTAINER"),
         arg("-t", "--time", type=int, default=None, help="Seconds to wait before killing the container"),
         arg("-s", "--signal", default=None, help="Signal to send to the container"))
def restart(engine: Engine, a: Namespace) -> int:
    from sampan.engine.containers import lifecycle

    return _each(a.containers, lambda name: lifecycle.restart(engine, name, timeout=a.time, sig=a.signal))


@command("Kill one or more running containers",
         arg("containers", nargs="+", metavar="CONTAINER"),
         arg("-s", "--signal", default="KILL", help="Signal to send to the container"))
def kill(engine: Engine, a: Namespace) -> int:
    from sampan.engine.containers import lifecycle

    return _each(a.containers, lambda name: lifecycle.kill(engine, name, a.signal))


@command("Remove one or more containers",
         arg("containers", nargs="+", metavar="CONTAINER"),
         arg("-f", "--force", action="store_true", help="Force the removal of a running container"),
         arg("-v", "--volumes", action="store_true", help="Remove anonymous volumes associated with the container"))
def rm(engine: Engine, a: Namespace) -> int:
    from sampan.engine.containers.remove import remove

    return _each(a.containers, lambda name: remove(engine, name, force=a.force, volumes=a.volumes))


@command("Pause all processes within one or more containers", arg("containers", nargs="+", metavar="CONTAINER"))
def pause(engine: Engine, a: Namespace) -> int:
    from sampan.engine.containers import lifecycle

    return _each(a.containers, lambda name: lifecycle.pause(engine, name))


@command("Unpause all processes within one or more containers", arg("containers", nargs="+", metavar="CONTAINER"))
def unpause(engine: Engine, a: Namespace) -> int:
    from sampan.engine.containers import lifecycle

    return _each(a.containers, lambda name: lifecycle.unpause(engine, name))


@command("Block until one or more containers stop, then print their exit codes",
         arg("containers", nargs="+", metavar="CONTAINER"))
def wait(engine: Engine, a: Namespace) -> int:
    from sampan.engine.containers import lifecycle

    status = 0
    for name in a.containers:
        try:
            print(lifecycle.wait(engine, name), flush=True)
        except SampanError as e:
            print("Error: " + " ".join(str(e).split()), file=sys.stderr)
            status = 1
    return status


@command("Rename a container", arg("container", metavar="CONTAINER"), arg("new_name", metavar="NEW_NAME"))
def rename(engine: Engine, a: Namespace) -> None:
    from sampan.engine.containers import lifecycle

    lifecycle.rename(engine, a.container, a.new_name)


@command("Update configuration of one or more containers",
         arg("containers", nargs="+", metavar="CONTAINER"),
         arg("-m", "--memory", default=None, help="Memory limit"),
         arg("--memory-swap", default=None, help="Swap limit equal to memory plus swap: -1 for unlimited"),
         arg("--memory-reservation", default=None, help="Memory soft limit"),
         arg("--cpus", default=None, help="Number of CPUs"),
         arg("-c", "--cpu-shares", type=int, default=None, help="CPU shares (relative weight)"),
         arg("--cpuset-cpus", default=None, help="CPUs in which to allow execution (0-3, 0,1)"),
         arg("--pids-limit", type=int, default=None, help="Tune container pids limit (-1 for unlimited)"),
         arg("--restart", default=None, help="Restart policy to apply when a container exits"))
def update(engine: Engine, a: Namespace) -> int:
    from sampan.engine.containers import lifecycle
    from sampan.engine.specgen import nano_cpus
    from sampan.units import parse_size

    changes: dict[str, Any] = {}
    if a.memory is not None:
        changes["Memory"] = parse_size(a.memory)
    if a.memory_swap is not None:
        changes["MemorySwap"] = -1 if a.memory_swap == "-1" else parse_size(a.memory_swap)
    if a.memory_reservation is not None:
        changes["MemoryReservation"] = parse_size(a.memory_reservation)
    if a.cpus is not None:
        changes["NanoCpus"] = nano_cpus(a.cpus)
    for key, value in (("CpuShares", a.cpu_shares), ("CpusetCpus", a.cpuset_cpus), ("PidsLimit", a.pids_limit),
                       ("RestartPolicy", a.restart)):
        if value is not None:
            changes[key] = value
    if not changes:
        raise InvalidArgument("you must provide one or more flags when using this command")
    return _each(a.containers, lambda name: lifecycle.update(engine, name, changes))


# ---------------------------------------------------------------------------------------------- reading


def _ps_row(engine: Engine, record: Any, no_trunc: bool, size: bool) -> dict[str, Any]:
    import time

    from sampan.engine import networks
    from sampan.engine.containers import query
    from sampan.units import human_duration, human_size

    command_text = query.command_text(record)
    if not no_trunc and len(command_text) > 20:
        command_text = command_text[:19] + "…"
    row: dict[str, Any] = {
        "ID": record.id if no_trunc else record.id[:12], "Image": record.image,
        "Command": f'"{command_text}"', "CreatedAt": _created_at(record.created),
        "RunningFor": human_duration(time.time() - record.created) + " ago",
        "Ports": networks.ports_text(engine, record.id) if record.status in ("running", "paused") else "",
        "State": record.status, "Status": query.status_text(record), "Names": record.name,
        "Labels": ",".join(f"{k}={v}" for k, v in sorted((record.config.get("Labels") or {}).items())),
        "Mounts": ",".join(m.get("Name") or m.get("Source", "") for m in record.mounts),
        "Networks": record.host_config.get("NetworkMode", ""), "Size": "",
    }
    if size:
        rw = query.container_size(engine, record.id)
        row["Size"] = f"{human_size(rw)} (virtual {human_size(rw + query.image_size(engine, record.image_id))})"
    return row


def _created_at(ts: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(ts))


@command("List containers",
         arg("-a", "--all", action="store_true", help="Show all containers (default shows just running)"),
         arg("-q", "--quiet", action="store_true", help="Only display container IDs"),
         arg("-s", "--size", action="store_true", help="Display total file sizes"),
         arg("-n", "--last", type=int, default=-1, help="Show n last created containers (includes all states)"),
         arg("-l", "--latest", action="store_true", help="Show the latest created container (includes all states)"),
         arg("--no-trunc", action="store_true", help="Don't truncate output"),
         arg("-f", "--filter", action="append", help="Filter output based on conditions provided"),
         arg("--format", default="", help="Format output using a Go template, 'table', 'table TEMPLATE' or 'json'"))
def ps(engine: Engine, a: Namespace) -> None:
    from sampan.cli.gotemplate import format_rows
    from sampan.engine.containers.query import ListOptions, list_containers

    found = list_containers(engine, ListOptions(all=a.all, last=a.last, latest=a.latest,
                                                filters=parse_filters(a.filter)))
    if a.quiet:
        if found:
            print("\n".join(r.id if a.no_trunc else r.id[:12] for r in found))
        return
    default = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
    if a.size:
        default += "\t{{.Size}}"
    headers = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "RunningFor": "CREATED",
               "Status": "STATUS", "Ports": "PORTS", "Names": "NAMES", "Size": "SIZE", "CreatedAt": "CREATED AT",
               "State": "STATE", "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS"}
    out = format_rows(a.format, [_ps_row(engine, r, a.no_trunc, a.size) for r in found], table_default=default,
                      headers=headers)
    if out:
        print(out)


@command("Fetch the logs of a container",
         arg("container", metavar="CONTAINER"),
         arg("-f", "--follow", action="store_true", help="Follow log output"),
         arg("-n", "--tail", default="all", help="Number of lines to show from the end of the logs"),
         arg("--since", default="", help="Show logs since timestamp or relative (e.g. 42m)"),
         arg("--until", default="", help="Show logs before a timestamp or relative (e.g. 42m)"),
         arg("-t", "--timestamps", action="store_true", help="Show timestamps"),
         arg("--details", action="store_true", help="Show extra details provided to logs"))
def logs(engine: Engine, a: Namespace) -> None:
    import time

    from sampan.engine.containers import model, query
    from sampan.monitor.logs import read_logs
    from sampan.store import containers as records
    from sampan.units import parse_timestamp

    record = model.lookup(engine, a.container)
    path = query.log_path(engine, record)
    if path is None:
        raise InvalidArgument('configured logging driver does not support reading')
    tail = None
    if a.tail != "all":
        try:
            tail = int(a.tail)
        except ValueError:
            raise InvalidArgument(f'invalid value for "tail": {a.tail}') from None
        if tail < 0:
            tail = None
    now = time.time()
    since = parse_timestamp(a.since, now) if a.since else None
    until = parse_timestamp(a.until, now) if a.until else None

    def stopped() -> bool:
        fresh = records.get(engine.db.conn, record.id)
        return fresh is None or model.current(engine, fresh).status not in ("running", "paused", "restarting")

    out, err = sys.stdout.buffer, sys.stderr.buffer
    for stream, data in read_logs(path, tail=tail, since=since, until=until, follow=a.follow,
                                  timestamps=a.timestamps, stop=stopped):
        target = err if stream == "stderr" else out
        target.write(data)
        if a.follow:
            target.flush()


@command("Execute a command in a running container",
         arg("container", metavar="CONTAINER"),
         arg("command", nargs=argparse.REMAINDER, metavar="COMMAND"),
         arg("-d", "--detach", action="store_true", help="Detached mode: run command in the background"),
         arg("-i", "--interactive", action="store_true", help="Keep STDIN open even if not attached"),
         arg("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY"),
         arg("-e", "--env", action="append", default=[], help="Set environment variables"),
         arg("--env-file", action="append", default=[], help="Read in a file of environment variables"),
         arg("-u", "--user", default="", help="Username or UID (format: <name|uid>[:<group|gid>])"),
         arg("-w", "--workdir", default="", help="Working directory inside the container"),
         arg("--privileged", action="store_true", help="Give extended privileges to the command"))
def exec_(engine: Engine, a: Namespace) -> int:
    if not a.command:
        raise InvalidArgument("exec requires at least 2 arguments")
    # the built-in runtime's first process, forked now: its interpreter starts (~13 ms) while this process imports
    # the engine's exec, finds the container and builds the process spec (see sampan.runtime.first_process)
    from sampan.runtime.first_process import InitProcess

    first = InitProcess(null_stdin=not a.interactive)
    try:
        from sampan.engine.containers.execute import ExecOptions, exec_in

        return exec_in(engine, a.container, ExecOptions(
            command=a.command, detach=a.detach, interactive=a.interactive, tty=a.tty, env=_env(a), user=a.user,
            workdir=a.workdir, privileged=a.privileged), first=first)
    finally:
        first.abandon()


@command("Attach local standard input, output, and error streams to a running container",
         arg("container", metavar="CONTAINER"),
         arg("--no-stdin", action="store_true", help="Do not attach STDIN"),
         arg("--sig-proxy", default="true", choices=["true", "false"], help="Proxy received signals"),
         arg("--detach-keys", default="", help="Override the key sequence for detaching a container"))
def attach(engine: Engine, a: Namespace) -> int:
    from sampan.engine.containers import model

    record = model.lookup(engine, a.container)
    if record.status == "paused":
        raise InvalidArgument("You cannot attach to a paused container, unpause it first")
    if record.status not in ("running", "restarting"):
        raise InvalidArgument("You cannot attach to a stopped container, start it first")
    stdin = not a.no_stdin and bool(record.config.get("OpenStdin"))
    sock = _connect(engine, record.id, stdin)
    return _attached(engine, record.id, sock, stdin=stdin, tty=bool(record.config.get("Tty")),
                     detach_keys=_detach_keys(a.detach_keys), proxy=a.sig_proxy == "true")


@command("Display detailed information on one or more containers",
         arg("names", nargs="+", metavar="CONTAINER"),
         arg("-f", "--format", default="", help="Format output using a Go template"),
         arg("-s", "--size", action="store_true", help="Display total file sizes"))
def inspect(engine: Engine, a: Namespace) -> int:
    from sampan.cli.inspect import print_inspected
    from sampan.engine.containers.query import inspect as inspect_container

    return print_inspected(a.names, lambda name: inspect_container(engine, name, size=a.size), a.format)


@command("Display the running processes of a container",
         arg("container", metavar="CONTAINER"),
         arg("ps_args", nargs=argparse.REMAINDER, metavar="[ps OPTIONS]"))
def top(engine: Engine, a: Namespace) -> None:
    from sampan.engine.containers.query import top as top_of

    titles, rows = top_of(engine, a.container, a.ps_args)
    widths = [max([len(t)] + [len(r[i]) for r in rows if i < len(r)]) for i, t in enumerate(titles)]
    print("   ".join(t.ljust(w) for t, w in zip(titles, widths)).rstrip())
    for row in rows:
        print("   ".join(f.ljust(w) for f, w in zip(row, widths)).rstrip())


@command("List port mappings or a specific mapping for the container",
         arg("container", metavar="CONTAINER"), arg("port", nargs="?", metavar="PRIVATE_PORT[/PROTO]"))
def port(engine: Engine, a: Namespace) -> int:
    from sampan.engine import networks
    from sampan.engine.containers import model

    record = model.lookup(engine, a.container)
    reservations = networks.port_reservations(engine, record.id) if record.status in model.ACTIVE else []
    if a.port:
        number, _, proto = a.port.partition("/")
        wanted = [p for p in reservations if str(p["container_port"]) == number and p["proto"] == (proto or "tcp")]
        if not wanted:
            raise InvalidArgument(f"No public port '{number}/{proto or 'tcp'}' published for {a.container}")
        for p in wanted:
            print(f"{p['host_ip'] or '0.0.0.0'}:{p['host_port']}")
        return 0
    for p in reservations:
        print(f"{p['container_port']}/{p['proto']} -> {p['host_ip'] or '0.0.0.0'}:{p['host_port']}")
    return 0


@command("Remove all stopped containers",
         arg("-f", "--force", action="store_true", help="Do not prompt for confirmation"),
         arg("--filter", action="append", help="Provide filter values (e.g. 'until=<timestamp>')"))
def prune(engine: Engine, a: Namespace) -> None:
    from sampan.cli.output import confirm
    from sampan.engine.containers.remove import prune as prune_containers
    from sampan.units import human_size

    if not confirm("WARNING! This will remove all stopped containers.", a.force):
        return
    report = prune_containers(engine, parse_filters(a.filter))
    if report.removed:
        print("Deleted Containers:")
        print("\n".join(report.removed))
        print()
    print(f"Total reclaimed space: {human_size(report.reclaimed)}")
