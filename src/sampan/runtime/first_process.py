"""The container's first process, started before the runtime has even loaded the spec.

Its start is the slowest part of ``create``: a fresh interpreter, executed from a read-only view of itself (see
``exe``), that imports the init code. So the runtime forks it as soon as the command line says a container process
will be needed, and does its own work (imports, the spec, the cgroup) meanwhile; the process waits for the plan
(``InitPlan``) on its channel. A runtime that already runs from a read-only interpreter (the monitor host's
monitors and workers) needs no new one: the forked process goes on as the init at once.

The first migration into a cgroup waits for an RCU grace period of the kernel's cgroup threadgroup lock (~8-16 ms
here) unless another migration has just happened, so the runtime also starts one at once: a no-op migration of
itself into its own cgroup, on a thread, which the real one later rides on (``migrate_to_own_cgroup``; the
monitor host's forking child starts one even earlier).

This module imports only what that needs, so the CLI can start the process before importing the rest.
"""

from __future__ import annotations

import _signal
import _thread
import os

from sampan.runtime.channel import Channel

TYPE_CHECKING = False  # typing/collections.abc are not imported at run time: start-up cost
if TYPE_CHECKING:
    from sampan.runtime.init import InitPlan


class InitProcess:
    """The forked, re-executed process; ``send_plan`` starts it, ``reap`` waits for it after it has forked the
    container's process, ``abandon`` ends it if the runtime fails first."""

    def __init__(self, preserve_fds: int = 0, *, null_stdin: bool = False) -> None:
        """``null_stdin``: the container's process reads /dev/null, not this process's stdin."""
        self.channel, child = Channel.pair()
        self.pid = os.fork()
        if self.pid == 0:
            self.channel.close()
            _reexec(child, preserve_fds, null_stdin)
        child.close()
        self._primed = _thread.allocate_lock()
        self._primed.acquire()
        _thread.start_new_thread(_migrate_to_own_cgroup, (self._primed,))

    def send_plan(self, plan: InitPlan) -> None:
        """The plan, with the fds it names (the exec fifo, the console) travelling as SCM_RIGHTS."""
        fds = [fd for fd in (plan.fifo_fd, plan.console_fd) if fd >= 0]
        self.channel.send(fds, type="plan", plan=plan.wire())

    def reap(self) -> None:
        """Wait for it to exit (it does once it has forked the container's process, or failed), and for the
        priming thread (long done by then, unless the runtime failed at once)."""
        with self._primed:
            pass
        self.channel.close()
        if self.pid:
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self.pid = 0

    def abandon(self) -> None:
        """End it if it is still there (the runtime failed before it was needed), and reap it."""
        if self.pid:
            os.kill(self.pid, _signal.SIGKILL)
        self.reap()


def _reexec(channel: Channel, preserve_fds: int, null_stdin: bool) -> None:
    """The forked child, still the runtime's image: keep only stdio, the channel and the preserved fds, then
    become a fresh interpreter from a read-only view of itself, or, when the runtime already runs from one
    (``exe.exe_is_readonly``), go on as the init at once. Never returns."""
    try:
        if null_stdin:
            null = os.open(os.devnull, os.O_RDONLY)
            if null != 0:  # 0 when stdin was closed: then it already is /dev/null
                os.dup2(null, 0)
                os.close(null)
        keep = {0, 1, 2, channel.fileno(), *range(3, 3 + preserve_fds)}
        _close_inherited(keep)
        from sampan.runtime import exe

        if exe.exe_is_readonly():
            from sampan.runtime.init import boot

            boot(channel.detach())
        for fd in keep - {0, 1, 2}:
            os.set_inheritable(fd, True)
        exe.exec_init(channel.inheritable())
    except BaseException as exc:  # noqa: BLE001 - report and die: never return into the runtime's code
        channel.fail(exc)
    os._exit(1)


def _close_inherited(keep: set[int]) -> None:
    """Close every fd the runtime process had open except ``keep``: an fd to a host directory must not survive
    into a process that is about to enter the container (CVE-2024-21626)."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _migrate_to_own_cgroup(done: _thread.LockType) -> None:
    try:
        migrate_to_own_cgroup()
    finally:
        done.release()


def migrate_to_own_cgroup() -> None:
    """Write this process into the cgroup it is already in (the first hierarchy /proc/self/cgroup names): nothing
    moves, but the kernel takes the threadgroup lock for writing, paying the grace period now. Failures (a
    read-only cgroupfs, an unusual hierarchy) only mean the real migration pays it instead."""
    try:
        with open("/proc/self/cgroup") as f:
            line = f.readline().strip()
        _, controllers, path = line.split(":", 2)
        hierarchy = controllers.split(",")[0].removeprefix("name=") if controllers else ""
        with open(os.path.join("/sys/fs/cgroup", hierarchy, path.lstrip("/"), "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    except (OSError, ValueError):
        pass
