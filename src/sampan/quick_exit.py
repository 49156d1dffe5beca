"""Leaving a command's process without the interpreter's teardown.

At exit CPython tears down every module and collects every object: about 8 ms for a ``sampan`` command that
imported the engine, on every command. The kernel frees the memory and closes the files anyway, so a command
that is done flushes its output, runs the exit handlers (temporary directories' finalizers are among them)
and leaves with ``os._exit``. Only when no other thread runs: a non-daemon thread is waited for, as Python
would.
"""

from __future__ import annotations

import atexit
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn


def quick_exit(code: int) -> NoReturn:
    threading = sys.modules.get("threading")  # not imported: no thread was started through it
    if threading is not None and threading.active_count() > 1:
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        if stream is None:  # Python found that fd closed at start
            continue
        try:
            stream.flush()
        except BrokenPipeError:  # the reader went away: as the shell sees a killed writer
            code = code or 141
        except (OSError, ValueError):
            pass
    atexit._run_exitfuncs()  # the handlers Python's own exit would run (private, but in every CPython)
    os._exit(code)
