"""Go's glob patterns as sampan reads them: path.Match for reference filters, moby's patternmatcher for
.dockerignore (``**``, ``[!...]``, an unclosed ``[`` as itself)."""

from __future__ import annotations

import re

import pytest

from sampan.patterns import glob_regex


@pytest.mark.parametrize(("pattern", "name", "matches"), [
    ("busy*", "busybox", True), ("*", "a/b", False), ("a/?", "a/b", True), ("a?", "a/", False),
    ("[a-c]x", "bx", True), ("[^a-c]x", "bx", False), ("[^a-c]x", "dx", True), ("[!a]x", "!x", True),
    ("a\\*", "a*", True), ("a\\*", "ab", False), ("a.b", "axb", False),
])
def test_path_match(pattern: str, name: str, matches: bool) -> None:
    assert bool(re.fullmatch(glob_regex(pattern), name)) is matches


def test_path_match_refuses_an_unclosed_bracket() -> None:
    with pytest.raises(ValueError, match="unclosed"):
        glob_regex("a[b")


@pytest.mark.parametrize(("pattern", "name", "matches"), [
    ("**/*.log", "x.log", True), ("**/*.log", "a/b/x.log", True), ("a/**", "a/b/c", True),
    ("*.log", "a/x.log", False),
    ("[!a]x", "bx", True), ("[!a]x", "ax", False), ("a[b", "a[b", True),
])
def test_dockerignore(pattern: str, name: str, matches: bool) -> None:
    assert bool(re.match(glob_regex(pattern, dockerignore=True) + "$", name)) is matches
