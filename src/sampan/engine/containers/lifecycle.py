"""Starting and stopping: start, stop, restart, kill, pause, unpause, wait, update, rename.

The monitor records exits, so ``stop`` and ``kill`` only signal and then wait for the record to say the container
is no longer running. A per-container lock keeps two verbs from racing on one container (two starts, a start and
an rm); it is a file lock, so a killed CLI never leaves it held.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sampan.engine import events
from sampan.engine.containers import model, monitor, runtimes
from sampan.engine.containers.model import ACTIVE
from sampan.engine.containers.runtimes import driver_of
from sampan.engine.context import Engine
from sampan.engine.specgen import parse_signal
from sampan.errors import Conflict, InvalidArgument, NotFound
from sampan.store import containers as records
from sampan.store.containers import ContainerRecord
from sampan.store.locks import FileLock

DEFAULT_STOP_TIMEOUT = 10
_POLL_S = 0.01


@contextmanager
def locked(engine: Engine, container_id: str) -> Iterator[None]:
    with FileLock(engine.layout.locks, "container:" + container_id):
        yield


def start(engine: Engine, name: str, attach: dict[str, bool] | None = None, *, wait_for_host: bool = True
          ) -> tuple[ContainerRecord, socket.socket | None]:
    """Start a created or exited container under a new monitor; with ``attach``, also return the attached
    client socket. Starting a running container does nothing (Docker). ``wait_for_host``: see
    ``monitor.spawn``."""
    record = model.lookup(engine, name)
    with locked(engine, record.id):
        record = model.current(engine, records.get(engine.db.conn, record.id) or record)
        if record.status == "paused":
            raise Conflict("cannot start a paused container, try unpause instead")
        if record.status in ACTIVE:
            return record, None
        if record.status == "removing":
            raise Conflict(f"container {record.id[:12]} is marked for removal and cannot be started")
        with engine.db.transaction() as tx:
            records.update_state(tx, record.id, stopped_by_user=0)
        _, sock = monitor.spawn(engine, record, attach, wait_for_host=wait_for_host)
    events.record(engine, "container", "start", record.id, events.container_attributes(record))
    return model.lookup(engine, record.id), sock


def _stop_signal(record: ContainerRecord, given: str | None) -> int:
    return parse_signal(given or record.config.get("StopSignal") or "SIGTERM")


def wait_not_running(engine: Engine, container_id: str, timeout: float | None) -> ContainerRecord | None:
    """Poll the record until the container is no longer active; None on timeout (or the record is gone)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = _POLL_S
    while True:
        record = records.get(engine.db.conn, container_id)
        if record is None:
            return None
        record = model.current(engine, record)
        if record.status not in ACTIVE:
            return record
        if deadline is not None and time.monotonic() >= deadline:
            return None
        time.sleep(delay)
        delay = min(delay * 1.5, 0.1)


def stop(engine: Engine, name: str, *, timeout: int | None = None, sig: str | None = None) -> ContainerRecord:
    """Docker's stop: the stop signal, then SIGKILL after ``timeout`` seconds (the container's StopTimeout,
    default 10; -1 waits forever). No restart policy restarts a stopped container."""
    record = model.lookup(engine, name)
    with engine.db.transaction() as tx:
        records.update_state(tx, record.id, stopped_by_user=1)
    if record.status not in ACTIVE:
        return record
    if timeout is None:
        timeout = int(record.config.get("StopTimeout", DEFAULT_STOP_TIMEOUT))
    driver = driver_of(engine, record)
    attributes = events.container_attributes(record)
    if record.status == "paused":
        _signal(driver, record, signal.SIGKILL, all=True)
    elif record.status == "running":
        number = _stop_signal(record, sig)
        events.record(engine, "container", "kill", record.id, {**attributes, "signal": str(number)})
        _signal(driver, record, number)
        if timeout < 0:
            done = wait_not_running(engine, record.id, None)
        else:
            done = wait_not_running(engine, record.id, timeout)
        if done is not None:
            events.record(engine, "container", "stop", record.id, attributes)
            return done
        events.record(engine, "container", "kill", record.id, {**attributes, "signal": str(int(signal.SIGKILL))})
        _signal(driver, record, signal.SIGKILL, all=True)
    done = wait_not_running(engine, record.id, None) or record
    events.record(engine, "container", "stop", record.id, attributes)
    return done


def _signal(driver: runtimes.Driver, record: ContainerRecord, sig: int, all: bool = False) -> None:
    try:
        driver.kill(record.id, sig, all=all)
    except (Conflict, NotFound, runtimes.RuntimeError_):
        pass  # it exited meanwhile


def kill(engine: Engine, name: str, sig: str = "SIGKILL") -> ContainerRecord:
    record = model.lookup(engine, name)
    number = parse_signal(sig)
    if record.status not in ("running", "paused"):
        raise Conflict(f"Cannot kill container: {name}: Container {record.id} is not running")
    if number == signal.SIGKILL:
        with engine.db.transaction() as tx:
            records.update_state(tx, record.id, stopped_by_user=1)
    driver_of(engine, record).kill(record.id, number, all=number == signal.SIGKILL)
    events.record(engine, "container", "kill", record.id, events.container_attributes(record, signal=str(number)))
    return record


def restart(engine: Engine, name: str, *, timeout: int | None = None, sig: str | None = None) -> ContainerRecord:
    stop(engine, name, timeout=timeout, sig=sig)
    record = start(engine, name)[0]
    events.record(engine, "container", "restart", record.id, events.container_attributes(record))
    return record


def pause(engine: Engine, name: str) -> None:
    record = model.lookup(engine, name)
    if record.status == "paused":
        raise Conflict(f"Container {record.id} is already paused")
    if record.status != "running":
        raise Conflict(f"Container {record.id} is not running")
    driver_of(engine, record).pause(record.id)
    with engine.db.transaction() as tx:
        records.update_state(tx, record.id, status="paused")
    events.record(engine, "container", "pause", record.id, events.container_attributes(record))


def unpause(engine: Engine, name: str) -> None:
    record = model.lookup(engine, name)
    if record.status != "paused":
        raise Conflict(f"Container {record.id} is not paused")
    driver_of(engine, record).resume(record.id)
    with engine.db.transaction() as tx:
        records.update_state(tx, record.id, status="running")
    events.record(engine, "container", "unpause", record.id, events.container_attributes(record))


def wait(engine: Engine, name: str, condition: str = "not-running") -> int:
    """``docker wait``: block until the container stops; its exit status."""
    record = model.lookup(engine, name)
    if condition not in ("not-running", "next-exit", "removed"):
        raise InvalidArgument(f"invalid condition: {condition}")
    if condition == "next-exit":  # an exit recorded after now, however short the run that led to it
        while (now := records.get(engine.db.conn, record.id)) is not None and \
                (now.finished_at <= record.finished_at or model.current(engine, now).status in ACTIVE):
            time.sleep(0.05)
    done = wait_not_running(engine, record.id, None)
    if condition == "removed":
        while records.get(engine.db.conn, record.id) is not None:
            time.sleep(0.05)
    return done.exit_code if done is not None else record.exit_code


def rename(engine: Engine, name: str, new_name: str) -> None:
    record = model.lookup(engine, name)
    new = model.validate_name(new_name)
    if new == record.name:
        raise InvalidArgument("Renaming a container with the same name as its current name")
    with engine.db.transaction() as tx:
        other = records.name_taken(tx, new)
        if other is not None:
            raise Conflict(f'Conflict. The container name "/{new}" is already in use by container "{other}". '
                           "You have to remove (or rename) that container to be able to reuse that name.")
        records.update_config(tx, record.id, name=new)
    record.name = new
    events.record(engine, "container", "rename", record.id,
                  events.container_attributes(record, oldName="/" + name.lstrip("/")))


def update(engine: Engine, name: str, changes: dict[str, Any]) -> ContainerRecord:
    """``docker update``: resources (HostConfig names: Memory, MemorySwap, MemoryReservation, NanoCpus,
    CpuShares, CpusetCpus, PidsLimit) and RestartPolicy; applied to the live cgroup when running."""
    from sampan.engine.containers.create import OPTIONS_FILE, load_run_options, parse_restart
    from sampan.engine.specgen import HostInfo, _resources

    record = model.lookup(engine, name)
    where = model.places(engine, record.id)
    options = load_run_options(str(where.bundle / OPTIONS_FILE))
    host_config = dict(record.host_config)
    fields = {"Memory": "memory", "MemorySwap": "memory_swap", "MemoryReservation": "memory_reservation",
              "CpuShares": "cpu_shares", "CpusetCpus": "cpuset_cpus", "PidsLimit": "pids_limit"}
    for key, value in changes.items():
        if key == "RestartPolicy":
            policy = parse_restart(value)
            if policy[0] != "no" and host_config.get("AutoRemove"):
                raise InvalidArgument("Restart policy cannot be updated because AutoRemove is enabled for the "
                                      "container")
            host_config["RestartPolicy"] = {"Name": policy[0], "MaximumRetryCount": policy[1]}
        elif key == "NanoCpus":
            options.cpus = str(value / 1e9)
            host_config["NanoCpus"] = value
        elif key in fields:
            setattr(options, fields[key], value)
            host_config[key] = value
        else:
            raise InvalidArgument(f"cannot update {key}")
    resources = _resources(options, HostInfo.detect())  # validates as create does
    if options.memory and options.memory_swap not in (None, -1, "-1") and host_config.get("MemorySwap", 0) and \
            host_config["MemorySwap"] < host_config.get("Memory", 0):
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
    if record.status in ("running", "paused"):
        driver_of(engine, record).update(record.id, resources)
    (where.bundle / OPTIONS_FILE).write_text(json.dumps(dataclasses.asdict(options)))
    with engine.db.transaction() as tx:
        records.update_config(tx, record.id, host_config=host_config)
    events.record(engine, "container", "update", record.id, events.container_attributes(record))
    return model.lookup(engine, record.id)
