"""``image bootstrap``: real base images built offline from Debian packages, so nothing needs a public registry.

busybox: Debian's static ``busybox`` binary plus a hard link per applet, a minimal ``/etc``, written as a
deterministic tar (sorted, fixed times) so the same binary always gives the same image ID. debian: a
``debootstrap --variant=minbase`` tree, archived by GNU tar with sorted names and numeric owners.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from typing import BinaryIO

from sampan.engine.context import Engine
from sampan.engine.image_import import import_image
from sampan.engine.image_store import StoredImage
from sampan.errors import NotFound, SampanError
from sampan.image.config import format_time

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
_BUSYBOX_DIRS = {"bin": 0o755, "dev": 0o755, "etc": 0o755, "home": 0o755, "proc": 0o755, "root": 0o700,
                 "sbin": 0o755, "sys": 0o755, "tmp": 0o1777, "usr": 0o755, "usr/bin": 0o755,
                 "usr/sbin": 0o755, "var": 0o755, "var/spool": 0o755, "var/spool/mail": 0o755,
                 "var/www": 0o755}
_ETC_FILES = {
    "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
                  b"nobody:x:65534:65534:nobody:/home:/bin/false\n",
    "etc/group": b"root:x:0:\ndaemon:x:1:\nnogroup:x:65534:\n",
    "etc/hosts": b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    "etc/nsswitch.conf": b"hosts: files dns\n",
}


def _busybox_tar(binary: str, mtime: int) -> bytes:
    applets = subprocess.run([binary, "--list-full"], capture_output=True, text=True, check=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def entry(name: str, kind: bytes, mode: int, **extra: object) -> tarfile.TarInfo:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = kind, mode, mtime
            for key, value in extra.items():
                setattr(info, key, value)
            return info

        for name, mode in sorted(_BUSYBOX_DIRS.items()):
            tar.addfile(entry(name, tarfile.DIRTYPE, mode))
        with open(binary, "rb") as f:
            tar.addfile(entry("bin/busybox", tarfile.REGTYPE, 0o755, size=os.fstat(f.fileno()).st_size), f)
        for applet in sorted(set(applets) - {"bin/busybox"}):
            if applet.split("/")[0] in ("bin", "sbin", "usr"):
                tar.addfile(entry(applet, tarfile.LNKTYPE, 0o755, linkname="bin/busybox"))
        for name, data in sorted(_ETC_FILES.items()):
            tar.addfile(entry(name, tarfile.REGTYPE, 0o644, size=len(data)), io.BytesIO(data))
    return buf.getvalue()


def busybox(engine: Engine, tag: str = "busybox:latest", binary: str = "/bin/busybox") -> StoredImage:
    """A busybox image from Debian's ``busybox-static``; reproducible for a given binary."""
    if not os.path.isfile(binary):
        raise NotFound(f"{binary} not found: install Debian's busybox-static package")
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH") or os.stat(binary).st_mtime)
    layer = _busybox_tar(binary, mtime)
    return import_image(engine, io.BytesIO(layer), reference=tag, created=mtime,
                        message="sampan image bootstrap busybox",
                        container={"Env": [PATH_ENV], "Cmd": ["sh"]},
                        history_extra=[{"created": format_time(mtime), "created_by": '/bin/sh -c #(nop)  CMD ["sh"]',
                                        "empty_layer": True}])


def debian(engine: Engine, suite: str = "bookworm", tag: str | None = None, mirror: str | None = None,
           variant: str = "minbase") -> StoredImage:
    """A Debian image made by ``debootstrap`` (needs the debootstrap package and a reachable mirror)."""
    if shutil.which("debootstrap") is None:
        raise NotFound("debootstrap not found: install Debian's debootstrap package")
    engine.layout.tmp.mkdir(parents=True, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix=f"debootstrap-{os.getpid()}-", dir=engine.layout.tmp)
    target = os.path.join(workdir, "rootfs")
    try:
        run = subprocess.run(["debootstrap", f"--variant={variant}", suite, target, mirror or DEFAULT_MIRROR],
                             capture_output=True, text=True)
        if run.returncode != 0:
            last = (run.stderr or run.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise SampanError(f"debootstrap {suite} failed (exit {run.returncode}): {last[0]}")
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            _empty_dir(os.path.join(target, cache))
        mtime = int(os.environ.get("SOURCE_DATE_EPOCH") or 0) or None
        return _import_tree(engine, target, tag or f"debian:{suite}", mtime,
                            f"sampan image bootstrap debian --suite {suite}")
    finally:
        subprocess.run(["umount", "-R", "-l", os.path.join(target, "proc")], capture_output=True)
        subprocess.run(["umount", "-R", "-l", os.path.join(target, "sys")], capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)


def _empty_dir(path: str) -> None:
    if os.path.isdir(path):
        for entry in os.scandir(path):
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)


def _import_tree(engine: Engine, tree: str, tag: str, mtime: int | None, message: str) -> StoredImage:
    cmd = ["tar", "--sort=name", "--numeric-owner", "--xattrs", "--xattrs-include=security.capability",
           "-C", tree, "-cf", "-", "."]
    if mtime is not None:
        cmd[1:1] = [f"--mtime=@{mtime}", "--clamp-mtime"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        stream: BinaryIO = proc.stdout
        stored = import_image(engine, stream, reference=tag, message=message, created=mtime,
                              container={"Env": [PATH_ENV], "Cmd": ["bash"]})
    if proc.returncode != 0:
        raise SampanError(f"archiving the {tag} root filesystem failed (tar exit {proc.returncode})")
    return stored
