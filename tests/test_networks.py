"""Networking on the real kernel: bridges, veths, nftables DNAT, isolation, embedded DNS, cleanup.

Every test's root has its own bridge and nftables table names (derived from the root's path), and the fixture
deletes them. Traffic goes only to loopback and to addresses inside networks the tests create.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.http_get import http_get

_HTTPD = "mkdir -p /www && echo hello-$(hostname) > /www/index.html && httpd -f -v -h /www"

# busybox wget failing to connect or resolve (1), or busybox timeout ending a hung attempt (143). Not wget's own
# -T: busybox 1.35's wget crashes with it (139) before connecting, which would pass any "cannot reach" check.
_FETCH_FAILED = (1, 143)


def _links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def _kernel(sampan) -> tuple[set[str], dict]:
    """This root's bridges/veths and its table's elements."""
    from sampan.engine import networks
    from sampan.network import firewall

    engine = sampan.engine()
    table = networks.table_name(engine)
    elements = {k: v for k, v in firewall.listed(table).items() if v}
    return _links(), elements


def _ip(sampan, name: str, network: str = "bridge") -> str:
    return sampan("inspect", "-f", f"{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}",
                  name).stdout.strip()


def _wait_http(sampan, client_args: list[str], url: str) -> str:
    for _ in range(50):
        result = sampan("run", "--rm", *client_args, "busybox", "wget", "-qO-", url, check=False)
        if result.returncode == 0:
            return result.stdout
        time.sleep(0.1)
    raise AssertionError(f"{url}: {result.stderr}")


def _host_get(port: int, host: str = "127.0.0.1") -> bytes:
    return http_get(host, port)


@contextlib.contextmanager
def _upstream(address: str, name: str, answer: str, netns: str = "") -> Iterator[None]:
    """A UDP name server that knows one name: its A query is answered with ``answer``, its other types with no
    records, other names with NXDOMAIN. On the host's loopback: where the embedded DNS server forwards the
    names it does not know; in a container's network namespace (``netns``): a UDP server busybox lacks."""
    from sampan.network.netlink import entered

    with entered(netns) if netns else contextlib.nullcontext():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 53))
    sock.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                packet, peer = sock.recvfrom(512)
            except OSError:
                continue
            end, labels = 12, []
            while packet[end]:
                labels.append(packet[end + 1:end + 1 + packet[end]].decode())
                end += packet[end] + 1
            qtype = struct.unpack_from("!H", packet, end + 1)[0]
            known = ".".join(labels).lower() == name
            record = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(answer) \
                if known and qtype == 1 else b""
            header = packet[:2] + struct.pack("!HHHHH", 0x8180 if known else 0x8183, 1, 1 if record else 0, 0, 0)
            sock.sendto(header + packet[12:end + 5] + record, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        sock.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_default_bridge_address_route_and_hosts(sampan, busybox) -> None:
    out = sampan("run", "--rm", "busybox", "sh", "-c", "ip -4 addr show eth0; ip route; cat /etc/hosts").stdout
    assert "inet 172." in out or "inet 192.168." in out or "inet 10." in out
    assert "default via" in out
    inspect = json.loads(sampan("network", "inspect", "bridge").stdout)[0]
    assert inspect["Name"] == "bridge" and inspect["Driver"] == "bridge"
    gateway = inspect["IPAM"]["Config"][0]["Gateway"]
    assert f"default via {gateway}" in out
    assert sampan("run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net").stdout.split() == ["lo"]


def test_two_peers_talk_by_address_and_name_and_udp(sampan, busybox) -> None:
    sampan("network", "create", "tnet")
    sampan("run", "-d", "--name", "srv", "--network", "tnet", "--network-alias", "web", "busybox", "sh", "-c",
           _HTTPD)
    address = _ip(sampan, "srv", "tnet")
    assert _wait_http(sampan, ["--network", "tnet"], f"http://{address}/").startswith("hello-")
    assert _wait_http(sampan, ["--network", "tnet"], "http://srv/").startswith("hello-")
    assert _wait_http(sampan, ["--network", "tnet"], "http://web/").startswith("hello-")
    # UDP: the embedded DNS server answers over UDP (busybox-static has no UDP server applet for more)
    out = sampan("run", "--rm", "--network", "tnet", "busybox", "nslookup", "web", "127.0.0.11").stdout
    assert f"Address: {address}" in out


def test_published_port_localhost_and_hairpin_keep_source(sampan, busybox) -> None:
    port = _free_port()
    sampan("run", "-d", "--name", "pub", "-p", f"{port}:80", "-p", f"127.0.0.1:{port + 1}:80", "busybox", "sh",
           "-c", _HTTPD)
    assert b"hello-" in _host_get(port)
    assert b"hello-" in _host_get(port + 1)
    assert sampan("port", "pub").stdout.splitlines() == [f"80/tcp -> 0.0.0.0:{port}",
                                                        f"80/tcp -> 127.0.0.1:{port + 1}"]
    assert sampan("port", "pub", "80").stdout.split() == [f"0.0.0.0:{port}", f"127.0.0.1:{port + 1}"]
    assert f"0.0.0.0:{port}->80/tcp" in sampan("ps").stdout
    ports = json.loads(sampan("inspect", "pub").stdout)[0]["NetworkSettings"]["Ports"]
    assert ports == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)},
                                {"HostIp": "127.0.0.1", "HostPort": str(port + 1)}]}
    gateway = json.loads(sampan("network", "inspect", "bridge").stdout)[0]["IPAM"]["Config"][0]["Gateway"]
    # from another container through the host's published port (hairpin): the server sees the client's address
    out = sampan("run", "--rm", "--name", "client", "busybox", "sh", "-c",
                 f"ip -4 -o addr show eth0; wget -qO- http://{gateway}:{port}/").stdout
    client = out.split()[3].split("/")[0]
    assert "hello-" in out
    time.sleep(0.2)
    assert f"[::ffff:{client}]:" in sampan("logs", "pub").stderr


def test_networks_are_isolated(sampan, busybox) -> None:
    sampan("network", "create", "left")
    sampan("network", "create", "right")
    sampan("run", "-d", "--name", "lsrv", "--network", "left", "busybox", "sh", "-c", _HTTPD)
    address = _ip(sampan, "lsrv", "left")
    assert _wait_http(sampan, ["--network", "left"], f"http://{address}/").startswith("hello-")
    blocked = sampan("run", "--rm", "--network", "right", "busybox", "ping", "-c", "1", "-W", "1", address,
                     check=False)
    assert blocked.returncode != 0


def test_udp_between_containers_and_through_published_ports(sampan, busybox) -> None:
    port = _free_port()
    sampan("network", "create", "unet")
    sampan("build", "-q", "-t", "exposed", "-", input="FROM busybox\nEXPOSE 7000\n")
    sampan("run", "-d", "--name", "udp", "--network", "unet", "-p", f"{port}-{port + 1}:53-54/udp", "-P",
           "exposed", "sleep", "300")
    pid = json.loads(sampan("inspect", "udp").stdout)[0]["State"]["Pid"]
    lines = sampan("port", "udp").stdout.splitlines()
    assert f"53/udp -> 0.0.0.0:{port}" in lines and f"54/udp -> 0.0.0.0:{port + 1}" in lines
    assert any(line.startswith("7000/tcp -> 0.0.0.0:") for line in lines), lines  # -P: EXPOSEd, a free port
    with _upstream(_ip(sampan, "udp", "unet"), "known.test", "10.9.8.6", netns=f"/proc/{pid}/ns/net"):
        # the host, through the port published on 127.0.0.1
        query = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"\x05known\x04test\x00" + struct.pack("!HH", 1, 1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(5)
            client.sendto(query, ("127.0.0.1", port))
            assert client.recv(512).endswith(socket.inet_aton("10.9.8.6"))
        # a peer on its network, by name
        out = sampan("run", "--rm", "--network", "unet", "busybox", "nslookup", "known.test", "udp").stdout
        assert "Address: 10.9.8.6" in out, out
        # a container of another network, through the published port on its gateway (the host)
        gateway = json.loads(sampan("network", "inspect", "bridge").stdout)[0]["IPAM"]["Config"][0]["Gateway"]
        out = sampan("run", "--rm", "busybox", "nslookup", "known.test", f"{gateway}:{port}").stdout
        assert "Address: 10.9.8.6" in out, out
    sampan("rm", "-f", "udp")
    assert not _kernel(sampan)[1].get("any_addr")


def test_internal_network_bridge_options_and_masquerade(sampan, busybox) -> None:
    """An internal network has no way out; a normal one leaves masqueraded. "Out" is a veth pair to a network
    namespace of the test's own (10.251.61.0/24), whose TCP server reports the source address it sees."""
    import subprocess

    sampan("network", "create", "--internal", "--subnet", "10.251.60.0/24", "--ip-range", "10.251.60.128/25",
           "-o", "com.docker.network.bridge.name=sptinternal", "-o", "com.docker.network.driver.mtu=1400", "inet")
    sampan("network", "create", "--subnet", "10.251.62.0/24", "onet")
    assert Path("/sys/class/net/sptinternal/mtu").read_text().strip() == "1400"
    sampan("run", "-d", "--name", "isrv", "--network", "inet", "busybox", "sh", "-c", _HTTPD)
    assert _ip(sampan, "isrv", "inet").startswith("10.251.60.1")  # from the --ip-range, 10.251.60.128/25
    out = sampan("run", "--rm", "--network", "inet", "busybox", "sh", "-c",
                 "ip -o link show eth0; ip route; wget -qO- http://isrv/").stdout
    assert "mtu 1400" in out and "default" not in out and "hello-" in out, out
    elements = _kernel(sampan)[1]
    assert "sptinternal" in elements["internal"]
    masqueraded = [e["prefix"]["addr"] for e in elements["masq"]]
    assert "10.251.62.0" in masqueraded and "10.251.60.0" not in masqueraded

    outside = subprocess.Popen(["unshare", "-n", "sleep", "300"])
    try:
        time.sleep(0.2)
        for command in (f"ip link add sptout0 type veth peer name sptout1 netns {outside.pid}",
                        "ip addr add 10.251.61.1/24 dev sptout0", "ip link set sptout0 up"):
            subprocess.run(command.split(), check=True)
        from sampan.network.netlink import entered

        with entered(f"/proc/{outside.pid}/ns/net"):
            subprocess.run(["ip", "addr", "add", "10.251.61.2/24", "dev", "sptout1"], check=True)
            subprocess.run(["ip", "link", "set", "sptout1", "up"], check=True)
            server = socket.socket()
        server.bind(("10.251.61.2", 8080))
        server.listen(4)
        server.settimeout(10)
        seen = []

        def serve() -> None:
            conn, peer = server.accept()
            seen.append(peer[0])
            conn.recv(4096)  # the request, read: closing with unread data would reset the connection
            conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nout")
            conn.close()

        thread = threading.Thread(target=serve)
        thread.start()
        assert sampan("run", "--rm", "--network", "onet", "busybox", "wget", "-qO-",
                      "http://10.251.61.2:8080/").stdout == "out"
        thread.join()
        assert seen == ["10.251.61.1"]  # masqueraded to the host's address on the way out
        r = sampan("run", "--rm", "--network", "inet", "busybox", "timeout", "2", "wget", "-qO-",
                   "http://10.251.61.2:8080/", check=False)
        assert r.returncode in _FETCH_FAILED, r
        server.close()
    finally:
        outside.kill()
        outside.wait()
        subprocess.run(["ip", "link", "del", "sptout0"], check=False, capture_output=True)
    sampan("rm", "-f", "isrv")
    sampan("network", "rm", "inet", "onet")
    assert not os.path.exists("/sys/class/net/sptinternal")


def test_subnets_avoid_host_routes_and_exhausted_pools_fail_cleanly(sampan, busybox, monkeypatch) -> None:
    import subprocess

    monkeypatch.setenv("SAMPAN_ADDRESS_POOLS", "10.251.70.0/23/24")
    subprocess.run(["ip", "link", "add", "sptroute", "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", "10.251.70.1/24", "dev", "sptroute"], check=True)
        subprocess.run(["ip", "link", "set", "sptroute", "up"], check=True)
        # 10.251.70.0/24 is the host's route: the default network takes the next one, the last of the pool
        assert json.loads(sampan("network", "inspect", "bridge").stdout)[0]["IPAM"]["Config"][0]["Subnet"] == \
            "10.251.71.0/24"
        links = _links()
        r = sampan("network", "create", "second", check=False)
        assert r.returncode != 0 and r.stderr.strip().splitlines() == [
            ("Error: could not find an available, non-overlapping IPv4 address pool among the defaults to assign "
             "to the network")], r.stderr
        assert _links() == links and "second" not in sampan("network", "ls").stdout
    finally:
        subprocess.run(["ip", "link", "del", "sptroute"], check=False, capture_output=True)


def test_static_ip_mac_and_dns_options(sampan, busybox) -> None:
    sampan("network", "create", "--subnet", "10.251.7.0/24", "--gateway", "10.251.7.254", "stat")
    out = sampan("run", "--rm", "--network", "stat", "--ip", "10.251.7.9", "--mac-address", "02:00:00:aa:bb:cc",
                 "--add-host", "db:10.9.9.9", "--dns-search", "example.test", "--dns-option", "ndots:2",
                 "busybox", "sh", "-c", "ip -o link show eth0; ip -4 -o addr show eth0; ip route; cat /etc/hosts "
                 "/etc/resolv.conf").stdout
    assert "02:00:00:aa:bb:cc" in out and "10.251.7.9/24" in out and "default via 10.251.7.254" in out
    assert "10.9.9.9\tdb" in out and "search example.test" in out and "options ndots:2" in out
    assert "nameserver 127.0.0.11" in out
    out = sampan("run", "--rm", "--dns", "10.1.2.3", "busybox", "cat", "/etc/resolv.conf").stdout
    assert out.startswith("nameserver 10.1.2.3")


def test_fifty_concurrent_runs_get_distinct_addresses(sampan, busybox) -> None:
    sampan("network", "create", "--subnet", "10.251.8.0/24", "many")

    def one(i: int) -> str:
        sampan("run", "-d", "--name", f"m{i}", "--network", "many", "busybox", "sleep", "120", timeout=300)
        return _ip(sampan, f"m{i}", "many")

    with ThreadPoolExecutor(50) as pool:
        addresses = list(pool.map(one, range(50)))
    assert len(set(addresses)) == 50, sorted(addresses)
    assert len(json.loads(sampan("network", "inspect", "many").stdout)[0]["Containers"]) == 50
    sampan("rm", "-f", *[f"m{i}" for i in range(50)])
    assert not json.loads(sampan("network", "inspect", "many").stdout)[0]["Containers"]


def test_bad_input_one_line_and_nothing_left(sampan, busybox) -> None:
    before = _kernel(sampan)
    sampan("network", "create", "--subnet", "10.251.9.0/24", "first")
    r = sampan("network", "create", "--subnet", "10.251.9.128/25", "second", check=False)
    assert r.returncode != 0 and r.stderr.strip() == "Error: Pool overlaps with other one on this address space"
    r = sampan("network", "create", "first", check=False)
    assert "network with name first already exists" in r.stderr
    r = sampan("run", "--rm", "-p", "80:80:80:80", "busybox", "true", check=False)
    assert r.returncode == 125 and "invalid port specification" in r.stderr and len(r.stderr.splitlines()) == 1
    r = sampan("run", "--rm", "-p", "99999:80", "busybox", "true", check=False)
    assert r.returncode == 125 and "invalid port" in r.stderr
    # a host port in use: refused, and the container leaves nothing in the kernel
    holder = socket.socket()
    holder.bind(("0.0.0.0", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        r = sampan("run", "--rm", "-p", f"{port}:80", "busybox", "true", check=False)
        assert r.returncode == 125 and "port is already allocated" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        engine = sampan.engine()
        assert not engine.db.conn.execute("SELECT * FROM port_reservations").fetchall()
        assert not engine.db.conn.execute("SELECT * FROM network_attachments WHERE veth != ''").fetchall()
    finally:
        holder.close()
    # an exhausted network
    sampan("network", "create", "--subnet", "10.251.10.0/30", "tiny")
    sampan("run", "-d", "--name", "only", "--network", "tiny", "busybox", "sleep", "30")
    r = sampan("run", "--rm", "--network", "tiny", "busybox", "true", check=False)
    assert r.returncode == 125 and "no available IPv4 addresses" in r.stderr
    # removing a network in use
    r = sampan("network", "rm", "tiny", check=False)
    assert r.returncode != 0 and "has active endpoints" in r.stderr
    sampan("rm", "-f", "only")
    sampan("network", "rm", "tiny", "first")
    r = sampan("network", "rm", "bridge", check=False)
    assert "pre-defined network" in r.stderr
    after = _kernel(sampan)
    assert {n for n in after[0] if n.startswith(("veth", "br-"))} <= {n for n in before[0]
                                                                     if n.startswith(("veth", "br-"))}
    assert not after[1].get("any_addr") and not after[1].get("ip_addr")


def test_teardown_on_stop_rm_and_killed_monitor(sampan, busybox) -> None:
    port = _free_port()
    sampan("run", "-d", "--name", "killed", "-p", f"{port}:80", "busybox", "sleep", "300")
    engine = sampan.engine()
    from sampan.engine import networks

    record_id = sampan("inspect", "-f", "{{.Id}}", "killed").stdout.strip()
    veth = engine.db.conn.execute("SELECT veth FROM network_attachments WHERE container_id = ?",
                                  (record_id,)).fetchone()[0]
    assert veth in _links()
    assert _kernel(sampan)[1].get("any_addr")
    sampan("stop", "-t", "0", "killed")
    for _ in range(50):  # the kernel deletes the pair with the container's namespace, asynchronously
        if veth not in _links():
            break
        time.sleep(0.1)
    assert veth not in _links() and not _kernel(sampan)[1].get("any_addr")
    assert not networks.port_reservations(engine, record_id)
    sampan("start", "killed")
    assert _kernel(sampan)[1].get("any_addr")
    # a killed monitor and init: system check reports the reservation, --repair removes it
    pids = json.loads(sampan("inspect", "killed").stdout)[0]["State"]["Pid"]
    monitor = engine.db.conn.execute("SELECT monitor_pid FROM containers WHERE id = ?", (record_id,)).fetchone()[0]
    os.kill(monitor, 9)
    os.kill(pids, 9)
    time.sleep(0.5)
    check = sampan("system", "check", check=False).stdout
    assert "network reservation" in check, check
    sampan("system", "check", "--repair")
    assert not _kernel(sampan)[1].get("any_addr")
    assert not networks.port_reservations(engine, record_id)
    sampan("rm", "-f", "killed")
    assert "network" not in sampan("system", "check").stdout
    # the monitor alone killed: the container still runs; rm -f stops it and removes all it had
    sampan("run", "-d", "--name", "orphan", "-p", f"{port}:80", "busybox", "sleep", "300")
    orphan_id = sampan("inspect", "-f", "{{.Id}}", "orphan").stdout.strip()
    veth = engine.db.conn.execute("SELECT veth FROM network_attachments WHERE container_id = ?",
                                  (orphan_id,)).fetchone()[0]
    os.kill(engine.db.conn.execute("SELECT monitor_pid FROM containers WHERE id = ?", (orphan_id,)).fetchone()[0], 9)
    time.sleep(0.2)
    sampan("rm", "-f", "orphan")
    assert veth not in _links() and not _kernel(sampan)[1].get("any_addr")
    assert not networks.port_reservations(engine, orphan_id)
    assert "network" not in sampan("system", "check").stdout


def test_network_ls_connect_disconnect_prune(sampan, busybox) -> None:
    sampan("network", "create", "--label", "a=b", "extra")
    names = sampan("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert names == ["bridge", "extra", "host", "none"]
    sampan("create", "--name", "cc", "busybox", "sleep", "30")
    sampan("network", "connect", "extra", "cc")
    sampan("start", "cc")
    networks = json.loads(sampan("inspect", "cc").stdout)[0]["NetworkSettings"]["Networks"]
    assert set(networks) == {"bridge", "extra"} and networks["extra"]["IPAddress"]
    out = sampan("exec", "cc", "ip", "-4", "-o", "addr").stdout
    assert "eth0" in out and "eth1" in out
    sampan("rm", "-f", "cc")
    assert sampan("network", "prune", "-f").stdout.split() == ["Deleted", "Networks:", "extra"]


def test_connect_and_disconnect_a_running_container(sampan, busybox) -> None:
    sampan("network", "create", "front")
    sampan("network", "create", "back")
    sampan("run", "-d", "--name", "db", "--network", "back", "busybox", "sh", "-c", _HTTPD)
    port = _free_port()
    sampan("run", "-d", "--name", "app", "--network", "front", "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c",
           _HTTPD)
    assert b"hello-" in _host_get(port)
    routes_before = sampan("exec", "app", "ip", "route").stdout
    r = sampan("exec", "app", "timeout", "1", "wget", "-qO-", "http://db/", check=False)
    assert r.returncode in _FETCH_FAILED, r
    sampan("network", "connect", "--alias", "application", "back", "app")
    db_address, app_back = _ip(sampan, "db", "back"), _ip(sampan, "app", "back")
    assert app_back and app_back != db_address
    out = sampan("exec", "app", "ip", "-4", "-o", "addr").stdout
    assert any(line.split()[1] == "eth1" and f"inet {app_back}/" in line for line in out.splitlines()), out
    # the first network keeps the default route
    default = [line for line in sampan("exec", "app", "ip", "route").stdout.splitlines() if line.startswith("default")]
    assert default == [line for line in routes_before.splitlines() if line.startswith("default")]
    assert sampan("exec", "app", "wget", "-qO-", "http://db/").stdout.startswith("hello-")
    # the other way: db resolves app's alias on the network it joined
    assert sampan("exec", "db", "wget", "-qO-", "http://application/").stdout.startswith("hello-")
    assert b"hello-" in _host_get(port)  # published ports unaffected
    r = sampan("network", "connect", "back", "app", check=False)
    assert r.returncode != 0 and "already exists in network back" in r.stderr
    veth = sampan.engine().db.conn.execute(
        "SELECT veth FROM network_attachments a JOIN networks n ON n.id = a.network_id WHERE n.name = 'back' AND "
        "a.container_id = ?", (sampan("inspect", "-f", "{{.Id}}", "app").stdout.strip(),)).fetchone()[0]
    assert veth in _links()

    sampan("network", "disconnect", "back", "app")
    assert veth not in _links()
    assert set(json.loads(sampan("inspect", "app").stdout)[0]["NetworkSettings"]["Networks"]) == {"front"}
    assert "eth1" not in sampan("exec", "app", "ip", "-o", "link").stdout
    r = sampan("exec", "app", "timeout", "1", "wget", "-qO-", f"http://{db_address}/", check=False)
    assert r.returncode in _FETCH_FAILED, r
    r = sampan("exec", "db", "nslookup", "application", "127.0.0.11", check=False)
    assert app_back not in r.stdout
    assert b"hello-" in _host_get(port)
    r = sampan("network", "disconnect", "back", "app", check=False)
    assert r.returncode != 0 and "is not connected to network back" in r.stderr
    assert len(json.loads(sampan("network", "inspect", "back").stdout)[0]["Containers"]) == 1
    sampan("rm", "-f", "app", "db")
    sampan("network", "rm", "front", "back")


def test_embedded_dns_forwards_and_comes_with_a_live_connect(sampan, busybox) -> None:
    sampan("network", "create", "late")
    sampan("run", "-d", "--name", "named", "--network", "late", "--network-alias", "svc", "busybox", "sh", "-c",
           _HTTPD)
    with _upstream("127.0.0.77", "elsewhere.test", "10.9.8.7"):  # never contacted: nslookup only
        # on a user network --dns names the embedded server's upstreams (as Docker), asked from the host
        out = sampan("run", "--rm", "--network", "late", "--dns", "127.0.0.77", "busybox", "sh", "-c",
                     "cat /etc/resolv.conf; nslookup elsewhere.test").stdout
        assert out.startswith("nameserver 127.0.0.11\n") and "Address: 10.9.8.7" in out, out
        # started on the default bridge (no embedded DNS there), then connected: it gets one, as Docker
        sampan("run", "-d", "--name", "plain", "--dns", "127.0.0.77", "--dns-search", "example.test", "busybox",
               "sleep", "300")
        assert sampan("exec", "plain", "cat", "/etc/resolv.conf").stdout.startswith("nameserver 127.0.0.77\n")
        sampan("network", "connect", "late", "plain")
        resolv = sampan("exec", "plain", "cat", "/etc/resolv.conf").stdout
        assert resolv.startswith("nameserver 127.0.0.11\n") and "127.0.0.77" not in resolv, resolv
        assert "search example.test" in resolv
        assert sampan("exec", "plain", "wget", "-qO-", "http://svc/").stdout.startswith("hello-")
        assert "Address: 10.9.8.7" in sampan("exec", "plain", "nslookup", "elsewhere.test").stdout
        # a restart keeps it (resolv.conf names 127.0.0.11, and the monitor binds it at start)
        sampan("restart", "-t", "0", "plain")
        assert sampan("exec", "plain", "wget", "-qO-", "http://svc/").stdout.startswith("hello-")
    sampan("rm", "-f", "plain", "named")
    sampan("network", "rm", "late")


def test_run_rm_bridge_overhead(sampan, busybox) -> None:
    """Sanity bound only (the benchmark measures it): a default-network run stays quick."""
    sampan("run", "--rm", "busybox", "true")
    start = time.monotonic()
    for _ in range(3):
        sampan("run", "--rm", "busybox", "true")
    assert (time.monotonic() - start) / 3 < 2.0



def test_table_deleted_from_outside_comes_back_whole_at_the_next_start(sampan, busybox) -> None:
    """A start adds its networks' elements in one transaction without listing the table first; when that fails
    (``nft flush ruleset``, another firewall's restart), the table is made again with every network's elements,
    so masquerade and isolation hold for networks whose containers have not restarted yet."""
    from sampan.engine import networks
    from sampan.network import firewall

    network_id = sampan("network", "create", "kept").stdout.strip()
    engine = sampan.engine()
    firewall.delete_table(networks.table_name(engine))
    assert not _kernel(sampan)[1]
    out = sampan("run", "--rm", "busybox", "ip", "-4", "-o", "addr", "show", "eth0").stdout
    assert "inet " in out
    elements = _kernel(sampan)[1]
    assert set(elements["bridges"]) == {f"br-{network_id[:12]}", networks.default_bridge(engine)}, elements
    assert len(elements["masq"]) == 2, elements
