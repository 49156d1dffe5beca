"""Links and addresses through netlink (pyroute2): a network's bridge, and a container's veth pair whose inner
end becomes ``eth0`` in the container's network namespace with its address, MAC, MTU and default route.

pyroute2 costs ~100 ms to import, so it is imported on first use (the monitor host imports it once for every
container it starts). Work inside a container's namespace is done by entering it with ``setns`` on this thread
and opening the netlink socket there (a socket belongs to the namespace it was created in), then returning.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sampan._linux.flags import CLONE_NEWNET
from sampan._linux.process import setns
from sampan.errors import SampanError


class NetlinkError(SampanError):
    pass


def _iproute() -> Any:
    from pyroute2 import IPRoute

    return IPRoute()


def _sysctl(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError:
        pass


def link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def ensure_bridge(name: str, gateway: str, prefixlen: int, mtu: int = 1500) -> None:
    """Create the bridge (idempotent) with the gateway address, up. Per-bridge settings: forwarding of what it
    receives (no global ip_forward needed between containers), route_localnet (published ports answer on
    127.0.0.1: the DNATed packet leaves through the bridge with a loopback source, masqueraded after) and
    nf_call_iptables (bridged traffic between containers passes the ip hooks: hairpin DNAT is undone on the
    reply, so the server sees the client's own address)."""
    ip = _iproute()
    try:
        found = ip.link_lookup(ifname=name)
        if not found:
            try:
                ip.link("add", ifname=name, kind="bridge", br_nf_call_iptables=1, mtu=mtu)
            except Exception as e:  # noqa: BLE001 - pyroute2's NetlinkError (EEXIST: a racing creator)
                if getattr(e, "code", 0) != 17:
                    raise NetlinkError(f"cannot create bridge {name}: {e}") from None
            found = ip.link_lookup(ifname=name)
        index = found[0]
        addresses = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ip.get_addr(index=index, family=2)}
        if (gateway, prefixlen) not in addresses:
            try:
                ip.addr("add", index=index, address=gateway, prefixlen=prefixlen)
            except Exception as e:  # noqa: BLE001
                if getattr(e, "code", 0) != 17:
                    raise NetlinkError(f"cannot address bridge {name}: {e}") from None
        ip.link("set", index=index, state="up")
    finally:
        ip.close()
    for key, value in (("forwarding", "1"), ("route_localnet", "1")):
        _sysctl(f"/proc/sys/net/ipv4/conf/{name}/{key}", value)


def delete_link(name: str) -> bool:
    """Delete a link by name; False when there was none."""
    if not link_exists(name):
        return False
    ip = _iproute()
    try:
        ip.link("del", ifname=name)
        return True
    except Exception:  # noqa: BLE001 - gone meanwhile
        return False
    finally:
        ip.close()


def routes() -> list[tuple[str, int]]:
    """The host's IPv4 routes (main and local tables, default route excluded) as (destination, prefix length):
    what a new network's subnet must not overlap."""
    ip = _iproute()
    try:
        out = []
        for route in ip.get_routes(family=2):
            dst = route.get_attr("RTA_DST")
            if dst and route["dst_len"] > 0 and route.get_attr("RTA_TABLE") != 255:
                out.append((dst, route["dst_len"]))
        return out
    finally:
        ip.close()


@dataclass
class Interface:
    """One container interface to make: the host end ``host_name`` on ``bridge``, ``ifname`` inside."""

    bridge: str
    host_name: str
    ifname: str
    address: str
    prefixlen: int
    gateway: str
    mac: str
    mtu: int = 1500
    default_route: bool = True


@contextlib.contextmanager
def entered(netns_path: str) -> Iterator[None]:
    """This thread in the network namespace at ``netns_path`` for the block, then back."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(target, CLONE_NEWNET)
        try:
            yield
        finally:
            setns(own, CLONE_NEWNET)
    finally:
        os.close(target)
        os.close(own)


def attach(netns_path: str, interfaces: list[Interface], inside: Any = None) -> None:
    """Create each interface's veth pair (the inner end straight in the namespace), then in the namespace: lo
    and the interfaces up with their addresses, and the default route. ``inside`` (a callable) runs in the
    namespace last, such as binding the DNS responder's sockets to 127.0.0.11. On failure the host ends made
    so far are deleted (the inner ends go with them)."""
    made: list[str] = []
    ns_fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    ip = _iproute()
    try:
        for iface in interfaces:
            bridge = ip.link_lookup(ifname=iface.bridge)
            if not bridge:
                raise NetlinkError(f"bridge {iface.bridge} does not exist")
            peer = {"ifname": iface.ifname, "net_ns_fd": ns_fd, "address": iface.mac, "mtu": iface.mtu}
            try:
                ip.link("add", ifname=iface.host_name, kind="veth", mtu=iface.mtu, peer=peer)
            except Exception as e:  # noqa: BLE001
                if getattr(e, "code", 0) != 17:
                    raise NetlinkError(f"cannot create veth {iface.host_name}: {e}") from None
                # the previous run's pair, not yet deleted by the kernel with its namespace (a restart)
                try:
                    ip.link("del", ifname=iface.host_name)
                    ip.link("add", ifname=iface.host_name, kind="veth", mtu=iface.mtu, peer=peer)
                except Exception as e2:  # noqa: BLE001
                    raise NetlinkError(f"cannot create veth {iface.host_name}: {e2}") from None
            made.append(iface.host_name)
            index = ip.link_lookup(ifname=iface.host_name)[0]
            ip.link("set", index=index, master=bridge[0], state="up")
        with entered(netns_path):
            inner = _iproute()
            try:
                lo = inner.link_lookup(ifname="lo")
                if lo:
                    inner.link("set", index=lo[0], state="up")
                for iface in interfaces:
                    index = inner.link_lookup(ifname=iface.ifname)[0]
                    inner.addr("add", index=index, address=iface.address, prefixlen=iface.prefixlen)
                    inner.link("set", index=index, state="up")
                    if iface.default_route:
                        inner.route("add", dst="0.0.0.0/0", gateway=iface.gateway, oif=index)
            finally:
                inner.close()
            if inside is not None:
                inside()
    except BaseException:
        for name in made:
            try:
                ip.link("del", ifname=name)
            except Exception:  # noqa: BLE001, S110
                pass
        raise
    finally:
        ip.close()
        os.close(ns_fd)


def inside_state(netns_path: str) -> tuple[set[str], bool]:
    """(interface names, whether an IPv4 default route exists) in the network namespace at ``netns_path``: what
    a live ``network connect`` needs to name the new interface and to leave the first network's default route."""
    with entered(netns_path):
        ip = _iproute()
        try:
            names = {link.get_attr("IFLA_IFNAME") for link in ip.get_links()}
            default = any(route["dst_len"] == 0 and route.get_attr("RTA_TABLE") == 254
                          for route in ip.get_routes(family=2))
        finally:
            ip.close()
    return names, default


def free_ifname(names: set[str], prefix: str = "eth") -> str:
    index = 0
    while f"{prefix}{index}" in names:
        index += 1
    return f"{prefix}{index}"
