"""The runtime-spec model: runc's ``spec``, validation with JSON paths, mount options, sysctls, features.

runc 1.1.5 is the oracle where it has an answer (``runc spec``, ``runc features``); the invalid configs are a
table so every category of ``validate`` is covered by one short line each.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from sampan.errors import InvalidArgument, NotFound
from sampan.runtime import spec as oci
from sampan.runtime.constants import (
    MOUNT_ATTR__ATIME,
    MOUNT_ATTR_NOATIME,
    MOUNT_ATTR_RDONLY,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_SHARED,
    MS_SLAVE,
)
from sampan.runtime.spec import MountOptions, SpecError

RUNC = shutil.which("runc") or "/usr/sbin/runc"
needs_runc = pytest.mark.skipif(not os.path.exists(RUNC), reason="runc is not installed")
DELETE = object()


def runc_json(tmp_path: Path, *args: str) -> Any:
    """Run the real runc in ``tmp_path`` and parse what it prints or writes."""
    proc = subprocess.run([RUNC, *args], cwd=tmp_path, capture_output=True, text=True, check=True, timeout=30)
    return json.loads((tmp_path / "config.json").read_text() if args[0] == "spec" else proc.stdout)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    (tmp_path / "rootfs").mkdir()
    return tmp_path


def patched(base: dict[str, Any], patches: dict[str, Any]) -> Any:
    """A copy of ``base`` with dotted paths set (numbers index arrays; "" is the whole document)."""
    doc = copy.deepcopy(base)
    for dotted, value in patches.items():
        if not dotted:
            return value
        *parents, last = [int(part) if part.isdigit() else part for part in dotted.split(".")]
        target = doc
        for part in parents:
            target = target[part]
        if value is DELETE:
            del target[last]
        elif isinstance(target, list) and last == len(target):
            target.append(value)
        else:
            target[last] = value
    return doc


def spec_error(spec: Any, bundle: Path, **kwargs: Any) -> str:
    with pytest.raises(SpecError) as info:
        oci.validate(spec, str(bundle), **kwargs)
    return str(info.value)


# --- runc spec ----------------------------------------------------------------------------------------------


@needs_runc
@pytest.mark.parametrize("rootless", [False, True])
def test_default_spec_is_what_runc_spec_writes(tmp_path: Path, rootless: bool) -> None:
    expected = runc_json(tmp_path, "spec", *(["--rootless"] if rootless else []))
    assert oci.default_spec(rootless=rootless) == expected
    # In runc's field order too: written with runc's indentation, the file is byte for byte runc's.
    written = (tmp_path / "config.json").read_text()
    assert json.dumps(oci.default_spec(rootless=rootless), indent="\t") == written


def test_default_spec_is_a_fresh_copy() -> None:
    oci.default_spec()["mounts"].clear()
    assert oci.default_spec()["mounts"]


@needs_runc
@pytest.mark.parametrize("rootless", [False, True])
def test_runc_default_spec_validates(bundle: Path, rootless: bool) -> None:
    oci.validate(runc_json(bundle, "spec", *(["--rootless"] if rootless else [])), str(bundle))


# --- invalid configs ----------------------------------------------------------------------------------------

NOFILE = {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}
NO_UTS = [{"type": t} for t in ("pid", "network", "ipc", "mount")]
NO_MOUNT_NS = [{"type": t} for t in ("pid", "network", "ipc", "uts")]

INVALID: list[tuple[dict[str, Any], str, str]] = [
    # the document and ociVersion
    ({"": []}, "(root)", "must be an object, not an array"),
    ({"ociVersion": DELETE}, "ociVersion", "must be set"),
    ({"ociVersion": "2.0.0"}, "ociVersion", 'unsupported version "2.0.0"'),
    ({"ociVersion": 1.0}, "ociVersion", "must be a string, not a number"),
    # root
    ({"root": DELETE}, "root", "must be set"),
    ({"root": "rootfs"}, "root", "must be an object, not a string"),
    ({"root.path": ""}, "root.path", "must not be empty"),
    ({"root.path": "missing"}, "root.path", "does not exist"),
    ({"root.path": "config.json"}, "root.path", "is not a directory"),
    ({"root.readonly": "yes"}, "root.readonly", "must be a boolean"),
    # process
    ({"process": DELETE}, "process", "must be set"),
    ({"process": ["sh"]}, "process", "must be an object"),
    ({"process.args": []}, "process.args", "must not be empty"),
    ({"process.args": "sh"}, "process.args", "must be an array, not a string"),
    ({"process.args.0": 1}, "process.args[0]", "must be a string, not an integer"),
    ({"process.cwd": "tmp"}, "process.cwd", 'must be an absolute path, not "tmp"'),
    ({"process.cwd": DELETE}, "process.cwd", "must be set"),
    ({"process.env.1": "TERM"}, "process.env[1]", 'must be NAME=VALUE, not "TERM"'),
    ({"process.env.0": "=x"}, "process.env[0]", "must be NAME=VALUE"),
    ({"process.env.0": "A=\0"}, "process.env[0]", "NUL"),
    ({"process.terminal": 1}, "process.terminal", "must be a boolean, not an integer"),
    ({"process.consoleSize": {"height": 10}}, "process.consoleSize.width", "must be set"),
    ({"process.user": [0, 0]}, "process.user", "must be an object"),
    ({"process.user.uid": -1}, "process.user.uid", "must be between 0 and 4294967295, not -1"),
    ({"process.user.gid": "0"}, "process.user.gid", "must be an integer, not a string"),
    ({"process.user.uid": True}, "process.user.uid", "must be an integer, not a boolean"),
    ({"process.user.additionalGids": [1, 2.5]}, "process.user.additionalGids[1]", "not a number"),
    ({"process.user.umask": 2**32}, "process.user.umask", "must be between"),
    ({"process.capabilities": ["CAP_KILL"]}, "process.capabilities", "must be an object"),
    ({"process.capabilities.bounding.1": "CAP_FOO"}, "process.capabilities.bounding[1]",
     'unknown capability "CAP_FOO"'),
    ({"process.capabilities.ambient": "CAP_KILL"}, "process.capabilities.ambient", "must be an array"),
    ({"process.capabilities.inheritable": ["kill"]}, "process.capabilities.inheritable[0]",
     "unknown capability"),
    ({"process.rlimits": {}}, "process.rlimits", "must be an array, not an object"),
    ({"process.rlimits.0.type": "RLIMIT_FOO"}, "process.rlimits[0].type", 'unknown rlimit type "RLIMIT_FOO"'),
    ({"process.rlimits.0.soft": 2048}, "process.rlimits[0].soft", "must not exceed hard (2048 > 1024)"),
    ({"process.rlimits.1": NOFILE}, "process.rlimits[1].type", 'duplicate rlimit type "RLIMIT_NOFILE"'),
    ({"process.rlimits.0.hard": DELETE}, "process.rlimits[0].hard", "must be set"),
    ({"process.rlimits.0.hard": -1}, "process.rlimits[0].hard", "must be between 0 and"),
    ({"process.noNewPrivileges": "true"}, "process.noNewPrivileges", "must be a boolean"),
    ({"process.oomScoreAdj": 1001}, "process.oomScoreAdj", "must be between -1000 and 1000, not 1001"),
    ({"process.ioPriority": {"class": "IOPRIO_CLASS_FOO"}}, "process.ioPriority.class",
     'unknown I/O priority class "IOPRIO_CLASS_FOO"'),
    ({"process.ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 8}}, "process.ioPriority.priority",
     "must be between 0 and 7"),
    ({"process.ioPriority": {"priority": 1}}, "process.ioPriority.class", "must be set"),
    ({"process.scheduler": {"policy": "SCHED_OTHER"}}, "process.scheduler", "not supported by sampan-runc"),
    ({"process.apparmorProfile": 5}, "process.apparmorProfile", "must be a string"),
    # hostname and domainname
    ({"hostname": 5}, "hostname", "must be a string"),
    ({"hostname": "x" * 65}, "hostname", "must be at most 64 bytes"),
    ({"linux.namespaces": NO_UTS}, "hostname", "without a private uts namespace"),
    ({"hostname": DELETE, "domainname": "example.org", "linux.namespaces": NO_UTS}, "domainname",
     "without a private uts namespace"),
    # mounts
    ({"mounts": {}}, "mounts", "must be an array, not an object"),
    ({"mounts.1": "/dev"}, "mounts[1]", "must be an object"),
    ({"mounts.1.destination": DELETE}, "mounts[1].destination", "must be set"),
    ({"mounts.1.destination": ""}, "mounts[1].destination", "must not be empty"),
    ({"mounts.1.options": "nosuid"}, "mounts[1].options", "must be an array"),
    ({"mounts.1.options.0": None}, "mounts[1].options[0]", "must be a string, not null"),
    ({"mounts.0.type": 1}, "mounts[0].type", "must be a string"),
    ({"mounts.0.uidMappings": [{"containerID": 0, "hostID": 0, "size": 1}]}, "mounts[0].uidMappings",
     "not supported by sampan-runc"),
    # hooks
    ({"hooks": []}, "hooks", "must be an object"),
    ({"hooks": {"prestart": [{"path": "hook"}]}}, "hooks.prestart[0].path", "must be an absolute path"),
    ({"hooks": {"poststop": [{"path": "/bin/true", "timeout": 0}]}}, "hooks.poststop[0].timeout",
     "must be between 1 and"),
    ({"hooks": {"createRuntime": [{"args": []}]}}, "hooks.createRuntime[0].path", "must be set"),
    ({"hooks": {"poststart": [{"path": "/bin/true", "env": ["X"]}]}}, "hooks.poststart[0].env[0]",
     "must be NAME=VALUE"),
    ({"hooks": {"startContainer": {"path": "/bin/true"}}}, "hooks.startContainer", "must be an array"),
    # annotations
    ({"annotations": ["a=b"]}, "annotations", "must be an object"),
    ({"annotations": {"a": 1}}, "annotations.a", "must be a string, not an integer"),
    ({"annotations": {"org.example.key": None}}, 'annotations["org.example.key"]',
     "must be a string, not null"),
    # linux.namespaces
    ({"linux": []}, "linux", "must be an object"),
    ({"linux.namespaces": {"type": "pid"}}, "linux.namespaces", "must be an array"),
    ({"linux.namespaces.2.type": "foo"}, "linux.namespaces[2].type", 'unknown namespace type "foo"'),
    ({"linux.namespaces.2": {}}, "linux.namespaces[2].type", "must be set"),
    ({"linux.namespaces.5": {"type": "pid"}}, "linux.namespaces[5].type", 'duplicate namespace type "pid"'),
    ({"linux.namespaces.1.path": "/nonexistent/ns"}, "linux.namespaces[1].path", "No such file or directory"),
    ({"linux.namespaces.1.path": "/proc/self/status"}, "linux.namespaces[1].path", "is not a namespace file"),
    ({"linux.namespaces.1.path": "ns/net"}, "linux.namespaces[1].path", "must be an absolute path"),
    # user and time namespaces
    ({"linux.uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}, "linux.uidMappings",
     "mappings need a user namespace"),
    ({"linux.namespaces.5": {"type": "user"}}, "linux.uidMappings",
     "must not be empty with a new user namespace"),
    ({"linux.gidMappings": [{"containerID": 0, "hostID": 0, "size": 0}]}, "linux.gidMappings[0].size",
     "must be between 1 and"),
    ({"linux.uidMappings": [{"containerID": 0, "size": 1}]}, "linux.uidMappings[0].hostID", "must be set"),
    ({"linux.timeOffsets": {"monotonic": {"secs": 1}}}, "linux.timeOffsets", "needs a new time namespace"),
    ({"linux.timeOffsets": {"realtime": {"secs": 1}}}, "linux.timeOffsets.realtime",
     'unknown clock "realtime"'),
    ({"linux.timeOffsets": {"boottime": {"nanosecs": 10**9}}}, "linux.timeOffsets.boottime.nanosecs",
     "must be between 0 and 999999999"),
    # sysctls (more in test_sysctl_rules)
    ({"linux.sysctl": {"kernel.panic": "1"}}, 'linux.sysctl["kernel.panic"]',
     'sysctl "kernel.panic" is not in a separate kernel namespace'),
    ({"linux.sysctl": {"net.ipv4.ip_forward": 1}}, 'linux.sysctl["net.ipv4.ip_forward"]', "must be a string"),
    ({"linux.sysctl": "net.ipv4.ip_forward=1"}, "linux.sysctl", "must be an object"),
    # masked and read-only paths, propagation
    ({"linux.maskedPaths.0": "proc/acpi"}, "linux.maskedPaths[0]", "must be an absolute path"),
    ({"linux.readonlyPaths": "/proc/sys"}, "linux.readonlyPaths", "must be an array"),
    ({"linux.namespaces": NO_MOUNT_NS}, "linux.maskedPaths", "needs a private mount namespace"),
    ({"linux.rootfsPropagation": "rprivatee"}, "linux.rootfsPropagation", 'unknown propagation "rprivatee"'),
    # linux.devices
    ({"linux.devices": [{"type": "x", "path": "/dev/x"}]}, "linux.devices[0].type",
     'unknown device type "x"'),
    ({"linux.devices": [{"type": "c", "path": "dev/fuse", "major": 10, "minor": 229}]},
     "linux.devices[0].path", "must be an absolute path"),
    ({"linux.devices": [{"type": "c", "path": "/dev/fuse", "major": 10}]}, "linux.devices[0].minor",
     'must be set for a device of type "c"'),
    ({"linux.devices": [{"type": "p", "path": "/dev/fifo", "fileMode": -1}]}, "linux.devices[0].fileMode",
     "must be between 0 and"),
    # linux.resources
    ({"linux.resources": []}, "linux.resources", "must be an object"),
    ({"linux.resources.devices.0.access": "rwx"}, "linux.resources.devices[0].access",
     'must be a combination of r, w and m, not "rwx"'),
    ({"linux.resources.devices.0.allow": DELETE}, "linux.resources.devices[0].allow", "must be set"),
    ({"linux.resources.devices.0.type": "p"}, "linux.resources.devices[0].type", 'unknown device type "p"'),
    ({"linux.resources.memory": {"limit": -2}}, "linux.resources.memory.limit", "must be between -1 and"),
    ({"linux.resources.memory": {"swappiness": 101}}, "linux.resources.memory.swappiness",
     "must be between 0 and 100"),
    ({"linux.resources.memory": {"disableOOMKiller": 1}}, "linux.resources.memory.disableOOMKiller",
     "must be a boolean"),
    ({"linux.resources.cpu": {"shares": "1024"}}, "linux.resources.cpu.shares", "must be an integer"),
    ({"linux.resources.cpu": {"cpus": [0, 1]}}, "linux.resources.cpu.cpus", "must be a string"),
    ({"linux.resources.pids": {"limit": "max"}}, "linux.resources.pids.limit", "must be an integer"),
    ({"linux.resources.pids": {}}, "linux.resources.pids.limit", "must be set"),
    ({"linux.resources.blockIO": {"weight": 5}}, "linux.resources.blockIO.weight",
     "must be between 10 and 1000"),
    ({"linux.resources.blockIO": {"weightDevice": [{"major": 8, "minor": 0, "weight": 1001}]}},
     "linux.resources.blockIO.weightDevice[0].weight", "must be between 10 and 1000"),
    ({"linux.resources.blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0}]}},
     "linux.resources.blockIO.throttleReadBpsDevice[0].rate", "must be set"),
    ({"linux.resources.hugepageLimits": [{"pageSize": "2MB"}]}, "linux.resources.hugepageLimits[0].limit",
     "must be set"),
    ({"linux.resources.network": {"priorities": [{"name": "eth0", "priority": -1}]}},
     "linux.resources.network.priorities[0].priority", "must be between 0 and"),
    ({"linux.resources.unified": {"memory.max": 1}}, 'linux.resources.unified["memory.max"]',
     "must be a string"),
    # seccomp (its content is another module's), intelRdt, personality
    ({"linux.seccomp": []}, "linux.seccomp", "must be an object"),
    ({"linux.intelRdt": {"closID": "../x"}}, "linux.intelRdt.closID", 'invalid CLOS ID "../x"'),
    ({"linux.personality": {"domain": "LINUX64"}}, "linux.personality.domain",
     'unknown personality domain "LINUX64"'),
    ({"linux.personality": {}}, "linux.personality.domain", "must be set"),
    ({"linux.personality": {"domain": "LINUX", "flags": "x"}}, "linux.personality.flags", "must be an array"),
]


@pytest.mark.parametrize("patches,path,message", INVALID, ids=[f"{p}:{m}" for _, p, m in INVALID])
def test_invalid_config_names_the_field(bundle: Path, patches: dict[str, Any], path: str,
                                        message: str) -> None:
    (bundle / "config.json").write_text("{}")
    error = spec_error(patched(oci.default_spec(), patches), bundle)
    assert error.startswith(f"{path}: "), error
    assert message in error


def test_invalid_table_is_broad() -> None:
    assert len(INVALID) >= 40


def test_spec_error_is_an_invalid_argument() -> None:
    error = SpecError("process.args", "must not be empty")
    assert isinstance(error, InvalidArgument)
    assert (error.path, error.message, str(error)) == ("process.args", "must not be empty",
                                                       "process.args: must not be empty")


def test_null_counts_as_absent(bundle: Path) -> None:
    """As in Go, where null decodes to the zero value (and an empty namespace path means a new namespace)."""
    nulls = {"hostname": None, "process.rlimits": None, "linux.sysctl": None, "linux.namespaces.0.path": ""}
    oci.validate(patched(oci.default_spec(), nulls), str(bundle))


def test_unknown_fields_are_allowed(bundle: Path) -> None:
    """The runtime-spec asks runtimes to ignore properties they do not know (forward compatibility)."""
    oci.validate(patched(oci.default_spec(), {"vm": {"hypervisor": {}}, "process.extra": 1}), str(bundle))


def test_relative_mount_destination_is_accepted_like_runc_1_1(bundle: Path) -> None:
    oci.validate(patched(oci.default_spec(), {"mounts.1.destination": "dev"}), str(bundle))


def test_absolute_rootfs_path(bundle: Path) -> None:
    oci.validate(patched(oci.default_spec(), {"root.path": str(bundle / "rootfs")}), "/nonexistent-bundle")


# --- hosts without a feature --------------------------------------------------------------------------------


@pytest.mark.parametrize("content,accepted", [("Y\n", True), ("N\n", False), (None, False)])
def test_apparmor_profile_needs_apparmor(bundle: Path, monkeypatch: pytest.MonkeyPatch, content: str | None,
                                         accepted: bool) -> None:
    parameter = bundle / "enabled"
    if content is not None:
        parameter.write_text(content)
    monkeypatch.setattr(oci, "_APPARMOR_ENABLED", str(parameter))
    spec = patched(oci.default_spec(), {"process.apparmorProfile": "docker-default"})
    assert oci.apparmor_enabled() is accepted
    if accepted:
        oci.validate(spec, str(bundle))
    else:
        assert spec_error(spec, bundle) == "process.apparmorProfile: apparmor is not enabled on this host"


@pytest.mark.parametrize("accepted", [True, False])
def test_selinux_label_needs_selinux(bundle: Path, monkeypatch: pytest.MonkeyPatch, accepted: bool) -> None:
    selinuxfs = bundle / "selinux"
    selinuxfs.mkdir()
    if accepted:
        (selinuxfs / "enforce").write_text("1")
    monkeypatch.setattr(oci, "_SELINUX_FS", str(selinuxfs))
    spec = patched(oci.default_spec(), {"process.selinuxLabel": "system_u:system_r:container_t:s0"})
    if accepted:
        oci.validate(spec, str(bundle))
    else:
        assert spec_error(spec, bundle) == "process.selinuxLabel: selinux is not enabled on this host"


def test_empty_profile_and_label_need_nothing(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oci, "_APPARMOR_ENABLED", str(bundle / "absent"))
    monkeypatch.setattr(oci, "_SELINUX_FS", str(bundle / "absent"))
    oci.validate(patched(oci.default_spec(), {"process.apparmorProfile": "", "process.selinuxLabel": ""}),
                 str(bundle))


@pytest.mark.parametrize("v2", [True, False])
def test_unified_resources_need_cgroup_v2(bundle: Path, monkeypatch: pytest.MonkeyPatch, v2: bool) -> None:
    cgroup_root = bundle / "cgroup"
    cgroup_root.mkdir()
    if v2:
        (cgroup_root / "cgroup.controllers").write_text("cpu memory pids\n")
    monkeypatch.setattr(oci, "_CGROUP_ROOT", str(cgroup_root))
    spec = patched(oci.default_spec(), {"linux.resources.unified": {"memory.high": "1G"}})
    if v2:
        oci.validate(spec, str(bundle))
    else:
        assert spec_error(spec, bundle) == "linux.resources.unified: unified resources need a cgroup v2 host"


def test_intel_rdt_schema_needs_resctrl(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oci, "_RESCTRL_INFO", str(bundle / "absent"))
    spec = patched(oci.default_spec(), {"linux.intelRdt": {"closID": "x", "memBwSchema": "MB:0=20"}})
    assert spec_error(spec, bundle) == "linux.intelRdt.memBwSchema: Intel RDT/MBA is not enabled on this host"
    (bundle / "info" / "MB").mkdir(parents=True)
    monkeypatch.setattr(oci, "_RESCTRL_INFO", str(bundle / "info"))
    oci.validate(spec, str(bundle))


# --- sysctls ------------------------------------------------------------------------------------------------

ALL_NS = ["pid", "network", "ipc", "uts", "mount"]
SYSCTL_RULES = [
    ("kernel.msgmax", ALL_NS, None),
    ("kernel.shm_rmid_forced", ALL_NS, None),
    ("fs.mqueue.msg_max", ALL_NS, None),
    ("net.ipv4.ip_forward", ALL_NS, None),
    ("net/ipv4/conf/all/forwarding", ALL_NS, None),
    ("kernel.domainname", ALL_NS, None),
    ("kernel.hostname", ALL_NS, None),
    ("kernel.sem", ["pid", "network", "uts", "mount"], "is not allowed in the host's ipc namespace"),
    ("fs.mqueue.queues_max", ["pid", "uts", "mount"], "is not allowed in the host's ipc namespace"),
    ("net.core.somaxconn", ["pid", "ipc", "uts", "mount"], "is not allowed in the host's network namespace"),
    ("kernel.domainname", ["pid", "network", "ipc", "mount"], "is not allowed in the host's uts namespace"),
    ("kernel.panic", ALL_NS, 'sysctl "kernel.panic" is not in a separate kernel namespace'),
    ("kernel/panic", ALL_NS, 'sysctl "kernel.panic" is not in a separate kernel namespace'),
    ("vm.overcommit_memory", ALL_NS, "is not in a separate kernel namespace"),
    ("fs.file-max", ALL_NS, "is not in a separate kernel namespace"),
    ("kernel.msgmax.x", ALL_NS, "is not in a separate kernel namespace"),
]


@pytest.mark.parametrize("name,namespaces,error", SYSCTL_RULES)
def test_sysctl_rules(bundle: Path, name: str, namespaces: list[str], error: str | None) -> None:
    spec = patched(oci.default_spec(), {"linux.sysctl": {name: "1"},
                                        "linux.namespaces": [{"type": t} for t in namespaces]})
    if namespaces == ["pid", "network", "ipc", "mount"]:
        del spec["hostname"]
    if error is None:
        oci.validate(spec, str(bundle))
    else:
        message = spec_error(spec, bundle)
        assert message.startswith(f"linux.sysctl[{json.dumps(name)}]: ")
        assert error in message


def test_net_sysctl_refused_in_the_joined_host_netns(bundle: Path) -> None:
    spec = patched(oci.default_spec(), {"linux.sysctl": {"net.ipv4.ip_forward": "1"},
                                        "linux.namespaces.1.path": "/proc/self/ns/net"})
    assert "is not allowed in the host's network namespace" in spec_error(spec, bundle)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare(1)")
def test_net_sysctl_allowed_in_another_joined_netns(bundle: Path) -> None:
    child = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        ns_path = f"/proc/{child.pid}/ns/net"
        deadline = time.monotonic() + 10
        while os.stat(ns_path).st_ino == os.stat("/proc/self/ns/net").st_ino:
            assert time.monotonic() < deadline, "unshare did not create a network namespace"
            time.sleep(0.01)
        spec = patched(oci.default_spec(), {"linux.sysctl": {"net.ipv4.ip_forward": "1"},
                                            "linux.namespaces.1.path": ns_path})
        oci.validate(spec, str(bundle))
    finally:
        child.kill()
        child.wait()


# --- namespaces that are valid ------------------------------------------------------------------------------


def test_all_eight_namespaces_with_mappings_and_time_offsets(bundle: Path) -> None:
    spec = patched(oci.default_spec(rootless=True), {
        "linux.namespaces": [{"type": t} for t in ("pid", "network", "mount", "ipc", "uts", "user", "cgroup",
                                                   "time")],
        "linux.timeOffsets": {"monotonic": {"secs": 3600}, "boottime": {"secs": -5, "nanosecs": 1}},
    })
    oci.validate(spec, str(bundle))


def test_joined_user_namespace_needs_no_mappings(bundle: Path) -> None:
    spec = oci.default_spec(rootless=True)  # its user namespace comes last, after a cgroup one on a v2 host
    user = len(spec["linux"]["namespaces"]) - 1
    assert spec["linux"]["namespaces"][user] == {"type": "user"}
    spec = patched(spec, {f"linux.namespaces.{user}.path": "/proc/self/ns/user"})
    del spec["linux"]["uidMappings"], spec["linux"]["gidMappings"]
    oci.validate(spec, str(bundle))


def test_time_offsets_refused_with_a_joined_time_namespace(bundle: Path) -> None:
    spec = patched(oci.default_spec(), {"linux.namespaces.5": {"type": "time", "path": "/proc/self/ns/time"},
                                        "linux.timeOffsets": {"monotonic": {"secs": 1}}})
    assert spec_error(spec, bundle).startswith("linux.timeOffsets: needs a new time namespace")


# --- exec's process.json ------------------------------------------------------------------------------------


@pytest.mark.parametrize("process,error", [
    ({"args": ["sh"], "cwd": "/", "env": ["A=b"], "user": {"uid": 1000, "gid": 1000}}, None),
    ({"args": [], "cwd": "/"}, "process.args: must not be empty"),
    ({"args": ["sh"]}, "process.cwd: must be set"),
    ({"args": ["sh"], "cwd": "/", "user": {"uid": "0"}},
     "process.user.uid: must be an integer, not a string"),
    ({"args": ["sh"], "cwd": "/", "capabilities": {"effective": ["CAP_NOPE"]}},
     'process.capabilities.effective[0]: unknown capability "CAP_NOPE"'),
    (["sh"], "process: must be an object, not an array"),
    (None, "process: must be set"),
])
def test_exec_process_json(tmp_path: Path, process: Any, error: str | None) -> None:
    """Only the process is checked: exec needs no rootfs, namespaces or ociVersion of its own."""
    if error is None:
        oci.validate({"process": process}, "", for_exec=True)
    else:
        assert spec_error({"process": process}, tmp_path, for_exec=True) == error


# --- mount options ------------------------------------------------------------------------------------------

NOSUID_NOEXEC_NODEV = MS_NOSUID | MS_NOEXEC | MS_NODEV


@pytest.mark.parametrize("options,expected", [
    ([], MountOptions(0, 0, [], "", 0, 0, False)),
    (["nosuid", "noexec", "nodev", "ro"], MountOptions(NOSUID_NOEXEC_NODEV | MS_RDONLY, 0, [], "", 0, 0,
                                                       False)),
    (["ro", "rw"], MountOptions(0, MS_RDONLY, [], "", 0, 0, False)),
    (["rw", "ro"], MountOptions(MS_RDONLY, 0, [], "", 0, 0, False)),
    (["rbind", "rprivate"], MountOptions(MS_BIND | MS_REC, 0, [MS_PRIVATE | MS_REC], "", 0, 0, False)),
    (["shared", "slave"], MountOptions(0, 0, [MS_SHARED, MS_SLAVE], "", 0, 0, False)),
    (["nosuid", "mode=755", "size=65536k"], MountOptions(MS_NOSUID, 0, [], "mode=755,size=65536k", 0, 0,
                                                         False)),
    (["defaults"], MountOptions(0, 0, [], "", 0, 0, False)),
    (["acl", "user_xattr"], MountOptions(0, 0, [], "acl,user_xattr", 0, 0, False)),
    (["rro", "rnoatime"], MountOptions(0, 0, [], "", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOATIME,
                                       MOUNT_ATTR__ATIME, False)),
    (["rrelatime"], MountOptions(0, 0, [], "", 0, MOUNT_ATTR__ATIME, False)),
    (["rrw", "ratime"], MountOptions(0, 0, [], "", 0, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOATIME, False)),
    (["tmpcopyup", "mode=1777"], MountOptions(0, 0, [], "mode=1777", 0, 0, True)),
])
def test_parse_mount_options(options: list[str], expected: MountOptions) -> None:
    assert oci.parse_mount_options(options) == expected


# --- features -----------------------------------------------------------------------------------------------


@needs_runc
def test_features_has_runc_features_shape(tmp_path: Path) -> None:
    runc = runc_json(tmp_path, "features")
    ours = oci.features()
    assert ours.keys() == runc.keys()
    assert ours["linux"].keys() == runc["linux"].keys()
    assert ours["linux"]["cgroup"].keys() == runc["linux"]["cgroup"].keys()
    assert ours["hooks"] == runc["hooks"]
    assert ours["linux"]["capabilities"] == runc["linux"]["capabilities"]
    assert ours["linux"]["namespaces"] == sorted([*runc["linux"]["namespaces"], "time"])
    assert set(ours["mountOptions"]) == set(runc["mountOptions"]) - {"acl", "noacl"}
    assert ours["mountOptions"] == sorted(ours["mountOptions"])


def test_features_versions_and_seccomp_placeholder() -> None:
    ours = oci.features()
    assert (ours["ociVersionMin"], ours["ociVersionMax"]) == ("1.0.0", "1.2.0")
    assert ours["linux"]["seccomp"] == {"enabled": False}
    report = {"enabled": True, "actions": ["SCMP_ACT_ALLOW"], "operators": ["SCMP_CMP_EQ"], "archs": []}
    assert oci.features(report)["linux"]["seccomp"] == report
    assert ours["linux"]["apparmor"] == {"enabled": oci.apparmor_enabled()}
    assert ours["linux"]["selinux"] == {"enabled": oci.selinux_enabled()}
    assert all(isinstance(v, str) for v in ours["annotations"].values())
    json.dumps(ours)


def test_features_capabilities_follow_the_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    last_cap = tmp_path / "cap_last_cap"
    last_cap.write_text("37\n")
    monkeypatch.setattr(oci, "_CAP_LAST_CAP", str(last_cap))
    assert oci.features()["linux"]["capabilities"][-1] == "CAP_AUDIT_READ"


# --- load ---------------------------------------------------------------------------------------------------


def test_load_returns_the_config_as_written(bundle: Path) -> None:
    spec = oci.default_spec()
    (bundle / "config.json").write_text(json.dumps(spec))
    assert oci.load(str(bundle)) == spec
    assert oci.rootfs_path(spec, str(bundle)) == str(bundle / "rootfs")
    assert oci.rootfs_path({"root": {"path": "/srv/../rootfs/"}}, str(bundle)) == "/rootfs"


def test_load_missing_bundle(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no such directory"):
        oci.load(str(tmp_path / "absent"))


def test_load_missing_config(bundle: Path) -> None:
    with pytest.raises(NotFound) as info:
        oci.load(str(bundle))
    assert str(info.value) == f"bundle {bundle}: config.json not found"


def test_load_missing_rootfs(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(oci.default_spec()))
    with pytest.raises(SpecError) as info:
        oci.load(str(tmp_path))
    assert str(info.value) == f"root.path: rootfs {tmp_path / 'rootfs'} does not exist"


@pytest.mark.parametrize("text,where", [
    ('{\n  "ociVersion": "1.0.2",\n  "root" {}\n}', "line 3, column 10"),
    ('{"ociVersion": "1.0.2"', "line 1, column 23"),
    ("", "line 1, column 1"),
    ('{"process": {"oomScoreAdj": NaN}}', "NaN is not valid JSON"),
])
def test_load_invalid_json(bundle: Path, text: str, where: str) -> None:
    (bundle / "config.json").write_text(text)
    with pytest.raises(InvalidArgument) as info:
        oci.load(str(bundle))
    assert not isinstance(info.value, SpecError)
    assert str(info.value).startswith(f"bundle {bundle}: config.json: invalid JSON")
    assert where in str(info.value)


def test_load_not_utf8(bundle: Path) -> None:
    (bundle / "config.json").write_bytes(b'{"hostname": "\xff"}')
    with pytest.raises(InvalidArgument, match="invalid JSON"):
        oci.load(str(bundle))
