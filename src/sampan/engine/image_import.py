"""``import``: make a one-layer image from a root filesystem tarball (plain, gzip or zstd)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, BinaryIO

from sampan.engine.context import Engine
from sampan.engine.image_store import StoredImage, commit_image, put_blob, unpack_layer_blob
from sampan.engine.operation import storing
from sampan.image import mediatypes as mt
from sampan.image import reference as refs
from sampan.image.changes import apply_change
from sampan.image.compression import detect
from sampan.image.config import format_time, new_config


def import_image(engine: Engine, source: BinaryIO, *, reference: str | None = None, changes: list[str] = (),
                 message: str = "", source_name: str = "-", container: dict[str, Any] | None = None,
                 created: float | None = None, history_extra: list[dict[str, Any]] = ()) -> StoredImage:
    """Store ``source`` as a layer and commit an image for it; ``container`` seeds the runtime config."""
    tags = [refs.parse_tag_target(reference)] if reference else []
    config_body: dict[str, Any] = dict(container or {})
    for change in changes:
        apply_change(config_body, change)
    created = time.time() if created is None else created
    with storing(engine) as lease:
        blob = put_blob(engine, lease, source)
        with engine.content.open(blob.digest) as f:
            media_type = mt.oci_layer_type(detect(f.read(8)))
        layer = unpack_layer_blob(engine, lease, dataclasses.replace(blob, media_type=media_type), None, None)
        comment = message or f"Imported from {source_name}"
        config = new_config([layer.snapshot.diff_id], created=created, container=config_body,
                            history=[{"created": format_time(created), "comment": comment}, *history_extra],
                            comment=message)
        stored = commit_image(engine, lease, config.to_bytes(), [layer], tags=tags)
    from sampan.engine import events

    events.record(engine, "image", "import", stored.id, {"name": reference or stored.id})
    return stored

