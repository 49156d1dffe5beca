"""Benchmark: sampan's layer unpacking against GNU tar extracting the same uncompressed layer.

    .venv/bin/python bench/unpack.py [LAYER.tar] [--runs N] [--workdir DIR] [--drop-caches]

Without LAYER.tar it builds a realistic layer (about 7,000 files in a few hundred directories: mostly small
files, some of 100 KB-1 MB, symlinks and hardlinks, numeric owners). Runs alternate between the two tools so
both see the same machine state (after one untimed warm-up run each). Each run extracts into a new directory
(all are removed at the end), after dirty pages are synced and the tar has been read once, so both start from
a warm page cache; ``--drop-caches`` drops the page cache instead, for cold-cache numbers (needs root, affects
the whole host). GNU tar's time includes its fork/exec (about a millisecond); sampan runs in-process, as the
engine calls it. Prints the median of each and the ratio sampan/tar (the target is <= 1.3).

On ext4, creating files within about half a minute of deleting thousands of others is several times slower
(new inodes skip recently freed ones), so absolute times swing between runs; the runs alternate tools so the
ratio stays fair, but quote numbers from a quiet filesystem.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from sampan.snapshot.unpack import unpack_layer


def build_layer(path: str, files: int = 7000, dirs: int = 300, seed: int = 1) -> None:
    """Write a layer tar shaped like a distro image layer, in the depth-first order real layers have.

    A random tree of directories; each file lands in a random directory; mostly small files (log-normal sizes
    around 2 KB), 3% of 100 KB-1 MB, 4% symlinks (absolute, as distros ship them), 1% hardlinks, 5% owned by
    uid 1000.
    """
    rng = random.Random(seed)
    children: dict[str, list[str]] = {"usr": []}
    for i in range(1, dirs):
        parent = rng.choice(list(children))
        children[f"{parent}/d{i}"] = []
        children[parent].append(f"{parent}/d{i}")
    contents: dict[str, list[int]] = {name: [] for name in children}
    names = list(children)
    for i in range(files):
        contents[rng.choice(names)].append(i)
    mtime = 1_700_000_000
    regular: list[str] = []
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        stack = ["usr"]
        while stack:
            directory = stack.pop()
            tar.addfile(_info(directory, tarfile.DIRTYPE, 0o755, mtime))
            for i in contents[directory]:
                _add_file(tar, rng, directory, i, regular, mtime)
            stack.extend(sorted(children[directory], reverse=True))


def _add_file(tar: tarfile.TarFile, rng: random.Random, directory: str, i: int, regular: list[str],
              mtime: int) -> None:
    roll = rng.random()
    if roll < 0.04 and regular:
        info = _info(f"{directory}/l{i}", tarfile.SYMTYPE, 0o777, mtime)
        info.linkname = "/" + rng.choice(regular)
        tar.addfile(info)
    elif roll < 0.05 and regular:
        info = _info(f"{directory}/h{i}", tarfile.LNKTYPE, 0o644, mtime)
        info.linkname = rng.choice(regular)
        tar.addfile(info)
    else:
        size = rng.randint(100_000, 1_000_000) if roll > 0.97 else int(rng.lognormvariate(7.5, 1.3))
        info = _info(f"{directory}/f{i}.so", tarfile.REGTYPE, rng.choice((0o644, 0o755)), mtime)
        info.size = size
        if rng.random() < 0.05:
            info.uid = info.gid = 1000
        tar.addfile(info, io.BytesIO(rng.randbytes(size)))
        regular.append(info.name)


def _info(name: str, kind: bytes, mode: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = mtime
    return info


def prepare(layer: str, out: str, drop_caches: bool) -> None:
    """Same starting state for every run: a new output directory, nothing dirty, the tar cached (or nothing).

    Outputs are not deleted between runs: ext4 skips recently deleted inodes when allocating new ones, so a run
    right after removing 7,000 files spends most of its time scanning inode tables (we saw the same tar take
    0.14 s or 1.3 s depending on how recently the previous output was removed).
    """
    os.sync()
    if drop_caches:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    else:
        with open(layer, "rb") as f:
            while f.read(1 << 20):
                pass
    os.mkdir(out)


def run_tar(layer: str, out: str) -> float:
    start = time.perf_counter()
    subprocess.run(["tar", "-xf", layer, "-C", out, "--numeric-owner"], check=True)
    return time.perf_counter() - start


def run_sampan(layer: str, out: str) -> float:
    start = time.perf_counter()
    with open(layer, "rb", buffering=0) as stream:
        unpack_layer(stream, out)
    return time.perf_counter() - start


def measure(layer: str, work: str, runs: int, drop_caches: bool) -> dict[str, list[float]]:
    """Alternate the tools run by run (after one untimed warm-up each), every run into a new directory."""
    runners = [("tar", run_tar), ("sampan", run_sampan)]
    times: dict[str, list[float]] = {"tar": [], "sampan": []}
    for i in range(-1, runs):
        for name, runner in runners if i % 2 == 0 else runners[::-1]:
            out = os.path.join(work, f"out-{name}-{i + 1}")
            prepare(layer, out, drop_caches)
            elapsed = runner(layer, out)
            if i >= 0:
                times[name].append(elapsed)
    return times


def describe(layer: str) -> str:
    with tarfile.open(layer) as tar:
        members = tar.getmembers()
    return (f"layer: {os.path.getsize(layer) / 1e6:.1f} MB, {len(members)} entries "
            f"({sum(m.isfile() for m in members)} files, {sum(m.isdir() for m in members)} dirs, "
            f"{sum(m.issym() for m in members)} symlinks, {sum(m.islnk() for m in members)} hardlinks)")


def report(times: dict[str, list[float]]) -> None:
    for name, values in times.items():
        print(f"{name:7s} median {statistics.median(values) * 1000:7.1f} ms   runs "
              + " ".join(f"{v * 1000:.1f}" for v in values))
    # Per-run ratios as well: when the machine drifts between fast and slow phases during the runs (page
    # cache and inode allocation state do), each adjacent pair still compares like with like.
    pairs = [s / t for s, t in zip(times["sampan"], times["tar"])]
    ratio = statistics.median(times["sampan"]) / statistics.median(times["tar"])
    print(f"sampan/tar = {ratio:.2f} (ratio of medians); median of per-run ratios {statistics.median(pairs):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("layer", nargs="?", help="an uncompressed layer tar (default: build one)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--drop-caches", action="store_true")
    parser.add_argument("--workdir", help="where to build and extract (default: the system temp directory); "
                                          "pick the filesystem you want measured")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sampan-bench-", dir=args.workdir) as work:
        layer = args.layer
        if layer is None:
            layer = os.path.join(work, "layer.tar")
            build_layer(layer)
        print(describe(layer))
        times = measure(layer, work, args.runs, args.drop_caches)
    report(times)


if __name__ == "__main__":
    main()
