"""sampan beside an iptables firewall on the same host (issue 7), for real and away from the host's own firewall.

Each test makes a network namespace of its own, with a mount namespace whose /sys shows that network namespace's
links (and the host's cgroups), and runs sampan's CLI there. An "outside" namespace joined by a veth pair
(10.251.71.1 on sampan's side, 10.251.71.2 outside) stands for the world that forwarded traffic goes to. In the
first test Debian's dockerd runs in the namespace with its default ``--iptables=true`` and, finding
``ip_forward`` off, sets the filter table's FORWARD policy to DROP; in the second only iptables-legacy's FORWARD
policy is DROP. All traffic stays in these namespaces; they, dockerd and sampan's roots are removed at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from processes import stop

from tests.http_get import http_get

_HTTPD = "mkdir -p /www && echo hello-$(hostname) > /www/index.html && httpd -f -h /www"
_OUTSIDE = "10.251.71.2"
# The namespace's own /sys (its links), with the host's cgroup hierarchies moved into it; then it waits.
_HOLDER = ('mount --rbind /sys/fs/cgroup "$1" && mount -t sysfs sysfs /sys && mount --move "$1" /sys/fs/cgroup '
           "&& echo ready && exec sleep infinity")


class Namespaces:
    """The test's network namespace (``name``, entered through ``holder``'s mount and network namespaces) and
    the outside one."""

    def __init__(self, name: str, outside: str, holder: subprocess.Popen) -> None:
        self.name, self.outside, self.holder = name, outside, holder

    @property
    def prefix(self) -> tuple[str, ...]:
        return ("nsenter", "-t", str(self.holder.pid), "-m", "-n", "--")

    def run(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run([*self.prefix, *args], capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0 or not check, f"{args}: {proc.stderr}"
        return proc.stdout


@pytest.fixture
def namespaces(tmp_path: Path) -> Iterator[Namespaces]:
    if not shutil.which("nsenter") or not shutil.which("iptables-nft"):
        pytest.skip("nsenter and iptables are needed")
    tag = f"{os.getpid() % 100000}{threading.get_ident() % 1000}"
    name, outside = f"spt-co{tag}", f"spt-out{tag}"
    holder = None
    try:
        for ns in (name, outside):
            subprocess.run(["ip", "netns", "add", ns], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", name, "link", "add", "sptco0", "type", "veth", "peer", "name", "sptco1",
                        "netns", outside], check=True)
        for ns, link, address in ((name, "sptco0", "10.251.71.1/24"), (outside, "sptco1", f"{_OUTSIDE}/24")):
            subprocess.run(["ip", "-n", ns, "addr", "add", address, "dev", link], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", link, "up"], check=True)
        (tmp_path / "cgroup").mkdir()
        holder = subprocess.Popen(["nsenter", f"--net=/run/netns/{name}", "unshare", "--mount", "--propagation",
                                   "private", "sh", "-c", _HOLDER, "holder", str(tmp_path / "cgroup")],
                                  stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        yield Namespaces(name, outside, holder)
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
        for ns in (name, outside):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


class Dockerd:
    """Debian's dockerd in the test's namespaces, on its own socket, data root, exec root and pidfile."""

    def __init__(self, namespaces: Namespaces, base: Path) -> None:
        self.namespaces, self.base, self.proc = namespaces, base, None

    def start(self) -> None:
        """Start it with ``ip_forward`` off, so that it turns it on and sets FORWARD's policy to DROP."""
        base = self.base
        self.namespaces.run("sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward")
        log = open(base / "dockerd.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*self.namespaces.prefix, "dockerd", "--host", f"unix://{base}/docker.sock", "--data-root",
             str(base / "data"), "--exec-root", str(base / "exec"), "--pidfile", str(base / "docker.pid")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        env = {**os.environ, "DOCKER_HOST": f"unix://{base}/docker.sock", "DOCKER_CONFIG": str(base / "config")}
        deadline = time.monotonic() + 60
        while subprocess.run(["docker", "version"], env=env, capture_output=True, check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.skip("dockerd could not start in a network namespace: "
                            + (base / "dockerd.log").read_text()[-300:])
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is None:
            return
        stop(self.proc, 30, group=True)
        self.proc = None


@pytest.fixture
def dockerd(namespaces: Namespaces) -> Iterator[Dockerd]:
    import tempfile

    if not shutil.which("dockerd") or not shutil.which("docker"):
        pytest.skip("dockerd/docker are not installed")
    # a short base: containerd's socket under the exec root must fit in a socket address (108 bytes)
    daemon = Dockerd(namespaces, Path(tempfile.mkdtemp(prefix="spt-dockerd-")))
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(daemon.base, ignore_errors=True)


@contextlib.contextmanager
def _outside_server(namespaces: Namespaces) -> Iterator[None]:
    """An HTTP server outside, on 10.251.71.2:8000, that answers with the address it sees the client at."""
    from sampan.network.netlink import entered

    with entered(f"/run/netns/{namespaces.outside}"):
        server = socket.socket()
    server.bind((_OUTSIDE, 8000))
    server.listen(8)
    server.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, peer = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                with contextlib.suppress(OSError):
                    conn.recv(4096)  # the request, read: closing with unread data would reset the connection
                    conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + peer[0].encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        server.close()


def _get_from_outside(namespaces: Namespaces, port: int) -> bytes:
    """A GET to the namespace's address from the outside one (a published port)."""
    from sampan.network.netlink import entered

    def outside_socket() -> socket.socket:
        with entered(f"/run/netns/{namespaces.outside}"):
            return socket.socket()

    return http_get("10.251.71.1", port, outside_socket)


def _filter_rules(namespaces: Namespaces, backend: str = "nft") -> list[str]:
    """The filter table's chains, policies and rules (no counters, no comment lines): iptables can read it."""
    out = namespaces.run(f"iptables-{backend}-save", "-t", "filter")
    return [line.split(" [")[0] for line in out.splitlines() if line and not line.startswith("#")]


def _ours(rules: list[str], table: str) -> list[str]:
    return [line for line in rules if f'--comment "{table}:' in line]


def _accepted(rules: list[str], table: str) -> dict[str, int]:
    """How many of sampan's rules each bridge has (an in and an out rule where all is well)."""
    return dict(Counter(line.split(f'--comment "{table}:')[1].split('"')[0] for line in _ours(rules, table)))


def _wget(sampan, *args: str, seconds: int = 15) -> tuple[int, str]:
    """wget from a container to the outside server (busybox 1.35's wget -T crashes: timeout instead). Where it
    must get through, it has long enough on a loaded machine; where it must be dropped, a short wait proves it."""
    result = sampan(*args, "timeout", str(seconds), "wget", "-qO-", f"http://{_OUTSIDE}:8000/", check=False)
    return result.returncode, result.stdout


def test_forwarding_beside_dockers_iptables_rules(dockerd, namespaces, sampan, busybox) -> None:
    from sampan.engine import networks

    table = networks.table_name(sampan.engine())
    docker_rules = _filter_rules(namespaces)
    assert ":FORWARD DROP" in docker_rules and "-A FORWARD -j DOCKER-USER" in docker_rules, docker_rules
    sampan.prefix = namespaces.prefix
    conet = sampan("network", "create", "--subnet", "10.251.72.0/24", "conet").stdout.strip()
    other = sampan("network", "create", "--subnet", "10.251.73.0/24", "other").stdout.strip()
    bridges = {f"br-{conet[:12]}", f"br-{other[:12]}"}
    ours = _ours(_filter_rules(namespaces), table)
    assert sorted(ours) == sorted(
        [f'-A DOCKER-USER -i {b} -m comment --comment "{table}:{b}" -j ACCEPT' for b in bridges]
        + [f"-A DOCKER-USER -o {b} -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -m comment --comment "
           f'"{table}:{b}" -j ACCEPT' for b in bridges]), ours
    with _outside_server(namespaces):
        sampan("run", "-d", "--name", "srv", "--network", "conet", "-p", "8080:80", "busybox", "sh", "-c", _HTTPD)
        # out through masquerade, between two containers of the network, into a published port from outside
        assert _wget(sampan, "run", "--rm", "--network", "conet", "busybox") == (0, "10.251.71.1")
        for _ in range(50):
            result = sampan("run", "--rm", "--network", "conet", "busybox", "timeout", "3", "wget", "-qO-",
                            "http://srv/", check=False)
            if result.returncode == 0:
                break
            time.sleep(0.1)
        assert result.stdout.startswith("hello-"), result.stderr
        assert b"hello-" in _get_from_outside(namespaces, 8080)

        # dockerd restarts after the filter table was wiped (a reboot, a firewall's reload): sampan's rules are
        # gone and Docker's DROP policy is back, so the running container's forwarded traffic is dropped ...
        dockerd.stop()
        namespaces.run("iptables-nft", "-F")
        namespaces.run("iptables-nft", "-X")
        dockerd.start()
        assert _filter_rules(namespaces) == docker_rules
        assert _wget(sampan, "exec", "srv", seconds=3)[0] != 0
        # ... until the next start of any container of the root adds every network's rules again
        sampan("run", "--rm", "--network", "other", "busybox", "true")
        every = _accepted(_filter_rules(namespaces), table)  # the default network's bridge was made meanwhile
        assert every == {bridge: 2 for bridge in [*bridges, networks.default_bridge(sampan.engine())]}, every
        assert _wget(sampan, "exec", "srv") == (0, "10.251.71.1")

    # system check finds a rule of a bridge that is no network's and a network lacking its rules; repair fixes both
    namespaces.run("iptables-nft", "-I", "DOCKER-USER", "-i", "br-gone", "-m", "comment", "--comment",
                   f"{table}:br-gone", "-j", "ACCEPT")
    namespaces.run("iptables-nft", "-D", "DOCKER-USER", "-i", f"br-{other[:12]}", "-m", "comment", "--comment",
                   f"{table}:br-{other[:12]}", "-j", "ACCEPT")
    problems = sampan("system", "check", check=False).stdout
    assert "br-gone" in problems and "network other: no rule accepting its bridge" in problems, problems
    sampan("system", "check", "--repair")
    assert "br-gone" not in sampan("system", "check", check=False).stdout
    assert _accepted(_filter_rules(namespaces), table) == every

    # removing a network removes its rules and no other; system reset removes the rest, leaving Docker's intact
    sampan("rm", "-f", "srv")
    sampan("network", "rm", "other")
    assert _accepted(_filter_rules(namespaces), table) == {b: 2 for b in every if b != f"br-{other[:12]}"}
    sampan("system", "reset", "-f")
    assert _filter_rules(namespaces) == docker_rules


def test_forwarding_beside_a_legacy_iptables_drop_policy(namespaces, sampan, busybox) -> None:
    """The x_tables backend: rules added when a network is made, through iptables-legacy, and removed with it;
    ``system reset`` removes the rest (the default network's)."""
    from sampan.engine import networks

    if not shutil.which("iptables-legacy") or "filter" not in namespaces.run("sh", "-c",
                                                                            "iptables-legacy -S >/dev/null; "
                                                                            "cat /proc/net/ip_tables_names"):
        pytest.skip("no iptables-legacy filter table here")
    table = networks.table_name(sampan.engine())
    namespaces.run("sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
    namespaces.run("iptables-legacy", "-P", "FORWARD", "DROP")
    before = _filter_rules(namespaces, "legacy")
    sampan.prefix = namespaces.prefix
    network = sampan("network", "create", "--subnet", "10.251.74.0/24", "lnet").stdout.strip()
    ours = _ours(_filter_rules(namespaces, "legacy"), table)
    assert len(ours) == 2 and all(line.startswith(f"-A FORWARD -{d} br-{network[:12]} ") for line, d in
                                  zip(sorted(ours), "io")), ours
    assert "table ip filter" not in namespaces.run("nft", "list", "tables")  # nothing made in nft's tables
    with _outside_server(namespaces):
        assert _wget(sampan, "run", "--rm", "--network", "lnet", "busybox") == (0, "10.251.71.1")
    sampan("network", "rm", "lnet")
    assert not [line for line in _ours(_filter_rules(namespaces, "legacy"), table) if network[:12] in line]
    sampan("system", "reset", "-f")
    assert _filter_rules(namespaces, "legacy") == before
