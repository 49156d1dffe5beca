"""Regression tests for the container-escape CVEs runc had to fix, run against sampan-runc and, where runc 1.1.5 is
not itself vulnerable, against runc as an oracle that the test really detects the attack.

Each test builds the attack into the bundle (the rootfs is per-test, see ``conftest.runtime``), runs the container
and then checks the host: sentinel files, decoys, the interpreter's hash, mount tables and inotify events. Nothing
here writes to a host file that is not the test's own: where an attack would write, the test only opens (never
truncates), or points the write at a harmless, test-owned target, and says so.

Where runc 1.1.5 is vulnerable the runc case is an expected failure; sampan-runc must pass every test.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import RUNTIMES, ConsoleSocket, Result, Runner
from .security_inotify import IN_ATTRIB, IN_CREATE, IN_MODIFY, IN_OPEN, Watcher

HERE = Path(__file__).parent
ST_RDONLY = 1


# ---------------------------------------------------------------------------------------------- helpers


def call(runtime: Runner, *args: str, hold_dir: Path | None = None, env: dict[str, str] | None = None,
         wrapper: list[str] | None = None, timeout: float = 30) -> Result:
    """Like ``Runner.__call__``, optionally started from a parent that holds ``hold_dir`` open, not close-on-exec,
    on every fd from 3 to 10 (a leaky caller, or a runtime's own leaked fd as in CVE-2024-21626)."""
    command = [*(wrapper or [RUNTIMES[runtime.name]]), "--root", str(runtime.root), *args]
    if hold_dir is not None:
        holder = ("import os, sys\n"
                  "fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)\n"
                  "for n in range(3, 11):\n"
                  "    os.dup2(fd, n) if n != fd else os.set_inheritable(fd, True)\n"
                  "os.closerange(11, 64)\n"
                  "os.execv(sys.argv[2], sys.argv[2:])\n")
        command = [sys.executable, "-c", holder, str(hold_dir), *command]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.run(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL, timeout=timeout,
                              env=env, close_fds=True, check=False)
        out.seek(0)
        err.seek(0)
        return Result(proc.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"))


def _set(config: dict[str, Any], path: str, value: Any) -> None:
    node = config
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value


def _drop_mounts(config: dict[str, Any], *destinations: str) -> None:
    config["mounts"] = [m for m in config["mounts"] if m["destination"] not in destinations]


def sha256(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def host_mounts(under: Path | None = None) -> list[str]:
    """Mount points of the test's own (the host's) mount namespace, all or those at or under ``under``."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    if under is None:
        return points
    return [p for p in points if p == str(under) or p.startswith(f"{under}/")]


def snapshot(path: Path) -> dict[str, tuple[int, int, str]]:
    """Every entry under ``path`` with (mode, size, link target or content hash): detects any change."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                detail = os.readlink(full)
            elif stat.S_ISREG(st.st_mode):
                detail = sha256(full)
            else:
                detail = ""
            out[os.path.relpath(full, path)] = (st.st_mode, st.st_size, detail)
    return out


def runtime_binaries() -> dict[tuple[int, int], str]:
    """(st_dev, st_ino) of every file a container must never get a writable handle on: the interpreters that
    run sampan-runc and runc's binary."""
    paths = {os.path.realpath(sys.executable), os.path.realpath(RUNTIMES["runc"]),
             os.path.realpath(RUNTIMES["sampan-runc"])}
    with open(RUNTIMES["sampan-runc"], "rb") as f:
        first = f.readline()
    if first.startswith(b"#!"):
        paths.add(os.path.realpath(first[2:].split()[0].decode()))
    out = {}
    for path in paths:
        st = os.stat(path)
        out[(st.st_dev, st.st_ino)] = path
    return out


def xfail_for(request: pytest.FixtureRequest, runtime: Runner, name: str, reason: str, strict: bool = True) -> None:
    if runtime.name == name:
        request.applymarker(pytest.mark.xfail(strict=strict, reason=reason))


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A world-traversable directory on the host (not in any rootfs) for sentinels and decoys; any mount a buggy
    runtime left on or under it is detached before it is removed."""
    path = Path(tempfile.mkdtemp(prefix="sampan-sec-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for point in sorted(host_mounts(path), reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- CVE-2024-21626


LIST_FDS = "ls /proc/self/fd"


@pytest.mark.parametrize("verb", ["run", "exec"])
def test_cve_2024_21626_no_runtime_fd_reaches_the_container(runtime: Runner, host_dir: Path, verb: str) -> None:
    """No fd the runtime holds (its own, or ones its caller leaked to it) survives into the container.

    The runtime is started by a parent that holds a host directory open, not close-on-exec, on fds 3..10. Inside,
    ``ls /proc/self/fd`` must list 0, 1, 2 and the one fd ``ls`` opens itself. A naive runtime that forks and execs
    without closing (or marking close-on-exec) every fd above stdio hands the container a handle on the host
    filesystem (fchdir/openat through it escapes the rootfs)."""
    if verb == "run":
        bundle, cid = runtime.bundle(["sh", "-c", LIST_FDS])
        r = call(runtime, "run", "--bundle", str(bundle), cid, hold_dir=host_dir)
    else:
        bundle, cid = runtime.bundle(["sleep", "30"])
        started = runtime("run", "-d", "--bundle", str(bundle), cid)
        assert started.code == 0, started.err
        r = call(runtime, "exec", cid, "sh", "-c", LIST_FDS, hold_dir=host_dir)
    assert r.code == 0, r.err
    assert sorted(r.out.split(), key=int) == ["0", "1", "2", "3"], r.out


_CWD_ESCAPE = ("cat sentinel ../sentinel {up}{host}/sentinel 2>/dev/null; "
               "ls -d ../../../../../../../../../../{host} 2>/dev/null; pwd")


def _cwd_escape_command(host_dir: Path) -> list[str]:
    return ["sh", "-c", _CWD_ESCAPE.format(up="../" * 12, host=str(host_dir).lstrip("/"))]


def _write_sentinel(host_dir: Path) -> str:
    token = f"HOST-SENTINEL-{uuid.uuid4().hex}"
    (host_dir / "sentinel").write_text(token + "\n")
    return token


@pytest.mark.parametrize("held", [False, True], ids=["own-fds", "leaked-host-fds"])
def test_cve_2024_21626_process_cwd_proc_self_fd(runtime: Runner, host_dir: Path, held: bool) -> None:
    """``process.cwd = /proc/self/fd/N`` (N in 3..10) must fail or land inside the container, never on the host.

    runc < 1.1.12 leaked a host directory fd into its init; chdir("/proc/self/fd/7") then gave the container a cwd
    outside its root, and ``../../..`` from there reaches the host's /. Here the runtime's own fds are tried, and
    then fds 3..10 all naming a host directory (held by the runtime's parent, as a leak would). The container tries
    to read a unique sentinel file in that host directory through relative paths. A naive runtime that chdirs
    before closing its fds and never checks that the cwd is reachable from the new root lets it through."""
    token = _write_sentinel(host_dir)
    for n in range(3, 11):
        bundle, cid = runtime.bundle(_cwd_escape_command(host_dir),
                                     mutate=lambda c, n=n: _set(c, "process.cwd", f"/proc/self/fd/{n}"))
        r = call(runtime, "run", "--bundle", str(bundle), cid, hold_dir=host_dir if held else None)
        assert token not in r.out + r.err, f"cwd /proc/self/fd/{n}: the container read a host file:\n{r.out}"
        assert host_dir.name not in r.out, f"cwd /proc/self/fd/{n} is on the host: {r.out}"
    assert (host_dir / "sentinel").read_text() == token + "\n"


@pytest.mark.parametrize("held", [False, True], ids=["own-fds", "leaked-host-fds"])
def test_cve_2024_21626_exec_cwd_proc_self_fd(runtime: Runner, host_dir: Path, held: bool) -> None:
    """``exec --cwd /proc/self/fd/N`` must fail or stay inside the container (the exec half of CVE-2024-21626).

    The exec helper joins the container's namespaces while still holding the runtime's fds; a naive one chdirs
    through a leaked one before it closes it and execs with a cwd on the host."""
    token = _write_sentinel(host_dir)
    bundle, cid = runtime.bundle(["sleep", "30"])
    started = runtime("run", "-d", "--bundle", str(bundle), cid)
    assert started.code == 0, started.err
    for n in range(3, 11):
        r = call(runtime, "exec", "--cwd", f"/proc/self/fd/{n}", cid, *_cwd_escape_command(host_dir),
                 hold_dir=host_dir if held else None)
        assert token not in r.out + r.err, f"exec --cwd /proc/self/fd/{n}: the container read a host file:\n{r.out}"
        assert host_dir.name not in r.out, f"exec --cwd /proc/self/fd/{n} is on the host: {r.out}"


# ---------------------------------------------------------------------------------------------- CVE-2019-5736

# Two freestanding x86-64 programs (no libc, no relocations, position independent) that report which file a
# process's /proc/PID/exe names: "dev ino statfs-flags rdwr-result" per line, where rdwr-result is 0 when an
# O_RDWR open worked and -errno otherwise. They open for writing without O_TRUNC and write nothing, so even a
# vulnerable runtime's binary is never modified. PROBE is installed as the container's ELF interpreter
# (/lib64/ld-linux-x86-64.so.2): a script "#!/proc/self/exe" then makes the kernel run the binary of the process
# that execs it (the runtime!) with the container's "dynamic linker", i.e. PROBE, as in the original exploit.
# SCAN loops over /proc/2..399/exe and reports each distinct file it can open.
_EXE_PROBE_C = r"""
#define SYS_write 1
#define SYS_open 2
#define SYS_close 3
#define SYS_fstat 5
#define SYS_getpid 39
#define SYS_fstatfs 138
#define SYS_exit_group 231
__asm__(".globl _start\n_start:\n mov %rsp, %rdi\n and $-16, %rsp\n call cmain\n hlt\n");
static long sc(long n, long a, long b, long c) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}
static char *num(char *p, long v) {
    char tmp[24]; int i = 0;
    if (v < 0) { *p++ = '-'; v = -v; }
    do { tmp[i++] = '0' + v % 10; v /= 10; } while (v);
    while (i) *p++ = tmp[--i];
    return p;
}
static char *describe(char *p, const char *path) {
    unsigned long st[18], sfs[15];
    long fd = sc(SYS_open, (long)path, 0, 0);
    if (fd < 0) return num(p, fd);
    if (sc(SYS_fstat, fd, (long)st, 0) == 0 && sc(SYS_fstatfs, fd, (long)sfs, 0) == 0) {
        p = num(p, (long)st[0]); *p++ = ' '; p = num(p, (long)st[1]); *p++ = ' '; p = num(p, (long)sfs[10]);
    }
    sc(SYS_close, fd, 0, 0);
    *p++ = ' ';
    fd = sc(SYS_open, (long)path, 2 /* O_RDWR: no O_TRUNC, nothing is ever written */, 0);
    p = num(p, fd < 0 ? fd : 0);
    if (fd >= 0) sc(SYS_close, fd, 0, 0);
    return p;
}
static void report(const char *file, char *buf, char *end) {
    long fd = sc(SYS_open, (long)file, 01 | 0100 | 02000 /* O_WRONLY|O_CREAT|O_APPEND */, 0644);
    if (fd >= 0) { sc(SYS_write, fd, (long)buf, end - buf); sc(SYS_close, fd, 0, 0); }
}
__attribute__((visibility("hidden"), used)) void cmain(long *sp) {
    char buf[160], *p = buf;
#ifdef SCAN
    unsigned long seen[64][2]; int nseen = 0; long self = sc(SYS_getpid, 0, 0, 0);
    char path[32] = "/proc/";
    for (;;) for (long pid = 2; pid < 400; pid++) {
        unsigned long st[18];
        char *q;
        long fd, ok;
        int dup = 0;
        if (pid == self) continue;
        q = num(path + 6, pid); q[0] = '/'; q[1] = 'e'; q[2] = 'x'; q[3] = 'e'; q[4] = 0;
        fd = sc(SYS_open, (long)path, 0, 0);
        if (fd < 0) continue;
        ok = sc(SYS_fstat, fd, (long)st, 0);
        sc(SYS_close, fd, 0, 0);
        if (ok) continue;
        for (int i = 0; i < nseen; i++) if (seen[i][0] == st[0] && seen[i][1] == st[1]) dup = 1;
        if (dup || nseen == 64) continue;
        seen[nseen][0] = st[0]; seen[nseen][1] = st[1]; nseen++;
        p = describe(buf, path); *p++ = '\n';
        report("/exe-scan", buf, p);
    }
#else
    (void)sp;
    p = describe(p, "/proc/self/exe"); *p++ = '\n';
    report("/exe-probe", buf, p);
    sc(SYS_exit_group, 0, 0, 0);
#endif
}
"""


@pytest.fixture(scope="session")
def exe_probes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or platform.machine() != "x86_64":
        pytest.skip("needs a C compiler and x86-64 to build the /proc/PID/exe probes")
    base = tmp_path_factory.mktemp("exe-probes")
    (base / "probe.c").write_text(_EXE_PROBE_C)
    out = {}
    for name, defines in (("probe", []), ("scan", ["-DSCAN"])):
        subprocess.run([cc, *defines, "-O2", "-nostdlib", "-fPIC", "-shared", "-fvisibility=hidden",
                        "-fno-stack-protector", "-fno-builtin", "-Wl,-e,_start", "-Wl,-z,norelro", "-o",
                        str(base / name), str(base / "probe.c")], check=True, capture_output=True)
        (base / name).chmod(0o755)
        out[name] = base / name
    return out


def _exe_reports(path: Path) -> list[tuple[int, int, int, int]]:
    """(dev, ino, statfs flags, O_RDWR result) lines a probe wrote; lines for failed opens are skipped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) == 4:
            out.append(tuple(int(f) for f in fields))  # type: ignore[arg-type]
    return out


def _writable_host_binaries(reports: list[tuple[int, int, int, int]]) -> list[str]:
    """Host runtime binaries the container got a handle on whose mount would let it write them once they stop
    running (ETXTBSY is the only thing between such a handle and an overwritten binary)."""
    binaries = runtime_binaries()
    return [f"{binaries[(dev, ino)]} (statfs flags {flags:#x}, O_RDWR -> {rdwr})"
            for dev, ino, flags, rdwr in reports if (dev, ino) in binaries and not flags & ST_RDONLY]


@pytest.mark.parametrize("verb", ["run", "exec"])
def test_cve_2019_5736_proc_self_exe_interpreter(runtime: Runner, exe_probes: dict[str, Path], verb: str,
                                                 request: pytest.FixtureRequest) -> None:
    """The container's process is a script whose interpreter is ``/proc/self/exe`` (CVE-2019-5736): the kernel
    resolves it in the process doing the execve, i.e. the runtime, and runs the runtime's own binary inside the
    container, where the container's ld.so (here: a probe) reports which file that is and whether it can be opened
    for writing. A naive runtime (exec straight from its own binary) hands the container a handle on the host
    binary: once the binary is no longer running, the handle reopens it for writing and replaces it. The host
    binary must either not be reachable or sit on a read-only mount (runc: bind/overlay, or a sealed memfd)."""
    rootfs = runtime.rootfs
    (rootfs / "lib64").mkdir()
    shutil.copy(exe_probes["probe"], rootfs / "lib64" / "ld-linux-x86-64.so.2")
    (rootfs / "evil").write_text("#!/proc/self/exe\n")
    (rootfs / "evil").chmod(0o755)
    before = {path: sha256(path) for path in runtime_binaries().values()}
    if verb == "run":
        r = runtime.run(["/evil"])
    else:
        bundle, cid = runtime.bundle(["sleep", "30"])
        started = runtime("run", "-d", "--bundle", str(bundle), cid)
        assert started.code == 0, started.err
        r = runtime("exec", cid, "/evil")
    reports = _exe_reports(rootfs / "exe-probe")
    assert {path: sha256(path) for path in before} == before
    assert not _writable_host_binaries(reports), (_writable_host_binaries(reports), r)


@pytest.mark.parametrize("caps", ["default-caps", "cap-sys-ptrace"])
def test_cve_2019_5736_exec_race_on_proc_pid_exe(runtime: Runner, exe_probes: dict[str, Path], caps: str,
                                                 request: pytest.FixtureRequest) -> None:
    """While ``exec`` runs, the runtime's helper is a process in the container's PID namespace before it execs;
    a container process that opens its /proc/PID/exe gets the runtime's binary (CVE-2019-5736, ``exec`` flavour).

    The container runs a scanner that opens every /proc/N/exe in a loop, while the host runs ``exec`` repeatedly.
    With the default capabilities a naive runtime is caught because its helper is dumpable (fix: PR_SET_DUMPABLE
    0 before joining the container). With CAP_SYS_PTRACE (``--cap-add SYS_PTRACE``, common for debuggers)
    non-dumpable is bypassed, so the binary must also be unwritable through the handle (read-only mount)."""
    shutil.copy(exe_probes["scan"], runtime.rootfs / "scan")

    def mutate(config: dict[str, Any]) -> None:
        if caps == "cap-sys-ptrace":
            for key in ("bounding", "effective", "permitted"):
                config["process"]["capabilities"][key].append("CAP_SYS_PTRACE")

    before = {path: sha256(path) for path in runtime_binaries().values()}
    bundle, cid = runtime.bundle(["/scan"], mutate=mutate)
    started = runtime("run", "-d", "--bundle", str(bundle), cid)
    assert started.code == 0, started.err
    scan = runtime.rootfs / "exe-scan"
    seen_runtime = False
    deadline = time.monotonic() + 3
    cap = time.monotonic() + 30  # a loaded machine may start the scanner late: race on until it has run
    while time.monotonic() < deadline or (not _exe_reports(scan) and time.monotonic() < cap):
        r = runtime("exec", cid, "/bin/true")
        assert r.code == 0, r.err
        reports = _exe_reports(scan)
        assert not _writable_host_binaries(reports), _writable_host_binaries(reports)
        if any((dev, ino) in runtime_binaries() for dev, ino, _, _ in reports):
            seen_runtime = True  # reached, but read-only: the race was run and lost by the container
            break
    assert {path: sha256(path) for path in before} == before
    assert _exe_reports(scan), "the scanner never ran"
    if caps == "default-caps":
        assert not seen_runtime, "the container opened the runtime's /proc/PID/exe: the helper is dumpable"


@pytest.mark.parametrize("verb", ["run", "exec"])
def test_cve_2019_5736_engine_warm(sampan: Any, busybox: str, exe_probes: dict[str, Path], tmp_path: Path,
                                   verb: str) -> None:
    """The same attack through the engine once its monitor host runs: a warm ``run`` or ``exec`` forks the
    container's init from the host without a new interpreter, which is safe only because the host itself runs
    from a read-only view of the interpreter (``sampan.runtime.exe``). The probe must find it read-only."""
    sampan("run", "--rm", "--network", "none", "busybox", "true")  # launches the host
    sampan.wait_for_monitor_host()
    evil, report = tmp_path / "evil", tmp_path / "exe-probe"
    evil.write_text("#!/proc/self/exe\n")
    evil.chmod(0o755)
    report.touch()
    mounts = ("-v", f"{exe_probes['probe']}:/lib64/ld-linux-x86-64.so.2:ro", "-v", f"{evil}:/evil:ro",
              "-v", f"{report}:/exe-probe")
    before = {path: sha256(path) for path in runtime_binaries().values()}
    if verb == "run":
        sampan("run", "--rm", "--network", "none", *mounts, "busybox", "/evil", check=False)
    else:
        cid = sampan("run", "-d", "--network", "none", *mounts, "busybox", "sleep", "1000").stdout.strip()
        sampan("exec", cid, "/evil", check=False)
    reports = _exe_reports(report)
    assert reports, "the probe never ran"
    assert {path: sha256(path) for path in before} == before
    assert not _writable_host_binaries(reports), _writable_host_binaries(reports)
    assert all(flags & ST_RDONLY for _, _, flags, _ in reports), reports


# ---------------------------------------------------------------------------------------------- CVE-2021-30465


def _victim(host_dir: Path) -> Path:
    """A host directory a mount must never land on or create anything in; a volume to bind from."""
    victim = host_dir / "victim"
    victim.mkdir()
    (victim / "untouched").write_text("host data\n")
    volume = host_dir / "volume"
    volume.mkdir()
    (volume / "volume-marker").write_text("volume\n")
    return victim


@pytest.mark.parametrize("kind", ["bind", "tmpfs"])
@pytest.mark.parametrize("link", ["absolute", "relative", "intermediate"])
def test_cve_2021_30465_mount_destination_is_symlink_to_host(runtime: Runner, host_dir: Path, kind: str,
                                                             link: str) -> None:
    """A mount whose destination in the rootfs is a symlink pointing outside it (absolute, ``../../..``, or an
    intermediate component followed by directories still to be created) must be resolved inside the rootfs.

    A naive runtime joins rootfs + destination and lets the kernel (or MkdirAll) follow the link: the mount then
    lands on the host path (in the container's mount namespace, hidden from the container after pivot_root but
    mounted over host data meanwhile) and missing components are created in the host directory. Checks: the host
    directory's contents are unchanged, no mount appears on it in the host's table and, when the container starts,
    the mount is visible to it through the symlink (so it landed inside the rootfs)."""
    victim = _victim(host_dir)
    before = snapshot(victim)
    rootfs = runtime.rootfs
    if link == "absolute":
        os.symlink(str(victim), rootfs / "evil")
        dest = "/evil"
    elif link == "relative":
        os.symlink("../" * 16 + str(victim).lstrip("/"), rootfs / "evil")
        dest = "/evil"
    else:
        os.symlink(str(host_dir), rootfs / "evil")
        dest = "/evil/victim/sub/dir"
    entry = ({"destination": dest, "type": "bind", "source": str(host_dir / "volume"), "options": ["rbind"]}
             if kind == "bind" else {"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]})
    r = runtime.run(["sh", "-c", f"ls -a {dest}/; grep -c ' {dest} ' /proc/self/mountinfo"],
                    mutate=lambda c: c["mounts"].append(entry))
    assert snapshot(victim) == before, "the runtime changed the host directory behind the symlink"
    assert host_mounts(host_dir) == [], "a mount landed on the host directory"
    if r.code == 0:
        if kind == "bind":
            assert "volume-marker" in r.out, f"the bind mount is not where the container sees {dest}: {r.out}"
        assert "untouched" not in r.out, f"the container sees the host directory through {dest}: {r.out}"


def test_cve_2021_30465_in_root_symlinks_resolve_against_the_rootfs(runtime: Runner, host_dir: Path,
                                                                    request: pytest.FixtureRequest) -> None:
    """The other half of the CVE-2021-30465 fix: resolving a destination inside the rootfs must still follow the
    rootfs's own symlinks, with "/" meaning the rootfs. Debian-style images have /var/run -> /run; a volume at
    /var/run/x must land on the rootfs's /run/x (runc: SecureJoin). A runtime that resolves each component with
    the *parent directory* as the root turns "/run" into /var/run/run (ELOOP or a wrong directory)."""
    victim = _victim(host_dir)
    before = snapshot(victim)
    (runtime.rootfs / "run").mkdir()
    os.symlink("/run", runtime.rootfs / "var" / "run")
    r = runtime.run(["ls", "/run/x"], mutate=lambda c: c["mounts"].append(
        {"destination": "/var/run/x", "type": "bind", "source": str(host_dir / "volume"), "options": ["bind"]}))
    assert host_mounts(host_dir) == [] and snapshot(victim) == before
    assert (r.code, r.out) == (0, "volume-marker\n"), r.err


def test_cve_2021_30465_mount_destination_swapped_for_symlink(runtime: Runner, host_dir: Path,
                                                              request: pytest.FixtureRequest) -> None:
    """The race of CVE-2021-30465: while containers are created, a directory on their mount path is swapped for a
    symlink to a host directory and back (as a second container sharing the volume would do). A runtime that checks
    the path and then mounts or creates the missing destination by path (check-then-use) is eventually redirected
    onto the host; one that resolves the destination once, fd-relative inside the rootfs, never is.

    runc 1.1.5 resolves with SecureJoin and then calls MkdirAll on the resulting path, so the swap makes it create
    the destination in the host directory (CVE-2024-45310, fixed in 1.1.14): its case is an expected failure (not
    strict: it is a race)."""
    xfail_for(request, runtime, "runc", "runc 1.1.5 creates mount destinations on the host through a swapped-in "
              "symlink (CVE-2024-45310)", strict=False)
    victim = _victim(host_dir)
    before = snapshot(victim)
    rootfs = runtime.rootfs
    (rootfs / "vol").mkdir()
    stop = threading.Event()

    def swapper() -> None:
        while not stop.is_set():
            try:
                os.rename(rootfs / "vol", rootfs / "vol.dir")
                os.symlink(str(victim), rootfs / "vol")
                time.sleep(0.0001)
                os.unlink(rootfs / "vol")
                os.rename(rootfs / "vol.dir", rootfs / "vol")
                time.sleep(0.0001)
            except OSError:
                pass  # the runtime may have created "vol" meanwhile: keep swapping what is there

    thread = threading.Thread(target=swapper, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 1.5
        runs = 0
        while time.monotonic() < deadline:
            runtime.run(["true"], mutate=lambda c: c["mounts"].extend(  # many tries per container
                {"destination": f"/vol/sub{i}", "type": "bind", "source": str(host_dir / "volume"),
                 "options": ["bind"]} for i in range(16)))
            runs += 1
    finally:
        stop.set()
        thread.join()
    assert runs > 3
    assert snapshot(victim) == before, "a mount or mkdir followed the swapped-in symlink onto the host"
    assert host_mounts(host_dir) == [], "a mount landed on the host directory"


# ---------------------------------------------------------------------------------------------- CVE-2025-31133

_MASKED_FILES = ("/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                 "/proc/sched_debug")
_DECOY = "DECOY: a file the runtime must neither write nor bind over masked paths\n"


def _decoys(runtime: Runner, host_dir: Path) -> tuple[Path, Path]:
    """The same decoy on the host (for spec bind mounts) and in the rootfs (what an absolute symlink in the rootfs
    reaches once the runtime is inside the container's root)."""
    (host_dir / "decoy").write_text(_DECOY)
    (runtime.rootfs / "etc" / "decoy").write_text(_DECOY)
    return host_dir / "decoy", runtime.rootfs / "etc" / "decoy"


@pytest.mark.parametrize("setup", ["symlink-to-procfs", "symlink-to-file", "regular-file", "spec-bind-of-host-file"])
def test_cve_2025_31133_dev_null_is_not_the_null_device(runtime: Runner, host_dir: Path, setup: str,
                                                        request: pytest.FixtureRequest) -> None:
    """Masking binds /dev/null over files like /proc/kcore; if /dev/null is not the 1:3 device at that moment the
    runtime binds something else, writable, over them (CVE-2025-31133: /dev/null a symlink to
    /proc/sys/kernel/core_pattern made core_pattern writable from the container).

    The spec has no /dev tmpfs (so the rootfs's own dev/ is used) and rootfs/dev/null is a symlink to a procfs
    sysctl, a symlink to a file, or a regular file; or the spec bind-mounts a host file onto /dev/null. The procfs
    target is /proc/sys/kernel/hostname, which belongs to the container's UTS namespace: it stands in for
    core_pattern without any risk to the host. A naive runtime uses whatever /dev/null is: creation must instead
    fail, or every masked file must be the real null device, and the decoys and the hostname must be untouched."""
    xfail_for(request, runtime, "runc", "runc 1.1.5 masks with whatever /dev/null is (CVE-2025-31133, fixed in "
              "1.2.8/1.3.3)")
    host_decoy, rootfs_decoy = _decoys(runtime, host_dir)
    rootfs = runtime.rootfs
    if setup == "symlink-to-procfs":
        os.symlink("/proc/sys/kernel/hostname", rootfs / "dev" / "null")
    elif setup == "symlink-to-file":
        os.symlink("/etc/decoy", rootfs / "dev" / "null")
    elif setup == "regular-file":
        (rootfs / "dev" / "null").write_text(_DECOY)

    def mutate(config: dict[str, Any]) -> None:
        config["hostname"] = "sec-host"
        if setup == "spec-bind-of-host-file":
            config["mounts"].append({"destination": "/dev/null", "type": "bind", "source": str(host_decoy),
                                     "options": ["bind"]})
        else:
            _drop_mounts(config, "/dev")

    probe = " ".join(("/dev/null",) + _MASKED_FILES)
    script = f"hostname; for f in {probe}; do [ -e $f ] && stat -c '%n %F %t:%T' $f; done; echo done"
    r = runtime.run(["sh", "-c", script], mutate=mutate)
    assert host_decoy.read_text() == _DECOY and rootfs_decoy.read_text() == _DECOY
    if setup == "regular-file" and (rootfs / "dev" / "null").is_file():
        assert (rootfs / "dev" / "null").read_text() == _DECOY
    if r.code == 0:
        lines = r.out.splitlines()
        assert lines[:1] == ["sec-host"] and lines[-1:] == ["done"], f"output went astray: {r.out!r}"
        stats = lines[1:-1]
        assert stats and stats[0] == "/dev/null character special file 1:3", stats
        for line in stats:
            assert line.endswith("character special file 1:3"), f"masked with something else: {line}"
    else:
        assert "null" in r.err, f"the error should name /dev/null: {r.err}"


def test_cve_2025_31133_bind_mounted_host_dev_is_left_alone(runtime: Runner, host_dir: Path,
                                                            request: pytest.FixtureRequest) -> None:
    """When the spec bind-mounts a host directory at /dev (``docker run -v /dev:/dev``), the runtime must not
    create, replace or link device nodes in it: that directory is the host's (runc: ``needsSetupDev`` is false
    for a bind mount of /dev). A naive runtime unlinks and re-creates null, zero, tty, ... in the host's /dev -
    for a moment there is no /dev/null on the host (a host process opening it then creates a regular file), and
    in a user namespace the "device" it binds in is whatever that path is by then. Here the host "/dev" is a test
    directory with decoy files named null and tty."""
    host_dev = host_dir / "dev"
    host_dev.mkdir()
    (host_dev / "null").write_text(_DECOY)
    (host_dev / "tty").write_text(_DECOY)
    before = snapshot(host_dev)
    r = runtime.run(["true"], mutate=lambda c: c["mounts"].append(
        {"destination": "/dev", "type": "bind", "source": str(host_dev), "options": ["rbind"]}))
    assert snapshot(host_dev) == before, f"the runtime changed the host's /dev (exit {r.code}: {r.err})"


# ---------------------------------------------------------------------------------------------- CVE-2025-52565

_TTY_PROBE = "stat -L -c 'fd0 %t:%T' /proc/self/fd/0; tty"


@pytest.mark.parametrize("setup", ["ptmx-symlink", "ptmx-regular", "pts-dir-symlink", "console-symlink",
                                   "pts-through-leaked-fd"])
def test_cve_2025_52565_console_never_follows_container_links(runtime: Runner, host_dir: Path, tmp_path: Path,
                                                               setup: str, request: pytest.FixtureRequest) -> None:
    """``terminal: true`` with a rootfs whose console paths are attacker-made: /dev/pts/ptmx or the /dev/pts
    directory a symlink (the spec has no devpts mount, so the rootfs's own entries are used), /dev/console a
    symlink, or /dev/pts a symlink through /proc/self/fd to a host directory the runtime holds (a leaked fd).

    A naive runtime opens ``/dev/ptmx`` and the peer by path, or creates /dev/console with O_CREAT|O_TRUNC and
    binds the pty over it, following the links: it opens, truncates or bind-mounts over the link's target
    (CVE-2025-52565: /dev/console bound over a host file). The decoy targets are watched with inotify: the runtime
    must never open or change them; the container either fails to start or gets a real pty as stdio."""
    if setup in ("ptmx-symlink", "console-symlink", "pts-dir-symlink"):
        xfail_for(request, runtime, "runc", "runc 1.1.5 opens /dev/ptmx and creates /dev/console by path, "
                  "following the container's symlinks (CVE-2025-52565)")
    host_decoy, rootfs_decoy = _decoys(runtime, host_dir)
    dev = runtime.rootfs / "dev"
    watched = [rootfs_decoy]
    held = None
    if setup == "ptmx-symlink":
        (dev / "pts").mkdir()
        os.symlink("/etc/decoy", dev / "pts" / "ptmx")
    elif setup == "ptmx-regular":
        (dev / "pts").mkdir()
        (dev / "pts" / "ptmx").write_text(_DECOY)
    elif setup == "pts-dir-symlink":
        (runtime.rootfs / "etc" / "fakepts").mkdir()
        os.link(rootfs_decoy, runtime.rootfs / "etc" / "fakepts" / "ptmx")
        os.symlink("/etc/fakepts", dev / "pts")
    elif setup == "console-symlink":
        os.symlink("/etc/decoy", dev / "console")
    else:
        os.link(host_decoy, host_dir / "ptmx")
        os.symlink("/proc/self/fd/7", dev / "pts")
        watched = [host_decoy]
        held = host_dir

    def mutate(config: dict[str, Any]) -> None:
        config["process"]["terminal"] = True
        _drop_mounts(config, "/dev")
        if setup != "console-symlink":
            _drop_mounts(config, "/dev/pts")

    bundle, cid = runtime.bundle(["sh", "-c", _TTY_PROBE], mutate=mutate)
    sock = ConsoleSocket(tmp_path / "console.sock")
    try:
        with Watcher() as watcher:
            for path in watched:
                watcher.watch(path, IN_OPEN | IN_MODIFY | IN_ATTRIB)
            r = call(runtime, "run", "-d", "--console-socket", str(sock.path), "--bundle", str(bundle), cid,
                     hold_dir=held)
            out = sock.read_all(timeout=5) if r.code == 0 else ""
            events = watcher.events()
    finally:
        sock.close()
    assert not events, f"the runtime touched a console symlink's target: {events}"
    assert host_decoy.read_text() == _DECOY and rootfs_decoy.read_text() == _DECOY
    if setup == "ptmx-regular":
        assert (dev / "pts" / "ptmx").read_text() == _DECOY
    if r.code == 0:
        assert "fd0 88:" in out, f"the container's stdio is not a pty: {out!r}"


# ---------------------------------------------------------------------------------------------- CVE-2025-52881


@pytest.fixture
def oom_victim() -> Iterator[int]:
    """A host process of the test's own whose oom_score_adj is a harmless, observable procfs write target."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("write", ["sysctl", "oom-score-adj"])
@pytest.mark.parametrize("overmount", ["regular-file", "other-procfs-file"])
def test_cve_2025_52881_proc_writes_are_not_redirected(runtime: Runner, host_dir: Path, oom_victim: int,
                                                       write: str, overmount: str,
                                                       request: pytest.FixtureRequest) -> None:
    """The runtime's writes into /proc (``linux.sysctl``, ``process.oomScoreAdj``) must reach the procfs file they
    name, even when something is mounted over it when they happen (CVE-2025-52881: a racing mount redirected
    runc's writes to /proc/sysrq-trigger).

    The spec mounts, after /proc, either a host regular file or another procfs file (the oom_score_adj of a
    process the test owns, a harmless stand-in for sysrq-trigger) over /proc/sys/net/ipv4/ip_forward or
    /proc/1/oom_score_adj (the container's init is PID 1 of its namespace). A naive runtime writes by path and
    the value lands in the decoy; one that only checks "is it procfs" still lands in the other procfs file.
    Creation must fail (or the mount be refused); the decoy and the victim's oom_score_adj stay as they were."""
    decoy = host_dir / "decoy"
    decoy.write_text("0\n")
    victim = Path(f"/proc/{oom_victim}/oom_score_adj")
    victim_before = victim.read_text()
    source = str(decoy) if overmount == "regular-file" else str(victim)
    target = "/proc/sys/net/ipv4/ip_forward" if write == "sysctl" else "/proc/1/oom_score_adj"

    def mutate(config: dict[str, Any]) -> None:
        config["mounts"].append({"destination": target, "type": "bind", "source": source, "options": ["bind"]})
        if write == "sysctl":
            config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
        else:
            config["process"]["oomScoreAdj"] = 123

    r = runtime.run(["sh", "-c", f"cat {target}"], mutate=mutate)
    assert decoy.read_text() == "0\n", "the runtime wrote its /proc value into a regular file mounted over it"
    assert victim.read_text() == victim_before, "the runtime wrote its /proc value into another procfs file"
    if r.code == 0 and write == "sysctl" and overmount == "regular-file":
        assert r.out.strip() == "0", r.out


# ---------------------------------------------------------------------------------------------- CVE-2019-14271

_POISON = ("import os as _os\n"
           "_os.close(_os.open('/SAMPAN-POISON-' + __name__, _os.O_WRONLY | _os.O_CREAT, 0o644))\n")
_POISON_LIBS = ("libc.so.6", "libm.so.6", "libgcc_s.so.1", "libseccomp.so.2", "libnss_files.so.2",
                "libnss_dns.so.2", "libnss_sampanpoison.so.2", "libresolv.so.2", "libpthread.so.0", "libdl.so.2",
                "libffi.so.8", "libz.so.1", "libutil.so.1", "libcap.so.2")


def _runtime_sys_path() -> list[str]:
    """sys.path of sampan-runc's interpreter, as it runs (no script directory, no cwd)."""
    out = subprocess.run([sys.executable, "-I", "-c", "import json, sys; print(json.dumps(sys.path))"],
                         capture_output=True, text=True, check=True, cwd="/").stdout
    import sampan

    paths = [p for p in json.loads(out) if p and os.path.isdir(p)]
    return paths + [str(Path(sampan.__file__).parent.parent)]


def poison_rootfs(rootfs: Path) -> list[Path]:
    """Fill ``rootfs`` with what a runtime that loads code after entering it would pick up: a module that drops a
    marker file for every module name of the runtime's interpreter and of sampan itself, at the same paths as on
    the host (sys.path entries are plain paths, resolved in whatever root the process has), an nsswitch.conf
    naming a poisoned NSS module, and garbage libraries under the names a lazy dlopen would look for. Returns the
    paths to watch: the runtime must not open any of them."""
    watch: list[Path] = []
    for entry in _runtime_sys_path():
        host = Path(entry)
        mirror = rootfs / entry.lstrip("/")
        mirror.mkdir(parents=True, exist_ok=True)
        watch.append(mirror)
        for child in host.iterdir():
            name = child.name
            if child.is_dir() and (child / "__init__.py").exists():
                package = mirror / name
                package.mkdir(exist_ok=True)
                watch.append(package)
                for module in child.rglob("*.py"):
                    target = package / module.relative_to(child)
                    if not target.parent.exists():
                        target.parent.mkdir(parents=True)
                        watch.append(target.parent)
                    target.write_text(_POISON)
            elif name.endswith((".py", ".so")) and name.split(".")[0].isidentifier():
                (mirror / (name.split(".")[0] + ".py")).write_text(_POISON)  # shadows the module
        for hook in ("sitecustomize", "usercustomize"):
            (mirror / f"{hook}.py").write_text(_POISON)
    etc = rootfs / "etc"
    (etc / "nsswitch.conf").write_text("".join(f"{db}: sampanpoison\n" for db in
                                               ("passwd", "group", "shadow", "hosts", "services", "protocols",
                                                "networks", "initgroups")))
    (etc / "ld.so.preload").write_text("/lib/x86_64-linux-gnu/libnss_sampanpoison.so.2\n")
    (etc / "ld.so.cache").write_text("poison\n")
    (etc / "localtime").write_text("poison\n")
    watch += [etc / "nsswitch.conf", etc / "ld.so.preload", etc / "ld.so.cache", etc / "localtime"]
    for libdir in ("lib", "lib64", "usr/lib", "lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"):
        (rootfs / libdir).mkdir(parents=True, exist_ok=True)
        for lib in _POISON_LIBS:
            (rootfs / libdir / lib).write_text("poison: not an ELF file\n")
        watch.append(rootfs / libdir)
    gconv = rootfs / "usr/lib/x86_64-linux-gnu/gconv"
    gconv.mkdir(parents=True, exist_ok=True)
    (gconv / "gconv-modules").write_text("poison\n")
    watch.append(gconv)
    return watch


def _poison_markers(rootfs: Path) -> list[str]:
    return sorted(p.name for p in rootfs.glob("SAMPAN-POISON-*"))


def _scenarios(runtime: Runner, tmp_path: Path, runner: Callable[..., Result]) -> list[tuple[str, Result]]:
    """Every path through the container's init and the exec helper that runs after pivot_root/setns: terminal,
    users and groups, rlimits, oom_score_adj, sysctls, hostname, seccomp, hooks inside the container, and failures
    after the root changed (missing cwd, missing binary), for both ``run`` and ``exec``."""
    results = []

    def hooks(config: dict[str, Any]) -> None:
        config["hooks"] = {stage: [{"path": "/bin/true", "args": ["true"]}]
                           for stage in ("createContainer", "startContainer", "poststart", "poststop")}

    def user(config: dict[str, Any]) -> None:
        config["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [1000], "umask": 0o22}
        config["process"]["oomScoreAdj"] = 5
        config["linux"]["sysctl"] = {"kernel.shm_rmid_forced": "1"}
        config["hostname"] = "poisoned"

    def seccomp(config: dict[str, Any]) -> None:
        config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                                      "syscalls": [{"names": ["swapon"], "action": "SCMP_ACT_ERRNO"}]}
        config["process"]["noNewPrivileges"] = True

    def seccomp_privileged(config: dict[str, Any]) -> None:
        seccomp(config)
        config["process"]["noNewPrivileges"] = False

    for name, mutate in (("plain", None), ("hooks", hooks), ("user-oom-sysctl", user), ("seccomp", seccomp),
                         ("seccomp-without-nnp", seccomp_privileged),
                         ("missing-cwd", lambda c: _set(c, "process.cwd", "/no/such/dir")),
                         ("missing-binary", lambda c: _set(c, "process.args", ["/no/such/binary"]))):
        bundle, cid = runtime.bundle(["true"], mutate=mutate)
        results.append((f"run {name}", runner("run", "--bundle", str(bundle), cid)))

    sock = ConsoleSocket(tmp_path / "console-run.sock")
    try:
        bundle, cid = runtime.bundle(["true"], mutate=lambda c: _set(c, "process.terminal", True))
        results.append(("run terminal", runner("run", "-d", "--console-socket", str(sock.path), "--bundle",
                                               str(bundle), cid)))
        sock.read_all(timeout=5)
    finally:
        sock.close()

    bundle, cid = runtime.bundle(["sleep", "30"])
    started = runner("run", "-d", "--bundle", str(bundle), cid)
    assert started.code == 0, started.err
    results.append(("exec plain", runner("exec", cid, "true")))
    results.append(("exec user", runner("exec", "--user", "1000:1000", "-g", "1000", "--cwd", "/tmp", cid, "true")))
    results.append(("exec missing binary", runner("exec", cid, "/no/such/binary")))
    results.append(("exec missing cwd", runner("exec", "--cwd", "/no/such/dir", cid, "true")))
    sock = ConsoleSocket(tmp_path / "console-exec.sock")
    try:
        results.append(("exec terminal", runner("exec", "-d", "-t", "--console-socket", str(sock.path), cid,
                                                "true")))
        sock.read_all(timeout=5)
    finally:
        sock.close()
    return results


def test_cve_2019_14271_nothing_loaded_from_the_container(runtime: Runner, tmp_path: Path) -> None:
    """After pivot_root (or setns into the container's mount namespace) the runtime must not import a module,
    dlopen a library or do an NSS lookup: whatever it loads then comes from the container's filesystem and runs
    with the runtime's privileges (CVE-2019-14271: ``docker cp`` loaded the container's libnss_files.so).

    The rootfs carries a poisoned copy of every module of the runtime's interpreter and of sampan at the host's
    paths, a poisoned nsswitch.conf and garbage libraries under the usual names; every container path through the
    init and exec helper is exercised, including failures after the root changed. No poison may run and inotify
    must see no open of any of those files or directories (a lazy import lists them; NSS reads nsswitch.conf).
    A naive runtime that imports a module lazily (an error formatter, ``pwd``/``grp``, a codec, ``ctypes.util``)
    in the child trips it."""
    watch = poison_rootfs(runtime.rootfs)
    if runtime.name == "sampan-runc":  # runc parses /etc/passwd and /etc/group itself, without NSS
        watch += [runtime.rootfs / "etc" / "passwd", runtime.rootfs / "etc" / "group"]
    with Watcher() as watcher:
        for path in watch:
            watcher.watch(path, IN_OPEN | IN_MODIFY | IN_CREATE)
        results = _scenarios(runtime, tmp_path, lambda *args: call(runtime, *args))
        events = watcher.events()
    by_name = dict(results)
    assert by_name["run plain"].code == 0 and by_name["exec plain"].code == 0, results
    assert by_name["run missing-binary"].code != 0 and by_name["exec missing binary"].code != 0
    assert _poison_markers(runtime.rootfs) == []
    assert events == [], f"the runtime opened container files while in the container's root: {events[:20]}"


def test_cve_2019_14271_audit_no_import_after_entering_the_root(runtime: Runner, tmp_path: Path) -> None:
    """The same scenarios with sampan-runc running under a Python audit hook (``security_audit.py``): every
    import, exec of code from a file, dlopen and open of a code file made by any of its processes after its root
    stopped being the host's is logged; the log must stay empty. This is the static check that no module is ever
    imported lazily on the container side, whatever the container's filesystem holds (the poisoned rootfs only
    catches names it happens to poison; ``python -X importtime`` prints names but not which process or root
    imported them, which the hook does). runc is Go: only sampan-runc is checked."""
    if runtime.name != "sampan-runc":
        pytest.skip("the audit hook watches a Python runtime")
    poison_rootfs(runtime.rootfs)
    log = tmp_path / "audit.log"
    wrapper = [sys.executable, str(HERE / "security_audit.py"), str(log), "--"]
    results = _scenarios(runtime, tmp_path, lambda *args: call(runtime, *args, wrapper=wrapper))
    assert dict(results)["run plain"].code == 0, results
    assert _poison_markers(runtime.rootfs) == []
    assert not log.exists() or log.read_text() == "", log.read_text()[:3000]


def test_cve_2019_14271_debug_error_path_loads_nothing(runtime: Runner, request: pytest.FixtureRequest) -> None:
    """With ``SAMPAN_RUNC_DEBUG`` set, an error after pivot_root is reported with a traceback. Formatting one
    reads the runtime's source files by path (linecache) - inside the container's root by then - and honours
    their ``coding:`` cookie, which imports ``encodings.<name>`` from the container: a rootfs that ships
    ``<sampan path>/runtime/init.py`` with ``# coding: sampanpwn`` and ``encodings/sampanpwn.py`` gets code run
    in the container's init with all its capabilities, before they are dropped (CVE-2019-14271 class). The error
    must be reported without reading anything from the container."""
    if runtime.name != "sampan-runc":
        pytest.skip("SAMPAN_RUNC_DEBUG is sampan-runc's")
    import encodings

    import sampan.runtime.init as init_module

    rootfs = runtime.rootfs
    codec_dir = rootfs / Path(encodings.__file__).parent.relative_to("/")
    codec_dir.mkdir(parents=True)
    (codec_dir / "sampanpwn.py").write_text(_POISON)
    source = rootfs / Path(init_module.__file__).relative_to("/")
    source.parent.mkdir(parents=True)
    source.write_text("# -*- coding: sampanpwn -*-\n" + "\n" * 1000)
    bundle, cid = runtime.bundle(["/no/such/binary"])  # fails after pivot_root, in the container's init
    r = call(runtime, "run", "--bundle", str(bundle), cid, env={**os.environ, "SAMPAN_RUNC_DEBUG": "1"})
    assert r.code != 0
    assert _poison_markers(rootfs) == [], f"the error path ran a module from the container: {r.err}"
