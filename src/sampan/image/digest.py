"""Content digests ("sha256:<hex>") and the chain IDs that name unpacked layer stacks.

Digests are the identity of everything in the store, so they are validated strictly before they are ever used to
build a path: a digest from an untrusted manifest must not be able to name a file outside ``blobs/sha256``.
"""

from __future__ import annotations

import re

from sampan.errors import InvalidArgument, Unsupported

_DIGEST_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_SHA256_RE = re.compile(r"sha256:[0-9a-f]{64}")
_HEX64_RE = re.compile(r"[0-9a-f]{64}")


def validate(digest: str) -> str:
    """Return ``digest`` if it is a well-formed sha256 digest, else raise; the only algorithm sampan stores."""
    if not isinstance(digest, str) or not _SHA256_RE.fullmatch(digest):
        if isinstance(digest, str) and is_other_algorithm(digest):
            raise Unsupported(f"unsupported digest algorithm: {digest.split(':', 1)[0]}")
        raise InvalidArgument(f"invalid digest: {str(digest)[:100]!r}")
    return digest


def is_other_algorithm(text: str) -> bool:
    """A well-formed digest of an algorithm sampan does not store (sha512, ...)."""
    return bool(_DIGEST_RE.fullmatch(text)) and not text.startswith("sha256:")


def is_digest(text: str) -> bool:
    return bool(_SHA256_RE.fullmatch(text))


def is_hex_id(text: str) -> bool:
    """True for a bare 64-hex image ID, which Docker refuses as a repository name."""
    return bool(_HEX64_RE.fullmatch(text))


def hex_of(digest: str) -> str:
    return validate(digest).split(":", 1)[1]


def sha256_bytes(data: bytes) -> str:
    import hashlib  # here: loading OpenSSL costs 2 ms, and most commands hash nothing

    return "sha256:" + hashlib.sha256(data).hexdigest()


def chain_id(parent: str | None, diff_id: str) -> str:
    """OCI chain IDs: ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    return diff_id if parent is None else sha256_bytes(f"{parent} {diff_id}".encode())


def chain_ids(diff_ids: list[str]) -> list[str]:
    chains: list[str] = []
    for diff_id in diff_ids:
        chains.append(chain_id(chains[-1] if chains else None, validate(diff_id)))
    return chains


def short_id(digest: str, length: int = 12) -> str:
    """Docker's truncated ID: the first 12 hex characters, without the algorithm."""
    return digest.split(":", 1)[-1][:length]
