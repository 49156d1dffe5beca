"""sampan: a Docker-compatible, daemonless container engine for Linux.

The package root stays import-light: ``import sampan`` must not pull in the engine, so that the CLI's start-up
stays fast. Public names are resolved lazily on first access.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs every command several milliseconds
if TYPE_CHECKING:
    from typing import Any

    from sampan.engine.context import Engine

__version__ = "0.1.0"
API_VERSION = "1.44"

__all__ = ["API_VERSION", "Engine", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Engine":
        from sampan.engine.context import Engine

        return Engine
    raise AttributeError(f"module 'sampan' has no attribute {name!r}")
