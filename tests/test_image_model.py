"""Manifests, indexes, configs, chain IDs and --change instructions: parsing is validation."""

from __future__ import annotations

import json

import pytest

from sampan.errors import CorruptContent, InvalidArgument, Unsupported
from sampan.image import digest, manifest
from sampan.image import mediatypes as mt
from sampan.image.changes import apply_change
from sampan.image.config import ImageConfig, format_time, parse_time

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def _docker_manifest() -> dict:
    return {"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST,
            "config": {"mediaType": mt.DOCKER_CONFIG, "digest": D1, "size": 10},
            "layers": [{"mediaType": mt.DOCKER_LAYER_GZIP, "digest": D2, "size": 20}]}


def test_docker_manifest_round_trip() -> None:
    data = json.dumps(_docker_manifest()).encode()
    parsed = manifest.parse(data)
    assert isinstance(parsed, manifest.Manifest) and parsed.media_type == mt.DOCKER_MANIFEST
    assert parsed.layers[0].digest == D2 and parsed.config.size == 10
    assert manifest.parse(parsed.to_bytes()) == parsed


def test_manifest_list_with_platforms() -> None:
    data = {"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST_LIST, "manifests": [
        {"mediaType": mt.DOCKER_MANIFEST, "digest": D1, "size": 5,
         "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        {"mediaType": mt.OCI_MANIFEST, "digest": D2, "size": 6,
         "platform": {"os": "linux", "architecture": "amd64"}}]}
    parsed = manifest.parse(json.dumps(data).encode())
    assert isinstance(parsed, manifest.Index)
    assert [str(m.platform) for m in parsed.manifests] == ["linux/arm/v7", "linux/amd64"]
    oci = manifest.Index(mt.OCI_INDEX, parsed.manifests)
    assert manifest.parse(oci.to_bytes()).manifests == parsed.manifests  # type: ignore[union-attr]


@pytest.mark.parametrize(("mutate", "error"), [
    (lambda m: m.update(schemaVersion=1), Unsupported),
    (lambda m: m["layers"][0].update(digest="sha256:../../etc/passwd"), CorruptContent),
    (lambda m: m["layers"][0].update(digest="sha512:" + "a" * 128), Unsupported),
    (lambda m: m["layers"][0].update(size=-1), CorruptContent),
    (lambda m: m["layers"][0].update(size="12"), CorruptContent),
    (lambda m: m["layers"][0].update(mediaType="application/x-evil"), Unsupported),
    (lambda m: m.update(layers={}), CorruptContent),
    (lambda m: m.update(config=None), CorruptContent),
    (lambda m: m.update(annotations={"a": 1}), CorruptContent),
])
def test_invalid_manifests(mutate, error) -> None:  # noqa: ANN001
    data = _docker_manifest()
    mutate(data)
    with pytest.raises(error):
        manifest.parse(json.dumps(data).encode())


def test_media_type_mismatch_and_garbage() -> None:
    with pytest.raises(CorruptContent):
        manifest.parse(json.dumps(_docker_manifest()).encode(), mt.OCI_INDEX)
    for junk in (b"<html>", b"[]", b"\xff\xfe", b"{" * 10):
        with pytest.raises(CorruptContent):
            manifest.parse(junk)


def test_chain_ids_match_the_oci_definition() -> None:
    chains = digest.chain_ids([D1, D2])
    assert chains[0] == D1
    assert chains[1] == digest.sha256_bytes(f"{D1} {D2}".encode())


def test_config_validation_and_times() -> None:
    good = {"architecture": "amd64", "os": "linux", "created": "2024-01-02T03:04:05.123456789Z",
            "config": {"Labels": {"a": "b"}}, "rootfs": {"type": "layers", "diff_ids": [D1]}}
    config = ImageConfig.parse(json.dumps(good).encode())
    assert config.diff_ids == [D1] and config.labels == {"a": "b"}
    assert abs(config.created - 1704164645.123456) < 1e-5
    assert format_time(1704164645.5) == "2024-01-02T03:04:05.5Z" and format_time(0) == "1970-01-01T00:00:00Z"
    assert parse_time("garbage") == 0.0
    for bad in ({"rootfs": {"type": "layers", "diff_ids": ["x"]}}, {"rootfs": {}}, {},
                {"rootfs": {"type": "layers", "diff_ids": []}, "config": []}):
        with pytest.raises(CorruptContent):
            ImageConfig.parse(json.dumps(bad).encode())


def test_changes() -> None:
    config: dict = {}
    for change in ['CMD ["a", "b"]', "ENTRYPOINT /bin/run --x", "ENV A=1 B='two words'", "ENV A 3",
                   'LABEL "k 1"=v', "EXPOSE 80 53/udp", "VOLUME /data /logs", "WORKDIR /w", "USER u:g",
                   "STOPSIGNAL SIGINT", "ONBUILD RUN true"]:
        apply_change(config, change)
    assert config["Cmd"] == ["a", "b"] and config["Entrypoint"] == ["/bin/sh", "-c", "/bin/run --x"]
    assert config["Env"] == ["B=two words", "A=3"] and config["Labels"] == {"k 1": "v"}
    assert config["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert config["Volumes"] == {"/data": {}, "/logs": {}}
    assert (config["WorkingDir"], config["User"], config["StopSignal"]) == ("/w", "u:g", "SIGINT")
    for bad in ("RUN x", "COPY a b", "EXPOSE http", "ENV", "ENV =x"):
        with pytest.raises(InvalidArgument):
            apply_change({}, bad)
