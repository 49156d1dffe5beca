"""Monitoring commands: stats, events and system metrics."""

from __future__ import annotations

import sys
import time
from argparse import Namespace
from typing import Any

from sampan.cli.command import arg, command, parse_filters
from sampan.engine.context import Engine

_STATS_TABLE = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"
_STATS_HEADERS = {"ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME", "CPUPerc": "CPU %",
                  "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O",
                  "PIDs": "PIDS"}
_NO_STREAM_INTERVAL_S = 0.5


def _stats_row(record: Any, figures: Any, no_trunc: bool, name_given: str) -> dict[str, str]:
    from sampan.units import bytes_size, human_size

    running = record.status in ("running", "paused")
    return {
        "ID": record.id if no_trunc else record.id[:12], "Container": name_given or record.id[:12],
        "Name": record.name,
        "CPUPerc": f"{figures.cpu_percent:.2f}%" if running else "--",
        "MemUsage": f"{bytes_size(figures.mem_usage)} / {bytes_size(figures.mem_limit)}" if running else "-- / --",
        "MemPerc": f"{figures.mem_percent:.2f}%" if running else "--",
        "NetIO": f"{human_size(figures.net_rx)} / {human_size(figures.net_tx)}" if running else "-- / --",
        "BlockIO": f"{human_size(figures.block_read)} / {human_size(figures.block_write)}" if running else "-- / --",
        "PIDs": str(figures.pids) if running else "--",
    }


@command("Display a live stream of container(s) resource usage statistics",
         arg("containers", nargs="*", metavar="CONTAINER"),
         arg("-a", "--all", action="store_true", help="Show all containers (default shows just running)"),
         arg("--no-stream", action="store_true", help="Disable streaming stats and only pull the first result"),
         arg("--no-trunc", action="store_true", help="Do not truncate output"),
         arg("--format", default="", help="Format output using a Go template, 'table', 'table TEMPLATE' or 'json'"))
def stats(engine: Engine, a: Namespace) -> None:
    from sampan.cli.gotemplate import format_rows
    from sampan.engine.containers import stats as engine_stats

    interactive = sys.stdout.isatty() and not a.no_stream
    found = engine_stats.containers_for(engine, a.containers, a.all)
    previous = {r.id: engine_stats.sample(engine, r) for r in found}  # CPU % needs two readings
    time.sleep(_NO_STREAM_INTERVAL_S)
    while True:
        found = engine_stats.containers_for(engine, a.containers, a.all)
        samples = {r.id: engine_stats.sample(engine, r) for r in found}
        rows = []
        for record in found:
            current = samples[record.id]
            given = next((n for n in a.containers if record.id.startswith(n) or record.name == n.lstrip("/")), "")
            rows.append(_stats_row(record, engine_stats.figures(current, previous.get(record.id)), a.no_trunc,
                                   given))
        out = format_rows(a.format, rows, table_default=_STATS_TABLE, headers=_STATS_HEADERS)
        if interactive:
            sys.stdout.write("\033[2J\033[H")
        print(out, flush=True)
        if a.no_stream:
            return
        previous = samples
        time.sleep(1.0)


def _event_line(event: dict[str, Any]) -> str:
    from datetime import datetime

    when = datetime.fromtimestamp(event["timeNano"] // 10**9).astimezone()
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S") + f".{event['timeNano'] % 10**9:09d}" + \
        (when.strftime("%z")[:3] + ":" + when.strftime("%z")[3:] if when.utcoffset() else "Z")
    attributes = event["Actor"].get("Attributes") or {}
    details = ", ".join(f"{k}={v}" for k, v in sorted(attributes.items()))
    return f"{stamp} {event['Type']} {event['Action']} {event['Actor']['ID']}" + (f" ({details})" if details else "")


@command("Get real time events from the server",
         arg("-f", "--filter", action="append", help="Filter output based on conditions provided"),
         arg("--format", default="", help="Format output using a Go template, or 'json'"),
         arg("--since", default="", help="Show all events created since timestamp"),
         arg("--until", default="", help="Stream events until this timestamp"))
def events(engine: Engine, a: Namespace) -> None:
    from sampan.engine import events as engine_events
    from sampan.units import parse_timestamp

    now = time.time()
    since = parse_timestamp(a.since, now) if a.since else now
    until = parse_timestamp(a.until, now) if a.until else None
    render = None
    if a.format == "json" or a.format == "{{json .}}":
        import json

        def render(event: dict[str, Any]) -> str:
            return json.dumps(event, separators=(",", ":"))
    elif a.format:
        from sampan.cli.gotemplate import compile_template

        template = compile_template(a.format)

        def render(event: dict[str, Any]) -> str:
            return template.render({**event, "ID": event["Actor"]["ID"], "Status": event["Action"]})
    for event in engine_events.read(engine, since=since, until=until, filters=parse_filters(a.filter),
                                    follow=True):
        print(render(event) if render else _event_line(event), flush=True)


@command("Print every container's figures in the Prometheus text format")
def metrics(engine: Engine, _: Namespace) -> None:
    from sampan.engine.containers import stats as engine_stats
    from sampan.engine.containers.model import all_current

    families: dict[str, tuple[str, str, list[str]]] = {
        "sampan_containers": ("gauge", "Containers by state", []),
        "sampan_container_cpu_usage_seconds_total": ("counter", "CPU time used", []),
        "sampan_container_memory_usage_bytes": ("gauge", "Memory used, less the inactive page cache", []),
        "sampan_container_memory_limit_bytes": ("gauge", "Memory limit (the host's memory when unlimited)", []),
        "sampan_container_pids": ("gauge", "Processes and threads", []),
        "sampan_container_network_receive_bytes_total": ("counter", "Bytes received", []),
        "sampan_container_network_transmit_bytes_total": ("counter", "Bytes sent", []),
        "sampan_container_blkio_read_bytes_total": ("counter", "Bytes read from block devices", []),
        "sampan_container_blkio_write_bytes_total": ("counter", "Bytes written to block devices", []),
    }
    records = all_current(engine)
    states: dict[str, int] = {}
    for record in records:
        states[record.status] = states.get(record.status, 0) + 1
    for state, count in sorted(states.items()):
        families["sampan_containers"][2].append(f'sampan_containers{{state="{state}"}} {count}')
    for record in records:
        if record.status not in ("running", "paused"):
            continue
        current = engine_stats.sample(engine, record)
        figures = engine_stats.figures(current, None)
        labels = f'id="{record.id}",name="{record.name}",image="{record.image}"'
        values = {
            "sampan_container_cpu_usage_seconds_total": current["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9,
            "sampan_container_memory_usage_bytes": figures.mem_usage,
            "sampan_container_memory_limit_bytes": figures.mem_limit,
            "sampan_container_pids": figures.pids,
            "sampan_container_blkio_read_bytes_total": figures.block_read,
            "sampan_container_blkio_write_bytes_total": figures.block_write,
        }
        for name, value in values.items():
            families[name][2].append(f"{name}{{{labels}}} {value}")
        for interface, counters in current["networks"].items():
            for name, key in (("sampan_container_network_receive_bytes_total", "rx_bytes"),
                              ("sampan_container_network_transmit_bytes_total", "tx_bytes")):
                families[name][2].append(f'{name}{{{labels},interface="{interface}"}} {counters[key]}')
    lines = []
    for name, (kind, help_text, samples) in families.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]
    print("\n".join(lines))
