"""Network commands: network create, ls, inspect, rm, prune, connect, disconnect."""

from __future__ import annotations

import sys
from argparse import Namespace

from sampan.cli.command import arg, command, key_values, parse_filters
from sampan.engine.context import Engine
from sampan.errors import InvalidArgument, SampanError


def _one(values: list[str] | None, flag: str) -> str:
    if values and len(values) > 1:
        raise InvalidArgument(f"sampan networks have one IPv4 pool: give {flag} once")
    return values[0] if values else ""


@command("Create a network",
         arg("name", metavar="NETWORK"),
         arg("-d", "--driver", default="bridge", help="Driver to manage the Network"),
         arg("--subnet", action="append", help="Subnet in CIDR format that represents a network segment"),
         arg("--gateway", action="append", help="IPv4 Gateway for the master subnet"),
         arg("--ip-range", action="append", help="Allocate container ip from a sub-range"),
         arg("--internal", action="store_true", help="Restrict external access to the network"),
         arg("--label", action="append", help="Set metadata on a network"),
         arg("-o", "--opt", action="append", help="Set driver specific options"),
         arg("--attachable", action="store_true", help="Enable manual container attachment (always)"))
def create(engine: Engine, a: Namespace) -> None:
    from sampan.engine import networks

    network = networks.create(engine, a.name, driver=a.driver, subnet=_one(a.subnet, "--subnet"),
                              gateway=_one(a.gateway, "--gateway"), ip_range=_one(a.ip_range, "--ip-range"),
                              internal=a.internal, options=key_values(a.opt, "option"),
                              labels=key_values(a.label, "label"))
    print(network.id)


@command("List networks",
         arg("-f", "--filter", action="append", help="Provide filter values (e.g. 'driver=bridge')"),
         arg("--format", default="", help="Format output using a Go template, 'table', 'table TEMPLATE' or 'json'"),
         arg("--no-trunc", action="store_true", help="Do not truncate the output"),
         arg("-q", "--quiet", action="store_true", help="Only display network IDs"))
def ls(engine: Engine, a: Namespace) -> None:
    from sampan.cli.output import print_listing
    from sampan.engine import networks

    rows = [{"ID": n["Id"] if a.no_trunc else n["Id"][:12], "Name": n["Name"], "Driver": n["Driver"],
             "Scope": n["Scope"], "IPv6": "false", "Internal": str(n["Internal"]).lower(), "CreatedAt": n["Created"],
             "Labels": ",".join(f"{k}={v}" for k, v in sorted(n["Labels"].items()))}
            for n in networks.ls(engine, parse_filters(a.filter))]
    print_listing(a.format, a.quiet, rows, "ID", table_default="table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
                  headers={"ID": "NETWORK ID"})


@command("Display detailed information on one or more networks",
         arg("networks", nargs="+", metavar="NETWORK"),
         arg("-f", "--format", default="", help="Format output using a Go template"))
def inspect(engine: Engine, a: Namespace) -> int:
    from sampan.cli.inspect import print_inspected
    from sampan.engine import networks

    return print_inspected(a.networks, lambda name: networks.inspect(engine, name), a.format)


@command("Remove one or more networks",
         arg("networks", nargs="+", metavar="NETWORK"),
         arg("-f", "--force", action="store_true", help="Do not error if the network does not exist"))
def rm(engine: Engine, a: Namespace) -> int:
    from sampan.engine import networks
    from sampan.errors import NotFound

    status = 0
    for name in a.networks:
        try:
            networks.remove(engine, name)
        except NotFound:
            if a.force:
                continue
            print(f"Error response from daemon: network {name} not found", file=sys.stderr)
            status = 1
            continue
        except SampanError as e:
            print("Error response from daemon: " + " ".join(str(e).split()), file=sys.stderr)
            status = e.exit_code
            continue
        print(name)
    return status


@command("Remove all unused networks",
         arg("--filter", action="append", help="Provide filter values (e.g. 'until=<timestamp>')"),
         arg("-f", "--force", action="store_true", help="Do not prompt for confirmation"))
def prune(engine: Engine, a: Namespace) -> None:
    from sampan.cli.output import confirm
    from sampan.engine import networks

    filters = parse_filters(a.filter)
    if not confirm("WARNING! This will remove all custom networks not used by at least one container.", a.force):
        return
    removed = networks.prune(engine, filters)
    if removed:
        print("Deleted Networks:")
        print("\n".join(removed))


@command("Connect a container to a network",
         arg("network", metavar="NETWORK"), arg("container", metavar="CONTAINER"),
         arg("--alias", action="append", default=[], help="Add network-scoped alias for the container"),
         arg("--ip", default="", help="IPv4 address (e.g., 172.30.100.104)"))
def connect(engine: Engine, a: Namespace) -> None:
    from sampan.engine import networks

    networks.connect(engine, a.network, a.container, networks.Endpoint(a.network, a.alias, a.ip))


@command("Disconnect a container from a network",
         arg("network", metavar="NETWORK"), arg("container", metavar="CONTAINER"),
         arg("-f", "--force", action="store_true", help="Force the container to disconnect from a network"))
def disconnect(engine: Engine, a: Namespace) -> None:
    from sampan.engine import networks

    networks.disconnect(engine, a.network, a.container, a.force)
