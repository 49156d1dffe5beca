"""Serving the /proc view: one FUSE mount per run-time root, shared by every container that uses the view.

``ensure(runroot, fork)`` (called when a container starts) returns the mountpoint, starting the server when none
answers. The server is one process with two threads: the FUSE filesystem, and the syscall ``Hub`` that answers
sysinfo and sched_getaffinity for the containers whose monitors forward their seccomp listeners (with the same
load averages as the view's /proc/loadavg).

Memory: ``fork`` asks the run-time root's monitor host to fork the server, so it shares the host's warm,
frozen pages (the interpreter, mfusepy, the view) copy-on-write with the host and with every monitor, and owns
only what it writes; without a host it runs as ``python -m sampan.procview.server MOUNTPOINT``. There is no
keeper process: when no container has used the view for a minute, the server unmounts it and exits; the next
container to want it starts a new one.

When the server dies, each container's monitor (its agent sees the hub's connection close) unmounts the dead
files in its container, so the container reads its real /proc files instead of "transport endpoint is not
connected", and answers the syscalls itself. The next ``ensure`` unmounts the dead mount, releases containers
that have no agent the same way, and starts a new server for the containers that start next.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from sampan.procview.fs import FILES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

FSNAME = "sampan-procview"
_START_TIMEOUT_S = 10.0
_IDLE_CHECK_S = 15.0  # how often the server looks for containers using the view
_IDLE_EXIT_S = 60.0  # unused this long: the view is unmounted and its processes end
_MNT_DETACH = 2


def mountpoint(runroot: str) -> str:
    return os.path.join(runroot, "procview")


def _mounts_of(pid: str = "self") -> list[tuple[str, str]]:
    """(mount point, source) of every mount of our filesystem seen by ``pid``."""
    out = []
    try:
        with open(f"/proc/{pid}/mountinfo") as f:
            for line in f:
                fields = line.split()
                dash = fields.index("-")
                if fields[dash + 2].endswith(FSNAME):
                    out.append((fields[4].replace("\\040", " "), fields[dash + 1]))
    except (OSError, ValueError):
        pass
    return out


def mounted(path: str) -> bool:
    return any(point == path for point, _ in _mounts_of())


def serving(path: str) -> bool:
    """Whether ``path`` is our mount and answers (a dead server's mount fails with ENOTCONN)."""
    if not any(point == path for point, _ in _mounts_of()):
        return False
    try:
        os.stat(os.path.join(path, "meminfo"))
        return True
    except OSError:
        return False


def ensure(runroot: str, fork: Callable[[str], bool] | None = None) -> str | None:
    """The view's mountpoint, started if needed (by ``fork(path)`` when it can, else as a new interpreter);
    None when FUSE is unavailable here (no view, no failure)."""
    from sampan.store.locks import FileLock

    path = mountpoint(runroot)
    if serving(path):
        return path
    if not os.path.exists("/dev/fuse"):
        return None
    os.makedirs(os.path.join(runroot, "locks"), mode=0o700, exist_ok=True)
    from pathlib import Path

    with FileLock(Path(runroot) / "locks", "procview"):
        if serving(path):
            return path
        if mounted(path):  # a dead server's: containers still bound to it read nothing
            unmount(path)
            _release_containers()
        os.makedirs(path, mode=0o755, exist_ok=True)
        if fork is None or not fork(path):
            subprocess.Popen([sys.executable, "-m", "sampan.procview.server", path], start_new_session=True,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             close_fds=True)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if serving(path):
                return path
            time.sleep(0.005)
    return None


def spec_mounts(path: str) -> list[dict[str, object]]:
    """The OCI mounts that put the view over a container's /proc files."""
    return [{"destination": f"/proc/{name}", "type": "bind", "source": os.path.join(path, name),
             "options": ["rbind", "ro", "rprivate"]} for name in FILES]


def unmount(path: str) -> None:
    from sampan._linux import process as sys_

    while any(point == path for point, _ in _mounts_of()):
        try:
            sys_.umount(path, _MNT_DETACH)
        except OSError:
            break


# ---------------------------------------------------------------------------------------------- the server


def hub_path(path: str) -> str:
    """The syscall hub's socket, beside the mountpoint (inside it, it would be hidden by the mount)."""
    return path + ".sock"


def server_pid(path: str) -> int | None:
    """The pid of the server of the view at ``path`` (its hub's peer credentials), None when none answers."""
    import socket
    import struct

    from sampan.monitor.protocol import socket_name

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        with socket_name(hub_path(path)) as name:
            sock.connect(name)
        pid, _, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        return pid
    except OSError:
        return None
    finally:
        sock.close()


def serve(path: str) -> None:  # pragma: no cover - the server process; never returns
    """Mount the view at ``path`` and serve it, with the hub beside it, until it is unmounted."""
    import threading

    from mfusepy import FUSE

    from sampan.procview.fs import ProcView
    from sampan.procview.syscalls import Hub

    code = 1
    try:
        os.closerange(3, 1 << 16)  # a forking host's sockets and locks are not ours
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        view = ProcView()
        hub = Hub(hub_path(path), view.loads)
        idle = _Idle(path, hub)
        threading.Thread(target=hub.run, args=(idle.check, _IDLE_CHECK_S), daemon=True).start()
        FUSE(view, path, raw_fi=True, foreground=True, nothreads=True, allow_other=True, fsname=FSNAME,
             subtype=FSNAME, default_permissions=True)
        code = 0
    finally:
        os._exit(code)


class _Idle:
    """Unmounts the view (which ends the server) once no container has used it for ``_IDLE_EXIT_S``."""

    def __init__(self, path: str, hub: Any) -> None:
        self.path, self.hub = path, hub
        self.unused_since: float | None = None

    def check(self) -> None:
        if self.hub.in_use() or in_use():
            self.unused_since = None
        elif self.unused_since is None:
            self.unused_since = time.monotonic()
        elif time.monotonic() - self.unused_since >= _IDLE_EXIT_S:
            unmount(self.path)


def release(pid: str) -> None:
    """Unmount the view's files in ``pid``'s mount namespace (from a forked child, which enters it): the
    container's real /proc files show again."""
    from sampan._linux import process as sys_
    from sampan._linux.flags import CLONE_NEWNS

    points = [point for point, _ in _mounts_of(pid) if point.startswith("/proc/")]
    if not points:  # read here: inside the container, its /proc does not show us
        return
    child = os.fork()
    if child == 0:  # pragma: no cover - enters the container's mount namespace
        code = 1
        try:
            fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
            sys_.setns(fd, CLONE_NEWNS)
            for point in points:
                try:
                    sys_.umount(point, _MNT_DETACH)
                except OSError:
                    pass
            code = 0
        finally:
            os._exit(code)
    os.waitpid(child, 0)


def _release_containers() -> None:
    """Release every mount namespace still bound to a dead view (containers whose monitor did not)."""
    seen = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            ns = os.readlink(f"/proc/{pid}/ns/mnt")
        except OSError:
            continue
        if ns not in seen:
            seen.add(ns)
            release(pid)


def in_use() -> bool:
    """Whether any mount namespace but ours has the view's files bound (a container using it)."""
    ours = os.readlink("/proc/self/ns/mnt")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/ns/mnt") == ours:
                continue
        except OSError:
            continue
        if any(point.startswith("/proc/") for point, _ in _mounts_of(pid)):
            return True
    return False


if __name__ == "__main__":  # pragma: no cover
    serve(sys.argv[1])
