"""System endpoints: ``/version``, ``/info``, ``/system/df``, ``/events`` (streamed JSON lines), ``/auth``."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from sampan.api.server import (
    API_VERSION,
    MIN_API_VERSION,
    BadRequest,
    Routes,
    backend,
    body_json,
    field,
    json_response,
    query_filters,
)


async def version(request: web.Request) -> web.StreamResponse:
    from sampan.engine.system import version as engine_version

    data = engine_version()
    data["ApiVersion"] = API_VERSION
    data["MinAPIVersion"] = MIN_API_VERSION
    for component in data.get("Components") or []:
        component.setdefault("Details", {})["ApiVersion"] = API_VERSION
        component["Details"]["MinAPIVersion"] = MIN_API_VERSION
    return json_response(data)


async def info(request: web.Request) -> web.StreamResponse:
    from sampan.engine.system import info as engine_info

    data = await backend(request).call(engine_info)
    data.setdefault("Plugins", {"Volume": ["local"], "Network": ["host", "none"], "Authorization": None,
                                "Log": ["json-file", "none"]})
    data.setdefault("RegistryConfig", {"IndexConfigs": {}, "InsecureRegistryCIDRs": ["127.0.0.0/8"],
                                       "Mirrors": []})
    data.setdefault("Swarm", {"LocalNodeState": "inactive", "NodeID": "", "NodeAddr": "",
                              "ControlAvailable": False, "Error": "", "RemoteManagers": None})
    data.setdefault("IndexServerAddress", "https://index.docker.io/v1/")
    data.setdefault("ClientInfo", None)
    return json_response(data)


_DF_TYPES = ("container", "image", "volume", "build-cache")


def _df(engine: Any, types: set[str]) -> dict[str, Any]:
    """Docker's ``/system/df`` from the engine's figures: each image, container and volume with its size; only the
    kinds in ``types`` when it names any (API 1.42: each kind costs a walk of its files)."""
    from sampan.api.containers import summary
    from sampan.api.images import image_summary
    from sampan.engine import images, volumes
    from sampan.engine.containers import model
    from sampan.engine.containers.query import container_size
    from sampan.engine.system import disk_usage

    wanted = types or set(_DF_TYPES)
    out: dict[str, Any] = {}
    if "image" in wanted:
        lines = {line.type: line for line in disk_usage(engine)}
        out["LayersSize"] = lines["Images"].size
        out["Images"] = [image_summary(s) for s in images.list_images(engine, all=True)]
    if "build-cache" in wanted:
        out["BuildCache"] = []
    if wanted & {"container", "image"}:  # images count the containers that use them
        counts: dict[str, int] = {}
        containers = []
        for record in model.all_current(engine):
            counts[record.image_id] = counts.get(record.image_id, 0) + 1
            if "container" in wanted:
                item = summary(engine, record)
                item["SizeRw"] = container_size(engine, record.id)
                containers.append(item)
        for item in out.get("Images", []):
            item["Containers"] = counts.get(item["Id"], 0)
            item["SharedSize"] = 0
        if "container" in wanted:
            out["Containers"] = containers
    if "volume" in wanted:
        vols = []
        for volume in volumes.list_volumes(engine):
            data = volumes.inspect(engine, volume.name)
            data["UsageData"] = {"Size": volumes.directory_size(volume.mountpoint), "RefCount": len(volume.users)}
            vols.append(data)
        out["Volumes"] = vols
    return out


async def df(request: web.Request) -> web.StreamResponse:
    types = set(request.query.getall("type", []))
    unknown = sorted(types - set(_DF_TYPES))
    if unknown:
        raise BadRequest(f"unknown object type: {unknown[0]}")
    return json_response(await backend(request).call(_df, types))


def _timestamp(request: web.Request, name: str) -> float | None:
    from sampan.units import parse_timestamp

    value = request.query.get(name, "")
    if not value:
        return None
    try:
        return parse_timestamp(value, time.time())
    except Exception:  # noqa: BLE001 - any parse failure is the client's
        raise BadRequest(f"invalid value for {name}: {value!r}") from None


async def events(request: web.Request) -> web.StreamResponse:
    """Recorded events since ``since`` (new ones only without it), then new ones until ``until`` or the client
    goes away; one JSON object per line, flushed as each comes."""
    from sampan.engine import events as engine_events
    from sampan.engine.filters import check_filters

    since = _timestamp(request, "since")
    until = _timestamp(request, "until")
    filters = query_filters(request)
    api = backend(request)
    check_filters(filters, engine_events._FILTERS)  # before the 200: a bad filter is a 400
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    gone = False

    def produce(engine: Any) -> None:
        try:
            start = time.time() if since is None else since
            for event in engine_events.read(engine, since=start, until=until, filters=filters, follow=True,
                                            stop=lambda: gone):
                loop.call_soon_threadsafe(queue.put_nowait, event)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    task = asyncio.ensure_future(api.call(produce))
    try:
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), 1.0)
            except TimeoutError:
                if request.transport is None or request.transport.is_closing():
                    break  # the client went away
                continue
            if event is None:
                break
            await response.write(json.dumps(event).encode() + b"\n")
    finally:
        gone = True
        try:
            await task
        except Exception:  # noqa: BLE001, S110 - the stream is over either way
            pass
    return response


async def auth(request: web.Request) -> web.StreamResponse:
    """``docker login``: the registry checks the credentials (the client stores them, and sends them with each
    pull and push in ``X-Registry-Auth``); a refusal is a 401 with the registry's words, as dockerd answers."""
    from sampan.engine.login import verify

    data = await body_json(request, required=True)
    username = field(data, "username", str, "AuthConfig", "")
    password = field(data, "password", str, "AuthConfig", "")
    server = field(data, "serveraddress", str, "AuthConfig", "")
    if not username or not password:
        raise BadRequest("username and password are required")
    await backend(request).run(lambda: verify(server or None, username, password))
    return json_response({"Status": "Login Succeeded", "IdentityToken": ""})


async def build_prune(request: web.Request) -> web.StreamResponse:
    return json_response({"CachesDeleted": None, "SpaceReclaimed": 0})  # no build cache yet


def register(routes: Routes) -> None:
    routes.add("POST", "/build/prune", build_prune)
    routes.add("GET", "/version", version)
    routes.add("GET", "/info", info)
    routes.add("GET", "/system/df", df)
    routes.add("GET", "/events", events)
    routes.add("POST", "/auth", auth)
