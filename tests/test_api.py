"""The Docker Engine API service with real clients: the docker CLI (DOCKER_HOST at sampan's socket) and
docker-py, plus raw HTTP for the error answers. One service per module, on its own root, run-time root and
socket, stopped by its pid at teardown; its stderr must hold no traceback."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from api_service import running_service
from conftest import Sampan
from http_get import http_get

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="the docker CLI is not installed")


@dataclass
class Service:
    runner: Sampan
    socket: Path
    env: dict[str, str]
    log: Path

    def docker(self, *args: str, input: bytes | None = None, check: bool = True,
               timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run(["docker", *args], env=self.env, input=input, capture_output=True, timeout=timeout, check=False,
                              stdin=None if input is not None else subprocess.DEVNULL)
        if check:
            assert proc.returncode == 0, (args, proc.returncode, proc.stderr.decode())
        return proc

    def out(self, *args: str, input: bytes | None = None) -> str:
        return self.docker(*args, input=input).stdout.decode()


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def request(service: Service, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = _UnixHTTP(str(service.socket))
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, busybox_archive: Path) -> Iterator[Service]:
    base = tmp_path_factory.mktemp("api")
    sock = base / "run" / "sampan.sock"
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(base / "config"),
           "DOCKER_CLI_HINTS": "false"}

    def answers() -> bool:
        return subprocess.run(["docker", "version"], env=env, capture_output=True, check=False).returncode == 0

    with running_service(base, ["--host", f"unix://{sock}"], answers, busybox_archive) as runner:
        yield Service(runner, sock, env, base / "service.log")
    assert not sock.exists()


# ---------------------------------------------------------------------------------------------- system


def test_version_info_images(service: Service) -> None:
    version = json.loads(service.out("version", "--format", "{{json .Server}}"))
    assert tuple(int(n) for n in version["ApiVersion"].split(".")) >= (1, 44)
    assert version["Os"] == "linux"
    assert service.out("info", "--format", "{{.Images}}").strip() == "1"
    images = service.out("images", "--format", "{{.Repository}}:{{.Tag}}").split()
    assert images == ["busybox:latest"]
    assert service.out("image", "inspect", "--format", "{{.Os}}", "busybox").strip() == "linux"
    assert "Images" in service.out("system", "df")
    assert oct(service.socket.stat().st_mode & 0o777) == "0o660"


def test_ping_and_errors(service: Service) -> None:
    status, headers, _ = request(service, "HEAD", "/_ping")
    assert status == 200
    assert headers["Api-Version"] >= "1.44" and headers["OSType"] == "linux" and "Builder-Version" in headers
    status, _, body = request(service, "GET", "/v1.44/_ping")
    assert (status, body) == (200, b"OK")
    cases = [
        ("GET", "/v1.44/containers/nosuch/json", None, 404, "No such container"),
        ("POST", "/containers/create", b"{bad", 400, "invalid JSON"),
        ("POST", "/containers/create", b"[1, 2]", 400, "expected an object"),
        ("POST", "/containers/create", json.dumps({"Image": "busybox", "Cmd": 5}).encode(), 400, "Config.Cmd"),
        ("POST", "/containers/create", json.dumps({"Image": "busybox", "Tty": "yes"}).encode(), 400, "Config.Tty"),
        ("POST", "/containers/create", json.dumps({"Image": "nosuch:image"}).encode(), 404, "No such image"),
        ("POST", "/containers/create", json.dumps({"Image": "busybox", "HostConfig": {"Memory": "lots"}}).encode(),
         400, "HostConfig.Memory"),
        ("GET", "/containers/json?all=maybe", None, 400, "all"),
        ("GET", "/containers/json?filters=notjson", None, 400, "filters"),
        ("GET", "/containers/json?filters=%7B%22nosuch%22%3A%5B%22x%22%5D%7D", None, 400, "nosuch"),
        ("GET", "/no/such/endpoint", None, 404, "page not found"),
        ("GET", "/v9.99/version", None, 400, "too new"),
        ("POST", "/containers/create", b"{" + b" " * (9 << 20) + b"}", 400, "too large"),
        ("DELETE", "/volumes/nosuch", None, 404, "No such volume"),
        ("POST", "/exec/nosuch/start", b"{}", 404, "No such exec"),
        ("POST", "/containers/nosuch/kill?signal=999", None, 400, "Invalid signal"),
        ("GET", "/containers/nosuch/top?ps_args=%22", None, 400, "ps_args"),
        ("GET", "/system/df?type=bogus", None, 400, "unknown object type"),
    ]
    for method, path, body, want_status, want_text in cases:
        status, headers, data = request(service, method, path, body)
        assert status == want_status, (path, status, data[:200])
        assert headers["Content-Type"] == "application/json"
        message = json.loads(data)["message"]
        assert want_text in message, (path, message)
    # the docker CLI shows the message itself
    proc = service.docker("inspect", "--type", "container", "nosuch", check=False)
    assert proc.returncode == 1 and b"No such" in proc.stderr


def _exchange(service: Service, data: bytes, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """Send ``data`` (requests, pipelined) on one connection and read ``count`` responses (Content-Length
    framed; none to HEAD), then whether the server closed the connection after them."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(service.socket))
        sock.sendall(data)
        stream = sock.makefile("rb")
        out = []
        for _ in range(count):
            status = int(stream.readline().split()[1])
            headers = {}
            while (line := stream.readline().decode()) not in ("\r\n", ""):
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = 0 if headers.get("x-request") == "HEAD" else int(headers.get("content-length", "0"))
            out.append((status, headers, stream.read(length)))
        return out


def test_fast_path_answers_as_aiohttp_and_hands_over(service: Service) -> None:
    """Plain pings and listings are answered before aiohttp (sampan.api.fastpath) with the very answer of
    aiohttp's handlers; anything else on the connection goes to aiohttp, in order."""
    service.docker("create", "--name", "fast-listed", "--label", "k=v", "busybox", "true")
    try:
        fast = request(service, "GET", "/v1.45/containers/json?all=1&filters=%7B%22label%22%3A%5B%22k%3Dv%22%5D%7D")
        # HTTP/1.0 is never the fast path's: the same listing through aiohttp's handler
        (slow,) = _exchange(service, b"GET /v1.45/containers/json?all=1&filters=%7B%22label%22%3A%5B%22k%3Dv%22"
                                     b"%5D%7D HTTP/1.0\r\nHost: x\r\n\r\n", 1)
        assert fast[0] == slow[0] == 200
        assert [c["Names"] for c in json.loads(fast[2])] == [["/fast-listed"]]
        assert json.loads(fast[2]) == json.loads(slow[2])
        for name in ("Api-Version", "Ostype", "Server", "Date", "Content-Type"):
            assert fast[1][name] == slow[1][name.lower()] or name == "Date", name
    finally:
        service.docker("rm", "fast-listed")
    ping = b"HEAD /_ping HTTP/1.1\r\nHost: x\r\n\r\n"
    listing = b"GET /v1.45/containers/json HTTP/1.1\r\nHost: x\r\n\r\n"
    version = b"GET /v1.45/version HTTP/1.1\r\nHost: x\r\n\r\n"
    get_ping = b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answers = _exchange(service, ping + listing + version + get_ping, 4)
    assert [status for status, _, _ in answers] == [200] * 4
    assert answers[0][1]["content-length"] == "0" and answers[0][1]["api-version"] == "1.45"
    assert json.loads(answers[1][2]) == [] and json.loads(answers[2][2])["ApiVersion"] == "1.45"
    assert answers[3][2] == b"OK"
    # a head longer than the fast path reads goes to aiohttp, as do requests it refuses, with its answers
    (long,) = _exchange(service, b"GET /_ping HTTP/1.1\r\nX-Long: " + b"a" * (20 << 10) + b"\r\n\r\n", 1)
    assert (long[0], long[2]) == (200, b"OK")
    (bad,) = _exchange(service, b"GET /_ping HTTP/1.1\r\nNo colon here\r\n\r\n", 1)
    assert bad[0] == 400
    (post,) = _exchange(service, b"POST /_ping HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 1)
    assert post[0] == 405


# ---------------------------------------------------------------------------------------------- containers


def test_run_rm_foreground(service: Service) -> None:
    proc = service.docker("run", "--rm", "busybox", "echo", "hello")
    assert proc.stdout == b"hello\n"
    proc = service.docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, b"out\n", b"err\n")
    proc = service.docker("run", "--rm", "-i", "busybox", "sh", input=b"echo from stdin\nexit 5\n", check=False)
    assert (proc.returncode, proc.stdout) == (5, b"from stdin\n")
    proc = service.docker("run", "--name", "kept", "busybox", "sh", "-c", "seq 1 2000")
    assert proc.stdout.decode().split() == [str(n) for n in range(1, 2001)]  # nothing lost before the start
    assert service.out("wait", "kept").strip() == "0"
    assert service.out("logs", "kept").split()[-1] == "2000"
    service.docker("rm", "kept")
    assert service.out("ps", "-aq") == ""


def test_run_rm_that_fails_to_start_is_removed(service: Service) -> None:
    """``docker run --rm`` waits for the container's removal after a failed start: the service removes it, as
    dockerd does (the user is looked up at start)."""
    proc = service.docker("run", "--rm", "--name", "nouser", "--network", "none", "-u", "nosuchuser", "busybox",
                          "true", check=False, timeout=30)
    assert proc.returncode == 125 and b"nosuchuser" in proc.stderr, proc.stderr
    assert "nouser" not in service.out("ps", "-a", "--format", "{{.Names}}").split()


def test_run_detached_lifecycle(service: Service) -> None:
    cid = service.out("run", "-d", "--name", "ticker", "busybox", "sh", "-c",
                      "trap 'exit 0' TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done").strip()
    assert len(cid) == 64
    assert service.out("ps", "--format", "{{.ID}} {{.Names}} {{.State}}").split() == [cid[:12], "ticker", "running"]
    time.sleep(0.4)
    assert service.out("logs", "ticker").startswith("tick 0\ntick 1\n")
    assert service.out("logs", "--tail", "1", "ticker").count("\n") == 1
    assert service.out("exec", "ticker", "sh", "-c", "echo in-exec; echo err >&2").strip() == "in-exec"
    assert service.docker("exec", "ticker", "sh", "-c", "exit 7", check=False).returncode == 7
    assert service.out("exec", "-i", "ticker", "cat", input=b"piped\n") == "piped\n"
    assert service.out("inspect", "--format", "{{.State.Running}} {{.Name}}", "ticker").split() == ["true", "/ticker"]
    top = service.out("top", "ticker")
    assert "PID" in top and "sh -c" in top
    stats = service.out("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "ticker").split()
    assert stats[0] == "ticker" and int(stats[1]) >= 1
    follower = subprocess.Popen(["docker", "logs", "-f", "ticker"], env=service.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    time.sleep(0.5)
    service.docker("stop", "ticker")
    out, _ = follower.communicate(timeout=15)  # follow ends when the container stops
    assert follower.returncode == 0 and b"tick 5" in out
    assert service.out("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "ticker").split() == \
        ["exited", "0"]
    service.docker("rename", "ticker", "ticker2")
    service.docker("rm", "ticker2")
    assert service.docker("rm", "ticker2", check=False).returncode == 1


def test_more_verbs_and_image_archives(service: Service, tmp_path: Path) -> None:
    """pause, unpause, update, restart, kill, export, events, history, save/load and image prune, each through the
    docker CLI."""
    import tarfile

    since = f"{time.time() - 1:.3f}"
    service.out("run", "-d", "--name", "verbs", "--network", "none", "busybox", "sleep", "300")

    def state() -> str:
        return service.out("inspect", "--format", "{{.State.Status}}", "verbs").strip()

    service.docker("pause", "verbs")
    assert state() == "paused"
    service.docker("unpause", "verbs")
    assert state() == "running"
    service.docker("update", "--memory", "64m", "--memory-swap", "128m", "verbs")
    assert service.out("inspect", "--format", "{{.HostConfig.Memory}}", "verbs").strip() == str(64 << 20)
    service.docker("restart", "-t", "1", "verbs")
    assert state() == "running"
    service.docker("kill", "--signal", "KILL", "verbs")
    assert service.out("wait", "verbs").strip() == "137"
    export = tmp_path / "export.tar"
    service.docker("export", "-o", str(export), "verbs")
    with tarfile.open(export) as tar:
        assert "bin/busybox" in tar.getnames()
    until = f"{time.time() + 1:.3f}"
    actions = service.out("events", "--since", since, "--until", until, "--filter", "container=verbs",
                          "--format", "{{.Action}}").split()
    for action in ("create", "start", "pause", "unpause", "restart", "kill", "die"):
        assert action in actions, (action, actions)
    service.docker("rm", "verbs")
    assert service.out("history", "--format", "{{.ID}}", "busybox").strip()
    service.docker("tag", "busybox", "verbs/copy:1")
    archive = tmp_path / "copy.tar"
    service.docker("save", "-o", str(archive), "verbs/copy:1")
    service.docker("rmi", "verbs/copy:1")
    assert "verbs/copy:1" in service.out("load", "-i", str(archive))
    assert service.out("image", "inspect", "--format", "{{.Id}}", "verbs/copy:1") == \
        service.out("image", "inspect", "--format", "{{.Id}}", "busybox")
    service.docker("rmi", "verbs/copy:1")
    assert "Total reclaimed space" in service.out("image", "prune", "-f")


def test_run_interactive_tty(service: Service) -> None:
    if shutil.which("script") is None:
        pytest.skip("script (util-linux) is not installed")
    command = "stty rows 30 cols 100; docker run -it --rm busybox sh -c 'tty; stty size; exit 4'"
    proc = subprocess.run(["script", "-eqc", command, "/dev/null"], env=service.env, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=60, check=False)
    out = proc.stdout.decode()
    assert "/dev/pts/0" in out and "30 100" in out, out
    assert proc.returncode == 4
    cid = service.out("run", "-d", "busybox", "sleep", "60").strip()
    try:  # a failure here must not leave the container to the tests that count containers
        command = f"stty rows 20 cols 70; docker exec -it {cid} sh -c 'tty; stty size; sleep 0.5'"
        proc = subprocess.run(["script", "-eqc", command, "/dev/null"], env=service.env, capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=60, check=False)
        assert "/dev/pts/" in proc.stdout.decode() and "20 70" in proc.stdout.decode(), proc.stdout
    finally:
        service.docker("rm", "-f", cid)


def test_cp_both_ways(service: Service, tmp_path: Path) -> None:
    cid = service.out("run", "-d", "busybox", "sleep", "60").strip()
    (tmp_path / "file.txt").write_text("host data\n")
    (tmp_path / "dir" / "sub").mkdir(parents=True)
    (tmp_path / "dir" / "sub" / "inner").write_text("inner\n")
    service.docker("cp", str(tmp_path / "file.txt"), f"{cid}:/tmp/")
    service.docker("cp", str(tmp_path / "dir"), f"{cid}:/tmp/dir")
    assert service.out("exec", cid, "cat", "/tmp/file.txt", "/tmp/dir/sub/inner") == "host data\ninner\n"
    out = tmp_path / "out"
    out.mkdir()
    service.docker("exec", cid, "sh", "-c", "echo made inside > /made")
    service.docker("cp", f"{cid}:/made", str(out / "made"))
    service.docker("cp", f"{cid}:/tmp/dir", str(out))
    assert (out / "made").read_text() == "made inside\n"
    assert (out / "dir" / "sub" / "inner").read_text() == "inner\n"
    proc = service.docker("cp", f"{cid}:/nonexistent", str(out), check=False)
    assert proc.returncode == 1 and b"Could not find the file" in proc.stderr
    assert "A /tmp/file.txt" in service.out("diff", cid)
    service.docker("rm", "-f", cid)


def test_volumes_and_prune(service: Service) -> None:
    assert service.out("volume", "create", "apivol").strip() == "apivol"
    assert "apivol" in service.out("volume", "ls", "--format", "{{.Name}}").split()
    assert json.loads(service.out("volume", "inspect", "apivol"))[0]["Mountpoint"].endswith("/apivol/_data")
    service.docker("run", "--rm", "-v", "apivol:/data", "busybox", "sh", "-c", "echo kept > /data/f")
    assert service.out("run", "--rm", "-v", "apivol:/data", "busybox", "cat", "/data/f") == "kept\n"
    service.docker("volume", "rm", "apivol")
    assert service.docker("volume", "rm", "apivol", check=False).returncode == 1
    service.docker("create", "--name", "stopped", "busybox", "true")
    assert "Deleted Containers" in service.out("container", "prune", "-f")
    service.docker("create", "--name", "stopped2", "busybox", "true")
    assert "Total reclaimed space" in service.out("system", "prune", "-f")
    assert service.out("ps", "-aq") == ""
    assert service.out("images", "-q") != ""  # a tagged image is not dangling


def test_cli_and_api_see_the_same_containers(service: Service) -> None:
    runner = service.runner
    sid = runner("run", "-d", "--name", "from-cli", "busybox", "sleep", "60").stdout.strip()
    assert service.out("ps", "--format", "{{.ID}} {{.Names}}").split() == [sid[:12], "from-cli"]
    did = service.out("run", "-d", "--name", "from-api", "busybox", "sleep", "60").strip()
    assert did[:12] in runner("ps", "-q").stdout.split()
    assert service.out("exec", "from-cli", "echo", "x") == "x\n"
    runner("rm", "-f", "from-api")
    service.docker("rm", "-f", "from-cli")
    assert runner("ps", "-aq").stdout == ""


# ---------------------------------------------------------------------------------------------- networks

_HTTPD = "mkdir -p /www && echo hello-$(hostname) > /www/index.html && httpd -f -p 80 -h /www"


def _wget(service: Service, network: str, url: str) -> str:
    for _ in range(50):
        proc = service.docker("run", "--rm", "--network", network, "busybox", "wget", "-qO-", url, check=False)
        if proc.returncode == 0:
            return proc.stdout.decode()
        time.sleep(0.1)
    raise AssertionError(f"{url}: {proc.stderr.decode()}")


def test_networks_by_name(service: Service) -> None:
    nid = service.out("network", "create", "--subnet", "10.251.40.0/24", "--label", "team=api", "apinet").strip()
    assert len(nid) == 64
    assert "apinet" in service.out("network", "ls", "--format", "{{.Name}}").split()
    assert service.out("network", "ls", "-q", "--filter", "label=team=api").split() == [nid[:12]]
    info = json.loads(service.out("network", "inspect", "apinet"))[0]
    assert (info["Id"], info["Driver"], info["Labels"]) == (nid, "bridge", {"team": "api"})
    assert info["IPAM"]["Config"] == [{"Subnet": "10.251.40.0/24", "Gateway": "10.251.40.1"}]
    cid = service.out("run", "-d", "--network", "apinet", "--network-alias", "www", "--name", "apiweb", "busybox",
                      "sh", "-c", _HTTPD).strip()
    assert _wget(service, "apinet", "http://apiweb/").startswith("hello-")
    assert _wget(service, "apinet", "http://www/").startswith("hello-")
    settings = json.loads(service.out("inspect", "--format", "{{json .NetworkSettings.Networks}}", "apiweb"))
    assert list(settings) == ["apinet"] and settings["apinet"]["IPAddress"].startswith("10.251.40.")
    assert settings["apinet"]["Aliases"] == ["www"] and settings["apinet"]["NetworkID"] == nid
    assert cid in json.loads(service.out("network", "inspect", "apinet"))[0]["Containers"]
    proc = service.docker("network", "rm", "apinet", check=False)
    assert proc.returncode == 1 and b"active endpoints" in proc.stderr
    service.docker("rm", "-f", "apiweb")
    # raw status codes as dockerd's
    cases = [("GET", "/networks/nosuch", None, 404), ("DELETE", "/networks/bridge", None, 403),
             ("DELETE", "/networks/nosuch", None, 404), ("POST", "/networks/create", b"{bad", 400),
             ("POST", "/networks/create", json.dumps({"Name": "apinet"}).encode(), 409),
             ("POST", "/networks/create", json.dumps({"Name": "x2", "Internal": "yes"}).encode(), 400),
             ("POST", "/networks/apinet/connect", json.dumps({"Container": "nosuch"}).encode(), 404)]
    for method, path, body, want in cases:
        status, _, data = request(service, method, path, body)
        assert status == want, (method, path, status, data)
    status, _, data = request(service, "POST", "/networks/create", json.dumps(
        {"Name": "rawnet", "CheckDuplicate": True, "Internal": True, "Options": {"com.docker.network.driver.mtu":
         "1400"}, "IPAM": {"Config": [{"Subnet": "10.251.41.0/24", "IPRange": "10.251.41.128/25"}]}}).encode())
    assert status == 201, data
    raw = json.loads(request(service, "GET", "/networks/rawnet")[2])
    assert raw["Id"] == json.loads(data)["Id"] and raw["Internal"] is True
    assert raw["Options"] == {"com.docker.network.driver.mtu": "1400"}
    assert raw["IPAM"]["Config"][0]["IPRange"] == "10.251.41.128/25"
    assert request(service, "DELETE", "/networks/rawnet")[0] == 204
    service.docker("network", "rm", "apinet")
    assert "apinet" not in service.out("network", "ls", "--format", "{{.Name}}").split()


def test_published_port(service: Service) -> None:
    cid = service.out("run", "-d", "--name", "pubweb", "-p", "127.0.0.1:0:80", "busybox", "sh", "-c",
                      _HTTPD).strip()
    host, _, port = service.out("port", "pubweb", "80").strip().partition(":")
    assert host == "127.0.0.1" and int(port) > 0
    reply = http_get("127.0.0.1", int(port))
    assert reply.startswith(b"HTTP/1.") and b"hello-" + cid[:12].encode() in reply
    assert service.out("ps", "--format", "{{.Ports}}", "--filter", "name=pubweb").strip() == \
        f"127.0.0.1:{port}->80/tcp"
    listed = json.loads(request(service, "GET", "/containers/json?filters=%7B%22name%22%3A%5B%22pubweb%22%5D%7D")[2])
    assert listed[0]["Ports"] == [{"IP": "127.0.0.1", "PrivatePort": 80, "PublicPort": int(port), "Type": "tcp"}]
    assert "bridge" in listed[0]["NetworkSettings"]["Networks"]
    ports = json.loads(service.out("inspect", "--format", "{{json .NetworkSettings.Ports}}", "pubweb"))
    assert ports == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": port}]}
    service.docker("rm", "-f", "pubweb")


# ---------------------------------------------------------------------------------------------- docker-py


def test_docker_py(service: Service) -> None:
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=f"unix://{service.socket}", timeout=60)
    try:
        assert client.ping()
        assert any("busybox:latest" in image.tags for image in client.images.list())
        assert client.containers.run("busybox", ["echo", "py"], remove=True) == b"py\n"
        container = client.containers.run("busybox", ["sh", "-c", "echo started; sleep 60"], detach=True,
                                          name="pyc", labels={"k": "v"})
        deadline = time.monotonic() + 10
        while b"started" not in container.logs() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert container.logs() == b"started\n"
        container.reload()
        assert container.status == "running" and container.labels == {"k": "v"}
        result = container.exec_run(["sh", "-c", "echo out; exit 2"])
        assert (result.exit_code, result.output) == (2, b"out\n")
        assert [c.name for c in client.containers.list(filters={"label": "k=v"})] == ["pyc"]
        container.kill()
        assert container.wait()["StatusCode"] == 137
        container.remove()
        volume = client.volumes.create("pyvol", labels={"a": "b"})
        assert volume.attrs["Labels"] == {"a": "b"}
        assert "pyvol" in [v.name for v in client.volumes.list()]
        volume.remove()
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet="10.251.42.0/24")])
        network = client.networks.create("pynet", driver="bridge", ipam=ipam, labels={"n": "1"})
        assert client.networks.get("pynet").attrs["IPAM"]["Config"][0]["Subnet"] == "10.251.42.0/24"
        assert [n.name for n in client.networks.list(names=["pynet"])] == ["pynet"]
        server = client.containers.run("busybox", ["sh", "-c", _HTTPD], detach=True, name="pyweb",
                                       network="pynet")
        fetch = "for i in $(seq 50); do wget -qO- http://pyweb/ && exit; sleep 0.1; done; exit 1"
        out = client.containers.run("busybox", ["sh", "-c", fetch], network="pynet", remove=True)
        assert out.startswith(b"hello-")
        server.reload()
        assert server.attrs["NetworkSettings"]["Networks"]["pynet"]["IPAddress"].startswith("10.251.42.")
        server.remove(force=True)
        network.reload()
        assert network.containers == []
        network.remove()
        with pytest.raises(docker.errors.NotFound):
            client.networks.get("pynet")
        with pytest.raises(docker.errors.NotFound):
            client.containers.get("nosuch")
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get("nosuch:tag")
    finally:
        client.close()


class _Attached:
    """A hijacked attach read by hand: docker-py hands its socket on without what its HTTP parser had already
    buffered, so output that comes with the ``101`` headers (the replayed log) would be lost at random."""

    def __init__(self, service: Service, container: str, query: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(str(service.socket))
        self.sock.sendall(f"POST /containers/{container}/attach?{query} HTTP/1.1\r\nHost: x\r\n"
                          "Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n".encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        assert data, "the service closed the attach early"
        return data

    def frame(self) -> tuple[int, bytes] | None:
        """The next stdcopy frame (stream, payload); None at the end."""
        while len(self.buffer) < 8:
            data = self.sock.recv(65536)
            if not data:
                assert not self.buffer
                return None
            self.buffer += data
        size = int.from_bytes(self.buffer[4:8], "big")
        while len(self.buffer) < 8 + size:
            self.buffer += self._recv()
        kind, payload, self.buffer = self.buffer[0], self.buffer[8:8 + size], self.buffer[8 + size:]
        return kind, payload

    def rest(self) -> list[tuple[int, bytes]]:
        out = []
        while (item := self.frame()) is not None:
            out.append(item)
        self.sock.close()
        return out


def test_attach_replays_the_log(service: Service, tmp_path: Path) -> None:
    """``logs=1``: the log so far, then (``stream=1``) the live output, each line once; ``stream=0`` ends after
    the log, also for a container that has exited."""
    script = "echo one; echo two >&2; while [ ! -e /w/go ]; do sleep 0.05; done; echo three"
    cid = service.out("run", "-d", "--network", "none", "-v", f"{tmp_path}:/w", "busybox", "sh", "-c",
                      script).strip()
    try:
        deadline = time.monotonic() + 10
        while service.docker("logs", cid).stderr != b"two\n" and time.monotonic() < deadline:
            time.sleep(0.05)
        both = "logs=1&stream=0&stdout=1&stderr=1"
        assert _Attached(service, cid, both).rest() == [(1, b"one\n"), (2, b"two\n")]
        assert _Attached(service, cid, "logs=1&stream=0&stdout=1").rest() == [(1, b"one\n")]
        live = _Attached(service, cid, "logs=1&stream=1&stdout=1&stderr=1")
        assert [live.frame(), live.frame()] == [(1, b"one\n"), (2, b"two\n")]
        (tmp_path / "go").touch()
        assert live.rest() == [(1, b"three\n")]
        assert service.out("wait", cid).strip() == "0"
        assert _Attached(service, cid, both).rest() == [(1, b"one\n"), (2, b"two\n"), (1, b"three\n")]
    finally:
        service.docker("rm", "-f", cid, check=False)


# ---------------------------------------------------------------------------------------------- docker-compose

# docker-compose 1.29 passes ssl_version to docker-py's kwargs_from_env, which docker-py 7 dropped (the test
# extra's docker-py); without TLS the argument is None, so dropping it changes nothing.
_COMPOSE = """
import sys
import docker.utils
import compose.cli.docker_client as client

def kwargs_from_env(*args, ssl_version=None, **kwargs):
    return docker.utils.kwargs_from_env(*args, **kwargs)

client.kwargs_from_env = kwargs_from_env
from compose.cli.main import main
sys.argv[0] = "docker-compose"
main()
"""

_COMPOSE_FILE = """
version: "2.4"
services:
  web:
    image: busybox
    command: sh -c 'mkdir -p /www && echo hello-compose > /www/index.html && httpd -f -p 80 -h /www'
    stop_signal: SIGKILL
    networks: [appnet]
  client:
    image: busybox
    command: sh -c 'for i in $$(seq 50); do wget -qO- http://web/ && exit 0; sleep 0.1; done; exit 1'
    depends_on: [web]
    networks: [appnet]
networks:
  appnet:
    labels: {purpose: test}
"""


def test_docker_compose(service: Service, tmp_path: Path) -> None:
    pytest.importorskip("compose.cli.main", reason="docker-compose 1.29 is not installed (the compose extra)")
    import sys

    (tmp_path / "docker-compose.yml").write_text(_COMPOSE_FILE)
    env = {**service.env, "COMPOSE_PROJECT_NAME": "apic"}

    def compose(*args: str) -> str:
        """stdout, then stderr (where compose writes its progress)."""
        proc = subprocess.run([sys.executable, "-c", _COMPOSE, *args], cwd=tmp_path, env=env, capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=120, check=False)
        assert proc.returncode == 0, (args, proc.stdout.decode(), proc.stderr.decode())
        return proc.stdout.decode() + proc.stderr.decode()

    try:
        compose("up", "-d")
        assert service.out("wait", "apic_client_1").strip() == "0"
        assert service.out("network", "inspect", "--format", "{{.Labels.purpose}}", "apic_appnet").strip() == "test"
        rows = {line.split()[0]: line for line in compose("ps").splitlines()[2:] if line.strip()}
        assert set(rows) == {"apic_web_1", "apic_client_1"}
        assert " Up " in rows["apic_web_1"] + " " and "Exit 0" in rows["apic_client_1"]
        assert "hello-compose" in compose("logs", "--no-color", "client")
        assert "apic_web_1 is up-to-date" in compose("up", "-d", "web")  # the network is as compose made it
    finally:
        compose("down")
    assert service.out("ps", "-aq", "--filter", "label=com.docker.compose.project=apic") == ""
    assert "apic_appnet" not in service.out("network", "ls", "--format", "{{.Name}}").split()


# ---------------------------------------------------------------------------------------------- build, pull, push

_DOCKERFILE = """FROM busybox
ARG MSG=unset
COPY greeting.txt /greeting.txt
RUN echo "built-$MSG" > /msg && echo run-output
CMD ["sh", "-c", "cat /msg /greeting.txt"]
"""


def _lines(body: bytes) -> list[dict]:
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def _tar(files: dict[str, bytes | str], *, gz: bool = False) -> bytes:
    """A context archive: bytes are files, a str is a symlink's target."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                archive.addfile(info)
            else:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def test_build_with_the_docker_cli(service: Service, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(_DOCKERFILE)
    (tmp_path / "greeting.txt").write_text("hello\n")
    env = {**service.env, "DOCKER_BUILDKIT": "0"}
    try:
        proc = subprocess.run(["docker", "build", "-t", "apibuild/x:1", "--build-arg", "MSG=ok", str(tmp_path)],
                              env=env, capture_output=True, timeout=60, check=False)
        out = proc.stdout.decode()
        assert proc.returncode == 0, proc.stderr.decode()
        assert "Step 1/5 : FROM busybox" in out and "run-output" in out
        assert "Successfully built " in out and "Successfully tagged apibuild/x:1" in out
        assert service.out("run", "--rm", "apibuild/x:1") == "built-ok\nhello\n"
        quiet = subprocess.run(["docker", "build", "-q", "--build-arg", "MSG=ok", str(tmp_path)], env=env,
                               capture_output=True, timeout=60, check=True).stdout.decode().strip()
        assert quiet == service.out("image", "inspect", "-f", "{{.Id}}", "apibuild/x:1").strip()  # cached
        (tmp_path / "other.Dockerfile").write_text("FROM busybox\nCMD [\"echo\", \"outside\"]\n")
        ctx = tmp_path / "ctx"
        ctx.mkdir()  # -f outside the context: the CLI adds the file to the context under a name of its own
        service.docker("build", "-q", "-t", "apibuild/x:2", "-f", str(tmp_path / "other.Dockerfile"), str(ctx))
        assert service.out("run", "--rm", "apibuild/x:2") == "outside\n"
        stdin = service.docker("build", "-q", "-", input=b"FROM busybox\nLABEL from=stdin\n")
        image = stdin.stdout.decode().strip()
        assert service.out("image", "inspect", "-f", "{{.Config.Labels.from}}", image).strip() == "stdin"
        service.docker("rmi", image)
        (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN exit 3\n")
        failed = subprocess.run(["docker", "build", str(tmp_path)], env=env, capture_output=True, timeout=60,
                                check=False)
        assert failed.returncode != 0 and b"returned a non-zero code: 3" in failed.stderr
    finally:
        service.docker("rmi", "apibuild/x:1", "apibuild/x:2", check=False)


def test_build_api_context_and_errors(service: Service) -> None:
    context = _tar({"sub/Build.file": b"FROM busybox\nLABEL a=b\nCMD [\"true\"]\n"}, gz=True)
    status, _, body = request(service, "POST", "/v1.44/build?t=apibuild/y&t=apibuild/y:2&dockerfile=sub/Build.file"
                              "&labels=%7B%22l%22%3A%22v%22%7D&rm=1&forcerm=0", context,
                              {"Content-Type": "application/x-tar"})
    assert status == 200, body
    lines = _lines(body)
    assert lines[0] == {"stream": "Step 1/4 : FROM busybox\n"}
    aux = [line["aux"]["ID"] for line in lines if "aux" in line]
    assert len(aux) == 1 and aux[0].startswith("sha256:")
    after = [line["stream"] for line in lines[lines.index({"aux": {"ID": aux[0]}}) + 1:]]
    assert after == [f"Successfully built {aux[0][7:19]}\n", "Successfully tagged apibuild/y:latest\n",
                     "Successfully tagged apibuild/y:2\n"]
    labels = json.loads(service.out("image", "inspect", "-f", "{{json .Config.Labels}}", "apibuild/y:2"))
    assert labels == {"a": "b", "l": "v"}
    service.docker("rmi", "apibuild/y", "apibuild/y:2")
    # the Dockerfile is looked up inside the context: a symlink out of it finds nothing on the host
    escape = _tar({"Dockerfile": "/etc/hostname", "x": b""})
    status, _, body = request(service, "POST", "/build", escape)
    assert status == 404 and b"Cannot locate specified Dockerfile" in body
    status, _, body = request(service, "POST", "/build?dockerfile=../../../../etc/hostname", escape)
    assert status == 404
    status, _, body = request(service, "POST", "/build?buildargs=notjson", _tar({"Dockerfile": b"FROM busybox\n"}))
    assert status == 400 and b"buildargs" in body
    status, _, body = request(service, "POST", "/build", _tar({"Dockerfile": b"FROM busybox\nRUN false\n"}))
    assert status == 200
    assert _lines(body)[-1]["errorDetail"]["message"] == _lines(body)[-1]["error"]
    assert "returned a non-zero code: 1" in _lines(body)[-1]["error"]


def test_pull_and_push_with_the_docker_cli(service: Service, tmp_path: Path) -> None:
    from registry_fixtures import push_image, run_registry

    with run_registry(tmp_path / "registry") as reg:
        name = f"{reg.host}/api/bb:1"
        try:
            service.docker("tag", "busybox", name)
            out = service.out("push", name)
            assert f"The push refers to repository [{reg.host}/api/bb]" in out
            assert "1: digest: sha256:" in out
            service.docker("rmi", name)
            pulled = service.out("pull", name)
            assert "Already exists" in pulled and f"Downloaded newer image for {name}" in pulled
            assert service.out("image", "inspect", "-f", "{{.Id}}", name) == \
                service.out("image", "inspect", "-f", "{{.Id}}", "busybox")
            assert "Image is up to date" in service.out("pull", name)
            # a fresh layer: Docker's per-layer progress lines, then the digest and status
            fresh = push_image(reg, "api/fresh", "v1", [{"data.bin": os.urandom(1 << 20)}])
            status, _, body = request(service, "POST", f"/v1.44/images/create?fromImage={reg.host}/api/fresh&tag=v1")
            assert status == 200
            lines = _lines(body)
            assert lines[0] == {"status": "Pulling from api/fresh", "id": "v1"}
            downloading = [line for line in lines if line.get("status") == "Downloading"]
            assert downloading and downloading[-1]["progressDetail"]["current"] == \
                downloading[-1]["progressDetail"]["total"]
            assert {"status": "Pull complete", "id": downloading[0]["id"]} in lines
            assert lines[-2:] == [{"status": f"Digest: {fresh.manifest_digest}"},
                                  {"status": f"Status: Downloaded newer image for {reg.host}/api/fresh:v1"}]
            missing = service.docker("pull", f"{reg.host}/api/nothing:here", check=False)
            assert missing.returncode != 0 and b"manifest unknown" in missing.stderr.lower()
        finally:
            service.docker("rmi", name, f"{reg.host}/api/fresh:v1", check=False)


def test_registry_auth_header_and_docker_py(service: Service, tmp_path: Path) -> None:
    import base64
    import io

    from registry_fixtures import PASSWORD, USER, run_registry

    docker = pytest.importorskip("docker")
    with run_registry(tmp_path / "basic", htpasswd=True) as reg:
        name = f"{reg.host}/private/bb"
        service.docker("tag", "busybox", f"{name}:1")
        client = docker.DockerClient(base_url=f"unix://{service.socket}", timeout=60)
        try:
            status, _, body = request(service, "POST", f"/images/{name}/push?tag=1")
            assert status == 200 and "unauthorized" in _lines(body)[-1]["errorDetail"]["message"], body
            auth = base64.urlsafe_b64encode(json.dumps({"username": USER, "password": PASSWORD,
                                                        "serveraddress": reg.host}).encode()).decode()
            status, _, body = request(service, "POST", f"/images/{name}/push?tag=1", headers={"X-Registry-Auth": auth})
            assert status == 200
            lines = _lines(body)
            assert "errorDetail" not in lines[-1], lines[-1]
            assert lines[-1]["aux"]["Tag"] == "1" and lines[-1]["aux"]["Digest"].startswith("sha256:")
            service.docker("rmi", f"{name}:1")
            with pytest.raises(docker.errors.APIError):
                client.images.pull(name, tag="1", auth_config={"username": USER, "password": "wrong"})
            image = client.images.pull(name, tag="1", auth_config={"username": USER, "password": PASSWORD})
            assert f"{name}:1" in image.tags
            # docker login goes to the registry; the CLI then sends the credentials with each push
            login = service.docker("login", "-u", USER, "--password-stdin", reg.host, input=PASSWORD.encode())
            assert b"Login Succeeded" in login.stdout
            bad = service.docker("login", "-u", USER, "--password-stdin", reg.host, input=b"wrong", check=False)
            assert bad.returncode != 0
            service.docker("tag", "busybox", f"{name}:2")
            assert "2: digest: sha256:" in service.out("push", f"{name}:2")
            dockerfile = io.BytesIO(b'FROM busybox\nCMD ["echo", "py"]\n')
            built, logs = client.images.build(fileobj=dockerfile, tag="apibuild/py:1", rm=True)
            assert "apibuild/py:1" in built.tags
            assert any("Successfully built" in entry.get("stream", "") for entry in logs)
            assert client.containers.run("apibuild/py:1", remove=True) == b"py\n"
        finally:
            client.close()
            service.docker("logout", reg.host, check=False)
            service.docker("rmi", f"{name}:1", f"{name}:2", "apibuild/py:1", check=False)


def test_build_client_goes_away(service: Service) -> None:
    """A client that hangs up mid-build stops the build at its next output: no container or context is left."""
    dockerfile = b"FROM busybox\nRUN for i in $(seq 3000); do echo line $i; sleep 0.01; done\n"
    context = _tar({"Dockerfile": dockerfile})
    conn = _UnixHTTP(str(service.socket))
    conn.request("POST", "/build?nocache=1", body=context, headers={"Content-Type": "application/x-tar"})
    response = conn.getresponse()
    assert response.status == 200
    while b"line 3" not in response.readline():
        pass
    conn.close()
    deadline = time.monotonic() + 15
    while service.out("ps", "-aq") or any((service.runner.root / "tmp").glob("sampan-build-*")):
        assert time.monotonic() < deadline, service.out("ps", "-a")
        time.sleep(0.1)
    assert service.out("version", "--format", "{{.Server.Os}}").strip() == "linux"
