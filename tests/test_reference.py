"""Image references: Docker's grammar, normalisation and familiar forms."""

from __future__ import annotations

import pytest

from sampan.errors import InvalidReference
from sampan.image import reference as refs

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(("text", "full", "familiar"), [
    ("busybox", "docker.io/library/busybox", "busybox"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
    ("docker.io/library/busybox:latest", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/library/busybox", "docker.io/library/busybox", "busybox"),
    ("localhost:5000/x", "localhost:5000/x", "localhost:5000/x"),
    ("localhost/x:t", "localhost/x:t", "localhost/x:t"),
    ("registry.example.com:443/a/b/c:tag", "registry.example.com:443/a/b/c:tag", "registry.example.com:443/a/b/c:tag"),
    ("[::1]:5000/x", "[::1]:5000/x", "[::1]:5000/x"),
    (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}", f"busybox@{DIGEST}"),
    (f"busybox:1@{DIGEST}", f"docker.io/library/busybox:1@{DIGEST}", f"busybox:1@{DIGEST}"),
    ("a__b-c_d---e/f_g", "docker.io/a__b-c_d---e/f_g", "a__b-c_d---e/f_g"),
    ("Example.com/foo", "Example.com/foo", "Example.com/foo"),
])
def test_valid(text: str, full: str, familiar: str) -> None:
    ref = refs.parse(text)
    assert str(ref) == full
    assert ref.familiar() == familiar


@pytest.mark.parametrize("text", [
    "", "Busybox", "user/App", "busybox:", ":tag", "busybox@sha256:abc", "busybox@sha256:" + "A" * 64,
    "a" * 64, "busybox:" + "t" * 129, "a/" * 200 + "b", "-bad", "bad-", "a..b", "a___b", "busybox@md5:" + "a" * 32,
    "busybox tag", "héllo", "a__b.c/x",
])
def test_invalid(text: str) -> None:
    with pytest.raises(InvalidReference):
        refs.parse(text)


def test_tag_semantics() -> None:
    assert refs.parse_tagged("busybox").tag == "latest"
    ref = refs.parse_tagged(f"busybox@{DIGEST}")
    assert ref.tag is None and ref.digest == DIGEST  # a digest reference gets no default tag
    with pytest.raises(InvalidReference, match="digest"):
        refs.parse_tag_target(f"busybox@{DIGEST}")
    assert refs.parse_tag_target("x").familiar() == "x:latest"


def test_uppercase_message_names_the_repository() -> None:
    with pytest.raises(InvalidReference, match="must be lowercase"):
        refs.parse("Busybox:latest")
