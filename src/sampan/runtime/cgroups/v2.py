"""cgroup v2: one directory in the unified hierarchy, written with the meaning runc's ``fs2`` driver gives it.

OCI resources were designed for v1, so several are converted as runc converts them: cpu shares to cpu.weight,
blkio weight to io.weight (unless BFQ's io.bfq.weight exists, which takes the v1 value as is), memory+swap to
memory.swap.max. Every interface file is named ``<controller>.<setting>``, so one check refuses any write
(``unified`` keys included) whose controller is not enabled for the cgroup, with the field that asked for it.
Settings that only exist on v1 (swappiness, disabling the OOM killer, realtime CPU, leaf weights, net_cls and
net_prio) are refused with ``Unsupported`` rather than silently dropped.
"""

from __future__ import annotations

import os
import signal

from sampan.errors import InternalError, InvalidArgument, NotFound, Unsupported
from sampan.runtime.cgroups import (
    FREEZE_TIMEOUT,
    FROZEN,
    THAWED,
    THROTTLES,
    UINT64_MAX,
    BlockIO,
    Cgroup,
    Cpu,
    DeviceLimit,
    Memory,
    Resources,
    Write,
    check_usage,
    empty_stats,
    freeze_failed,
    hugepage_sizes,
    join,
    pids_max,
    pids_stats,
    procs,
    rdma_writes,
    read_file,
    read_int,
    read_keyed,
    read_keyed_or_empty,
    remove,
    throttling,
    wait_for,
    write_file,
)
from sampan.runtime.cgroups.devices import DeviceRule, install_filter

TYPE_CHECKING = False  # typing/collections.abc are not imported at run time: start-up cost
if TYPE_CHECKING:
    from typing import Any

_F = "linux.resources"
_IO_MAX_KEYS = {"read_bps": "rbps", "write_bps": "wbps", "read_iops": "riops", "write_iops": "wiops"}
_THROTTLE_FIELDS = {kind: key for key, kind in THROTTLES.items()}
_DEFAULT_PERIOD = 100000  # the kernel's default cpu.max period, documented in cgroup-v2.rst


def cpu_weight(shares: int) -> int:
    """cpu.shares [2, 262144] mapped linearly onto cpu.weight [1, 10000], as runc converts them."""
    return 1 + ((shares - 2) * 9999) // 262142


def io_weight(weight: int) -> int:
    """blkio.weight [10, 1000] mapped linearly onto io.weight [1, 10000], as runc converts them."""
    return 1 + (weight - 10) * 9999 // 990


def swap_max(memory: Memory) -> int:
    """memory.swap.max from OCI's memory+swap, as runc converts it: 0 = leave alone, -1 = "max"."""
    limit, swap = memory.limit, memory.swap
    if limit == -1 and swap == 0:
        return -1  # unlimited memory, swap not given: unlimited swap too, as on v1
    if swap in (-1, 0) or limit == -1:
        return swap
    if limit == 0:
        raise InvalidArgument(f"{_F}.memory.swap: cgroup v2 cannot take a swap limit without a memory limit")
    return swap - limit


def _number(value: int) -> str:
    return "max" if value == -1 else str(value)


class V2Cgroup(Cgroup):
    version = 2

    def __init__(self, path: str, root: str) -> None:
        self.path, self.root = path, root
        self.dir = os.path.join(root, path.lstrip("/"))

    # --- lifecycle ------------------------------------------------------------------------------------------

    def create(self) -> None:
        """mkdir -p, enabling in the root and each intermediate cgroup all controllers the root has (runc)."""
        try:
            enable = " ".join(f"+{c}" for c in read_file(self.root, "cgroup.controllers").split())
            current = self.root
            for part in self.path.strip("/").split("/"):
                if enable:
                    _enable_controllers(current, enable)
                current = os.path.join(current, part)
                os.makedirs(current, exist_ok=True)
        except OSError as err:
            raise InternalError(f"cannot create cgroup {self.path}: {err}") from err

    def add(self, pid: int) -> None:
        join(self.dir, pid)

    def pids(self) -> list[int]:
        return sorted(procs(self.dir))

    def exists(self) -> bool:
        return os.path.isdir(self.dir)

    def destroy(self) -> None:
        remove(self.dir)

    def kill_all(self, sig: int) -> None:
        """SIGKILL through cgroup.kill (Linux 5.14+) is atomic, forks included; otherwise runc's way."""
        if sig == signal.SIGKILL and os.path.exists(os.path.join(self.dir, "cgroup.kill")):
            write_file(self.dir, "cgroup.kill", "1")
            return
        super().kill_all(sig)

    # --- resources ------------------------------------------------------------------------------------------

    def plan(self, resources: Resources) -> list[Write]:
        _refuse_v1_only(resources)
        unified = [Write(self.dir, name, value, f"{_F}.unified.{name}")
                   for name, value in resources.unified or ()]
        writes = [*self._pids(resources), *self._memory(resources.memory), *self._io(resources.block_io),
                  *self._cpu(resources.cpu), *self._cpuset(resources.cpu), *self._hugetlb(resources),
                  *rdma_writes(self.dir, resources), *unified]
        self._check_controllers(writes)
        return writes

    def controllers(self) -> set[str]:
        """Controllers enabled for this cgroup (its parent's subtree_control)."""
        return set(read_file(self.dir, "cgroup.controllers").split())

    def _check_controllers(self, writes: list[Write]) -> None:
        available = self.controllers()
        for w in writes:
            controller = w.name.split(".", 1)[0]
            if controller != "cgroup" and controller not in available:
                raise Unsupported(f"{w.field}: cannot set {w.name}: the {controller} controller is not "
                                  f"available in cgroup {self.path}")

    def _pids(self, resources: Resources) -> list[Write]:
        if not resources.pids_limit:
            return []
        return [Write(self.dir, "pids.max", pids_max(resources.pids_limit), f"{_F}.pids.limit")]

    def _memory(self, memory: Memory) -> list[Write]:
        if not memory.limits_set():
            return []
        check_usage(memory, self.dir, "memory.current")
        swap = swap_max(memory)
        # swap == limit means "no swap": write 0, never leave it unset.
        swap_value = "0" if swap == 0 and memory.swap > 0 else (_number(swap) if swap else "")
        writes = []
        # Without swap accounting there is no memory.swap.max; "no swap" and "unlimited" need nothing then.
        if swap_value and (swap_value not in ("0", "max") or self._has("memory.swap.max")):
            writes.append(Write(self.dir, "memory.swap.max", swap_value, f"{_F}.memory.swap"))
        if memory.limit:
            writes.append(Write(self.dir, "memory.max", _number(memory.limit), f"{_F}.memory.limit"))
        if memory.reservation:
            writes.append(Write(self.dir, "memory.low", _number(memory.reservation),
                                f"{_F}.memory.reservation"))
        return writes

    def _io(self, block_io: BlockIO) -> list[Write]:
        field = f"{_F}.blockIO"
        bfq = self._has("io.bfq.weight")
        name = "io.bfq.weight" if bfq else "io.weight"
        convert = (lambda w: w) if bfq else io_weight
        writes = []
        if block_io.weight:
            writes.append(Write(self.dir, name, str(convert(block_io.weight)), f"{field}.weight"))
        writes += [Write(self.dir, name, DeviceLimit(d.major, d.minor, convert(d.value)).line(),
                         f"{field}.weightDevice") for d in block_io.weight_devices]
        writes += [Write(self.dir, "io.max", d.line(f" {_IO_MAX_KEYS[kind]}="),
                         f"{field}.{_THROTTLE_FIELDS[kind]}") for kind, d in block_io.throttles]
        return writes

    def _cpu(self, cpu: Cpu) -> list[Write]:
        field = f"{_F}.cpu"
        writes = []
        if cpu.shares:
            writes.append(Write(self.dir, "cpu.weight", str(cpu_weight(cpu.shares)), f"{field}.shares"))
        if cpu.quota or cpu.period:
            quota = str(cpu.quota) if cpu.quota > 0 else "max"
            period = cpu.period or _DEFAULT_PERIOD
            writes.append(Write(self.dir, "cpu.max", f"{quota} {period}", f"{field}.quota"))
        if cpu.burst is not None:
            writes.append(Write(self.dir, "cpu.max.burst", str(cpu.burst), f"{field}.burst"))
        if cpu.idle is not None:
            writes.append(Write(self.dir, "cpu.idle", str(cpu.idle), f"{field}.idle"))
        return writes

    def _cpuset(self, cpu: Cpu) -> list[Write]:
        return [Write(self.dir, f"cpuset.{key}", value, f"{_F}.cpu.{key}")
                for key, value in (("cpus", cpu.cpus), ("mems", cpu.mems)) if value]

    def _hugetlb(self, resources: Resources) -> list[Write]:
        return [Write(self.dir, f"hugetlb.{size}.max", str(limit), f"{_F}.hugepageLimits")
                for size, limit in resources.hugepage_limits]

    def _set_devices(self, rules: tuple[DeviceRule, ...]) -> None:
        try:
            install_filter(self.dir, rules)
        except OSError as err:
            message = f"{_F}.devices: cannot install the device filter on {self.path}: {err}"
            raise InternalError(message) from err

    # --- freezer --------------------------------------------------------------------------------------------

    def _can_freeze(self) -> bool:
        return os.path.exists(os.path.join(self.dir, "cgroup.freeze"))

    def freeze(self) -> None:
        if not self.exists():
            raise NotFound(f"cgroup {self.path} does not exist")
        if not self._can_freeze():
            raise Unsupported("freeze: this kernel has no cgroup v2 freezer (Linux 5.2+)")
        if not self._set_frozen(True):
            self._set_frozen(False)
            raise freeze_failed(self.path)

    def thaw(self) -> None:
        if self._can_freeze() and not self._set_frozen(False):
            raise InternalError(f"unable to thaw cgroup {self.path}")

    def _set_frozen(self, frozen: bool) -> bool:
        """Write cgroup.freeze and wait until cgroup.events reports every task (un)frozen."""
        write_file(self.dir, "cgroup.freeze", str(int(frozen)))
        return wait_for(lambda: read_keyed(self.dir, "cgroup.events").get("frozen") == int(frozen),
                        FREEZE_TIMEOUT)

    def state(self) -> str:
        if self._can_freeze() and read_file(self.dir, "cgroup.freeze") == "1":
            return FROZEN
        return THAWED

    # --- reporting ------------------------------------------------------------------------------------------

    def oom_killed(self) -> bool:
        return read_keyed_or_empty(self.dir, "memory.events").get("oom_kill", 0) > 0

    def stats(self) -> dict[str, Any]:
        """runc's v2 mapping: usec to ns, v1-style mem+swap totals, io.stat as v1's recursive blkio tables."""
        if not self.exists():
            raise NotFound(f"cgroup {self.path} does not exist")
        out = empty_stats()
        cpu = read_keyed_or_empty(self.dir, "cpu.stat")
        out["cpu"]["usage"].update(total=cpu.get("usage_usec", 0) * 1000, user=cpu.get("user_usec", 0) * 1000,
                                   kernel=cpu.get("system_usec", 0) * 1000)
        out["cpu"]["throttling"] = throttling(cpu, "throttled_usec", 1000)
        if self._has("memory.stat"):
            self._memory_stats(out["memory"])
        if self._has("pids.current"):
            out["pids"] = pids_stats(self.dir)
        else:
            out["pids"]["current"] = len(read_file(self.dir, "cgroup.procs").split())
        if self._has("io.stat"):
            out["blkio"].update(_io_stats(read_file(self.dir, "io.stat")))
        out["hugetlb"] = {size: {"usage": read_int(self.dir, f"hugetlb.{size}.current"), "max": 0,
                                 "failcnt": read_keyed(self.dir, f"hugetlb.{size}.events").get("max", 0)}
                          for size in hugepage_sizes() if self._has(f"hugetlb.{size}.current")}
        return out

    def _has(self, name: str) -> bool:
        return os.path.exists(os.path.join(self.dir, name))

    def _memory_stats(self, memory: dict[str, Any]) -> None:
        memory["raw"] = read_keyed(self.dir, "memory.stat")
        memory["cache"] = memory["raw"].get("file", 0)
        usage = {"usage": read_int(self.dir, "memory.current"), "limit": read_int(self.dir, "memory.max"),
                 "max": read_int(self.dir, "memory.peak") if self._has("memory.peak") else 0,
                 "failcnt": read_keyed_or_empty(self.dir, "memory.events").get("max", 0)}
        memory["usage"] = usage
        if self._has("memory.swap.current"):
            # v1 reports swap as memory+swap; so does runc on v2.
            limit = read_int(self.dir, "memory.swap.max")
            unlimited = UINT64_MAX in (limit, usage["limit"])
            memory["swap"] = {"usage": read_int(self.dir, "memory.swap.current") + usage["usage"], "max": 0,
                              "failcnt": read_keyed_or_empty(self.dir, "memory.swap.events").get("max", 0),
                              "limit": UINT64_MAX if unlimited else limit + usage["limit"]}


def _enable_controllers(dir: str, enable: str) -> None:
    """All at once, else one by one: a controller left disabled is reported by the write that needs it."""
    try:
        write_file(dir, "cgroup.subtree_control", enable)
    except OSError:
        for one in enable.split():
            try:
                write_file(dir, "cgroup.subtree_control", one)
            except OSError:
                continue


def _refuse_v1_only(resources: Resources) -> None:
    memory, cpu = resources.memory, resources.cpu
    refused = {
        "memory.swappiness": memory.swappiness not in (None, -1),
        "memory.disableOOMKiller": memory.disable_oom_killer,
        "cpu.realtimeRuntime": bool(cpu.realtime_runtime),
        "cpu.realtimePeriod": bool(cpu.realtime_period),
        "blockIO.leafWeight": bool(resources.block_io.leaf_weight or resources.block_io.leaf_weight_devices),
        "network.classID": resources.network_class_id is not None,
        "network.priorities": bool(resources.network_priorities),
    }
    for name, is_set in refused.items():
        if is_set:
            raise Unsupported(f"{_F}.{name}: not supported on cgroup v2")


def _io_stats(text: str) -> dict[str, list[dict[str, Any]]]:
    """io.stat lines ``8:0 rbytes=1 wbytes=2 rios=3 wios=4 ...`` as v1's Read/Write byte and op tables."""
    tables: dict[str, list[dict[str, Any]]] = {"ioServiceBytesRecursive": [], "ioServicedRecursive": []}
    mapping = {"rbytes": ("ioServiceBytesRecursive", "Read"), "wbytes": ("ioServiceBytesRecursive", "Write"),
               "rios": ("ioServicedRecursive", "Read"), "wios": ("ioServicedRecursive", "Write")}
    for line in text.splitlines():
        device, *items = line.split()
        major, _, minor = device.partition(":")
        for item in items:
            key, _, value = item.partition("=")
            if key in mapping:
                table, op = mapping[key]
                entry = {"major": int(major), "minor": int(minor), "op": op, "value": int(value)}
                tables[table].append(entry)
    return tables
