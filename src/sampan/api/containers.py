"""Container endpoints: create (Docker's Config + HostConfig JSON to the engine's ``CreateOptions``), list,
inspect, start, stop, kill, restart, pause, unpause, wait, rename, update, delete, prune, logs, top, stats,
changes, export, resize and the archive endpoints ``docker cp`` uses. Attach is ``sampan.api.attach``."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

from aiohttp import web

from sampan.api.server import (
    BadRequest,
    HasQuery,
    Routes,
    backend,
    body_json,
    body_to_file,
    field,
    json_response,
    no_content,
    query_bool,
    query_filters,
    query_int,
    str_list,
    str_map,
    stream_from_thread,
)
from sampan.errors import InvalidArgument, NotFound

_HC = "HostConfig"
_CFG = "Config"


# ---------------------------------------------------------------------------------------------- list


def port_list(ports: dict[str, Any]) -> list[dict[str, Any]]:
    """NetworkSettings.Ports as ``/containers/json`` lists them: one entry per binding, and one without a
    public port for each exposed port that has none."""
    out: list[dict[str, Any]] = []
    for key, bindings in ports.items():
        port, _, proto = key.partition("/")
        if not bindings:
            out.append({"PrivatePort": int(port), "Type": proto or "tcp"})
        for binding in bindings or []:
            out.append({"IP": binding.get("HostIp") or "0.0.0.0", "PrivatePort": int(port),
                        "PublicPort": int(binding["HostPort"]), "Type": proto or "tcp"})
    return sorted(out, key=lambda p: (p["PrivatePort"], p["Type"], p.get("IP", ""), p.get("PublicPort", 0)))


def summary(engine: Any, record: Any) -> dict[str, Any]:
    """One container as ``/containers/json`` shows it."""
    from sampan.engine import networks
    from sampan.engine.containers import query

    network = record.host_config.get("NetworkMode", "none")
    settings = networks.container_settings(engine, record)
    keys = ("IPAMConfig", "Links", "Aliases", "MacAddress", "NetworkID", "EndpointID", "Gateway", "IPAddress",
            "IPPrefixLen", "IPv6Gateway", "GlobalIPv6Address", "GlobalIPv6PrefixLen", "DriverOpts", "DNSNames")
    return {
        "Id": record.id, "Names": ["/" + record.name], "Image": record.image, "ImageID": record.image_id,
        "Command": query.command_text(record), "Created": int(record.created),
        "Ports": port_list(settings["Ports"]),
        "Labels": record.config.get("Labels") or {}, "State": record.status, "Status": query.status_text(record),
        "HostConfig": {"NetworkMode": network},
        "NetworkSettings": {"Networks": {name: {k: item.get(k) for k in keys}
                                         for name, item in settings["Networks"].items()}},
        "Mounts": [{"Type": m.get("Type", ""), "Name": m.get("Name", ""), "Source": m.get("Source", ""),
                    "Destination": m.get("Destination", ""), "Driver": m.get("Driver", ""),
                    "Mode": m.get("Mode", ""), "RW": m.get("RW", True), "Propagation": m.get("Propagation", "")}
                   for m in record.mounts],
    }


def list_options(request: HasQuery) -> tuple[Any, bool]:
    """``GET /containers/json``'s query as the engine's ``ListOptions``, and whether sizes are wanted."""
    from sampan.engine.containers.query import ListOptions

    options = ListOptions(all=query_bool(request, "all"), last=query_int(request, "limit", -1) or -1,
                          latest=query_bool(request, "latest"), filters=query_filters(request))
    return options, query_bool(request, "size")


def listing(engine: Any, options: Any, size: bool = False) -> list[dict[str, Any]]:
    """``GET /containers/json``'s answer (also served by ``sampan.api.fastpath``)."""
    from sampan.engine.containers.query import container_size, list_containers

    out = []
    for record in list_containers(engine, options):
        item = summary(engine, record)
        if size:
            item["SizeRw"] = container_size(engine, record.id)
        out.append(item)
    return out


async def list_(request: web.Request) -> web.StreamResponse:
    options, size = list_options(request)
    api = backend(request)  # sizes walk the writable layers: never on the loop
    return json_response(await (api.call(listing, options, True) if size else api.quick(listing, options)))


async def inspect(request: web.Request) -> web.StreamResponse:
    from sampan.engine.containers.query import inspect as inspect_container

    size = query_bool(request, "size")
    data = await backend(request).call(lambda e: inspect_container(e, request.match_info["id"], size=size))
    execs = [exec_id for exec_id, item in backend(request).state.get("execs", {}).items()
             if item.container_id == data["Id"] and item.running]
    data["ExecIDs"] = execs or None
    return json_response(data)


# ---------------------------------------------------------------------------------------------- create


def _restart_policy(host: dict[str, Any]) -> str:
    policy = field(host, "RestartPolicy", dict, _HC, {})
    name = field(policy, "Name", str, "RestartPolicy", "") or "no"
    count = field(policy, "MaximumRetryCount", int, "RestartPolicy", 0)
    return f"{name}:{count}" if name == "on-failure" and count else name


def _ulimits(host: dict[str, Any]) -> list[str]:
    out = []
    for item in field(host, "Ulimits", list, _HC, []):
        if not isinstance(item, dict) or not isinstance(item.get("Name"), str):
            raise BadRequest("json: cannot unmarshal HostConfig.Ulimits: each needs a Name, Soft and Hard")
        soft, hard = item.get("Soft", 0), item.get("Hard", item.get("Soft", 0))
        if not isinstance(soft, int) or not isinstance(hard, int):
            raise BadRequest("json: cannot unmarshal HostConfig.Ulimits: Soft and Hard are integers")
        out.append(f"{item['Name']}={soft}:{hard}")
    return out


def _devices(host: dict[str, Any]) -> list[str]:
    out = []
    for item in field(host, "Devices", list, _HC, []):
        if not isinstance(item, dict) or not isinstance(item.get("PathOnHost"), str):
            raise BadRequest("json: cannot unmarshal HostConfig.Devices: each needs a PathOnHost")
        container = item.get("PathInContainer") or item["PathOnHost"]
        out.append(f"{item['PathOnHost']}:{container}:{item.get('CgroupPermissions') or 'rwm'}")
    return out


def _mounts(host: dict[str, Any]) -> list[dict[str, Any]]:
    mounts = field(host, "Mounts", list, _HC, [])
    for item in mounts:
        if not isinstance(item, dict):
            raise BadRequest("json: cannot unmarshal HostConfig.Mounts: each mount is an object")
        for key in ("Type", "Source", "Target"):
            field(item, key, str, "Mount")
    return mounts


def _endpoint(settings: Any, where: str) -> tuple[list[str], str, str]:
    """(aliases, IPv4 address, MAC address) of one EndpointSettings object (null is an empty one)."""
    if settings is None:
        return [], "", ""
    if not isinstance(settings, dict):
        raise BadRequest(f"json: cannot unmarshal {type(settings).__name__} into Go value of type "
                         "network.EndpointSettings")
    ipam = field(settings, "IPAMConfig", dict, where, {})
    return (str_list(settings, "Aliases", where) or [], field(ipam, "IPv4Address", str, "EndpointIPAMConfig", ""),
            field(settings, "MacAddress", str, where, ""))


def _endpoints(body: dict[str, Any]) -> dict[str, Any]:
    config = field(body, "NetworkingConfig", dict, "ContainerCreate", {})
    endpoints = field(config, "EndpointsConfig", dict, "NetworkingConfig", {})
    for settings in endpoints.values():
        _endpoint(settings, "EndpointSettings")  # validated before anything is created
    return {"bridge" if name == "default" else name: settings for name, settings in endpoints.items()}


def _publish(host: dict[str, Any]) -> list[str]:
    """HostConfig.PortBindings as the CLI's ``-p`` specs (HostPort "" or "0": any free port)."""
    import re

    out = []
    for key, bindings in field(host, "PortBindings", dict, _HC, {}).items():
        if not re.fullmatch(r"\d+(/[a-zA-Z]+)?", key):
            raise BadRequest(f"invalid port {key!r} in HostConfig.PortBindings: expected PORT[/PROTO]")
        if bindings is None:
            continue
        if not isinstance(bindings, list) or not all(isinstance(b, dict) for b in bindings):
            raise BadRequest("json: cannot unmarshal HostConfig.PortBindings: each port has a list of bindings")
        port, _, proto = key.partition("/")
        for binding in bindings:
            ip = field(binding, "HostIp", str, "PortBinding", "")
            host_port = field(binding, "HostPort", str, "PortBinding", "")
            if host_port == "0":
                host_port = ""
            if ip == "0.0.0.0":
                ip = ""
            if ":" in ip:
                ip = f"[{ip}]"
            spec = f"{port}/{proto or 'tcp'}"
            if ip:
                spec = f"{ip}:{host_port}:{spec}"
            elif host_port:
                spec = f"{host_port}:{spec}"
            out.append(spec)
    return out


def _extra_hosts(host: dict[str, Any]) -> list[str]:
    """ExtraHosts as ``NAME:IP`` (newer clients may send ``NAME=IP``)."""
    out = []
    for item in str_list(host, "ExtraHosts", _HC) or []:
        name, eq, address = item.partition("=")
        out.append(f"{name}:{address}" if eq and name and ":" not in name else item)
    return out


def _network_options(body: dict[str, Any], host: dict[str, Any]) -> dict[str, Any]:
    """CreateOptions' network fields, as ``_create_options`` of the CLI fills them from flags."""
    from sampan.engine.containers import options

    mode, network = options.network_mode(field(host, "NetworkMode", str, _HC, ""))
    endpoints = _endpoints(body)
    if not field(host, "NetworkMode", str, _HC, "") and len(endpoints) == 1:
        network = next(iter(endpoints))  # no mode: the one network the endpoints name
    settings = endpoints.get(network) if mode == "private" else None
    aliases, ip, mac = _endpoint(settings, "EndpointSettings")
    exposed = field(body, "ExposedPorts", dict, _CFG, {})
    return {"network": network, "network_aliases": aliases, "ip": ip,
            "mac_address": mac or field(body, "MacAddress", str, _CFG, ""), "publish": _publish(host),
            "publish_all": field(host, "PublishAllPorts", bool, _HC, False), "expose": list(exposed),
            "dns": str_list(host, "Dns", _HC) or [], "dns_search": str_list(host, "DnsSearch", _HC) or [],
            "dns_options": str_list(host, "DnsOptions", _HC) or [], "extra_hosts": _extra_hosts(host),
            "_mode": mode}


def extra_endpoints(body: dict[str, Any], options: Any) -> list[Any]:
    """The networks of NetworkingConfig beyond the one the container is created on (API 1.44 takes several):
    ``networks.Endpoint`` objects to connect once it exists."""
    from sampan.engine.networks import Endpoint

    if options.run.network_mode != "private":
        return []
    out = []
    for name, settings in _endpoints(body).items():
        if name == options.network:
            continue
        aliases, ip, mac = _endpoint(settings, "EndpointSettings")
        out.append(Endpoint(name, aliases, ip, mac))
    return out


def create_options(body: dict[str, Any], name: str) -> Any:
    """Docker's create body as the engine's ``CreateOptions`` (what ``sampan create`` builds from flags)."""
    from sampan.engine.containers import options
    from sampan.engine.containers.create import CreateOptions
    from sampan.engine.specgen import RunOptions

    image = field(body, "Image", str, _CFG, "")
    if not image:
        raise BadRequest("Config.Image is required")
    host = field(body, "HostConfig", dict, "ContainerCreate", {})
    network = _network_options(body, host)
    network_mode = network.pop("_mode")
    healthcheck = dict(field(body, "Healthcheck", dict, _CFG, {}))
    no_healthcheck = healthcheck.get("Test") == ["NONE"]
    if no_healthcheck:
        healthcheck = {}
    memory_swap = field(host, "MemorySwap", int, _HC, 0)
    pids = field(host, "PidsLimit", int, _HC, None)
    run = RunOptions(
        command=str_list(body, "Cmd", _CFG) or [], entrypoint=options.entrypoint(str_list(body, "Entrypoint", _CFG)),
        env=str_list(body, "Env", _CFG) or [],
        workdir=field(body, "WorkingDir", str, _CFG, ""), user=field(body, "User", str, _CFG, ""),
        group_add=str_list(host, "GroupAdd", _HC) or [], hostname=field(body, "Hostname", str, _CFG, ""),
        domainname=field(body, "Domainname", str, _CFG, ""), tty=field(body, "Tty", bool, _CFG, False),
        stdin_open=field(body, "OpenStdin", bool, _CFG, False),
        read_only=field(host, "ReadonlyRootfs", bool, _HC, False),
        privileged=field(host, "Privileged", bool, _HC, False), cap_add=str_list(host, "CapAdd", _HC) or [],
        cap_drop=str_list(host, "CapDrop", _HC) or [], security_opt=str_list(host, "SecurityOpt", _HC) or [],
        sysctls=str_map(host, "Sysctls", _HC), ulimits=_ulimits(host),
        memory=field(host, "Memory", int, _HC, 0) or None, memory_swap=memory_swap or None,
        memory_reservation=field(host, "MemoryReservation", int, _HC, 0) or None,
        cpus=(field(host, "NanoCpus", int, _HC, 0) / 1e9) or None,
        cpu_shares=field(host, "CpuShares", int, _HC, 0) or None,
        cpuset_cpus=field(host, "CpusetCpus", str, _HC, ""), pids_limit=pids or None,
        oom_kill_disable=bool(field(host, "OomKillDisable", bool, _HC, False)), devices=_devices(host),
        tmpfs=str_map(host, "Tmpfs", _HC), shm_size=field(host, "ShmSize", int, _HC, 0) or None,
        init=bool(field(host, "Init", bool, _HC, False)), network_mode=network_mode,
        pid_mode=field(host, "PidMode", str, _HC, ""), ipc_mode=field(host, "IpcMode", str, _HC, ""),
        uts_mode=field(host, "UTSMode", str, _HC, ""), cgroupns_mode=field(host, "CgroupnsMode", str, _HC, ""),
        labels=str_map(body, "Labels", _CFG),
        stop_signal=field(body, "StopSignal", str, _CFG, ""), cgroup_parent=field(host, "CgroupParent", str, _HC, ""),
        oom_score_adj=field(host, "OomScoreAdj", int, _HC, 0))
    log = field(host, "LogConfig", dict, _HC, {})
    runtime = field(host, "Runtime", str, _HC, "")
    return CreateOptions(
        image=image, run=run, name=name, binds=str_list(host, "Binds", _HC) or [], mounts=_mounts(host),
        volumes_from=str_list(host, "VolumesFrom", _HC) or [], restart=_restart_policy(host),
        auto_remove=field(host, "AutoRemove", bool, _HC, False),
        log_driver=field(log, "Type", str, "LogConfig", "") or "json-file",
        log_opts=str_map(log, "Config", "LogConfig"), healthcheck=healthcheck, no_healthcheck=no_healthcheck,
        stop_timeout=field(body, "StopTimeout", int, _CFG, None), runtime="" if runtime == "runc" else runtime,
        attach_stdin=field(body, "AttachStdin", bool, _CFG, False),
        attach_stdout=field(body, "AttachStdout", bool, _CFG, False),
        attach_stderr=field(body, "AttachStderr", bool, _CFG, False), **network)


async def create(request: web.Request) -> web.StreamResponse:
    from sampan.engine.containers.create import create as create_container

    body = await body_json(request, required=True)
    options = create_options(body, request.query.get("name", ""))
    console = field(field(body, "HostConfig", dict, "ContainerCreate", {}), "ConsoleSize", list, _HC, None)

    more = extra_endpoints(body, options)

    def run(engine: Any) -> Any:
        from sampan.engine import networks
        from sampan.engine.containers.remove import remove

        record = create_container(engine, options)
        try:
            for endpoint in more:
                networks.connect(engine, endpoint.network, record.id, endpoint)
        except BaseException:
            remove(engine, record.id, force=True)
            raise
        return record

    record = await backend(request).call(run)
    if console and len(console) == 2 and all(isinstance(n, int) and n > 0 for n in console):
        backend(request).state.setdefault("console", {})[record.id] = list(console)
    return json_response({"Id": record.id, "Warnings": []}, status=201)


# ---------------------------------------------------------------------------------------------- lifecycle


async def start(request: web.Request) -> web.StreamResponse:
    """Start, handing the socket to an attach that waits for it. A container created with AutoRemove that fails to
    start is removed, as dockerd does: ``docker run --rm`` then waits for its removal, and would wait forever."""
    from sampan.api import attach
    from sampan.engine.containers import lifecycle, model

    api = backend(request)
    record = await api.call(model.lookup, request.match_info["id"])
    if record.status in ("running", "restarting"):
        return web.Response(status=304)
    pending = attach.take_pending(api, record.id)
    streams = dict(pending[0].streams) if pending else None
    size = api.state.get("console", {}).pop(record.id, None)
    if streams is not None and size:
        streams["size"] = size
    try:
        _, sock = await api.call(lambda e: lifecycle.start(e, record.id, streams))
    except BaseException as e:
        for item in pending:
            item.fail(e)
        if record.host_config.get("AutoRemove"):
            await api.call(_remove_after_failed_start, record.id)
        raise
    if pending:
        pending[0].hand(sock)
    for item in pending[1:]:
        item.hand(None)  # they connect to the running container's attach socket
    return no_content()


def _remove_after_failed_start(engine: Any, container_id: str) -> None:
    from sampan.engine.containers.remove import remove

    try:
        remove(engine, container_id, force=True)
    except NotFound:
        pass  # gone already


async def stop(request: web.Request) -> web.StreamResponse:
    from sampan.engine.containers import lifecycle, model

    timeout = query_int(request, "t")
    signal = request.query.get("signal") or None
    api = backend(request)
    record = await api.call(model.lookup, request.match_info["id"])
    if record.status not in ("running", "paused", "restarting"):
        return web.Response(status=304)
    await api.call(lambda e: lifecycle.stop(e, record.id, timeout=timeout, sig=signal))
    return no_content()


async def restart(request: web.Request) -> web.StreamResponse:
    from sampan.engine.containers import lifecycle

    timeout = query_int(request, "t")
    signal = request.query.get("signal") or None
    await backend(request).call(lambda e: lifecycle.restart(e, request.match_info["id"], timeout=timeout,
                                                            sig=signal))
    return no_content()


async def kill(request: web.Request) -> web.StreamResponse:
    from signal import NSIG

    from sampan.engine.containers import lifecycle
    from sampan.engine.specgen import parse_signal

    signal = request.query.get("signal") or "SIGKILL"
    if not 0 < parse_signal(signal) < NSIG:  # a number the kernel has no signal for (kill(2): EINVAL)
        raise BadRequest(f"Invalid signal: {signal}")
    await backend(request).call(lambda e: lifecycle.kill(e, request.match_info["id"], signal))
    return no_content()


async def pause(request: web.Request) -> web.StreamResponse:
    from sampan.engine.containers import lifecycle

    await backend(request).call(lifecycle.pause, request.match_info["id"])
    return no_content()


async def unpause(request: web.Request) -> web.StreamResponse:
    from sampan.engine.containers import lifecycle

    await backend(request).call(lifecycle.unpause, request.match_info["id"])
    return no_content()


async def rename(request: web.Request) -> web.StreamResponse:
    from sampan.engine.containers import lifecycle

    new = request.query.get("name", "")
    if not new:
        raise BadRequest("name is required")
    await backend(request).call(lifecycle.rename, request.match_info["id"], new)
    return no_content()


_UPDATABLE = ("Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares", "CpusetCpus", "PidsLimit")


async def update(request: web.Request) -> web.StreamResponse:
    """``docker update``: the CLI sends every field, zero when not given; only the given ones change."""
    from sampan.engine.containers import lifecycle

    body = await body_json(request)
    changes: dict[str, Any] = {}
    for key in _UPDATABLE:
        value = field(body, key, str if key == "CpusetCpus" else int, "UpdateConfig", None)
        if value:
            changes[key] = value
    policy = field(body, "RestartPolicy", dict, "UpdateConfig", {})
    if field(policy, "Name", str, "RestartPolicy", ""):
        changes["RestartPolicy"] = _restart_policy({"RestartPolicy": policy})
    if changes:
        await backend(request).call(lifecycle.update, request.match_info["id"], changes)
    return json_response({"Warnings": []})


async def delete(request: web.Request) -> web.StreamResponse:
    from sampan.engine.containers.remove import remove

    force, volumes = query_bool(request, "force"), query_bool(request, "v")
    if query_bool(request, "link"):
        raise BadRequest("links are not supported")
    await backend(request).call(lambda e: remove(e, request.match_info["id"], force=force, volumes=volumes))
    return no_content()


async def prune(request: web.Request) -> web.StreamResponse:
    from sampan.engine.containers.remove import prune as prune_containers

    filters = query_filters(request)
    report = await backend(request).call(prune_containers, filters)
    return json_response({"ContainersDeleted": report.removed or None, "SpaceReclaimed": report.reclaimed})


# ---------------------------------------------------------------------------------------------- wait


def _die_code(engine: Any, container_id: str, since: float) -> int | None:
    """The exit status the last ``die`` event since ``since`` recorded (for a container already removed)."""
    from sampan.engine import events

    code = None
    for event in events.read(engine, since=since - 1, filters={"container": [container_id], "event": ["die"]}):
        try:
            code = int((event["Actor"].get("Attributes") or {}).get("exitCode", ""))
        except ValueError:
            continue
    return code


async def wait(request: web.Request) -> web.StreamResponse:
    """Headers first (the docker CLI waits for them before it starts the container), the status at the end.
    ``next-exit`` waits for an exit after this request; ``removed`` for the record to go."""
    from sampan.engine.containers import model
    from sampan.engine.containers.model import ACTIVE
    from sampan.store import containers as records

    condition = request.query.get("condition", "") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise BadRequest(f"invalid condition: {condition}")
    api = backend(request)
    began = time.time()
    first = await api.call(model.lookup, request.match_info["id"])
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)

    def current(engine: Any) -> Any:
        found = records.get(engine.db.conn, first.id)
        return None if found is None else model.current(engine, found)

    last = first
    delay = 0.01
    while True:
        record = await api.call(current)
        if record is None:
            break
        last = record
        if record.status not in ACTIVE:
            if condition == "not-running":
                break
            if condition == "next-exit" and record.finished_at > first.finished_at and \
                    record.finished_at >= began - 0.001:
                break
        if request.transport is None or request.transport.is_closing():
            return response
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.1)
    code = last.exit_code
    if record is None:
        died = await api.call(_die_code, first.id, began)
        if died is not None:
            code = died
    error = {"Message": last.error} if last.error else None
    await response.write(json.dumps({"StatusCode": code, "Error": error}).encode() + b"\n")
    await response.write_eof()
    return response


# ---------------------------------------------------------------------------------------------- reading


async def logs(request: web.Request) -> web.StreamResponse:
    """``docker logs``: stdcopy frames unless the container has a tty; ``follow`` until it stops or the client
    goes away."""
    from sampan.engine.containers import model, query
    from sampan.monitor import protocol
    from sampan.monitor.logs import read_logs
    from sampan.store import containers as records
    from sampan.units import parse_timestamp

    stdout, stderr = query_bool(request, "stdout"), query_bool(request, "stderr")
    if not stdout and not stderr:
        raise BadRequest("Bad parameters: you must choose at least one stream")
    follow, timestamps = query_bool(request, "follow"), query_bool(request, "timestamps")
    tail_text = request.query.get("tail", "all") or "all"
    tail = None
    if tail_text != "all":
        try:
            tail = int(tail_text)
        except ValueError:
            raise BadRequest(f'invalid value for "tail": {tail_text}') from None
        if tail < 0:
            tail = None
    now = time.time()
    try:
        since = parse_timestamp(request.query["since"], now) if request.query.get("since", "0") != "0" else None
        until = parse_timestamp(request.query["until"], now) if request.query.get("until", "0") != "0" else None
    except Exception as e:  # noqa: BLE001
        raise BadRequest(f"invalid since/until: {e}") from None
    api = backend(request)
    record = await api.call(model.lookup, request.match_info["id"])
    path = await api.call(query.log_path, record)
    if path is None:
        raise InvalidArgument("configured logging driver does not support reading")
    tty = bool(record.config.get("Tty"))
    transport = request.transport

    def produce(engine: Any, out: Any) -> None:
        def stopped() -> bool:
            if transport is None or transport.is_closing():
                return True
            fresh = records.get(engine.db.conn, record.id)
            return fresh is None or model.current(engine, fresh).status not in ("running", "paused", "restarting")

        for stream, data in read_logs(path, tail=tail, since=since, until=until, follow=follow,
                                      timestamps=timestamps, stop=stopped):
            if (stream == "stderr" and not stderr) or (stream != "stderr" and not stdout):
                continue
            if tty:
                out.write(data)
            else:
                out.write(protocol.frame(protocol.STDERR if stream == "stderr" else protocol.STDOUT, data))
            if follow:
                out.flush()

    content_type = "application/vnd.docker.raw-stream" if tty else "application/vnd.docker.multiplexed-stream"
    return await stream_from_thread(request, produce, content_type)


async def top(request: web.Request) -> web.StreamResponse:
    import shlex

    from sampan.engine.containers.query import top as top_of

    try:
        args = shlex.split(request.query.get("ps_args", ""))
    except ValueError as e:  # an unclosed quote
        raise BadRequest(f"invalid ps_args: {e}") from None
    titles, rows = await backend(request).call(top_of, request.match_info["id"], args)
    return json_response({"Titles": titles, "Processes": rows})


async def stats(request: web.Request) -> web.StreamResponse:
    """Docker's stats JSON: one object per second with ``stream`` (the default), or one (after a second, so
    ``precpu_stats`` is filled in, unless ``one-shot``)."""
    from sampan.engine.containers import model
    from sampan.engine.containers.stats import sample
    from sampan.store import containers as records

    stream = query_bool(request, "stream", True)
    one_shot = query_bool(request, "one-shot")
    api = backend(request)
    record = await api.call(model.lookup, request.match_info["id"])

    def take(engine: Any) -> dict[str, Any] | None:
        fresh = records.get(engine.db.conn, record.id)
        if fresh is None:
            return None
        data = sample(engine, model.current(engine, fresh))
        data["read"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(data["read"])) + \
            f".{int(data['read'] % 1 * 1e9):09d}Z"
        return data

    previous = await api.call(take)
    if previous is None:
        raise NotFound(f"No such container: {record.id}")
    if not stream:
        if one_shot:
            return json_response(previous)
        await asyncio.sleep(1.0)
        current = await api.call(take) or previous
        current["precpu_stats"] = previous["cpu_stats"]
        current["preread"] = previous["read"]
        return json_response(current)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    await response.write(json.dumps(previous).encode() + b"\n")
    while request.transport is not None and not request.transport.is_closing():
        await asyncio.sleep(1.0)
        current = await api.call(take)
        if current is None:
            break
        current["precpu_stats"] = previous["cpu_stats"]
        current["preread"] = previous["read"]
        try:
            await response.write(json.dumps(current).encode() + b"\n")
        except (ConnectionResetError, RuntimeError):
            break
        previous = current
    return response


async def changes(request: web.Request) -> web.StreamResponse:
    from sampan.engine.containers.files import diff

    found = await backend(request).call(diff, request.match_info["id"])
    return json_response([{"Path": c.path, "Kind": c.docker_kind} for c in found] or None)


async def export(request: web.Request) -> web.StreamResponse:
    from sampan.engine.containers import model
    from sampan.engine.containers.files import export as export_container

    name = request.match_info["id"]
    await backend(request).call(model.lookup, name)
    return await stream_from_thread(request, lambda engine, out: export_container(engine, name, out))


async def resize(request: web.Request) -> web.StreamResponse:
    from sampan.api import attach

    height, width = query_int(request, "h"), query_int(request, "w")
    if not height or not width or height < 0 or width < 0:
        raise BadRequest("bad height or width: h and w must be positive integers")
    await attach.resize(backend(request), request.match_info["id"], height, width)
    return web.Response(status=200)


# ---------------------------------------------------------------------------------------------- archive


def _stat_header(info: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(info).encode()).decode()


async def archive_head(request: web.Request) -> web.StreamResponse:
    from sampan.engine.container_archive import stat_path

    path = request.query.get("path", "")
    if not path:
        raise BadRequest("path is required")
    info = await backend(request).call(stat_path, request.match_info["id"], path)
    return web.Response(status=200, headers={"X-Docker-Container-Path-Stat": _stat_header(info),
                                             "Content-Type": "application/json"})


async def archive_get(request: web.Request) -> web.StreamResponse:
    from sampan.engine.container_archive import read_archive, stat_path

    path = request.query.get("path", "")
    if not path:
        raise BadRequest("path is required")
    name = request.match_info["id"]
    info = await backend(request).call(stat_path, name, path)
    return await stream_from_thread(request, lambda engine, out: read_archive(engine, name, path, out),
                                    headers={"X-Docker-Container-Path-Stat": _stat_header(info)})


async def archive_put(request: web.Request) -> web.StreamResponse:
    from sampan.engine.container_archive import extract_archive

    path = request.query.get("path", "")
    if not path:
        raise BadRequest("path is required")
    copy_uid_gid = query_bool(request, "copyUIDGID")
    body = await body_to_file(request)
    try:
        await backend(request).call(lambda e: extract_archive(e, request.match_info["id"], path, body,
                                                              copy_uid_gid=copy_uid_gid))
    finally:
        body.close()
    return web.Response(status=200)


def register(routes: Routes) -> None:
    from sampan.api import attach

    routes.add("GET", "/containers/json", list_)
    routes.add("POST", "/containers/create", create)
    routes.add("POST", "/containers/prune", prune)
    routes.add("GET", "/containers/{id}/json", inspect)
    routes.add("POST", "/containers/{id}/start", start)
    routes.add("POST", "/containers/{id}/stop", stop)
    routes.add("POST", "/containers/{id}/restart", restart)
    routes.add("POST", "/containers/{id}/kill", kill)
    routes.add("POST", "/containers/{id}/pause", pause)
    routes.add("POST", "/containers/{id}/unpause", unpause)
    routes.add("POST", "/containers/{id}/rename", rename)
    routes.add("POST", "/containers/{id}/update", update)
    routes.add("POST", "/containers/{id}/wait", wait)
    routes.add("POST", "/containers/{id}/attach", attach.attach)
    routes.add("POST", "/containers/{id}/resize", resize)
    routes.add("DELETE", "/containers/{id}", delete)
    routes.add("GET", "/containers/{id}/logs", logs)
    routes.add("GET", "/containers/{id}/top", top)
    routes.add("GET", "/containers/{id}/stats", stats)
    routes.add("GET", "/containers/{id}/changes", changes)
    routes.add("GET", "/containers/{id}/export", export)
    routes.add("HEAD", "/containers/{id}/archive", archive_head)
    routes.add("GET", "/containers/{id}/archive", archive_get)
    routes.add("PUT", "/containers/{id}/archive", archive_put)
