"""Same-page merging (``sampan.engine.containers.page_merging``): told to (``SAMPAN_KSM=1``), the monitor host
offers its memory to KSM, its monitors inherit the offer and really share their identical pages once ksmd runs,
and no container process is ever offered (the marks end at ``execve``); not told to, nothing is offered."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Sampan

NET = ("--network", "none")
KSM = Path("/sys/kernel/mm/ksm")

pytestmark = pytest.mark.skipif(not (KSM / "run").exists(), reason="this kernel has no KSM")


def _mergeable_vmas(pid: int) -> int:
    return sum(1 for line in Path(f"/proc/{pid}/smaps").read_text().splitlines()
               if line.startswith("VmFlags:") and " mg" in line)


def _ksm_stat(pid: int) -> dict[str, str]:
    try:
        lines = Path(f"/proc/{pid}/ksm_stat").read_text().splitlines()
    except FileNotFoundError:
        return {}
    return dict(line.replace(":", "").split(maxsplit=1) for line in lines if line.strip())


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _idle_containers(sampan: Sampan, count: int) -> tuple[list[str], list[tuple[int, int]]]:
    """``count`` idle containers: their ids, and (monitor pid, container pid) each."""
    ids = [sampan("run", "-d", *NET, "busybox", "sleep", "1000").stdout.strip() for _ in range(count)]
    pids = [int(sampan("inspect", "-f", "{{.State.Pid}}", cid).stdout) for cid in ids]
    return ids, [(_parent(pid), pid) for pid in pids]


@pytest.fixture
def containers(sampan: Sampan, busybox: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, int]]]:
    """Three idle containers of a root whose host offers its memory: (monitor pid, container pid) each."""
    monkeypatch.setenv("SAMPAN_KSM", "1")  # in the environment the host is launched with
    ids, pairs = _idle_containers(sampan, 3)
    yield pairs
    sampan("rm", "-f", *ids)


@pytest.fixture
def ksmd() -> Iterator[None]:
    """ksmd running and scanning fast for the test, then exactly as it was (merged pages are not undone: that
    would touch other software's memory too)."""
    names = ("run", "pages_to_scan", "sleep_millisecs")
    before = {name: (KSM / name).read_text().strip() for name in names}
    try:
        (KSM / "pages_to_scan").write_text("5000")
        (KSM / "sleep_millisecs").write_text("10")
        (KSM / "run").write_text("1")
        yield
    finally:
        for name in reversed(names):
            (KSM / name).write_text(before[name])


def test_monitors_are_offered_and_containers_are_not(sampan: Sampan, containers: list[tuple[int, int]]) -> None:
    host = int((sampan.runroot / "monitor-host.pid").read_text())
    assert _mergeable_vmas(host) > 0
    for monitor, container in containers:
        assert _parent(monitor) == 1 and _mergeable_vmas(monitor) > 0  # double-forked from the host
        assert _mergeable_vmas(container) == 0
        assert _ksm_stat(container).get("ksm_merge_any", "no") == "no"
    cid = sampan("ps", "-q").stdout.split()[0]
    shown = sampan("exec", cid, "sh", "-c", "grep -c ' mg' /proc/self/smaps || true").stdout.strip()
    assert shown == "0"  # an exec'd process is never offered either


def test_nothing_is_offered_unless_asked(sampan: Sampan, busybox: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAMPAN_KSM", raising=False)
    ids, pairs = _idle_containers(sampan, 1)
    host = int((sampan.runroot / "monitor-host.pid").read_text())
    assert _mergeable_vmas(host) == 0 and _mergeable_vmas(pairs[0][0]) == 0
    sampan("rm", "-f", *ids)


def test_monitors_share_pages_once_ksmd_runs(containers: list[tuple[int, int]], ksmd: None) -> None:
    deadline = time.monotonic() + 60
    merging: dict[int, int] = {}
    while time.monotonic() < deadline:
        merging = {monitor: int(_ksm_stat(monitor).get("ksm_merging_pages", 0)) for monitor, _ in containers}
        if all(pages >= 100 for pages in merging.values()):
            break
        time.sleep(0.5)
    assert all(pages >= 100 for pages in merging.values()), merging  # each shares >= 400 KB with the others
    for _, container in containers:
        assert int(_ksm_stat(container).get("ksm_merging_pages", 0)) == 0
