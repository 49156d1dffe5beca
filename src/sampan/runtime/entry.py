"""The ``sampan-runc`` console entry: decide on the read-only re-exec before importing anything else.

Verbs that create or enter a container re-execute once from a read-only view of the interpreter (see ``exe``);
doing that first means the first process pays only for this module, not for the CLI's imports twice.
"""

from __future__ import annotations

import sys

_GLOBAL_VALUES = ("--root", "--log", "--log-format", "--rootless", "--criu")
_REEXEC_VERBS = ("create", "run", "exec")


def find_verb(argv: list[str]) -> str | None:
    """The verb is the first word that is not a global option or its value."""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word in _GLOBAL_VALUES:
            skip = True
        elif not word.startswith("-"):
            return word
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    verb = find_verb(argv)
    if verb in _REEXEC_VERBS:
        from sampan.errors import SampanError
        from sampan.runtime.exe import ensure_readonly_exe

        try:
            ensure_readonly_exe()
        except (SampanError, OSError) as e:
            print(f"sampan-runc: {e}", file=sys.stderr)
            return 1
    from sampan.runtime import cli

    return cli.main(argv, verb)
