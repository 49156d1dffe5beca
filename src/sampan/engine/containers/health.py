"""Health checks, as Docker runs them: the check command is exec'd in the container every interval; its exit
status and (first 4 KiB of) output go to ``State.Health``; Retries failures in a row make the container
"unhealthy", one success makes it "healthy", failures inside the start period do not count.

The monitor schedules; each check runs in a forked child of the monitor (so a slow check never stalls the
container's stdio) that execs the command, enforces the timeout and records the result in the store.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from typing import Any

from sampan._linux import process as sys_
from sampan.engine.context import Engine
from sampan.store import containers as records
from sampan.store.containers import ContainerRecord

DEFAULT_INTERVAL_NS = 30 * 10**9
DEFAULT_TIMEOUT_NS = 30 * 10**9
DEFAULT_RETRIES = 3
MAX_OUTPUT = 4096
MAX_LOG_ENTRIES = 5


def enabled(record: ContainerRecord) -> bool:
    test = (record.config.get("Healthcheck") or {}).get("Test") or []
    return bool(test) and test[0] != "NONE"


def command(test: list[str]) -> list[str]:
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])]
    return test[1:] if test[0] == "CMD" else test


def _timestamp(ts: float) -> str:
    from sampan.engine.containers.query import docker_time

    return docker_time(ts)


class Scheduler:
    """The monitor's side: when the next check is due, and which child is the check in flight."""

    def __init__(self, engine: Engine, container_id: str, config: dict[str, Any]) -> None:
        self.engine = engine
        self.container_id = container_id
        self.interval = (config.get("Interval") or DEFAULT_INTERVAL_NS) / 1e9
        self.timeout = (config.get("Timeout") or DEFAULT_TIMEOUT_NS) / 1e9
        self.start_period = (config.get("StartPeriod") or 0) / 1e9
        self.retries = config.get("Retries") or DEFAULT_RETRIES
        self.started = time.monotonic()
        self.next_due = self.started + self.interval
        self.child = 0

    def tick(self) -> float:
        now = time.monotonic()
        if self.child == 0 and now >= self.next_due:
            self.child = self._fork_check()
            self.next_due = now + self.interval
        return max(0.05, self.next_due - time.monotonic())

    def reaped(self, pid: int, status: int) -> None:
        if pid == self.child:
            self.child = 0

    def stop(self) -> None:
        if self.child:
            try:
                os.kill(self.child, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _fork_check(self) -> int:
        in_start_period = time.monotonic() - self.started < self.start_period
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the forked check
            code = 0
            try:
                from sampan.engine.containers.monitor import forget_inherited

                forget_inherited(self.engine, set())
                record = records.get(self.engine.db.conn, self.container_id)
                if record is not None:
                    run_check(self.engine, record, self.timeout, self.retries, in_start_period)
            except BaseException:  # noqa: BLE001 - nothing may escape a forked child
                code = 1
            finally:
                os._exit(code)
        return pid


def run_check(engine: Engine, record: ContainerRecord, timeout: float, retries: int, in_start_period: bool) -> None:
    """Exec the check, wait at most ``timeout``, record the result."""
    from sampan.engine.containers.execute import process_spec
    from sampan.engine.containers.runtimes import driver

    sys_.prctl(sys_.PR_SET_CHILD_SUBREAPER, 1)
    for sig in (signal.SIGCHLD,):
        signal.signal(sig, signal.SIG_DFL)
    started = time.time()
    test = record.config["Healthcheck"]["Test"]
    with tempfile.TemporaryFile() as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        runtime = driver(record.host_config.get("Runtime", ""), str(engine.layout.runtime))
        pid_file = str(engine.layout.container_runs / record.id / f"health-{os.getpid()}.pid")
        try:
            process = process_spec(engine, record, command(test), tty=False)
            runtime.exec(record.id, process, None, True, pid_file=pid_file)
            with open(pid_file) as f:
                pid = int(f.read())
            code = _wait(pid, timeout)
        except Exception as e:  # noqa: BLE001 - a check that cannot run is a failed check
            os.write(2, str(e).encode())
            code = 1
        finally:
            if os.path.exists(pid_file):
                os.unlink(pid_file)
        out.seek(0)
        output = out.read(MAX_OUTPUT).decode(errors="replace")
    if code is None:
        code, output = -1, f"Health check exceeded timeout ({timeout:g}s)"
    _record(engine, record.id, {"Start": _timestamp(started), "End": _timestamp(time.time()), "ExitCode": code,
                                "Output": output}, retries, in_start_period)


def _wait(pid: int, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            reaped, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return 1
        if reaped == pid:
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return None


def _record(engine: Engine, container_id: str, entry: dict[str, Any], retries: int, in_start_period: bool) -> None:
    with engine.db.transaction() as tx:
        record = records.get(tx, container_id)
        if record is None or record.status != "running":
            return
        health = dict(record.health or {"Status": "starting", "FailingStreak": 0, "Log": []})
        log = (list(health.get("Log") or []) + [entry])[-MAX_LOG_ENTRIES:]
        if entry["ExitCode"] == 0:
            health.update(Status="healthy", FailingStreak=0)
        elif not (in_start_period and health.get("Status") == "starting"):
            streak = int(health.get("FailingStreak") or 0) + 1
            health["FailingStreak"] = streak
            if streak >= retries:
                health["Status"] = "unhealthy"
        health["Log"] = log
        records.update_state(tx, container_id, health=health)
