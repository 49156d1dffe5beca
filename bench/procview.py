"""The container-aware /proc view: read rate, memory and the time it adds to ``run``.

    .venv/bin/python bench/procview.py [--reads N] [--runs N]

Targets (the monitoring issue):
- reading /proc/meminfo in a loop inside a container: at least 5,000 reads per second. Measured by a process
  in the container's cgroups that opens, reads (4 KiB) and closes the view's meminfo in a loop: what ``free``
  or ``top`` does per refresh (busybox's shell ``read`` builtin reads one byte per system call, so it measures
  the shell, not the view);
- at most 1 MB of host memory per container: one server serves every container of a run-time root, so its
  memory is shared by all of them (its Pss is printed);
- at most 10 ms added to ``run``: medians of ``run --rm busybox true`` with ``--proc-view true`` and ``false``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

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


def pss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Pss:"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=11)
    a = parser.parse_args()
    base = tempfile.mkdtemp(prefix="pv")
    env = {**os.environ, "SAMPAN_ROOT": base + "/root", "SAMPAN_RUNROOT": base + "/run"}
    mountpoint = base + "/run/procview"
    try:
        sampan(env, "image", "bootstrap", "busybox")
        cid = sampan(env, "run", "-d", "--network", "none", "-m", "64m", "busybox", "sleep", "1000").strip()
        rate = read_rate(mountpoint, cid, a.reads)
        servers = subprocess.run(["pgrep", "-f", f"sampan.procview.server {mountpoint}"], capture_output=True,
                                 text=True, check=False).stdout.split()
        memory = sum(pss_kb(int(p)) for p in servers)
        sampan(env, "rm", "-f", cid)
        times: dict[str, list[float]] = {"true": [], "false": []}
        for _ in range(a.runs):
            for view in ("true", "false"):
                started = time.perf_counter()
                sampan(env, "run", "--rm", "--network", "none", "--proc-view", view, "busybox", "true")
                times[view].append(time.perf_counter() - started)
        added = (statistics.median(times["true"]) - statistics.median(times["false"])) * 1000
        print(f"reads of /proc/meminfo through the view: {rate:,.0f}/s (target >= 5,000)  "
              f"{'PASS' if rate >= 5000 else 'MISS'}")
        print(f"view server memory (keeper + server Pss): {memory / 1024:.1f} MB for all containers of the root "
              "(target <= 1 MB per container)")
        print(f"run --rm true: {statistics.median(times['true']) * 1000:.0f} ms with the view, "
              f"{statistics.median(times['false']) * 1000:.0f} ms without: +{added:.1f} ms (target <= 10 ms)  "
              f"{'PASS' if added <= 10 else 'MISS'}")
        return 0
    finally:
        subprocess.run([SAMPAN, "rm", "-f", *sampan(env, "ps", "-aq").split()], env=env, capture_output=True,
                       check=False)
        subprocess.run(["umount", "-l", mountpoint], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
