"""sampan.engine.specgen: the OCI spec of a ``docker run``, compared with the config.json real dockerd writes.

A private dockerd (tests/specgen_docker.py) has a "capture" runtime that saves the config.json of each
``docker run`` and fails, so nothing runs. For each flag set the test builds the spec with ``build_spec`` for
the same image, options and container ID, and compares every field that matters. The known, deliberate
differences (see the module docstring of specgen) are normalised in one place, ``_docker_view``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sampan.engine.specgen import (
    MASKED_PATHS,
    HostInfo,
    RunOptions,
    build_spec,
    lookup_groups,
    lookup_user,
    merge_tmpfs_options,
    parse_signal,
    resolve_groups,
    resolve_user,
)
from sampan.errors import InvalidArgument, NotFound, SampanError
from sampan.runtime.constants import CAPABILITIES
from sampan.runtime.spec import validate

sys.path.insert(0, str(Path(__file__).parent))
from specgen_docker import GROUP, PASSWD, CaptureDocker

INIT = shutil.which("docker-init") or "/usr/bin/docker-init"
SECCOMP_PROFILE = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
    "syscalls": [
        {"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
        {"name": "personality", "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"]}},
        {"names": ["bpf"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["chown"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_CHOWN"]}},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
         "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
        {"names": ["s390_pci_mmio_read"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["s390x"]}},
    ],
}
RICH_IMAGE = ['ENTRYPOINT ["/bin/ep", "x"]', 'CMD ["c1", "c2"]', "ENV PATH=/opt/bin:/bin FOO=img BAR=img",
              "WORKDIR /home/alice/", "USER alice"]


# --- fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The image's passwd/group as a local rootfs (for the lookups), a volume directory and a seccomp file."""
    base = tmp_path_factory.mktemp("specgen")
    rootfs = base / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "passwd").write_text(PASSWD)
    (rootfs / "etc" / "group").write_text(GROUP)
    (base / "vol").mkdir()
    (base / "seccomp.json").write_text(json.dumps(SECCOMP_PROFILE))
    return {"rootfs": rootfs, "vol": base / "vol", "seccomp": base / "seccomp.json"}


@pytest.fixture(scope="module")
def dockerd() -> Iterator[dict[str, Any]]:
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        pytest.skip("dockerd/docker are not installed")
    if Path("/sys/class/net/docker0").exists():
        pytest.skip("a docker0 bridge exists: a private dockerd with --bridge none would delete it")
    capture = CaptureDocker(Path(tempfile.mkdtemp(prefix="sampan-specgen-")))
    try:
        try:
            capture.wait_ready()
        except RuntimeError as e:
            pytest.skip(str(e))
        images = {"plain": capture.import_image("specgen-plain:1", ['CMD ["sh"]']),
                  "rich": capture.import_image("specgen-rich:1", RICH_IMAGE),
                  "bare": capture.import_image("specgen-bare:1", [])}
        yield {"docker": capture, "images": images}
    finally:
        capture.close()


# --- comparing specs ----------------------------------------------------------------------------------------

_DEFAULT_DESTINATIONS = {"/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue",
                         "/sbin/docker-init"}
_NEWER_CAPS = {"CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"}  # Docker 20.10 predates them
_NEWER_MASKED = {"/proc/interrupts", "/sys/devices/virtual/powercap"}


def _mounts_view(mounts: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Docker's defaults in their order, then the container's mounts in depth order (Docker walks a Go map for
    volumes, so their order within one depth is not fixed)."""
    def row(m: dict[str, Any]) -> tuple[Any, ...]:
        return (m["destination"], m["type"], m["source"], tuple(m.get("options") or ()))

    head = [m for m in mounts if m["destination"] in _DEFAULT_DESTINATIONS
            or (m["destination"] == "/dev/shm" and m["source"] == "shm")]
    tail = [m for m in mounts if m not in head]
    depths = [m["destination"].rstrip("/").count("/") for m in tail]
    assert depths == sorted(depths), f"mounts not in depth order: {[m['destination'] for m in tail]}"
    return [row(m) for m in head] + sorted(row(m) for m in tail)


def _essential(spec: dict[str, Any]) -> dict[str, Any]:
    process, linux = spec["process"], spec["linux"]
    gids = process["user"].get("additionalGids") or []
    return {
        "args": process["args"],
        "env": sorted(process["env"]),
        "cwd": process["cwd"],
        "user": (process["user"]["uid"], process["user"]["gid"], gids[:1], sorted(gids[1:])),
        "terminal": process.get("terminal", False),
        "capabilities": process["capabilities"],
        "rlimits": sorted(process.get("rlimits") or [], key=lambda r: r["type"]),
        "noNewPrivileges": process.get("noNewPrivileges", False),
        "oomScoreAdj": process.get("oomScoreAdj"),
        "root.readonly": spec["root"].get("readonly", False),
        "hostname": spec.get("hostname"),
        "mounts": _mounts_view(spec["mounts"]),
        "resources": {k: v for k, v in linux["resources"].items()
                      if k in ("memory", "cpu", "pids", "devices", "blockIO")},
        "cgroupsPath": linux["cgroupsPath"],
        "namespaces": linux["namespaces"],
        "devices": linux.get("devices") or [],
        "maskedPaths": linux.get("maskedPaths") or [],
        "readonlyPaths": linux.get("readonlyPaths") or [],
        "sysctl": linux.get("sysctl") or {},
        "seccomp": linux.get("seccomp"),
        "annotations": spec.get("annotations") or {},
    }


def _docker_view(docker: dict[str, Any], ours: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two specs' essentials with the deliberate differences normalised away (and each one checked)."""
    d, o = _essential(docker), _essential(copy.deepcopy(ours))
    # Capabilities that Docker 20.10 does not know: sampan grants them where Docker grants "all".
    for name, caps in o["capabilities"].items():
        extra = [c for c in caps if c in _NEWER_CAPS]
        if extra:
            assert not _NEWER_CAPS & set(d["capabilities"].get(name, []))
            o["capabilities"][name] = [c for c in caps if c not in _NEWER_CAPS]
    # sampan masks what later Docker releases mask too.
    if o["maskedPaths"]:
        assert set(o["maskedPaths"]) - set(d["maskedPaths"]) == _NEWER_MASKED
        o["maskedPaths"] = [p for p in o["maskedPaths"] if p not in _NEWER_MASKED]
    # --network host: Docker joins its copy of the host's netns, sampan creates none.
    d["namespaces"] = [ns for ns in d["namespaces"]
                       if not (ns["type"] == "network" and ns.get("path", "").endswith("/netns/default"))]
    d["cgroupsPath"] = d["cgroupsPath"].replace("/docker/", "/sampan/", 1)
    if d["seccomp"] is not None and "defaultErrnoRet" not in d["seccomp"]:
        o["seccomp"].pop("defaultErrnoRet", None)
    return d, o


# --- golden comparison with dockerd -------------------------------------------------------------------------

# (id, docker run flags, image, command, RunOptions fields). "{vol}" and "{seccomp}" are test files.
GOLDEN: list[tuple[str, list[str], str, list[str], dict[str, Any]]] = [
    ("plain", [], "plain", [], {}),
    ("env-workdir-user-host-ro", ["-e", "A=1", "-e", "B=two words", "-w", "/work", "-u", "1000:1000",
                                  "-h", "myhost", "--read-only"], "plain", ["echo", "hi"],
     {"env": ["A=1", "B=two words"], "workdir": "/work", "user": "1000:1000", "hostname": "myhost",
      "read_only": True, "command": ["echo", "hi"]}),
    ("resources", ["-m", "64m", "--memory-swap", "128m", "--memory-reservation", "32m", "--cpus", "0.5",
                   "--cpu-shares", "512", "--cpuset-cpus", "0", "--pids-limit", "50"], "plain", [],
     {"memory": "64m", "memory_swap": "128m", "memory_reservation": "32m", "cpus": 0.5, "cpu_shares": 512,
      "cpuset_cpus": "0", "pids_limit": 50}),
    ("memory-only", ["-m", "64m"], "plain", [], {"memory": 64 << 20}),
    ("swap-unlimited", ["-m", "64m", "--memory-swap", "-1", "--cpus", "1/2"], "plain", [],
     {"memory": "64m", "memory_swap": "-1", "cpus": "1/2"}),
    ("pids-unlimited", ["--pids-limit", "-1", "--cpu-shares", "1"], "plain", [],
     {"pids_limit": -1, "cpu_shares": 1}),
    ("oom-kill-disable", ["--oom-kill-disable", "-m", "32m"], "plain", [],
     {"oom_kill_disable": True, "memory": "32m"}),
    ("cap-add-drop", ["--cap-add", "SYS_ADMIN", "--cap-add", "chown", "--cap-drop", "NET_RAW", "--cap-drop",
                      "cap_mknod"], "plain", [],
     {"cap_add": ["SYS_ADMIN", "chown"], "cap_drop": ["NET_RAW", "cap_mknod"]}),
    ("cap-add-all", ["--cap-add", "ALL", "--cap-drop", "chown"], "plain", [],
     {"cap_add": ["ALL"], "cap_drop": ["chown"]}),
    ("cap-drop-all", ["--cap-drop", "ALL", "--cap-add", "net_admin", "--cap-add", "CHOWN"], "plain", [],
     {"cap_drop": ["ALL"], "cap_add": ["net_admin", "CHOWN"]}),
    ("cap-add-sys-admin-ptrace", ["--cap-add", "SYS_ADMIN", "--cap-add", "SYS_PTRACE"], "plain", [],
     {"cap_add": ["SYS_ADMIN", "SYS_PTRACE"]}),
    ("cap-add-profile-caps", ["--cap-add", "DAC_READ_SEARCH", "--cap-add", "SYS_BOOT", "--cap-add",
                              "SYS_MODULE", "--cap-add", "SYS_PACCT", "--cap-add", "SYS_RAWIO", "--cap-add",
                              "SYS_TIME", "--cap-add", "SYS_TTY_CONFIG", "--cap-add", "SYS_NICE", "--cap-add",
                              "SYSLOG", "--cap-drop", "SYS_CHROOT"], "plain", [],
     {"cap_add": ["DAC_READ_SEARCH", "SYS_BOOT", "SYS_MODULE", "SYS_PACCT", "SYS_RAWIO", "SYS_TIME",
                  "SYS_TTY_CONFIG", "SYS_NICE", "SYSLOG"], "cap_drop": ["SYS_CHROOT"]}),
    ("no-new-privileges", ["--security-opt", "no-new-privileges"], "plain", [],
     {"security_opt": ["no-new-privileges"]}),
    ("nnp-false-unconfined", ["--security-opt", "no-new-privileges=false", "--security-opt",
                              "seccomp=unconfined"], "plain", [],
     {"security_opt": ["no-new-privileges=false", "seccomp=unconfined"]}),
    ("seccomp-file", ["--security-opt", "seccomp={seccomp}"], "plain", [],
     {"security_opt": ["seccomp={seccomp}"]}),
    ("seccomp-file-caps", ["--security-opt", "seccomp={seccomp}", "--cap-add", "SYS_ADMIN", "--cap-drop",
                           "CHOWN"], "plain", [],
     {"security_opt": ["seccomp={seccomp}"], "cap_add": ["SYS_ADMIN"], "cap_drop": ["CHOWN"]}),
    ("sysctl", ["--sysctl", "net.ipv4.ip_forward=1"], "plain", [], {"sysctls": {"net.ipv4.ip_forward": "1"}}),
    ("sysctls-ulimits", ["--sysctl", "kernel.shmmax=1000000", "--sysctl", "fs.mqueue.msg_max=100", "--sysctl",
                         "net.ipv4.ip_unprivileged_port_start=1024", "--ulimit", "nproc=-1", "--ulimit",
                         "core=0", "--ulimit", "nofile=10:20", "--ulimit", "nofile=30:40"], "plain", [],
     {"sysctls": {"kernel.shmmax": "1000000", "fs.mqueue.msg_max": "100",
                  "net.ipv4.ip_unprivileged_port_start": "1024"},
      "ulimits": ["nproc=-1", "core=0", "nofile=10:20", "nofile=30:40"]}),
    ("ulimit", ["--ulimit", "nofile=1024:2048"], "plain", [], {"ulimits": ["nofile=1024:2048"]}),
    ("device", ["--device", "/dev/fuse"], "plain", [], {"devices": ["/dev/fuse"]}),
    ("devices", ["--device", "/dev/fuse:/dev/myfuse:r", "--device", "/dev/net", "--device",
                 "/dev/null:/dev/n2:rw"], "plain", [],
     {"devices": ["/dev/fuse:/dev/myfuse:r", "/dev/net", "/dev/null:/dev/n2:rw"]}),
    ("tmpfs", ["--tmpfs", "/run:size=64m"], "plain", [], {"tmpfs": {"/run": "size=64m"}}),
    ("shm-size", ["--shm-size", "128m"], "plain", [], {"shm_size": "128m"}),
    ("privileged", ["--privileged"], "plain", [], {"privileged": True}),
    ("privileged-ro-tmpfs-devices", ["--privileged", "--read-only", "--tmpfs", "/run", "--tmpfs",
                                     "/x:rw,exec,size=1k,mode=700,noexec", "--device", "/dev/fuse:/dev/f2",
                                     "--device", "/dev/null"], "plain", [],
     {"privileged": True, "read_only": True, "tmpfs": {"/run": "", "/x": "rw,exec,size=1k,mode=700,noexec"},
      "devices": ["/dev/fuse:/dev/f2", "/dev/null"]}),
    ("image-entrypoint", [], "rich", [], {}),
    ("image-entrypoint-args", [], "rich", ["a1"], {"command": ["a1"]}),
    ("entrypoint-reset-args", ["--entrypoint", ""], "rich", ["echo", "hi"],
     {"entrypoint": [], "command": ["echo", "hi"]}),
    ("entrypoint-set", ["--entrypoint", "/bin/other"], "rich", [], {"entrypoint": ["/bin/other"]}),
    ("entrypoint-set-args", ["--entrypoint", "/bin/other"], "rich", ["a", "b"],
     {"entrypoint": ["/bin/other"], "command": ["a", "b"]}),
    ("env-override", ["-e", "FOO=user", "-e", "BAR", "-e", "NEW=1", "-e", "NEW=2", "-u", "0", "-w",
                      "/x/../y/"], "rich", [],
     {"env": ["FOO=user", "BAR", "NEW=1", "NEW=2"], "user": "0", "workdir": "/x/../y/"}),
    ("bare-image", [], "bare", ["x"], {"command": ["x"]}),
    ("user-name", ["-u", "alice"], "plain", [], {"user": "alice"}),
    ("user-uid-in-passwd", ["-u", "1001"], "plain", [], {"user": "1001"}),
    ("user-uid-unknown", ["-u", "5000"], "plain", [], {"user": "5000"}),
    ("user-uid-gid-unknown", ["-u", "5000:5001"], "plain", [], {"user": "5000:5001"}),
    ("user-name-group", ["-u", "bob:video"], "plain", [], {"user": "bob:video"}),
    ("user-name-gid", ["-u", "alice:44"], "plain", [], {"user": "alice:44"}),
    ("user-cap-add", ["-u", "nobody", "--cap-add", "sys_admin"], "plain", [],
     {"user": "nobody", "cap_add": ["sys_admin"]}),
    ("group-add", ["--group-add", "audio", "--group-add", "4242", "--group-add", "video"], "plain", [],
     {"group_add": ["audio", "4242", "video"]}),
    ("tty", ["-t", "-e", "TERM=vt100", "-e", "HOSTNAME=mine"], "plain", [],
     {"tty": True, "env": ["TERM=vt100", "HOSTNAME=mine"]}),
    ("tty-plain", ["-t"], "plain", [], {"tty": True}),
    ("interactive", ["-i"], "plain", [], {"stdin_open": True}),
    ("network-none", ["--network", "none"], "plain", [], {"network_mode": "none"}),
    ("network-host", ["--network", "host"], "plain", [], {"network_mode": "host"}),
    ("pid-host", ["--pid", "host"], "plain", [], {"pid_mode": "host"}),
    ("ipc-host", ["--ipc", "host"], "plain", [], {"ipc_mode": "host"}),
    ("ipc-none", ["--ipc", "none"], "plain", [], {"ipc_mode": "none"}),
    ("uts-host", ["--uts", "host"], "plain", [], {"uts_mode": "host"}),
    ("domainname", ["--domainname", "example.org", "-h", "h1"], "plain", [],
     {"domainname": "example.org", "hostname": "h1"}),
    ("init", ["--init"], "plain", [], {"init": True}),
    ("init-pid-host-misc", ["--init", "--pid", "host", "--oom-score-adj", "100", "--cgroup-parent",
                            "/foo/bar", "--stop-signal", "SIGUSR1", "-l", "a=b"], "plain", [],
     {"init": True, "pid_mode": "host", "oom_score_adj": 100, "cgroup_parent": "/foo/bar",
      "stop_signal": "SIGUSR1", "labels": {"a": "b"}}),
    ("volumes", ["-v", "{vol}:/data:ro", "-v", "specgen-named:/vol", "-v", "{vol}:/a/b/c", "--mount",
                 "type=tmpfs,destination=/t,tmpfs-size=1m,tmpfs-mode=1770", "--mount",
                 "type=bind,source={vol},target=/m,readonly,bind-nonrecursive", "--read-only"], "plain", [],
     {"mounts": [("{vol}", "/data", ["ro", "rprivate"]), ("{named}", "/vol", []),
                 ("{vol}", "/a/b/c", ["rprivate"]), ("tmpfs", "/t", ["mode=1770", "size=1m"]),
                 ("{vol}", "/m", ["ro", "bind", "rprivate"])], "read_only": True}),
]


def _fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        for key, replacement in names.items():
            value = value.replace("{" + key + "}", replacement)
        return value
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    if isinstance(value, tuple):
        return tuple(_fill(v, names) for v in value)
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    return value


def _ours(image_config: dict[str, Any], options: RunOptions, cid: str, docker_spec: dict[str, Any],
          rootfs: Path, **kwargs: Any) -> dict[str, Any]:
    """build_spec as the engine will call it, with the hosts files Docker made (their content is the
    caller's business) and lookups in a copy of the image's passwd and group files."""
    hosts = {m["destination"]: m["source"] for m in docker_spec["mounts"]
             if m["destination"] in ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")}
    return build_spec(image_config, options, rootfs=docker_spec["root"]["path"], container_id=cid,
                      hosts_files=hosts, passwd_lookup=lambda user: lookup_user(str(rootfs), user),
                      group_lookup=lambda groups: lookup_groups(str(rootfs), groups), init_path=INIT,
                      **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("case", GOLDEN, ids=[case[0] for case in GOLDEN])
def test_matches_dockerd(case: tuple[str, list[str], str, list[str], dict[str, Any]],
                         dockerd: dict[str, Any], files: dict[str, Path]) -> None:
    name, flags, image, command, fields = case
    docker: CaptureDocker = dockerd["docker"]
    names = {"vol": str(files["vol"]), "seccomp": str(files["seccomp"])}
    cid, theirs = docker.capture(_fill(flags, names), f"specgen-{image}:1", command)
    # a named volume is the caller's to resolve: use the directory Docker gave it
    names["named"] = next((m["source"] for m in theirs["mounts"] if m["destination"] == "/vol"), "")
    options = RunOptions(**_fill(fields, names))
    ours = _ours(dockerd["images"][image], options, cid, theirs, files["rootfs"])
    expected, actual = _docker_view(theirs, ours)
    for key in expected:
        assert actual[key] == expected[key], f"{name}: {key} differs"
    assert actual == expected


@pytest.mark.slow
def test_process_details_match_dockerd_exactly(dockerd: dict[str, Any], files: dict[str, Path]) -> None:
    """Beyond the essentials: with a plain run, the env order, gids and the default mounts are Docker's."""
    cid, theirs = dockerd["docker"].capture(["-u", "alice", "-e", "Z=1"], "specgen-plain:1", [])
    ours = _ours(dockerd["images"]["plain"], RunOptions(user="alice", env=["Z=1"]), cid, theirs,
                 files["rootfs"])
    assert ours["process"]["env"] == theirs["process"]["env"]
    assert ours["process"]["user"] == theirs["process"]["user"]
    assert ours["mounts"] == theirs["mounts"]
    assert ours["ociVersion"] == theirs["ociVersion"]
    assert ours["linux"]["resources"] == theirs["linux"]["resources"]


# --- errors -------------------------------------------------------------------------------------------------

# (RunOptions fields, docker run flags or None, our message). With flags, Docker must print the same message.
ERRORS: list[tuple[dict[str, Any], list[str] | None, str]] = [
    ({"memory": "12q"}, None, """invalid argument "12q" for "-m, --memory" flag: invalid size: '12q'"""),
    ({"memory": "1m"}, ["-m", "1m"], "Minimum memory limit allowed is 6MB"),
    ({"memory_swap": "zz"}, ["--memory-swap", "zz"],
     """invalid argument "zz" for "--memory-swap" flag: invalid size: 'zz'"""),
    ({"memory_reservation": "zz"}, ["--memory-reservation", "zz"],
     """invalid argument "zz" for "--memory-reservation" flag: invalid size: 'zz'"""),
    ({"shm_size": "x"}, ["--shm-size", "x"],
     """invalid argument "x" for "--shm-size" flag: invalid size: 'x'"""),
    ({"shm_size": -1}, None, "SHM size can not be less than 0"),
    ({"memory": "64m", "memory_swap": "32m"}, ["-m", "64m", "--memory-swap", "32m"],
     "Minimum memoryswap limit should be larger than memory limit, see usage"),
    ({"memory_swap": "64m"}, ["--memory-swap", "64m"],
     "You should always set the Memory limit when using Memoryswap limit, see usage"),
    ({"memory": "16m", "memory_reservation": "32m"}, ["-m", "16m", "--memory-reservation", "32m"],
     "Minimum memory limit can not be less than memory reservation limit, see usage"),
    ({"memory_reservation": "1m"}, ["--memory-reservation", "1m"],
     "Minimum memory reservation allowed is 6MB"),
    ({"cpus": "x"}, ["--cpus", "x"],
     'invalid argument "x" for "--cpus" flag: failed to parse x as a rational number'),
    ({"cpus": "0.0000000001"}, ["--cpus", "0.0000000001"],
     'invalid argument "0.0000000001" for "--cpus" flag: value is too precise'),
    ({"cpu_shares": -5}, ["--cpu-shares", "-5"], "shares: invalid argument"),
    ({"cpuset_cpus": "1-x"}, ["--cpuset-cpus", "1-x"],
     "Invalid value 1-x for cpuset cpus: invalid format: 1-x"),
    ({"cpuset_cpus": "99"}, ["--cpuset-cpus", "99"],
     "Requested CPUs are not available - requested 99, available: "),
    ({"devices": ["a:b:c:d"]}, ["--device", "a:b:c:d"], "bad format for path: a:b:c:d"),
    ({"devices": [":/x"]}, ["--device", ":/x"], "bad format for path: :/x"),
    ({"devices": ["/dev/fuse:rel"]}, ["--device", "/dev/fuse:rel"], "rel is not an absolute path"),
    ({"devices": ["/dev/fuse:/x:rwx"]}, ["--device", "/dev/fuse:/x:rwx"], "bad mode specified: rwx"),
    ({"devices": ["/dev/nope"]}, ["--device", "/dev/nope"],
     'error gathering device information while adding custom device "/dev/nope": no such file or directory'),
    ({"devices": ["/etc/passwd"]}, ["--device", "/etc/passwd"],
     'error gathering device information while adding custom device "/etc/passwd": not a device node'),
    ({"ulimits": ["nofile"]}, ["--ulimit", "nofile"],
     'invalid argument "nofile" for "--ulimit" flag: invalid ulimit argument: nofile'),
    ({"ulimits": ["foo=1"]}, ["--ulimit", "foo=1"],
     'invalid argument "foo=1" for "--ulimit" flag: invalid ulimit type: foo'),
    ({"ulimits": ["nofile=x"]}, ["--ulimit", "nofile=x"],
     'invalid argument "nofile=x" for "--ulimit" flag: strconv.ParseInt: parsing "x": invalid syntax'),
    ({"ulimits": ["nofile=2:1"]}, ["--ulimit", "nofile=2:1"],
     ('invalid argument "nofile=2:1" for "--ulimit" flag: ulimit soft limit must be less than or equal to '
      "hard limit: 2 > 1")),
    ({"ulimits": ["nofile=1:2:3"]}, ["--ulimit", "nofile=1:2:3"],
     ('invalid argument "nofile=1:2:3" for "--ulimit" flag: too many limit value arguments - 1:2:3, can only '
      "have up to two, `soft[:hard]`")),
    ({"tmpfs": {"/x": "foo"}}, ["--tmpfs", "/x:foo"], 'invalid tmpfs option ["foo"]'),
    ({"tmpfs": {"/x": "foo=1"}}, ["--tmpfs", "/x:foo=1"], 'invalid tmpfs option ["foo" "1"]'),
    ({"tmpfs": {"x": ""}}, ["--tmpfs", "x"], "invalid mount path: 'x' mount path must be absolute"),
    ({"tmpfs": {"/": ""}}, ["--tmpfs", "/"], "invalid specification: destination can't be '/'"),
    ({"sysctls": {"kernel.foo": "1"}}, ["--sysctl", "kernel.foo=1"],
     """invalid argument "kernel.foo=1" for "--sysctl" flag: sysctl 'kernel.foo=1' is not allowed"""),
    ({"sysctls": {"net.ipv4.ip_forward": "1"}, "network_mode": "host"}, None,
     'sysctl "net.ipv4.ip_forward" not allowed in host network namespace'),
    ({"sysctls": {"kernel.shmmax": "1"}, "ipc_mode": "host"}, None,
     'sysctl "kernel.shmmax" is not allowed in the hosts ipc namespace'),
    ({"security_opt": ["foo"]}, ["--security-opt", "foo"], 'Invalid --security-opt: "foo"'),
    ({"security_opt": ["foo=bar"]}, ["--security-opt", "foo=bar"], 'invalid --security-opt 2: "foo=bar"'),
    ({"security_opt": ["no-new-privileges=maybe"]}, ["--security-opt", "no-new-privileges=maybe"],
     'invalid --security-opt 2: "no-new-privileges=maybe"'),
    ({"security_opt": ["seccomp=/nonexistent.json"]}, ["--security-opt", "seccomp=/nonexistent.json"],
     "opening seccomp profile (/nonexistent.json) failed: open /nonexistent.json: no such file or directory"),
    ({"user": "nope"}, ["-u", "nope"], "unable to find user nope: no matching entries in passwd file"),
    ({"user": "alice:nope"}, ["-u", "alice:nope"],
     "unable to find group nope: no matching entries in group file"),
    ({"user": "99999999999"}, ["-u", "99999999999"], "uids and gids must be in range 0-2147483647"),
    ({"group_add": ["nope"]}, ["--group-add", "nope"],
     "Unable to find group nope: no matching entries in group file"),
    ({"group_add": ["audio", "audio"]}, ["--group-add", "audio", "--group-add", "audio"],
     "Unable to find group audio: no matching entries in group file"),
    ({"oom_score_adj": 2000}, ["--oom-score-adj", "2000"],
     "Invalid value 2000, range for oom score adj is [-1000, 1000]"),
    ({"cap_add": ["foo"]}, ["--cap-add", "foo"], 'invalid CapAdd: unknown capability: "CAP_FOO"'),
    ({"uts_mode": "host", "hostname": "x"}, ["--uts", "host", "-h", "x"],
     "conflicting options: hostname and the UTS mode"),
    ({"workdir": "rel"}, ["-w", "rel"],
     "the working directory 'rel' is invalid, it needs to be an absolute path"),
    ({"pid_mode": "foo"}, ["--pid", "foo"], "--pid: invalid PID mode"),
    ({"uts_mode": "foo"}, ["--uts", "foo"], "--uts: invalid UTS mode"),
    ({"ipc_mode": "foo"}, ["--ipc", "foo"], "Invalid IPC mode: foo"),
    ({"stop_signal": "FOO"}, ["--stop-signal", "FOO"], "Invalid signal: FOO"),
    ({"entrypoint": []}, ["--entrypoint", ""], "No command specified"),
    ({"env": ["=x"]}, ["-e", "=x"], "invalid environment variable: =x"),
]


@pytest.mark.parametrize("fields,flags,message", ERRORS, ids=[m[:40] for _, _, m in ERRORS])
def test_errors(fields: dict[str, Any], flags: list[str] | None, message: str,
                files: dict[str, Path]) -> None:
    host = HostInfo.detect()
    rootfs = str(files["rootfs"])
    with pytest.raises(InvalidArgument) as raised:
        build_spec({"Cmd": ["sh"]}, RunOptions(**fields), rootfs=rootfs, container_id="c" * 64, host=host,
                   passwd_lookup=lambda user: lookup_user(rootfs, user),
                   group_lookup=lambda groups: lookup_groups(rootfs, groups))
    assert message in str(raised.value)
    if fields.get("devices") and not fields["devices"][0].startswith(("/dev/nope", "/etc/")):
        assert str(raised.value) == "invalid --device: " + message
    elif not message.endswith("available: "):
        assert str(raised.value) == message


@pytest.mark.slow
def test_docker_reports_the_same_errors(dockerd: dict[str, Any]) -> None:
    """Every message above with flags is Docker's own: docker CLI 28 and dockerd 20.10 print it for them."""
    docker: CaptureDocker = dockerd["docker"]
    for fields, flags, message in ERRORS:
        if flags is None:
            continue
        image = "specgen-bare:1" if fields.get("entrypoint") == [] else "specgen-plain:1"
        assert message in docker.run_error(flags, image, []), flags


def test_cpu_range_error_names_the_host_cpus() -> None:
    host = HostInfo(ncpu=2, cpuset_cpus="0-1", swap_limit=True, oom_kill_disable=True, kernel=(6, 1),
                    hostname="h", last_cap=40, default_sysctls=())
    for cpus in (3, "2.5", -1):
        with pytest.raises(InvalidArgument,
                           match=r"^Range of CPUs is from 0\.01 to 2\.00, as there are only 2 "
                                                  r"CPUs available$"):
            build_spec({"Cmd": ["sh"]}, RunOptions(cpus=cpus), rootfs="/r", container_id="c" * 64, host=host)


def test_host_without_swap_or_oom_control_drops_them_like_dockerd() -> None:
    host = HostInfo(ncpu=4, cpuset_cpus="0-3", swap_limit=False, oom_kill_disable=False, kernel=(6, 1),
                    hostname="h", last_cap=40, default_sysctls=())
    spec = build_spec({"Cmd": ["sh"]}, RunOptions(memory="64m", memory_swap="128m", oom_kill_disable=True),
                      rootfs="/r", container_id="c" * 64, host=host)
    assert spec["linux"]["resources"]["memory"] == {"limit": 64 << 20}
    assert "sysctl" not in spec["linux"]


# --- the spec is one sampan-runc accepts, and runs ----------------------------------------------------------

VALID_OPTIONS = [
    RunOptions(),
    RunOptions(privileged=True, read_only=True, tmpfs={"/run": "size=1m"}, init=True),
    RunOptions(user="alice", group_add=["video", "7"], cap_drop=["ALL"], cap_add=["NET_ADMIN"], tty=True,
               ulimits=["nofile=100:200"], security_opt=["no-new-privileges", "seccomp=unconfined"],
               sysctls={"net.ipv4.ip_forward": "1", "kernel.msgmax": "100"}, domainname="example.org"),
    RunOptions(network_mode="host", pid_mode="host", ipc_mode="host", uts_mode="host", memory="64m", cpus=1,
               pids_limit=10, devices=["/dev/fuse"], shm_size="1g", annotations={"org.example/a": "b"}),
    RunOptions(network_mode="none", ipc_mode="none", entrypoint=["/bin/true"], cgroup_parent="/test/parent"),
    RunOptions(pid_mode="container:/proc/self/ns/pid", ipc_mode="container:/proc/self/ns/ipc",
               network_mode="container:/proc/self/ns/net", hostname="joined"),
]


@pytest.mark.parametrize("options", VALID_OPTIONS, ids=range(len(VALID_OPTIONS)))
def test_spec_validates(options: RunOptions, files: dict[str, Path], tmp_path: Path) -> None:
    rootfs = files["rootfs"]
    spec = build_spec({"Cmd": ["sh"], "Env": ["A=1"]}, options, rootfs=str(rootfs), container_id="d" * 64,
                      passwd_lookup=lambda user: lookup_user(str(rootfs), user),
                      group_lookup=lambda groups: lookup_groups(str(rootfs), groups), init_path=INIT,
                      bundle=str(tmp_path))
    validate(json.loads(json.dumps(spec)),
             str(tmp_path))  # as a JSON round trip, the way sampan-runc reads it


def test_bundle_check_refuses_what_sampan_runc_would(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="root.path"):
        build_spec({"Cmd": ["sh"]}, RunOptions(), rootfs=str(tmp_path / "missing"), container_id="e" * 64,
                   bundle=str(tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["runc", "sampan-runc"])
def test_generated_spec_runs(runtime: str, tmp_path: Path) -> None:
    """The spec does what it says under runc and sampan-runc: user, groups, caps, hostname, env, limits."""
    import importlib

    runtime_conftest = importlib.import_module("runtime.conftest")  # tests/runtime/conftest.py
    runtimes, make_rootfs = runtime_conftest.RUNTIMES, runtime_conftest.make_rootfs

    base = Path(tempfile.mkdtemp(prefix="sampan-specgen-run-"))
    base.chmod(0o755)
    cid = f"specgen{uuid.uuid4().hex[:12]}"
    parent = f"/sampan-specgen-test-{uuid.uuid4().hex[:8]}"
    state = tmp_path / "state"
    try:
        rootfs = make_rootfs(base / "rootfs")
        script = ("id; hostname; echo $HOSTNAME $A; cat /proc/self/status | grep -E '^(CapEff|NoNewPrivs)'; "
                  "ulimit -n; touch /x 2>/dev/null || echo ro; "
                  "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || "
                  "cat /sys/fs/cgroup/pids.max")
        options = RunOptions(command=["sh", "-c", script], user="user", group_add=["root"], read_only=True,
                             ulimits=["nofile=256:512"], security_opt=["no-new-privileges"], pids_limit=42,
                             env=["A=from-options"], cgroup_parent=parent)
        spec = build_spec({"Env": ["A=from-image"]}, options, rootfs=str(rootfs), container_id=cid,
                          passwd_lookup=lambda user: lookup_user(str(rootfs), user),
                          group_lookup=lambda groups: lookup_groups(str(rootfs), groups), bundle=str(base))
        (base / "config.json").write_text(json.dumps(spec))
        proc = subprocess.run([runtimes[runtime], "--root", str(state), "run", "--bundle", str(base), cid],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                              check=False)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0].startswith("uid=1000(user) gid=1000(user) groups=0(root),1000(user)"), lines[0]
        assert lines[1:3] == [cid[:12], f"{cid[:12]} from-options"]
        assert lines[3].split() == ["CapEff:", "0000000000000000"]
        assert lines[4].split() == ["NoNewPrivs:", "1"]
        assert lines[5:8] == ["256", "ro", "42"]
    finally:
        subprocess.run([runtimes[runtime], "--root", str(state), "delete", "--force", cid],
                       capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)
        for controller in Path("/sys/fs/cgroup").iterdir():
            for leftover in (controller / parent.lstrip("/") / cid, controller / parent.lstrip("/"),
                             Path("/sys/fs/cgroup") / parent.lstrip("/") / cid,
                             Path("/sys/fs/cgroup") / parent.lstrip("/")):
                if leftover.is_dir():
                    try:
                        leftover.rmdir()
                    except OSError:
                        pass


# --- the pieces, without Docker -----------------------------------------------------------------------------

def _spec(**fields: Any) -> dict[str, Any]:
    return build_spec({"Cmd": ["sh"]}, RunOptions(**fields), rootfs="/r", container_id="f" * 64)


def test_defaults() -> None:
    spec = _spec()
    assert spec["process"]["capabilities"]["bounding"][:3] == ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID"]
    assert set(spec["process"]["capabilities"]) == {"bounding", "effective", "permitted"}
    assert "rlimits" not in spec["process"]
    assert spec["linux"]["maskedPaths"] == list(MASKED_PATHS)
    seccomp = spec["linux"]["seccomp"]  # Docker's default profile
    assert seccomp["defaultAction"] == "SCMP_ACT_ERRNO"
    assert len([name for rule in seccomp["syscalls"] for name in rule["names"]]) > 300
    assert spec["hostname"] == "f" * 12
    assert spec["linux"]["cgroupsPath"] == "/sampan/" + "f" * 64
    assert [m["destination"] for m in spec["mounts"]] == [
        "/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm"]
    assert spec["mounts"][-1]["options"][-1] == "size=67108864"


def _syscall_names(spec: dict[str, Any]) -> set[str]:
    return {name for rule in spec["linux"]["seccomp"]["syscalls"] for name in rule["names"]}


def test_default_seccomp_follows_caps_kernel_and_options() -> None:
    """The built-in profile is filtered like a profile file: capabilities, kernel version, architecture."""
    plain = _spec()
    assert not {"mount", "unshare", "setns", "reboot", "kcmp"} & _syscall_names(plain)
    assert {"read", "execve", "chroot", "ptrace"} <= _syscall_names(plain)
    clone3 = {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
    assert clone3 in plain["linux"]["seccomp"]["syscalls"]
    if os.uname().machine == "x86_64":
        assert plain["linux"]["seccomp"]["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86",
                                                               "SCMP_ARCH_X32"]
        assert {"arch_prctl", "modify_ldt"} <= _syscall_names(plain)
    admin = _spec(cap_add=["SYS_ADMIN", "SYS_PTRACE"], cap_drop=["SYS_CHROOT"])
    assert {"mount", "unshare", "setns", "clone3", "kcmp", "process_vm_readv"} <= _syscall_names(admin)
    assert "chroot" not in _syscall_names(admin)
    assert not any("errnoRet" in rule or "args" in rule and rule["names"] == ["clone"]
                   for rule in admin["linux"]["seccomp"]["syscalls"])
    host = HostInfo.detect()
    old_kernel = build_spec({"Cmd": ["sh"]}, RunOptions(), rootfs="/r", container_id="f" * 64,
                            host=dataclasses.replace(host, kernel=(4, 4)))
    assert "ptrace" not in _syscall_names(old_kernel)  # allowed without CAP_SYS_PTRACE from 4.8 on
    plain["linux"]["seccomp"]["syscalls"].clear()  # each spec has its own copy of the cached profile
    assert _spec()["linux"]["seccomp"] == _spec(cap_add=["CHOWN"])["linux"]["seccomp"]
    assert _spec()["linux"]["seccomp"]["syscalls"]


def test_no_seccomp_when_unconfined_privileged_or_unsupported() -> None:
    no_seccomp = dataclasses.replace(HostInfo.detect(), seccomp=False)
    for spec in (_spec(security_opt=["seccomp=unconfined"]), _spec(security_opt=["seccomp:unconfined"]),
                 _spec(privileged=True),
                 build_spec({"Cmd": ["sh"]}, RunOptions(), rootfs="/r", container_id="f" * 64,
                            host=no_seccomp)):
        assert "seccomp" not in spec["linux"]
    with pytest.raises(InvalidArgument, match="^seccomp is not enabled in your kernel, cannot run a custom"):
        build_spec({"Cmd": ["sh"]}, RunOptions(security_opt=["seccomp=/p.json"]), rootfs="/r",
                   container_id="f" * 64, host=no_seccomp)


def test_privileged_gets_every_kernel_capability() -> None:
    spec = _spec(privileged=True, cap_drop=["ALL"])
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    assert spec["process"]["capabilities"]["bounding"] == [c for c, n in CAPABILITIES.items() if n <= last]
    assert "maskedPaths" not in spec["linux"] and "readonlyPaths" not in spec["linux"]


def test_user_mount_replaces_defaults_and_dev_subtree() -> None:
    spec = _spec(mounts=[("/host/dev", "/dev", []), ("/host/shm", "/dev/shm", ["ro"])], read_only=True)
    destinations = [m["destination"] for m in spec["mounts"]]
    assert destinations == ["/proc", "/sys", "/sys/fs/cgroup", "/dev", "/dev/shm"]
    assert spec["mounts"][-2] == {"destination": "/dev", "type": "bind", "source": "/host/dev",
                                  "options": ["rbind"]}
    assert spec["mounts"][-1]["options"] == ["rbind", "ro"]
    assert spec["mounts"][1]["options"] == ["nosuid", "noexec", "nodev", "ro"]


def test_namespace_modes() -> None:
    spec = _spec(pid_mode="container:/proc/1/ns/pid", uts_mode="container:/proc/1/ns/uts", init=True)
    assert {"type": "pid", "path": "/proc/1/ns/pid"} in spec["linux"]["namespaces"]
    assert "hostname" not in spec  # the joined uts namespace keeps its own
    assert spec["process"]["args"] == ["sh"]  # no init outside a private pid namespace
    with pytest.raises(InvalidArgument):
        _spec(pid_mode="container:123")
    with pytest.raises(InvalidArgument, match="docker-init"):
        _spec(init=True)


@pytest.mark.parametrize("options,expected", [
    (["noexec", "nosuid", "nodev", "rprivate", "size=1k", "size=2k", "exec", "ro", "rw", "shared"],
     ["nosuid", "nodev", "size=2k", "exec", "rw", "shared"]),
    (["defaults", "mode=1777", "uid=1", "rbind", "bind"], ["mode=1777", "uid=1", "rbind", "bind"]),
])
def test_merge_tmpfs_options(options: list[str], expected: list[str]) -> None:
    assert merge_tmpfs_options(options) == expected


def test_parse_signal() -> None:
    assert parse_signal("SIGUSR1") == 10 and parse_signal("term") == 15 and parse_signal("9") == 9
    assert parse_signal("RTMIN+3") == int(__import__("signal").SIGRTMIN) + 3
    for bad in ("0", "FOO", "SIG", "RTMIN+20", "SIG_DFL"):
        with pytest.raises(InvalidArgument, match=f"^{re.escape('Invalid signal: ' + bad)}$"):
            parse_signal(bad)


@pytest.mark.parametrize("user,expected", [
    ("", (0, 0, [])),
    ("alice", (1000, 1000, [100, 29])),
    ("1000", (1000, 1000, [100, 29])),
    ("+1001", (1001, 100, [29, 44])),
    ("bob:audio", (1001, 29, [])),
    ("bob:4000", (1001, 4000, [])),
    ("4000:users", (4000, 100, [])),
    ("4000", (4000, 0, [])),
    ("alice:44:extra", (1000, 44, [])),
])
def test_resolve_user(user: str, expected: tuple[int, int, list[int]]) -> None:
    assert resolve_user(user, PASSWD.splitlines(), GROUP.splitlines()) == expected


def test_resolve_user_without_files_and_comments() -> None:
    assert resolve_user("5:6", None, None) == (5, 6, [])
    with pytest.raises(InvalidArgument,
                       match="^unable to find user alice: no matching entries in passwd file$"):
        resolve_user("alice", None, None)
    with pytest.raises(InvalidArgument, match="^unable to find group g: no matching entries in group file$"):
        resolve_user("1:g", None, None)
    with pytest.raises(InvalidArgument, match="range 0-2147483647"):
        resolve_user("1:-1", None, None)
    passwd = ["# x:x:7:7::/:/bin/sh", "  ", " bad line", "x:x:8:9::/:/bin/sh"]
    assert resolve_user("7", passwd, []) == (7, 0, [])
    assert resolve_user("x", passwd, ["#g:x:5:x", "g:x:6:y,x"]) == (8, 9, [6])
    assert resolve_groups(["g", "12", "12"], ["g:x:6:"]) == [6, 12]
    with pytest.raises(InvalidArgument,
                       match="^Unable to find group g"):  # runc: a name for a gid already added
        resolve_groups(["6", "g"], ["g:x:6:"])


# --- lookups against a hostile rootfs -----------------------------------------------------------------------

@pytest.fixture
def hostile(tmp_path: Path) -> dict[str, Path]:
    """Files outside the rootfs that an image tries to make the lookups read."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("evil:x:4242:4242::/:/bin/sh\nalice:x:7777:7777::/:/bin/sh\n")
    (outside / "group").write_text("evilgrp:x:999:alice\n")
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    return {"outside": outside, "rootfs": rootfs}


@pytest.mark.parametrize("target", ["absolute", "relative", "dotdot-dir"])
def test_lookup_user_stays_in_rootfs(hostile: dict[str, Path], target: str) -> None:
    rootfs, outside = hostile["rootfs"], hostile["outside"]
    for name in ("passwd", "group"):
        link = rootfs / "etc" / name
        if target == "absolute":
            link.symlink_to(outside / name)
        elif target == "relative":
            link.symlink_to(Path("../" * 20) / outside.relative_to("/") / name)
        else:
            (rootfs / "etc" / "sub").mkdir(exist_ok=True)
            link.symlink_to(f"sub/../../../../../../../../{outside.relative_to('/')}/{name}")
    with pytest.raises(InvalidArgument,
                       match="^unable to find user evil: no matching entries in passwd file$"):
        lookup_user(str(rootfs), "evil")
    assert lookup_user(str(rootfs), "4242") == (4242, 0, [])
    # the same path inside the rootfs is what the links mean there
    inner = rootfs / outside.relative_to("/")
    inner.mkdir(parents=True)
    (inner / "passwd").write_text("alice:x:1000:1000::/:/bin/sh\n")
    (inner / "group").write_text("inner:x:50:alice\n")
    assert lookup_user(str(rootfs), "alice") == (1000, 1000, [50])
    assert lookup_groups(str(rootfs), ["inner"]) == [50]
    with pytest.raises(InvalidArgument):
        lookup_groups(str(rootfs), ["evilgrp"])


def test_lookup_user_etc_symlinked_out_of_rootfs(hostile: dict[str, Path]) -> None:
    rootfs, outside = hostile["rootfs"], hostile["outside"]
    (rootfs / "etc").rmdir()
    (rootfs / "etc").symlink_to(outside)
    with pytest.raises(InvalidArgument, match="^unable to find user evil"):
        lookup_user(str(rootfs), "evil")
    assert lookup_user(str(rootfs), "") == (0, 0, [])


def test_lookup_user_refuses_special_files(hostile: dict[str, Path]) -> None:
    rootfs = hostile["rootfs"]
    passwd = rootfs / "etc" / "passwd"
    os.mkfifo(passwd)  # would block an open() without O_NONBLOCK and a read forever
    with pytest.raises(InvalidArgument, match="not a regular file"):
        lookup_user(str(rootfs), "alice")
    passwd.unlink()
    os.mknod(passwd, 0o644 | 0o020000, os.makedev(1, 5))  # /dev/zero: endless
    with pytest.raises(InvalidArgument, match="not a regular file"):
        lookup_user(str(rootfs), "alice")
    passwd.unlink()
    passwd.mkdir()
    with pytest.raises(InvalidArgument, match="not a regular file"):
        lookup_user(str(rootfs), "alice")
    passwd.rmdir()
    passwd.write_text("a" * 100_000 + "\n")
    with pytest.raises(InvalidArgument, match="token too long"):
        lookup_user(str(rootfs), "alice")
    passwd.unlink()
    passwd.symlink_to("passwd")  # a loop
    with pytest.raises(InvalidArgument, match="unable to find user alice"):
        lookup_user(str(rootfs), "alice")
    with pytest.raises(NotFound):
        lookup_user(str(rootfs / "missing"), "alice")


def test_lookup_user_reads_group_only_when_needed(hostile: dict[str, Path]) -> None:
    rootfs = hostile["rootfs"]
    (rootfs / "etc" / "passwd").write_text("alice:x:1000:1000::/:/bin/sh\n")
    os.mkfifo(rootfs / "etc" / "group")
    assert lookup_user(str(rootfs), "2000") == (2000, 0, [])  # no passwd entry, no group given: not read
    for user in ("alice", "2000:5"):
        with pytest.raises(InvalidArgument, match=f"^unable to find groups for {user}: /etc/group is not a"):
            lookup_user(str(rootfs), user)


def test_lookup_user_without_etc_files(hostile: dict[str, Path]) -> None:
    assert lookup_user(str(hostile["rootfs"]), "") == (0, 0, [])
    assert lookup_user(str(hostile["rootfs"]), "12:34") == (12, 34, [])
    assert lookup_groups(str(hostile["rootfs"]), ["5"]) == [5]
    with pytest.raises(SampanError, match="no matching entries in group file"):
        lookup_groups(str(hostile["rootfs"]), ["wheel"])
