"""A container's files as tar streams, for the API's ``/containers/{id}/archive`` (``docker cp`` through a
daemon): stat a path, read a path as a tar stream, extract a tar stream into a directory.

The CLI's ``cp`` (``containers.files``) reads and writes host paths or stdio; the API needs the same operations
on streams it is given, with the stat the docker CLI asks for first (``X-Docker-Container-Path-Stat``). Every
path inside the container is still resolved fd-relative with ``RESOLVE_IN_ROOT`` by ``containers.copy``'s
functions, under the container's lock and with its root mounted, and volumes and binds are read and written in
their source directories as ``files._mount_for`` says, exactly as the CLI's ``cp`` does.
"""

from __future__ import annotations

import os
import posixpath
import stat
import time
from typing import Any, BinaryIO

from sampan.engine.containers import copy, files
from sampan.engine.context import Engine
from sampan.errors import InvalidArgument, NotFound

_O_DIR_READ = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC

# Go's os.FileMode type bits, which the stat header carries.
_GO_DIR, _GO_SYMLINK, _GO_DEVICE, _GO_PIPE, _GO_SOCKET = 1 << 31, 1 << 27, 1 << 26, 1 << 25, 1 << 24
_GO_SETUID, _GO_SETGID, _GO_CHARDEV, _GO_STICKY = 1 << 23, 1 << 22, 1 << 21, 1 << 20


def go_file_mode(mode: int) -> int:
    out = mode & 0o777
    kind = stat.S_IFMT(mode)
    out |= {stat.S_IFDIR: _GO_DIR, stat.S_IFLNK: _GO_SYMLINK, stat.S_IFIFO: _GO_PIPE, stat.S_IFSOCK: _GO_SOCKET,
            stat.S_IFBLK: _GO_DEVICE, stat.S_IFCHR: _GO_DEVICE | _GO_CHARDEV}.get(kind, 0)
    if mode & stat.S_ISUID:
        out |= _GO_SETUID
    if mode & stat.S_ISGID:
        out |= _GO_SETGID
    if mode & stat.S_ISVTX:
        out |= _GO_STICKY
    return out


def _base(record: Any, root: str, path: str) -> tuple[str, str, dict[str, Any] | None]:
    """(directory taken as the root, path inside it, the mount it lies in) for container path ``path``."""
    mount, rest = files._mount_for(record, path)
    if mount is None:
        return root, path, None
    return str(mount["Source"]), rest, mount


def _stat_in(base: str, path: str, name: str, original: str) -> dict[str, Any]:
    root = os.open(base, _O_DIR_READ)
    try:
        clean = copy._clean(path)
        st = copy._lstat(root, clean)
        if st is None:
            raise NotFound(f"Could not find the file {original} in container {name}")
        link_target = ""
        if stat.S_ISLNK(st.st_mode):
            followed, _ = copy._follow(root, clean)
            link_target = followed
        return {"name": posixpath.basename(posixpath.normpath("/" + original.lstrip("/"))) or "/",
                "size": st.st_size, "mode": go_file_mode(st.st_mode),
                "mtime": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(st.st_mtime)) +
                f".{int(st.st_mtime_ns % 1_000_000_000):09d}Z", "linkTarget": link_target}
    finally:
        os.close(root)


def stat_path(engine: Engine, name: str, path: str) -> dict[str, Any]:
    """Docker's ``ContainerPathStat`` of ``path``: name, size, mode (Go's FileMode bits), mtime, linkTarget."""
    if not path:
        raise InvalidArgument("path can not be empty")
    with files._root(engine, name) as (record, root):
        base, inner, _ = _base(record, root, path)
        return _stat_in(base, inner, name, path)


def read_archive(engine: Engine, name: str, path: str, out: BinaryIO) -> dict[str, Any]:
    """Write ``path`` as a tar stream (top entry named after it, as dockerd) to ``out``; returns its stat."""
    if not path:
        raise InvalidArgument("path can not be empty")
    with files._root(engine, name) as (record, root):
        base, inner, mount = _base(record, root, path)
        info = _stat_in(base, inner, name, path)
        root_fd = os.open(base, _O_DIR_READ)
        try:
            if mount is not None and inner == "/":  # the mount point itself: named as in the container
                top = posixpath.basename(posixpath.normpath("/" + path.lstrip("/"))) or "."
                writer = copy._TarWriter(out)
                copy._walk(writer, root_fd, top, include_root=True, owner=None)
                writer.close()
                return info
            source = copy._container_source(root_fd, inner, False, f"container {name}")
            try:
                writer = copy._TarWriter(out)
                copy._walk(writer, source.fd, source.stream_name, include_root=True, owner=None)
                writer.close()
            finally:
                os.close(source.fd)
        finally:
            os.close(root_fd)
        return info


def extract_archive(engine: Engine, name: str, path: str, stream: BinaryIO, *, copy_uid_gid: bool = False) -> None:
    """Extract the tar ``stream`` into directory ``path`` of the container (``PUT .../archive``). Entries keep
    the tar's owners unless ``copy_uid_gid`` gives them the container's ``User`` (dockerd's real behaviour, see
    ``files.copy_to_container``)."""
    if not path:
        raise InvalidArgument("path can not be empty")
    with files._root(engine, name) as (record, root):
        base, inner, mount = _base(record, root, path)
        if mount is None and record.host_config.get("ReadonlyRootfs"):
            raise InvalidArgument("container rootfs is marked read-only")
        if mount is not None and not mount.get("RW", True):
            raise InvalidArgument("mounted volume is marked read-only")
        ids = None
        user = str(record.config.get("User") or "")
        if copy_uid_gid and user:
            from sampan.engine.specgen import lookup_user

            uid, gid, _ = lookup_user(root, user)
            ids = (uid, gid)
        root_fd = os.open(base, _O_DIR_READ)
        try:
            dest_path, st = copy._container_destination(root_fd, inner)
            if st is None:
                raise NotFound(f"Could not find the file {path} in container {name}")
            if not stat.S_ISDIR(st.st_mode):
                raise InvalidArgument(f"extraction point {path} is not a directory")
            copy._check_extraction_point(root_fd, dest_path, f"container {name}")
            prefix = copy._rel(dest_path)
            try:
                copy._pipe(lambda writer: copy._retar(stream, writer, prefix, ids),
                           lambda tar: copy._unpack_into(tar, base))
            except OSError as e:
                raise InvalidArgument(f"extracting into {path}: {e.strerror or e}") from None
        finally:
            os.close(root_fd)
