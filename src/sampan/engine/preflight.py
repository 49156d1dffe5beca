"""Host checks run before any command that touches the kernel or the store.

A missing prerequisite must fail at once with one line naming it, not halfway through a pull or a run with an
obscure EPERM. The checks read a few small /proc files, cheap enough for every start.
"""

from __future__ import annotations

import os

from sampan.errors import PreflightError

NAMESPACES = ("mnt", "pid", "net", "uts", "ipc", "user", "cgroup")


def check_host() -> None:
    if os.geteuid() != 0:
        raise PreflightError("sampan must run as root (effective uid is %d)" % os.geteuid())
    if not _has_overlayfs():
        raise PreflightError("overlayfs is not available: the kernel lists no 'overlay' filesystem "
                             "(try 'modprobe overlay')")
    missing = [ns for ns in NAMESPACES if not os.path.exists(f"/proc/self/ns/{ns}")]
    if missing:
        raise PreflightError("kernel namespace support is missing: " + ", ".join(missing))


def _has_overlayfs() -> bool:
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1] == "overlay" for line in f if line.strip())
    except OSError:
        return False
