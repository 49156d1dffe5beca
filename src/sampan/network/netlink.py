"""Links and addresses through netlink (pyroute2): a network's bridge, and a container's veth pair whose inner
end becomes ``eth0`` in the container's network namespace with its address, MAC, MTU and default route.

pyroute2 costs ~100 ms to import, so it is imported on first use (the monitor host imports it once for every
container it starts). Work inside a container's namespace is done by entering it with ``setns`` on this thread
and opening the netlink socket there (a socket belongs to the namespace it was created in), then returning.
A container's start (``attach``) sends pyroute2's messages in batches on plain netlink sockets; the rest, off
the ``run`` path, uses pyroute2's ``IPRoute``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sampan._linux.flags import CLONE_NEWNET
from sampan._linux.process import setns
from sampan.errors import SampanError


class NetlinkError(SampanError):
    pass


class _Refused(NetlinkError):
    """The kernel refused a request; ``code`` is its errno."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# rtnetlink constants (linux/rtnetlink.h, linux/netlink.h)
_NLMSG_ERROR = 2
_RTM_NEWLINK, _RTM_DELLINK, _RTM_NEWADDR, _RTM_NEWROUTE = 16, 17, 20, 24
_RT_TABLE_MAIN, _RTPROT_BOOT, _RTN_UNICAST = 254, 3, 1


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


def _send(requests: list[tuple[int, int, Any]], what: str) -> None:
    """Send rtnetlink requests (pyroute2 messages with their type and flags) in one write on a plain netlink
    socket of this thread's network namespace, and raise ``NetlinkError`` with the first refusal. The kernel
    runs them in order. One socket and one round trip instead of pyroute2's ``IPRoute``, whose asyncio loop
    costs ~0.3 ms a call and ~3 ms for its first use in a freshly forked monitor: what ``run`` pays for a veth."""
    from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST

    data = bytearray()
    for seq, (kind, flags, msg) in enumerate(requests, 1):
        msg["header"]["type"] = kind
        msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | flags
        msg["header"]["sequence_number"] = seq
        msg.encode()
        data += msg.data
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        sock.send(data)
        errors: dict[int, int] = {}
        while len(errors) < len(requests):
            reply = sock.recv(65536)
            offset = 0
            while offset + 16 <= len(reply):  # struct nlmsghdr, then (for NLMSG_ERROR) the error code
                length, kind, _, seq = struct.unpack_from("=IHHI", reply, offset)
                if kind == _NLMSG_ERROR:
                    errors[seq] = struct.unpack_from("=i", reply, offset + 16)[0]
                offset += (length + 3) & ~3
    for seq in sorted(errors):
        if errors[seq]:
            raise _Refused(f"{what}: {os.strerror(-errors[seq])}", -errors[seq])


def _veth_request(iface: Interface, bridge_index: int, ns_fd: int) -> tuple[int, int, Any]:
    """The host end, up on its bridge, and its peer named ``ifname`` made straight in the namespace."""
    from pyroute2.netlink import NLM_F_CREATE, NLM_F_EXCL
    from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP, ifinfmsg

    peer = {"attrs": [("IFLA_IFNAME", iface.ifname), ("IFLA_NET_NS_FD", ns_fd), ("IFLA_ADDRESS", iface.mac),
                      ("IFLA_MTU", iface.mtu)]}
    msg = ifinfmsg()
    msg["flags"] = msg["change"] = IFF_UP
    msg["attrs"] = [("IFLA_IFNAME", iface.host_name), ("IFLA_MTU", iface.mtu), ("IFLA_MASTER", bridge_index),
                    ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth"),
                                                 ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer)]})]})]
    return _RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, msg


def _up_request(index: int) -> tuple[int, int, Any]:
    from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP, ifinfmsg

    msg = ifinfmsg()
    msg["index"] = index
    msg["flags"] = msg["change"] = IFF_UP
    return _RTM_NEWLINK, 0, msg


def _inside_requests(iface: Interface, index: int) -> list[tuple[int, int, Any]]:
    """The interface's address, the interface up, then (the gateway being on its link now) the default route."""
    from pyroute2.netlink import NLM_F_CREATE, NLM_F_EXCL
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
    from pyroute2.netlink.rtnl.rtmsg import rtmsg

    address = ifaddrmsg()
    address["family"] = socket.AF_INET
    address["prefixlen"] = iface.prefixlen
    address["index"] = index
    address["attrs"] = [("IFA_LOCAL", iface.address), ("IFA_ADDRESS", iface.address)]
    out = [(_RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, address), _up_request(index)]
    if iface.default_route:
        route = rtmsg()
        route.update({"family": socket.AF_INET, "dst_len": 0, "table": _RT_TABLE_MAIN, "proto": _RTPROT_BOOT,
                      "scope": 0, "type": _RTN_UNICAST})
        route["attrs"] = [("RTA_TABLE", _RT_TABLE_MAIN), ("RTA_GATEWAY", iface.gateway), ("RTA_OIF", index)]
        out.append((_RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, route))
    return out


def _delete_request(name: str) -> tuple[int, int, Any]:
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

    msg = ifinfmsg()
    msg["attrs"] = [("IFLA_IFNAME", name)]
    return _RTM_DELLINK, 0, msg


def attach(netns_path: str, interfaces: list[Interface], inside: Any = None) -> None:
    """Create each interface's veth pair (the host end up on its bridge, the inner end straight in the
    namespace), then in the namespace: lo and the interfaces up with their addresses, and the default route.
    ``inside`` (a callable) runs in the namespace last, such as binding the DNS responder's sockets to
    127.0.0.11. On failure the host ends made so far are deleted (the inner ends go with them). Two round
    trips in all: one request per pair on the host's socket, one batch inside."""
    made: list[str] = []
    ns_fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        for iface in interfaces:
            try:
                bridge = socket.if_nametoindex(iface.bridge)
            except OSError:
                raise NetlinkError(f"bridge {iface.bridge} does not exist") from None
            what = f"cannot create veth {iface.host_name}"
            try:
                _send([_veth_request(iface, bridge, ns_fd)], what)
            except _Refused as e:
                if e.code != errno.EEXIST:
                    raise
                # the previous run's pair, not yet deleted by the kernel with its namespace (a restart)
                _send([_delete_request(iface.host_name), _veth_request(iface, bridge, ns_fd)], what)
            made.append(iface.host_name)
        with entered(netns_path):
            requests = [_up_request(socket.if_nametoindex("lo"))]
            for iface in interfaces:
                requests += _inside_requests(iface, socket.if_nametoindex(iface.ifname))
            _send(requests, "cannot configure the container's interfaces")
            if inside is not None:
                inside()
    except BaseException:
        for name in made:
            try:
                _send([_delete_request(name)], f"cannot delete {name}")
            except NetlinkError:
                pass
        raise
    finally:
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
