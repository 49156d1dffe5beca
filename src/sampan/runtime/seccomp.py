"""Seccomp for sampan-runc: the OCI ``linux.seccomp`` object turned into a kernel filter the way runc does it.

Three steps, kept apart as in runc: ``validate`` checks the JSON and names the bad field before anything exists;
``compile_filter`` builds the filter with libseccomp (in the parent, so errors surface at ``create``) and
prepares the final BPF program; ``Filter.load`` is then a single ``seccomp(2)`` call in the container process,
the very last step before ``execve``, with nothing left to import or to get wrong.

runc semantics kept on purpose:

- ``SCMP_ACT_KILL`` is KILL_THREAD; ERRNO and TRACE default to EPERM; a rule whose action equals the default
  action is skipped (libseccomp rejects it); syscall names this libseccomp does not know are skipped (Docker's
  profile names syscalls newer than the library), as are architectures it cannot resolve.
- A rule's ``args`` must all match, except that when two args share an index runc adds one rule per arg
  (so they match as OR); the same is done here.
- ``flags`` absent means SPEC_ALLOW when the kernel and library support it; an unknown or unsupported flag is
  an error; TSYNC is accepted and ignored. no_new_privs is never set by the filter: the runtime sets it itself
  when the spec asks.
- The -ENOSYS stub (runc's ``patchbpf``, ported in full): when the default action denies, a prefix returns
  ENOSYS for syscall numbers above the largest one the profile names on each listed architecture, so programs
  probing for syscalls newer than the profile fall back instead of seeing EPERM.

One deliberate difference: syscalls from an architecture the filter does not cover (the bad-arch action) get
ENOSYS here instead of libseccomp's default of killing the thread, which runc keeps. Nothing runs either way.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import struct
from collections import namedtuple
from functools import cache

from sampan._linux import process as sys_
from sampan._linux import seccomp as scmp
from sampan.errors import InvalidArgument, Unsupported

TYPE_CHECKING = False  # typing/collections.abc are not imported at run time: start-up cost
if TYPE_CHECKING:
    from typing import Any, Self

_ROOT = "linux.seccomp"

_FIXED_ACTIONS: dict[str, int] = {
    "SCMP_ACT_KILL": scmp.ACT_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": scmp.ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": scmp.ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": scmp.ACT_TRAP,
    "SCMP_ACT_ALLOW": scmp.ACT_ALLOW,
    "SCMP_ACT_LOG": scmp.ACT_LOG,
    "SCMP_ACT_NOTIFY": scmp.ACT_NOTIFY,
}
_ERRNO_ACTIONS = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
_ACTIONS = (*_FIXED_ACTIONS, *_ERRNO_ACTIONS)
# Default actions that let unknown syscalls through: the -ENOSYS stub would only get in the way (runc: a good
# tracer handles -ENOSYS itself, so TRACE counts as allowing).
_PERMISSIVE = ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE")

_OPERATORS: dict[str, int] = {
    "SCMP_CMP_NE": scmp.CMP_NE,
    "SCMP_CMP_LT": scmp.CMP_LT,
    "SCMP_CMP_LE": scmp.CMP_LE,
    "SCMP_CMP_EQ": scmp.CMP_EQ,
    "SCMP_CMP_GE": scmp.CMP_GE,
    "SCMP_CMP_GT": scmp.CMP_GT,
    "SCMP_CMP_MASKED_EQ": scmp.CMP_MASKED_EQ,
}

# OCI name -> libseccomp name: the runtime-spec's list plus runc's LOONGARCH64.
_ARCHS: dict[str, str] = {
    f"SCMP_ARCH_{name.upper()}": name
    for name in ("x86", "x86_64", "x32", "arm", "aarch64", "mips", "mips64", "mips64n32", "mipsel", "mipsel64",
                 "mipsel64n32", "ppc", "ppc64", "ppc64le", "s390", "s390x", "parisc", "parisc64", "riscv64",
                 "loongarch64")
}

# OCI flag -> (libseccomp attribute, seccomp(2) flag), in runc's order. runc accepts TSYNC and ignores it: the
# container process is single-threaded when it loads the filter, and execve ends any other thread anyway.
_FLAGS: dict[str, tuple[int, int] | None] = {
    "SECCOMP_FILTER_FLAG_TSYNC": None,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": (scmp.ATTR_CTL_SSB, scmp.FILTER_FLAG_SPEC_ALLOW),
    "SECCOMP_FILTER_FLAG_LOG": (scmp.ATTR_CTL_LOG, scmp.FILTER_FLAG_LOG),
}

_MAX_ARGS = 6
_U64 = (1 << 64) - 1
# runc turns on libseccomp's binary-tree optimisation above this many rules (2.5.x misbehaves with none).
_OPTIMIZE_ABOVE = 32
_NOTIFY_API_LEVEL = 6
_SHOW_MAX = 60


class _Arg(namedtuple("_Arg", "index value value_two op")):
    # fields: index: int, value: int, value_two: int, op: str
    __slots__ = ()


class _Rule(namedtuple("_Rule", "names action errno_ret args")):
    # fields: names: tuple[str, ...], action: str, errno_ret: int | None, args: tuple[_Arg, ...]
    __slots__ = ()


class _Profile(namedtuple("_Profile", "default_action default_errno archs flags rules")):
    # fields: default_action, default_errno, archs, flags, rules
    __slots__ = ()

    @property
    def uses_notify(self) -> bool:
        return any(rule.action == "SCMP_ACT_NOTIFY" for rule in self.rules)


class Filter:
    """A compiled seccomp filter: the final BPF program and the ``seccomp(2)`` flags to install it with."""

    def __init__(self, program: bytes, flags: int, unknown_syscalls: tuple[str, ...],
                 unsupported_archs: tuple[str, ...]) -> None:
        self._program: bytes | None = program
        self.flags = flags
        self.unknown_syscalls = unknown_syscalls
        """Syscall names skipped because this libseccomp does not know them (runc logs and skips them too)."""
        self.unsupported_archs = unsupported_archs
        """OCI architectures skipped because this libseccomp cannot resolve them."""

    @property
    def notify(self) -> bool:
        """Whether ``load`` returns a listener fd (some rule uses SCMP_ACT_NOTIFY)."""
        return bool(self.flags & scmp.FILTER_FLAG_NEW_LISTENER)

    def export_bpf(self) -> bytes:
        """The exact program ``load`` installs: the -ENOSYS stub, then libseccomp's program."""
        if self._program is None:
            raise ValueError("seccomp filter is closed")
        return self._program

    def load(self) -> int | None:
        """Install the filter in the calling process; return the notify listener fd, or None without NOTIFY.

        Call it last, right before ``execve``: every later syscall, the runtime's own included, is filtered.
        """
        fd = sys_.seccomp_set_mode_filter(self.export_bpf(), self.flags)
        return fd if self.notify else None

    def close(self) -> None:
        """Drop the program; idempotent. The parent calls it once the container process has its copy."""
        self._program = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def validate(seccomp: dict[str, Any]) -> None:
    """Check ``linux.seccomp``, naming the JSON path of the first problem; creates nothing.

    Only building can tell that libseccomp refuses a combination (architectures of both byte orders):
    ``compile_filter`` reports those the same way.
    """
    profile = _parse(seccomp)
    if profile is not None:
        _check_support(profile)


def compile_filter(seccomp: dict[str, Any]) -> Filter | None:
    """Build the filter for ``linux.seccomp``; None when the object asks for no filter (no default, no rules).

    Works in any process: the program is complete when this returns, so the container process only loads it.
    """
    profile = _parse(seccomp)
    if profile is None:
        return None
    _check_support(profile)
    return _build(profile)


def supported() -> dict[str, Any]:
    """What ``runc features`` reports under ``linux.seccomp`` for this host's kernel and libseccomp."""
    enabled = scmp.available()
    return {
        "enabled": enabled,
        "actions": sorted(_ACTIONS),
        "operators": sorted(_OPERATORS),
        "archs": sorted(a for a, name in _ARCHS.items() if enabled and scmp.arch_resolve_name(name) is not None),
        "knownFlags": list(_FLAGS),
        "supportedFlags": [flag for flag in _FLAGS if enabled and _flag_supported(flag)],
    }


def library_version() -> str | None:
    """libseccomp's version ("2.5.4"), for runc's ``io.github.seccomp.libseccomp.version`` annotation."""
    return ".".join(map(str, scmp.version())) if scmp.available() else None


def send_listener_fd(listener_path: str, fd: int, state: dict[str, Any], metadata: str) -> None:
    """Hand the notify listener ``fd`` to the seccomp agent at ``listener_path``, as runc does.

    One message on a new stream connection: the runtime-spec's ContainerProcessState JSON as payload
    (``fds: ["seccompFd"]`` names the single SCM_RIGHTS fd) and the fd as ancillary data. ``state`` is the
    container's OCI state; ``metadata`` is ``listenerMetadata``, omitted when empty.
    """
    message: dict[str, Any] = {"ociVersion": state["ociVersion"], "fds": ["seccompFd"], "pid": state["pid"]}
    if metadata:
        message["metadata"] = metadata
    message["state"] = state
    payload = json.dumps(message, separators=(",", ":")).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(listener_path)
        socket.send_fds(sock, [payload], [fd])


# --- translation and checking -------------------------------------------------------------------------------


def _fail(path: str, message: str) -> InvalidArgument:
    return InvalidArgument(f"{path}: {message}")


def _show(value: object) -> str:
    """A bad value as JSON, cut short so the error stays one readable line."""
    text = json.dumps(value, default=repr)
    return text if len(text) <= _SHOW_MAX else text[: _SHOW_MAX - 3] + "..."


def _uint(value: object, maximum: int) -> int | None:
    """``value`` when it is a JSON integer from 0 to ``maximum`` (JSON's true/false are not), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= maximum:
        return value
    return None


def _string(value: object, path: str, *, empty_ok: bool = True) -> str:
    if not isinstance(value, str) or (not empty_ok and not value):
        raise _fail(path, f"must be a {'' if empty_ok else 'non-empty '}string, got {_show(value)}")
    return value


def _list(value: object, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(path, f"must be an array, got {_show(value)}")
    return value


def _object(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, f"must be an object, got {_show(value)}")
    return value


def _errno_ret(value: object, path: str) -> int | None:
    """An errno for ERRNO/TRACE; other actions ignore it, as runc does."""
    if value is None:
        return None
    number = _uint(value, 0xFFFF)
    if number is None:
        raise _fail(path, f"must be an errno number from 0 to 65535, got {_show(value)}")
    return number


def _action(value: object, path: str) -> str:
    name = _string(value, path)
    if name not in _ACTIONS:
        raise _fail(path, f"unknown action {name!r}")
    return name


def _parse_arg(raw: object, path: str) -> _Arg:
    arg = _object(raw, path)
    for key in ("index", "value", "op"):
        if key not in arg:
            raise _fail(f"{path}.{key}", "required")
    if _uint(arg["index"], _MAX_ARGS - 1) is None:
        raise _fail(f"{path}.index", f"must be an argument index from 0 to 5, got {_show(arg['index'])}")
    for key in ("value", "valueTwo"):
        if key in arg and _uint(arg[key], _U64) is None:
            raise _fail(f"{path}.{key}", f"must be an unsigned 64-bit integer, got {_show(arg[key])}")
    op = _string(arg["op"], f"{path}.op")
    if op not in _OPERATORS:
        raise _fail(f"{path}.op", f"unknown operator {op!r}")
    return _Arg(arg["index"], arg["value"], arg.get("valueTwo", 0), op)


def _parse_rule(raw: object, path: str) -> _Rule:
    rule = _object(raw, path)
    names = _list(rule.get("names"), f"{path}.names")
    if not names:
        raise _fail(f"{path}.names", "must name at least one syscall")
    for i, name in enumerate(names):
        _string(name, f"{path}.names[{i}]", empty_ok=False)
    if "action" not in rule:
        raise _fail(f"{path}.action", "required")
    action = _action(rule["action"], f"{path}.action")
    if action == "SCMP_ACT_NOTIFY" and "write" in names:
        # runc: the container process must still write the listener fd to its parent after loading.
        raise _fail(f"{path}.action", "SCMP_ACT_NOTIFY cannot be used for the write syscall")
    args = tuple(_parse_arg(a, f"{path}.args[{i}]") for i, a in enumerate(_list(rule.get("args"), f"{path}.args")))
    return _Rule(tuple(names), action, _errno_ret(rule.get("errnoRet"), f"{path}.errnoRet"), args)


def _parse_flags(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    flags = _list(value, f"{_ROOT}.flags")
    for i, flag in enumerate(flags):
        if _string(flag, f"{_ROOT}.flags[{i}]") not in _FLAGS:
            raise _fail(f"{_ROOT}.flags[{i}]", f"unknown flag {flag!r}")
    return tuple(flags)


def _parse_archs(value: object) -> tuple[str, ...]:
    archs = _list(value, f"{_ROOT}.architectures")
    for i, arch in enumerate(archs):
        if _string(arch, f"{_ROOT}.architectures[{i}]") not in _ARCHS:
            raise _fail(f"{_ROOT}.architectures[{i}]", f"unknown architecture {arch!r}")
    return tuple(archs)


def _parse(seccomp: object) -> _Profile | None:
    """Translate the JSON into a typed profile, or None for runc's "no default action, no rules: disabled"."""
    spec = _object(seccomp, _ROOT)
    raw_rules = _list(spec.get("syscalls"), f"{_ROOT}.syscalls")
    if not spec.get("defaultAction") and not raw_rules:
        return None
    if "defaultAction" not in spec:
        raise _fail(f"{_ROOT}.defaultAction", "required")
    default = _action(spec["defaultAction"], f"{_ROOT}.defaultAction")
    if default == "SCMP_ACT_NOTIFY":
        raise _fail(f"{_ROOT}.defaultAction", "SCMP_ACT_NOTIFY cannot be the default action")
    profile = _Profile(
        default_action=default,
        default_errno=_errno_ret(spec.get("defaultErrnoRet"), f"{_ROOT}.defaultErrnoRet"),
        archs=_parse_archs(spec.get("architectures")),
        flags=_parse_flags(spec.get("flags")),
        rules=tuple(_parse_rule(r, f"{_ROOT}.syscalls[{i}]") for i, r in enumerate(raw_rules)),
    )
    # The runtime reads these two itself when it hands the listener over (send_listener_fd).
    listener_path = _string(spec.get("listenerPath", ""), f"{_ROOT}.listenerPath")
    _string(spec.get("listenerMetadata", ""), f"{_ROOT}.listenerMetadata")
    if profile.uses_notify and not listener_path:
        raise _fail(f"{_ROOT}.listenerPath", "required when a rule uses SCMP_ACT_NOTIFY")
    return profile


def _check_support(profile: _Profile) -> None:
    """What only this host can answer: is libseccomp there, and does it (and the kernel) do what is asked."""
    if not scmp.available():
        raise Unsupported(f"{_ROOT}: seccomp is not supported on this host (libseccomp.so.2 cannot be loaded)")
    for i, flag in enumerate(profile.flags or ()):
        if not _flag_supported(flag):
            raise Unsupported(f"{_ROOT}.flags[{i}]: {flag} is not supported by this kernel or libseccomp")
    if profile.uses_notify and scmp.api_level() < _NOTIFY_API_LEVEL:
        raise Unsupported(f"{_ROOT}: SCMP_ACT_NOTIFY needs libseccomp >= 2.5.0 and Linux >= 5.7 "
                          f"(API level {scmp.api_level()}, want {_NOTIFY_API_LEVEL})")


@cache
def _flag_supported(flag: str) -> bool:
    """runc's FlagSupported: TSYNC is always accepted; the others if libseccomp can set their attribute."""
    mapping = _FLAGS[flag]
    if mapping is None:
        return True
    ctx = scmp.init(scmp.ACT_ALLOW)
    try:
        scmp.attr_set(ctx, mapping[0], 1)
    except OSError:
        return False
    finally:
        scmp.release(ctx)
    return True


# --- building -----------------------------------------------------------------------------------------------


def _action_value(name: str, errno_ret: int | None) -> int:
    if name == "SCMP_ACT_ERRNO":
        return scmp.act_errno(errno.EPERM if errno_ret is None else errno_ret)
    if name == "SCMP_ACT_TRACE":
        return scmp.act_trace(errno.EPERM if errno_ret is None else errno_ret)
    return _FIXED_ACTIONS[name]


def _arch_tokens(profile: _Profile) -> tuple[dict[str, int], tuple[str, ...]]:
    """OCI arch -> libseccomp token for the archs this library knows, and the OCI names it does not."""
    tokens: dict[str, int] = {}
    missing: list[str] = []
    for arch in profile.archs:
        token = scmp.arch_resolve_name(_ARCHS[arch])
        if token is None:
            missing.append(arch)
        else:
            tokens[arch] = token
    return tokens, tuple(missing)


def _build(profile: _Profile) -> Filter:
    default = _action_value(profile.default_action, profile.default_errno)
    tokens, missing_archs = _arch_tokens(profile)
    flags = profile.flags if profile.flags is not None else _default_flags()
    unknown: list[str] = []
    ctx = scmp.init(default)
    try:
        for arch, token in tokens.items():
            _add_arch(ctx, token, f"{_ROOT}.architectures[{profile.archs.index(arch)}]")
        for attr, _ in _effective(flags):
            scmp.attr_set(ctx, attr, 1)
        if sum(len(rule.names) for rule in profile.rules) > _OPTIMIZE_ABOVE:
            scmp.attr_set(ctx, scmp.ATTR_CTL_OPTIMIZE, 2)
        scmp.attr_set(ctx, scmp.ATTR_CTL_NNP, 0)
        scmp.attr_set(ctx, scmp.ATTR_ACT_BADARCH, scmp.act_errno(errno.ENOSYS))
        for i, rule in enumerate(profile.rules):
            _add_rule(ctx, rule, default, f"{_ROOT}.syscalls[{i}]", unknown)
        program = _enosys_stub(profile, tokens) + _export(ctx)
    finally:
        scmp.release(ctx)
    return Filter(program, _load_flags(flags, profile), tuple(dict.fromkeys(unknown)), missing_archs)


def _effective(flags: tuple[str, ...]) -> list[tuple[int, int]]:
    """(libseccomp attribute, seccomp(2) flag) of each flag that does something (all but TSYNC)."""
    return [mapping for flag in flags if (mapping := _FLAGS[flag]) is not None]


def _default_flags() -> tuple[str, ...]:
    """runc: with ``flags`` absent, SPEC_ALLOW (keep speculative store bypass as the host has it) if possible."""
    return ("SECCOMP_FILTER_FLAG_SPEC_ALLOW",) if _flag_supported("SECCOMP_FILTER_FLAG_SPEC_ALLOW") else ()


def _add_arch(ctx: int, token: int, path: str) -> None:
    try:
        scmp.arch_add(ctx, token)
    except OSError as exc:
        if exc.errno == errno.EEXIST:  # the native arch is always there already
            return
        why = ("its byte order differs from this host's or another listed architecture's"
               if exc.errno == errno.EDOM else os.strerror(exc.errno or 0))
        raise _fail(path, f"libseccomp cannot add this architecture to the filter: {why}") from None


def _add_rule(ctx: int, rule: _Rule, default: int, path: str, unknown: list[str]) -> None:
    action = _action_value(rule.action, rule.errno_ret)
    if action == default:
        return
    conditions = [(a.index, _OPERATORS[a.op], a.value, a.value_two) for a in rule.args]
    indexes = [a.index for a in rule.args]
    # runc: args on distinct indexes are ANDed in one rule; if any index repeats, each arg is its own rule (OR).
    groups = [[c] for c in conditions] if len(set(indexes)) < len(indexes) else [conditions]
    for name in rule.names:
        nr = scmp.syscall_resolve_name(name)
        if nr is None:
            unknown.append(name)
            continue
        for group in groups:
            try:
                scmp.rule_add_array(ctx, action, nr, group)
            except OSError as exc:
                raise _fail(path, f"libseccomp rejected the rule for {name!r}: {os.strerror(exc.errno or 0)}") \
                    from None


def _export(ctx: int) -> bytes:
    """libseccomp's program, through a memfd: a pipe could fill up before the export finishes."""
    fd = os.memfd_create("sampan-seccomp", os.MFD_CLOEXEC)
    try:
        scmp.export_bpf(ctx, fd)
        size = os.fstat(fd).st_size
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


def _load_flags(requested: tuple[str, ...], profile: _Profile) -> int:
    """The seccomp(2) flags matching the attributes set on the context (runc's patchbpf ``filterFlags``)."""
    flags = 0
    for _, bit in _effective(requested):
        flags |= bit
    if profile.uses_notify:
        flags |= scmp.FILTER_FLAG_NEW_LISTENER
    return flags


# --- the -ENOSYS stub (runc's libcontainer/seccomp/patchbpf) --------------------------------------------------

_BPF_LD_W_ABS = 0x20
_BPF_JA = 0x05
_BPF_JEQ_K = 0x15
_BPF_JGT_K = 0x25
_BPF_JSET_K = 0x45
_BPF_RET_K = 0x06
_OFFSET_NR = 0  # struct seccomp_data
_OFFSET_ARCH = 4
_X32_SYSCALL_BIT = 0x40000000
# Kernel audit arches equal libseccomp's arch tokens, except x32 (a libseccomp-only token) runs as x86_64.
_AUDIT_ARCH_X86_64 = 0xC000003E
_S390_MULTIPLEX_SYSCALL = 0

_Insn = tuple[int, int, int, int]  # code, jt, jf, k


def _ld(offset: int) -> _Insn:
    return (_BPF_LD_W_ABS, 0, 0, offset)


def _ja(skip: int) -> _Insn:
    return (_BPF_JA, 0, 0, skip)


def _ret(value: int) -> _Insn:
    return (_BPF_RET_K, 0, 0, value)


def _jump(code: int, k: int, jt: int, jf: int = 0) -> _Insn:
    return (code, jt, jf, k)


def _last_syscalls(profile: _Profile, tokens: dict[str, int]) -> dict[int, dict[str, int]]:
    """Per kernel audit arch, the largest syscall number the profile names for each libseccomp arch.

    x32 shares AUDIT_ARCH_X86_64 with x86_64 (its numbers carry bit 30), so that audit arch may hold two.
    Names are counted whatever their rule's action, and unknown ones ignored, as runc does.
    """
    names = {name for rule in profile.rules for name in rule.names}
    last: dict[int, dict[str, int]] = {}
    for arch, token in tokens.items():
        name = _ARCHS[arch]
        numbers = [scmp.syscall_resolve_name_arch(token, syscall) for syscall in names]
        largest = max((n for n in numbers if n is not None), default=0)
        if largest > 0:
            last.setdefault(_AUDIT_ARCH_X86_64 if name == "x32" else token, {})[name] = largest
    return last


def _arch_section(native: int, largest: dict[str, int], to_enosys: int) -> list[_Insn]:
    """Instructions for one audit arch: load the syscall number, jump to ENOSYS when it is too new.

    ``to_enosys`` counts the instructions after this section up to the ENOSYS return; the filter starts
    right after that return.
    """
    to_filter = to_enosys + 1
    section = [_ld(_OFFSET_NR)]
    if len(largest) == 2:  # x86_64 and x32 on AUDIT_ARCH_X86_64
        return section + [_jump(_BPF_JSET_K, _X32_SYSCALL_BIT, 1),
                          _jump(_BPF_JGT_K, largest["x86_64"], to_enosys + 2, 1),
                          _jump(_BPF_JGT_K, largest["x32"], to_enosys + 1),
                          _ja(to_filter)]
    ((name, sysno),) = largest.items()
    if name in ("s390", "s390x"):
        # Unknown "large" syscalls arrive as the multiplexer setup(2) = 0 there, so it must get ENOSYS too.
        section += [_jump(_BPF_JEQ_K, _S390_MULTIPLEX_SYSCALL, 0, 1), _ret(scmp.act_errno(errno.ENOSYS))]
    tail = [_jump(_BPF_JGT_K, sysno, to_enosys + 1), _ja(to_filter)]
    if native == _AUDIT_ARCH_X86_64:
        # Only x86_64 (or only x32) is listed: let the other mode's numbers through to the filter.
        if name == "x86_64":
            tail.insert(0, _jump(_BPF_JSET_K, _X32_SYSCALL_BIT, len(tail) - 1))
        else:
            tail.insert(0, _jump(_BPF_JSET_K, _X32_SYSCALL_BIT, 0, len(tail) - 1))
    return section + tail


def _enosys_stub(profile: _Profile, tokens: dict[str, int]) -> bytes:
    """runc's generateEnosysStub, prepended to libseccomp's program; empty when nothing needs patching.

    Built backwards, as in runc, so that each jump is counted from the end of the stub.
    """
    if profile.default_action in _PERMISSIVE:
        return b""
    if profile.default_action == "SCMP_ACT_ERRNO" and profile.default_errno == errno.ENOSYS:
        return b""
    last = _last_syscalls(profile, tokens)
    if not last:
        return b""
    tail: list[_Insn] = [_ja(1), _ret(scmp.act_errno(errno.ENOSYS))]  # fall through to the filter / ENOSYS
    from_end: dict[int, int] = {}
    for native, largest in last.items():
        to_enosys = len(tail) - 1
        tail = _arch_section(native, largest, to_enosys) + tail
        from_end[native] = len(tail)
    tail.insert(0, _ja(len(tail)))  # any other arch: straight to the filter, which applies the bad-arch action
    for native in last:
        tail.insert(0, _jump(_BPF_JEQ_K, native, len(tail) - from_end[native]))
    tail.insert(0, _ld(_OFFSET_ARCH))
    # With at most 20 architectures the stub stays near 120 instructions, so every conditional jump fits its
    # 8-bit offset and runc's long-jump variants are never needed (struct.pack would refuse an overflow).
    return b"".join(struct.pack("=HBBI", code, jt, jf, k) for code, jt, jf, k in tail)
