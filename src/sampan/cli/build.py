"""``build`` and ``image analyze``: Dockerfile builds with the classic builder (``sampan.engine.build``).

The context is a directory, a tar archive (a file, maybe compressed), or ``-``: a tar archive on stdin or, when
stdin is no archive, a Dockerfile with an empty context, as the docker CLI reads it. Archives are extracted,
safely, into a temporary directory. ``-f -`` reads the Dockerfile from stdin. Progress is Docker's classic output
on stdout (``--progress plain``; ``tty`` and ``auto`` print the same lines: the classic builder has no other
display); ``-q`` prints only the image ID. ``SOURCE_DATE_EPOCH`` in the environment makes the build
reproducible.
"""

from __future__ import annotations

import os
import sys

from sampan.cli.command import arg, command
from sampan.errors import InvalidArgument

TYPE_CHECKING = False  # typing is not imported at run time: a cached build is mostly start-up
if TYPE_CHECKING:
    from argparse import Namespace
    from typing import BinaryIO

    from sampan.engine.context import Engine


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


def _extract(source: BinaryIO, into: str) -> bool:
    """Unpack a tar context (maybe compressed) from a seekable stream; False when it is no tar archive (a bare
    Dockerfile). Extraction goes through ``unpack_layer``: no entry lands outside ``into``."""
    import tarfile

    from sampan.image.compression import open_decompressed
    from sampan.snapshot.unpack import unpack_layer

    try:
        with tarfile.open(fileobj=source, mode="r:*") as archive:
            if archive.next() is None:
                return False
    except (tarfile.TarError, EOFError):
        return False
    source.seek(0)
    unpack_layer(open_decompressed(source), into, whiteouts="keep")
    return True


def _epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    if not value:
        return None
    if not value.isdigit():
        raise InvalidArgument(f"invalid SOURCE_DATE_EPOCH {value!r}: seconds since 1970 expected")
    return int(value)


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
         arg("--squash", action="store_true", help="Squash newly built layers into a single new layer"),
         arg("--secret", action="append", default=[],
             help="Secret to expose to the build (id=ID,src=FILE or id=ID,env=VAR)"),
         arg("--progress", default="auto", choices=["auto", "plain", "tty"],
             help="Type of progress output (all show the classic builder's lines)"),
         arg("--rm", default="true", help="Remove intermediate containers after a successful build (always)"),
         arg("--force-rm", action="store_true", help="Always remove intermediate containers (always)"))
def build(engine: Engine, a: Namespace) -> None:
    from sampan.engine.build import BuildOptions
    from sampan.engine.build import build as run_build

    dockerfile_text = None
    tmp = None
    secrets: dict[str, bytes] = {}
    if a.secret:
        from sampan.build.mounts import parse_secret

        secrets = dict(parse_secret(spec) for spec in a.secret)
    try:
        if a.file == "-":
            dockerfile_text = sys.stdin.buffer.read().decode("utf-8", "surrogateescape")
        if a.context == "-" or os.path.isfile(a.context):
            if a.context == "-" and dockerfile_text is not None:
                raise InvalidArgument("invalid argument: can't use stdin for both build context and dockerfile")
            import io
            import tempfile

            tmp = tempfile.mkdtemp(prefix="sampan-build-", dir=str(engine.layout.tmp))
            with (io.BytesIO(sys.stdin.buffer.read()) if a.context == "-" else open(a.context, "rb")) as source:
                if not _extract(source, tmp):
                    if a.context != "-":
                        raise InvalidArgument(f"unable to prepare context: {a.context} is no tar archive")
                    source.seek(0)
                    dockerfile_text = source.read().decode("utf-8", "surrogateescape")
            context = tmp
        else:
            context = a.context
        dockerfile = a.file if a.file not in ("", "-") else ""
        if dockerfile and not os.path.isabs(dockerfile) and tmp is not None:
            dockerfile = os.path.join(context, dockerfile)
        options = BuildOptions(
            context=context, dockerfile=dockerfile, dockerfile_text=dockerfile_text, tags=a.tag,
            build_args=_key_values(a.build_arg, "build-arg"), target=a.target, no_cache=a.no_cache,
            network=a.network, quiet=a.quiet, labels=_key_values(a.label, "label"), pull=a.pull,
            secrets=secrets, squash=a.squash, source_date_epoch=_epoch())
        result = run_build(engine, options)
    finally:
        if tmp is not None:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    if a.quiet:
        print(result.image_id)
    if a.iidfile:
        with open(a.iidfile, "w") as f:
            f.write(result.image_id)


@command("Show, per layer, the bytes that later layers delete or overwrite, and the image's efficiency",
         arg("image", metavar="IMAGE"),
         arg("--paths", type=int, default=3, metavar="N", help="Show up to N wasted paths per layer"))
def analyze(engine: Engine, a: Namespace) -> None:
    from sampan.engine.build import analyze as run_analyze
    from sampan.units import human_size

    result = run_analyze(engine, a.image)
    print(f"{'LAYER':<7}{'SIZE':>10}{'WASTED':>10}  CREATED BY")
    for layer in result.layers:
        created_by = layer.created_by.removeprefix("/bin/sh -c ").removeprefix("#(nop) ").strip()
        print(f"{layer.index:<7}{human_size(layer.size):>10}{human_size(layer.wasted):>10}  {created_by[:70]}")
        for path in layer.paths[:a.paths]:
            print(f"{'':<29}wasted: /{path}")
    print(f"Total: {human_size(result.added)} added, {human_size(result.wasted)} wasted, "
          f"efficiency {result.efficiency:.1%}")
