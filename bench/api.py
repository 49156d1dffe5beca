"""The Docker Engine API service vs dockerd, with the same docker CLI: ``docker ps`` and
``docker run --rm busybox true`` against sampan's socket (``sampan system service``) and against a private dockerd.

    .venv/bin/python bench/api.py [--runs N] [--no-docker]

Target (issue 9): each at most as slow as against dockerd (ratio <= 1.0). Both engines get the very busybox image
sampan bootstraps; the private dockerd is started as ``bench/containers.py`` starts it (own socket, data-root and
exec-root, no bridge: both run with ``--network none``). Timed runs alternate between the two (in turn
first) after untimed warm-ups; medians are quoted; ``docker ps`` takes a few milliseconds, so it gets four times
the runs. Everything the bench starts is stopped and removed, also on failure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import containers as bench  # bench/containers.py: engines, cleanup and timing helpers


class Service:
    """``sampan system service`` on a private root, reached by the docker CLI through DOCKER_HOST."""

    def __init__(self, sampan: bench.Sampan) -> None:
        self.sock = f"{sampan.base}/api.sock"
        self.log = open(f"{sampan.base}/service.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(sampan.argv("system", "service", "--host", f"unix://{self.sock}"),
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.sock}", "DOCKER_CONFIG": f"{sampan.base}/config"}
        deadline = time.monotonic() + 30
        while subprocess.run([bench.DOCKER, "version"], env=self.env, capture_output=True, check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the service did not start: " + Path(f"{sampan.base}/service.log").read_text())
            time.sleep(0.1)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


def measure(label: str, argv: list[str], envs: dict[str, dict[str, str]], runs: int, warmup: int = 3) -> dict:
    times: dict[str, list[float]] = {name: [] for name in envs}
    names = list(envs)
    for i in range(warmup + runs):
        for name in names if i % 2 == 0 else names[::-1]:  # neither engine always runs just after the other
            elapsed = bench.timed(argv, envs[name])
            if i >= warmup:
                times[name].append(elapsed)
    medians = {name: statistics.median(values) for name, values in times.items()}
    line = f"{label:<34}" + "".join(f"{name} {medians[name]:7.1f} ms   " for name in envs)
    if "dockerd" in medians:
        ratio = medians["sampan"] / medians["dockerd"]
        line += f"ratio {ratio:.2f} ({'ok' if ratio <= 1.0 else 'MISS'}: target <= 1.0)"
    print(line, flush=True)
    return medians


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--no-docker", action="store_true")
    a = parser.parse_args()
    base = tempfile.mkdtemp(prefix="sb", dir="/tmp")
    sampan = service = docker = None
    try:
        sampan = bench.Sampan(base)
        service = Service(sampan)
        envs = {"sampan": service.env}
        if not a.no_docker:
            image_tar = subprocess.run(sampan.argv("save", bench.IMAGE), capture_output=True, check=True).stdout
            docker, why = bench.start_docker(image_tar)
            if docker is None:
                print(why)
            else:
                envs["dockerd"] = docker.env
        print(f"docker CLI {bench.run_cli([bench.DOCKER, '--version']).strip()}; {a.runs} runs each, medians")
        measure("docker ps", [bench.DOCKER, "ps"], envs, a.runs * 4)  # a few ms each: more runs, a steadier median
        measure("docker run --rm busybox true", [bench.DOCKER, "run", "--rm", *bench.NET, bench.IMAGE, "true"], envs,
                a.runs)
        return 0
    finally:
        if service is not None:
            service.close()
        if docker is not None:
            docker.close()
        if sampan is not None:
            # the default bridge and the firewall table the root's containers made, and what an interrupted run left
            subprocess.run(sampan.argv("system", "reset", "-f"), capture_output=True, check=False)
            sampan.close()


if __name__ == "__main__":
    sys.exit(main())
