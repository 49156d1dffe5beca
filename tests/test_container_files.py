"""cp, diff, commit and export through the real CLI, on real containers (overlay roots, volumes, binds), with the
real dockerd as the oracle for diff, commit's layer and export/import.

Each test uses its own storage root; the ``sampan`` fixture removes the containers afterwards and fails the test
if any mount of theirs is left (cp, diff, commit and export of stopped containers mount their roots for a while).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import SAMPAN, Result, Sampan, docker_cli

# Adds, changes and deletes of every kind: a file over an image file, whiteouts of a file and of a directory, an
# opaque directory (removed and made again) holding a new file and a re-made image directory, a mode change,
# a fifo, a symlink, a new tree.
SCENARIO = ("echo hi > /f; rm /bin/ls; mkdir -p /tmp/a/b; echo x >> /etc/passwd; rm /etc/group; rm -rf /usr; "
            "mkdir -p /usr/bin; touch /usr/new; mkdir /newdir; touch /newdir/x; chmod 700 /home; mkfifo /fifo; "
            "ln -s /etc /lnk; rm -rf /var/spool; mkdir -p /root/.x")


def _error(result: Result, text: str, code: int = 1) -> None:
    assert result.returncode == code, result
    assert result.stderr == f"Error: {text}\n", result


def _tar_names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [member.name for member in tar]


def _top_layer(archive: bytes) -> list[tarfile.TarInfo]:
    """The entries of the last layer of a docker-archive."""
    with tarfile.open(fileobj=io.BytesIO(archive)) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        layer = outer.extractfile(manifest[0]["Layers"][-1])
        assert layer is not None
        with tarfile.open(fileobj=io.BytesIO(layer.read())) as tar:
            return list(tar)


def _raw(sampan: Sampan, *args: str) -> bytes:
    """The bytes a sampan command writes on stdout (tar streams)."""
    proc = subprocess.run([SAMPAN, *args], capture_output=True, env=sampan.env, stdin=subprocess.DEVNULL,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _docker_raw(env: dict[str, str], *args: str) -> bytes:
    proc = subprocess.run(["docker", *args], env=env, capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def _mounted(sampan: Sampan) -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(str(sampan.root))]


# ---------------------------------------------------------------------------------------------- cp


def test_cp_in_and_out_of_running_and_stopped_containers(sampan: Sampan, busybox: str, tmp_path: Path) -> None:
    sampan("run", "-d", "--name", "web", "busybox", "sleep", "300")
    sampan("exec", "web", "sh", "-c", "mkdir -p /srv/d && echo one > /srv/d/a && echo two > /srv/b")
    out = tmp_path / "out"
    sampan("cp", "web:/srv/d/a", str(out))
    assert out.read_text() == "one\n"
    sampan("container", "cp", "web:/srv", str(tmp_path))
    assert sorted(os.listdir(tmp_path / "srv")) == ["b", "d"]
    assert (tmp_path / "srv" / "d" / "a").read_text() == "one\n"
    assert sorted(_tar_names(_raw(sampan, "cp", "web:/srv/d", "-"))) == ["d", "d/a"]

    (tmp_path / "host.txt").write_text("from host\n")
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "t").write_text("t\n")
    sampan("cp", str(tmp_path / "host.txt"), "web:/srv/")
    sampan("cp", str(tmp_path / "tree"), "web:/srv/tree2")
    assert sampan("exec", "web", "cat", "/srv/host.txt", "/srv/tree2/t").stdout == "from host\nt\n"
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w") as tar:
        info = tarfile.TarInfo("streamed")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"s!\n"))
    sampan("cp", "-", "web:/srv", input=stream.getvalue())
    assert sampan("exec", "web", "cat", "/srv/streamed").stdout == "s!\n"

    sampan("stop", "-t", "0", "web")
    sampan("cp", str(tmp_path / "host.txt"), "web:/stopped.txt")
    sampan("cp", "web:/stopped.txt", str(tmp_path / "back.txt"))
    assert (tmp_path / "back.txt").read_text() == "from host\n"
    assert _mounted(sampan) == []  # a stopped container's root is mounted only while cp works
    sampan("start", "web")
    assert sampan("exec", "web", "cat", "/stopped.txt").stdout == "from host\n"


def test_cp_errors_are_dockers(sampan: Sampan, busybox: str, tmp_path: Path) -> None:
    sampan("create", "--name", "box", "busybox")
    _error(sampan("cp", "a", "b", check=False), "must specify at least one container source")
    _error(sampan("cp", "box:/a", "box:/b", check=False), "copying between containers is not supported")
    _error(sampan("cp", "nosuch:/etc", str(tmp_path), check=False), "No such container: nosuch")
    _error(sampan("cp", "box:/nope", str(tmp_path / "x"), check=False), "Could not find the file /nope in "
           "container box")
    _error(sampan("cp", "box:/etc/passwd", "/nonexistent/dir/x", check=False),
           'invalid output path: directory "/nonexistent/dir" does not exist')
    assert sampan("cp", "box:/etc", check=False).returncode == 125  # usage: two arguments
    # "./name:with:colons" and absolute paths are local, as the docker CLI splits them
    _error(sampan("cp", "./box:/etc", str(tmp_path), check=False), "must specify at least one container source")
    assert _mounted(sampan) == []


def test_cp_ownership_is_what_dockerd_does(sampan: Sampan, busybox: str, tmp_path: Path) -> None:
    src = tmp_path / "owned"
    src.write_text("x")
    os.chown(src, 1234, 2345)
    sampan("create", "--name", "plain", "busybox")
    sampan("create", "--name", "nobody", "-u", "nobody", "busybox")
    sampan("create", "--name", "numeric", "-u", "4321:99", "busybox")
    sampan("cp", str(src), "plain:/keep")
    sampan("cp", "-a", str(src), "plain:/keep-a")
    sampan("cp", str(src), "nobody:/keep")
    sampan("cp", "-a", str(src), "nobody:/user")
    sampan("cp", "-a", str(src), "numeric:/user")

    def owners(name: str) -> dict[str, tuple[int, int]]:
        with tarfile.open(fileobj=io.BytesIO(_raw(sampan, "export", name))) as tar:
            return {m.name: (m.uid, m.gid) for m in tar if m.name in ("keep", "keep-a", "user")}

    assert owners("plain") == {"keep": (1234, 2345), "keep-a": (1234, 2345)}
    assert owners("nobody") == {"keep": (1234, 2345), "user": (65534, 65534)}  # busybox's /etc/passwd
    assert owners("numeric") == {"user": (4321, 99)}
    sampan("cp", "nobody:/user", str(tmp_path / "back"))
    st = (tmp_path / "back").stat()
    assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())  # host files belong to the caller


def test_cp_read_only_root_volumes_and_binds(sampan: Sampan, busybox: str, tmp_path: Path) -> None:
    bind = tmp_path / "bind"
    bind.mkdir()
    (bind / "b").write_text("bound\n")
    host = tmp_path / "h.txt"
    host.write_text("h\n")
    sampan("run", "-d", "--name", "ro", "--read-only", "-v", "data:/data", "-v", f"{bind}:/bind:ro", "busybox",
           "sleep", "300")
    _error(sampan("cp", str(host), "ro:/tmp/", check=False), "container rootfs is marked read-only")
    _error(sampan("cp", str(host), "ro:/bind/", check=False), "mounted volume is marked read-only")
    sampan("cp", str(host), "ro:/data/")  # a writable volume of a read-only container takes it
    assert sampan("exec", "ro", "cat", "/data/h.txt").stdout == "h\n"
    sampan("exec", "ro", "sh", "-c", "mkdir /data/sub && echo in > /data/sub/f")
    sampan("cp", "ro:/data/sub/f", str(tmp_path / "f"))
    assert (tmp_path / "f").read_text() == "in\n"
    sampan("cp", "ro:/bind/b", str(tmp_path / "b"))
    assert (tmp_path / "b").read_text() == "bound\n"
    # the mount point itself is copied under its name in the container
    (tmp_path / "into").mkdir()
    sampan("cp", "ro:/data", str(tmp_path / "into"))
    assert sorted(os.listdir(tmp_path / "into" / "data")) == ["h.txt", "sub"]
    assert sorted(_tar_names(_raw(sampan, "cp", "ro:/data", "-"))) == ["data", "data/h.txt", "data/sub",
                                                                      "data/sub/f"]


def test_cp_container_symlinks_never_reach_host_files(sampan: Sampan, busybox: str, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key").write_text("host secret\n")
    victim = tmp_path / "victim"
    victim.mkdir()
    before = sorted(os.listdir(victim))
    sampan("run", "-d", "--name", "evil", "busybox", "sleep", "300")
    sampan("exec", "evil", "sh", "-c",
           f"ln -s / /rootlink; ln -s {secret} /secretlink; ln -s {victim} /victimlink; "
           f"ln -s {secret}/key /keylink; mkdir -p /dir && ln -s {secret} /dir/inner; "
           "echo container > /etc/marker")
    payload = tmp_path / "payload"
    payload.write_text("pwned\n")

    # out: links resolve inside the container
    sampan("cp", "evil:/rootlink/etc/marker", str(tmp_path / "m"))
    assert (tmp_path / "m").read_text() == "container\n"
    _error(sampan("cp", "evil:/secretlink/key", str(tmp_path / "k"), check=False),
           "Could not find the file /secretlink/key in container evil")
    _error(sampan("cp", "-L", "evil:/keylink", str(tmp_path / "k"), check=False),
           "Could not find the file /keylink in container evil")
    assert not (tmp_path / "k").exists()
    sampan("cp", "evil:/keylink", str(tmp_path / "link"))  # without -L the link itself is copied
    assert os.readlink(tmp_path / "link") == f"{secret}/key"
    sampan("cp", "evil:/dir", str(tmp_path / "dircopy"))  # links inside a copied tree stay links
    assert os.readlink(tmp_path / "dircopy" / "inner") == str(secret)

    # in: a DEST through a link lands inside the container, never in the host directory it names
    sampan("cp", str(payload), "evil:/rootlink/tmp/p1")
    assert sampan("exec", "evil", "cat", "/tmp/p1").stdout == "pwned\n"
    result = sampan("cp", str(payload), "evil:/victimlink/p2", check=False)
    assert result.returncode == 1, result
    sampan("exec", "evil", "mkdir", "-p", str(victim))
    sampan("cp", str(payload), "evil:/victimlink/p3")
    assert sampan("exec", "evil", "cat", f"{victim}/p3").stdout == "pwned\n"
    _error(sampan("cp", str(payload), "evil:/keylink", check=False),
           f"Could not find the file {secret} in container evil")
    sampan("exec", "evil", "mkdir", "-p", str(secret))
    sampan("cp", str(payload), "evil:/keylink")  # a DEST that is a link is followed in the container
    assert sampan("exec", "evil", "cat", f"{secret}/key").stdout == "pwned\n"
    assert sorted(os.listdir(victim)) == before
    assert (secret / "key").read_text() == "host secret\n"
    assert sorted(os.listdir(secret)) == ["key"]


# ---------------------------------------------------------------------------------------------- diff


def test_diff_reports_adds_changes_and_deletes(sampan: Sampan, busybox: str) -> None:
    sampan("create", "--name", "fresh", "busybox")
    sampan("start", "fresh")
    assert sampan("diff", "fresh").stdout == ""  # the runtime's mount points are not changes
    sampan("run", "--name", "changed", "-v", "/vol", "-w", "/work", "busybox", "sh", "-c",
           "echo a > /a; rm /etc/group; rm -rf /var/spool; rm -rf /usr && mkdir /usr && touch /usr/n")
    lines = sampan("container", "diff", "changed").stdout.splitlines()
    assert lines == ["A /a", "C /etc", "D /etc/group", "C /usr", "D /usr/bin", "A /usr/n", "D /usr/sbin",
                     "C /var", "D /var/spool", "A /vol", "A /work"]
    _error(sampan("diff", "nosuch", check=False), "No such container: nosuch")


def test_diff_commit_and_export_match_docker(sampan: Sampan, busybox: str, busybox_archive: Path,
                                             docker: dict[str, str], tmp_path: Path) -> None:
    docker_cli(docker, "load", "-i", str(busybox_archive))
    sampan("run", "--name", "scene", "busybox", "sh", "-c", SCENARIO)
    docker_cli(docker, "run", "--name", "scene", "busybox", "sh", "-c", SCENARIO)
    try:
        ours = sampan("diff", "scene").stdout.splitlines()
        theirs = docker_cli(docker, "diff", "scene").splitlines()
        assert ours == sorted(theirs, key=lambda line: line[2:].split("/"))  # dockerd's order is map order
        assert {"A /f", "C /etc/passwd", "D /bin/ls", "D /usr/sbin", "C /usr/bin", "D /usr/bin/wc"} <= set(ours)

        # commit: the same layer entries (names, types, modes, owners) as dockerd's
        sampan("commit", "scene", "scene:1")
        docker_cli(docker, "commit", "scene", "scene:1")
        ours_layer = _top_layer(_raw(sampan, "save", "scene:1"))
        theirs_layer = _top_layer(_docker_raw(docker, "save", "scene:1"))

        def describe(members: list[tarfile.TarInfo]) -> list[tuple[str, bytes, int, int, int]]:
            return [(m.name.rstrip("/"), m.type, m.mode & 0o7777, m.uid, m.gid) for m in members]

        assert describe(ours_layer) == describe(theirs_layer)

        # export: dockerd's export is importable and runs; ours names entries the way dockerd does
        exported = tmp_path / "docker-export.tar"
        exported.write_bytes(_docker_raw(docker, "export", "scene"))
        sampan("import", str(exported), "fromdocker:1")
        assert sampan("run", "--rm", "fromdocker:1", "cat", "/f").stdout == "hi\n"
        ours_names = set(_tar_names(_raw(sampan, "export", "scene")))
        theirs_names = set(_tar_names(exported.read_bytes()))
        init_layer = {".dockerenv", "dev/console", "dev/pts", "dev/shm", "etc/mtab"}
        assert theirs_names - ours_names <= init_layer and not ours_names - theirs_names
    finally:
        docker_cli(docker, "rm", "-f", "scene")
        docker_cli(docker, "rmi", "-f", "scene:1")


# ---------------------------------------------------------------------------------------------- commit


def test_commit_makes_a_runnable_image_with_dockers_config(sampan: Sampan, busybox: str) -> None:
    sampan("run", "--name", "src", "-e", "A=1", "-w", "/work", "-l", "lab=1", "--stop-signal", "SIGUSR1",
           "busybox", "sh", "-c", SCENARIO)
    image_id = sampan("commit", "-a", "Me <me@example.com>", "-m", "my message", "-c", "ENV X=1",
                      "-c", "LABEL l2=2", "-c", 'CMD ["cat", "/f"]', "src", "made:1").stdout.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    info = json.loads(sampan("image", "inspect", "made:1").stdout)[0]
    assert info["Id"] == image_id and info["Parent"] == busybox
    assert (info["Author"], info["Comment"]) == ("Me <me@example.com>", "my message")
    container_id = sampan("inspect", "--format", "{{.Id}}", "src").stdout.strip()
    assert info["Container"] == container_id
    config = info["Config"]
    assert config["Env"] == ["A=1", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "X=1"]
    assert config["Cmd"] == ["cat", "/f"] and config["WorkingDir"] == "/work"
    assert config["Labels"] == {"lab": "1", "l2": "2"} and config["StopSignal"] == "SIGUSR1"
    assert info["ContainerConfig"]["Cmd"] == ["sh", "-c", SCENARIO]
    assert len(info["RootFS"]["Layers"]) == 2
    history = json.loads(sampan("history", "--no-trunc", "--format", "{{json .}}", "made:1").stdout.splitlines()[0])
    assert history["CreatedBy"] == f"sh -c {SCENARIO}" and history["Comment"] == "my message"

    assert sampan("run", "--rm", "made:1").stdout == "hi\n"
    out = sampan("run", "--rm", "made:1", "sh", "-c",
                 "ls /usr; ls /usr/bin | wc -l; test -e /bin/ls || echo gone; test -e /etc/group || echo gone; "
                 "ls -ld /home | cut -c1-10; test -p /fifo && echo fifo; readlink /lnk; ls /var; "
                 "tail -n1 /etc/passwd").stdout
    assert out.split("\n") == ["bin", "new", "0", "gone", "gone", "drwx------", "fifo", "/etc", "www", "x", ""]


def test_commit_pauses_a_running_container_and_an_unchanged_one_adds_no_layer(sampan: Sampan,
                                                                              busybox: str) -> None:
    sampan("run", "-d", "--name", "live", "busybox", "sleep", "300")
    same = sampan("commit", "live").stdout.strip()
    info = json.loads(sampan("image", "inspect", same).stdout)[0]
    assert info["RootFS"]["Layers"] == json.loads(sampan("image", "inspect", "busybox").stdout)[0]["RootFS"]["Layers"]
    assert info["RepoTags"] == []
    sampan("exec", "live", "sh", "-c", "echo live > /state")
    sampan("commit", "--pause=false", "live", "live:1")
    sampan("commit", "-p", "live", "live:2")  # a bare -p, as the docker CLI parses it
    assert sampan("commit", "live", "a:1", "b:1", check=False).returncode == 125
    assert sampan("inspect", "--format", "{{.State.Status}}", "live").stdout == "running\n"
    assert sampan("run", "--rm", "live:2", "cat", "/state").stdout == "live\n"
    sampan("pause", "live")
    sampan("commit", "live", "live:3")  # a paused container stays paused
    assert sampan("inspect", "--format", "{{.State.Status}}", "live").stdout == "paused\n"
    sampan("unpause", "live")

    images_before = sampan("images", "-q", "--no-trunc").stdout
    result = sampan("commit", "-c", "RUN rm -rf /", "live", "bad:1", check=False)
    assert result.returncode == 1 and "not a valid change command" in result.stderr
    assert sampan("commit", "live", "Bad:Name", check=False).returncode == 1
    _error(sampan("commit", "nosuch", check=False), "No such container: nosuch")
    assert sampan("images", "-q", "--no-trunc").stdout == images_before
    assert sampan("system", "check").returncode == 0


# ---------------------------------------------------------------------------------------------- export


def test_export_streams_or_writes_the_whole_root_and_imports_back(sampan: Sampan, busybox: str,
                                                                  tmp_path: Path) -> None:
    sampan("run", "--name", "exp", "busybox", "sh", "-c", "echo exported > /f; rm /bin/ls")
    data = _raw(sampan, "export", "exp")
    names = _tar_names(data)
    assert "bin/sh" in names and "f" in names and "bin/ls" not in names
    assert not any(name.startswith(("/", "./")) for name in names) and "." not in names
    target = tmp_path / "exp.tar"
    sampan("container", "export", "-o", str(target), "exp")
    assert target.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".sampan-")] == []
    image = sampan("import", str(target), "reimported:1").stdout.strip()
    assert image.startswith("sha256:")
    assert sampan("run", "--rm", "reimported:1", "cat", "/f").stdout == "exported\n"
    _error(sampan("export", "-o", str(tmp_path / "none.tar"), "nosuch", check=False), "No such container: nosuch")
    assert not (tmp_path / "none.tar").exists()
    assert _mounted(sampan) == []


@pytest.mark.parametrize("verb", ["diff", "commit", "export"])
def test_group_and_top_level_names(sampan: Sampan, verb: str) -> None:
    assert sampan(verb, "--help").returncode == 0
    assert sampan("container", verb, "--help").returncode == 0
