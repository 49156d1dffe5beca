"""Pull from a loopback registry, sampan vs Docker: cold pull of a multi-layer image, and re-pull.

    .venv/bin/python bench/pull.py [--runs N] [--workdir DIR] [--base-tar TAR] [--no-docker] [--settle S]

The reference image (the registries issue's): a debootstrap bookworm minbase base layer (``sampan image bootstrap
debian``, or ``--base-tar``), a layer with the host's Python standard library (Debian's ``/usr/lib/python3.X``
without site-packages, tests and caches), one with ``/usr/share/doc``, and a one-file layer (1 MB), each
gzip-compressed (ISA-L level 3). It is built once into ``--workdir`` (default
``/var/tmp/sampan-bench-pull``) and reused by later runs. Debian's ``docker-registry`` serves it on a free loopback
port over plain HTTP; sampan pushes it with its own upload primitives.

Each round times, alternating the engines: a cold ``sampan pull -q`` into a new storage root (the CLI, start-up
included), a re-pull with everything present, a cold ``docker pull -q`` against a new private dockerd (own socket
and a new data root, as the test suite's ``docker`` fixture; ``127.0.0.0/8`` registries are insecure for dockerd
by default), and a Docker re-pull. A first round warms both up, untimed. Nothing is deleted until every round is
done, because ext4 creates files several times slower for a while after deleting many (which would punish whichever
engine runs after a deletion); before each cold pull, dirty pages are synced and the machine left to settle
(``--settle`` seconds).
GNU ``tar xzf`` of the same blobs, one after the other, is shown as a reference. Prints medians and ratios.
Targets: cold pull at most 0.35x Docker's time; re-pull under 0.2 s.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from private_dockerd import DOCKER, PrivateDockerd  # bench/private_dockerd.py

SAMPAN = str(Path(sys.executable).with_name("sampan"))
REGISTRY_BIN = "/usr/bin/docker-registry"
REPO = "bench/reference"
COLD_TARGET, REPULL_TARGET = 0.35, 0.2


def sh(argv: list[str], env: dict[str, str] | None = None, input: bytes | None = None) -> str:
    proc = subprocess.run(argv, env=env, input=input, capture_output=True, check=False,
                          stdin=None if input is not None else subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:5])} exited {proc.returncode}: {proc.stderr.decode()[-600:]}")
    return proc.stdout.decode()


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    sh(argv, env)
    return time.perf_counter() - start


def settle(seconds: float) -> None:
    os.sync()
    time.sleep(seconds)


# ---------------------------------------------------------------------------------------------- the image


def _gzip_file(src: Path, dst: Path) -> tuple[str, str, int]:
    """(diff_id, blob digest, blob size) of a tar compressed into ``dst``."""
    from isal import igzip

    raw = hashlib.sha256()
    with open(src, "rb") as f, igzip.open(dst, "wb", compresslevel=3) as out:
        while chunk := f.read(1 << 20):
            raw.update(chunk)
            out.write(chunk)
    blob = hashlib.sha256()
    with open(dst, "rb") as f:
        while chunk := f.read(1 << 20):
            blob.update(chunk)
    return "sha256:" + raw.hexdigest(), "sha256:" + blob.hexdigest(), dst.stat().st_size


def _base_tar(work: Path, base_tar: str | None) -> Path:
    if base_tar:
        return Path(base_tar)
    out = work / "base.tar"
    if out.exists():
        return out
    print("building the base layer: sampan image bootstrap debian (debootstrap, a minute or two)...", flush=True)
    root = Path(tempfile.mkdtemp(prefix="bootstrap-", dir=work))
    try:
        sh([SAMPAN, "--root", str(root / "root"), "--runroot", str(root / "run"), "image", "bootstrap", "debian",
            "-t", "bench-base:latest"])
        from sampan.engine import images
        from sampan.engine.context import Engine
        from sampan.image.compression import open_decompressed
        from sampan.store import images as records

        with Engine(str(root / "root"), str(root / "run"), check=False) as engine:
            image_id = images.resolve(engine, "bench-base:latest")
            [layer] = records.layers_of(engine.db.conn, image_id)
            with engine.content.open(layer["blob_digest"]) as raw, open_decompressed(raw) as stream, \
                    open(out, "wb") as f:
                shutil.copyfileobj(stream, f, 1 << 20)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


def build_image(work: Path, base_tar: str | None) -> dict[str, object]:
    """The reference image's blobs in ``work`` (reused when already there) and its manifest/config."""
    manifest_path = work / "image.json"
    if manifest_path.exists() and base_tar is None:
        return json.loads(manifest_path.read_text())
    work.mkdir(parents=True, exist_ok=True)
    tars = [_base_tar(work, base_tar)]
    debian_stdlib = sorted(Path("/usr/lib").glob("python3.[0-9]*"))
    stdlib = debian_stdlib[-1] if debian_stdlib else Path(sysconfig.get_paths()["stdlib"]).resolve()
    excludes = ["--exclude=site-packages", "--exclude=dist-packages", "--exclude=test", "--exclude=__pycache__"]
    for name, path, extra in (("python", stdlib, excludes), ("doc", Path("/usr/share/doc"), [])):
        out = work / f"{name}.tar"
        sh(["tar", "-C", "/", "--numeric-owner", *extra, "-cf", str(out), str(path.relative_to("/"))])
        tars.append(out)
    one = work / "onefile"
    one.mkdir(exist_ok=True)
    (one / "blob.bin").write_bytes(os.urandom(1 << 20))
    sh(["tar", "-C", str(one), "--numeric-owner", "-cf", str(work / "one.tar"), "blob.bin"])
    tars.append(work / "one.tar")
    layers, diff_ids = [], []
    for tar in tars:
        blob = work / (tar.stem + ".tar.gz")
        diff_id, digest, size = _gzip_file(tar, blob)
        diff_ids.append(diff_id)
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size,
                       "file": str(blob)})
    from sampan.image.config import host_architecture

    config = json.dumps({"architecture": host_architecture(), "os": "linux", "created": "2024-01-01T00:00:00Z",
                         "config": {"Cmd": ["/bin/bash"], "Env": ["PATH=/usr/bin:/bin"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids},
                         "history": [{"created": "2024-01-01T00:00:00Z"} for _ in layers]}).encode()
    image = {"config": config.decode(), "layers": layers}
    manifest_path.write_text(json.dumps(image))
    return image


# ---------------------------------------------------------------------------------------------- peers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def registry(work: Path) -> Iterator[str]:
    port = free_port()
    base = Path(tempfile.mkdtemp(prefix="registry-", dir=work))
    (base / "config.yml").write_text(
        f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {base / 'data'}\nhttp:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen([REGISTRY_BIN, "serve", str(base / "config.yml")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("docker-registry did not start") from None
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)


def push(host: str, image: dict[str, object]) -> str:
    from sampan.registry.client import RegistryClient

    client = RegistryClient(host)
    try:
        for layer in image["layers"]:  # type: ignore[attr-defined]
            with open(layer["file"], "rb") as f:
                client.upload_blob(REPO, layer["digest"], layer["size"], f)
        config = image["config"].encode()  # type: ignore[attr-defined]
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        client.upload_blob(REPO, config_digest, len(config), config)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": config_digest, "size": len(config)},
                               "layers": [{k: v for k, v in layer.items() if k != "file"}
                                          for layer in image["layers"]]}).encode()  # type: ignore[attr-defined]
        client.put_manifest(REPO, "latest", manifest, "application/vnd.oci.image.manifest.v1+json")
    finally:
        client.close()
    return f"{host}/{REPO}:latest"


class Dockerd:
    def __init__(self, base: str) -> None:
        self.base = base
        self.daemon = PrivateDockerd(base)
        self.env = self.daemon.env

    def __call__(self, *args: str) -> str:
        return sh([DOCKER, *args], self.env)

    def timed(self, *args: str) -> float:
        return timed([DOCKER, *args], self.env)

    def close(self, remove: bool = True) -> None:
        self.daemon.stop()
        subprocess.run(["umount", "-R", f"{self.base}/data"], capture_output=True, check=False)
        if remove:
            shutil.rmtree(self.base, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- runs


def tar_baseline(scratch: Path, image: dict[str, object]) -> float:
    target = scratch / "tar"
    start = time.perf_counter()
    for i, layer in enumerate(image["layers"]):  # type: ignore[attr-defined]
        (target / str(i)).mkdir(parents=True)
        sh(["tar", "-C", str(target / str(i)), "--numeric-owner", "-xzf", layer["file"]])
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", default="/var/tmp/sampan-bench-pull")
    parser.add_argument("--base-tar", help="an uncompressed base layer tar instead of bootstrapping one")
    parser.add_argument("--no-docker", action="store_true")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to wait after deleting a cold pull")
    args = parser.parse_args()
    if not os.path.exists(REGISTRY_BIN):
        print("docker-registry is not installed: nothing to pull from", file=sys.stderr)
        return 1
    work = Path(args.workdir)
    image = build_image(work, args.base_tar)
    compressed = sum(layer["size"] for layer in image["layers"])  # type: ignore[attr-defined]
    print(f"reference image: {len(image['layers'])} layers, {compressed / 1e6:.0f} MB compressed")  # type: ignore[arg-type]
    note = ""
    if args.no_docker:
        note = "Docker skipped (--no-docker)"
    elif shutil.which("dockerd") is None or not os.path.exists(DOCKER):
        note = "dockerd/docker not installed: Docker skipped"
    elif os.path.exists("/sys/class/net/docker0"):
        note = "a docker0 bridge exists (a private dockerd with --bridge none would delete it): Docker skipped"
    times: dict[str, list[float]] = {"sampan cold": [], "sampan re-pull": [], "docker cold": [],
                                     "docker re-pull": []}
    env = {**os.environ, "SAMPAN_CONFIG_DIR": str(work / "sampan-config")}
    scratch = Path(tempfile.mkdtemp(prefix="runs-", dir=work))
    try:
        with registry(work) as host:
            ref = push(host, image)
            tar_time = tar_baseline(scratch, image)
            for round_ in range(-1, args.runs):  # round 0 (-1 here) warms both up, untimed
                settle(args.settle)
                root = scratch / f"sampan-{round_ + 1}"
                argv = [SAMPAN, "--root", str(root / "root"), "--runroot", str(root / "run"), "pull", "-q", ref]
                cold = timed(argv, env)
                repull = timed(argv, env)
                if round_ >= 0:
                    times["sampan cold"].append(cold)
                    times["sampan re-pull"].append(repull)
                if not note:
                    docker = Dockerd(str(scratch / f"docker-{round_ + 1}"))  # a fresh data root: a cold pull
                    try:
                        settle(args.settle)
                        cold = docker.timed("pull", "-q", ref)
                        repull = docker.timed("pull", "-q", ref)
                    finally:
                        docker.close(remove=False)
                    if round_ >= 0:
                        times["docker cold"].append(cold)
                        times["docker re-pull"].append(repull)
                if round_ >= 0:
                    line = ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items() if v)
                    print(f"  round {round_ + 1}: {line}", flush=True)
    finally:
        for path in scratch.glob("docker-*/data"):
            subprocess.run(["umount", "-R", str(path)], capture_output=True, check=False)
        shutil.rmtree(scratch, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items() if v}
    print(f"\nmedians of {args.runs} runs:")
    print(f"  sequential tar xzf of the blobs:  {tar_time:.2f}s (reference)")
    for key, value in med.items():
        print(f"  {key:<16} {value:.3f}s")
    if "docker cold" in med:
        ratio = med["sampan cold"] / med["docker cold"]
        print(f"  cold pull ratio sampan/docker: {ratio:.2f}x (target <= {COLD_TARGET}x: "
              f"{'ok' if ratio <= COLD_TARGET else 'MISS'})")
        print(f"  re-pull ratio sampan/docker: {med['sampan re-pull'] / med['docker re-pull']:.2f}x")
    else:
        print(f"  {note}")
    repull = med["sampan re-pull"]
    print(f"  sampan re-pull {repull:.3f}s (target < {REPULL_TARGET}s: {'ok' if repull < REPULL_TARGET else 'MISS'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
