"""Real registries for the pull tests: Debian's ``docker-registry`` on a free loopback port, plain HTTP or TLS with
a test CA, htpasswd Basic auth or token auth (with a small token server here), plus a fault-injecting HTTP proxy.

Everything lives under the test's own temporary directory; processes are stopped by their own pid. Certificates
and JWT signatures come from the ``openssl`` CLI, so the tests need no crypto library.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

import pytest
from processes import stop

REGISTRY_BIN = "/usr/bin/docker-registry"
USER, PASSWORD = "tester", "s3cret-pw"
IDENTITY_TOKEN = "refresh-token-for-tester"
SERVICE, ISSUER = "sampan-test-registry", "sampan-test-issuer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need(*programs: str) -> None:
    for program in programs:
        if shutil.which(program) is None and not Path(program).exists():
            pytest.skip(f"{program} is not installed")


def _openssl(*args: str, input: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], input=input, capture_output=True, check=True).stdout


# ---------------------------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    token_cert: Path
    token_key: Path
    client_cert: Path
    client_key: Path


def make_certs(directory: Path) -> Certs:
    """A test CA, a server certificate for 127.0.0.1/localhost signed by it, and a token-signing certificate."""
    need("openssl")
    directory.mkdir(parents=True, exist_ok=True)
    d = str(directory)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.crt",
             "-days", "2", "-subj", "/CN=sampan test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{d}/server.key", "-out", f"{d}/server.csr",
             "-subj", "/CN=127.0.0.1")
    (directory / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                       "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
    _openssl("x509", "-req", "-in", f"{d}/server.csr", "-CA", f"{d}/ca.crt", "-CAkey", f"{d}/ca.key",
             "-CAcreateserial", "-out", f"{d}/server.crt", "-days", "2", "-extfile", f"{d}/ext.cnf")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{d}/token.key", "-out",
             f"{d}/token.crt", "-days", "2", "-subj", "/CN=sampan test token issuer")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{d}/client.key", "-out", f"{d}/client.csr",
             "-subj", "/CN=sampan test client")
    (directory / "client.cnf").write_text("extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
    _openssl("x509", "-req", "-in", f"{d}/client.csr", "-CA", f"{d}/ca.crt", "-CAkey", f"{d}/ca.key",
             "-CAcreateserial", "-out", f"{d}/client.cert", "-days", "2", "-extfile", f"{d}/client.cnf")
    return Certs(directory / "ca.crt", directory / "server.crt", directory / "server.key",
                 directory / "token.crt", directory / "token.key", directory / "client.cert",
                 directory / "client.key")


# ---------------------------------------------------------------------------------------------- token server


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenServer:
    """Docker's token auth: anonymous pull of ``public/*``, everything for USER:PASSWORD."""

    certs: Certs
    port: int = 0
    expires_in: int = 300
    requests: list[dict[str, object]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def grant(self, user: str | None, scope: str) -> dict[str, object] | None:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind != "repository" or not name:
            return None
        wanted = actions.split(",")
        allowed = wanted if user == USER else [a for a in wanted if a == "pull" and name.startswith("public/")]
        return {"type": "repository", "name": name, "actions": allowed}

    def token(self, user: str | None, scopes: list[str]) -> str:
        der = _openssl("x509", "-in", str(self.certs.token_cert), "-outform", "DER")
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": user or "", "aud": SERVICE, "exp": now + self.expires_in,
                  "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(),
                  "access": [g for s in scopes if (g := self.grant(user, s)) is not None]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = _openssl("dgst", "-sha256", "-sign", str(self.certs.token_key), input=signing_input.encode())
        return f"{signing_input}.{_b64url(signature)}"

    def start(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                pass

            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                auth = self.headers.get("Authorization", "")
                user = None
                if auth.startswith("Basic "):
                    name, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                    if (name, password) != (USER, PASSWORD):
                        self._reply(401, {"details": "incorrect username or password"})
                        outer.requests.append({"user": name, "ok": False})
                        return
                    user = name
                scopes = query.get("scope", [])
                outer.requests.append({"user": user, "ok": True, "scopes": scopes,
                                       "service": query.get("service", [""])[0]})
                self._reply(200, {"token": outer.token(user, scopes), "expires_in": outer.expires_in,
                                  "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})

            def do_POST(self) -> None:  # OAuth2: an identity (refresh) token for a token
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                refresh = form.get("refresh_token", [""])[0]
                if form.get("grant_type") != ["refresh_token"] or refresh != IDENTITY_TOKEN:
                    self._reply(401, {"error": "invalid_grant"})
                    outer.requests.append({"user": None, "ok": False, "oauth": True})
                    return
                scopes = form.get("scope", [""])[0].split()
                outer.requests.append({"user": USER, "ok": True, "scopes": scopes, "oauth": True})
                self._reply(200, {"access_token": outer.token(USER, scopes), "expires_in": outer.expires_in})

            def _reply(self, status: int, body: dict[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


# ---------------------------------------------------------------------------------------------- the registry


@dataclass
class Registry:
    """One running docker-registry, and the client-side config (sampan's and Docker's) that goes with it."""

    host: str  # 127.0.0.1:PORT
    scheme: str
    data: Path
    sampan_config: Path  # SAMPAN_CONFIG_DIR for the test
    docker_config: Path  # DOCKER_CONFIG for the test
    proc: subprocess.Popen[bytes]
    log: Path
    token_server: TokenServer | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def blob_path(self, digest: str) -> Path:
        hexpart = digest.split(":", 1)[1]
        return self.data / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"

    def skopeo_push(self, archive: Path, ref: str, *, creds: str | None = None) -> None:
        need("skopeo")
        args = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
        if creds:
            args += ["--dest-creds", creds]
        subprocess.run([*args, f"docker-archive:{archive}", f"docker://{self.host}/{ref}"], check=True,
                       capture_output=True, timeout=120)

    def client(self, *, authenticated: bool = True):
        from sampan.registry.client import RegistryClient
        from sampan.registry.config import RegistryConfig
        from sampan.registry.credentials import Credentials

        creds = Credentials(USER, PASSWORD) if authenticated else None
        return RegistryClient(self.host, config=RegistryConfig.load(self.sampan_config),
                              credentials=lambda: creds)


def write_sampan_config(directory: Path, *, insecure: list[str] | None = None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if insecure is not None:
        (directory / "registries.json").write_text(json.dumps({"insecure-registries": insecure}))


@contextmanager
def run_registry(base: Path, *, tls: Certs | None = None, htpasswd: bool = False,
                 token: TokenServer | None = None, client_certs: bool = False) -> Iterator[Registry]:
    need(REGISTRY_BIN)
    base.mkdir(parents=True, exist_ok=True)
    port = free_port()
    host = f"127.0.0.1:{port}"
    lines = ["version: 0.1", "log:", "  level: error", "  accesslog:", "    disabled: true", "storage:",
             "  filesystem:", f"    rootdirectory: {base / 'data'}", "  delete:", "    enabled: true",
             "  maintenance:", "    uploadpurging:", "      enabled: false",
             "validation:", "  manifests:", "    urls:", "      allow:", "        - ^https?://127\\.0\\.0\\.1[:/]",
             "http:", f"  addr: {host}"]
    if tls is not None:
        lines += ["  tls:", f"    certificate: {tls.server_cert}", f"    key: {tls.server_key}"]
        if client_certs:
            lines += ["    clientcas:", f"      - {tls.ca}"]
    if htpasswd:
        need("htpasswd")
        entry = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], capture_output=True, check=True,
                               text=True).stdout.strip()
        (base / "htpasswd").write_text(entry + "\n")
        lines += ["auth:", "  htpasswd:", "    realm: sampan-test", f"    path: {base / 'htpasswd'}"]
    if token is not None:
        lines += ["auth:", "  token:", f"    realm: {token.realm}", f"    service: {SERVICE}",
                  f"    issuer: {ISSUER}", f"    rootcertbundle: {token.certs.token_cert}"]
    (base / "config.yml").write_text("\n".join(lines) + "\n")
    log = base / "registry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([REGISTRY_BIN, "serve", str(base / "config.yml")], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    sampan_config, docker_config = base / "sampan-config", base / "docker-config"
    write_sampan_config(sampan_config, insecure=[] if tls is not None else None)
    if tls is not None:
        certs_dir = sampan_config / "certs.d" / host
        certs_dir.mkdir(parents=True)
        shutil.copy(tls.ca, certs_dir / "ca.crt")
    docker_config.mkdir()
    registry = Registry(host, "https" if tls else "http", base / "data", sampan_config, docker_config, proc, log,
                        token)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("docker-registry did not start: " + log.read_text()[-500:]) from None
                time.sleep(0.05)
        yield registry
    finally:
        stop(proc, 10)


# ---------------------------------------------------------------------------------------------- fixtures
# conftest.py loads this module as a plugin, so every test module can use these.


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def use_registry(monkeypatch: pytest.MonkeyPatch, registry: Registry) -> None:
    """Point the sampan CLI (its environment is read at each call) at the registry's client-side config."""
    monkeypatch.setenv("SAMPAN_CONFIG_DIR", str(registry.sampan_config))
    monkeypatch.setenv("DOCKER_CONFIG", str(registry.docker_config))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """A plain-HTTP registry of the test's own, with the CLI pointed at it."""
    with run_registry(tmp_path / "registry") as reg:
        use_registry(monkeypatch, reg)
        yield reg


@pytest.fixture
def token_registry(tmp_path: Path, certs: Certs, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """A registry with token auth (its ``token_server`` records the token requests), the CLI pointed at it."""
    tokens = TokenServer(certs)
    tokens.start()
    try:
        with run_registry(tmp_path / "token", token=tokens) as reg:
            use_registry(monkeypatch, reg)
            yield reg
    finally:
        tokens.stop()


# ---------------------------------------------------------------------------------------------- fault proxy


@dataclass
class FaultProxy:
    """An HTTP proxy in front of a plain-HTTP registry that misbehaves on purpose.

    modes: ``drop`` (blob bodies cut in the middle, once per blob), ``norange`` (as drop, and Range ignored),
    ``flip`` (one byte of each targeted blob flipped), ``html`` (manifests answered with an HTML page),
    ``truncate`` (manifest bodies cut short), ``tamper`` (manifest bodies altered: their digest no longer matches),
    ``redirect`` (blobs redirected to a "blob storage" server on another port, which records what it is sent),
    ``stall`` (targeted blob bodies: half sent, then nothing until the proxy stops; for killing a pull mid-blob),
    ``flaky`` (every first GET of a manifest or blob answered 503, then passed through).
    """

    backend: str
    mode: str
    targets: set[str] | None = None  # blob digests the fault applies to (None: all)
    port: int = 0
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    storage_requests: list[dict[str, str]] = field(default_factory=list)
    registry_data: Path | None = None
    _dropped: set[str] = field(default_factory=set)
    _released: threading.Event = field(default_factory=threading.Event)
    _servers: list[ThreadingHTTPServer] = field(default_factory=list)
    _storage_port: int = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _targeted(self, path: str) -> str | None:
        if "/blobs/sha256:" not in path:
            return None
        digest = "sha256:" + path.rsplit("/blobs/sha256:", 1)[1].split("?")[0]
        return digest if self.targets is None or digest in self.targets else None

    def start(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self._forward("HEAD")

            def do_GET(self) -> None:
                self._forward("GET")

            def _forward(self, method: str) -> None:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                outer.requests.append((method, self.path, headers))
                digest = outer._targeted(self.path)
                if method == "GET" and digest and outer.mode == "redirect":
                    self.send_response(307)
                    self.send_header("Location", f"http://127.0.0.1:{outer._storage_port}/{digest}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if outer.mode == "norange" and digest in outer._dropped:
                    headers.pop("Range", None)
                if outer.mode == "flaky" and method == "GET" and "/v2/" != self.path and self.path not in outer._dropped:
                    outer._dropped.add(self.path)
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                conn = http.client.HTTPConnection(outer.backend, timeout=30)
                conn.request(method, self.path, headers=headers)
                response = conn.getresponse()
                body = response.read()
                conn.close()
                is_manifest = "/manifests/" in self.path and response.status == 200
                out_headers = [(k, v) for k, v in response.getheaders()
                               if k.lower() not in ("content-length", "connection", "transfer-encoding")]
                if is_manifest and outer.mode == "html":
                    body = b"<html><body><h1>Welcome to nginx!</h1></body></html>"
                    out_headers = [("Content-Type", "text/html")]
                elif is_manifest and outer.mode == "truncate" and method == "GET":
                    body = body[: len(body) // 2]
                    out_headers = [(k, v) for k, v in out_headers if k.lower() != "docker-content-digest"]
                elif is_manifest and outer.mode == "tamper" and method == "GET":
                    body = body + b"\n"  # still the same JSON, no longer the same digest
                    out_headers = [(k, v) for k, v in out_headers if k.lower() != "docker-content-digest"]
                self.send_response(response.status)
                for key, value in out_headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if method == "HEAD":
                    return
                if digest and response.status in (200, 206) and len(body) > 1:
                    if outer.mode in ("drop", "norange") and digest not in outer._dropped:
                        outer._dropped.add(digest)
                        self.wfile.write(body[: len(body) // 2])
                        self.wfile.flush()
                        self.connection.shutdown(socket.SHUT_RDWR)
                        self.close_connection = True
                        return
                    if outer.mode == "stall":
                        self.wfile.write(body[: len(body) // 2])
                        self.wfile.flush()
                        outer._released.wait(60)
                        self.close_connection = True
                        return
                    if outer.mode == "flip":
                        middle = len(body) // 2
                        body = body[:middle] + bytes([body[middle] ^ 0x01]) + body[middle + 1:]
                self.wfile.write(body)

        class Storage(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                pass

            def do_GET(self) -> None:
                outer.storage_requests.append(dict(self.headers.items()))
                digest = self.path.strip("/")
                assert outer.registry_data is not None
                hexpart = digest.split(":", 1)[1]
                path = outer.registry_data / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = server.server_address[1]
        self._servers.append(server)
        if self.mode == "redirect":
            storage = ThreadingHTTPServer(("127.0.0.1", 0), Storage)
            self._storage_port = storage.server_address[1]
            self._servers.append(storage)
        for s in self._servers:
            threading.Thread(target=s.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._released.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------- images


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class PushedImage:
    manifest_digest: str
    config_digest: str
    layer_digests: list[str]
    manifest: bytes
    media_type: str
    size: int


def push_image(registry: Registry, repo: str, tag: str | None, layers: list[dict[str, bytes]], *,
               arch: str = "amd64", docker_types: bool = False, layer_media_type: str | None = None,
               cmd: list[str] | None = None, urls: list[str] | None = None,
               upload_layers: bool = True, compression: str = "gzip") -> PushedImage:
    """Build an image from file maps (one gzip or zstd layer each) and push it with sampan's own upload
    primitives."""
    from sampan.image import mediatypes as mt

    client = registry.client()
    try:
        descriptors, diff_ids = [], []
        for files in layers:
            raw = layer_tar(files)
            if compression == "zstd":
                import zstandard

                blob = zstandard.ZstdCompressor().compress(raw)
            else:
                blob = gzip.compress(raw, compresslevel=1, mtime=0)
            diff_ids.append(_sha(raw))
            digest = _sha(blob)
            if upload_layers and client.blob_size(repo, digest, scopes=[f"repository:{repo}:pull,push"]) is None:
                client.upload_blob(repo, digest, len(blob), blob)
            default_type = mt.OCI_LAYER_ZSTD if compression == "zstd" else (
                mt.DOCKER_LAYER_GZIP if docker_types else mt.OCI_LAYER_GZIP)
            descriptors.append({"mediaType": layer_media_type or default_type, "digest": digest, "size": len(blob)})
            if urls:
                descriptors[-1]["urls"] = urls
        config = json.dumps({"architecture": arch, "os": "linux", "created": "2024-01-01T00:00:00Z",
                             "config": {"Cmd": cmd or ["/bin/sh"], "Env": ["PATH=/bin"]},
                             "rootfs": {"type": "layers", "diff_ids": diff_ids},
                             "history": [{"created": "2024-01-01T00:00:00Z"} for _ in layers]}).encode()
        config_digest = _sha(config)
        client.upload_blob(repo, config_digest, len(config), config)
        media_type = mt.DOCKER_MANIFEST if docker_types else mt.OCI_MANIFEST
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": media_type,
            "config": {"mediaType": mt.DOCKER_CONFIG if docker_types else mt.OCI_CONFIG,
                       "digest": config_digest, "size": len(config)},
            "layers": descriptors}, indent=3).encode()
        digest = client.put_manifest(repo, tag or _sha(manifest), manifest, media_type)
        return PushedImage(digest, config_digest, [d["digest"] for d in descriptors], manifest, media_type,
                           len(manifest))
    finally:
        client.close()


def push_index(registry: Registry, repo: str, tag: str, entries: list[tuple[PushedImage, dict[str, str]]]) -> str:
    from sampan.image import mediatypes as mt

    index = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [
        {"mediaType": image.media_type, "digest": image.manifest_digest, "size": image.size, "platform": platform}
        for image, platform in entries]}).encode()
    client = registry.client()
    try:
        return client.put_manifest(repo, tag, index, mt.OCI_INDEX)
    finally:
        client.close()
