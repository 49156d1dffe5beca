"""``docker cp``: copy files between a container's root file system and the host, safe against symlink races.

The container's tree is untrusted and may change while we copy: its processes can swap a directory for a
symlink to ``/`` or to a host path at any instant (CVE-2018-15664, which hit Docker because it resolved a path
and then used it). So no path inside ``rootfs`` is ever handed to a path-based call here:

- a container path is opened with ``openat2(RESOLVE_IN_ROOT)`` from an fd of ``rootfs``, so every symlink and
  ``..`` on the way resolves as if ``rootfs`` were ``/``, whatever it is at that instant;
- a tree is walked from fds: each child is opened by its one-component name relative to its parent's fd with
  ``O_PATH|O_NOFOLLOW``, typed by ``fstat`` of that fd, listed through ``"."`` under it, and (regular files only)
  opened for reading by re-opening that very inode, so a swap can change which inode we copy but never make us
  follow a link or open a device node the container planted;
- writes into the container go through ``sampan.snapshot.unpack.unpack_layer``, which creates every entry
  fd-relative under a parent opened with ``RESOLVE_IN_ROOT`` and never follows the final component.

Host paths (the user's SRC or DEST) are trusted. Both directions are a tar stream in the middle, as in Docker:
a producer walks the source and writes tar (only headers come from ``tarfile``), a consumer is stdout or
``unpack_layer`` into the destination directory.

Path semantics follow the docker CLI (``cli/command/container/cp.go``) and moby's ``pkg/archive/copy.go``:
SRC file → DEST file (created or replaced) or into DEST dir; SRC dir → DEST/basename(SRC) when DEST is a
directory, else DEST is created with SRC's contents; SRC ending in ``/.`` copies the contents; DEST ending in
``/`` must be a directory ("no such directory" when a file would have to create it); a directory cannot replace
a file nor the reverse. Ownership: see ``copy_out`` and ``copy_in``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import posixpath
import stat
import sys
import tarfile
import threading
from collections.abc import Callable, Iterator
from typing import IO, BinaryIO

from sampan import errors
from sampan._linux import syscalls
from sampan.snapshot.unpack import unpack_layer

_RESOLVE = syscalls.RESOLVE_IN_ROOT | syscalls.RESOLVE_NO_MAGICLINKS
_O_PATH = os.O_PATH | os.O_CLOEXEC
_O_DIR_READ = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_MAX_LINKS = 40  # symlink hops followed by hand (the kernel's own limit)
_CHUNK = 1 << 20
_BLOCK = 512
_PIPE_SIZE = 1 << 20
_KINDS = {stat.S_IFREG: tarfile.REGTYPE, stat.S_IFDIR: tarfile.DIRTYPE, stat.S_IFLNK: tarfile.SYMTYPE,
          stat.S_IFCHR: tarfile.CHRTYPE, stat.S_IFBLK: tarfile.BLKTYPE, stat.S_IFIFO: tarfile.FIFOTYPE}
# Extended attributes carried over: what unpack_layer accepts (trusted.* and other security.* never).
_XATTR_NAMES = frozenset(("security.capability", "system.posix_acl_access", "system.posix_acl_default"))


def copy_out(rootfs: str, src: str, dest: str, *, follow_link: bool = False, archive: bool = False,
             container: str = "") -> None:
    """``docker cp CONTAINER:SRC DEST``: copy ``src`` from the container rooted at ``rootfs`` to the host.

    ``src`` is absolute or relative to the container's ``/``. ``dest`` is a host path, or ``"-"`` to write a
    tar stream of SRC to ``sys.stdout.buffer`` (with the container's uid/gid, as Docker's stream has).
    ``follow_link`` (``-L``) follows SRC itself when it is a symlink; the copy keeps SRC's name. Files written
    on the host are owned by the calling user, as Docker's CLI writes them (moby ``CopyTo`` uses
    ``NoLchown``); ``archive`` (``-a``) keeps the container's uid/gid instead, the documented meaning of ``-a``
    (Docker's CLI ignores ``-a`` when copying out). ``container`` only names the container in messages.
    Raises NotFound or InvalidArgument.
    """
    _check_args(src, dest)
    _guarded(lambda: _copy_out(rootfs, src, dest, follow_link, archive, _where(container)), dest)


def _copy_out(rootfs: str, src: str, dest: str, follow_link: bool, archive: bool, where: str) -> None:
    root = os.open(rootfs, _O_DIR_READ)
    try:
        source = _container_source(root, src, follow_link, where)
        try:
            if dest == "-":
                writer = _TarWriter(sys.stdout.buffer)
                _walk(writer, source.fd, source.stream_name, include_root=True, owner=None)
                writer.close()
                return
            owner = None if archive else (os.geteuid(), os.getegid())
            target, top, include_root = _host_destination(dest, source)
            _pipe(lambda writer: _walk(writer, source.fd, top, include_root=include_root, owner=owner),
                  lambda stream: unpack_layer(stream, target, whiteouts="keep", no_overwrite_dir_nondir=True))
        finally:
            os.close(source.fd)
    finally:
        os.close(root)


def copy_in(rootfs: str, src: str, dest: str, *, follow_link: bool = False, archive: bool = False,
            owner: tuple[int, int] = (0, 0), container: str = "") -> None:
    """``docker cp SRC CONTAINER:DEST``: copy host ``src`` into the container rooted at ``rootfs``.

    ``src`` is a host path, or ``"-"`` for a tar stream (optionally compressed) on ``sys.stdin.buffer``,
    extracted into DEST, which must then be a directory. ``dest`` is absolute or relative to the container's
    ``/``; a DEST that is a symlink is followed inside the container, as Docker does. ``follow_link`` (``-L``)
    follows host SRC itself when it is a symlink. Without ``archive`` every copied entry gets ``owner``
    (uid, gid): the caller passes the container's root or its user, the ownership Docker documents for cp;
    with ``archive`` (``-a``) the source's uid/gid are kept. (Docker's daemon does the reverse of its docs —
    moby#34096, moby#45793 — sampan follows the documentation.) Names beginning with ``.wh.`` are plain files
    here, as in Docker's cp. Raises NotFound or InvalidArgument.
    """
    _check_args(src, dest)
    ids = None if archive else owner
    label = f"{container}:{dest}" if container else dest
    _guarded(lambda: _copy_in(rootfs, src, dest, follow_link, ids, _where(container), label), dest)


def _copy_in(rootfs: str, src: str, dest: str, follow_link: bool, ids: tuple[int, int] | None, where: str,
             label: str) -> None:
    root = os.open(rootfs, _O_DIR_READ)
    try:
        dest_path, st = _container_destination(root, dest)
        if st is not None and not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            raise errors.InvalidArgument(f'destination "{label}" must be a directory or a regular file')
        exists, is_dir = st is not None, st is not None and stat.S_ISDIR(st.st_mode)
        if src == "-":
            if not is_dir:
                raise errors.InvalidArgument(f'destination "{label}" must be a directory')
            _check_extraction_point(root, dest_path, where)
            prefix = _rel(dest_path)
            _pipe(lambda writer: _retar(sys.stdin.buffer, writer, prefix, ids),
                  lambda stream: _unpack_into(stream, rootfs))
            return
        source = _host_source(src, follow_link)
        try:
            target_dir, top, include_root = _plan(dest_path, exists, is_dir, _asserts_dir(dest), source, dest)
            _check_extraction_point(root, target_dir, where)
            name = posixpath.join(_rel(target_dir), top) if _rel(target_dir) else top
            _pipe(lambda writer: _walk(writer, source.fd, name, include_root=include_root, owner=ids),
                  lambda stream: _unpack_into(stream, rootfs))
        finally:
            os.close(source.fd)
    finally:
        os.close(root)


def _check_args(src: str, dest: str) -> None:
    if not src:
        raise errors.InvalidArgument("source can not be empty")
    if not dest:
        raise errors.InvalidArgument("destination can not be empty")


def _where(container: str) -> str:
    return f"container {container}" if container else "the container"


# --- sources -----------------------------------------------------------------------------------------------


class _Source:
    """An opened copy source: an ``O_PATH`` fd on it, whether it is a directory, and how to name it.

    ``name`` is the base name the copy takes (SRC's own, even when a link was followed); ``contents`` is true
    when SRC asked for its contents (``dir/.``, or the root). ``stream_name`` is the top entry name Docker puts
    in a ``-`` stream.
    """

    __slots__ = ("contents", "fd", "is_dir", "name", "stream_name")

    def __init__(self, fd: int, name: str, contents: bool, stream_name: str) -> None:
        self.fd = fd
        self.is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        self.name = name
        self.contents = contents and self.is_dir
        self.stream_name = "." if self.contents else stream_name


def _container_source(root: int, src: str, follow_link: bool, where: str) -> _Source:
    """Open container path ``src`` inside ``root``: its parents are resolved in the root, its last component
    only when it must be a directory (trailing ``/`` or ``/.``) or with ``follow_link``."""
    path = _clean(src)
    asserts_dir = _asserts_dir(src)
    stream_name = posixpath.basename(path)
    try:
        if follow_link and not asserts_dir:
            path, st = _follow(root, path)
            if st is None:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
            stream_name = posixpath.basename(path)
        flags = _O_PATH | (os.O_DIRECTORY if asserts_dir else os.O_NOFOLLOW)
        fd = syscalls.openat2(root, _rel(path) or ".", flags, _RESOLVE)
    except (FileNotFoundError, NotADirectoryError) as exc:
        if exc.errno == errno.ENOTDIR and asserts_dir:
            raise errors.InvalidArgument(f"{src}: not a directory") from None
        raise errors.NotFound(f"Could not find the file {_clean(src)} in {where}") from None
    except OSError as exc:
        raise errors.InvalidArgument(f"cannot open {src} in {where}: {exc.strerror}") from None
    name = posixpath.basename(_clean(src))
    return _Source(fd, name, _specifies_current_dir(src) or path == "/", stream_name or ".")


def _host_source(src: str, follow_link: bool) -> _Source:
    """Open host path ``src`` (trusted) the way the docker CLI resolves a copy source: parent symlinks are
    followed, the last component only with ``follow_link`` or a trailing ``/`` or ``/.``."""
    path = os.path.abspath(src)
    asserts_dir = _asserts_dir(src)
    flags = _O_PATH | (os.O_DIRECTORY if asserts_dir else 0) | (0 if follow_link or asserts_dir else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise errors.NotFound(f"{src}: no such file or directory") from None
    except OSError as exc:
        raise errors.InvalidArgument(f"{src}: {exc.strerror}") from None
    name = "." if path == "/" else posixpath.basename(path)
    return _Source(fd, name, _specifies_current_dir(src) or path == "/", name)


# --- destinations ------------------------------------------------------------------------------------------


def _host_destination(dest: str, source: _Source) -> tuple[str, str, bool]:
    """Where on the host to extract and under which top name (docker CLI ``ValidateOutputPath``, then
    ``CopyInfoDestinationPath`` and ``PrepareArchiveCopy``); host symlinks are followed, up to 10."""
    path = os.path.abspath(dest)
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        if not os.path.exists(parent):
            raise errors.InvalidArgument(f'invalid output path: directory "{parent}" does not exist')
        raise errors.InvalidArgument(f"{dest}: not a directory")
    asserts_dir = _asserts_dir(dest)
    try:
        st: os.stat_result | None = os.lstat(path + "/" if asserts_dir else path)
        hops = 0
        while st is not None and stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > 10:
                raise errors.InvalidArgument(f"too many symlinks in {dest}")
            path = os.path.normpath(os.path.join(os.path.dirname(path), os.readlink(path)))
            asserts_dir = False
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                st = None
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise errors.InvalidArgument(f"{dest}: not a directory") from None
    if st is None and not os.path.isdir(os.path.dirname(path)):
        raise errors.NotFound(f"{os.path.dirname(path)}: no such directory")
    if st is not None and not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        raise errors.InvalidArgument(f'invalid output path: "{dest}" must be a directory or a regular file')
    is_dir = st is not None and stat.S_ISDIR(st.st_mode)
    return _plan(path, st is not None, is_dir, asserts_dir, source, dest)


def _container_destination(root: int, dest: str) -> tuple[str, os.stat_result | None]:
    """DEST inside the container as the docker CLI sees it: ``(path, lstat or None)`` after following DEST
    itself while it is a symlink (inside the root, joined lexically like the CLI's ``filepath.Join``)."""
    path, st = _follow(root, _clean(dest))
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise errors.InvalidArgument(f"too many symlinks in {dest}")
    if st is not None and _asserts_dir(dest) and not stat.S_ISDIR(st.st_mode):
        return path, None  # "file/": the daemon's stat fails with ENOTDIR and the CLI treats DEST as absent
    return path, st


def _plan(path: str, exists: bool, is_dir: bool, asserts_dir: bool, source: _Source,
          dest: str) -> tuple[str, str, bool]:
    """moby ``PrepareArchiveCopy``: ``(directory to extract into, top entry name, whether to write the top
    entry)`` for a source copied to ``path``."""
    if exists and is_dir:
        # Into the directory as-is; "dir/." lands its contents there, and the existing directory keeps its own
        # metadata (Docker's untar skips a "." entry over an existing directory).
        return path, "." if source.contents else source.name, not source.contents
    base = posixpath.basename(path.rstrip("/")) or "."
    parent = posixpath.dirname(path.rstrip("/")) or "/"
    if exists and source.is_dir:
        raise errors.InvalidArgument(f"cannot copy directory: {dest} is not a directory")
    if not exists and not source.is_dir and asserts_dir:
        raise errors.InvalidArgument(f"no such directory: {dest}")
    return parent, base, True


def _check_extraction_point(root: int, path: str, where: str) -> None:
    """The directory that will be extracted into must exist, as a directory, inside the root."""
    try:
        os.close(syscalls.openat2(root, _rel(path) or ".", _O_PATH | os.O_DIRECTORY, _RESOLVE))
    except FileNotFoundError:
        raise errors.NotFound(f"Could not find the file {path} in {where}") from None
    except NotADirectoryError:
        raise errors.InvalidArgument(f"extraction point {path} is not a directory") from None
    except OSError as exc:
        raise errors.InvalidArgument(f"cannot open {path} in {where}: {exc.strerror}") from None


def _follow(root: int, path: str) -> tuple[str, os.stat_result | None]:
    """Follow ``path`` while its last component is a symlink, resolving in the root; ``(path, lstat or None)``.

    Link targets are joined to the link's directory lexically, as the docker CLI does; each lookup still goes
    through ``RESOLVE_IN_ROOT``, so the result only names something inside the container.
    """
    st = _lstat(root, path)
    for _ in range(_MAX_LINKS):
        if st is None or not stat.S_ISLNK(st.st_mode):
            break
        target = _readlink(root, path)
        if target is None:
            return path, None
        path = _clean(posixpath.join(posixpath.dirname(path), target))
        st = _lstat(root, path)
    return path, st


def _lstat(root: int, path: str) -> os.stat_result | None:
    try:
        fd = syscalls.openat2(root, _rel(path) or ".", _O_PATH | os.O_NOFOLLOW, _RESOLVE)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None
        raise
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def _readlink(root: int, path: str) -> str | None:
    """The target of the symlink at ``path`` (None if it is no longer one)."""
    try:
        fd = syscalls.openat2(root, _rel(path), _O_PATH | os.O_NOFOLLOW, _RESOLVE)
    except OSError:
        return None
    try:
        return os.readlink("", dir_fd=fd)  # readlinkat(fd, ""): the link this O_PATH fd holds
    except OSError:
        return None
    finally:
        os.close(fd)


# --- walking a tree into tar -------------------------------------------------------------------------------


def _walk(writer: _TarWriter, top_fd: int, top: str, *, include_root: bool, owner: tuple[int, int] | None) -> None:
    """Write the tree at ``top_fd`` (an ``O_PATH`` fd) as tar entries named ``top``, ``top/child``, ...; ``owner``
    replaces every entry's uid/gid."""
    links: dict[tuple[int, int], str] = {}
    st = os.fstat(top_fd)
    if include_root:
        _emit(writer, top_fd, st, top, owner, links)
    if stat.S_ISDIR(st.st_mode):
        for fd, child_st, child in walk_below(top_fd, top):
            _emit(writer, fd, child_st, child, owner, links)


def walk_below(top_fd: int, top: str, *, same_device: bool = False) -> Iterator[tuple[int, os.stat_result, str]]:
    """Everything below the directory ``top_fd``, depth first in name order, as (``O_PATH`` fd, its ``fstat``,
    ``top/child/...``); each fd is closed when the next item is asked for. ``same_device``: do not descend into
    other filesystems (mounts inside a container's root).

    Children are opened one component at a time below fds we hold, with ``O_NOFOLLOW``, and described by
    ``fstat`` of what was opened, so renames in the tree (by a container, during the copy) change what we copy
    but never where we read from. A child that vanishes between listing and opening is skipped. Directory fds
    are held one per level: depth is bounded by RLIMIT_NOFILE.
    """
    device = os.fstat(top_fd).st_dev
    stack: list[tuple[int, Iterator[str], str]] = []
    try:
        dfd = os.open(".", _O_DIR_READ, dir_fd=top_fd)
        stack.append((dfd, iter(sorted(os.listdir(dfd))), top))
        while stack:
            dfd, names, prefix = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                os.close(dfd)
                continue
            try:
                fd = os.open(name, _O_PATH | os.O_NOFOLLOW, dir_fd=dfd)
            except FileNotFoundError:
                continue
            try:
                st = os.fstat(fd)
                child = f"{prefix}/{name}"
                yield fd, st, child
                if stat.S_ISDIR(st.st_mode) and (not same_device or st.st_dev == device):
                    sub = os.open(".", _O_DIR_READ, dir_fd=fd)
                    stack.append((sub, iter(sorted(os.listdir(sub))), child))
            finally:
                os.close(fd)
    finally:
        for dfd, _, _ in stack:
            os.close(dfd)


def _emit(writer: _TarWriter, fd: int, st: os.stat_result, name: str, owner: tuple[int, int] | None,
          links: dict[tuple[int, int], str]) -> None:
    """One tar entry for the inode behind ``O_PATH`` fd ``fd``. Device nodes and fifos are never opened."""
    mode = st.st_mode
    kind = _KINDS.get(stat.S_IFMT(mode))
    if kind is None:
        return  # sockets (and anything unknown): skipped, as Docker's archiver skips them
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = stat.S_IMODE(mode)
    info.uid, info.gid = owner if owner is not None else (st.st_uid, st.st_gid)
    info.mtime = st.st_mtime_ns // 1_000_000_000
    fraction = st.st_mtime_ns % 1_000_000_000
    pax: dict[str, str] = {}
    info.pax_headers = pax  # filled below: the exact mtime, extended attributes
    if fraction and st.st_mtime_ns > 0:
        pax["mtime"] = f"{info.mtime}.{fraction:09d}"
    if kind != tarfile.DIRTYPE and st.st_nlink > 1:
        first = links.setdefault((st.st_dev, st.st_ino), name)
        if first != name:
            info.type = tarfile.LNKTYPE
            info.linkname = first
            writer.add(info, None)
            return
    if kind == tarfile.REGTYPE:
        data = _reopen(fd, st)
        try:
            info.size = st.st_size
            _xattrs(data, pax)
            writer.add(info, data)
        finally:
            os.close(data)
        return
    if kind == tarfile.DIRTYPE:
        listing = os.open(".", _O_DIR_READ, dir_fd=fd)
        try:
            _xattrs(listing, pax)
        finally:
            os.close(listing)
    elif kind == tarfile.SYMTYPE:
        info.linkname = os.readlink("", dir_fd=fd)  # readlinkat(fd, ""): the link this O_PATH fd holds
    elif kind != tarfile.FIFOTYPE:
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    writer.add(info, None)


def _reopen(fd: int, st: os.stat_result) -> int:
    """Open the regular file behind ``O_PATH`` fd ``fd`` for reading, without looking its name up again.

    ``/proc/self/fd/N`` names exactly the inode ``fd`` holds, so what we read is the file ``fstat`` described,
    never a device or fifo a container swapped in under the same name; the identity check afterwards guards
    against a ``/proc`` that is not the real one.
    """
    data = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    opened = os.fstat(data)
    if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(opened.st_mode):
        os.close(data)
        raise errors.InvalidArgument("the file changed while it was being copied")
    return data


def _xattrs(fd: int, pax: dict[str, str]) -> None:
    """Record the extended attributes unpacking may restore (user.*, file capabilities, ACLs) as PAX."""
    try:
        names = os.listxattr(fd)
    except OSError:
        return
    for key in names:
        if key.startswith("user.") or key in _XATTR_NAMES:
            try:
                value = os.getxattr(fd, key)
            except OSError:
                continue
            pax[f"SCHILY.xattr.{key}"] = value.decode("utf-8", "surrogateescape")


# --- tar plumbing ------------------------------------------------------------------------------------------


class _TarWriter:
    """Writes tar entries (PAX headers from ``tarfile``) to a binary stream or fd; file data is copied with
    ``sendfile`` when both ends are fds. A file that shrank while being copied is padded with zeros and one
    that grew is cut at the size in its header, so the stream always stays well-formed."""

    def __init__(self, out: BinaryIO | int) -> None:
        self._out: BinaryIO | None = None
        self._fd = -1
        if isinstance(out, int):
            self._fd = out
        else:
            out.flush()
            try:
                self._fd = out.fileno()
            except (OSError, ValueError, AttributeError):
                self._out = out

    def _write(self, data: bytes | memoryview) -> None:
        if self._out is not None:
            self._out.write(data)
            return
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    def add(self, info: tarfile.TarInfo, data: int | IO[bytes] | None) -> None:
        """Write ``info`` and, for regular files, ``info.size`` bytes from fd or file ``data``."""
        self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        if not info.isreg() or not info.size:
            return
        left = info.size
        if isinstance(data, int) and self._out is None:
            offset = 0
            while left:
                sent = os.sendfile(self._fd, data, offset, min(left, 1 << 30))
                if not sent:
                    break
                offset += sent
                left -= sent
        elif data is not None:
            read = (lambda n: os.read(data, n)) if isinstance(data, int) else data.read
            while left:
                chunk = read(min(left, _CHUNK))
                if not chunk:
                    break
                self._write(chunk)
                left -= len(chunk)
        while left:
            pad = min(left, _CHUNK)
            self._write(bytes(pad))
            left -= pad
        if info.size % _BLOCK:
            self._write(bytes(_BLOCK - info.size % _BLOCK))

    def close(self) -> None:
        """End the archive with the two zero blocks tar requires."""
        self._write(bytes(2 * _BLOCK))
        if self._out is not None:
            self._out.flush()


def _pipe(produce: Callable[[_TarWriter], None], consume: Callable[[BinaryIO], object]) -> None:
    """Run ``produce`` (writing tar) on a thread into a pipe that ``consume`` reads.

    If the consumer stops early the read end is closed, so the producer fails with EPIPE instead of blocking;
    a producer failure wins over the consumer's, since a producer that died leaves a truncated stream behind.
    """
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
    except OSError:
        pass
    failure: list[BaseException] = []

    def run() -> None:
        try:
            writer = _TarWriter(write_fd)
            produce(writer)
            writer.close()
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            failure.append(exc)
        finally:
            os.close(write_fd)

    thread = threading.Thread(target=run, name="sampan-cp-tar", daemon=True)
    thread.start()
    try:
        with os.fdopen(read_fd, "rb", buffering=0) as stream:
            consume(stream)
    except BaseException:
        thread.join()
        if failure and not isinstance(failure[0], BrokenPipeError):
            raise failure[0] from None
        raise
    thread.join()
    if failure:
        raise failure[0]


def _retar(stream: BinaryIO, writer: _TarWriter, prefix: str, owner: tuple[int, int] | None) -> None:
    """Re-write a user's tar (``cp - CONTAINER:DIR``) with names under ``prefix`` and, unless ``owner`` is
    None, that owner. ``tarfile`` only parses here; containment is ``unpack_layer``'s. Names climbing out with
    ``..`` are refused (Docker's "is outside of" breakout error); the archive's root entry is dropped, so the
    destination directory keeps its own metadata."""
    try:
        with tarfile.open(fileobj=stream, mode="r|*", encoding="utf-8", errors="surrogateescape") as archive:
            for member in archive:
                _retar_member(archive, member, writer, prefix, owner)
    except tarfile.TarError as exc:
        raise errors.InvalidArgument(f"cannot read the tar stream: {exc}") from None


def _retar_member(archive: tarfile.TarFile, member: tarfile.TarInfo, writer: _TarWriter, prefix: str,
                  owner: tuple[int, int] | None) -> None:
    name = _member_path(member.name)
    if not name:
        return
    info = tarfile.TarInfo(posixpath.join(prefix, name) if prefix else name)
    if member.isreg():
        info.type, info.size = tarfile.REGTYPE, member.size
    elif member.type in _KINDS.values() or member.type == tarfile.LNKTYPE:
        info.type = member.type
    else:
        return  # GNU volume labels, multi-volume continuations and such: nothing to create
    info.mode = member.mode & 0o7777
    info.uid, info.gid = owner if owner is not None else (member.uid, member.gid)
    info.mtime = int(member.mtime)
    info.devmajor, info.devminor = member.devmajor, member.devminor
    if member.issym():
        info.linkname = member.linkname
    elif member.islnk():
        target = _member_path(member.linkname)
        info.linkname = posixpath.join(prefix, target) if prefix else target
    info.pax_headers = {key: value for key, value in member.pax_headers.items()
                        if key.startswith("SCHILY.xattr.") or key == "mtime"}
    writer.add(info, archive.extractfile(member) if member.isreg() else None)


def _member_path(name: str) -> str:
    """A tar member name made relative to the extraction directory ("" for the directory itself)."""
    parts: list[str] = []
    for part in name.split("/"):
        if part == "..":
            if not parts and not name.startswith("/"):
                raise errors.InvalidArgument(f"tar entry {name!r} is outside of the destination directory")
            if parts:
                parts.pop()
        elif part and part != ".":
            parts.append(part)
    return "/".join(parts)


def _unpack_into(stream: BinaryIO, rootfs: str) -> None:
    """Extract our rewritten stream (names relative to the container root) into ``rootfs``."""
    unpack_layer(stream, rootfs, whiteouts="keep", no_overwrite_dir_nondir=True)


def _guarded(run: Callable[[], None], dest: str) -> None:
    """Run a copy; report failures as NotFound or InvalidArgument (one line, never a traceback)."""
    try:
        run()
    except (errors.NotFound, errors.InvalidArgument):
        raise
    except errors.SampanError as exc:
        raise errors.InvalidArgument(str(exc)) from exc
    except FileNotFoundError as exc:
        raise errors.NotFound(f"copying to {dest}: {exc.strerror}") from exc
    except OSError as exc:
        raise errors.InvalidArgument(f"copying to {dest}: {exc.strerror or exc}") from exc


# --- path helpers ------------------------------------------------------------------------------------------


def _clean(path: str) -> str:
    """A container path made absolute and clean (``..`` stops at ``/``), like Go's ``filepath.Join("/", p)``."""
    return posixpath.normpath("/" + path.lstrip("/"))


def _rel(path: str) -> str:
    """A clean absolute container path as openat2 wants it under the root fd ("" for the root)."""
    return path.lstrip("/")


def _specifies_current_dir(path: str) -> bool:
    """Go's ``filepath.Base(path) == "."``: the path ends in ``.`` (``dir/.``, ``.``, ``dir/./``)."""
    stripped = path.rstrip("/")
    return stripped == "." or stripped.endswith("/.")


def _asserts_dir(path: str) -> bool:
    """moby ``assertsDirectory``: a trailing ``/`` or a final ``.`` says "this must be a directory"."""
    return path.endswith("/") or _specifies_current_dir(path)
