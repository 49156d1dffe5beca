"""A container's monitor: the small process that starts it, owns its stdio and log, records its exit, applies its
restart policy and removes it when it was run with ``--rm`` (DESIGN.md, "Process model").

``spawn`` double-forks the monitor from the calling process (a CLI or the API service), so the monitor is
nobody's child and outlives its caller; it becomes a child subreaper, so the container's init, whichever runtime
forked it, is its child. The caller learns over a pipe whether the container started (and its pid) or why not;
a client socket handed over at fork time is attached before the container runs, so a foreground ``run`` loses
no output. Everything after the start — stdio, log, attach, reaping — is ``sampan.monitor.pump``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from typing import Any

from sampan._linux import process as sys_
from sampan._linux.proc import process_start_time
from sampan.engine import events, networks
from sampan.engine.containers import model, rootfs, runtimes
from sampan.engine.containers.health import enabled as health_enabled
from sampan.engine.containers.model import Places
from sampan.engine.context import Engine
from sampan.errors import SampanError
from sampan.monitor import protocol
from sampan.store import containers as records
from sampan.store.containers import ContainerRecord

_INIT_BINARIES = ("docker-init", "tini-static")
_RESTART_BACKOFF_MAX_S = 60.0


class StartError(SampanError):
    """The container could not be started; ``exit_code`` follows Docker's ``run``: 127 for a missing program,
    126 for one that cannot be invoked, 125 for anything else."""

    exit_code = 125

    def __init__(self, message: str, exit_code: int = 125) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def start_error(message: str) -> StartError:
    lowered = message.lower()
    if "executable file not found" in lowered or "no such file or directory" in lowered:
        return StartError(message, 127)
    if "permission denied" in lowered or "is a directory" in lowered or "exec format error" in lowered:
        return StartError(message, 126)
    return StartError(message, 125)


def find_init() -> str | None:
    """The host binary ``--init`` bind-mounts as /sbin/docker-init: Docker's own (tini), statically linked so it
    runs in any image."""
    import shutil

    for name in _INIT_BINARIES:
        path = shutil.which(name)
        if path and _static(path):
            return path
    return None


def _static(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(4096)
    return b"PT_INTERP" not in head and b"/lib64/ld-linux" not in head and b"/lib/ld-" not in head


# ---------------------------------------------------------------------------------------------- the caller's side


def spawn(engine: Engine, record: ContainerRecord, attach: dict[str, bool] | None = None, *,
          wait_for_host: bool = True) -> tuple[int, socket.socket | None]:
    """Start ``record`` under a new monitor; returns the container's pid and, with ``attach``, the client
    socket (already attached with those streams). Raises ``StartError`` when the container could not start.

    The monitor comes from the monitor host. When none runs, this waits for the one it launches (~0.2 s), since
    a monitor forked here would own this process's memory (~15 MB for the CLI) for as long as the container
    runs. Without ``wait_for_host`` (the CLI's attached ``run`` and ``start -a``), it is forked here at once: it
    shares this process's pages while this process waits for the container, and owns them only if this
    process leaves first (detached, or killed)."""
    status_r, status_w = os.pipe2(os.O_CLOEXEC)
    ours = theirs = None
    if attach is not None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    from sampan.engine.containers import monitor_host

    if not monitor_host.request(engine, record.id, status_w, theirs, attach, wait=wait_for_host):
        _fork_monitor(engine, record.id, status_r, status_w, ours, theirs, attach)
    os.close(status_w)
    if theirs is not None:
        theirs.close()
    with os.fdopen(status_r, "rb") as f:
        reply = f.read()
    try:
        message = json.loads(reply or b"{}")
    except ValueError:
        message = {}
    if "pid" not in message:
        if ours is not None:
            ours.close()
        error = message.get("error") or "the container's monitor exited before the container started"
        raise StartError(error, int(message.get("code", 125)))
    return int(message["pid"]), ours


def _fork_monitor(engine: Engine, container_id: str, status_r: int, status_w: int, ours: socket.socket | None,
                  theirs: socket.socket | None, attach: dict[str, Any] | None) -> None:
    """Without a monitor host: double-fork the monitor from this process."""
    sys.stdout.flush()
    sys.stderr.flush()
    engine.db.close()  # reopened on next use; a connection must not be shared with a forked child
    first = os.fork()
    if first == 0:  # pragma: no cover - runs in the forked processes
        code = 1
        try:
            os.close(status_r)
            if ours is not None:
                ours.close()
            os.setsid()
            if os.fork() == 0:
                _become_monitor(engine, container_id, status_w, theirs, attach)
            code = 0
        finally:
            os._exit(code)
    os.waitpid(first, 0)


# ---------------------------------------------------------------------------------------------- the monitor

def forget_inherited(engine: Engine, keep: set[int]) -> None:
    """In a forked child: close every inherited fd but ``keep``, such as the caller's file locks, which would
    otherwise stay held (flock belongs to the open file, which fork shares). The caller closed its database
    connection before forking: SQLite connections must never cross a fork."""
    assert engine.db._conn is None
    low = 3
    for fd in sorted(fd for fd in keep if fd >= 3):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)


def _become_monitor(engine: Engine, container_id: str, status_w: int, client: socket.socket | None,
                    attach: dict[str, bool] | None) -> None:  # pragma: no cover - the forked monitor
    """The monitor's life; never returns."""
    code = 0
    try:
        forget_inherited(engine, {status_w, client.fileno() if client is not None else -1})
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        sys_.prctl(sys_.PR_SET_CHILD_SUBREAPER, 1)
        os.chdir("/")
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # the monitor ends when its container does
        Monitor(engine, container_id).serve(status_w, client, attach)
    except BaseException:  # noqa: BLE001 - nothing may escape a forked child
        code = 1
        _log_failure(engine, container_id)
    finally:
        os._exit(code)


def _log_failure(engine: Engine, container_id: str) -> None:  # pragma: no cover - the forked monitor
    """The traceback of a monitor that failed, in ``monitor.log`` of the bundle, for ``system check`` and bug
    reports (the monitor has no terminal to print on)."""
    import traceback

    try:
        with open(model.places(engine, container_id).bundle / "monitor.log", "a") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} monitor {os.getpid()} failed:\n")
            traceback.print_exc(file=f)
    except OSError:
        pass


class _Stdio:
    """The container's stdio, made before its process: pipes (stdin from /dev/null unless ``OpenStdin``), or, with
    a terminal, the socket its pty's master comes back over. ``around`` runs a call with the container's ends as
    this process's 0, 1 and 2: the runtime's first process, forked in it, hands them to the container."""

    def __init__(self, tty: bool, open_stdin: bool) -> None:
        self.tty, self.open_stdin = tty, open_stdin
        self.theirs: list[int] = []
        self.stdin_w = self.out_r = self.err_r = -1
        if tty:
            self.console, self.console_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            return
        stdin_r, self.stdin_w = os.pipe() if open_stdin else (os.open(os.devnull, os.O_RDONLY), -1)
        self.out_r, out_w = os.pipe()
        self.err_r, err_w = os.pipe()
        self.theirs = [stdin_r, out_w, err_w]  # not inheritable (os.pipe's): ``around`` dups them onto 0, 1, 2

    def around(self, call: Any) -> Any:
        if self.tty:
            return call()
        saved = [os.dup(fd) for fd in (0, 1, 2)]
        try:
            for fd, target in zip(self.theirs, (0, 1, 2)):
                os.dup2(fd, target)
            return call()
        finally:
            for fd, target in zip(saved, (0, 1, 2)):
                os.dup2(fd, target)
                os.close(fd)

    def close_theirs(self) -> None:
        for fd in self.theirs:
            os.close(fd)
        self.theirs = []

    def close_all(self) -> None:
        """After a failed start: every end, ours and the container's."""
        self.close_theirs()
        if self.tty:
            self.console.close()
            self.console_theirs.close()
        for fd in (self.stdin_w, self.out_r, self.err_r):
            if fd >= 0:
                os.close(fd)


class Monitor:
    """The monitor process (M). To stay small it does no heavy work itself: starting the container (S) and
    handling its exit (E) run in short-lived forked children, so the pages they touch (SQLite, the spec, the
    runtime) die with them. M keeps only the pump: stdio, log, attach and reaping. Children report back over a
    socket pair (JSON and, for S, the container's stdio fds). The container's init, forked by S's runtime,
    becomes M's child when S exits, because M is the child subreaper."""

    def __init__(self, engine: Engine, container_id: str) -> None:
        self.engine = engine
        self.id = container_id
        self.where = model.places(engine, container_id)
        self.clients: list[Any] = []
        self.console_size: list[int] | None = None
        self.monitor_pid = os.getpid()
        self.run_dir_fd = -1  # S names the syscall agent's socket through it when its path is too long

    def serve(self, status_w: int, client: socket.socket | None, attach: dict[str, bool] | None) -> None:
        from sampan.monitor.pump import Client

        if client is not None:
            self.clients.append(Client(client, dict(attach or {})))
        self.console_size = (attach or {}).get("size")  # the attached terminal's, set before the start
        listener = None
        try:
            self.where.run.mkdir(mode=0o700, exist_ok=True)
            listener = self._listen()
            self.run_dir_fd = os.open(self.where.run, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            os.write(status_w, json.dumps({"error": f"cannot listen for clients: {e}", "code": 125}).encode())
            os.close(status_w)
            return
        started = self._in_child(lambda: self._start_child(status_w, restarting=False))
        os.close(status_w)
        restarts_in_a_row = 0
        exit_code = finished = None
        while started is not None and "pid" in started[0]:
            began = time.monotonic()
            status = self._pump(*started, listener)
            ended = self._in_child(lambda code=status: self._exited(code))
            if ended is None or not ended[0]["restart"]:
                finished = ended
                break
            restarts_in_a_row = 0 if time.monotonic() - began > 10 else restarts_in_a_row + 1
            time.sleep(min(_RESTART_BACKOFF_MAX_S, 0.1 * (2 ** restarts_in_a_row)))
            started = self._in_child(lambda: self._start_child(-1, restarting=True))
        listener.close()
        os.close(self.run_dir_fd)
        if finished is None:  # it never ran, or the exit's child died
            finished = self._in_child(lambda: ({"exit_code": self._finish()}, []))
        if finished is not None:
            exit_code = finished[0]["exit_code"]
        for client_ in self.clients:  # last: a foreground `run --rm` returns once the container is gone
            client_.send(protocol.EXIT, str(exit_code or 0).encode())
            client_.sock.close()

    def _in_child(self, work: Any) -> tuple[dict[str, Any], list[int]] | None:
        """Run ``work`` (returning a JSON-able dict and fds to hand over) in a forked child; None if it died."""
        import array

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the forked child
            code = 1
            try:
                ours.close()
                for client_ in self.clients:
                    client_.sock.close()
                payload, fds = work()
                theirs.sendmsg([json.dumps(payload).encode()],
                               [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else [])
                code = 0
            except BaseException:  # noqa: BLE001 - nothing may escape a forked child
                _log_failure(self.engine, self.id)
            finally:
                os._exit(code)
        theirs.close()
        try:
            data, fds, _, _ = socket.recv_fds(ours, 65536, 8)  # small: a big buffer dirties pages for good
        finally:
            ours.close()
            while True:
                try:
                    os.waitpid(pid, 0)
                    break
                except InterruptedError:
                    continue
                except ChildProcessError:
                    break
        if not data:
            return None
        return json.loads(data), fds

    def _start_child(self, status_w: int, restarting: bool) -> tuple[dict[str, Any], list[int]]:
        """S: start the container (or record why not); report to the caller when ``status_w`` is given."""
        if restarting:
            record = records.get(self.engine.db.conn, self.id)
            if record is None or record.status != "restarting" or record.stopped_by_user:
                return {}, []
        try:
            pid, io = self._start_once(restarting)
        except Exception as e:  # noqa: BLE001 - every failure is reported to the caller as a start error
            error = e if isinstance(e, StartError) else start_error(
                str(e) if isinstance(e, SampanError) else f"{type(e).__name__}: {e}")
            self._record_failed_start(error)
            if status_w >= 0:
                os.write(status_w, json.dumps({"error": str(error), "code": error.exit_code}).encode())
            return {}, []
        if status_w >= 0:
            os.write(status_w, json.dumps({"pid": pid}).encode())
        record = self._record()
        fds = [fd for fd in (*io["outputs"], io["stdin"]) if fd >= 0]
        outputs = {str(fds.index(fd)): stream for fd, stream in io["outputs"].items()}
        dns = None
        if io.get("dns"):
            dns = {"fd": len(fds), **io["dns_config"]}
            fds.append(io["dns"][0])
        syscalls = None
        if io.get("syscall_agent") is not None:
            syscalls = {"fd": len(fds), "cgroup": io["cgroup"]}
            fds.append(io["syscall_agent"])
        return {"pid": pid, "outputs": outputs, "stdin": fds.index(io["stdin"]) if io["stdin"] >= 0 else -1,
                "tty": io["master"] >= 0, "stdin_once": bool(record.config.get("StdinOnce")), "dns": dns,
                "syscalls": syscalls,
                "log": record.host_config.get("LogConfig") or {},
                "healthcheck": record.config.get("Healthcheck") if health_enabled(record) else None}, fds

    # ------------------------------------------------------------------------------------------ start

    def _listen(self) -> socket.socket:
        path = str(self.where.attach_socket)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        with protocol.socket_name(path) as name:
            listener.bind(name)
        os.chmod(path, 0o600)
        listener.listen(16)
        return listener

    def _record(self) -> ContainerRecord:
        record = records.get(self.engine.db.conn, self.id)
        if record is None:
            raise SampanError(f"container {self.id} was removed")
        return record

    def _driver(self, record: ContainerRecord) -> runtimes.Driver:
        return runtimes.driver(record.host_config.get("Runtime", ""), str(self.engine.layout.runtime))

    def _start_once(self, restarting: bool = False) -> tuple[int, dict[str, Any]]:
        """Mount, write the spec, create and start through the runtime; record "running"."""
        from sampan.engine.containers.create import OPTIONS_FILE, load_run_options
        from sampan.engine.images import load_config
        from sampan.engine.specgen import build_spec, lookup_groups, lookup_user

        record = self._record()
        driver = self._driver(record)
        driver.delete(self.id)  # a leftover of a killed monitor (same id) would block the create
        stdio = _Stdio(bool(record.config.get("Tty")), bool(record.config.get("OpenStdin")))
        # the built-in runtime's first process starts now, on the container's stdio: its interpreter's start
        # (~13 ms) overlaps the mount and the spec (see sampan.runtime.first_process)
        first = stdio.around(driver.first_process)
        root = None
        try:
            root = rootfs.mount(self.engine, record, self.where)
            options = load_run_options(str(self.where.bundle / OPTIONS_FILE))
            _populate_volumes(self.engine, record, root)
            image_config = load_config(self.engine, record.image_id).container
            init_path = find_init() if options.init else None
            spec = build_spec(image_config, options, rootfs=root, container_id=self.id,
                              hosts_files={"/etc/hosts": str(self.where.hosts),
                                           "/etc/hostname": str(self.where.hostname),
                                           "/etc/resolv.conf": str(self.where.resolv_conf)},
                              passwd_lookup=lambda user: lookup_user(root, user),
                              group_lookup=lambda names: lookup_groups(root, names), init_path=init_path)
            _add_proc_view(self.engine, record, spec)
            agent = self._add_syscall_view(record, spec)
            tmp = self.where.config.with_suffix(".tmp")
            tmp.write_text(json.dumps(spec))
            os.rename(tmp, self.where.config)
            pid, io = self._create(driver, stdio, first)
            if agent is not None:
                from sampan.procview.view import cgroup_of

                io["cgroup"] = list(cgroup_of(pid) or (0, ""))  # read before the container runs anything
                io["syscall_agent"] = agent.detach()
            self._connect(record, pid, io)
            driver.start(self.id)
        except BaseException:
            if first is not None:
                first.abandon()
            stdio.close_all()
            driver.delete(self.id)
            networks.teardown(self.engine, self.id)
            if root is not None:
                rootfs.unmount(self.where)
            raise
        with self.engine.db.transaction() as tx:
            fresh = records.get(tx, self.id)
            count = (fresh.restart_count + 1) if (fresh is not None and restarting) else \
                (fresh.restart_count if fresh is not None else 0)
            health = None
            if (record.config.get("Healthcheck") or {}).get("Test", ["NONE"])[0] != "NONE":
                health = {"Status": "starting", "FailingStreak": 0, "Log": []}
            records.update_state(tx, self.id, status="running", pid=pid, pid_start=process_start_time(pid) or "",
                                 monitor_pid=self.monitor_pid,
                                 monitor_start=process_start_time(self.monitor_pid) or "",
                                 exit_code=0, error="", oom_killed=0, started_at=time.time(),
                                 restart_count=count, health=health)
        return pid, io

    def _add_syscall_view(self, record: ContainerRecord, spec: dict[str, Any]) -> socket.socket | None:
        """With the /proc view and a seccomp filter: sysinfo and sched_getaffinity go to the monitor by seccomp
        user notification (``sampan.procview.syscalls``); returns the socket the runtime hands the listener fd
        to, named in the spec's ``listenerPath``. Only for the built-in runtime (an external one may lack
        ``SCMP_ACT_NOTIFY``)."""
        from sampan.procview import syscalls

        if not record.host_config.get("ProcView", True) or record.host_config.get("Runtime", "") not in \
                ("", runtimes.DEFAULT):
            return None
        path = str(self.where.run / syscalls.SOCKET_NAME)
        name = path if len(os.fsencode(path)) < 100 else \
            f"/proc/{self.monitor_pid}/fd/{self.run_dir_fd}/{syscalls.SOCKET_NAME}"  # M's fd: valid for exec
        seccomp = syscalls.with_notify((spec.get("linux") or {}).get("seccomp"), name)
        if seccomp is None:
            return None
        from sampan._linux import seccomp as scmp

        try:
            if scmp.api_level() < 6:  # no user notification in this kernel or libseccomp
                return None
        except OSError:
            return None
        spec["linux"]["seccomp"] = seccomp
        return syscalls.listen(path)

    def _connect(self, record: ContainerRecord, pid: int, io: dict[str, Any]) -> None:
        """Between create and start: the container's networks (its namespace exists, nothing runs in it yet);
        its address goes into its /etc/hosts (rewritten in place: the file is bind-mounted)."""
        from sampan.network import dns

        joined = networks.attachments(self.engine, self.id)
        wants_dns = any(network.user_defined for network, _ in joined) and \
            "127.0.0.11" in self.where.resolv_conf.read_text()
        sockets: list[int] = []
        if not networks.setup(self.engine, record, pid,
                              inside=(lambda: sockets.extend(dns.bind_sockets())) if wants_dns else None):
            return
        if sockets:
            io["dns"] = sockets
            io["dns_config"] = {
                "names": [str(networks.names_dir(self.engine) / f"{network.id}.names")
                          for network, _ in joined if network.user_defined],
                "index": str(networks.dns_index(self.engine, self.id)),
                "servers": list(record.host_config.get("Dns") or []) or dns.upstreams()}
        joined = networks.attachments(self.engine, self.id)
        lines = [line for line in self.where.hosts.read_text().splitlines(keepends=True)
                 if not line.rstrip().endswith("\t" + record.config.get("Hostname", "")) or not line.strip()]
        host = record.config.get("Hostname", "")
        lines += [f"{row['address']}\t{host}\n" for _, row in joined[:1] if row["address"]]
        with open(self.where.hosts, "r+") as f:
            f.write("".join(lines))
            f.truncate()

    def _start_dns(self, pid: int, payload: bytes, responders: list[Any]) -> dict[int, Any]:
        """A live ``network connect`` gave a container without a responder its first user network: bind
        127.0.0.11 in its namespace now and answer from its DNS index (``payload``: the upstream servers)."""
        if responders:
            return {}
        from sampan.network import dns
        from sampan.network.netlink import entered

        try:
            servers = [str(server) for server in json.loads(payload)["servers"]]
        except (KeyError, TypeError):
            raise ValueError("a DNS request names its servers") from None
        with entered(f"/proc/{pid}/ns/net"):
            fd = dns.bind_sockets()[0]
        responders.append(dns.Responder(fd, [], servers,
                                        str(networks.dns_index(self.engine, self.id))))
        return responders[0].fds()

    def _create(self, driver: runtimes.Driver, stdio: _Stdio, first: Any) -> tuple[int, dict[str, Any]]:
        """Create the container with its stdio: pipes, or a pty whose master comes back over a socket."""
        if stdio.tty:
            from sampan.runtime.console import recv_fd

            with stdio.console:
                pid = driver.create(self.id, str(self.where.bundle), stdio.console_theirs, first=first)
                stdio.console_theirs.close()
                master = recv_fd(stdio.console)
            if self.console_size:
                sys_.set_winsize(master, *self.console_size)
            return pid, {"stdin": master if stdio.open_stdin else -1, "outputs": {master: "stdout"},
                         "master": master}
        pid = stdio.around(lambda: driver.create(self.id, str(self.where.bundle), None, first=first))
        stdio.close_theirs()
        return pid, {"stdin": stdio.stdin_w, "outputs": {stdio.out_r: "stdout", stdio.err_r: "stderr"},
                     "master": -1}

    # ------------------------------------------------------------------------------------------ running

    def _pump(self, handoff: dict[str, Any], fds: list[int], listener: socket.socket) -> int:
        from sampan.engine.containers import health
        from sampan.monitor.pump import Pump

        outputs = {fds[int(index)]: stream for index, stream in handoff["outputs"].items()}
        stdin = fds[handoff["stdin"]] if handoff["stdin"] >= 0 else -1
        master = next(iter(outputs)) if handoff["tty"] else -1
        log = _open_log(handoff["log"], self.where, self.id)
        checker = health.Scheduler(self.engine, self.id, handoff["healthcheck"]) if handoff["healthcheck"] else None
        responders = []
        if handoff.get("dns"):
            from sampan.network.dns import Responder

            responders.append(Responder(os.dup(fds[handoff["dns"]["fd"]]), handoff["dns"]["names"],
                                        handoff["dns"]["servers"], handoff["dns"].get("index", "")))
        readers = dict(responders[0].fds()) if responders else {}
        agent = None
        if handoff.get("syscalls"):
            from sampan.procview.syscalls import Agent

            agent = Agent(os.dup(fds[handoff["syscalls"]["fd"]]), handoff["syscalls"]["cgroup"], handoff["pid"],
                          str(self.engine.layout.runroot))
            readers.update(agent.fds())
        pump = Pump(pid=handoff["pid"], outputs=outputs, stdin_fd=stdin, tty_master=master, log=log,
                    listener=listener, clients=self.clients, stdin_once=handoff["stdin_once"],
                    on_reaped=checker.reaped if checker else None, tick=checker.tick if checker else None,
                    readers=readers or None, start_dns=lambda payload: self._start_dns(handoff["pid"], payload,
                                                                                          responders))
        try:
            return pump.run()
        finally:
            self.clients = pump.clients
            if checker is not None:
                checker.stop()
            for responder in responders:
                responder.close()
            if agent is not None:
                agent.close()
            if log is not None:
                log.close()
            for fd in fds:
                try:
                    os.close(fd)
                except OSError:
                    pass

    # ------------------------------------------------------------------------------------------ exit

    def _exited(self, status: int) -> tuple[dict[str, Any], list[int]]:
        """E: record the exit and, unless the policy restarts the container, finish too: one child rather than
        two, since each costs a fork, a database connection and the page faults of running the same code."""
        if self._on_exit(status):
            return {"restart": True}, []
        return {"restart": False, "exit_code": self._finish()}, []

    def _on_exit(self, status: int) -> bool:
        """Record the exit, release the runtime's and the root's resources; True when the policy restarts."""
        record = self._record()
        driver = self._driver(record)
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code
        oom = driver.oom_killed(self.id)
        driver.delete(self.id)
        networks.teardown(self.engine, self.id, links=False)
        rootfs.unmount(self.where)
        attributes = events.container_attributes(record)
        if oom:
            events.record(self.engine, "container", "oom", self.id, attributes)
        events.record(self.engine, "container", "die", self.id, {**attributes, "exitCode": str(code)})
        with self.engine.db.transaction() as tx:
            fresh = records.get(tx, self.id)
            if fresh is None:
                return False
            restart = _wants_restart(fresh, code)
            records.update_state(tx, self.id, status="restarting" if restart else "exited", exit_code=code,
                                 oom_killed=int(oom), finished_at=time.time(), pid=0, pid_start="",
                                 health=None if not restart else fresh.health)
        return restart

    def _record_failed_start(self, error: StartError) -> None:
        """As Docker: the error and exit status are recorded; a container that never ran stays "created"."""
        with self.engine.db.transaction() as tx:
            record = records.get(tx, self.id)
            if record is not None:
                records.update_state(tx, self.id, status="exited" if record.started_at else "created",
                                     exit_code=error.exit_code, error=str(error), pid=0, pid_start="",
                                     monitor_pid=0, monitor_start="", finished_at=time.time())

    def _finish(self) -> int:
        """E, at the end: the run-time directory goes, the record forgets this monitor, ``--rm`` removes the
        container; returns the exit status for attached clients."""
        for path in (self.where.attach_socket, self.where.run / "seccomp.sock"):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        try:
            os.rmdir(self.where.run)
        except OSError:
            pass
        with self.engine.db.transaction() as tx:
            record = records.get(tx, self.id)
            if record is not None and record.monitor_pid == self.monitor_pid:
                records.update_state(tx, self.id, monitor_pid=0, monitor_start="")
        if record is None:
            return 0
        if record.host_config.get("AutoRemove"):
            from sampan.engine.containers.remove import remove

            try:
                remove(self.engine, self.id, force=True, volumes=True)
            except SampanError:
                pass
        return record.exit_code


def _add_proc_view(engine: Engine, record: ContainerRecord, spec: dict[str, Any]) -> None:
    """Bind the container-aware /proc files over the container's own (unless ``--proc-view=false``)."""
    if not record.host_config.get("ProcView", True):
        return
    from sampan.engine.containers import monitor_host
    from sampan.procview import server

    path = server.ensure(str(engine.layout.runroot), lambda view: monitor_host.fork_procview(engine, view))
    if path is not None:
        taken = {m["destination"] for m in spec["mounts"]}
        spec["mounts"] += [m for m in server.spec_mounts(path) if m["destination"] not in taken]


def _wants_restart(record: ContainerRecord, code: int) -> bool:
    policy = record.host_config.get("RestartPolicy") or {}
    name, limit = policy.get("Name") or "no", int(policy.get("MaximumRetryCount") or 0)
    if record.stopped_by_user or record.host_config.get("AutoRemove"):
        return False
    if name in ("always", "unless-stopped"):
        return True
    if name == "on-failure" and code != 0:
        return limit == 0 or record.restart_count < limit
    return False


def _open_log(config: dict[str, Any], where: Places, container_id: str) -> Any:
    from sampan.monitor.logs import JsonFileLog
    from sampan.units import parse_size

    if config.get("Type", "json-file") != "json-file":
        return None
    opts = config.get("Config") or {}
    max_size = parse_size(opts["max-size"]) if opts.get("max-size") else None
    return JsonFileLog.open(str(where.log(container_id)), max_size=max_size,
                            max_file=int(opts.get("max-file") or 1), compress=opts.get("compress") in ("true", "1"))


def _populate_volumes(engine: Engine, record: ContainerRecord, root: str) -> None:
    """Docker copies the image's content at a volume's mount point into the volume when the volume is empty and
    the mount does not say nocopy. The image path is opened inside the root (RESOLVE_IN_ROOT): a hostile image's
    symlink cannot make us copy host files."""
    import subprocess

    from sampan._linux.syscalls import RESOLVE_IN_ROOT, openat2

    for mount in record.mounts:
        if mount["Type"] != "volume" or mount.get("Mode") == "nocopy":
            continue
        data = mount["Source"]
        if not os.path.isdir(data) or os.listdir(data):
            continue
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            src = openat2(root_fd, mount["Destination"].lstrip("/"), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC,
                          RESOLVE_IN_ROOT)
        except OSError:
            continue
        finally:
            os.close(root_fd)
        try:
            subprocess.run(["cp", "-a", "--no-dereference", f"/proc/self/fd/{src}/.", data], check=False,
                           pass_fds=(src,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        finally:
            os.close(src)
