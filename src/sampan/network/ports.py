"""Published ports: Docker's ``-p [ip:][hostPort:]containerPort[/proto]`` grammar (ranges included) to
``PortBindings``, and whether a host port is free to take."""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Any

from sampan.errors import InvalidArgument

EPHEMERAL = (32768, 60999)  # Docker's default port range for -P and -p CONTAINERPORT
_SPEC = re.compile(r"(?:(?P<ip>\[[0-9a-fA-F.:]+\]|\d+\.[0-9.]+):)?(?:(?P<host>\d*(?:-\d+)?):)?"
                   r"(?P<port>\d+(?:-\d+)?)(?:/(?P<proto>\w+))?")


def _range(text: str, spec: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    first, last = int(low), int(high or low)
    if not (1 <= first <= 65535 and 1 <= last <= 65535) or last < first:
        raise InvalidArgument(f'invalid argument "{spec}" for "-p, --publish" flag: invalid port range: {text}')
    return first, last


def parse(spec: str) -> dict[str, list[dict[str, str]]]:
    """One ``-p`` value as Docker's PortBindings entries: {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}."""
    m = _SPEC.fullmatch(spec)
    if m is None:
        raise InvalidArgument(f'invalid argument "{spec}" for "-p, --publish" flag: invalid port specification')
    proto = (m.group("proto") or "tcp").lower()
    if proto not in ("tcp", "udp"):
        raise InvalidArgument(f'invalid argument "{spec}" for "-p, --publish" flag: invalid proto: {proto}')
    host_ip = (m.group("ip") or "").strip("[]")
    if host_ip:
        try:
            address = ipaddress.ip_address(host_ip)
        except ValueError:
            raise InvalidArgument(f'invalid argument "{spec}" for "-p, --publish" flag: invalid IP address: '
                                  f"{host_ip}") from None
        if address.version != 4:
            raise InvalidArgument(f"invalid argument \"{spec}\": sampan publishes IPv4 ports only")
    first, last = _range(m.group("port"), spec)
    host = m.group("host") or ""
    if host:
        hfirst, hlast = _range(host, spec)
        if hlast - hfirst != last - first and hfirst != hlast:
            raise InvalidArgument(f"invalid argument \"{spec}\" for \"-p, --publish\" flag: invalid ranges "
                                  "specified for container and host Ports")
    out: dict[str, list[dict[str, str]]] = {}
    for i, port in enumerate(range(first, last + 1)):
        if not host:
            host_port = ""
        elif hfirst == hlast and first != last:
            host_port = str(hfirst)  # Docker: one host port for a container range (the first free)
        else:
            host_port = str(hfirst + i)
        out.setdefault(f"{port}/{proto}", []).append({"HostIp": host_ip, "HostPort": host_port})
    return out


def parse_all(specs: list[str]) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for spec in specs:
        for key, bindings in parse(spec).items():
            out.setdefault(key, []).extend(bindings)
    return out


def split_key(key: str) -> tuple[int, str]:
    port, _, proto = key.partition("/")
    return int(port), proto or "tcp"


def bindable(proto: str, host_ip: str, port: int) -> bool:
    """Whether no socket on the host holds ``host_ip:port`` (a listener there would be shadowed by our DNAT)."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no owner
        try:
            s.bind((host_ip or "0.0.0.0", port))
            return True
        except OSError:
            return False


def docker_ports(bindings: list[dict[str, Any]]) -> dict[str, list[dict[str, str]] | None]:
    """NetworkSettings.Ports from actual bindings (proto, host_ip, host_port, container_port)."""
    out: dict[str, list[dict[str, str]] | None] = {}
    for b in bindings:
        out.setdefault(f"{b['container_port']}/{b['proto']}", []).append(  # type: ignore[union-attr]
            {"HostIp": b["host_ip"] or "0.0.0.0", "HostPort": str(b["host_port"])})
    return out
