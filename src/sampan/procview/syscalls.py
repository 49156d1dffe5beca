"""The syscall half of the /proc view: ``sysinfo(2)`` and ``sched_getaffinity(2)`` answered for a container.

Tools that ask the kernel instead of reading /proc (busybox ``free`` and ``uptime`` call sysinfo, ``nproc``
asks for its CPU affinity) cannot be fixed by a filesystem. As LXD does, the container's seccomp filter sends
those two syscalls to a supervisor by user notification (``SCMP_ACT_NOTIFY``); the runtime hands the filter's
listener fd to the agent at the profile's ``listenerPath`` — a socket the container's monitor listens on — once
for the init and once for each ``exec``. The monitor's pump then calls ``Agent.on_ready``, which answers:

- ``sysinfo``: the host's figures, with memory and swap from the container's cgroup (total = the limit, or the
  host's memory when there is none or it is larger; free = total less the usage; no buffers or shared memory,
  as /proc/meminfo in the view), uptime counted from the container's start and ``procs`` its task count. The
  load averages stay the host's.
- ``sched_getaffinity(0, ...)``: the task's real mask, cut to its first ``ceil(quota / period)`` CPUs when a
  CPU quota is set (the cpuset is already in the real mask); without a quota, or for another pid, the kernel
  answers.

Security: every figure is computed here, nothing is read from the container but the syscall's own arguments.
The answer is written through ``/proc/<tid>/mem`` opened before ``SECCOMP_IOCTL_NOTIF_ID_VALID`` confirms that
the tid still names the waiting task (so the fd is that task's memory, whatever happens to the pid later), and
only when the whole struct lies inside one writable mapping of that task (``/proc/<tid>/maps``, opened with
it): the container can only make the monitor write what the kernel would, where the kernel would. Any doubt,
error or unknown architecture answers ``SECCOMP_USER_NOTIF_FLAG_CONTINUE``: the real syscall runs. The
container never waits on anything but the monitor's loop.

If the monitor dies, the listener closes and the kernel fails the notified syscalls with ENOSYS (busybox
``free`` then fails; ``nproc`` falls back to 1 in glibc's sysconf path); the container keeps running.
"""

from __future__ import annotations

import math
import os
import select
import socket
import struct

from sampan._linux import process as sys_
from sampan._linux import seccomp as scmp
from sampan.procview import view

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SYSCALLS = ("sysinfo", "sched_getaffinity")
SOCKET_NAME = "seccomp.sock"
_MAX_PEERS = 64  # listener fds and pending connections one container may hold in its monitor
# audit arch -> syscall number -> name, for the 64-bit architectures whose struct sysinfo is _SYSINFO.
_NATIVE = {"x86_64": (0xC000003E, {99: "sysinfo", 204: "sched_getaffinity"}),
           "aarch64": (0xC00000B7, {179: "sysinfo", 123: "sched_getaffinity"})}
# struct sysinfo: uptime, loads[3], totalram, freeram, sharedram, bufferram, totalswap, freeswap, procs,
# (pad), totalhigh, freehigh, mem_unit, (pad).
_SYSINFO = "=q3Q6QH6x2QI4x"
_MAX_MASK = 8192  # bytes: NR_CPUS is at most 65536 bits


def with_notify(seccomp: dict[str, Any] | None, listener_path: str) -> dict[str, Any] | None:
    """``linux.seccomp`` with NOTIFY rules for the syscalls above, or None when it should stay as it is: no
    filter, a profile that already has a listener, or one that does not allow them unconditionally (a profile
    that denies or filters them by argument keeps its say)."""
    if not seccomp or seccomp.get("listenerPath") or os.uname().machine not in _NATIVE:
        return None
    rules = [dict(rule) for rule in seccomp.get("syscalls") or []]
    wanted = []
    for name in SYSCALLS:
        mentioned = [rule for rule in rules if name in (rule.get("names") or [])]
        if mentioned:
            if any(rule.get("action") != "SCMP_ACT_ALLOW" or rule.get("args") for rule in mentioned):
                continue
        elif seccomp.get("defaultAction") != "SCMP_ACT_ALLOW":
            continue
        for rule in mentioned:
            rule["names"] = [n for n in rule["names"] if n != name]
            rule["emptied"] = not rule["names"]
        wanted.append(name)
    if not wanted:
        return None
    rules = [rule for rule in rules if not rule.pop("emptied", False)]
    rules.append({"names": wanted, "action": "SCMP_ACT_NOTIFY"})
    return {**seccomp, "syscalls": rules, "listenerPath": listener_path}


def listen(path: str) -> socket.socket:
    """The agent's socket at ``path`` (mode 0600): the runtime connects to it to hand over a listener fd."""
    from sampan.monitor.protocol import socket_name

    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    with socket_name(path) as name:
        server.bind(name)
    os.chmod(path, 0o600)
    server.listen(8)
    return server


class Agent:
    """In the monitor: takes the listener fds the runtime hands over on ``server_fd`` and answers their
    notifications for the container whose cgroup is ``cgroup`` ((version, path) as ``view.cgroup_of``) and
    whose init is ``init_pid``. One epoll fd (``fds``) is all the pump watches."""

    def __init__(self, server_fd: int, cgroup: tuple[int, str] | list[Any], init_pid: int) -> None:
        self.server = socket.socket(fileno=server_fd)
        self.server.setblocking(False)
        self.version, self.path = int(cgroup[0]), str(cgroup[1])
        self.poller = select.epoll()
        self.poller.register(server_fd, select.EPOLLIN)
        self.pending: dict[int, socket.socket] = {}
        self.listeners: set[int] = set()
        self.arch, self.numbers = _NATIVE.get(os.uname().machine, (0, {}))
        try:
            stat = view._read(f"/proc/{init_pid}/stat")
            self.started = int(stat[stat.rfind(")") + 2:].split()[19]) / os.sysconf("SC_CLK_TCK")
        except (ValueError, IndexError):
            self.started = 0.0

    def fds(self) -> dict[int, Any]:
        return {self.poller.fileno(): self.on_ready}

    def close(self) -> None:
        for sock in self.pending.values():
            sock.close()
        for fd in self.listeners:
            os.close(fd)
        self.pending.clear()
        self.listeners.clear()
        self.server.close()
        self.poller.close()

    # ------------------------------------------------------------------------------------------ events

    def on_ready(self, _fd: int = -1) -> None:
        for fd, events in self.poller.poll(0):
            if fd == self.server.fileno():
                self._accept()
            elif fd in self.pending:
                self._receive(fd)
            elif fd in self.listeners:
                if events & select.EPOLLIN:
                    self._notified(fd)
                elif events & (select.EPOLLHUP | select.EPOLLERR):  # no task uses that filter any more
                    self.poller.unregister(fd)
                    self.listeners.discard(fd)
                    os.close(fd)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if len(self.pending) + len(self.listeners) >= _MAX_PEERS:
                conn.close()
                continue
            conn.setblocking(False)
            self.pending[conn.fileno()] = conn
            self.poller.register(conn.fileno(), select.EPOLLIN)

    def _receive(self, fd: int) -> None:
        conn = self.pending[fd]
        try:
            _, fds, _, _ = socket.recv_fds(conn, 4096, 4)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            fds = []
        self.poller.unregister(fd)
        del self.pending[fd]
        conn.close()
        for extra in fds[1:]:
            os.close(extra)
        if fds:
            self.listeners.add(fds[0])
            self.poller.register(fds[0], select.EPOLLIN)

    def _notified(self, fd: int) -> None:
        try:
            note = scmp.notif_recv(fd)
        except OSError:  # ENOENT: the task was killed between the wake-up and now
            return
        value = None
        try:
            name = self.numbers.get(note.nr) if note.arch == self.arch and self.version else None
            if name == "sysinfo":
                value = self._sysinfo(fd, note)
            elif name == "sched_getaffinity":
                value = self._affinity(fd, note)
        except Exception:  # noqa: BLE001 - any doubt: the kernel answers
            value = None
        try:
            if value is None:
                scmp.notif_send(fd, note.id, flags=scmp.USER_NOTIF_FLAG_CONTINUE)
            else:
                scmp.notif_send(fd, note.id, val=value)
        except OSError:
            pass  # the task is gone

    # ------------------------------------------------------------------------------------------ answers

    def _sysinfo(self, fd: int, note: scmp.Notification) -> int | None:
        fields = list(struct.unpack(_SYSINFO, sys_.sysinfo()))
        unit = fields[13] or 1
        limit, usage, swap_limit, swap_usage = self._memory()
        total = min(limit, fields[4] * unit)
        used = min(usage, total)
        swap_total = min(swap_limit, fields[8] * unit)
        if self.started:
            fields[0] = max(0, int(float(view._read("/proc/uptime").split()[0]) - self.started))
        fields[4:10] = [total, total - used, 0, 0, swap_total, max(0, swap_total - swap_usage)]
        procs = view._int(view._read(self._controller("pids", "pids.current")), 0)
        if procs:
            fields[10] = min(procs, 0xFFFF)
        fields[11:14] = [0, 0, 1]
        return 0 if self._write(fd, note, note.args[0], struct.pack(_SYSINFO, *fields)) else None

    def _affinity(self, fd: int, note: scmp.Notification) -> int | None:
        pid, size, address = note.args[0] & 0xFFFFFFFF, note.args[1] & 0xFFFFFFFF, note.args[2]
        count = self._cpu_quota()
        if pid != 0 or count is None:
            return None
        mask = sys_.sched_getaffinity_raw(note.pid, min(size, _MAX_MASK))  # EINVAL etc.: the kernel answers
        bits, kept = int.from_bytes(mask, "little"), 0
        while bits and count:
            low = bits & -bits
            kept |= low
            bits ^= low
            count -= 1
        data = kept.to_bytes(len(mask), "little")
        return len(mask) if self._write(fd, note, address, data) else None

    def _write(self, fd: int, note: scmp.Notification, address: int, data: bytes) -> bool:
        """Write ``data`` at ``address`` in the notifying task, if the kernel's own copy could have."""
        if address <= 0 or address + len(data) >= 1 << 63:
            return False
        mem = os.open(f"/proc/{note.pid}/mem", os.O_RDWR | os.O_CLOEXEC)
        try:
            maps = os.open(f"/proc/{note.pid}/maps", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if not scmp.notif_id_valid(fd, note.id):  # the tid named another task when we opened it
                    return False
                text = b"".join(iter(lambda: os.read(maps, 65536), b""))
            finally:
                os.close(maps)
            if not _writable(text, address, len(data)):
                return False
            if os.pwrite(mem, data, address) != len(data):
                return False
        finally:
            os.close(mem)
        return scmp.notif_id_valid(fd, note.id)

    # ------------------------------------------------------------------------------------------ cgroup

    def _controller(self, controller: str, name: str) -> str:
        if self.version == 2:
            return f"{view.CGROUP_ROOT}{self.path}/{name}"
        return f"{view.CGROUP_ROOT}/{controller}{self.path}/{name}"

    def _memory(self) -> tuple[int, int, int, int]:
        """Limit, usage, swap limit and swap usage in bytes (unlimited: 1 << 60)."""
        read, number, unlimited = view._read, view._int, view._UNLIMITED
        if self.version == 2:
            limit = number(read(self._controller("memory", "memory.max")), unlimited)
            usage = number(read(self._controller("memory", "memory.current")))
            swap_limit = number(read(self._controller("memory", "memory.swap.max")), unlimited)
            swap_usage = number(read(self._controller("memory", "memory.swap.current")))
            return limit, usage, swap_limit, swap_usage
        limit = number(read(self._controller("memory", "memory.limit_in_bytes")), unlimited)
        usage = number(read(self._controller("memory", "memory.usage_in_bytes")))
        both = number(read(self._controller("memory", "memory.memsw.limit_in_bytes")), unlimited)
        if both >= unlimited:
            return limit, usage, unlimited, 0
        both_usage = number(read(self._controller("memory", "memory.memsw.usage_in_bytes")))
        return limit, usage, max(0, both - limit), max(0, both_usage - usage)

    def _cpu_quota(self) -> int | None:
        """``ceil(quota / period)`` when a CPU quota is set, else None."""
        if self.version == 2:
            text = view._read(self._controller("cpu", "cpu.max")).split()
            quota = view._int(text[0], -1) if text else -1
            period = view._int(text[1], 100000) if len(text) > 1 else 100000
        else:
            quota = view._int(view._read(self._controller("cpu", "cpu.cfs_quota_us")), -1)
            period = view._int(view._read(self._controller("cpu", "cpu.cfs_period_us")), 100000)
        if quota <= 0 or period <= 0:
            return None
        return max(1, math.ceil(quota / period))


def _writable(maps: bytes, address: int, size: int) -> bool:
    """Whether [address, address + size) lies in one writable mapping of a /proc/PID/maps text."""
    for line in maps.splitlines():
        span, _, rest = line.partition(b" ")
        low, _, high = span.partition(b"-")
        try:
            start, end = int(low, 16), int(high, 16)
        except ValueError:
            continue
        if start <= address and address + size <= end:
            return rest[1:2] == b"w"
    return False

