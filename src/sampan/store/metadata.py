"""The metadata store: one SQLite database (WAL) in the storage root, with a versioned schema.

Every multi-step change runs in one ``BEGIN IMMEDIATE`` transaction, so many CLI processes can work at once: SQLite
serialises writers (with a generous busy timeout) and readers see a consistent snapshot. Schema changes are
numbered migrations recorded in ``PRAGMA user_version``; a database from a newer sampan is refused, not guessed at.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sampan.errors import SampanError

BUSY_TIMEOUT_S = 60.0

# Each entry moves the schema from version N to N+1. Never edit a released entry: append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE images (
        id              TEXT PRIMARY KEY,   -- config digest: the image ID, as in Docker
        manifest_digest TEXT NOT NULL,      -- the manifest kept for save/push
        created         REAL NOT NULL,      -- from the config, for sorting and filters
        size            INTEGER NOT NULL,   -- sum of the layers' unpacked content sizes
        labels          TEXT NOT NULL DEFAULT '{}',
        parent          TEXT NOT NULL DEFAULT '',
        added           REAL NOT NULL,
        last_tag_time   REAL
    );
    CREATE TABLE image_layers (
        image_id    TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        position    INTEGER NOT NULL,
        chain_id    TEXT NOT NULL,
        blob_digest TEXT NOT NULL,
        PRIMARY KEY (image_id, position)
    );
    CREATE INDEX image_layers_chain ON image_layers(chain_id);
    CREATE INDEX image_layers_blob ON image_layers(blob_digest);
    CREATE TABLE tags (
        repo     TEXT NOT NULL,
        tag      TEXT NOT NULL,
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        PRIMARY KEY (repo, tag)
    );
    CREATE INDEX tags_image ON tags(image_id);
    CREATE TABLE repo_digests (
        repo     TEXT NOT NULL,
        digest   TEXT NOT NULL,
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        PRIMARY KEY (repo, digest)
    );
    CREATE INDEX repo_digests_image ON repo_digests(image_id);
    CREATE TABLE blobs (
        digest     TEXT PRIMARY KEY,
        size       INTEGER NOT NULL,
        media_type TEXT NOT NULL DEFAULT '',
        diff_id    TEXT                     -- for layer blobs: digest of the uncompressed tar
    );
    CREATE TABLE snapshots (
        chain_id TEXT PRIMARY KEY,
        parent   TEXT NOT NULL DEFAULT '',
        diff_id  TEXT NOT NULL,
        size     INTEGER NOT NULL,
        created  REAL NOT NULL
    );
    CREATE TABLE leases (
        id         TEXT PRIMARY KEY,
        pid        INTEGER NOT NULL,
        start_time TEXT NOT NULL,
        created    REAL NOT NULL
    );
    CREATE TABLE lease_resources (
        lease_id TEXT NOT NULL REFERENCES leases(id) ON DELETE CASCADE,
        kind     TEXT NOT NULL,             -- 'blob' or 'snapshot'
        key      TEXT NOT NULL,
        PRIMARY KEY (lease_id, kind, key)
    );
    CREATE INDEX lease_resources_key ON lease_resources(kind, key);
    """,
    """
    CREATE TABLE volumes (
        name      TEXT PRIMARY KEY,         -- Docker's [a-zA-Z0-9][a-zA-Z0-9_.-]+, or 64 hex for anonymous ones
        driver    TEXT NOT NULL DEFAULT 'local',
        labels    TEXT NOT NULL DEFAULT '{}',
        options   TEXT NOT NULL DEFAULT '{}', -- driver options (-o): type, device, o
        anonymous INTEGER NOT NULL DEFAULT 0, -- created without a name: what 'volume prune' removes without -a
        created   REAL NOT NULL
    );
    """,
    """
    CREATE TABLE containers (
        id            TEXT PRIMARY KEY,     -- 64 hex, as Docker
        name          TEXT NOT NULL UNIQUE, -- without Docker's leading "/"
        image_id      TEXT NOT NULL,        -- keeps the image (and its snapshots) from being removed
        image         TEXT NOT NULL,        -- the reference as the user gave it
        created       REAL NOT NULL,
        config        TEXT NOT NULL,        -- Docker's Config object (JSON)
        host_config   TEXT NOT NULL,        -- Docker's HostConfig object (JSON)
        mounts        TEXT NOT NULL DEFAULT '[]', -- Docker's Mounts list (JSON)
        status        TEXT NOT NULL,        -- created, running, paused, restarting, removing, exited, dead
        pid           INTEGER NOT NULL DEFAULT 0,
        pid_start     TEXT NOT NULL DEFAULT '',   -- /proc/<pid>/stat start time: a reused pid is not ours
        monitor_pid   INTEGER NOT NULL DEFAULT 0,
        monitor_start TEXT NOT NULL DEFAULT '',
        exit_code     INTEGER NOT NULL DEFAULT 0,
        error         TEXT NOT NULL DEFAULT '',
        oom_killed    INTEGER NOT NULL DEFAULT 0,
        started_at    REAL NOT NULL DEFAULT 0,
        finished_at   REAL NOT NULL DEFAULT 0,
        restart_count INTEGER NOT NULL DEFAULT 0,
        stopped_by_user INTEGER NOT NULL DEFAULT 0, -- stop/kill: no restart by the policy (but unless-stopped)
        health        TEXT NOT NULL DEFAULT ''    -- Docker's State.Health (JSON) when there is a health check
    );
    CREATE INDEX containers_image ON containers(image_id);
    CREATE TABLE container_volumes (
        container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        volume       TEXT NOT NULL,
        PRIMARY KEY (container_id, volume)
    );
    CREATE INDEX container_volumes_volume ON container_volumes(volume);
    """,
    """
    CREATE TABLE networks (
        id       TEXT PRIMARY KEY,          -- 64 hex, as Docker
        name     TEXT NOT NULL UNIQUE,
        driver   TEXT NOT NULL DEFAULT 'bridge',
        bridge   TEXT NOT NULL UNIQUE,      -- the Linux bridge's name
        subnet   TEXT NOT NULL UNIQUE,      -- IPv4 CIDR
        gateway  TEXT NOT NULL,
        ip_range TEXT NOT NULL DEFAULT '',
        internal INTEGER NOT NULL DEFAULT 0,
        mtu      INTEGER NOT NULL DEFAULT 1500,
        options  TEXT NOT NULL DEFAULT '{}',
        labels   TEXT NOT NULL DEFAULT '{}',
        created  REAL NOT NULL
    );
    CREATE TABLE network_attachments (        -- a container's configured networks (docker network connect)
        container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        network_id   TEXT NOT NULL REFERENCES networks(id),
        position     INTEGER NOT NULL,          -- connection order: the first gives the default route
        aliases      TEXT NOT NULL DEFAULT '[]',
        static_ip    TEXT NOT NULL DEFAULT '',  -- --ip
        static_mac   TEXT NOT NULL DEFAULT '',  -- --mac-address
        address      TEXT,                      -- the address reserved while the container runs, else NULL
        mac          TEXT NOT NULL DEFAULT '',
        endpoint_id  TEXT NOT NULL DEFAULT '',
        veth         TEXT NOT NULL DEFAULT '',  -- the host end while running
        PRIMARY KEY (container_id, network_id),
        UNIQUE (network_id, address)
    );
    CREATE INDEX network_attachments_network ON network_attachments(network_id);
    CREATE TABLE port_reservations (          -- published ports while a container runs (nft map elements)
        container_id   TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        proto          TEXT NOT NULL,
        host_ip        TEXT NOT NULL,           -- '' for every address
        host_port      INTEGER NOT NULL,
        address        TEXT NOT NULL,           -- the container's address it is forwarded to
        container_port INTEGER NOT NULL,
        UNIQUE (proto, host_port, host_ip)
    );
    CREATE INDEX port_reservations_container ON port_reservations(container_id);
    """,
)


class Database:
    """A lazily opened connection with transaction helpers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        self._migrate(conn)
        return conn

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        if conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS):
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise SampanError(
                    f"the storage database is schema version {version}, newer than this sampan understands "
                    f"({len(MIGRATIONS)}); upgrade sampan")
            for step in MIGRATIONS[version:]:
                for statement in step.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version={len(MIGRATIONS)}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic change. ``IMMEDIATE`` takes the write lock up front, so read-then-write cannot race."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
