"""Container lifecycle, sampan vs Docker: run --rm, exec, a burst of detached runs, host memory per idle container.

    .venv/bin/python bench/containers.py [--quick] [--runs N] [--batch N] [--idle N] [--ksm] [--many N] [--no-docker]

Targets (from the containers issue; the design's budget is tighter for run and exec, 0.2x and 0.4x):

- ``run --rm busybox true``: median at most 0.25x Docker's;
- ``exec C true`` into a running container: median at most 0.5x Docker's;
- ``--batch`` (50) sequential ``run -d busybox sleep 1000``: total at most 0.25x Docker's;
- host memory per idle container (``run -d busybox sleep 100000``, ``--idle`` (100) of them, monitor included):
  at most 2 MB. "Used" memory is ``free``'s: MemTotal - MemFree - Buffers - Cached - SReclaimable, so page cache
  is left out without dropping caches; it is sampled several times before starting the containers and again
  after they settle, and the median difference divided by their number. Slab that cannot be reclaimed (namespaces,
  cgroups, mounts) counts, as it should. Docker's figure includes what dockerd and containerd grow by. sampan's
  monitor processes' own Pss/Private (``/proc/PID/smaps_rollup``) and Docker's shims' are shown to explain it,
  with an "accounted" cross-check (helper + container Pss, daemons' growth, unreclaimable kernel memory) that
  other activity on the host disturbs less: ``free``'s figure is host-wide, so quote it from a quiet machine.
  The verdict takes the larger of the two.
- ``--ksm``: the memory part again with the kernel's same-page merging running (``/sys/kernel/mm/ksm/run``,
  restored afterwards; sampan never turns it on itself, but offers its monitors' memory to it), measured after
  ksmd has scanned everything four more times. Without it, the memory part says whether the host runs ksmd.
- ``--many N`` (off by default): start N idle sampan containers, check ``ps`` lists them all, remove them.

Docker runs in the same invocation when ``dockerd`` is installed: a private dockerd on its own socket, data-root
and exec-root (as the test suite's ``docker`` fixture starts it, no bridge, so both engines run with
``--network none``), loaded with the very busybox image sampan bootstraps (``sampan save | docker load``).
Timed runs of the two engines alternate (after untimed warm-ups); each part uses a new sampan storage root, and
containers, mounts and the private dockerd are removed even when a part fails or is interrupted.
Storage roots are directories in /tmp (``/tmp/sbXXXXXXXX``). ``--only PART`` runs some parts; ``--quick`` is a smoke run (fewer runs, 20 idle containers, a batch of 20). Exit status 1 means a part failed;
a missed target is reported as MISS but exits 0 unless ``--strict``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import ksm  # bench/ksm.py
from private_dockerd import DOCKER, PrivateDockerd  # bench/private_dockerd.py

SAMPAN = str(Path(sys.executable).with_name("sampan"))
IMAGE = "busybox"
NET = ("--network", "none")  # the private dockerd has no bridge; sampan's default is an equivalent empty netns


# ---------------------------------------------------------------------------------------------------- helpers

def run_cli(argv: list[str], env: dict[str, str] | None = None, *, check: bool = True,
            input: bytes | None = None) -> str:
    proc = subprocess.run(argv, env=env, input=input, stdin=None if input is not None else subprocess.DEVNULL,
                          capture_output=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:6])}... exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return proc.stdout.decode()


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    """Wall time of one command in ms (output discarded, failure raised)."""
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, check=False)
    elapsed = (time.perf_counter() - start) * 1000
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return elapsed


def _ppids() -> dict[int, int]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    out[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return out


def kill_strays(marker: str) -> int:
    """SIGKILL the processes this bench started whose command line names ``marker`` (its private temporary
    directory: sampan monitors, dockerd's containerd and shims), and their descendants (the containers)."""
    me = os.getpid()
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me:
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.add(int(entry))
            except OSError:
                pass
    if not found:
        return 0
    parents = _ppids()
    victims = set(found)
    grew = True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in victims} - victims - {me}
        grew = bool(more)
        victims |= more
    for pid in victims:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return len(victims)


def unmount_under(path: str) -> None:
    """Unmount whatever is mounted below ``path`` (deepest first), so the directory can be removed."""
    with open("/proc/self/mounts") as f:
        points = [line.split()[1].replace("\\040", " ") for line in f]
    for point in sorted({p for p in points if p == path or p.startswith(path + "/")}, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def meminfo() -> dict[str, int]:
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, value = line.split(":")
            out[key] = int(value.split()[0])  # kB
    return out


def memory_sample(samples: int = 7, interval: float = 0.3) -> tuple[float, float]:
    """Median of ``free``-style used memory and of MemTotal - MemAvailable, in kB, over a few samples."""
    used, unavailable = [], []
    for i in range(samples):
        if i:
            time.sleep(interval)
        m = meminfo()
        used.append(m["MemTotal"] - m["MemFree"] - m["Buffers"] - m["Cached"] - m["SReclaimable"])
        unavailable.append(m["MemTotal"] - m["MemAvailable"])
    return statistics.median(used), statistics.median(unavailable)


def smaps_rollup(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    out[parts[0].rstrip(":")] = int(parts[1])
    except OSError:
        pass
    return out


def parent_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("PPid:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# ---------------------------------------------------------------------------------------------------- engines

class Engine:
    name = ""

    def argv(self, *args: str) -> list[str]:
        raise NotImplementedError

    env: dict[str, str] | None = None

    def __call__(self, *args: str, check: bool = True, input: bytes | None = None) -> str:
        return run_cli(self.argv(*args), self.env, check=check, input=input)

    def timed(self, *args: str) -> float:
        return timed(self.argv(*args), self.env)

    def ids(self, all_: bool = True) -> list[str]:
        return self("ps", "-q", "--no-trunc", *(["-a"] if all_ else [])).split()

    def remove_all(self) -> None:
        """``rm -f`` every container, in chunks (the cleanup between parts; not timed)."""
        ids = self.ids()
        for i in range(0, len(ids), 100):
            self("rm", "-f", *ids[i:i + 100], check=False)

    def daemon_pids(self) -> list[int]:
        return []  # sampan has no daemon


class Sampan(Engine):
    name = "sampan"

    def __init__(self, base: str) -> None:
        self.base = base
        self.root, self.runroot = base + "/root", base + "/r"
        self("image", "bootstrap", IMAGE)

    def argv(self, *args: str) -> list[str]:
        return [SAMPAN, "--root", self.root, "--runroot", self.runroot, *args]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.remove_all()
        left = kill_strays(self.base)
        if left:
            print(f"  (sampan cleanup: killed {left} leftover processes)", file=sys.stderr)
        unmount_under(self.base)
        shutil.rmtree(self.base, ignore_errors=True)


class Docker(Engine):
    """A private dockerd (own socket, data-root, exec-root, no bridge), stopped and removed by ``close``."""

    name = "docker"

    def __init__(self, base: str, image_tar: bytes) -> None:
        self.base = base
        self.daemon = PrivateDockerd(base)
        self.proc, self.env = self.daemon.proc, self.daemon.env
        self("load", input=image_tar)

    def argv(self, *args: str) -> list[str]:
        return [DOCKER, *args]

    def daemon_pids(self) -> list[int]:
        """dockerd and the containerd it started (not the shims: those are re-parented, counted per container)."""
        pids = [self.proc.pid, *(pid for pid, ppid in _ppids().items() if ppid == self.proc.pid)]
        return [pid for pid in pids if b"containerd-shim" not in Path(f"/proc/{pid}/cmdline").read_bytes()]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.remove_all()
        self.daemon.stop()
        kill_strays(self.base)  # shims of containers rm -f could not remove
        unmount_under(self.base)
        shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def sampan_root(tag: str) -> Iterator[Sampan]:
    """A new sampan storage root for one part, removed with everything in it afterwards."""
    base = tempfile.mkdtemp(prefix=f"sb{tag[0]}", dir="/tmp")  # short: see Sampan.__init__
    engine = None
    try:
        engine = Sampan(base)
        yield engine
    finally:
        if engine is not None:
            engine.close()
        else:
            unmount_under(base)
            shutil.rmtree(base, ignore_errors=True)


def start_docker(image_tar: bytes) -> tuple[Docker | None, str]:
    if shutil.which("dockerd") is None or not os.path.exists(DOCKER):
        return None, "dockerd/docker not installed: Docker part skipped"
    if os.path.exists("/sys/class/net/docker0"):
        return None, "a docker0 bridge exists (a private dockerd with --bridge none would delete it): Docker skipped"
    base = tempfile.mkdtemp(prefix="sampan-bench-dockerd-")
    try:
        return Docker(base, image_tar), ""
    except Exception as e:  # noqa: BLE001 - reported, and Docker is skipped
        kill_strays(base)
        unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)
        return None, f"private dockerd failed ({e}): Docker part skipped"


# ---------------------------------------------------------------------------------------------------- parts

Results = dict[str, dict[str, float]]  # part -> engine -> value


def alternate(engines: list[Engine], runs: int, warmup: int, one: Callable[[Engine], float]) -> dict[str, list]:
    times: dict[str, list[float]] = {e.name: [] for e in engines}
    for i in range(-warmup, runs):
        for engine in engines if i % 2 == 0 else engines[::-1]:
            elapsed = one(engine)
            if i >= 0:
                times[engine.name].append(elapsed)
    return times


def show_times(label: str, times: dict[str, list[float]]) -> dict[str, float]:
    medians = {}
    for name, values in times.items():
        medians[name] = statistics.median(values)
        print(f"  {name:7s} {label}: median {medians[name]:7.1f} ms  (min {min(values):.1f}, max {max(values):.1f}, "
              f"{len(values)} runs)")
    return medians


def part_run_rm(docker: Docker | None, runs: int) -> dict[str, float]:
    print(f"== run --rm {IMAGE} true")
    with sampan_root("run") as sampan:
        engines: list[Engine] = [sampan, *([docker] if docker else [])]
        times = alternate(engines, runs, 3, lambda e: e.timed("run", "--rm", *NET, IMAGE, "true"))
        leftover = len(sampan.ids())
        if leftover:
            print(f"  note: {leftover} sampan containers left behind by run --rm")
        return show_times("run --rm true", times)


def part_exec(docker: Docker | None, runs: int) -> dict[str, float]:
    print("== exec C true")
    with sampan_root("exec") as sampan:
        engines: list[Engine] = [sampan, *([docker] if docker else [])]
        target = {}
        try:
            for e in engines:
                target[e.name] = e("run", "-d", *NET, IMAGE, "sleep", "100000").strip()
            times = alternate(engines, runs, 3, lambda e: e.timed("exec", target[e.name], "true"))
            return show_times("exec C true  ", times)
        finally:
            if docker and "docker" in target:
                docker("rm", "-f", target["docker"], check=False)


def part_batch(docker: Docker | None, count: int) -> dict[str, float]:
    print(f"== {count} sequential run -d {IMAGE} sleep 1000")
    totals = {}
    with sampan_root("batch") as sampan:
        for e in [sampan, *([docker] if docker else [])]:
            try:
                start = time.perf_counter()
                for _ in range(count):
                    e("run", "-d", *NET, IMAGE, "sleep", "1000")
                totals[e.name] = (time.perf_counter() - start) * 1000
                running = len(e.ids(all_=False))
                print(f"  {e.name:7s} total {totals[e.name] / 1000:7.2f} s  ({totals[e.name] / count:.1f} ms each, "
                      f"{running}/{count} running)")
                if running != count:
                    raise RuntimeError(f"{e.name}: only {running} of {count} containers running")
            finally:
                start = time.perf_counter()
                e.remove_all()
                print(f"  {e.name:7s} rm -f of all: {time.perf_counter() - start:.2f} s (not counted)")
    return totals


def kernel_kb() -> int:
    """Kernel memory that grows with containers and is not reclaimable: slab, kernel stacks, page tables."""
    m = meminfo()
    return m["SUnreclaim"] + m["KernelStack"] + m["PageTables"]


def tree_pss(roots: list[int]) -> int:
    """Sum of Pss (kB) over ``roots`` and all their descendants (Pss splits shared pages, so sums add up)."""
    parents = _ppids()
    pids, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid and pid not in pids:
            pids.add(pid)
            todo.extend(child for child, ppid in parents.items() if ppid == pid)
    return sum(smaps_rollup(pid).get("Pss", 0) for pid in pids)


def idle_memory(e: Engine, count: int, settle: float, merging: bool) -> dict[str, float]:
    """Start ``count`` idle containers; per-container growth of used memory (kB), two ways, and helper sizes.

    1. ``free``'s used memory, before and after (host-wide, so anything else running on the host adds noise;
       the change from before to after removing them all is printed as a drift check);
    2. accounted: Pss of each container's helper process (sampan's monitor, Docker's containerd-shim) and of
       the container's processes, plus what the engine's daemons grew by (dockerd, containerd) and the growth of
       unreclaimable kernel memory (slab, kernel stacks, page tables): less sensitive to other activity.
    """
    e.remove_all()
    time.sleep(settle)
    used0, unavail0 = memory_sample()
    kernel0, daemons0 = kernel_kb(), sum(smaps_rollup(pid).get("Pss", 0) for pid in e.daemon_pids())
    start = time.perf_counter()
    ids = [e("run", "-d", *NET, IMAGE, "sleep", "100000").strip() for _ in range(count)]
    started = time.perf_counter() - start
    time.sleep(settle)
    if merging:
        ksm.settle()
    running = len(e.ids(all_=False))
    used1, unavail1 = memory_sample()
    kernel1, daemons1 = kernel_kb(), sum(smaps_rollup(pid).get("Pss", 0) for pid in e.daemon_pids())
    pids = [int(p) for i in range(0, count, 100)
            for p in e("inspect", "-f", "{{.State.Pid}}", *ids[i:i + 100]).split()]
    helper_pids = [parent_of(pid) for pid in pids if pid]
    helpers = [h for h in (smaps_rollup(pid) for pid in helper_pids) if h]
    container_pss = tree_pss([p for p in pids if p])  # the containers' own processes (sleep: tiny)
    helper_pss = sum(h.get("Pss", 0) for h in helpers)
    out = {"used": (used1 - used0) / count, "unavailable": (unavail1 - unavail0) / count, "running": running,
           "start_s": started, "helpers": len(helpers), "helper_pss": helper_pss / count,
           "container_pss": container_pss / count, "daemons": (daemons1 - daemons0) / count,
           "kernel": (kernel1 - kernel0) / count}
    out["accounted"] = out["helper_pss"] + out["container_pss"] + out["daemons"] + out["kernel"]
    for key in ("Rss", "Pss", "Private_Dirty", "Private_Clean", "Shared_Clean"):
        out[key] = statistics.median(h.get(key, 0) for h in helpers) if helpers else 0
    e.remove_all()
    time.sleep(settle)
    used2, _ = memory_sample()
    out["after_rm"] = (used2 - used0) / 1024
    return out


def part_memory(docker: Docker | None, count: int, settle: float, merging: bool = False) -> dict[str, float]:
    state = ksm.describe(merging)
    print(f"== host memory per idle container ({count} x run -d {IMAGE} sleep 100000; {state})")
    helper = {"sampan": "monitor", "docker": "containerd-shim"}
    per = {}
    with sampan_root("mem") as sampan:
        for e in [sampan, *([docker] if docker else [])]:
            try:
                m = idle_memory(e, count, settle, merging)
            finally:
                e.remove_all()
            per[e.name] = m["used"] / 1024
            per[e.name + " accounted"] = m["accounted"] / 1024
            mb = {k: v / 1024 for k, v in m.items()}
            print(f"  {e.name:7s} used +{mb['used']:6.2f} MB/container (MemTotal-MemAvailable +{mb['unavailable']:.2f});"
                  f" {int(m['running'])}/{count} running, started in {m['start_s']:.1f} s; drift after rm -f: "
                  f"{m['after_rm']:+.1f} MB in all")
            print(f"  {'':7s} accounted {mb['accounted']:6.2f} MB/container = {helper[e.name]} Pss "
                  f"{mb['helper_pss']:.2f} + container processes {mb['container_pss']:.2f} + daemons' growth "
                  f"{mb['daemons']:.2f} + kernel (unreclaimable slab, stacks, page tables) {mb['kernel']:.2f}")
            print(f"  {'':7s} one {helper[e.name]} (median of {int(m['helpers'])}): Pss {mb['Pss']:.2f} MB, Private "
                  f"{mb['Private_Dirty'] + mb['Private_Clean']:.2f} MB (dirty {mb['Private_Dirty']:.2f}), Shared_Clean "
                  f"{mb['Shared_Clean']:.2f} MB, Rss {mb['Rss']:.2f} MB")
            if m["running"] != count:
                raise RuntimeError(f"{e.name}: only {int(m['running'])} of {count} idle containers running")
    return per


def part_many(count: int) -> tuple[bool, str]:
    print(f"== --many: {count} idle sampan containers")
    with sampan_root("many") as sampan:
        start = time.perf_counter()
        failures = 0
        for i in range(count):
            try:
                sampan("run", "-d", *NET, IMAGE, "sleep", "100000")
            except RuntimeError as e:
                failures += 1
                if failures <= 3:
                    print(f"  run #{i} failed: {e}")
        started = time.perf_counter() - start
        time.sleep(2)
        running = len(sampan.ids(all_=False))
        used = meminfo()
        start = time.perf_counter()
        sampan.remove_all()
        removed = time.perf_counter() - start
        left = len(sampan.ids())
        print(f"  started {count - failures}/{count} in {started:.1f} s; ps lists {running} running; "
              f"rm -f all in {removed:.1f} s, {left} left (MemAvailable while running: "
              f"{used['MemAvailable'] / 1024 ** 2:.1f} GB)")
        ok = running == count and failures == 0 and left == 0
        return ok, f"{running}/{count} running, {left} left after rm"


# ---------------------------------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer runs, --idle 20, --batch 20")
    parser.add_argument("--runs", type=int, help="timed runs of run --rm and exec (default 21, quick 5)")
    parser.add_argument("--batch", type=int, help="sequential run -d (default 50, quick 20)")
    parser.add_argument("--idle", type=int, help="idle containers for the memory part (default 100, quick 20)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to let memory settle (default 3)")
    parser.add_argument("--many", type=int, default=0, metavar="N", help="also start N idle sampan containers")
    parser.add_argument("--ksm", action="store_true",
                        help="measure memory again with ksmd running (restored afterwards)")
    parser.add_argument("--no-docker", action="store_true", help="measure sampan only")
    parser.add_argument("--only", choices=("run", "exec", "batch", "memory", "many"), action="append",
                        help="run only these parts (repeatable)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    runs = args.runs or (5 if args.quick else 21)
    batch = args.batch or (20 if args.quick else 50)
    idle = args.idle or (20 if args.quick else 100)
    parts = set(args.only or ("run", "exec", "batch", "memory", *(("many",) if args.many else ())))
    if "many" in parts and not args.many:
        args.many = 500
    if os.geteuid() != 0:
        print("needs root (sampan and dockerd run containers as root)", file=sys.stderr)
        return 2

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    summary: list[tuple[str, str, str, str, str]] = []  # target, sampan, docker, ratio, verdict
    failed = missed = False
    docker: Docker | None = None
    try:
        with sampan_root("image") as seed:
            image_tar = subprocess.run(seed.argv("save", IMAGE), capture_output=True, check=True).stdout
        if not args.no_docker:
            docker, note = start_docker(image_tar)
            print(f"docker: {docker('version', '-f', '{{.Server.Version}}').strip()} (private dockerd)" if docker
                  else f"docker: {note}")
        else:
            print("docker: --no-docker: Docker part skipped")

        def ratio_row(label: str, unit: str, values: dict[str, float], target: float, scale: float = 1) -> None:
            nonlocal missed
            s = f"{values['sampan'] * scale:.1f} {unit}"
            if "docker" in values:
                ratio = values["sampan"] / values["docker"]
                verdict = "PASS" if ratio <= target else "MISS"
                missed |= verdict == "MISS"
                summary.append((label, s, f"{values['docker'] * scale:.1f} {unit}", f"{ratio:.2f}x (<= {target}x)",
                                verdict))
            else:
                summary.append((label, s, "-", f"- (<= {target}x)", "n/a"))

        part_fns: list[tuple[str, Callable[[], None]]] = []
        if "run" in parts:
            part_fns.append(("run", lambda: ratio_row("run --rm true (median)", "ms",
                                                      part_run_rm(docker, runs), 0.25)))
        if "exec" in parts:
            part_fns.append(("exec", lambda: ratio_row("exec C true (median)", "ms", part_exec(docker, runs), 0.5)))
        if "batch" in parts:
            part_fns.append(("batch", lambda: ratio_row(f"{batch} x run -d (total)", "s", part_batch(docker, batch),
                                                        0.25, scale=1 / 1000)))

        def memory(merging: bool) -> None:
            nonlocal missed
            if merging:
                with ksm.ksm_running():
                    per = part_memory(docker, idle, args.settle, merging=True)
            else:
                per = part_memory(docker, idle, args.settle)
            # free's figure is host-wide and drifts with whatever else frees or takes memory meanwhile: a PASS
            # needs the accounted figure below the target too
            verdict = "PASS" if max(per["sampan"], per["sampan accounted"]) <= 2.0 else "MISS"
            missed |= verdict == "MISS"
            d = per.get("docker")
            summary.append((f"memory/idle container (N={idle}{', KSM' if merging else ''})",
                            f"{per['sampan']:.2f} MB ({per['sampan accounted']:.2f})",
                            f"{d:.2f} MB ({per['docker accounted']:.2f})" if d is not None else "-",
                            (f"{per['sampan'] / d:.2f}x, " if d else "") + "<= 2 MB", verdict))

        if "memory" in parts:
            part_fns.append(("memory", lambda: memory(False)))
            if args.ksm:
                part_fns.append(("memory with KSM", lambda: memory(True)))

        def many() -> None:
            nonlocal missed
            ok, text = part_many(args.many)
            missed |= not ok
            summary.append((f"--many {args.many}", text, "-", "all running", "PASS" if ok else "MISS"))

        if "many" in parts:
            part_fns.append(("many", many))
        for name, fn in part_fns:
            try:
                fn()
            except KeyboardInterrupt:
                raise
            except Exception as e:  # noqa: BLE001 - one failed part does not stop the others
                failed = True
                print(f"  {name} FAILED: {e}")
                summary.append((name, "FAILED", "", "", "FAIL"))
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up", file=sys.stderr)
        failed = True
    finally:
        if docker is not None:
            docker.close()
    if summary:
        headers = ("target", "sampan", "docker", "sampan/docker", "")
        widths = [max(len(str(row[i])) for row in [headers, *summary]) for i in range(5)]
        print("\n== summary (medians; ratio = sampan / docker; memory: free's used (accounted))")
        for row in [headers, *summary]:
            print("  " + "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
    if failed:
        return 1
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
