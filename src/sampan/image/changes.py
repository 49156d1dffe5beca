"""Dockerfile-style ``--change`` instructions applied to an image's runtime config (``import -c``, ``commit -c``).

Only instructions that alter the config (not the filesystem) are allowed, as in Docker: CMD, ENTRYPOINT, ENV,
EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from sampan.errors import InvalidArgument

ALLOWED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR")
SHELL = ["/bin/sh", "-c"]


def _json_or_shell(args: str) -> list[str]:
    """Exec form (a JSON array of strings) or shell form (wrapped in ``/bin/sh -c``)."""
    text = args.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return SHELL + [text]


def _key_values(instruction: str, args: str) -> list[tuple[str, str]]:
    """``K=V K2="v 2"`` pairs, or the legacy ``K V...`` form with a single pair."""
    try:
        words = shlex.split(args, posix=True)
    except ValueError as e:
        raise InvalidArgument(f"{instruction}: {e}") from None
    if not words:
        raise InvalidArgument(f"{instruction} requires at least one argument")
    if "=" not in words[0]:
        key, _, value = args.strip().partition(" ")
        if not value.strip() and instruction != "LABEL":
            raise InvalidArgument(f"{instruction} must have two arguments")
        return [(key, value.strip())]
    pairs = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise InvalidArgument(f"{instruction}: syntax error - can't find = in {word!r}. Must be of the form: name=value")
        pairs.append((key, value))
    return pairs


def apply_change(config: dict[str, Any], change: str) -> None:
    """Apply one instruction such as ``CMD ["sh"]`` or ``ENV A=1`` to a container config, in place."""
    instruction, _, args = change.strip().partition(" ")
    instruction = instruction.upper()
    if instruction not in ALLOWED:
        raise InvalidArgument(f"{instruction or change!r} is not a valid change command")
    if not args.strip() and instruction not in ("CMD", "ENTRYPOINT"):
        raise InvalidArgument(f"{instruction} requires at least one argument")
    if instruction in ("CMD", "ENTRYPOINT"):
        key = "Cmd" if instruction == "CMD" else "Entrypoint"
        config[key] = _json_or_shell(args) if args.strip() else None
    elif instruction == "ENV":
        env = [e for e in config.get("Env") or []]
        for key, value in _key_values(instruction, args):
            env = [e for e in env if e.split("=", 1)[0] != key] + [f"{key}={value}"]
        config["Env"] = env
    elif instruction == "LABEL":
        labels = dict(config.get("Labels") or {})
        labels.update(_key_values(instruction, args))
        config["Labels"] = labels
    elif instruction == "EXPOSE":
        ports = dict(config.get("ExposedPorts") or {})
        for port in args.split():
            number, _, proto = port.partition("/")
            if not number.isdigit() or proto not in ("", "tcp", "udp", "sctp"):
                raise InvalidArgument(f"invalid port {port!r} in EXPOSE")
            ports[f"{number}/{proto or 'tcp'}"] = {}
        config["ExposedPorts"] = ports
    elif instruction == "VOLUME":
        volumes = dict(config.get("Volumes") or {})
        paths = _json_or_shell(args)
        for path in paths[2:] if paths[:2] == SHELL else paths:
            for item in (path.split() if paths[:2] == SHELL else [path]):
                volumes[item] = {}
        config["Volumes"] = volumes
    elif instruction == "ONBUILD":
        config["OnBuild"] = list(config.get("OnBuild") or []) + [args.strip()]
    else:
        config[{"USER": "User", "WORKDIR": "WorkingDir", "STOPSIGNAL": "StopSignal"}[instruction]] = args.strip()
