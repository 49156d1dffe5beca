"""OCI hooks: run each with the container state on stdin, its own args/env, and its timeout.

``json`` and ``subprocess`` are imported when there are hooks to run: most containers have none, and the
container's init imports this module (it preloads those two when its spec has hooks; see ``init._preload``).
"""

from __future__ import annotations

from sampan.errors import SampanError

TYPE_CHECKING = False  # typing/collections.abc are not imported at run time: start-up cost
if TYPE_CHECKING:
    from typing import Any


class HookError(SampanError):
    pass


def run_hooks(spec: dict[str, Any], stage: str, state: dict[str, Any]) -> None:
    """Run the hooks of ``stage`` in order; the first failure stops the rest (the caller decides what follows)."""
    hooks = (spec.get("hooks") or {}).get(stage) or []
    if not hooks:
        return
    import json
    import subprocess

    for i, hook in enumerate(hooks):
        args = hook.get("args") or [hook["path"]]
        try:
            proc = subprocess.run(args, executable=hook["path"], input=json.dumps(state).encode(),
                                  env=_env(hook.get("env")), capture_output=True, timeout=hook.get("timeout"),
                                  check=False)
        except subprocess.TimeoutExpired:
            raise HookError(f"{stage} hook #{i} ({hook['path']}) timed out after {hook['timeout']}s") from None
        except OSError as e:
            raise HookError(f"{stage} hook #{i} ({hook['path']}): {e.strerror}") from None
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise HookError(f"{stage} hook #{i} ({hook['path']}) exited with {proc.returncode}: {detail[0]}")


def _env(env: list[str] | None) -> dict[str, str] | None:
    """A hook without ``env`` inherits the runtime's environment (as with runc); ``[]`` means an empty one."""
    if env is None:
        return None
    return dict(item.split("=", 1) for item in env if "=" in item)
