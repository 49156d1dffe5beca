"""The container-aware /proc view: read rate, memory and the time it adds to ``run``.

    .venv/bin/python bench/procview.py [--reads N] [--runs N] [--many N] [--ksm]

Targets (the monitoring issue):
- reading /proc/meminfo in a loop inside a container: at least 5,000 reads per second. Measured by a process
  in the container's cgroups that opens, reads (4 KiB) and closes the view's meminfo in a loop: what ``free``
  or ``top`` does per refresh (busybox's shell ``read`` builtin reads one byte per system call, so it measures
  the shell, not the view);
- at most 1 MB of host memory per container: one server serves every container of a run-time root. Its cost
  is its private memory (Private_Clean + Private_Dirty of /proc/PID/smaps_rollup: the pages only it holds;
  forked by the monitor host, it shares the rest with the host and the monitors) plus, per container, what a
  monitor holds more with the view than without (the mean private memory of N monitors of each kind). The
  figure per container is (server + N * monitor difference) / N, printed for N = 1 and N = --many; Pss is
  printed beside it. With ``--ksm`` both are measured again with the kernel's same-page merging running
  (``bench/ksm.py``): the server and the monitors are forked from the monitor host, whose memory is offered
  to it;
- at most 10 ms added to ``run``: medians of ``run --rm busybox true`` with ``--proc-view true`` and ``false``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import ksm  # bench/ksm.py

SAMPAN = os.path.join(os.path.dirname(sys.executable), "sampan")
_CONTROLLERS = ("memory", "cpu", "cpuacct", "cpuset", "pids", "blkio")


def sampan(env: dict[str, str], *args: str) -> str:
    return subprocess.run([SAMPAN, *args], env=env, check=True, capture_output=True, text=True).stdout


def read_rate(mountpoint: str, container_id: str, reads: int) -> float:
    """Reads per second by a child placed in the container's cgroups."""
    read_r, read_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_r)
        unified = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
        targets = [f"/sys/fs/cgroup/sampan/{container_id}"] if unified else \
            [f"/sys/fs/cgroup/{c}/sampan/{container_id}" for c in _CONTROLLERS]
        for target in targets:
            try:
                with open(os.path.join(target, "cgroup.procs"), "w") as f:
                    f.write(str(os.getpid()))
            except OSError:
                pass
        path = os.path.join(mountpoint, "meminfo")
        started = time.perf_counter()
        for _ in range(reads):
            with open(path, "rb", buffering=0) as f:
                f.read(4096)
        os.write(read_w, f"{reads / (time.perf_counter() - started)}".encode())
        os._exit(0)
    os.close(read_w)
    with os.fdopen(read_r) as f:
        rate = float(f.read())
    os.waitpid(pid, 0)
    return rate


def memory_kb(pid: int) -> tuple[int, int]:
    """(private, Pss) of ``pid`` in KiB."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        values = {line.split(":")[0]: int(line.split()[1]) for line in f if line.split()[1:2] != []
                  and line.split()[1].isdigit()}
    return values["Private_Clean"] + values["Private_Dirty"], values["Pss"]


def monitors_kb(env: dict[str, str], names: list[str]) -> tuple[float, float]:
    """Mean (private, Pss) of the monitors of containers ``names``."""
    import json

    pids = [c["State"]["Pid"] for c in json.loads(sampan(env, "inspect", *names))]
    monitors = [int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) for pid in pids]
    figures = [memory_kb(pid) for pid in monitors]
    return statistics.mean(f[0] for f in figures), statistics.mean(f[1] for f in figures)


def memory(env: dict[str, str], mountpoint: str, count: int, merging: bool = False) -> str:
    """The view's memory per container with ``count`` containers (see the module's docstring); ``merging``:
    measured once ksmd has settled (the caller runs it)."""
    from sampan.procview.server import server_pid

    names = {view: [f"m{view}{i}" for i in range(count)] for view in ("true", "false")}
    for view, group in names.items():
        for name in group:
            sampan(env, "run", "-d", "--network", "none", "--name", name, "-m", "64m", "--proc-view", view,
                   "busybox", "sleep", "1000")
    time.sleep(1)
    if merging:
        ksm.settle()
    server = server_pid(mountpoint)
    server_private, server_pss = memory_kb(server) if server else (0, 0)
    with_view, without = monitors_kb(env, names["true"]), monitors_kb(env, names["false"])
    per_private = (server_private + count * (with_view[0] - without[0])) / count / 1024
    per_pss = (server_pss + count * (with_view[1] - without[1])) / count / 1024
    sampan(env, "rm", "-f", *names["true"], *names["false"])
    return (f"N={count}{' (KSM)' if merging else ''}: {per_private:.2f} MB per container private ({per_pss:.2f} MB Pss): server "
            f"{server_private / 1024:.2f} MB private ({server_pss / 1024:.2f} Pss), monitor +"
            f"{(with_view[0] - without[0]) / 1024:.2f} MB private ({(with_view[1] - without[1]) / 1024:.2f} Pss) "
            f"(target <= 1 MB)  {'PASS' if per_private <= 1 else 'MISS'}")


@contextlib.contextmanager
def storage_root() -> Iterator[tuple[dict[str, str], str]]:
    """A new storage and run-time root with busybox (its own monitor host, launched with this process's
    environment): (environment, the view's mountpoint); removed with its containers afterwards."""
    base = tempfile.mkdtemp(prefix="pv")
    env = {**os.environ, "SAMPAN_ROOT": base + "/root", "SAMPAN_RUNROOT": base + "/run"}
    mountpoint = base + "/run/procview"
    try:
        sampan(env, "image", "bootstrap", "busybox")
        yield env, mountpoint
    finally:
        subprocess.run([SAMPAN, "rm", "-f", *sampan(env, "ps", "-aq").split()], env=env, capture_output=True,
                       check=False)
        subprocess.run(["umount", "-l", mountpoint], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--many", type=int, default=100, help="containers for the second memory figure")
    parser.add_argument("--ksm", action="store_true",
                        help="measure memory again with ksmd running (bench/ksm.py; restored afterwards)")
    a = parser.parse_args()
    with storage_root() as (env, mountpoint):
        cid = sampan(env, "run", "-d", "--network", "none", "-m", "64m", "busybox", "sleep", "1000").strip()
        rate = read_rate(mountpoint, cid, a.reads)
        sampan(env, "rm", "-f", cid)
        memories = [memory(env, mountpoint, count) for count in (1, a.many)]
        times: dict[str, list[float]] = {"true": [], "false": []}
        for _ in range(a.runs):
            for view in ("true", "false"):
                started = time.perf_counter()
                sampan(env, "run", "--rm", "--network", "none", "--proc-view", view, "busybox", "true")
                times[view].append(time.perf_counter() - started)
    if a.ksm:  # a new root: its host (and the view's server, forked from it) offers its memory
        with ksm.ksm_running(), storage_root() as (env, mountpoint):
            memories += [memory(env, mountpoint, count, merging=True) for count in (1, a.many)]
    added = (statistics.median(times["true"]) - statistics.median(times["false"])) * 1000
    print(f"reads of /proc/meminfo through the view: {rate:,.0f}/s (target >= 5,000)  "
          f"{'PASS' if rate >= 5000 else 'MISS'}")
    for line in memories:
        print(f"view memory, {line}")
    print(f"run --rm true: {statistics.median(times['true']) * 1000:.0f} ms with the view, "
          f"{statistics.median(times['false']) * 1000:.0f} ms without: +{added:.1f} ms (target <= 10 ms)  "
          f"{'PASS' if added <= 10 else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
