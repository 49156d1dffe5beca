"""Run ``sampan-runc`` under a Python audit hook that records every code load made after the process left the
host's root: ``python security_audit.py LOG -- sampan-runc-args...``.

The hook is installed before ``sampan`` is imported. It fires in every process the runtime forks (the container's
init before it execs, the ``exec`` helper) and compares ``/`` with the host's root: once they differ (after
``pivot_root``, ``chroot`` or ``setns`` into the container's mount namespace) any import, ``exec`` of code
read from a file, ``dlopen`` or open of a code file (``.py``, ``.pyc``, ``.so``, ``.pth``, ``.zip``) is written
to LOG through an fd opened on the host beforehand, so it lands on the host whatever the process's root is by
then (CVE-2019-14271).
"""

from __future__ import annotations

import os
import sys

_CODE_SUFFIXES = (".py", ".pyc", ".so", ".pth", ".zip")
_EVENTS = {"import", "exec", "ctypes.dlopen", "open"}


def main() -> int:
    log_path, sep, *args = sys.argv[1:]
    assert sep == "--", "usage: security_audit.py LOG -- ARGS..."
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    host_root = os.stat("/")
    host = (host_root.st_dev, host_root.st_ino)
    busy = [False]

    def hook(event: str, payload: tuple) -> None:  # type: ignore[type-arg]
        if event not in _EVENTS or busy[0]:
            return
        busy[0] = True
        try:
            root = os.stat("/")
            if (root.st_dev, root.st_ino) == host:
                return
            if event == "open":
                path = payload[0]
                if not isinstance(path, (str, bytes)) or not os.fsdecode(path).endswith(_CODE_SUFFIXES):
                    return
            if event == "exec" and not str(getattr(payload[0], "co_filename", "")).endswith(_CODE_SUFFIXES):
                return  # code made in memory (dataclasses, namedtuple): nothing loaded from a file
            detail = repr(payload)[:300]
            os.write(log_fd, f"pid {os.getpid()}: {event} {detail}\n".encode(errors="replace"))
        except Exception:  # noqa: BLE001, S110 - an audit hook must never break the process it watches
            pass
        finally:
            busy[0] = False

    sys.addaudithook(hook)
    from sampan.runtime.entry import main as runtime_main

    return runtime_main(args)


if __name__ == "__main__":
    sys.exit(main())
