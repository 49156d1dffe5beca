"""The OCI runtime-spec (v1.2) as sampan-runc reads it: loading and validating ``config.json``, and defaults.

A bundle is refused before anything is created (no state directory, cgroup, namespace or mount), with one
error that names the offending field by its JSON path (``linux.namespaces[2].type: unknown namespace type
"foo"``), so a bad config never leaves a half-built container to clean up. The checks are those of runc's
``libcontainer/configs/validate`` and ``specconv`` (following runc 1.1.5 where versions differ), plus the JSON
types Go's decoder would enforce, which runc reports without a path.

Validation is table-driven: the document's shape is a tree of small check functions (``_SPEC``), and the
rules that relate fields to each other (a hostname needs a uts namespace, a sysctl needs the namespace that
isolates it) run afterwards in ``_check_relations``, when every type is known to be right. The config stays a
plain dict: the runtime reads it directly, with the tables of ``sampan.runtime.constants`` for the numbers.
"""

from __future__ import annotations

import json
import os
import re

from sampan.errors import InvalidArgument, NotFound
from sampan.runtime.constants import (
    CAPABILITIES,
    CAPABILITY_SETS,
    HOOKS,
    IO_PRIORITY_CLASSES,
    MOUNT_COPY_UP,
    MOUNT_FLAGS,
    MOUNT_PROPAGATION,
    MOUNT_REC_ATTRS,
    NAMESPACE_FLAGS,
    NAMESPACE_PROC_NAMES,
    PERSONALITY_DOMAINS,
    RLIMITS,
)
from sampan.runtime.mount_options import MountOptions, parse_mount_options  # noqa: F401 - part of the spec API

TYPE_CHECKING = False  # typing/collections.abc are not imported at run time: start-up cost
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

# The oldest runtime-spec version sampan-runc accepts; the newest is the one its state files carry.
OCI_VERSION_MIN = "1.0.0"

# Host facts that decide whether a field can be honoured; module constants so tests can point them elsewhere.
_APPARMOR_ENABLED = "/sys/module/apparmor/parameters/enabled"
_SELINUX_FS = "/sys/fs/selinux"
_RESCTRL_INFO = "/sys/fs/resctrl/info"
_CGROUP_ROOT = "/sys/fs/cgroup"
_CAP_LAST_CAP = "/proc/sys/kernel/cap_last_cap"


class SpecError(InvalidArgument):
    """A config that would be refused; ``path`` names the offending field as jq would (``process.args``)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path or "(root)"
        self.message = message
        super().__init__(f"{self.path}: {message}")


# --- host probes --------------------------------------------------------------------------------------------


def apparmor_enabled() -> bool:
    """Whether the kernel has AppArmor on: a profile asked for without it must fail, never be dropped."""
    try:
        with open(_APPARMOR_ENABLED) as f:
            return f.read(1) == "Y"
    except OSError:
        return False


def selinux_enabled() -> bool:
    """Whether selinuxfs is mounted, without which no label can be applied."""
    return os.path.exists(os.path.join(_SELINUX_FS, "enforce"))


def _cgroup2_host() -> bool:
    """Whether /sys/fs/cgroup is the unified (v2) hierarchy, the only one ``resources.unified`` can write."""
    return os.path.exists(os.path.join(_CGROUP_ROOT, "cgroup.controllers"))


def _resctrl_has(resource: str) -> Callable[[], bool]:
    """A probe for one Intel RDT resource in mounted resctrl (L3: cache allocation, MB: memory bandwidth)."""
    return lambda: os.path.isdir(os.path.join(_RESCTRL_INFO, resource))


def _kernel_capabilities() -> list[str]:
    """The capability names this kernel knows, in number order (what ``runc features`` lists)."""
    try:
        with open(_CAP_LAST_CAP) as f:
            last = int(f.read())
    except (OSError, ValueError):
        last = max(CAPABILITIES.values())
    return [name for name, number in CAPABILITIES.items() if number <= last]


# --- check combinators --------------------------------------------------------------------------------------

# A check looks at one decoded JSON value found at a JSON path, and raises SpecError if it is wrong.
if TYPE_CHECKING:
    Check = Callable[[Any, str], None]

_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
               dict: "an object"}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _member(path: str, key: str) -> str:
    """The path of ``key`` inside the object at ``path``; keys that are not plain names are quoted
    (``linux.sysctl["net.ipv4.ip_forward"]``) so the path stays unambiguous."""
    if not _IDENTIFIER.fullmatch(key):
        return f"{path}[{json.dumps(key)}]"
    return f"{path}.{key}" if path else key


def _kind(value: Any) -> str:
    return "null" if value is None else _TYPE_NAMES.get(type(value), type(value).__name__)


def _require(value: Any, path: str, expected: type) -> None:
    """Exact JSON types: ``true`` is not an integer and ``1.0`` is not one either, as for Go's decoder."""
    if type(value) is not expected:
        raise SpecError(path, f"must be {_TYPE_NAMES[expected]}, not {_kind(value)}")


def _typed(expected: type) -> Check:
    return lambda value, path: _require(value, path, expected)


_string = _typed(str)
_boolean = _typed(bool)


def _integer(low: int, high: int) -> Check:
    """An integer in [low, high]: the Go field's range (uint32, int64, ...) or the kernel's tighter one."""

    def check(value: Any, path: str) -> None:
        _require(value, path, int)
        if not low <= value <= high:
            raise SpecError(path, f"must be between {low} and {high}, not {value}")

    return check


_UINT32 = _integer(0, 2**32 - 1)
_UINT64 = _integer(0, 2**64 - 1)
_INT64 = _integer(-(2**63), 2**63 - 1)


def _all(*checks: Check) -> Check:
    """Checks run in order, the first failure wins (a type check first, then what needs the type)."""

    def check(value: Any, path: str) -> None:
        for each in checks:
            each(value, path)

    return check


def _array(item: Check) -> Check:
    def check(value: Any, path: str) -> None:
        _require(value, path, list)
        for index, element in enumerate(value):
            item(element, f"{path}[{index}]")

    return check


def _object(fields: dict[str, Check], required: tuple[str, ...] = ()) -> Check:
    """An object with known fields. null counts as absent (Go decodes it to the zero value); unknown fields
    are allowed, as the runtime-spec requires of runtimes for forward compatibility."""

    def check(value: Any, path: str) -> None:
        _require(value, path, dict)
        for key, field_check in fields.items():
            if value.get(key) is not None:
                field_check(value[key], _member(path, key))
            elif key in required:
                raise SpecError(_member(path, key), "must be set")

    return check


def _map(item: Check, key: Check | None = None) -> Check:
    """An object used as a map (annotations, sysctls): every value checked, and every key with ``key``."""

    def check(value: Any, path: str) -> None:
        _require(value, path, dict)
        for name, element in value.items():
            member = _member(path, name)
            if key is not None:
                key(name, member)
            item(element, member)

    return check


def _choice(names: Iterable[str], what: str) -> Check:
    allowed = frozenset(names)

    def check(value: Any, path: str) -> None:
        _string(value, path)
        if value not in allowed:
            raise SpecError(path, f"unknown {what} {json.dumps(value)}")

    return check


def _non_empty(value: Any, path: str) -> None:
    if not value:
        raise SpecError(path, "must not be empty")


def _absolute_path(value: Any, path: str) -> None:
    _string(value, path)
    if not value.startswith("/"):
        raise SpecError(path, f"must be an absolute path, not {json.dumps(value)}")


def _host_feature(probe: Callable[[], bool], message: str) -> Check:
    """A field this host cannot honour: refusing is safer than starting a container without the protection."""

    def check(value: Any, path: str) -> None:
        if value and not probe():
            raise SpecError(path, message)

    return check


def _unsupported(value: Any, path: str) -> None:
    """A feature sampan-runc does not implement: ignoring it would run the container other than asked."""
    raise SpecError(path, "not supported by sampan-runc")


def _unique(key: str, what: str) -> Check:
    """No two entries of an array of objects share ``key`` (two pid namespaces, two RLIMIT_NOFILE)."""

    def check(value: Any, path: str) -> None:
        seen: set[str] = set()
        for index, entry in enumerate(value):
            if entry[key] in seen:
                raise SpecError(_member(f"{path}[{index}]", key),
                                f"duplicate {what} {json.dumps(entry[key])}")
            seen.add(entry[key])

    return check


# --- field checks -------------------------------------------------------------------------------------------

_OCI_VERSION = re.compile(r"1\.\d+(?:\.\d+)?(?:[-+][0-9A-Za-z.+-]*)?")
_HOST_NAME_MAX = 64


def _oci_version(value: Any, path: str) -> None:
    _string(value, path)
    if not _OCI_VERSION.fullmatch(value):
        raise SpecError(path, f"unsupported version {json.dumps(value)} (sampan-runc reads 1.x)")


def _host_name(value: Any, path: str) -> None:
    """sethostname/setdomainname refuse longer names, but only inside the half-built container."""
    _string(value, path)
    if len(value.encode()) > _HOST_NAME_MAX:
        raise SpecError(path, f"must be at most {_HOST_NAME_MAX} bytes")


def _env_entry(value: Any, path: str) -> None:
    """NAME=VALUE with a name, as runc's populateProcessEnvironment insists; a NUL would make execve fail."""
    _string(value, path)
    name, sep, _ = value.partition("=")
    if not sep or not name:
        raise SpecError(path, f"must be NAME=VALUE, not {json.dumps(value)}")
    if "\0" in value:
        raise SpecError(path, "must not contain a NUL byte")


def _soft_within_hard(value: Any, path: str) -> None:
    if value["soft"] > value["hard"]:
        raise SpecError(_member(path, "soft"), f"must not exceed hard ({value['soft']} > {value['hard']})")


def _device_access(value: Any, path: str) -> None:
    _string(value, path)
    if not set(value) <= set("rwm"):
        raise SpecError(path, f"must be a combination of r, w and m, not {json.dumps(value)}")


def _device_numbers(value: Any, path: str) -> None:
    """mknod needs a major and a minor for character and block devices; a fifo ("p") needs none."""
    for field in ("major", "minor"):
        if value["type"] != "p" and value.get(field) is None:
            raise SpecError(_member(path, field),
                            f"must be set for a device of type {json.dumps(value['type'])}")


def _clos_id(value: Any, path: str) -> None:
    """The CLOS ID names a directory under /sys/fs/resctrl: it must not climb out of it."""
    _string(value, path)
    if value in (".", "..") or "/" in value:
        raise SpecError(path, f"invalid CLOS ID {json.dumps(value)}")


def _namespace_path(value: Any, path: str) -> None:
    """An empty path means none, as for runc (Go's zero value); any other must be absolute."""
    if value != "":
        _absolute_path(value, path)


def _namespace_on_host(value: Any, path: str) -> None:
    """The kernel must know the namespace type, and a joined one must be an nsfs file: otherwise setns fails
    only once the container is half built. All nsfs files live on the one nsfs superblock: hence st_dev."""
    proc_file = f"/proc/self/ns/{NAMESPACE_PROC_NAMES[value['type']]}"
    if not os.path.exists(proc_file):
        raise SpecError(_member(path, "type"), f"{value['type']} namespaces are not supported by this kernel")
    ns_path = value.get("path")
    if not ns_path:
        return
    try:
        stat = os.stat(ns_path)
    except OSError as e:
        raise SpecError(_member(path, "path"), f"{ns_path}: {e.strerror}") from None
    if stat.st_dev != os.stat(proc_file).st_dev:
        raise SpecError(_member(path, "path"), f"{ns_path} is not a namespace file")


# --- the document's shape -----------------------------------------------------------------------------------

_STRINGS = _array(_string)
_ENV = _array(_env_entry)
_CAPABILITY_LIST = _array(_choice(CAPABILITIES, "capability"))
_MEMORY_LIMIT = _integer(-1, 2**63 - 1)
def _blkio_weight(value: Any, path: str) -> None:
    """10..1000 as the kernel wants, or 0 meaning "not set" (Docker always sends the field)."""
    _require(value, path, int)
    if value != 0:
        _integer(10, 1000)(value, path)


_BLKIO_WEIGHT = _blkio_weight
_BLOCK_DEVICE: dict[str, Check] = {"major": _INT64, "minor": _INT64}

_ID_MAPPING = _object({"containerID": _UINT32, "hostID": _UINT32, "size": _integer(1, 2**32 - 1)},
                      required=("containerID", "hostID", "size"))

_RLIMIT = _all(_object({"type": _choice(RLIMITS, "rlimit type"), "hard": _UINT64, "soft": _UINT64},
                       required=("type", "hard", "soft")),
               _soft_within_hard)

_PROCESS = _object({
    "terminal": _boolean,
    "consoleSize": _object({"height": _UINT32, "width": _UINT32}, required=("height", "width")),
    "user": _object({"uid": _UINT32, "gid": _UINT32, "umask": _UINT32, "additionalGids": _array(_UINT32),
                     "username": _string}),
    "args": _all(_STRINGS, _non_empty),
    "commandLine": _string,
    "env": _ENV,
    "cwd": _absolute_path,
    "capabilities": _object(dict.fromkeys(CAPABILITY_SETS, _CAPABILITY_LIST)),
    "rlimits": _all(_array(_RLIMIT), _unique("type", "rlimit type")),
    "noNewPrivileges": _boolean,
    "apparmorProfile": _all(_string, _host_feature(apparmor_enabled, "apparmor is not enabled on this host")),
    "oomScoreAdj": _integer(-1000, 1000),
    "selinuxLabel": _all(_string, _host_feature(selinux_enabled, "selinux is not enabled on this host")),
    "ioPriority": _object({"class": _choice(IO_PRIORITY_CLASSES, "I/O priority class"),
                           "priority": _integer(0, 7)}, required=("class",)),
    "scheduler": _unsupported,
    "execCPUAffinity": _unsupported,
}, required=("args", "cwd"))

# A relative destination is relative to "/", as in runc 1.1.5 (which warns that it is deprecated).
_MOUNT = _object({
    "destination": _all(_string, _non_empty),
    "type": _string,
    "source": _string,
    "options": _STRINGS,
    "uidMappings": _unsupported,  # idmapped mounts
    "gidMappings": _unsupported,
}, required=("destination",))

_HOOK = _object({"path": _absolute_path, "args": _STRINGS, "env": _ENV, "timeout": _integer(1, 2**31 - 1)},
                required=("path",))

_NAMESPACE = _all(_object({"type": _choice(NAMESPACE_FLAGS, "namespace type"), "path": _namespace_path},
                          required=("type",)),
                  _namespace_on_host)

_RESOURCES = _object({
    "devices": _array(_object({"allow": _boolean, "type": _choice(("", "a", "b", "c"), "device type"),
                               **_BLOCK_DEVICE, "access": _device_access}, required=("allow",))),
    "memory": _object({
        **dict.fromkeys(("limit", "reservation", "swap", "kernel", "kernelTCP"), _MEMORY_LIMIT),
        "swappiness": _integer(0, 100),
        **dict.fromkeys(("disableOOMKiller", "useHierarchy", "checkBeforeUpdate"), _boolean),
    }),
    "cpu": _object({"shares": _UINT64, "quota": _INT64, "burst": _UINT64, "period": _UINT64,
                    "realtimeRuntime": _INT64, "realtimePeriod": _UINT64, "cpus": _string, "mems": _string,
                    "idle": _INT64}),
    "pids": _object({"limit": _integer(-1, 2**63 - 1)}, required=("limit",)),
    "blockIO": _object({
        "weight": _BLKIO_WEIGHT,
        "leafWeight": _BLKIO_WEIGHT,
        "weightDevice": _array(_object({**_BLOCK_DEVICE, "weight": _BLKIO_WEIGHT,
                                        "leafWeight": _BLKIO_WEIGHT}, required=("major", "minor"))),
        **dict.fromkeys(("throttleReadBpsDevice", "throttleWriteBpsDevice", "throttleReadIOPSDevice",
                         "throttleWriteIOPSDevice"),
                        _array(_object({**_BLOCK_DEVICE, "rate": _UINT64},
                                       required=("major", "minor", "rate")))),
    }),
    "hugepageLimits": _array(_object({"pageSize": _string, "limit": _UINT64},
                                     required=("pageSize", "limit"))),
    "network": _object({"classID": _UINT32,
                        "priorities": _array(_object({"name": _string, "priority": _UINT32},
                                                     required=("name", "priority")))}),
    "rdma": _map(_object({"hcaHandles": _UINT32, "hcaObjects": _UINT32})),
    "unified": _all(_map(_string), _host_feature(_cgroup2_host, "unified resources need a cgroup v2 host")),
})

_LINUX = _object({
    "namespaces": _all(_array(_NAMESPACE), _unique("type", "namespace type")),
    "uidMappings": _array(_ID_MAPPING),
    "gidMappings": _array(_ID_MAPPING),
    "timeOffsets": _map(_object({"secs": _INT64, "nanosecs": _integer(0, 999_999_999)}),
                        key=_choice(("boottime", "monotonic"), "clock")),
    "sysctl": _map(_string),
    "resources": _RESOURCES,
    "cgroupsPath": _string,
    "devices": _array(_all(_object({"type": _choice(("c", "b", "u", "p"), "device type"),
                                    "path": _absolute_path, **_BLOCK_DEVICE, "fileMode": _UINT32,
                                    "uid": _UINT32, "gid": _UINT32}, required=("type", "path")),
                           _device_numbers)),
    "rootfsPropagation": _choice(MOUNT_PROPAGATION, "propagation"),
    "maskedPaths": _array(_absolute_path),
    "readonlyPaths": _array(_absolute_path),
    "mountLabel": _string,
    "seccomp": _object({}),  # its content is the seccomp module's to check
    "intelRdt": _object({
        "closID": _clos_id,
        "l3CacheSchema": _all(_string, _host_feature(_resctrl_has("L3"),
                                                     "Intel RDT/CAT is not enabled on this host")),
        "memBwSchema": _all(_string, _host_feature(_resctrl_has("MB"),
                                                   "Intel RDT/MBA is not enabled on this host")),
        "enableCMT": _boolean,
        "enableMBM": _boolean,
    }),
    "personality": _object({"domain": _choice(PERSONALITY_DOMAINS, "personality domain"), "flags": _STRINGS},
                           required=("domain",)),
})

_SPEC = _object({
    "ociVersion": _oci_version,
    "root": _object({"path": _all(_string, _non_empty), "readonly": _boolean}, required=("path",)),
    "process": _PROCESS,
    "hostname": _host_name,
    "domainname": _host_name,
    "mounts": _array(_MOUNT),
    "hooks": _object(dict.fromkeys(HOOKS, _array(_HOOK))),
    "annotations": _map(_string),
    "linux": _LINUX,
}, required=("ociVersion", "root", "process"))

_EXEC = _object({"process": _PROCESS}, required=("process",))


# --- rules across fields ------------------------------------------------------------------------------------

# runc's namespaced sysctls: these are isolated by the ipc namespace, as is every fs.mqueue.* one.
_IPC_SYSCTLS = frozenset({"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                          "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"})


def _dotted_sysctl(name: str) -> str:
    """sysctl(8) also accepts "/" as the separator, in which case "." may appear inside a component
    ("net/ipv4/conf/eno2.100/rp_filter" is "net.ipv4.conf.eno2/100.rp_filter"); compare in the dotted form."""
    first = re.search(r"[./]", name)
    if first is None or first.group() == ".":
        return name
    return name.translate(str.maketrans("./", "/."))


def _sysctl_namespace(name: str) -> str | None:
    """The namespace type that isolates sysctl ``name``, or None when writing it would change the host."""
    if name in _IPC_SYSCTLS or name.startswith("fs.mqueue."):
        return "ipc"
    if name.startswith("net."):
        return "network"
    if name in ("kernel.hostname", "kernel.domainname"):
        return "uts"
    return None


def _is_host_namespace(ns_type: str, path: str | None) -> bool:
    """Whether a joined namespace is this process's own: joining the host's netns and setting net.* changes
    the host, just like having no netns at all."""
    if path is None:
        return False
    own, joined = os.stat(f"/proc/self/ns/{NAMESPACE_PROC_NAMES[ns_type]}"), os.stat(path)
    return (own.st_dev, own.st_ino) == (joined.st_dev, joined.st_ino)


def _check_sysctls(sysctls: dict[str, str], namespaces: dict[str, str | None]) -> None:
    for key in sysctls:
        name, path = _dotted_sysctl(key), _member("linux.sysctl", key)
        ns_type = _sysctl_namespace(name)
        if ns_type is None:
            raise SpecError(path, f"sysctl {json.dumps(name)} is not in a separate kernel namespace")
        if ns_type not in namespaces or _is_host_namespace(ns_type, namespaces[ns_type]):
            raise SpecError(path,
                            f"sysctl {json.dumps(name)} is not allowed in the host's {ns_type} namespace")


def _creates(namespaces: dict[str, str | None], ns_type: str) -> bool:
    """Whether the container gets a new namespace of this type (listed without a path to join)."""
    return ns_type in namespaces and namespaces[ns_type] is None


def _check_user_mappings(linux: dict[str, Any], namespaces: dict[str, str | None]) -> None:
    """Mappings only with a user namespace, and a new user namespace only with mappings (runc: "User
    namespaces enabled, but no uid mappings found"); a joined one already has its mappings."""
    for field in ("uidMappings", "gidMappings"):
        if linux.get(field) and "user" not in namespaces:
            raise SpecError(f"linux.{field}", "mappings need a user namespace in linux.namespaces")
        if not linux.get(field) and _creates(namespaces, "user"):
            raise SpecError(f"linux.{field}", "must not be empty with a new user namespace")


def _check_rootfs(spec: dict[str, Any], bundle: str) -> None:
    path = rootfs_path(spec, bundle)
    try:
        os.stat(path)
    except FileNotFoundError:
        raise SpecError("root.path", f"rootfs {path} does not exist") from None
    except OSError as e:
        raise SpecError("root.path", f"rootfs {path}: {e.strerror}") from None
    if not os.path.isdir(path):
        raise SpecError("root.path", f"rootfs {path} is not a directory")


def _check_relations(spec: dict[str, Any], bundle: str) -> None:
    """The rules that tie fields together; the shape is already known to be right."""
    _check_rootfs(spec, bundle)
    linux = spec.get("linux") or {}
    namespaces = {ns["type"]: ns.get("path") or None for ns in linux.get("namespaces") or ()}
    for field in ("hostname", "domainname"):
        if spec.get(field) and "uts" not in namespaces:
            raise SpecError(field, f"unable to set the {field} without a private uts namespace")
    _check_user_mappings(linux, namespaces)
    if linux.get("timeOffsets") and not _creates(namespaces, "time"):
        raise SpecError("linux.timeOffsets", "needs a new time namespace in linux.namespaces")
    _check_sysctls(linux.get("sysctl") or {}, namespaces)
    for field in ("maskedPaths", "readonlyPaths"):
        if linux.get(field) and "mount" not in namespaces:
            raise SpecError(f"linux.{field}", "needs a private mount namespace")


# --- public API ---------------------------------------------------------------------------------------------


def validate(spec: dict[str, Any], bundle: str, *, for_exec: bool = False) -> None:
    """Refuse a config that cannot be run as written, with one SpecError naming the field.

    ``for_exec`` checks ``spec["process"]`` alone: the ``process.json`` of ``sampan-runc exec --process``,
    passed as ``{"process": ...}`` so errors name ``process.args`` as they would in a config; runc validates
    it like the config's process.
    """
    if for_exec:
        _EXEC(spec, "")
        return
    _SPEC(spec, "")
    _check_relations(spec, bundle)


def rootfs_path(spec: dict[str, Any], bundle: str) -> str:
    """``root.path`` as a clean absolute host path: a relative one is relative to the bundle, as runc (which
    runs in the bundle directory) resolves it."""
    return os.path.normpath(os.path.join(os.path.abspath(bundle), spec["root"]["path"]))


def _no_constant(name: str) -> None:
    """Python's decoder takes NaN and Infinity; JSON (and Go) do not."""
    raise ValueError(f"{name} is not valid JSON")


def load(bundle: str) -> dict[str, Any]:
    """Read and validate ``<bundle>/config.json``; the dict is returned as written (see ``rootfs_path``)."""
    config = os.path.join(bundle, "config.json")
    try:
        with open(config, "rb") as f:
            data = f.read()
    except (FileNotFoundError, NotADirectoryError):
        if not os.path.isdir(bundle):
            raise NotFound(f"bundle {bundle}: no such directory") from None
        raise NotFound(f"bundle {bundle}: config.json not found") from None
    except OSError as e:
        raise InvalidArgument(f"bundle {bundle}: config.json: {e.strerror}") from None
    try:
        spec = json.loads(data, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise InvalidArgument(f"bundle {bundle}: config.json: invalid JSON at line {e.lineno}, "
                              f"column {e.colno}: {e.msg}") from None
    except ValueError as e:
        raise InvalidArgument(f"bundle {bundle}: config.json: invalid JSON: {e}") from None
    validate(spec, bundle)
    return spec


def _runc_spec() -> dict[str, Any]:
    """runc's example spec (libcontainer/specconv/example.go), field for field and in its order, so that
    ``sampan-runc spec`` writes the same bytes as ``runc spec``."""
    capabilities = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {name: list(capabilities)
                             for name in ("bounding", "effective", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": name} for name in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                            "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }


def _to_rootless(spec: dict[str, Any]) -> None:
    """runc's specconv.ToRootless: a user namespace mapping only the caller, no network namespace, /sys bound
    from the host (sysfs cannot be mounted without a netns of one's own), no uid=/gid= mount options (those
    ids are unmapped) and no cgroup resources (an unprivileged caller cannot set them)."""
    linux = spec["linux"]
    del linux["resources"]
    linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] not in ("network", "user")]
    linux["namespaces"].append({"type": "user"})
    spec["linux"] = {"uidMappings": [{"containerID": 0, "hostID": os.geteuid(), "size": 1}],
                     "gidMappings": [{"containerID": 0, "hostID": os.getegid(), "size": 1}],
                     **linux}  # in Go's field order, so ``spec --rootless`` writes runc's bytes
    for mount in spec["mounts"]:
        if os.path.normpath(mount["destination"]) == "/sys":
            mount.update(source="/sys", type="none", options=["rbind", "nosuid", "noexec", "nodev", "ro"])
        elif "options" in mount:
            mount["options"] = [o for o in mount["options"] if not o.startswith(("uid=", "gid="))]


def default_spec(*, rootless: bool = False) -> dict[str, Any]:
    """What ``runc spec`` (``--rootless``) writes, so ``sampan-runc spec`` is a drop-in starting point.

    As runc's, it has a cgroup namespace on a cgroup v2 host only.
    """
    from sampan.runtime.cgroups import detect_version

    spec = _runc_spec()
    if detect_version() == 2:
        spec["linux"]["namespaces"].append({"type": "cgroup"})
    if rootless:
        _to_rootless(spec)
    return spec


def features(seccomp: dict[str, Any] | None = None) -> dict[str, Any]:
    """``runc features``: what this sampan-runc can do, for engines that ask before they build a config.

    ``seccomp`` is the seccomp module's own report (enabled, actions, operators, archs); without it seccomp is
    reported disabled. AppArmor and SELinux are reported as the host has them, since a profile or label is
    applied exactly when the host can (and refused otherwise).
    """
    from sampan import __version__
    from sampan.runtime.state import OCI_VERSION

    mount_options = {*MOUNT_FLAGS, *MOUNT_PROPAGATION, *MOUNT_REC_ATTRS, MOUNT_COPY_UP}
    return {
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": OCI_VERSION,
        "hooks": list(HOOKS),
        "mountOptions": sorted(mount_options),
        "linux": {
            "namespaces": sorted(NAMESPACE_FLAGS),
            "capabilities": _kernel_capabilities(),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": seccomp if seccomp is not None else {"enabled": False},
            "apparmor": {"enabled": apparmor_enabled()},
            "selinux": {"enabled": selinux_enabled()},
        },
        "annotations": {"org.sampan.runtime.version": __version__},
    }
