"""Seccomp user notification end to end: sampan-runc hands the listener fd to an agent, which answers for the
container (runc's protocol: the state JSON as payload, the fd as SCM_RIGHTS)."""

from __future__ import annotations

import errno
import json
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from sampan._linux import seccomp as scmp

from .conftest import Runner


class Agent:
    """Accepts one listener fd and fails every notified syscall with EROFS, recording what it saw."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        self.message: dict[str, Any] = {}
        self.answered = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            payload, fds, _, _ = socket.recv_fds(conn, 65536, 1)
        self.message = json.loads(payload)
        listener = fds[0]
        try:
            while True:
                note = scmp.notify_receive(listener)
                scmp.notify_respond(listener, note.id, error=-errno.EROFS)
                self.answered += 1
        except OSError:
            pass  # the container exited: the listener is dead

    def close(self) -> None:
        self.server.close()


@pytest.mark.parametrize("nnp", [False, True])
def test_notify_agent_answers_for_the_container(runtime: Runner, tmp_path: Path, nnp: bool) -> None:
    if runtime.name == "runc":
        pytest.skip("the oracle here is the agent protocol; runc 1.1.5 is checked by the seccomp module tests")
    agent = Agent(tmp_path / "agent.sock")
    try:
        def profile(config: dict[str, Any]) -> None:
            config["process"]["noNewPrivileges"] = nnp
            config["linux"]["seccomp"] = {
                "defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                "listenerPath": str(agent.path), "listenerMetadata": "test-meta",
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}
        r = runtime.run(["sh", "-c", "mkdir /tmp/x 2>&1; echo rc=$?"], mutate=profile)
        assert "Read-only file system" in r.out and "rc=1" in r.out, (r.out, r.err)
        agent.thread.join(5)
        assert agent.answered >= 1
        assert agent.message["fds"] == ["seccompFd"] and agent.message["metadata"] == "test-meta"
        assert agent.message["state"]["status"] == "creating" and agent.message["state"]["pid"] > 0
    finally:
        agent.close()
