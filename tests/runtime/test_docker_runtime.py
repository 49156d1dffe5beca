"""Real Docker drives sampan-runc: dockerd (with ``--add-runtime sampan=...``) runs containers through it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from conftest import docker_cli

pytestmark = pytest.mark.slow
RUNTIME = ("--runtime", "sampan")


@pytest.fixture(scope="module")
def dk(docker: dict[str, str], busybox_archive: Path) -> dict[str, str]:
    docker_cli(docker, "load", "-i", str(busybox_archive))
    return docker


def _tty(env: dict[str, str], command: str) -> str:
    """Run a docker command under a real pty (util-linux ``script``), as a user at a terminal would."""
    proc = subprocess.run(["script", "-qec", command, "/dev/null"], env=env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_run_rm_with_limits_user_workdir_readonly_capdrop(dk: dict[str, str]) -> None:
    out = docker_cli(dk, "run", "--rm", *RUNTIME, "-m", "32m", "--pids-limit", "20", "--cpus", "0.5",
                     "-u", "1000:1000", "-w", "/tmp", "--read-only", "--cap-drop", "ALL", "busybox", "sh", "-c",
                     "id -u; pwd; touch /x 2>/dev/null || echo ro; "
                     "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max "
                     "/sys/fs/cgroup/cpu/cpu.cfs_quota_us; grep CapEff /proc/self/status")
    lines = out.split("\n")
    assert lines[:6] == ["1000", "/tmp", "ro", "33554432", "20", "50000"], out
    assert lines[6].split() == ["CapEff:", "0000000000000000"]


def test_exit_code_and_rm(dk: dict[str, str]) -> None:
    proc = subprocess.run(["docker", "run", "--rm", *RUNTIME, "busybox", "sh", "-c", "exit 3"], env=dk)
    assert proc.returncode == 3
    assert docker_cli(dk, "ps", "-aq") == ""


def test_detached_exec_top_pause_stop(dk: dict[str, str]) -> None:
    cid = docker_cli(dk, "run", "-d", *RUNTIME, "busybox", "sleep", "300").strip()
    try:
        assert docker_cli(dk, "exec", cid, "sh", "-c", "echo exec-ok; hostname").split() == ["exec-ok", cid[:12]]
        assert "sleep 300" in docker_cli(dk, "top", cid)
        docker_cli(dk, "pause", cid)
        assert "Paused" in docker_cli(dk, "ps", "--format", "{{.Status}}")
        docker_cli(dk, "unpause", cid)
        assert "Paused" not in docker_cli(dk, "ps", "--format", "{{.Status}}")
        start = time.monotonic()
        docker_cli(dk, "stop", "-t", "1", cid)
        assert time.monotonic() - start < 10
        assert docker_cli(dk, "inspect", "-f", "{{.State.ExitCode}}", cid).strip() == "137"
    finally:
        docker_cli(dk, "rm", "-f", cid)


def test_interactive_terminal(dk: dict[str, str]) -> None:
    out = _tty(dk, "docker run --rm -it --runtime sampan busybox sh -c 'tty; test -t 1 && echo is-a-tty'")
    assert "/dev/pts/0" in out and "is-a-tty" in out
    cid = docker_cli(dk, "run", "-d", *RUNTIME, "busybox", "sleep", "300").strip()
    try:
        assert "exec-tty" in _tty(dk, f"docker exec -it {cid} sh -c 'test -t 0 && echo exec-tty'")
    finally:
        docker_cli(dk, "rm", "-f", cid)
