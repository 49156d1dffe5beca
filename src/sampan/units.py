"""Docker's go-units: human-readable sizes and durations, and the size, duration and timestamp flag syntaxes.

The engine and the CLI share this one module so ``images``, ``system df``, ``--memory`` and ``--since`` read
and print values exactly like the docker CLI does; every function mirrors a named go-units or docker function.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from sampan.errors import InvalidArgument

_DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")

# RAMInBytes: a number, an optional space, then b, or a binary multiplier optionally followed by b or ib.
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+) ?(?:([kmgtp])(i?b)?|b)?", re.IGNORECASE)
_SIZE_MULTIPLIERS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}

# time.ParseDuration: an optional sign, then one or more number+unit parts ("1h30m", "1.5s", "300µs").
_DURATION = re.compile(r"([-+]?)((?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+)")
_DURATION_PART = re.compile(r"(\d*)\.?(\d*)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_NANOSECONDS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
                     "h": 3600 * 10**9}

# docker's GetTimestamp layouts: a date, optionally a time to hours, minutes or (fractional) seconds, a zone.
_TIMESTAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})"
                        r"(?:T(\d{2})(?::(\d{2})(?::(\d{2})(\.\d+)?)?)?)?([zZ]|[+-]\d{2}:\d{2})?")
_UNIX_TIMESTAMP = re.compile(r"\d+(?:\.\d+)?")


def _scaled(size: float, base: float, units: tuple[str, ...]) -> tuple[float, str]:
    """go-units getSizeAndUnit: divide by ``base`` until the value is below it or the units run out."""
    index = 0
    while size >= base and index < len(units) - 1:
        size /= base
        index += 1
    return size, units[index]


def human_size(n: float) -> str:
    """go-units HumanSize (decimal, 3 significant digits): what ``docker images`` shows in SIZE ("4.26MB")."""
    size, unit = _scaled(float(n), 1000.0, _DECIMAL_UNITS)
    return f"{size:.3g}{unit}"


def bytes_size(n: float) -> str:
    """go-units BytesSize (binary, 4 significant digits): ``docker info``'s memory ("1.953GiB")."""
    size, unit = _scaled(float(n), 1024.0, _BINARY_UNITS)
    return f"{size:.4g}{unit}"


def human_duration(seconds: float) -> str:
    """go-units HumanDuration: the "CREATED" wording of ``docker images`` and ``docker ps``, less " ago"."""
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole == 1:
        return "1 second"
    if whole < 60:
        return f"{whole} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def parse_size(text: str) -> int:
    """go-units RAMInBytes: sizes such as ``512``, ``12m``, ``1.5g``, ``64MiB``; multipliers are binary."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise InvalidArgument(f"invalid size: '{text}'")
    number, prefix, _ = match.groups()
    multiplier = _SIZE_MULTIPLIERS[prefix.lower()] if prefix else 1
    return int(float(number) * multiplier)


def _duration_seconds(text: str) -> float | None:
    """time.ParseDuration in seconds, or None when ``text`` is not a Go duration (for both parsers)."""
    if text in ("0", "+0", "-0"):
        return 0.0
    match = _DURATION.fullmatch(text)
    if match is None:
        return None
    nanoseconds = 0
    for whole, fraction, unit in _DURATION_PART.findall(match.group(2)):
        scale = _UNIT_NANOSECONDS[unit]
        nanoseconds += int(whole or "0") * scale
        if fraction:
            nanoseconds += int(fraction) * scale // 10 ** len(fraction)
    seconds = nanoseconds / 1e9
    return -seconds if match.group(1) == "-" else seconds


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration ("1h30m", "500ms", "300µs"), in seconds: the syntax of every duration flag."""
    seconds = _duration_seconds(text)
    if seconds is None:
        raise InvalidArgument(f"invalid duration: '{text}'")
    return seconds


def _zone(text: str | None) -> timezone:
    """The zone of a timestamp; none given means UTC (sampan does not guess the client's local zone)."""
    if text is None or text in ("z", "Z"):
        return UTC
    sign = -1 if text[0] == "-" else 1
    return timezone(sign * timedelta(hours=int(text[1:3]), minutes=int(text[4:6])))


def _calendar_seconds(match: re.Match[str]) -> float:
    """Unix seconds of a matched RFC3339-like timestamp; impossible dates (month 13) are rejected."""
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
                          tzinfo=_zone(zone))
    except ValueError as error:
        raise InvalidArgument(f"invalid timestamp {match.group()!r}: {error}") from None
    return moment.timestamp() + (float(fraction) if fraction else 0.0)


def parse_timestamp(text: str, now: float) -> float:
    """docker's GetTimestamp for ``--since``/``--until``/``until=``: a duration back from ``now``, an
    RFC3339-like date and time, or unix seconds; the result is unix seconds."""
    seconds = _duration_seconds(text) if text != "0" else None
    if seconds is not None:
        return now - seconds
    match = _TIMESTAMP.fullmatch(text)
    if match is not None:
        return _calendar_seconds(match)
    if _UNIX_TIMESTAMP.fullmatch(text):
        return float(text)
    raise InvalidArgument(f'failed to parse value as time or duration: "{text}"')
