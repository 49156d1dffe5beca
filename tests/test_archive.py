"""save/load round trips and hostile archives: nothing unverified or partial is ever stored."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from conftest import Sampan, store_listing


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


def _write(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_save_is_docker_archive_and_oci_layout(sampan: Sampan, busybox: str, tmp_path: Path) -> None:
    out = tmp_path / "out.tar"
    sampan("save", "-o", str(out), "busybox")
    members = _members(out)
    manifest = json.loads(members["manifest.json"])
    assert manifest[0]["RepoTags"] == ["busybox:latest"]
    assert manifest[0]["Config"] == f"blobs/sha256/{busybox[7:]}"
    index = json.loads(members["index.json"])
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == "docker.io/library/busybox:latest"
    assert json.loads(members["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    # streaming to stdout gives the same bytes
    streamed = tmp_path / "streamed.tar"
    with open(streamed, "wb") as f:
        import subprocess

        subprocess.run([__import__("conftest").SAMPAN, "save", "busybox"], stdout=f, env=sampan.env, check=True)
    assert streamed.read_bytes() == out.read_bytes()


def test_round_trip_keeps_ids_and_manifest_digest(sampan: Sampan, busybox: str, tmp_path: Path) -> None:
    out = tmp_path / "rt.tar"
    manifest_digest = sampan.engine().db.query("SELECT manifest_digest FROM images")[0][0]
    sampan("save", "-o", str(out), "busybox")
    sampan("rmi", "busybox")
    assert sampan("load", "-i", str(out)).stdout.strip() == "Loaded image: busybox:latest"
    assert sampan("image", "inspect", "-f", "{{.Id}}", "busybox").stdout.strip() == busybox
    assert sampan.engine().db.query("SELECT manifest_digest FROM images")[0][0] == manifest_digest
    # loading from stdin, and loading twice, is fine
    assert "Loaded image: busybox:latest" in sampan("load", input=out.read_bytes()).stdout
    assert sampan("system", "check").returncode == 0


def test_save_by_id_is_untagged(sampan: Sampan, busybox: str, tmp_path: Path) -> None:
    out = tmp_path / "id.tar"
    sampan("save", "-o", str(out), busybox[7:19])
    sampan("rmi", "busybox")
    assert sampan("load", "-i", str(out)).stdout.strip() == f"Loaded image ID: {busybox}"


def test_failed_save_leaves_no_file(sampan: Sampan, busybox: str, tmp_path: Path) -> None:
    out = tmp_path / "x.tar"
    r = sampan("save", "-o", str(out), "busybox", "nosuch", check=False)
    assert r.returncode == 1 and "No such image: nosuch:latest" in r.stderr
    assert list(tmp_path.glob("*.tar")) == [] and list(tmp_path.glob(".sampan-*")) == []


def _hostile_variants(good: dict[str, bytes], busybox: str) -> dict[str, dict[str, bytes]]:
    layer_name = json.loads(good["manifest.json"])[0]["Layers"][0]
    flipped = bytearray(good[layer_name])
    flipped[len(flipped) // 2] ^= 0xFF
    manifest = json.loads(good["manifest.json"])
    traversal = [dict(manifest[0], Config="../../../../etc/passwd")]
    bad_tag = [dict(manifest[0], RepoTags=["Bad/Name:x"])]
    wrong_blob = dict(good)
    wrong_blob[f"blobs/sha256/{busybox[7:]}"] = b'{"rootfs":{"type":"layers","diff_ids":[]}}'
    return {
        "flipped layer byte": dict(good, **{layer_name: bytes(flipped)}),
        "missing layer": {k: v for k, v in good.items() if k != layer_name},
        "config path traversal": dict(good, **{"manifest.json": json.dumps(traversal).encode()}),
        "invalid tag": dict(good, **{"manifest.json": json.dumps(bad_tag).encode()}),
        "blob not matching its digest name": wrong_blob,
        "manifest not json": dict(good, **{"manifest.json": b"<html>"}),
        "neither format": {"hello.txt": b"hi"},
    }


@pytest.mark.parametrize("variant", ["flipped layer byte", "missing layer", "config path traversal",
                                     "invalid tag", "blob not matching its digest name", "manifest not json",
                                     "neither format"])
def test_hostile_archives_store_nothing(sampan: Sampan, busybox: str, tmp_path: Path, variant: str) -> None:
    good_path = tmp_path / "good.tar"
    sampan("save", "-o", str(good_path), "busybox")
    sampan("rmi", "busybox")
    before = store_listing(sampan.root)
    bad = _write(tmp_path / "bad.tar", _hostile_variants(_members(good_path), busybox)[variant])
    r = sampan("load", "-i", str(bad), check=False)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    after = store_listing(sampan.root)
    assert {k for k in after if k.startswith(("blobs/", "snapshots/"))} == \
        {k for k in before if k.startswith(("blobs/", "snapshots/"))}
    assert sampan("images", "-q").stdout == ""
    assert sampan("system", "check").returncode == 0


@pytest.mark.parametrize("data", [b"", b"not a tar at all" * 100, None])
def test_garbage_and_truncated_archives(sampan: Sampan, busybox: str, tmp_path: Path, data: bytes | None) -> None:
    if data is None:
        full = tmp_path / "full.tar"
        sampan("save", "-o", str(full), "busybox")
        data = full.read_bytes()[: len(full.read_bytes()) // 2]
    r = sampan("load", input=data, check=False)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert sampan("system", "check").returncode == 0
