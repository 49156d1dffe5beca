"""``build``'s fully cached rebuild: it loads only what a cache hit needs (the benchmark's figure is mostly
start-up), moves tags that name another image, leaves tags that already name it alone, and still misses on a
content change that keeps a file's size and mtime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import SAMPAN, Sampan

# Modules a cache hit must not import: the step machinery (containers, snapshots, tar, temporary files, mounts)
# and what costs start-up time without being used (dataclasses, ctypes, uuid, the config parser).
NOT_ON_THE_CACHED_PATH = ("tarfile", "tempfile", "ctypes", "dataclasses", "uuid", "sampan.engine.containers",
                          "sampan.snapshot", "sampan.image.config", "sampan.build.mounts", "sampan.engine.pull")


def _imports(sampan: Sampan, *args: str) -> tuple[str, set[str]]:
    """stdout of one ``sampan`` run and the modules it imported (``-X importtime``)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", SAMPAN, *args], capture_output=True, text=True,
                          env=sampan.env, stdin=subprocess.DEVNULL, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    modules = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    return proc.stdout, modules


def _tag_events(sampan: Sampan) -> list[str]:
    lines = (sampan.root / "events.log").read_text().splitlines()
    return [event["Actor"]["Attributes"]["name"] for event in map(json.loads, lines) if event["Action"] == "tag"]


def test_cached_rebuild_is_lean_and_still_content_keyed(sampan: Sampan, busybox: str, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "dir").mkdir(parents=True)
    (ctx / "dir" / "a.txt").write_text("alpha")
    (ctx / "one.txt").write_text("one")
    (ctx / "Dockerfile").write_text("FROM busybox\nENV A=1\nWORKDIR /w\nCOPY dir/ ./dir/\nCOPY one.txt ./\n"
                                    "RUN cat dir/a.txt one.txt > both\nLABEL k=v\nCMD [\"cat\", \"both\"]\n")
    first = sampan("build", "-t", "lean", "-t", "lean:2", str(ctx)).stdout
    built = first.split("Successfully built ")[1].split()[0]
    sampan("tag", "busybox", "lean:2")  # the rebuild must move it back
    events_before = len(_tag_events(sampan))

    out, modules = _imports(sampan, "build", "-t", "lean", "-t", "lean:2", str(ctx))
    assert out.count(" ---> Using cache") == 7 and f"Successfully built {built}" in out
    assert "Successfully tagged lean:latest\nSuccessfully tagged lean:2\n" in out
    loaded = sorted(name for name in modules for heavy in NOT_ON_THE_CACHED_PATH
                    if name == heavy or name.startswith(heavy + "."))
    assert loaded == []
    for tag in ("lean", "lean:2"):
        assert sampan("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()[7:].startswith(built)
    assert _tag_events(sampan)[events_before:] == ["lean:latest", "lean:2"]  # as Docker: an event per tag

    # Same size, mtime put back: the memo of digests is keyed by ctime and inode too, so this is a miss.
    target = ctx / "one.txt"
    st = target.stat()
    target.write_text("two")
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    changed = sampan("build", "-t", "lean", str(ctx)).stdout
    assert changed.count(" ---> Using cache") == 3  # ENV, WORKDIR, COPY dir/; then COPY one.txt runs
    assert sampan("run", "--rm", "lean").stdout == "alphatwo"
    # A file added to a copied directory is a miss too (the walk lists it; nothing is remembered by directory).
    (ctx / "dir" / "b.txt").write_text("beta")
    again = sampan("build", "-t", "lean", str(ctx)).stdout
    assert again.count(" ---> Using cache") == 2
