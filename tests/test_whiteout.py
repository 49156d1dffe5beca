"""Whiteouts: the naming rules, their overlayfs form on real files, and the three unpacking modes.

The overlay mode is checked end to end: layers unpacked with it are mounted with overlayfs, and the merged view
must hide exactly what the OCI whiteouts say. Whiteouts that try to reach outside the snapshot are hostile
input and are tested, sandboxed, with the other hostile layers in test_unpack.py.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sampan import errors
from sampan.snapshot import whiteout
from sampan.snapshot.unpack import unpack_layer

MTIME = 1_600_000_000


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **attrs: object) -> tuple:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = MTIME
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def layer(*members: tuple) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    buf.seek(0)
    return buf


def listing(root: Path) -> dict[str, tuple]:
    """(mode, rdev, content or link) of every path under root, never following links."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = os.lstat(path)
            body = path.read_bytes() if stat.S_ISREG(st.st_mode) else (
                os.readlink(path) if stat.S_ISLNK(st.st_mode) else None)
            out[str(path.relative_to(root))] = (st.st_mode, st.st_rdev, st.st_ino, st.st_mtime_ns, body)
    return out


def is_whiteout_at(path: Path) -> bool:
    return whiteout.is_overlay_whiteout(os.lstat(path))


def opaque(path: Path) -> bool:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return whiteout.is_overlay_opaque(fd)
    finally:
        os.close(fd)


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    """A directory on a filesystem with trusted.* xattrs, holding a host tree that must never change."""
    probe = tmp_path / "probe"
    probe.touch()
    mounted = None
    try:
        os.setxattr(probe, "trusted.sampan-probe", b"1")
    except OSError:
        mounted = tmp_path / "mnt"
        mounted.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mounted)], check=True)
    probe.unlink()
    base = mounted or tmp_path
    host = base / "host"
    (host / "dir").mkdir(parents=True)
    (host / "file").write_bytes(b"host")
    (base / "snap").mkdir()
    (base / "snap" / "sibling").write_bytes(b"next to dest")
    before = listing(base / "host"), listing(base / "snap")["sibling"]
    try:
        yield base
        assert (listing(base / "host"), listing(base / "snap")["sibling"]) == before
    finally:
        if mounted is not None:
            subprocess.run(["umount", str(mounted)], check=True)


def dest(root: Path, name: str) -> Path:
    path = root / "snap" / name
    path.mkdir()
    return path


# --- naming rules ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, target", [
    ("a/.wh.b", "a/b"), (".wh.b", "b"), ("a/b/.wh..hidden", "a/b/.hidden"), (b"a/.wh.\xff", b"a/\xff"),
    ("a/.wh..wh..opq", None), (".wh..wh.plnk", None), ("a/b", None), ("a/.wh.b/", "a/b"),
])
def test_oci_whiteout_target(name: str | bytes, target: str | bytes | None) -> None:
    assert whiteout.oci_whiteout_target(name) == target


@pytest.mark.parametrize("name", [".wh.", "a/.wh..", "a/.wh...", b"x/.wh.."])
def test_whiteouts_naming_parent_or_root_are_unsafe(name: str | bytes) -> None:
    with pytest.raises(errors.UnsafeContent):
        whiteout.oci_whiteout_target(name)


def test_marker_predicates() -> None:
    assert whiteout.is_opaque_marker("a/.wh..wh..opq") and whiteout.is_opaque_marker(b".wh..wh..opq")
    assert not whiteout.is_opaque_marker("a/.wh.opq")
    assert whiteout.is_whiteout_name("a/.wh.x") and not whiteout.is_whiteout_name(".whx")
    assert whiteout.is_reserved_name(".wh..wh.plnk") and not whiteout.is_reserved_name(".wh..wh..opq")
    assert whiteout.opaque_marker_dir("a/b/.wh..wh..opq") == "a/b"
    assert whiteout.opaque_marker_dir(".wh..wh..opq") == ""
    assert whiteout.opaque_marker_dir("a/.wh.b") is None


@pytest.mark.parametrize("path", ["a/b", "b", "a/.hidden", b"x/y"])
def test_overlay_to_oci_names_round_trip(path: str | bytes) -> None:
    assert whiteout.oci_whiteout_target(whiteout.oci_whiteout_name(path)) == path


def test_oci_names_for_the_diff_writer() -> None:
    assert whiteout.oci_whiteout_name("usr/lib/x") == "usr/lib/.wh.x"
    assert whiteout.oci_opaque_marker("usr/lib") == "usr/lib/.wh..wh..opq"
    assert whiteout.oci_opaque_marker("") == ".wh..wh..opq"
    with pytest.raises(ValueError):
        whiteout.oci_whiteout_name("a/..")


def test_overlay_form_predicates_on_real_files(tmp_path: Path) -> None:
    os.mknod(tmp_path / "wh", stat.S_IFCHR, 0)
    os.mknod(tmp_path / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    (tmp_path / "file").touch()
    assert is_whiteout_at(tmp_path / "wh")
    assert not is_whiteout_at(tmp_path / "null") and not is_whiteout_at(tmp_path / "file")
    for value, expected in ((None, False), (b"y", True), (b"x", False)):
        d = tmp_path / f"dir-{value}"
        d.mkdir()
        if value is not None:
            os.setxattr(d, whiteout.OPAQUE_XATTR, value)
        assert opaque(d) is expected


# --- unpacking: overlay form -------------------------------------------------------------------------------


def test_overlay_whiteouts_and_opaque_dirs(root: Path) -> None:
    d = dest(root, "l1")
    unpack_layer(layer(
        member("a", tarfile.DIRTYPE), member("a/b", data=b"same layer, earlier"),
        member("a/c", tarfile.DIRTYPE), member("a/c/deep", data=b"x"),
        member("a/.wh.b"), member("a/.wh.c", uid=1000, gid=1000), member("missing/dir/.wh.gone"),
        member("o", tarfile.DIRTYPE), member("o/.wh..wh..opq"), member("new/.wh..wh..opq"),
        member(".wh..wh.plnk", tarfile.DIRTYPE), member(".wh..wh.plnk/123", data=b"aufs"),
        member("a/.wh..wh.aufs"),
    ), d)
    for name in ("a/b", "a/c", "missing/dir/gone"):
        st = os.lstat(d / name)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, name
    assert os.lstat(d / "a/c").st_uid == 1000
    assert opaque(d / "o") and opaque(d / "new")
    assert not opaque(d / "a")
    assert not (d / ".wh..wh.plnk").exists() and not (d / "a/.wh..wh.aufs").exists()
    assert not any(".wh." in name for name in listing(d))


@pytest.mark.parametrize("name", ["a/.wh..", "a/.wh...", ".wh."])
def test_whiteout_of_parent_is_unsafe(root: Path, name: str) -> None:
    with pytest.raises(errors.UnsafeContent):
        unpack_layer(layer(member("a", tarfile.DIRTYPE), member(name)), dest(root, "l1"))


def test_overlayfs_honours_the_converted_whiteouts(root: Path) -> None:
    lower, upper = dest(root, "l1"), dest(root, "l2")
    unpack_layer(layer(member("a/x", data=b"x"), member("a/y", data=b"y"), member("d/old", data=b"old"),
                       member("d/sub/old", data=b"old")), lower)
    unpack_layer(layer(member("a/.wh.x"), member("d", tarfile.DIRTYPE), member("d/.wh..wh..opq"),
                       member("d/new", data=b"new")), upper)
    merged = root / "merged"
    merged.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={upper}:{lower}", str(merged)],
                   check=True)
    try:
        assert sorted(os.listdir(merged / "a")) == ["y"]
        assert sorted(os.listdir(merged / "d")) == ["new"]
    finally:
        subprocess.run(["umount", str(merged)], check=True)


# --- unpacking: keep and apply ------------------------------------------------------------------------------


def test_keep_mode_writes_whiteouts_as_files(root: Path) -> None:
    d = dest(root, "l1")
    unpack_layer(layer(member("a/.wh.b"), member("a/.wh..wh..opq")), d, whiteouts="keep")
    assert (d / "a/.wh.b").read_bytes() == b"" and (d / "a/.wh..wh..opq").is_file()
    assert not opaque(d / "a")


def test_apply_mode_deletes_lower_content(root: Path) -> None:
    d = dest(root, "rootfs")
    unpack_layer(layer(member("a/x", data=b"x"), member("a/y", data=b"y"), member("gone", tarfile.DIRTYPE),
                       member("gone/deep/f", data=b"f"), member("d/old", data=b"old"),
                       member("d/sub/old", data=b"old"), member("d/sub/kept", data=b"lower"),
                       member("link", tarfile.SYMTYPE, linkname="a")), d, whiteouts="apply")
    unpack_layer(layer(member("a/.wh.x"), member(".wh.gone"), member(".wh.link"), member("a/.wh.never-there"),
                       member("nodir/.wh.x"),
                       member("d", tarfile.DIRTYPE), member("d/early", data=b"this layer"),
                       member("d/sub/kept", data=b"this layer"), member("d/.wh..wh..opq"),
                       member("d/late", data=b"this layer too")), d, whiteouts="apply")
    assert sorted(os.listdir(d / "a")) == ["y"]
    assert not os.path.lexists(d / "gone") and not os.path.lexists(d / "link")
    assert sorted(os.listdir(d / "d")) == ["early", "late", "sub"]
    assert sorted(os.listdir(d / "d/sub")) == ["kept"]
    assert (d / "d/sub/kept").read_bytes() == b"this layer"
    assert not os.path.lexists(d / "nodir/x")
