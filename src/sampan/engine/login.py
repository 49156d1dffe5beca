"""``login``/``logout``: check credentials against a registry and keep them in Docker's ``config.json``.

Credentials are the user's, not the storage root's: they live in ``$DOCKER_CONFIG/config.json`` (or its
credential helper), shared with the docker CLI, whichever root sampan runs with.
"""

from __future__ import annotations

from dataclasses import dataclass

from sampan.errors import InvalidArgument

HUB_SERVER = "https://index.docker.io/v1/"
_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})


@dataclass(frozen=True)
class LoginResult:
    server: str  # the key the credentials are stored under
    stored_in: str  # config.json's path, or the helper program
    plaintext: bool  # stored base64-encoded in config.json rather than by a helper


def registry_of(server: str | None) -> str:
    """``host[:port]`` (or ``docker.io``) from what the user typed: a host, or a URL such as Hub's legacy one."""
    from sampan.registry.credentials import hostname_of_key

    if not server:
        return "docker.io"
    host = hostname_of_key(server.strip())
    if host in _HUB_HOSTS:
        return "docker.io"
    if not host or any(c.isspace() for c in host):
        raise InvalidArgument(f"invalid registry address {server!r}")
    return host


def server_name(registry: str) -> str:
    """How Docker names a registry's credentials in messages: Hub's legacy URL, else ``host[:port]``."""
    from sampan.registry.credentials import server_key

    return server_key(registry)


def stored_credentials(server: str | None) -> tuple[str, str] | None:
    """(username, registry) of the credentials already stored for a server, if any."""
    from sampan.registry.credentials import DockerConfig

    registry = registry_of(server)
    creds = DockerConfig().get(registry)
    return (creds.username, registry) if creds is not None else None


def verify(server: str | None, username: str, password: str) -> None:
    """Ask the registry whether it accepts these credentials; raises ``Unauthorized`` if not."""
    from sampan.engine.pull import registry_host
    from sampan.registry.client import RegistryClient
    from sampan.registry.credentials import Credentials

    registry = registry_of(server)
    creds = Credentials(username, password)
    client = RegistryClient(registry_host(registry), name=registry, credentials=lambda: creds)
    try:
        client.login()
    finally:
        client.close()


def verify_stored(server: str | None) -> bool:
    """Whether the stored credentials for a server still work (``docker login`` without flags tries them)."""
    from sampan.engine.pull import registry_host
    from sampan.errors import Unauthorized
    from sampan.registry.client import RegistryClient
    from sampan.registry.credentials import DockerConfig

    registry = registry_of(server)
    client = RegistryClient(registry_host(registry), name=registry,
                            credentials=lambda: DockerConfig().get(registry))
    try:
        client.login()
    except Unauthorized:
        return False
    finally:
        client.close()
    return True


def login(server: str | None, username: str, password: str) -> LoginResult:
    """Verify the credentials with the registry, then store them."""
    from sampan.registry.credentials import Credentials, DockerConfig

    if not username:
        raise InvalidArgument("Username is required")
    if not password:
        raise InvalidArgument("Password is required")
    verify(server, username, password)
    registry = registry_of(server)
    config = DockerConfig()
    stored_in = config.store(registry, Credentials(username, password))
    return LoginResult(server_name(registry), stored_in, stored_in == str(config.path))


def logout(server: str | None) -> tuple[str, bool]:
    """Forget a server's credentials: (its name, whether there were any)."""
    from sampan.registry.credentials import DockerConfig

    registry = registry_of(server)
    return server_name(registry), DockerConfig().erase(registry)
