"""``docker create``: from an image and run options to a container record, its writable layer and its volumes.

Everything the user gave is checked here, before anything exists: the spec is built once against a placeholder
root with ``specgen.build_spec`` (which refuses what dockerd refuses), the restart policy, log options, health
check and mounts are validated, and only then are volumes made and the record inserted. A failure after that
point removes what was made, so a refused ``create`` leaves no container, directory or anonymous volume behind.
The real spec is built at each start, against the mounted root (users and groups are looked up there, as dockerd
does), from the options saved next to the bundle.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sampan.engine import events, images, networks
from sampan.engine import volumes as volume_engine
from sampan.engine.containers import model
from sampan.engine.context import Engine
from sampan.engine.specgen import RunOptions, build_spec, cgroupns_mode, nano_cpus, parse_signal
from sampan.errors import Conflict, InvalidArgument, NotFound, SampanError
from sampan.runtime.cgroups import detect_version
from sampan.store import containers as records
from sampan.store.containers import ContainerRecord
from sampan.units import parse_size

RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")
LOG_DRIVERS = ("json-file", "none")
_LOG_OPTS = {"max-size", "max-file", "compress"}
_PROPAGATION = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
OPTIONS_FILE = "options.json"


@dataclass
class CreateOptions:
    """``docker create`` beyond what shapes the spec (``run``): naming, mounts as the user wrote them, policies.

    ``binds`` are ``-v`` values (``[SRC:]DST[:OPTS]``); ``mounts`` are Docker Mount objects (``--mount`` parsed:
    Type, Source, Target, ReadOnly, BindOptions.Propagation, VolumeOptions.NoCopy, TmpfsOptions.SizeBytes/Mode).
    ``healthcheck`` is a Docker HealthConfig that overrides the image's field by field.
    """

    image: str
    run: RunOptions = field(default_factory=RunOptions)
    name: str = ""
    binds: list[str] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    volumes_from: list[str] = field(default_factory=list)
    restart: str = "no"
    auto_remove: bool = False
    log_driver: str = "json-file"
    log_opts: dict[str, str] = field(default_factory=dict)
    healthcheck: dict[str, Any] = field(default_factory=dict)
    no_healthcheck: bool = False
    stop_timeout: int | None = None
    runtime: str = ""
    proc_view: bool = True  # the container-aware /proc files (sampan.procview)
    attach_stdin: bool = False
    attach_stdout: bool = False
    attach_stderr: bool = False
    # Networking (``run.network_mode`` "private" joins ``network``; "none", "host", "container:" join none).
    network: str = "bridge"
    network_aliases: list[str] = field(default_factory=list)
    ip: str = ""
    mac_address: str = ""
    publish: list[str] = field(default_factory=list)  # -p specs
    publish_all: bool = False
    expose: list[str] = field(default_factory=list)  # --expose / the API's Config.ExposedPorts: PORT[/PROTO]
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    extra_hosts: list[str] = field(default_factory=list)  # --add-host NAME:IP


@dataclass
class _Volume:
    """A resolved volume or bind for the record (``Mounts``) and the spec (``RunOptions.mounts``)."""

    kind: str  # "volume", "bind" or "tmpfs"
    source: str  # host path (bind), volume name, or "" for tmpfs
    destination: str
    read_only: bool = False
    propagation: str = ""
    no_copy: bool = False
    anonymous: bool = False
    tmpfs_options: str = ""
    mode: str = ""


# ---------------------------------------------------------------------------------------------- validation


def parse_restart(policy: str) -> tuple[str, int]:
    name, _, count = policy.partition(":")
    name = name or "no"
    if name not in RESTART_POLICIES:
        raise InvalidArgument(f"invalid restart policy {policy!r}: must be no, always, unless-stopped or "
                              "on-failure[:max-retries]")
    if count:
        if name != "on-failure":
            raise InvalidArgument(f"invalid restart policy {policy!r}: maximum retry count can only be used with "
                                  "'on-failure'")
        if not count.isdigit():
            raise InvalidArgument(f"invalid restart policy {policy!r}: maximum retry count must be an integer")
    return name, int(count or 0)


def _check_log(driver: str, opts: dict[str, str]) -> None:
    if driver not in LOG_DRIVERS:
        raise InvalidArgument(f'failed to create container: logger: no log driver named "{driver}" is '
                              "registered (json-file and none are)")
    for key, value in opts.items():
        if driver == "none" or key not in _LOG_OPTS:
            raise InvalidArgument(f"unknown log opt '{key}' for {driver} log driver")
        if key == "max-size" and parse_size(value) <= 0:
            raise InvalidArgument(f"invalid max-size {value!r}")
        if key == "max-file" and (not value.isdigit() or int(value) < 1):
            raise InvalidArgument("max-file cannot be less than 1")
        if key == "compress" and value not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"invalid value for compress: {value!r}")
    if "max-file" in opts and int(opts["max-file"]) > 1 and "max-size" not in opts:
        raise InvalidArgument("max-file cannot be set unless max-size is set")


def _duration_ns(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidArgument(f"{what} must be a non-negative duration")
    if 0 < value < 1_000_000:
        raise InvalidArgument(f"{what} in healthcheck cannot be less than 1ms")
    return value


def _healthcheck(image_config: dict[str, Any], options: CreateOptions) -> dict[str, Any] | None:
    """The image's HEALTHCHECK with the flags over it, or None (``--no-healthcheck``, ``NONE`` test)."""
    if options.no_healthcheck:
        if any(options.healthcheck.get(k) for k in ("Test", "Interval", "Timeout", "StartPeriod", "Retries")):
            raise InvalidArgument("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    merged = dict(image_config.get("Healthcheck") or {})
    for key, value in options.healthcheck.items():
        if value:
            merged[key] = value
    if not merged:
        return None
    test = merged.get("Test") or []
    if not isinstance(test, list) or not all(isinstance(t, str) for t in test):
        raise InvalidArgument("healthcheck Test must be a list of strings")
    for key in ("Interval", "Timeout", "StartPeriod"):
        if key in merged:
            _duration_ns(merged[key], f"--health-{key.lower().replace('startperiod', 'start-period')}")
    if merged.get("Retries", 0) < 0:
        raise InvalidArgument("--health-retries cannot be negative")
    return merged


def _split_bind(spec: str) -> list[str]:
    """``-v`` splits at ":" (Docker's Linux parser): SRC:DST:OPTS, DST:OPTS or DST."""
    parts = spec.split(":")
    if not spec or len(parts) > 3 or any(not p for p in parts[:2]):
        raise InvalidArgument(f"invalid volume specification: '{spec}'")
    return parts


def _bind_modes(spec: str, modes: str) -> tuple[bool, str, bool]:
    read_only, propagation, no_copy = False, "", False
    for mode in modes.split(",") if modes else []:
        if mode in ("ro", "rw"):
            read_only = mode == "ro"
        elif mode in _PROPAGATION:
            propagation = mode
        elif mode == "nocopy":
            no_copy = True
        elif mode not in ("z", "Z", "consistent", "cached", "delegated"):
            raise InvalidArgument(f"invalid mode: {mode} (in volume specification '{spec}')")
    return read_only, propagation, no_copy


def _parse_binds(binds: list[str]) -> list[_Volume]:
    out = []
    for spec in binds:
        parts = _split_bind(spec)
        if len(parts) == 1 or (len(parts) == 2 and not parts[1].startswith("/")):
            destination, modes = parts[0], parts[1] if len(parts) == 2 else ""
            source = ""
        else:
            source, destination = parts[0], parts[1]
            modes = parts[2] if len(parts) == 3 else ""
        if not destination.startswith("/"):
            raise InvalidArgument(f"invalid volume specification: '{spec}': invalid mount config for type "
                                  f'"volume": invalid mount path: \'{destination}\' mount path must be absolute')
        read_only, propagation, no_copy = _bind_modes(spec, modes)
        if source.startswith("/"):
            out.append(_Volume("bind", os.path.normpath(source), destination, read_only,
                               propagation or "rprivate"))
        else:
            if source:
                volume_engine.validate_name(source)
            if propagation:
                raise InvalidArgument(f"invalid volume specification: '{spec}': propagation only applies to "
                                      "bind mounts")
            out.append(_Volume("volume", source, destination, read_only, no_copy=no_copy,
                               anonymous=not source))
    return out


def _parse_mounts(mounts: list[dict[str, Any]]) -> list[_Volume]:
    out = []
    for mount in mounts:
        kind, source, target = mount.get("Type", "volume"), mount.get("Source", ""), mount.get("Target", "")
        if not target:
            raise InvalidArgument("invalid mount config: Target is required")
        if not target.startswith("/"):
            raise InvalidArgument(f"invalid mount config: invalid mount path: '{target}' mount path must be "
                                  "absolute")
        read_only = bool(mount.get("ReadOnly"))
        if kind == "bind":
            if not source:
                raise InvalidArgument("invalid mount config for type \"bind\": field Source must not be empty")
            if not os.path.isabs(source):
                raise InvalidArgument(f"invalid mount config for type \"bind\": invalid mount path: '{source}' "
                                      "mount path must be absolute")
            if not os.path.exists(source):
                raise InvalidArgument(f"invalid mount config for type \"bind\": bind source path does not exist: "
                                      f"{source}")
            propagation = (mount.get("BindOptions") or {}).get("Propagation") or "rprivate"
            if propagation not in _PROPAGATION:
                raise InvalidArgument(f"invalid propagation mode: {propagation}")
            out.append(_Volume("bind", os.path.normpath(source), target, read_only, propagation))
        elif kind == "volume":
            if source:
                volume_engine.validate_name(source)
            no_copy = bool((mount.get("VolumeOptions") or {}).get("NoCopy"))
            out.append(_Volume("volume", source, target, read_only, no_copy=no_copy, anonymous=not source))
        elif kind == "tmpfs":
            if source:
                raise InvalidArgument("invalid mount config for type \"tmpfs\": field Source must not be specified")
            tmpfs = mount.get("TmpfsOptions") or {}
            data = []
            if tmpfs.get("SizeBytes"):
                data.append(f"size={int(tmpfs['SizeBytes'])}")
            if tmpfs.get("Mode"):
                data.append(f"mode={tmpfs['Mode']:o}")
            if read_only:
                data.append("ro")
            out.append(_Volume("tmpfs", "", target, read_only, tmpfs_options=",".join(data)))
        else:
            raise InvalidArgument(f"invalid mount config: mount type unknown: \"{kind}\"")
    return out


def _check_unique(volumes: list[_Volume], tmpfs: dict[str, str]) -> None:
    seen: set[str] = {os.path.normpath(d) for d in tmpfs}
    for volume in volumes:
        destination = os.path.normpath(volume.destination)
        if destination in seen:
            raise InvalidArgument(f"Duplicate mount point: {volume.destination}")
        seen.add(destination)


# ---------------------------------------------------------------------------------------------- the record


def _docker_mounts(engine: Engine, volumes: list[_Volume]) -> list[dict[str, Any]]:
    """Docker's ``Mounts`` list for ``inspect``."""
    out = []
    for volume in volumes:
        if volume.kind == "bind":
            out.append({"Type": "bind", "Source": volume.source, "Destination": volume.destination, "Mode": "",
                        "RW": not volume.read_only, "Propagation": volume.propagation})
        elif volume.kind == "volume":
            out.append({"Type": "volume", "Name": volume.source,
                        "Source": volume_engine.mountpoint(engine, volume.source),
                        "Destination": volume.destination, "Driver": "local", "Mode": "z" if not volume.no_copy
                        else "nocopy", "RW": not volume.read_only, "Propagation": ""})
        else:
            out.append({"Type": "tmpfs", "Source": "", "Destination": volume.destination, "Mode": "",
                        "RW": not volume.read_only, "Propagation": ""})
    return out


def _config(image_name: str, image_config: dict[str, Any], options: CreateOptions, hostname: str,
            healthcheck: dict[str, Any] | None, labels: dict[str, str]) -> dict[str, Any]:
    """Docker's ``Config``: the image's defaults merged with the options, as ``inspect`` shows them."""
    run = options.run
    env_names = {e.partition("=")[0] for e in run.env}
    env = list(run.env) + [e for e in image_config.get("Env") or [] if e.partition("=")[0] not in env_names]
    if run.entrypoint is None:
        entrypoint = image_config.get("Entrypoint")
        cmd = run.command or image_config.get("Cmd")
    else:
        entrypoint, cmd = (run.entrypoint or None), (run.command or None)
    volumes = dict(image_config.get("Volumes") or {})
    for spec in options.binds:  # `-v /path`: an anonymous volume, which Docker lists in Config.Volumes
        if len(_split_bind(spec)) == 1:
            volumes[spec] = {}
    config: dict[str, Any] = {
        "Hostname": hostname, "Domainname": run.domainname, "User": run.user or image_config.get("User", ""),
        "AttachStdin": options.attach_stdin, "AttachStdout": options.attach_stdout,
        "AttachStderr": options.attach_stderr, "Tty": run.tty, "OpenStdin": run.stdin_open,
        "StdinOnce": run.stdin_open and options.attach_stdin, "Env": env, "Cmd": cmd, "Image": image_name,
        "Volumes": volumes or None, "WorkingDir": run.workdir or image_config.get("WorkingDir", ""),
        "Entrypoint": entrypoint, "OnBuild": image_config.get("OnBuild"), "Labels": labels,
    }
    exposed = dict(image_config.get("ExposedPorts") or {})
    for item in options.expose:
        exposed.setdefault(_port_key(item), {})
    if exposed:
        config["ExposedPorts"] = exposed
    stop_signal = run.stop_signal or image_config.get("StopSignal")
    if stop_signal:
        config["StopSignal"] = stop_signal
    if options.stop_timeout is not None:
        config["StopTimeout"] = options.stop_timeout
    if healthcheck is not None:
        config["Healthcheck"] = healthcheck
    return config


def _port_key(text: str) -> str:
    """An exposed port as Docker's key (``80`` -> ``80/tcp``)."""
    port, _, proto = text.partition("/")
    proto = (proto or "tcp").lower()
    if not port.isdigit() or not 1 <= int(port) <= 65535 or proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"invalid exposed port {text!r}: expected PORT[/tcp|udp|sctp]")
    return f"{int(port)}/{proto}"


def _network_mode(options: CreateOptions) -> str:
    mode = options.run.network_mode
    if mode in ("private", "", "bridge", "default"):
        return "bridge" if options.network in ("default", "") else options.network
    return mode


def _host_config(options: CreateOptions, restart: tuple[str, int],
                 port_bindings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Docker's ``HostConfig`` (the fields sampan honours), as ``inspect`` shows them."""
    run = options.run
    memory = parse_size(run.memory) if isinstance(run.memory, str) else (run.memory or 0)
    swap = run.memory_swap
    swap = parse_size(swap) if isinstance(swap, str) and swap != "-1" else int(swap or 0)
    reservation = run.memory_reservation
    reservation = parse_size(reservation) if isinstance(reservation, str) else (reservation or 0)
    cpus = nano_cpus(run.cpus)
    shm = run.shm_size
    shm = parse_size(shm) if isinstance(shm, str) else (shm or 64 * 1024 * 1024)
    return {
        "Binds": list(options.binds) or None,
        "LogConfig": {"Type": options.log_driver, "Config": dict(options.log_opts)},
        "NetworkMode": _network_mode(options),
        "PortBindings": port_bindings or {}, "PublishAllPorts": options.publish_all,
        "Dns": list(options.dns), "DnsOptions": list(options.dns_options), "DnsSearch": list(options.dns_search),
        "ExtraHosts": list(options.extra_hosts) or None,
        "RestartPolicy": {"Name": restart[0], "MaximumRetryCount": restart[1]},
        "AutoRemove": options.auto_remove,
        "VolumeDriver": "", "VolumesFrom": list(options.volumes_from) or None,
        "CapAdd": list(run.cap_add) or None, "CapDrop": list(run.cap_drop) or None,
        "GroupAdd": list(run.group_add) or None, "IpcMode": run.ipc_mode or "private",
        "OomScoreAdj": run.oom_score_adj, "PidMode": run.pid_mode, "Privileged": run.privileged,
        "ReadonlyRootfs": run.read_only, "SecurityOpt": list(run.security_opt) or None,
        "Tmpfs": dict(run.tmpfs) or None, "UTSMode": run.uts_mode, "ShmSize": shm,
        "CgroupnsMode": run.cgroupns_mode,
        "Runtime": options.runtime or "sampan", "Init": run.init or None, "CgroupParent": run.cgroup_parent,
        "ProcView": options.proc_view,
        "Sysctls": dict(run.sysctls) or None,
        "Memory": memory, "MemorySwap": swap, "MemoryReservation": reservation, "NanoCpus": cpus,
        "CpuShares": run.cpu_shares or 0, "CpusetCpus": run.cpuset_cpus, "PidsLimit": run.pids_limit,
        "OomKillDisable": run.oom_kill_disable, "Devices": [_device_mapping(d) for d in run.devices] or None,
        "Ulimits": [_ulimit(u) for u in run.ulimits] or None,
        "Mounts": list(options.mounts) or None,
    }


def _device_mapping(text: str) -> dict[str, str]:
    parts = text.split(":")
    host = parts[0]
    container = parts[1] if len(parts) > 1 and parts[1].startswith("/") else host
    perms = parts[-1] if len(parts) > 1 and not parts[-1].startswith("/") else "rwm"
    return {"PathOnHost": host, "PathInContainer": container, "CgroupPermissions": perms}


def _ulimit(text: str) -> dict[str, Any]:
    name, _, values = text.partition("=")
    soft, _, hard = values.partition(":")
    return {"Name": name, "Soft": int(soft), "Hard": int(hard or soft)}


# ---------------------------------------------------------------------------------------------- the verb


def _volumes_from(engine: Engine, names: list[str]) -> list[_Volume]:
    out = []
    for item in names:
        name, _, mode = item.partition(":")
        if mode not in ("", "ro", "rw"):
            raise InvalidArgument(f"invalid mode for volumes-from: {mode}")
        source = model.lookup(engine, name)
        for mount in source.mounts:
            read_only = (mode == "ro") if mode else not mount.get("RW", True)
            if mount["Type"] == "volume":
                out.append(_Volume("volume", mount["Name"], mount["Destination"], read_only))
            elif mount["Type"] == "bind":
                out.append(_Volume("bind", mount["Source"], mount["Destination"], read_only,
                                   mount.get("Propagation") or "rprivate"))
    return out


def load_run_options(path: str) -> RunOptions:
    with open(path) as f:
        data = json.load(f)
    data["mounts"] = [tuple(m) for m in data.get("mounts") or []]
    return RunOptions(**data)


def _resolve_namespaces(engine: Engine, run: RunOptions) -> None:
    """``container:NAME`` modes name a running container; the spec joins its namespaces by path."""
    for attr, ns in (("pid_mode", "pid"), ("ipc_mode", "ipc"), ("uts_mode", "uts"), ("network_mode", "net")):
        value = getattr(run, attr)
        if value.startswith("container:") and not value.startswith("container:/proc/"):
            other = model.lookup(engine, value.partition(":")[2])
            if other.status != "running":
                raise InvalidArgument(f"cannot join namespaces of container {other.id[:12]}: it is not running")
            setattr(run, attr, f"container:/proc/{other.pid}/ns/{ns}")


def create(engine: Engine, options: CreateOptions) -> ContainerRecord:
    """Create the container (status "created"); raises with Docker's message and leaves nothing on failure."""
    run = options.run
    _resolve_namespaces(engine, run)
    restart = parse_restart(options.restart)
    if options.auto_remove and restart[0] != "no":
        raise InvalidArgument("Conflicting options: --restart and --rm")
    _check_log(options.log_driver, options.log_opts)
    if options.runtime not in ("", "sampan") and not shutil.which(options.runtime):
        raise InvalidArgument(f"unknown or invalid runtime name: {options.runtime}")
    name = model.validate_name(options.name) if options.name else ""
    image_id = images.resolve(engine, options.image)
    image_config = images.load_config(engine, image_id).container
    container_id = model.new_id()
    shares_host_name = run.network_mode == "host" or run.uts_mode == "host"
    hostname = run.hostname or (os.uname().nodename if shares_host_name else container_id[:12])
    healthcheck = _healthcheck(image_config, options)

    volumes = _volumes_from(engine, options.volumes_from) + _parse_binds(options.binds) + \
        _parse_mounts(options.mounts)
    _check_unique(volumes, run.tmpfs)
    covered = {os.path.normpath(v.destination) for v in volumes} | {os.path.normpath(d) for d in run.tmpfs}
    for path in image_config.get("Volumes") or {}:
        if os.path.normpath(path) not in covered:
            volumes.append(_Volume("volume", "", path, anonymous=True))

    endpoint, port_bindings = _check_network(engine, options)
    run.cgroupns_mode = cgroupns_mode(run.cgroupns_mode, detect_version())  # recorded resolved, as dockerd
    placeholder = RunOptions(**{**dataclasses.asdict(run), "mounts": _spec_mounts(engine, volumes, check=False)})
    build_spec(image_config, placeholder, rootfs="/", container_id=container_id,
               passwd_lookup=lambda _user: (0, 0, []), group_lookup=lambda names: [0 for _ in names],
               init_path="/sbin/docker-init")
    if run.stop_signal:
        parse_signal(run.stop_signal)
    labels = {**(image_config.get("Labels") or {}), **run.labels}
    image_name = options.image  # as the user wrote it: what `docker ps` shows

    made_volumes: list[str] = []
    where = model.places(engine, container_id)
    try:
        for volume in volumes:
            if volume.kind == "volume":
                _ensure_volume(engine, volume, made_volumes)
            elif volume.kind == "bind" and not os.path.exists(volume.source) and volume.source in \
                    [b for b in _bind_sources(options.binds)]:
                os.makedirs(volume.source, 0o755, exist_ok=True)  # -v creates a missing source, as dockerd
        run = dataclasses.replace(run, mounts=_spec_mounts(engine, volumes, check=True))
        record = ContainerRecord(
            id=container_id, name=name, image_id=image_id, image=image_name, created=time.time(),
            config=_config(image_name, image_config, options, hostname, healthcheck, labels),
            host_config=_host_config(options, restart, port_bindings), mounts=_docker_mounts(engine, volumes))
        _make_bundle(where, run, hostname, options, user_network=endpoint is not None and endpoint[0].user_defined)
        with engine.db.transaction() as tx:
            if not record.name:
                record.name = model.random_name({r[0] for r in tx.execute("SELECT name FROM containers")})
            elif (other := records.name_taken(tx, record.name)) is not None:
                raise Conflict(f'Conflict. The container name "/{record.name}" is already in use by container '
                               f'"{other}". You have to remove (or rename) that container to be able to reuse '
                               "that name.")
            if images.lookup(engine, image_id)[0] != image_id:  # removed meanwhile
                raise NotFound(f"No such image: {options.image}")
            records.insert(tx, record, sorted({v.source for v in volumes if v.kind == "volume"}))
            if endpoint is not None:
                networks.add_attachment(tx, record.id, endpoint[0], endpoint[1])
        events.record(engine, "container", "create", record.id, events.container_attributes(record))
        return record
    except BaseException:
        shutil.rmtree(where.bundle, ignore_errors=True)
        for volume_name in made_volumes:
            try:
                volume_engine.remove(engine, volume_name, force=True)
            except SampanError:
                pass
        raise


def _bind_sources(binds: list[str]) -> list[str]:
    out = []
    for spec in binds:
        parts = spec.split(":")
        if len(parts) >= 2 and parts[0].startswith("/"):
            out.append(os.path.normpath(parts[0]))
    return out


def _ensure_volume(engine: Engine, volume: _Volume, made: list[str]) -> None:
    if volume.anonymous:
        created = volume_engine.create(engine, None)
        volume.source = created.name
        made.append(created.name)
        return
    try:
        volume_engine.get(engine, volume.source)
    except NotFound:
        volume_engine.create(engine, volume.source)
        made.append(volume.source)


def _spec_mounts(engine: Engine, volumes: list[_Volume], *, check: bool) -> list[tuple[str, str, list[str]]]:
    out: list[tuple[str, str, list[str]]] = []
    for volume in volumes:
        if volume.kind == "tmpfs":
            out.append(("tmpfs", volume.destination, volume.tmpfs_options.split(",") if volume.tmpfs_options
                        else []))
            continue
        if volume.kind == "volume":
            driver_mount = _driver_options_mount(engine, volume) if volume.source and check else None
            if driver_mount is not None:
                out.append(driver_mount)
                continue
            source = volume_engine.mountpoint(engine, volume.source) if volume.source else "/nonexistent"
        else:
            source = volume.source
        opts = ["rbind"] + (["ro"] if volume.read_only else []) + ([volume.propagation] if volume.propagation
                                                                   else [])
        if check and volume.kind == "bind" and not os.path.exists(source):
            raise InvalidArgument(f"invalid mount config for type \"bind\": bind source path does not exist: "
                                  f"{source}")
        out.append((source, volume.destination, opts))
    return out


def _driver_options_mount(engine: Engine, volume: _Volume) -> tuple[str, str, list[str]] | None:
    """A local volume made with ``-o type=tmpfs`` or ``-o o=bind,device=DIR`` is that mount in the container
    (Docker mounts it on the volume's directory first; each container gets it directly here, so a tmpfs
    volume is not shared between containers running at the same time)."""
    options = volume_engine.get(engine, volume.source).options
    if not options:
        return None
    flags = [item for item in options.get("o", "").split(",") if item]
    ro = ["ro"] if volume.read_only else []
    if options.get("type") == "tmpfs":
        return ("tmpfs", volume.destination, flags + ro)
    return (options["device"], volume.destination,
            ["bind" if "bind" in flags and "rbind" not in flags else "rbind", *ro])


def _check_network(engine: Engine, options: CreateOptions) -> tuple[Any, dict[str, Any]]:
    """The network to join (with the endpoint options) and Docker's PortBindings; refuses bad values."""
    import ipaddress

    from sampan.network import ports

    mode = options.run.network_mode
    port_bindings = ports.parse_all(options.publish)
    for item in options.expose:
        _port_key(item)
    for item in options.extra_hosts:
        host, sep, address = item.partition(":")
        if not sep or not host or not address:
            raise InvalidArgument(f"invalid argument \"{item}\" for \"--add-host\" flag: bad format for add-host: "
                                  f"\"{item}\"")
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise InvalidArgument(f"invalid argument \"{item}\" for \"--add-host\" flag: invalid IP address in "
                                  f"add-host: \"{address}\"") from None
    if mode not in ("private", "", "bridge", "default"):
        if (port_bindings or options.publish_all) and mode != "host":
            raise InvalidArgument("conflicting options: port publishing and the container type network mode")
        if options.ip or options.mac_address or options.network_aliases:
            raise InvalidArgument("conflicting options: --ip, --mac-address and --network-alias need a network")
        return None, {} if mode == "host" else port_bindings
    endpoint = networks.Endpoint(_network_mode(options), list(options.network_aliases), options.ip,
                                 options.mac_address)
    return (networks.check_endpoint(engine, endpoint), endpoint), port_bindings


def _make_bundle(where: model.Places, run: RunOptions, hostname: str, options: CreateOptions | None = None,
                 user_network: bool = False) -> None:
    """The bundle directory: writable layer, mountpoint, hosts files and the saved options."""
    where.bundle.mkdir(mode=0o700)
    for path in (where.diff, where.work, where.rootfs):
        path.mkdir(mode=0o755)
    where.hostname.write_text(hostname + "\n")
    hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n" \
        "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
    if run.network_mode == "host":
        try:
            hosts = Path("/etc/hosts").read_text()
        except OSError:
            pass
    for item in (options.extra_hosts if options else []):
        host, _, address = item.partition(":")
        hosts += f"{address}\t{host}\n"
    where.hosts.write_text(hosts)
    where.resolv_conf.write_text(_resolv_conf(options, user_network and run.network_mode in ("private", "")))
    for path in (where.hostname, where.hosts, where.resolv_conf):
        os.chmod(path, 0o644)
    (where.bundle / OPTIONS_FILE).write_text(json.dumps(dataclasses.asdict(run)))


def _resolv_conf(options: CreateOptions | None = None, embedded_dns: bool = False) -> str:
    """The host's resolv.conf without loopback name servers (unreachable from a container), as dockerd; on a
    user network the embedded DNS server (127.0.0.11) instead, which forwards to the host's (or to --dns's, as
    Docker's: the monitor gets them from HostConfig.Dns); --dns, --dns-search and --dns-option replace the
    host's lines."""
    try:
        text = Path("/etc/resolv.conf").read_text()
    except OSError:
        text = ""
    lines = [line for line in text.splitlines()
             if not re.match(r"\s*nameserver\s+(127\.|::1\b)", line)]
    if not any(line.strip().startswith("nameserver") for line in lines):
        lines += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    if options is not None and options.dns_search:
        lines = [line for line in lines if not line.strip().startswith(("search", "domain"))]
        lines.append("search " + " ".join(s for s in options.dns_search if s != "."))
    if options is not None and options.dns_options:
        lines = [line for line in lines if not line.strip().startswith("options")]
        lines.append("options " + " ".join(options.dns_options))
    if embedded_dns:
        lines = [line for line in lines if not line.strip().startswith("nameserver")]
        lines.insert(0, f"nameserver {networks.DNS_ADDRESS}")
    elif options is not None and options.dns:
        lines = [line for line in lines if not line.strip().startswith("nameserver")]
        lines[:0] = [f"nameserver {server}" for server in options.dns]
    return "\n".join(lines) + "\n"
