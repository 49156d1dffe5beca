"""The OCI runtime a container uses: sampan's own, called in-process, or any runc-compatible binary (``--runtime``).

Both are driven through the same few verbs. The in-process one avoids a process start per verb (the point of
being a library); an external binary is run with its own state root under the run-time root, exactly as dockerd
and podman run runc, and must leave the container's init as a child of the monitor (a child subreaper).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from typing import TYPE_CHECKING, Any, Protocol

from sampan.errors import NotFound, SampanError

if TYPE_CHECKING:
    import subprocess  # an external runtime's verbs import it: sampan's own runtime needs none

    from sampan.engine.context import Engine
    from sampan.store.containers import ContainerRecord

DEFAULT = "sampan"


class RuntimeError_(SampanError):
    exit_code = 126


class Driver(Protocol):
    def first_process(self) -> Any: ...
    def create(self, container_id: str, bundle: str, console: socket.socket | None, first: Any = None) -> int: ...
    def start(self, container_id: str) -> None: ...
    def kill(self, container_id: str, sig: int, all: bool = False) -> None: ...
    def delete(self, container_id: str) -> None: ...
    def pause(self, container_id: str) -> None: ...
    def resume(self, container_id: str) -> None: ...
    def update(self, container_id: str, resources: dict[str, Any]) -> None: ...
    def pids(self, container_id: str) -> list[int]: ...
    def oom_killed(self, container_id: str) -> bool: ...
    def stats(self, container_id: str) -> dict[str, Any]: ...
    def exec(self, container_id: str, process: dict[str, Any], console: socket.socket | None,
             detach: bool, pid_file: str | None = None, first: Any = None) -> int: ...


class InProcess:
    """sampan's runtime as a library: no fork/exec of a runtime binary per verb."""

    def __init__(self, root: str) -> None:
        from sampan.runtime.container import Runtime

        self.runtime = Runtime(root)

    def first_process(self) -> Any:
        """The runtime's first process for a create or exec, forked now, on this process's stdio, so that its
        interpreter starts while the caller prepares (see ``sampan.runtime.first_process``)."""
        from sampan.runtime.first_process import InitProcess

        return InitProcess()

    def create(self, container_id: str, bundle: str, console: socket.socket | None, first: Any = None) -> int:
        state = self.runtime.create(container_id, bundle, console_fd=console.detach() if console else -1,
                                    first=first)
        return state.pid

    def start(self, container_id: str) -> None:
        self.runtime.start(container_id)

    def kill(self, container_id: str, sig: int, all: bool = False) -> None:
        self.runtime.kill(container_id, sig, all=all)

    def delete(self, container_id: str) -> None:
        self.runtime.delete(container_id, force=True)

    def pause(self, container_id: str) -> None:
        self.runtime.pause(container_id)

    def resume(self, container_id: str) -> None:
        self.runtime.resume(container_id)

    def update(self, container_id: str, resources: dict[str, Any]) -> None:
        self.runtime.update(container_id, resources)

    def pids(self, container_id: str) -> list[int]:
        return self.runtime.pids(container_id)

    def stats(self, container_id: str) -> dict[str, Any]:
        return self.runtime.stats(container_id)

    def oom_killed(self, container_id: str) -> bool:
        from sampan.runtime.cgroups import open_cgroup

        try:
            state = self.runtime.states.load(container_id)
        except NotFound:
            return False
        cgroup = open_cgroup(state.cgroup_path)
        return cgroup.exists() and cgroup.oom_killed()

    def exec(self, container_id: str, process: dict[str, Any], console: socket.socket | None,
             detach: bool, pid_file: str | None = None, first: Any = None) -> int:
        return self.runtime.exec(container_id, process, detach=detach, pid_file=pid_file,
                                 console_fd=console.detach() if console else -1, first=first,
                                 agent_optional=True)  # the agent is the monitor: exec still works without it


class External:
    """A runc-compatible binary, with its state under ``root``."""

    def __init__(self, binary: str, root: str) -> None:
        path = shutil.which(binary)
        if path is None:
            raise RuntimeError_(f"OCI runtime {binary!r} not found")
        self.binary, self.root = path, root

    def _run(self, *args: str, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        import subprocess

        result = subprocess.run([self.binary, "--root", self.root, *args], stdout=kwargs.pop("stdout", subprocess.PIPE),
                                stderr=subprocess.PIPE, check=False, **kwargs)
        if check and result.returncode != 0:
            message = result.stderr.decode(errors="replace").strip().splitlines()
            raise RuntimeError_(f"{os.path.basename(self.binary)}: {message[-1] if message else 'failed'}")
        return result

    def _with_console(self, console: socket.socket | None, args: list[str], run: Any) -> Any:
        """runc's console protocol: it connects to a socket we listen on and sends the pty master."""
        if console is None:
            return run(args)
        import tempfile

        from sampan.runtime.console import recv_fd, send_fd

        with tempfile.TemporaryDirectory(dir=self.root) as tmp:
            path = os.path.join(tmp, "console.sock")
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(path)
            listener.listen(1)
            listener.settimeout(30)
            result = run(["--console-socket", path, *args])
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                raise RuntimeError_("the runtime sent no console") from None
            with conn:
                send_fd(console, recv_fd(conn), "console")
            listener.close()
            return result

    def first_process(self) -> None:
        """None: the binary starts its own."""
        return None

    def create(self, container_id: str, bundle: str, console: socket.socket | None, first: Any = None) -> int:
        """``create`` hands our stdio to the container, so it must not be captured: errors come from the
        runtime's JSON log instead."""
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        pid_file = os.path.join(bundle, "runtime.pid")
        log = os.path.join(bundle, "runtime.log")

        def create(args: list[str]) -> None:
            import subprocess

            result = subprocess.run([self.binary, "--root", self.root, "--log", log, "--log-format", "json",
                                     "create", *args], check=False)
            if result.returncode != 0:
                raise RuntimeError_(f"{os.path.basename(self.binary)}: {_last_error(log)}")

        self._with_console(console, ["--bundle", bundle, "--pid-file", pid_file, container_id], create)
        with open(pid_file) as f:
            return int(f.read().strip())

    def start(self, container_id: str) -> None:
        self._run("start", container_id)

    def kill(self, container_id: str, sig: int, all: bool = False) -> None:
        self._run("kill", *(["--all"] if all else []), container_id, str(sig))

    def delete(self, container_id: str) -> None:
        self._run("delete", "--force", container_id, check=False)

    def pause(self, container_id: str) -> None:
        self._run("pause", container_id)

    def resume(self, container_id: str) -> None:
        self._run("resume", container_id)

    def update(self, container_id: str, resources: dict[str, Any]) -> None:
        self._run("update", "--resources", "-", container_id, input=json.dumps(resources).encode())

    def pids(self, container_id: str) -> list[int]:
        out = self._run("ps", "--format", "json", container_id).stdout
        return [int(p) for p in json.loads(out or b"[]")]

    def stats(self, container_id: str) -> dict[str, Any]:
        result = self._run("events", "--stats", container_id, check=False)
        try:
            return json.loads(result.stdout or b"{}").get("data") or {}
        except ValueError:
            return {}

    def oom_killed(self, container_id: str) -> bool:
        return bool((self.stats(container_id).get("memory") or {}).get("oom_kill") or 0)

    def exec(self, container_id: str, process: dict[str, Any], console: socket.socket | None,
             detach: bool, pid_file: str | None = None, first: Any = None) -> int:
        """``first``, a first process of sampan's runtime forked in advance, is not ours to use."""
        import subprocess
        import tempfile

        with tempfile.NamedTemporaryFile("w", dir=self.root, suffix=".json") as f:
            json.dump(process, f)
            f.flush()
            args = ["--process", f.name, *(["--detach"] if detach else []),
                    *(["--pid-file", pid_file] if pid_file else []), container_id]
            result = self._with_console(console, args, lambda a: subprocess.run(
                [self.binary, "--root", self.root, "exec", *a], check=False))
            return result.returncode


def _last_error(log: str) -> str:
    try:
        with open(log, "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return "failed"
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") in ("error", "fatal"):
            return str(entry.get("msg", "failed"))
    return "failed"


def driver(name: str, runtime_root: str) -> Driver:
    """The driver for a container's ``HostConfig.Runtime``."""
    if name in ("", DEFAULT):
        return InProcess(os.path.join(runtime_root, DEFAULT))
    return External(name, os.path.join(runtime_root, os.path.basename(name)))


def driver_of(engine: Engine, record: ContainerRecord) -> Driver:
    """The driver of a container (here, not in ``lifecycle``: ``exec``, ``top`` and ``stats`` need no more)."""
    return driver(record.host_config.get("Runtime", ""), str(engine.layout.runtime))
