"""The content-addressed blob store: ``blobs/sha256/<hex>``.

As in containerd's content store, a writer streams into the ingest area while hashing; ``commit`` fsyncs,
verifies the digest and size, renames atomically and fsyncs the directory. So a visible blob is always complete
and verified, and a process killed mid-write leaves only an ingest file that the next check reclaims.

A download from a registry may also be *resumable*: its ingest file is named for the digest it should have
(``partial-<hex>``), is kept when the writer stops without committing, and the next writer for that digest
continues it (the caller fetches the rest with an HTTP ``Range``). The bytes already there are hashed again on
resume, so the digest is always verified over the whole blob; a mismatch discards the partial file.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Self

from sampan.errors import CorruptContent, NotFound
from sampan.image import digest as _digest

_COPY_CHUNK = 1 << 20
PARTIAL_PREFIX = "partial-"  # resumable downloads in the ingest area: partial-<hex of the expected digest>


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)



def _sha256() -> Any:
    """hashlib's sha256, imported when first needed: loading OpenSSL costs every command that opens the store
    (``run``, ``ps``) 2 ms, and only those that write content hash it."""
    import hashlib

    return hashlib.sha256()

class BlobWriter:
    """Streams one blob into the ingest area; nothing is visible until ``commit`` has verified it."""

    def __init__(self, store: ContentStore, resume: str | None = None) -> None:
        self._store = store
        self._hash = _sha256()
        self.size = 0
        self._keep = False
        if resume is not None and self._resume(resume):
            return
        self._path = store.ingest_dir / f"{os.getpid()}-{os.urandom(16).hex()}"  # no uuid import: start-up
        self._file = open(self._path, "xb", buffering=0)  # noqa: SIM115 - closed by commit/abort

    def _resume(self, digest: str) -> bool:
        """Open (or create) the partial file for ``digest`` and hash what it holds; False when another process
        is writing it (this writer then uses a private file)."""
        self._path = self._store.ingest_dir / f"{PARTIAL_PREFIX}{_digest.hex_of(digest)}"
        self._file = open(self._path, "a+b", buffering=0)  # noqa: SIM115 - closed by commit/abort/__exit__
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            return False
        try:
            same = os.stat(self._path).st_ino == os.fstat(self._file.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # committed or discarded by its writer between our open and our lock
            self._file.close()
            return False
        self._file.seek(0)
        while chunk := self._file.read(_COPY_CHUNK):
            self._hash.update(chunk)
            self.size += len(chunk)
        self._keep = True
        return True

    def restart(self) -> None:
        """Drop what a resumed file held (it is longer than the blob can be): start from byte 0."""
        self._file.truncate(0)
        self._file.seek(0)
        self._hash = _sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._hash.update(data)
        self._file.write(data)
        self.size += len(data)
        return len(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def commit(self, expected_digest: str | None = None, expected_size: int | None = None) -> str:
        """Verify, then publish atomically. Returns the digest. Refuses (and discards) a mismatch."""
        try:
            digest = self.digest
            if expected_size is not None and self.size != expected_size:
                raise CorruptContent(
                    f"size mismatch for {expected_digest or digest}: expected {expected_size} bytes, "
                    f"got {self.size}")
            if expected_digest is not None and digest != expected_digest:
                raise CorruptContent(f"digest mismatch: expected {expected_digest}, got {digest}")
            os.fsync(self._file.fileno())
            target = self._store.path(digest)  # renamed before closing: a resumable file's lock still holds
            if target.exists():
                self._path.unlink()
            else:
                os.chmod(self._path, 0o644)
                os.rename(self._path, target)
                fsync_dir(target.parent)
            self._file.close()
            return digest
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        if not self._file.closed:
            self._path.unlink(missing_ok=True)
            self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if self._file.closed:
            return
        if self._keep:  # resumable: interrupted, not refused (a refusal in commit has aborted already)
            self._file.close()
        else:
            self.abort()


class ContentStore:
    """Provider (open/read), ingester (writer) and manager (list/delete) for verified blobs."""

    def __init__(self, blobs_dir: Path, ingest_dir: Path) -> None:
        self.blobs_dir = blobs_dir
        self.ingest_dir = ingest_dir

    def path(self, digest: str) -> Path:
        return self.blobs_dir / _digest.hex_of(digest)

    def exists(self, digest: str) -> bool:
        return self.path(digest).exists()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def read(self, digest: str) -> bytes:
        """Read a small blob (manifest, config) and re-verify it: cheap insurance against disk corruption."""
        with self.open(digest) as f:
            data = f.read()
        if _digest.sha256_bytes(data) != digest:
            raise CorruptContent(f"blob {digest} is corrupt on disk (run 'sampan system check --repair')")
        return data

    def writer(self, resume: str | None = None) -> BlobWriter:
        """A writer into the ingest area; ``resume`` (the expected digest) continues and keeps a partial file."""
        return BlobWriter(self, resume)

    def write_bytes(self, data: bytes, expected_digest: str | None = None) -> str:
        with self.writer() as w:
            w.write(data)
            return w.commit(expected_digest, None if expected_digest is None else len(data))

    def ingest(self, stream: BinaryIO, expected_digest: str | None = None,
               expected_size: int | None = None) -> str:
        """Copy a stream in, verifying it; a known, present digest is skipped after draining nothing."""
        if expected_digest is not None and self.exists(expected_digest):
            return expected_digest
        with self.writer() as w:
            while chunk := stream.read(_COPY_CHUNK):
                w.write(chunk)
            return w.commit(expected_digest, expected_size)

    def delete(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def digests(self) -> Iterator[str]:
        for entry in os.scandir(self.blobs_dir):
            if _digest.is_digest("sha256:" + entry.name):
                yield "sha256:" + entry.name

    def verify(self, digest: str) -> bool:
        """Re-hash a stored blob (used by ``system check``)."""
        h = _sha256()
        with self.open(digest) as f:
            while chunk := f.read(_COPY_CHUNK):
                h.update(chunk)
        return "sha256:" + h.hexdigest() == digest

    def ingest_leftovers(self) -> list[Path]:
        return list(self.ingest_dir.iterdir())

    def copy_to(self, digest: str, out: BinaryIO) -> None:
        import shutil  # only here: most commands never copy a blob out, and start-up counts

        with self.open(digest) as f:
            shutil.copyfileobj(f, out, _COPY_CHUNK)
