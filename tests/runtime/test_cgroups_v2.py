"""cgroup v2: every conversion against a fixture tree, then the real thing on a cgroup2 mount of this host.

The host is v1 (hybrid), so its controllers are bound to v1 and a cgroup2 mount has none: limits that need a
controller are covered by the fixture tree (a fake cgroup2 root in tmp_path), while freezing, killing, moving
processes, ``cgroup.*`` unified keys and the eBPF device filter run for real. The real tests work below a
parent cgroup the fixture makes, so the hierarchy root (shared with /sys/fs/cgroup/unified) is never changed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sampan.errors import InvalidArgument, NotFound, Unsupported
from sampan.runtime.cgroups import FROZEN, THAWED, cgroup_path, detect_version, open_cgroup, parse_resources
from sampan.runtime.cgroups.devices import Emulator, compile_filter, parse_rules, v1_transition
from sampan.runtime.cgroups.v2 import V2Cgroup

CONTROLLERS = "cpuset cpu io memory hugetlb pids"
INTERFACE = ("cgroup.procs", "cgroup.freeze", "cgroup.events", "cgroup.subtree_control", "cgroup.max.depth",
             "cpu.weight", "cpu.max", "cpu.max.burst", "cpu.idle", "cpu.stat", "cpuset.cpus", "cpuset.mems",
             "io.weight", "io.max", "io.stat", "memory.max", "memory.low", "memory.high", "memory.swap.max",
             "memory.current", "memory.stat", "memory.events", "pids.max", "pids.current", "hugetlb.2MB.max")
MiB = 1 << 20


# --- fixture tree -------------------------------------------------------------------------------------------

@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A fake cgroup2 root with /sampan/ctr already populated, as the kernel would after create()."""
    root = tmp_path / "cgroup"
    for directory in (root, root / "sampan", root / "sampan" / "ctr"):
        directory.mkdir()
        for name in INTERFACE:
            (directory / name).write_text("")
        (directory / "cgroup.controllers").write_text(CONTROLLERS + "\n")
    return root


def fake(tree: Path) -> V2Cgroup:
    cgroup = open_cgroup("/sampan/ctr", version=2, root=str(tree))
    assert isinstance(cgroup, V2Cgroup)
    return cgroup


def planned(cgroup: V2Cgroup, resources: dict) -> list[tuple[str, str]]:
    return [(w.name, w.value) for w in cgroup.plan(parse_resources(resources))]


FULL = {
    "memory": {"limit": 512 * MiB, "reservation": 256 * MiB, "swap": 1024 * MiB, "kernel": -1,
               "kernelTCP": -1},
    "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 10000, "idle": 0, "cpus": "0-1",
            "mems": "0"},
    "pids": {"limit": 100},
    "blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 300}],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": MiB}],
                "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2 * MiB}],
                "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 200}]},
    "hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MiB}],
    "unified": {"memory.high": "400000000", "cgroup.max.depth": "3"},
}

FULL_WRITES = [
    ("pids.max", "100"),
    ("memory.swap.max", str(512 * MiB)), ("memory.max", str(512 * MiB)), ("memory.low", str(256 * MiB)),
    ("io.weight", "4950"), ("io.weight", "8:0 2930"),
    ("io.max", "8:0 rbps=1048576"), ("io.max", "8:0 wbps=2097152"), ("io.max", "8:0 riops=100"),
    ("io.max", "8:16 wiops=200"),
    ("cpu.weight", "39"), ("cpu.max", "50000 100000"), ("cpu.max.burst", "10000"), ("cpu.idle", "0"),
    ("cpuset.cpus", "0-1"), ("cpuset.mems", "0"),
    ("hugetlb.2MB.max", str(4 * MiB)),
    ("memory.high", "400000000"), ("cgroup.max.depth", "3"),
]


def test_detect_version(tree: Path, tmp_path: Path) -> None:
    assert detect_version(str(tree)) == 2
    assert detect_version(str(tmp_path)) == 1
    assert isinstance(open_cgroup("x", root=str(tree)), V2Cgroup)


@pytest.mark.parametrize(("given", "expected"), [
    ("/sampan/abc", "/sampan/abc"),
    ("sampan/abc", "/sampan/abc"),
    ("//a/./b/", "/a/b"),
    ("system.slice:docker:abc", "/system.slice/docker-abc.scope"),
    ("user-1000.slice:podman:x", "/user.slice/user-1000.slice/podman-x.scope"),
    (":sampan:abc", "/system.slice/sampan-abc.scope"),
    ("machine.slice::abc", "/machine.slice/abc.scope"),
    ("-.slice:p:abc", "/p-abc.scope"),
])
def test_cgroup_path(given: str, expected: str) -> None:
    assert cgroup_path(given) == expected


@pytest.mark.parametrize("bad", ["/", "", "/a/../../etc", "..", "bad.name:p:n", "a--b.slice:p:n",
                                 "x.slice:p:"])
def test_cgroup_path_refused(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="cgroupsPath"):
        cgroup_path(bad)


def test_create_enables_root_controllers_in_ancestors(tree: Path) -> None:
    cgroup = fake(tree)
    cgroup.create()
    enabled = "+cpuset +cpu +io +memory +hugetlb +pids"
    assert (tree / "cgroup.subtree_control").read_text() == enabled
    assert (tree / "sampan" / "cgroup.subtree_control").read_text() == enabled
    assert (tree / "sampan" / "ctr" / "cgroup.subtree_control").read_text() == ""


def test_create_makes_missing_levels(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text("pids\n")
    (root / "cgroup.subtree_control").write_text("")
    cgroup = open_cgroup("/a/b/c", version=2, root=str(root))
    cgroup.create()  # new fake levels have no subtree_control: enabling fails, left to the writes needing it
    assert (root / "a" / "b" / "c").is_dir() and cgroup.exists()
    assert (root / "cgroup.subtree_control").read_text() == "+pids"


def test_apply_full_resources(tree: Path) -> None:
    cgroup = fake(tree)
    assert planned(cgroup, FULL) == FULL_WRITES
    cgroup.apply(FULL)
    ctr = tree / "sampan" / "ctr"
    last = {name: value for name, value in FULL_WRITES}  # each write replaces a plain file's content
    for name, value in last.items():
        assert (ctr / name).read_text() == value, name
    fields = {w.name: w.field for w in cgroup.plan(parse_resources(FULL))}
    assert fields["cpu.weight"] == "linux.resources.cpu.shares"
    assert fields["memory.high"] == "linux.resources.unified.memory.high"


@pytest.mark.parametrize(("resources", "writes"), [
    ({"memory": {"limit": -1}}, [("memory.swap.max", "max"), ("memory.max", "max")]),
    ({"memory": {"limit": 100 * MiB, "swap": 100 * MiB}},
     [("memory.swap.max", "0"), ("memory.max", str(100 * MiB))]),
    ({"memory": {"limit": 100 * MiB, "swap": -1}},
     [("memory.swap.max", "max"), ("memory.max", str(100 * MiB))]),
    ({"memory": {"limit": -1, "swap": 300}}, [("memory.swap.max", "300"), ("memory.max", "max")]),
    ({"memory": {"reservation": -1}}, [("memory.low", "max")]),
    ({"cpu": {"quota": -1}}, [("cpu.max", "max 100000")]),
    ({"cpu": {"quota": 0, "period": 50000}}, [("cpu.max", "max 50000")]),
    ({"cpu": {"quota": 20000}}, [("cpu.max", "20000 100000")]),
    ({"cpu": {"shares": 2}}, [("cpu.weight", "1")]),
    ({"cpu": {"shares": 262144}}, [("cpu.weight", "10000")]),
    ({"blockIO": {"weight": 10}}, [("io.weight", "1")]),
    ({"blockIO": {"weight": 1000}}, [("io.weight", "10000")]),
    ({"pids": {"limit": -1}}, [("pids.max", "max")]),
    ({"pids": {"limit": 0}}, []),
    ({"rdma": {"mlx4_0": {"hcaHandles": 2, "hcaObjects": 2000}}}, None),  # needs rdma: see the error tests
    ({}, []),
])
def test_conversions(tree: Path, resources: dict, writes: list[tuple[str, str]] | None) -> None:
    if writes is None:
        with pytest.raises(Unsupported, match=r"rdma\.mlx4_0.*rdma controller"):
            planned(fake(tree), resources)
    else:
        assert planned(fake(tree), resources) == writes


def test_bfq_weight_takes_the_v1_value(tree: Path) -> None:
    (tree / "sampan" / "ctr" / "io.bfq.weight").write_text("")
    blkio = {"blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 300}]}}
    assert planned(fake(tree), blkio) == [("io.bfq.weight", "500"), ("io.bfq.weight", "8:0 300")]


def test_swap_without_swap_accounting(tree: Path) -> None:
    (tree / "sampan" / "ctr" / "memory.swap.max").unlink()
    cgroup = fake(tree)
    assert planned(cgroup, {"memory": {"limit": 100, "swap": -1}}) == [("memory.max", "100")]
    assert planned(cgroup, {"memory": {"limit": 100, "swap": 100}}) == [("memory.max", "100")]
    with pytest.raises(Unsupported, match=r"memory\.swap.*memory\.swap\.max"):
        cgroup.apply({"memory": {"limit": 100, "swap": 300}})


@pytest.mark.parametrize(("resources", "error", "field"), [
    ({"unified": {"../x": "1"}}, InvalidArgument, "unified"),
    ({"unified": {"memory/max": "1"}}, InvalidArgument, "unified"),
    ({"unified": {"nodot": "1"}}, InvalidArgument, "CONTROLLER.PARAMETER"),
    ({"unified": {"memory.max": 5}}, InvalidArgument, "unified.memory.max"),
    ({"unified": {"rdma.max": "mlx4_0 hca_handle=1"}}, Unsupported, "rdma controller"),
    ({"memory": {"limit": 20 * MiB, "swap": 10 * MiB}}, InvalidArgument, "memory.swap"),
    ({"memory": {"swap": 10 * MiB}}, InvalidArgument, "without a memory limit"),
    ({"memory": {"limit": -2}}, InvalidArgument, "memory.limit"),
    ({"memory": {"limit": "1G"}}, InvalidArgument, "memory.limit"),
    ({"memory": {"swappiness": 101}}, InvalidArgument, "memory.swappiness"),
    ({"memory": {"swappiness": 10}}, Unsupported, "memory.swappiness"),
    ({"memory": {"disableOOMKiller": True}}, Unsupported, "memory.disableOOMKiller"),
    ({"memory": {"disableOOMKiller": "yes"}}, InvalidArgument, "memory.disableOOMKiller"),
    ({"cpu": {"shares": 1}}, InvalidArgument, "cpu.shares"),
    ({"cpu": {"shares": 262145}}, InvalidArgument, "cpu.shares"),
    ({"cpu": {"quota": True}}, InvalidArgument, "cpu.quota"),
    ({"cpu": {"cpus": "0-1; rm"}}, InvalidArgument, "cpu.cpus"),
    ({"cpu": {"realtimeRuntime": 950000}}, Unsupported, "cpu.realtimeRuntime"),
    ({"blockIO": {"weight": 5}}, InvalidArgument, "blockIO.weight"),
    ({"blockIO": {"leafWeight": 500}}, Unsupported, "blockIO.leafWeight"),
    ({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": -1}]}}, InvalidArgument,
     r"throttleReadBpsDevice\[0\]\.rate"),
    ({"hugepageLimits": [{"pageSize": "../2MB", "limit": 1}]}, InvalidArgument,
     r"hugepageLimits\[0\]\.pageSize"),
    ({"hugepageLimits": [{"limit": 1}]}, InvalidArgument, r"hugepageLimits\[0\]\.pageSize: required"),
    ({"pids": {"limit": "10"}}, InvalidArgument, "pids.limit"),
    ({"network": {"classID": 1}}, Unsupported, "network.classID"),
    ({"devices": [{"allow": True, "access": "rwx"}]}, InvalidArgument, r"devices\[0\]\.access"),
    ({"devices": [{"access": "rwm"}]}, InvalidArgument, r"devices\[0\]\.allow"),
    ({"devices": [{"allow": True, "type": "u"}]}, InvalidArgument, r"devices\[0\]\.type"),
    ({"devices": [{"allow": True, "type": "c", "major": -5}]}, InvalidArgument, r"devices\[0\]\.major"),
    ({"devices": "all"}, InvalidArgument, "devices"),
    ({"memory": []}, InvalidArgument, "linux.resources.memory"),
])
def test_refused_values_write_nothing(tree: Path, resources: dict, error: type, field: str) -> None:
    cgroup = fake(tree)
    with pytest.raises(error, match=field):
        cgroup.apply({**resources, "pids": resources.get("pids", {"limit": 7})})
    assert (tree / "sampan" / "ctr" / "pids.max").read_text() == ""


def test_missing_controller_names_the_field(tree: Path) -> None:
    (tree / "sampan" / "ctr" / "cgroup.controllers").write_text("cpu pids\n")
    with pytest.raises(Unsupported, match=r"linux\.resources\.memory\.limit.*memory controller"):
        fake(tree).apply({"pids": {"limit": 5}, "memory": {"limit": 100 * MiB}})
    assert (tree / "sampan" / "ctr" / "pids.max").read_text() == ""


def test_apply_needs_the_cgroup(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("")
    with pytest.raises(NotFound):
        open_cgroup("/absent", version=2, root=str(tmp_path)).apply({"pids": {"limit": 5}})


def test_stats_mapping(tree: Path) -> None:
    ctr = tree / "sampan" / "ctr"
    files = {
        "cpu.stat": "usage_usec 100\nuser_usec 60\nsystem_usec 40\nnr_periods 5\nnr_throttled 2\n"
                    "throttled_usec 7\n",
        "memory.stat": "anon 4096\nfile 8192\n",
        "memory.current": "12288\n", "memory.max": "max\n", "memory.events": "low 0\nhigh 0\nmax 3\noom 1\n",
        "memory.swap.current": "100\n", "memory.swap.max": "max\n",
        "pids.current": "3\n", "pids.max": "max\n",
        "io.stat": "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n",
    }
    for name, text in files.items():
        (ctr / name).write_text(text)
    stats = fake(tree).stats()
    assert stats["cpu"]["usage"] == {"total": 100_000, "percpu": [], "percpu_kernel": [], "percpu_user": [],
                                     "kernel": 40_000, "user": 60_000}
    assert stats["cpu"]["throttling"] == {"periods": 5, "throttledPeriods": 2, "throttledTime": 7000}
    memory = stats["memory"]
    assert memory["raw"] == {"anon": 4096, "file": 8192} and memory["cache"] == 8192
    assert memory["usage"] == {"usage": 12288, "limit": 2**64 - 1, "max": 0, "failcnt": 3}
    assert memory["swap"]["usage"] == 12388 and memory["swap"]["limit"] == 2**64 - 1
    assert stats["pids"] == {"current": 3, "limit": 0}
    assert stats["blkio"]["ioServiceBytesRecursive"] == [{"major": 8, "minor": 0, "op": "Read", "value": 1},
                                                         {"major": 8, "minor": 0, "op": "Write", "value": 2}]
    assert [e["value"] for e in stats["blkio"]["ioServicedRecursive"]] == [3, 4]


def test_oom_killed_from_memory_events(tree: Path) -> None:
    cgroup = fake(tree)
    assert not cgroup.oom_killed()
    (tree / "sampan" / "ctr" / "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n")
    assert cgroup.oom_killed()


def test_freeze_waits_for_events(tree: Path) -> None:
    ctr = tree / "sampan" / "ctr"
    cgroup = fake(tree)
    (ctr / "cgroup.events").write_text("populated 1\nfrozen 1\n")
    cgroup.freeze()
    assert (ctr / "cgroup.freeze").read_text() == "1" and cgroup.state() == FROZEN
    (ctr / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    cgroup.thaw()
    assert cgroup.state() == THAWED


# --- device rules: the emulator and the compiled program, checked by a small eBPF interpreter ---------------

BLOCK, CHAR = 1, 2
MKNOD, READ, WRITE = 1, 2, 4


def run_filter(program: bytes, kind: int, major: int, minor: int, access: int) -> int:
    """Interpret the instruction subset the compiler emits, against one bpf_cgroup_dev_ctx."""
    ctx = struct.pack("=III", kind | access << 16, major, minor)
    insns = [struct.unpack_from("=BBhi", program, i) for i in range(0, len(program), 8)]
    regs = [0] * 11
    pc = 0
    while True:
        code, reg_byte, off, imm = insns[pc]
        low, high = reg_byte & 0xF, reg_byte >> 4
        dst, src = (low, high) if sys.byteorder == "little" else (high, low)
        pc += 1
        if code == 0x61:
            assert src == 1
            regs[dst] = struct.unpack_from("=I", ctx, off)[0]
        elif code == 0x54:
            regs[dst] &= imm & 0xFFFFFFFF
        elif code == 0x74:
            regs[dst] = (regs[dst] & 0xFFFFFFFF) >> imm
        elif code == 0xBC:
            regs[dst] = regs[src] & 0xFFFFFFFF
        elif code == 0xB4:
            regs[dst] = imm & 0xFFFFFFFF
        elif code == 0x55:
            pc += off if regs[dst] != imm % 2**64 else 0
        elif code == 0x5D:
            pc += off if regs[dst] != regs[src] else 0
        elif code == 0x95:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


NULL = {"allow": True, "type": "c", "major": 1, "minor": 3}
DENY_ZERO_WRITES = [{"allow": True}, {"allow": False, "type": "c", "major": 1, "minor": 5, "access": "w"}]
DOCKER_LIKE = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rw"},
]


@pytest.mark.parametrize(("rules", "request_", "allowed"), [
    (DOCKER_LIKE, (CHAR, 1, 3, READ | WRITE), 1),
    (DOCKER_LIKE, (CHAR, 1, 7, READ), 0),
    (DOCKER_LIKE, (CHAR, 1, 7, MKNOD), 1),
    (DOCKER_LIKE, (BLOCK, 8, 0, MKNOD), 1),
    (DOCKER_LIKE, (BLOCK, 8, 0, READ), 0),
    (DOCKER_LIKE, (CHAR, 136, 4, WRITE), 1),
    (DOCKER_LIKE, (CHAR, 5, 2, READ | WRITE), 1),
    (DOCKER_LIKE, (CHAR, 5, 2, READ | MKNOD), 0),  # one rule must grant the whole request, as in v1
    ([], (CHAR, 1, 3, READ), 0),
    ([{"allow": True}], (BLOCK, 8, 0, READ | WRITE | MKNOD), 1),
    (DENY_ZERO_WRITES, (CHAR, 1, 5, WRITE), 0),
    (DENY_ZERO_WRITES, (CHAR, 1, 5, READ), 1),
    ([NULL, {**NULL, "allow": False}], (CHAR, 1, 3, READ), 0),
    ([{"allow": False}, NULL, {"allow": True}, {"allow": False}], (CHAR, 1, 3, READ), 0),
    ([{"allow": True, "type": "c", "major": 4000000000, "minor": 1}], (CHAR, 4000000000 % 2**32, 1, READ), 1),
])
def test_filter_decisions(rules: list[dict], request_: tuple[int, int, int, int], allowed: int) -> None:
    program = compile_filter(parse_rules(rules))
    assert run_filter(program, *request_) == allowed


def test_hole_in_wildcard_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="punch a hole"):
        parse_rules([{"allow": True, "type": "c", "access": "rwm"},
                     {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "r"}])


def test_v1_transitions_are_minimal() -> None:
    rules = parse_rules(DOCKER_LIKE[:3])
    assert v1_transition("a *:* rwm\n", rules) == [
        ("devices.deny", "a *:* rwm"), ("devices.allow", "c 1:3 rwm"), ("devices.allow", "c 1:5 rwm")]
    update = parse_rules([{"allow": False}, {**NULL, "access": "r"},
                          {"allow": True, "type": "c", "major": 1, "minor": 8}])
    assert v1_transition("c 1:3 rwm\nc 1:5 rwm\n", update) == [
        ("devices.deny", "c 1:3 wm"), ("devices.deny", "c 1:5 rwm"), ("devices.allow", "c 1:8 rwm")]
    assert v1_transition("c 1:3 rwm\n", parse_rules([{"allow": True}])) == [("devices.allow", "a *:* rwm")]
    assert Emulator.from_list("c 1:3 rwm\n") == Emulator.from_list("c 1:3 r\nc 1:3 wm\n")


# --- real: a cgroup2 mount ----------------------------------------------------------------------------------

def _thaw_and_kill(parent: Path) -> None:
    for current, _, _ in os.walk(parent):
        freeze = Path(current) / "cgroup.freeze"
        if freeze.exists():
            freeze.write_text("0")
    for current, _, _ in os.walk(parent):
        for pid in (Path(current) / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


def _remove_tree(parent: Path) -> None:
    for current, _, _ in os.walk(parent, topdown=False):
        for _ in range(200):
            try:
                os.rmdir(current)
                break
            except FileNotFoundError:
                break
            except OSError as err:
                if err.errno != errno.EBUSY:
                    raise
                time.sleep(0.01)


@pytest.fixture
def v2_root(tmp_path: Path) -> Iterator[str]:
    """A private parent cgroup on a fresh cgroup2 mount; all below it is killed and removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    mount_point = tmp_path / "cgroup2"
    mount_point.mkdir()
    mount = ["mount", "-t", "cgroup2", "none", str(mount_point)]
    mounted = subprocess.run(mount, capture_output=True, check=False)
    if mounted.returncode:
        pytest.skip("cannot mount cgroup2 here")
    parent = mount_point / f"sampan-test-{secrets.token_hex(4)}"
    try:
        parent.mkdir()
        yield str(parent)
    finally:
        try:
            if parent.exists():
                _thaw_and_kill(parent)
                _remove_tree(parent)
        finally:
            subprocess.run(["umount", str(mount_point)], check=True)


SLEEPER = "import time; time.sleep(60)"
SPINNER = "while True: pass"
OPENER = """
import os, sys
while line := sys.stdin.readline():
    try:
        os.close(os.open(line.strip(), os.O_RDONLY))
        print("ok", flush=True)
    except OSError as e:
        print(e.errno, flush=True)
"""


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def progresses(pid: int, seconds: float = 0.3) -> bool:
    before = cpu_ticks(pid)
    time.sleep(seconds)
    return cpu_ticks(pid) > before


def ask(child: subprocess.Popen[str], path: str) -> str:
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(path + "\n")
    child.stdin.flush()
    return child.stdout.readline().strip()


def test_real_create_add_pids(v2_root: str, spawn: Callable[[str], subprocess.Popen[str]]) -> None:
    cgroup = open_cgroup("/a/b", root=v2_root)
    assert isinstance(cgroup, V2Cgroup) and not cgroup.exists()
    cgroup.create()
    assert cgroup.exists()
    child = spawn(SLEEPER)
    cgroup.add(child.pid)
    assert cgroup.pids() == [child.pid]
    relative = v2_root.rsplit("/", 1)[1]
    assert f"0::/{relative}/a/b\n" in Path(f"/proc/{child.pid}/cgroup").read_text()
    assert cgroup.stats()["pids"]["current"] == 1
    assert not cgroup.oom_killed()


def test_real_freeze_thaw(v2_root: str, spawn: Callable[[str], subprocess.Popen[str]]) -> None:
    cgroup = open_cgroup("/ctr", root=v2_root)
    cgroup.create()
    child = spawn(SPINNER)
    cgroup.add(child.pid)
    assert progresses(child.pid)
    assert cgroup.stats()["cpu"]["usage"]["total"] > 0
    cgroup.freeze()
    assert cgroup.state() == FROZEN
    assert "frozen 1" in Path(v2_root, "ctr", "cgroup.events").read_text()
    assert not progresses(child.pid)
    cgroup.thaw()
    assert cgroup.state() == THAWED
    assert progresses(child.pid)


def test_real_kill_all(v2_root: str, spawn: Callable[[str], subprocess.Popen[str]]) -> None:
    cgroup = open_cgroup("/ctr", root=v2_root)
    cgroup.create()
    assert Path(v2_root, "ctr", "cgroup.kill").exists()
    children = [spawn(SLEEPER) for _ in range(2)]
    for child in children:
        cgroup.add(child.pid)
    cgroup.kill_all(signal.SIGKILL)
    assert [child.wait(10) for child in children] == [-signal.SIGKILL] * 2
    terminated = spawn(SLEEPER)
    cgroup.add(terminated.pid)
    cgroup.kill_all(signal.SIGTERM)  # not SIGKILL: freeze, signal, thaw
    assert terminated.wait(10) == -signal.SIGTERM
    assert cgroup.state() == THAWED and cgroup.pids() == []
    cgroup.destroy()
    assert not cgroup.exists()
    cgroup.destroy()  # already gone is fine


def test_real_unified_keys(v2_root: str) -> None:
    cgroup = open_cgroup("/ctr", root=v2_root)
    cgroup.create()
    cgroup.apply({"unified": {"cgroup.max.descendants": "2"}})
    assert Path(v2_root, "ctr", "cgroup.max.descendants").read_text().strip() == "2"
    with pytest.raises(InvalidArgument, match=r"cgroup\.max\.descendants"):
        cgroup.apply({"unified": {"cgroup.max.descendants": "lots"}})


def test_real_missing_controllers(v2_root: str) -> None:
    """Below a parent that delegates no controller (its subtree_control left empty), limits are refused by
    controller name, on a v1 (hybrid) host, where every controller is bound to v1, and on a v2 one alike."""
    bare = Path(v2_root, "bare")
    bare.mkdir()
    assert Path(bare, "cgroup.controllers").read_text().split() == []
    cgroup = open_cgroup("/ctr", root=str(bare))
    cgroup.create()
    with pytest.raises(Unsupported, match="memory controller"):
        cgroup.apply({"unified": {"memory.max": "1G"}})
    with pytest.raises(Unsupported, match=r"pids\.limit.*pids controller"):
        cgroup.apply({"pids": {"limit": 5}})


ALLOCATOR = """
import sys
sys.stdin.readline()
hog = bytearray(96 << 20)
hog[::4096] = b"x" * len(hog[::4096])
print("survived", flush=True)
"""
FORKER = """
import os, sys
sys.stdin.readline()
made = 0
try:
    for _ in range(8):
        if os.fork() == 0:
            os.read(0, 1)
            os._exit(0)
        made += 1
except BlockingIOError:
    pass
print(made, flush=True)
"""


def test_real_limits_enforced(v2_root: str, spawn: Callable[[str], subprocess.Popen[str]]) -> None:
    """On a cgroup v2 host the kernel enforces what apply() wrote: memory (OOM kill, seen in memory.events),
    pids and CPU bandwidth. A v1 (hybrid) host has no controllers on a cgroup2 mount: its v1 tests cover this."""
    needed = {"memory", "pids", "cpu"}
    if not needed <= set(Path(v2_root, "cgroup.controllers").read_text().split()):
        pytest.skip("this cgroup2 mount has no memory, pids and cpu controllers (a v1 host)")
    cgroup = open_cgroup("/ctr", root=v2_root)
    cgroup.create()
    cgroup.apply({"memory": {"limit": 32 * MiB, "swap": 32 * MiB}, "pids": {"limit": 4},
                  "cpu": {"quota": 50000, "period": 100000, "shares": 512}})
    files = {name: Path(v2_root, "ctr", name).read_text().strip()
             for name in ("memory.max", "memory.swap.max", "pids.max", "cpu.max", "cpu.weight")}
    assert files == {"memory.max": str(32 * MiB), "memory.swap.max": "0", "pids.max": "4",
                     "cpu.max": "50000 100000", "cpu.weight": "20"}
    hog = spawn(ALLOCATOR)
    cgroup.add(hog.pid)
    assert hog.stdin is not None
    hog.stdin.write("go\n")
    hog.stdin.flush()
    assert hog.wait(20) == -signal.SIGKILL
    assert cgroup.oom_killed()
    forker = spawn(FORKER)
    cgroup.add(forker.pid)
    assert ask(forker, "go") == "3"  # the forker itself and three children make pids.max's 4
    cgroup.kill_all(signal.SIGKILL)


def test_real_device_filter(v2_root: str, spawn: Callable[[str], subprocess.Popen[str]]) -> None:
    from sampan.runtime.cgroups.devices import attached_program_ids

    cgroup = open_cgroup("/ctr", root=v2_root)
    cgroup.create()
    null_only = [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3}]
    cgroup.apply({"devices": null_only})
    first = attached_program_ids(os.path.join(v2_root, "ctr"))
    assert len(first) == 1
    child = spawn(OPENER)
    cgroup.add(child.pid)  # the child opens only after joining
    assert ask(child, "/dev/null") == "ok"
    assert ask(child, "/dev/zero") == str(errno.EPERM)

    zero_read = {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "r"}
    cgroup.apply({"devices": [*null_only, zero_read]})
    second = attached_program_ids(os.path.join(v2_root, "ctr"))
    assert len(second) == 1 and second != first
    assert ask(child, "/dev/zero") == "ok"
    assert ask(child, "/dev/full") == str(errno.EPERM)

    cgroup.apply({"devices": []})
    assert ask(child, "/dev/null") == str(errno.EPERM)
    assert len(attached_program_ids(os.path.join(v2_root, "ctr"))) == 1
