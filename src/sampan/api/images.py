"""Image endpoints: list, inspect, history, tag, delete, prune, get (save), load, create (pull or import) and
push; pull and push stream Docker's JSON progress lines."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from sampan.api.server import (
    BadRequest,
    Routes,
    backend,
    body_to_file,
    error_response,
    json_lines,
    json_response,
    query_bool,
    query_filters,
    registry_auth,
    stream_from_thread,
)
from sampan.engine.images import ImageSummary


def image_summary(s: ImageSummary) -> dict[str, Any]:
    return {"Id": s.id, "ParentId": s.parent, "RepoTags": s.repo_tags, "RepoDigests": s.repo_digests,
            "Created": int(s.created), "Size": s.size, "SharedSize": -1, "VirtualSize": s.size,
            "Labels": s.labels or {}, "Containers": -1}


async def list_(request: web.Request) -> web.StreamResponse:
    from sampan.engine import images

    all_ = query_bool(request, "all")
    filters = query_filters(request)
    found = await backend(request).call(lambda e: images.list_images(e, all=all_, filters=filters))
    return json_response([image_summary(s) for s in found])


async def inspect(request: web.Request) -> web.StreamResponse:
    from sampan.engine import images

    return json_response(await backend(request).call(images.inspect, request.match_info["name"]))


async def history(request: web.Request) -> web.StreamResponse:
    from sampan.engine import images

    entries = await backend(request).call(images.history, request.match_info["name"])
    return json_response([{"Id": h.id, "Created": int(h.created), "CreatedBy": h.created_by, "Tags": h.tags or None,
                           "Size": h.size, "Comment": h.comment} for h in entries])


async def tag(request: web.Request) -> web.StreamResponse:
    from sampan.engine import images

    repo = request.query.get("repo", "")
    if not repo:
        raise BadRequest("repository name (repo) is required")
    tag_ = request.query.get("tag", "")
    target = f"{repo}:{tag_}" if tag_ else repo
    await backend(request).call(images.tag, request.match_info["name"], target)
    return web.Response(status=201)


async def delete(request: web.Request) -> web.StreamResponse:
    from sampan.engine import images

    force = query_bool(request, "force")
    report = await backend(request).call(lambda e: images.remove(e, request.match_info["name"], force=force))
    return json_response([{action: value} for action, value in report.actions])


async def prune(request: web.Request) -> web.StreamResponse:
    from sampan.engine import images
    from sampan.engine.filters import bool_filter

    filters = query_filters(request)
    dangling = filters.pop("dangling", None)
    all_ = dangling is not None and bool_filter({"dangling": dangling}, "dangling") is False
    report = await backend(request).call(lambda e: images.prune(e, all=all_, filters=filters))
    return json_response({"ImagesDeleted": [{action: value} for action, value in report.actions] or None,
                          "SpaceReclaimed": report.reclaimed})


async def get(request: web.Request) -> web.StreamResponse:
    """``docker save``: ``/images/get?names=a&names=b`` or ``/images/{name}/get``."""
    from sampan.engine import images
    from sampan.engine.image_save import save

    names = [request.match_info["name"]] if "name" in request.match_info else request.query.getall("names", [])
    if not names:
        raise BadRequest("no images given (names)")

    def produce(engine: Any, out: Any) -> None:
        for name in names:
            images.resolve(engine, name)
        save(engine, names, out)

    return await stream_from_thread(request, produce)


async def load(request: web.Request) -> web.StreamResponse:
    from sampan.engine.image_load import load as load_images

    # quiet hides only progress bars, which we never send: as from dockerd, the "Loaded image" lines always come
    # (the docker CLI asks for quiet whenever its output is not a terminal)
    query_bool(request, "quiet")  # still validated
    body = await body_to_file(request)
    try:
        loaded = await backend(request).call(load_images, body)
    finally:
        body.close()
    lines = []
    for image in loaded:
        for name in image.tags or []:
            lines.append({"stream": f"Loaded image: {name}\n"})
        if not image.tags:
            lines.append({"stream": f"Loaded image ID: {image.id}\n"})
    return web.Response(text="".join(json.dumps(line) + "\n" for line in lines), content_type="application/json")


async def create(request: web.Request) -> web.StreamResponse:
    """``docker pull`` (``fromImage``, credentials in ``X-Registry-Auth``) and ``docker import`` (``fromSrc``)."""
    from sampan.engine.pull import pull

    if request.query.get("fromSrc"):
        return await _import(request)
    if not request.query.get("fromImage"):
        raise BadRequest("fromImage or fromSrc is required")
    reference = request.query["fromImage"]
    tag_ = request.query.get("tag", "")
    if tag_ and "@" not in reference:
        reference += ("@" if tag_.startswith("sha256:") else ":") + tag_
    platform = request.query.get("platform") or None
    credentials = registry_auth(request)
    return await json_lines(request, lambda engine, send: pull(engine, reference, platform=platform,
                                                               progress=_progress(send), credentials=credentials))


async def push(request: web.Request) -> web.StreamResponse:
    """``docker push``: ``/images/{name}/push?tag=``, credentials in ``X-Registry-Auth``; the closing ``aux``
    line carries the tag, digest and size, as dockerd writes it."""
    from sampan.engine.push import push as push_image
    from sampan.image import reference as refs

    reference = request.match_info["name"]
    tag_ = request.query.get("tag", "")
    if tag_:
        reference += ":" + tag_
    all_tags = not tag_ and refs.parse(reference).tag is None  # dockerd: no tag pushes every local tag
    credentials = registry_auth(request)

    def finish(results: Any) -> list[dict[str, Any]]:
        return [{"progressDetail": {}, "aux": {"Tag": r.reference.tag, "Digest": r.digest, "Size": r.size}}
                for r in results or []]

    return await json_lines(request, lambda engine, send: push_image(engine, reference, all_tags=all_tags,
                                                                     progress=_progress(send),
                                                                     credentials=credentials), finish)


def _progress(send: Any) -> Any:
    """The engine's progress events as Docker's JSON progress lines."""

    def emit(event: Any) -> None:
        line: dict[str, Any] = {"status": event.status}
        if event.total:
            line["progressDetail"] = {"current": event.current, "total": event.total}
        if event.id:
            line["id"] = event.id
        send(line)

    return emit


async def _import(request: web.Request) -> web.StreamResponse:
    from sampan.engine.image_import import import_image

    if request.query["fromSrc"] != "-":
        return error_response(501, "importing from a URL is not supported")
    repo, tag_ = request.query.get("repo", ""), request.query.get("tag", "")
    reference = (f"{repo}:{tag_}" if tag_ else repo) or None
    changes = request.query.getall("changes", [])
    message = request.query.get("message", "")
    body = await body_to_file(request)
    try:
        stored = await backend(request).call(lambda e: import_image(e, body, reference=reference, changes=changes,
                                                                    message=message))
    finally:
        body.close()
    return web.Response(text=json.dumps({"status": stored.id}) + "\n", content_type="application/json")


def register(routes: Routes) -> None:
    routes.add("GET", "/images/json", list_)
    routes.add("POST", "/images/create", create)
    routes.add("POST", "/images/load", load)
    routes.add("GET", "/images/get", get)
    routes.add("POST", "/images/prune", prune)
    routes.add("GET", "/images/{name:.+}/json", inspect)
    routes.add("GET", "/images/{name:.+}/history", history)
    routes.add("GET", "/images/{name:.+}/get", get)
    routes.add("POST", "/images/{name:.+}/tag", tag)
    routes.add("POST", "/images/{name:.+}/push", push)
    routes.add("DELETE", "/images/{name:.+}", delete)
