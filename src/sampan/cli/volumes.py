"""Volume commands: volume create, ls, inspect, rm, prune."""

from __future__ import annotations

import sys
from argparse import Namespace
from typing import Any

from sampan.cli.command import arg, command, key_values, parse_filters
from sampan.engine.context import Engine
from sampan.errors import SampanError


@command("Create a volume",
         arg("name", nargs="?", default="", metavar="VOLUME"),
         arg("-d", "--driver", default="local", help="Specify volume driver name"),
         arg("--label", action="append", help="Set metadata for a volume"),
         arg("-o", "--opt", action="append", help="Set driver specific options"))
def create(engine: Engine, a: Namespace) -> None:
    from sampan.engine import volumes

    volume = volumes.create(engine, a.name or None, driver=a.driver, labels=key_values(a.label, "label"),
                            options=key_values(a.opt, "option"))
    print(volume.name)


def _row(volume: Any) -> dict[str, str]:
    from sampan.engine.volumes import created_at

    return {"Availability": "N/A", "CreatedAt": created_at(volume.created), "Driver": volume.driver,
            "Group": "N/A", "Labels": ",".join(f"{k}={v}" for k, v in sorted(volume.labels.items())),
            "Links": "N/A", "Mountpoint": volume.mountpoint, "Name": volume.name, "Scope": "local",
            "Size": "N/A", "Status": "N/A"}


@command("List volumes",
         arg("-f", "--filter", action="append", help="Provide filter values (e.g. 'dangling=true')"),
         arg("--format", default="", help="Format output using a Go template, 'table', 'table TEMPLATE' or 'json'"),
         arg("-q", "--quiet", action="store_true", help="Only display volume names"))
def ls(engine: Engine, a: Namespace) -> None:
    from sampan.cli.output import print_listing
    from sampan.engine import volumes

    rows = [_row(volume) for volume in volumes.list_volumes(engine, parse_filters(a.filter))]
    print_listing(a.format, a.quiet, rows, "Name", table_default="table {{.Driver}}\t{{.Name}}",
                  headers={"Name": "VOLUME NAME"})


@command("Display detailed information on one or more volumes",
         arg("volumes", nargs="+", metavar="VOLUME"),
         arg("-f", "--format", default="", help="Format output using a Go template"))
def inspect(engine: Engine, a: Namespace) -> int:
    from sampan.cli.inspect import print_inspected
    from sampan.engine import volumes

    return print_inspected(a.volumes, lambda name: volumes.inspect(engine, name), a.format)


@command("Remove one or more volumes",
         arg("volumes", nargs="+", metavar="VOLUME"),
         arg("-f", "--force", action="store_true", help="Force the removal of one or more volumes"))
def rm(engine: Engine, a: Namespace) -> int:
    from sampan.engine import volumes

    status = 0
    for name in a.volumes:
        try:
            volumes.remove(engine, name, force=a.force)
        except SampanError as e:
            print("Error: " + " ".join(str(e).split()), file=sys.stderr)
            status = e.exit_code
            continue
        print(name)  # as Docker, also for a missing volume with -f
    return status


@command("Remove unused local volumes",
         arg("-a", "--all", action="store_true", help="Remove all unused volumes, not just anonymous ones"),
         arg("--filter", action="append", help="Provide filter values (e.g. 'label=<label>')"),
         arg("-f", "--force", action="store_true", help="Do not prompt for confirmation"))
def prune(engine: Engine, a: Namespace) -> None:
    from sampan.cli.output import confirm
    from sampan.engine import volumes
    from sampan.units import human_size

    filters = parse_filters(a.filter)
    volumes.check_prune_filters(filters)  # a bad filter fails before the prompt
    warning = ("WARNING! This will remove all local volumes not used by at least one container." if a.all
               else "WARNING! This will remove anonymous local volumes not used by at least one container.")
    if not confirm(warning, a.force):
        return
    report = volumes.prune(engine, all=a.all, filters=filters)
    if report.deleted:
        print("Deleted Volumes:")
        print("\n".join(report.deleted))
        print()
    print(f"Total reclaimed space: {human_size(report.reclaimed)}")
