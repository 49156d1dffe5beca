"""Run the runtime from a read-only view of its own interpreter (CVE-2019-5736).

A container process that execs ``#!/proc/self/exe`` while our init is still its image, or reaches our
``/proc/PID/exe`` otherwise, gets a handle on the host's Python interpreter. If that file sits on a writable
mount, the container can later overwrite it and own the next root process that runs Python. So before creating or
entering a container we re-execute once from a detached, read-only bind of the interpreter (``open_tree`` +
``mount_setattr`` + ``execveat``): no copy, and the mount vanishes with the last process using it.
"""

from __future__ import annotations

import os
import sys

from sampan.errors import SampanError

_MARKER = "_SAMPAN_RUNTIME_RO_EXE"


def ensure_readonly_exe() -> None:
    """Return when /proc/self/exe is on a read-only mount; otherwise re-exec from one (never returns)."""
    if os.statvfs("/proc/self/exe").f_flag & os.ST_RDONLY:
        os.environ.pop(_MARKER, None)
        return
    if os.environ.get(_MARKER):
        raise SampanError("cannot run the runtime from a read-only view of its interpreter")
    from sampan._linux import process as sys_

    fd = sys_.open_tree(os.path.realpath("/proc/self/exe"))
    sys_.mount_setattr(fd, sys_.MOUNT_ATTR_RDONLY, 0, recursive=False)
    sys.stdout.flush()
    sys.stderr.flush()
    sys_.execveat(fd, sys.orig_argv, {**os.environ, _MARKER: "1"})
