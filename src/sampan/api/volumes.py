"""Volume endpoints: create, list, inspect, delete, prune."""

from __future__ import annotations

from aiohttp import web

from sampan.api.server import (
    BadRequest,
    Routes,
    backend,
    body_json,
    field,
    json_response,
    no_content,
    query_bool,
    query_filters,
    str_map,
)


async def create(request: web.Request) -> web.StreamResponse:
    from sampan.engine import volumes

    body = await body_json(request)
    name = field(body, "Name", str, "VolumeCreateBody", "")
    driver = field(body, "Driver", str, "VolumeCreateBody", "") or "local"
    labels = str_map(body, "Labels", "VolumeCreateBody")
    options = str_map(body, "DriverOpts", "VolumeCreateBody")
    api = backend(request)
    volume = await api.call(lambda e: volumes.create(e, name or None, driver=driver, labels=labels,
                                                     options=options))
    return json_response(await api.call(volumes.inspect, volume.name), status=201)


async def list_(request: web.Request) -> web.StreamResponse:
    from sampan.engine import volumes

    filters = query_filters(request)

    def run(engine: object) -> list[dict[str, object]]:
        return [volumes.inspect(engine, v.name) for v in volumes.list_volumes(engine, filters)]  # type: ignore

    return json_response({"Volumes": await backend(request).call(run), "Warnings": []})


async def inspect(request: web.Request) -> web.StreamResponse:
    from sampan.engine import volumes

    return json_response(await backend(request).call(volumes.inspect, request.match_info["name"]))


async def delete(request: web.Request) -> web.StreamResponse:
    from sampan.engine import volumes

    force = query_bool(request, "force")
    await backend(request).call(lambda e: volumes.remove(e, request.match_info["name"], force=force))
    return no_content()


async def prune(request: web.Request) -> web.StreamResponse:
    from sampan.engine import volumes

    filters = query_filters(request)
    report = await backend(request).call(lambda e: volumes.prune(e, filters=filters))
    return json_response({"VolumesDeleted": report.deleted or None, "SpaceReclaimed": report.reclaimed})


async def _update(request: web.Request) -> web.StreamResponse:
    raise BadRequest("volume update is only for cluster volumes")


def register(routes: Routes) -> None:
    routes.add("GET", "/volumes", list_)
    routes.add("POST", "/volumes/create", create)
    routes.add("POST", "/volumes/prune", prune)
    routes.add("GET", "/volumes/{name}", inspect)
    routes.add("PUT", "/volumes/{name}", _update)
    routes.add("DELETE", "/volumes/{name}", delete)
