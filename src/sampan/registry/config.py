"""Which registries are trusted how: insecure (plain HTTP or unverified TLS) registries, CA directories, mirrors.

Sources, later ones adding to earlier ones:

- ``<config dir>/registries.json`` (config dir: ``$SAMPAN_CONFIG_DIR``, default ``/etc/sampan``), with the keys of
  Docker's ``daemon.json``: ``{"insecure-registries": ["myhost:5000", "10.0.0.0/8"], "registry-mirrors":
  ["https://mirror.example"]}``;
- ``$SAMPAN_INSECURE_REGISTRIES`` and ``$SAMPAN_REGISTRY_MIRRORS``: comma-separated, the same values.

As in Docker, loopback registries (``127.0.0.0/8``, ``::1``, ``localhost``) are insecure unless the config file
sets ``insecure-registries`` itself, which then is the whole list. An insecure registry is tried over HTTPS without
certificate verification first, then over plain HTTP. Mirrors serve Docker Hub (``docker.io``) only.

CA certificates (``*.crt``) and client certificates (``*.cert`` with their ``*.key``) for a registry are read
from ``<config dir>/certs.d/<host[:port]>/`` and ``/etc/docker/certs.d/<host[:port]>/``, as Docker does.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from sampan.errors import InvalidArgument

DEFAULT_CONFIG_DIR = "/etc/sampan"
DOCKER_CERTS_DIR = "/etc/docker/certs.d"
DEFAULT_INSECURE = ("127.0.0.0/8", "::1/128", "localhost")
CONFIG_FILE = "registries.json"


def config_dir() -> Path:
    return Path(os.environ.get("SAMPAN_CONFIG_DIR") or DEFAULT_CONFIG_DIR)


def split_host(host: str) -> tuple[str, int | None]:
    """``host[:port]`` (IPv6 in brackets) -> (hostname without brackets, port or None)."""
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        return name, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        return name, int(port)
    return host, None


@dataclass(frozen=True)
class RegistryConfig:
    directory: Path = field(default_factory=config_dir)
    insecure: tuple[str, ...] = DEFAULT_INSECURE
    mirrors: tuple[str, ...] = ()
    cert_roots: tuple[Path, ...] = ()

    @classmethod
    def load(cls, directory: str | os.PathLike[str] | None = None) -> RegistryConfig:
        base = Path(directory) if directory is not None else config_dir()
        insecure: list[str] = list(DEFAULT_INSECURE)
        mirrors: list[str] = []
        path = base / CONFIG_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as e:
            raise InvalidArgument(f"invalid registry configuration {path}: {e}") from None
        if not isinstance(data, dict):
            raise InvalidArgument(f"invalid registry configuration {path}: not a JSON object")
        if "insecure-registries" in data:
            insecure = _strings(data["insecure-registries"], path, "insecure-registries")
        mirrors = _strings(data.get("registry-mirrors", []), path, "registry-mirrors")
        insecure += _env_list("SAMPAN_INSECURE_REGISTRIES")
        mirrors += _env_list("SAMPAN_REGISTRY_MIRRORS")
        for mirror in mirrors:
            if not mirror.startswith(("http://", "https://")):
                raise InvalidArgument(f"invalid registry mirror {mirror!r}: it must be an http(s) URL")
        return cls(base, tuple(insecure), tuple(m.rstrip("/") for m in mirrors),
                   (base / "certs.d", Path(DOCKER_CERTS_DIR)))

    def is_insecure(self, host: str) -> bool:
        """Whether ``host[:port]`` may be reached over plain HTTP or unverified TLS."""
        name, _ = split_host(host)
        address = _ip(name)
        for entry in self.insecure:
            if entry in (host, name):
                return True
            if address is not None and "/" in entry:
                try:
                    if address in ipaddress.ip_network(entry, strict=False):
                        return True
                except ValueError:
                    continue
        return False

    def cert_dirs(self, host: str) -> list[Path]:
        """The certs.d directories that exist for this registry, named ``host[:port]`` exactly as Docker's."""
        return [root / host for root in self.cert_roots if (root / host).is_dir()]


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def _strings(value: object, path: Path, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"invalid registry configuration {path}: {key!r} must be a list of strings")
    return [v.strip() for v in value if v.strip()]


def _env_list(name: str) -> list[str]:
    return [v.strip() for v in os.environ.get(name, "").split(",") if v.strip()]
