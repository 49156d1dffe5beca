"""stats, events and system metrics, on real containers under real cgroups."""

from __future__ import annotations

import json
import time
from pathlib import Path

from conftest import Sampan


def _events(sampan: Sampan, since: float, *filters: str) -> list[dict]:
    out = sampan("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}", "--format", "json",
                 *[f"--filter={f}" for f in filters]).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_stats_agree_with_the_cgroup(sampan: Sampan, busybox: str) -> None:
    cid = sampan("run", "-d", "--name", "busy", "-m", "64m", "busybox", "sh", "-c",
                 "while true; do :; done").stdout.strip()
    sampan("run", "-d", "--name", "idle", "busybox", "sleep", "100")
    out = sampan("stats", "--no-stream", "--format", "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.PIDs}}").stdout
    rows = {line.split("|")[0]: line.split("|")[1:] for line in out.splitlines()}
    assert set(rows) == {"busy", "idle"}
    assert float(rows["busy"][0].rstrip("%")) > 30 and float(rows["idle"][0].rstrip("%")) < 30
    assert rows["busy"][1].endswith(" / 64MiB") and rows["busy"][2] == "1"
    table = sampan("stats", "--no-stream", cid[:12]).stdout.splitlines()
    assert table[0].split() == ["CONTAINER", "ID", "NAME", "CPU", "%", "MEM", "USAGE", "/", "LIMIT", "MEM", "%",
                                "NET", "I/O", "BLOCK", "I/O", "PIDS"]
    assert table[1].startswith(cid[:12]) and len(table) == 2
    sampan("stop", "-t", "0", "idle")
    assert "idle" not in sampan("stats", "--no-stream", "--format", "{{.Name}}").stdout
    assert "--" in sampan("stats", "--no-stream", "-a", "--format", "{{.Name}} {{.CPUPerc}}").stdout

    metrics = sampan("system", "metrics").stdout.splitlines()
    assert 'sampan_containers{state="running"} 1' in metrics and 'sampan_containers{state="exited"} 1' in metrics
    limit = [line for line in metrics if line.startswith("sampan_container_memory_limit_bytes{") and cid in line]
    assert limit and limit[0].endswith(f" {64 * 1024 * 1024}")


def test_events_are_recorded_in_order_with_attributes(sampan: Sampan, busybox: str) -> None:
    since = time.time()
    sampan("tag", "busybox", "mine:1")
    sampan("volume", "create", "vol1")
    sampan("run", "--name", "ev", "-l", "team=a", "busybox", "sh", "-c", "exit 3", check=False)
    sampan("rm", "ev")
    sampan("rmi", "mine:1")
    sampan("volume", "rm", "vol1")
    events = _events(sampan, since)
    actions = [(e["Type"], e["Action"]) for e in events]
    assert actions == [("image", "tag"), ("volume", "create"), ("container", "create"), ("container", "start"),
                       ("container", "die"), ("container", "destroy"), ("image", "untag"), ("volume", "destroy")]
    die = events[4]
    assert die["Actor"]["Attributes"] == {"exitCode": "3", "image": "busybox", "name": "ev", "team": "a"}
    assert die["status"] == "die" and die["from"] == "busybox" and die["timeNano"] >= events[3]["timeNano"]
    assert [e["Action"] for e in _events(sampan, since, "type=container", "event=die")] == ["die"]
    assert [e["Action"] for e in _events(sampan, since, "container=ev")] == ["create", "start", "die", "destroy"]
    assert [e["Action"] for e in _events(sampan, since, "label=team=a", "event=start")] == ["start"]
    plain = sampan("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
                   "--filter", "event=die").stdout
    assert plain.strip().endswith(f"container die {die['id']} (exitCode=3, image=busybox, name=ev, team=a)")


def test_stop_kill_oom_pause_events(sampan: Sampan, busybox: str) -> None:
    since = time.time()
    sampan("run", "-d", "--name", "s1", "busybox", "sleep", "100")
    sampan("pause", "s1")
    sampan("unpause", "s1")
    sampan("update", "--pids-limit", "64", "s1")
    sampan("stop", "-t", "0", "s1")
    sampan("run", "--name", "hog", "-m", "32m", "busybox", "sh", "-c", "x=a; while true; do x=$x$x; done",
           check=False)
    actions = [e["Action"] for e in _events(sampan, since, "container=s1")]
    assert actions[:5] == ["create", "start", "pause", "unpause", "update"]
    assert "kill" in actions and actions[-1] == "stop" and "die" in actions
    kills = [e for e in _events(sampan, since, "container=s1", "event=kill")]
    assert kills[0]["Actor"]["Attributes"]["signal"] in ("15", "9")
    assert [e["Action"] for e in _events(sampan, since, "container=hog")][-2:] == ["oom", "die"]


def _meminfo_total(text: str) -> int:
    return int(next(line for line in text.splitlines() if line.startswith("MemTotal:")).split()[1])


def test_proc_view_shows_the_container_limits(sampan: Sampan, busybox: str) -> None:
    script = "cat /proc/meminfo; echo ===; grep -c ^processor /proc/cpuinfo; echo ===; cat /proc/uptime; " \
             "echo ===; cat /proc/loadavg; echo ===; head -3 /proc/stat; echo ===; cat /proc/swaps"
    out = sampan("run", "--rm", "--network", "none", "-m", "64m", "--memory-swap", "96m", "--cpus", "1", "busybox",
                 "sh", "-c",
                 script).stdout.split("===\n")
    meminfo, cpus, uptime, loadavg, stat, swaps = out
    assert _meminfo_total(meminfo) == 64 * 1024
    free = int(next(line for line in meminfo.splitlines() if line.startswith("MemFree:")).split()[1])
    assert 0 < free <= 64 * 1024
    assert cpus.strip() == "1"
    assert 0 <= float(uptime.split()[0]) < 30
    assert len(loadavg.split()) == 5 and "/" in loadavg.split()[3]
    assert [line.split()[0] for line in stat.splitlines()] == ["cpu", "cpu0", stat.splitlines()[2].split()[0]]
    assert stat.splitlines()[2].split()[0] != "cpu1"
    assert "32768" in swaps  # --memory-swap less --memory
    top = sampan("run", "--rm", "--network", "none", "-m", "64m", "busybox", "top", "-bn1").stdout.splitlines()[0]
    used, free_k = (int(word.rstrip("K")) for word in (top.split()[1], top.split()[3]))
    assert top.startswith("Mem:") and used + free_k == 64 * 1024, top
    host_total = _meminfo_total(Path("/proc/meminfo").read_text())
    off = sampan("run", "--rm", "--network", "none", "-m", "64m", "--proc-view", "false", "busybox", "cat",
                 "/proc/meminfo").stdout
    assert _meminfo_total(off) == host_total
    assert _meminfo_total(sampan("run", "--rm", "--network", "none", "busybox", "cat", "/proc/meminfo").stdout) \
        <= host_total


def test_proc_view_survives_its_server(sampan: Sampan, busybox: str) -> None:
    """Killing the view's server: the container keeps running, its monitor unmounts the dead files (the real
    ones show) and lets the kernel answer its syscalls (no ENOSYS), and the next container gets a new view."""
    import os
    import signal

    from sampan.procview.server import server_pid

    sampan("run", "-d", "--network", "none", "--name", "long", "-m", "64m", "busybox", "sleep", "1000")
    before = sampan("exec", "long", "cat", "/proc/meminfo").stdout
    assert _meminfo_total(before) == 64 * 1024
    mountpoint = str(sampan.runroot / "procview")
    server = server_pid(mountpoint)
    assert server is not None
    os.kill(server, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while True:
        result = sampan("exec", "long", "cat", "/proc/meminfo", check=False)
        if result.returncode == 0 and result.stdout:
            break
        assert time.monotonic() < deadline, result
        time.sleep(0.1)
    assert _meminfo_total(result.stdout) == _meminfo_total(Path("/proc/meminfo").read_text())  # the real file
    assert _inspect_running(sampan, "long")
    host_mb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20
    assert abs(_mem_total_mb(sampan("exec", "long", "free", "-m").stdout) - host_mb) <= 1  # real, as the files
    again = sampan("run", "--rm", "--network", "none", "-m", "32m", "busybox", "cat", "/proc/meminfo").stdout
    assert _meminfo_total(again) == 32 * 1024
    assert server_pid(mountpoint) not in (None, server)


def _mem_total_mb(free_output: str) -> int:
    return int(next(line for line in free_output.splitlines() if line.startswith("Mem:")).split()[1])


def _inspect_running(sampan: Sampan, name: str) -> bool:
    return json.loads(sampan("inspect", name).stdout)[0]["State"]["Running"]


def test_image_events_of_import_load_commit_and_build(sampan: Sampan, busybox: str, tmp_path: Path) -> None:
    import io
    import tarfile

    since = time.time()
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    sampan("import", "-", "imported:1", input=layer.getvalue())
    archive = tmp_path / "bb.tar"
    sampan("save", "-o", str(archive), "busybox")
    sampan("load", "-i", str(archive))
    sampan("run", "--network", "none", "--name", "c1", "busybox", "true")
    sampan("commit", "c1", "committed:1")
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM busybox\nLABEL a=b\n")
    sampan("build", "-q", "-t", "built:1", str(tmp_path / "ctx"))
    actions = [(e["Type"], e["Action"]) for e in _events(sampan, since) if e["Type"] == "image"
               or e["Action"] == "commit"]
    assert ("image", "import") in actions and ("image", "load") in actions and ("image", "build") in actions
    assert ("container", "commit") in actions
    assert actions.index(("image", "import")) < actions.index(("image", "load")) < \
        actions.index(("container", "commit")) < actions.index(("image", "build"))
