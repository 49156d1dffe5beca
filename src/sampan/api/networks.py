"""Network endpoints: list, inspect, create, delete, connect, disconnect, prune, over ``sampan.engine.networks``
(the same calls as ``sampan network ...``). Shapes and status codes are dockerd's: create answers 201 with
``{"Id", "Warning"}``, delete 204, connect and disconnect 200 with an empty body, a missing network 404, a
predefined one 403."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sampan.api.server import (
    BadRequest,
    Routes,
    backend,
    body_json,
    field,
    json_response,
    no_content,
    query_filters,
    str_list,
    str_map,
)
from sampan.errors import SampanError

_CREATE = "NetworkCreateRequest"


class Forbidden(SampanError):
    """An operation dockerd refuses with 403 (removing a predefined network)."""

    http_status = 403


async def list_(request: web.Request) -> web.StreamResponse:
    from sampan.engine import networks

    filters = query_filters(request)
    found = await backend(request).call(networks.ls, filters)
    for item in found:
        item["Containers"] = {}  # dockerd's list leaves the endpoints to inspect
    return json_response(found)


async def inspect(request: web.Request) -> web.StreamResponse:
    from sampan.engine import networks

    return json_response(await backend(request).call(networks.inspect, request.match_info["id"]))


def _ipam(body: dict[str, Any]) -> dict[str, str]:
    """IPAM.Config as the engine's one IPv4 pool: subnet, gateway, ip_range."""
    ipam = field(body, "IPAM", dict, _CREATE, {})
    driver = field(ipam, "Driver", str, "IPAM", "") or "default"
    if driver != "default":
        raise BadRequest(f"IPAM driver {driver!r} is not supported (sampan has the default driver only)")
    configs = field(ipam, "Config", list, "IPAM", [])
    if len(configs) > 1:
        raise BadRequest("sampan networks have one IPv4 pool: give one IPAM.Config entry")
    if not configs:
        return {}
    config = configs[0]
    if not isinstance(config, dict):
        raise BadRequest("json: cannot unmarshal IPAM.Config: each entry is an object")
    if field(config, "AuxiliaryAddresses", dict, "IPAMConfig", {}):
        raise BadRequest("auxiliary addresses are not supported")
    return {"subnet": field(config, "Subnet", str, "IPAMConfig", ""),
            "gateway": field(config, "Gateway", str, "IPAMConfig", ""),
            "ip_range": field(config, "IPRange", str, "IPAMConfig", "")}


async def create(request: web.Request) -> web.StreamResponse:
    """``CheckDuplicate`` is what sampan always does (names are unique), so it needs no handling."""
    from sampan.engine import networks

    body = await body_json(request, required=True)
    name = field(body, "Name", str, _CREATE, "")
    if not name:
        raise BadRequest("network name is required")
    field(body, "CheckDuplicate", bool, _CREATE, True)
    for key in ("Attachable", "Ingress", "ConfigOnly"):
        field(body, key, bool, _CREATE, False)
    if field(body, "EnableIPv6", bool, _CREATE, False):
        raise BadRequest("IPv6 networks are not supported by sampan")
    if field(body, "Scope", str, _CREATE, "") not in ("", "local"):
        raise BadRequest("sampan networks are local: only scope \"local\" is supported")
    kwargs = {"driver": field(body, "Driver", str, _CREATE, "") or "bridge",
              "internal": field(body, "Internal", bool, _CREATE, False), "options": str_map(body, "Options", _CREATE),
              "labels": str_map(body, "Labels", _CREATE), **_ipam(body)}
    network = await backend(request).call(lambda e: networks.create(e, name, **kwargs))
    return json_response({"Id": network.id, "Warning": ""}, status=201)


async def delete(request: web.Request) -> web.StreamResponse:
    from sampan.engine import networks

    name = request.match_info["id"]
    if name in networks.PREDEFINED:
        raise Forbidden(f"{name} is a pre-defined network and cannot be removed")
    await backend(request).call(networks.remove, name)
    return no_content()


def _container(body: dict[str, Any], where: str) -> str:
    container = field(body, "Container", str, where, "")
    if not container:
        raise BadRequest("container is required")
    return container


async def connect(request: web.Request) -> web.StreamResponse:
    from sampan.engine import networks

    body = await body_json(request, required=True)
    where = "NetworkConnectRequest"
    container = _container(body, where)
    settings = field(body, "EndpointConfig", dict, where, {})
    ipam = field(settings, "IPAMConfig", dict, "EndpointSettings", {})
    endpoint = networks.Endpoint(request.match_info["id"], str_list(settings, "Aliases", "EndpointSettings") or [],
                                 field(ipam, "IPv4Address", str, "EndpointIPAMConfig", ""),
                                 field(settings, "MacAddress", str, "EndpointSettings", ""))
    await backend(request).call(lambda e: networks.connect(e, endpoint.network, container, endpoint))
    return web.Response(status=200)


async def disconnect(request: web.Request) -> web.StreamResponse:
    from sampan.engine import networks

    body = await body_json(request, required=True)
    where = "NetworkDisconnectRequest"
    container = _container(body, where)
    force = field(body, "Force", bool, where, False)
    await backend(request).call(lambda e: networks.disconnect(e, request.match_info["id"], container, force))
    return web.Response(status=200)


async def prune(request: web.Request) -> web.StreamResponse:
    from sampan.engine import networks

    removed = await backend(request).call(networks.prune, query_filters(request))
    return json_response({"NetworksDeleted": removed or None})


def register(routes: Routes) -> None:
    routes.add("GET", "/networks", list_)
    routes.add("GET", "/networks/{id}", inspect)
    routes.add("POST", "/networks/create", create)
    routes.add("POST", "/networks/prune", prune)
    routes.add("DELETE", "/networks/{id}", delete)
    routes.add("POST", "/networks/{id}/connect", connect)
    routes.add("POST", "/networks/{id}/disconnect", disconnect)
