"""Serving the /proc view: one FUSE mount per run-time root, shared by every container that uses the view.

``ensure(runroot)`` (called when a container starts) returns the mountpoint, starting a keeper when none runs:
``python -m sampan.procview.server MOUNTPOINT``, in a session of its own. The keeper forks the FUSE server and
supervises it. When the server dies, the keeper unmounts its dead mount and, in every container still bound to
it, unmounts the stale files (entering the container's mount namespace in a forked child), so those containers
fall back to their real /proc files instead of getting "transport endpoint is not connected"; then it serves a new
mount for the containers that start next. When no container has used the view for a minute, the keeper
unmounts it; when the mount goes (that way, or from outside) the server's loop ends normally and the keeper
exits. The next container to want the view starts it again.

One mount for all containers (as LXCFS) rather than one per container keeps the view's memory to one Python
process in all, and its start off the path of ``run`` once it is up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from sampan.procview.fs import FILES

FSNAME = "sampan-procview"
_START_TIMEOUT_S = 10.0
_IDLE_CHECK_S = 15.0  # how often the keeper looks for containers using the view
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


def ensure(runroot: str) -> str | None:
    """The view's mountpoint, started if needed; None when FUSE is unavailable here (no view, no failure)."""
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
        unmount(path)
        os.makedirs(path, mode=0o755, exist_ok=True)
        subprocess.Popen([sys.executable, "-m", "sampan.procview.server", path], start_new_session=True,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         close_fds=True)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if serving(path):
                return path
            time.sleep(0.01)
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


# ---------------------------------------------------------------------------------------------- keeper and server


def _serve(path: str) -> None:  # pragma: no cover - the forked server
    from mfusepy import FUSE

    from sampan.procview.fs import ProcView

    FUSE(ProcView(), path, raw_fi=True, foreground=True, nothreads=True, allow_other=True, fsname=FSNAME,
         subtype=FSNAME,
         default_permissions=True)


def _release_containers(source: str) -> None:
    """In every mount namespace still bound to the dead mount, unmount those files: the real ones show again."""
    from sampan._linux import process as sys_
    from sampan._linux.flags import CLONE_NEWNS

    namespaces: dict[str, tuple[str, list[str]]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            ns = os.readlink(f"/proc/{pid}/ns/mnt")
        except OSError:
            continue
        if ns in namespaces:
            continue
        points = [point for point, _ in _mounts_of(pid) if point.startswith("/proc/")]
        if points:  # read here: inside the container, its /proc does not show us
            namespaces[ns] = (pid, points)
    for pid, points in namespaces.values():
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
    del source


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


def _wait_while_used(pid: int, path: str) -> int:
    """Wait for the server; unmount the view (ending the server) once no container has used it for a while."""
    unused_since = None
    next_check = time.monotonic() + _IDLE_CHECK_S
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.5)
        if time.monotonic() < next_check:
            continue
        next_check = time.monotonic() + _IDLE_CHECK_S
        if in_use():
            unused_since = None
        elif unused_since is None:
            unused_since = time.monotonic()
        elif time.monotonic() - unused_since >= _IDLE_EXIT_S:
            unmount(path)


def keep(path: str) -> None:  # pragma: no cover - the keeper process
    """Run the server; after a crash release the containers and serve again; end when unmounted from outside."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    while True:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _serve(path)
                code = 0
            finally:
                os._exit(code)
        status = _wait_while_used(pid, path)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and \
                not any(point == path for point, _ in _mounts_of()):
            return  # unmounted from outside: the view is no longer wanted
        sources = {source for point, source in _mounts_of() if point == path}
        unmount(path)
        for source in sources or {FSNAME}:
            _release_containers(source)
        time.sleep(0.1)


if __name__ == "__main__":  # pragma: no cover
    keep(sys.argv[1])
