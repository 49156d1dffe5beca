"""Offline base images: busybox from busybox-static, Debian from debootstrap (a Debian mirror is reachable)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import Sampan


def test_busybox_applets_and_etc(sampan: Sampan) -> None:
    sampan("image", "bootstrap", "busybox", "-t", "bb:test")
    lower = Path(sampan("image", "inspect", "-f", "{{.GraphDriver.Data.LowerDir}}", "bb:test").stdout.strip())
    assert (lower / "etc" / "passwd").read_text().startswith("root:x:0:0:")
    assert os.stat(lower / "tmp").st_mode & 0o7777 == 0o1777
    for applet in ("bin/sh", "bin/ls", "usr/bin/env"):
        assert (lower / applet).stat().st_ino == (lower / "bin" / "busybox").stat().st_ino


def test_busybox_missing_binary_is_clear(sampan: Sampan) -> None:
    r = sampan("image", "bootstrap", "busybox", "--busybox", "/nonexistent", check=False)
    assert r.returncode == 1 and "busybox-static" in r.stderr and r.stderr.count("\n") == 1


@pytest.mark.slow
def test_debian_minbase(sampan: Sampan) -> None:
    image_id = sampan("image", "bootstrap", "debian", "--suite", "bookworm", timeout=900).stdout.strip()
    info = json.loads(sampan("image", "inspect", "debian:bookworm").stdout)[0]
    assert info["Id"] == image_id and info["Config"]["Cmd"] == ["bash"]
    lower = Path(info["GraphDriver"]["Data"]["LowerDir"])
    assert (lower / "etc" / "debian_version").read_text().startswith("12")
    assert (lower / "usr" / "bin" / "apt-get").is_file()
    files = sum(len(f) for _, _, f in os.walk(lower))
    assert files > 3000
    assert info["Size"] > 50_000_000
    assert list((sampan.root / "tmp").iterdir()) == []
