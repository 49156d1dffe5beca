"""The content store and the metadata database, on real files."""

from __future__ import annotations

import hashlib
import io
import sqlite3
from pathlib import Path

import pytest

from sampan.errors import CorruptContent, SampanError
from sampan.store import metadata
from sampan.store.content import ContentStore
from sampan.store.layout import Layout
from sampan.store.metadata import Database


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    layout = Layout(tmp_path / "root", tmp_path / "run")
    layout.ensure()
    return ContentStore(layout.blobs, layout.ingest)


def test_blob_is_verified_and_atomic(store: ContentStore) -> None:
    data = b"hello world" * 1000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert store.ingest(io.BytesIO(data), digest, len(data)) == digest
    assert store.read(digest) == data
    assert store.path(digest).stat().st_mode & 0o777 == 0o644
    assert list(store.ingest_dir.iterdir()) == []


def test_digest_mismatch_leaves_nothing(store: ContentStore) -> None:
    wrong = "sha256:" + "0" * 64
    with pytest.raises(CorruptContent, match="digest mismatch"):
        store.ingest(io.BytesIO(b"data"), wrong)
    assert not store.exists(wrong)
    assert list(store.ingest_dir.iterdir()) == []
    assert list(store.digests()) == []


def test_size_mismatch_is_refused(store: ContentStore) -> None:
    data = b"abc"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with pytest.raises(CorruptContent, match="size mismatch"):
        store.ingest(io.BytesIO(data), digest, 4)
    assert not store.exists(digest)


def test_corruption_on_disk_is_detected(store: ContentStore) -> None:
    digest = store.write_bytes(b'{"a":1}')
    store.path(digest).write_bytes(b'{"a":2}')
    with pytest.raises(CorruptContent, match="corrupt on disk"):
        store.read(digest)
    assert not store.verify(digest)


def test_digest_cannot_name_a_path_outside(store: ContentStore) -> None:
    with pytest.raises(SampanError):
        store.path("sha256:../../etc/passwd")


def test_database_schema_is_versioned(tmp_path: Path) -> None:
    db = Database(tmp_path / "s.db")
    assert db.conn.execute("PRAGMA user_version").fetchone()[0] == len(metadata.MIGRATIONS)
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    raw = sqlite3.connect(tmp_path / "s.db")
    raw.execute(f"PRAGMA user_version={len(metadata.MIGRATIONS) + 1}")
    raw.commit()
    raw.close()
    with pytest.raises(SampanError, match="newer"):
        _ = Database(tmp_path / "s.db").conn


def test_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    db = Database(tmp_path / "s.db")
    with pytest.raises(RuntimeError):
        with db.transaction() as tx:
            tx.execute("INSERT INTO blobs(digest, size) VALUES ('sha256:x', 1)")
            raise RuntimeError("boom")
    assert db.query("SELECT COUNT(*) FROM blobs")[0][0] == 0
