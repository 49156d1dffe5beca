"""The build context: a directory on the host, ``.dockerignore``, and the sources a COPY/ADD names in it.

The context is the user's own directory, so it is trusted as host input (like ``cp``'s SRC), but no source may
name a path outside it: sources are cleaned lexically (``..`` cannot climb above the context) and a source whose
symlinks resolve outside the context is refused, as Docker refuses it ("forbidden path outside the build
context").

``.dockerignore`` (or ``<Dockerfile>.dockerignore`` next to the Dockerfile) follows moby's ``patternmatcher``:
one pattern a line, ``#`` comments, patterns cleaned and made relative, ``*``/``?``/``[...]`` not crossing ``/``,
``**`` any number of directories, ``!`` re-including; the last pattern that matches a path, or any of its parent
directories, decides.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import posixpath
import re
import stat
import time

from sampan.errors import InvalidArgument, NotFound
from sampan.patterns import glob_regex


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(glob_regex(pattern, dockerignore=True) + "$")


class Ignore:
    """The ``.dockerignore`` rules of a context."""

    def __init__(self, lines: list[str]) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            if negate:
                line = line[1:].strip()
            line = posixpath.normpath(line).lstrip("/")
            if line in ("", "."):
                continue
            self.rules.append((negate, _pattern_regex(line)))
        self.has_exceptions = any(negate for negate, _ in self.rules)

    def excluded(self, rel: str) -> bool:
        if not self.rules:
            return False
        parents = []
        parts = rel.split("/")
        for i in range(1, len(parts) + 1):
            parents.append("/".join(parts[:i]))
        result = False
        for negate, regex in self.rules:
            if any(regex.match(p) for p in parents):
                result = not negate
        return result


class Source:
    """One file or directory a COPY/ADD copies: its context-relative path and its lstat (after following the
    source itself, when it is a symlink inside the context). A plain class: a dataclass costs about a millisecond
    at import, and a fully cached rebuild is mostly start-up."""

    __slots__ = ("path", "rel", "st")

    def __init__(self, rel: str, path: str, st: os.stat_result) -> None:
        self.rel, self.path, self.st = rel, path, st


def _read_text(root: str, path: str) -> str:
    """A file of the context read inside it (``openat2`` RESOLVE_IN_ROOT): a context from an API client may hold
    a symlink to a host file. A path outside the context (``-f`` on the CLI) is the user's own, read as is."""
    real_root = os.path.realpath(root)
    absolute = os.path.abspath(path)
    if absolute != real_root and not absolute.startswith(real_root + "/") and \
            not absolute.startswith(os.path.abspath(root) + "/"):
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    base = real_root if absolute.startswith(real_root + "/") else os.path.abspath(root)
    parent = os.path.dirname(absolute)
    if not os.path.lexists(absolute) and os.path.realpath(parent) == parent:
        # No symlink on the way and nothing there: resolved inside the root it is missing too (the usual
        # context has no .dockerignore; this spares loading the syscall wrappers).
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
    from sampan._linux.syscalls import RESOLVE_IN_ROOT, openat2

    root_fd = os.open(base, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = openat2(root_fd, os.path.relpath(absolute, base), os.O_RDONLY | os.O_CLOEXEC, RESOLVE_IN_ROOT)
    finally:
        os.close(root_fd)
    with os.fdopen(fd, encoding="utf-8", errors="surrogateescape") as f:
        return f.read()


class Context:
    def __init__(self, root: str, ignore_lines: list[str] | None = None) -> None:
        self.root = os.path.realpath(root)
        self.ignore = Ignore(ignore_lines or [])

    @classmethod
    def open(cls, root: str, dockerfile: str | None = None) -> Context:
        lines: list[str] = []
        candidates = [dockerfile + ".dockerignore"] if dockerfile else []
        candidates.append(os.path.join(root, ".dockerignore"))
        for path in candidates:
            try:
                lines = _read_text(root, path).splitlines()
                break
            except FileNotFoundError:
                continue
        return cls(root, lines)

    def _clean(self, src: str, what: str) -> str:
        rel = posixpath.normpath("/" + src).lstrip("/")
        if posixpath.normpath(src.lstrip("/")).startswith(".."):
            raise InvalidArgument(f"{what} failed: forbidden path outside the build context: {src} ()")
        return rel

    def _inside(self, path: str, src: str, what: str) -> str:
        real = os.path.realpath(path)
        if real != self.root and not real.startswith(self.root + "/"):
            raise InvalidArgument(f"{what} failed: forbidden path outside the build context: {src} ()")
        return real

    def sources(self, src: str, what: str) -> list[Source]:
        """The sources ``src`` names (a path or a wildcard pattern), in name order; raises NotFound."""
        rel = self._clean(src, what)
        if not any(c in rel for c in "*?["):
            path = os.path.join(self.root, rel) if rel else self.root
            if rel and self.ignore.excluded(rel) or not os.path.lexists(path):
                raise NotFound(f"{what} failed: file not found in build context or excluded by .dockerignore: "
                               f"stat {rel or '.'}: file does not exist")
            real = self._inside(path, src, what)
            return [Source(rel, real, os.stat(real))]
        matches: list[str] = [""]
        for part in rel.split("/"):
            nxt = []
            for prefix in matches:
                directory = os.path.join(self.root, prefix) if prefix else self.root
                if not any(c in part for c in "*?["):
                    candidate = posixpath.join(prefix, part) if prefix else part
                    if os.path.lexists(os.path.join(self.root, candidate)):
                        nxt.append(candidate)
                    continue
                try:
                    names = sorted(os.listdir(directory))
                except (NotADirectoryError, FileNotFoundError):
                    continue
                for name in names:
                    if fnmatch.fnmatchcase(name, part):
                        nxt.append(posixpath.join(prefix, name) if prefix else name)
            matches = nxt
        out = []
        for match in matches:
            if self.ignore.excluded(match):
                continue
            real = self._inside(os.path.join(self.root, match), src, what)
            out.append(Source(match, real, os.stat(real)))
        if not out:
            raise NotFound(f"{what} failed: no source files were specified")
        return out

    def walk(self, source: Source) -> list[tuple[str, str, os.stat_result]]:
        """(path relative to the source, host path, lstat) for everything below a directory source that is not
        ignored, parents before children, in name order."""
        out: list[tuple[str, str, os.stat_result]] = []
        stack = [("", source.path, source.rel)]
        while stack:
            rel, path, ctx_rel = stack.pop()
            try:
                names = sorted(os.listdir(path), reverse=True)
            except OSError:
                continue
            children = []
            for name in names:
                child_ctx = posixpath.join(ctx_rel, name) if ctx_rel else name
                child_path = os.path.join(path, name)
                st = os.lstat(child_path)
                excluded = self.ignore.excluded(child_ctx)
                if excluded and not (stat.S_ISDIR(st.st_mode) and self.ignore.has_exceptions):
                    continue
                child_rel = posixpath.join(rel, name) if rel else name
                children.append((child_rel, child_path, child_ctx, st, excluded))
            for child_rel, child_path, child_ctx, st, excluded in reversed(children):
                if not excluded:
                    out.append((child_rel, child_path, st))
            for child_rel, child_path, child_ctx, st, _excluded in children:
                if stat.S_ISDIR(st.st_mode):
                    stack.append((child_rel, child_path, child_ctx))
        out.sort(key=lambda item: item[0].split("/"))
        return out


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def memo_key(st: os.stat_result) -> str:
    """What identifies a file's content without reading it, as git's index does: the inode, size, mtime and
    ctime (which no user can set back). Only a memo of digests uses it: keys stay content hashes."""
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def entry_digest(h: hashlib._Hash, name: str, st: os.stat_result, path: str,  # type: ignore[name-defined]
                 memo: dict[str, str] | None = None) -> None:
    """Feed one entry into a content hash: name, type, permissions and content (never times or owners).
    ``memo`` maps ``memo_key`` to digests of files hashed before (a rebuild does not re-read the context)."""
    h.update(f"{name}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode):o}\0".encode("utf-8",
                                                                                        "surrogateescape"))
    if stat.S_ISREG(st.st_mode):
        if memo is None:
            h.update(file_digest(path).encode())
        else:
            key = memo_key(st)
            digest = memo.get(key)
            if digest is None:
                digest = file_digest(path)
                if st.st_ctime < time.time() - 2:  # "racily clean" (git): a write within the clock's grain
                    memo[key] = digest
            h.update(digest.encode())
    elif stat.S_ISLNK(st.st_mode):
        h.update(os.readlink(path).encode("utf-8", "surrogateescape"))
    h.update(b"\n")
