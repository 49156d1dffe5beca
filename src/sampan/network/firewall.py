"""sampan's nftables table (``ip <name>``, created and changed only through nftables JSON; nothing outside it is
ever flushed or edited here: ``iptables.py`` adds sampan's accept rules to iptables' filter table, whose drops
would otherwise be final too).

The rules are fixed; networks and published ports are elements of sets and maps, so adding a container's ports
is one atomic element insert and removing them one delete, with no rule handles to track:

- ``publish`` (jumped to from prerouting and output for packets to a local address): DNAT by
  ``ports_ip`` (host address . protocol . port) then ``ports_any`` (protocol . port, for 0.0.0.0 bindings), so
  the kernel forwards: no userland proxy, and the client's address is kept (connections from the host's own
  127.0.0.1 leave through the bridge with a loopback source, which ``postrouting`` masquerades to the gateway);
- ``postrouting``: masquerade what leaves a non-internal network's subnet for anything but a sampan bridge;
- ``forward`` (policy accept: other tables decide for other traffic): a bridge to itself is accepted, internal
  networks are dropped, then connections to a published port are accepted (a container reaches another
  network's published port through the host's address, as with Docker's default userland proxy), and other
  traffic between two different sampan bridges is dropped (networks are isolated).
"""

from __future__ import annotations

from typing import Any

from sampan._linux import nftables

FAMILY = "ip"
_SETS = (("bridges", "ifname", None), ("same", ["ifname", "ifname"], None), ("internal", "ifname", None),
         ("masq", "ipv4_addr", ["interval"]))
_ANY_KEY = ["inet_proto", "inet_service"]
_IP_KEY = ["ipv4_addr", "inet_proto", "inet_service"]
# (name, key type, data type): a DNAT target is looked up twice, its address then its port (nft 1.0.6 crashes
# parsing JSON for one map with concatenated address . port data).
_MAPS = (("any_addr", _ANY_KEY, "ipv4_addr"), ("any_port", _ANY_KEY, "inet_service"),
         ("ip_addr", _IP_KEY, "ipv4_addr"), ("ip_port", _IP_KEY, "inet_service"))


def _meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


def _match(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


_LOCAL = _match({"fib": {"result": "type", "flags": ["daddr"]}}, "local")
_SADDR = {"payload": {"protocol": "ip", "field": "saddr"}}
_DADDR = {"payload": {"protocol": "ip", "field": "daddr"}}
_DPORT = {"payload": {"protocol": "th", "field": "dport"}}


def _dnat(key: list[Any], prefix: str) -> dict[str, Any]:
    return {"dnat": {"family": "ip", "addr": {"map": {"key": {"concat": key}, "data": f"@{prefix}_addr"}},
                     "port": {"map": {"key": {"concat": key}, "data": f"@{prefix}_port"}}}}


def _rules(table: str) -> list[tuple[str, list[dict[str, Any]]]]:
    return [
        ("publish", [_dnat([_DADDR, _meta("l4proto"), _DPORT], "ip")]),
        ("publish", [_dnat([_meta("l4proto"), _DPORT], "any")]),
        ("prerouting", [_LOCAL, {"jump": {"target": "publish"}}]),
        ("output", [_LOCAL, {"jump": {"target": "publish"}}]),
        ("postrouting", [_match(_meta("oifname"), "@bridges"),
                         _match(_SADDR, {"prefix": {"addr": "127.0.0.0", "len": 8}}), {"masquerade": None}]),
        ("postrouting", [_match(_SADDR, "@masq"), _match(_meta("oifname"), "@bridges", "!="), {"masquerade": None}]),
        ("forward", [_match({"concat": [_meta("iifname"), _meta("oifname")]}, "@same"), {"accept": None}]),
        ("forward", [_match(_meta("iifname"), "@internal"), {"drop": None}]),
        ("forward", [_match(_meta("oifname"), "@internal"), {"drop": None}]),
        ("forward", [_match({"ct": {"key": "status"}}, "dnat", "in"), {"accept": None}]),
        ("forward", [_match(_meta("iifname"), "@bridges"), _match(_meta("oifname"), "@bridges"), {"drop": None}]),
    ]


def _run(commands: list[dict[str, Any]]) -> Any:
    return nftables.run({"nftables": commands})


def exists(table: str) -> bool:
    try:
        _run([{"list": {"chain": {"family": FAMILY, "table": table, "name": "forward"}}}])
        return True
    except nftables.NftError:
        return False


def ensure_table(table: str) -> None:
    """Create the table with its sets, maps, chains and rules unless it is there (callers hold the network
    lock, so two processes never both create it)."""
    if exists(table):
        return
    base = {"family": FAMILY, "table": table}
    commands: list[dict[str, Any]] = [{"add": {"table": {"family": FAMILY, "name": table}}}]
    for name, kind, flags in _SETS:
        s: dict[str, Any] = {**base, "name": name, "type": kind}
        if flags:
            s["flags"] = flags
        commands.append({"add": {"set": s}})
    for name, key, data in _MAPS:
        commands.append({"add": {"map": {**base, "name": name, "type": key, "map": data}}})
    commands.append({"add": {"chain": {**base, "name": "publish"}}})
    for name, kind, hook, prio in (("prerouting", "nat", "prerouting", -100), ("output", "nat", "output", -100),
                                   ("postrouting", "nat", "postrouting", 100),
                                   ("forward", "filter", "forward", 0)):
        commands.append({"add": {"chain": {**base, "name": name, "type": kind, "hook": hook, "prio": prio,
                                           "policy": "accept"}}})
    for chain, expr in _rules(table):
        commands.append({"add": {"rule": {**base, "chain": chain, "expr": expr}}})
    _run(commands)


def delete_table(table: str) -> None:
    if exists(table):
        _run([{"delete": {"table": {"family": FAMILY, "name": table}}}])


def _elements(table: str, name: str, elements: list[Any]) -> dict[str, Any]:
    return {"element": {"family": FAMILY, "table": table, "name": name, "elem": elements}}


def network_elements(bridge: str, subnet: str, internal: bool) -> dict[str, list[Any]]:
    address, _, length = subnet.partition("/")
    out: dict[str, list[Any]] = {"bridges": [bridge], "same": [{"concat": [bridge, bridge]}]}
    if internal:
        out["internal"] = [bridge]
    else:
        out["masq"] = [{"prefix": {"addr": address, "len": int(length)}}]
    return out


def port_elements(ports: list[tuple[str, str, int, str, int]]) -> dict[str, list[Any]]:
    """(protocol, host address or "", host port, container address, container port) as map elements."""
    out: dict[str, list[Any]] = {}
    for proto, host_ip, host_port, address, port in ports:
        if host_ip in ("", "0.0.0.0"):
            prefix, key = "any", {"concat": [proto, host_port]}
        else:
            prefix, key = "ip", {"concat": [host_ip, proto, host_port]}
        out.setdefault(f"{prefix}_addr", []).append([key, address])
        out.setdefault(f"{prefix}_port", []).append([key, port])
    return out


def add(table: str, *groups: dict[str, list[Any]]) -> None:
    """Add the elements of every group in one transaction (raises ``NftError`` when the table is missing)."""
    _run([{"add": _elements(table, name, items)} for group in groups for name, items in group.items() if items])


def remove(table: str, elements: dict[str, list[Any]]) -> None:
    """Delete elements in one transaction; when that fails (one is gone: a repair may run twice, or the table
    is), one command each, ignoring those that are gone."""
    commands = [{"delete": _elements(table, name, [item[0] if isinstance(item, list) else item])}
                for name, items in elements.items() for item in items]
    if not commands:
        return
    try:
        _run(commands)
        return
    except nftables.NftError:
        pass
    if not exists(table):
        return
    for command in commands:
        try:
            _run([command])
        except nftables.NftError:
            pass


def listed(table: str) -> dict[str, list[Any]]:
    """The table's set and map elements by name (for ``system check`` and tests)."""
    if not exists(table):
        return {}
    out: dict[str, list[Any]] = {}
    for item in (_run([{"list": {"table": {"family": FAMILY, "name": table}}}]) or {}).get("nftables", []):
        for kind in ("set", "map"):
            if kind in item:
                out[item[kind]["name"]] = item[kind].get("elem", [])
    return out
