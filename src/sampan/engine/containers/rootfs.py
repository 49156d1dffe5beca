"""A container's root filesystem: its image's snapshots as overlayfs lower layers under its writable ``diff``.

Mounted in the host's mount namespace while the container runs (so ``cp``, ``diff`` and ``export`` see the same
tree the container sees) and unmounted when it stops. ``mounted`` reads /proc/self/mountinfo, so a mount left by
a killed process is found and removed by the next ``rm`` or ``system check --repair``; the start and the exit of
a container do without it (its cost grows with every mount on the host).

A ``--rm`` container's root is mounted ``volatile``: its writes are thrown away with it, so overlayfs skips every
sync to the upper filesystem, including the one at unmount, which syncs the whole host filesystem that holds the
storage root (an exiting container would otherwise wait for the host's dirty data, as with Podman's ``--rm``).
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from sampan._linux import process as sys_
from sampan._linux.flags import MNT_DETACH
from sampan.engine.containers.model import Places
from sampan.engine.context import Engine
from sampan.errors import CorruptContent
from sampan.store import images as image_records
from sampan.store.containers import ContainerRecord

_MS_NODEV = 0x4


def lower_dirs(engine: Engine, image_id: str) -> list[str]:
    """The image's snapshot directories, top layer first (overlayfs order)."""
    dirs = []
    for row in image_records.layers_of(engine.db.conn, image_id):
        path = engine.snapshots.path(row["chain_id"])
        if row["diff_id"] is None or not path.is_dir():
            raise CorruptContent(f"layer {row['chain_id']} of image {image_id} is missing: run 'sampan system "
                                 "check'")
        dirs.append(str(path))
    return dirs[::-1]


def mounted(path: str | os.PathLike[str]) -> bool:
    target = os.fsencode(os.path.realpath(path)).replace(b"\\", b"\\134").replace(b" ", b"\\040")
    with open("/proc/self/mountinfo", "rb") as f:
        return any(line.split(b" ", 5)[4] == target for line in f)


def mount(engine: Engine, record: ContainerRecord, where: Places) -> str:
    """Mount the container's root at ``where.rootfs`` (idempotent) and return its path."""
    target = str(where.rootfs)
    if os.path.ismount(target):  # an overlay has a device of its own: no need to read mountinfo
        return target
    lowers = lower_dirs(engine, record.image_id)
    if not lowers:  # an image without layers: overlayfs needs one lower directory
        empty = where.bundle / "empty"
        empty.mkdir(mode=0o755, exist_ok=True)
        lowers = [str(empty)]
    data = f"lowerdir={':'.join(lowers)},upperdir={where.diff},workdir={where.work}"
    if record.host_config.get("AutoRemove"):
        # a volatile mount leaves this behind, and overlayfs refuses the next mount while it is there (a crash
        # may have lost writes): this container's writes are disposable, so it may be mounted again
        shutil.rmtree(where.work / "work" / "incompat", ignore_errors=True)
        try:
            sys_.mount("overlay", target, "overlay", _MS_NODEV, data + ",volatile")
            return target
        except OSError as e:
            if e.errno != errno.EINVAL:  # a kernel before 5.10: mounted as any other below
                raise
    sys_.mount("overlay", target, "overlay", _MS_NODEV, data)
    return target


def unmount(where: Places) -> None:
    """Lazily unmount the root (and anything a propagation left below it); absent is fine."""
    target = str(where.rootfs)
    while True:
        try:
            sys_.umount(target, MNT_DETACH)
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.ENOENT):  # not (or no longer) a mount point
                return
            raise


@contextmanager
def temporarily_mounted(engine: Engine, record: ContainerRecord, where: Places) -> Iterator[str]:
    """The root of a container that may not be running (``cp``, ``diff``, ``export`` of a stopped container)."""
    was_mounted = mounted(where.rootfs)
    path = mount(engine, record, where)
    try:
        yield path
    finally:
        if not was_mounted and record.status not in ("running", "paused", "restarting"):
            unmount(where)
