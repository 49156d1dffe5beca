"""Docker's default seccomp profile, as ``build_spec`` applies it, in a real container.

The spec comes from ``build_spec`` with no ``--security-opt seccomp=...``: the container runs under the
default profile, where ordinary commands work and ``unshare`` (which needs no capability for a user
namespace) is refused with EPERM. ``seccomp=unconfined`` leaves the same commands unfiltered. runc is the
oracle; sampan-runc must behave the same.
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from sampan.engine.specgen import RunOptions, build_spec

# Seccomp mode (2: filter), an ordinary command, then a user (and mount) namespace and a mount inside it.
SCRIPT = ("grep '^Seccomp:' /proc/self/status; ls / >/dev/null && echo ls-ok; "
          "unshare -U -r -m mount -t tmpfs t /tmp 2>&1 && echo unshare-ok; true")


def _run(runtime: str, security_opt: list[str]) -> list[str]:
    runtime_conftest = importlib.import_module("runtime.conftest")  # tests/runtime/conftest.py
    binary, make_rootfs = runtime_conftest.RUNTIMES[runtime], runtime_conftest.make_rootfs
    base = Path(tempfile.mkdtemp(prefix="sampan-seccomp-default-"))
    base.chmod(0o755)
    cid = f"seccomp{uuid.uuid4().hex[:12]}"
    parent = f"/sampan-seccomp-test-{uuid.uuid4().hex[:8]}"
    state = base / "state"
    try:
        rootfs = make_rootfs(base / "rootfs")
        options = RunOptions(command=["sh", "-c", SCRIPT], security_opt=security_opt, cgroup_parent=parent)
        spec = build_spec({}, options, rootfs=str(rootfs), container_id=cid, bundle=str(base))
        assert ("seccomp" in spec["linux"]) == (security_opt == [])
        (base / "config.json").write_text(json.dumps(spec))
        proc = subprocess.run([binary, "--root", str(state), "run", "--bundle", str(base), cid],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                              check=False)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.splitlines()
    finally:
        subprocess.run([binary, "--root", str(state), "delete", "--force", cid], capture_output=True,
                       check=False)
        shutil.rmtree(base, ignore_errors=True)
        for leftover in (*(c / parent.lstrip("/") for c in Path("/sys/fs/cgroup").iterdir() if c.is_dir()),
                         Path("/sys/fs/cgroup") / parent.lstrip("/")):
            for path in (leftover / cid, leftover):
                if path.is_dir():
                    try:
                        path.rmdir()
                    except OSError:
                        pass


@pytest.mark.parametrize("runtime", ["runc", "sampan-runc"])
def test_default_profile_refuses_unshare(runtime: str) -> None:
    lines = _run(runtime, [])
    assert lines[0].split() == ["Seccomp:", "2"]
    assert lines[1] == "ls-ok"
    assert lines[2].startswith("unshare: unshare(") and lines[2].endswith("Operation not permitted"), lines
    assert "unshare-ok" not in lines


@pytest.mark.parametrize("runtime", ["runc", "sampan-runc"])
def test_unconfined_does_not_filter(runtime: str) -> None:
    lines = _run(runtime, ["seccomp=unconfined"])
    assert lines == ["Seccomp:\t0", "ls-ok", "unshare-ok"]
