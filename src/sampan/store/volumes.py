"""Volume records in the metadata store: one row per named volume of the "local" driver.

Plain SQL over a connection the caller holds (inside a transaction for changes), like ``store.images``. The
volume's data directory (``Layout.volumes / name / "_data"``) is created and removed by the engine in the same
transaction as its row, so a committed row always has its directory.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True)
class VolumeRecord:
    name: str
    driver: str
    labels: dict[str, str]
    options: dict[str, str]
    anonymous: bool
    created: float


def _record(row: sqlite3.Row) -> VolumeRecord:
    return VolumeRecord(row["name"], row["driver"], json.loads(row["labels"]), json.loads(row["options"]),
                        bool(row["anonymous"]), row["created"])


def get(conn: sqlite3.Connection, name: str) -> VolumeRecord | None:
    row = conn.execute("SELECT * FROM volumes WHERE name = ?", (name,)).fetchone()
    return _record(row) if row else None


def all_volumes(conn: sqlite3.Connection) -> list[VolumeRecord]:
    return [_record(row) for row in conn.execute("SELECT * FROM volumes ORDER BY name")]


def insert(tx: sqlite3.Connection, volume: VolumeRecord) -> None:
    tx.execute("INSERT INTO volumes(name, driver, labels, options, anonymous, created) VALUES (?, ?, ?, ?, ?, ?)",
               (volume.name, volume.driver, json.dumps(volume.labels, sort_keys=True),
                json.dumps(volume.options, sort_keys=True), int(volume.anonymous), volume.created))


def delete(tx: sqlite3.Connection, name: str) -> None:
    tx.execute("DELETE FROM volumes WHERE name = ?", (name,))


def volume_users(conn: sqlite3.Connection, name: str) -> list[str]:
    """IDs of the containers that use volume ``name``: what makes a volume "in use" (not dangling, not prunable,
    not removable without conflict)."""
    return [row[0] for row in conn.execute(
        "SELECT container_id FROM container_volumes WHERE volume = ? ORDER BY container_id", (name,))]


def count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM volumes").fetchone()[0])


def names(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM volumes")}

