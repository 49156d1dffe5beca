"""The syscall half of the /proc view: ``sysinfo(2)`` and ``sched_getaffinity(2)`` answered for a container.

Tools that ask the kernel instead of reading /proc (busybox ``free`` and ``uptime`` call sysinfo, ``nproc``
asks for its CPU affinity) cannot be fixed by a filesystem. As LXD does, the container's seccomp filter sends
those two syscalls to a supervisor by user notification (``SCMP_ACT_NOTIFY``); the runtime hands the filter's
listener fd to the agent at the profile's ``listenerPath`` — a socket the container's monitor listens on — once
for the init and once for each ``exec``. ``Answers`` replies with the figures of ``view.Figures`` (the same as
the view's /proc files):

- ``sysinfo``: the host's figures, with memory and swap from the container's cgroup (as /proc/meminfo in the
  view), uptime counted from the container's start, ``procs`` its task count and the container's load
  averages (the very numbers its /proc/loadavg shows: one ``LoadAverage`` answers both);
- ``sched_getaffinity(0, ...)``: the task's real mask, cut to its first ``ceil(quota / period)`` CPUs when a
  CPU quota is set (the cpuset is already in the real mask); without a quota, or for another pid, the kernel
  answers.

The answers come from the view's server, and only from it: busybox ``free`` mixes sysinfo with /proc/meminfo
(used = total - free - buffers - Cached), so the syscalls must tell what the files tell. Two processes hold each
listener, because the kernel fails the syscalls with ENOSYS once none does (``free`` would then break in a
running container): the monitor's ``Agent`` forwards every listener to the server's ``Hub`` (one per run-time
root, beside the FUSE filesystem) and keeps its own copy, polling nothing. When the monitor dies, the hub goes
on answering. When the server dies, the agent sees its connection close, unmounts the dead view's files in its
container, so they fall back to the real ones, and from then on lets the kernel answer every notification (the
real figures, which the real files show too). Without a server (no FUSE here) the agent does that from the
start.

Security: every figure is computed here, nothing is read from the container but the syscall's own arguments.
The answer is written through ``/proc/<tid>/mem`` opened before ``SECCOMP_IOCTL_NOTIF_ID_VALID`` confirms that
the tid still names the waiting task (so the fd is that task's memory, whatever happens to the pid later), and
only when the whole struct lies inside one writable mapping of that task (``/proc/<tid>/maps``, opened with
it): the container can only make its supervisor write what the kernel would, where the kernel would. Any
doubt, error or unknown architecture answers ``SECCOMP_USER_NOTIF_FLAG_CONTINUE``: the real syscall runs.
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import time

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
_LOAD_SCALE = 1 << 16  # SI_LOAD_SHIFT: sysinfo's loads are fixed-point


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


def listen(path: str, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A listening socket at ``path``, mode 0600: only root may hand listener fds to a supervisor (the runtime
    to a monitor's agent, an agent to the hub)."""
    from sampan.monitor.protocol import socket_name

    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    server = socket.socket(socket.AF_UNIX, kind | socket.SOCK_CLOEXEC)
    with socket_name(path) as name:
        server.bind(name)
    os.chmod(path, 0o600)
    server.listen(64)
    return server


class Answers:
    """The answers for one container, whose cgroup is ``cgroup`` ((version, path) as ``view.cgroup_of``; version
    0: the kernel answers everything), with the view's ``loads``."""

    def __init__(self, cgroup: tuple[int, str] | list[Any], loads: view.LoadAverage) -> None:
        self.version, self.path = int(cgroup[0]), str(cgroup[1])
        self.loads = loads
        self.arch, self.numbers = _NATIVE.get(os.uname().machine, (0, {}))

    def on_notified(self, fd: int) -> None:
        try:
            note = scmp.notif_recv(fd)
        except OSError:  # ENOENT: the task was killed between the wake-up and now (or another holder took it)
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

    def _sysinfo(self, fd: int, note: scmp.Notification) -> int | None:
        figures = view.Figures.read(self.version, self.path)
        fields = list(struct.unpack(_SYSINFO, sys_.sysinfo()))
        unit = fields[13] or 1
        total = min(figures.memory_limit, fields[4] * unit)
        used = min(figures.memory_usage, total)
        swap_total = min(figures.swap_limit, fields[8] * unit)
        fields[0] = int(view.container_uptime(figures))
        key = f"{self.version}:{self.path}"
        fields[1:4] = [int(load * _LOAD_SCALE) for load in self.loads.sample(key, figures.runnable)]
        fields[4:10] = [total, total - used, 0, 0, swap_total, max(0, swap_total - figures.swap_usage)]
        fields[10] = min(figures.tasks, 0xFFFF) or fields[10]
        fields[11:14] = [0, 0, 1]
        return 0 if self._write(fd, note, note.args[0], struct.pack(_SYSINFO, *fields)) else None

    def _affinity(self, fd: int, note: scmp.Notification) -> int | None:
        pid, size, address = note.args[0] & 0xFFFFFFFF, note.args[1] & 0xFFFFFFFF, note.args[2]
        count = view.Figures.read(self.version, self.path).quota_cpus
        if pid != 0 or not count:
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


class Agent:
    """In the monitor: takes the listener fds the runtime hands over on ``server_fd`` and forwards each to the
    view server's hub of ``runroot``; once no hub answers, lets the kernel answer them. One epoll fd (``fds``)
    is all the pump watches."""

    def __init__(self, server_fd: int, cgroup: tuple[int, str] | list[Any], init_pid: int, runroot: str) -> None:
        from sampan.procview import server as view_server

        self.server = socket.socket(fileno=server_fd)
        self.server.setblocking(False)
        self.answers = Answers((0, ""), view.LoadAverage())  # the real syscall, for each
        self.init_pid = init_pid
        self.poller = select.epoll()
        self.poller.register(server_fd, select.EPOLLIN)
        self.pending: dict[int, socket.socket] = {}
        self.listeners: set[int] = set()
        self.mountpoint = view_server.mountpoint(runroot)
        self.hub = _connect(view_server.hub_path(self.mountpoint), [int(cgroup[0]), str(cgroup[1])])
        if self.hub is not None:
            self.poller.register(self.hub.fileno(), select.EPOLLIN | select.EPOLLRDHUP)

    def fds(self) -> dict[int, Any]:
        return {self.poller.fileno(): self.on_ready}

    def close(self) -> None:
        for sock in self.pending.values():
            sock.close()
        for fd in self.listeners:
            os.close(fd)
        if self.hub is not None:
            self.hub.close()
        self.pending.clear()
        self.listeners.clear()
        self.server.close()
        self.poller.close()

    def on_ready(self, _fd: int = -1) -> None:
        for fd, events in self.poller.poll(0):
            if fd == self.server.fileno():
                self._accept()
            elif fd in self.pending:
                self._receive(fd)
            elif self.hub is not None and fd == self.hub.fileno():
                self._take_over()
            elif fd in self.listeners:
                if events & select.EPOLLIN:
                    self.answers.on_notified(fd)
                elif events & (select.EPOLLHUP | select.EPOLLERR):  # no task uses that filter any more
                    self.poller.unregister(fd)
                    self.listeners.discard(fd)
                    os.close(fd)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:  # EAGAIN: no more
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
        if not fds:
            return
        self.listeners.add(fds[0])
        if self.hub is not None:
            try:
                socket.send_fds(self.hub, [b"L"], fds[:1])
                return
            except OSError:
                self._take_over()
                return
        self.poller.register(fds[0], select.EPOLLIN)

    def _take_over(self) -> None:
        """The hub is gone (its server died): the container sees its real /proc files instead of the dead
        view's, and its syscalls the real answers, given here."""
        if self.hub is None:
            return
        self.poller.unregister(self.hub.fileno())
        self.hub.close()
        self.hub = None
        for fd in self.listeners:
            self.poller.register(fd, select.EPOLLIN)
        from sampan.procview import server as view_server

        view_server.release(str(self.init_pid))


class Hub:
    """In the view server: answers the listeners monitors forward on the SOCK_SEQPACKET socket at ``path``
    (a header naming the container's cgroup, then one listener fd a message), with ``loads`` of the FUSE view.
    A listener stays here when its monitor dies and closes once no task uses its filter."""

    def __init__(self, path: str, loads: view.LoadAverage) -> None:
        self.loads = loads
        self.server = listen(path, socket.SOCK_SEQPACKET)
        self.poller = select.epoll()
        self.poller.register(self.server.fileno(), select.EPOLLIN)
        self.peers: dict[int, tuple[socket.socket, Answers | None]] = {}
        self.listeners: dict[int, Answers] = {}

    def in_use(self) -> bool:
        return bool(self.peers or self.listeners)

    def run(self, tick: Any, every_s: float) -> None:
        """Serve until the process ends, calling ``tick()`` every ``every_s`` seconds."""
        deadline = time.monotonic() + every_s
        while True:
            for fd, events in self.poller.poll(max(0.0, deadline - time.monotonic())):
                if fd == self.server.fileno():
                    self._accept()
                elif fd in self.peers:
                    self._receive(fd)
                elif fd in self.listeners:
                    if events & select.EPOLLIN:
                        self.listeners[fd].on_notified(fd)
                    elif events & (select.EPOLLHUP | select.EPOLLERR):
                        self.poller.unregister(fd)
                        del self.listeners[fd]
                        os.close(fd)
            if time.monotonic() >= deadline:
                tick()
                deadline = time.monotonic() + every_s

    def _accept(self) -> None:
        try:
            conn, _ = self.server.accept()
        except OSError:
            return
        self.peers[conn.fileno()] = (conn, None)
        self.poller.register(conn.fileno(), select.EPOLLIN)

    def _receive(self, fd: int) -> None:
        conn, answers = self.peers[fd]
        try:
            data, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        except OSError:
            data, fds = b"", []
        if not data:  # the monitor is gone (or its container ended): its listeners stay here
            self.poller.unregister(fd)
            del self.peers[fd]
            conn.close()
            return
        if answers is None:
            try:
                version, path = json.loads(data)["cgroup"]
                self.peers[fd] = (conn, Answers((int(version), str(path)), self.loads))
            except (ValueError, KeyError, TypeError):
                pass
        for listener in fds:
            if answers is None or len(self.listeners) >= _MAX_PEERS * 64:
                os.close(listener)
                continue
            self.listeners[listener] = answers
            self.poller.register(listener, select.EPOLLIN)


def _connect(path: str, cgroup: list[Any]) -> socket.socket | None:
    """A connection to the hub at ``path`` that has been told the container's cgroup; None without a hub."""
    from sampan.monitor.protocol import socket_name

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        with socket_name(path) as name:
            sock.connect(name)
        sock.send(json.dumps({"cgroup": cgroup}).encode())
        sock.settimeout(1.0)  # a forwarded listener waits for a busy hub, but not for a stuck one
        return sock
    except OSError:
        sock.close()
        return None


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

