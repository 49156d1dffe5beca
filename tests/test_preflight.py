"""Starting without root, overlayfs or namespaces fails at once with one line naming what is missing.

Real conditions, not mocks: a real unprivileged user, and a private mount namespace in which /proc is replaced
so the kernel's answers about filesystems and namespaces are the ones under test.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import SAMPAN, Sampan


def _run(sampan: Sampan, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, env=sampan.env, timeout=60)


def test_not_root(sampan: Sampan) -> None:
    r = _run(sampan, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", SAMPAN, "images")
    assert r.returncode == 125
    assert r.stderr.strip() == "Error: sampan must run as root (effective uid is 65534)"
    assert not sampan.root.exists()


def test_version_needs_nothing(sampan: Sampan) -> None:
    r = _run(sampan, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", SAMPAN, "--version")
    assert r.returncode == 0 and r.stdout.startswith("sampan version")


def _with_fake_proc(sampan: Sampan, tmp_path: Path, filesystems: str, namespaces: list[str]) -> \
        subprocess.CompletedProcess[str]:
    fs = tmp_path / "filesystems"
    fs.write_text(filesystems)
    make_ns = " ".join(f"/proc/self/ns/{ns}" for ns in namespaces)
    script = (f"mount -t tmpfs none /proc && cp {fs} /proc/filesystems && mkdir -p /proc/self/ns && "
              f"{'touch ' + make_ns + ' && ' if namespaces else ''}exec {SAMPAN} images")
    return _run(sampan, "unshare", "--mount", "--propagation", "private", "sh", "-c", script)


def test_no_overlayfs(sampan: Sampan, tmp_path: Path) -> None:
    r = _with_fake_proc(sampan, tmp_path, "nodev\tproc\n\text4\n", ["mnt", "pid", "net", "uts", "ipc", "user",
                                                                       "cgroup"])
    assert r.returncode == 125 and r.stderr.count("\n") == 1
    assert "overlayfs is not available" in r.stderr


def test_no_namespaces(sampan: Sampan, tmp_path: Path) -> None:
    r = _with_fake_proc(sampan, tmp_path, "nodev\toverlay\n", ["mnt"])
    assert r.returncode == 125 and r.stderr.count("\n") == 1
    assert "namespace support is missing: pid, net, uts, ipc, user, cgroup" in r.stderr
