"""A Dockerfile build context on disk, for the build tests."""

from __future__ import annotations

from pathlib import Path


def make_context(tmp_path: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    """``tmp_path/ctx`` with ``dockerfile`` as its Dockerfile and ``files`` (relative path -> text) beside it."""
    ctx = tmp_path / "ctx"
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, text in (files or {}).items():
        (ctx / name).parent.mkdir(parents=True, exist_ok=True)
        (ctx / name).write_text(text)
    return ctx
