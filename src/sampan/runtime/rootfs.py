"""The container's root filesystem: mounts, devices, pivot_root, masked and read-only paths.

Runs in the container's init, in its new mount namespace. Every mount target is resolved inside the rootfs with
``openat2(RESOLVE_IN_ROOT)`` and mounted through ``/proc/self/fd/N``, so a symlink swapped into the rootfs can never
redirect a mount onto the host (CVE-2021-30465). ``/dev/null`` is verified to be the real 1:3 character device
before it is used to mask anything (CVE-2025-31133).
"""

from __future__ import annotations

import errno
import os
import stat

from sampan._linux import flags as kflags
from sampan._linux import process as sys_
from sampan._linux.syscalls import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2
from sampan.errors import SampanError
from sampan.runtime.mount_options import parse_mount_options

TYPE_CHECKING = False  # typing/collections.abc are not imported at run time: start-up cost
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_PROPAGATION = {"shared": kflags.MS_SHARED, "slave": kflags.MS_SLAVE, "private": kflags.MS_PRIVATE,
                "unbindable": kflags.MS_UNBINDABLE, "rshared": kflags.MS_SHARED | kflags.MS_REC,
                "rslave": kflags.MS_SLAVE | kflags.MS_REC, "rprivate": kflags.MS_PRIVATE | kflags.MS_REC,
                "runbindable": kflags.MS_UNBINDABLE | kflags.MS_REC}
# Flags that must survive a read-only remount (the kernel refuses to drop locked ones in a user namespace).
_STATVFS_FLAGS = ((os.ST_NOSUID, kflags.MS_NOSUID), (os.ST_NODEV, kflags.MS_NODEV), (os.ST_NOEXEC, kflags.MS_NOEXEC),
                  (os.ST_NOATIME, kflags.MS_NOATIME), (os.ST_NODIRATIME, kflags.MS_NODIRATIME),
                  (os.ST_RELATIME, kflags.MS_RELATIME))
DEFAULT_DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9),
                   ("tty", 5, 0))
DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
             ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx"))


class RootfsError(SampanError):
    """A mount or device that could not be set up; the message names it."""


def fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def open_in_root(root_fd: int, path: str, flags: int = os.O_PATH) -> int:
    """Open ``path`` with the rootfs as "/", so symlinks and ``..`` can never leave it."""
    return openat2(root_fd, path.lstrip("/") or ".", flags | os.O_CLOEXEC, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)


def make_in_root(root_fd: int, path: str, *, directory: bool) -> int:
    """Create ``path`` (and missing parents) inside the rootfs; returns an O_PATH fd of it.

    Every prefix is resolved from the rootfs itself, so a symlink such as ``/var/run -> /run`` is followed the
    way the container will see it, and never out of the rootfs; only a missing last component of a prefix is
    created, relative to its already-resolved parent.
    """
    parts = [p for p in path.split("/") if p and p != "."]
    parent = os.dup(root_fd)
    try:
        for i, name in enumerate(parts):
            prefix = "/".join(parts[:i + 1])
            try:
                current = open_in_root(root_fd, prefix)
            except FileNotFoundError:
                if i == len(parts) - 1 and not directory:
                    os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                     0o644, dir_fd=parent))
                else:
                    os.mkdir(name, 0o755, dir_fd=parent)
                current = open_in_root(root_fd, prefix)
            os.close(parent)
            parent = current
        return parent
    except BaseException:
        os.close(parent)
        raise


def prepare_root(rootfs: str, propagation: str | None) -> None:
    """Stop our mounts propagating to the host, then make the rootfs a mount point of its own."""
    flag = _PROPAGATION.get(propagation or "rslave", kflags.MS_SLAVE | kflags.MS_REC)
    sys_.mount(None, "/", None, flag)
    sys_.mount(rootfs, rootfs, None, kflags.MS_BIND | kflags.MS_REC)


def _is_dir_source(source: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(source).st_mode)
    except FileNotFoundError:
        raise RootfsError(f"bind mount source {source}: no such file or directory") from None


# What runc lets a spec mount inside /proc: files a /proc view (lxcfs, sampan's own) replaces.
_PROC_ALLOWED = frozenset({"/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat", "/proc/swaps",
                           "/proc/uptime", "/proc/loadavg", "/proc/slabinfo", "/proc/net/dev",
                           "/proc/sys/kernel/ns_last_pid"})


def _clean(dest: str) -> str:
    """A destination as one absolute, normalised path ("//dev/" and "dev" are both "/dev")."""
    return os.path.normpath("/" + dest.lstrip("/"))


def check_proc_mount(dest: str, kind: str) -> None:
    """runc's checkProcMount: only procfs at /proc itself, and a short allowlist of files below it."""
    path = _clean(dest)
    if path == "/proc":
        if kind != "proc":
            raise RootfsError(f"{dest} cannot be mounted because it is not of type proc")
        return
    if path.startswith("/proc/") and path not in _PROC_ALLOWED:
        raise RootfsError(f"{dest} cannot be mounted because it is inside /proc")


def has_dev_bind(mounts: list[dict[str, Any]]) -> bool:
    """runc's needsSetupDev is false when /dev comes from a bind mount: its devices are not ours to touch."""
    for entry in mounts:
        if _clean(entry.get("destination", "")) == "/dev" and (
                entry.get("type") == "bind" or {"bind", "rbind"} & set(entry.get("options") or [])):
            return True
    return False


def mount_entry(root_fd: int, entry: dict[str, Any], bundle: str, cgroup_version: int) -> None:
    """One entry of the spec's ``mounts``; ``cgroup_version`` is the host's (for a "cgroup" mount)."""
    dest = entry["destination"]
    check_proc_mount(dest, entry.get("type") or "")
    kind = entry.get("type") or ""
    source = entry.get("source") or kind or "none"
    opts = parse_mount_options(list(entry.get("options") or []))
    is_bind = bool(opts.flags & kflags.MS_BIND)
    if is_bind and not os.path.isabs(source):
        source = os.path.join(bundle, source)
    if kind == "cgroup":
        return _mount_cgroup(root_fd, dest, opts.flags, cgroup_version)
    target = make_in_root(root_fd, dest, directory=not is_bind or _is_dir_source(source))
    try:
        where = fd_path(target)
        try:
            if is_bind:
                sys_.mount(source, where, None, opts.flags & (kflags.MS_BIND | kflags.MS_REC))
                if opts.flags & ~(kflags.MS_BIND | kflags.MS_REC):
                    _remount_at(root_fd, dest, opts.flags | kflags.MS_BIND)
            else:
                sys_.mount(source, where, kind, opts.flags, opts.data or None)
                if opts.copy_up:
                    _at(root_fd, dest, lambda new: _copy_up(where, new))
            if opts.rec_attr_set or opts.rec_attr_clear:
                _at_fd(root_fd, dest, lambda fd: sys_.mount_setattr(fd, opts.rec_attr_set, opts.rec_attr_clear))
            for flag in opts.propagation:
                _at(root_fd, dest, lambda path, flag=flag: sys_.mount(None, path, None, flag))
        except OSError as e:
            raise RootfsError(f"mount {source} to {dest} ({kind or 'bind'}): {e.strerror}") from None
    finally:
        os.close(target)


def _copy_up(covered: str, new: str) -> None:
    """"tmpcopyup": the fd opened before mounting still reaches the covered directory; copy it into the tmpfs."""
    import shutil  # preloaded by the init when a mount asks for tmpcopyup

    shutil.copytree(covered, new, symlinks=True, dirs_exist_ok=True)


def _at(root_fd: int, path: str, action: Callable[[str], None]) -> None:
    """Act on what is mounted at ``path`` now: an fd opened before a mount still names the covered directory."""
    _at_fd(root_fd, path, lambda fd: action(fd_path(fd)))


def _at_fd(root_fd: int, path: str, action: Callable[[int], None]) -> None:
    fd = open_in_root(root_fd, path)
    try:
        action(fd)
    finally:
        os.close(fd)


def _remount_at(root_fd: int, path: str, flags: int) -> None:
    _at(root_fd, path, lambda where: _remount(where, flags))


def _remount(where: str, flags: int) -> None:
    """A bind mount's flags change only through a remount; keep the flags the kernel has locked."""
    locked = 0
    st = os.statvfs(where)
    for vfs_flag, ms_flag in _STATVFS_FLAGS:
        if st.f_flag & vfs_flag:
            locked |= ms_flag
    sys_.mount(None, where, None, flags | locked | kflags.MS_REMOUNT)


def _mount_cgroup(root_fd: int, dest: str, flags: int, version: int) -> None:
    """Docker/runc's "cgroup" mount: cgroup2 on a v2 host; on a v1 host a tmpfs with one bind of each hierarchy
    the process is in."""
    if version == 2:
        target = make_in_root(root_fd, dest, directory=True)
        try:
            sys_.mount("cgroup2", fd_path(target), "cgroup2", flags & ~kflags.MS_BIND)
        finally:
            os.close(target)
        return
    target = make_in_root(root_fd, dest, directory=True)
    try:
        sys_.mount("tmpfs", fd_path(target), "tmpfs", kflags.MS_NOSUID | kflags.MS_NODEV | kflags.MS_NOEXEC, "mode=755")
    finally:
        os.close(target)
    with open("/proc/self/cgroup") as f:
        lines = [line.rstrip("\n").split(":", 2) for line in f]
    for _, controllers, path in lines:
        if not controllers:
            continue
        name = controllers.removeprefix("name=")
        hierarchy = f"/sys/fs/cgroup/{name}"
        if not os.path.isdir(hierarchy + path):
            continue
        sub = make_in_root(root_fd, f"{dest}/{name}", directory=True)
        try:
            sys_.mount(hierarchy + path, fd_path(sub), None, kflags.MS_BIND | kflags.MS_REC)
        finally:
            os.close(sub)
        _remount_at(root_fd, f"{dest}/{name}", (flags & kflags.MS_RDONLY) | kflags.MS_BIND | kflags.MS_NOSUID
                    | kflags.MS_NODEV | kflags.MS_NOEXEC)


def create_devices(root_fd: int, devices: list[dict[str, Any]], bind_from_host: bool) -> None:
    """Default devices plus the spec's; bind-mounted from the host inside a user namespace (no mknod there)."""
    wanted = [{"path": f"/dev/{name}", "type": "c", "major": major, "minor": minor, "fileMode": 0o666, "uid": 0,
               "gid": 0} for name, major, minor in DEFAULT_DEVICES]
    wanted += devices
    for dev in wanted:
        _create_device(root_fd, dev, bind_from_host)


def _create_device(root_fd: int, dev: dict[str, Any], bind_from_host: bool) -> None:
    """mknod relative to the parent's fd (the init runs with umask 0, so the mode is exact)."""
    path = dev["path"]
    parent_path, name = os.path.split(path.rstrip("/"))
    parent = make_in_root(root_fd, parent_path, directory=True)
    try:
        try:
            os.unlink(name, dir_fd=parent)
        except FileNotFoundError:
            pass
        if bind_from_host:
            target = make_in_root(root_fd, path, directory=False)
            try:
                sys_.mount(path, fd_path(target), None, kflags.MS_BIND)
            finally:
                os.close(target)
            return
        kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[dev.get("type", "c")]
        mode = dev.get("fileMode", 0o666) & 0o7777
        os.mknod(name, kind | mode, os.makedev(dev.get("major", 0), dev.get("minor", 0)), dir_fd=parent)
        os.chown(name, dev.get("uid", 0), dev.get("gid", 0), dir_fd=parent, follow_symlinks=False)
    finally:
        os.close(parent)


def dev_symlinks(root_fd: int) -> None:
    dev = make_in_root(root_fd, "/dev", directory=True)
    try:
        for name, target in DEV_LINKS:
            try:
                os.symlink(target, name, dir_fd=dev)
            except FileExistsError:
                pass
        if os.path.exists("/proc/kcore"):
            try:
                os.symlink("/proc/kcore", "core", dir_fd=dev)
            except FileExistsError:
                pass
    finally:
        os.close(dev)


def pivot(rootfs: str, no_pivot: bool) -> None:
    """Switch to the new root. pivot_root(".", ".") then detaching the old root needs no put_old directory."""
    if no_pivot:
        os.chdir(rootfs)
        sys_.mount(rootfs, "/", None, kflags.MS_MOVE)
        os.chroot(".")
        os.chdir("/")
        return
    old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new_root = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new_root)
        sys_.pivot_root(".", ".")
        os.fchdir(old_root)
        sys_.mount(None, ".", None, kflags.MS_SLAVE | kflags.MS_REC)
        sys_.umount(".", kflags.MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(old_root)
        os.close(new_root)


def _verified_dev_null() -> int:
    """An O_PATH fd of /dev/null after checking it really is the 1:3 device, not a planted file or link."""
    fd = os.open("/dev/null", os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    st = os.fstat(fd)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
        os.close(fd)
        raise RootfsError("/dev/null in the container is not the null device: refusing to use it for masking")
    return fd


def _each_existing(paths: list[str], action: Callable[[int, int, str], None]) -> None:
    """Call ``action(root_fd, target_fd, path)`` for each path that exists, resolved inside the new root."""
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for path in paths:
            try:
                target = open_in_root(root, path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            try:
                action(root, target, path)
            finally:
                os.close(target)
    finally:
        os.close(root)


def mask_paths(paths: list[str]) -> None:
    """Hide host information: files get /dev/null bound over them, directories an empty read-only tmpfs."""
    if not paths:
        return
    null = _verified_dev_null()

    def mask(_: int, target: int, __: str) -> None:
        if stat.S_ISDIR(os.fstat(target).st_mode):
            sys_.mount("tmpfs", fd_path(target), "tmpfs", kflags.MS_RDONLY)
        else:
            sys_.mount(fd_path(null), fd_path(target), None, kflags.MS_BIND)

    try:
        _each_existing(paths, mask)
    finally:
        os.close(null)


def readonly_paths(paths: list[str]) -> None:
    def make_readonly(root: int, target: int, path: str) -> None:
        try:
            sys_.mount(fd_path(target), fd_path(target), None, kflags.MS_BIND | kflags.MS_REC)
            _remount_at(root, path, kflags.MS_BIND | kflags.MS_RDONLY | kflags.MS_REC)
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise RootfsError(f"making {path} read-only: {e.strerror}") from None

    _each_existing(paths, make_readonly)


def readonly_root() -> None:
    _remount("/", kflags.MS_BIND | kflags.MS_RDONLY)
