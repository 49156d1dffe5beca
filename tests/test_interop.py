"""Interop with the real peers: Debian's dockerd/docker CLI and skopeo read what sampan writes, and the reverse.

The private dockerd comes from the ``docker`` fixture in conftest.py.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import Sampan, docker_cli as _docker

pytestmark = pytest.mark.slow


def _tarball(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_docker_loads_sampan_save(docker: dict[str, str], sampan: Sampan, busybox: str, tmp_path: Path) -> None:
    archive = tmp_path / "bb.tar"
    sampan("save", "-o", str(archive), "busybox")
    out = _docker(docker, "load", "-i", str(archive))
    assert "busybox:latest" in out
    assert _docker(docker, "image", "inspect", "-f", "{{.Id}}", "busybox:latest").strip() == busybox
    history = _docker(docker, "history", "--format", "{{.CreatedBy}}", "busybox:latest")
    assert "CMD" in history
    _docker(docker, "rmi", "busybox:latest")


def test_sampan_loads_docker_save_with_same_id(docker: dict[str, str], sampan: Sampan, tmp_path: Path) -> None:
    image_id = _docker(docker, "import", "-c", "CMD [\"/hello\"]", "-", "fromdocker:v1",
                       input=_tarball({"hello": b"hello from docker\n", "etc/x": b"x"})).strip()
    archive = tmp_path / "docker.tar"
    _docker(docker, "save", "-o", str(archive), "fromdocker:v1")
    assert sampan("load", "-i", str(archive)).stdout.strip() == "Loaded image: fromdocker:v1"
    info = sampan("image", "inspect", "-f", "{{.Id}} {{json .Config.Cmd}}", "fromdocker:v1").stdout.split()
    assert info == [image_id, '["/hello"]']
    lower = sampan("image", "inspect", "-f", "{{.GraphDriver.Data.LowerDir}}", "fromdocker:v1").stdout.strip()
    assert (Path(lower) / "hello").read_bytes() == b"hello from docker\n"
    _docker(docker, "rmi", "fromdocker:v1")


def _tar_dir(directory: Path, out: Path) -> Path:
    with tarfile.open(out, "w") as tar:
        for entry in sorted(directory.rglob("*")):
            tar.add(entry, arcname=str(entry.relative_to(directory)), recursive=False)
    return out


def _layout_config_digest(layout: Path) -> str:
    """The config digest skopeo wrote (read directly: skopeo's own ``oci:`` reader skips Docker media types)."""
    manifest_digest = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
    manifest = json.loads((layout / "blobs" / "sha256" / manifest_digest[7:]).read_text())
    return manifest["config"]["digest"]


def test_skopeo_reads_sampan_save_and_its_oci_layouts_load(sampan: Sampan, busybox: str, tmp_path: Path) -> None:
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed")
    archive = tmp_path / "bb.tar"
    sampan("save", "-o", str(archive), "busybox")
    inspected = subprocess.run(["skopeo", "inspect", "--config", f"docker-archive:{archive}"],
                               capture_output=True, text=True, check=True).stdout
    assert json.loads(inspected)["config"]["Cmd"] == ["sh"]
    # the same tarball is an OCI layout too
    subprocess.run(["skopeo", "inspect", f"oci-archive:{archive}"], capture_output=True, check=True)
    sampan("rmi", "busybox")
    for n, (source, extra) in enumerate([(f"docker-archive:{archive}", ["--preserve-digests"]),
                                         (f"oci-archive:{archive}", []),
                                         (f"docker-archive:{archive}", [])]):
        layout = tmp_path / f"layout{n}"
        subprocess.run(["skopeo", "copy", "--quiet", *extra, source, f"oci:{layout}:latest"], check=True,
                       capture_output=True)
        expected = _layout_config_digest(layout)
        if extra or source.startswith("oci"):
            assert expected == busybox  # skopeo kept the config, so the image ID is the same
        # skopeo names the image only "latest": an OCI layout without a full name loads untagged, as in Docker
        loaded = sampan("load", "-i", str(_tar_dir(layout, tmp_path / f"oci{n}.tar"))).stdout.strip()
        assert loaded == f"Loaded image ID: {expected}"
    assert sampan("system", "check").returncode == 0
