"""libnftables through ctypes: the same library ``nft`` is, called in-process (no fork/exec per change).

Debian's python3-nftables binds the same five functions; it is not importable from a virtual environment, so
this is that binding's core. Commands go in as nftables JSON (``nft -j`` syntax) and come out as JSON. When the
library is missing, the ``nft`` program is run instead (same input, same output).
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
from functools import cache

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_NFT_CTX_OUTPUT_HANDLE = 1 << 3
_NFT_CTX_OUTPUT_JSON = 1 << 4


class NftError(OSError):
    """nftables refused a command; the message is nft's own."""


@cache
def _library() -> ctypes.CDLL | None:
    for name in ("libnftables.so.1", "libnftables.so"):
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError:
            continue
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        return lib
    return None


_contexts: dict[int, int] = {}


def _context() -> int:
    """One context per process: its netlink socket is an fd, which a forked child may have closed."""
    pid = os.getpid()
    ctx = _contexts.get(pid)
    if ctx is None:
        lib = _library()
        assert lib is not None
        _contexts.clear()  # an inherited context's socket is not ours to use (nor to free: it may be closed)
        ctx = lib.nft_ctx_new(0)
        lib.nft_ctx_output_set_flags(ctx, _NFT_CTX_OUTPUT_JSON | _NFT_CTX_OUTPUT_HANDLE)
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        _contexts[pid] = ctx
    return ctx


def run(commands: dict[str, Any] | str) -> dict[str, Any] | None:
    """Run one nftables JSON document (``{"nftables": [...]}``) or a text command; returns nft's JSON output
    (for list commands) or None. Raises ``NftError`` with nft's message when it refuses."""
    text = commands if isinstance(commands, str) else json.dumps(commands)
    lib = _library()
    if lib is None or os.environ.get("SAMPAN_NFT_CLI"):
        return _run_cli(text)
    ctx = _context()
    rc = lib.nft_run_cmd_from_buffer(ctx, text.encode())
    out = lib.nft_ctx_get_output_buffer(ctx) or b""
    err = lib.nft_ctx_get_error_buffer(ctx) or b""
    if rc != 0:
        raise NftError(err.decode(errors="replace").strip() or f"nft failed ({rc})")
    return json.loads(out) if out.strip() else None


def _run_cli(text: str) -> dict[str, Any] | None:
    proc = subprocess.run(["nft", "-j", "-f", "-"], input=text.encode(), capture_output=True, check=False)
    if proc.returncode != 0:
        raise NftError(proc.stderr.decode(errors="replace").strip() or f"nft failed ({proc.returncode})")
    return json.loads(proc.stdout) if proc.stdout.strip() else None
