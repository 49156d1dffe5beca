"""Device access rules: one model of the OCI list, written as v1 allow/deny lines or compiled to eBPF for v2.

Both versions go through :class:`Emulator`, a port of runc's model of the v1 devices controller. It gives the
OCI list the kernel's v1 meaning on both versions (a type ``a`` rule resets everything to allow-all or
deny-all; later rules add or remove exceptions, so the last matching rule wins) and refuses what v1 would
silently ignore: removing part of a wildcard exception ("punching a hole"), which would otherwise give a false
sense of security.

* v1: the current state is read back from ``devices.list`` and only the difference is written, so updating a
  running container never denies a device it keeps (:func:`v1_transition`).
* v2: the emulated rule set is compiled into a ``BPF_PROG_TYPE_CGROUP_DEVICE`` program (the logic of runc's
  ``devicefilter``, which came from crun) and attached with ``BPF_F_ALLOW_MULTI``. An update attaches the new
  program first and then detaches every program attached before it, as runc does, so there is never a moment
  without a filter; a program attached by someone else to this cgroup is removed too, like runc.

An empty list means "deny every device", as in runc; callers that want Docker's defaults add them to the list.
"""

from __future__ import annotations

import os
import re
import struct
import sys
from collections import namedtuple

from sampan.errors import InvalidArgument

TYPE_CHECKING = False  # typing/collections.abc are not imported at run time: start-up cost
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

WILDCARD = -1
_PERMS = "rwm"
_MAX_DEVICE_NUMBER = 2**32 - 1
_LIST_LINE = re.compile(r"^([abc])\s+(\d+|\*):(\d+|\*)\s+([rwm]+)$")


class DeviceRule(namedtuple("DeviceRule", "type major minor access allow")):
    """One validated OCI ``linux.resources.devices`` entry; ``WILDCARD`` stands for an absent number."""
    # fields: type: str, major: int, minor: int, access: str, allow: bool
    __slots__ = ()

    def cgroup_string(self) -> str:
        """The v1 ``devices.allow``/``devices.deny`` line, e.g. ``c 1:3 rwm`` or ``a *:* rwm``."""
        major = "*" if self.major == WILDCARD else str(self.major)
        minor = "*" if self.minor == WILDCARD else str(self.minor)
        return f"{self.type} {major}:{minor} {self.access}"


def parse_rules(raw: object, field: str = "devices") -> tuple[DeviceRule, ...]:
    """Validate the OCI list and check that v1 semantics can express it (no hole punching)."""
    if not isinstance(raw, list):
        raise InvalidArgument(f"{field}: expected a list of device rules")
    rules = tuple(_parse_rule(entry, f"{field}[{i}]") for i, entry in enumerate(raw))
    emulate(rules)
    return rules


def _parse_rule(entry: object, field: str) -> DeviceRule:
    if not isinstance(entry, dict):
        raise InvalidArgument(f"{field}: expected an object")
    allow = entry.get("allow")
    if not isinstance(allow, bool):
        raise InvalidArgument(f"{field}.allow: required, true or false")
    kind = entry.get("type") or "a"
    if kind not in ("a", "b", "c"):
        raise InvalidArgument(f"{field}.type: {kind!r} is not a cgroup device type (a, b or c)")
    access = entry.get("access", _PERMS)
    if not isinstance(access, str) or not access or set(access) - set(_PERMS):
        raise InvalidArgument(f"{field}.access: {access!r} is not a combination of r, w and m")
    return DeviceRule(kind, _device_number(entry.get("major"), f"{field}.major"),
                      _device_number(entry.get("minor"), f"{field}.minor"), _normalize(access), allow)


def _device_number(value: object, field: str) -> int:
    if value is None:
        return WILDCARD
    if isinstance(value, bool) or not isinstance(value, int) or not WILDCARD <= value <= _MAX_DEVICE_NUMBER:
        raise InvalidArgument(f"{field}: {value!r} is not a device number (0 to 2^32-1, or -1 for any)")
    return value


def _list_number(text: str) -> int:
    return WILDCARD if text == "*" else int(text)


def _normalize(perms: Iterable[str]) -> str:
    chars = set(perms)
    return "".join(p for p in _PERMS if p in chars)


class Emulator:
    """The v1 devices controller's state: a default (allow or deny) and exceptions by (type, major, minor)."""

    def __init__(self, default_allow: bool = False) -> None:
        self.default_allow = default_allow
        self.rules: dict[tuple[str, int, int], str] = {}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Emulator):
            return NotImplemented
        return (self.default_allow, self.rules) == (other.default_allow, other.rules)

    @classmethod
    def from_list(cls, text: str) -> Emulator:
        """Rebuild the state from ``devices.list``, the allowed accesses (``a *:* rwm`` means allow-all)."""
        emu = cls()
        for line in text.splitlines():
            match = _LIST_LINE.match(line.strip())
            if match is None:
                raise InvalidArgument(f"devices.list: cannot parse {line!r}")
            kind, major, minor, perms = match.groups()
            emu.apply(DeviceRule(kind, _list_number(major), _list_number(minor), perms, True))
        return emu

    def apply(self, rule: DeviceRule) -> None:
        if rule.type == "a":
            self.default_allow, self.rules = rule.allow, {}
            return
        key = (rule.type, rule.major, rule.minor)
        if rule.allow != self.default_allow:
            self.rules[key] = _normalize(self.rules.get(key, "") + rule.access)
            return
        self._check_no_hole(key, rule)
        left = _normalize(set(self.rules.get(key, "")) - set(rule.access))
        if left:
            self.rules[key] = left
        else:
            self.rules.pop(key, None)

    def _check_no_hole(self, key: tuple[str, int, int], rule: DeviceRule) -> None:
        kind, major, minor = key
        for wider in ((kind, WILDCARD, minor), (kind, major, WILDCARD), (kind, WILDCARD, WILDCARD)):
            if wider != key and set(self.rules.get(wider, "")) & set(rule.access):
                raise InvalidArgument(
                    f"devices: rule {rule.cgroup_string()!r} cannot be expressed: it would punch a hole in "
                    f"the wider rule {DeviceRule(*wider, self.rules[wider], True).cgroup_string()!r}")

    def transition(self, target: Emulator) -> list[DeviceRule]:
        """The fewest rules that turn this state into ``target``, disruptive (``a``) rules only when needed.

        A v1 allow-all cgroup cannot list its deny exceptions, so leaving one always starts with a reset.
        """
        out: list[DeviceRule] = []
        old = self.rules
        if self.default_allow or self.default_allow != target.default_allow:
            out.append(DeviceRule("a", WILDCARD, WILDCARD, _PERMS, target.default_allow))
            old = {}
        for key in sorted(old, key=_order):
            dropped = _normalize(set(old[key]) - set(target.rules.get(key, "")))
            if dropped:
                out.append(DeviceRule(*key, dropped, target.default_allow))
        for key in sorted(target.rules, key=_order):
            gained = _normalize(set(target.rules[key]) - set(old.get(key, "")))
            if gained:
                out.append(DeviceRule(*key, gained, not target.default_allow))
        return out

    def clean_rules(self) -> list[DeviceRule]:
        """The state as rules applied to a deny-all cgroup: what a filter program must encode."""
        return Emulator().transition(self)


def _order(key: tuple[str, int, int]) -> tuple[int, int, str]:
    kind, major, minor = key
    return major, minor, kind


def emulate(rules: Iterable[DeviceRule]) -> Emulator:
    """The state a deny-all cgroup reaches after ``rules``, in order."""
    emu = Emulator()
    for rule in rules:
        emu.apply(rule)
    return emu


def v1_transition(current_list: str, rules: Sequence[DeviceRule]) -> list[tuple[str, str]]:
    """``(file, line)`` writes, in order, that take a v1 cgroup from its ``devices.list`` to ``rules``."""
    return [("devices.allow" if r.allow else "devices.deny", r.cgroup_string())
            for r in Emulator.from_list(current_list).transition(emulate(rules))]


# --- v2: the eBPF program -----------------------------------------------------------------------------------

# Opcodes (linux/bpf_common.h, linux/bpf.h): class | op | source.
_LDX_MEM_W = 0x61
_ALU32_AND_K = 0x54
_ALU32_RSH_K = 0x74
_ALU32_MOV_K = 0xB4
_ALU32_MOV_X = 0xBC
_JMP_JNE_K = 0x55
_JMP_JNE_X = 0x5D
_JMP_EXIT = 0x95

# struct bpf_cgroup_dev_ctx and its constants.
_DEV_BLOCK, _DEV_CHAR = 1, 2
_ACC_MKNOD, _ACC_READ, _ACC_WRITE = 1, 2, 4
_ACCESS_BITS = {"m": _ACC_MKNOD, "r": _ACC_READ, "w": _ACC_WRITE}
_R0, _R1, _R2, _R3, _R4, _R5 = range(6)

LICENSE = "Apache"
PROGRAM_NAME = "sampan_devices"

# (code, dst, src, offset, imm); an offset of None jumps to the first instruction after the block.
_Insn = tuple[int, int, int, int | None, int]


def _encode(code: int, dst: int, src: int, off: int, imm: int) -> bytes:
    regs = (src << 4 | dst) if sys.byteorder == "little" else (dst << 4 | src)
    return struct.pack("=BBhi", code, regs, off, imm - 2**32 if imm >= 2**31 else imm)


def _block(insns: list[_Insn]) -> bytes:
    """Encode one block; its conditional jumps all go to the first instruction after it."""
    return b"".join(_encode(code, dst, src, len(insns) - i - 1 if off is None else off, imm)
                    for i, (code, dst, src, off, imm) in enumerate(insns))


def _prologue() -> list[_Insn]:
    """R2 = device type, R3 = requested access, R4 = major, R5 = minor."""
    return [(_LDX_MEM_W, _R2, _R1, 0, 0), (_ALU32_AND_K, _R2, 0, 0, 0xFFFF),
            (_LDX_MEM_W, _R3, _R1, 0, 0), (_ALU32_RSH_K, _R3, 0, 0, 16),
            (_LDX_MEM_W, _R4, _R1, 4, 0), (_LDX_MEM_W, _R5, _R1, 8, 0)]


def _rule_block(rule: DeviceRule) -> list[_Insn]:
    """Return ``rule.allow`` when the access matches ``rule``, else fall through to the next block."""
    insns: list[_Insn] = [(_JMP_JNE_K, _R2, 0, None, _DEV_CHAR if rule.type == "c" else _DEV_BLOCK)]
    if rule.access != _PERMS:
        bits = sum(_ACCESS_BITS[p] for p in rule.access)
        # Match only when every requested access bit is granted by the rule (R1 is free as scratch by now).
        insns += [(_ALU32_MOV_X, _R1, _R3, 0, 0), (_ALU32_AND_K, _R1, 0, 0, bits),
                  (_JMP_JNE_X, _R1, _R3, None, 0)]
    for register, number in ((_R4, rule.major), (_R5, rule.minor)):
        if number != WILDCARD:
            insns += _jump_unless_equal(register, number)
    return insns + _verdict(rule.allow)


def _jump_unless_equal(register: int, number: int) -> list[_Insn]:
    """An immediate compare sign-extends its 32-bit operand, so numbers from 2^31 go through a register."""
    if number < 2**31:
        return [(_JMP_JNE_K, register, 0, None, number)]
    return [(_ALU32_MOV_K, _R1, 0, 0, number), (_JMP_JNE_X, register, _R1, None, 0)]


def _verdict(allow: bool) -> list[_Insn]:
    return [(_ALU32_MOV_K, _R0, 0, 0, int(allow)), (_JMP_EXIT, 0, 0, 0, 0)]


def compile_filter(rules: Sequence[DeviceRule]) -> bytes:
    """The eBPF program (raw instructions) that enforces ``rules`` with v1 semantics, default deny."""
    emu = emulate(rules)
    out = [_block(_prologue())]
    for rule in emu.clean_rules():
        if rule.type != "a":  # the only 'a' rule is the leading reset to allow-all: the default below
            out.append(_block(_rule_block(rule)))
    out.append(_block(_verdict(emu.default_allow)))
    return b"".join(out)


def attached_program_ids(cgroup_dir: str) -> list[int]:
    """Ids of the device programs attached directly to a v2 cgroup."""
    from sampan._linux import bpf

    fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return bpf.prog_query(fd, bpf.BPF_CGROUP_DEVICE)
    finally:
        os.close(fd)


def install_filter(cgroup_dir: str, rules: Sequence[DeviceRule]) -> None:
    """Attach a filter for ``rules`` to a v2 cgroup, replacing earlier ones (new in first, then old out)."""
    from sampan._linux import bpf

    program = compile_filter(rules)
    dir_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        old_ids = bpf.prog_query(dir_fd, bpf.BPF_CGROUP_DEVICE)
        prog_fd = bpf.prog_load(bpf.BPF_PROG_TYPE_CGROUP_DEVICE, program, LICENSE, PROGRAM_NAME)
        try:
            bpf.prog_attach(dir_fd, prog_fd, bpf.BPF_CGROUP_DEVICE, bpf.BPF_F_ALLOW_MULTI)
        finally:
            os.close(prog_fd)
        for prog_id in old_ids:
            _detach(dir_fd, prog_id)
    finally:
        os.close(dir_fd)


def _detach(dir_fd: int, prog_id: int) -> None:
    """Detach one old program; one that vanished meanwhile or that an LSM hides is left alone (runc)."""
    from sampan._linux import bpf

    try:
        prog_fd = bpf.prog_get_fd_by_id(prog_id)
    except (FileNotFoundError, PermissionError):
        return
    try:
        bpf.prog_detach(dir_fd, prog_fd, bpf.BPF_CGROUP_DEVICE)
    finally:
        os.close(prog_fd)
