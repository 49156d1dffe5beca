"""pull, login and logout against Debian's real docker-registry (plain HTTP, TLS with a test CA, htpasswd Basic
auth, token auth), through a fault-injecting proxy, and unit tests of the registry client's parsing pieces.

Fixtures and helpers live in registry_fixtures.py.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from conftest import SAMPAN, Sampan, docker_cli
from registry_fixtures import (
    IDENTITY_TOKEN,
    PASSWORD,
    USER,
    Certs,
    FaultProxy,
    Registry,
    TokenServer,
    push_image,
    push_index,
    run_registry,
    use_registry,
)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _lower_dirs(sampan: Sampan, image: str) -> list[Path]:
    lower = sampan("image", "inspect", "-f", "{{.GraphDriver.Data.LowerDir}}", image).stdout.strip()
    return [Path(p) for p in lower.split(":")]


def _no_ingest_leftovers(sampan: Sampan) -> None:
    assert not list((sampan.root / "ingest").iterdir())
    assert not [p for p in (sampan.root / "tmp").iterdir()]


# ---------------------------------------------------------------------------------------------- plain HTTP


def test_pull_run_digest_and_repull(sampan: Sampan, registry: Registry, busybox_archive: Path) -> None:
    registry.skopeo_push(busybox_archive, "tools/bb:v1")
    name = f"{registry.host}/tools/bb:v1"
    out = sampan("pull", name).stdout.splitlines()
    assert out[0] == "v1: Pulling from tools/bb"
    assert any(line.endswith(": Pull complete") for line in out)
    assert out[-2] == f"Status: Downloaded newer image for {name}"
    assert out[-1] == name
    digest = next(line.split()[1] for line in out if line.startswith("Digest: "))
    listing = sampan("images", "--digests", "--format", "{{.Repository}} {{.Tag}} {{.Digest}}").stdout
    assert f"{registry.host}/tools/bb v1 {digest}" in listing
    assert sampan("run", "--rm", name, "echo", "pulled and running").stdout == "pulled and running\n"
    again = sampan("pull", name).stdout.splitlines()
    assert any(line.endswith(": Already exists") for line in again)
    assert again[-2] == f"Status: Image is up to date for {name}"
    # by digest: the same image, no tag added
    by_digest = f"{registry.host}/tools/bb@{digest}"
    assert sampan("pull", "-q", by_digest).stdout.strip() == by_digest
    image_id = sampan("image", "inspect", "-f", "{{.Id}}", name).stdout.strip()
    assert sampan("image", "inspect", "-f", "{{.Id}}", by_digest).stdout.strip() == image_id
    repo_digests = sampan("image", "inspect", "-f", "{{json .RepoDigests}}", name).stdout
    assert f"{registry.host}/tools/bb@{digest}" in repo_digests
    assert sampan("system", "check").returncode == 0
    _no_ingest_leftovers(sampan)


def test_pull_multilayer_all_tags_quiet(sampan: Sampan, registry: Registry) -> None:
    layers = [{"base/file": b"base" * 1000}, {"mid/file": os.urandom(300_000)}, {"top/file": b"top"}]
    first = push_image(registry, "multi", "one", layers)
    push_image(registry, "multi", "two", layers[:2] + [{"other/file": b"other"}])
    out = sampan("pull", "-q", f"{registry.host}/multi:one").stdout
    assert out == f"{registry.host}/multi:one\n"
    lowers = _lower_dirs(sampan, f"{registry.host}/multi:one")
    assert [sorted(_files(p)) for p in reversed(lowers)] == [["base", "base/file"], ["mid", "mid/file"],
                                                              ["top", "top/file"]]
    all_out = sampan("pull", "--all-tags", f"{registry.host}/multi").stdout.splitlines()
    assert all_out[-1] == f"{registry.host}/multi"
    assert "one: Pulling from multi" in all_out and "two: Pulling from multi" in all_out
    # two shares two layers with one: only its own top layer is fetched
    assert sum(line.endswith("Already exists") for line in all_out) == 3 + 2
    assert sampan("image", "inspect", "-f", "{{.Id}}", f"{registry.host}/multi:one").stdout.strip() == \
        first.config_digest
    tags = sampan("images", "--format", "{{.Tag}}", f"{registry.host}/multi").stdout.split()
    assert sorted(tags) == ["one", "two"]
    result = sampan("pull", "-a", f"{registry.host}/multi:one", check=False)
    assert result.returncode != 0 and "all-tags" in result.stderr


def test_pull_docker_schema2_and_unknowns(sampan: Sampan, registry: Registry) -> None:
    push_image(registry, "schema2", "latest", [{"a": b"a"}], docker_types=True)
    from sampan.image.config import host_architecture

    other = "arm64" if host_architecture() != "arm64" else "amd64"
    mismatch = sampan("pull", "--platform", f"linux/{other}", f"{registry.host}/schema2", check=False)
    assert mismatch.returncode != 0 and "does not match the specified platform" in mismatch.stderr
    sampan("pull", f"{registry.host}/schema2")
    missing_tag = sampan("pull", f"{registry.host}/schema2:nope", check=False)
    assert missing_tag.returncode == 1
    assert missing_tag.stderr.strip() == (f"Error: manifest for {registry.host}/schema2:nope not found: "
                                          "manifest unknown")
    missing_repo = sampan("pull", f"{registry.host}/nothing/here", check=False)
    assert missing_repo.returncode == 1 and f"{registry.host}/nothing/here:latest" in missing_repo.stderr
    assert len(missing_repo.stderr.strip().splitlines()) == 1


def test_pull_zstd_layers(sampan: Sampan, registry: Registry) -> None:
    pushed = push_image(registry, "zstd", "latest", [{"z/file": b"zstd " * 10_000}, {"top": b"top"}],
                        compression="zstd")
    assert registry.blob_path(pushed.layer_digests[0]).read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    sampan("pull", f"{registry.host}/zstd")
    lowers = _lower_dirs(sampan, f"{registry.host}/zstd")
    assert (lowers[-1] / "z" / "file").read_bytes() == b"zstd " * 10_000
    assert sampan("image", "inspect", "-f", "{{.Id}}", f"{registry.host}/zstd").stdout.strip() == \
        pushed.config_digest


def test_progress_bars_on_a_terminal(sampan: Sampan, registry: Registry) -> None:
    """On a terminal each layer has a line redrawn in place with a bar, sizes and speed; -q prints the name."""
    import pty

    push_image(registry, "bars", "latest", [{"a": os.urandom(3 << 20)}, {"b": os.urandom(2 << 20)}])
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([SAMPAN, "pull", f"{registry.host}/bars"], env=sampan.env, stdin=subprocess.DEVNULL,
                            stdout=terminal, stderr=subprocess.PIPE)
    os.close(terminal)
    out = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the pull closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(controller)
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    proc.stderr.close()
    text = out.decode()
    assert "\x1b[" in text and "A\r\x1b[2K" in text  # cursor up, redraw the layer's line
    assert "Downloading [" in text and "MB/" in text and "Pull complete" in text


def test_pull_refuses_unsupported_media_types(sampan: Sampan, registry: Registry) -> None:
    push_image(registry, "weird", "latest", [{"a": b"a"}], layer_media_type="application/vnd.example.thing")
    result = sampan("pull", f"{registry.host}/weird", check=False)
    assert result.returncode != 0
    assert "unsupported layer media type application/vnd.example.thing" in result.stderr
    assert registry.host in result.stderr
    assert sampan("images", "-q").stdout == ""


def test_mirror_serves_docker_hub_names(sampan: Sampan, registry: Registry) -> None:
    pushed = push_image(registry, "library/mirrored", "latest", [{"m": b"from the mirror"}])
    (registry.sampan_config / "registries.json").write_text(
        json.dumps({"registry-mirrors": [f"http://{registry.host}"]}))
    out = sampan("pull", "mirrored").stdout.splitlines()
    assert out[-1] == "docker.io/library/mirrored:latest"
    assert "Status: Downloaded newer image for mirrored:latest" in out
    assert sampan("image", "inspect", "-f", "{{.Id}}", "mirrored").stdout.strip() == pushed.config_digest


def test_ensure_image_pulls_only_when_missing(sampan: Sampan, registry: Registry) -> None:
    from sampan.engine.pull import ensure_image

    pushed = push_image(registry, "implicit", "v1", [{"i": b"implicit"}])
    events = []
    with sampan.engine() as engine:
        assert ensure_image(engine, f"{registry.host}/implicit:v1", progress=events.append) == pushed.config_digest
        assert any(e.status == "Pull complete" for e in events)
        events.clear()
        assert ensure_image(engine, f"{registry.host}/implicit:v1", progress=events.append) == pushed.config_digest
        assert events == []  # present: no registry round trip at all
        with pytest.raises(Exception, match="not found"):
            ensure_image(engine, f"{registry.host}/implicit:v2")


class _Recorder(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def log_message(self, *_: object) -> None:
        pass

    def do_GET(self) -> None:
        _Recorder.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_foreign_layer_urls_are_never_followed(sampan: Sampan, registry: Registry) -> None:
    from sampan.image import mediatypes as mt

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Recorder.hits = []
    try:
        urls = [f"http://127.0.0.1:{server.server_address[1]}/layer.tar.gz"]
        push_image(registry, "foreign", "present", [{"f": b"foreign but in the registry"}], docker_types=True,
                   layer_media_type=mt.DOCKER_LAYER_FOREIGN, urls=urls)
        sampan("pull", f"{registry.host}/foreign:present")
        push_image(registry, "foreign", "absent", [{"g": b"only at the url"}], docker_types=True,
                   layer_media_type=mt.DOCKER_LAYER_FOREIGN, urls=urls, upload_layers=False)
        absent = sampan("pull", f"{registry.host}/foreign:absent", check=False)
        assert absent.returncode != 0 and "blob unknown" in absent.stderr
        assert _Recorder.hits == []
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------------------------------- multi-arch


def test_index_platform_selection(sampan: Sampan, registry: Registry) -> None:
    from sampan.image.config import host_architecture

    host = host_architecture()
    other = "arm64" if host != "arm64" else "amd64"
    mine = push_image(registry, "multiarch", None, [{"arch": host.encode()}], arch=host)
    theirs = push_image(registry, "multiarch", None, [{"arch": other.encode()}], arch=other)
    variant = {"variant": "v8"} if other == "arm64" else {}
    index_digest = push_index(registry, "multiarch", "latest", [
        (theirs, {"os": "linux", "architecture": other, **variant}),
        (mine, {"os": "linux", "architecture": host})])
    name = f"{registry.host}/multiarch"
    out = sampan("pull", name).stdout
    assert f"Digest: {index_digest}" in out
    assert sampan("image", "inspect", "-f", "{{.Id}} {{.Architecture}}", name).stdout.split() == \
        [mine.config_digest, host]
    assert (_lower_dirs(sampan, name)[0] / "arch").read_bytes() == host.encode()
    sampan("pull", "--platform", f"linux/{other}", name)
    assert sampan("image", "inspect", "-f", "{{.Id}}", name).stdout.strip() == theirs.config_digest
    assert (_lower_dirs(sampan, name)[0] / "arch").read_bytes() == other.encode()
    bad = sampan("pull", "--platform", "linux/s390x", name, check=False)
    assert bad.returncode != 0 and "no matching manifest for linux/s390x" in bad.stderr
    # the repo digest of a multi-arch pull is the index's, so pull by that digest works
    sampan("pull", f"{name}@{index_digest}")


# ---------------------------------------------------------------------------------------------- TLS


def test_tls_registry_with_test_ca(sampan: Sampan, tmp_path: Path, certs: Certs, busybox_archive: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with run_registry(tmp_path / "tls", tls=certs) as reg:
        use_registry(monkeypatch, reg)
        push_image(reg, "secure", "latest", [{"hello": b"over tls"}])
        name = f"{reg.host}/secure"
        sampan("pull", name)
        assert (_lower_dirs(sampan, name)[0] / "hello").read_bytes() == b"over tls"
        sampan("rmi", name)
        # without the CA the certificate is refused, and loopback is not insecure when the config says so
        (reg.sampan_config / "certs.d" / reg.host / "ca.crt").unlink()
        refused = sampan("pull", name, check=False)
        assert refused.returncode != 0 and "certificate verify failed" in refused.stderr
        # a registry marked insecure is reached without verification
        monkeypatch.setenv("SAMPAN_INSECURE_REGISTRIES", reg.host)
        sampan("pull", name)


def test_tls_client_certificate(sampan: Sampan, tmp_path: Path, certs: Certs,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    with run_registry(tmp_path / "mtls", tls=certs, client_certs=True) as reg:
        use_registry(monkeypatch, reg)
        certs_dir = reg.sampan_config / "certs.d" / reg.host
        shutil.copy(certs.client_cert, certs_dir / "client.cert")
        shutil.copy(certs.client_key, certs_dir / "client.key")
        push_image(reg, "mtls", "latest", [{"m": b"mutual tls"}])
        name = f"{reg.host}/mtls"
        sampan("pull", name)
        sampan("rmi", name)
        (certs_dir / "client.cert").unlink()
        (certs_dir / "client.key").unlink()
        refused = sampan("pull", name, check=False)
        assert refused.returncode != 0 and reg.host in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------- auth


def test_basic_auth_login_logout(sampan: Sampan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with run_registry(tmp_path / "basic", htpasswd=True) as reg:
        use_registry(monkeypatch, reg)
        push_image(reg, "private/app", "latest", [{"secret": b"basic"}])
        name = f"{reg.host}/private/app"
        denied = sampan("pull", name, check=False)
        assert denied.returncode != 0 and "unauthorized" in denied.stderr and reg.host in denied.stderr
        wrong = sampan("login", "-u", USER, "--password-stdin", reg.host, input="nope\n", check=False)
        assert wrong.returncode != 0 and "unauthorized" in wrong.stderr
        assert not (reg.docker_config / "config.json").exists()
        ok = sampan("login", "-u", USER, "--password-stdin", reg.host, input=PASSWORD + "\n")
        assert ok.stdout.strip().endswith("Login Succeeded")
        config = json.loads((reg.docker_config / "config.json").read_text())
        assert base64.b64decode(config["auths"][reg.host]["auth"]).decode() == f"{USER}:{PASSWORD}"
        assert stat.S_IMODE((reg.docker_config / "config.json").stat().st_mode) == 0o600
        sampan("pull", name)
        assert sampan("login", reg.host).stdout.strip().endswith("Login Succeeded")  # stored credentials
        assert sampan("logout", reg.host).stdout.strip() == f"Removing login credentials for {reg.host}"
        assert sampan("logout", reg.host).stdout.strip() == f"Not logged in to {reg.host}"
        sampan("rmi", name)
        assert sampan("pull", name, check=False).returncode != 0


def test_token_auth_anonymous_and_login(sampan: Sampan, token_registry: Registry) -> None:
    reg, tokens = token_registry, token_registry.token_server
    assert tokens is not None
    push_image(reg, "public/base", "latest", [{"a": b"1"}, {"b": b"2"}, {"c": b"3"}])
    push_image(reg, "private/app", "latest", [{"p": b"private"}])
    tokens.requests.clear()
    sampan("pull", f"{reg.host}/public/base")  # anonymous
    granted = [r for r in tokens.requests if r["ok"]]
    assert len(granted) == 1, granted  # one token serves the manifest, the config and three layers
    assert granted[0]["user"] is None and granted[0]["scopes"] == ["repository:public/base:pull"]
    denied = sampan("pull", f"{reg.host}/private/app", check=False)
    assert denied.returncode != 0 and "private/app" in denied.stderr
    sampan("login", "-u", USER, "--password-stdin", reg.host, input=PASSWORD)
    sampan("pull", f"{reg.host}/private/app")
    assert any(r["user"] == USER for r in tokens.requests)
    wrong = sampan("login", "-u", USER, "-p", "wrong", reg.host, check=False)
    assert wrong.returncode != 0 and "incorrect username or password" in wrong.stderr


def test_token_expiry_refreshes(tmp_path: Path, certs: Certs, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached token is reused until it expires; a registry refusing a stale token gets a fresh one."""
    from sampan.registry import auth

    tokens = TokenServer(certs, expires_in=60)
    tokens.start()
    try:
        with run_registry(tmp_path / "token", token=tokens) as reg:
            pushed = push_image(reg, "public/x", "latest", [{"a": b"1"}])
            client = reg.client(authenticated=False)
            client.get_manifest("public/x", "latest")
            client.fetch_blob("public/x", pushed.config_digest)
            assert len([r for r in tokens.requests if r["user"] is None]) == 1
            assert client._auth is not None
            for token in client._auth._tokens.values():
                token.expires = 0  # expired locally: fetched again
            client.get_manifest("public/x", "latest")
            assert len([r for r in tokens.requests if r["user"] is None]) == 2
            for token in client._auth._tokens.values():
                token.value = "garbage"  # refused by the registry: one retry with a new token
            client.get_manifest("public/x", "latest")
            assert len([r for r in tokens.requests if r["user"] is None]) == 3
            client.close()
            assert auth.MIN_TOKEN_LIFETIME == 60
    finally:
        tokens.stop()


def test_identity_token_from_config(sampan: Sampan, token_registry: Registry) -> None:
    reg, tokens = token_registry, token_registry.token_server
    assert tokens is not None
    push_image(reg, "private/app", "latest", [{"p": b"identity"}])
    (reg.docker_config / "config.json").write_text(json.dumps(
        {"auths": {reg.host: {"auth": base64.b64encode(f"{USER}:".encode()).decode(),
                              "identitytoken": IDENTITY_TOKEN}}}))
    tokens.requests.clear()
    sampan("pull", f"{reg.host}/private/app")
    assert [r.get("oauth") for r in tokens.requests] == [True]


def test_credentials_not_sent_to_blob_storage(sampan: Sampan, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    with run_registry(tmp_path / "basic", htpasswd=True) as reg:
        use_registry(monkeypatch, reg)
        pushed = push_image(reg, "app", "latest", [{"a": b"redirected"}])
        with FaultProxy(reg.host, "redirect", registry_data=reg.data) as proxy:
            sampan("login", "-u", USER, "--password-stdin", proxy.host, input=PASSWORD)
            sampan("pull", f"{proxy.host}/app")
            assert len(proxy.storage_requests) == 2  # config and layer
            assert all("Authorization" not in headers for headers in proxy.storage_requests)
            assert any("Authorization" in headers for _, path, headers in proxy.requests if "/manifests/" in path)
        assert sampan("image", "inspect", "-f", "{{.Id}}", f"{proxy.host}/app").stdout.strip() == \
            pushed.config_digest


# ---------------------------------------------------------------------------------------------- faults


def test_dropped_connection_resumes_with_range(sampan: Sampan, registry: Registry) -> None:
    push_image(registry, "big", "latest", [{"one": os.urandom(700_000)}, {"two": os.urandom(400_000)}])
    with FaultProxy(registry.host, "drop") as proxy:
        sampan("pull", f"{proxy.host}/big")  # the small config is fetched again whole, the layers resume
        ranges = [h["Range"] for _, path, h in proxy.requests if "/blobs/" in path and "Range" in h]
        assert len(ranges) == 2 and all(r.startswith("bytes=") and r != "bytes=0-" for r in ranges)
    with FaultProxy(registry.host, "norange") as proxy:  # a server ignoring Range: the prefix is skipped
        sampan("pull", f"{proxy.host}/big")
    assert sampan("system", "check").returncode == 0
    _no_ingest_leftovers(sampan)


def test_interrupted_download_resumes_in_a_later_pull(sampan: Sampan, registry: Registry) -> None:
    """A pull killed mid-blob keeps the unverified bytes as a partial ingest file (never a blob); the next pull
    asks only for the rest, and the digest is checked over the whole blob: a corrupted partial is refused and
    discarded, never stored."""
    pushed = push_image(registry, "resume", "latest", [{"big": os.urandom(4 << 20)}])
    [layer] = pushed.layer_digests
    size = registry.blob_path(layer).stat().st_size
    partial = sampan.root / "ingest" / f"partial-{layer.split(':')[1]}"
    with FaultProxy(registry.host, "stall", targets={layer}) as proxy:
        proc = subprocess.Popen([SAMPAN, "pull", "-q", f"{proxy.host}/resume"], env=sampan.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while not (partial.exists() and partial.stat().st_size >= 1 << 20) and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            proc.kill()  # SIGKILL: no clean-up code runs
            proc.wait()
    kept = partial.stat().st_size
    assert 1 << 20 <= kept <= size // 2
    assert not (sampan.root / "blobs" / "sha256" / layer.split(":")[1]).exists()
    assert sampan("images", "-aq").stdout == ""
    # a byte of the kept prefix goes bad on disk: the whole-blob digest refuses it, and the partial is dropped
    original = partial.read_bytes()
    partial.write_bytes(original[:100] + bytes([original[100] ^ 1]) + original[101:])
    bad = sampan("pull", f"{registry.host}/resume", check=False)
    assert bad.returncode == 1 and "digest mismatch" in bad.stderr and layer in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    assert not partial.exists() and sampan("images", "-aq").stdout == ""
    # killed again, then resumed for real: only the missing bytes are asked for
    partial.write_bytes(original)
    with FaultProxy(registry.host, "none") as proxy:
        sampan("pull", f"{proxy.host}/resume")
        asked = [h.get("Range") for method, path, h in proxy.requests if method == "GET" and path.endswith(layer)]
    assert asked == [f"bytes={kept}-"]
    assert sampan("image", "inspect", "-f", "{{.Id}}", f"{proxy.host}/resume").stdout.strip() == \
        pushed.config_digest
    assert (_lower_dirs(sampan, f"{proxy.host}/resume")[0] / "big").stat().st_size == 4 << 20
    assert not partial.exists()
    assert sampan("system", "check").returncode == 0
    _no_ingest_leftovers(sampan)


def test_registry_errors_are_retried_with_backoff(sampan: Sampan, registry: Registry) -> None:
    pushed = push_image(registry, "flaky", "latest", [{"a": b"1"}, {"b": b"2"}])
    with FaultProxy(registry.host, "flaky") as proxy:
        sampan("pull", f"{proxy.host}/flaky")
    gets = [path for method, path, _ in proxy.requests if method == "GET" and path != "/v2/"]
    for digest in (pushed.config_digest, *pushed.layer_digests):
        assert gets.count(f"/v2/flaky/blobs/{digest}") == 2  # a 503, then the blob
    assert sampan("image", "inspect", "-f", "{{.Id}}", f"{proxy.host}/flaky").stdout.strip() == pushed.config_digest


def test_flipped_byte_fails_and_keeps_only_verified_blobs(sampan: Sampan, registry: Registry) -> None:
    pushed = push_image(registry, "flip", "latest", [{"good": os.urandom(2_000)}, {"bad": os.urandom(2_000_000)}])
    good, bad = pushed.layer_digests
    with FaultProxy(registry.host, "flip", targets={bad}) as proxy:
        result = sampan("pull", f"{proxy.host}/flip", check=False)
    assert result.returncode != 0
    assert "digest mismatch" in result.stderr and bad in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    blobs = sampan.root / "blobs" / "sha256"
    assert not (blobs / bad.split(":")[1]).exists()  # never stored unverified
    assert (blobs / pushed.config_digest.split(":")[1]).exists()  # verified before the failure: kept
    good_kept = (blobs / good.split(":")[1]).exists()  # unless its download was still running: cancelled,
    # and then kept as a partial file to resume; the refused blob's bytes are discarded
    assert {p.name for p in (sampan.root / "ingest").iterdir()} <= {f"partial-{good.split(':')[1]}"}
    assert sampan("images", "-aq").stdout == ""  # no partial image
    # the next attempt only fetches what is missing
    with FaultProxy(registry.host, "none") as proxy:
        sampan("pull", f"{proxy.host}/flip")
        fetched = {path for method, path, _ in proxy.requests if method == "GET" and "/blobs/" in path}
        assert fetched == {f"/v2/flip/blobs/{bad}"} | (set() if good_kept else {f"/v2/flip/blobs/{good}"})
    assert sampan("system", "check").returncode == 0
    _no_ingest_leftovers(sampan)


@pytest.mark.parametrize(("mode", "message"), [
    ("html", "HTML page"),
    ("truncate", "not valid JSON"),
    ("tamper", "digest mismatch"),
])
def test_bad_manifests_are_one_clear_line(sampan: Sampan, registry: Registry, mode: str, message: str) -> None:
    pushed = push_image(registry, "bad", "latest", [{"a": b"a"}])
    with FaultProxy(registry.host, mode) as proxy:
        ref = f"{proxy.host}/bad@{pushed.manifest_digest}" if mode == "tamper" else f"{proxy.host}/bad"
        result = sampan("pull", ref, check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and proxy.host in lines[0], lines
    assert sampan("images", "-aq").stdout == ""


# ---------------------------------------------------------------------------------------------- interop


@pytest.mark.slow
def test_image_pushed_by_docker_pulls_and_runs(docker: dict[str, str], sampan: Sampan, registry: Registry,
                                               busybox_archive: Path) -> None:
    docker_cli(docker, "load", "-i", str(busybox_archive))
    target = f"{registry.host}/fromdocker/bb:1"
    docker_cli(docker, "tag", "busybox:latest", target)
    docker_cli(docker, "push", target)
    docker_id = docker_cli(docker, "image", "inspect", "-f", "{{.Id}}", target).strip()
    sampan("pull", target)
    assert sampan("image", "inspect", "-f", "{{.Id}}", target).stdout.strip() == docker_id
    assert sampan("run", "--rm", target, "echo", "from docker").stdout == "from docker\n"
    docker_cli(docker, "rmi", target)  # busybox:latest stays: other tests of the session dockerd use it


def test_client_push_primitives_and_tag_pages(registry: Registry) -> None:
    import hashlib
    import io

    from sampan.errors import CorruptContent

    client = registry.client()
    try:
        blob = os.urandom(300_000)
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        client.upload_blob("prim/one", digest, len(blob), io.BytesIO(blob), chunk_size=100_000)  # chunked
        assert client.blob_size("prim/one", digest) == len(blob)
        assert client.blob_size("prim/two", digest) is None
        assert client.mount_blob("prim/two", digest, "prim/one") is None  # cross-repository mount
        assert client.blob_size("prim/two", digest) == len(blob)
        with pytest.raises(CorruptContent):
            client.upload_blob("prim/one", "sha256:" + "0" * 64, 3, b"abc")  # the registry checks digests
        pushed = push_image(registry, "prim/tags", "t0", [{"x": b"x"}])
        for tag in ("t1", "t2", "t3"):
            client.put_manifest("prim/tags", tag, pushed.manifest, pushed.media_type)
        assert sorted(client.list_tags("prim/tags", page_size=1)) == ["t0", "t1", "t2", "t3"]
        assert client.head_manifest("prim/tags", "t2")[0] == pushed.manifest_digest
        assert client.head_manifest("prim/tags", "nope") is None
    finally:
        client.close()


# ---------------------------------------------------------------------------------------------- units


def test_parse_challenges() -> None:
    from sampan.registry.auth import parse_challenges

    [bearer] = parse_challenges([('Bearer realm="https://auth.example/token",service="registry.example",'
                                 'scope="repository:samalba/my-app:pull,push"')])
    assert bearer.scheme == "bearer"
    assert bearer.params == {"realm": "https://auth.example/token", "service": "registry.example",
                             "scope": "repository:samalba/my-app:pull,push"}
    both = parse_challenges(['Basic realm="Registry \\"Realm\\""', "Bearer realm=plain, error=invalid_token"])
    assert [(c.scheme, c.params) for c in both] == [("basic", {"realm": 'Registry "Realm"'}),
                                                    ("bearer", {"realm": "plain", "error": "invalid_token"})]


def test_platform_matching() -> None:
    from sampan.image import platforms
    from sampan.image.manifest import Descriptor, Platform

    def desc(arch: str, variant: str | None = None, os: str = "linux") -> Descriptor:
        return Descriptor("application/vnd.oci.image.manifest.v1+json", "sha256:" + "0" * 64, 1,
                          platform=Platform(os, arch, variant))

    index = [desc("amd64", os="windows"), desc("386"), desc("arm", "v6"), desc("arm", "v7"), desc("arm64", "v8"),
             desc("amd64"), desc("unknown", os="unknown")]
    assert platforms.choose(index, platforms.parse("linux/amd64")) is index[5]
    assert platforms.choose(index[:2], platforms.parse("linux/amd64")) is index[1]  # amd64 runs 386
    assert platforms.choose(index, platforms.parse("linux/arm64")) is index[4]  # arm64/v8 is arm64
    assert platforms.choose(index, platforms.parse("linux/arm/v7")) is index[3]
    assert platforms.choose(index, platforms.parse("linux/arm")) is index[3]  # arm means arm/v7
    assert platforms.choose(index[:3], platforms.parse("linux/arm64")) is index[2]  # arm64 runs arm/v6
    assert platforms.choose(index, platforms.parse("linux/s390x")) is None
    assert platforms.parse("linux/x86_64") == Platform("linux", "amd64")
    with pytest.raises(Exception, match="invalid platform"):
        platforms.parse("linux//v7")


def test_insecure_registry_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sampan.registry.config import RegistryConfig

    monkeypatch.delenv("SAMPAN_INSECURE_REGISTRIES", raising=False)
    default = RegistryConfig.load(tmp_path)
    assert default.is_insecure("127.0.0.1:5000") and default.is_insecure("localhost:5000")
    assert default.is_insecure("[::1]:5000") and not default.is_insecure("registry.example:5000")
    (tmp_path / "registries.json").write_text(json.dumps({"insecure-registries": ["10.0.0.0/8", "my.reg:5000"],
                                                          "registry-mirrors": ["https://mirror.example/"]}))
    configured = RegistryConfig.load(tmp_path)
    assert configured.is_insecure("10.1.2.3:443") and configured.is_insecure("my.reg:5000")
    assert not configured.is_insecure("127.0.0.1:5000") and not configured.is_insecure("my.reg:5001")
    assert configured.mirrors == ("https://mirror.example",)
    monkeypatch.setenv("SAMPAN_INSECURE_REGISTRIES", "127.0.0.1:5000")
    assert RegistryConfig.load(tmp_path).is_insecure("127.0.0.1:5000")


def test_proxy_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sampan.registry.config import RegistryConfig
    from sampan.registry.transport import Transport

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example,.corp.example")
    transport = Transport(RegistryConfig.load(tmp_path))
    assert transport._proxy_for("https", "registry.example") == "http://proxy.example:3128"
    assert transport._proxy_for("https", "internal.example") is None
    assert transport._proxy_for("https", "reg.corp.example") is None
    assert transport._proxy_for("https", "127.0.0.1") is None and transport._proxy_for("https", "localhost") is None
    assert transport._proxy_for("http", "registry.example") is None  # no HTTP_PROXY


def test_docker_config_file_and_helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sampan.registry.credentials import HUB_KEY, Credentials, DockerConfig

    config = DockerConfig(tmp_path / "docker")
    assert config.get("docker.io") is None
    config.store("docker.io", Credentials("hubuser", "hubpass"))
    config.store("reg.example:5000", Credentials("u", "p:with:colons"))
    data = json.loads(config.path.read_text())
    assert set(data["auths"]) == {HUB_KEY, "reg.example:5000"}
    assert base64.b64decode(data["auths"][HUB_KEY]["auth"]) == b"hubuser:hubpass"
    assert config.get("index.docker.io") == Credentials("hubuser", "hubpass")
    assert config.get("reg.example:5000").password == "p:with:colons"
    # keys written as URLs by other tools still match
    data["auths"]["https://old.example/v1/"] = {"auth": base64.b64encode(b"o:p").decode()}
    data["other"] = {"kept": True}
    config.path.write_text(json.dumps(data))
    assert config.get("old.example") == Credentials("o", "p")
    assert config.erase("old.example") and not config.erase("old.example")
    assert json.loads(config.path.read_text())["other"] == {"kept": True}
    # a credential helper: docker-credential-<name> get/store/erase on PATH
    bin_dir, store = tmp_path / "bin", tmp_path / "helper-store.json"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-fake"
    helper.write_text(f"""#!/usr/bin/env python3
import json, sys
path = {str(store)!r}
try:
    db = json.load(open(path))
except FileNotFoundError:
    db = {{}}
action, data = sys.argv[1], sys.stdin.read()
if action == "store":
    entry = json.loads(data); db[entry["ServerURL"]] = entry
elif action == "get":
    if data not in db:
        print("credentials not found in native keychain"); sys.exit(1)
    print(json.dumps(db[data]))
elif action == "erase":
    if data not in db:
        print("credentials not found in native keychain"); sys.exit(1)
    del db[data]
json.dump(db, open(path, "w"))
""")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    data = json.loads(config.path.read_text())
    data["credHelpers"] = {"helped.example": "fake"}
    config.path.write_text(json.dumps(data))
    assert config.get("helped.example") is None
    assert config.store("helped.example", Credentials("hu", "hp")) == "docker-credential-fake"
    assert json.loads(config.path.read_text())["auths"]["helped.example"] == {}
    assert json.loads(store.read_text())["helped.example"]["Secret"] == "hp"
    assert config.get("helped.example") == Credentials("hu", "hp")
    assert config.erase("helped.example") and config.get("helped.example") is None
    assert config.get("docker.io") == Credentials("hubuser", "hubpass")  # other registries stay in the file
    # credsStore: the default helper for every registry without a credHelpers entry (and not in the file)
    data = json.loads(config.path.read_text())
    data["credsStore"] = "fake"
    del data["auths"][HUB_KEY]
    config.path.write_text(json.dumps(data))
    assert config.store("stored.example", Credentials("su", "sp")) == "docker-credential-fake"
    assert json.loads(store.read_text())["stored.example"]["Username"] == "su"
    assert config.get("stored.example") == Credentials("su", "sp")
    assert config.get("reg.example:5000") is None  # as Docker's native store: the helper answers, not the file


def test_pull_cli_errors(sampan: Sampan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from registry_fixtures import free_port

    monkeypatch.setenv("SAMPAN_CONFIG_DIR", str(tmp_path / "cfg"))
    port = free_port()
    refused = sampan("pull", f"127.0.0.1:{port}/x", check=False)
    assert refused.returncode == 1 and f"127.0.0.1:{port}" in refused.stderr and "refused" in refused.stderr
    upper = sampan("pull", "upper/CASE", check=False)
    assert upper.returncode == 1 and "must be lowercase" in upper.stderr
    no_user = sampan("login", "--password-stdin", "127.0.0.1:1", input="x", check=False)
    assert no_user.returncode != 0 and "--username" in no_user.stderr
