"""CLI responsiveness: ``sampan --version`` (target < 60 ms) and ``sampan images`` with 200 images (< 150 ms).

Medians over repeated runs of the real console script, in a private storage root. The 200 images are distinct
one-file imports made through the library (setup cost is not what is measured).
Run: ``.venv/bin/python bench/cli_startup.py``.
"""

from __future__ import annotations

import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

SAMPAN = str(Path(sys.executable).with_name("sampan"))
RUNS = 21


def median_ms(argv: list[str], env: dict[str, str]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def make_images(root: str, count: int) -> None:
    from sampan.engine.context import Engine
    from sampan.engine.image_import import import_image

    engine = Engine(root, root + "/run")
    for i in range(count):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            data = f"image {i}\n".encode()
            info = tarfile.TarInfo(f"file{i}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        buf.seek(0)
        import_image(engine, buf, reference=f"bench/img{i % 50}:t{i}")
    engine.close()


def main() -> int:
    base = tempfile.mkdtemp(prefix="sampan-bench-")
    env = {**os.environ, "SAMPAN_ROOT": base + "/root", "SAMPAN_RUNROOT": base + "/run"}
    try:
        version = median_ms([SAMPAN, "--version"], env)
        python = median_ms([sys.executable, "-c", "pass"], env)
        make_images(base + "/root", 200)
        images = median_ms([SAMPAN, "images"], env)
        rows = subprocess.run([SAMPAN, "images", "-q"], env=env, capture_output=True, text=True).stdout.split()
        assert len(rows) == 200, len(rows)
        print(f"bare python start:            {python:6.1f} ms (for reference)")
        print(f"sampan --version:             {version:6.1f} ms (target < 60 ms)  {'OK' if version < 60 else 'SLOW'}")
        print(f"sampan images (200 images):   {images:6.1f} ms (target < 150 ms) {'OK' if images < 150 else 'SLOW'}")
        return 0 if version < 60 and images < 150 else 1
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
