"""Where everything lives on disk, in one place, so no other module builds storage paths by hand.

The storage root (default ``/var/lib/sampan``) holds durable state; the run-time root (default ``/run/sampan``)
holds state that must not survive a reboot (mountpoints, pid files, sockets). Both are overridable so that each
test, and each user who wants one, gets an isolated engine.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_ROOT = "/var/lib/sampan"
DEFAULT_RUNROOT = "/run/sampan"


def unique_name(prefix: str) -> str:
    """``prefix`` made unique with 128 random bits: the names of staging directories and of what is moved to the
    trash. (``uuid`` would do as well, but it imports ``platform``: a millisecond of every ``run``.)"""
    return f"{prefix}-{os.urandom(16).hex()}"


class Layout:
    """A plain class, not a dataclass: every command builds one, and a dataclass costs about a millisecond at
    start-up (with the ``dataclasses`` module itself, several)."""

    def __init__(self, root: Path, runroot: Path) -> None:
        self.root, self.runroot = root, runroot

    def __repr__(self) -> str:
        return f"Layout(root={self.root!r}, runroot={self.runroot!r})"

    @classmethod
    def from_options(cls, root: str | None = None, runroot: str | None = None) -> Layout:
        """Flags win over the environment, which wins over the defaults."""
        root = root or os.environ.get("SAMPAN_ROOT") or DEFAULT_ROOT
        runroot = runroot or os.environ.get("SAMPAN_RUNROOT") or DEFAULT_RUNROOT
        return cls(Path(root).absolute(), Path(runroot).absolute())

    @property
    def database(self) -> Path:
        return self.root / "sampan.db"

    @property
    def blobs(self) -> Path:
        return self.root / "blobs" / "sha256"

    @property
    def ingest(self) -> Path:
        """Partial blobs being written; never visible as content until verified and renamed."""
        return self.root / "ingest"

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    @property
    def tmp(self) -> Path:
        """Staging for multi-file work (unpacking, archives); same filesystem as the targets for atomic renames."""
        return self.root / "tmp"

    @property
    def trash(self) -> Path:
        """Directories renamed here inside a transaction are deleted after it commits."""
        return self.root / "trash"

    @property
    def volumes(self) -> Path:
        """Named volumes: ``volumes/<name>/_data`` is what containers mount."""
        return self.root / "volumes"

    @property
    def containers(self) -> Path:
        """Per container: the OCI bundle (``config.json``), the writable layer (``diff``, ``work``), the rootfs
        mountpoint (``merged``), /etc/hosts, /etc/hostname, /etc/resolv.conf and the json-file log."""
        return self.root / "containers"

    @property
    def container_runs(self) -> Path:
        """Per running container: the monitor's attach socket and exit file (gone after a reboot)."""
        return self.runroot / "containers"

    @property
    def runtime(self) -> Path:
        """The in-process runtime's state root (sampan-runc's ``--root``)."""
        return self.runroot / "runtime"

    @property
    def locks(self) -> Path:
        return self.runroot / "locks"

    def ensure(self) -> None:
        """Create the tree (idempotent). Private to root: image content may hold setuid files."""
        self.root.mkdir(mode=0o711, parents=True, exist_ok=True)
        for path in (self.blobs, self.ingest, self.snapshots, self.tmp, self.trash, self.containers):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.volumes.mkdir(mode=0o701, exist_ok=True)  # as Docker: traversable, not listable
        for path in (self.locks, self.container_runs, self.runtime):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
