"""``sampan system service`` for the API tests: started on a root of its own, ready once a client gets an answer,
and at the end stopped by its pid, its containers, mounts and networks removed and its log free of tracebacks."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import SAMPAN, Sampan, remove_containers, remove_networks
from processes import stop


@contextmanager
def running_service(base: Path, service_args: list[str], answers: Callable[[], bool],
                    busybox_archive: Path | None = None) -> Iterator[Sampan]:
    """The service with ``service_args`` (its ``--host`` and TLS options) on ``base``/root and ``base``/run, with
    busybox loaded when an archive is given; yields once ``answers()`` is true."""
    base.mkdir(parents=True, exist_ok=True)
    runner = Sampan(base / "root", base / "run")
    if busybox_archive is not None:
        runner("load", "-i", str(busybox_archive))
    log_path = base / "service.log"
    try:
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([SAMPAN, "system", "service", *service_args], env=runner.env, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            try:
                deadline = time.monotonic() + 30
                while not answers():
                    assert proc.poll() is None, log_path.read_text()
                    assert time.monotonic() < deadline, "the service did not answer"
                    time.sleep(0.1)
                yield runner
            finally:
                stop(proc, 20)
    finally:
        try:
            remove_containers(runner)
            # the /proc view's server ends when its mount goes
            subprocess.run(["umount", "-l", str(runner.runroot / "procview")], check=False, capture_output=True)
        finally:
            remove_networks(runner)
            text = log_path.read_text(errors="replace") if log_path.exists() else ""
            shutil.rmtree(runner.root, ignore_errors=True)
            shutil.rmtree(runner.runroot, ignore_errors=True)
    assert "Traceback" not in text, text
