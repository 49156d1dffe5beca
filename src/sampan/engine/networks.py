"""``docker network``: create, ls, inspect, rm, prune, connect, disconnect; and what a container's start and exit
do to its networks (``setup`` in the monitor's start child, ``teardown`` at exit, ``rm`` and ``system check``).

A storage root owns one nftables table and its bridges. The default root's default network is ``bridge`` on
``sampan0`` with the table ``ip sampan``; another root (tests, a second engine) gets names derived from its path
(``sp<hash>``, ``sampan_<hash>``), so two roots on one host never share kernel objects. User networks' bridges
are ``br-<id[:12]>``, as Docker's.

Order for crash safety: reservations (addresses, host ports) are committed to the store before the kernel is
changed, and the kernel is cleaned before they are released; ``leftovers`` finds reservations of containers that
are not active, which ``repair`` tears down.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

from sampan.engine.context import Engine
from sampan.engine.filters import check_filters, labels_match
from sampan.errors import Conflict, InvalidArgument, NotFound, SampanError
from sampan.store.layout import DEFAULT_ROOT
from sampan.store.locks import FileLock

DEFAULT = "bridge"
PREDEFINED = ("bridge", "host", "none")
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"
MTU_OPTION = "com.docker.network.driver.mtu"
DNS_ADDRESS = "127.0.0.11"


@dataclass
class Network:
    id: str
    name: str
    bridge: str
    subnet: str
    gateway: str
    ip_range: str = ""
    internal: bool = False
    mtu: int = 1500
    driver: str = "bridge"
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    created: float = 0.0

    @property
    def net(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def user_defined(self) -> bool:
        return self.name != DEFAULT


def _row(row: Any) -> Network:
    return Network(id=row["id"], name=row["name"], bridge=row["bridge"], subnet=row["subnet"],
                   gateway=row["gateway"], ip_range=row["ip_range"], internal=bool(row["internal"]),
                   mtu=row["mtu"], driver=row["driver"], options=json.loads(row["options"]),
                   labels=json.loads(row["labels"]), created=row["created"])


# ---------------------------------------------------------------------------------------------- naming


def _root_hash(engine: Engine) -> str | None:
    root = str(engine.layout.root)
    return None if root == DEFAULT_ROOT else hashlib.sha256(root.encode()).hexdigest()[:8]


def table_name(engine: Engine) -> str:
    h = _root_hash(engine)
    return "sampan" if h is None else f"sampan_{h}"


def default_bridge(engine: Engine) -> str:
    h = _root_hash(engine)
    return "sampan0" if h is None else f"sp{h}"


def _lock(engine: Engine, what: str) -> FileLock:
    return FileLock(engine.layout.locks, f"network:{what}")


def _host_lock() -> FileLock:
    """Choosing a subnet looks at the whole host's routes: one chooser at a time, across storage roots."""
    from pathlib import Path

    directory = Path("/run/lock") if os.path.isdir("/run/lock") else Path("/tmp")
    return FileLock(directory, "sampan-network-subnets")


def names_dir(engine: Engine) -> Any:
    return engine.layout.runroot / "networks"


# ---------------------------------------------------------------------------------------------- records


def _all(engine: Engine) -> list[Network]:
    return [_row(r) for r in engine.db.conn.execute("SELECT * FROM networks ORDER BY created")]


def lookup(engine: Engine, text: str) -> Network:
    """A network by name, full ID or unique ID prefix (``bridge`` is made on first use)."""
    if text == DEFAULT:
        return ensure_default(engine)
    conn = engine.db.conn
    row = conn.execute("SELECT * FROM networks WHERE name = ? OR id = ?", (text, text)).fetchone()
    if row is None and text and all(c in "0123456789abcdef" for c in text):
        rows = conn.execute("SELECT * FROM networks WHERE id LIKE ?", (text + "%",)).fetchall()
        if len(rows) > 1:
            raise NotFound(f"network {text} is ambiguous ({len(rows)} matches found based on ID prefix)")
        row = rows[0] if rows else None
    if row is None:
        raise NotFound(f"network {text} not found")
    return _row(row)


def _taken_subnets(engine: Engine, exclude_bridge: str = "") -> list[ipaddress.IPv4Network]:
    from sampan.network import netlink

    out = [ipaddress.IPv4Network(f"{d}/{n}", strict=False) for d, n in netlink.routes()]
    out += [n.net for n in _all(engine) if n.bridge != exclude_bridge]
    return out


def ensure_default(engine: Engine) -> Network:
    row = engine.db.conn.execute("SELECT * FROM networks WHERE name = ?", (DEFAULT,)).fetchone()
    if row is not None:
        return _row(row)
    try:
        return create(engine, DEFAULT, options={BRIDGE_NAME_OPTION: default_bridge(engine)}, _default=True)
    except Conflict:
        row = engine.db.conn.execute("SELECT * FROM networks WHERE name = ?", (DEFAULT,)).fetchone()
        if row is None:
            raise
        return _row(row)


def create(engine: Engine, name: str, *, driver: str = "bridge", subnet: str = "", gateway: str = "",
           ip_range: str = "", internal: bool = False, options: dict[str, str] | None = None,
           labels: dict[str, str] | None = None, _default: bool = False) -> Network:
    """``network create``: the record and the kernel's bridge; raises with Docker's messages."""
    from sampan.engine.containers.model import new_id
    from sampan.network import ipam

    options = dict(options or {})
    if driver != "bridge":
        raise InvalidArgument(f"plugin \"{driver}\" not found (sampan has the bridge driver only)")
    if not _default and name in PREDEFINED:
        raise Conflict(f"network with name {name} already exists" if name == DEFAULT else
                       f"operation is not permitted on predefined {name} network ")
    if not name or not all(c.isalnum() or c in "_.-" for c in name):
        raise InvalidArgument(f"invalid network name {name!r}")
    mtu = 1500
    if MTU_OPTION in options:
        try:
            mtu = int(options[MTU_OPTION])
        except ValueError:
            raise InvalidArgument(f"invalid MTU {options[MTU_OPTION]!r}") from None
        if not 68 <= mtu <= 65535:
            raise InvalidArgument(f"invalid MTU {mtu}: must be between 68 and 65535")
    network_id = new_id()
    bridge = options.get(BRIDGE_NAME_OPTION) or f"br-{network_id[:12]}"
    if len(bridge) > 15 or "/" in bridge or not bridge:
        raise InvalidArgument(f"invalid bridge name {bridge!r}: at most 15 characters")
    if ip_range and not subnet:
        raise InvalidArgument("ip-range and gateway need a subnet")
    if gateway and not subnet:
        raise InvalidArgument("gateway needs a subnet")
    with _host_lock():
        if engine.db.conn.execute("SELECT 1 FROM networks WHERE name = ?", (name,)).fetchone():
            raise Conflict(f"network with name {name} already exists")
        if engine.db.conn.execute("SELECT 1 FROM networks WHERE bridge = ?", (bridge,)).fetchone():
            raise Conflict(f"bridge {bridge} is used by another network")
        from sampan.network import netlink

        if netlink.link_exists(bridge) and not _default:
            raise Conflict(f"a link named {bridge} already exists on the host")
        taken = _taken_subnets(engine, exclude_bridge=bridge)
        if subnet:
            net = ipam.parse_subnet(subnet)
            ipam.check_free(net, taken)
        else:
            net = ipam.choose_subnet(taken)
        if gateway:
            try:
                if ipaddress.IPv4Address(gateway) not in net:
                    raise InvalidArgument(f"invalid gateway {gateway}: not in subnet {net}")
            except ipaddress.AddressValueError:
                raise InvalidArgument(f"invalid gateway {gateway!r}") from None
        else:
            gateway = str(next(net.hosts()))
        if ip_range:
            try:
                rng = ipaddress.IPv4Network(ip_range, strict=False)
            except ValueError:
                raise InvalidArgument(f"invalid ip-range {ip_range!r}") from None
            if not rng.subnet_of(net):
                raise InvalidArgument(f"invalid ip-range {ip_range}: not in subnet {net}")
            ip_range = str(rng)
        network = Network(id=network_id, name=name, bridge=bridge, subnet=str(net), gateway=gateway,
                          ip_range=ip_range, internal=internal, mtu=mtu, options=options, labels=dict(labels or {}),
                          created=time.time())
        with engine.db.transaction() as tx:
            tx.execute("INSERT INTO networks (id, name, driver, bridge, subnet, gateway, ip_range, internal, mtu, "
                       "options, labels, created) VALUES (?, ?, 'bridge', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (network.id, name, bridge, network.subnet, gateway, ip_range, int(internal), mtu,
                        json.dumps(options), json.dumps(network.labels), network.created))
        try:
            _ensure_kernel(engine, network, made=True)
        except BaseException:
            _remove_kernel(engine, network)
            with engine.db.transaction() as tx:
                tx.execute("DELETE FROM networks WHERE id = ?", (network.id,))
            raise
    return network


def _ensure_kernel(engine: Engine, network: Network, made: bool = False) -> None:
    """The bridge, the table, the network's set elements and its accept rules in iptables' filter table
    (idempotent; ``made``: the network is new, so every backend is looked at)."""
    made = _ensure_bridge(engine, network) or made
    _add_elements(engine, [network])
    _accept_forwarding(engine, [network], made)


def _ensure_bridge(engine: Engine, network: Network) -> bool:
    """The bridge, made under the lock when it is missing (a stat of /sys when it is there); True when made."""
    from sampan.network import netlink

    if netlink.link_exists(network.bridge):
        return False
    with _lock(engine, "kernel"):
        netlink.ensure_bridge(network.bridge, network.gateway, network.net.prefixlen, network.mtu)
    return True


def _accept_forwarding(engine: Engine, joined: list[Network], thorough: bool) -> None:
    """Accept rules for the root's bridges in iptables' filter table, where one can drop forwarded traffic
    (``network.iptables``). A start asks libnftables only whether nft's table lacks its bridges' rules;
    ``thorough`` (a network or its bridge just made: a new network, a reboot) looks at the legacy backend too.
    When rules are missing, as after a firewall's restart flushed them, every network's are added again, under
    the lock (two starts never add the same rules twice). A firewall that refuses them (a table iptables cannot
    read) fails neither the start nor the network's creation: ``system check`` reports the network,
    ``--repair`` iptables' message."""
    from sampan.network import iptables

    if not thorough and not iptables.missing([n.bridge for n in joined]):
        return
    with _lock(engine, "kernel"):
        every = sorted({n.bridge for n in [*_all(engine), *joined]})
        try:
            iptables.ensure(table_name(engine), every, legacy=thorough)
        except SampanError:
            pass


def _add_elements(engine: Engine, joined: list[Network], ports: list[tuple[str, str, int, str, int]] | None = None
                  ) -> None:
    """One nftables transaction: the networks' set elements (adding present ones is a no-op) and published
    ports. The table is not looked for first (a listing costs as much as the change): only when the change
    fails is the table made, under the lock, and the change made again with every network's elements (a
    table deleted from outside, such as by ``nft flush ruleset``, comes back whole)."""
    from sampan._linux.nftables import NftError
    from sampan.network import firewall

    table = table_name(engine)
    port_groups = [firewall.port_elements(ports)] if ports else []
    try:
        firewall.add(table, *[firewall.network_elements(n.bridge, n.subnet, n.internal) for n in joined],
                     *port_groups)
    except NftError:
        with _lock(engine, "kernel"):
            firewall.ensure_table(table)
        every = {n.id: n for n in [*_all(engine), *joined]}.values()
        firewall.add(table, *[firewall.network_elements(n.bridge, n.subnet, n.internal) for n in every],
                     *port_groups)


def _remove_kernel(engine: Engine, network: Network) -> None:
    from sampan.network import firewall, iptables, netlink

    table = table_name(engine)
    firewall.remove(table, firewall.network_elements(network.bridge, network.subnet, network.internal))
    iptables.remove(table, [network.bridge])
    netlink.delete_link(network.bridge)


def _attached(engine: Engine, network_id: str) -> list[Any]:
    return engine.db.conn.execute(
        "SELECT a.*, c.name AS container_name FROM network_attachments a JOIN containers c ON c.id = a.container_id "
        "WHERE a.network_id = ? ORDER BY c.name", (network_id,)).fetchall()


def inspect(engine: Engine, text: str) -> dict[str, Any]:
    """Docker's network JSON."""
    from sampan.engine.containers.query import docker_time

    if text in ("host", "none"):
        return _predefined(engine, text)
    network = lookup(engine, text)
    containers = {}
    for row in _attached(engine, network.id):
        if row["address"]:
            containers[row["container_id"]] = {
                "Name": row["container_name"], "EndpointID": row["endpoint_id"], "MacAddress": row["mac"],
                "IPv4Address": f"{row['address']}/{network.net.prefixlen}", "IPv6Address": ""}
    config: dict[str, str] = {"Subnet": network.subnet, "Gateway": network.gateway}
    if network.ip_range:
        config["IPRange"] = network.ip_range
    return {"Name": network.name, "Id": network.id, "Created": docker_time(network.created), "Scope": "local",
            "Driver": network.driver, "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None if not network.user_defined else {}, "Config": [config]},
            "Internal": network.internal, "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""},
            "ConfigOnly": False, "Containers": containers, "Options": network.options, "Labels": network.labels}


def _predefined(engine: Engine, name: str) -> dict[str, Any]:
    from sampan.engine.containers.query import docker_time

    pid = hashlib.sha256(f"{engine.layout.root}:{name}".encode()).hexdigest()
    return {"Name": name, "Id": pid, "Created": docker_time(0), "Scope": "local",
            "Driver": "host" if name == "host" else "null", "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None, "Config": None}, "Internal": False, "Attachable": False,
            "Ingress": False, "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": {}, "Options": {},
            "Labels": {}}


def ls(engine: Engine, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    """Every network as ``inspect`` shows it (the default one included), filtered as ``network ls``."""
    filters = dict(filters or {})
    check_filters(filters, frozenset({"name", "id", "driver", "label", "type", "dangling", "scope"}))
    ensure_default(engine)
    out = [inspect(engine, n.id) for n in _all(engine)] + [_predefined(engine, n) for n in ("host", "none")]
    result = []
    for item in out:
        if filters.get("name") and not any(v in item["Name"] for v in filters["name"]):
            continue
        if filters.get("id") and not any(item["Id"].startswith(v) for v in filters["id"]):
            continue
        if filters.get("driver") and item["Driver"] not in filters["driver"]:
            continue
        if not labels_match(item["Labels"], filters.get("label", [])):
            continue
        if filters.get("type"):
            kind = "builtin" if item["Name"] in PREDEFINED else "custom"
            if kind not in filters["type"]:
                continue
        result.append(item)
    return sorted(result, key=lambda i: i["Name"])


def remove(engine: Engine, text: str) -> str:
    """``network rm``: refused for predefined networks and networks with running containers."""
    if text in PREDEFINED:
        raise Conflict(f"{text} is a pre-defined network and cannot be removed")
    network = lookup(engine, text)
    with _lock(engine, network.id):
        with engine.db.transaction() as tx:
            active = tx.execute("SELECT COUNT(*) FROM network_attachments WHERE network_id = ? AND address IS NOT NULL",
                                (network.id,)).fetchone()[0]
            if active:
                raise Conflict(f"error while removing network: network {network.name} id {network.id} has active "
                               "endpoints")
            tx.execute("DELETE FROM network_attachments WHERE network_id = ?", (network.id,))
            tx.execute("DELETE FROM networks WHERE id = ?", (network.id,))
        _remove_kernel(engine, network)
        try:
            os.unlink(names_dir(engine) / f"{network.id}.names")
        except FileNotFoundError:
            pass
    return network.name


def prune(engine: Engine, filters: dict[str, list[str]] | None = None) -> list[str]:
    """``network prune``: user networks no container is attached to."""
    filters = dict(filters or {})
    check_filters(filters, frozenset({"label", "label!", "until"}))
    removed = []
    for network in _all(engine):
        if not network.user_defined or _attached(engine, network.id):
            continue
        if not labels_match(network.labels, filters.get("label", [])) or \
                any(labels_match(network.labels, [item]) for item in filters.get("label!", [])):
            continue
        try:
            removed.append(remove(engine, network.id))
        except SampanError:
            continue
    return removed


def purge_kernel(engine: Engine) -> None:
    """Delete every kernel object of this root: its bridges, its table and its rules in iptables' filter table
    (tests' teardown; ``system reset``)."""
    from sampan.network import firewall, iptables, netlink

    names = {default_bridge(engine)} | {n.bridge for n in _all(engine)}
    for name in names:
        netlink.delete_link(name)
    firewall.delete_table(table_name(engine))
    iptables.remove(table_name(engine))


def forwarding_problems(engine: Engine, repair: bool = False) -> list[str]:
    """``system check``'s look at iptables' filter table: sampan's rules of bridges no network of this root has
    (a removal that died halfway), and networks whose forwarded traffic a chain there can drop for want of
    sampan's rules. With ``repair``, the leftovers are deleted and the missing rules added; returns what was
    found, or done."""
    from sampan.network import iptables

    table = table_name(engine)
    networks = {n.bridge: n for n in _all(engine)}
    stale = [rule for rule in iptables.listed(table) if rule.bridge not in networks]
    lacking = iptables.lacking(sorted(networks))
    if not repair:
        return [f"leftover {rule}" for rule in stale] + [
            f"network {networks[bridge].name}: no rule accepting its bridge {bridge} in iptables-{backend}'s "
            f"{chain}, which can drop its forwarded traffic" for backend, chain, bridge in lacking]
    iptables.remove(table, [rule.bridge for rule in stale])
    added = iptables.ensure(table, sorted(networks)) if lacking else []
    return [f"removed {rule}" for rule in stale] + [f"added iptables rule: {line}" for line in added]


# ---------------------------------------------------------------------------------------------- containers


@dataclass
class Endpoint:
    """How a container joins a network: ``network`` by name, aliases, and --ip / --mac-address."""

    network: str
    aliases: list[str] = field(default_factory=list)
    ip: str = ""
    mac: str = ""


def check_endpoint(engine: Engine, endpoint: Endpoint) -> Network:
    network = lookup(engine, endpoint.network)
    if endpoint.ip:
        try:
            address = ipaddress.IPv4Address(endpoint.ip)
        except ipaddress.AddressValueError:
            raise InvalidArgument(f"invalid IPv4 address: {endpoint.ip}") from None
        if not network.user_defined:
            raise InvalidArgument("user specified IP address is supported on user defined networks only")
        if address not in network.net:
            raise InvalidArgument(f"no configured subnet contains IP address {endpoint.ip}")
    if endpoint.mac:
        import re

        if not re.fullmatch(r"([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}", endpoint.mac):
            raise InvalidArgument(f"{endpoint.mac} is not a valid mac address")
    if endpoint.aliases and not network.user_defined:
        raise InvalidArgument("network-scoped alias is supported only for containers in user defined networks")
    return network


def add_attachment(tx: Any, container_id: str, network: Network, endpoint: Endpoint) -> None:
    position = tx.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM network_attachments WHERE container_id = ?",
                          (container_id,)).fetchone()[0]
    tx.execute("INSERT INTO network_attachments (container_id, network_id, position, aliases, static_ip, "
               "static_mac) VALUES (?, ?, ?, ?, ?, ?)",
               (container_id, network.id, position, json.dumps(endpoint.aliases), endpoint.ip,
                endpoint.mac.lower()))


def attachments(engine: Engine, container_id: str) -> list[tuple[Network, Any]]:
    rows = engine.db.conn.execute(
        "SELECT a.*, n.name AS network_name FROM network_attachments a JOIN networks n ON n.id = a.network_id "
        "WHERE a.container_id = ? ORDER BY a.position", (container_id,)).fetchall()
    return [(lookup(engine, r["network_id"]), r) for r in rows]


def port_reservations(engine: Engine, container_id: str) -> list[dict[str, Any]]:
    rows = engine.db.conn.execute("SELECT * FROM port_reservations WHERE container_id = ? "
                                  "ORDER BY container_port, proto, host_ip", (container_id,)).fetchall()
    return [dict(r) for r in rows]


def _wanted_ports(record: Any) -> list[tuple[str, str, str, int]]:
    """(proto, host ip, host port text, container port) from PortBindings and, with -P, ExposedPorts."""
    from sampan.network.ports import split_key

    bindings = dict(record.host_config.get("PortBindings") or {})
    if record.host_config.get("PublishAllPorts"):
        for key in record.config.get("ExposedPorts") or {}:
            bindings.setdefault(key if "/" in key else f"{key}/tcp", [{"HostIp": "", "HostPort": ""}])
    out = []
    for key, items in bindings.items():
        port, proto = split_key(key)
        for item in items or [{"HostIp": "", "HostPort": ""}]:
            out.append((proto, item.get("HostIp") or "", item.get("HostPort") or "", port))
    return out


def _port_taken(tx: Any, proto: str, host_ip: str, port: int) -> bool:
    from sampan.network.ports import bindable

    clash = tx.execute("SELECT 1 FROM port_reservations WHERE proto = ? AND host_port = ? AND "
                       "(host_ip = ? OR host_ip = '' OR ? = '')", (proto, port, host_ip, host_ip)).fetchone()
    return clash is not None or not bindable(proto, host_ip, port)


def _reserve_ports(tx: Any, container_id: str, record: Any, address: str) -> list[tuple[str, str, int, str, int]]:
    from sampan.network.ports import EPHEMERAL

    out = []
    for proto, host_ip, host_port, port in _wanted_ports(record):
        if host_port:
            first, _, last = host_port.partition("-")
            candidates = list(range(int(first), int(last or first) + 1))
        else:
            start = random.randint(*EPHEMERAL)
            candidates = list(range(start, EPHEMERAL[1] + 1)) + list(range(EPHEMERAL[0], start))
        chosen = next((c for c in candidates if not _port_taken(tx, proto, host_ip, c)), None)
        if chosen is None:
            shown = f"{host_ip or '0.0.0.0'}:{host_port}" if host_port else f"{host_ip or '0.0.0.0'}"
            raise Conflict(f"driver failed programming external connectivity on endpoint: Bind for {shown} "
                           "failed: port is already allocated")
        tx.execute("INSERT INTO port_reservations (container_id, proto, host_ip, host_port, address, "
                   "container_port) VALUES (?, ?, ?, ?, ?, ?)", (container_id, proto, host_ip, chosen, address, port))
        out.append((proto, host_ip, chosen, address, port))
    return out


def _reserve_address(tx: Any, container_id: str, network: Network, row: Any) -> tuple[str, str, str]:
    """In the caller's transaction: the attachment's address (its --ip, else the lowest free one), MAC and host
    veth name, recorded on its row. Raises Conflict when the address is taken or the pool is exhausted."""
    from sampan.network import ipam

    if row["static_ip"]:
        busy = tx.execute("SELECT container_id FROM network_attachments WHERE network_id = ? AND address = ?",
                          (network.id, row["static_ip"])).fetchone()
        if busy is not None or row["static_ip"] == network.gateway:
            raise Conflict(f"Address already in use: {row['static_ip']}")
        address = row["static_ip"]
    else:
        used = [r[0] for r in tx.execute("SELECT address FROM network_attachments WHERE network_id = ? "
                                         "AND address IS NOT NULL", (network.id,))]
        try:
            address = ipam.allocate(network.net, ipaddress.IPv4Network(network.ip_range)
                                    if network.ip_range else None, network.gateway, used)
        except Conflict:
            raise Conflict(f"no available IPv4 addresses on this network's address pools: "
                           f"{network.name} ({network.id})") from None
    mac = row["static_mac"] or ipam.mac_for(address)
    veth = "veth" + hashlib.sha256(f"{container_id}:{network.id}".encode()).hexdigest()[:8]
    tx.execute("UPDATE network_attachments SET address = ?, mac = ?, endpoint_id = ?, veth = ? "
               "WHERE container_id = ? AND network_id = ?",
               (address, mac, os.urandom(32).hex(), veth, container_id, network.id))
    return address, mac, veth


def setup(engine: Engine, record: Any, pid: int, inside: Any = None) -> bool:
    """Connect a created (not yet started) container to its networks: addresses and host ports reserved in
    the store, then veths, routes and DNAT in the kernel. ``inside`` runs in the container's namespace (the DNS
    responder's sockets). Returns False for a container without networks. On failure nothing is left. The
    kernel's share is two netlink round trips (``netlink.attach``) and one nftables transaction."""
    from sampan.network import netlink

    joined = attachments(engine, record.id)
    if not joined:
        return False
    made = False
    for network, _ in joined:
        made = _ensure_bridge(engine, network) or made
    try:
        interfaces, ports = [], []
        with engine.db.transaction() as tx:
            for index, (network, row) in enumerate(joined):
                address, mac, veth = _reserve_address(tx, record.id, network, row)
                interfaces.append(netlink.Interface(network.bridge, veth, f"eth{index}", address,
                                                    network.net.prefixlen, network.gateway, mac, network.mtu,
                                                    default_route=index == 0 and not network.internal))
                if index == 0:
                    ports = _reserve_ports(tx, record.id, record, address)
        netlink.attach(f"/proc/{pid}/ns/net", interfaces, inside)
        _add_elements(engine, [network for network, _ in joined], ports)
        _accept_forwarding(engine, [network for network, _ in joined], made)
        user = [network for network, _ in joined if network.user_defined]
        for network in user:
            write_names(engine, network.id)
        if user:
            write_dns_index(engine, record.id)
    except BaseException:
        teardown(engine, record.id)
        raise
    return True


def teardown(engine: Engine, container_id: str, links: bool = True) -> list[str]:
    """Undo ``setup`` (idempotent): DNAT elements, veths, then the reservations. Returns what was removed.
    ``links=False`` (the monitor, once the container's init is gone) leaves the veths to the kernel, which
    deletes a pair when its namespace goes: deleting one waits for an RCU grace period (~15 ms), a cost every
    ``run --rm`` would pay. ``rm`` and ``system check --repair`` delete any that are left."""
    from sampan.network import firewall, netlink

    done = []
    conn = engine.db.conn
    ports = port_reservations(engine, container_id)
    if ports:
        firewall.remove(table_name(engine), firewall.port_elements(
            [(p["proto"], p["host_ip"], p["host_port"], p["address"], p["container_port"]) for p in ports]))
        done.append(f"{len(ports)} published port(s)")
    rows = conn.execute("SELECT network_id, veth, address FROM network_attachments WHERE container_id = ? AND "
                        "(address IS NOT NULL OR veth != '')", (container_id,)).fetchall()
    for row in rows:
        if links and row["veth"] and netlink.delete_link(row["veth"]):
            done.append(f"veth {row['veth']}")
        if row["address"]:
            done.append(f"address {row['address']}")
    if rows or ports:
        with engine.db.transaction() as tx:
            tx.execute("DELETE FROM port_reservations WHERE container_id = ?", (container_id,))
            tx.execute("UPDATE network_attachments SET address = NULL, veth = '', endpoint_id = '' WHERE "
                       "container_id = ?", (container_id,))
        for row in rows:
            if row["network_id"] != ensure_default(engine).id:
                write_names(engine, row["network_id"])
    try:
        os.unlink(dns_index(engine, container_id))
    except FileNotFoundError:
        pass
    return done


def write_names(engine: Engine, network_id: str) -> None:
    """The names the DNS responder answers for a network, one ``NAME ADDRESS`` a line (the monitor reads
    this file, never the database): container names, aliases and short IDs of running members."""
    directory = names_dir(engine)
    directory.mkdir(mode=0o755, exist_ok=True)
    with _lock(engine, f"names:{network_id}"):
        rows = engine.db.conn.execute(
            "SELECT a.container_id, a.aliases, a.address, c.name FROM network_attachments a JOIN containers c "
            "ON c.id = a.container_id WHERE a.network_id = ? AND a.address IS NOT NULL", (network_id,)).fetchall()
        lines = []
        for row in rows:
            for name in [row["name"], row["container_id"][:12], *json.loads(row["aliases"])]:
                lines.append(f"{name.lower()} {row['address']}\n")
        path = directory / f"{network_id}.names"
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text("".join(lines))
        os.rename(tmp, path)


def dns_index(engine: Engine, container_id: str) -> Any:
    """The file listing the names files a container's DNS responder answers from (one path a line); the
    responder re-reads it when it changes, so a live ``network connect`` makes the new network's names resolve."""
    return names_dir(engine) / f"{container_id}.dns"


def write_dns_index(engine: Engine, container_id: str) -> None:
    rows = engine.db.conn.execute(
        "SELECT a.network_id FROM network_attachments a JOIN networks n ON n.id = a.network_id WHERE "
        "a.container_id = ? AND a.address IS NOT NULL AND n.name != ? ORDER BY a.position",
        (container_id, DEFAULT)).fetchall()
    directory = names_dir(engine)
    directory.mkdir(mode=0o755, exist_ok=True)
    path = dns_index(engine, container_id)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text("".join(f"{directory / (row[0] + '.names')}\n" for row in rows))
    os.rename(tmp, path)


def _live_pid(engine: Engine, record: Any) -> int | None:
    """The init pid of a container whose network namespace can be changed now (running or paused), None for
    one that is not active; Conflict while it restarts (no namespace to join)."""
    from sampan.engine.containers import model

    record = model.current(engine, record)
    if record.status not in model.ACTIVE:
        return None
    if record.status == "restarting" or not model.alive(record.pid, record.pid_start):
        raise Conflict(f"Container {record.id} is restarting, wait until the container is running")
    return int(record.pid)


def connect(engine: Engine, network_name: str, container: str, endpoint: Endpoint | None = None) -> None:
    """``network connect``: a stopped container joins at its next start; a running one now (a veth into its
    namespace, an address, the DNS names; the default route stays the first network's unless it has none)."""
    from sampan.engine.containers import model

    record = model.lookup(engine, container)
    endpoint = endpoint or Endpoint(network_name)
    endpoint.network = network_name
    if network_name in ("host", "none"):
        raise Conflict("container cannot be disconnected from host network or connected to host network"
                       if network_name == "host" else
                       "container cannot be connected to multiple networks with one of the networks in private "
                       "(none) mode")
    network = check_endpoint(engine, endpoint)
    mode = record.host_config.get("NetworkMode", "")
    if mode in ("host", "none") or mode.startswith("container:"):
        raise Conflict("container cannot be disconnected from host network or connected to host network"
                       if mode == "host" else "container sharing network namespace with another container or "
                       "host cannot be connected to any other network")
    with _lock(engine, f"container:{record.id}"):
        pid = _live_pid(engine, record)
        with engine.db.transaction() as tx:
            if tx.execute("SELECT 1 FROM network_attachments WHERE container_id = ? AND network_id = ?",
                          (record.id, network.id)).fetchone():
                raise Conflict(f"endpoint with name {record.name} already exists in network {network.name}")
            add_attachment(tx, record.id, network, endpoint)
        if pid is not None:
            try:
                _connect_live(engine, record, pid, network)
            except BaseException:
                _disconnect_live(engine, record.id, network)
                raise


def _connect_live(engine: Engine, record: Any, pid: int, network: Network) -> None:
    from sampan.engine.containers import model
    from sampan.network import netlink

    _ensure_kernel(engine, network)
    netns = f"/proc/{pid}/ns/net"
    names, has_default = netlink.inside_state(netns)
    with engine.db.transaction() as tx:
        row = tx.execute("SELECT * FROM network_attachments WHERE container_id = ? AND network_id = ?",
                         (record.id, network.id)).fetchone()
        address, mac, veth = _reserve_address(tx, record.id, network, row)
    netlink.attach(netns, [netlink.Interface(network.bridge, veth, netlink.free_ifname(names), address,
                                             network.net.prefixlen, network.gateway, mac, network.mtu,
                                             default_route=not has_default and not network.internal)])
    if not model.alive(record.pid, record.pid_start):  # it exited meanwhile: its monitor's teardown may be done
        raise Conflict(f"container {record.id[:12]} is not running")
    if network.user_defined:
        write_names(engine, network.id)
    write_dns_index(engine, record.id)
    if network.user_defined:
        _embedded_dns(engine, record.id)


def _embedded_dns(engine: Engine, container_id: str) -> None:
    """As Docker, a running container that joins its first user network (it started on the default bridge,
    which has no embedded DNS) gets the embedded resolver: its monitor starts a responder in the container's
    namespace that forwards to the name servers the container had, then its resolv.conf names 127.0.0.11
    (rewritten in place: the file is bind-mounted). A no-op when it has one."""
    from sampan.engine.containers.model import places
    from sampan.monitor import protocol
    from sampan.monitor.client import connect, request
    from sampan.network import dns

    where = places(engine, container_id)
    servers = dns.upstreams(str(where.resolv_conf))
    if DNS_ADDRESS in servers:
        return
    try:
        with connect(str(where.attach_socket)) as sock:
            sock.settimeout(10)
            request(sock, protocol.DNS, json.dumps({"servers": servers}).encode())
    except OSError as e:
        raise SampanError(f"cannot start the embedded DNS server of container {container_id[:12]}: {e}") from None
    kept = [line for line in where.resolv_conf.read_text().splitlines(keepends=True)
            if not line.strip().startswith("nameserver")]
    with open(where.resolv_conf, "r+") as f:
        f.write(f"nameserver {DNS_ADDRESS}\n" + "".join(kept))
        f.truncate()


def _disconnect_live(engine: Engine, container_id: str, network: Network) -> None:
    """Remove an attachment, and of a running container its published ports that forward to this network's
    address, the veth (its inner end goes with it) and its names."""
    from sampan.network import firewall, netlink

    row = engine.db.conn.execute("SELECT * FROM network_attachments WHERE container_id = ? AND network_id = ?",
                                 (container_id, network.id)).fetchone()
    if row is None:
        return
    ports = [p for p in port_reservations(engine, container_id) if row["address"] and p["address"] == row["address"]]
    if ports:
        firewall.remove(table_name(engine), firewall.port_elements(
            [(p["proto"], p["host_ip"], p["host_port"], p["address"], p["container_port"]) for p in ports]))
    if row["veth"]:
        netlink.delete_link(row["veth"])
    with engine.db.transaction() as tx:
        if ports:
            tx.execute("DELETE FROM port_reservations WHERE container_id = ? AND address = ?",
                       (container_id, row["address"]))
        tx.execute("DELETE FROM network_attachments WHERE container_id = ? AND network_id = ?",
                   (container_id, network.id))
    if network.user_defined:
        write_names(engine, network.id)
    if os.path.exists(dns_index(engine, container_id)):
        write_dns_index(engine, container_id)


def disconnect(engine: Engine, network_name: str, container: str, force: bool = False) -> None:
    """``network disconnect``: a stopped container's configuration, or a running container's interface now."""
    from sampan.engine.containers import model

    record = model.lookup(engine, container)
    if network_name in ("host", "none"):
        raise Conflict("container cannot be disconnected from host network or connected to host network"
                       if network_name == "host" else
                       f"container {record.id[:12]} is not connected to network {network_name}")
    network = lookup(engine, network_name)
    with _lock(engine, f"container:{record.id}"):
        if not force:
            _live_pid(engine, record)  # refused while it restarts
        if not engine.db.conn.execute("SELECT 1 FROM network_attachments WHERE container_id = ? AND network_id = ?",
                                      (record.id, network.id)).fetchone():
            raise Conflict(f"container {record.id[:12]} is not connected to network {network.name}")
        _disconnect_live(engine, record.id, network)


# ---------------------------------------------------------------------------------------------- reports


def container_settings(engine: Engine, record: Any) -> dict[str, Any]:
    """inspect's NetworkSettings for a container."""
    from sampan.network.ports import docker_ports

    ports = docker_ports(port_reservations(engine, record.id))
    running = any(r["address"] for _, r in attachments(engine, record.id))
    if not running:
        ports = {}
    for key in record.config.get("ExposedPorts") or {}:
        ports.setdefault(key, None)
    for key in record.host_config.get("PortBindings") or {}:
        ports.setdefault(key, None)
    networks = {}
    for network, row in attachments(engine, record.id):
        networks[network.name] = {
            "IPAMConfig": {"IPv4Address": row["static_ip"]} if row["static_ip"] else None, "Links": None,
            "Aliases": json.loads(row["aliases"]) or None, "MacAddress": row["mac"] if row["address"] else "",
            "NetworkID": network.id, "EndpointID": row["endpoint_id"],
            "Gateway": network.gateway if row["address"] else "", "IPAddress": row["address"] or "",
            "IPPrefixLen": network.net.prefixlen if row["address"] else 0, "IPv6Gateway": "",
            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DriverOpts": None, "DNSNames": None}
    mode = record.host_config.get("NetworkMode", "")
    if not networks and mode in ("host", "none"):
        networks[mode] = {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "NetworkID":
                          _predefined(engine, mode)["Id"], "EndpointID": "", "Gateway": "", "IPAddress": "",
                          "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                          "DriverOpts": None, "DNSNames": None}
    default = networks.get(DEFAULT) or {}
    return {"Bridge": "", "SandboxID": "", "HairpinMode": False, "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0, "Ports": ports, "SandboxKey": f"/proc/{record.pid}/ns/net"
            if running else "", "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
            "EndpointID": default.get("EndpointID", ""), "Gateway": default.get("Gateway", ""),
            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": default.get("IPAddress", ""),
            "IPPrefixLen": default.get("IPPrefixLen", 0), "IPv6Gateway": "", "MacAddress": default.get("MacAddress", ""),
            "Networks": networks}


def ports_text(engine: Engine, container_id: str) -> str:
    """ps's PORTS column: ``0.0.0.0:8080->80/tcp, 127.0.0.1:5353->53/udp`` (ranges are not folded)."""
    items = []
    for p in port_reservations(engine, container_id):
        items.append(f"{p['host_ip'] or '0.0.0.0'}:{p['host_port']}->{p['container_port']}/{p['proto']}")
    return ", ".join(items)


def leftovers(engine: Engine, active: set[str]) -> list[tuple[str, str]]:
    """(container ID, description) of reservations held by containers that are not active."""
    out = []
    rows = engine.db.conn.execute(
        "SELECT container_id, address, veth FROM network_attachments WHERE address IS NOT NULL OR veth != '' "
        "UNION ALL SELECT container_id, host_port, '' FROM port_reservations").fetchall()
    for row in rows:
        if row[0] not in active:
            out.append((row[0], f"container {row[0][:12]}: network reservation {row[1]} left"))
    return sorted(set(out))
