"""Which sampan code is running, cheaply: to never let a long-lived process serve a caller of other code.

The warm processes of a run-time root (``engine.containers.monitor_host``) outlive the command that started them.
After an upgrade, or an edit of an editable install, they would run the old code for new callers; so each
request carries the caller's identity and a host of another one refuses it and exits. The identity is the
version and the newest modification time of the package's modules: about 200 ``stat`` calls, well under a
millisecond, with nothing imported.
"""

from __future__ import annotations

import os

import sampan

_identity: str | None = None


def identity() -> str:
    """Computed once per process: a long-lived one runs the code it loaded, whatever is on disk later (and the
    workers and monitors a host forks inherit its value instead of scanning again)."""
    global _identity
    if _identity is None:
        _identity = _scan()
    return _identity


def _scan() -> str:
    base = os.path.dirname(sampan.__file__)
    newest = 0
    pending = [base]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.name.endswith(".py"):
                    newest = max(newest, entry.stat().st_mtime_ns)
                elif entry.name != "__pycache__" and entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
    return f"{sampan.__version__}:{newest}"
