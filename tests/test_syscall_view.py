"""The syscall half of the /proc view: busybox free (sysinfo) and nproc (sched_getaffinity) inside containers
see the container's limits, answered by the monitor through seccomp user notification."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from conftest import Sampan

from sampan.procview.view import Figures


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


def test_the_hub_answers_when_the_monitor_dies(sampan: Sampan, busybox: str) -> None:
    """The view's server holds every listener too: with the monitor SIGKILLed, the container keeps running and
    its sysinfo and sched_getaffinity are still answered for it (no ENOSYS)."""
    sampan("run", "-d", "--network", "none", "--name", "orphan", "-m", "64m", "--cpus", "1", "busybox", "sh", "-c",
           "while true; do free -m >/tmp/f.new 2>&1; nproc >>/tmp/f.new 2>&1; mv /tmp/f.new /tmp/f; sleep 0.05; done")
    state = json.loads(sampan("inspect", "orphan").stdout)[0]["State"]
    init = state["Pid"]
    monitor = int(Path(f"/proc/{init}/stat").read_text().rsplit(")", 1)[1].split()[1])  # its parent: the monitor
    os.kill(monitor, signal.SIGKILL)
    time.sleep(0.3)
    sampan("exec", "orphan", "rm", "-f", "/tmp/f")  # what the loop writes from now on
    deadline = time.monotonic() + 10
    while (result := sampan("exec", "orphan", "cat", "/tmp/f", check=False)).returncode != 0:
        assert time.monotonic() < deadline, result
        time.sleep(0.1)
    assert _mem_total_mb(result.stdout) == 64 and result.stdout.splitlines()[-1] == "1", result.stdout
    with open(f"/proc/{init}/stat") as f:
        assert f.read().rsplit(")", 1)[1].split()[0] in ("S", "R")
    os.kill(init, signal.SIGKILL)


def test_sysinfo_loads_are_the_views(sampan: Sampan, busybox: str) -> None:
    """busybox uptime (sysinfo) shows the container's load averages: those of its /proc/loadavg, not the host's."""
    sampan("run", "-d", "--network", "none", "--name", "busy", "--cpus", "0.3", "busybox", "sh", "-c",
           "for i in 1 2 3; do while :; do :; done & done; sleep 1000")
    time.sleep(0.3)
    out = sampan("exec", "busy", "sh", "-c", "uptime; cat /proc/loadavg").stdout.splitlines()
    from_sysinfo = [float(x) for x in out[0].rsplit("load average:", 1)[1].split(",")]
    from_view = [float(x) for x in out[1].split()[:3]]
    assert all(abs(a - b) <= 0.05 for a, b in zip(from_sysinfo, from_view)), out
    assert all(2.5 <= load <= 4.5 for load in from_sysinfo), out  # three busy loops, whatever the host's load
    sampan("rm", "-f", "busy")


# --- the readers, against fixture trees (this host is v1: v2 runs only here) -----------------------------------


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def _fixture_figures(monkeypatch: pytest.MonkeyPatch, root: Path, version: int, files: dict[str, str]) -> Figures:
    from sampan.procview import view

    _tree(root, files)
    monkeypatch.setattr(view, "CGROUP_ROOT", str(root))
    return view.Figures.read(version, "/sampan/c1")


def test_v2_figures_from_a_fixture_tree(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every cgroup v2 file the view and the syscall answers read, with v2's meanings: swap on its own, CPU
    time in usec, io.stat's key=value pairs, the effective cpuset cut to ceil(quota / period)."""
    me = os.getpid()
    figures = _fixture_figures(monkeypatch, tmp_path, 2, {
        "sampan/c1/memory.max": "67108864\n", "memory.current": "",
        "sampan/c1/memory.current": "10485760\n",
        "sampan/c1/memory.stat": "anon 4096\nfile 2097152\nactive_file 1048576\ninactive_file 524288\n",
        "sampan/c1/memory.swap.max": "33554432\n", "sampan/c1/memory.swap.current": "4096\n",
        "sampan/c1/cpu.max": "150000 100000\n", "sampan/c1/cpuset.cpus.effective": "0-3\n",
        "sampan/c1/cpu.stat": "usage_usec 3000\nuser_usec 2000\nsystem_usec 1000\n",
        "sampan/c1/cgroup.procs": f"{me}\n",
        "sampan/c1/io.stat": "8:0 rbytes=1024 wbytes=2048 rios=3 wios=4 dbytes=0 dios=0\n"})
    assert (figures.memory_limit, figures.memory_usage, figures.cache) == (64 << 20, 10 << 20, 2 << 20)
    assert figures.reclaimable == 1536 << 10
    assert (figures.swap_limit, figures.swap_usage) == (32 << 20, 4096)
    assert (figures.quota_cpus, figures.cpus) == (2, [0, 1])
    assert (figures.cpu_user_ns, figures.cpu_system_ns) == (2_000_000, 1_000_000)
    assert figures.tasks == 1 and figures.runnable == 1  # this test, running
    assert figures.io == {"8:0": {"rbytes": 1024, "wbytes": 2048, "rios": 3, "wios": 4, "dbytes": 0, "dios": 0}}
    unlimited = _fixture_figures(monkeypatch, tmp_path / "u", 2, {
        "sampan/c1/memory.max": "max\n", "sampan/c1/memory.swap.max": "max\n", "sampan/c1/cpu.max": "max 100000\n",
        "sampan/c1/cpuset.cpus.effective": "1,3\n"})
    assert unlimited.memory_limit == 1 << 60 and (unlimited.swap_limit, unlimited.quota_cpus) == (0, 0)
    assert unlimited.cpus == [1, 3]


def test_v1_figures_from_a_fixture_tree(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The same figures from v1's files: memsw less memory for swap, cpuacct ticks, blkio's Read/Write rows."""
    hz = os.sysconf("SC_CLK_TCK")
    figures = _fixture_figures(monkeypatch, tmp_path, 1, {
        "memory/sampan/c1/memory.limit_in_bytes": "67108864\n",
        "memory/sampan/c1/memory.usage_in_bytes": "10485760\n",
        "memory/sampan/c1/memory.stat": "cache 1\ntotal_cache 2097152\ntotal_active_file 1048576\n"
                                        "total_inactive_file 524288\n",
        "memory/sampan/c1/memory.memsw.limit_in_bytes": "100663296\n",
        "memory/sampan/c1/memory.memsw.usage_in_bytes": "10489856\n",
        "memory/sampan/c1/cgroup.procs": "",
        "cpu/sampan/c1/cpu.cfs_quota_us": "50000\n", "cpu/sampan/c1/cpu.cfs_period_us": "100000\n",
        "cpuset/sampan/c1/cpuset.cpus": "2-3\n", "cpuacct/sampan/c1/cpuacct.stat": f"user {hz}\nsystem {2 * hz}\n",
        "blkio/sampan/c1/blkio.throttle.io_service_bytes_recursive": "8:0 Read 1024\n8:0 Write 2048\nTotal 3072\n",
        "blkio/sampan/c1/blkio.throttle.io_serviced_recursive": "8:0 Read 3\n8:0 Write 4\n"})
    assert (figures.memory_limit, figures.memory_usage, figures.cache) == (64 << 20, 10 << 20, 2 << 20)
    assert figures.reclaimable == 1536 << 10
    assert (figures.swap_limit, figures.swap_usage) == (32 << 20, 4096)
    assert (figures.quota_cpus, figures.cpus) == (1, [2])
    assert (figures.cpu_user_ns, figures.cpu_system_ns) == (10**9, 2 * 10**9)
    assert figures.tasks == 0 and figures.io == {"8:0": {"rbytes": 1024, "wbytes": 2048, "rios": 3, "wios": 4}}


def test_v2_cgroup_of_and_the_rendered_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """On a unified host a process's cgroup is its ``0::`` line; the files render from v2 figures as from v1."""
    from sampan.procview import view

    figures = _fixture_figures(monkeypatch, tmp_path, 2, {
        "cgroup.controllers": "cpu memory\n", "sampan/c1/memory.max": "67108864\n",
        "sampan/c1/memory.current": "8388608\n", "sampan/c1/memory.stat": "file 0\n",
        "sampan/c1/cpu.max": "100000 100000\n", "sampan/c1/cpuset.cpus.effective": "0-1\n"})
    unified = next(line[3:] for line in Path("/proc/self/cgroup").read_text().splitlines() if line.startswith("0::"))
    assert view.cgroup_of(os.getpid()) == (None if unified == "/" else (2, unified))
    meminfo = view.meminfo(figures, Path("/proc/meminfo").read_text())
    assert "MemTotal:          65536 kB" in meminfo and "MemFree:           57344 kB" in meminfo
    assert view.cpuinfo(figures, Path("/proc/cpuinfo").read_text()).count("processor\t:") == 1
    assert [line.split()[0] for line in view.stat(figures, Path("/proc/stat").read_text()).splitlines()[:2]] \
        == ["cpu", "cpu0"]
