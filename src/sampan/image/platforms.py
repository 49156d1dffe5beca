"""Platforms (``os/arch[/variant]``): parsing, normalising and choosing one from an image index, as containerd.

Docker picks a manifest from a manifest list with containerd's ``platforms.Only`` matcher: the wanted platform
first, then what it can also run, in order of preference: ``arm64`` also runs ``arm/v8`` down to ``arm/v5``,
``arm/v7`` runs ``v6`` and ``v5``, ``amd64/v3`` runs ``v2`` and ``v1``, and ``amd64`` runs ``386``. Names are
normalised first (``x86_64`` is ``amd64``, ``aarch64`` is ``arm64``, ``arm64/v8`` is ``arm64``, a bare ``arm`` is
``arm/v7``).
"""

from __future__ import annotations

import platform as _platform
from collections.abc import Sequence

from sampan.errors import InvalidArgument
from sampan.image.config import host_architecture
from sampan.image.manifest import Descriptor, Platform

_KNOWN_OS = frozenset({"aix", "android", "darwin", "dragonfly", "freebsd", "illumos", "ios", "js", "linux",
                       "netbsd", "openbsd", "plan9", "solaris", "wasip1", "windows"})


def normalize_arch(arch: str, variant: str | None) -> tuple[str, str | None]:
    arch, variant = arch.lower(), (variant or "").lower() or None
    if arch in ("i386", "i486", "i586", "i686", "386"):
        return "386", None
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", None if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        return "arm64", None if variant in ("8", "v8") else variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant is None:
            return "arm", "v7"
        if variant in ("5", "6", "7", "8"):
            return "arm", "v" + variant
    return arch, variant


def normalize(platform: Platform) -> Platform:
    os = platform.os.lower()
    if os == "macos":
        os = "darwin"
    arch, variant = normalize_arch(platform.architecture, platform.variant)
    return Platform(os, arch, variant, platform.os_version)


def parse(text: str) -> Platform:
    """``linux/arm64/v8``, ``linux/amd64``, ``arm64`` (os linux) or ``linux`` (the host's architecture)."""
    parts = text.strip().split("/")
    if not text.strip() or len(parts) > 3 or not all(parts):
        raise InvalidArgument(f"invalid platform {text!r}: expected os/arch[/variant]")
    if len(parts) == 1:
        word = parts[0].lower()
        if word in _KNOWN_OS:
            return normalize(Platform(word, host_architecture(), host().variant if word == "linux" else None))
        return normalize(Platform("linux", word))
    os, arch = parts[0].lower(), parts[1]
    return normalize(Platform(os, arch, parts[2] if len(parts) == 3 else None))


def host() -> Platform:
    arch = host_architecture()
    variant = None
    if arch == "arm":
        variant = _arm_variant()
    return normalize(Platform("linux", arch, variant))


def _arm_variant() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("cpu architecture"):
                    value = line.split(":", 1)[1].strip()
                    return "v" + value if value in ("5", "6", "7", "8") else None
    except OSError:
        pass
    machine = _platform.machine()
    return "v" + machine[5] if machine.startswith("armv") and machine[5:6].isdigit() else None


def compatible(platform: Platform) -> list[Platform]:
    """What a platform runs, best first (containerd's platformVector)."""
    platform = normalize(platform)
    out = [platform]
    os, arch, variant = platform.os, platform.architecture, platform.variant
    if arch == "amd64":
        level = _level(variant)
        if level and level > 1:
            out += [Platform(os, "amd64", None if v == 1 else f"v{v}") for v in range(level - 1, 0, -1)]
        out.append(Platform(os, "386"))
    elif arch == "arm":
        level = _level(variant)
        if level and level > 5:
            out += [Platform(os, "arm", f"v{v}") for v in range(level - 1, 4, -1)]
    elif arch == "arm64":
        out += [Platform(os, "arm", f"v{v}") for v in range(8, 4, -1)]
    return out


def _level(variant: str | None) -> int | None:
    text = (variant or "").removeprefix("v")
    return int(text) if text.isdigit() else None


def choose(manifests: Sequence[Descriptor], wanted: Platform) -> Descriptor | None:
    """The index entry that best suits ``wanted``; ties keep the index's order. None if nothing fits."""
    ranking = [_key(p) for p in compatible(wanted)]
    best: tuple[int, Descriptor] | None = None
    for desc in manifests:
        if desc.platform is None:
            continue
        key = _key(normalize(desc.platform))
        if key in ranking:
            rank = ranking.index(key)
            if best is None or rank < best[0]:
                best = (rank, desc)
    return best[1] if best else None


def _key(platform: Platform) -> tuple[str, str, str]:
    return platform.os, platform.architecture, platform.variant or ""


def describe(platforms: Sequence[Platform | None]) -> str:
    return ", ".join(str(p) for p in platforms if p is not None) or "none"
