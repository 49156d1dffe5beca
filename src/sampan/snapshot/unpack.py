"""Unpack one image layer (an uncompressed tar stream) into its own snapshot directory, safely and fast.

Layers are untrusted. The tar is parsed here (a small reader for ustar, GNU and PAX headers, including GNU
sparse files) rather than by ``tarfile``, because parsing is the cheap part and this way nothing but this module
decides what a header means. Containment does not depend on the parser being right: every path is created
with fd-relative calls, under a parent directory opened with ``openat2(RESOLVE_IN_ROOT)`` from the snapshot
directory, so a symlink to ``/`` or ``../../..`` inside the layer resolves inside the snapshot, the final
component is never followed (``O_NOFOLLOW|O_EXCL``, ``follow_symlinks=False``), and metadata is set on fds or
with no-follow calls.

Behaviour follows Docker/containerd: names are cleaned lexically (``..`` cannot climb above the root), a later
entry replaces an earlier one (directories merge), directory mtimes are set last, uid/gid are numeric.
"""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import shutil
import stat
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Self

from sampan import errors
from sampan._linux import syscalls
from sampan.snapshot import whiteout

WHITEOUT_MODES = ("overlay", "keep", "apply")

_CHUNK = 1 << 20  # stream reads and file writes; large enough that per-call overhead vanishes
_BLOCK = 512
_MAX_META = 16 << 20  # PAX / GNU long name / sparse map payloads are buffered: bound what a header can ask for
_DIR_CACHE_MAX = 128  # open parent-directory fds kept: several unpacks in parallel stay under RLIMIT_NOFILE 1024
_NS = 1_000_000_000
_NUMBERS: dict[bytes, int] = {}  # memo for _number; header fields are immutable bytes, so sharing is safe
_NUMBERS_MAX = 4096
_ID_MAX = 2**32 - 1  # uids, gids, device majors and minors
_OFF_MAX = 2**63 - 1  # file sizes (off_t)
_NS_MAX = 2**63 - 1  # timestamps in nanoseconds, as os.utime takes them

_RESOLVE = syscalls.RESOLVE_IN_ROOT | syscalls.RESOLVE_NO_MAGICLINKS | syscalls.RESOLVE_NO_XDEV
_O_DIR_PATH = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_O_DIR_READ = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_O_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

# name mode uid gid size mtime chksum type linkname magic+version (uname gname skipped) devmajor devminor prefix
_HEADER = struct.Struct("100s8s8s8s12s12s8sc100s8s64x8s8s155s12x")
_USTAR_MAGIC = b"ustar\x00"  # POSIX ustar/PAX; only these use the prefix field (GNU stores other data there)

_REGULAR = frozenset((b"0", b"\x00", b"7"))
_DEVICE_KINDS = {b"3": stat.S_IFCHR, b"4": stat.S_IFBLK, b"6": stat.S_IFIFO}
# Types whose size field does not announce data (Go's archive/tar and tarfile agree).
_HEADER_ONLY = frozenset((b"1", b"2", b"3", b"4", b"5", b"6"))

# Extended attributes a layer may set. trusted.* would let a layer forge overlayfs metadata (opaque, redirect,
# metacopy) and security.* other than file capabilities belongs to the host's LSM, so both are dropped.
_XATTR_NAMES = frozenset(("security.capability", "system.posix_acl_access", "system.posix_acl_default"))
_XATTR_UNSUPPORTED = (errno.ENOTSUP, errno.EOPNOTSUPP)

# errnos that mean "the layer's own tree does not allow this", reported as corrupt content.
_CONTENT_ERRNOS = frozenset((errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.EXDEV,
                             errno.ENAMETOOLONG, errno.EPERM, errno.EMLINK, errno.ENOTEMPTY, errno.EFBIG))


@dataclass(frozen=True, slots=True)
class UnpackResult:
    """What unpacking one layer produced.

    ``diff_id`` is the sha256 of every byte read from the stream (the uncompressed tar, padding included), to
    compare with the image config's ``rootfs.diff_ids``. ``size`` sums the sizes of the regular files written
    (sparse files count their logical size), the figure Docker reports as a layer's size.
    """

    diff_id: str
    size: int
    entries: int


def unpack_layer(stream: BinaryIO, dest: str | os.PathLike[str], *, whiteouts: str = "overlay",
                 no_overwrite_dir_nondir: bool = False) -> UnpackResult:
    """Unpack the uncompressed layer tar read from ``stream`` into the existing empty directory ``dest``.

    ``whiteouts`` picks what OCI whiteout entries become: ``"overlay"`` (default) converts them to overlayfs
    whiteouts and opaque xattrs, for a snapshot stacked as an overlay lowerdir; ``"apply"`` deletes what they
    name from ``dest``, for flattening layers into one rootfs; ``"keep"`` writes them as the plain files they
    are. ``no_overwrite_dir_nondir`` (Docker's ``NoOverwriteDirNonDir``, used by ``cp`` which extracts into a
    populated tree) refuses, with Conflict, an entry that would replace an existing directory with a
    non-directory or the reverse, instead of deleting what is there. Raises CorruptContent for truncated or
    malformed tars, UnsafeContent for entries refused outright. On error ``dest`` may hold a partial tree (the
    caller removes it); nothing outside it is touched.
    """
    if whiteouts not in WHITEOUT_MODES:
        raise ValueError(f"whiteouts must be one of {WHITEOUT_MODES}, not {whiteouts!r}")
    with _Reader(stream) as reader, _Tree(os.fspath(dest), whiteouts, no_overwrite_dir_nondir) as tree:
        for entry in _entries(reader):
            tree.apply(entry, reader)
        tree.finish()
        reader.drain()
    return UnpackResult(diff_id=f"sha256:{reader.hexdigest()}", size=tree.size, entries=tree.entries)


# --- reading the stream ------------------------------------------------------------------------------------


class _Reader:
    """Buffered, hashing reader over the layer stream.

    Bytes are read into one of two reusable buffers and file data is written to disk straight from there, so no
    byte is copied more than the kernel requires. A helper thread hashes each buffer while the caller works
    through it: sha256 costs about as much CPU as the whole unpack otherwise would, and hashlib releases the
    GIL. A buffer is refilled only after its hash is done, and the two alternate.
    """

    __slots__ = ("_end", "_hasher", "_index", "_pos", "_readinto", "_view", "_views", "offset")

    def __init__(self, stream: BinaryIO) -> None:
        self._readinto = getattr(stream, "readinto", None) or _readinto_via_read(stream)
        self._views = (memoryview(bytearray(_CHUNK)), memoryview(bytearray(_CHUNK)))
        self._index = 0
        self._view = self._views[0]
        self._pos = 0
        self._end = 0
        self._hasher = _Hasher(len(self._views))
        self.offset = 0  # bytes of the tar consumed so far

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self._hasher.close()

    def _read_more(self, keep: int) -> int:
        """Switch buffers, carrying over the ``keep`` unread bytes, and read more after them; return bytes read."""
        old, start = self._view, self._pos
        self._index ^= 1
        self._hasher.wait_free(self._index)
        view = self._view = self._views[self._index]
        if keep:
            view[:keep] = old[start:start + keep]
        n = self._readinto(view[keep:]) or 0
        if n:
            self._hasher.submit(self._index, view[keep:keep + n])
        self._pos = 0
        self._end = keep + n
        return n

    def header(self) -> memoryview | None:
        """The next 512-byte block, or None at a clean end of stream; valid until the next read."""
        while self._end - self._pos < _BLOCK:
            if not self._read_more(self._end - self._pos):
                if self._end == self._pos:
                    return None
                raise errors.CorruptContent("layer tar ends inside a header")
        start = self._pos
        self._pos += _BLOCK
        self.offset += _BLOCK
        return self._view[start:start + _BLOCK]

    def _chunk(self, limit: int) -> memoryview:
        """Up to ``limit`` buffered bytes (reading more if none are buffered), consumed."""
        if self._pos == self._end and not self._read_more(0):
            raise errors.CorruptContent("layer tar is truncated: an entry claims more data than the stream has")
        start = self._pos
        take = min(limit, self._end - start)
        self._pos = start + take
        self.offset += take
        return self._view[start:start + take]

    def copy_to(self, fd: int, size: int) -> None:
        """Write the next ``size`` bytes to ``fd``."""
        start = self._pos
        if size <= self._end - start:  # the usual case for small files: one write from the buffer
            self._pos = start + size
            self.offset += size
            chunk = self._view[start:start + size]
            while chunk:
                chunk = chunk[os.write(fd, chunk):]
            return
        while size:
            chunk = self._chunk(size)
            size -= len(chunk)
            while chunk:
                chunk = chunk[os.write(fd, chunk):]

    def copy_to_at(self, fd: int, size: int, at: int) -> None:
        """Write the next ``size`` bytes to ``fd`` at offset ``at`` (one extent of a sparse file)."""
        while size:
            chunk = self._chunk(size)
            size -= len(chunk)
            while chunk:
                written = os.pwrite(fd, chunk, at)
                chunk = chunk[written:]
                at += written

    def read(self, size: int) -> bytes:
        """The next ``size`` bytes, for metadata payloads (bounded by the caller)."""
        parts = []
        while size:
            chunk = self._chunk(size)
            parts.append(bytes(chunk))
            size -= len(chunk)
        return b"".join(parts)

    def skip(self, size: int) -> None:
        """Consume ``size`` bytes (still hashed: they are part of the layer)."""
        if size <= self._end - self._pos:  # the usual case: padding already buffered
            self._pos += size
            self.offset += size
            return
        while size:
            size -= len(self._chunk(size))

    def drain(self) -> None:
        """Read to end of stream so the digest covers trailing padding too."""
        while self._read_more(0):
            pass

    def hexdigest(self) -> str:
        return self._hasher.hexdigest()


class _Hasher:
    """sha256 of the submitted buffers, in order, on a helper thread."""

    def __init__(self, buffers: int) -> None:
        self._hash = hashlib.sha256()
        self._queue: queue.SimpleQueue[tuple[int, memoryview] | None] = queue.SimpleQueue()
        self._free = [threading.Event() for _ in range(buffers)]
        for event in self._free:
            event.set()
        self._thread = threading.Thread(target=self._run, name="sampan-layer-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            index, view = item
            self._hash.update(view)
            self._free[index].set()

    def wait_free(self, index: int) -> None:
        """Block until buffer ``index`` has been hashed and may be overwritten."""
        self._free[index].wait()

    def submit(self, index: int, view: memoryview) -> None:
        self._free[index].clear()
        self._queue.put((index, view))

    def close(self) -> None:
        """Stop the thread (idempotent); pending buffers are hashed first."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def hexdigest(self) -> str:
        self.close()
        return self._hash.hexdigest()


def _readinto_via_read(stream: BinaryIO) -> Callable[[memoryview], int]:
    """A ``readinto`` for streams that only offer ``read``."""

    def readinto(view: memoryview) -> int:
        data = stream.read(len(view))
        view[:len(data)] = data
        return len(data)

    return readinto


# --- parsing headers ---------------------------------------------------------------------------------------


class _Entry:
    """One tar member, after extended headers are folded in. ``path`` is already cleaned (b"" is the root)."""

    __slots__ = ("atime_ns", "gid", "linkname", "mode", "mtime_ns", "path", "rdev", "realsize", "size", "sparse",
                 "type", "uid", "xattrs")

    def __init__(self, path: bytes, type_: bytes, mode: int, uid: int, gid: int, size: int, mtime_ns: int,
                 linkname: bytes, rdev: int) -> None:
        self.path = path
        self.type = type_
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size  # bytes of data in the stream
        self.mtime_ns = mtime_ns
        self.atime_ns = mtime_ns
        self.linkname = linkname
        self.rdev = rdev
        self.xattrs: dict[str, bytes] | None = None
        self.sparse: list[tuple[int, int]] | None = None  # (offset, length) data extents of a sparse file
        self.realsize = size  # logical file size


def _entries(reader: _Reader) -> Iterator[_Entry]:
    """Yield the members of the tar; after each, skip whatever data the consumer did not read."""
    pax: dict[bytes, bytes] = {}
    pax_sparse: list[int] = []  # GNU sparse 0.0 offset/numbytes records, in order
    longname: bytes | None = None
    longlink: bytes | None = None
    while True:
        block = reader.header()
        if block is None:
            return
        (name, mode, uid, gid, size_f, mtime, chksum, type_, linkname, magic, major, minor,
         prefix) = _HEADER.unpack(block)
        if not _checksum_matches(block, chksum):
            if not any(block):
                _end_of_archive(reader)
                return
            _verify_checksum_exactly(block, chksum)
        size = _parse_number(size_f)
        if size < 0:
            raise errors.CorruptContent("layer tar has a header with a negative size")
        if type_ in b"xgLK":
            payload = _read_meta(reader, size)
            if type_ == b"x":
                _parse_pax(payload, pax, pax_sparse)
            elif type_ == b"L":
                longname = payload.split(b"\x00", 1)[0]
            elif type_ == b"K":
                longlink = payload.split(b"\x00", 1)[0]
            continue  # b"g": global headers are ignored, as Docker does
        old_sparse = bytes(block[386:512]) if type_ == b"S" else None
        if longname is not None:
            name = longname
        else:
            name = name.split(b"\x00", 1)[0]
            if magic[:6] == _USTAR_MAGIC and prefix[0]:
                name = prefix.split(b"\x00", 1)[0] + b"/" + name
        if type_ == b"\x00" and name.endswith(b"/"):
            type_ = b"5"  # pre-POSIX tars mark directories with a trailing slash
        if longlink is not None:
            linkname = longlink
        elif type_ in b"12":  # only links have targets
            linkname = linkname.split(b"\x00", 1)[0]
        else:
            linkname = b""
        entry = _Entry(name, type_, _number(mode) & 0o7777, _number(uid), _number(gid), size, _number(mtime) * _NS,
                       linkname, _device(major, minor) if type_ in b"34" else 0)
        if pax:
            _apply_pax(entry, pax, pax_sparse)
        if old_sparse is not None:
            _old_gnu_sparse(entry, old_sparse, reader)
        elif entry.sparse is not None and pax.get(b"GNU.sparse.major") == b"1":
            _sparse_v1_map(entry, reader)
        entry.path = _clean(entry.path)
        if pax or old_sparse is not None or (mode[0] | uid[0] | gid[0] | size_f[0] | mtime[0]) & 0x80:
            _check_ranges(entry)  # plain octal fields are too short to go out of range
        data = 0 if type_ in _HEADER_ONLY else entry.size
        end = reader.offset + data
        yield entry
        reader.skip(end - reader.offset + (-data % _BLOCK))
        if pax:
            pax.clear()
            pax_sparse.clear()
        longname = longlink = None


def _check_ranges(entry: _Entry) -> None:
    """Numbers the kernel cannot take (ids beyond 32 bits, out-of-range times, negative sizes) are malformed."""
    if not (0 <= entry.uid <= _ID_MAX and 0 <= entry.gid <= _ID_MAX and 0 <= entry.size <= entry.realsize <= _OFF_MAX
            and -_NS_MAX <= entry.mtime_ns <= _NS_MAX and -_NS_MAX <= entry.atime_ns <= _NS_MAX):
        raise errors.CorruptContent(f"layer tar entry {entry.path!r} has an out-of-range id, size or time")


def _device(major: bytes, minor: bytes) -> int:
    numbers = _number(major), _number(minor)
    if not all(0 <= n <= _ID_MAX for n in numbers):
        raise errors.CorruptContent("layer tar has an out-of-range device number")
    return os.makedev(*numbers)


def _end_of_archive(reader: _Reader) -> None:
    """After one zero block the next must be zero too (or the stream end), as Go's archive/tar requires."""
    block = reader.header()
    if block is not None and any(block):
        raise errors.CorruptContent("layer tar has data after an end-of-archive block")


def _checksum_matches(block: memoryview, field: bytes) -> bool:
    """Fast header checksum test: the byte sum (checksum field counted as spaces), compared mod 65521.

    adler32's low half is (1 + byte sum) mod 65521, computed in C; summing 512 bytes in Python costs several
    times more and this runs once per entry. Comparing modulo 65521 lets a damaged header through only if its
    sum moved by exactly 65521, which takes hundreds of changed bytes; anything failing here gets the exact
    test (which also accepts the historical signed-byte sums).
    """
    unsigned = (zlib.adler32(block) & 0xFFFF) - 1 - sum(field) + 8 * 0x20
    return (unsigned - _parse_number(field)) % 65521 == 0


def _verify_checksum_exactly(block: memoryview, field: bytes) -> None:
    expected = _parse_number(field)
    header = bytes(block)
    unsigned = sum(header) - sum(field) + 8 * 0x20
    signed = sum(b - 256 if b > 127 else b for b in header) - sum(b - 256 if b > 127 else b for b in field)
    if expected not in (unsigned, signed + 8 * 0x20):
        raise errors.CorruptContent("layer tar has a header with a bad checksum")


def _number(field: bytes) -> int:
    """A numeric header field whose values repeat across a layer (mode, ids, mtime, device): memoised."""
    value = _NUMBERS.get(field)
    if value is None:
        value = _parse_number(field)
        if len(_NUMBERS) < _NUMBERS_MAX:
            _NUMBERS[field] = value
    return value


def _parse_number(field: bytes) -> int:
    """A numeric header field: octal text (NUL/space padded) or GNU base-256 (high bit of first byte set)."""
    if field[0] & 0x80:
        value = int.from_bytes(field, "big", signed=bool(field[0] & 0x40))
        return value if value < 0 else value & ((1 << (8 * len(field) - 1)) - 1)
    digits = field.split(b"\x00", 1)[0].strip()
    try:
        if digits.isdigit():  # ASCII digits only: int() alone would also take signs and underscores
            return int(digits, 8)
    except ValueError:
        pass
    if digits:
        raise errors.CorruptContent(f"layer tar has a malformed numeric field {bytes(field)!r}")
    return 0


def _decimal(value: bytes) -> int:
    """A non-negative decimal PAX value."""
    if not value.isdigit():
        raise errors.CorruptContent(f"layer tar has a malformed PAX number {value!r}")
    return int(value)


def _read_meta(reader: _Reader, size: int) -> bytes:
    """The payload of an extended header, bounded so a header cannot make us buffer the whole stream."""
    if size > _MAX_META:
        raise errors.CorruptContent(f"layer tar has a {size}-byte extended header")
    payload = reader.read(size)
    reader.skip(-size % _BLOCK)
    return payload


def _parse_pax(data: bytes, pax: dict[bytes, bytes], pax_sparse: list[int]) -> None:
    """Fold PAX records ("<len> <key>=<value>\\n") into ``pax``; later records win."""
    pos, end = 0, len(data)
    while pos < end:
        if not data[pos:].strip(b"\x00"):
            return
        space = data.find(b" ", pos, pos + 21)
        length = _decimal(data[pos:space]) if space > pos else 0
        stop = pos + length
        if space < 0 or stop > end or stop <= space + 1 or data[stop - 1] != 0x0A:
            raise errors.CorruptContent("layer tar has a malformed PAX header")
        key, eq, value = data[space + 1:stop - 1].partition(b"=")
        if not eq or not key:
            raise errors.CorruptContent("layer tar has a malformed PAX record")
        if key in (b"GNU.sparse.offset", b"GNU.sparse.numbytes"):
            pax_sparse.append(_decimal(value))
        pax[key] = value
        pos = stop


def _apply_pax(entry: _Entry, pax: dict[bytes, bytes], pax_sparse: list[int]) -> None:
    """Override header fields with PAX records (an empty value means "use the header's")."""
    for key, value in pax.items():
        if not value:
            continue
        if key == b"path":
            entry.path = _no_nul(value)
        elif key == b"linkpath":
            entry.linkname = _no_nul(value)
        elif key == b"size":
            entry.size = entry.realsize = _decimal(value)
        elif key == b"uid":
            entry.uid = _decimal(value)
        elif key == b"gid":
            entry.gid = _decimal(value)
        elif key == b"mtime":
            entry.mtime_ns = _pax_time(value)
        elif key.startswith(b"SCHILY.xattr."):
            name = _no_nul(key[13:]).decode("utf-8", "surrogateescape")
            if name.startswith("user.") or name in _XATTR_NAMES:
                if entry.xattrs is None:
                    entry.xattrs = {}
                entry.xattrs[name] = value
    if pax.get(b"GNU.sparse.name"):
        entry.path = _no_nul(pax[b"GNU.sparse.name"])  # sparse files hide the real name from old readers
    if pax.get(b"atime"):
        entry.atime_ns = _pax_time(pax[b"atime"])
    else:
        entry.atime_ns = entry.mtime_ns
    _pax_sparse(entry, pax, pax_sparse)


def _no_nul(value: bytes) -> bytes:
    """PAX values can hold NUL bytes, which no file name, link target or xattr name may contain."""
    if b"\x00" in value:
        raise errors.CorruptContent("layer tar has a PAX name with a NUL byte")
    return value


def _pax_sparse(entry: _Entry, pax: dict[bytes, bytes], pax_sparse: list[int]) -> None:
    """GNU sparse formats 0.0 (offset/numbytes records), 0.1 (GNU.sparse.map) and 1.0 (map in the data)."""
    realsize = pax.get(b"GNU.sparse.realsize") or pax.get(b"GNU.sparse.size")
    if realsize is None:
        return
    entry.realsize = _decimal(realsize)
    if pax.get(b"GNU.sparse.major") == b"1":
        entry.sparse = []  # filled from the data by _sparse_v1_map
        return
    numbers = [_decimal(n) for n in pax[b"GNU.sparse.map"].split(b",")] if b"GNU.sparse.map" in pax else pax_sparse
    entry.sparse = _sparse_pairs(numbers)
    _check_sparse(entry, entry.size)


def _sparse_pairs(numbers: list[int]) -> list[tuple[int, int]]:
    if len(numbers) % 2:
        raise errors.CorruptContent("layer tar has a malformed sparse map")
    return list(zip(numbers[0::2], numbers[1::2]))


def _old_gnu_sparse(entry: _Entry, area: bytes, reader: _Reader) -> None:
    """Old GNU sparse ('S'): 4 map slots in the header, then 21-slot extension blocks while flagged."""
    entry.type = b"0"
    entry.realsize = _parse_number(area[97:109])
    numbers: list[int] = []
    slots, extended = area[:96], area[96]
    while True:
        for i in range(0, len(slots), 24):
            if not slots[i:i + 24].strip(b"\x00"):
                break
            numbers += (_parse_number(slots[i:i + 12]), _parse_number(slots[i + 12:i + 24]))
        if not extended:
            break
        block = reader.header()
        if block is None:
            raise errors.CorruptContent("layer tar ends inside a sparse map")
        slots, extended = bytes(block[:504]), block[504]
    entry.sparse = _sparse_pairs(numbers)
    _check_sparse(entry, entry.size)


def _sparse_v1_map(entry: _Entry, reader: _Reader) -> None:
    """GNU sparse 1.0: the map is decimal lines at the start of the data, padded to a block."""
    text = b""
    while True:
        if entry.size - len(text) < _BLOCK or len(text) > _MAX_META:
            raise errors.CorruptContent("layer tar has a malformed sparse map")
        text += reader.read(_BLOCK)
        lines = text.split(b"\n")
        if lines[0] and len(lines) - 1 >= 1 + 2 * _decimal(lines[0]):
            break
    count = _decimal(lines[0])
    entry.size -= len(text)
    entry.sparse = _sparse_pairs([_decimal(n) for n in lines[1:1 + 2 * count]])
    _check_sparse(entry, entry.size)


def _check_sparse(entry: _Entry, stored: int) -> None:
    """Extents must ascend without overlap, stay within the file, and add up to the stored data."""
    position = 0
    for offset, length in entry.sparse or ():
        if offset < position or length < 0 or offset + length > entry.realsize:
            raise errors.CorruptContent(f"layer tar has an invalid sparse map for {entry.path!r}")
        position = offset + length
    if sum(length for _, length in entry.sparse or ()) != stored:
        raise errors.CorruptContent(f"layer tar sparse map for {entry.path!r} does not match its data")


def _pax_time(value: bytes) -> int:
    """A PAX timestamp ("[-]seconds[.fraction]") in nanoseconds."""
    negative = value.startswith(b"-")
    whole, _, fraction = value.lstrip(b"-").partition(b".")
    if not whole.isdigit() or (fraction and not fraction.isdigit()):
        raise errors.CorruptContent(f"layer tar has a malformed PAX time {value!r}")
    ns = int(whole) * _NS + int((fraction + b"000000000")[:9])
    return -ns if negative else ns


def _clean(name: bytes) -> bytes:
    """Clean a member name lexically: no leading "/", no "." or empty components, ".." never above the root.

    The result is relative to the layer root; b"" is the root itself.
    """
    name = name.rstrip(b"/")
    if b"//" not in name and b"/." not in name and not name.startswith((b"/", b".")):
        return name
    parts: list[bytes] = []
    for part in name.split(b"/"):
        if part == b"..":
            if parts:
                parts.pop()
        elif part and part != b".":
            parts.append(part)
    return b"/".join(parts)


# --- writing the tree --------------------------------------------------------------------------------------


class _Tree:
    """The snapshot directory being filled, with a cache of open parent directories.

    Cache entries map a cleaned path to ``(fd, inherit_gid)``, where ``inherit_gid`` is the directory's gid when
    it is setgid (new children get that group) and -1 otherwise; it lets us skip chown calls that would change
    nothing. A cached fd stays valid until the entry being applied is finished (evicted or invalidated fds are
    parked in ``_retired``), so code holding one never sees it closed or reused under it.
    """

    def __init__(self, dest: str, whiteouts: str, no_overwrite_dir_nondir: bool = False) -> None:
        self._whiteouts = whiteouts
        self._no_overwrite_dir_nondir = no_overwrite_dir_nondir
        self._umask = _umask()
        self._root = os.open(dest, _O_DIR_READ)
        self._root_dir = (self._root, _inherit_gid(self._root))
        self._dirs: dict[bytes, tuple[int, int]] = {}
        self._retired: list[int] = []
        self._dir_times: dict[bytes, tuple[int, int]] = {}
        self._unpacked: set[bytes] = set()  # "apply" mode: paths this layer wrote, which opaque markers keep
        self._uid = os.geteuid()
        self._gid = os.getegid()
        self.size = 0
        self.entries = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self._retire_all()
        self._close_retired()
        os.close(self._root)

    # -- entry dispatch --

    def apply(self, entry: _Entry, reader: _Reader) -> None:
        """Create ``entry`` in the tree; file data is read from ``reader``."""
        self.entries += 1
        path = entry.path
        try:
            if self._whiteouts != "keep" and b".wh." in path:  # a cheap test first: few entries are whiteouts
                if whiteout.is_whiteout_name(path):
                    self._whiteout(entry)
                    return
                if whiteout.is_reserved_name(path.partition(b"/")[0]):
                    return  # contents of aufs metadata directories (.wh..wh.plnk, ...)
            if not path:
                self._root_entry(entry)
                return
            parent, _, base = path.rpartition(b"/")
            pfd, inherit = self._dirs.get(parent) or self._parent(parent)
            type_ = entry.type
            if type_ in _REGULAR:
                self._regular(entry, reader, pfd, base, inherit)
            elif type_ == b"5" or type_ == b"D":
                self._directory(entry, pfd, base, inherit)
            elif type_ == b"2":
                self._symlink(entry, pfd, base, inherit)
            elif type_ == b"1":
                self._hardlink(entry, pfd, base)
            elif type_ in _DEVICE_KINDS:
                self._node(entry, pfd, base, inherit)
            else:
                raise errors.Unsupported(f"layer tar entry {os.fsdecode(path)!r} has unsupported type {type_!r}")
            if self._whiteouts == "apply":
                self._note_unpacked(path)
        except OSError as exc:
            if exc.errno in _CONTENT_ERRNOS:
                raise errors.CorruptContent(f"cannot unpack {os.fsdecode(path)!r}: {exc.strerror}") from exc
            raise
        finally:
            if self._retired:
                self._close_retired()

    # -- entry kinds --

    def _regular(self, entry: _Entry, reader: _Reader, pfd: int, base: bytes, inherit: int) -> None:
        try:
            fd = os.open(base, _O_NEW_FILE, entry.mode & 0o777, dir_fd=pfd)
        except FileExistsError:
            self._replace(pfd, entry.path, base)
            fd = os.open(base, _O_NEW_FILE, entry.mode & 0o777, dir_fd=pfd)
        try:
            if entry.sparse is None:
                reader.copy_to(fd, entry.size)
            else:
                for offset, length in entry.sparse:
                    reader.copy_to_at(fd, length, offset)
                os.ftruncate(fd, entry.realsize)
            # Data first: writing clears security.capability, and chown clears setuid bits and capabilities.
            self._fd_owner_mode(fd, entry, inherit, force=False)
            if entry.xattrs:
                _set_xattrs(fd, entry.xattrs)
            os.utime(fd, ns=(entry.atime_ns, entry.mtime_ns))
        finally:
            os.close(fd)
        self.size += entry.realsize

    def _directory(self, entry: _Entry, pfd: int, base: bytes, inherit: int) -> None:
        existed = False
        try:
            os.mkdir(base, entry.mode & 0o777, dir_fd=pfd)
        except FileExistsError:
            existed = self._replace(pfd, entry.path, base, keep_dir=True)
            if not existed:
                os.mkdir(base, entry.mode & 0o777, dir_fd=pfd)
        fd = os.open(base, _O_DIR_READ | os.O_NOFOLLOW, dir_fd=pfd)
        try:
            self._fd_owner_mode(fd, entry, inherit, force=existed or inherit >= 0)
            if entry.xattrs:
                _set_xattrs(fd, entry.xattrs)
        except BaseException:
            os.close(fd)
            raise
        self._remember(entry.path, fd, entry.gid if entry.mode & stat.S_ISGID else -1)
        self._dir_times[entry.path] = (entry.atime_ns, entry.mtime_ns)

    def _root_entry(self, entry: _Entry) -> None:
        """A "." or "/" entry: metadata for the snapshot directory itself."""
        if entry.type not in (b"5", b"D"):
            raise errors.UnsafeContent("layer tar entry would replace the layer root with a non-directory")
        self._fd_owner_mode(self._root, entry, -1, force=True)
        if entry.xattrs:
            _set_xattrs(self._root, entry.xattrs)
        self._root_dir = (self._root, entry.gid if entry.mode & stat.S_ISGID else -1)
        self._dir_times[b""] = (entry.atime_ns, entry.mtime_ns)

    def _symlink(self, entry: _Entry, pfd: int, base: bytes, inherit: int) -> None:
        try:
            os.symlink(entry.linkname, base, dir_fd=pfd)
        except FileExistsError:
            self._replace(pfd, entry.path, base)
            os.symlink(entry.linkname, base, dir_fd=pfd)
        if self._needs_chown(entry, inherit):
            os.chown(base, entry.uid, entry.gid, dir_fd=pfd, follow_symlinks=False)
        # No xattrs: Linux refuses user.* and ACLs on symlinks, and capabilities mean nothing there.
        os.utime(base, ns=(entry.atime_ns, entry.mtime_ns), dir_fd=pfd, follow_symlinks=False)

    def _hardlink(self, entry: _Entry, pfd: int, base: bytes) -> None:
        """Link to an earlier entry, looked up inside the layer; the link shares (and keeps) its metadata."""
        target = _clean(entry.linkname)
        if not target:
            raise errors.UnsafeContent(f"hardlink {os.fsdecode(entry.path)!r} points at the layer root")
        tparent, _, tbase = target.rpartition(b"/")
        tfd = (self._dirs.get(tparent) or self._parent(tparent, create=False))[0]
        try:
            os.link(tbase, base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        except FileExistsError:
            if _same_inode(tfd, tbase, pfd, base):
                return
            self._replace(pfd, entry.path, base)
            os.link(tbase, base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)

    def _node(self, entry: _Entry, pfd: int, base: bytes, inherit: int) -> None:
        """Character/block device or fifo. Never opened: opening a device can have effects."""
        kind = _DEVICE_KINDS[entry.type] | (entry.mode & 0o777)
        try:
            os.mknod(base, kind, entry.rdev, dir_fd=pfd)
        except FileExistsError:
            self._replace(pfd, entry.path, base)
            os.mknod(base, kind, entry.rdev, dir_fd=pfd)
        if self._needs_chown(entry, inherit):
            os.chown(base, entry.uid, entry.gid, dir_fd=pfd, follow_symlinks=False)
        if entry.mode & (0o7000 | self._umask):
            syscalls.fchmodat_nofollow(pfd, base, entry.mode)
        for name, value in (entry.xattrs or {}).items():
            if not name.startswith("user."):  # Linux allows user.* only on files and directories
                _ignore_unsupported(syscalls.lsetxattr_at, pfd, base, name, value)
        os.utime(base, ns=(entry.atime_ns, entry.mtime_ns), dir_fd=pfd, follow_symlinks=False)

    # -- whiteouts --

    def _whiteout(self, entry: _Entry) -> None:
        """An OCI whiteout or opaque marker, turned into what ``whiteouts`` asked for."""
        directory = whiteout.opaque_marker_dir(entry.path)
        target = whiteout.oci_whiteout_target(entry.path) if directory is None else None
        if directory is not None:
            if self._whiteouts == "overlay":
                self._mark_opaque(directory)
            else:
                self._clear_lower(directory)
        elif target is not None:  # None: another reserved .wh..wh.* name, meaningless in OCI layers
            if self._whiteouts == "overlay":
                self._overlay_whiteout(entry, target)
            else:
                self._delete(target)

    def _overlay_whiteout(self, entry: _Entry, target: bytes) -> None:
        """Overlay form of a whiteout: a 0/0 character device in place of whatever this layer put there."""
        parent, _, base = target.rpartition(b"/")
        pfd, inherit = self._dirs.get(parent) or self._parent(parent)
        try:
            os.mknod(base, stat.S_IFCHR, whiteout.WHITEOUT_RDEV, dir_fd=pfd)
        except FileExistsError:
            self._remove(pfd, target, base)
            os.mknod(base, stat.S_IFCHR, whiteout.WHITEOUT_RDEV, dir_fd=pfd)
        if self._needs_chown(entry, inherit):
            os.chown(base, entry.uid, entry.gid, dir_fd=pfd, follow_symlinks=False)

    def _delete(self, target: bytes) -> None:
        """"apply" form of a whiteout: delete the target (never through a symlink), if it exists."""
        parent, _, base = target.rpartition(b"/")
        try:
            pfd = (self._dirs.get(parent) or self._parent(parent, create=False))[0]
            self._remove(pfd, target, base)
        except (FileNotFoundError, NotADirectoryError):
            pass  # nothing there to delete

    def _mark_opaque(self, directory: bytes) -> None:
        """Overlay form of an opaque marker: the xattr on the directory (created if the layer lacks it)."""
        if directory:
            self._dirs.get(directory) or self._parent(directory)
        fd = self._open_readable(directory)
        try:
            os.setxattr(fd, whiteout.OPAQUE_XATTR, whiteout.OPAQUE_VALUE)
        finally:
            if fd != self._root:
                os.close(fd)

    def _clear_lower(self, directory: bytes) -> None:
        """"apply" form of an opaque marker: delete what the directory holds, except this layer's entries."""
        try:
            fd = self._open_readable(directory)
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            self._clear(fd, directory)
        finally:
            if fd != self._root:
                os.close(fd)
        self._retire_all()

    def _clear(self, dir_fd: int, directory: bytes) -> None:
        with os.scandir(dir_fd) as listing:
            children = [(os.fsencode(child.name), child.is_dir(follow_symlinks=False)) for child in listing]
        for name, is_dir in children:
            path = directory + b"/" + name if directory else name
            if path in self._unpacked:
                if is_dir:
                    sub = os.open(name, _O_DIR_READ | os.O_NOFOLLOW, dir_fd=dir_fd)
                    try:
                        self._clear(sub, path)
                    finally:
                        os.close(sub)
            elif is_dir:
                shutil.rmtree(name, dir_fd=dir_fd)
                self._forget_times(path)
            else:
                os.unlink(name, dir_fd=dir_fd)

    def _note_unpacked(self, path: bytes) -> None:
        """Record ``path`` and its ancestors as written by this layer (opaque markers must keep them)."""
        while path and path not in self._unpacked:
            self._unpacked.add(path)
            path = path.rpartition(b"/")[0]

    # -- directories and the fd cache --

    def _parent(self, path: bytes, create: bool = True) -> tuple[int, int]:
        """Open (and cache) directory ``path`` inside the root, creating missing components when ``create``.

        Lookups go through openat2(RESOLVE_IN_ROOT) from the root, so symlinks in the layer resolve as if the
        root were "/". Missing components are created one by one with mode 0755, like Docker's implicit dirs.
        """
        if not path:
            return self._root_dir
        missing: list[bytes] = []
        current = path
        found = self._root_dir
        while current:
            cached = self._dirs.get(current)
            if cached is not None:
                found = cached
                break
            try:
                fd = syscalls.openat2(self._root, current, _O_DIR_PATH, _RESOLVE)
            except FileNotFoundError:
                if not create:
                    raise
                current, _, base = current.rpartition(b"/")
                missing.append(base)
                continue
            found = self._remember(current, fd, _inherit_gid(fd))
            break
        for base in reversed(missing):
            current = current + b"/" + base if current else base
            found = self._mkdir_implicit(found, base, current)
        return found

    def _mkdir_implicit(self, parent: tuple[int, int], base: bytes, path: bytes) -> tuple[int, int]:
        pfd, inherit = parent
        try:
            os.mkdir(base, 0o755, dir_fd=pfd)
        except FileExistsError:
            # Something that is not a directory (a dangling symlink, say): resolve it like any other path,
            # which fails unless it leads to a directory inside the root.
            fd = syscalls.openat2(self._root, path, _O_DIR_PATH, _RESOLVE)
            return self._remember(path, fd, _inherit_gid(fd))
        if 0o755 & self._umask:
            syscalls.fchmodat_nofollow(pfd, base, 0o755 | (stat.S_ISGID if inherit >= 0 else 0))
        fd = os.open(base, _O_DIR_PATH | os.O_NOFOLLOW, dir_fd=pfd)
        return self._remember(path, fd, inherit)

    def _open_readable(self, directory: bytes) -> int:
        """A non-O_PATH fd for ``directory`` (needed for xattrs and listing); the root fd for b""."""
        if not directory:
            return self._root
        return syscalls.openat2(self._root, directory, _O_DIR_READ, _RESOLVE)

    def _remember(self, path: bytes, fd: int, inherit: int) -> tuple[int, int]:
        cached = (fd, inherit)
        old = self._dirs.pop(path, None)
        if old is not None:
            self._retired.append(old[0])
        self._dirs[path] = cached
        if len(self._dirs) > _DIR_CACHE_MAX:
            oldest = next(iter(self._dirs))
            self._retired.append(self._dirs.pop(oldest)[0])
        return cached

    def _retire_all(self) -> None:
        """Forget every cached directory: a removal may have changed what their paths resolve to."""
        self._retired.extend(fd for fd, _ in self._dirs.values())
        self._dirs.clear()

    def _close_retired(self) -> None:
        for fd in self._retired:
            os.close(fd)
        self._retired.clear()

    def _replace(self, pfd: int, path: bytes, base: bytes, keep_dir: bool = False) -> bool:
        """Make way for entry ``path`` (a directory when ``keep_dir``): ``_remove``, unless that is refused.

        With ``no_overwrite_dir_nondir`` a directory never gives way to a non-directory nor the reverse (a
        symlink, even to a directory, is a non-directory), so extracting into a populated tree cannot delete a
        directory because an archive named a file the same.
        """
        if self._no_overwrite_dir_nondir:
            is_dir = stat.S_ISDIR(os.stat(base, dir_fd=pfd, follow_symlinks=False).st_mode)
            if is_dir != keep_dir:
                name = os.fsdecode(path)
                if is_dir:
                    raise errors.Conflict(f"cannot overwrite directory {name!r} with non-directory")
                raise errors.Conflict(f"cannot overwrite non-directory {name!r} with directory")
        return self._remove(pfd, path, base, keep_dir)

    def _remove(self, pfd: int, path: bytes, base: bytes, keep_dir: bool = False) -> bool:
        """Remove the existing ``base`` in ``pfd`` (recursively, fd-relative); True if a kept directory.

        Removing a directory or symlink can change what cached paths resolve to, so the cache is dropped.
        """
        st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            shutil.rmtree(base, dir_fd=pfd)
            self._forget_times(path)
            self._retire_all()
        else:
            os.unlink(base, dir_fd=pfd)
            if stat.S_ISLNK(st.st_mode):
                self._retire_all()
        return False

    def _forget_times(self, path: bytes) -> None:
        """Drop pending directory mtimes for a removed subtree."""
        prefix = path + b"/"
        for key in [k for k in self._dir_times if k == path or k.startswith(prefix)]:
            del self._dir_times[key]

    def finish(self) -> None:
        """Set directory times last: creating their children kept changing them."""
        for path, times in self._dir_times.items():
            if not path:
                os.utime(self._root, ns=times)
                continue
            parent, _, base = path.rpartition(b"/")
            try:
                pfd = (self._dirs.get(parent) or self._parent(parent, create=False))[0]
                is_dir = stat.S_ISDIR(os.stat(base, dir_fd=pfd, follow_symlinks=False).st_mode)
            except OSError as exc:
                if exc.errno not in _CONTENT_ERRNOS:
                    raise
                is_dir = False  # replaced later through another path (a symlinked parent)
            if is_dir:
                os.utime(base, ns=times, dir_fd=pfd, follow_symlinks=False)
            if self._retired:
                self._close_retired()

    # -- ownership and modes --

    def _needs_chown(self, entry: _Entry, inherit: int) -> bool:
        """Whether a new entry's owner differs from what the kernel gave it (our ids, or a setgid dir's gid)."""
        return entry.uid != self._uid or entry.gid != (inherit if inherit >= 0 else self._gid)

    def _fd_owner_mode(self, fd: int, entry: _Entry, inherit: int, force: bool) -> None:
        """chown then chmod (chown clears setuid/setgid); skipped when the creation already got them right."""
        if force or self._needs_chown(entry, inherit):
            os.fchown(fd, entry.uid, entry.gid)
        if force or entry.mode & (0o7000 | self._umask):
            os.fchmod(fd, entry.mode)


def _set_xattrs(fd: int, xattrs: dict[str, bytes]) -> None:
    for name, value in xattrs.items():
        _ignore_unsupported(os.setxattr, fd, name, value)


def _ignore_unsupported(setter: Callable[..., None], *args: Any) -> None:
    """Apply an xattr, ignoring filesystems without xattr support (Docker warns and carries on too)."""
    try:
        setter(*args)
    except OSError as exc:
        if exc.errno not in _XATTR_UNSUPPORTED:
            raise


def _same_inode(dir_a: int, name_a: bytes, dir_b: int, name_b: bytes) -> bool:
    a = os.stat(name_a, dir_fd=dir_a, follow_symlinks=False)
    b = os.stat(name_b, dir_fd=dir_b, follow_symlinks=False)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _inherit_gid(fd: int) -> int:
    """The gid new children of directory ``fd`` get when it is setgid, else -1."""
    st = os.fstat(fd)
    return st.st_gid if st.st_mode & stat.S_ISGID else -1


def _umask() -> int:
    """The process umask, read without the set-and-restore race of os.umask."""
    with open("/proc/self/status", "rb") as status:
        for line in status:
            if line.startswith(b"Umask:"):
                return int(line.split()[1], 8)
    return 0o022
