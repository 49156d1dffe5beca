"""The container lifecycle through the real CLI: real namespaces, cgroups, overlay roots and monitor processes.

Each test uses its own storage root; the ``sampan`` fixture removes its containers afterwards and fails the test
if any mount, cgroup, runtime state or run-time directory of them is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import SAMPAN, Result, Sampan


def _error_line(result: Result, code: int) -> str:
    assert result.returncode == code, result
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("Error: "), result
    return result.stderr


def _inspect(sampan: Sampan, name: str) -> dict:
    return json.loads(sampan("inspect", name).stdout)[0]


def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] not in "ZX"
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------- run


def test_run_rm_prints_output_and_leaves_nothing(sampan: Sampan, busybox: str) -> None:
    result = sampan("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2")
    assert (result.stdout, result.stderr) == ("out\n", "err\n")
    assert sampan("ps", "-aq").stdout == ""
    assert not any((sampan.root / "containers").iterdir())
    assert sampan("system", "check").returncode == 0


def _root_mount_options(sampan: Sampan, *args: str) -> list[str]:
    """The super options of the container's / as the container sees them."""
    line = next(line for line in sampan("run", *args, "--network", "none", "busybox", "cat",
                                        "/proc/self/mountinfo").stdout.splitlines() if line.split()[4] == "/")
    return line.split(" - ")[1].split()[2].split(",")


def test_only_an_rm_containers_root_is_volatile(sampan: Sampan, busybox: str) -> None:
    """--rm: overlayfs skips the syncs of the upper filesystem, at unmount too (its writes are thrown away); a
    leftover of an earlier volatile mount (a crash) does not stop its start."""
    volatile = {"volatile", "fsync=volatile"}  # kernels from 6.12 show the option as the latter
    assert volatile & set(_root_mount_options(sampan, "--rm"))
    kept = _root_mount_options(sampan, "--name", "kept")
    assert not volatile & set(kept) and any(option.startswith("upperdir=") for option in kept)
    sampan("rm", "kept")
    cid = sampan("create", "--rm", "--network", "none", "busybox", "true").stdout.strip()
    incompat = sampan.root / "containers" / cid / "work" / "work" / "incompat" / "volatile"
    incompat.mkdir(parents=True)  # as a volatile mount leaves it: overlayfs refuses to mount while it is there
    assert sampan("start", "-a", cid).returncode == 0
    assert sampan("ps", "-aq").stdout == ""


@pytest.mark.parametrize(("command", "code"), [
    (["sh", "-c", "exit 3"], 3), (["nosuchprogram"], 127), (["/etc/passwd"], 126), (["/"], 126),
    (["sh", "-c", "sh -c 'kill -9 $$'; exit $?"], 137),
])
def test_run_exit_codes_are_dockers(sampan: Sampan, busybox: str, command: list[str], code: int) -> None:
    result = sampan("run", "--rm", "busybox", *command, check=False)
    assert result.returncode == code, result
    if code in (126, 127):
        assert "Error: " in result.stderr
    assert sampan("ps", "-aq").stdout == ""


def test_run_honours_image_and_flags(sampan: Sampan, busybox: str) -> None:
    out = sampan("run", "--rm", "-e", "A=1", "-w", "/tmp", "-u", "1000:1000", "-h", "myhost", "busybox", "sh", "-c",
                 'echo "$A $(pwd) $(id -u):$(id -g) $(hostname) $HOSTNAME"').stdout
    assert out == "1 /tmp 1000:1000 myhost myhost\n"
    out = sampan("run", "--rm", "--entrypoint", "echo", "busybox", "a", "b").stdout
    assert out == "a b\n"
    assert sampan("run", "--rm", "--init", "busybox", "ps", "-o", "pid,args").stdout.splitlines()[1].split() == \
        ["1", "/sbin/docker-init", "--", "ps", "-o", "pid,args"]
    result = sampan("run", "--rm", "--read-only", "busybox", "touch", "/x", check=False)
    assert result.returncode == 1 and "Read-only file system" in result.stderr
    assert sampan("run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net").stdout.split() == ["lo"]
    assert sampan("run", "--rm", "-i", "busybox", "cat", input="piped\n").stdout == "piped\n"


def test_run_with_a_terminal(sampan: Sampan, busybox: str) -> None:
    command = f"stty cols 100 rows 40; SAMPAN_ROOT={sampan.root} SAMPAN_RUNROOT={sampan.runroot} {SAMPAN} run " \
              "--rm -it busybox sh -c 'tty; stty size; exit 5'"
    proc = subprocess.run(["script", "-eqc", command, "/dev/null"], capture_output=True, timeout=30,
                          stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 5, proc
    assert proc.stdout.replace(b"\r", b"").split(b"\n")[:2] == [b"/dev/pts/0", b"40 100"]


def test_memory_limit_is_enforced_by_the_oom_killer(sampan: Sampan, busybox: str) -> None:
    result = sampan("run", "--name", "hog", "-m", "32m", "busybox", "sh", "-c",
                    "x=a; while true; do x=$x$x; done", check=False)
    assert result.returncode == 137
    state = _inspect(sampan, "hog")["State"]
    assert (state["Status"], state["ExitCode"], state["OOMKilled"]) == ("exited", 137, True)


# ---------------------------------------------------------------------------------------------- detached life


def test_detached_container_logs_exec_stop_rm(sampan: Sampan, busybox: str) -> None:
    cid = sampan("run", "-d", "--name", "web", "-l", "tier=front", "busybox", "sh", "-c",
                 "trap 'echo bye; exit 0' TERM; echo started; while true; do sleep 0.1; done").stdout.strip()
    assert len(cid) == 64
    _wait_for(lambda: "started" in sampan("logs", "web").stdout)
    info = _inspect(sampan, "web")
    assert info["Id"] == cid and info["Name"] == "/web" and info["State"]["Running"] is True
    assert info["State"]["Pid"] > 0 and _alive(info["State"]["Pid"])
    assert info["Config"]["Labels"] == {"tier": "front"} and info["Config"]["Image"] == "busybox"
    assert set(info) >= {"State", "Config", "HostConfig", "Mounts", "NetworkSettings", "LogPath", "RestartCount"}
    log_record = json.loads(Path(info["LogPath"]).read_text().splitlines()[0])
    assert log_record["log"] == "started\n" and log_record["stream"] == "stdout"

    assert sampan("exec", "web", "sh", "-c", "echo $((6*7))").stdout == "42\n"
    assert sampan("exec", "web", "false", check=False).returncode == 1
    assert sampan("exec", "-e", "X=y", "-w", "/etc", "web", "sh", "-c", "echo $X $(pwd)").stdout == "y /etc\n"
    assert _error_line(sampan("exec", "web", "nosuch", check=False), 126)

    ps = sampan("ps").stdout.splitlines()
    assert ps[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert ps[1].startswith(cid[:12]) and "Up " in ps[1] and ps[1].endswith("web")
    assert sampan("ps", "-q", "--filter", "label=tier=front").stdout == cid[:12] + "\n"
    assert sampan("ps", "-q", "--filter", "name=nomatch").stdout == ""
    assert sampan("ps", "--format", "{{.Names}} {{.State}}").stdout == "web running\n"

    rm = sampan("rm", "web", check=False)
    assert rm.returncode == 1 and "cannot remove a running container" in rm.stderr.replace("You cannot", "cannot")
    started = time.monotonic()
    assert sampan("stop", "web").stdout == "web\n"
    assert time.monotonic() - started < 5  # the trap ended it: no 10 s wait for SIGKILL
    state = _inspect(sampan, "web")["State"]
    assert (state["Status"], state["ExitCode"], state["Running"]) == ("exited", 0, False)
    assert sampan("logs", "--tail", "1", "web").stdout == "bye\n"
    assert "Exited (0)" in sampan("ps", "-a").stdout
    assert sampan("ps", "-aq", "--filter", "exited=0").stdout == cid[:12] + "\n"
    assert sampan("wait", "web").stdout == "0\n"
    assert sampan("rm", "web").stdout == "web\n"
    assert sampan("ps", "-aq").stdout == ""


def test_stop_kills_after_the_timeout_and_restart_and_start(sampan: Sampan, busybox: str) -> None:
    sampan("run", "-d", "--name", "sleeper", "busybox", "sleep", "1000")
    started = time.monotonic()
    sampan("stop", "-t", "1", "sleeper")  # sleep as PID 1 ignores SIGTERM
    assert 0.9 < time.monotonic() - started < 6
    assert _inspect(sampan, "sleeper")["State"]["ExitCode"] == 137
    sampan("start", "sleeper")
    first = _inspect(sampan, "sleeper")["State"]
    assert first["Running"]
    sampan("restart", "-t", "0", "sleeper")
    second = _inspect(sampan, "sleeper")["State"]
    assert second["Running"] and second["Pid"] != first["Pid"]
    sampan("pause", "sleeper")
    assert _inspect(sampan, "sleeper")["State"]["Status"] == "paused"
    assert "(Paused)" in sampan("ps").stdout
    sampan("unpause", "sleeper")
    sampan("run", "-d", "--init", "--name", "inited", "busybox", "sleep", "1000")
    sampan("kill", "-s", "USR1", "inited")  # tini passes it on to sleep, which dies of it
    _wait_for(lambda: _inspect(sampan, "inited")["State"]["Status"] == "exited")
    assert _inspect(sampan, "inited")["State"]["ExitCode"] == 138
    sampan("rm", "inited")
    sampan("rename", "sleeper", "renamed")
    assert sampan("ps", "-a", "--format", "{{.Names}}").stdout == "renamed\n"


def test_attach_to_a_running_container(sampan: Sampan, busybox: str) -> None:
    sampan("run", "-d", "-i", "--name", "reader", "busybox", "sh", "-c", "read x; echo got $x; exit 4")
    result = sampan("attach", "reader", input="hello\n", check=False)
    assert (result.returncode, result.stdout) == (4, "got hello\n")


def test_restart_policies(sampan: Sampan, busybox: str) -> None:
    sampan("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "echo run; exit 1")
    _wait_for(lambda: _inspect(sampan, "flaky")["State"]["Status"] == "exited")
    info = _inspect(sampan, "flaky")
    assert (info["RestartCount"], info["State"]["ExitCode"]) == (2, 1)
    assert sampan("logs", "flaky").stdout == "run\n" * 3

    sampan("run", "-d", "--name", "always", "--restart", "always", "busybox", "sh", "-c", "sleep 0.2")
    _wait_for(lambda: _inspect(sampan, "always")["RestartCount"] >= 2)
    sampan("stop", "always")
    time.sleep(0.5)
    assert _inspect(sampan, "always")["State"]["Status"] == "exited"  # a stop is never undone by the policy


def test_health_check(sampan: Sampan, busybox: str) -> None:
    sampan("run", "-d", "--name", "hc", "--health-cmd", "test -f /tmp/ok", "--health-interval", "100ms",
           "--health-retries", "2", "busybox", "sleep", "100")
    _wait_for(lambda: (_inspect(sampan, "hc")["State"]["Health"]["Status"]) == "unhealthy")
    assert "(unhealthy)" in sampan("ps").stdout
    sampan("exec", "hc", "touch", "/tmp/ok")
    _wait_for(lambda: (_inspect(sampan, "hc")["State"]["Health"]["Status"]) == "healthy")
    assert sampan("ps", "-q", "--filter", "health=healthy").stdout.strip()


# ---------------------------------------------------------------------------------------------- volumes


def test_volumes_binds_and_tmpfs(sampan: Sampan, busybox: str, tmp_path: Path) -> None:
    sampan("run", "--rm", "-v", "data:/data", "busybox", "sh", "-c", "echo kept > /data/f")
    assert sampan("run", "--rm", "-v", "data:/data:ro", "busybox", "cat", "/data/f").stdout == "kept\n"
    bind = tmp_path / "bind"
    bind.mkdir()
    (bind / "host").write_text("from host")
    out = sampan("run", "--rm", "--mount", f"type=bind,source={bind},target=/b", "--tmpfs", "/scratch",
                 "busybox", "sh", "-c", "cat /b/host; echo x > /b/back; mount | grep -c ' /scratch '").stdout
    assert out == "from host1\n"
    assert (bind / "back").read_text() == "x\n"
    sampan("run", "-d", "--name", "user", "-v", "data:/data", "busybox", "sleep", "100")
    result = sampan("volume", "rm", "data", check=False)
    assert result.returncode == 1 and "in use" in result.stderr
    assert sampan("volume", "ls", "-q", "--filter", "dangling=true").stdout == ""


def test_image_volumes_are_populated_and_anonymous_volumes_go_with_rm_v(sampan: Sampan, busybox: str,
                                                                         tmp_path: Path) -> None:
    sampan("run", "--name", "maker", "busybox", "sh", "-c", "mkdir -p /seed && echo seeded > /seed/file")
    sampan("commit", "-c", "VOLUME /seed", "maker", "seeded:1")
    sampan("run", "--name", "vol", "seeded:1", "cat", "/seed/file")
    assert sampan("logs", "vol").stdout == "seeded\n"
    mount = _inspect(sampan, "vol")["Mounts"][0]
    assert mount["Type"] == "volume" and mount["Destination"] == "/seed" and len(mount["Name"]) == 64
    assert Path(mount["Source"], "file").read_text() == "seeded\n"
    sampan("rm", "-v", "vol")
    assert mount["Name"] not in sampan("volume", "ls", "-q").stdout


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("args", [
    ["-m", "12q"], ["--cpus", "-1"], ["-p", "garbage"], ["--rm", "--restart", "always"],
    ["--mount", "type=bind,source=/nonexistent/path,target=/x"], ["--restart", "sometimes"],
    ["--log-driver", "syslog"], ["--log-opt", "max-file=x"], ["--name", "bad name"], ["-v", "rel:/x:zz"],
    ["--health-interval", "soon"], ["--ulimit", "nofile=bad"], ["--cgroupns", "shared"],
])
def test_bad_run_options_are_refused_and_leave_nothing(sampan: Sampan, busybox: str, args: list[str]) -> None:
    before = sorted(p.name for p in (sampan.root / "volumes").iterdir())
    _error_line(sampan("run", "--rm", *args, "busybox", "true", check=False), 125)
    assert sampan("ps", "-aq").stdout == ""
    assert not any((sampan.root / "containers").iterdir())
    assert sorted(p.name for p in (sampan.root / "volumes").iterdir()) == before


def test_unknown_image_and_taken_names(sampan: Sampan, busybox: str) -> None:
    missing = sampan("run", "127.0.0.1:1/nosuchimage", check=False)  # pulled first: nothing listens there
    assert missing.returncode == 125 and missing.stderr.splitlines()[0] == \
        "Unable to find image '127.0.0.1:1/nosuchimage:latest' locally"
    assert missing.stderr.splitlines()[1].startswith("Error: ") and len(missing.stderr.splitlines()) == 2
    assert "No such image" in _error_line(sampan("run", "--pull", "never", "nosuchimage", check=False), 125)
    sampan("create", "--name", "taken", "busybox")
    assert "already in use" in _error_line(sampan("run", "--name", "taken", "busybox", check=False), 125)
    assert "No such container" in _error_line(sampan("start", "nosuch", check=False), 1)
    assert _inspect(sampan, "taken")["State"]["Status"] == "created"


def test_image_in_use_cannot_be_removed(sampan: Sampan, busybox: str) -> None:
    sampan("create", "--name", "user", "busybox")
    assert "must force" in _error_line(sampan("rmi", "busybox", check=False), 1)
    assert "must be forced" in _error_line(sampan("rmi", busybox, check=False), 1)
    sampan("rmi", "-f", busybox)
    assert _inspect(sampan, "user")["Image"] == busybox
    assert sampan("images", "-q").stdout.strip() == busybox.split(":")[1][:12]  # kept, dangling
    sampan("rm", "user")
    sampan("image", "prune", "-f")
    assert sampan("images", "-qa").stdout == ""


def test_exec_into_a_stopped_container_leaves_no_process(sampan: Sampan, busybox: str) -> None:
    """exec forks the runtime's first process before it looks the container up (its start overlaps that work):
    when the exec fails, that process is gone too."""
    sampan("create", "--name", "idle", "busybox", "true")
    _error_line(sampan("exec", "idle", "true", check=False), 1)
    boot = b"from sampan.runtime.init import boot"
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if boot in Path(f"/proc/{pid}/cmdline").read_bytes():
                left.append(pid)
        except OSError:
            continue
    assert left == []


def test_closed_standard_fds(sampan: Sampan, busybox: str) -> None:
    """A caller that closed stdin (``<&-``) or stdout: the container's process reads /dev/null, nothing hangs."""
    sampan("run", "-d", "--name", "fds", "busybox", "sleep", "1000")
    for closed, command in ((0, ["exec", "fds", "sh", "-c", "readlink /proc/self/fd/0 >&2"]),
                            (0, ["run", "--rm", "busybox", "sh", "-c", "readlink /proc/self/fd/0 >&2"]),
                            (1, ["exec", "fds", "true"])):
        proc = subprocess.run([SAMPAN, *command], env=sampan.env, stderr=subprocess.PIPE, timeout=60, check=False,
                              preexec_fn=lambda fd=closed: os.close(fd))
        assert proc.returncode == 0, (command, proc.stderr)
        if closed == 0:
            assert proc.stderr == b"/dev/null\n", (command, proc.stderr)


def test_other_runtimes(sampan: Sampan, busybox: str) -> None:
    assert sampan("run", "--rm", "--runtime", "runc", "busybox", "echo", "via runc").stdout == "via runc\n"
    cid = sampan("run", "-d", "--runtime", "runc", "busybox", "sleep", "100").stdout.strip()
    assert sampan("exec", cid, "echo", "hi").stdout == "hi\n"
    sampan("stop", "-t", "0", cid)
    assert _inspect(sampan, cid)["State"]["ExitCode"] == 137
    _error_line(sampan("run", "--runtime", "nosuchruntime", "busybox", check=False), 125)


# ---------------------------------------------------------------------------------------------- concurrency, recovery


def test_fifty_parallel_runs(sampan: Sampan, busybox: str) -> None:
    def run(i: int) -> Result:
        return sampan("run", "-d", "--name", f"c{i}", "busybox", "sleep", "100", check=False)

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(run, range(50)))
    assert all(r.returncode == 0 for r in results), [r for r in results if r.returncode]
    ids = {r.stdout.strip() for r in results}
    assert len(ids) == 50
    listed = sampan("ps", "-q", "--no-trunc").stdout.split()
    assert sorted(listed) == sorted(ids)
    assert sorted(sampan("ps", "--format", "{{.Names}}").stdout.split()) == sorted(f"c{i}" for i in range(50))
    assert sampan("rm", "-f", *ids).returncode == 0
    assert sampan("ps", "-aq").stdout == ""


def test_a_killed_monitor_is_reported_truthfully(sampan: Sampan, busybox: str) -> None:
    cid = sampan("run", "-d", "busybox", "sleep", "100").stdout.strip()
    from sampan.store import containers as records

    with sampan.engine() as engine:
        record = records.get(engine.db.conn, cid)
    os.kill(record.monitor_pid, signal.SIGKILL)
    _wait_for(lambda: not _alive(record.monitor_pid))
    assert _inspect(sampan, cid)["State"]["Running"]  # the container itself still runs
    os.kill(record.pid, signal.SIGKILL)
    _wait_for(lambda: _inspect(sampan, cid)["State"]["Status"] == "exited")
    state = _inspect(sampan, cid)["State"]
    assert state["ExitCode"] == 255 and "monitor" in state["Error"]
    assert sampan("system", "check", check=False).returncode == 1  # its cgroup and mount are left
    assert sampan("system", "check", "--repair").returncode == 0
    assert sampan("system", "check").stdout == "store is consistent\n"


def test_after_a_reboot_nothing_claims_to_run(sampan: Sampan, busybox: str) -> None:
    cid = sampan("run", "-d", "busybox", "sleep", "100").stdout.strip()
    pid = _inspect(sampan, cid)["State"]["Pid"]
    from sampan.store import containers as records

    with sampan.engine() as engine:
        monitor = records.get(engine.db.conn, cid).monitor_pid
    os.kill(monitor, signal.SIGKILL)
    subprocess.run(["rm", "-rf", str(sampan.runroot / "containers"), str(sampan.runroot / "runtime")], check=True)
    assert sampan("ps", "-q").stdout == ""
    assert _inspect(sampan, cid)["State"]["Status"] == "exited"
    repaired = sampan("system", "check", "--repair").stdout
    assert cid[:12] in repaired
    _wait_for(lambda: not _alive(pid))
    assert sampan("system", "check").returncode == 0
    sampan("start", cid)
    assert _inspect(sampan, cid)["State"]["Running"]


def test_system_check_finds_leftovers_of_killed_commands(sampan: Sampan, busybox: str) -> None:
    """Kill `run`, `rm` and `commit` at random points; afterwards system check --repair leaves a consistent
    store, and every container left can be removed."""
    import random

    rng = random.Random(7)
    for i in range(6):
        proc = subprocess.Popen([SAMPAN, "run", "-d", "--name", f"k{i}", "busybox", "sleep", "100"],
                                env=sampan.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, 0.25))
        proc.kill()
        proc.wait()
    for name in sampan("ps", "-aq").stdout.split()[:3]:
        proc = subprocess.Popen([SAMPAN, "rm", "-f", name], env=sampan.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, 0.1))
        proc.kill()
        proc.wait()
    for i, name in enumerate(sampan("ps", "-aq").stdout.split()[:3]):
        sampan("exec", name, "sh", "-c", "dd if=/dev/zero of=/big bs=1M count=8 2>/dev/null", check=False)
        proc = subprocess.Popen([SAMPAN, "commit", name, f"committed:{i}"], env=sampan.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, 0.3))
        proc.kill()
        proc.wait()
    sampan("system", "check", "--repair", check=False)
    assert sampan("system", "check").stdout == "store is consistent\n"
    ids = sampan("ps", "-aq").stdout.split()
    if ids:
        sampan("rm", "-f", *ids)
    assert sampan("system", "check").stdout == "store is consistent\n"
    assert not any((sampan.root / "containers").iterdir())


def test_system_prune_df_and_info(sampan: Sampan, busybox: str) -> None:
    sampan("run", "--name", "done", "-v", "/anon", "busybox", "sh", "-c", "echo x > /file")
    sampan("run", "-d", "--name", "live", "busybox", "sleep", "100")
    df = {line.split()[0]: line.split()[1:] for line in sampan("system", "df").stdout.splitlines()[1:]}
    assert df["Containers"][:2] == ["2", "1"] and df["Images"][:2] == ["1", "1"]
    info = json.loads(sampan("info", "--format", "{{json .}}").stdout)
    assert (info["Containers"], info["ContainersRunning"], info["ContainersStopped"]) == (2, 1, 1)
    out = sampan("system", "prune", "-f", "--volumes").stdout
    done_id = out.split("Deleted Containers:\n")[1].split()[0]
    assert len(done_id) == 64 and "Deleted Volumes:" in out and out.endswith("\n") and "Total reclaimed space" in out
    assert sampan("ps", "-a", "--format", "{{.Names}}").stdout == "live\n"
    assert sampan("volume", "ls", "-q").stdout == ""
    assert sampan("images", "-q").stdout.strip()  # used by "live": kept even with -a
    sampan("system", "prune", "-a", "-f")
    assert sampan("images", "-q").stdout.strip()


def test_signals_are_proxied_to_an_attached_container(sampan: Sampan, busybox: str) -> None:
    proc = subprocess.Popen([SAMPAN, "run", "--rm", "busybox", "sh", "-c",
                             "trap 'echo got TERM; exit 7' TERM; echo ready; while true; do sleep 0.1; done"],
                            env=sampan.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert (proc.returncode, out) == (7, b"got TERM\n")


def test_detach_keys_leave_the_container_running(sampan: Sampan, busybox: str) -> None:
    env = f"SAMPAN_ROOT={sampan.root} SAMPAN_RUNROOT={sampan.runroot}"
    command = f"{env} {SAMPAN} run -it --name detached busybox sh"
    proc = subprocess.Popen(["script", "-eqc", command, "/dev/null"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdin is not None
    _wait_for(lambda: sampan("ps", "-q", "--filter", "name=detached").stdout != "", timeout=30)
    time.sleep(1.0)  # the CLI's terminal must be raw before ctrl-q arrives, or the tty eats it as XON
    proc.stdin.write(b"\x10\x11")
    proc.stdin.flush()
    proc.wait(timeout=20)
    assert proc.returncode == 0
    assert _inspect(sampan, "detached")["State"]["Running"]


def test_logs_follow_timestamps_and_bounds(sampan: Sampan, busybox: str) -> None:
    sampan("run", "-d", "--name", "talker", "busybox", "sh", "-c",
           "for i in 1 2 3; do echo line $i; sleep 0.3; done; echo err >&2")
    followed = sampan("logs", "-f", "talker", timeout=30)  # returns when the container ends
    assert (followed.stdout, followed.stderr) == ("line 1\nline 2\nline 3\n", "err\n")
    stamped = sampan("logs", "-t", "--tail", "1", "talker").stderr
    assert stamped.endswith("Z err\n") and stamped[:4].isdigit()
    assert sampan("logs", "--since", "1h", "--until", "1h", "talker").stdout == ""
    assert _error_line(sampan("logs", "--tail", "x", "talker", check=False), 1)
    sampan("run", "--name", "quiet", "--log-driver", "none", "busybox", "echo", "x")
    assert "does not support reading" in _error_line(sampan("logs", "quiet", check=False), 1)


def test_exec_options_update_and_top(sampan: Sampan, busybox: str) -> None:
    sampan("run", "-d", "--name", "box", "--cap-drop", "ALL", "-m", "64m", "busybox", "sleep", "1000")
    assert sampan("exec", "-u", "1234", "box", "id", "-u").stdout == "1234\n"
    caps = sampan("exec", "box", "grep", "CapEff", "/proc/self/status").stdout.split()[1]
    privileged = sampan("exec", "--privileged", "box", "grep", "CapEff", "/proc/self/status").stdout.split()[1]
    assert int(caps, 16) == 0 and int(privileged, 16) != 0
    assert sampan("exec", "-i", "box", "cat", input="to stdin").stdout == "to stdin"
    sampan("exec", "-d", "box", "sh", "-c", "echo detached > /tmp/d")
    _wait_for(lambda: sampan("exec", "box", "cat", "/tmp/d", check=False).stdout == "detached\n")
    titles = sampan("top", "box").stdout.splitlines()
    assert "PID" in titles[0] and any("sleep 1000" in line for line in titles[1:])
    sampan("update", "-m", "96m", "--memory-swap", "-1", "box")
    assert _inspect(sampan, "box")["HostConfig"]["Memory"] == 96 * 1024 * 1024
    limit = sampan("exec", "box", "sh", "-c", "cat /sys/fs/cgroup/memory.max 2>/dev/null || "
                   "cat /sys/fs/cgroup/memory/memory.limit_in_bytes").stdout.strip()
    assert int(limit) == 96 * 1024 * 1024


def test_shared_namespaces_and_volumes_from(sampan: Sampan, busybox: str) -> None:
    sampan("run", "-d", "--name", "first", "-v", "shared:/shared", "busybox", "sh", "-c",
           "echo from-first > /shared/f; sleep 1000")
    _wait_for(lambda: sampan("exec", "first", "cat", "/shared/f", check=False).stdout == "from-first\n")
    out = sampan("run", "--rm", "--pid", "container:first", "--volumes-from", "first", "busybox", "sh", "-c",
                 "cat /shared/f; ps -o args | grep -cx 'sleep 1000'").stdout
    assert out == "from-first\n1\n"
    assert sampan("run", "--rm", "--uts", "host", "--network", "host", "busybox", "hostname").stdout.strip() == \
        os.uname().nodename


def test_cgroup_namespace_modes(sampan: Sampan, busybox: str) -> None:
    """Docker's --cgroupns: private shows the container's cgroup as "/", host its real path; the default is
    private on a cgroup v2 host (so /sys/fs/cgroup is the container's own) and host on v1."""
    v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    shown = {}
    for mode in ("private", "host", ""):
        name = f"ns-{mode or 'default'}"
        flags = ["--cgroupns", mode] if mode else []
        out = sampan("run", "--name", name, *flags, "busybox", "cat", "/proc/self/cgroup").stdout
        paths = {line.split(":", 2)[2] for line in out.splitlines()}
        shown[mode] = "private" if paths == {"/"} else "host"
        assert _inspect(sampan, name)["HostConfig"]["CgroupnsMode"] == (mode or ("private" if v2 else "host"))
    assert shown == {"private": "private", "host": "host", "": "private" if v2 else "host"}
    if v2:
        limit = sampan("run", "--rm", "-m", "48m", "busybox", "cat", "/sys/fs/cgroup/memory.max").stdout
        assert limit == f"{48 << 20}\n"


def test_system_reset_leaves_no_kernel_state(sampan: Sampan, busybox: str) -> None:
    cid = sampan("run", "-d", "-p", "127.0.0.1::80", "busybox", "sleep", "100").stdout.strip()
    engine = sampan.engine()
    from sampan.engine import networks

    bridge, table = networks.default_bridge(engine), networks.table_name(engine)
    engine.close()
    assert Path(f"/sys/class/net/{bridge}").exists()
    sampan("system", "reset", "-f")
    assert not Path(f"/sys/class/net/{bridge}").exists()
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
    assert f"table ip {table}\n" not in tables
    assert not sampan.root.exists() and not any(cid in line for line in Path("/proc/self/mountinfo").read_text()
                                                   .splitlines())
