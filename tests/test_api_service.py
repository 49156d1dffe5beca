"""The service's own options. Its unix socket is mode 0660 with the ``--group`` given; bad options are one line and
leave no socket. On TCP with ``--tlsverify``, as dockerd serves it, the real docker CLI and docker-py's TLSConfig
with a client certificate of the test CA get in (also through a hijacked attach, ``docker run``), and a client
with no certificate, with one of another CA, or speaking plain HTTP is refused at the handshake."""

from __future__ import annotations

import grp
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from api_service import running_service
from conftest import Sampan
from registry_fixtures import Certs, free_port, make_certs

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="the docker CLI is not installed")


@dataclass
class TLSService:
    port: int
    certs: Certs
    env: dict[str, str]

    def docker(self, *args: str, tls: tuple[str, ...] | None = None) -> subprocess.CompletedProcess[str]:
        """The docker CLI against the service, with the client certificate unless ``tls`` says otherwise."""
        if tls is None:
            tls = ("--tlsverify", "--tlscacert", str(self.certs.ca), "--tlscert", str(self.certs.client_cert),
                   "--tlskey", str(self.certs.client_key))
        return subprocess.run(["docker", *tls, "-H", f"tcp://127.0.0.1:{self.port}", *args], env=self.env,
                              capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def tls_service(tmp_path_factory: pytest.TempPathFactory, busybox_archive: Path) -> Iterator[TLSService]:
    base = tmp_path_factory.mktemp("api-tls")
    certs = make_certs(base / "certs")
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("DOCKER_")}
    service = TLSService(port, certs, {**env, "DOCKER_CONFIG": str(base / "config"), "DOCKER_CLI_HINTS": "false"})
    args = ["--host", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert", str(certs.ca), "--tlscert",
            str(certs.server_cert), "--tlskey", str(certs.server_key)]
    with running_service(base, args, lambda: service.docker("version").returncode == 0, busybox_archive):
        yield service


def test_docker_cli_with_a_client_certificate(tls_service: TLSService) -> None:
    ps = tls_service.docker("ps", "-a")
    assert ps.returncode == 0, ps.stderr
    assert ps.stdout.startswith("CONTAINER ID")
    run = tls_service.docker("run", "--rm", "--network", "none", "busybox", "echo", "over-tls")
    assert (run.returncode, run.stdout) == (0, "over-tls\n"), run.stderr


def test_clients_without_a_trusted_certificate_are_refused(tls_service: TLSService, tmp_path: Path) -> None:
    no_cert = tls_service.docker("ps", tls=("--tlsverify", "--tlscacert", str(tls_service.certs.ca)))
    assert no_cert.returncode != 0
    assert "certificate" in no_cert.stderr.lower() or "tls" in no_cert.stderr.lower(), no_cert.stderr
    other = make_certs(tmp_path / "other")  # a client certificate of another CA
    foreign = tls_service.docker("ps", tls=("--tlsverify", "--tlscacert", str(tls_service.certs.ca), "--tlscert",
                                            str(other.client_cert), "--tlskey", str(other.client_key)))
    assert foreign.returncode != 0
    plain = tls_service.docker("ps", tls=())  # plain HTTP to the TLS port
    assert plain.returncode != 0


def test_docker_py_tls_config(tls_service: TLSService, monkeypatch: pytest.MonkeyPatch) -> None:
    docker = pytest.importorskip("docker")
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # requests lets these override the client's CA
        monkeypatch.delenv(name, raising=False)
    certs = tls_service.certs
    tls = docker.tls.TLSConfig(client_cert=(str(certs.client_cert), str(certs.client_key)), ca_cert=str(certs.ca),
                               verify=True)
    client = docker.DockerClient(base_url=f"https://127.0.0.1:{tls_service.port}", tls=tls, timeout=30)
    try:
        assert client.ping()
        assert client.version()["ApiVersion"]
        assert client.containers.run("busybox", ["echo", "py-tls"], network_mode="none", remove=True) == b"py-tls\n"
    finally:
        client.close()
    with pytest.raises(docker.errors.DockerException):  # no client certificate: the handshake fails
        docker.DockerClient(base_url=f"https://127.0.0.1:{tls_service.port}",
                            tls=docker.tls.TLSConfig(ca_cert=str(certs.ca), verify=True), timeout=30)


def test_socket_group_and_bad_options(sampan: Sampan, tmp_path: Path) -> None:
    group = grp.getgrnam("daemon")
    sock = tmp_path / "api.sock"
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(tmp_path / "config")}

    def answers() -> bool:
        return subprocess.run(["docker", "version"], env=env, capture_output=True, check=False).returncode == 0

    with running_service(tmp_path / "service", ["--host", f"unix://{sock}", "--group", "daemon"], answers):
        info = sock.stat()
        assert (oct(info.st_mode & 0o777), info.st_uid, info.st_gid) == ("0o660", 0, group.gr_gid)
    assert not sock.exists()
    certs = tmp_path / "nosuch"
    for args in (["--group", "nosuch-group"],
                 ["--tlsverify", "--tlscacert", str(certs), "--tlscert", str(certs), "--tlskey", str(certs),
                  "--host", "tcp://127.0.0.1:2376"],
                 ["--host", "tcp://127.0.0.1:99999"],
                 ["--host", "unix://relative"]):
        bad = sampan("system", "service", "--host", f"unix://{sock}", *args, check=False, timeout=30)
        assert bad.returncode != 0 and bad.stderr.count("\n") == 1, (args, bad.stderr)
        assert "Traceback" not in bad.stderr and not sock.exists(), args
