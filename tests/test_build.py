"""``build``: real classic-builder builds from busybox in the test's own root (sampan.build)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from sampan.build import dockerfile as df
from tests.build_context import make_context
from tests.conftest import Sampan, docker_cli


def _config(sampan: Sampan, image: str) -> dict:
    return json.loads(sampan("image", "inspect", image).stdout)[0]["Config"]


# ---------------------------------------------------------------------------------------------- the parser


def test_parser_continuations_comments_escape_and_substitution() -> None:
    parsed = df.parse("# escape=`\nARG B=busybox\nFROM ${B} AS one\n# c\nRUN echo a `\n  # inner\n  b\n"
                      'ENV A="x y" C=${B:-z} D=${B:+set} E=$NOPE\nCMD ["sh"]\n')
    assert parsed.escape == "`" and [m.rest for m in parsed.meta_args] == ["B=busybox"]
    stage = parsed.stages[0]
    assert (stage.base, stage.name, stage.line) == ("${B}", "one", 3)
    run, env, cmd = stage.instructions
    assert (run.cmd, run.rest, run.line) == ("RUN", "echo a   b", 5)
    assert df.key_values(env, {"B": "bb"}, "`") == [("A", "x y"), ("C", "bb"), ("D", "set"), ("E", "")]
    assert cmd.json == ["sh"]
    assert df.expand("'$B'-\"$B\"-\\$B", {"B": "1"}) == "$B-1-$B"


@pytest.mark.parametrize("text, message", [
    ("FROM busybox\nFOO bar\n", "dockerfile parse error on line 2: unknown instruction: FOO"),
    ("RUN true\n", "dockerfile parse error on line 1: no build stage in current context"),
    ("FROM busybox\n\nCMD [\"a\", 1]\n", ("dockerfile parse error on line 3: when using JSON array syntax, "
     "arrays must be comprised of strings only")),
    ("FROM busybox\nSHELL sh -c\n", ("dockerfile parse error on line 2: SHELL requires the arguments to be in "
     "JSON form")),
])
def test_parser_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(df.DockerfileError) as info:
        df.parse(text)
    assert str(info.value) == message


# ---------------------------------------------------------------------------------------------- builds


def test_metadata_steps_and_a_cached_rebuild(sampan: Sampan, busybox: str, tmp_path: Path) -> None:
    ctx = make_context(tmp_path, "FROM busybox\nARG V=1\nENV A=b P=$V\nWORKDIR /app\nWORKDIR sub\nLABEL l=v \"k 2\"=w\n"
                         "EXPOSE 80 53/udp\nUSER 1:2\nVOLUME /data\nSTOPSIGNAL SIGINT\nSHELL [\"/bin/sh\", \"-c\"]\n"
                         "ONBUILD RUN true\nHEALTHCHECK --interval=5s CMD true\nENTRYPOINT [\"/bin/sh\"]\n"
                         "CMD echo hi\n")
    first = sampan("build", "-t", "meta", "-t", "meta:2", str(ctx)).stdout
    assert first.startswith("Step 1/15 : FROM busybox\n")
    assert "Successfully tagged meta:latest\nSuccessfully tagged meta:2\n" in first
    config = _config(sampan, "meta")
    assert "A=b" in config["Env"] and "P=1" in config["Env"]
    assert config["WorkingDir"] == "/app/sub" and config["User"] == "1:2"
    assert config["Labels"] == {"l": "v", "k 2": "w"}
    assert config["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert config["Volumes"] == {"/data": {}} and config["StopSignal"] == "SIGINT"
    assert config["OnBuild"] == ["RUN true"] and config["Healthcheck"] == {"Test": ["CMD-SHELL", "true"],
                                                                           "Interval": 5_000_000_000}
    assert config["Entrypoint"] == ["/bin/sh"] and config["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    history = json.loads(sampan("history", "--no-trunc", "--format", "{{json .}}", "meta").stdout.splitlines()[0])
    assert history["CreatedBy"] == '/bin/sh -c #(nop)  CMD ["/bin/sh" "-c" "echo hi"]'
    again = sampan("build", "-t", "meta", str(ctx)).stdout
    assert again.count(" ---> Using cache") == 14
    assert sampan("image", "inspect", "--format", "{{.Id}}", "meta").stdout.strip()[7:].startswith(
        again.split("Successfully built ")[1].split()[0])
    assert sampan("run", "--rm", "--entrypoint", "pwd", "meta").stdout == "/app/sub\n"


def test_run_layers_and_whiteouts(sampan: Sampan, busybox: str, tmp_path: Path) -> None:
    ctx = make_context(tmp_path, "FROM busybox\nARG WHO=x\nRUN echo $WHO > /kept && echo big > /gone && mkdir /d\n"
                         "RUN rm /gone /bin/true && touch /d/f\n")
    out = sampan("build", "--build-arg", "WHO=me", "-t", "runs", str(ctx)).stdout
    assert " ---> Running in " in out
    assert sampan("run", "--rm", "runs", "cat", "/kept").stdout == "me\n"
    listing = sampan("run", "--rm", "runs", "ls", "/", "/bin/true", "/d", check=False)
    assert "gone" not in listing.stdout and "No such file" in listing.stderr and "f" in listing.stdout
    # the deletions are OCI whiteouts in the last layer of the saved image
    archive = tmp_path / "runs.tar"
    sampan("save", "-o", str(archive), "runs")
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))[0]
        last = outer.extractfile(manifest["Layers"][-1]).read()
    with tarfile.open(fileobj=io.BytesIO(last)) as layer:
        names = layer.getnames()
    assert ".wh.gone" in names and "bin/.wh.true" in names and "d/f" in names
    failed = sampan("build", str(make_context(tmp_path / "f", "FROM busybox\nRUN exit 3\n")), check=False)
    assert failed.returncode != 0
    assert "The command '/bin/sh -c exit 3' returned a non-zero code: 3" in failed.stderr
    assert sampan("ps", "-aq").stdout == ""


def test_copy_globs_dockerignore_chown_and_add_tar(sampan: Sampan, busybox: str, tmp_path: Path) -> None:
    ctx = make_context(tmp_path, "FROM busybox\nCOPY *.txt /t/\nCOPY dir /d\nCOPY --chown=1:2 a.txt /owned\n"
                         "ADD pack.tar /unpacked/\nCOPY dir/sub/x.txt /single\n",
               {"a.txt": "a", "b.txt": "b", "c.log": "c", "dir/keep": "k", "dir/skip.log": "s",
                "dir/sub/x.txt": "x", ".dockerignore": "*.log\n**/*.log\n"})
    with tarfile.open(ctx / "pack.tar", "w") as pack:
        info = tarfile.TarInfo("inner/file")
        info.size = 2
        pack.addfile(info, io.BytesIO(b"in"))
    sampan("build", "-t", "copies", str(ctx))
    out = sampan("run", "--rm", "copies", "sh", "-c",
                 "ls /t /d /d/sub; stat -c '%u:%g %s' /owned /single; cat /unpacked/inner/file").stdout
    assert out.split() == ["/d:", "keep", "sub", "/d/sub:", "x.txt", "/t:", "a.txt", "b.txt", "1:2", "1", "0:0",
                           "1", "in"]
    missing = sampan("build", str(make_context(tmp_path / "m", "FROM busybox\nCOPY c.log /\n", {"c.log": "c",
                                                                                       ".dockerignore": "*.log"})),
                     check=False)
    assert missing.returncode != 0 and "excluded by .dockerignore" in missing.stderr
    # a context change is a cache miss from that step on; an mtime-only change is not
    rebuilt = sampan("build", "-t", "copies", str(ctx)).stdout
    assert rebuilt.count("Using cache") == 5
    (ctx / "a.txt").touch()
    assert sampan("build", "-t", "copies", str(ctx)).stdout.count("Using cache") == 5
    (ctx / "b.txt").write_text("changed")
    changed = sampan("build", "-t", "copies", str(ctx)).stdout
    assert changed.count("Using cache") == 0
    assert sampan("build", "--no-cache", str(ctx)).stdout.count("Using cache") == 0


def test_multi_stage_copy_from_and_target(sampan: Sampan, busybox: str, tmp_path: Path) -> None:
    ctx = make_context(tmp_path, "FROM busybox AS builder\nRUN mkdir /out && echo built > /out/app\n"
                         "FROM busybox AS unused\nRUN exit 1\n"
                         "FROM busybox\nCOPY --from=builder /out/app /app\nCOPY --from=0 /out /o2\nCMD [\"cat\", \"/app\"]\n")
    out = sampan("build", "-t", "multi", str(ctx)).stdout
    assert "exit 1" not in out  # the stage nothing needs is not built
    assert sampan("run", "--rm", "multi").stdout == "built\n"
    assert sampan("run", "--rm", "multi", "cat", "/o2/app").stdout == "built\n"
    sampan("build", "--target", "builder", "-t", "first", str(ctx))
    assert sampan("run", "--rm", "first", "cat", "/out/app").stdout == "built\n"
    bad = sampan("build", "--target", "nope", str(ctx), check=False)
    assert bad.returncode != 0 and "nope" in bad.stderr


def test_bad_dockerfiles_leave_nothing(sampan: Sampan, busybox: str, tmp_path: Path) -> None:
    before = sampan("images", "-aq").stdout
    for i, text in enumerate(["FROM busybox\nFOO x\n", "RUN true\n", "FROM busybox\nCMD [\"a\", 1]\n"]):
        result = sampan("build", str(make_context(tmp_path / str(i), text)), check=False)
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Dockerfile:" in lines[0], result.stderr
    assert sampan("images", "-aq").stdout == before
    assert sampan("ps", "-aq").stdout == ""


def test_context_from_stdin(sampan: Sampan, busybox: str, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        for name, data in (("Dockerfile", b"FROM busybox\nCOPY f /f\n"), ("f", b"stdin")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    image = sampan("build", "-q", "-", input=buf.getvalue()).stdout.strip()
    assert image.startswith("sha256:")
    assert sampan("run", "--rm", image, "cat", "/f").stdout == "stdin"
    only = sampan("build", "-q", "-t", "df", "-", input=b"FROM busybox\nENV X=1\n").stdout.strip()
    assert "X=1" in _config(sampan, only)["Env"]


def test_build_matches_dockers_classic_builder(sampan: Sampan, busybox: str, busybox_archive: Path,
                                                docker: dict[str, str], tmp_path: Path) -> None:
    ctx = make_context(tmp_path, "FROM busybox\nENV A=1\nWORKDIR /w\nCOPY f ./\nRUN echo x > g && rm f\n"
                         "LABEL k=v\nEXPOSE 8080\nCMD [\"sh\"]\n", {"f": "data"})
    docker_cli(docker, "load", "-i", str(busybox_archive))
    docker_cli({**docker, "DOCKER_BUILDKIT": "0"}, "build", "-t", "parity", str(ctx))
    sampan("build", "-t", "parity", str(ctx))
    try:
        theirs = json.loads(docker_cli(docker, "image", "inspect", "parity"))[0]["Config"]
        ours = _config(sampan, "parity")
        for key in ("Cmd", "Env", "WorkingDir", "Labels", "ExposedPorts"):
            assert ours.get(key) == theirs.get(key), key

        def layers(archive: bytes) -> list[list[str]]:
            with tarfile.open(fileobj=io.BytesIO(archive)) as outer:
                manifest = json.load(outer.extractfile("manifest.json"))[0]
                out = []
                for name in manifest["Layers"][1:]:
                    with tarfile.open(fileobj=io.BytesIO(outer.extractfile(name).read())) as layer:
                        names = sorted(n.rstrip("/") for n in layer.getnames())
                    if names:
                        out.append(names)
                return out

        import subprocess

        theirs_tar = subprocess.run(["docker", "save", "parity"], env=docker, capture_output=True,
                                    check=True).stdout
        archive = tmp_path / "ours.tar"
        sampan("save", "-o", str(archive), "parity")
        assert layers(archive.read_bytes()) == layers(theirs_tar)
    finally:
        docker_cli(docker, "rmi", "-f", "parity")
