"""The same bundle tests under runc (the oracle) and sampan-runc: exit codes, output, hostname, mounts, caps,
limits, users, signals and terminals must behave identically."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import ConsoleSocket, Runner, cgroup_limits

CAP_LINE = "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status"


def _set(path: str, value: Any):  # noqa: ANN202 - returns a config mutator
    def mutate(config: dict[str, Any]) -> None:
        node = config
        keys = path.split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return mutate


def test_exit_code_and_stdout(runtime: Runner) -> None:
    r = runtime.run(["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert (r.code, r.out) == (7, "out\n") and "err" in r.err


def test_command_not_found(runtime: Runner) -> None:
    r = runtime.run(["/no/such/binary"])
    assert r.code != 0


def test_hostname_and_env_and_cwd(runtime: Runner) -> None:
    r = runtime.run(["sh", "-c", "hostname; echo $FOO; pwd"], hostname="parity",
                    mutate=lambda c: (c["process"]["env"].append("FOO=bar"), c["process"].update(cwd="/tmp")))
    assert r.out.split() == ["parity", "bar", "/tmp"], r.err


def test_default_capabilities(runtime: Runner) -> None:
    from sampan.runtime.constants import CAPABILITIES

    from .conftest import default_config

    r = runtime.run(["sh", "-c", CAP_LINE])
    assert r.code == 0, r.err
    fields = {k: int(v, 16) for k, v in (line.split(":\t") for line in r.out.splitlines())}
    caps = default_config()["process"]["capabilities"]
    masks = {key: sum(1 << CAPABILITIES[name] for name in caps.get(key, [])) for key in
             ("effective", "permitted", "bounding", "inheritable", "ambient")}
    # an ambient capability only sticks when it is also permitted and inheritable
    masks["ambient"] &= masks["inheritable"] & masks["permitted"]
    for field, key in (("CapEff", "effective"), ("CapPrm", "permitted"), ("CapBnd", "bounding"),
                       ("CapInh", "inheritable"), ("CapAmb", "ambient")):
        assert fields[field] == masks[key], (field, hex(fields[field]), hex(masks[key]))


def test_dropped_capability_is_enforced(runtime: Runner) -> None:
    def drop_kill(config: dict[str, Any]) -> None:
        for key, caps in config["process"]["capabilities"].items():
            config["process"]["capabilities"][key] = [c for c in caps if c != "CAP_NET_BIND_SERVICE"]
    r = runtime.run(["sh", "-c", "nc -l -p 80 -w 1 2>&1; echo rc=$?"], mutate=drop_kill)
    assert "ermission denied" in r.out or "rc=1" in r.out


def test_user_and_groups(runtime: Runner) -> None:
    r = runtime.run(["sh", "-c", "id -u; id -g; id -G; touch /root/x 2>/dev/null; echo touch=$?"],
                    mutate=_set("process.user", {"uid": 1000, "gid": 1000, "additionalGids": [5, 6]}))
    lines = r.out.split("\n")
    assert lines[0] == "1000" and lines[1] == "1000" and set(lines[2].split()) == {"1000", "5", "6"}
    assert "touch=1" in r.out


def test_mounts_devices_and_masked_paths(runtime: Runner) -> None:
    script = ("ls /dev | sort | tr '\\n' ' '; echo; test -c /dev/null && echo nullok; "
              "cat /proc/kcore | wc -c; ls /proc/acpi 2>/dev/null | wc -l; "
              "touch /proc/sysrq-trigger 2>/dev/null || echo sysrq-ro; grep -c ' / ' /proc/self/mountinfo; "
              "readlink /dev/stdout; mount | grep -c ' /dev/pts '")
    r = runtime.run(["sh", "-c", script])
    lines = r.out.splitlines()
    for dev in ("full", "null", "ptmx", "pts", "random", "shm", "tty", "urandom", "zero", "fd", "stdin", "mqueue"):
        assert dev in lines[0].split(), (dev, lines[0])
    assert lines[1:5] == ["nullok", "0", "0", "sysrq-ro"]
    assert lines[6] == "/proc/self/fd/1" and lines[7] == "1"


def test_readonly_rootfs(runtime: Runner) -> None:
    r = runtime.run(["sh", "-c", "touch /x 2>/dev/null; echo $?; touch /tmp/y 2>/dev/null; echo $?"],
                    mutate=_set("root.readonly", True))
    assert r.out.split() == ["1", "1"]


def test_rlimits_and_oom_score(runtime: Runner) -> None:
    r = runtime.run(["sh", "-c", "ulimit -n; ulimit -Hn; cat /proc/self/oom_score_adj"],
                    mutate=lambda c: c["process"].update(
                        rlimits=[{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}], oomScoreAdj=200))
    assert r.out.split() == ["123", "456", "200"]


def test_sysctl_in_new_net_namespace(runtime: Runner) -> None:
    def net(config: dict[str, Any]) -> None:
        assert {"type": "network"} in config["linux"]["namespaces"]
        config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmax": "12345678"}
    r = runtime.run(["sh", "-c", "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax; ip link | grep -c lo"],
                    mutate=net)
    assert r.out.split()[:2] == ["1", "12345678"], r.err


def test_user_namespace_mapping(runtime: Runner) -> None:
    def userns(config: dict[str, Any]) -> None:
        config["linux"]["namespaces"].append({"type": "user"})
        config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        config["mounts"] = [m for m in config["mounts"] if m["destination"] != "/sys/fs/cgroup"]
    os.chown(runtime.rootfs, 100000, 100000)
    r = runtime.run(["sh", "-c", "cat /proc/self/uid_map; id -u"], mutate=userns)
    assert r.out.split() == ["0", "100000", "65536", "0"], r.err


def test_pids_limit(runtime: Runner) -> None:
    r = runtime.run(["sh", "-c", "for i in 1 2 3 4 5 6 7 8; do sleep 2 & done 2>/dev/null; jobs | wc -l"],
                    mutate=_set("linux.resources.pids", {"limit": 5}))
    assert int(r.out.strip() or 0) < 8


def test_memory_limit_in_cgroup(runtime: Runner) -> None:
    bundle, cid = runtime.bundle(["sleep", "30"], mutate=_set("linux.resources.memory", {"limit": 33554432}))
    assert runtime("run", "-d", "--bundle", str(bundle), cid).code == 0
    pid = json.loads(runtime("state", cid).out)["pid"]
    assert cgroup_limits(pid).memory == "33554432"


def test_lifecycle_create_start_state_kill_delete(runtime: Runner) -> None:
    bundle, cid = runtime.bundle(["sleep", "30"])
    assert runtime("create", "--bundle", str(bundle), cid).code == 0
    state = json.loads(runtime("state", cid).out)
    assert state["status"] == "created" and state["id"] == cid and state["bundle"] == str(bundle)
    assert set(state) >= {"ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner"}
    assert runtime("start", cid).code == 0
    assert json.loads(runtime("state", cid).out)["status"] == "running"
    assert runtime("start", cid).code == 1
    r = runtime("delete", cid)
    assert r.code == 1 and "running" in r.err
    assert runtime("pause", cid).code == 0
    assert json.loads(runtime("state", cid).out)["status"] == "paused"
    assert runtime("resume", cid).code == 0
    assert runtime("kill", cid, "KILL").code == 0
    for _ in range(200):
        if json.loads(runtime("state", cid).out)["status"] == "stopped":
            break
        time.sleep(0.02)
    assert json.loads(runtime("state", cid).out)["status"] == "stopped"
    assert runtime("kill", cid, "KILL").code == 1
    assert runtime("delete", cid).code == 0
    assert runtime("state", cid).code == 1


def test_exec_and_ps(runtime: Runner) -> None:
    bundle, cid = runtime.bundle(["sleep", "30"])
    assert runtime("run", "-d", "--bundle", str(bundle), cid).code == 0
    r = runtime("exec", cid, "sh", "-c", "echo in; hostname; id -u; exit 4")
    assert (r.code, r.out.split()) == (4, ["in", "runc", "0"]), r.err
    r = runtime("exec", "--user", "1000:1000", "--env", "X=1", "--cwd", "/tmp", cid, "sh", "-c", "id -u; echo $X; pwd")
    assert r.out.split() == ["1000", "1", "/tmp"], r.err
    pids = json.loads(runtime("ps", "--format", "json", cid).out)
    assert json.loads(runtime("state", cid).out)["pid"] in pids
    runtime("delete", "--force", cid)


def test_terminal_with_console_socket(runtime: Runner, tmp_path: Path) -> None:
    sock = ConsoleSocket(tmp_path / "console.sock")
    try:
        bundle, cid = runtime.bundle(["sh", "-c", "tty; test -t 0 && echo isatty"],
                                     mutate=_set("process.terminal", True))
        r = runtime("run", "-d", "--console-socket", str(sock.path), "--bundle", str(bundle), cid)
        assert r.code == 0, r.err
        out = sock.read_all(timeout=5)
        assert "/dev/pts/0" in out and "isatty" in out
    finally:
        sock.close()


def test_invalid_config_is_rejected_before_anything(runtime: Runner) -> None:
    bundle, cid = runtime.bundle(["true"], mutate=lambda c: c["linux"]["namespaces"].append({"type": "foo"}))
    r = runtime("create", "--bundle", str(bundle), cid)
    assert r.code == 1
    assert runtime("state", cid).code == 1
    assert not (runtime.root / cid).exists()


@pytest.mark.parametrize("missing", ["rootfs", "config"])
def test_missing_bundle_parts(runtime: Runner, missing: str) -> None:
    bundle, cid = runtime.bundle(["true"])
    if missing == "config":
        (bundle / "config.json").unlink()
    else:
        config = json.loads((bundle / "config.json").read_text())
        config["root"]["path"] = str(bundle / "nope")
        (bundle / "config.json").write_text(json.dumps(config))
    r = runtime("create", "--bundle", str(bundle), cid)
    assert r.code == 1 and r.err.strip()
