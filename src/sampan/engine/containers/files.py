"""A container's files as whole trees: ``cp``, ``diff``, ``commit`` and ``export``.

Where the files are:

- the container's root is its overlay mount (``rootfs``): mounted while it runs, mounted for the duration of
  the verb when it does not. ``cp`` and ``export`` read and write there, through ``copy``'s fd-relative
  functions, holding the container's lock (as dockerd holds its container lock), so no ``start`` or ``rm``
  changes the mount underneath;
- ``diff`` and ``commit`` read the writable layer (``Places.diff``, overlayfs' upper directory) and the image's
  snapshots directly: an upper entry is an addition, a change, or a whiteout (a 0/0 character device: a
  deletion) or an opaque directory (``trusted.overlay.opaque=y``: everything below it in the image is gone).

Every tree is walked from file descriptors, one component at a time with ``O_NOFOLLOW``, never by joining paths:
the container writes its layer while we read it (``diff`` does not pause it; ``commit -p=false`` does not
either), and an image's symlinks point anywhere once read from outside the container. The image's layers are
looked up with ``openat2(RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH)`` under each snapshot's fd.

Entries the runtime creates in the writable layer as mount points (``/etc/hosts``, ``/etc/hostname``,
``/etc/resolv.conf``, ``/proc``, ``/sys``, ``/dev``... when the image lacks them) are not the container's
changes: dockerd keeps them in a separate "init" layer, so its ``diff`` never lists them and ``commit`` never
stores them. Here they are skipped when they are absent from the image and still empty (files) or directories.

``diff`` reports what dockerd's overlay2 driver reports: ``A`` for an entry the image lacks, ``D`` for a
whiteout of an image entry and for each image entry hidden under an opaque directory, ``C`` for any other
non-directory in the upper layer, for a directory whose type, mode or owner differs from the image's, and for
every directory with a change below it (dockerd's "parent of a change" rule). Docker prints the list in map
order (it differs between two runs); sampan sorts it by path, each directory before what it contains.

``commit`` tars the upper layer with OCI whiteouts (``.wh.NAME`` as dockerd writes them: empty, mode 0600,
the whiteout's owner and time; ``.wh..wh..opq`` right after its directory), leaving out the mount points above
and directories that are unchanged with nothing changed below them. A layer with no entry is not added: the
history entry is then marked ``empty_layer``, as dockerd does. Upper entries named ``.wh.*`` that are not
whiteouts cannot be written into an OCI layer (they would read back as whiteouts) and are left out. (The
upper-layer walker, ``_Scan``, is the layer-diff writer ``snapshot.whiteout`` mentions; ``build`` will need it
too, and it should move to ``snapshot`` then.)

``cp`` follows the docker CLI's path rules (``copy``), its messages, and dockerd's real ownership rules (see
``copy_to_container``); paths inside volumes and binds are handled as ``_mount_for`` says, with its limits.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO, Self

from sampan._linux import syscalls
from sampan.engine.containers import copy, model, rootfs
from sampan.engine.containers.lifecycle import locked
from sampan.engine.context import Engine
from sampan.errors import Conflict, InvalidArgument, NotFound
from sampan.snapshot import whiteout
from sampan.store import containers as records
from sampan.store.containers import ContainerRecord

TYPE_CHECKING = False
if TYPE_CHECKING:
    from sampan.engine.image_store import Layer, StoredImage
    from sampan.store.leases import Lease

_O_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_LOWER_RESOLVE = syscalls.RESOLVE_NO_SYMLINKS | syscalls.RESOLVE_BENEATH | syscalls.RESOLVE_NO_MAGICLINKS
_ABSENT = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EXDEV)

# What dockerd's init layer holds (daemon/initlayer): mount points the runtime creates when the image lacks them.
_INIT_FILES = frozenset({"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/.dockerenv", "/dev/console"})
_INIT_DIRS = frozenset({"/etc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/proc", "/sys"})

# The keys of Docker's container Config, in the order dockerd writes them into an image config.
_CONFIG_ORDER = ("Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "ExposedPorts",
                 "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "ArgsEscaped", "Image", "Volumes",
                 "WorkingDir", "Entrypoint", "NetworkDisabled", "MacAddress", "OnBuild", "Labels", "StopSignal",
                 "StopTimeout", "Shell")


# ---------------------------------------------------------------------------------------------- the container


def _fresh(engine: Engine, record: ContainerRecord) -> ContainerRecord:
    """The record re-read under the container's lock; a container being removed has no files to work on."""
    fresh = records.get(engine.db.conn, record.id)
    if fresh is None:
        raise NotFound(f"No such container: {record.id}")
    fresh = model.current(engine, fresh)
    if fresh.status == "removing" or not model.places(engine, fresh.id).diff.is_dir():
        raise Conflict(f"container {fresh.id} is marked for removal")
    return fresh


@contextmanager
def _root(engine: Engine, name: str) -> Iterator[tuple[ContainerRecord, str]]:
    """The container's record and the path of its mounted root, under the container's lock."""
    record = model.lookup(engine, name)
    with locked(engine, record.id):
        record = _fresh(engine, record)
        with rootfs.temporarily_mounted(engine, record, model.places(engine, record.id)) as root:
            yield record, root


def _mount_for(record: ContainerRecord, path: str) -> tuple[dict[str, Any] | None, str]:
    """The volume or bind mount that container path ``path`` lies in (the deepest one), and the path inside it;
    ``(None, path)`` when it lies in the container's own root. A trailing ``/`` or ``/.`` is kept, since it
    means "must be a directory" / "its contents" to ``copy``.

    Volumes and binds are mounted only inside the container's mount namespace, so the overlay root shows empty
    mount points; dockerd mounts them into the root for the copy. This covers the common case, a path under a
    mount destination, by copying in the mount's source directory, with that directory as the root. Not
    covered: a path that reaches a mount through a symlink in the container (matched on the path as written,
    after cleaning ``..``); an absolute symlink inside a volume (it resolves in the volume, not in the
    container's root); a directory copied out that contains a mount point (the mount point comes out empty);
    tmpfs mounts (``--tmpfs``, ``--mount type=tmpfs``) and volumes created with driver options (``-o type=...``),
    whose contents exist only while they are mounted (their empty mount point, or the directory below, is
    read and written instead)."""
    clean = posixpath.normpath("/" + path.lstrip("/"))
    found: dict[str, Any] | None = None
    found_at = ""
    for mount in record.mounts:
        if mount.get("Type") not in ("volume", "bind") or not mount.get("Source"):
            continue
        destination = posixpath.normpath("/" + str(mount.get("Destination", "")).lstrip("/"))
        if destination == "/":
            continue
        if (clean == destination or clean.startswith(destination + "/")) and len(destination) > len(found_at):
            found, found_at = mount, destination
    if found is None:
        return None, path
    rest = clean[len(found_at):] or "/"
    stripped = path.rstrip("/")
    if stripped == "." or stripped.endswith("/."):
        rest = rest.rstrip("/") + "/."
    elif path.endswith("/") and rest != "/":
        rest += "/"
    return found, rest


# ---------------------------------------------------------------------------------------------- cp


def copy_from_container(engine: Engine, name: str, src: str, dest: str, *, follow_link: bool = False) -> None:
    """``docker cp CONTAINER:SRC DEST``: ``dest`` is a host path or ``"-"`` (a tar stream on stdout).

    Host files are owned by the calling user, as the docker CLI writes them: its ``-a`` has no effect in this
    direction, so there is no such parameter here. A SRC inside a volume or bind mount is read from the mount's
    source directory, that directory taken as the root (see ``_mount_for`` for what is not covered)."""
    with _root(engine, name) as (record, root):
        mount, rest = _mount_for(record, src)
        if mount is None:
            copy.copy_out(root, src, dest, follow_link=follow_link, container=name)
        elif rest == "/":
            _copy_out_mount_point(str(mount["Source"]), src, dest, name)
        else:
            copy.copy_out(str(mount["Source"]), rest, dest, follow_link=follow_link, container=name)


def _copy_out_mount_point(source: str, src: str, dest: str, name: str) -> None:
    """SRC is the mount point itself: the directory is copied under its name in the container (the mount's
    source directory has another one)."""
    base = posixpath.basename(posixpath.normpath("/" + src.lstrip("/"))) or "."
    if dest == "-":
        root = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            writer = copy._TarWriter(sys.stdout.buffer)
            copy._walk(writer, root, base, include_root=True, owner=None)
            writer.close()
        finally:
            os.close(root)
        return
    if os.path.isdir(dest):
        dest = os.path.join(dest, base)
    copy.copy_out(source, "/.", dest, container=name)


def copy_to_container(engine: Engine, name: str, src: str, dest: str, *, follow_link: bool = False,
                      archive: bool = False) -> None:
    """``docker cp SRC CONTAINER:DEST``: ``src`` is a host path or ``"-"`` (a tar stream on stdin).

    Ownership is what dockerd really does, not what its documentation says (moby#34096): without ``archive``
    (``-a``) entries keep the uid/gid they have on the host (or in the tar stream); with it they are given the
    container's ``User``, resolved in the container's /etc/passwd and /etc/group (dockerd resolves it on the
    host, and fails for a numeric ``uid:gid`` it cannot find there), or keep theirs when the container has no
    ``User``. A container started with ``--read-only`` refuses writes into its root ("container rootfs is
    marked read-only") but not into its writable volumes; a read-only volume refuses them ("mounted volume is
    marked read-only"). A DEST inside a volume or bind mount is written into the mount's source directory,
    that directory taken as the root (see ``_mount_for`` for what is not covered)."""
    with _root(engine, name) as (record, root):
        mount, rest = _mount_for(record, dest)
        if mount is None and record.host_config.get("ReadonlyRootfs"):
            raise InvalidArgument("container rootfs is marked read-only")
        if mount is not None and not mount.get("RW", True):
            raise InvalidArgument("mounted volume is marked read-only")
        owner = (0, 0)
        user = str(record.config.get("User") or "")
        keep = not (archive and user)
        if not keep:
            from sampan.engine.specgen import lookup_user

            uid, gid, _ = lookup_user(root, user)
            owner = (uid, gid)
        if mount is None:
            copy.copy_in(root, src, dest, follow_link=follow_link, archive=keep, owner=owner, container=name)
        else:
            copy.copy_in(str(mount["Source"]), src, rest, follow_link=follow_link, archive=keep, owner=owner,
                         container=name)


# ---------------------------------------------------------------------------------------------- export


def export(engine: Engine, name: str, out: BinaryIO) -> None:
    """``docker export``: the container's whole root (without its volumes and binds) as a tar on ``out``.

    Entry names are relative (``bin``, ``bin/sh``) with no entry for the root itself, as dockerd writes them;
    sockets are left out. Directories on another file system than the root are written but not descended into.
    """
    with _root(engine, name) as (_record, root):
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            writer = copy._TarWriter(out)
            _export_tree(writer, fd)
            writer.close()
        finally:
            os.close(fd)


def _export_tree(writer: copy._TarWriter, root_fd: int) -> None:
    """The container's root as Docker exports it: relative names, this filesystem only (not the mounts in it)."""
    links: dict[tuple[int, int], str] = {}
    for fd, st, name in copy.walk_below(root_fd, "", same_device=True):
        copy._emit(writer, fd, st, name[1:], None, links)  # "/etc" under an empty top: "etc"


# ---------------------------------------------------------------------------------------------- diff


@dataclass(frozen=True)
class Change:
    """One line of ``docker diff``: ``kind`` is "A", "C" or "D"."""

    kind: str
    path: str

    @property
    def docker_kind(self) -> int:
        """The number the Engine API uses (0 modified, 1 added, 2 deleted)."""
        return {"C": 0, "A": 1, "D": 2}[self.kind]

    def __str__(self) -> str:
        return f"{self.kind} {self.path}"


def diff(engine: Engine, name: str) -> list[Change]:
    """``docker diff``: the container's changes to its image, sorted by path (see the module doc)."""
    record = model.lookup(engine, name)
    upper = model.places(engine, record.id).diff
    if not upper.is_dir():
        raise Conflict(f"container {record.id} is marked for removal")
    with _Lower(rootfs.lower_dirs(engine, record.image_id)) as lower:
        scan = _Scan(str(upper), lower, None)
        scan.run()
    return [Change(kind, path) for path, kind in sorted(scan.changes.items(), key=lambda item: item[0].split("/"))]


class _Lower:
    """The image's snapshots (top first) seen as overlayfs stacks them, without ever following a symlink.

    A directory's view is the tuple of layer indexes that contribute to it: from the first layer that has it,
    down through the layers that also have a directory there, stopping after an opaque one and before a
    whiteout or a non-directory.
    """

    def __init__(self, dirs: list[str]) -> None:
        self.fds: list[int] = []
        try:
            for path in dirs:
                self.fds.append(os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    @property
    def everything(self) -> tuple[int, ...]:
        return tuple(range(len(self.fds)))

    def _open(self, layer: int, path: str, flags: int) -> int | None:
        try:
            return syscalls.openat2(self.fds[layer], path.lstrip("/") or ".", flags, _LOWER_RESOLVE)
        except OSError as exc:
            if exc.errno in _ABSENT:
                return None
            raise

    def _lstat(self, layer: int, path: str) -> os.stat_result | None:
        fd = self._open(layer, path, _O_PATH)
        if fd is None:
            return None
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)

    def _opaque(self, layer: int, path: str) -> bool:
        fd = self._open(layer, path, _O_DIR)
        if fd is None:
            return False
        try:
            return whiteout.is_overlay_opaque(fd)
        finally:
            os.close(fd)

    def lookup(self, layers: tuple[int, ...], path: str, want_view: bool) -> tuple[os.stat_result | None,
                                                                                    tuple[int, ...]]:
        """``path``'s lstat in the image (None if absent) and, with ``want_view``, its directory view."""
        found: os.stat_result | None = None
        view: list[int] = []
        for layer in layers:
            st = self._lstat(layer, path)
            if st is None:
                continue
            if found is None:
                if whiteout.is_overlay_whiteout(st):
                    return None, ()
                found = st
                if not stat.S_ISDIR(st.st_mode) or not want_view:
                    return found, ()
            elif not stat.S_ISDIR(st.st_mode):
                break
            view.append(layer)
            if self._opaque(layer, path):
                break
        return found, tuple(view)

    def names(self, layers: tuple[int, ...], path: str) -> list[str]:
        """The names the image has in directory ``path`` (whose view is ``layers``)."""
        present: dict[str, bool] = {}
        for layer in layers:
            fd = self._open(layer, path, _O_DIR)
            if fd is None:
                continue
            try:
                for entry in os.listdir(fd):
                    if entry not in present:
                        try:
                            st = os.stat(entry, dir_fd=fd, follow_symlinks=False)
                        except FileNotFoundError:
                            continue
                        present[entry] = not whiteout.is_overlay_whiteout(st)
            finally:
                os.close(fd)
        return [entry for entry, there in present.items() if there]


class _Frame:
    """A directory of the upper layer being walked."""

    __slots__ = ("changed", "fd", "hidden", "names", "path", "pending", "st", "upper_names", "view")

    def __init__(self, fd: int, path: str, st: os.stat_result, view: tuple[int, ...], hidden: bool,
                 pending: bool) -> None:
        self.fd = fd
        self.path = path  # "/" for the root, else "/a/b"
        self.st = st
        self.view = view  # the image's layers that contribute to this directory
        self.hidden = hidden  # the image's entries here are hidden (an opaque directory here or above)
        self.pending = pending  # its tar entry is written only if something below it is
        self.changed = False
        self.upper_names = sorted(os.listdir(fd))
        self.names = iter(self.upper_names)

    def child(self, name: str) -> str:
        return f"{self.path.rstrip('/')}/{name}"


class _Scan:
    """One walk of the upper layer against the image: the changes (``diff``) and, with a writer, the layer tar
    (``commit``)."""

    def __init__(self, upper: str, lower: _Lower, writer: copy._TarWriter | None) -> None:
        self.upper = upper
        self.lower = lower
        self.writer = writer
        self.changes: dict[str, str] = {}
        self.entries = 0
        self.links: dict[tuple[int, int], str] = {}
        self.stack: list[_Frame] = []

    def run(self) -> None:
        fd = os.open(self.upper, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            opaque = whiteout.is_overlay_opaque(fd)
            self.stack.append(_Frame(fd, "/", os.fstat(fd), self.lower.everything, opaque, False))
        except BaseException:
            os.close(fd)
            raise
        try:
            while self.stack:
                frame = self.stack[-1]
                name = next(frame.names, None)
                if name is None:
                    self._leave(frame)
                    continue
                self._visit(frame, name)
        finally:
            for frame in self.stack:
                os.close(frame.fd)
            self.stack = []

    # -- recording

    def _record(self, frame: _Frame, path: str, kind: str) -> None:
        self.changes[path] = kind
        frame.changed = True

    def _flush(self) -> None:
        """Write the entries of the pending directories above what is about to be written."""
        assert self.writer is not None
        for frame in self.stack[1:]:
            if frame.pending:
                frame.pending = False
                self._emit(frame.fd, frame.st, frame.path)

    def _emit(self, fd: int, st: os.stat_result, path: str) -> None:
        assert self.writer is not None
        copy._emit(self.writer, fd, st, path.lstrip("/"), None, self.links)
        self.entries += 1

    def _emit_marker(self, name: str, st: os.stat_result, mode: int, mtime: int) -> None:
        assert self.writer is not None
        info = tarfile.TarInfo(name.lstrip("/"))
        info.type = tarfile.REGTYPE
        info.mode = mode
        info.uid, info.gid = st.st_uid, st.st_gid
        info.mtime = mtime
        self.writer.add(info, None)
        self.entries += 1

    # -- walking

    def _leave(self, frame: _Frame) -> None:
        self.stack.pop()
        try:
            if frame.hidden and frame.view:
                upper = set(frame.upper_names)
                for name in self.lower.names(frame.view, frame.path):
                    if name not in upper:
                        self._record(frame, frame.child(name), "D")
        finally:
            os.close(frame.fd)
        if frame.changed and self.stack:
            if frame.path not in self.changes:
                self.changes[frame.path] = "C"
            self.stack[-1].changed = True

    def _visit(self, frame: _Frame, name: str) -> None:
        path = frame.child(name)
        try:
            fd = os.open(name, _O_PATH, dir_fd=frame.fd)
        except FileNotFoundError:
            return  # removed meanwhile (a running container, not paused)
        try:
            st = os.fstat(fd)
            is_dir = stat.S_ISDIR(st.st_mode)
            lower, view = self.lower.lookup(frame.view, path, is_dir) if frame.view else (None, ())
            if whiteout.is_overlay_whiteout(st):
                if lower is not None:
                    self._record(frame, path, "D")
                    if self.writer is not None:
                        self._flush()
                        self._emit_marker(whiteout.oci_whiteout_name(path), st, 0o600, int(st.st_mtime))
                return
            if lower is None and (path in _INIT_DIRS and is_dir or
                                  path in _INIT_FILES and stat.S_ISREG(st.st_mode) and st.st_size == 0):
                if is_dir:
                    self._enter(fd, path, st, (), frame.hidden, opaque=False, pending=True)
                return  # a mount point the runtime made: in dockerd's init layer, not the container's changes
            if not is_dir:
                self._record(frame, path, "A" if lower is None else "C")
                if self.writer is not None and not whiteout.is_whiteout_name(name):
                    self._flush()
                    self._emit(fd, st, path)
                return
            self._directory(frame, fd, path, st, lower, view)
        finally:
            os.close(fd)

    def _directory(self, frame: _Frame, fd: int, path: str, st: os.stat_result, lower: os.stat_result | None,
                   view: tuple[int, ...]) -> None:
        dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
        try:
            opaque = whiteout.is_overlay_opaque(dfd)
        except BaseException:
            os.close(dfd)
            raise
        same = lower is not None and stat.S_ISDIR(lower.st_mode) and not opaque and \
            (stat.S_IMODE(lower.st_mode), lower.st_uid, lower.st_gid) == \
            (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
        kind = None if same else "A" if lower is None else "C"
        if kind is not None:
            self._record(frame, path, kind)
        skip = whiteout.is_whiteout_name(posixpath.basename(path))
        if skip and self.writer is not None:
            os.close(dfd)  # not representable in a layer, nor anything below it
            return
        # Unchanged directories are written only if something below them is, except under an opaque directory,
        # where the image's own copy is hidden and the layer must recreate it.
        pending = kind is None and not frame.hidden
        if self.writer is not None and not pending:
            self._flush()
            self._emit(dfd, st, path)
            if opaque:
                self._emit_marker(whiteout.oci_opaque_marker(path), st, stat.S_IMODE(st.st_mode) & 0o777, 0)
        hidden = frame.hidden or opaque
        self._enter(dfd, path, st, view if lower is not None and stat.S_ISDIR(lower.st_mode) else (), hidden,
                    opaque=opaque, pending=pending, owned=True)

    def _enter(self, fd: int, path: str, st: os.stat_result, view: tuple[int, ...], hidden: bool, *,
               opaque: bool, pending: bool, owned: bool = False) -> None:
        if not owned:
            fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
        try:
            frame = _Frame(fd, path, st, view, hidden, pending and self.writer is not None)
        except BaseException:
            os.close(fd)
            raise
        self.stack.append(frame)


# ---------------------------------------------------------------------------------------------- commit


def docker_order(config: dict[str, Any]) -> dict[str, Any]:
    ordered = {key: config[key] for key in _CONFIG_ORDER if key in config}
    ordered.update((key, value) for key, value in config.items() if key not in ordered)
    return ordered


def commit_config(record: ContainerRecord, changes: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The committed image's ``config``: the container's Config with the ``-c`` instructions applied over it
    (dockerd's ``BuildFromConfig`` then ``merge``). Raises InvalidArgument for a bad instruction."""
    import json

    from sampan.image.changes import apply_change

    config = json.loads(json.dumps(record.config))
    for change in changes:
        apply_change(config, change)
    return docker_order(config)


def write_layer(engine: Engine, container_id: str, out: int) -> int:
    """Write a stopped container's changes (its upper layer against its image) as an OCI layer tar to fd ``out``;
    returns the number of entries (0: the container changed nothing). ``build`` commits each step with it."""
    record = model.lookup(engine, container_id)
    with _Lower(rootfs.lower_dirs(engine, record.image_id)) as lower:
        writer = copy._TarWriter(out)
        scan = _Scan(str(model.places(engine, record.id).diff), lower, writer)
        scan.run()
        writer.close()
    return scan.entries


@contextmanager
def _paused(engine: Engine, record: ContainerRecord, pause: bool) -> Iterator[None]:
    """Pause a running container while its layer is read (a container the user paused stays paused)."""
    if not pause or record.status != "running":
        yield
        return
    from sampan.engine.containers import lifecycle

    lifecycle.pause(engine, record.id)
    try:
        yield
    finally:
        lifecycle.unpause(engine, record.id)


def base_layers(engine: Engine, lease: Lease, image_id: str) -> list[Layer]:
    """The image's stored layers, protected by the lease while the new image is committed."""
    from sampan.engine.image_store import Layer
    from sampan.image.manifest import Descriptor
    from sampan.snapshot.snapshots import Snapshot
    from sampan.store import images as image_records

    rows = image_records.layers_of(engine.db.conn, image_id)
    with engine.db.transaction() as tx:
        for row in rows:
            lease.add(tx, "snapshot", row["chain_id"])
            lease.add(tx, "blob", row["blob_digest"])
    layers = []
    for row in rows:
        if row["diff_id"] is None or row["blob_size"] is None:
            raise NotFound(f"layer {row['chain_id']} of image {image_id} is missing: run 'sampan system check'")
        layers.append(Layer(Descriptor(row["media_type"], row["blob_digest"], row["blob_size"]),
                            Snapshot(row["chain_id"], row["diff_id"], row["size"])))
    return layers


def commit(engine: Engine, name: str, *, reference: str | None = None, author: str = "", message: str = "",
           changes: list[str] | tuple[str, ...] = (), pause: bool = True) -> StoredImage:
    """``docker commit``: a new image made of the container's image plus its writable layer.

    The image config is dockerd's: the base image's platform, ``config`` = the container's Config with the
    ``changes`` over it, ``container_config`` = the container's Config, ``container`` = its ID, ``author``,
    ``created``, and the base history plus one entry (``created_by`` = the container's Cmd joined by spaces,
    the ``author`` and ``message`` as its comment). The message is also the config's top-level ``comment``,
    which ``image inspect`` shows. ``reference`` (``REPO[:TAG]``) tags the image. ``pause`` pauses a running
    container while its layer is read. The layer is stored uncompressed, as dockerd stores it.
    """
    from sampan.engine import images
    from sampan.engine.image_store import commit_image, put_blob, unpack_layer_blob
    from sampan.engine.operation import storing
    from sampan.image import mediatypes as mt
    from sampan.image import reference as refs
    from sampan.image.config import format_time, host_architecture
    from sampan.image.manifest import canonical_json

    tags = [refs.parse_tag_target(reference)] if reference else []
    record = model.lookup(engine, name)
    config = commit_config(record, changes)
    where = model.places(engine, record.id)
    with tempfile.TemporaryFile(dir=engine.layout.tmp) as layer_file:
        with locked(engine, record.id):
            record = _fresh(engine, record)
            with _Lower(rootfs.lower_dirs(engine, record.image_id)) as lower, _paused(engine, record, pause):
                writer = copy._TarWriter(layer_file.fileno())
                scan = _Scan(str(where.diff), lower, writer)
                scan.run()
                writer.close()
        layer_file.seek(0)
        base = images.load_config(engine, record.image_id)
        created = time.time()
        with storing(engine) as lease:
            layers = base_layers(engine, lease, record.image_id)
            if scan.entries:
                blob = put_blob(engine, lease, layer_file, media_type=mt.OCI_LAYER)
                parent = layers[-1].snapshot.chain_id if layers else None
                layers.append(unpack_layer_blob(engine, lease, blob, parent, None))
            entry: dict[str, Any] = {"created": format_time(created)}
            if author:
                entry["author"] = author
            entry["created_by"] = " ".join(record.config.get("Cmd") or [])
            if message:
                entry["comment"] = message
            if not scan.entries:
                entry["empty_layer"] = True
            raw: dict[str, Any] = {"architecture": base.architecture or host_architecture()}
            if author:
                raw["author"] = author
            if message:
                raw["comment"] = message
            raw.update({"config": config, "container": record.id,
                        "container_config": docker_order(record.config), "created": format_time(created),
                        "history": [*base.history, entry], "os": base.os or "linux"})
            for key in ("os.version", "variant"):
                if base.raw.get(key):
                    raw[key] = base.raw[key]
            raw["rootfs"] = {"type": "layers", "diff_ids": [layer.snapshot.diff_id for layer in layers]}
            stored = commit_image(engine, lease, canonical_json(raw), layers, tags=tags, parent=record.image_id)
    from sampan.engine import events

    events.record(engine, "container", "commit", record.id,
                  events.container_attributes(record, comment=message, author=author))
    return stored
