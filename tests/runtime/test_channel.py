"""The runtime's sync channel: marshal frames with fds over a Unix stream socket pair."""

from __future__ import annotations

import os

from sampan.runtime.channel import Channel


def test_fds_stay_with_their_frame_when_frames_arrive_together() -> None:
    """A stream socket may hand several frames to one read together with the fds of the last one: each fd must
    still come out with the frame that carried it (a seccomp listener once came out with the "pid" before it)."""
    ours, theirs = Channel.pair()
    r, w = os.pipe()
    try:
        theirs.send(type="pid", pid=42)
        theirs.send([w], type="seccomp-listener")
        theirs.send(type="ready")
        first, second, third = ours.recv(), ours.recv(), ours.recv()
        assert first == {"type": "pid", "pid": 42}
        assert second["type"] == "seccomp-listener" and len(second["fds"]) == 1
        assert os.fstat(second["fds"][0]).st_ino == os.fstat(w).st_ino
        assert os.get_inheritable(second["fds"][0]) is False  # received close-on-exec
        os.close(second["fds"][0])
        assert third == {"type": "ready"}
    finally:
        for fd in (r, w):
            os.close(fd)
        ours.close()
        theirs.close()


def test_large_frames_and_eof() -> None:
    ours, theirs = Channel.pair()
    spec = {"mounts": [{"destination": f"/m{i}", "options": ["rbind"] * 10} for i in range(3000)]}
    pid = os.fork()
    if pid == 0:  # a second process writes, so the frame (larger than the socket buffer) streams in parts
        ours.close()
        theirs.send(type="plan", plan=spec)
        os._exit(0)
    theirs.close()
    try:
        assert ours.recv() == {"type": "plan", "plan": spec}
        assert ours.recv() == {"type": "eof"}
    finally:
        os.waitpid(pid, 0)
        ours.close()
