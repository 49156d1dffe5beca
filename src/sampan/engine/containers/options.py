"""The words ``docker create`` front ends share: the CLI's flags and the API's Config/HostConfig name a network mode
and an entrypoint override the same way, so both read them here before they fill ``CreateOptions``.

``CreateOptions`` keeps the spec's network mode (``run.network_mode``) apart from the network to join
(``network``), because ``none``, ``host`` and ``container:NAME`` join none; users give one value for both.
"""

from __future__ import annotations

_SHARED = ("none", "host")


def network_mode(value: str) -> tuple[str, str]:
    """``--network`` / ``HostConfig.NetworkMode`` as (``run.network_mode``, ``CreateOptions.network``).

    ``none``, ``host`` and ``container:NAME`` are namespace modes that join no network (the network stays the
    unused default); ``""`` and ``default`` mean ``bridge``; any other value is a network to join ("private")."""
    value = value or "bridge"
    if value == "default":
        value = "bridge"
    if value in _SHARED or value.startswith("container:"):
        return value, "bridge"
    return "private", value


def entrypoint(value: list[str] | None) -> list[str] | None:
    """An entrypoint override: None keeps the image's; an empty one (``--entrypoint ""``, which the docker CLI
    sends as ``[""]``) resets it to none."""
    if value is None:
        return None
    return [] if value in ([], [""]) else list(value)
