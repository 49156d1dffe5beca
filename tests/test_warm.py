"""Warm commands (``sampan.cli.warm``): once a run-time root has a monitor host, ``run``/``exec``/``create``/
``start`` are run by a worker forked from it, as if by the ``sampan`` process itself.

Whether a command went warm is read from the ``sampan`` process's own imports (``PYTHONPROFILEIMPORTTIME``): a
warm one never imports the engine. Everything else is the caller's behaviour seen from outside: its exit status,
its streams, its environment and working directory, the signals it gets, and its death."""

from __future__ import annotations

import marshal
import os
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from conftest import SAMPAN, Sampan
from processes import stop

from sampan.engine.containers import monitor_host

NET = ("--network", "none")


def _host_pid(sampan: Sampan) -> int:
    return int((sampan.runroot / "monitor-host.pid").read_text())


@pytest.fixture
def warm(sampan: Sampan, busybox: str) -> Sampan:
    """A root whose monitor host listens (the first start launches it)."""
    sampan("run", "--rm", *NET, "busybox", "true")
    sampan.wait_for_monitor_host()
    return sampan


def _ping(sampan: Sampan) -> bytes | None:
    return monitor_host._send(str(sampan.runroot / "monitor-host.sock"), b"{}", [])


def _run(sampan: Sampan, *args: str, env: dict[str, str] | None = None, **kwargs: object
         ) -> tuple[subprocess.CompletedProcess[bytes], bool]:
    """The command's result, its import-time lines taken out of stderr, and whether it imported the engine."""
    proc = subprocess.run([SAMPAN, *args], env={**sampan.env, "PYTHONPROFILEIMPORTTIME": "1", **(env or {})},
                          capture_output=True, timeout=60, check=False, **kwargs)  # type: ignore[call-overload]
    lines = proc.stderr.decode().splitlines(keepends=True)
    proc.stderr = "".join(line for line in lines if not line.startswith("import time:")).encode()
    cold = any(line.startswith("import time:") and "sampan.engine" in line for line in lines)
    return proc, cold


def test_run_and_exec_go_warm(warm: Sampan) -> None:
    proc, cold = _run(warm, "run", "--rm", *NET, "busybox", "echo", "hi", stdin=subprocess.DEVNULL)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"hi\n", b"")
    assert not cold
    cid = warm("run", "-d", *NET, "busybox", "sleep", "1000").stdout.strip()
    proc, cold = _run(warm, "exec", cid, "echo", "inside", stdin=subprocess.DEVNULL)
    assert (proc.returncode, proc.stdout, cold) == (0, b"inside\n", False)
    proc, cold = _run(warm, "exec", cid, "echo", "cold", env={"SAMPAN_WARM": "0"}, stdin=subprocess.DEVNULL)
    assert (proc.returncode, proc.stdout, cold) == (0, b"cold\n", True)


def test_everyday_commands_go_warm(warm: Sampan) -> None:
    """ps, inspect, logs, stop and rm (also as `container X`) run in a worker too, with the same output."""
    cid = warm("run", "-d", "--name", "daily", *NET, "busybox", "sh", "-c", "echo said; sleep 1000").stdout.strip()
    for args, expected in ((("ps", "-q", "--no-trunc"), cid + "\n"),
                           (("container", "ls", "-aq", "--no-trunc"), cid + "\n"),
                           (("inspect", "-f", "{{.Name}}", "daily"), "/daily\n"), (("logs", "daily"), "said\n"),
                           (("stop", "-t", "0", "daily"), "daily\n"), (("rm", "daily"), "daily\n")):
        proc, cold = _run(warm, *args, stdin=subprocess.DEVNULL)
        assert (proc.returncode, proc.stdout.decode(), proc.stderr, cold) == (0, expected, b"", False), args
    proc, cold = _run(warm, "inspect", "daily", stdin=subprocess.DEVNULL)  # gone: Docker's error, as cold
    assert (proc.returncode, proc.stdout, cold) == (1, b"[]\n", False)
    assert proc.stderr.decode().strip() == "Error: No such object: daily"


def test_worker_is_the_caller(warm: Sampan, tmp_path: Path) -> None:
    """Exit status, both streams apart, stdin, the caller's environment and its working directory (relative
    paths on the command line are the caller's)."""
    proc, cold = _run(warm, "run", "--rm", *NET, "busybox", "sh", "-c", "echo out; echo err >&2; exit 3",
                      stdin=subprocess.DEVNULL)
    assert (proc.returncode, proc.stdout, proc.stderr, cold) == (3, b"out\n", b"err\n", False)
    proc, _ = _run(warm, "run", "--rm", "-i", *NET, "busybox", "tr", "a-z", "A-Z", input=b"piped\n")
    assert (proc.returncode, proc.stdout) == (0, b"PIPED\n")
    (tmp_path / "vars").write_text("FROM_FILE=relative\n")
    proc, cold = _run(warm, "run", "--rm", *NET, "-e", "FROM_CALLER", "--env-file", "vars", "busybox", "sh", "-c",
                      "echo $FROM_CALLER $FROM_FILE", env={"FROM_CALLER": "caller's"}, cwd=tmp_path,
                      stdin=subprocess.DEVNULL)
    assert (proc.returncode, proc.stdout, proc.stderr, cold) == (0, b"caller's relative\n", b"", False)
    proc, cold = _run(warm, "run", "--rm", *NET, "-m", "12q", "busybox", "true", stdin=subprocess.DEVNULL)
    assert (proc.returncode, proc.stdout, cold) == (125, b"", False)
    assert proc.stderr.decode().startswith("Error: ") and proc.stderr.count(b"\n") == 1


def test_signals_reach_the_container(warm: Sampan) -> None:
    """The caller relays SIGTERM to the worker, whose attached run proxies it to the container (sig-proxy)."""
    proc = subprocess.Popen([SAMPAN, "run", "--rm", *NET, "busybox", "sh", "-c",
                             "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.1; done"],
                            env=warm.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert (proc.returncode, out, err) == (7, b"got-term\n", b"")
    finally:
        stop(proc, 5)


def _monitor_command_line(sampan: Sampan, name: str) -> bytes:
    pid = int(sampan("inspect", "-f", "{{.State.Pid}}", name).stdout)
    parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return Path(f"/proc/{parent}/cmdline").read_bytes()


def test_first_attached_run_does_not_wait_for_the_host(sampan: Sampan, busybox: str) -> None:
    """With no host, an attached run forks its monitor itself and leaves the host it launched to start; a
    detached run waits for the host, whose monitors share its memory."""
    proc = subprocess.Popen([SAMPAN, "run", "--name", "first", *NET, "busybox", "sh", "-c", "echo up; sleep 30"],
                            env=sampan.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
        assert b"monitor_host" not in _monitor_command_line(sampan, "first")  # forked by the `sampan` process
        sampan.wait_for_monitor_host()
    finally:
        stop(proc, 5)
    host = _host_pid(sampan)
    os.kill(host, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _ping(sampan) is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    sampan("run", "-d", "--name", "second", *NET, "busybox", "sleep", "30")
    assert b"monitor_host" in _monitor_command_line(sampan, "second")  # forked by the host it waited for
    sampan("rm", "-f", "first", "second")


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def test_killed_caller_ends_its_worker(warm: Sampan) -> None:
    """SIGKILL of the ``sampan`` process kills the worker too (as it would the command); the container, as with
    Docker, keeps running."""
    host = _host_pid(warm)
    proc = subprocess.Popen([SAMPAN, "run", "--name", "orphan", *NET, "busybox", "sh", "-c",
                             "echo ready; exec sleep 1000"], env=warm.env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        assert _children(host), "no worker under the host"
        proc.kill()
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _children(host) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _children(host)
        assert warm("inspect", "--format", "{{.State.Status}}", "orphan").stdout.strip() == "running"
    finally:
        stop(proc, 5)


def _service_request(sampan: Sampan, request: dict[str, object]) -> bytes:
    data = marshal.dumps(request)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(sampan.runroot / "monitor-host.sock"))
        sock.sendall(monitor_host.SERVICE_REQUEST + struct.pack(">I", len(data)) + data)
        return sock.recv(16)


def test_host_refuses_other_code_and_unknown_services(warm: Sampan) -> None:
    """A request for a service the host was not launched with is refused; one from other code (after an
    upgrade) is answered "stale" and the host exits, so that the next start launches a current one."""
    from sampan.code_identity import identity

    host = _host_pid(warm)
    assert _service_request(warm, {"service": "nonesuch", "fingerprint": identity()}) == b"no"
    assert _service_request(warm, {"service": "command", "fingerprint": "0.0.0:1"}) == b"stale"
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{host}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{host}") or "zombie" in Path(f"/proc/{host}/status").read_text()
    proc, cold = _run(warm, "run", "--rm", *NET, "busybox", "echo", "again", stdin=subprocess.DEVNULL)
    assert (proc.returncode, proc.stdout, cold) == (0, b"again\n", True)  # cold: it launched a new host
    warm.wait_for_monitor_host()
    assert _host_pid(warm) != host
    assert oct((warm.runroot / "monitor-host.sock").stat().st_mode & 0o777) == "0o600"


def test_hung_host_runs_the_command_once_cold(warm: Sampan) -> None:
    """A host that does not answer (stopped here) costs the command two seconds, then it runs cold; the request
    the host reads later is never run, since the caller did not confirm it."""
    host = _host_pid(warm)
    os.kill(host, signal.SIGSTOP)
    try:
        proc, cold = _run(warm, "create", *NET, "busybox", "true", stdin=subprocess.DEVNULL)
    finally:
        os.kill(host, signal.SIGCONT)
    assert (proc.returncode, cold) == (0, True), proc.stderr
    assert _ping(warm) == b"ping"  # it has read the abandoned request by now
    time.sleep(0.5)
    assert warm("ps", "-aq", "--no-trunc").stdout.split() == [proc.stdout.decode().strip()]
