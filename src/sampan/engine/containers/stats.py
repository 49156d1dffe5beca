"""``docker stats``: a container's resource figures in Docker's stats JSON, and the numbers ``docker stats`` prints.

The figures come from the container's cgroup (through the runtime, v1 or v2), the host's /proc/stat (for the
system CPU time CPU% is relative to) and the container's network namespace (/proc/<pid>/net/dev). The CLI's
formulas are Docker's (``cli/command/container/stats_helpers.go``): CPU% is the container's share of all CPU time
between two samples times the online CPUs; memory usage leaves out the inactive page cache
(``total_inactive_file`` on v1, ``inactive_file`` on v2); block I/O sums the service bytes read and written.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from sampan.engine.containers import model
from sampan.engine.containers.runtimes import driver_of
from sampan.engine.context import Engine
from sampan.errors import SampanError
from sampan.store.containers import ContainerRecord

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_UNLIMITED = 1 << 62


def system_cpu_ns() -> int:
    """All CPUs' time since boot in nanoseconds (the first line of /proc/stat), as Docker's daemon reads it."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]
    return sum(int(v) for v in fields) * 10**9 // _CLOCK_TICKS


def _mem_total() -> int:
    with open("/proc/meminfo") as f:
        return int(f.readline().split()[1]) * 1024


def _networks(pid: int) -> dict[str, dict[str, int]]:
    """Per-interface counters of the container's network namespace (loopback left out, as Docker's)."""
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return {}
    out = {}
    for line in lines:
        name, _, rest = line.partition(":")
        name = name.strip()
        if name == "lo":
            continue
        v = [int(x) for x in rest.split()]
        out[name] = {"rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2], "rx_dropped": v[3],
                     "tx_bytes": v[8], "tx_packets": v[9], "tx_errors": v[10], "tx_dropped": v[11]}
    return out


def sample(engine: Engine, record: ContainerRecord) -> dict[str, Any]:
    """One reading in Docker's stats JSON shape (``precpu_stats`` empty: the caller keeps the previous one)."""
    raw: dict[str, Any] = {}
    if record.status in ("running", "paused"):
        try:
            raw = driver_of(engine, record).stats(record.id)
        except (SampanError, OSError):
            raw = {}
    cpu = raw.get("cpu") or {}
    usage = cpu.get("usage") or {}
    memory = raw.get("memory") or {}
    mem_usage = memory.get("usage") or {}
    limit = mem_usage.get("limit") or 0
    blkio = raw.get("blkio") or {}
    online = len(usage.get("percpu") or []) or (os.cpu_count() or 1)
    return {
        "read": time.time(), "id": record.id, "name": "/" + record.name,
        "cpu_stats": {"cpu_usage": {"total_usage": usage.get("total", 0), "percpu_usage": usage.get("percpu"),
                                    "usage_in_kernelmode": usage.get("kernel", 0),
                                    "usage_in_usermode": usage.get("user", 0)},
                      "system_cpu_usage": system_cpu_ns(), "online_cpus": online,
                      "throttling_data": {"periods": (cpu.get("throttling") or {}).get("periods", 0),
                                          "throttled_periods": (cpu.get("throttling") or {}).get("throttledPeriods",
                                                                                                 0),
                                          "throttled_time": (cpu.get("throttling") or {}).get("throttledTime", 0)}},
        "precpu_stats": {},
        "memory_stats": {"usage": mem_usage.get("usage", 0), "max_usage": mem_usage.get("max", 0),
                         "limit": limit if 0 < limit < _UNLIMITED else _mem_total(),
                         "stats": dict(memory.get("raw") or {})} if raw else {},
        "blkio_stats": {"io_service_bytes_recursive": [
            {"major": e.get("major", 0), "minor": e.get("minor", 0), "op": e.get("op", ""),
             "value": e.get("value", 0)} for e in blkio.get("ioServiceBytesRecursive") or []]},
        "pids_stats": {"current": (raw.get("pids") or {}).get("current", 0)} if raw else {},
        "networks": _networks(record.pid) if record.status in ("running", "paused") else {},
    }


@dataclass
class Figures:
    """What one ``docker stats`` row shows, from two samples."""

    cpu_percent: float
    mem_usage: int
    mem_limit: int
    mem_percent: float
    net_rx: int
    net_tx: int
    block_read: int
    block_write: int
    pids: int


def figures(current: dict[str, Any], previous: dict[str, Any] | None) -> Figures:
    cpu_percent = 0.0
    if previous:
        cpu_delta = current["cpu_stats"]["cpu_usage"]["total_usage"] - \
            previous["cpu_stats"]["cpu_usage"]["total_usage"]
        system_delta = current["cpu_stats"]["system_cpu_usage"] - previous["cpu_stats"]["system_cpu_usage"]
        if cpu_delta > 0 and system_delta > 0:
            cpu_percent = cpu_delta / system_delta * current["cpu_stats"]["online_cpus"] * 100.0
    memory = current["memory_stats"]
    stats = memory.get("stats") or {}
    cache = stats.get("total_inactive_file", stats.get("inactive_file", 0))
    usage = max(0, memory.get("usage", 0) - cache) if memory else 0
    limit = memory.get("limit", 0) if memory else 0
    reads = sum(e["value"] for e in current["blkio_stats"]["io_service_bytes_recursive"]
                if e["op"].lower() == "read")
    writes = sum(e["value"] for e in current["blkio_stats"]["io_service_bytes_recursive"]
                 if e["op"].lower() == "write")
    networks = current["networks"].values()
    return Figures(cpu_percent, usage, limit, usage / limit * 100.0 if limit else 0.0,
                   sum(n["rx_bytes"] for n in networks), sum(n["tx_bytes"] for n in networks), reads, writes,
                   current["pids_stats"].get("current", 0))


def containers_for(engine: Engine, names: list[str], all: bool) -> list[ContainerRecord]:
    if names:
        return [model.lookup(engine, name) for name in names]
    return [r for r in model.all_current(engine) if all or r.status in ("running", "paused")]
