"""Mount ``options`` as the kernel takes them: runc's ``parseMountOptions``, shared by validation and mounting.

Its own module because the container's init needs it and ``spec`` (the validator) imports ``json`` and ``re``.
"""

from __future__ import annotations

from sampan.runtime.constants import (
    MOUNT_ATTR__ATIME,
    MOUNT_COPY_UP,
    MOUNT_FLAGS,
    MOUNT_PROPAGATION,
    MOUNT_REC_ATTRS,
)


class MountOptions:
    """A mount's ``options`` split the way the kernel takes them (runc's ``parseMountOptions``).

    A plain class, not a NamedTuple or dataclass: the container's init imports this module, and those would
    import ``typing`` or ``dataclasses`` (several milliseconds) for one record.
    """

    __slots__ = ("flags", "clear_flags", "propagation", "data", "rec_attr_set", "rec_attr_clear", "copy_up")

    def __init__(self, flags: int, clear_flags: int, propagation: list[int], data: str, rec_attr_set: int,
                 rec_attr_clear: int, copy_up: bool) -> None:
        self.flags = flags  # MS_* for mount(2)
        self.clear_flags = clear_flags  # MS_* an option turned off ("rw", "suid"): a remount must keep them off
        self.propagation = propagation  # one mount(2) call each, after the mount itself
        self.data = data  # what the filesystem parses itself ("mode=755,size=65536k")
        self.rec_attr_set = rec_attr_set  # MOUNT_ATTR_* to set with mount_setattr(AT_RECURSIVE) ("rro", ...)
        self.rec_attr_clear = rec_attr_clear  # MOUNT_ATTR_* to clear likewise
        self.copy_up = copy_up  # "tmpcopyup": copy the mount point's content into the new tmpfs

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MountOptions) and self._fields() == other._fields()

    def __repr__(self) -> str:
        return "MountOptions(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"


def parse_mount_options(options: list[str]) -> MountOptions:
    """Split options like runc does, later options winning, so a mount means the same under both runtimes."""
    flags = clear_flags = rec_set = rec_clear = 0
    propagation: list[int] = []
    data: list[str] = []
    copy_up = False
    for option in options:
        if option in MOUNT_FLAGS:
            clears, flag = MOUNT_FLAGS[option]
            if clears:
                flags, clear_flags = flags & ~flag, clear_flags | flag
            else:
                flags, clear_flags = flags | flag, clear_flags & ~flag
        elif option in MOUNT_PROPAGATION:
            propagation.append(MOUNT_PROPAGATION[option])
        elif option in MOUNT_REC_ATTRS:
            clears, attr = MOUNT_REC_ATTRS[option]
            if clears:
                rec_clear |= attr
            else:
                rec_set |= attr
                # mount_setattr(2): an access-time mode is only set when the whole atime field is cleared too.
                if attr & MOUNT_ATTR__ATIME == attr:
                    rec_clear |= MOUNT_ATTR__ATIME
        elif option == MOUNT_COPY_UP:
            copy_up = True
        else:
            data.append(option)
    return MountOptions(flags, clear_flags, propagation, ",".join(data), rec_set, rec_clear, copy_up)
