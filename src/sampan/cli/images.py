"""Image commands: images/ls, tag, rmi, inspect, history, prune, import, save, load, bootstrap."""

from __future__ import annotations

import sys
import time
from argparse import Namespace
from datetime import UTC, datetime
from typing import Any

from sampan.cli.command import arg, command, parse_filters
from sampan.engine.context import Engine
from sampan.errors import SampanError
from sampan.image.digest import short_id

_FORMAT = arg("--format", default="", help="Format output using a Go template, 'table', 'table TEMPLATE' or 'json'")
_NO_TRUNC = arg("--no-trunc", action="store_true", help="Don't truncate output")


def _id(image_id: str, no_trunc: bool) -> str:
    return image_id if no_trunc else short_id(image_id)


def _created_at(ts: float) -> str:
    """Go's time.String() as the docker CLI prints CreatedAt: ``2024-01-02 03:04:05 +0000 UTC``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


def _since(ts: float) -> str:
    from sampan.units import human_duration

    return human_duration(max(0.0, time.time() - ts)) + " ago"


def _image_rows(summaries: list[Any], digests: bool) -> list[tuple[Any, str, str, str]]:
    """Docker's row expansion: one row per repo:tag, digests per repo, ``<none>`` for the rest."""
    rows = []
    for image in summaries:
        repo_tags: dict[str, list[str]] = {}
        repo_digests: dict[str, list[str]] = {}
        for ref in image.repo_tags:
            repo, _, tag = ref.rpartition(":")
            repo_tags.setdefault(repo, []).append(tag)
        for ref in image.repo_digests:
            repo, _, digest = ref.partition("@")
            repo_digests.setdefault(repo, []).append(digest)
        for repo, tags in repo_tags.items():
            found = repo_digests.pop(repo, [])  # a repo's digests never get rows of their own
            shown = found if digests else []
            for tag in tags:
                for digest in shown or ["<none>"]:
                    rows.append((image, repo, tag, digest))
        for repo, digest_list in repo_digests.items():
            for digest in (digest_list if digests else [""]):
                rows.append((image, repo, "<none>", digest))
        if not repo_tags and not repo_digests:
            rows.append((image, "<none>", "<none>", "<none>"))
    return rows


@command("List images",
         arg("repository", nargs="?", help="Show only images of this repository[:tag]"),
         arg("-a", "--all", action="store_true", help="Show all images (default hides intermediate images)"),
         arg("--digests", action="store_true", help="Show digests"),
         arg("-f", "--filter", action="append", help="Filter output based on conditions provided"),
         _FORMAT, _NO_TRUNC,
         arg("-q", "--quiet", action="store_true", help="Only show image IDs"))
def ls(engine: Engine, a: Namespace) -> None:
    from sampan.cli.gotemplate import format_rows
    from sampan.engine import images
    from sampan.units import human_size

    summaries = images.list_images(engine, all=a.all, filters=parse_filters(a.filter), repository=a.repository)
    rows = []
    for image, repo, tag, digest in _image_rows(summaries, a.digests or "Digest" in a.format):
        rows.append({"Containers": "N/A", "CreatedAt": _created_at(image.created),
                     "CreatedSince": _since(image.created), "Digest": digest,
                     "ID": _id(image.id, a.no_trunc), "Repository": repo, "SharedSize": "N/A",
                     "Size": human_size(image.size), "Tag": tag, "UniqueSize": "N/A",
                     "VirtualSize": human_size(image.size)})
    if a.quiet:
        if rows:
            print("\n".join(row["ID"] for row in rows))
        return
    default = ("table {{.Repository}}\t{{.Tag}}\t" + ("{{.Digest}}\t" if a.digests else "")
               + "{{.ID}}\t{{.CreatedSince}}\t{{.Size}}")
    out = format_rows(a.format, rows, table_default=default,
                      headers={"ID": "IMAGE ID", "CreatedSince": "CREATED", "Repository": "REPOSITORY"})
    if out:
        print(out)


@command("Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE",
         arg("source", metavar="SOURCE_IMAGE[:TAG]"), arg("target", metavar="TARGET_IMAGE[:TAG]"))
def tag(engine: Engine, a: Namespace) -> None:
    from sampan.engine import images

    images.tag(engine, a.source, a.target)


@command("Remove one or more images",
         arg("images", nargs="+", metavar="IMAGE"),
         arg("-f", "--force", action="store_true", help="Force removal of the image"),
         arg("--no-prune", action="store_true", help="Do not delete untagged parents"))
def rm(engine: Engine, a: Namespace) -> int:
    from sampan.engine import images

    status = 0
    for name in a.images:
        try:
            report = images.remove(engine, name, force=a.force)
        except SampanError as e:
            print("Error: " + " ".join(str(e).split()), file=sys.stderr)
            status = e.exit_code
            continue
        for action, value in report.actions:
            print(f"{action}: {value}")
    return status


@command("Display detailed information on one or more images",
         arg("images", nargs="+", metavar="IMAGE"),
         arg("-f", "--format", default="", help="Format output using a Go template"))
def inspect(engine: Engine, a: Namespace) -> int:
    from sampan.cli.inspect import print_inspected
    from sampan.engine import images

    return print_inspected(a.images, lambda name: images.inspect(engine, name), a.format)


@command("Show the history of an image",
         arg("image", metavar="IMAGE"),
         arg("-H", "--human", default="true", choices=["true", "false"], help="Print sizes and dates in human "
             "readable format"), _FORMAT, _NO_TRUNC,
         arg("-q", "--quiet", action="store_true", help="Only show image IDs"))
def history(engine: Engine, a: Namespace) -> None:
    from sampan.cli.gotemplate import format_rows
    from sampan.engine import images
    from sampan.units import human_size

    human = a.human == "true"
    rows = []
    for entry in images.history(engine, a.image):
        created_by = entry.created_by.replace("\t", " ")
        if not a.no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        rows.append({"ID": entry.id if entry.id == "<missing>" else _id(entry.id, a.no_trunc),
                     "CreatedAt": _created_at(entry.created) if human else datetime.fromtimestamp(
                         entry.created, UTC).isoformat(),
                     "CreatedSince": _since(entry.created) if human else _created_at(entry.created),
                     "CreatedBy": created_by,
                     "Size": human_size(entry.size) if human else str(entry.size),
                     "Comment": entry.comment})
    if a.quiet:
        print("\n".join(row["ID"] for row in rows))
        return
    out = format_rows(a.format, rows,
                      table_default="table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}",
                      headers={"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedBy": "CREATED BY"})
    if out:
        print(out)


def print_removed(report: Any) -> None:
    from sampan.units import human_size

    if report.actions:
        print("Deleted Images:")
        for action, value in report.actions:
            print(f"{action.lower()}: {value}")
        print()
    print(f"Total reclaimed space: {human_size(report.reclaimed)}")


@command("Remove unused images",
         arg("-a", "--all", action="store_true", help="Remove all unused images, not just dangling ones"),
         arg("--filter", action="append", help="Provide filter values (e.g. 'until=<timestamp>')"),
         arg("-f", "--force", action="store_true", help="Do not prompt for confirmation"))
def prune(engine: Engine, a: Namespace) -> None:
    from sampan.cli.output import confirm
    from sampan.engine import images

    warning = ("WARNING! This will remove all images without at least one container associated to them."
               if a.all else "WARNING! This will remove all dangling images.")
    if not confirm(warning, a.force):
        return
    print_removed(images.prune(engine, all=a.all, filters=parse_filters(a.filter)))


@command("Import the contents from a tarball to create a filesystem image",
         arg("file", metavar="file|-"), arg("reference", nargs="?", metavar="REPOSITORY[:TAG]"),
         arg("-c", "--change", action="append", default=[], help="Apply Dockerfile instruction to the created image"),
         arg("-m", "--message", default="", help="Set commit message for imported image"),
         arg("--platform", default="", help="Set platform if server is multi-platform capable"))
def import_(engine: Engine, a: Namespace) -> None:
    from sampan.cli.output import input_file
    from sampan.engine.image_import import import_image
    from sampan.image import reference

    if a.reference:
        reference.parse_tag_target(a.reference)  # a bad name fails before the tarball is read
    with input_file(a.file) as source:
        stored = import_image(engine, source, reference=a.reference, changes=a.change, message=a.message,
                              source_name=a.file)
    print(stored.id)


@command("Save one or more images to a tar archive (streamed to STDOUT by default)",
         arg("images", nargs="+", metavar="IMAGE"),
         arg("-o", "--output", help="Write to a file, instead of STDOUT"))
def save(engine: Engine, a: Namespace) -> None:
    from sampan.cli.output import output_file
    from sampan.engine import images
    from sampan.engine.image_save import save as save_images

    for name in a.images:
        images.resolve(engine, name)  # every name must exist before anything is written
    with output_file(a.output) as out:
        save_images(engine, a.images, out)


@command("Load an image from a tar archive or STDIN",
         arg("-i", "--input", help="Read from tar archive file, instead of STDIN"),
         arg("-q", "--quiet", action="store_true", help="Suppress the load output"))
def load(engine: Engine, a: Namespace) -> None:
    from sampan.cli.output import input_file
    from sampan.engine.image_load import load as load_images
    from sampan.errors import InvalidArgument

    if a.input is None and sys.stdin.isatty():
        raise InvalidArgument("requested load from stdin, but stdin is empty")
    with input_file(a.input) as source:
        loaded = load_images(engine, source)
    if not a.quiet:
        for image in loaded:
            for name in image.tags:
                print(f"Loaded image: {name}")
            if not image.tags:
                print(f"Loaded image ID: {image.id}")


@command("Build a base image offline: busybox (from busybox-static) or debian (via debootstrap)",
         arg("kind", choices=["busybox", "debian"]),
         arg("-t", "--tag", help="Name and tag for the image (default busybox:latest / debian:SUITE)"),
         arg("--suite", default="bookworm", help="Debian suite for 'debian'"),
         arg("--mirror", help="Debian mirror for 'debian'"),
         arg("--busybox", default="/bin/busybox", help="busybox binary for 'busybox'"))
def bootstrap(engine: Engine, a: Namespace) -> None:
    from sampan.engine import bootstrap as boot
    from sampan.image import reference

    if a.tag:
        reference.parse_tag_target(a.tag)
    if a.kind == "busybox":
        stored = boot.busybox(engine, a.tag or "busybox:latest", a.busybox)
    else:
        stored = boot.debian(engine, a.suite, a.tag, a.mirror)
    print(stored.id)
