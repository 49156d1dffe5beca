"""Dockerfile builds, sampan vs Docker's classic builder (``DOCKER_BUILDKIT=0``): a cold build and a cached rebuild.

    .venv/bin/python bench/build.py [--runs N] [--no-docker]

The reference build (the build issue's): ``FROM busybox``, ``ENV``, ``WORKDIR``, ``COPY`` of 50 small files,
``COPY`` of one 20 MB file, three ``RUN`` steps (one deleting the 20 MB file), ``ARG``, ``LABEL``, ``EXPOSE``,
``CMD``. Both engines build with ``--network none`` (the private dockerd has no bridge).

- cold: ``build --no-cache`` (the base image present, every step executed);
- cached: the same build again with everything cached (``build`` with no change to the context).

The two engines alternate after an untimed warm-up of each; medians and ratios are printed. Targets: cold at most
0.5x Docker's, cached at most 0.5x Docker's. Docker runs in a private dockerd (own socket, data root and exec root,
loaded with the very busybox sampan bootstraps), as ``bench/containers.py`` starts it; everything is removed at
the end, also after a failure or Ctrl-C. ``--no-docker`` times sampan alone.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import containers as bench  # the private dockerd and sampan root helpers

COLD_TARGET, CACHED_TARGET = 0.5, 0.5
DOCKERFILE = """FROM busybox
ENV APP_HOME=/app
WORKDIR /app
COPY small/ ./small/
COPY big.bin ./
RUN cat small/* > all.txt && wc -c all.txt
RUN ls -l big.bin && rm big.bin
RUN echo built > /built
ARG VERSION=1
LABEL org.example.version=$VERSION
EXPOSE 8080
CMD ["sh", "-c", "cat /built"]
"""


def make_context(base: str) -> str:
    ctx = os.path.join(base, "ctx")
    os.makedirs(os.path.join(ctx, "small"))
    for i in range(50):
        Path(ctx, "small", f"f{i:02d}.txt").write_text(f"small file {i}\n" * 20)
    with open(os.path.join(ctx, "big.bin"), "wb") as f:
        f.write(os.urandom(20 * 1024 * 1024))
    Path(ctx, "Dockerfile").write_text(DOCKERFILE)
    return ctx


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-docker", action="store_true")
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix="sampan-bench-build-")
    docker = None
    try:
        ctx = make_context(base)
        with bench.sampan_root("build") as sampan:
            engines: list[bench.Engine] = [sampan]
            if not args.no_docker:
                image_tar = subprocess.run(sampan.argv("save", "busybox"), capture_output=True,
                                           check=True).stdout
                docker, why = bench.start_docker(image_tar)
                if docker is None:
                    print(why)
                else:
                    docker.env["DOCKER_BUILDKIT"] = "0"
                    engines.append(docker)

            def build(engine: bench.Engine, *extra: str) -> float:
                return engine.timed("build", "-q", "--network", "none", "-t", "bench-build", *extra, ctx) / 1000

            results = {}
            for part, extra in (("cold", ("--no-cache",)), ("cached", ())):
                for engine in engines:
                    build(engine, *extra)  # warm-up (and, for "cached", fills the cache)
                times: dict[str, list[float]] = {e.name: [] for e in engines}
                for _ in range(args.runs):
                    for engine in engines:
                        times[engine.name].append(build(engine, *extra))
                results[part] = {name: statistics.median(values) for name, values in times.items()}
            print(f"reference build, {args.runs} runs each, medians (sampan vs Docker's classic builder):")
            for part, target in (("cold", COLD_TARGET), ("cached", CACHED_TARGET)):
                ours = results[part]["sampan"]
                line = f"  {part:<7} sampan {ours:7.3f} s"
                if "docker" in results[part]:
                    theirs = results[part]["docker"]
                    ratio = ours / theirs
                    line += f"   docker {theirs:7.3f} s   ratio {ratio:.2f}x (target <= {target}x: " \
                            f"{'ok' if ratio <= target else 'MISS'})"
                print(line)
            print(sampan("image", "analyze", "bench-build").splitlines()[-1])
    finally:
        if docker is not None:
            docker.close()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
