"""Container state on disk (``<root>/<id>/state.json``) and the status derived from the live system.

As in runc, the file records what was decided at create time (pid, bundle, cgroup, config); the *status* is never
stored but derived each time: a dead init means "stopped", a live init still blocked on its exec fifo means
"created", a frozen cgroup means "paused", otherwise "running". The init's start time is recorded with its pid so a
recycled pid is never mistaken for the container.
"""

from __future__ import annotations

import json
import os
import re

from sampan._linux.proc import process_start_time, process_state
from sampan.errors import Conflict, InvalidArgument, NotFound

TYPE_CHECKING = False  # typing/collections.abc are not imported at run time: start-up cost
if TYPE_CHECKING:
    from typing import Any

OCI_VERSION = "1.2.0"
DEFAULT_ROOT = "/run/sampan-runc"
_ID_RE = re.compile(r"[\w+\-.]+")
EXEC_FIFO = "exec.fifo"


def validate_id(container_id: str) -> str:
    if not _ID_RE.fullmatch(container_id) or container_id in (".", "..") or len(container_id) > 1024:
        raise InvalidArgument(f"invalid container id format: {container_id}")
    return container_id


class State:
    """What ``create`` decided, saved as JSON (a plain class: dataclasses would cost every start milliseconds)."""

    FIELDS = ("id", "bundle", "rootfs", "pid", "pid_start", "created", "cgroup_path", "config", "annotations",
              "owner")

    def __init__(self, id: str, bundle: str, rootfs: str, pid: int, pid_start: str, created: str,  # noqa: A002
                 cgroup_path: str, config: dict[str, Any], annotations: dict[str, str] | None = None,
                 owner: str = "") -> None:
        self.id, self.bundle, self.rootfs = id, bundle, rootfs
        self.pid, self.pid_start, self.created = pid, pid_start, created
        self.cgroup_path, self.config = cgroup_path, config
        self.annotations = annotations or {}
        self.owner = owner

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.FIELDS}

    def status(self, state_dir: str) -> str:
        if self.pid <= 0 or process_start_time(self.pid) != self.pid_start or process_state(self.pid) in (None, "Z", "X"):
            return "stopped"
        if self._frozen():  # first, as runc: a created container can be paused too
            return "paused"
        if os.path.exists(os.path.join(state_dir, EXEC_FIFO)):
            return "created"
        return "running"

    def _frozen(self) -> bool:
        from sampan.runtime.cgroups import open_cgroup

        try:
            return open_cgroup(self.cgroup_path).state() == "frozen"
        except OSError:
            return False

    def oci_state(self, state_dir: str) -> dict[str, Any]:
        """The runtime-spec state object, in runc's field order."""
        status = self.status(state_dir)
        out: dict[str, Any] = {"ociVersion": OCI_VERSION, "id": self.id,
                               "pid": self.pid if status != "stopped" else 0, "status": status,
                               "bundle": self.bundle, "rootfs": self.rootfs, "created": self.created,
                               "owner": self.owner}
        if self.annotations:
            out["annotations"] = self.annotations
        return out


class StateStore:
    """The directory of container state directories (runc's ``--root``)."""

    def __init__(self, root: str = DEFAULT_ROOT) -> None:
        self.root = root

    def dir(self, container_id: str) -> str:
        return os.path.join(self.root, validate_id(container_id))

    def reserve(self, container_id: str) -> str:
        """Create the state directory; its existence is the claim on the ID."""
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        path = self.dir(container_id)
        try:
            os.mkdir(path, 0o711)
        except FileExistsError:
            raise Conflict(f"container with id exists: {container_id}") from None
        return path

    def save(self, state: State) -> None:
        path = os.path.join(self.dir(state.id), "state.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state.to_dict(), f)
        os.rename(tmp, path)

    def load(self, container_id: str) -> State:
        path = os.path.join(self.dir(container_id), "state.json")
        try:
            with open(path) as f:
                return State(**json.load(f))
        except FileNotFoundError:
            raise NotFound(f"container {container_id} does not exist") from None

    def remove(self, container_id: str) -> None:
        """Remove the state directory. It holds only files (state.json, the exec fifo, the kept seccomp program): ``shutil``, whose import
        costs a foreground ``run`` two milliseconds, is only needed if something put a directory there."""
        path = self.dir(container_id)
        try:
            for name in os.listdir(path):
                os.unlink(os.path.join(path, name))
            os.rmdir(path)
        except FileNotFoundError:
            pass
        except OSError:
            import shutil

            shutil.rmtree(path, ignore_errors=True)

    def ids(self) -> list[str]:
        try:
            return sorted(e.name for e in os.scandir(self.root)
                          if e.is_dir() and os.path.exists(os.path.join(e.path, "state.json")))
        except FileNotFoundError:
            return []
