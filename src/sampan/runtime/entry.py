"""The ``sampan-runc`` console entry, importing nothing until the command line is known.

The read-only re-exec against CVE-2019-5736 is done by the container's init alone (see ``exe``), not here.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from sampan.runtime import cli

    return cli.main(sys.argv[1:] if argv is None else argv)


def entry() -> None:
    """The ``sampan-runc`` command: ``main``, then out without the interpreter's teardown (see ``quick_exit``)."""
    from sampan.quick_exit import quick_exit

    quick_exit(main())
