"""Shared fixtures: a private storage root per test, a CLI runner, and a busybox image built offline once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SAMPAN = str(Path(sys.executable).with_name("sampan"))


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Sampan:
    """Runs the real ``sampan`` console script against one private root."""

    root: Path
    runroot: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SAMPAN_ROOT": str(self.root), "SAMPAN_RUNROOT": str(self.runroot)}

    def __call__(self, *args: str, input: bytes | str | None = None, check: bool = True,
                 timeout: float = 120) -> Result:
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run([SAMPAN, *args], input=data, capture_output=True, env=self.env, timeout=timeout,
                              stdin=subprocess.DEVNULL if data is None else None)
        result = Result(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))
        if check and proc.returncode != 0:
            raise AssertionError(f"sampan {' '.join(args)} failed ({proc.returncode}): {result.stderr}")
        return result

    def engine(self):  # noqa: ANN201 - sampan.Engine, imported lazily
        from sampan.engine.context import Engine

        return Engine(str(self.root), str(self.runroot))


@pytest.fixture
def sampan(tmp_path: Path) -> Iterator[Sampan]:
    runner = Sampan(tmp_path / "root", tmp_path / "run")
    yield runner
    shutil.rmtree(tmp_path / "root", ignore_errors=True)
    shutil.rmtree(tmp_path / "run", ignore_errors=True)


@pytest.fixture(scope="session")
def busybox_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A docker-archive of the bootstrapped busybox image, made once per session in its own root."""
    base = tmp_path_factory.mktemp("busybox")
    runner = Sampan(base / "root", base / "run")
    runner("image", "bootstrap", "busybox")
    archive = base / "busybox.tar"
    runner("save", "-o", str(archive), "busybox:latest")
    shutil.rmtree(base / "root")
    return archive


@pytest.fixture
def busybox(sampan: Sampan, busybox_archive: Path) -> str:
    """Load busybox into the test's root; returns its image ID."""
    sampan("load", "-i", str(busybox_archive))
    return sampan("image", "inspect", "--format", "{{.Id}}", "busybox").stdout.strip()


def store_listing(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under a root with (mode, size): to prove that failures leave nothing behind."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            out[os.path.relpath(path, root)] = (st.st_mode, st.st_size)
    return out
