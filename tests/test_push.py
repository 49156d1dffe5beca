"""push and manifest lists against Debian's real docker-registry (plain HTTP and token auth); skopeo and a
private dockerd read back what sampan pushed. Fixtures and helpers live in registry_fixtures.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import Sampan, docker_cli
from registry_fixtures import (
    PASSWORD,
    USER,
    Certs,
    Registry,
    need,
    push_image,
    run_registry,
    use_registry,
)


def _skopeo(*args: str) -> str:
    need("skopeo")
    proc = subprocess.run(["skopeo", *args], check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _inspect_raw(registry: Registry, ref: str, creds: str | None = None) -> bytes:
    need("skopeo")
    args = ["skopeo", "inspect", "--raw", "--tls-verify=false"]
    if creds:
        args += ["--creds", creds]
    proc = subprocess.run([*args, f"docker://{registry.host}/{ref}"], check=False, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def _sha(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------- push


def test_push_busybox_reads_back_with_skopeo_and_docker(sampan: Sampan, registry: Registry, busybox: str,
                                                        docker: dict[str, str], tmp_path: Path) -> None:
    name = f"{registry.host}/tools/busybox"
    sampan("tag", "busybox", f"{name}:v1")
    out = sampan("push", f"{name}:v1").stdout.splitlines()
    assert out[0] == f"The push refers to repository [{name}]"
    assert sum(line.endswith(": Pushed") for line in out) == 1
    assert out[-1].startswith("v1: digest: sha256:")
    digest, size = out[-1].split()[2], int(out[-1].split()[4])
    stored = json.loads(sampan("image", "inspect", "-f", "{{json .RepoDigests}}", f"{name}:v1").stdout)
    assert f"{name}@{digest}" in stored
    raw = _inspect_raw(registry, "tools/busybox:v1")
    assert _sha(raw) == digest and len(raw) == size
    # skopeo copies it out intact
    _skopeo("copy", "--quiet", "--preserve-digests", "--src-tls-verify=false", f"docker://{name}:v1", f"oci:{tmp_path / 'oci'}:bb")
    index = json.loads((tmp_path / "oci" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == digest
    # Docker pulls it with the same digest and runs nothing of ours: it only has to accept the image
    docker_cli(docker, "pull", f"{name}:v1")
    repo_digests = docker_cli(docker, "image", "inspect", "-f", "{{json .RepoDigests}}", f"{name}:v1")
    assert f"{name}@{digest}" in json.loads(repo_digests)
    assert docker_cli(docker, "image", "inspect", "-f", "{{.Id}}", f"{name}:v1").strip() == busybox
    docker_cli(docker, "rmi", f"{name}:v1")
    # again: everything is there
    again = sampan("push", f"{name}:v1").stdout.splitlines()
    assert sum(line.endswith(": Layer already exists") for line in again) == 1
    assert again[-1] == f"v1: digest: {digest} size: {size}"
    # -q: the reference only; no tag: latest
    sampan("tag", "busybox", name)
    quiet = sampan("push", "-q", name).stdout
    assert quiet == f"{name}:latest\n"


def test_pull_then_push_keeps_digest_and_mounts(sampan: Sampan, registry: Registry) -> None:
    layers = [{"base/file": b"base" * 1000}, {"mid/file": os.urandom(200_000)}, {"top/file": b"top"}]
    pushed = push_image(registry, "origin/app", "1.0", layers, docker_types=True)
    source = f"{registry.host}/origin/app:1.0"
    sampan("pull", source)
    target = f"{registry.host}/copies/app:1.0"
    sampan("tag", source, target)
    out = sampan("push", target).stdout.splitlines()
    assert sum(line.endswith(": Mounted from origin/app") for line in out) == 3, out
    assert out[-1] == f"1.0: digest: {pushed.manifest_digest} size: {pushed.size}"
    assert _inspect_raw(registry, "copies/app:1.0") == pushed.manifest
    # all tags of a repository
    sampan("tag", source, f"{registry.host}/copies/app:2.0")
    every = sampan("push", "-a", f"{registry.host}/copies/app").stdout.splitlines()
    assert every.count(f"1.0: digest: {pushed.manifest_digest} size: {pushed.size}") == 1
    assert every.count(f"2.0: digest: {pushed.manifest_digest} size: {pushed.size}") == 1
    assert sorted(json.loads(_skopeo("list-tags", "--tls-verify=false", f"docker://{registry.host}/copies/app"))[
        "Tags"]) == ["1.0", "2.0"]


def test_push_big_layer_in_chunks(sampan: Sampan, registry: Registry, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from sampan.engine import push as pushing

    payload = tmp_path / "big"
    payload.write_bytes(os.urandom(3 << 20))
    archive = tmp_path / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(payload, "big")
    name = f"{registry.host}/big/image:v1"
    sampan("import", str(archive), name)
    monkeypatch.setattr(pushing, "CHUNK_THRESHOLD", 1 << 20)
    monkeypatch.setattr(pushing, "CHUNK_SIZE", 1 << 20)
    patches = []
    with sampan.engine() as engine:
        from sampan.registry import client as clients

        original = clients.RegistryClient._request

        def spy(self, method, path, *args, **kwargs):
            if method == "PATCH":
                patches.append(kwargs["headers"]["Content-Range"])
            return original(self, method, path, *args, **kwargs)

        monkeypatch.setattr(clients.RegistryClient, "_request", spy)
        events = []
        result = pushing.push(engine, name, progress=events.append)[0]
    assert len(patches) >= 3, patches
    assert any(e.status == "Pushing" and e.current == e.total and e.total > 3 << 20 for e in events)
    raw = _inspect_raw(registry, "big/image:v1")
    assert _sha(raw) == result.digest
    image_id = sampan("image", "inspect", "-f", "{{.Id}}", name).stdout
    sampan("rmi", name)
    sampan("pull", name)
    assert sampan("image", "inspect", "-f", "{{.Id}}", name).stdout == image_id


def test_uncompressed_layers_are_pushed_gzipped(sampan: Sampan, registry: Registry, tmp_path: Path) -> None:
    """An imported plain-tar layer goes up gzip-compressed, as Docker pushes it: the manifest names the
    compressed blob, the config (the image ID, its diff_ids) is unchanged; a second push finds the same bytes."""
    import gzip

    from sampan.image import mediatypes as mt

    payload = tmp_path / "text"
    payload.write_bytes(b"compressible line\n" * 50_000)
    archive = tmp_path / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(payload, "text")
    name = f"{registry.host}/plain/app:v1"
    sampan("import", str(archive), name)
    image_id = sampan("image", "inspect", "-f", "{{.Id}}", name).stdout.strip()
    first = sampan("push", name).stdout.splitlines()
    assert sum(line.endswith(": Pushed") for line in first) == 1
    digest = first[-1].split()[2]
    raw = _inspect_raw(registry, "plain/app:v1")
    assert _sha(raw) == digest
    manifest = json.loads(raw)
    [layer] = manifest["layers"]
    assert layer["mediaType"] == mt.OCI_LAYER_GZIP and layer["size"] < 100_000
    assert manifest["config"]["digest"] == image_id
    blob = registry.blob_path(layer["digest"]).read_bytes()
    config = json.loads(registry.blob_path(image_id).read_bytes())
    assert _sha(gzip.decompress(blob)) == config["rootfs"]["diff_ids"][0]
    again = sampan("push", name).stdout.splitlines()
    assert sum(line.endswith(": Layer already exists") for line in again) == 1
    assert again[-1] == first[-1]
    # another repository: mounted from the first; after garbage collection, compressed again to the same bytes
    sampan("tag", name, f"{registry.host}/plain/copy:v1")
    mounted = sampan("push", f"{registry.host}/plain/copy:v1").stdout.splitlines()
    assert any(line.endswith(": Mounted from plain/app") for line in mounted), mounted
    sampan("system", "check", "--repair")
    assert not (sampan.root / "blobs" / "sha256" / layer["digest"].split(":")[1]).exists()
    sampan("tag", name, f"{registry.host}/plain/other:v1")
    other = sampan("push", f"{registry.host}/plain/other:v1").stdout.splitlines()
    assert other[-1] == first[-1]
    # and it pulls back as the same image
    sampan("rmi", name, f"{registry.host}/plain/copy:v1", f"{registry.host}/plain/other:v1")
    sampan("pull", name)
    assert sampan("image", "inspect", "-f", "{{.Id}}", name).stdout.strip() == image_id
    by_digest = sampan("push", f"{name}@{digest}", check=False)  # Docker: "cannot push a digest reference"
    assert by_digest.returncode != 0 and "cannot push a digest reference" in by_digest.stderr


def test_push_over_tls_with_basic_auth(sampan: Sampan, busybox: str, tmp_path: Path, certs: Certs,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    with run_registry(tmp_path / "tls-basic", tls=certs, htpasswd=True) as reg:
        use_registry(monkeypatch, reg)
        name = f"{reg.host}/secure/bb:1"
        sampan("tag", "busybox", name)
        denied = sampan("push", name, check=False)
        assert denied.returncode != 0 and "unauthorized" in denied.stderr and reg.host in denied.stderr
        assert len(denied.stderr.strip().splitlines()) == 1
        sampan("login", "-u", USER, "--password-stdin", reg.host, input=PASSWORD)
        digest = sampan("push", name).stdout.splitlines()[-1].split()[2]
        assert _sha(_inspect_raw(reg, "secure/bb:1", creds=f"{USER}:{PASSWORD}")) == digest
        sampan("rmi", name)
        sampan("pull", name)
        assert sampan("image", "inspect", "-f", "{{.Id}}", name).stdout.strip() == busybox
        # without the test CA the registry's certificate is refused: nothing is sent
        (reg.sampan_config / "certs.d" / reg.host / "ca.crt").unlink()
        refused = sampan("push", name, check=False)
        assert refused.returncode != 0 and "certificate verify failed" in refused.stderr


def test_push_token_auth_and_errors(sampan: Sampan, busybox: str, token_registry: Registry) -> None:
    reg, tokens = token_registry, token_registry.token_server
    assert tokens is not None
    name = f"{reg.host}/private/bb:1"
    sampan("tag", "busybox", name)
    anonymous = sampan("push", name, check=False)
    assert anonymous.returncode != 0
    assert "unauthorized" in anonymous.stderr or "denied" in anonymous.stderr
    assert len(anonymous.stderr.strip().splitlines()) == 1
    sampan("login", "-u", USER, "--password-stdin", reg.host, input=PASSWORD)
    out = sampan("push", name).stdout
    assert any(r.get("scopes") == ["repository:private/bb:pull,push"] for r in tokens.requests)
    digest = out.splitlines()[-1].split()[2]
    assert _sha(_inspect_raw(reg, "private/bb:1", creds=f"{USER}:{PASSWORD}")) == digest
    sampan("logout", reg.host)
    (reg.docker_config / "config.json").write_text(json.dumps(
        {"auths": {reg.host: {"auth": "dGVzdGVyOndyb25n"}}}))  # tester:wrong
    wrong = sampan("push", name, check=False)
    assert wrong.returncode != 0 and len(wrong.stderr.strip().splitlines()) == 1
    assert "incorrect username or password" in wrong.stderr or "unauthorized" in wrong.stderr
    unknown = sampan("push", "127.0.0.1:9/nothing:here", check=False)
    assert unknown.returncode != 0
    assert unknown.stderr.strip() == "Error: An image does not exist locally with the tag: 127.0.0.1:9/nothing"
    sampan("tag", "busybox", "127.0.0.1:9/something:there")
    no_tag = sampan("push", "127.0.0.1:9/something:here", check=False)
    assert no_tag.stderr.strip() == "Error: tag does not exist: 127.0.0.1:9/something:here"


# ---------------------------------------------------------------------------------------------- manifest lists


def test_manifest_list_create_annotate_push_pull(sampan: Sampan, registry: Registry) -> None:
    from sampan.image import mediatypes as mt

    amd = push_image(registry, "src/amd", "v1", [{"arch": b"amd64"}], arch="amd64", docker_types=True)
    arm = push_image(registry, "src/arm", "v1", [{"arch": b"arm64"}], arch="arm64")
    host = registry.host
    listed = f"{host}/multi/app:latest"
    created = sampan("manifest", "create", listed, f"{host}/src/amd:v1", f"{host}/src/arm:v1").stdout
    assert created.strip() == f"Created manifest list {listed}"
    again = sampan("manifest", "create", listed, f"{host}/src/amd:v1", check=False)
    assert again.returncode != 0 and "--amend" in again.stderr
    sampan("manifest", "create", "--amend", listed, f"{host}/src/amd:v1")
    sampan("manifest", "annotate", "--variant", "v8", listed, f"{host}/src/arm:v1")
    bad = sampan("manifest", "annotate", "--arch", "nonsense", listed, f"{host}/src/arm:v1", check=False)
    assert bad.returncode != 0 and "unsupported os/arch combination" in bad.stderr
    local = json.loads(sampan("manifest", "inspect", listed).stdout)
    assert [m["platform"] for m in local["manifests"]] == [
        {"architecture": "amd64", "os": "linux"}, {"architecture": "arm64", "os": "linux", "variant": "v8"}]
    pushed = sampan("manifest", "push", "--purge", listed).stdout.splitlines()
    assert f"Pushed ref {host}/multi/app@{amd.manifest_digest} with digest: {amd.manifest_digest}" in pushed
    digest = pushed[-1]
    raw = _inspect_raw(registry, "multi/app:latest")
    assert _sha(raw) == digest
    body = json.loads(raw)
    assert body["mediaType"] == mt.DOCKER_MANIFEST_LIST
    assert [(m["digest"], m["mediaType"], m["size"], m["platform"]) for m in body["manifests"]] == [
        (amd.manifest_digest, amd.media_type, amd.size, {"architecture": "amd64", "os": "linux"}),
        (arm.manifest_digest, arm.media_type, arm.size, {"architecture": "arm64", "os": "linux", "variant": "v8"})]
    # purged locally; the registry's list is what inspect shows now, and each platform pulls
    remote = sampan("manifest", "inspect", listed).stdout
    assert json.loads(remote) == body and remote.startswith("{\n\t\"schemaVersion\": 2")
    if shutil.which("docker"):  # the docker CLI reads the list from the registry itself (no daemon needed)
        proc = subprocess.run(["docker", "manifest", "inspect", "--insecure", listed], capture_output=True,
                              text=True, check=False, timeout=60,
                              env={**os.environ, "DOCKER_CONFIG": str(registry.docker_config)})
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == body
    verbose = json.loads(sampan("manifest", "inspect", "-v", listed).stdout)
    assert [v["Descriptor"]["digest"] for v in verbose] == [amd.manifest_digest, arm.manifest_digest]
    for image, arch in ((amd, "amd64"), (arm, "arm64")):
        out = sampan("pull", "--platform", f"linux/{arch}", listed).stdout
        assert f"Digest: {digest}" in out
        assert sampan("image", "inspect", "-f", "{{.Id}}", listed).stdout.strip() == image.config_digest
    single = json.loads(sampan("manifest", "inspect", f"{host}/src/arm:v1").stdout)
    assert single["config"]["digest"] == arm.config_digest
    missing = sampan("manifest", "rm", listed, check=False)
    assert missing.returncode != 0 and missing.stderr.strip() == f"Error: No such manifest: {listed}"
    other = sampan("manifest", "create", f"{host}/x:1", "127.0.0.2:1/y:1", check=False)
    assert other.returncode != 0 and "different registry" in other.stderr
