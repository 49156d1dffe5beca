"""Facts about processes read from /proc (no ctypes): used to tell a live process from a recycled pid."""

from __future__ import annotations


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (which may itself contain spaces and parentheses)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2:].split()


def process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: with the pid, it identifies a process across pid reuse."""
    fields = _stat_fields(pid)
    return fields[19].decode() if fields else None


def process_state(pid: int) -> str | None:
    """The one-letter state of /proc/PID/stat (R, S, Z, ...), or None when the process is gone."""
    fields = _stat_fields(pid)
    return fields[0].decode() if fields else None


def process_parent(pid: int) -> int | None:
    """The parent pid of /proc/PID/stat, or None when the process is gone."""
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None
