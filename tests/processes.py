"""Stopping a process a test started: SIGTERM, then SIGKILL if it is still there after a timeout, by pid."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def stop(proc: subprocess.Popen, timeout: float, *, group: bool = False) -> None:  # type: ignore[type-arg]
    """End ``proc`` (with ``group``, its whole process group, which it leads) and reap it. A process already
    reaped is not signalled again (its pid may be another's by now), unless its group is."""
    kill = os.killpg if group else os.kill
    if not group and proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            kill(proc.pid, signal.SIGKILL)
        proc.wait()
