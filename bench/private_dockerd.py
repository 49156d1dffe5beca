"""A private dockerd for the benchmarks: its own socket, data-root and exec-root, no bridge and no iptables.

So Docker runs beside sampan without touching the host's Docker or firewall; ``stop`` ends it (its process group)
and closes its log. The benchmarks that need more (images loaded, containers removed, mounts undone) do that
around it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from processes import stop  # tests/processes.py: SIGTERM, SIGKILL after a timeout, reaped

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"


class PrivateDockerd:
    def __init__(self, base: str) -> None:
        self.base = base
        os.makedirs(base, exist_ok=True)
        sock = f"{base}/docker.sock"
        self.log = open(f"{base}/dockerd.log", "wb")  # noqa: SIM115 - open for the daemon's life
        self.proc = subprocess.Popen(
            [shutil.which("dockerd") or "dockerd", "--host", f"unix://{sock}", "--data-root", f"{base}/data",
             "--exec-root", f"{base}/exec", "--pidfile", f"{base}/docker.pid", "--bridge", "none",
             "--iptables=false", "--ip6tables=false", "--ip-masq=false"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": f"{base}/config"}
        deadline = time.monotonic() + 60
        while subprocess.run([DOCKER, "version"], env=self.env, capture_output=True, check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("dockerd did not start: " + Path(f"{base}/dockerd.log").read_text()[-500:])
            time.sleep(0.3)

    def stop(self) -> None:
        stop(self.proc, 30, group=True)
        self.log.close()
