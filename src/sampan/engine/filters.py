"""Docker's ``--filter`` semantics shared by the listing and prune verbs (images, volumes, later containers)."""

from __future__ import annotations

from sampan.errors import InvalidArgument


def check_filters(filters: dict[str, list[str]], allowed: frozenset[str]) -> None:
    """Refuse a filter key the verb does not know, with Docker's message."""
    for key in filters:
        if key not in allowed:
            raise InvalidArgument(f"invalid filter '{key}'")


def bool_filter(filters: dict[str, list[str]], key: str) -> bool | None:
    """A true/false filter such as ``dangling``: None when absent, the last value wins."""
    values = filters.get(key)
    if not values:
        return None
    value = values[-1].lower()
    if value not in ("true", "false", "1", "0"):
        raise InvalidArgument(f"invalid filter '{key}={values[-1]}'")
    return value in ("true", "1")


def labels_match(labels: dict[str, str], wanted: list[str]) -> bool:
    """Docker's MatchKVList: every ``key`` or ``key=value`` must hold."""
    for item in wanted:
        key, eq, value = item.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True
