"""Capabilities: the five OCI sets applied in runc's order, around the switch to the container user.

The bounding set is reduced first (that needs CAP_SETPCAP, which we still have), the user is switched with
keep-caps so the permitted set survives, then effective/permitted/inheritable are set and ambient raised.
"""

from __future__ import annotations

from sampan._linux import process as sys_
from sampan.runtime.constants import CAPABILITIES

TYPE_CHECKING = False  # typing/collections.abc are not imported at run time: start-up cost
if TYPE_CHECKING:
    from typing import Any


def last_cap() -> int:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def _mask(names: list[str] | None) -> int:
    mask = 0
    for name in names or []:
        if name in CAPABILITIES:
            mask |= 1 << CAPABILITIES[name]
    return mask


class CapabilityPlan:
    """Masks computed before entering the container (reading /proc there is not trusted)."""

    def __init__(self, caps: dict[str, Any] | None) -> None:
        caps = caps or {}
        self.bounding = _mask(caps.get("bounding"))
        self.effective = _mask(caps.get("effective"))
        self.permitted = _mask(caps.get("permitted"))
        self.inheritable = _mask(caps.get("inheritable"))
        self.ambient = [CAPABILITIES[n] for n in caps.get("ambient") or [] if n in CAPABILITIES]
        self.last = last_cap()

    def drop_bounding(self) -> None:
        for cap in range(self.last + 1):
            if not self.bounding & (1 << cap):
                sys_.prctl(sys_.PR_CAPBSET_DROP, cap)

    def apply(self) -> None:
        sys_.capset(self.effective, self.permitted, self.inheritable)
        sys_.prctl(sys_.PR_CAP_AMBIENT, sys_.PR_CAP_AMBIENT_CLEAR_ALL)
        for cap in self.ambient:
            try:
                sys_.prctl(sys_.PR_CAP_AMBIENT, sys_.PR_CAP_AMBIENT_RAISE, cap)
            except OSError:
                pass  # as runc: ambient needs the cap in permitted and inheritable; otherwise it is skipped
