"""The Docker Engine API service vs dockerd, with the same docker CLI: ``docker ps`` and
``docker run --rm busybox true`` against sampan's socket (``sampan system service``) and against a private dockerd.

    .venv/bin/python bench/api.py [--runs N] [--no-docker]

Target (issue 9): each at most as slow as against dockerd (ratio <= 1.0). Both engines get the very busybox image
sampan bootstraps; the private dockerd is started as ``bench/containers.py`` starts it (own socket, data-root and
exec-root, no bridge: both run with ``--network none``). Timed runs alternate between the two (in turn
first) after untimed warm-ups; medians are quoted; ``docker ps`` takes a few milliseconds, so it gets ten times
the runs. Everything the bench starts is stopped and removed, also on failure.

Two more lines explain the ``docker ps`` figure. The service's own part: one connection with the ``HEAD /_ping``
and ``GET /containers/json`` that ``docker ps`` sends, from a raw client, in microseconds. And ``docker ps`` with
the CLI pinned to one API version for both engines (``DOCKER_API_VERSION``, dockerd's), as context: the CLI
negotiates the highest version both sides speak, 1.41 with Debian's dockerd 20.10 and 1.45 with sampan. The CLI
itself spends about 9 ms of CPU on ``docker ps``, so its ratio moves by about 1% from run to run.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import containers as bench  # bench/containers.py: engines, cleanup and timing helpers
from private_dockerd import stop


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
        stop(self.proc, 20)
        self.log.close()


def measure(label: str, argv: list[str], envs: dict[str, dict[str, str]], runs: int, warmup: int = 3,
            target: bool = True) -> dict:
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
        line += f"ratio {ratio:.3f}" + (f" ({'ok' if ratio <= 1.0 else 'MISS'}: target <= 1.0)" if target else
                                         " (context, not the target: see the docstring)")
    print(line, flush=True)
    return medians


PAIR = (b"HEAD /_ping HTTP/1.1\r\nHost: api.moby.localhost\r\n\r\n",
        b"GET /v{version}/containers/json HTTP/1.1\r\nHost: api.moby.localhost\r\n\r\n")


def pair_us(path: str, version: str, runs: int = 2000) -> float:
    """Microseconds for a connection carrying docker ps's two requests, each answer read in full."""
    def once() -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(path)
            for request in (PAIR[0], PAIR[1].replace(b"{version}", version.encode())):
                sock.sendall(request)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += sock.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = 0 if request.startswith(b"HEAD") else int(
                    head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                while len(body) < length:
                    body += sock.recv(65536)
    for _ in range(runs // 10):
        once()
    started = time.perf_counter()
    for _ in range(runs):
        once()
    return (time.perf_counter() - started) / runs * 1e6


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
        measure("docker ps", [bench.DOCKER, "ps"], envs, a.runs * 10)  # a few ms each: more runs, a steadier median
        if "dockerd" in envs:
            versions = {name: bench.run_cli([bench.DOCKER, "version", "--format", "{{.Server.APIVersion}}"],
                                            env).strip() for name, env in envs.items()}
            pinned = min(versions.values(), key=lambda v: tuple(int(n) for n in v.split(".")))
            sockets = {name: env["DOCKER_HOST"].removeprefix("unix://") for name, env in envs.items()}
            print(f"{'service part of docker ps (raw)':<34}" + "".join(
                f"{name} {pair_us(sockets[name], versions[name]):7.1f} us   " for name in envs), flush=True)
            measure(f"docker ps (both at API {pinned})", [bench.DOCKER, "ps"],
                    {name: {**env, "DOCKER_API_VERSION": pinned} for name, env in envs.items()}, a.runs * 10,
                    target=False)
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
