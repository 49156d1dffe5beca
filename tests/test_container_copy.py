"""``docker cp`` against real files: Docker's path semantics both ways, ownership, tar streams, and containment.

A "container" here is a plain directory used as ``rootfs``; next to it sits a "host" directory with a marker
file that a hostile container aims its symlinks at (absolutely, with ``../..``, and swapped in mid-copy). Every
hostile case asserts that the host directory was neither read (its content never appears in a copy) nor
written. The expected results of the path-semantic tables were taken from the real docker CLI (20.10).
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sampan import errors
from sampan.engine.containers.copy import copy_in, copy_out

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="cp tests chown and mknod: they need root")

HOST_SECRET = b"HOST-SECRET"
MTIME_NS = 1_600_000_000_123_456_789


def build_rootfs(root: Path) -> None:
    """/dir (0750, a, hard=a, sub/b), /file (0640, 1234:4321), /link -> file, /dlink -> dir, /empty, /bin."""
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "dir" / "a").write_bytes(b"A")
    (root / "dir" / "sub" / "b").write_bytes(b"B")
    os.link(root / "dir" / "a", root / "dir" / "hard")
    (root / "file").write_bytes(b"F")
    os.chown(root / "file", 1234, 4321)
    os.chmod(root / "file", 0o640)
    os.chmod(root / "dir", 0o750)
    os.symlink("file", root / "link")
    os.symlink("dir", root / "dlink")
    (root / "empty").mkdir()
    (root / "bin").mkdir()


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    root.mkdir()
    build_rootfs(root)
    return root


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A host directory outside the rootfs that hostile containers aim at."""
    victim = tmp_path / "host"
    victim.mkdir()
    (victim / "secret").write_bytes(HOST_SECRET)
    return victim


def tree(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: type, mode, content or link target (never following links)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("L", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("D", stat.S_IMODE(st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("F", stat.S_IMODE(st.st_mode), Path(path).read_bytes())
            else:
                out[rel] = ("N", st.st_mode, st.st_rdev)
    return out


def host_state(host: Path) -> dict[str, tuple]:
    return tree(host)


def assert_never_read(out: Path) -> None:
    """No regular file under ``out`` holds the host's secret."""
    for entry in tree(out).values():
        assert not (entry[0] == "F" and HOST_SECRET in entry[2])


def stdout_of(monkeypatch: pytest.MonkeyPatch, call: Callable[[], None]) -> bytes:
    buf = io.BytesIO()
    wrapper = io.TextIOWrapper(buf)
    monkeypatch.setattr(sys, "stdout", wrapper)
    call()
    wrapper.flush()
    data = buf.getvalue()
    monkeypatch.undo()
    return data


def names(data: bytes) -> list[tuple[str, bytes, str]]:
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return [(m.name, m.type, m.linkname) for m in archive]


def make_tar(*members: tuple[str, bytes, bytes | str], **attrs: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
            info.uid, info.gid = attrs.get("uid", 0), attrs.get("gid", 0)
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = str(payload)
                payload = b""
            data = payload if isinstance(payload, bytes) else payload.encode()
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            archive.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return buf.getvalue()


# --- copy out: path semantics ------------------------------------------------------------------------------

DIR_CONTENT = {"a": ("F", 0o644, b"A"), "hard": ("F", 0o644, b"A"), "sub": ("D", 0o755), "sub/b": ("F", 0o644, b"B")}


def under(prefix: str, entries: dict[str, tuple]) -> dict[str, tuple]:
    return {f"{prefix}/{k}": v for k, v in entries.items()}


# (src, dest, host setup, follow_link, expected host tree or the error class)
OUT_CASES = [
    ("/file", "x", None, False, {"x": ("F", 0o640, b"F")}),
    ("/file", "x", "dir", False, {"x": ("D", 0o755), "x/file": ("F", 0o640, b"F")}),
    ("/file", "x", "file", False, {"x": ("F", 0o640, b"F")}),
    ("/file", "x/", None, False, errors.InvalidArgument),  # "no such directory"
    ("/file/", "x", None, False, errors.InvalidArgument),  # not a directory
    ("/dir", "x", None, False, {"x": ("D", 0o750), **under("x", DIR_CONTENT)}),
    ("/dir", "x/", None, False, {"x": ("D", 0o750), **under("x", DIR_CONTENT)}),
    ("/dir", "x", "dir", False, {"x": ("D", 0o755), "x/dir": ("D", 0o750), **under("x/dir", DIR_CONTENT)}),
    ("/dir/", "x", "dir", False, {"x": ("D", 0o755), "x/dir": ("D", 0o750), **under("x/dir", DIR_CONTENT)}),
    ("/dir/.", "x", "dir", False, {"x": ("D", 0o755), **under("x", DIR_CONTENT)}),
    ("/dir/.", "x", None, False, {"x": ("D", 0o750), **under("x", DIR_CONTENT)}),
    ("/dir", "x", "file", False, errors.InvalidArgument),  # cannot copy a directory onto a file
    ("/link", "x", "dir", False, {"x": ("D", 0o755), "x/link": ("L", "file")}),
    ("/link", "x", "dir", True, {"x": ("D", 0o755), "x/link": ("F", 0o640, b"F")}),
    ("/dlink", "x", None, True, {"x": ("D", 0o750), **under("x", DIR_CONTENT)}),
    ("/dlink/", "x", "dir", False, {"x": ("D", 0o755), "x/dlink": ("D", 0o750), **under("x/dlink", DIR_CONTENT)}),
    ("dir/sub", "x", "dir", False, {"x": ("D", 0o755), "x/sub": ("D", 0o755), "x/sub/b": ("F", 0o644, b"B")}),
    ("/missing", "x", None, False, errors.NotFound),
    ("/file", "nope/x", None, False, errors.InvalidArgument),  # the parent of DEST must exist
    ("/file", "x", "hostlink", False, {"real": ("F", 0o640, b"F"), "x": ("L", "real")}),
    ("/dir", "x", "dirwithfile", False, errors.InvalidArgument),  # x/dir/a exists as a directory
]


@pytest.mark.parametrize(("src", "dest", "setup", "follow", "expected"), OUT_CASES,
                         ids=[f"{c[0]}->{c[1]}:{c[2]}{':L' if c[3] else ''}" for c in OUT_CASES])
def test_copy_out_semantics(rootfs: Path, tmp_path: Path, src: str, dest: str, setup: str | None, follow: bool,
                            expected: object) -> None:
    out = tmp_path / "out"
    out.mkdir()
    if setup == "dir":
        (out / "x").mkdir()
    elif setup == "file":
        (out / "x").write_bytes(b"old")
    elif setup == "hostlink":
        (out / "real").write_bytes(b"old")
        os.symlink("real", out / "x")
    elif setup == "dirwithfile":
        (out / "x" / "dir" / "a").mkdir(parents=True)
    if isinstance(expected, type):
        with pytest.raises(expected):
            copy_out(str(rootfs), src, f"{out}/{dest}", follow_link=follow)
    else:
        copy_out(str(rootfs), src, f"{out}/{dest}", follow_link=follow)
        assert tree(out) == expected


def test_copy_out_root_copies_contents(rootfs: Path, tmp_path: Path) -> None:
    copy_out(str(rootfs), "/", str(tmp_path / "x"))
    assert tree(tmp_path / "x") == tree(rootfs)


def test_copy_out_not_found_names_the_container_path(rootfs: Path, tmp_path: Path) -> None:
    with pytest.raises(errors.NotFound, match="Could not find the file /nope/x in container c1"):
        copy_out(str(rootfs), "nope/../nope/x", str(tmp_path / "x"), container="c1")


def test_copy_out_preserves_metadata(rootfs: Path, tmp_path: Path) -> None:
    """Modes (setuid included), ns mtimes, symlinks as links, hard links, fifos, devices, user xattrs."""
    src = rootfs / "meta"
    src.mkdir()
    (src / "suid").write_bytes(b"x" * 100_000)
    os.chmod(src / "suid", 0o4755)
    os.mkfifo(src / "fifo", 0o600)
    os.mknod(src / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.symlink("/etc/passwd", src / "abs")
    os.link(src / "suid", src / "suid2")
    try:
        os.setxattr(src / "suid", "user.note", b"\xffbinary")
        xattrs = True
    except OSError:
        xattrs = False
    for path in (src / "suid", src / "abs", src):
        os.utime(path, ns=(MTIME_NS, MTIME_NS), follow_symlinks=False)
    copy_out(str(rootfs), "/meta", str(tmp_path / "m"))
    out = tmp_path / "m"
    st = os.lstat(out / "suid")
    assert stat.S_IMODE(st.st_mode) == 0o4755 and st.st_mtime_ns == MTIME_NS
    assert os.lstat(out).st_mtime_ns == MTIME_NS
    assert os.readlink(out / "abs") == "/etc/passwd"
    assert os.lstat(out / "abs").st_mtime_ns == MTIME_NS
    assert st.st_ino == os.lstat(out / "suid2").st_ino
    assert stat.S_ISFIFO(os.lstat(out / "fifo").st_mode)
    assert os.lstat(out / "null").st_rdev == os.makedev(1, 3)
    if xattrs:
        assert os.getxattr(out / "suid", "user.note") == b"\xffbinary"


def test_copy_out_ownership(rootfs: Path, tmp_path: Path) -> None:
    """Host files belong to the caller (Docker's CLI untars with NoLchown); -a keeps the container's ids."""
    copy_out(str(rootfs), "/file", str(tmp_path / "plain"))
    copy_out(str(rootfs), "/file", str(tmp_path / "archived"), archive=True)
    assert (os.stat(tmp_path / "plain").st_uid, os.stat(tmp_path / "plain").st_gid) == (os.geteuid(), os.getegid())
    assert (os.stat(tmp_path / "archived").st_uid, os.stat(tmp_path / "archived").st_gid) == (1234, 4321)


# --- copy out: "-" ---------------------------------------------------------------------------------------


def test_copy_out_stream_names_match_docker(rootfs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def stream(src: str, follow: bool = False) -> list[tuple[str, bytes, str]]:
        return names(stdout_of(monkeypatch, lambda: copy_out(str(rootfs), src, "-", follow_link=follow)))

    dir_entries = [("dir", tarfile.DIRTYPE, ""), ("dir/a", tarfile.REGTYPE, ""), ("dir/hard", tarfile.LNKTYPE, "dir/a"),
                   ("dir/sub", tarfile.DIRTYPE, ""), ("dir/sub/b", tarfile.REGTYPE, "")]
    assert stream("/file") == [("file", tarfile.REGTYPE, "")]
    assert stream("/dir") == dir_entries
    assert stream("/dir/.") == [(".", tarfile.DIRTYPE, ""), ("./a", tarfile.REGTYPE, ""),
                                ("./hard", tarfile.LNKTYPE, "./a"), ("./sub", tarfile.DIRTYPE, ""),
                                ("./sub/b", tarfile.REGTYPE, "")]
    assert stream("/link") == [("link", tarfile.SYMTYPE, "file")]
    assert stream("/link", follow=True) == [("file", tarfile.REGTYPE, "")]  # Docker names it after the target
    assert stream("/dlink/")[0] == ("dlink", tarfile.DIRTYPE, "")


def test_copy_out_stream_keeps_container_ids_and_data(rootfs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = stdout_of(monkeypatch, lambda: copy_out(str(rootfs), "/file", "-"))
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        member = archive.next()
        assert member is not None and (member.uid, member.gid, member.mode) == (1234, 4321, 0o640)
        assert archive.extractfile(member).read() == b"F"  # type: ignore[union-attr]


def test_stream_through_real_pipes(rootfs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``cp c:/dir -`` in a subprocess (stdout a real pipe: the sendfile path) piped into ``cp - c:/dest``."""
    big = os.urandom(3 << 20)
    (rootfs / "dir" / "big").write_bytes(big)
    code = "import sys; from sampan.engine.containers.copy import copy_out; copy_out(sys.argv[1], '/dir', '-')"
    proc = subprocess.run([sys.executable, "-c", code, str(rootfs)], capture_output=True, check=True, timeout=30)
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(proc.stdout)))
    copy_in(str(other), "-", "/", archive=True)
    assert (other / "dir" / "big").read_bytes() == big
    assert tree(other / "dir") == tree(rootfs / "dir")


# --- copy in: path semantics -------------------------------------------------------------------------------


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """Host source tree: file, dir/{a,sub/b}, link -> file, dlink -> dir, empty/, a .wh. name."""
    src = tmp_path / "src"
    (src / "dir" / "sub").mkdir(parents=True)
    (src / "dir" / "a").write_bytes(b"HA")
    (src / "dir" / "sub" / "b").write_bytes(b"HB")
    (src / "dir" / ".wh.kept").write_bytes(b"W")
    (src / "file").write_bytes(b"HF")
    os.chown(src / "file", 555, 666)
    os.symlink("file", src / "link")
    os.symlink("dir", src / "dlink")
    return src


SRC_DIR = {"a": ("F", 0o644, b"HA"), ".wh.kept": ("F", 0o644, b"W"), "sub": ("D", 0o755),
           "sub/b": ("F", 0o644, b"HB")}

# (src, dest, follow_link, {container path: expected} or the error class)
IN_CASES = [
    ("file", "/dir", False, {"dir/file": ("F", 0o644, b"HF"), "dir/a": ("F", 0o644, b"A")}),
    ("file", "/dir/", False, {"dir/file": ("F", 0o644, b"HF")}),
    ("file", "/new", False, {"new": ("F", 0o644, b"HF")}),
    ("file", "/file", False, {"file": ("F", 0o644, b"HF")}),
    ("file", "/link", False, {"file": ("F", 0o644, b"HF"), "link": ("L", "file")}),  # DEST link followed
    ("file", "/new/", False, errors.InvalidArgument),  # "no such directory"
    ("file", "/nope/x", False, errors.NotFound),
    ("dir", "/empty", False, {"empty": ("D", 0o755), **under("empty/dir", SRC_DIR)}),
    ("dir", "/new", False, {"new": ("D", 0o755), **under("new", SRC_DIR)}),
    ("dir/.", "/empty", False, {"empty": ("D", 0o755), **under("empty", SRC_DIR)}),
    ("dir", "/dlink", False, {"dir/dir": ("D", 0o755), **under("dir/dir", SRC_DIR)}),
    ("dir", "/file", False, errors.InvalidArgument),  # cannot copy a directory onto a file
    ("link", "/empty", False, {"empty/link": ("L", "file")}),
    ("link", "/empty", True, {"empty/link": ("F", 0o644, b"HF")}),
    ("dlink/", "/empty", False, {"empty/dlink": ("D", 0o755), **under("empty/dlink", SRC_DIR)}),
    ("missing", "/empty", False, errors.NotFound),
]


@pytest.mark.parametrize(("src", "dest", "follow", "expected"), IN_CASES,
                         ids=[f"{c[0]}->{c[1]}{':L' if c[2] else ''}" for c in IN_CASES])
def test_copy_in_semantics(rootfs: Path, source: Path, src: str, dest: str, follow: bool, expected: object) -> None:
    before = tree(rootfs)
    if isinstance(expected, type):
        with pytest.raises(expected):
            copy_in(str(rootfs), f"{source}/{src}", dest, follow_link=follow)
        assert tree(rootfs) == before
        return
    copy_in(str(rootfs), f"{source}/{src}", dest, follow_link=follow)
    after = tree(rootfs)
    for path, entry in expected.items():  # type: ignore[attr-defined]
        assert after.get(path) == entry, path


def test_copy_in_refuses_dir_over_file(rootfs: Path, tmp_path: Path) -> None:
    """Docker's NoOverwriteDirNonDir: a directory in the source never replaces a file in the container."""
    src = tmp_path / "s" / "dir"
    (src / "a").mkdir(parents=True)  # /dir/a is a file in the container
    with pytest.raises(errors.InvalidArgument, match="cannot overwrite non-directory"):
        copy_in(str(rootfs), str(src), "/")
    assert (rootfs / "dir" / "a").read_bytes() == b"A"


def test_copy_in_contents_keep_destination_metadata(rootfs: Path, source: Path) -> None:
    os.chmod(rootfs / "empty", 0o700)
    copy_in(str(rootfs), str(source / "dir") + "/.", "/empty")
    assert stat.S_IMODE(os.stat(rootfs / "empty").st_mode) == 0o700
    assert (rootfs / "empty" / "a").read_bytes() == b"HA"


def test_copy_in_ownership(rootfs: Path, source: Path) -> None:
    """Without -a every entry gets the owner the caller passes; with -a the host's uid/gid are kept."""
    copy_in(str(rootfs), str(source / "dir"), "/o1", owner=(1000, 1001))
    for path in ("o1", "o1/a", "o1/sub", "o1/sub/b"):
        st = os.lstat(rootfs / path)
        assert (st.st_uid, st.st_gid) == (1000, 1001), path
    os.chown(source / "dir" / "a", 777, 888)
    copy_in(str(rootfs), str(source / "dir"), "/o2", archive=True, owner=(1000, 1001))
    assert (os.lstat(rootfs / "o2" / "a").st_uid, os.lstat(rootfs / "o2" / "a").st_gid) == (777, 888)
    copy_in(str(rootfs), str(source / "file"), "/o3", archive=True)
    assert os.lstat(rootfs / "o3").st_uid == 555


# --- copy in: "-" ----------------------------------------------------------------------------------------


def test_copy_in_stream(rootfs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_tar(("top", tarfile.DIRTYPE, b""), ("top/f", tarfile.REGTYPE, b"S"), ("top/h", tarfile.LNKTYPE, "top/f"),
                    ("./.", tarfile.DIRTYPE, b""), uid=42, gid=43)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    copy_in(str(rootfs), "-", "/dlink", owner=(7, 8))  # DEST a symlink to a directory: followed
    assert (rootfs / "dir" / "top" / "f").read_bytes() == b"S"
    assert os.lstat(rootfs / "dir" / "top" / "h").st_ino == os.lstat(rootfs / "dir" / "top" / "f").st_ino
    assert os.lstat(rootfs / "dir" / "top" / "f").st_uid == 7
    assert stat.S_IMODE(os.stat(rootfs / "dir").st_mode) == 0o750  # the "." entry did not touch DEST
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    copy_in(str(rootfs), "-", "/empty", archive=True)
    assert os.lstat(rootfs / "empty" / "top" / "f").st_uid == 42


@pytest.mark.parametrize("dest", ["/file", "/missing", "/nope/x"])
def test_copy_in_stream_needs_a_directory(rootfs: Path, monkeypatch: pytest.MonkeyPatch, dest: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(make_tar(("f", tarfile.REGTYPE, b"x")))))
    with pytest.raises(errors.InvalidArgument, match="must be a directory"):
        copy_in(str(rootfs), "-", dest)


# --- hostile containers ------------------------------------------------------------------------------------


def hostile_links(rootfs: Path, host: Path) -> None:
    os.symlink("/", rootfs / "toroot")
    os.symlink(str(host), rootfs / "abs")
    os.symlink(os.path.relpath(host, rootfs / "dir"), rootfs / "dir" / "climb")
    os.symlink("../../../../../../../../" + str(host).lstrip("/"), rootfs / "deep")
    (rootfs / "secret").write_bytes(b"inside")


def test_copy_out_resolves_symlinks_inside_the_root(rootfs: Path, host: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    hostile_links(rootfs, host)
    out = tmp_path / "out"
    out.mkdir()
    copy_out(str(rootfs), "/toroot/secret", str(out / "s1"))
    assert (out / "s1").read_bytes() == b"inside"
    for src in ("/abs/secret", "/dir/climb/secret", "/deep/secret"):
        with pytest.raises(errors.NotFound):
            copy_out(str(rootfs), src, str(out / "s2"))
        with pytest.raises(errors.NotFound):
            copy_out(str(rootfs), src, "-")
    for src in ("/abs", "/deep", "/dir/climb"):
        with pytest.raises(errors.NotFound):
            copy_out(str(rootfs), src, str(out / "s3"), follow_link=True)
        with pytest.raises(errors.NotFound):
            copy_out(str(rootfs), src + "/", str(out / "s3"))
    copy_out(str(rootfs), "/", str(out / "all"))  # the links are copied as links, never followed
    assert os.readlink(out / "all" / "abs") == str(host)
    assert_never_read(out)
    assert HOST_SECRET not in stdout_of(monkeypatch, lambda: copy_out(str(rootfs), "/", "-"))


def test_copy_in_never_writes_outside_the_root(rootfs: Path, host: Path, source: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    hostile_links(rootfs, host)
    before = host_state(host)
    for dest in ("/abs/", "/abs", "/abs/secret", "/dir/climb/", "/dir/climb/x", "/deep/", "/deep/secret"):
        for src in ("file", "dir"):
            try:
                copy_in(str(rootfs), str(source / src), dest)
            except (errors.NotFound, errors.InvalidArgument):
                pass
    copy_in(str(rootfs), str(source / "file"), "/toroot/")
    assert (rootfs / "file").read_bytes() == b"HF"
    evil = make_tar(("esc", tarfile.SYMTYPE, str(host)), ("esc/pwned", tarfile.REGTYPE, b"P"),
                    ("up", tarfile.SYMTYPE, "../../../../.."), ("up/pwned", tarfile.REGTYPE, b"P"),
                    ("h", tarfile.LNKTYPE, "abs/secret"))
    for tar in (evil, make_tar(("../../pwned", tarfile.REGTYPE, b"P"))):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(tar)))
        with pytest.raises(errors.InvalidArgument):
            copy_in(str(rootfs), "-", "/empty")
    assert host_state(host) == before
    assert not list(host.parent.glob("**/pwned")) or all(
        rootfs in p.parents for p in host.parent.glob("**/pwned"))


def test_symlink_swap_race(rootfs: Path, host: Path, source: Path, tmp_path: Path) -> None:
    """CVE-2018-15664: a container keeps swapping a directory on the copy path for a symlink to a host
    directory (absolute, and relative with ``..``) while cp runs in and out. Nothing is read or written there."""
    data = rootfs / "data"
    (data / "sub" / "inner").mkdir(parents=True)
    (data / "sub" / "secret").write_bytes(b"inside")
    os.symlink(str(host), data / "link.abs")
    os.symlink(os.path.relpath(host, data), data / "link.rel")
    before = host_state(host)
    stop = threading.Event()

    def swap() -> None:
        sub, real, n = data / "sub", data / "sub.real", 0
        while not stop.is_set():
            n += 1
            link = data / ("link.abs" if n % 2 else "link.rel")
            for old, new in ((sub, real), (link, sub), (sub, link), (real, sub)):
                try:
                    os.rename(old, new)
                except OSError:
                    if new == sub and sub.is_dir() and not sub.is_symlink():  # a racing cp created it: move aside
                        os.rename(sub, data / f"junk{n}")
                        os.rename(old, new)

    swapper = threading.Thread(target=swap, daemon=True)
    swapper.start()
    copied = refused = 0
    deadline = time.monotonic() + 1.5
    try:
        while time.monotonic() < deadline:
            out = tmp_path / f"out{copied + refused}"
            out.mkdir()
            for op, src, dest in ((copy_out, "/data/sub/secret", str(out / "f")),
                                  (copy_out, "/data", str(out / "tree")),
                                  (copy_in, str(source / "file"), "/data/sub/"),
                                  (copy_in, str(source / "dir"), "/data/sub/inner")):
                try:
                    op(str(rootfs), src, dest)
                    copied += 1
                except (errors.NotFound, errors.InvalidArgument):
                    refused += 1
            assert_never_read(out)
    finally:
        stop.set()
        swapper.join()
    assert host_state(host) == before
    assert copied and refused  # both sides of the race were hit


def test_no_fd_leaks(rootfs: Path, source: Path, tmp_path: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        copy_out(str(rootfs), "/dir", str(tmp_path / "o"))
        copy_in(str(rootfs), str(source / "dir"), "/empty")
        with pytest.raises(errors.NotFound):
            copy_out(str(rootfs), "/missing", str(tmp_path / "m"))
        with pytest.raises(errors.InvalidArgument):
            copy_in(str(rootfs), str(source / "dir"), "/file")
    assert len(os.listdir("/proc/self/fd")) == before
