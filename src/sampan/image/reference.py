"""Image references with Docker's full grammar and normalisation.

``[registry[:port]/]path[:tag][@sha256:digest]``. A reference without a registry lives on ``docker.io``, and a
one-component Docker Hub name gains ``library/``. Every reference is stored fully normalised
(``docker.io/library/busybox:latest``) and shown in Docker's "familiar" form (``busybox:latest``).
"""

from __future__ import annotations

import re

from sampan.errors import InvalidReference
from sampan.image import digest as _digest

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_DOMAIN = rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_PATH = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_RE = re.compile(_DOMAIN)
_REMAINDER_RE = re.compile(rf"({_PATH})(?::({_TAG}))?(?:@({_DIGEST}))?")
_TAG_RE = re.compile(_TAG)


class Reference:
    """A normalised image reference. ``tag`` and ``digest`` are both optional, as in Docker. An immutable value
    (equal and hashed by its parts); a plain class because a dataclass costs about a millisecond at every start."""

    __slots__ = ("digest", "domain", "path", "tag")

    domain: str
    path: str
    tag: str | None
    digest: str | None

    def __init__(self, domain: str, path: str, tag: str | None = None, digest: str | None = None) -> None:
        for key, value in (("domain", domain), ("path", path), ("tag", tag), ("digest", digest)):
            object.__setattr__(self, key, value)

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {key!r}: a Reference is immutable")

    def _parts(self) -> tuple[str, str, str | None, str | None]:
        return self.domain, self.path, self.tag, self.digest

    def __eq__(self, other: object) -> bool:
        return other.__class__ is self.__class__ and self._parts() == other._parts()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._parts())

    def __repr__(self) -> str:
        return f"Reference(domain={self.domain!r}, path={self.path!r}, tag={self.tag!r}, digest={self.digest!r})"

    @property
    def name(self) -> str:
        """The full repository name: ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """Docker's short form of the repository: ``busybox``, ``user/app``, ``localhost:5000/x``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        if self.path.startswith(OFFICIAL_REPO_PREFIX) and "/" not in self.path[len(OFFICIAL_REPO_PREFIX):]:
            return self.path[len(OFFICIAL_REPO_PREFIX):]
        return self.path

    def familiar(self) -> str:
        return self.familiar_name + self._suffix()

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.name + self._suffix()

    def with_default_tag(self) -> Reference:
        """Docker's TagNameOnly: a name with neither tag nor digest means ``:latest``."""
        if self.tag is None and self.digest is None:
            return Reference(self.domain, self.path, DEFAULT_TAG)
        return self

    def tagged(self, tag: str) -> Reference:
        return Reference(self.domain, self.path, tag)

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.domain, self.path, None, digest)

    def repository(self) -> Reference:
        return Reference(self.domain, self.path)


def _split_domain(name: str) -> tuple[str, str]:
    """Docker's splitDockerDomain: the first component is a registry only if it looks like a host."""
    first, sep, rest = name.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost" and first.lower() == first):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def parse(text: str) -> Reference:
    """Parse a reference the way ``docker pull``/``docker tag`` do (ParseNormalizedNamed)."""
    if not isinstance(text, str) or not text:
        raise InvalidReference("invalid reference format: repository name must have at least one component")
    if _digest.is_hex_id(text):
        raise InvalidReference(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings")
    domain, remainder = _split_domain(text)
    path_part = remainder.split("@", 1)[0].split(":", 1)[0]
    if path_part.lower() != path_part:
        raise InvalidReference(
            f"invalid reference format: repository name ({remainder.split(':')[0].split('@')[0]}) "
            "must be lowercase")
    match = _REMAINDER_RE.fullmatch(remainder)
    if not match or not _DOMAIN_RE.fullmatch(domain):
        raise InvalidReference(f"invalid reference format: {text!r}")
    path, tag, digest = match.groups()
    if len(domain) + 1 + len(path) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(
            f"invalid reference format: repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters")
    if digest is not None:
        _validate_digest(digest)
    return Reference(domain, path, tag, digest)


def _validate_digest(digest: str) -> None:
    algorithm, _, hexpart = digest.partition(":")
    if algorithm == "sha256" and len(hexpart) != 64:
        raise InvalidReference(f"invalid reference format: invalid checksum digest length in {digest!r}")
    if algorithm not in ("sha256", "sha384", "sha512"):
        raise InvalidReference(f"invalid reference format: unsupported digest algorithm {algorithm!r}")
    if hexpart.lower() != hexpart:
        raise InvalidReference(f"invalid reference format: invalid checksum digest format in {digest!r}")


def parse_tagged(text: str) -> Reference:
    """A reference with the default tag applied: what ``pull``, ``run`` and ``tag``'s source mean."""
    return parse(text).with_default_tag()


def parse_tag_target(text: str) -> Reference:
    """The target of ``docker tag``: a name with an optional tag; a digest is refused as Docker does."""
    ref = parse(text)
    if ref.digest is not None:
        raise InvalidReference("refusing to create a tag with a digest reference")
    return ref.with_default_tag()


def is_valid_tag(tag: str) -> bool:
    return bool(_TAG_RE.fullmatch(tag))
