"""``sampan-runc run`` vs ``runc run`` of a prepared busybox bundle running ``true`` (target: at most 2x runc).

Both runtimes get the same bundle (runc's default config.json) and their own state root; runs are interleaved
and medians compared. Each run starts after a pause: on cgroup v1 the first attach to a cgroup waits for an RCU grace
period (about 10 ms here) unless another attach happened just before, so back-to-back runs would let whichever
runtime goes second ride on the other's grace period. Run: ``.venv/bin/python bench/runc_run.py [runs]``.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "runtime"))
PAUSE = 0.15  # seconds between runs, so that no run starts inside another's RCU grace period
SAMPAN_RUNC = str(Path(sys.executable).with_name("sampan-runc"))


def main() -> int:
    from conftest import make_rootfs  # the test suite's busybox bundle builder

    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    runc = shutil.which("runc")
    base = Path(tempfile.mkdtemp(prefix="sampan-bench-runc-"))
    try:
        make_rootfs(base / "rootfs")
        subprocess.run(["runc", "spec", "--bundle", str(base)], check=True) if runc else None
        config = json.loads((base / "config.json").read_text()) if runc else None
        if config is None:
            subprocess.run([SAMPAN_RUNC, "spec", "--bundle", str(base)], check=True)
            config = json.loads((base / "config.json").read_text())
        config["process"].update(terminal=False, args=["true"])
        (base / "config.json").write_text(json.dumps(config))
        runtimes = {"sampan-runc": SAMPAN_RUNC} | ({"runc": runc} if runc else {})
        times: dict[str, list[float]] = {name: [] for name in runtimes}
        for i in range(runs + 3):
            for name, binary in runtimes.items():
                time.sleep(PAUSE)
                start = time.perf_counter()
                subprocess.run([binary, "--root", str(base / f"state-{name}"), "run", "--bundle", str(base),
                                f"bench{i}"], check=True, stdin=subprocess.DEVNULL)
                if i >= 3:  # warm-up runs are not counted
                    times[name].append((time.perf_counter() - start) * 1000)
        medians = {name: statistics.median(values) for name, values in times.items()}
        for name, median in medians.items():
            print(f"{name:<12} run true: median {median:6.1f} ms over {runs} runs")
        if "runc" in medians:
            ratio = medians["sampan-runc"] / medians["runc"]
            print(f"sampan-runc/runc = {ratio:.2f} (target <= 2.0) {'OK' if ratio <= 2.0 else 'SLOW'}")
        return 0
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
