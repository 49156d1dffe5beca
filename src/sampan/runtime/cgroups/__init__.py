"""Container cgroups for sampan-runc: v1 and v2 behind one interface, with runc's meaning for every setting.

The input is the OCI ``linux.resources`` object as decoded from config.json. It is handled in three steps, as
in runc's libcontainer: :func:`parse_resources` validates it into plain dataclasses (``InvalidArgument``
naming the field); ``Cgroup.plan`` translates those into the file writes this cgroup version needs, reading
the cgroup but changing nothing (``Unsupported`` for what this version or host cannot do); ``Cgroup.apply``
then performs the writes in order and installs device rules. A setting absent from the object is left as it
is, so ``apply`` also serves ``runc update``.

Cgroup paths (OCI ``linux.cgroupsPath``) are always below the hierarchy root, whether written absolute
(``/sampan/abc``) or relative (``sampan/abc``): sampan has no "current cgroup" to be relative to, and runc
treats both the same way when it creates the cgroup. The systemd form ``slice:prefix:name`` names the scope
systemd would create, ``/slice.../prefix-name.scope`` (nested slices expanded as systemd does); sampan writes
it with the cgroupfs driver, it does not ask systemd.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import time
from abc import ABC, abstractmethod
from collections import namedtuple
from collections.abc import Callable, Mapping

from sampan.errors import Conflict, InternalError, InvalidArgument, NotFound, SampanError, Unsupported
from sampan.runtime.cgroups.devices import DeviceRule, parse_rules

TYPE_CHECKING = False  # typing/collections.abc are not imported at run time: start-up cost
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Cgroup", "Resources", "Write", "cgroup_path", "detect_version", "open_cgroup", "parse_resources"]

DEFAULT_ROOT = "/sys/fs/cgroup"
FROZEN, THAWED = "frozen", "thawed"
UINT64_MAX = 2**64 - 1
_INT64 = (-(2**63), 2**63 - 1)
_UINT64 = (0, UINT64_MAX)
_UINT32 = (0, 2**32 - 1)
_FIELD = "linux.resources"

# How long freezing, and removing a cgroup whose last processes are still exiting, may take.
FREEZE_TIMEOUT = 10.0
REMOVE_TIMEOUT = 2.0


def detect_version(root: str = DEFAULT_ROOT) -> int:
    """2 when ``root`` is a cgroup2 hierarchy (it has ``cgroup.controllers``), else 1 (v1 or hybrid)."""
    return 2 if os.path.exists(os.path.join(root, "cgroup.controllers")) else 1


def open_cgroup(path: str, *, version: int | None = None, root: str = DEFAULT_ROOT) -> Cgroup:
    """The cgroup for OCI ``cgroupsPath`` ``path``; nothing is created until ``create()``."""
    normalized = cgroup_path(path)
    if (version or detect_version(root)) == 2:
        from sampan.runtime.cgroups.v2 import V2Cgroup

        return V2Cgroup(normalized, root)
    from sampan.runtime.cgroups.v1 import V1Cgroup

    return V1Cgroup(normalized, root)


def cgroup_path(path: str) -> str:
    """Normalize a ``cgroupsPath`` to ``/a/b`` below the hierarchy root; refuse ``..`` and the root itself."""
    if "/" not in path and path.count(":") == 2:
        path = _systemd_path(path)
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts or any("\0" in p or "\n" in p for p in parts):
        raise InvalidArgument(f"linux.cgroupsPath: {path!r} must stay below the cgroup root")
    if not parts:
        raise InvalidArgument("linux.cgroupsPath: a container cannot use the root cgroup")
    return "/" + "/".join(parts)


def _systemd_path(spec: str) -> str:
    slice_, prefix, name = spec.split(":")
    if not name:
        raise InvalidArgument(f"linux.cgroupsPath: {spec!r} has no unit name")
    if name.endswith(".slice"):
        unit = name
    else:
        unit = f"{prefix}-{name}.scope" if prefix else f"{name}.scope"
    return f"{_expand_slice(slice_ or 'system.slice', spec)}/{unit}"


def _expand_slice(slice_: str, spec: str) -> str:
    """systemd nests ``a-b.slice`` in ``a.slice``: ``/a.slice/a-b.slice``; ``-.slice`` is the root."""
    if slice_ == "-.slice":
        return ""
    stem = slice_.removesuffix(".slice")
    if stem == slice_ or not stem or stem.startswith("-") or stem.endswith("-") or "--" in stem:
        raise InvalidArgument(f"linux.cgroupsPath: {slice_!r} in {spec!r} is not a valid slice name")
    words = stem.split("-")
    return "".join("/" + "-".join(words[:i + 1]) + ".slice" for i in range(len(words)))


# --- validated resources ------------------------------------------------------------------------------------

class Memory(namedtuple("Memory", "limit reservation swap swappiness disable_oom_killer check_before_update",
                        defaults=(0, 0, 0, None, False, False))):
    # fields: limit, reservation, swap, swappiness, disable_oom_killer, check_before_update
    # swap: memory+swap, as in OCI and v1
    __slots__ = ()

    def limits_set(self) -> bool:
        return bool(self.limit or self.reservation or self.swap)


class Cpu(namedtuple("Cpu", "shares quota period burst realtime_runtime realtime_period cpus mems idle",
                     defaults=(0, 0, 0, None, 0, 0, "", "", None))):
    # fields: shares, quota, period, burst, realtime_runtime, realtime_period, cpus, mems, idle
    __slots__ = ()


class DeviceLimit(namedtuple("DeviceLimit", "major minor value")):
    """A per-device value (throttle rate or weight), written as ``major:minor<sep>value``."""
    # fields: major: int, minor: int, value: int
    __slots__ = ()

    def line(self, sep: str = " ") -> str:
        return f"{self.major}:{self.minor}{sep}{self.value}"


# OCI throttle list -> kind; v1 writes blkio.throttle.<kind>_device, v2 maps the kind to an io.max key.
THROTTLES = {"throttleReadBpsDevice": "read_bps", "throttleWriteBpsDevice": "write_bps",
             "throttleReadIOPSDevice": "read_iops", "throttleWriteIOPSDevice": "write_iops"}


class BlockIO(namedtuple("BlockIO", "weight leaf_weight weight_devices leaf_weight_devices throttles",
                         defaults=(0, 0, (), (), ()))):
    # fields: weight, leaf_weight, weight_devices, leaf_weight_devices, throttles
    __slots__ = ()


class Resources(namedtuple("Resources", "memory cpu pids_limit block_io hugepage_limits network_class_id "
                                        "network_priorities rdma devices unified",
                           defaults=(Memory(), Cpu(), 0, BlockIO(), (), None, (), (), None, None))):
    """``linux.resources``, validated; zero/empty/None means "not set, leave as is" (runc's convention).

    Records here are namedtuples, not dataclasses: this module runs on every container start, and
    ``dataclasses`` costs several milliseconds of imports. rdma entries are (device, "hca_handle=N hca_object=M").
    """
    __slots__ = ()


class _Object:
    """Typed reads from one JSON object; every error names the full field."""

    def __init__(self, raw: object, field: str) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise InvalidArgument(f"{field}: expected an object")
        self.raw, self.field = raw, field

    def number(self, key: str, bounds: tuple[int, int]) -> int:
        """An absent number is 0, which OCI and runc read as "not set"."""
        value = self.opt_number(key, bounds)
        return 0 if value is None else value

    def opt_number(self, key: str, bounds: tuple[int, int]) -> int | None:
        value = self.raw.get(key)
        if value is None:
            return None
        low, high = bounds
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidArgument(f"{self.field}.{key}: {value!r} is not an integer from {low} to {high}")
        return value

    def string(self, key: str, pattern: re.Pattern[str] | None = None) -> str:
        value = self.raw.get(key, "")
        if not isinstance(value, str) or (pattern is not None and value and not pattern.fullmatch(value)):
            raise InvalidArgument(f"{self.field}.{key}: {value!r} is not valid")
        return value

    def flag(self, key: str) -> bool:
        value = self.raw.get(key, False)
        if not isinstance(value, bool):
            raise InvalidArgument(f"{self.field}.{key}: {value!r} is not true or false")
        return value

    def child(self, key: str) -> _Object:
        return _Object(self.raw.get(key), f"{self.field}.{key}")

    def children(self, key: str) -> list[_Object]:
        value = self.raw.get(key) or []
        if not isinstance(value, list):
            raise InvalidArgument(f"{self.field}.{key}: expected a list")
        return [_Object(item, f"{self.field}.{key}[{i}]") for i, item in enumerate(value)]


_CPU_LIST = re.compile(r"[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*")
_PAGE_SIZE = re.compile(r"[1-9][0-9]*[KMGTP]?B")
_NAME = re.compile(r"[^\s/\0]+")
_RDMA_LIMITS = (("hca_handle", "hcaHandles"), ("hca_object", "hcaObjects"))
_UNIFIED_KEY = re.compile(r"[a-z0-9_]+\.[A-Za-z0-9_.]+")


def parse_resources(raw: Mapping[str, Any] | None) -> Resources:
    """Validate an OCI ``linux.resources`` object. Kernel memory limits are ignored, as runc ignores them."""
    top = _Object(raw, _FIELD)
    network = top.child("network")
    unified, devices = top.raw.get("unified"), top.raw.get("devices")
    return Resources(
        memory=_memory(top.child("memory")),
        cpu=_cpu(top.child("cpu")),
        pids_limit=top.child("pids").number("limit", _INT64),
        block_io=_block_io(top.child("blockIO")),
        hugepage_limits=tuple((_required(h.string("pageSize", _PAGE_SIZE), h, "pageSize"),
                               h.number("limit", _UINT64)) for h in top.children("hugepageLimits")),
        network_class_id=network.opt_number("classID", _UINT32),
        network_priorities=tuple((_required(p.string("name", _NAME), p, "name"),
                                  p.number("priority", _UINT32)) for p in network.children("priorities")),
        rdma=_rdma(top.child("rdma")),
        devices=None if devices is None else parse_rules(devices, f"{_FIELD}.devices"),
        unified=None if unified is None else _unified(unified),
    )


def _required(value: str, obj: _Object, key: str) -> str:
    if not value:
        raise InvalidArgument(f"{obj.field}.{key}: required")
    return value


def _memory(obj: _Object) -> Memory:
    limit = (-1, _INT64[1])
    memory = Memory(limit=obj.number("limit", limit), reservation=obj.number("reservation", limit),
                    swap=obj.number("swap", limit), swappiness=obj.opt_number("swappiness", (-1, UINT64_MAX)),
                    disable_oom_killer=obj.flag("disableOOMKiller"),
                    check_before_update=obj.flag("checkBeforeUpdate"))
    if memory.swappiness is not None and memory.swappiness > 100:
        raise InvalidArgument(f"{obj.field}.swappiness: {memory.swappiness} is outside the valid range 0-100")
    if memory.limit > 0 and memory.swap > 0 and memory.swap < memory.limit:
        raise InvalidArgument(f"{obj.field}.swap: memory+swap limit {memory.swap} is below the memory limit "
                              f"{memory.limit}")
    return memory


def _cpu(obj: _Object) -> Cpu:
    cpu = Cpu(shares=obj.number("shares", _UINT64), quota=obj.number("quota", _INT64),
              period=obj.number("period", _UINT64), burst=obj.opt_number("burst", _UINT64),
              realtime_runtime=obj.number("realtimeRuntime", _INT64),
              realtime_period=obj.number("realtimePeriod", _UINT64), cpus=obj.string("cpus", _CPU_LIST),
              mems=obj.string("mems", _CPU_LIST), idle=obj.opt_number("idle", _INT64))
    # The kernel's MIN_SHARES/MAX_SHARES; v1 would clamp silently and v2 converts from this range.
    if cpu.shares and not 2 <= cpu.shares <= 262144:
        raise InvalidArgument(f"{obj.field}.shares: {cpu.shares} is outside the allowed range 2-262144")
    return cpu


def _weight(obj: _Object, key: str) -> int:
    value = obj.number(key, (0, 1000))
    if 0 < value < 10:
        raise InvalidArgument(f"{obj.field}.{key}: {value} is outside the allowed range 10-1000")
    return value


def _device_limit(obj: _Object, value: int) -> DeviceLimit:
    return DeviceLimit(obj.number("major", _UINT32), obj.number("minor", _UINT32), value)


def _block_io(obj: _Object) -> BlockIO:
    devices = obj.children("weightDevice")
    return BlockIO(
        weight=_weight(obj, "weight"),
        leaf_weight=_weight(obj, "leafWeight"),
        weight_devices=tuple(_device_limit(d, w) for d in devices if (w := _weight(d, "weight"))),
        leaf_weight_devices=tuple(_device_limit(d, w) for d in devices if (w := _weight(d, "leafWeight"))),
        throttles=tuple((kind, _device_limit(t, t.number("rate", _UINT64)))
                        for key, kind in THROTTLES.items() for t in obj.children(key)),
    )


def _rdma(obj: _Object) -> tuple[tuple[str, str], ...]:
    out = []
    for device in obj.raw:
        if not isinstance(device, str) or not _NAME.fullmatch(device):
            raise InvalidArgument(f"{obj.field}: {device!r} is not an RDMA device name")
        limits = obj.child(device)
        parts = [f"{name}={value}" for name, key in _RDMA_LIMITS
                 if (value := limits.opt_number(key, _UINT32)) is not None]
        if not parts:
            raise InvalidArgument(f"{limits.field}: set hcaHandles or hcaObjects")
        out.append((device, " ".join(parts)))
    return tuple(out)


def _unified(raw: object) -> tuple[tuple[str, str], ...]:
    field = f"{_FIELD}.unified"
    if not isinstance(raw, Mapping):
        raise InvalidArgument(f"{field}: expected an object of strings")
    for key, value in raw.items():
        if not isinstance(key, str) or "/" in key or ".." in key or not _UNIFIED_KEY.fullmatch(key):
            raise InvalidArgument(f"{field}: {key!r} must be a file name of the form CONTROLLER.PARAMETER")
        if not isinstance(value, str):
            raise InvalidArgument(f"{field}.{key}: {value!r} is not a string")
    return tuple(raw.items())


# --- files --------------------------------------------------------------------------------------------------

class Write(namedtuple("Write", "dir name value field tolerate", defaults=(0,))):
    """One cgroup file write, with the OCI field it comes from: a refusal names the user's setting."""
    # fields: dir: str, name: str, value: str, field: str, tolerate: int
    # tolerate: an errno this write may fail with, because a later write repeats it (v1 cfs period)
    __slots__ = ()


def read_file(dir: str, name: str) -> str:
    with open(os.path.join(dir, name)) as f:
        return f.read().strip()


def read_int(dir: str, name: str) -> int:
    """A single number; ``max`` reads as UINT64_MAX, as runc reports it."""
    text = read_file(dir, name)
    return UINT64_MAX if text == "max" else int(text)


def read_keyed(dir: str, name: str) -> dict[str, int]:
    """A flat-keyed file (``key value`` per line), e.g. memory.stat, cpu.stat, memory.events."""
    out = {}
    for line in read_file(dir, name).splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def read_keyed_or_empty(dir: str, name: str) -> dict[str, int]:
    try:
        return read_keyed(dir, name)
    except FileNotFoundError:
        return {}


def write_file(dir: str, name: str, value: str) -> None:
    """One ``write()`` of the whole value (cgroup files parse each write alone); never creates a file."""
    fd = os.open(os.path.join(dir, name), os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def write_all(writes: list[Write]) -> None:
    for w in writes:
        try:
            write_file(w.dir, w.name, w.value)
        except OSError as err:
            if err.errno != w.tolerate:
                raise _write_error(w, err) from err


def _write_error(w: Write, err: OSError) -> SampanError:
    what = f"{w.field}: cannot write {w.value!r} to {w.name}: {err.strerror}"
    if err.errno in (errno.EINVAL, errno.ERANGE, errno.EOVERFLOW):
        return InvalidArgument(f"{what} (the kernel refused the value)")
    if err.errno in (errno.ENOENT, errno.EOPNOTSUPP):
        return Unsupported(f"{what} (this kernel, device or cgroup does not support that setting)")
    if err.errno == errno.EBUSY:
        return Conflict(f"{what} (the cgroup's current usage does not allow it)")
    return InternalError(what)


def join(dir: str, pid: int) -> None:
    """Move ``pid`` into ``dir``; EINVAL means it is still being forked (TASK_NEW): retry, like runc."""
    for _ in range(5):
        try:
            write_file(dir, "cgroup.procs", str(pid))
            return
        except OSError as err:
            if err.errno == errno.ESRCH:
                raise NotFound(f"process {pid} does not exist") from err
            if err.errno != errno.EINVAL:
                raise InternalError(f"cannot add process {pid} to {dir}: {err.strerror}") from err
            time.sleep(0.03)
    raise InternalError(f"cannot add process {pid} to {dir}: it never finished starting")


def procs(dir: str) -> set[int]:
    """Every process in ``dir`` and its descendant cgroups; a missing directory has none."""
    found: set[int] = set()
    for current, _, _ in os.walk(dir):
        try:
            found.update(int(line) for line in read_file(current, "cgroup.procs").split())
        except FileNotFoundError:
            continue
    return found


def remove(dir: str) -> None:
    """rmdir ``dir`` and its sub-cgroups, deepest first; EBUSY while the last processes exit is retried."""
    for current, _, _ in os.walk(dir, topdown=False):
        _rmdir(current)


def _rmdir(dir: str) -> None:
    deadline = time.monotonic() + REMOVE_TIMEOUT
    delay = 0.005
    while True:
        try:
            os.rmdir(dir)
            return
        except FileNotFoundError:
            return
        except OSError as err:
            if err.errno != errno.EBUSY or time.monotonic() > deadline:
                raise Conflict(f"cannot remove cgroup {dir}: {err.strerror}") from err
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def wait_for(done: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    delay = 0.001
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return True


def pids_max(limit: int) -> str:
    """runc's pids.max value: a positive limit as is, a negative one "max" (0 is "unset", never written)."""
    return str(limit) if limit > 0 else "max"


def check_usage(memory: Memory, dir: str, usage_file: str) -> None:
    """``checkBeforeUpdate``: refuse a limit below current usage instead of letting the kernel reclaim or OOM.

    Without the usage file the controller is missing, which the limit's own write reports.
    """
    if memory.check_before_update and memory.limit > 0 and os.path.exists(os.path.join(dir, usage_file)):
        usage = read_int(dir, usage_file)
        if memory.limit < usage:
            raise Conflict(f"{_FIELD}.memory.limit: rejecting memory limit {memory.limit} below current "
                           f"usage {usage}")


def rdma_writes(dir: str, resources: Resources) -> list[Write]:
    """rdma.max has the same name and format on v1 and v2."""
    return [Write(dir, "rdma.max", f"{device} {limits}", f"{_FIELD}.rdma.{device}")
            for device, limits in resources.rdma]


def hugepage_sizes() -> list[str]:
    """The host's huge page sizes in cgroup file notation ("2MB", "1GB"), from /sys/kernel/mm/hugepages."""
    try:
        names = os.listdir("/sys/kernel/mm/hugepages")
    except FileNotFoundError:
        return []
    sizes = []
    for name in sorted(names):
        size = int(name.removeprefix("hugepages-").removesuffix("kB"))
        unit = 1
        while size >= 1024 and size % 1024 == 0 and unit < 4:
            size, unit = size // 1024, unit + 1
        sizes.append(f"{size}{'BKMGTP'[unit]}B")
    return sizes


BLKIO_STATS = ("ioServiceBytesRecursive", "ioServicedRecursive", "ioQueueRecursive", "ioServiceTimeRecursive",
               "ioWaitTimeRecursive", "ioMergedRecursive", "ioTimeRecursive", "sectorsRecursive")


def throttling(cpu_stat: dict[str, int], time_key: str, ns_per_unit: int) -> dict[str, int]:
    """runc's CPU throttling figures from ``cpu.stat`` (v1 counts the time in ns, v2 in usec)."""
    return {"periods": cpu_stat.get("nr_periods", 0), "throttledPeriods": cpu_stat.get("nr_throttled", 0),
            "throttledTime": cpu_stat.get(time_key, 0) * ns_per_unit}


def pids_stats(dir: str) -> dict[str, int]:
    """The pids controller's figures, the same files on v1 and v2 (no limit reads as 0, as runc reports it)."""
    limit = read_int(dir, "pids.max")
    return {"current": read_int(dir, "pids.current"), "limit": 0 if limit == UINT64_MAX else limit}


def empty_stats() -> dict[str, Any]:
    """runc's ``events --stats`` data with every field present (runc omits zeros; consumers need not care)."""
    def entry() -> dict[str, int]:
        return {"limit": 0, "usage": 0, "max": 0, "failcnt": 0}

    return {
        "cpu": {"usage": {"total": 0, "percpu": [], "percpu_kernel": [], "percpu_user": [], "kernel": 0,
                          "user": 0},
                "throttling": {"periods": 0, "throttledPeriods": 0, "throttledTime": 0}},
        "memory": {"cache": 0, "usage": entry(), "swap": entry(), "kernel": entry(), "kernelTCP": entry(),
                   "raw": {}},
        "pids": {"current": 0, "limit": 0},
        "blkio": {key: [] for key in BLKIO_STATS},
        "hugetlb": {},
    }


# --- the interface ------------------------------------------------------------------------------------------

class Cgroup(ABC):
    """A container's cgroup. ``path`` is the normalized cgroupsPath, relative to the hierarchy root(s)."""

    version: int
    path: str

    def apply(self, resources: Mapping[str, Any] | None) -> None:
        """Validate everything first, then write; nothing is written when any value is refused."""
        parsed = parse_resources(resources)
        if not self.exists():
            raise NotFound(f"cgroup {self.path} does not exist: create() it first")
        write_all(self.plan(parsed))
        if parsed.devices is not None:
            self._set_devices(parsed.devices)

    def kill_all(self, sig: int) -> None:
        """Signal every process, frozen meanwhile so none can fork a child that escapes the signal (runc).

        A freeze that fails does not stop the signal, as in runc: killing must not depend on pausing.
        """
        frozen = self._can_freeze()
        if frozen:
            try:
                self.freeze()
            except SampanError:
                frozen = False
        try:
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        finally:
            if frozen:
                self.thaw()

    @abstractmethod
    def plan(self, resources: Resources) -> list[Write]:
        """The writes ``apply`` makes for ``resources`` (devices aside), in order; reads, never writes."""

    @abstractmethod
    def _set_devices(self, rules: tuple[DeviceRule, ...]) -> None: ...

    @abstractmethod
    def _can_freeze(self) -> bool:
        """Whether the cgroup exists and has a freezer."""

    @abstractmethod
    def create(self) -> None:
        """mkdir -p in every hierarchy used; an existing cgroup is reused (runc joins it too)."""

    @abstractmethod
    def add(self, pid: int) -> None:
        """Move a process (all its threads) into the cgroup, in every hierarchy."""

    @abstractmethod
    def pids(self) -> list[int]:
        """Processes in the cgroup and its sub-cgroups, sorted."""

    @abstractmethod
    def freeze(self) -> None: ...

    @abstractmethod
    def thaw(self) -> None: ...

    @abstractmethod
    def state(self) -> str:
        """``"frozen"`` or ``"thawed"`` (also when there is no freezer: nothing can be frozen then)."""

    @abstractmethod
    def stats(self) -> dict[str, Any]:
        """The ``data`` of runc's ``events --stats``: cpu, memory, pids, blkio and hugetlb."""

    @abstractmethod
    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer has killed a process of this cgroup."""

    @abstractmethod
    def destroy(self) -> None:
        """Remove the cgroup (sub-cgroups first) but not its parents, which others may share; gone is fine."""

    @abstractmethod
    def exists(self) -> bool: ...


def freeze_failed(what: str) -> SampanError:
    return Conflict(f"unable to freeze {what}: processes kept changing")
