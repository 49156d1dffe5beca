"""System commands: version, info, system df, system check."""

from __future__ import annotations

from argparse import Namespace

from sampan.cli.command import arg, command
from sampan.engine.context import Engine

_FORMAT = arg("-f", "--format", default="", help="Format output using a Go template")


def _render(fmt: str, data: object) -> None:
    from sampan.cli.gotemplate import compile_template

    print(compile_template(fmt).render(data))


@command("Show the sampan version information", _FORMAT, needs_engine=False)
def version(_: None, a: Namespace) -> None:
    from sampan.engine.system import version as engine_version

    data = engine_version()
    if a.format:
        _render(a.format, {"Client": data, "Server": data})
        return
    print("\n".join([
        "Client:", f" Version:           {data['Version']}", f" API version:       {data['ApiVersion']}",
        f" Python version:    {data['GoVersion'].removeprefix('python')}", f" OS/Arch:           linux/{data['Arch']}",
        "", "Server: sampan (daemonless)", " Engine:", f"  Version:          {data['Version']}",
        f"  API version:      {data['ApiVersion']} (minimum version {data['MinAPIVersion']})",
        f"  OS/Arch:          linux/{data['Arch']}", f"  Kernel:           {data['KernelVersion']}"]))


@command("Display system-wide information", _FORMAT)
def info(engine: Engine, a: Namespace) -> None:
    from sampan.engine.system import info as engine_info
    from sampan.units import bytes_size

    data = engine_info(engine)
    if a.format:
        _render(a.format, data)
        return
    print("\n".join([
        "Server:", f" Containers: {data['Containers']}", f"  Running: {data['ContainersRunning']}",
        f"  Paused: {data['ContainersPaused']}", f"  Stopped: {data['ContainersStopped']}",
        f" Images: {data['Images']}", f" Server Version: {data['ServerVersion']}",
        f" Storage Driver: {data['Driver']}", f" Logging Driver: {data['LoggingDriver']}",
        f" Cgroup Driver: {data['CgroupDriver']}", f" Cgroup Version: {data['CgroupVersion']}",
        f" Default Runtime: {data['DefaultRuntime']}",
        " Security Options:", *[f"  {opt}" for opt in data["SecurityOptions"]],
        f" Kernel Version: {data['KernelVersion']}", f" Operating System: {data['OperatingSystem']}",
        f" OSType: {data['OSType']}", f" Architecture: {data['Architecture']}", f" CPUs: {data['NCPU']}",
        f" Total Memory: {bytes_size(data['MemTotal'])}", f" Name: {data['Name']}",
        f" Sampan Root Dir: {data['DockerRootDir']}", f" Exec Root: {data['ExecRoot']}"]))


@command("Show sampan disk usage", _FORMAT,
         arg("-v", "--verbose", action="store_true", help="Show detailed information on space usage"))
def df(engine: Engine, a: Namespace) -> None:
    from sampan.cli.gotemplate import format_rows
    from sampan.engine.system import disk_usage
    from sampan.units import human_size

    rows = []
    for line in disk_usage(engine):
        percent = f" ({round(100 * line.reclaimable / line.size)}%)" if line.size else ""
        rows.append({"Type": line.type, "TotalCount": str(line.total), "Active": str(line.active),
                     "Size": human_size(line.size), "Reclaimable": human_size(line.reclaimable) + percent})
    print(format_rows(a.format, rows,
                      table_default="table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
                      headers={"TotalCount": "TOTAL"}))
    if a.verbose:
        from sampan.cli.images import ls

        print("\nImages space usage:\n")
        ls.run(engine, Namespace(repository=None, all=True, digests=False, filter=None, format="", no_trunc=False,
                                 quiet=False))


@command("Check the store for consistency and leftovers",
         arg("--repair", action="store_true", help="Remove leftovers and unreferenced content"))
def check(engine: Engine, a: Namespace) -> int:
    from sampan.engine.system import check as engine_check

    report = engine_check(engine, repair=a.repair)
    for line in report.repaired:
        print(line)
    for line in report.problems:
        print(f"problem: {line}")
    if not report.problems:
        print("store is consistent")
    return 1 if report.problems else 0


@command("Remove unused data",
         arg("-a", "--all", action="store_true", help="Remove all unused images not just dangling ones"),
         arg("--volumes", action="store_true", help="Prune anonymous volumes"),
         arg("--filter", action="append", help="Provide filter values (e.g. 'label=<key>=<value>')"),
         arg("-f", "--force", action="store_true", help="Do not prompt for confirmation"))
def prune(engine: Engine, a: Namespace) -> None:
    from sampan.cli.command import parse_filters
    from sampan.cli.output import confirm
    from sampan.engine.system import prune as system_prune
    from sampan.units import human_size

    items = ["all stopped containers", *(["all anonymous volumes not used by at least one container"]
                                         if a.volumes else []),
             "all images without at least one container associated to them" if a.all else "all dangling images"]
    if not confirm("WARNING! This will remove:\n" + "\n".join(f"  - {item}" for item in items), a.force):
        return
    report = system_prune(engine, all=a.all, prune_volumes=a.volumes, filters=parse_filters(a.filter))
    for title, lines in (("Deleted Containers:", report.containers), ("Deleted Volumes:", report.volumes),
                         ("Deleted Images:", [f"{action.lower()}: {value}" for action, value in report.image_actions])):
        if lines:
            print(title)
            print("\n".join(lines))
            print()
    print(f"Total reclaimed space: {human_size(report.reclaimed)}")


@command("Reset sampan storage back to the initial state",
         arg("-f", "--force", action="store_true", help="Do not prompt for confirmation"))
def reset(engine: Engine, a: Namespace) -> None:
    from sampan.cli.output import confirm
    from sampan.engine.system import reset as engine_reset

    warning = ("WARNING! This will remove all containers, images, volumes and networks of this storage root,\n"
               "and its network interfaces, firewall table and mounts.")
    if confirm(warning, a.force):
        engine_reset(engine)
