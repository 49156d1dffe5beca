"""Layer unpacking against real files: correctness, containment of hostile tars, and no leaked fds.

Every hostile case checks two things: what landed inside the snapshot directory, and that a "host" tree next to
it (and /etc/passwd) is byte-for-byte and inode-for-inode unchanged. Runs as root (ownership, devices, trusted.*
xattrs are part of what is tested).

Layers are unpacked in a sandbox: a child process in its own mount namespace where every mount except the
snapshot directory is read-only. These tars aim at the host's /etc, /dev and /, so a containment bug must fail
a test with EROFS, not rewrite the machine running it.
"""

from __future__ import annotations

import errno
import gc
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sampan import errors
from sampan._linux import syscalls
from sampan.snapshot import unpack as unpack_mod
from sampan.snapshot.unpack import UnpackResult, unpack_layer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="layer unpacking tests need root")

MTIME = 1_600_000_000


# --- helpers ------------------------------------------------------------------------------------------------


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **attrs: object) -> tuple:
    """A tar member description: (TarInfo, data)."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = MTIME
    info.size = len(data) if kind in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def make_tar(*members: tuple, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def unpack(data: bytes, dest: Path, **kwargs: str) -> UnpackResult:
    return unpack_layer(io.BytesIO(data), dest, **kwargs)


# Runs in the sandbox: bind dest onto itself, make every other mount read-only, prove it, unpack stdin.
_SANDBOX_CHILD = r"""
import json, os, re, subprocess, sys
dest, whiteouts = sys.argv[1:3]
subprocess.run(["mount", "--bind", dest, dest], check=True)
with open("/proc/self/mountinfo") as mountinfo:
    points = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4]) for line in mountinfo]
for point in points:
    if point != dest:
        subprocess.run(["mount", "-o", "remount,bind,ro", point], check=point == "/", capture_output=True)
try:
    os.mkdir(os.path.join(os.path.dirname(dest), ".sandbox-probe"))
except OSError:
    pass
else:
    sys.exit("sandbox: the directory around dest is still writable")
from sampan.snapshot.unpack import unpack_layer
try:
    result = unpack_layer(sys.stdin.buffer, dest, whiteouts=whiteouts)
    print(json.dumps({"result": [result.diff_id, result.size, result.entries]}))
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
"""
_SANDBOX_ERRORS = {cls.__name__: cls for cls in (errors.CorruptContent, errors.UnsafeContent, errors.Unsupported,
                                                  ValueError)}


def unpack_sandboxed(data: bytes, dest: Path, whiteouts: str = "overlay") -> UnpackResult:
    """unpack_layer in a private mount namespace where nothing but ``dest`` is writable (see module doc)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    child = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", _SANDBOX_CHILD, str(dest),
         whiteouts], input=data, capture_output=True, env=env, timeout=120, check=False)
    assert child.returncode == 0, child.stderr.decode()
    outcome = json.loads(child.stdout)
    if "error" in outcome:
        raise _SANDBOX_ERRORS.get(outcome["error"], AssertionError)(f"{outcome['error']}: {outcome['message']}")
    return UnpackResult(*outcome["result"])


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def tree_state(root: Path, exclude: Path | None = None) -> dict[str, tuple]:
    """Everything observable about a tree (lstat, content, link target, xattrs), never following links."""
    state: dict[str, tuple] = {}
    paths = [root]
    while paths:
        path = paths.pop()
        if exclude is not None and path == exclude:
            continue
        st = os.lstat(path)
        extra: object = None
        if stat.S_ISREG(st.st_mode):
            extra = hashlib.sha256(path.read_bytes()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            extra = os.readlink(path)
        elif stat.S_ISDIR(st.st_mode):
            paths.extend(path.iterdir())
        xattrs = tuple(sorted((k, os.getxattr(path, k, follow_symlinks=False))
                              for k in os.listxattr(path, follow_symlinks=False)))
        state[str(path.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns,
                                              st.st_ino, st.st_nlink, st.st_rdev, extra, xattrs)
    return state


def passwd_state() -> tuple:
    st = os.stat("/etc/passwd")
    return st.st_ino, st.st_nlink, st.st_mode, st.st_uid, st.st_mtime_ns, st.st_ctime_ns, st.st_size


@pytest.fixture
def fsroot(tmp_path: Path) -> Iterator[Path]:
    """A directory whose filesystem takes trusted.* xattrs (a tmpfs mounted here if tmp_path's does not)."""
    probe = tmp_path / "probe"
    probe.touch()
    try:
        os.setxattr(probe, "trusted.sampan-probe", b"1")
        mounted = None
    except OSError:
        mounted = tmp_path / "mnt"
        mounted.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512m", "sampan-test", str(mounted)], check=True)
    probe.unlink()
    root = mounted or tmp_path
    try:
        yield root
    finally:
        if mounted is not None:
            subprocess.run(["umount", str(mounted)], check=True)


class World:
    """A host tree with a snapshot directory inside it, and the checks every hostile case makes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.host = root / "host"
        (self.host / "dir").mkdir(parents=True)
        (self.host / "file").write_bytes(b"host data\n")
        os.chmod(self.host / "file", 0o640)
        (self.host / "dir" / "inner").write_bytes(b"inner\n")
        os.symlink("file", self.host / "link")
        (root / "layers" / "x").mkdir(parents=True)
        (root / "layers" / "x" / "sibling").write_bytes(b"sibling of dest\n")
        self.dest = root / "layers" / "x" / "dest"
        self.dest.mkdir()
        self._before = tree_state(root, exclude=self.dest)
        self._passwd = passwd_state()
        gc.collect()  # fds that earlier tests' garbage still holds are closed now, not during this test
        self._fds = open_fds()
        self._threads = threading.active_count()

    def unpack(self, data: bytes, whiteouts: str = "overlay") -> UnpackResult:
        return unpack_sandboxed(data, self.dest, whiteouts)

    def assert_host_untouched(self) -> None:
        assert tree_state(self.root, exclude=self.dest) == self._before
        assert passwd_state() == self._passwd
        assert not os.path.lexists("/sampan-test-abs")
        assert open_fds() - self._fds == set(), "file descriptors leaked"
        assert threading.active_count() == self._threads, "hashing thread left running"

    def lstat(self, rel: str) -> os.stat_result:
        return os.lstat(self.dest / rel)


@pytest.fixture
def world(fsroot: Path) -> Iterator[World]:
    w = World(fsroot)
    yield w
    w.assert_host_untouched()


# --- a normal layer ----------------------------------------------------------------------------------------


def test_normal_layer(world: World) -> None:
    cap = bytes.fromhex("0100000200200000000000000000000000000000")  # cap_net_bind_service+ep, VFS v2
    big = os.urandom(3 * 1024 * 1024 + 17)
    fifo = member("usr/run/fifo", tarfile.FIFOTYPE, mode=0o620)
    null = member("dev/null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3)
    suid = member("usr/bin/su", data=b"#!/bin/su\n", mode=0o4755, uid=0, gid=0)
    sgid = member("usr/bin/wall", data=b"wall", mode=0o2755, uid=0, gid=5)
    owned = member("home/user/.profile", data=b"PS1=x\n", uid=1000, gid=1001, mode=0o600)
    xattr = member("usr/bin/ping", data=b"ping", pax_headers={
        "SCHILY.xattr.user.comment": "hello", "SCHILY.xattr.security.capability": cap.decode("latin-1")})
    data = make_tar(
        member("usr", tarfile.DIRTYPE),
        member("usr/bin", tarfile.DIRTYPE, mtime=MTIME + 5),
        suid, sgid, xattr,
        member("usr/bin/sh", tarfile.SYMTYPE, linkname="/bin/dash", uid=1000, gid=1000, mtime=MTIME + 7),
        member("usr/bin/big", data=big, mtime=MTIME + 9),
        member("usr/bin/big-link", tarfile.LNKTYPE, linkname="usr/bin/big"),
        member("usr/run", tarfile.DIRTYPE), fifo, member("dev", tarfile.DIRTYPE), null,
        member("home", tarfile.DIRTYPE), member("home/user", tarfile.DIRTYPE, uid=1000, gid=1001, mode=0o700),
        owned, member("tmp", tarfile.DIRTYPE, mode=0o1777),
        member("implicit/parent/file", data=b"x"),
    )
    result = world.unpack(data)

    assert result.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert result.size == len(big) + 10 + 4 + 4 + 6 + 1
    assert result.entries == 17

    st = world.lstat("usr/bin/su")
    assert stat.S_IMODE(st.st_mode) == 0o4755 and (st.st_uid, st.st_gid) == (0, 0)
    assert (world.dest / "usr/bin/su").read_bytes() == b"#!/bin/su\n"
    st = world.lstat("usr/bin/wall")
    assert stat.S_IMODE(st.st_mode) == 0o2755 and st.st_gid == 5
    assert os.getxattr(world.dest / "usr/bin/ping", "user.comment") == b"hello"
    assert os.getxattr(world.dest / "usr/bin/ping", "security.capability") == cap
    st = world.lstat("usr/bin/sh")
    assert stat.S_ISLNK(st.st_mode) and os.readlink(world.dest / "usr/bin/sh") == "/bin/dash"
    assert (st.st_uid, st.st_gid, st.st_mtime_ns) == (1000, 1000, (MTIME + 7) * 10**9)
    assert (world.dest / "usr/bin/big").read_bytes() == big
    assert world.lstat("usr/bin/big").st_mtime_ns == (MTIME + 9) * 10**9
    assert world.lstat("usr/bin/big-link").st_ino == world.lstat("usr/bin/big").st_ino
    assert world.lstat("usr/bin/big").st_nlink == 2
    st = world.lstat("usr/run/fifo")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o620
    st = world.lstat("dev/null")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3) and stat.S_IMODE(st.st_mode) == 0o666
    st = world.lstat("home/user")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1001, 0o700)
    st = world.lstat("home/user/.profile")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1001, 0o600)
    assert stat.S_IMODE(world.lstat("tmp").st_mode) == 0o1777
    # Directory mtimes are applied last, after their children were created.
    assert world.lstat("usr/bin").st_mtime_ns == (MTIME + 5) * 10**9
    assert world.lstat("usr").st_mtime_ns == MTIME * 10**9
    st = world.lstat("implicit/parent")
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755


def test_matches_gnu_tar(fsroot: Path) -> None:
    """Oracle: GNU tar's own archive (GNU format: long names, long link targets) extracts identically."""
    src = fsroot / "src"
    deep = src / ("long-directory-name-" * 6) / ("x" * 120)
    deep.mkdir(parents=True)
    (deep / "file").write_bytes(b"data")
    os.symlink("../" * 3 + "t" * 150, deep / "longlink")
    os.link(deep / "file", src / "hard")
    os.mkfifo(src / "fifo")
    os.chown(deep / "file", 1234, 5678)
    os.chmod(src, 0o750)
    layer = fsroot / "layer.tar"
    for fmt in ("gnu", "posix", "ustar"):
        if fmt == "ustar":  # ustar cannot hold the long names: a tree that fits its limits
            shutil.rmtree(src / ("long-directory-name-" * 6))
        subprocess.run(["tar", f"--format={fmt}", "--numeric-owner", "-cf", str(layer), "-C", str(src), "."],
                       check=True)
        ours, theirs = fsroot / f"ours-{fmt}", fsroot / f"theirs-{fmt}"
        ours.mkdir()
        theirs.mkdir()
        with open(layer, "rb") as stream:
            unpack_layer(stream, ours)
        subprocess.run(["tar", "--numeric-owner", "-xpf", str(layer), "-C", str(theirs)], check=True)
        assert _without_inodes(tree_state(ours)) == _without_inodes(tree_state(theirs))


def _without_inodes(state: dict[str, tuple]) -> dict[str, tuple]:
    return {path: values[:5] + values[6:] for path, values in state.items()}


@pytest.mark.parametrize("fmt", ["gnu", "posix --sparse-version=0.0", "posix --sparse-version=0.1",
                                 "posix --sparse-version=1.0"])
def test_gnu_sparse_files(fsroot: Path, fmt: str) -> None:
    src = fsroot / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        for offset, chunk in ((5_000_000, b"middle"), (9_000_000, os.urandom(70_000)), (20_000_000, b"end")):
            f.seek(offset)
            f.write(chunk)
        f.truncate(24_000_000)
    layer = fsroot / "layer.tar"
    subprocess.run(["tar", "-S", *f"--format={fmt}".split(), "-cf", str(layer), "-C", str(src), "."], check=True)
    dest = fsroot / "dest"
    dest.mkdir()
    with open(layer, "rb") as stream:
        result = unpack_layer(stream, dest)
    assert (dest / "sparse").read_bytes() == (src / "sparse").read_bytes()
    assert os.stat(dest / "sparse").st_blocks * 512 < 1_000_000  # holes stay holes
    assert result.size == 24_000_000
    assert result.diff_id == "sha256:" + hashlib.sha256(layer.read_bytes()).hexdigest()


def test_pax_extensions(world: World) -> None:
    long_name = "p/" + "n" * 200
    data = make_tar(
        member(long_name, data=b"long", uid=3_000_000, gid=4_000_000),
        member("ns", data=b"", pax_headers={"mtime": "1600000000.123456789"}),
        member("selinux", data=b"", pax_headers={"SCHILY.xattr.security.selinux": "system_u:object_r:x",
                                                 "SCHILY.xattr.trusted.overlay.opaque": "y",
                                                 "SCHILY.xattr.trusted.overlay.redirect": "/etc"}),
    )
    world.unpack(data)
    st = world.lstat(long_name)
    assert (st.st_uid, st.st_gid) == (3_000_000, 4_000_000)
    assert world.lstat("ns").st_mtime_ns == 1_600_000_000_123_456_789
    # Layers may not set LSM labels or forge overlayfs metadata.
    names = os.listxattr(world.dest / "selinux")
    assert not [name for name in names if name.startswith(("trusted.", "security.selinux"))]


def test_ustar_prefix_and_v7_directories(world: World) -> None:
    name = "a" * 90 + "/" + "b" * 90 + "/file"
    data = make_tar(member(name, data=b"prefixed"), fmt=tarfile.USTAR_FORMAT)
    world.unpack(data)
    assert (world.dest / name).read_bytes() == b"prefixed"


def test_diff_id_covers_trailing_padding(world: World) -> None:
    data = make_tar(member("f", data=b"x")) + bytes(8192)
    result = world.unpack(data)
    assert result.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()


class ShortReads:
    """A stream that only offers read() and returns a few bytes at a time, like a slow pipe."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = memoryview(data)
        self._step = step

    def read(self, size: int = -1) -> bytes:
        chunk = bytes(self._data[:min(size, self._step)])
        self._data = self._data[len(chunk):]
        return chunk


@pytest.mark.parametrize("step", [1, 100, 511, 513, 70_000])
def test_short_reads_without_readinto(world: World, step: int) -> None:
    payload = os.urandom(50_000)
    data = make_tar(member("d", tarfile.DIRTYPE), member("d/f", data=payload),
                    member("d/" + "long" * 40, data=b"pax"))
    result = unpack_layer(ShortReads(data, step), world.dest)
    assert result.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert (world.dest / "d/f").read_bytes() == payload


def test_setgid_parent_and_umask(world: World) -> None:
    """Skipped chown/chmod calls must not leave the kernel's defaults (setgid inheritance, umask) in place."""
    data = make_tar(
        member("sg", tarfile.DIRTYPE, mode=0o2775, gid=50),
        member("sg/f", data=b"x", mode=0o664, gid=0),
        member("sg/sub", tarfile.DIRTYPE, mode=0o775, gid=0),
        member("sg/implicit/f", data=b"y", mode=0o666),
    )
    old = os.umask(0o077)
    try:
        world.unpack(data)
    finally:
        os.umask(old)
    st = world.lstat("sg/f")
    assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0o664)
    st = world.lstat("sg/sub")
    assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0o775)
    assert stat.S_IMODE(world.lstat("sg/implicit/f").st_mode) == 0o666


def test_root_entry_updates_dest(world: World) -> None:
    world.unpack(make_tar(member("./", tarfile.DIRTYPE, mode=0o750, uid=7, gid=8, mtime=MTIME + 1),
                          member("./f", data=b"x")))
    st = os.lstat(world.dest)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o750, 7, 8)
    assert st.st_mtime_ns == (MTIME + 1) * 10**9


def test_root_entry_must_be_a_directory(world: World) -> None:
    with pytest.raises(errors.UnsafeContent):
        world.unpack(make_tar(member(".", tarfile.SYMTYPE, linkname="/")))
    assert stat.S_ISDIR(os.lstat(world.dest).st_mode)


# --- duplicates and replacement ----------------------------------------------------------------------------


def test_duplicate_entries_later_wins(world: World) -> None:
    data = make_tar(
        member("f", data=b"first"), member("f", data=b"second", mode=0o600),
        member("d", tarfile.DIRTYPE, mode=0o700), member("d/keep", data=b"k"), member("d", tarfile.DIRTYPE),
        member("d2file", tarfile.DIRTYPE), member("d2file/child", data=b"c"), member("d2file", data=b"now a file"),
        member("file2d", data=b"file"), member("file2d", tarfile.DIRTYPE), member("file2d/x", data=b"x"),
        member("l", tarfile.SYMTYPE, linkname="a"), member("l", tarfile.SYMTYPE, linkname="b"),
        member("h", tarfile.LNKTYPE, linkname="f"), member("h", tarfile.LNKTYPE, linkname="f"),
    )
    world.unpack(data)
    assert (world.dest / "f").read_bytes() == b"second"
    assert stat.S_IMODE(world.lstat("f").st_mode) == 0o600
    assert (world.dest / "d/keep").read_bytes() == b"k"  # directories merge
    assert stat.S_IMODE(world.lstat("d").st_mode) == 0o755  # with the later metadata
    assert (world.dest / "d2file").read_bytes() == b"now a file"
    assert (world.dest / "file2d/x").read_bytes() == b"x"
    assert os.readlink(world.dest / "l") == "b"
    assert world.lstat("h").st_ino == world.lstat("f").st_ino


def test_deep_paths(world: World) -> None:
    deep = "/".join(["level"] * 150)
    data = make_tar(member(deep + "/file", data=b"deep"), member(deep + "/../sibling", data=b"s"))
    world.unpack(data)
    assert (world.dest / deep / "file").read_bytes() == b"deep"
    assert (world.dest / deep).parent.joinpath("sibling").read_bytes() == b"s"


def test_many_directories_cycle_the_fd_cache(world: World) -> None:
    members = []
    for i in range(unpack_mod._DIR_CACHE_MAX * 2 + 10):
        members.append(member(f"d{i}/f", data=b"%d" % i))
    for i in range(0, unpack_mod._DIR_CACHE_MAX * 2 + 10, 7):  # revisit evicted directories
        members.append(member(f"d{i}/g", data=b"g"))
    world.unpack(make_tar(*members))
    assert (world.dest / "d7/g").read_bytes() == b"g"
    assert (world.dest / f"d{unpack_mod._DIR_CACHE_MAX * 2 + 9}/f").exists()


# --- hostile layers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, lands_at", [
    ("../escape", "escape"),
    ("../../../../../../escape", "escape"),
    ("a/../../escape", "escape"),
    ("/sampan-test-abs/path", "sampan-test-abs/path"),
    ("./../x/./../y", "y"),
    ("//double//slash", "double/slash"),
])
def test_names_cannot_leave_dest(world: World, name: str, lands_at: str) -> None:
    world.unpack(make_tar(member(name, data=b"payload")))
    assert (world.dest / lands_at).read_bytes() == b"payload"


def test_symlink_to_root_resolves_inside(world: World) -> None:
    world.unpack(make_tar(member("evil", tarfile.SYMTYPE, linkname="/"),
                          member("evil/etc/x", data=b"inside"),
                          member("evil/etc/passwd", data=b"root::0:0::/:/bin/sh\n")))
    assert (world.dest / "etc/x").read_bytes() == b"inside"
    assert (world.dest / "etc/passwd").exists()
    assert os.readlink(world.dest / "evil") == "/"


def test_symlink_climbing_out_resolves_inside(world: World) -> None:
    world.unpack(make_tar(member("up", tarfile.SYMTYPE, linkname="../../.."),
                          member("up/y", data=b"y"),
                          member("up/sub/z", data=b"z"),
                          member("up/host/file", data=b"overwrite?")))
    assert (world.dest / "y").read_bytes() == b"y"
    assert (world.dest / "sub/z").read_bytes() == b"z"
    assert (world.dest / "host/file").read_bytes() == b"overwrite?"


def test_symlink_to_host_dir_by_absolute_path(world: World) -> None:
    """The host path exists on the host but is looked up inside the layer."""
    host = str(world.host)
    world.unpack(make_tar(member(host.lstrip("/") + "/dir", tarfile.DIRTYPE),
                          member("h", tarfile.SYMTYPE, linkname=host),
                          member("h/dir/new", data=b"n"),
                          member("h/file", data=b"replaced?")))
    assert (world.dest / host.lstrip("/") / "dir/new").read_bytes() == b"n"
    assert (world.dest / host.lstrip("/") / "file").read_bytes() == b"replaced?"


def test_parent_through_dangling_symlink_is_corrupt(world: World) -> None:
    """Like Docker (which unpacks in a chroot), missing parents are not created through a symlink."""
    with pytest.raises(errors.CorruptContent):
        world.unpack(make_tar(member("h", tarfile.SYMTYPE, linkname=str(world.host)),
                              member("h/dir/new", data=b"n")))


def test_file_replaces_symlink_instead_of_writing_through(world: World) -> None:
    world.unpack(make_tar(member("link", tarfile.SYMTYPE, linkname=str(world.host / "file")),
                          member("rel", tarfile.SYMTYPE, linkname="../../../host/file"),
                          member("link", data=b"mine"),
                          member("rel", data=b"mine too")))
    assert not stat.S_ISLNK(world.lstat("link").st_mode)
    assert (world.dest / "link").read_bytes() == b"mine"
    assert (world.dest / "rel").read_bytes() == b"mine too"


def test_later_entries_never_change_a_symlink_target(world: World) -> None:
    target = str(world.host / "file")
    world.unpack(make_tar(
        member("s1", tarfile.SYMTYPE, linkname=target),
        member("s1", tarfile.SYMTYPE, linkname=target, uid=1234, gid=1234, mode=0o777, mtime=1),
        member("s2", tarfile.SYMTYPE, linkname=target),
        member("s2", data=b"", mode=0o4777, uid=1234),
        member("s3", tarfile.SYMTYPE, linkname=str(world.host / "dir")),
        member("s3", tarfile.DIRTYPE, mode=0o777, uid=1234),
        member("s4", tarfile.SYMTYPE, linkname=target),
        member("s4", tarfile.FIFOTYPE, mode=0o777),
        member("s5", tarfile.SYMTYPE, linkname=target),
        member("s5", tarfile.LNKTYPE, linkname="s1"),
    ))
    st = world.lstat("s1")
    assert stat.S_ISLNK(st.st_mode) and st.st_uid == 1234  # lchown: the link itself
    assert stat.S_ISREG(world.lstat("s2").st_mode)
    assert stat.S_ISDIR(world.lstat("s3").st_mode)
    assert stat.S_ISFIFO(world.lstat("s4").st_mode)
    assert world.lstat("s5").st_ino == world.lstat("s1").st_ino


@pytest.mark.parametrize("target", ["../../outside", "/etc/passwd", "../../../host/file", "{host}/file"])
def test_hardlink_to_host_file_is_refused(world: World, target: str) -> None:
    target = target.format(host=world.host)
    with pytest.raises(errors.CorruptContent):
        world.unpack(make_tar(member("l", tarfile.LNKTYPE, linkname=target)))
    assert not os.path.lexists(world.dest / "l")


@pytest.mark.parametrize("target", ["/etc/passwd", "../../etc/passwd", "evil/etc/passwd"])
def test_hardlink_target_resolves_inside(world: World, target: str) -> None:
    world.unpack(make_tar(member("etc/passwd", data=b"layer's own\n"),
                          member("evil", tarfile.SYMTYPE, linkname="/"),
                          member("l", tarfile.LNKTYPE, linkname=target)))
    assert world.lstat("l").st_ino == world.lstat("etc/passwd").st_ino


def test_hardlink_to_outward_symlink_then_write(world: World) -> None:
    world.unpack(make_tar(member("s", tarfile.SYMTYPE, linkname=str(world.host / "file")),
                          member("h", tarfile.LNKTYPE, linkname="s"),
                          member("h2", tarfile.LNKTYPE, linkname="s"),
                          member("h", data=b"written")))
    assert stat.S_ISLNK(world.lstat("h2").st_mode)  # the link itself was linked, not its target
    assert world.lstat("h2").st_ino == world.lstat("s").st_ino
    assert (world.dest / "h").read_bytes() == b"written"


@pytest.mark.parametrize("target", [".", "/", "..", "dir"])
def test_hardlink_to_directory_is_refused(world: World, target: str) -> None:
    with pytest.raises(errors.CorruptContent):
        world.unpack(make_tar(member("dir", tarfile.DIRTYPE), member("l", tarfile.LNKTYPE, linkname=target)))


def test_device_nodes_and_setuid_stay_inside(world: World) -> None:
    world.unpack(make_tar(member("sda", tarfile.BLKTYPE, devmajor=8, devminor=0, mode=0o660),
                          member("mem", tarfile.CHRTYPE, devmajor=1, devminor=1, mode=0o4640),
                          member("evil", tarfile.SYMTYPE, linkname="/"),
                          member("evil/dev/kmsg", tarfile.CHRTYPE, devmajor=1, devminor=11),
                          member("suid-sh", data=b"#!", mode=0o6755)))
    st = world.lstat("sda")
    assert stat.S_ISBLK(st.st_mode) and st.st_rdev == os.makedev(8, 0)
    st = world.lstat("mem")
    assert stat.S_ISCHR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o4640
    assert world.lstat("dev/kmsg").st_rdev == os.makedev(1, 11)
    assert stat.S_IMODE(world.lstat("suid-sh").st_mode) == 0o6755


def test_symlink_loop_is_corrupt(world: World) -> None:
    with pytest.raises(errors.CorruptContent):
        world.unpack(make_tar(member("a", tarfile.SYMTYPE, linkname="b"),
                              member("b", tarfile.SYMTYPE, linkname="a"),
                              member("a/x", data=b"x")))


def test_file_as_parent_is_corrupt(world: World) -> None:
    with pytest.raises(errors.CorruptContent):
        world.unpack(make_tar(member("f", data=b"x"), member("f/child", data=b"y")))


def _truncated(size_claimed: int, data: bytes) -> bytes:
    info = tarfile.TarInfo("big")
    info.size = size_claimed
    return info.tobuf(tarfile.PAX_FORMAT) + data


@pytest.mark.parametrize("data", [
    _truncated(10 * 1024**3, b"x" * 1000),
    _truncated(5000, b"x" * 4999),
    _truncated(100, b""),
    make_tar(member("f", data=b"x"))[:700],  # ends inside the padding after the data
    make_tar(member("a", data=b"x"), member("b", data=b"y"))[:1100],  # ends inside the second header
])
def test_truncated_is_corrupt(world: World, data: bytes) -> None:
    with pytest.raises(errors.CorruptContent):
        world.unpack(data)


def test_end_of_stream_inside_padding_is_corrupt(world: World) -> None:
    data = make_tar(member("f", data=b"x" * 10))
    with pytest.raises(errors.CorruptContent):
        world.unpack(data[:512 + 100])


@pytest.mark.parametrize("corrupt", ["checksum", "octal", "pax"])
def test_malformed_headers_are_corrupt(world: World, corrupt: str) -> None:
    data = bytearray(make_tar(member("f", data=b"x"), member("p" * 120, data=b"y")))
    if corrupt == "checksum":
        data[0] ^= 0x01
    elif corrupt == "octal":
        data[124:136] = b"0000000009x\0"  # size field of the first header
    else:
        start = data.index(b" path=")
        data[start - 3:start] = b"9x9"
    with pytest.raises(errors.CorruptContent):
        world.unpack(bytes(data))


def patched(header: bytes, offset: int, value: bytes) -> bytes:
    """``header`` with bytes at ``offset`` replaced and its checksum recomputed (a well-formed lie)."""
    block = bytearray(header[:512])
    block[offset:offset + len(value)] = value
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block) + header[512:]


_BASE256_NEGATIVE = b"\xff" * 11 + b"\xfb"
_BASE256_HUGE = b"\x80" + (2**40).to_bytes(7, "big")


@pytest.mark.parametrize("offset, value, kind", [
    (124, _BASE256_NEGATIVE, tarfile.REGTYPE),  # negative size
    (124, _BASE256_NEGATIVE, tarfile.XHDTYPE),  # negative size of an extended header
    (108, _BASE256_HUGE, tarfile.REGTYPE),  # uid beyond 32 bits
    (329, _BASE256_HUGE, tarfile.CHRTYPE),  # device major beyond 32 bits
    (136, b"\x80" + b"\xff" * 11, tarfile.REGTYPE),  # mtime beyond what the kernel takes
])
def test_out_of_range_numbers_are_corrupt(world: World, offset: int, value: bytes, kind: bytes) -> None:
    info = tarfile.TarInfo("f")
    info.type = kind
    header = patched(info.tobuf(tarfile.USTAR_FORMAT), offset, value)
    with pytest.raises(errors.CorruptContent):
        world.unpack(header + bytes(2048))


@pytest.mark.parametrize("records", [
    {"path": "a\x00b"},
    {"linkpath": "x\x00y"},
    {"GNU.sparse.map": "0,10,5,10", "GNU.sparse.size": "100"},  # overlapping extents
    {"GNU.sparse.map": "0,30", "GNU.sparse.size": "100"},  # more extent data than stored
    {"GNU.sparse.map": "90,20", "GNU.sparse.size": "100"},  # extent past the end
    {"GNU.sparse.map": "0,x", "GNU.sparse.size": "100"},
    {"mtime": "12e5"},
    {"uid": "-1"},
])
def test_malformed_pax_records_are_corrupt(world: World, records: dict[str, str]) -> None:
    data = make_tar(member("f", tarfile.SYMTYPE if "linkpath" in records else tarfile.REGTYPE,
                           data=b"x" * 20, pax_headers=records))
    with pytest.raises(errors.CorruptContent):
        world.unpack(data)


def test_data_after_end_of_archive_is_corrupt(world: World) -> None:
    body = make_tar(member("f", data=b"x"))
    end = body.index(bytes(1024), 1024)
    hidden = tarfile.TarInfo("hidden").tobuf()
    with pytest.raises(errors.CorruptContent):
        world.unpack(body[:end + 512] + hidden + bytes(1024))


def test_oversized_extended_header_is_refused(world: World) -> None:
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = tarfile.XHDTYPE
    info.size = unpack_mod._MAX_META + 1
    with pytest.raises(errors.CorruptContent):
        world.unpack(info.tobuf(tarfile.USTAR_FORMAT) + bytes(4096))


def test_unknown_entry_type_is_unsupported(world: World) -> None:
    with pytest.raises(errors.Unsupported):
        world.unpack(make_tar(member("tape", b"M")))


def test_overlay_whiteouts_stay_inside(world: World) -> None:
    world.unpack(make_tar(member("../.wh.sibling"), member("evil", tarfile.SYMTYPE, linkname="/"),
                          member("evil/.wh.host"), member("evil/etc/.wh.passwd"), member("../../.wh..wh..opq")))
    for name in ("sibling", "host", "etc/passwd"):
        st = world.lstat(name)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(world.dest, "trusted.overlay.opaque") == b"y"


def test_applied_whiteouts_stay_inside(world: World) -> None:
    host = str(world.host)
    world.unpack(make_tar(member("sibling", data=b"lower"), member("host/file", data=b"lower"),
                          member("abs", tarfile.SYMTYPE, linkname=host),
                          member("up", tarfile.SYMTYPE, linkname="../../.."),
                          member("hostlink", tarfile.SYMTYPE, linkname=host),
                          member("evil", tarfile.SYMTYPE, linkname="/")), whiteouts="apply")
    world.unpack(make_tar(member("../.wh.sibling"), member("abs/.wh.file"), member("abs/.wh.dir"),
                          member("up/host/.wh.file"), member(".wh.hostlink"), member("evil/etc/.wh.passwd")),
                 whiteouts="apply")
    assert not os.path.lexists(world.dest / "sibling")  # dest's own, not the real one next to dest
    assert not os.path.lexists(world.dest / "host/file")
    assert not os.path.lexists(world.dest / "hostlink")  # the link, not what it points at
    world.unpack(make_tar(member("evil/.wh..wh..opq")), whiteouts="apply")  # clears dest's root, not /
    assert os.listdir(world.dest) == []


# --- the syscall wrappers containment rests on -------------------------------------------------------------


def test_openat2_resolves_inside_root(tmp_path: Path) -> None:
    (tmp_path / "root/real").mkdir(parents=True)
    os.symlink("/", tmp_path / "root/abs")
    os.symlink("../../../..", tmp_path / "root/up")
    root = os.open(tmp_path / "root", os.O_RDONLY | os.O_DIRECTORY)
    flags = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
    in_root = syscalls.RESOLVE_IN_ROOT | syscalls.RESOLVE_NO_MAGICLINKS | syscalls.RESOLVE_NO_XDEV
    try:
        for path in ("abs/real", "up/real", "abs/up/abs/real"):
            fd = syscalls.openat2(root, path, flags, in_root)
            try:
                assert os.path.samestat(os.fstat(fd), os.stat(tmp_path / "root/real"))
            finally:
                os.close(fd)
        with pytest.raises(OSError) as refused:
            syscalls.openat2(root, "abs/real", flags, syscalls.RESOLVE_BENEATH)
        assert refused.value.errno == errno.EXDEV
        with pytest.raises(FileNotFoundError):
            syscalls.openat2(root, "abs/etc", flags, in_root)
    finally:
        os.close(root)


@pytest.mark.parametrize("have_fchmodat2", [True, False])
def test_fchmodat_nofollow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, have_fchmodat2: bool) -> None:
    monkeypatch.setattr(syscalls, "_have_fchmodat2", have_fchmodat2)
    (tmp_path / "target").write_bytes(b"")
    os.chmod(tmp_path / "target", 0o644)
    os.symlink("target", tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")
    dirfd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        syscalls.fchmodat_nofollow(dirfd, "fifo", 0o4640)
        assert stat.S_IMODE(os.lstat(tmp_path / "fifo").st_mode) == 0o4640
        with pytest.raises(OSError) as refused:
            syscalls.fchmodat_nofollow(dirfd, "link", 0o777)
        assert refused.value.errno == errno.EOPNOTSUPP
        assert stat.S_IMODE(os.stat(tmp_path / "target").st_mode) == 0o644
    finally:
        os.close(dirfd)


def test_no_fd_or_thread_leak_on_success_and_failure(fsroot: Path) -> None:
    data = make_tar(*(member(f"d{i % 40}/f{i}", data=b"x" * i) for i in range(400)))
    fds, threads = open_fds(), threading.active_count()
    for i in range(3):
        dest = fsroot / f"ok{i}"
        dest.mkdir()
        unpack(data, dest)
        bad = fsroot / f"bad{i}"
        bad.mkdir()
        with pytest.raises(errors.CorruptContent):
            unpack(data[:len(data) // 2], bad)
    assert open_fds() == fds
    assert threading.active_count() == threads


def test_rejects_unknown_whiteout_mode(world: World) -> None:
    with pytest.raises(ValueError):
        world.unpack(make_tar(member("f")), whiteouts="delete")
