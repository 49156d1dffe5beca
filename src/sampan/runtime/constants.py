"""The names a ``config.json`` uses for kernel things, as tables: capabilities, rlimits, namespaces, mounts.

One place maps every name a config may use to the number the kernel wants, so the validator (which refuses
unknown names) and the runtime (which passes the numbers to syscalls) can never disagree. The values are the
Linux UAPI numbers; the mount option tables are runc's ``parseMountOptions`` tables, so an option means the
same thing under sampan-runc as under runc. This module imports nothing: it is cheap for every caller.
"""

from __future__ import annotations

from sampan._linux.flags import (  # noqa: F401 - the option tables below and spec.py use them
    MOUNT_ATTR__ATIME,
    MOUNT_ATTR_NOATIME,
    MOUNT_ATTR_NODEV,
    MOUNT_ATTR_NODIRATIME,
    MOUNT_ATTR_NOEXEC,
    MOUNT_ATTR_NOSUID,
    MOUNT_ATTR_NOSYMFOLLOW,
    MOUNT_ATTR_RDONLY,
    MOUNT_ATTR_RELATIME,
    MOUNT_ATTR_STRICTATIME,
    MS_BIND,
    MS_DIRSYNC,
    MS_I_VERSION,
    MS_LAZYTIME,
    MS_MANDLOCK,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_NOSYMFOLLOW,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_REMOUNT,
    MS_SHARED,
    MS_SILENT,
    MS_SLAVE,
    MS_STRICTATIME,
    MS_SYNCHRONOUS,
    MS_UNBINDABLE,
)

# capability(7) numbers, in kernel order (``runc features`` lists them in this order too).
CAPABILITIES: dict[str, int] = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14,
    "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22,
    "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26,
    "CAP_MKNOD": 27,
    "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34,
    "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}

# The five capability sets of ``process.capabilities``.
CAPABILITY_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")

# getrlimit(2) resource numbers.
RLIMITS: dict[str, int] = {
    "RLIMIT_CPU": 0,
    "RLIMIT_FSIZE": 1,
    "RLIMIT_DATA": 2,
    "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5,
    "RLIMIT_NPROC": 6,
    "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8,
    "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10,
    "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12,
    "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14,
    "RLIMIT_RTTIME": 15,
}

# The runtime-spec's namespace types and their clone(2) flags (CLONE_NEWNS for "mount", and so on).
NAMESPACE_FLAGS: dict[str, int] = {
    "pid": 0x20000000,
    "network": 0x40000000,
    "mount": 0x00020000,
    "ipc": 0x08000000,
    "uts": 0x04000000,
    "user": 0x10000000,
    "cgroup": 0x02000000,
    "time": 0x00000080,
}

# The same types as ``/proc/<pid>/ns/<name>`` names them (where a namespace is joined or compared).
NAMESPACE_PROC_NAMES: dict[str, str] = {
    "pid": "pid",
    "network": "net",
    "mount": "mnt",
    "ipc": "ipc",
    "uts": "uts",
    "user": "user",
    "cgroup": "cgroup",
    "time": "time",
}

# ioprio_set(2) classes of ``process.ioPriority.class``.
IO_PRIORITY_CLASSES: dict[str, int] = {
    "IOPRIO_CLASS_RT": 1,
    "IOPRIO_CLASS_BE": 2,
    "IOPRIO_CLASS_IDLE": 3,
}

# personality(2) execution domains runc accepts for ``linux.personality.domain``.
PERSONALITY_DOMAINS: dict[str, int] = {
    "LINUX": 0x0000,
    "LINUX32": 0x0008,
}

# The lifecycle hooks, in the order the runtime-spec runs them ("prestart" is deprecated but still honoured).
HOOKS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")

# runc's mount flag options: name -> (clears the flag?, flag). "defaults" is accepted and changes nothing.
# runc dropped "acl"/"noacl" because MS_POSIXACL is not a flag userspace may pass (runc#3738): "acl" is
# filesystem data here.
MOUNT_FLAGS: dict[str, tuple[bool, int]] = {
    "async": (True, MS_SYNCHRONOUS),
    "atime": (True, MS_NOATIME),
    "bind": (False, MS_BIND),
    "defaults": (False, 0),
    "dev": (True, MS_NODEV),
    "diratime": (True, MS_NODIRATIME),
    "dirsync": (False, MS_DIRSYNC),
    "exec": (True, MS_NOEXEC),
    "iversion": (False, MS_I_VERSION),
    "lazytime": (False, MS_LAZYTIME),
    "loud": (True, MS_SILENT),
    "mand": (False, MS_MANDLOCK),
    "noatime": (False, MS_NOATIME),
    "nodev": (False, MS_NODEV),
    "nodiratime": (False, MS_NODIRATIME),
    "noexec": (False, MS_NOEXEC),
    "noiversion": (True, MS_I_VERSION),
    "nolazytime": (True, MS_LAZYTIME),
    "nomand": (True, MS_MANDLOCK),
    "norelatime": (True, MS_RELATIME),
    "nostrictatime": (True, MS_STRICTATIME),
    "nosuid": (False, MS_NOSUID),
    "nosymfollow": (False, MS_NOSYMFOLLOW),
    "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, MS_RELATIME),
    "remount": (False, MS_REMOUNT),
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "silent": (False, MS_SILENT),
    "strictatime": (False, MS_STRICTATIME),
    "suid": (True, MS_NOSUID),
    "sync": (False, MS_SYNCHRONOUS),
    "symfollow": (True, MS_NOSYMFOLLOW),
}

# Propagation options (also the values of ``linux.rootfsPropagation``): name -> flags for a second mount(2).
MOUNT_PROPAGATION: dict[str, int] = {
    "private": MS_PRIVATE,
    "shared": MS_SHARED,
    "slave": MS_SLAVE,
    "unbindable": MS_UNBINDABLE,
    "rprivate": MS_PRIVATE | MS_REC,
    "rshared": MS_SHARED | MS_REC,
    "rslave": MS_SLAVE | MS_REC,
    "runbindable": MS_UNBINDABLE | MS_REC,
}

# Recursive options, applied with mount_setattr(AT_RECURSIVE): name -> (clears the attribute?, attribute).
MOUNT_REC_ATTRS: dict[str, tuple[bool, int]] = {
    "rro": (False, MOUNT_ATTR_RDONLY),
    "rrw": (True, MOUNT_ATTR_RDONLY),
    "rnosuid": (False, MOUNT_ATTR_NOSUID),
    "rsuid": (True, MOUNT_ATTR_NOSUID),
    "rnodev": (False, MOUNT_ATTR_NODEV),
    "rdev": (True, MOUNT_ATTR_NODEV),
    "rnoexec": (False, MOUNT_ATTR_NOEXEC),
    "rexec": (True, MOUNT_ATTR_NOEXEC),
    "rnodiratime": (False, MOUNT_ATTR_NODIRATIME),
    "rdiratime": (True, MOUNT_ATTR_NODIRATIME),
    "rrelatime": (False, MOUNT_ATTR_RELATIME),
    "rnorelatime": (True, MOUNT_ATTR_RELATIME),
    "rnoatime": (False, MOUNT_ATTR_NOATIME),
    "ratime": (True, MOUNT_ATTR_NOATIME),
    "rstrictatime": (False, MOUNT_ATTR_STRICTATIME),
    "rnostrictatime": (True, MOUNT_ATTR_STRICTATIME),
    "rnosymfollow": (False, MOUNT_ATTR_NOSYMFOLLOW),
    "rsymfollow": (True, MOUNT_ATTR_NOSYMFOLLOW),
}

# runc's extension option: copy the mount point's existing content into a fresh tmpfs.
MOUNT_COPY_UP = "tmpcopyup"
