"""A private dockerd whose extra runtime "capture" saves the config.json it is given: Docker's own spec for a
``docker run``, the oracle of tests/test_specgen.py.

The capture runtime copies ``<bundle>/config.json`` to ``<out>/<container id>.json`` and then fails
``create``, so no container ever runs (host devices, host namespaces and privileged mode stay harmless) and
each capture costs one failed ``docker run``. The daemon has its own socket, data root and exec root, no
bridge and no iptables rules, and is stopped by its process group, which it was started in, with everything it
mounted.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any

from processes import stop

_WRAPPER = """#!/bin/sh
# Save the bundle's config.json on "create", then fail it; everything else goes to runc.
bundle= id= create=
for arg in "$@"; do
    if [ "$prev" = "--bundle" ] || [ "$prev" = "-b" ]; then bundle=$arg; fi
    [ "$arg" = "create" ] && create=1
    prev=$arg
    id=$arg
done
if [ -n "$create" ] && [ -n "$bundle" ]; then
    cp "$bundle/config.json" "{out}/$id.json.tmp" && mv "{out}/$id.json.tmp" "{out}/$id.json"
    echo "capture: config saved" >&2
    exit 1
fi
exec {runc} "$@"
"""

PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
          "alice:x:1000:1000:Alice:/home/alice:/bin/sh\n"
          "bob:x:1001:100::/home/bob:/bin/sh\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
GROUP = ("root:x:0:\n"
         "users:x:100:alice\n"
         "alice:x:1000:\n"
         "audio:x:29:alice,bob\n"
         "video:x:44:bob\n"
         "nogroup:x:65534:\n")


def image_tar() -> bytes:
    """A tiny root filesystem: no binaries (nothing runs), only what Docker reads to build the spec."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("bin", "etc", "tmp", "home", "home/alice"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, text in (("etc/passwd", PASSWD), ("etc/group", GROUP)):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class CaptureDocker:
    """A private dockerd with the capture runtime: ``capture()`` returns Docker's spec for a run."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.out = base / "out"
        self.out.mkdir(parents=True)
        runc = shutil.which("runc") or "/usr/sbin/runc"
        wrapper = base / "capture-runtime"
        text = _WRAPPER.replace("{out}", str(self.out)).replace("{runc}", runc)
        wrapper.write_text(text)
        wrapper.chmod(0o755)
        sock = base / "docker.sock"
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(base / "config")}
        self.log_path = base / "dockerd.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["dockerd", "--host", f"unix://{sock}", "--data-root", str(base / "data"), "--exec-root",
             str(base / "exec"), "--pidfile", str(base / "docker.pid"), "--bridge", "none",
             "--iptables=false",
             "--ip6tables=false", "--ip-masq=false", "--add-runtime", f"capture={wrapper}"],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while subprocess.run(["docker", "version"], env=self.env, capture_output=True,
                             check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dockerd could not start: " + self.log_path.read_text()[-500:])
            time.sleep(0.2)

    def docker(self, *args: str, input: bytes | None = None,
               check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["docker", *args], env=self.env, input=input, capture_output=True, timeout=60,
                              check=False,
                              stdin=subprocess.DEVNULL if input is None else None)
        result = subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(errors="replace"),
                                             proc.stderr.decode(errors="replace"))
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr}")
        return result

    def import_image(self, ref: str, changes: list[str]) -> dict[str, Any]:
        """``docker import`` the tiny root filesystem with Dockerfile ``changes``; return the image config."""
        args = ["import"]
        for change in changes:
            args += ["-c", change]
        self.docker(*args, "-", ref, input=image_tar())
        return json.loads(self.docker("image", "inspect", "-f", "{{json .Config}}", ref).stdout)

    def capture(self, run_args: list[str], image: str, command: list[str]) -> tuple[str, dict[str, Any]]:
        """Docker's config.json for ``docker run RUN_ARGS IMAGE COMMAND``, and the container ID it had."""
        cidfile = self.base / f"cid-{uuid.uuid4().hex}"
        proc = self.docker("run", "--rm", "--runtime", "capture", "--cidfile", str(cidfile), *run_args, image,
                           *command, check=False)
        try:
            cid = cidfile.read_text().strip()
        except FileNotFoundError:
            raise AssertionError(f"docker run {run_args} failed early: {proc.stderr}") from None
        finally:
            cidfile.unlink(missing_ok=True)
        saved = self.out / f"{cid}.json"
        if not saved.exists():
            raise AssertionError(f"docker run {run_args}: no config captured: {proc.stderr}")
        config = json.loads(saved.read_text())
        saved.unlink()
        self.docker("rm", "-f", cid, check=False)
        return cid, config

    def run_error(self, run_args: list[str], image: str, command: list[str]) -> str:
        """The error ``docker run`` prints for options refused before any runtime is involved."""
        proc = self.docker("run", "--rm", "--runtime", "capture", *run_args, image, *command, check=False)
        assert proc.returncode != 0, f"docker run {run_args} unexpectedly succeeded"
        return proc.stderr.strip()

    def close(self) -> None:
        if self.proc.poll() is None:
            stop(self.proc, 30, group=True)
        self._log.close()
        for mountpoint in self._mounts_below():  # overlays, shm, dockerd's bind of the host netns
            subprocess.run(["umount", mountpoint], capture_output=True, check=False)
        leftover = self._mounts_below()
        for mountpoint in leftover:
            subprocess.run(["umount", "--lazy", mountpoint], capture_output=True, check=False)
        shutil.rmtree(self.base, ignore_errors=True)

    def _mounts_below(self) -> list[str]:
        """Mount points under the daemon's directory, deepest first (mountinfo escapes spaces as \\040)."""
        prefix = str(self.base) + "/"
        points = []
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = line.split()[4].replace("\\040", " ")
                if point.startswith(prefix):
                    points.append(point)
        return sorted(set(points), key=lambda p: p.count("/"), reverse=True)
