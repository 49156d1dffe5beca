"""The syscall half of the /proc view: busybox free (sysinfo) and nproc (sched_getaffinity) inside containers
see the container's limits, answered by the monitor through seccomp user notification."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from conftest import Sampan


def _mem_total_mb(free_output: str) -> int:
    return int(next(line for line in free_output.splitlines() if line.startswith("Mem:")).split()[1])


def test_free_shows_the_memory_limit(sampan: Sampan, busybox: str) -> None:
    out = sampan("run", "--rm", "--network", "none", "-m", "64m", "busybox", "free", "-m").stdout
    assert _mem_total_mb(out) == 64
    used = int(next(line for line in out.splitlines() if line.startswith("Mem:")).split()[2])
    assert 0 <= used <= 64
    host = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20
    off = sampan("run", "--rm", "--network", "none", "-m", "64m", "--proc-view", "false", "busybox", "free",
                 "-m").stdout
    assert abs(_mem_total_mb(off) - host) <= 1
    unlimited = sampan("run", "--rm", "--network", "none", "busybox", "free", "-m").stdout
    assert abs(_mem_total_mb(unlimited) - host) <= 1


def test_uptime_counts_from_the_container_start(sampan: Sampan, busybox: str) -> None:
    out = sampan("run", "--rm", "--network", "none", "busybox", "cat", "/proc/uptime").stdout
    assert float(out.split()[0]) < 30
    out = sampan("run", "--rm", "--network", "none", "busybox", "uptime").stdout
    assert "up 0 min" in out or " up 0 " in out or "up  0:0" in out, out


def test_nproc_shows_the_cpu_limit(sampan: Sampan, busybox: str) -> None:
    host = len(os.sched_getaffinity(0))
    assert sampan("run", "--rm", "--network", "none", "--cpus", "1", "busybox", "nproc").stdout.strip() == "1"
    assert sampan("run", "--rm", "--network", "none", "--cpuset-cpus", "0", "busybox", "nproc").stdout.strip() \
        == "1"
    assert sampan("run", "--rm", "--network", "none", "--cpus", "1", "--proc-view", "false", "busybox",
                  "nproc").stdout.strip() == str(host)
    assert sampan("run", "--rm", "--network", "none", "busybox", "nproc").stdout.strip() == str(host)


def test_exec_gets_the_view_too(sampan: Sampan, busybox: str) -> None:
    sampan("run", "-d", "--network", "none", "--name", "ex", "-m", "48m", "--cpus", "1", "busybox", "sleep", "100")
    assert _mem_total_mb(sampan("exec", "ex", "free", "-m").stdout) == 48
    assert sampan("exec", "ex", "nproc").stdout.strip() == "1"


def test_the_container_outlives_its_monitor(sampan: Sampan, busybox: str) -> None:
    """With the monitor gone the listener closes: the kernel fails the notified syscalls with ENOSYS, and the
    container keeps running."""
    sampan("run", "-d", "--network", "none", "--name", "orphan", "-m", "64m", "busybox", "sh", "-c",
           "while true; do free -m >/dev/null 2>&1; nproc >/dev/null 2>&1; sleep 0.05; done")
    state = json.loads(sampan("inspect", "orphan").stdout)[0]["State"]
    init = state["Pid"]
    monitor = int(Path(f"/proc/{init}/stat").read_text().rsplit(")", 1)[1].split()[1])  # its parent: the monitor
    os.kill(monitor, signal.SIGKILL)
    time.sleep(0.5)
    with open(f"/proc/{init}/stat") as f:
        assert f.read().rsplit(")", 1)[1].split()[0] in ("S", "R")
    assert sampan("exec", "orphan", "echo", "still reachable").stdout == "still reachable\n"  # no agent needed
    os.kill(init, signal.SIGKILL)
