"""Image commands through the real CLI: bootstrap, images, tag, rmi, inspect, history, prune, import, df."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest
import zstandard

from conftest import Sampan, store_listing


def _rootfs_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_bootstrap_busybox_is_reproducible_and_real(sampan: Sampan) -> None:
    first = sampan("image", "bootstrap", "busybox").stdout.strip()
    again = sampan("image", "bootstrap", "busybox", "--tag", "bb:2").stdout.strip()
    assert first == again and first.startswith("sha256:")
    info = json.loads(sampan("image", "inspect", "busybox").stdout)[0]
    assert info["Id"] == first
    assert info["RepoTags"] == ["bb:2", "busybox:latest"]
    assert info["Config"]["Cmd"] == ["sh"]
    assert info["Os"] == "linux" and info["RootFS"]["Type"] == "layers"
    lower = Path(info["GraphDriver"]["Data"]["LowerDir"])
    assert (lower / "bin" / "busybox").stat().st_size > 500_000
    assert (lower / "bin" / "sh").stat().st_ino == (lower / "bin" / "busybox").stat().st_ino


def test_images_output_and_formats(sampan: Sampan, busybox: str) -> None:
    out = sampan("images").stdout.splitlines()
    assert out[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert out[1].split()[:3] == ["busybox", "latest", busybox[7:19]]
    assert sampan("images", "-q").stdout.split() == [busybox[7:19]]
    assert sampan("images", "-q", "--no-trunc").stdout.split() == [busybox]
    assert sampan("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.strip() == "busybox:latest"
    row = json.loads(sampan("images", "--format", "json").stdout)
    assert row["Repository"] == "busybox" and row["ID"] == busybox[7:19] and row["Size"].endswith("MB")
    table = sampan("images", "--format", "table {{.ID}}\t{{.Tag}}").stdout.splitlines()
    assert table[0].split() == ["IMAGE", "ID", "TAG"]
    assert "DIGEST" in sampan("images", "--digests").stdout


def test_tag_filters_and_rmi(sampan: Sampan, busybox: str) -> None:
    sampan("tag", "busybox", "localhost:5000/team/app:v1")
    sampan("tag", busybox[7:19], "other")
    assert sampan("images", "--filter", "reference=localhost:5000/*/*", "--format", "{{.Repository}}").stdout \
        .split() == ["localhost:5000/team/app"]
    assert sampan("images", "busybox", "-q").stdout.split() == [busybox[7:19]]
    assert sampan("images", "--filter", "dangling=true", "-q").stdout == ""
    # an ID referenced from several repositories needs --force
    r = sampan("rmi", busybox[7:19], check=False)
    assert r.returncode == 1 and "must be forced" in r.stderr and len(r.stderr.splitlines()) == 1
    assert sampan("rmi", "other").stdout.strip() == "Untagged: other:latest"
    assert sampan("rmi", "localhost:5000/team/app:v1").stdout.strip() == "Untagged: localhost:5000/team/app:v1"
    out = sampan("rmi", "busybox").stdout.splitlines()
    assert out[0] == "Untagged: busybox:latest" and out[1] == f"Deleted: {busybox}"
    assert sampan("images", "-q").stdout == ""
    assert sampan("system", "check").returncode == 0
    root = sampan.root
    assert list((root / "snapshots").iterdir()) == [] and list((root / "blobs" / "sha256").iterdir()) == []


def test_retag_leaves_dangling_image_and_prune_removes_it(sampan: Sampan, busybox: str) -> None:
    other = sampan("import", "-", "busybox:latest", input=_rootfs_tar({"a": b"x"})).stdout.strip()
    assert other != busybox
    dangling = sampan("images", "--filter", "dangling=true", "--format", "{{.ID}} {{.Repository}}").stdout
    assert dangling.strip() == f"{busybox[7:19]} <none>"
    out = sampan("image", "prune", "-f").stdout
    assert f"deleted: {busybox}" in out and "Total reclaimed space:" in out
    assert sampan("images", "-q").stdout.split() == [other[7:19]]
    declined = sampan("image", "prune", "-a", input="n\n").stdout
    assert "Are you sure" in declined and sampan("images", "-q").stdout.split() == [other[7:19]]
    sampan("image", "prune", "-a", input="y\n")
    assert sampan("images", "-q").stdout == ""


@pytest.mark.parametrize("compress", ["none", "gzip", "zstd"])
def test_import_with_changes(sampan: Sampan, tmp_path: Path, compress: str) -> None:
    data = _rootfs_tar({"etc/hello": b"hi\n", "bin/tool": b"#!/bin/sh\n"})
    data = {"none": data, "gzip": gzip.compress(data), "zstd": zstandard.ZstdCompressor().compress(data)}[compress]
    tarball = tmp_path / "rootfs.tar"
    tarball.write_bytes(data)
    image_id = sampan("import", "-c", 'CMD ["/bin/tool"]', "-c", "ENV A=1 B=two", "-c", "WORKDIR /srv",
                      "-c", "EXPOSE 80/tcp 53/udp", "-c", "LABEL com.example=yes", "-c", "USER 1000",
                      "-m", "first import", str(tarball), "imp:1").stdout.strip()
    info = json.loads(sampan("image", "inspect", "imp:1").stdout)[0]
    assert info["Id"] == image_id
    config = info["Config"]
    assert config["Cmd"] == ["/bin/tool"] and config["Env"] == ["A=1", "B=two"]
    assert config["WorkingDir"] == "/srv" and config["User"] == "1000"
    assert config["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}} and config["Labels"] == {"com.example": "yes"}
    assert info["Comment"] == "first import"
    lower = Path(info["GraphDriver"]["Data"]["LowerDir"])
    assert (lower / "etc" / "hello").read_bytes() == b"hi\n"
    hist = sampan("history", "--format", "{{.Comment}}|{{.ID}}", "imp:1").stdout.strip()
    assert hist == f"first import|{image_id[7:19]}"
    assert sampan("images", "--filter", "label=com.example=yes", "-q").stdout.split() == [image_id[7:19]]
    assert sampan("images", "--filter", "label=com.example=no", "-q").stdout == ""


def test_history_of_bootstrapped_image(sampan: Sampan, busybox: str) -> None:
    lines = sampan("history", "busybox").stdout.splitlines()
    assert lines[0].split()[:3] == ["IMAGE", "CREATED", "CREATED"]
    assert lines[1].startswith(busybox[7:19]) and "CMD" in lines[1] and "0B" in lines[1]
    assert lines[2].startswith("<missing>") and "MB" in lines[2]
    assert sampan("history", "-q", "busybox").stdout.split() == [busybox[7:19], "<missing>"]


def test_system_df_version_info(sampan: Sampan, busybox: str) -> None:
    df = sampan("system", "df").stdout.splitlines()
    assert df[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert df[1].split()[:3] == ["Images", "1", "0"]
    assert "API version" in sampan("version").stdout
    assert sampan("version", "--format", "{{.Server.ApiVersion}}").stdout.strip() == "1.44"
    assert sampan("info", "--format", "{{.Images}} {{.Driver}}").stdout.strip() == "1 overlayfs"
    assert "Storage Driver: overlayfs" in sampan("info").stdout


@pytest.mark.parametrize(("args", "message"), [
    (["images", "--bogus"], "unrecognized arguments"),
    (["tag", "busybox", "Bad:Name"], "must be lowercase"),
    (["tag", "nosuch", "x"], "No such image: nosuch:latest"),
    (["rmi", "nosuch"], "No such image: nosuch:latest"),
    (["image", "inspect", "sha256:" + "0" * 64], "No such image"),
    (["images", "--filter", "dangling"], "bad format of filter"),
    (["images", "--filter", "color=red"], "invalid filter 'color'"),
    (["load", "-i", "/nonexistent.tar"], "no such file"),
    (["import", "/nonexistent.tar"], "no such file"),
    (["import", "-c", "RUN rm -rf /", "-", "x"], "not a valid change command"),
    (["images", "--format", "{{.Nope"], "template"),
    (["nosuchcommand"], "not a sampan command"),
    (["image", "nosuch"], "not a sampan image command"),
    (["--root"], "flag needs an argument"),
])
def test_bad_input_is_one_line(sampan: Sampan, busybox: str, args: list[str], message: str) -> None:
    before = store_listing(sampan.root)
    r = sampan(*args, check=False, input=b"")
    assert r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert store_listing(sampan.root).keys() - before.keys() <= {"sampan.db-wal", "sampan.db-shm"}
