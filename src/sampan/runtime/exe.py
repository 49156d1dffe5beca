"""Start the container's init from a read-only view of the interpreter (CVE-2019-5736).

A container process that execs ``#!/proc/self/exe`` while our init is still its image, or reaches our init's
``/proc/PID/exe`` otherwise, gets a handle on the host's Python interpreter. If that file sits on a writable
mount, the container can later overwrite it and own the next root process that runs Python. So the process that
enters the container re-executes, right after the fork, from a detached read-only bind of the interpreter
(``open_tree`` + ``mount_setattr`` + ``execveat``): no copy, and the mount vanishes with the last process using
it. Only that process does (as ``runc init``): the runtime itself never enters a container and stays where it is,
so the new interpreter's start overlaps with the runtime's cgroup set-up instead of adding to it.

The new interpreter runs isolated (``-I``: no environment variables, no user site) and without ``site``
(``-S``): it imports only the init code, from the directory this package was loaded from.

A process that already runs from a read-only file (``exe_is_readonly``: the monitor host execs itself this way,
so its workers and monitors do too) needs no new interpreter: its forked child is as safe and enters at once.
"""

from __future__ import annotations

import os
import sys

import sampan
from sampan._linux import process as sys_

# argv[1]: the directory holding the sampan package; argv[2]: the channel's fd (see ``init.boot``).
_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from sampan.runtime.init import boot; boot(int(sys.argv[2]))"
_PASSED_ENV = ("SAMPAN_RUNC_DEBUG",)


def exec_init(channel_fd: int) -> None:
    """Replace this (forked) process with a fresh interpreter running ``init.boot``; returns only on failure."""
    env = {name: os.environ[name] for name in _PASSED_ENV if name in os.environ}
    exec_readonly(["-I", "-S", "-B", "-c", _BOOT, package_parent(), str(channel_fd)], env)


def exec_readonly(args: list[str], env: dict[str, str]) -> None:
    """Replace this process with the interpreter, run from a detached read-only bind of itself, with ``args``;
    returns only on failure."""
    fd = sys_.open_tree(os.path.realpath("/proc/self/exe"))
    sys_.mount_setattr(fd, sys_.MOUNT_ATTR_RDONLY, 0, recursive=False)
    sys_.execveat(fd, [sys.executable, *args], env)


def exe_is_readonly() -> bool:
    """Whether this process's executable is on a read-only mount, as after ``exec_readonly``."""
    try:
        return bool(os.statvfs("/proc/self/exe").f_flag & os.ST_RDONLY)
    except OSError:
        return False


def package_parent() -> str:
    """The directory the sampan package was loaded from: what a fresh ``-I -S`` interpreter must import it from."""
    return os.path.dirname(os.path.dirname(os.path.abspath(sampan.__file__)))
