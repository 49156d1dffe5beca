"""The /proc files as a container should see them, from its cgroup's figures and the host's /proc.

``cgroup_of(pid)`` finds the reader's cgroup (/proc/PID/cgroup) and ``Figures.read`` what the files need, on
cgroup v1 (separate memory, cpu, cpuacct, cpuset, blkio hierarchies) or v2 (one unified one). The renderers follow LXCFS:
MemTotal is the memory limit (the host's when there is none or it is larger), MemFree the limit less the usage,
MemAvailable that plus the reclaimable page cache; the CPUs are the cpuset's, or ``ceil(quota / period)`` of them
when that is fewer; uptime counts from the container's oldest process; loadavg is an exponentially decayed count
of the container's runnable tasks, sampled when it is read.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field

CGROUP_ROOT = "/sys/fs/cgroup"
_HZ = os.sysconf("SC_CLK_TCK")
_UNLIMITED = 1 << 60


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _int(text: str, default: int = 0) -> int:
    text = text.strip()
    if not text or text == "max":
        return default
    try:
        return int(text)
    except ValueError:
        return default


def _keyed(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def parse_cpu_list(text: str) -> list[int]:
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        cpus.extend(range(int(low), int(high or low) + 1))
    return cpus


def cgroup_of(pid: int) -> tuple[int, str] | None:
    """(version, path) of ``pid``'s cgroup, or None for the host's root cgroup (no view then)."""
    v1_path = v2_path = None
    for line in _read(f"/proc/{pid}/cgroup").splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if number == "0" and controllers == "":
            v2_path = path
        elif "memory" in controllers.split(","):
            v1_path = path
    unified = os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers"))
    if unified:
        return (2, v2_path) if v2_path not in (None, "/") else None
    return (1, v1_path) if v1_path not in (None, "/") else None


@dataclass
class Figures:
    memory_limit: int = 0
    memory_usage: int = 0
    cache: int = 0
    reclaimable: int = 0
    swap_limit: int = 0
    swap_usage: int = 0
    cpus: list[int] = field(default_factory=list)
    quota_cpus: int = 0  # ceil(quota / period) with a CPU quota, else 0
    cpu_user_ns: int = 0
    cpu_system_ns: int = 0
    started_jiffies: int = 0
    runnable: int = 0
    tasks: int = 0
    io: dict[str, dict[str, int]] = field(default_factory=dict)  # "maj:min" -> rbytes, wbytes, rios, wios

    @classmethod
    def read(cls, version: int, path: str) -> Figures:
        """One reader for both versions: v1 and v2 differ in file names and in a few meanings (v1 counts swap
        as memory+swap, CPU time in ticks, I/O in two Read/Write tables), each handled where it arises."""
        v2 = version == 2

        def file(controller: str, v1_name: str, v2_name: str) -> str:
            return _read(f"{CGROUP_ROOT}{path}/{v2_name}" if v2 else f"{CGROUP_ROOT}/{controller}{path}/{v1_name}")

        figures = cls()
        stat = _keyed(file("memory", "memory.stat", "memory.stat"))
        prefix = "" if v2 else "total_"
        figures.memory_limit = _int(file("memory", "memory.limit_in_bytes", "memory.max"), _UNLIMITED)
        figures.memory_usage = _int(file("memory", "memory.usage_in_bytes", "memory.current"))
        figures.cache = stat.get("file" if v2 else "total_cache", 0)
        figures.reclaimable = stat.get(f"{prefix}inactive_file", 0) + stat.get(f"{prefix}active_file", 0)
        swap_limit = _int(file("memory", "memory.memsw.limit_in_bytes", "memory.swap.max"), _UNLIMITED)
        if swap_limit < _UNLIMITED:
            swap_usage = _int(file("memory", "memory.memsw.usage_in_bytes", "memory.swap.current"))
            figures.swap_limit = swap_limit if v2 else max(0, swap_limit - figures.memory_limit)
            figures.swap_usage = swap_usage if v2 else max(0, swap_usage - figures.memory_usage)
        if v2:
            quota_text = [*file("cpu", "", "cpu.max").split(), "", ""]
            quota, period = _int(quota_text[0], -1), _int(quota_text[1], 100000)
        else:
            quota = _int(file("cpu", "cpu.cfs_quota_us", ""), -1)
            period = _int(file("cpu", "cpu.cfs_period_us", ""), 100000)
        if quota > 0 and period > 0:
            figures.quota_cpus = max(1, math.ceil(quota / period))
        cpuset = parse_cpu_list(file("cpuset", "cpuset.cpus", "cpuset.cpus.effective"))
        figures.cpus = (cpuset or list(range(os.cpu_count() or 1)))[:figures.quota_cpus or None]
        cpu = _keyed(file("cpuacct", "cpuacct.stat", "cpu.stat"))
        if v2:
            figures.cpu_user_ns = cpu.get("user_usec", 0) * 1000
            figures.cpu_system_ns = cpu.get("system_usec", 0) * 1000
        else:
            figures.cpu_user_ns = cpu.get("user", 0) * 10**9 // _HZ
            figures.cpu_system_ns = cpu.get("system", 0) * 10**9 // _HZ
        _tasks(file("memory", "cgroup.procs", "cgroup.procs"), figures)
        if v2:
            for line in file("io", "", "io.stat").splitlines():
                device, *pairs = line.split()
                figures.io[device] = {k: int(v) for k, _, v in (p.partition("=") for p in pairs) if v.isdigit()}
            return figures
        for name, keys in (("blkio.throttle.io_service_bytes_recursive", ("rbytes", "wbytes")),
                           ("blkio.throttle.io_serviced_recursive", ("rios", "wios"))):
            for line in file("blkio", name, "").splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[1] in ("Read", "Write"):
                    figures.io.setdefault(parts[0], {})[keys[0] if parts[1] == "Read" else keys[1]] = int(parts[2])
        return figures


def _tasks(pids: str, figures: Figures) -> None:
    starts = []
    for pid in pids.split():
        stat = _read(f"/proc/{pid}/stat")
        if not stat:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        figures.tasks += 1
        if fields[0] in ("R", "D"):
            figures.runnable += 1
        starts.append(int(fields[19]))
    figures.started_jiffies = min(starts) if starts else 0


# ---------------------------------------------------------------------------------------------- rendering


def _host_uptime() -> float:
    return float(_read("/proc/uptime").split()[0])


def container_uptime(figures: Figures) -> float:
    return max(0.0, _host_uptime() - figures.started_jiffies / _HZ)


def meminfo(figures: Figures, host: str) -> str:
    host_values = {line.split(":")[0]: int(line.split()[1]) for line in host.splitlines() if line.split()[1:]}
    total = min(figures.memory_limit // 1024, host_values.get("MemTotal", 0)) or host_values.get("MemTotal", 0)
    used = min(figures.memory_usage // 1024, total)
    free = total - used
    cache = min(figures.cache // 1024, used)
    available = min(total, free + figures.reclaimable // 1024)
    swap_total = min(figures.swap_limit // 1024, host_values.get("SwapTotal", 0))
    swap_free = max(0, swap_total - figures.swap_usage // 1024)
    replaced = {"MemTotal": total, "MemFree": free, "MemAvailable": available, "Buffers": 0, "Cached": cache,
                "SwapCached": 0, "SwapTotal": swap_total, "SwapFree": swap_free, "Shmem": 0,
                # the host's slab is not the container's: busybox free counts SReclaimable as its cache
                "Slab": 0, "SReclaimable": 0, "SUnreclaim": 0}
    lines = []
    for line in host.splitlines():
        key = line.split(":")[0]
        if key in replaced:
            lines.append(f"{key + ':':<16}{replaced[key]:>8} kB")
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def cpuinfo(figures: Figures, host: str) -> str:
    blocks = [b for b in host.strip("\n").split("\n\n") if b]
    by_number = {}
    for block in blocks:
        for line in block.splitlines():
            if line.startswith("processor"):
                by_number[int(line.split(":")[1])] = block
    out = []
    for index, cpu in enumerate(c for c in figures.cpus if c in by_number):
        lines = by_number[cpu].splitlines()
        out.append("\n".join(f"processor\t: {index}" if line.startswith("processor") else line for line in lines))
    return "\n\n".join(out) + "\n\n"


def stat(figures: Figures, host: str) -> str:
    """The container's CPUs only, their time the container's: user and system split evenly, the rest idle."""
    n = max(1, len(figures.cpus))
    uptime_ticks = int(container_uptime(figures) * _HZ)
    user = figures.cpu_user_ns * _HZ // 10**9 // n
    system = figures.cpu_system_ns * _HZ // 10**9 // n
    idle = max(0, uptime_ticks - user - system)
    per_cpu = [f"cpu{i} {user} 0 {system} {idle} 0 0 0 0 0 0" for i in range(n)]
    lines = [f"cpu  {user * n} 0 {system * n} {idle * n} 0 0 0 0 0 0", *per_cpu]
    for line in host.splitlines():
        if not line.startswith("cpu"):
            if line.startswith("procs_running"):
                line = f"procs_running {figures.runnable}"
            lines.append(line)
    return "\n".join(lines) + "\n"


def uptime(figures: Figures) -> str:
    up = container_uptime(figures)
    busy = (figures.cpu_user_ns + figures.cpu_system_ns) / 1e9
    idle = max(0.0, up * max(1, len(figures.cpus)) - busy)
    return f"{up:.2f} {idle:.2f}\n"


class LoadAverage:
    """Per-cgroup 1/5/15-minute loads, decayed like the kernel's from the runnable count at each sample. One
    instance in the server answers both /proc/loadavg and sysinfo(2), so both show the same numbers."""

    def __init__(self) -> None:
        self._state: dict[str, tuple[float, list[float]]] = {}
        self._lock = threading.Lock()

    def sample(self, key: str, runnable: int) -> list[float]:
        now = time.monotonic()
        with self._lock:
            then, loads = self._state.get(key, (now, [float(runnable)] * 3))
            elapsed = now - then
            loads = [load * math.exp(-elapsed / window) + runnable * (1 - math.exp(-elapsed / window))
                     for load, window in zip(loads, (60.0, 300.0, 900.0))]
            self._state[key] = (now, loads)
            if len(self._state) > 4096:  # keys of containers long gone
                self._state.clear()
        return loads

    def render(self, key: str, figures: Figures, last_pid: int) -> str:
        loads = self.sample(key, figures.runnable)
        return f"{loads[0]:.2f} {loads[1]:.2f} {loads[2]:.2f} {figures.runnable}/{figures.tasks} {last_pid}\n"


def diskstats(figures: Figures, host: str) -> str:
    """The host's block devices, with the container's reads and writes (sectors of 512 bytes) on them."""
    lines = []
    for line in host.splitlines():
        parts = line.split()
        if len(parts) < 14:
            continue
        io = figures.io.get(f"{parts[0]}:{parts[1]}")
        if io is None:
            continue
        counters = [io.get("rios", 0), 0, io.get("rbytes", 0) // 512, 0, io.get("wios", 0), 0,
                    io.get("wbytes", 0) // 512, 0, 0, 0, 0]
        lines.append(f"{parts[0]:>4} {parts[1]:>7} {parts[2]} " + " ".join(str(c) for c in counters))
    return "\n".join(lines) + ("\n" if lines else "")


def swaps(figures: Figures) -> str:
    header = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
    if not figures.swap_limit:
        return header
    return header + f"none{' ' * 36}virtual\t\t{figures.swap_limit // 1024}\t\t{figures.swap_usage // 1024}\t\t0\n"
