"""``manifest``: inspect, create, annotate, push and remove multi-platform manifest lists, as ``docker manifest``."""

from __future__ import annotations

import sys
from argparse import Namespace

from sampan.cli.command import arg, command
from sampan.engine.context import Engine


@command("Display an image manifest, or manifest list",
         arg("name", metavar="[MANIFEST_LIST] MANIFEST"),
         arg("--insecure", action="store_true", help="Allow communication with an insecure registry"),
         arg("-v", "--verbose", action="store_true", help="Output additional info including layers and platform"))
def inspect(engine: Engine, a: Namespace) -> None:
    from sampan.engine import manifest_lists

    print(manifest_lists.inspect(engine, a.name, verbose=a.verbose))


@command("Create a local manifest list for annotating and pushing to a registry",
         arg("name", metavar="MANIFEST_LIST"),
         arg("images", nargs="+", metavar="MANIFEST"),
         arg("-a", "--amend", action="store_true", help="Amend an existing manifest list"),
         arg("--insecure", action="store_true", help="Allow communication with an insecure registry"))
def create(engine: Engine, a: Namespace) -> None:
    from sampan.engine import manifest_lists

    target = manifest_lists.create(engine, a.name, a.images, amend=a.amend)
    print(f"Created manifest list {target}")


@command("Add additional information to a local image manifest",
         arg("name", metavar="MANIFEST_LIST"),
         arg("image", metavar="MANIFEST"),
         arg("--arch", default="", help="Set architecture"),
         arg("--os", default="", help="Set operating system"),
         arg("--os-features", action="append", default=[], help="Set operating system feature"),
         arg("--os-version", default="", help="Set operating system version"),
         arg("--variant", default="", help="Set architecture variant"))
def annotate(engine: Engine, a: Namespace) -> None:
    from sampan.engine import manifest_lists

    manifest_lists.annotate(engine, a.name, a.image, os_name=a.os, arch=a.arch, variant=a.variant,
                            os_version=a.os_version, os_features=a.os_features)


@command("Push a manifest list to a repository",
         arg("name", metavar="MANIFEST_LIST"),
         arg("--insecure", action="store_true", help="Allow push to an insecure registry"),
         arg("-p", "--purge", action="store_true", help="Remove the local manifest list after push"))
def push(engine: Engine, a: Namespace) -> None:
    from sampan.engine import manifest_lists

    def show(event: object) -> None:
        status = getattr(event, "status", "")
        if status.startswith("Pushed ref "):
            print(status, flush=True)

    digest = manifest_lists.push(engine, a.name, purge=a.purge, progress=show)
    print(digest)


@command("Delete one or more manifest lists from local storage",
         arg("names", nargs="+", metavar="MANIFEST_LIST"))
def rm(engine: Engine, a: Namespace) -> int:
    from sampan.engine import manifest_lists
    from sampan.errors import NotFound

    status = 0
    for name in a.names:
        try:
            manifest_lists.remove(engine, name)
        except NotFound as e:
            print(f"Error: {e}", file=sys.stderr)
            status = 1
    return status
