"""sampan: a Docker-compatible, daemonless container engine for Linux.

The package root stays import-light: ``import sampan`` must not pull in the engine, so that the CLI's start-up
stays fast. Public names are resolved lazily on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
API_VERSION = "1.44"

if TYPE_CHECKING:
    from sampan.engine.context import Engine

__all__ = ["API_VERSION", "Engine", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Engine":
        from sampan.engine.context import Engine

        return Engine
    raise AttributeError(f"module 'sampan' has no attribute {name!r}")
