"""Container records in the metadata store: one row per container, plus the named volumes it uses.

Plain SQL over a connection the caller holds (inside a transaction for changes), like ``store.images``. The
Docker-shaped parts (Config, HostConfig, Mounts, State.Health) are kept as JSON exactly as ``inspect`` shows them;
the state fields that ``ps`` filters and the monitor updates are columns.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

# Columns the run-time state is made of; ``update_state`` accepts only these.
STATE_COLUMNS = frozenset({"status", "pid", "pid_start", "monitor_pid", "monitor_start", "exit_code", "error",
                           "oom_killed", "started_at", "finished_at", "restart_count", "stopped_by_user",
                           "health"})


@dataclass
class ContainerRecord:
    id: str
    name: str
    image_id: str
    image: str
    created: float
    config: dict[str, Any]
    host_config: dict[str, Any]
    mounts: list[dict[str, Any]] = field(default_factory=list)
    status: str = "created"
    pid: int = 0
    pid_start: str = ""
    monitor_pid: int = 0
    monitor_start: str = ""
    exit_code: int = 0
    error: str = ""
    oom_killed: bool = False
    started_at: float = 0.0
    finished_at: float = 0.0
    restart_count: int = 0
    stopped_by_user: bool = False
    health: dict[str, Any] | None = None


def _record(row: sqlite3.Row) -> ContainerRecord:
    return ContainerRecord(
        id=row["id"], name=row["name"], image_id=row["image_id"], image=row["image"], created=row["created"],
        config=json.loads(row["config"]), host_config=json.loads(row["host_config"]),
        mounts=json.loads(row["mounts"]), status=row["status"], pid=row["pid"], pid_start=row["pid_start"],
        monitor_pid=row["monitor_pid"], monitor_start=row["monitor_start"], exit_code=row["exit_code"],
        error=row["error"], oom_killed=bool(row["oom_killed"]), started_at=row["started_at"],
        finished_at=row["finished_at"], restart_count=row["restart_count"],
        stopped_by_user=bool(row["stopped_by_user"]), health=json.loads(row["health"]) if row["health"] else None)


def get(conn: sqlite3.Connection, container_id: str) -> ContainerRecord | None:
    row = conn.execute("SELECT * FROM containers WHERE id = ?", (container_id,)).fetchone()
    return _record(row) if row else None


def find(conn: sqlite3.Connection, text: str) -> list[ContainerRecord]:
    """Docker's lookup order: full ID, exact name, then unique ID prefix (the caller reports ambiguity)."""
    for sql in ("SELECT * FROM containers WHERE id = ?", "SELECT * FROM containers WHERE name = ?"):
        row = conn.execute(sql, (text,)).fetchone()
        if row:
            return [_record(row)]
    if not text or any(c not in "0123456789abcdef" for c in text):
        return []
    return [_record(row) for row in conn.execute(
        "SELECT * FROM containers WHERE substr(id, 1, ?) = ?", (len(text), text))]


def all_containers(conn: sqlite3.Connection) -> list[ContainerRecord]:
    """Newest first, as ``docker ps`` lists them."""
    return [_record(row) for row in conn.execute("SELECT * FROM containers ORDER BY created DESC, rowid DESC")]


def name_taken(conn: sqlite3.Connection, name: str) -> str | None:
    row = conn.execute("SELECT id FROM containers WHERE name = ?", (name,)).fetchone()
    return row[0] if row else None


def insert(tx: sqlite3.Connection, record: ContainerRecord, volumes: list[str]) -> None:
    tx.execute(
        "INSERT INTO containers(id, name, image_id, image, created, config, host_config, mounts, status) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (record.id, record.name, record.image_id, record.image, record.created, json.dumps(record.config),
         json.dumps(record.host_config), json.dumps(record.mounts), record.status))
    tx.executemany("INSERT OR IGNORE INTO container_volumes(container_id, volume) VALUES (?, ?)",
                   [(record.id, volume) for volume in volumes])


def update_state(tx: sqlite3.Connection, container_id: str, **values: Any) -> None:
    unknown = set(values) - STATE_COLUMNS
    if unknown:
        raise ValueError(f"not state columns: {sorted(unknown)}")
    if "health" in values:
        values["health"] = json.dumps(values["health"]) if values["health"] else ""
    assignments = ", ".join(f"{name} = ?" for name in values)
    tx.execute(f"UPDATE containers SET {assignments} WHERE id = ?", (*values.values(), container_id))


def update_config(tx: sqlite3.Connection, container_id: str, *, name: str | None = None,
                  host_config: dict[str, Any] | None = None) -> None:
    if name is not None:
        tx.execute("UPDATE containers SET name = ? WHERE id = ?", (name, container_id))
    if host_config is not None:
        tx.execute("UPDATE containers SET host_config = ? WHERE id = ?", (json.dumps(host_config), container_id))


def delete(tx: sqlite3.Connection, container_id: str) -> None:
    tx.execute("DELETE FROM containers WHERE id = ?", (container_id,))


def volumes_of(conn: sqlite3.Connection, container_id: str) -> list[str]:
    return [row[0] for row in conn.execute(
        "SELECT volume FROM container_volumes WHERE container_id = ? ORDER BY volume", (container_id,))]


def image_users(conn: sqlite3.Connection, image_id: str) -> list[str]:
    return [row[0] for row in conn.execute("SELECT id FROM containers WHERE image_id = ?", (image_id,))]


def count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM containers").fetchone()[0])
