"""Go's glob patterns as Python regular expressions, for the two places Docker uses them.

``path.Match`` (image reference filters): ``*`` and ``?`` never cross a ``/``, ``[...]`` is a class (``[^...]``
negated), ``\\`` escapes. moby's patternmatcher (``.dockerignore``) adds ``**`` (any number of directories) and
``[!...]`` negation, and reads an unclosed ``[`` as itself where ``path.Match`` refuses the pattern.
"""

from __future__ import annotations

import re


def glob_regex(pattern: str, *, dockerignore: bool = False) -> str:
    """The regex source for ``pattern`` (unanchored: callers anchor it as their matcher does). Raises
    ValueError for an unclosed ``[`` unless ``dockerignore``."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*" and dockerignore and pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                out.append("(.*/)?")
                i += 1
            else:
                out.append(".*")
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0 and not dockerignore:
                raise ValueError(f"unclosed '[' in {pattern!r}")
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:end]
                negated = body.startswith("^") or (dockerignore and body.startswith("!"))
                out.append("[" + ("^" + body[1:] if negated else body) + "]")
                i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)
