"""Many CLI processes at once (tag, rmi, load) never corrupt the store."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

from conftest import SAMPAN, Sampan


def _image_archive(sampan: Sampan, tmp_path: Path) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(50):
            data = f"file {i}\n".encode() * 100
            info = tarfile.TarInfo(f"data/f{i}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    sampan("import", "-", "second:latest", input=buf.getvalue())
    archive = tmp_path / "second.tar"
    sampan("save", "-o", str(archive), "second")
    sampan("rmi", "second")
    return archive


def test_twenty_concurrent_processes(sampan: Sampan, busybox: str, tmp_path: Path) -> None:
    archive = _image_archive(sampan, tmp_path)
    for i in range(4):
        sampan("tag", "busybox", f"old{i}")
    commands = []
    for i in range(6):
        commands.append(["load", "-i", str(archive)])
        commands.append(["tag", "busybox", f"new{i}"])
    for i in range(4):
        commands.append(["rmi", f"old{i}"])
        commands.append(["rmi", "-f", "second:latest"])
    assert len(commands) == 20
    procs = [subprocess.Popen([SAMPAN, *cmd], env=sampan.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for cmd in commands]
    results = [(cmd, proc.wait(timeout=120), proc.stderr.read().decode()) for cmd, proc in zip(commands, procs)]
    for cmd, code, err in results:
        proc_ok = code == 0 or (cmd[:2] == ["rmi", "-f"] and "No such image" in err)
        assert proc_ok, (cmd, code, err)
        assert "Traceback" not in err and "database is locked" not in err
    check = sampan("system", "check")
    assert check.stdout.strip() == "store is consistent", check.stdout
    engine = sampan.engine()
    assert engine.db.query("PRAGMA integrity_check")[0][0] == "ok"
    assert engine.db.query("PRAGMA foreign_key_check") == []
    tags = set(sampan("images", "--format", "{{.Repository}}").stdout.split())
    assert {f"new{i}" for i in range(6)} <= tags and not any(t.startswith("old") for t in tags)
    # whatever the interleaving, every image that survived is complete and loads its layers
    for image_id in sampan("images", "-q", "--no-trunc").stdout.split():
        lower = sampan("image", "inspect", "-f", "{{.GraphDriver.Data.LowerDir}}", image_id).stdout.strip()
        assert all(Path(p).is_dir() for p in lower.split(":"))
    # and a final load after the storm works
    sampan("load", "-i", str(archive))
    assert sampan("system", "check").stdout.strip() == "store is consistent"
