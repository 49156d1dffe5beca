"""Facts about processes read from /proc (no ctypes): used to tell a live process from a recycled pid."""

from __future__ import annotations


def process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: with the pid, it identifies a process across pid reuse."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2:].split()[19].decode()


def process_state(pid: int) -> str | None:
    """The one-letter state of /proc/PID/stat (R, S, Z, ...), or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3].decode()
