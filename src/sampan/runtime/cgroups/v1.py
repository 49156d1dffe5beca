"""cgroup v1: one directory per controller hierarchy, written with the meaning runc's ``fs`` driver gives.

Hierarchies are found as ``<root>/<controller>`` (a symlink for co-mounted ones such as ``cpu,cpuacct``, so
both names lead to one directory). The cgroup joins every controller hierarchy runc joins, when mounted; the
named ``name=systemd`` hierarchy and, on hybrid hosts, the controller-less v2 tree are left alone, since no
setting of sampan's lives there.
"""

from __future__ import annotations

import errno
import os
import time

from sampan.errors import InternalError, NotFound, Unsupported
from sampan.runtime.cgroups import (
    FREEZE_TIMEOUT,
    FROZEN,
    THAWED,
    THROTTLES,
    BlockIO,
    Cgroup,
    Cpu,
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
    write_all,
    write_file,
)
from sampan.runtime.cgroups.devices import DeviceRule, Emulator, emulate, v1_transition

TYPE_CHECKING = False  # typing/collections.abc are not imported at run time: start-up cost
if TYPE_CHECKING:
    from typing import Any

SUBSYSTEMS = ("cpuset", "devices", "memory", "cpu", "cpuacct", "pids", "blkio", "hugetlb", "net_cls",
              "net_prio", "perf_event", "freezer", "rdma", "misc")
_F = "linux.resources"
_MEMSW = "memory.memsw.limit_in_bytes"
_THROTTLE_FIELDS = {kind: key for key, kind in THROTTLES.items()}

# blkio statistics by source, best first: the first source whose first file exists is used (runc's order).
_BLKIO_SOURCES = (
    (("blkio.bfq.io_service_bytes_recursive", "ioServiceBytesRecursive"),
     ("blkio.bfq.io_serviced_recursive", "ioServicedRecursive"),
     ("blkio.bfq.sectors_recursive", "sectorsRecursive"),
     ("blkio.bfq.io_service_time_recursive", "ioServiceTimeRecursive"),
     ("blkio.bfq.io_wait_time_recursive", "ioWaitTimeRecursive"),
     ("blkio.bfq.io_merged_recursive", "ioMergedRecursive"),
     ("blkio.bfq.io_queued_recursive", "ioQueueRecursive"),
     ("blkio.bfq.time_recursive", "ioTimeRecursive")),
    (("blkio.io_service_bytes_recursive", "ioServiceBytesRecursive"),
     ("blkio.io_serviced_recursive", "ioServicedRecursive"),
     ("blkio.sectors_recursive", "sectorsRecursive"),
     ("blkio.io_service_time_recursive", "ioServiceTimeRecursive"),
     ("blkio.io_wait_time_recursive", "ioWaitTimeRecursive"),
     ("blkio.io_merged_recursive", "ioMergedRecursive"),
     ("blkio.io_queued_recursive", "ioQueueRecursive"),
     ("blkio.time_recursive", "ioTimeRecursive")),
    (("blkio.throttle.io_service_bytes_recursive", "ioServiceBytesRecursive"),
     ("blkio.throttle.io_serviced_recursive", "ioServicedRecursive")),
    (("blkio.throttle.io_service_bytes", "ioServiceBytesRecursive"),
     ("blkio.throttle.io_serviced", "ioServicedRecursive")),
)


class V1Cgroup(Cgroup):
    version = 1

    def __init__(self, path: str, root: str) -> None:
        self.path, self.root = path, root
        self._dirs = {name: os.path.join(os.path.realpath(os.path.join(root, name)), path.lstrip("/"))
                      for name in SUBSYSTEMS if os.path.isdir(os.path.join(root, name))}

    def dir(self, subsystem: str) -> str | None:
        """This cgroup's directory in ``subsystem``'s hierarchy; None when that controller is not mounted."""
        return self._dirs.get(subsystem)

    def _unique_dirs(self) -> list[str]:
        return list(dict.fromkeys(self._dirs.values()))

    def _target(self, subsystem: str, field: str) -> str:
        found = self._dirs.get(subsystem)
        if found is None:
            raise Unsupported(f"{field}: the {subsystem} cgroup controller is not mounted on this host")
        return found

    # --- lifecycle ------------------------------------------------------------------------------------------

    def create(self) -> None:
        try:
            for subsystem, path in self._dirs.items():
                if subsystem == "cpuset":
                    self._create_cpuset()
                else:
                    os.makedirs(path, exist_ok=True)
        except OSError as err:
            raise InternalError(f"cannot create cgroup {self.path}: {err}") from err

    def _create_cpuset(self) -> None:
        """A new v1 cpuset has empty cpus and mems, so no task can join it: copy the parent's, per level."""
        parent = os.path.realpath(os.path.join(self.root, "cpuset"))
        for part in self.path.strip("/").split("/"):
            current = os.path.join(parent, part)
            os.makedirs(current, exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if not read_file(current, name):
                    write_file(current, name, read_file(parent, name))
            parent = current

    def add(self, pid: int) -> None:
        for path in self._unique_dirs():
            join(path, pid)

    def pids(self) -> list[int]:
        return sorted(set().union(*(procs(path) for path in self._unique_dirs())))

    def exists(self) -> bool:
        return any(os.path.isdir(path) for path in self._unique_dirs())

    def destroy(self) -> None:
        for path in self._unique_dirs():
            remove(path)

    # --- resources ------------------------------------------------------------------------------------------

    def plan(self, resources: Resources) -> list[Write]:
        if resources.unified:
            raise Unsupported(f"{_F}.unified: cannot use unified resources on cgroup v1")
        return [*self._cpuset(resources.cpu), *self._memory(resources.memory), *self._cpu(resources.cpu),
                *self._pids(resources), *self._blkio(resources.block_io), *self._hugetlb(resources),
                *self._network(resources),
                *(rdma_writes(self._target("rdma", f"{_F}.rdma"), resources) if resources.rdma else [])]

    def _cpuset(self, cpu: Cpu) -> list[Write]:
        return [Write(self._target("cpuset", f"{_F}.cpu.{key}"), f"cpuset.{key}", value, f"{_F}.cpu.{key}")
                for key, value in (("cpus", cpu.cpus), ("mems", cpu.mems)) if value]

    def _memory(self, memory: Memory) -> list[Write]:
        """runc's order: swap first when raising (memsw must stay >= limit), memory first when lowering."""
        if not (memory.limits_set() or memory.disable_oom_killer or memory.swappiness not in (None, -1)):
            return []
        path = self._target("memory", f"{_F}.memory")
        check_usage(memory, path, "memory.usage_in_bytes")
        limit, swap = memory.limit, memory.swap
        has_memsw = os.path.exists(os.path.join(path, _MEMSW))
        if limit == -1 and swap == 0 and has_memsw:
            swap = -1  # unlimited memory without a swap setting means unlimited swap too
        if swap and not has_memsw:
            if swap != -1:
                raise Unsupported(f"{_F}.memory.swap: this kernel has no swap accounting (no {_MEMSW})")
            swap = 0  # nothing to lift
        limit_file = "memory.limit_in_bytes"
        memory_writes = [Write(path, limit_file, str(limit), f"{_F}.memory.limit")] if limit else []
        swap_writes = [Write(path, _MEMSW, str(swap), f"{_F}.memory.swap")] if swap else []
        swap_first = limit and swap and (swap == -1 or read_int(path, limit_file) < swap)
        writes = swap_writes + memory_writes if swap_first else memory_writes + swap_writes
        if memory.reservation:
            writes.append(Write(path, "memory.soft_limit_in_bytes", str(memory.reservation),
                                f"{_F}.memory.reservation"))
        if memory.disable_oom_killer:
            writes.append(Write(path, "memory.oom_control", "1", f"{_F}.memory.disableOOMKiller"))
        if memory.swappiness not in (None, -1):
            writes.append(Write(path, "memory.swappiness", str(memory.swappiness), f"{_F}.memory.swappiness"))
        return writes

    def _cpu(self, cpu: Cpu) -> list[Write]:
        settings: list[tuple[str, str, int | None, int]] = [
            ("realtimePeriod", "cpu.rt_period_us", cpu.realtime_period or None, 0),
            ("realtimeRuntime", "cpu.rt_runtime_us", cpu.realtime_runtime or None, 0),
            ("shares", "cpu.shares", cpu.shares or None, 0),
            # A shorter period can be refused (EINVAL) until the new quota is in: repeated after it.
            ("period", "cpu.cfs_period_us", cpu.period or None, errno.EINVAL if cpu.quota else 0),
            ("quota", "cpu.cfs_quota_us", cpu.quota or None, 0),
            ("period", "cpu.cfs_period_us", (cpu.period or None) if cpu.quota else None, 0),
            ("burst", "cpu.cfs_burst_us", cpu.burst, 0),
            ("idle", "cpu.idle", cpu.idle, 0),
        ]
        return [Write(self._target("cpu", f"{_F}.cpu.{key}"), name, str(value), f"{_F}.cpu.{key}", tolerate)
                for key, name, value, tolerate in settings if value is not None]

    def _pids(self, resources: Resources) -> list[Write]:
        if not resources.pids_limit:
            return []
        field = f"{_F}.pids.limit"
        return [Write(self._target("pids", field), "pids.max", pids_max(resources.pids_limit), field)]

    def _blkio(self, block_io: BlockIO) -> list[Write]:
        field = f"{_F}.blockIO"
        if block_io == BlockIO():
            return []
        path = self._target("blkio", field)
        # Kernels without CFQ have only BFQ's weight files (runc's detectWeightFilenames).
        bfq = not os.path.exists(os.path.join(path, "blkio.weight")) and os.path.exists(
            os.path.join(path, "blkio.bfq.weight"))
        weight = "blkio.bfq.weight" if bfq else "blkio.weight"
        writes = []
        if block_io.weight:
            writes.append(Write(path, weight, str(block_io.weight), f"{field}.weight"))
        if block_io.leaf_weight:
            writes.append(Write(path, "blkio.leaf_weight", str(block_io.leaf_weight), f"{field}.leafWeight"))
        writes += [Write(path, f"{weight}_device", d.line(), f"{field}.weightDevice")
                   for d in block_io.weight_devices]
        writes += [Write(path, "blkio.leaf_weight_device", d.line(), f"{field}.weightDevice")
                   for d in block_io.leaf_weight_devices]
        writes += [Write(path, f"blkio.throttle.{kind}_device", d.line(), f"{field}.{_THROTTLE_FIELDS[kind]}")
                   for kind, d in block_io.throttles]
        return writes

    def _hugetlb(self, resources: Resources) -> list[Write]:
        field = f"{_F}.hugepageLimits"
        return [Write(self._target("hugetlb", field), f"hugetlb.{size}.limit_in_bytes", str(limit), field)
                for size, limit in resources.hugepage_limits]

    def _network(self, resources: Resources) -> list[Write]:
        field = f"{_F}.network"
        writes = []
        if resources.network_class_id is not None:
            writes.append(Write(self._target("net_cls", f"{field}.classID"), "net_cls.classid",
                                str(resources.network_class_id), f"{field}.classID"))
        writes += [Write(self._target("net_prio", f"{field}.priorities"), "net_prio.ifpriomap",
                         f"{name} {prio}", f"{field}.priorities")
                   for name, prio in resources.network_priorities]
        return writes

    def _set_devices(self, rules: tuple[DeviceRule, ...]) -> None:
        """Write only the difference from devices.list, then check the kernel reached the target (runc)."""
        field = f"{_F}.devices"
        path = self._target("devices", field)
        write_all([Write(path, name, line, field)
                   for name, line in v1_transition(read_file(path, "devices.list"), rules)])
        target, reached = emulate(rules), Emulator.from_list(read_file(path, "devices.list"))
        # An allow-all cgroup lists only "a *:* rwm", so only its mode can be compared.
        if reached.default_allow != target.default_allow or (not target.default_allow and reached != target):
            raise InternalError(f"{field}: the devices cgroup of {self.path} does not match the rules")

    # --- freezer --------------------------------------------------------------------------------------------

    def _can_freeze(self) -> bool:
        path = self._dirs.get("freezer")
        return path is not None and os.path.isdir(path)

    def freeze(self) -> None:
        """Retry until FROZEN: v1 can stay FREEZING while tasks fork; an occasional thaw helps (runc)."""
        path = self._target("freezer", "freeze")
        if not os.path.isdir(path):
            raise NotFound(f"cgroup {self.path} does not exist")
        deadline = time.monotonic() + FREEZE_TIMEOUT
        attempt = 0
        while time.monotonic() < deadline:
            if attempt % 50 == 49:
                write_file(path, "freezer.state", "THAWED")
                time.sleep(0.01)
            write_file(path, "freezer.state", "FROZEN")
            if read_file(path, "freezer.state") == "FROZEN":
                return
            attempt += 1
            time.sleep(0.001)
        write_file(path, "freezer.state", "THAWED")
        raise freeze_failed(self.path)

    def thaw(self) -> None:
        if self._can_freeze():
            write_file(self._dirs["freezer"], "freezer.state", "THAWED")

    def state(self) -> str:
        if not self._can_freeze():
            return THAWED
        path = self._dirs["freezer"]
        while (current := read_file(path, "freezer.state")) == "FREEZING":
            time.sleep(0.001)
        # FROZEN because an ancestor is frozen does not make this container paused (runc).
        return FROZEN if current == "FROZEN" and read_file(path, "freezer.self_freezing") == "1" else THAWED

    # --- reporting ------------------------------------------------------------------------------------------

    def oom_killed(self) -> bool:
        path = self._dirs.get("memory")
        control = read_keyed_or_empty(path, "memory.oom_control") if path else {}
        return control.get("oom_kill", 0) > 0 or control.get("under_oom", 0) > 0

    def stats(self) -> dict[str, Any]:
        if not self.exists():
            raise NotFound(f"cgroup {self.path} does not exist")
        out = empty_stats()
        if path := self._dirs.get("cpuacct"):
            _cpuacct_stats(path, out["cpu"]["usage"])
        if path := self._dirs.get("cpu"):
            out["cpu"]["throttling"] = throttling(read_keyed(path, "cpu.stat"), "throttled_time", 1)
        if path := self._dirs.get("memory"):
            _memory_stats(path, out["memory"])
        if path := self._dirs.get("pids"):
            out["pids"] = pids_stats(path)
        if path := self._dirs.get("blkio"):
            out["blkio"].update(_blkio_stats(path))
        if path := self._dirs.get("hugetlb"):
            out["hugetlb"] = {size: {"usage": read_int(path, f"hugetlb.{size}.usage_in_bytes"),
                                     "max": read_int(path, f"hugetlb.{size}.max_usage_in_bytes"),
                                     "failcnt": read_int(path, f"hugetlb.{size}.failcnt")}
                              for size in hugepage_sizes()
                              if os.path.exists(os.path.join(path, f"hugetlb.{size}.usage_in_bytes"))}
        return out


def _cpuacct_stats(path: str, usage: dict[str, Any]) -> None:
    """Totals in ns; cpuacct.stat counts USER_HZ ticks, converted like runc."""
    usage["total"] = read_int(path, "cpuacct.usage")
    usage["percpu"] = [int(v) for v in read_file(path, "cpuacct.usage_percpu").split()]
    ticks = read_keyed(path, "cpuacct.stat")
    hz = os.sysconf("SC_CLK_TCK")
    usage["user"] = ticks.get("user", 0) * 1_000_000_000 // hz
    usage["kernel"] = ticks.get("system", 0) * 1_000_000_000 // hz
    if os.path.exists(os.path.join(path, "cpuacct.usage_all")):
        rows = [line.split() for line in read_file(path, "cpuacct.usage_all").splitlines()[1:]]
        usage["percpu_user"] = [int(row[1]) for row in rows]
        usage["percpu_kernel"] = [int(row[2]) for row in rows]


def _memory_stats(path: str, memory: dict[str, Any]) -> None:
    memory["raw"] = read_keyed(path, "memory.stat")
    memory["cache"] = memory["raw"].get("cache", 0)
    for key, prefix in (("usage", "memory"), ("swap", "memory.memsw"), ("kernel", "memory.kmem"),
                        ("kernelTCP", "memory.kmem.tcp")):
        if os.path.exists(os.path.join(path, f"{prefix}.usage_in_bytes")):
            memory[key] = {"usage": read_int(path, f"{prefix}.usage_in_bytes"),
                           "max": read_int(path, f"{prefix}.max_usage_in_bytes"),
                           "failcnt": read_int(path, f"{prefix}.failcnt"),
                           "limit": read_int(path, f"{prefix}.limit_in_bytes")}


def _blkio_stats(path: str) -> dict[str, list[dict[str, Any]]]:
    for source in _BLKIO_SOURCES:
        if os.path.exists(os.path.join(path, source[0][0])):
            return {key: _blkio_entries(read_file(path, name)) for name, key in source
                    if os.path.exists(os.path.join(path, name))}
    return {}


def _blkio_entries(text: str) -> list[dict[str, Any]]:
    """Lines ``8:0 Read 4096`` or ``8:0 4096``; the ``Total`` line is skipped."""
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[0] == "Total":
            continue
        major, _, minor = fields[0].partition(":")
        entries.append({"major": int(major), "minor": int(minor), "op": fields[1] if len(fields) == 3 else "",
                        "value": int(fields[-1])})
    return entries
