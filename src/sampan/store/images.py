"""Image records in the metadata store: images, their layers, tags, repo digests and known blobs.

Plain SQL over a connection the caller holds inside a transaction, so the engine can compose several of these
into one atomic change (store an image *and* move a tag, untag *and* delete).
"""

from __future__ import annotations

import json
import sqlite3
import time


class ImageRecord:
    """An image to insert; ``layers`` are (chain_id, blob_digest), bottom first. A plain class: a dataclass
    costs about a millisecond at every start of a command that looks images up."""

    def __init__(self, id: str, manifest_digest: str, created: float, size: int, labels: dict[str, str],
                 layers: tuple[tuple[str, str], ...], parent: str = "") -> None:
        self.id, self.manifest_digest, self.created, self.size = id, manifest_digest, created, size
        self.labels, self.layers, self.parent = labels, layers, parent


def register_blob(tx: sqlite3.Connection, digest: str, size: int, media_type: str = "",
                  diff_id: str | None = None) -> None:
    tx.execute("INSERT INTO blobs(digest, size, media_type, diff_id) VALUES (?, ?, ?, ?) "
               "ON CONFLICT(digest) DO UPDATE SET diff_id = COALESCE(blobs.diff_id, excluded.diff_id), "
               "media_type = CASE WHEN blobs.media_type = '' THEN excluded.media_type ELSE blobs.media_type END",
               (digest, size, media_type, diff_id))


def insert_image(tx: sqlite3.Connection, image: ImageRecord) -> bool:
    """Store an image; an image with the same ID already present is kept as it is. True if new."""
    cursor = tx.execute(
        "INSERT OR IGNORE INTO images(id, manifest_digest, created, size, labels, parent, added) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (image.id, image.manifest_digest, image.created, image.size, json.dumps(image.labels), image.parent,
         time.time()))
    if cursor.rowcount == 0:
        return False
    tx.executemany("INSERT INTO image_layers(image_id, position, chain_id, blob_digest) VALUES (?, ?, ?, ?)",
                   [(image.id, i, chain, blob) for i, (chain, blob) in enumerate(image.layers)])
    return True


def set_tag(tx: sqlite3.Connection, repo: str, tag: str, image_id: str) -> str | None:
    """Point ``repo:tag`` at an image; returns the image it pointed at before (if another one)."""
    row = tx.execute("SELECT image_id FROM tags WHERE repo = ? AND tag = ?", (repo, tag)).fetchone()
    tx.execute("INSERT OR REPLACE INTO tags(repo, tag, image_id) VALUES (?, ?, ?)", (repo, tag, image_id))
    tx.execute("UPDATE images SET last_tag_time = ? WHERE id = ?", (time.time(), image_id))
    previous = row["image_id"] if row else None
    return previous if previous != image_id else None


def add_repo_digest(tx: sqlite3.Connection, repo: str, digest: str, image_id: str) -> None:
    tx.execute("INSERT OR REPLACE INTO repo_digests(repo, digest, image_id) VALUES (?, ?, ?)",
               (repo, digest, image_id))


def remove_tag(tx: sqlite3.Connection, repo: str, tag: str) -> None:
    tx.execute("DELETE FROM tags WHERE repo = ? AND tag = ?", (repo, tag))


def remove_repo_digest(tx: sqlite3.Connection, repo: str, digest: str) -> None:
    tx.execute("DELETE FROM repo_digests WHERE repo = ? AND digest = ?", (repo, digest))


def delete_image(tx: sqlite3.Connection, image_id: str) -> None:
    tx.execute("DELETE FROM images WHERE id = ?", (image_id,))


def get(conn: sqlite3.Connection, image_id: str) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM images WHERE id = ?", (image_id,)).fetchone()


def by_tag(conn: sqlite3.Connection, repo: str, tag: str) -> str | None:
    row = conn.execute("SELECT image_id FROM tags WHERE repo = ? AND tag = ?", (repo, tag)).fetchone()
    return row["image_id"] if row else None


def by_digest(conn: sqlite3.Connection, repo: str, digest: str) -> str | None:
    row = conn.execute("SELECT image_id FROM repo_digests WHERE repo = ? AND digest = ?",
                       (repo, digest)).fetchone()
    return row["image_id"] if row else None


def by_id_prefix(conn: sqlite3.Connection, hex_prefix: str) -> list[str]:
    return [row["id"] for row in conn.execute(
        "SELECT id FROM images WHERE id >= ? AND id < ? ORDER BY id LIMIT 2",
        ("sha256:" + hex_prefix, "sha256:" + hex_prefix + "g"))]


def tags_of(conn: sqlite3.Connection, image_id: str) -> list[tuple[str, str]]:
    return [(row["repo"], row["tag"]) for row in conn.execute(
        "SELECT repo, tag FROM tags WHERE image_id = ? ORDER BY repo, tag", (image_id,))]


def digests_of(conn: sqlite3.Connection, image_id: str) -> list[tuple[str, str]]:
    return [(row["repo"], row["digest"]) for row in conn.execute(
        "SELECT repo, digest FROM repo_digests WHERE image_id = ? ORDER BY repo, digest", (image_id,))]


def layers_of(conn: sqlite3.Connection, image_id: str) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT l.chain_id, l.blob_digest, s.size, s.diff_id, b.media_type, b.size AS blob_size "
        "FROM image_layers l LEFT JOIN snapshots s ON s.chain_id = l.chain_id "
        "LEFT JOIN blobs b ON b.digest = l.blob_digest WHERE l.image_id = ? ORDER BY l.position",
        (image_id,)).fetchall()


def children_of(conn: sqlite3.Connection, image_id: str) -> list[str]:
    return [row["id"] for row in conn.execute("SELECT id FROM images WHERE parent = ?", (image_id,))]


def all_images(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return conn.execute("SELECT * FROM images ORDER BY created DESC, id").fetchall()


def all_tags(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return conn.execute("SELECT repo, tag, image_id FROM tags ORDER BY repo, tag").fetchall()


def all_repo_digests(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return conn.execute("SELECT repo, digest, image_id FROM repo_digests ORDER BY repo, digest").fetchall()
