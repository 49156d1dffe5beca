"""``build``: BuildKit's Dockerfile features on sampan's builder (heredocs, RUN --mount, --chmod, ADD URL), ONBUILD,
--squash, SOURCE_DATE_EPOCH, ``image analyze``, contexts from tarballs and errors naming ``file:line``."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import signal
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sampan.build import dockerfile as df
from sampan.build import layers
from tests.build_context import make_context
from tests.conftest import SAMPAN, Sampan


def _sh(sampan: Sampan, image: str, script: str) -> str:
    return sampan("run", "--rm", image, "sh", "-c", script).stdout


def test_heredoc_parsing() -> None:
    parsed = df.parse("FROM busybox\nRUN <<EOF\necho hi\nEOF\nRUN cat <<-A > /x && cat <<'B'\n\tline $X\n\tA\n"
                      "b $Y\nB\nCOPY <<EOF /f\nx\nEOF\nRUN [\"echo\", \"<<E\"]\nENV A=1\n")
    run1, run2, copy, exec_form, env = parsed.stages[0].instructions
    assert [(d.name, d.data) for d in run1.heredocs] == [("EOF", "echo hi\n")]
    assert [(d.name, d.data, d.expand, d.chomp) for d in run2.heredocs] == [
        ("A", "line $X\n", True, True), ("B", "b $Y\n", False, False)]
    assert copy.heredocs[0].data == "x\n" and exec_form.heredocs == [] and env.line == 14
    with pytest.raises(df.DockerfileError, match="unterminated heredoc EOF"):
        df.parse("FROM busybox\nRUN <<EOF\necho\n")
    assert df.expand_text("a $X ${Y:-d} \\$Z 'q'", {"X": "1"}) == "a 1 d $Z 'q'"


def test_layer_analysis_and_squash_merge() -> None:
    def tar(entries: list[tuple[str, bytes | None]]) -> io.BytesIO:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as archive:
            for name, data in entries:
                info = tarfile.TarInfo(name)
                if data is None:
                    info.type = tarfile.DIRTYPE
                    archive.addfile(info)
                else:
                    info.size = len(data)
                    archive.addfile(info, io.BytesIO(data))
        buf.seek(0)
        return buf

    def stack() -> list[io.BytesIO]:
        return [tar([("a", b"x" * 100), ("d", None), ("d/big", b"y" * 50), ("keep", b"k")]),
                tar([("a", b"z" * 10), ("d/.wh..wh..opq", b""), ("d/new", b"n")]),
                tar([(".wh.keep", b""), ("e", b"e")])]

    result = layers.analyze([(str(i), stream) for i, stream in enumerate(stack())])
    assert [(lay.size, lay.wasted) for lay in result.layers] == [(151, 151), (11, 0), (1, 0)]
    assert result.added == 163 and round(result.efficiency, 3) == round(1 - 151 / 163, 3)
    names = []
    layers.squash(stack(), lambda info, data: names.append(
        (info.name, data.read() if data is not None else None)))
    assert names == [(".wh.keep", b""), ("a", b"z" * 10), ("d", None), ("d/.wh..wh..opq", b""),
                     ("d/new", b"n"), ("e", b"e")]


def test_heredocs_mounts_and_chmod(sampan: Sampan, busybox: str, tmp_path: Path) -> None:
    ctx = make_context(tmp_path, """FROM busybox
ARG NAME=world
RUN <<EOF
echo "hello $NAME" > /greeting
EOF
RUN <<EOT
#!/bin/sh
echo script > /script-ran
EOT
RUN cat <<A > /two && cat <<"B" >> /two
first
A
second $NAME
B
COPY --chmod=0741 <<EOF /etc/copied
name=${NAME}
EOF
COPY --chmod=600 f.txt /f.txt
RUN --mount=type=cache,target=/cache echo run >> /cache/log && wc -l < /cache/log > /cache-count
RUN --mount=type=bind,source=src,target=/src cp /src/data /from-bind
RUN --mount=type=tmpfs,target=/scratch touch /scratch/x && ls /scratch > /tmpfs-list
RUN --mount=type=secret,id=token cat /run/secrets/token > /secret-len && wc -c < /run/secrets/token > /secret-len
RUN --mount=type=secret,id=absent,required=false test ! -e /run/secrets/absent
""", {"f.txt": "f", "src/data": "bound\n"})
    secret = tmp_path / "token"
    secret.write_text("s3cr3t")
    sampan("build", "--secret", f"id=token,src={secret}", "-t", "bk", str(ctx))
    out = _sh(sampan, "bk", "cat /greeting /script-ran /two /etc/copied /from-bind /tmpfs-list /secret-len "
                             "/cache-count; stat -c '%a %n' /etc/copied /f.txt; ls -a /")
    lines = out.splitlines()
    assert lines[:9] == ["hello world", "script", "first", "second $NAME", "name=world", "bound", "x", "6", "1"]
    assert "741 /etc/copied" in lines and "600 /f.txt" in lines
    # mount points the image did not have leave no trace; the secret is in no layer
    assert not {"cache", "src", "scratch", "run"} & set(lines)
    sampan("save", "-o", str(tmp_path / "bk.tar"), "bk")
    assert b"s3cr3t" not in (tmp_path / "bk.tar").read_bytes()
    # the cache mount persists across builds (a --no-cache build still sees the first run's line)
    sampan("build", "--no-cache", "--secret", f"id=token,src={secret}", "-t", "bk2", str(ctx))
    assert _sh(sampan, "bk2", "cat /cache-count") == "2\n"
    # a cached rebuild; a change of the bound file is a miss for that RUN only
    assert sampan("build", "--secret", f"id=token,src={secret}", str(ctx)).stdout.count("Using cache") == 11
    (ctx / "src" / "data").write_text("changed")
    assert sampan("build", "--secret", f"id=token,src={secret}", str(ctx)).stdout.count("Using cache") == 7
    missing = sampan("build", str(make_context(tmp_path / "s", "FROM busybox\nRUN --mount=type=secret,id=x,required "
                                                      "true\n")), check=False)
    assert missing.returncode != 0 and "Dockerfile:2: secret x: not provided" in missing.stderr
    assert sampan("ps", "-aq").stdout == ""


@pytest.fixture
def http_file(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    body = b"remote content\n"
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "file.txt").write_bytes(body)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, directory=str(tmp_path / "www"), **kwargs)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/file.txt", body
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_add_url_checksum_onbuild_and_squash(sampan: Sampan, busybox: str, tmp_path: Path,
                                             http_file: tuple[str, bytes]) -> None:
    url, body = http_file
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    parent = make_context(tmp_path / "p", f"FROM busybox\nADD --checksum={digest} {url} /dl/\nONBUILD COPY f /from-child\n"
                                  "ONBUILD RUN echo triggered > /t\n")
    sampan("build", "-t", "parent", str(parent))
    assert _sh(sampan, "parent", "cat /dl/file.txt; stat -c %a /dl/file.txt") == "remote content\n600\n"
    bad = sampan("build", str(make_context(tmp_path / "b", f"FROM busybox\nADD --checksum=sha256:{'0' * 64} {url} /x\n")),
                 check=False)
    assert bad.returncode != 0 and "digest mismatch" in bad.stderr and "Dockerfile:2:" in bad.stderr
    child = make_context(tmp_path / "c", "FROM parent\nRUN rm /dl/file.txt && echo big > /big && rm /big\n"
                                 "RUN head -c 2000000 /dev/zero > /zeros\nRUN rm /zeros\n", {"f": "child file"})
    out = sampan("build", "-t", "child", str(child)).stdout
    assert "# Executing 2 build triggers" in out
    assert "of this image's" in out and "sampan image analyze" in out  # the 2 MB written then deleted
    assert _sh(sampan, "child", "cat /from-child /t") == "child filetriggered\n"
    config = json.loads(sampan("image", "inspect", "child").stdout)[0]
    assert config["Config"]["OnBuild"] in (None, [])
    analysis = sampan("image", "analyze", "child").stdout
    assert "wasted: /zeros" in analysis and "efficiency" in analysis
    squashed = sampan("build", "--squash", "-t", "flat", str(child)).stdout
    assert "squashed into" in squashed
    flat = json.loads(sampan("image", "inspect", "flat").stdout)[0]
    assert len(flat["RootFS"]["Layers"]) == len(json.loads(sampan("image", "inspect", "parent").stdout)[0]
                                                ["RootFS"]["Layers"]) + 1
    assert _sh(sampan, "flat", "ls / ; cat /t") .count("zeros") == 0
    history = sampan("history", "--no-trunc", "--format", "{{.Comment}}", "flat").stdout
    assert history.startswith("merge sha256:")


def test_source_date_epoch_reproducible_and_tar_context(sampan: Sampan, busybox: str, tmp_path: Path) -> None:
    ctx = make_context(tmp_path, "FROM busybox\nWORKDIR /app\nCOPY . .\nRUN echo x > /now && touch /later\nCMD [\"sh\"]\n",
               {"a": "a", "d/b": "b"})
    env = {**sampan.env, "SOURCE_DATE_EPOCH": "1700000000"}

    def build(*args: str) -> str:
        proc = subprocess.run([SAMPAN, "build", "-q", "--no-cache", *args], env=env, capture_output=True,
                              check=True)
        return proc.stdout.decode().strip()

    first = build(str(ctx))
    time.sleep(1.1)
    (ctx / "a").touch()
    assert build(str(ctx)) == first
    created = json.loads(sampan("image", "inspect", first).stdout)[0]["Created"]
    assert created.startswith("2023-11-14T22:13:20")
    archive = tmp_path / "ctx.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(ctx, arcname=".")
    assert build(str(archive)) == first
    notar = tmp_path / "plain"
    notar.write_text("not a tar")
    bad = sampan("build", str(notar), check=False)
    assert bad.returncode != 0 and "no tar archive" in bad.stderr


@pytest.mark.parametrize("text, message", [
    ("FROM busybox\nFOO bar\n", "Dockerfile:2: unknown instruction: FOO (FOO bar)"),
    ("FROM busybox\nRUN --mount=type=nope true\n", "Dockerfile:2: --mount: unsupported mount type \"nope\""),
    ("FROM busybox\nCOPY missing /\n", "Dockerfile:2: COPY failed: file not found in build context"),
    ("FROM busybox AS a\nCOPY --from=a /x /y\n", "Dockerfile:2: invalid from flag value a: refers to the current"),
    ("FROM busybox\nCOPY --chown=nobody:nogroup-nope Dockerfile /\n", "Dockerfile:2: unable to convert uid/gid"),
    ("FROM busybox\nCOPY --chmod=rwx Dockerfile /\n", "Dockerfile:2: invalid chmod parameter"),
    ("FROM busybox\nRUN echo out; exit 4\n", ("Dockerfile:2: The command '/bin/sh -c echo out; exit 4' returned a "
                                             "non-zero code: 4 (step 2/2: RUN echo out; exit 4)")),
])
def test_errors_name_file_line_and_step(sampan: Sampan, busybox: str, tmp_path: Path, text: str,
                                        message: str) -> None:
    result = sampan("build", str(make_context(tmp_path, text)), check=False)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].removeprefix("Error: ").startswith(message), result.stderr
    if "exit 4" in text:
        assert "out\n" in result.stdout
    assert sampan("ps", "-aq").stdout == ""


def test_from_platform(sampan: Sampan, busybox: str, tmp_path: Path) -> None:
    """``FROM --platform``: the host's platform (here through an ARG) builds; another one is refused with one
    line, since the store's busybox is the host's and no registry offers the other."""
    import platform as host

    arch = {"x86_64": "amd64", "aarch64": "arm64"}[host.machine()]
    other = "arm64" if arch == "amd64" else "amd64"
    ok = make_context(tmp_path / "ok", f"ARG P=linux/{arch}\nFROM --platform=$P busybox\nRUN true\n")
    assert sampan("build", "-q", str(ok)).stdout.strip().startswith("sha256:")
    bad = make_context(tmp_path / "bad", f"FROM --platform=linux/{other} busybox\nRUN true\n")
    result = sampan("build", str(bad), check=False)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"is for linux/{arch}, not linux/{other}" in lines[0], result.stderr
    assert "Dockerfile:1" in lines[0]


def test_ctrl_c_mid_run_leaves_nothing(sampan: Sampan, busybox: str, tmp_path: Path) -> None:
    ctx = make_context(tmp_path, "FROM busybox\nRUN echo started && sleep 60\n")
    proc = subprocess.Popen([SAMPAN, "build", str(ctx)], env=sampan.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        seen = b""
        while b"started" not in seen and time.monotonic() < deadline:
            seen += os.read(proc.stdout.fileno(), 4096)
        assert b"started" in seen
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert sampan("ps", "-aq").stdout == ""
    with open("/proc/self/mountinfo") as f:
        assert str(sampan.root) not in f.read()


GOLDEN = {
    "metadata": ("FROM busybox\nMAINTAINER someone\nARG V=1\nENV A=$V B=\"x y\"\nLABEL k=v other=\"a b\"\n"
                 "EXPOSE 80 53/udp\nUSER 1:2\nVOLUME /data\nSTOPSIGNAL SIGINT\nSHELL [\"/bin/sh\", \"-c\"]\n"
                 "ONBUILD RUN true\nHEALTHCHECK --interval=5s --retries=2 CMD true\nENTRYPOINT [\"/bin/sh\"]\n"
                 "CMD [\"-c\", \"echo $A\"]\n"),
    "files": ("FROM busybox AS base\nRUN mkdir -p /out && echo built > /out/app\nFROM busybox\nWORKDIR /w\n"
              "COPY --chown=1:2 d ./d/\nCOPY f* /files/\nADD pack.tar /unpacked/\nCOPY --from=base /out /o\n"
              "RUN rm /files/f1 && echo new > /w/new\nCMD [\"cat\", \"/o/app\"]\n"),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_against_dockers_classic_builder(sampan: Sampan, busybox: str, busybox_archive: Path,
                                                docker: dict[str, str], tmp_path: Path, name: str) -> None:
    """Config and every layer's file list as Docker's classic builder makes them; the image runs in Docker."""
    from tests.conftest import docker_cli

    ctx = make_context(tmp_path, GOLDEN[name], {"d/x": "x", "d/sub/y": "y", "f1": "1", "f2": "2"})
    with tarfile.open(ctx / "pack.tar", "w") as pack:
        info = tarfile.TarInfo("inner/file")
        info.size = 2
        pack.addfile(info, io.BytesIO(b"in"))
    tag = f"golden-{name}"
    docker_cli(docker, "load", "-i", str(busybox_archive))
    docker_cli({**docker, "DOCKER_BUILDKIT": "0"}, "build", "-q", "-t", tag, str(ctx))
    sampan("build", "-q", "-t", tag, str(ctx))
    ours_tar = tmp_path / "ours.tar"
    sampan("save", "-o", str(ours_tar), tag)
    try:
        theirs = json.loads(docker_cli(docker, "image", "inspect", tag))[0]
        ours = json.loads(sampan("image", "inspect", tag).stdout)[0]
        for key in sorted(set(theirs["Config"]) | set(ours["Config"])):
            if key not in ("Hostname", "Image"):
                assert ours["Config"].get(key) == theirs["Config"].get(key), key

        def layers(archive: bytes) -> list[list[tuple[str, int, int, int]]]:
            with tarfile.open(fileobj=io.BytesIO(archive)) as outer:
                manifest = json.load(outer.extractfile("manifest.json"))[0]
                out = []
                for layer_name in manifest["Layers"][1:]:
                    with tarfile.open(fileobj=io.BytesIO(outer.extractfile(layer_name).read())) as layer:
                        out.append(sorted((m.name.rstrip("/"), m.uid, m.gid, m.mode & 0o7777)
                                          for m in layer.getmembers()))
                return [entries for entries in out if entries]

        theirs_tar = subprocess.run(["docker", "save", tag], env=docker, capture_output=True, check=True).stdout
        assert layers(ours_tar.read_bytes()) == layers(theirs_tar)
        docker_cli(docker, "rmi", "-f", tag)
        docker_cli(docker, "load", "-i", str(ours_tar))
        history = docker_cli(docker, "history", "--format", "{{.CreatedBy}}", tag).splitlines()
        assert history == sampan("history", "--format", "{{.CreatedBy}}", tag).stdout.splitlines()
        expected = "1\n" if name == "metadata" else "built\n"
        assert docker_cli(docker, "run", "--rm", "--network", "none", tag) == expected
    finally:
        docker_cli(docker, "rmi", "-f", tag)
