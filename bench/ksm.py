"""The kernel's same-page merging (KSM) for benchmarks that measure memory with it running.

sampan offers its monitor host's memory to KSM when told to (``SAMPAN_KSM=1``;
``sampan.engine.containers.page_merging``) and never starts ``ksmd``: that is the host's choice. ``--ksm`` in a
benchmark runs ksmd for the part that measures memory, scanning faster than its default (100 pages per 20 ms
takes minutes per scan of 100 monitors), with sampan's opt-in set, and restores all of it afterwards. Pages
merged meanwhile stay merged: undoing that would touch other software's memory too.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

KSM = "/sys/kernel/mm/ksm/"
KSM_PAGES_TO_SCAN = 1000
SETTLED_SCANS = 4  # merging settles after three full scans (pages that changed early are retried later)


def ksm_setting(name: str) -> str:
    try:
        return Path(KSM + name).read_text().strip()
    except OSError:
        return ""


def describe(forced: bool) -> str:
    if forced:
        return f"ksmd on (--ksm: run=1, pages_to_scan={KSM_PAGES_TO_SCAN} for this part)"
    return f"ksmd {'on' if ksm_setting('run') == '1' else 'off'} (the host's setting)"


@contextlib.contextmanager
def ksm_running() -> Iterator[None]:
    """ksmd running, scanning ``KSM_PAGES_TO_SCAN`` pages per wake-up, and sampan's hosts launched in the block
    offering their memory (``SAMPAN_KSM=1``); then all as it was."""
    if not ksm_setting("run"):
        raise RuntimeError("this kernel has no KSM (/sys/kernel/mm/ksm)")
    before = {name: ksm_setting(name) for name in ("run", "pages_to_scan")}
    opted = os.environ.get("SAMPAN_KSM")
    try:
        Path(KSM + "pages_to_scan").write_text(str(KSM_PAGES_TO_SCAN))
        Path(KSM + "run").write_text("1")
        os.environ["SAMPAN_KSM"] = "1"
        yield
    finally:
        if opted is None:
            os.environ.pop("SAMPAN_KSM", None)
        else:
            os.environ["SAMPAN_KSM"] = opted
        for name in ("pages_to_scan", "run"):
            with contextlib.suppress(OSError):
                Path(KSM + name).write_text(before[name])


def settle(timeout: float = 300.0) -> None:
    """Wait until ksmd has scanned all offered memory ``SETTLED_SCANS`` more times (said when it has not)."""
    target = int(ksm_setting("full_scans") or 0) + SETTLED_SCANS
    deadline = time.monotonic() + timeout
    while int(ksm_setting("full_scans") or 0) < target:
        if time.monotonic() > deadline:
            print(f"  (ksmd did not finish {SETTLED_SCANS} scans in {timeout:.0f} s: merging may not have settled)")
            return
        time.sleep(1)
