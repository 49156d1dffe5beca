"""``quick_exit``: a finished command leaves without the interpreter's teardown, but loses nothing: buffered
output is flushed, exit handlers run, the status is kept, and a running thread is waited for as Python would."""

from __future__ import annotations

import os
import subprocess
import sys

BUFFERED = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # output stays in the buffers


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from sampan.quick_exit import quick_exit\n" + code],
                          capture_output=True, text=True, timeout=30, check=False, env=BUFFERED)


def test_flushes_runs_exit_handlers_and_keeps_the_status() -> None:
    result = _python("import atexit, sys, tempfile\n"
                     "atexit.register(lambda: print('handler', flush=True))\n"
                     "sys.stdout.write('buffered;')\n"
                     "sys.stderr.write('err')\n"
                     "quick_exit(3)")
    assert (result.returncode, result.stdout, result.stderr) == (3, "buffered;handler\n", "err")


def test_temporary_directories_left_open_are_removed() -> None:
    result = _python("import sys, tempfile\n"
                     "kept = tempfile.TemporaryDirectory()\n"
                     "print(kept.name)\n"
                     "quick_exit(0)")
    assert result.returncode == 0 and result.stdout.strip() and not os.path.exists(result.stdout.strip())


def test_a_running_thread_is_waited_for() -> None:
    result = _python("import threading, time\n"
                     "threading.Thread(target=lambda: (time.sleep(0.3), print('thread done', flush=True))).start()\n"
                     "quick_exit(5)")
    assert (result.returncode, result.stdout) == (5, "thread done\n")


def test_a_closed_output_pipe_is_status_141_without_a_traceback() -> None:
    code = "from sampan.quick_exit import quick_exit\nimport sys, time\ntime.sleep(0.2)\nsys.stdout.write('x' * 100)\n" \
        "quick_exit(0)"
    proc = subprocess.Popen([sys.executable, "-c", code],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=BUFFERED)
    assert proc.stdout is not None
    proc.stdout.close()  # the reader goes away before the command flushes
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 141 and b"Traceback" not in err
