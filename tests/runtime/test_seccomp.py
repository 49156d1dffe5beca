"""Seccomp filters on the real kernel: each test forks a child that loads a filter and probes syscalls.

The filter is compiled in the parent and loaded in the child, as ``sampan-runc`` does; the child sets
no_new_privs first (so the tests do not need CAP_SYS_ADMIN) and reports what its syscalls returned as JSON
through a pipe. A child killed by the filter reports nothing, and its wait status tells how it died. Every
child is killed and reaped by its pid, whatever the test's outcome.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sampan._linux import seccomp as scmp
from sampan._linux.process import PR_SET_NO_NEW_PRIVS, prctl
from sampan.errors import InvalidArgument
from sampan.runtime import seccomp

pytestmark = pytest.mark.skipif(not scmp.available(), reason="libseccomp.so.2 is not installed")

X86_64 = os.uname().machine == "x86_64"
needs_x86_64 = pytest.mark.skipif(not X86_64, reason="probes x86_64 and x32 syscall numbers")

X32_BIT = 0x40000000
AUDIT_ARCH_I386 = 0x40000003
CLONE_THREAD = 0x00010000
CLONE_NEWUTS = 0x04000000
ADDR_NO_RANDOMIZE = 0x0040000
AF_VSOCK = 40
# Signals whose default action is to do nothing, so kill(self, sig) is a harmless probe.
HARMLESS_SIGNALS = (0, signal.SIGCHLD, signal.SIGURG, signal.SIGWINCH)

# What a Python child needs after loading a default-deny filter to report and exit.
PYTHON_MINIMUM = ["write", "exit_group", "exit", "brk", "mmap", "munmap", "mremap", "madvise", "rt_sigreturn",
                  "rt_sigaction", "rt_sigprocmask", "sigaltstack", "futex", "getpid", "gettid", "close"]

# The unconditional allow list of Docker's default profile (moby profiles/seccomp/default.json), plus names no
# libseccomp knows, as a profile newer than the library would have.
DOCKER_ALLOWED = [
    "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "capget", "capset", "chdir", "chmod",
    "chown", "chown32", "clock_adjtime", "clock_adjtime64", "clock_getres", "clock_getres_time64",
    "clock_gettime", "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64", "close", "close_range",
    "connect", "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create", "epoll_create1",
    "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd",
    "eventfd2", "execve", "execveat", "exit", "exit_group", "faccessat", "faccessat2", "fadvise64",
    "fadvise64_64", "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchown", "fchown32",
    "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr",
    "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64",
    "futex", "futex_time64", "futex_waitv", "futimesat", "getcpu", "getcwd", "getdents", "getdents64",
    "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32",
    "getitimer", "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom",
    "getresgid", "getresgid32", "getresuid", "getresuid32", "getrlimit", "get_robust_list", "getrusage",
    "getsid", "getsockname", "getsockopt", "get_thread_area", "gettid", "gettimeofday", "getuid", "getuid32",
    "getxattr", "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel",
    "ioctl", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64", "ioprio_get",
    "ioprio_set", "io_setup", "io_submit", "ipc", "kill", "landlock_add_rule", "landlock_create_ruleset",
    "landlock_restrict_self", "lchown", "lchown32", "lgetxattr", "link", "linkat", "listen", "listxattr",
    "llistxattr", "_llseek", "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64", "madvise",
    "membarrier", "memfd_create", "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock",
    "mlock2", "mlockall", "mmap", "mmap2", "mprotect", "mq_getsetattr", "mq_notify", "mq_open",
    "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "mremap",
    "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap", "name_to_handle_at",
    "nanosleep", "newfstatat", "_newselect", "open", "openat", "openat2", "pause", "pidfd_open",
    "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free", "pkey_mprotect", "poll", "ppoll",
    "ppoll_time64", "prctl", "pread64", "preadv", "preadv2", "prlimit64", "process_mrelease", "pselect6",
    "pselect6_time64", "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat",
    "readv", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr",
    "rename", "renameat", "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction", "rt_sigpending",
    "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
    "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr", "sched_getparam",
    "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval",
    "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr", "sched_setparam",
    "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl", "semget", "semop", "semtimedop",
    "semtimedop_time64", "send", "sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto", "setfsgid",
    "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32", "setitimer",
    "setpgid", "setpriority", "setregid", "setregid32", "setresgid", "setresgid32", "setresuid",
    "setresuid32", "setreuid", "setreuid32", "setrlimit", "set_robust_list", "setsid", "setsockopt",
    "set_thread_area", "set_tid_address", "setuid", "setuid32", "setxattr", "shmat", "shmctl", "shmdt",
    "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4", "sigprocmask", "sigreturn", "socketcall",
    "socketpair", "splice", "stat", "stat64", "statfs", "statfs64", "statx", "symlink", "symlinkat", "sync",
    "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create", "timer_delete",
    "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64",
    "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times",
    "tkill", "truncate", "truncate64", "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "utime",
    "utimensat", "utimensat_time64", "utimes", "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write",
    "writev", "sampan_future_syscall_one", "sampan_future_syscall_two",
]

DOCKER_STYLE: dict[str, Any] = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "syscalls": [
        {"names": DOCKER_ALLOWED, "action": "SCMP_ACT_ALLOW"},
        {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": AF_VSOCK,
                                                                   "op": "SCMP_CMP_NE"}]},
        *({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
           "args": [{"index": 0, "value": persona, "op": "SCMP_CMP_EQ"}]}
          for persona in (0, 8, 131072, 131080, 4294967295)),
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
    ],
}


# --- probes -------------------------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def raw_syscall(nr: int, *args: int | bytes) -> int:
    """errno of syscall ``nr`` (0 when it succeeded), for numbers and arguments ``os`` cannot express."""
    ctypes.set_errno(0)
    c_args = [ctypes.c_char_p(a) if isinstance(a, bytes) else ctypes.c_long(a) for a in args]
    return ctypes.get_errno() if _libc.syscall(ctypes.c_long(nr), *c_args) == -1 else 0


def errno_of(fn: Callable[..., object], *args: Any) -> int:
    try:
        fn(*args)
    except OSError as exc:
        return exc.errno or -1
    return 0


def nr(name: str) -> int:
    number = scmp.syscall_resolve_name(name)
    assert number is not None and number >= 0, name
    return number


def make_socket(family: int) -> int:
    """errno of socket(family, SOCK_STREAM), closing what it made."""
    try:
        socket.socket(family, socket.SOCK_STREAM).close()
    except OSError as exc:
        return exc.errno or -1
    return 0


# --- children -----------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    status: int
    report: Any

    @property
    def killed_by(self) -> int | None:
        return os.WTERMSIG(self.status) if os.WIFSIGNALED(self.status) else None


class Child:
    """A forked child that runs ``body`` and writes its JSON result to a pipe; reaped by pid."""

    def __init__(self, body: Callable[[], object]) -> None:
        read_end, write_end = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - runs in the child
            try:
                os.close(read_end)
                try:
                    data = json.dumps({"ok": body()}).encode()
                except BaseException as exc:  # noqa: BLE001 - any failure becomes the report
                    data = json.dumps({"error": repr(exc)}).encode()
                os.write(write_end, data)
            finally:
                os._exit(0)
        os.close(write_end)
        self.pipe = read_end
        self.status: int | None = None

    def readable(self, timeout: float) -> bool:
        return bool(select.select([self.pipe], [], [], timeout)[0])

    def outcome(self, timeout: float = 30.0) -> Outcome:
        deadline = time.monotonic() + timeout
        data = b""
        while self.readable(max(deadline - time.monotonic(), 0)):
            chunk = os.read(self.pipe, 65536)
            if not chunk:
                break
            data += chunk
        else:
            raise AssertionError(f"child {self.pid} did not finish in {timeout}s")
        _, self.status = os.waitpid(self.pid, 0)
        report = json.loads(data) if data else None
        if report and "error" in report:
            raise AssertionError(f"child failed: {report['error']}")
        return Outcome(self.status, report["ok"] if report else None)

    def reap(self) -> None:
        os.close(self.pipe)
        if self.status is None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)


@contextmanager
def child(body: Callable[[], object]) -> Iterator[Child]:
    proc = Child(body)
    try:
        yield proc
    finally:
        proc.reap()


def run(body: Callable[[], object]) -> Outcome:
    with child(body) as proc:
        return proc.outcome()


def load(flt: seccomp.Filter) -> int | None:
    """What the runtime does last in the container process: no_new_privs, then the filter."""
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    return flt.load()


def confined(profile: dict[str, Any], probe: Callable[[], object]) -> Outcome:
    """Compile ``profile`` here, load it in a child, and return what ``probe`` saw there."""
    flt = seccomp.compile_filter(profile)
    assert flt is not None

    def body() -> object:
        load(flt)
        return probe()

    with flt:
        return run(body)


def allow_all_but(*rules: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": list(rules), **extra}


# --- actions ------------------------------------------------------------------------------------------------


def test_errno_action_uses_eperm_by_default_and_the_configured_errno(tmp_path: Path) -> None:
    (tmp_path / "kept").mkdir()
    profile = allow_all_but({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
                            {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV})
    outcome = confined(profile, lambda: [errno_of(os.mkdir, tmp_path / "new"),
                                         errno_of(os.rmdir, tmp_path / "kept"),
                                         errno_of(os.listdir, tmp_path)])
    assert outcome.report == [errno.EPERM, errno.EXDEV, 0]
    assert not (tmp_path / "new").exists() and (tmp_path / "kept").is_dir()


def test_default_errno_with_an_allowlist(tmp_path: Path) -> None:
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.EACCES,
               "syscalls": [{"names": [*PYTHON_MINIMUM, "mkdir"], "action": "SCMP_ACT_ALLOW"}]}
    outcome = confined(profile, lambda: [errno_of(os.mkdir, tmp_path / "allowed"),
                                         errno_of(os.rmdir, tmp_path / "allowed"),
                                         errno_of(os.open, tmp_path / "file", os.O_CREAT | os.O_WRONLY)])
    assert outcome.report == [0, errno.EACCES, errno.EACCES]
    assert os.WIFEXITED(outcome.status) and (tmp_path / "allowed").is_dir()


def test_rule_with_the_default_action_is_skipped(tmp_path: Path) -> None:
    # libseccomp refuses a rule whose action is the default one; runc skips it, so must we.
    profile = {"defaultAction": "SCMP_ACT_ERRNO",
               "syscalls": [{"names": PYTHON_MINIMUM, "action": "SCMP_ACT_ALLOW"},
                            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM}]}
    assert confined(profile, lambda: errno_of(os.mkdir, tmp_path / "d")).report == errno.EPERM


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL"])
def test_kill_actions_end_the_child_with_sigsys(tmp_path: Path, action: str) -> None:
    outcome = confined(allow_all_but({"names": ["mkdir"], "action": action}),
                       lambda: errno_of(os.mkdir, tmp_path / "d"))
    assert outcome.killed_by == signal.SIGSYS and outcome.report is None
    assert not (tmp_path / "d").exists()


def test_trap_delivers_sigsys_and_skips_the_syscall(tmp_path: Path) -> None:
    def probe() -> object:
        trapped: list[int] = []
        signal.signal(signal.SIGSYS, lambda signum, frame: trapped.append(signum))
        os.mkdir(tmp_path / "d")
        return trapped

    outcome = confined(allow_all_but({"names": ["mkdir"], "action": "SCMP_ACT_TRAP"}), probe)
    assert outcome.report == [signal.SIGSYS] and os.WIFEXITED(outcome.status)
    assert not (tmp_path / "d").exists()


def test_log_allows(tmp_path: Path) -> None:
    outcome = confined(allow_all_but({"names": ["mkdir"], "action": "SCMP_ACT_LOG"}),
                       lambda: errno_of(os.mkdir, tmp_path / "d"))
    assert outcome.report == 0 and (tmp_path / "d").is_dir()


def test_trace_without_a_tracer_fails_with_enosys(tmp_path: Path) -> None:
    outcome = confined(allow_all_but({"names": ["mkdir"], "action": "SCMP_ACT_TRACE"}),
                       lambda: errno_of(os.mkdir, tmp_path / "d"))
    assert outcome.report == errno.ENOSYS


# --- arguments ----------------------------------------------------------------------------------------------


def test_personality_denied_only_for_one_argument() -> None:
    rule = {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV,
            "args": [{"index": 0, "value": 0xFFFFFFFF, "op": "SCMP_CMP_EQ"}]}
    outcome = confined(allow_all_but(rule), lambda: [raw_syscall(nr("personality"), 0xFFFFFFFF),
                                                     raw_syscall(nr("personality"), 0)])
    assert outcome.report == [errno.EXDEV, 0]


def test_socket_denied_only_for_inet6() -> None:
    rule = {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EAFNOSUPPORT,
            "args": [{"index": 0, "value": socket.AF_INET6, "op": "SCMP_CMP_EQ"}]}
    outcome = confined(allow_all_but(rule), lambda: [make_socket(socket.AF_INET6), make_socket(socket.AF_INET)])
    assert outcome.report == [errno.EAFNOSUPPORT, 0]


@pytest.mark.parametrize(("op", "value", "value_two", "denied"), [
    ("SCMP_CMP_NE", 23, 0, {0, 17, 28}),
    ("SCMP_CMP_LT", 23, 0, {0, 17}),
    ("SCMP_CMP_LE", 23, 0, {0, 17, 23}),
    ("SCMP_CMP_EQ", 23, 0, {23}),
    ("SCMP_CMP_GE", 23, 0, {23, 28}),
    ("SCMP_CMP_GT", 23, 0, {28}),
    ("SCMP_CMP_MASKED_EQ", 0b10000, 0b10000, {17, 23, 28}),  # (sig & value) == valueTwo
])
def test_comparison_operators(op: str, value: int, value_two: int, denied: set[int]) -> None:
    rule = {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV,
            "args": [{"index": 1, "value": value, "valueTwo": value_two, "op": op}]}
    outcome = confined(allow_all_but(rule),
                       lambda: {sig: errno_of(os.kill, os.getpid(), sig) for sig in HARMLESS_SIGNALS})
    assert outcome.report == {str(sig): errno.EXDEV if sig in denied else 0 for sig in HARMLESS_SIGNALS}


def test_masked_eq_on_mkdir_mode(tmp_path: Path) -> None:
    rule = {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV,
            "args": [{"index": 1, "value": 0o100, "valueTwo": 0o100, "op": "SCMP_CMP_MASKED_EQ"}]}
    outcome = confined(allow_all_but(rule), lambda: [errno_of(os.mkdir, tmp_path / "x", 0o700),
                                                     errno_of(os.mkdir, tmp_path / "no_x", 0o600)])
    assert outcome.report == [errno.EXDEV, 0]


def test_args_on_distinct_indexes_must_all_match() -> None:
    def body() -> object:  # compiled in the child: the rule names the child's own pid
        rule = {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV,
                "args": [{"index": 0, "value": os.getpid(), "op": "SCMP_CMP_EQ"},
                         {"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}]}
        flt = seccomp.compile_filter(allow_all_but(rule))
        assert flt is not None
        load(flt)
        return [errno_of(os.kill, os.getpid(), 0), errno_of(os.kill, os.getpid(), signal.SIGURG),
                errno_of(os.kill, os.getppid(), 0)]

    assert run(body).report == [errno.EXDEV, 0, 0]


def test_args_sharing_an_index_match_as_or() -> None:
    # runc's special case: when two args name the same index, each becomes its own rule.
    rule = {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV,
            "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"},
                     {"index": 1, "value": signal.SIGWINCH, "op": "SCMP_CMP_EQ"}]}
    outcome = confined(allow_all_but(rule),
                       lambda: [errno_of(os.kill, os.getpid(), sig) for sig in HARMLESS_SIGNALS])
    assert outcome.report == [errno.EXDEV, 0, 0, errno.EXDEV]


# --- names, architectures, ENOSYS -----------------------------------------------------------------------------


def test_unknown_syscall_names_are_ignored(tmp_path: Path) -> None:
    profile = allow_all_but({"names": ["sampan_no_such_syscall", "mkdir", "sampan_nor_this"],
                             "action": "SCMP_ACT_ERRNO"})
    flt = seccomp.compile_filter(profile)
    assert flt is not None
    assert flt.unknown_syscalls == ("sampan_no_such_syscall", "sampan_nor_this")
    assert confined(profile, lambda: errno_of(os.mkdir, tmp_path / "d")).report == errno.EPERM


@needs_x86_64
def test_x86_64_x32_and_x86_in_one_filter() -> None:
    profile = allow_all_but({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV},
                            architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
    flt = seccomp.compile_filter(profile)
    assert flt is not None
    program = flt.export_bpf()
    checks = {k for code, _, _, k in struct.iter_unpack("=HBBI", program) if code == 0x15}
    assert AUDIT_ARCH_I386 in checks  # the i386 ABI has its own branch in the program
    mkdir = nr("mkdir")
    outcome = confined(profile, lambda: [raw_syscall(mkdir, b"/nonexistent/d", 0o700),
                                         raw_syscall(X32_BIT | mkdir, b"/nonexistent/d", 0o700)])
    assert outcome.report == [errno.EXDEV, errno.EXDEV]


@needs_x86_64
def test_architecture_of_the_other_byte_order_is_refused_at_compile_time() -> None:
    profile = allow_all_but(architectures=["SCMP_ARCH_X86", "SCMP_ARCH_S390X"])
    with pytest.raises(InvalidArgument) as exc:
        seccomp.compile_filter(profile)
    assert str(exc.value) == ("linux.seccomp.architectures[1]: libseccomp cannot add this architecture to the "
                              "filter: its byte order differs from this host's or another listed architecture's")


@needs_x86_64
def test_syscalls_of_an_architecture_not_listed_get_enosys() -> None:
    # libseccomp would kill the thread (its default bad-arch action); sampan answers ENOSYS instead.
    profile = allow_all_but({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV},
                            architectures=["SCMP_ARCH_X86_64"])
    outcome = confined(profile, lambda: raw_syscall(X32_BIT | nr("mkdir"), b"/nonexistent/d", 0o700))
    assert outcome.report == errno.ENOSYS and os.WIFEXITED(outcome.status)


@needs_x86_64
def test_syscalls_newer_than_the_profile_get_enosys() -> None:
    # Docker's default action is EPERM; the -ENOSYS stub makes unknown (newer) syscalls say ENOSYS instead,
    # so libc falls back, while known syscalls outside the allow list still get EPERM.
    outcome = confined(DOCKER_STYLE, lambda: [raw_syscall(1000), raw_syscall(nr("acct"), 0),
                                              raw_syscall(X32_BIT | 1000), raw_syscall(X32_BIT | nr("acct"), 0)])
    assert outcome.report == [errno.ENOSYS, errno.EPERM, errno.ENOSYS, errno.EPERM]


@needs_x86_64
def test_enosys_stub_only_when_the_default_denies() -> None:
    # getrandom (318) is newer than every syscall both profiles name: a permissive default lets it run, a
    # denying one answers ENOSYS for it, yet keeps its own errno for older syscalls such as acct (163).
    allowing = allow_all_but({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}, architectures=["SCMP_ARCH_X86_64"])
    denying = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.EACCES,
               "architectures": ["SCMP_ARCH_X86_64"],
               "syscalls": [{"names": [*PYTHON_MINIMUM, "mkdir"], "action": "SCMP_ACT_ALLOW"}]}

    def probe() -> object:
        return [raw_syscall(nr("getrandom"), 0, 0, 0), raw_syscall(nr("acct"), 0)]

    assert confined(allowing, probe).report[0] == 0
    assert confined(denying, probe).report == [errno.ENOSYS, errno.EACCES]


@needs_x86_64
def test_docker_style_profile(tmp_path: Path) -> None:
    def probe() -> object:
        pid = os.fork()  # glibc's fork: clone() without namespace flags passes the masked check
        if pid == 0:
            os._exit(7)
        _, status = os.waitpid(pid, 0)
        return {
            "fork": os.waitstatus_to_exitcode(status),
            "clone_plain": raw_syscall(nr("clone"), CLONE_THREAD, 0, 0, 0, 0),
            "clone_newuts": raw_syscall(nr("clone"), CLONE_NEWUTS | CLONE_THREAD, 0, 0, 0, 0),
            "clone3": raw_syscall(nr("clone3"), 0, 0),
            "personality_query": raw_syscall(nr("personality"), 0xFFFFFFFF),
            "personality_no_aslr": raw_syscall(nr("personality"), ADDR_NO_RANDOMIZE),
            "socket_unix": make_socket(socket.AF_UNIX),
            "socket_vsock": make_socket(AF_VSOCK),
            "mkdir": errno_of(os.mkdir, tmp_path / "d"),
            "unshare": raw_syscall(nr("unshare"), CLONE_NEWUTS),
        }

    outcome = confined(DOCKER_STYLE, probe)
    assert outcome.report == {
        "fork": 7,
        "clone_plain": errno.EINVAL,  # reached the kernel, which refuses CLONE_THREAD without CLONE_SIGHAND
        "clone_newuts": errno.EPERM,
        "clone3": errno.ENOSYS,
        "personality_query": 0,
        "personality_no_aslr": errno.EPERM,
        "socket_unix": 0,
        "socket_vsock": errno.EPERM,
        "mkdir": 0,
        "unshare": errno.EPERM,
    }
    flt = seccomp.compile_filter(DOCKER_STYLE)
    assert flt is not None and set(flt.unknown_syscalls) >= {"sampan_future_syscall_one",
                                                              "sampan_future_syscall_two"}


# --- flags --------------------------------------------------------------------------------------------------


def _flags(**extra: Any) -> int:
    flt = seccomp.compile_filter(allow_all_but({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}, **extra))
    assert flt is not None
    return flt.flags


def test_flags_become_seccomp_flags() -> None:
    supported = set(seccomp.supported()["supportedFlags"])
    spec_allow = scmp.FILTER_FLAG_SPEC_ALLOW if "SECCOMP_FILTER_FLAG_SPEC_ALLOW" in supported else 0
    assert _flags() == spec_allow  # runc's default when "flags" is absent
    assert _flags(flags=[]) == 0
    assert _flags(flags=["SECCOMP_FILTER_FLAG_TSYNC"]) == 0  # accepted and ignored, as runc does
    if "SECCOMP_FILTER_FLAG_LOG" in supported:
        assert _flags(flags=["SECCOMP_FILTER_FLAG_LOG"]) == scmp.FILTER_FLAG_LOG


def test_filter_loads_with_every_supported_flag(tmp_path: Path) -> None:
    profile = allow_all_but({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
                            flags=seccomp.supported()["supportedFlags"])
    assert confined(profile, lambda: errno_of(os.mkdir, tmp_path / "d")).report == errno.EPERM


# --- notify -------------------------------------------------------------------------------------------------


@pytest.fixture
def agent_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "agent.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        listener.settimeout(30)
        yield path, listener


def _notify_child(path: str, target: Path) -> Callable[[], object]:
    flt = seccomp.compile_filter(allow_all_but({"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"},
                                               listenerPath=path, listenerMetadata="sampan-test"))
    assert flt is not None and flt.notify

    def body() -> object:
        fd = load(flt)
        assert fd is not None
        state = {"ociVersion": "1.2.0", "id": "probe", "status": "creating", "pid": os.getpid(), "bundle": "/b"}
        seccomp.send_listener_fd(path, fd, state, "sampan-test")
        os.close(fd)
        return errno_of(os.mkdir, target, 0o750)

    return body


def _receive_listener(listener: socket.socket, pid: int) -> int:
    """Play the seccomp agent: accept runc's message and check it, returning the listener fd."""
    conn, _ = listener.accept()
    with conn:
        payload, fds, _, _ = socket.recv_fds(conn, 65536, 1)
    message = json.loads(payload)
    assert message == {"ociVersion": "1.2.0", "fds": ["seccompFd"], "pid": pid, "metadata": "sampan-test",
                       "state": {"ociVersion": "1.2.0", "id": "probe", "status": "creating", "pid": pid,
                                 "bundle": "/b"}}
    assert len(fds) == 1
    return fds[0]


@pytest.mark.parametrize("answer", ["error", "continue"])
def test_notify_hands_the_listener_to_the_agent(agent_socket: tuple[str, socket.socket], tmp_path: Path,
                                                answer: str) -> None:
    path, listener = agent_socket
    target = tmp_path / "d"
    with child(_notify_child(path, target)) as proc:
        fd = _receive_listener(listener, proc.pid)
        try:
            assert select.select([fd], [], [], 30)[0], "no notification arrived"
            note = scmp.notify_receive(fd)
            assert (note.pid, note.nr, note.args[1]) == (proc.pid, nr("mkdir"), 0o750)
            assert not proc.readable(0.2), "the child must wait for the agent's answer"
            assert scmp.notify_id_valid(fd, note.id)
            if answer == "error":
                scmp.notify_respond(fd, note.id, error=-errno.EXDEV)
            else:
                scmp.notify_respond(fd, note.id, flags=scmp.USER_NOTIF_FLAG_CONTINUE)
            outcome = proc.outcome()
        finally:
            os.close(fd)
    assert outcome.report == (errno.EXDEV if answer == "error" else 0)
    assert target.is_dir() == (answer == "continue")


def test_libseccomp_load_and_notify_fd() -> None:
    def body() -> object:
        ctx = scmp.init(scmp.ACT_ALLOW)
        scmp.rule_add_array(ctx, scmp.ACT_NOTIFY, nr("mkdir"), [])
        prctl(PR_SET_NO_NEW_PRIVS, 1)
        scmp.load(ctx)
        return scmp.notify_fd(ctx)

    outcome = run(body)
    assert isinstance(outcome.report, int) and outcome.report >= 0


# --- the binding --------------------------------------------------------------------------------------------


def test_binding_basics() -> None:
    assert scmp.version() >= (2, 5, 0) and scmp.api_level() >= 1
    assert scmp.arch_resolve_name("sampan-arch") is None
    assert scmp.syscall_resolve_name("sampan_no_such_syscall") is None
    ctx = scmp.init(scmp.ACT_ALLOW)
    try:
        native = scmp.arch_native()
        assert scmp.arch_exist(ctx, native)
        with pytest.raises(OSError) as exists:
            scmp.arch_add(ctx, native)
        assert exists.value.errno == errno.EEXIST
        scmp.attr_set(ctx, scmp.ATTR_CTL_NNP, 0)
        assert scmp.attr_get(ctx, scmp.ATTR_CTL_NNP) == 0
        with pytest.raises(OSError) as same_as_default:
            scmp.rule_add_array(ctx, scmp.ACT_ALLOW, nr("mkdir"), [])
        assert same_as_default.value.errno == errno.EACCES
        with pytest.raises(OSError) as bad_index:
            scmp.rule_add_array(ctx, scmp.act_errno(1), nr("mkdir"), [(6, scmp.CMP_EQ, 0, 0)])
        assert bad_index.value.errno == errno.EINVAL
    finally:
        scmp.release(ctx)
    if X86_64:
        x32 = scmp.arch_resolve_name("x32")
        assert x32 is not None and scmp.syscall_resolve_name_arch(x32, "mkdir") == X32_BIT | 83
        assert native == scmp.arch_resolve_name("x86_64") and nr("mkdir") == 83


# --- features, filter lifecycle -----------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("runc") is None, reason="runc is the oracle for `features`")
def test_supported_matches_runc_features() -> None:
    runc = json.loads(subprocess.run(["runc", "features"], capture_output=True, check=True).stdout)["linux"]
    ours = seccomp.supported()
    assert ours["enabled"] is runc["seccomp"]["enabled"] is True
    assert ours["actions"] == runc["seccomp"]["actions"]
    assert ours["operators"] == runc["seccomp"]["operators"]
    assert set(runc["seccomp"]["archs"]) <= set(ours["archs"])
    assert set(ours["supportedFlags"]) <= set(ours["knownFlags"])
    for key in ("knownFlags", "supportedFlags"):  # runc >= 1.1.? reports them
        if key in runc["seccomp"]:
            assert set(ours[key]) == set(runc["seccomp"][key])
    assert seccomp.library_version() == ".".join(map(str, scmp.version()))


def test_no_default_action_and_no_rules_means_no_filter() -> None:
    assert seccomp.compile_filter({}) is None
    assert seccomp.compile_filter({"defaultAction": "", "syscalls": []}) is None
    seccomp.validate({})


def test_closed_filter_cannot_be_loaded() -> None:
    flt = seccomp.compile_filter(allow_all_but({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}))
    assert flt is not None and flt.export_bpf()
    flt.close()
    flt.close()
    with pytest.raises(ValueError):
        flt.load()


# --- validation ---------------------------------------------------------------------------------------------


def _rule(**fields: Any) -> dict[str, Any]:
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                                                              **fields}]}


def _arg(**fields: Any) -> dict[str, Any]:
    return _rule(args=[{"index": 0, "value": 1, "op": "SCMP_CMP_EQ", **fields}])


@pytest.mark.parametrize(("profile", "message"), [
    ([], "linux.seccomp: must be an object, got []"),
    ({"defaultAction": "SCMP_ACT_FOO"}, "linux.seccomp.defaultAction: unknown action 'SCMP_ACT_FOO'"),
    ({"syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}, "linux.seccomp.defaultAction: required"),
    ({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/a"},
     "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default action"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": "1"},
     'linux.seccomp.defaultErrnoRet: must be an errno number from 0 to 65535, got "1"'),
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_VAX"]},
     "linux.seccomp.architectures[1]: unknown architecture 'SCMP_ARCH_VAX'"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": "SCMP_ARCH_X86_64"},
     'linux.seccomp.architectures: must be an array, got "SCMP_ARCH_X86_64"'),
    ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_WAIT_KILL"]},
     "linux.seccomp.flags[1]: unknown flag 'SECCOMP_FILTER_FLAG_WAIT_KILL'"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": 5}, "linux.seccomp.listenerPath: must be a string, got 5"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {}}, "linux.seccomp.syscalls: must be an array, got {}"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": ["mkdir"]},
     'linux.seccomp.syscalls[0]: must be an object, got "mkdir"'),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
                                                       {"names": ["rmdir"], "action": "SCMP_ACT_FOO"}]},
     "linux.seccomp.syscalls[1].action: unknown action 'SCMP_ACT_FOO'"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"]}]},
     "linux.seccomp.syscalls[0].action: required"),
    (_rule(names="mkdir"), 'linux.seccomp.syscalls[0].names: must be an array, got "mkdir"'),
    (_rule(names=[]), "linux.seccomp.syscalls[0].names: must name at least one syscall"),
    (_rule(names=["mkdir", ""]), 'linux.seccomp.syscalls[0].names[1]: must be a non-empty string, got ""'),
    (_rule(errnoRet=True), "linux.seccomp.syscalls[0].errnoRet: must be an errno number from 0 to 65535, got true"),
    (_rule(errnoRet=70000),
     "linux.seccomp.syscalls[0].errnoRet: must be an errno number from 0 to 65535, got 70000"),
    (_rule(action="SCMP_ACT_NOTIFY", names=["mkdir", "write"]),
     "linux.seccomp.syscalls[0].action: SCMP_ACT_NOTIFY cannot be used for the write syscall"),
    (_rule(action="SCMP_ACT_NOTIFY"), "linux.seccomp.listenerPath: required when a rule uses SCMP_ACT_NOTIFY"),
    (_rule(args={"index": 0}), 'linux.seccomp.syscalls[0].args: must be an array, got {"index": 0}'),
    (_arg(index=6), "linux.seccomp.syscalls[0].args[0].index: must be an argument index from 0 to 5, got 6"),
    (_arg(index=-1), "linux.seccomp.syscalls[0].args[0].index: must be an argument index from 0 to 5, got -1"),
    (_arg(index="0"), 'linux.seccomp.syscalls[0].args[0].index: must be an argument index from 0 to 5, got "0"'),
    (_arg(value=-1), "linux.seccomp.syscalls[0].args[0].value: must be an unsigned 64-bit integer, got -1"),
    (_arg(valueTwo=2**64),
     "linux.seccomp.syscalls[0].args[0].valueTwo: must be an unsigned 64-bit integer, got 18446744073709551616"),
    (_arg(value=1.5), "linux.seccomp.syscalls[0].args[0].value: must be an unsigned 64-bit integer, got 1.5"),
    (_arg(op="SCMP_CMP_XX"), "linux.seccomp.syscalls[0].args[0].op: unknown operator 'SCMP_CMP_XX'"),
    (_rule(args=[{"index": 0, "op": "SCMP_CMP_EQ"}]), "linux.seccomp.syscalls[0].args[0].value: required"),
])
def test_invalid_profiles_name_the_json_path(profile: Any, message: str) -> None:
    for check in (seccomp.validate, seccomp.compile_filter):
        with pytest.raises(InvalidArgument) as exc:
            check(profile)
        assert str(exc.value) == message
