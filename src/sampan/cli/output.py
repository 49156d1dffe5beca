"""Output helpers shared by commands: JSON like Docker's, confirmation prompts, atomic output files."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

from sampan.errors import InvalidArgument


def print_json(value: Any) -> None:
    """Docker's indented JSON (``inspect``): 4 spaces, non-ASCII kept."""
    print(json.dumps(value, indent=4, ensure_ascii=False))


def confirm(question: str, force: bool) -> bool:
    """Docker's ``[y/N]`` prompt; anything but y/yes (including no input at all) declines."""
    if force:
        return True
    sys.stdout.write(f"{question}\nAre you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


@contextmanager
def output_file(path: str | None) -> Iterator[BinaryIO]:
    """Write to ``path`` atomically (temp file + rename, removed on failure), or to stdout when None."""
    if path is None:
        if sys.stdout.isatty():
            raise InvalidArgument("cowardly refusing to save to a terminal. Use the -o flag or redirect")
        sys.stdout.flush()
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise InvalidArgument(f"unable to write to {path}: directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=".sampan-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextmanager
def input_file(path: str | None) -> Iterator[BinaryIO]:
    """Read ``path``, or stdin for None / "-"; a missing file is one clear error."""
    if path in (None, "-"):
        yield sys.stdin.buffer
        return
    try:
        f = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise InvalidArgument(f"open {path}: no such file or directory") from None
    except IsADirectoryError:
        raise InvalidArgument(f"{path} is a directory, not an archive") from None
    with f:
        yield f


def print_listing(fmt: str, quiet: bool, rows: list[dict[str, Any]], key: str, *, table_default: str,
                  headers: dict[str, str]) -> None:
    """What an ``ls`` prints: with ``-q`` the ``key`` column alone, else the rows as ``--format`` says (the
    table ``table_default`` by default, with Docker's ``headers``); nothing for no rows but a table's header."""
    from sampan.cli.gotemplate import format_rows

    if quiet:
        if rows:
            print("\n".join(row[key] for row in rows))
        return
    out = format_rows(fmt, rows, table_default=table_default, headers=headers)
    if out:
        print(out)
