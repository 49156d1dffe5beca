"""IPv4 address management: which subnet a new network gets, and which address a container gets in it.

Pools are Docker's defaults (172.17.0.0/16 … 172.31.0.0/16, then 192.168.0.0/16 cut in /20s) unless
``SAMPAN_ADDRESS_POOLS`` says otherwise ("BASE/SIZE,BASE/SIZE": "10.200.0.0/16/24"). A subnet is taken when it
overlaps a route of the host (another engine's bridge, a VPN, the LAN) or a network of the store. Addresses are
chosen by the caller inside the store's write transaction; the UNIQUE (network, address) constraint makes a
duplicate impossible even if two callers raced.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Iterator

from sampan.errors import Conflict, InvalidArgument

Net = ipaddress.IPv4Network
DEFAULT_POOLS = [("172.16.0.0/12", 16), ("192.168.0.0/16", 20)]


def pools() -> list[tuple[Net, int]]:
    text = os.environ.get("SAMPAN_ADDRESS_POOLS", "")
    out = []
    for item in [p for p in text.split(",") if p.strip()]:
        base, _, size = item.strip().rpartition("/")
        try:
            out.append((ipaddress.IPv4Network(base), int(size)))
        except ValueError:
            raise InvalidArgument(f"invalid address pool {item!r} in SAMPAN_ADDRESS_POOLS (want BASE/LEN/SIZE)")\
                from None
    if out:
        return out
    return [(ipaddress.IPv4Network(base), size) for base, size in DEFAULT_POOLS]


def _candidates() -> Iterator[Net]:
    for base, size in pools():
        if base == ipaddress.IPv4Network("172.16.0.0/12"):
            yield from (n for n in base.subnets(new_prefix=size) if n.network_address >= ipaddress.IPv4Address(
                "172.17.0.0"))
        else:
            yield from base.subnets(new_prefix=max(size, base.prefixlen))


def choose_subnet(taken: Iterable[Net]) -> Net:
    taken = list(taken)
    for candidate in _candidates():
        if not any(candidate.overlaps(t) for t in taken):
            return candidate
    raise Conflict("could not find an available, non-overlapping IPv4 address pool among the defaults to assign "
                   "to the network")


def parse_subnet(text: str) -> Net:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid subnet {text}: invalid CIDR address: {text}") from None
    if net.version != 4:
        raise InvalidArgument(f"invalid subnet {text}: sampan networks are IPv4 only")
    if str(net) != text and ipaddress.ip_interface(text).ip != net.network_address:
        raise InvalidArgument(f"invalid subnet {text}: it should be {net}")
    if net.prefixlen > 30:
        raise InvalidArgument(f"invalid subnet {text}: too small for containers")
    return net  # type: ignore[return-value]


def check_free(subnet: Net, taken: Iterable[Net]) -> None:
    for other in taken:
        if subnet.overlaps(other):
            raise Conflict("Pool overlaps with other one on this address space")


def allocate(subnet: Net, ip_range: Net | None, gateway: str, used: Iterable[str]) -> str:
    """The lowest free host address of ``ip_range`` (or the subnet), never the gateway or broadcast."""
    busy = set(used) | {gateway}
    pool = ip_range or subnet
    for address in pool.hosts():
        if address == subnet.broadcast_address or address == subnet.network_address:
            continue
        text = str(address)
        if text not in busy:
            return text
    raise Conflict("no available IPv4 addresses on this network's address pools")


def mac_for(address: str) -> str:
    """Docker's MAC for an address: 02:42 and the four address bytes."""
    return "02:42:" + ":".join(f"{int(b):02x}" for b in address.split("."))
