"""The content-addressed blob store: ``blobs/sha256/<hex>``.

As in containerd's content store, a writer streams into the ingest area while hashing; ``commit`` fsyncs,
verifies the digest and size, renames atomically and fsyncs the directory. So a visible blob is always complete
and verified, and a process killed mid-write leaves only an ingest file that the next check reclaims.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from sampan.errors import CorruptContent, NotFound
from sampan.image import digest as _digest

_COPY_CHUNK = 1 << 20


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobWriter:
    """Streams one blob into the ingest area; nothing is visible until ``commit`` has verified it."""

    def __init__(self, store: ContentStore) -> None:
        self._store = store
        self._path = store.ingest_dir / f"{os.getpid()}-{uuid.uuid4().hex}"
        self._file = open(self._path, "xb", buffering=0)  # noqa: SIM115 - closed by commit/abort
        self._hash = hashlib.sha256()
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
            self._file.close()
            target = self._store.path(digest)
            if target.exists():
                self._path.unlink()
            else:
                os.chmod(self._path, 0o644)
                os.rename(self._path, target)
                fsync_dir(target.parent)
            return digest
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._path.unlink(missing_ok=True)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None or not self._file.closed:
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

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

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
        h = hashlib.sha256()
        with self.open(digest) as f:
            while chunk := f.read(_COPY_CHUNK):
                h.update(chunk)
        return "sha256:" + h.hexdigest() == digest

    def ingest_leftovers(self) -> list[Path]:
        return list(self.ingest_dir.iterdir())

    def copy_to(self, digest: str, out: BinaryIO) -> None:
        with self.open(digest) as f:
            shutil.copyfileobj(f, out, _COPY_CHUNK)
