"""The exception hierarchy every layer raises and every front end maps in one place.

Front ends never inspect messages: the CLI turns ``exit_code`` into the process status and prints the message as
one line; the API service (later) turns ``http_status`` into Docker's error JSON. Subsystems raise the most
specific class so both mappings stay correct without special cases.
"""

from __future__ import annotations


class SampanError(Exception):
    """Base class: a failure the user should see as one clear line."""

    exit_code = 1
    http_status = 500


class UsageError(SampanError):
    """Bad command-line usage (unknown flag, missing argument): Docker exits 125 for these."""

    exit_code = 125
    http_status = 400


class InvalidArgument(SampanError):
    """A value the user gave is malformed (bad reference, bad filter, bad size)."""

    http_status = 400


class InvalidReference(InvalidArgument):
    """An image reference that does not follow Docker's grammar."""


class NotFound(SampanError):
    """The named object (image, blob, snapshot, container) does not exist."""

    http_status = 404


class Conflict(SampanError):
    """The operation conflicts with current state (image in use, needs --force)."""

    http_status = 409


class CorruptContent(SampanError):
    """Content failed verification: digest or size mismatch, truncated or malformed archive."""

    http_status = 400


class UnsafeContent(CorruptContent):
    """Untrusted content tried to escape its root or do something never allowed."""


class Unsupported(SampanError):
    """A format, media type or feature sampan does not handle."""

    http_status = 400


class Unauthorized(SampanError):
    """A registry refused the credentials, or wants some and none were given."""

    http_status = 401


class RegistryError(SampanError):
    """A registry could not be reached, or answered outside the distribution protocol (HTML, bad status)."""

    http_status = 502


class PreflightError(SampanError):
    """The host lacks something sampan needs (root, overlayfs, namespaces)."""

    exit_code = 125


class InternalError(SampanError):
    """A bug or an unexpected system failure (kept distinct so tests can tell them apart)."""
