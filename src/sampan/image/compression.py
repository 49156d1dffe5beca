"""Layer compression: detect gzip/zstd by magic bytes and stream through the fastest decoder available.

gzip goes through ISA-L (``isal``) in a reader thread, so inflating overlaps with unpacking and escapes the GIL;
zstd goes through ``zstandard``. Detection is by content, not by media type, because archives (docker save) do not
always say what their layers are.
"""

from __future__ import annotations

import io
from typing import BinaryIO

from sampan.errors import Unsupported

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def detect(head: bytes) -> str:
    """"gzip", "zstd" or "" (uncompressed) from the first bytes of a stream."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head[:6] in (b"BZh91A", b"\xfd7zXZ\x00"):
        raise Unsupported("bzip2/xz compressed layers are not supported")
    return ""


def open_decompressed(raw: BinaryIO, compression: str | None = None) -> BinaryIO:
    """Wrap ``raw`` so reads yield the uncompressed bytes. ``None`` means detect from the content."""
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw, 1 << 20)  # type: ignore[arg-type]
    if compression is None:
        compression = detect(buffered.peek(6)[:6])
    if compression == "gzip":
        from isal import igzip_threaded

        return igzip_threaded.open(buffered, "rb")  # type: ignore[return-value]
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(buffered, read_size=1 << 20)  # type: ignore[return-value]
    if compression:
        raise Unsupported(f"unsupported layer compression {compression!r}")
    return buffered

