"""Bundles and runtime runners shared by the runtime tests: the same test runs under runc (the oracle) and sampan-runc.

A bundle is a busybox root filesystem (Debian's static binary plus applet links) and runc's default config.json,
adjusted per test. Every container a test creates is deleted by the fixture, by ID, even when the test fails.
"""

from __future__ import annotations

import array
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

SAMPAN_RUNC = str(Path(sys.executable).with_name("sampan-runc"))
RUNTIMES = {"runc": shutil.which("runc") or "/usr/sbin/runc", "sampan-runc": SAMPAN_RUNC}


def make_rootfs(path: Path) -> Path:
    (path / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", path / "bin" / "busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", path / "bin" / applet)
    for d in ("etc", "proc", "sys", "dev", "tmp", "root", "usr/bin", "var"):
        (path / d).mkdir(parents=True, exist_ok=True)
    (path / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/tmp:/bin/sh\n")
    (path / "etc" / "group").write_text("root:x:0:\nuser:x:1000:\n")
    os.chmod(path / "tmp", 0o1777)
    return path


@dataclass(frozen=True)
class CgroupLimits:
    """A process's cgroup limits as its hierarchy writes them: v1's files or v2's (``cpu_weight`` is v1's
    ``cpu.shares`` or v2's ``cpu.weight``)."""

    version: int
    memory: str
    pids: str
    cpu_quota: str
    cpu_period: str
    cpu_weight: str


def cgroup_limits(pid: int, root: Path = Path("/sys/fs/cgroup")) -> CgroupLimits:
    """Read from the host's view of ``pid``'s cgroups (``/proc/PID/cgroup``), on a v1 or a v2 host."""
    paths = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path.lstrip("/")
    if (root / "cgroup.controllers").exists():
        unified = root / paths[""]
        quota, period = (unified / "cpu.max").read_text().split()
        return CgroupLimits(2, (unified / "memory.max").read_text().strip(),
                            (unified / "pids.max").read_text().strip(), quota, period,
                            (unified / "cpu.weight").read_text().strip())

    def v1(controller: str, name: str) -> str:
        return (root / controller / paths[controller] / name).read_text().strip()
    return CgroupLimits(1, v1("memory", "memory.limit_in_bytes"), v1("pids", "pids.max"),
                        v1("cpu", "cpu.cfs_quota_us"), v1("cpu", "cpu.cfs_period_us"), v1("cpu", "cpu.shares"))


@pytest.fixture(scope="session")
def base_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_rootfs(tmp_path_factory.mktemp("rootfs") / "rootfs")


def default_config() -> dict[str, Any]:
    tmp = Path(f"/tmp/spec-{uuid.uuid4().hex}")
    tmp.mkdir()
    try:
        subprocess.run([RUNTIMES["runc"], "spec", "--bundle", str(tmp)], check=True, capture_output=True)
        return json.loads((tmp / "config.json").read_text())
    finally:
        shutil.rmtree(tmp)


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Runner:
    """One runtime binary with its own state root; remembers containers to delete."""

    name: str
    root: Path
    bundle_dir: Path
    rootfs: Path
    created: list[str] = field(default_factory=list)

    def __call__(self, *args: str, timeout: float = 60) -> Result:
        """Output goes to files, not pipes: a detached container keeps its stdio open long after we return."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.run([RUNTIMES[self.name], "--root", str(self.root), *args], stdout=out, stderr=err,
                                  stdin=subprocess.DEVNULL, timeout=timeout)
            out.seek(0)
            err.seek(0)
            return Result(proc.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"))

    def bundle(self, args: list[str], **changes: Any) -> tuple[Path, str]:
        """A fresh bundle (config.json + rootfs) with ``process.args`` and top-level changes applied."""
        config = default_config()
        config["process"]["terminal"] = False
        config["process"]["args"] = args
        config["root"] = {"path": str(self.rootfs), "readonly": False}
        mutate = changes.pop("mutate", None)
        config.update(changes)
        if mutate:
            mutate(config)
        cid = f"t{uuid.uuid4().hex[:10]}"
        bundle = self.bundle_dir / cid
        bundle.mkdir()
        (bundle / "config.json").write_text(json.dumps(config))
        self.created.append(cid)
        return bundle, cid

    def run(self, args: list[str], **changes: Any) -> Result:
        bundle, cid = self.bundle(args, **changes)
        return self("run", "--bundle", str(bundle), cid)

    def cleanup(self) -> None:
        for cid in self.created:
            self("delete", "--force", cid)


@pytest.fixture(params=["runc", "sampan-runc"])
def runtime(request: pytest.FixtureRequest, tmp_path: Path, base_rootfs: Path) -> Iterator[Runner]:
    # world-traversable, unlike pytest's tmp_path: a user-namespaced container must reach its rootfs
    base = Path(tempfile.mkdtemp(prefix="sampan-rt-"))
    base.chmod(0o755)
    rootfs = base / "rootfs"
    shutil.copytree(base_rootfs, rootfs, symlinks=True)
    (tmp_path / "bundles").mkdir()
    runner = Runner(request.param, tmp_path / "state", tmp_path / "bundles", rootfs)
    try:
        yield runner
    finally:
        runner.cleanup()
        shutil.rmtree(base, ignore_errors=True)


class ConsoleSocket:
    """runc's recvtty in miniature: accept one connection and receive the pty master fd."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        self.master: int | None = None
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            fds = array.array("i")
            _, anc, _, _ = conn.recvmsg(1024, socket.CMSG_SPACE(4))
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[:4])
            self.master = fds[0] if fds else None

    def read_all(self, timeout: float = 10) -> str:
        self.thread.join(timeout)
        assert self.master is not None, "no pty master received"
        out = b""
        import select

        while True:
            ready, _, _ = select.select([self.master], [], [], timeout)
            if not ready:
                break
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        return out.decode(errors="replace")

    def close(self) -> None:
        self.server.close()
        if self.master is not None:
            os.close(self.master)


@pytest.fixture
def spawn() -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    """Start ``python -c code`` children with pipes; each is killed by pid and reaped afterwards."""
    children: list[subprocess.Popen[str]] = []

    def start(code: str) -> subprocess.Popen[str]:
        child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True)
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait()
