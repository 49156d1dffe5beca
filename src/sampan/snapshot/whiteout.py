"""Whiteout naming rules, and conversion between the OCI form and the overlayfs form.

A layer deletes what lower layers hold with whiteouts. In a layer tar (OCI image spec, "Whiteouts") they are
names: ``dir/.wh.name`` hides ``dir/name``, and ``dir/.wh..wh..opq`` makes ``dir`` opaque (hides every lower
entry under it). Overlayfs, which stacks the unpacked layers, spells the same things differently: a character
device 0/0 named ``dir/name``, and the xattr ``trusted.overlay.opaque="y"`` on ``dir``. Unpacking converts OCI
to overlay; the layer-diff writer converts back. Both directions live here so the two cannot drift apart.

Names may be ``str`` or ``bytes``; each function answers in the type it was given (the unpacker works in bytes,
so that no file name has to be decodable).
"""

from __future__ import annotations

import errno
import os
import stat
from typing import AnyStr

from sampan.errors import UnsafeContent

WHITEOUT_PREFIX = ".wh."
# Names starting ".wh..wh." are reserved for metadata (aufs used ".wh..wh.plnk", ".wh..wh.aufs"); the only one
# with a meaning in OCI layers is the opaque marker.
WHITEOUT_META_PREFIX = ".wh..wh."
OPAQUE_MARKER = ".wh..wh..opq"

OPAQUE_XATTR = "trusted.overlay.opaque"
# Exactly "y": since Linux 6.7 overlayfs also writes "x" on a directory that merely *contains* xwhiteouts,
# which is not opaque.
OPAQUE_VALUE = b"y"
# Overlayfs whiteouts are character devices with this device number.
WHITEOUT_RDEV = 0


def _like(sample: AnyStr, text: str) -> AnyStr:
    """``text`` in the same string type as ``sample``."""
    return text if isinstance(sample, str) else text.encode()


def _split(name: AnyStr) -> tuple[AnyStr, AnyStr]:
    """(parent, base) of a slash-separated name, ignoring trailing slashes; parent has no trailing slash."""
    slash = _like(name, "/")
    parent, _, base = name.rstrip(slash).rpartition(slash)
    return parent, base


def _join(parent: AnyStr, base: AnyStr) -> AnyStr:
    return parent + _like(parent, "/") + base if parent else base


def is_whiteout_name(name: AnyStr) -> bool:
    """True when the last component of ``name`` starts with ``.wh.`` (a whiteout, marker or reserved name)."""
    return _split(name)[1].startswith(_like(name, WHITEOUT_PREFIX))


def is_opaque_marker(name: AnyStr) -> bool:
    """True when ``name`` is an opaque-directory marker (``[dir/].wh..wh..opq``)."""
    return _split(name)[1] == _like(name, OPAQUE_MARKER)


def is_reserved_name(name: AnyStr) -> bool:
    """True for ``.wh..wh.*`` names other than the opaque marker: metadata to skip, never to extract."""
    base = _split(name)[1]
    return base.startswith(_like(name, WHITEOUT_META_PREFIX)) and base != _like(name, OPAQUE_MARKER)


def oci_whiteout_target(name: AnyStr) -> AnyStr | None:
    """The path an OCI whiteout entry hides (``"a/.wh.b"`` → ``"a/b"``), or None if ``name`` is not one.

    Opaque markers and reserved ``.wh..wh.*`` names are not plain whiteouts and give None. A whiteout whose
    target would be empty, ``.`` or ``..`` can only be an attempt to delete the parent or the root, so it
    raises UnsafeContent instead of returning a path that would climb.
    """
    parent, base = _split(name)
    if not base.startswith(_like(name, WHITEOUT_PREFIX)) or base.startswith(_like(name, WHITEOUT_META_PREFIX)):
        return None
    target = base[len(WHITEOUT_PREFIX):]
    if target in (_like(name, ""), _like(name, "."), _like(name, "..")):
        raise UnsafeContent(f"whiteout {os.fsdecode(name)!r} names no entry")
    return _join(parent, target)


def opaque_marker_dir(name: AnyStr) -> AnyStr | None:
    """The directory an opaque marker applies to (``"a/b/.wh..wh..opq"`` → ``"a/b"``; root is ``""``)."""
    parent, base = _split(name)
    return parent if base == _like(name, OPAQUE_MARKER) else None


def oci_whiteout_name(path: AnyStr) -> AnyStr:
    """The OCI whiteout entry name that hides ``path`` (``"a/b"`` → ``"a/.wh.b"``)."""
    parent, base = _split(path)
    if not base or base in (_like(path, "."), _like(path, "..")):
        raise ValueError(f"cannot white out {path!r}")
    return _join(parent, _like(path, WHITEOUT_PREFIX) + base)


def oci_opaque_marker(directory: AnyStr) -> AnyStr:
    """The OCI opaque marker entry name for ``directory`` (``""`` is the layer root)."""
    return _join(directory.rstrip(_like(directory, "/")), _like(directory, OPAQUE_MARKER))


def is_overlay_whiteout(st: os.stat_result) -> bool:
    """True when ``st`` (from ``lstat``) is an overlayfs whiteout: a character device numbered 0/0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == WHITEOUT_RDEV


def is_overlay_opaque(dir_fd: int) -> bool:
    """True when the directory open as ``dir_fd`` (not O_PATH) carries overlayfs' opaque xattr set to "y"."""
    try:
        return os.getxattr(dir_fd, OPAQUE_XATTR) == OPAQUE_VALUE
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP):
            return False
        raise
