"""cgroup v1, for real on this host: limits are read back from the kernel and enforced on real child
processes.

Each test gets its own ``/sampan-test-<random>`` cgroup in every mounted hierarchy; the fixture thaws it,
kills whatever is left in it by pid and removes it, without relying on the code under test.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sampan.errors import InvalidArgument, Unsupported
from sampan.runtime.cgroups import FROZEN, THAWED, detect_version, open_cgroup
from sampan.runtime.cgroups.v1 import V1Cgroup

MiB = 1 << 20
ROOT = "/sys/fs/cgroup"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or detect_version() != 1 or not os.path.isdir(f"{ROOT}/memory"),
    reason="needs root on a cgroup v1 host")


def _cleanup(name: str) -> None:
    dirs = glob.glob(f"{ROOT}/*/{name}")
    for directory in dirs:
        if os.path.exists(f"{directory}/freezer.state"):
            Path(directory, "freezer.state").write_text("THAWED")
    for directory in dirs:
        for pid in Path(directory, "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    for directory in dirs:
        for _ in range(300):
            try:
                os.rmdir(directory)
                break
            except OSError as err:
                if err.errno != errno.EBUSY:
                    raise
                time.sleep(0.01)
    assert not glob.glob(f"{ROOT}/*/{name}")


@pytest.fixture
def cg() -> Iterator[V1Cgroup]:
    name = f"sampan-test-{secrets.token_hex(4)}"
    cgroup = open_cgroup(f"/{name}")
    assert isinstance(cgroup, V1Cgroup)
    try:
        cgroup.create()
        yield cgroup
    finally:
        _cleanup(name)


SLEEPER = "import time; time.sleep(60)"
# Allocates 8 MiB once in the cgroup (memory charged before the move stays with the old cgroup), then spins.
SPINNER = ("import sys; sys.stdin.readline(); x = b'\\1' * (8 << 20); print('ready', flush=True)\n"
           "while True: pass")
# Each waits for a line on stdin first, so it acts only once the test has moved it into the cgroup.
HOG = "import sys; sys.stdin.readline(); x = b'\\1' * (200 << 20); print('survived', flush=True)"
FORKER = """
import os, sys, time
sys.stdin.readline()
forked = 0
for _ in range(20):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    forked += 1
print(forked, flush=True)
time.sleep(60)
"""
OPENER = """
import os, sys
while line := sys.stdin.readline():
    try:
        os.close(os.open(line.strip(), os.O_RDONLY))
        print("ok", flush=True)
    except OSError as e:
        print(e.errno, flush=True)
"""


def read(cgroup: V1Cgroup, subsystem: str, name: str) -> str:
    directory = cgroup.dir(subsystem)
    assert directory is not None
    return Path(directory, name).read_text().strip()


def send(child: subprocess.Popen[str], line: str) -> str:
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(line + "\n")
    child.stdin.flush()
    return child.stdout.readline().strip()


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def progresses(pid: int, seconds: float = 0.3) -> bool:
    before = cpu_ticks(pid)
    time.sleep(seconds)
    return cpu_ticks(pid) > before


def block_device() -> tuple[int, int] | None:
    for dev in sorted(glob.glob("/sys/block/*/dev")):
        if "/loop" not in dev and "/zram" not in dev:
            major, minor = Path(dev).read_text().split(":")
            return int(major), int(minor)
    return None


def test_create_in_every_hierarchy(cg: V1Cgroup) -> None:
    name = cg.path.lstrip("/")
    for subsystem in ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"):
        if os.path.isdir(f"{ROOT}/{subsystem}"):
            assert os.path.isdir(f"{ROOT}/{subsystem}/{name}"), subsystem
    # v1 cpusets start empty and cannot take tasks: create() copies the parent's.
    assert read(cg, "cpuset", "cpuset.cpus") == Path(ROOT, "cpuset", "cpuset.cpus").read_text().strip()
    assert read(cg, "cpuset", "cpuset.mems") == Path(ROOT, "cpuset", "cpuset.mems").read_text().strip()
    assert cg.exists() and cg.state() == THAWED


def test_apply_writes_every_setting(cg: V1Cgroup) -> None:
    resources: dict = {
        "memory": {"limit": 64 * MiB, "reservation": 32 * MiB, "swap": 96 * MiB, "swappiness": 10,
                   "kernel": -1},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 42},
        "blockIO": {"weight": 500},
    }
    device = block_device()
    if device:
        major, minor = device
        resources["blockIO"]["throttleReadBpsDevice"] = [{"major": major, "minor": minor, "rate": MiB}]
        resources["blockIO"]["throttleWriteIOPSDevice"] = [{"major": major, "minor": minor, "rate": 300}]
    cg.apply(resources)
    memsw = os.path.exists(os.path.join(cg.dir("memory") or "", "memory.memsw.limit_in_bytes"))
    expected = {
        ("memory", "memory.limit_in_bytes"): str(64 * MiB),
        ("memory", "memory.soft_limit_in_bytes"): str(32 * MiB),
        ("memory", "memory.swappiness"): "10",
        ("cpu", "cpu.shares"): "512",
        ("cpu", "cpu.cfs_quota_us"): "50000",
        ("cpu", "cpu.cfs_period_us"): "100000",
        ("cpuset", "cpuset.cpus"): "0",
        ("cpuset", "cpuset.mems"): "0",
        ("pids", "pids.max"): "42",
    }
    if memsw:
        expected["memory", "memory.memsw.limit_in_bytes"] = str(96 * MiB)
    for (subsystem, name), value in expected.items():
        assert read(cg, subsystem, name) == value, name
    weight = "blkio.weight" if os.path.exists(os.path.join(cg.dir("blkio") or "", "blkio.weight")) \
        else "blkio.bfq.weight"
    assert read(cg, "blkio", weight).split()[-1] == "500"
    if device:
        assert read(cg, "blkio", "blkio.throttle.read_bps_device") == f"{device[0]}:{device[1]} {MiB}"
        assert read(cg, "blkio", "blkio.throttle.write_iops_device") == f"{device[0]}:{device[1]} 300"
    cg.apply({"memory": {"disableOOMKiller": True}, "pids": {"limit": -1}})
    assert "oom_kill_disable 1" in read(cg, "memory", "memory.oom_control")
    assert read(cg, "pids", "pids.max") == "max"


def test_memory_and_swap_raised_and_lowered(cg: V1Cgroup) -> None:
    if not os.path.exists(os.path.join(cg.dir("memory") or "", "memory.memsw.limit_in_bytes")):
        pytest.skip("no swap accounting")
    for limit, swap in ((64, 64), (256, 512), (32, 48), (-1, 0), (100, 200)):
        cg.apply({"memory": {"limit": limit * MiB if limit > 0 else -1, "swap": swap * MiB}})
        if limit > 0:
            assert read(cg, "memory", "memory.limit_in_bytes") == str(limit * MiB)
            assert read(cg, "memory", "memory.memsw.limit_in_bytes") == str(swap * MiB)
        else:  # unlimited memory without a swap setting lifts swap too
            assert int(read(cg, "memory", "memory.limit_in_bytes")) > 2**62
            assert int(read(cg, "memory", "memory.memsw.limit_in_bytes")) > 2**62


def test_cpu_period_shorter_than_before(cg: V1Cgroup) -> None:
    cg.apply({"cpu": {"quota": 400000, "period": 1000000}})
    cg.apply({"cpu": {"quota": 20000, "period": 50000}})
    assert (read(cg, "cpu", "cpu.cfs_quota_us"), read(cg, "cpu", "cpu.cfs_period_us")) == ("20000", "50000")


@pytest.mark.parametrize(("resources", "error", "field"), [
    ({"memory": {"swappiness": 101}}, InvalidArgument, "memory.swappiness"),
    ({"cpu": {"shares": 1}}, InvalidArgument, "cpu.shares"),
    ({"cpu": {"period": 10}}, InvalidArgument, r"cpu\.period.*cpu\.cfs_period_us"),
    ({"cpu": {"cpus": "1-0"}}, InvalidArgument, "cpu.cpus"),
    ({"unified": {"memory.max": "1G"}}, Unsupported, "unified"),
    ({"blockIO": {"weight": 5}}, InvalidArgument, "blockIO.weight"),
    ({"hugepageLimits": [{"pageSize": "2MB/../x", "limit": 1}]}, InvalidArgument, "pageSize"),
    ({"devices": [{"allow": True, "type": "c", "access": "rwx"}]}, InvalidArgument, "access"),
])
def test_refused_values(cg: V1Cgroup, resources: dict, error: type, field: str) -> None:
    with pytest.raises(error, match=field):
        cg.apply(resources)
    assert read(cg, "pids", "pids.max") == "max"


def test_hugetlb_needs_its_hierarchy(cg: V1Cgroup) -> None:
    if cg.dir("hugetlb"):
        pytest.skip("hugetlb is mounted here")
    with pytest.raises(Unsupported, match=r"hugepageLimits.*hugetlb"):
        cg.apply({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MiB}], "pids": {"limit": 9}})
    assert read(cg, "pids", "pids.max") == "max"


def test_add_pids_freeze_thaw_stats(cg: V1Cgroup, spawn: Callable[[str], subprocess.Popen[str]]) -> None:
    child = spawn(SPINNER)
    cg.add(child.pid)
    assert send(child, "go") == "ready"
    assert cg.pids() == [child.pid]
    membership = Path(f"/proc/{child.pid}/cgroup").read_text()
    for subsystem in ("memory", "freezer", "pids", "devices"):
        assert f":{subsystem}:{cg.path}\n" in membership
    assert progresses(child.pid)

    cg.freeze()
    assert cg.state() == FROZEN and read(cg, "freezer", "freezer.state") == "FROZEN"
    assert not progresses(child.pid)
    cg.thaw()
    assert cg.state() == THAWED and progresses(child.pid)

    cg.apply({"pids": {"limit": 10}})
    stats = cg.stats()
    usage = stats["cpu"]["usage"]
    assert usage["total"] > 0 and len(usage["percpu"]) == os.cpu_count() and usage["user"] > 0
    assert stats["memory"]["usage"]["usage"] >= 8 * MiB and "cache" in stats["memory"]["raw"]
    assert stats["memory"]["usage"]["limit"] > 2**62
    assert stats["pids"] == {"current": 1, "limit": 10}
    assert set(stats) == {"cpu", "memory", "pids", "blkio", "hugetlb"}


def test_kill_all(cg: V1Cgroup, spawn: Callable[[str], subprocess.Popen[str]]) -> None:
    children = [spawn(SLEEPER) for _ in range(2)]
    for child in children:
        cg.add(child.pid)
    cg.kill_all(signal.SIGTERM)
    assert [child.wait(10) for child in children] == [-signal.SIGTERM] * 2
    assert cg.pids() == [] and cg.state() == THAWED


def test_memory_limit_is_enforced(cg: V1Cgroup, spawn: Callable[[str], subprocess.Popen[str]]) -> None:
    memory: dict = {"limit": 50 * MiB}
    if os.path.exists(os.path.join(cg.dir("memory") or "", "memory.memsw.limit_in_bytes")):
        memory["swap"] = 50 * MiB  # no swap either, or the hog could page out instead of dying
    cg.apply({"memory": memory})
    hog = spawn(HOG)
    cg.add(hog.pid)
    assert not cg.oom_killed()
    assert send(hog, "go") == ""
    assert hog.wait(30) == -signal.SIGKILL
    assert cg.oom_killed()


def test_pids_limit_is_enforced(cg: V1Cgroup, spawn: Callable[[str], subprocess.Popen[str]]) -> None:
    cg.apply({"pids": {"limit": 5}})
    forker = spawn(FORKER)
    cg.add(forker.pid)
    assert send(forker, "go") == "4"  # the forker itself is the fifth
    assert len(cg.pids()) == 5
    assert int(read(cg, "pids", "pids.events").split()[-1]) > 0
    cg.kill_all(signal.SIGKILL)
    assert forker.wait(10) == -signal.SIGKILL
    assert wait_until(lambda: cg.pids() == [])


def wait_until(done: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_device_rules(cg: V1Cgroup, spawn: Callable[[str], subprocess.Popen[str]]) -> None:
    null_only = [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3}]
    cg.apply({"devices": null_only})
    assert read(cg, "devices", "devices.list") == "c 1:3 rwm"
    opener = spawn(OPENER)
    cg.add(opener.pid)  # it opens only after joining
    assert send(opener, "/dev/null") == "ok"
    assert send(opener, "/dev/zero") == str(errno.EPERM)

    cg.apply({"devices": [*null_only, {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "r"}]})
    assert read(cg, "devices", "devices.list").splitlines() == ["c 1:3 rwm", "c 1:5 r"]
    assert send(opener, "/dev/zero") == "ok"
    assert send(opener, "/dev/full") == str(errno.EPERM)

    cg.apply({"devices": [{"allow": True, "access": "rwm"}]})
    assert read(cg, "devices", "devices.list") == "a *:* rwm"
    assert send(opener, "/dev/full") == "ok"


def test_destroy_removes_everything(cg: V1Cgroup, spawn: Callable[[str], subprocess.Popen[str]]) -> None:
    child = spawn(SLEEPER)
    cg.add(child.pid)
    cg.kill_all(signal.SIGKILL)
    child.wait(10)
    cg.destroy()
    assert not cg.exists()
    assert not glob.glob(f"{ROOT}/*/{cg.path.lstrip('/')}")
    cg.destroy()  # already gone is fine
    assert cg.pids() == [] and cg.state() == THAWED
