"""go-units sizes and durations, and the size/duration/timestamp syntaxes docker's flags accept."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sampan.errors import InvalidArgument
from sampan.units import bytes_size, human_duration, human_size, parse_duration, parse_size, parse_timestamp


@pytest.mark.parametrize(("n", "text"), [
    (0, "0B"), (1, "1B"), (512, "512B"), (999, "999B"), (1000, "1kB"), (12345, "12.3kB"),
    (4_260_000, "4.26MB"),
    (4_264_999, "4.26MB"), (1_000_000_000, "1GB"), (1.5e12, "1.5TB"), (2e15, "2PB"), (999_999, "1e+03kB"),
])
def test_human_size(n: float, text: str) -> None:
    assert human_size(n) == text


@pytest.mark.parametrize(("n", "text"), [
    (0, "0B"), (512, "512B"), (1024, "1KiB"), (1536, "1.5KiB"), (2_097_152_000, "1.953GiB"),
    (1 << 40, "1TiB"),
    (5 * 1024 * 1024, "5MiB"),
])
def test_bytes_size(n: float, text: str) -> None:
    assert bytes_size(n) == text


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "Less than a second"), (0.9, "Less than a second"), (1, "1 second"), (1.9, "1 second"),
    (2, "2 seconds"), (59, "59 seconds"), (60, "About a minute"), (119, "About a minute"), (120, "2 minutes"),
    (59 * 60, "59 minutes"), (60 * 60, "About an hour"), (89 * 60, "About an hour"), (90 * 60, "2 hours"),
    (47 * 3600, "47 hours"), (48 * 3600, "2 days"), (13 * 86400, "13 days"), (14 * 86400, "2 weeks"),
    (59 * 86400, "8 weeks"), (60 * 86400, "2 months"), (364 * 86400, "12 months"), (729 * 86400, "24 months"),
    (730 * 86400, "2 years"), (3650 * 86400, "10 years"),
])
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


@pytest.mark.parametrize(("text", "n"), [
    ("512", 512), ("512b", 512), ("512B", 512), ("10k", 10 * 1024), ("10K", 10 * 1024), ("10kb", 10 * 1024),
    ("12m", 12 << 20), ("12M", 12 << 20), ("1.5g", 3 << 29), ("1gb", 1 << 30), ("64MiB", 64 << 20),
    ("64mib", 64 << 20), ("2t", 2 << 40), ("1p", 1 << 50), ("10 k", 10 * 1024), ("12 ", 12), ("0", 0),
    ("1.5", 1),
])
def test_parse_size(text: str, n: int) -> None:
    assert parse_size(text) == n


@pytest.mark.parametrize("text", ["12q", "-1", "", "m", "b", "12ib", "1.2.3", "12mb3", "1kk", "12mibb"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(InvalidArgument, match=r"invalid size: '.*'"):
        parse_size(text)


@pytest.mark.parametrize(("text", "seconds"), [
    ("1h30m", 5400.0), ("500ms", 0.5), ("2s", 2.0), ("1.5h", 5400.0), ("300us", 0.0003), ("300µs", 0.0003),
    ("300μs", 0.0003), ("10ns", 1e-8), ("0", 0.0), ("-1m", -60.0), ("+2s", 2.0), ("1h2m3s", 3723.0),
    (".5s", 0.5), ("1.s", 1.0), ("2m0.25s", 120.25),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["x", "", "10", "1d", "h", "1h 30m", "--1s", "1.2.3s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(InvalidArgument, match=r"invalid duration: '.*'"):
        parse_duration(text)


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


NOW = 1_700_000_000.0


@pytest.mark.parametrize(("text", "expected"), [
    ("10m", NOW - 600), ("1h30m", NOW - 5400), ("500ms", NOW - 0.5), ("-1h", NOW + 3600),
    ("2024-01-02T03:04:05Z", _utc(2024, 1, 2, 3, 4, 5)),
    ("2024-01-02T03:04:05.5Z", _utc(2024, 1, 2, 3, 4, 5) + 0.5),
    ("2024-01-02T03:04:05.5+02:00", _utc(2024, 1, 2, 1, 4, 5) + 0.5),
    ("2024-01-02T03:04:05-01:30", _utc(2024, 1, 2, 4, 34, 5)),
    ("2024-01-02T03:04:05", _utc(2024, 1, 2, 3, 4, 5)),
    ("2024-01-02T03:04", _utc(2024, 1, 2, 3, 4)),
    ("2024-01-02T03", _utc(2024, 1, 2, 3)),
    ("2024-01-02", _utc(2024, 1, 2)),
    ("2024-01-02T03:04Z", _utc(2024, 1, 2, 3, 4)),
    ("1700000000", 1_700_000_000.0), ("1700000000.5", 1_700_000_000.5), ("0", 0.0),
])
def test_parse_timestamp(text: str, expected: float) -> None:
    assert parse_timestamp(text, NOW) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "yesterday", "2024-13-01", "2024-01-02T25:00", "2024-1-2", "12q", "-5",
                                  "2024-01-02 03:04:05", "1700000000.", "2024-01-02T03:04:05.Z"])
def test_parse_timestamp_rejects(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_timestamp(text, NOW)
