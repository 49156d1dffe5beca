"""Shared fixtures: a private storage root per test, a CLI runner, a busybox image built offline once, and a
private dockerd (own socket, data root and exec root; no bridge, no iptables; sampan-runc registered as the
"sampan" runtime) so the machine's own Docker, if any, is untouched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from processes import stop

SAMPAN = str(Path(sys.executable).with_name("sampan"))
SAMPAN_RUNC = str(Path(sys.executable).with_name("sampan-runc"))
# Networks of test roots take /24s from here (each root has its own bridges; subnets clash with no host route).
TEST_POOLS = "10.240.0.0/12/24"
pytest_plugins = ["registry_fixtures"]  # the registry tests' fixtures (certs, registry), assertions rewritten


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Sampan:
    """Runs the real ``sampan`` console script against one private root."""

    root: Path
    runroot: Path
    engines: list = field(default_factory=list)  # opened by tests; closed at teardown so no fd outlives a test
    prefix: tuple[str, ...] = ()  # a command to run sampan under, such as nsenter into a test's namespaces

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SAMPAN_ROOT": str(self.root), "SAMPAN_RUNROOT": str(self.runroot),
                "SAMPAN_ADDRESS_POOLS": os.environ.get("SAMPAN_ADDRESS_POOLS", TEST_POOLS)}

    def __call__(self, *args: str, input: bytes | str | None = None, check: bool = True,
                 timeout: float = 120) -> Result:
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run([*self.prefix, SAMPAN, *args], input=data, capture_output=True, env=self.env,
                              timeout=timeout, stdin=subprocess.DEVNULL if data is None else None)
        result = Result(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))
        if check and proc.returncode != 0:
            raise AssertionError(f"sampan {' '.join(args)} failed ({proc.returncode}): {result.stderr}")
        return result

    def wait_for_monitor_host(self, timeout: float = 10.0) -> None:
        """Until the root's monitor host answers: an attached start launches it but does not wait for it."""
        from sampan.engine.containers import monitor_host

        deadline = time.monotonic() + timeout
        while monitor_host._send(str(self.runroot / "monitor-host.sock"), b"{}", [], timeout=0.5) != b"ping":
            assert time.monotonic() < deadline, "the monitor host never listened"
            time.sleep(0.02)

    def engine(self):
        from sampan.engine.context import Engine

        engine = Engine(str(self.root), str(self.runroot))
        self.engines.append(engine)
        return engine


def remove_containers(runner: Sampan) -> None:
    """Remove every container of the runner's root (monitors, processes, cgroups, mounts), then check that
    nothing of them is left: what a test's containers leave behind fails the test that made them."""
    bundles = runner.root / "containers"
    if not (runner.root / "sampan.db").exists() or not bundles.is_dir() or not any(bundles.iterdir()):
        return
    ids = runner("ps", "-aq", "--no-trunc", check=False).stdout.split()
    if ids:
        runner("rm", "-f", "-v", *ids, check=False)
    leftovers = runner("system", "check", check=False).stdout
    subprocess.run(["umount", "-l", str(runner.runroot / "procview")], check=False, capture_output=True)
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if line.split()[4].startswith((str(runner.root), str(runner.runroot)))]
    for mount in sorted(mounts, reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)
    assert not mounts, f"mounts left under the test's root: {mounts}"
    assert "container" not in leftovers, leftovers


def remove_networks(runner: Sampan) -> None:
    """Delete the root's kernel objects (its bridges and its nftables table); every root has its own names."""
    if not (runner.root / "sampan.db").exists():
        return
    from sampan.engine import networks
    from sampan.engine.context import Engine

    with Engine(str(runner.root), str(runner.runroot)) as engine:
        networks.purge_kernel(engine)


@pytest.fixture
def sampan(tmp_path: Path) -> Iterator[Sampan]:
    runner = Sampan(tmp_path / "root", tmp_path / "run")
    yield runner
    for engine in runner.engines:
        engine.close()
    try:
        remove_containers(runner)
        # the /proc view's server ends when its mount goes
        subprocess.run(["umount", "-l", str(runner.runroot / "procview")], check=False, capture_output=True)
    finally:
        remove_networks(runner)
        shutil.rmtree(tmp_path / "root", ignore_errors=True)
        shutil.rmtree(tmp_path / "run", ignore_errors=True)


@pytest.fixture(scope="session")
def busybox_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A docker-archive of the bootstrapped busybox image, made once per session in its own root."""
    base = tmp_path_factory.mktemp("busybox")
    runner = Sampan(base / "root", base / "run")
    runner("image", "bootstrap", "busybox")
    archive = base / "busybox.tar"
    runner("save", "-o", str(archive), "busybox:latest")
    shutil.rmtree(base / "root")
    return archive


@pytest.fixture
def busybox(sampan: Sampan, busybox_archive: Path) -> str:
    """Load busybox into the test's root; returns its image ID."""
    sampan("load", "-i", str(busybox_archive))
    return sampan("image", "inspect", "--format", "{{.Id}}", "busybox").stdout.strip()


def store_listing(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under a root with (mode, size): to prove that failures leave nothing behind."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            out[os.path.relpath(path, root)] = (st.st_mode, st.st_size)
    return out


@pytest.fixture(scope="session")
def docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    dockerd = shutil.which("dockerd")
    if dockerd is None or shutil.which("docker") is None:
        pytest.skip("dockerd/docker are not installed")
    if Path("/sys/class/net/docker0").exists():
        pytest.skip("a docker0 bridge exists: a private dockerd with --bridge none would delete it")
    base = tmp_path_factory.mktemp("dockerd")
    sock = base / "docker.sock"
    log = open(base / "dockerd.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [dockerd, "--host", f"unix://{sock}", "--data-root", str(base / "data"), "--exec-root",
         str(base / "exec"), "--pidfile", str(base / "docker.pid"), "--bridge", "none", "--iptables=false",
         "--ip6tables=false", "--ip-masq=false", "--add-runtime", f"sampan={SAMPAN_RUNC}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(base / "config")}
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(["docker", "version"], env=env, capture_output=True).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.skip("dockerd could not start: " + (base / "dockerd.log").read_text()[-300:])
            time.sleep(0.3)
        yield env
    finally:
        stop(proc, 30, group=True)
        log.close()
        subprocess.run(["umount", "-R", str(base / "data")], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def docker_cli(env: dict[str, str], *args: str, input: bytes | None = None) -> str:
    proc = subprocess.run(["docker", *args], env=env, input=input, capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


def _host_fingerprint() -> dict[str, object]:
    """Host files a containment bug would damage first: compared before and after the whole session."""
    import hashlib

    out: dict[str, object] = {}
    for path in ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/full"):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            out[path] = None
            continue
        out[path] = (st.st_mode, st.st_rdev)
    for path in ("/etc/passwd", "/etc/group", "/etc/hostname", "/etc/hosts", sys.executable, "/bin/sh"):
        try:
            with open(os.path.realpath(path), "rb") as f:
                out[path] = hashlib.sha256(f.read()).hexdigest()
        except FileNotFoundError:
            out[path] = None
    return out


@pytest.fixture(scope="session", autouse=True)
def host_untouched() -> Iterator[None]:
    before = _host_fingerprint()
    yield
    from sampan.engine.system import release_cgroup_parent

    release_cgroup_parent()  # the containers' parent cgroups, once the session's containers are all gone
    after = _host_fingerprint()
    changed = [path for path in before if before[path] != after[path]]
    assert not changed, f"the test session changed host files: {changed}"
