"""``build``: Dockerfile builds with the classic builder (``sampan.engine.build``).

The context is a directory, or ``-``: a tar archive on stdin (extracted, safely, into a temporary directory) or,
when stdin is no archive, a Dockerfile with an empty context, as the docker CLI reads it. ``-f -`` reads the
Dockerfile from stdin. Progress is Docker's classic output on stdout; ``-q`` prints only the image ID.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from argparse import Namespace

from sampan.cli.command import arg, command
from sampan.engine.context import Engine
from sampan.errors import InvalidArgument


def _key_values(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"invalid {what}: {item!r}")
        if not eq:
            value = os.environ.get(key)
            if value is None:
                continue  # docker: a --build-arg NAME not set in the environment is left out
        out[key] = value
    return out


def _extract_stdin(data: bytes, into: str) -> bool:
    """Unpack a tar context (maybe compressed) from stdin; False when the data is no tar archive (a bare
    Dockerfile). Extraction goes through ``unpack_layer``: no entry lands outside ``into``."""
    import io
    import tarfile

    from sampan.image.compression import open_decompressed
    from sampan.snapshot.unpack import unpack_layer

    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            if archive.next() is None:
                return False
    except (tarfile.TarError, EOFError):
        return False
    unpack_layer(open_decompressed(io.BytesIO(data)), into, whiteouts="keep")
    return True


@command("Build an image from a Dockerfile",
         arg("context", metavar="PATH | -"),
         arg("-t", "--tag", action="append", default=[], help="Name and optionally a tag in the 'name:tag' format"),
         arg("-f", "--file", default="", help="Name of the Dockerfile (Default is 'PATH/Dockerfile')"),
         arg("--build-arg", action="append", default=[], help="Set build-time variables"),
         arg("--label", action="append", default=[], help="Set metadata for an image"),
         arg("--target", default="", help="Set the target build stage to build"),
         arg("--no-cache", action="store_true", help="Do not use cache when building the image"),
         arg("--pull", action="store_true", help="Always attempt to pull a newer version of the image"),
         arg("--network", default="default", help="Set the networking mode for the RUN instructions during build"),
         arg("-q", "--quiet", action="store_true", help="Suppress the build output and print image ID on success"),
         arg("--iidfile", default="", help="Write the image ID to the file"),
         arg("--rm", default="true", help="Remove intermediate containers after a successful build (always)"),
         arg("--force-rm", action="store_true", help="Always remove intermediate containers (always)"))
def build(engine: Engine, a: Namespace) -> None:
    from sampan.engine.build import BuildOptions
    from sampan.engine.build import build as run_build

    dockerfile_text = None
    tmp = None
    try:
        if a.file == "-":
            dockerfile_text = sys.stdin.buffer.read().decode("utf-8", "surrogateescape")
        if a.context == "-":
            if dockerfile_text is not None:
                raise InvalidArgument("invalid argument: can't use stdin for both build context and dockerfile")
            tmp = tempfile.mkdtemp(prefix="sampan-build-", dir=str(engine.layout.tmp))
            data = sys.stdin.buffer.read()
            if not _extract_stdin(data, tmp):
                dockerfile_text = data.decode("utf-8", "surrogateescape")
            context = tmp
        else:
            context = a.context
        dockerfile = a.file if a.file not in ("", "-") else ""
        if dockerfile and not os.path.isabs(dockerfile) and a.context == "-":
            dockerfile = os.path.join(context, dockerfile)
        options = BuildOptions(
            context=context, dockerfile=dockerfile, dockerfile_text=dockerfile_text, tags=a.tag,
            build_args=_key_values(a.build_arg, "build-arg"), target=a.target, no_cache=a.no_cache,
            network=a.network, quiet=a.quiet, labels=_key_values(a.label, "label"), pull=a.pull)
        result = run_build(engine, options)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    if a.quiet:
        print(result.image_id)
    if a.iidfile:
        with open(a.iidfile, "w") as f:
            f.write(result.image_id)
