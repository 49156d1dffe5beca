"""Volume commands through the real CLI: create, ls, inspect, rm, prune; names, options, filters, concurrency."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from conftest import SAMPAN, Result, Sampan, docker_cli, store_listing


def _names(sampan: Sampan, *args: str) -> list[str]:
    return sampan("volume", "ls", "-q", *args).stdout.split()


def _one_line_error(result: Result, code: int = 1) -> str:
    assert result.returncode == code, result
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1, result
    assert result.stderr.startswith("Error: ")
    return result.stderr


def test_create_inspect_ls_rm(sampan: Sampan) -> None:
    assert sampan("volume", "create", "data").stdout == "data\n"
    data = sampan.root / "volumes" / "data" / "_data"
    assert data.is_dir() and data.stat().st_mode & 0o7777 == 0o755
    assert (sampan.root / "volumes" / "data").stat().st_mode & 0o7777 == 0o701
    info = json.loads(sampan("volume", "inspect", "data").stdout)
    assert info == [{"CreatedAt": info[0]["CreatedAt"], "Driver": "local", "Labels": None,
                     "Mountpoint": str(data), "Name": "data", "Options": None, "Scope": "local"}]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)", info[0]["CreatedAt"])
    assert list(json.loads(sampan("volume", "inspect", "data").stdout)[0]) == \
        ["CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options", "Scope"]
    assert sampan("volume", "inspect", "-f", "{{.Name}} {{.Mountpoint}}", "data").stdout == f"data {data}\n"

    out = sampan("volume", "ls").stdout.splitlines()
    assert out[0] == "DRIVER    VOLUME NAME" and out[1].split() == ["local", "data"]
    assert sampan("volume", "list", "-q").stdout == "data\n"
    (data / "file").write_bytes(b"x" * 10)
    assert sampan("volume", "rm", "data").stdout == "data\n"
    assert not (sampan.root / "volumes" / "data").exists()
    assert list((sampan.root / "trash").iterdir()) == []
    assert sampan("volume", "ls", "-q").stdout == ""
    assert sampan("system", "check").stdout.strip() == "store is consistent"


def test_anonymous_volume_and_labels_and_options(sampan: Sampan, tmp_path: Path) -> None:
    name = sampan("volume", "create").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", name)
    info = json.loads(sampan("volume", "inspect", name).stdout)[0]
    assert info["Labels"] == {"com.docker.volume.anonymous": ""}
    sampan("volume", "create", "--label", "a=b", "--label", "c", "-o", "type=tmpfs", "-o", "device=tmpfs",
           "-o", "o=size=64m,mode=1777", "tv")
    info = json.loads(sampan("volume", "inspect", "tv").stdout)[0]
    assert info["Labels"] == {"a": "b", "c": ""}
    assert info["Options"] == {"device": "tmpfs", "o": "size=64m,mode=1777", "type": "tmpfs"}
    src = tmp_path / "src"
    src.mkdir()
    sampan("volume", "create", "-o", "type=none", "-o", "o=bind", "-o", f"device={src}", "bound")
    assert json.loads(sampan("volume", "inspect", "bound").stdout)[0]["Options"]["device"] == str(src)


def test_create_is_idempotent_and_conflicts_on_differences(sampan: Sampan) -> None:
    sampan("volume", "create", "--label", "k=v", "v1")
    assert sampan("volume", "create", "--label", "k=v", "v1").stdout == "v1\n"
    for extra in (["-o", "type=tmpfs", "-o", "device=tmpfs"], ["--label", "k=other"]):
        err = _one_line_error(sampan("volume", "create", *extra, "v1", check=False))
        assert "already exists" in err
    assert json.loads(sampan("volume", "inspect", "v1").stdout)[0]["Labels"] == {"k": "v"}
    assert _names(sampan) == ["v1"]


@pytest.mark.parametrize(("args", "message"), [
    (["x"], "volume name is too short"),
    (["bad/name"], "includes invalid characters"),
    (["_bad"], "includes invalid characters"),
    (["a b"], "includes invalid characters"),
    (["a" * 256], "includes invalid characters"),
    (["-d", "foo", "dd"], 'plugin "foo" not found'),
    (["-o", "foo=bar", "fb"], 'invalid option: "foo"'),
    (["-o", "type=tmpfs", "fb"], 'missing required option: "device"'),
    (["-o", "o=size=1m", "fb"], 'missing required option: "device"'),
    (["-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=lots", "fb"], "invalid tmpfs size"),
    (["-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=bogus", "fb"], "invalid tmpfs mount option"),
    (["-o", "type=none", "-o", "o=bind", "-o", "device=/nonexistent/dir", "fb"], "does not exist"),
    (["-o", "type=none", "-o", "o=bind", "-o", "device=relative", "fb"], "absolute path"),
    (["-o", "type=none", "-o", "o=ro", "-o", "device=/tmp", "fb"], 'needs "o=bind"'),
    (["--label", "=v", "fb"], "empty name"),
])
def test_bad_create_is_one_line_and_creates_nothing(sampan: Sampan, args: list[str], message: str) -> None:
    sampan("volume", "ls")  # the root exists
    before = store_listing(sampan.root)
    err = _one_line_error(sampan("volume", "create", *args, check=False))
    assert message in err
    after = {k: v for k, v in store_listing(sampan.root).items() if not k.startswith("sampan.db")}
    assert after == {k: v for k, v in before.items() if not k.startswith("sampan.db")}
    assert _names(sampan) == []


def test_ls_filters_and_formats(sampan: Sampan) -> None:
    sampan("volume", "create", "--label", "env=prod", "--label", "team", "alpha")
    sampan("volume", "create", "--label", "env=dev", "beta")
    anon = sampan("volume", "create").stdout.strip()
    assert _names(sampan) == sorted(["alpha", "beta", anon])
    assert _names(sampan, "--filter", "name=alp") == ["alpha"]
    assert _names(sampan, "--filter", "name=^be", "--filter", "name=^al") == ["alpha", "beta"]
    assert _names(sampan, "--filter", "label=env") == ["alpha", "beta"]
    assert _names(sampan, "--filter", "label=env=dev") == ["beta"]
    assert _names(sampan, "--filter", "label=env=prod", "--filter", "label=team") == ["alpha"]
    assert _names(sampan, "--filter", "driver=local") == sorted(["alpha", "beta", anon])
    assert _names(sampan, "--filter", "driver=other") == []
    assert _names(sampan, "--filter", "dangling=true") == sorted(["alpha", "beta", anon])
    assert _names(sampan, "--filter", "dangling=false") == []
    assert "dangling=maybe" in _one_line_error(sampan("volume", "ls", "--filter", "dangling=maybe", check=False))
    assert "invalid filter 'foo'" in _one_line_error(sampan("volume", "ls", "--filter", "foo=bar", check=False))

    rows = [json.loads(line) for line in sampan("volume", "ls", "--format", "json").stdout.splitlines()]
    alpha = rows[0] if rows[0]["Name"] == "alpha" else rows[1]
    assert alpha["Labels"] == "env=prod,team=" and alpha["Driver"] == "local" and alpha["Scope"] == "local"
    assert alpha["Mountpoint"] == str(sampan.root / "volumes" / "alpha" / "_data")
    assert {"Size", "Links", "CreatedAt", "Name", "Driver", "Labels", "Mountpoint", "Scope"} <= set(alpha)
    out = sampan("volume", "ls", "-f", "name=alpha", "--format", "{{.Name}}|{{.Driver}}|{{.Scope}}|{{.Size}}|"
                 "{{.Links}}").stdout
    assert out == "alpha|local|local|N/A|N/A\n"
    table = sampan("volume", "ls", "-f", "name=beta", "--format", "table {{.Name}}\t{{.Labels}}").stdout.splitlines()
    assert table[0].split() == ["VOLUME", "NAME", "LABELS"] and table[1].split() == ["beta", "env=dev"]


def test_rm_errors_and_force(sampan: Sampan) -> None:
    sampan("volume", "create", "keep")
    r = sampan("volume", "rm", "nope", check=False)
    assert r.returncode == 1 and r.stderr == "Error: No such volume: nope\n" and r.stdout == ""
    r = sampan("volume", "rm", "-f", "nope")
    assert r.stdout == "nope\n" and r.stderr == ""
    r = sampan("volume", "rm", "nope", "keep", check=False)  # the others are still removed
    assert r.returncode == 1 and r.stdout == "keep\n" and "No such volume: nope" in r.stderr
    assert _names(sampan) == []
    r = sampan("volume", "inspect", "nope", check=False)
    assert r.returncode == 1 and r.stderr == "Error: No such volume: nope\n"


def test_prune(sampan: Sampan) -> None:
    sampan("volume", "create", "named")
    sampan("volume", "create", "--label", "keep=1", "kept")
    anon = sampan("volume", "create").stdout.strip()
    (sampan.root / "volumes" / anon / "_data" / "f").write_bytes(b"x" * 2000)
    declined = sampan("volume", "prune", input="n\n")
    assert "anonymous local volumes" in declined.stdout and "Deleted" not in declined.stdout
    assert len(_names(sampan)) == 3
    out = sampan("volume", "prune", "-f").stdout
    assert out == f"Deleted Volumes:\n{anon}\n\nTotal reclaimed space: 2kB\n"
    assert sampan("volume", "prune", "-f").stdout == "Total reclaimed space: 0B\n"
    out = sampan("volume", "prune", "-a", "-f", "--filter", "label!=keep").stdout
    assert out == "Deleted Volumes:\nnamed\n\nTotal reclaimed space: 0B\n"
    assert "invalid filter 'until'" in _one_line_error(
        sampan("volume", "prune", "-f", "--filter", "until=1h", check=False))
    confirmed = sampan("volume", "prune", "-a", input="y\n").stdout.splitlines()
    assert confirmed[-3:] == ["kept", "", "Total reclaimed space: 0B"]
    assert _names(sampan) == [] and list((sampan.root / "volumes").iterdir()) == []
    assert list((sampan.root / "trash").iterdir()) == []


def _parallel(sampan: Sampan, argvs: list[list[str]]) -> list[subprocess.CompletedProcess[bytes]]:
    procs = [subprocess.Popen([SAMPAN, *argv], env=sampan.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for argv in argvs]
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        out.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return out


def test_concurrent_creates(sampan: Sampan) -> None:
    sampan("volume", "ls")  # schema in place: the race is about volumes, not the first migration
    results = _parallel(sampan, [["volume", "create", f"v{i}"] for i in range(10)])
    assert [r.returncode for r in results] == [0] * 10, [r.stderr for r in results]
    assert _names(sampan) == sorted(f"v{i}" for i in range(10))
    results = _parallel(sampan, [["volume", "create", "--label", "x=1", "same"] for _ in range(10)])
    assert all(r.returncode == 0 and r.stdout == b"same\n" for r in results), [r.stderr for r in results]
    # the same name with different options: one wins, the others fail cleanly with one line
    results = _parallel(sampan, [["volume", "create", "--label", f"x={i}", "racy"] for i in range(10)])
    assert sum(r.returncode == 0 for r in results) == 1
    for r in results:
        if r.returncode:
            assert r.stderr.decode().count("\n") == 1 and b"already exists" in r.stderr
    anonymous = _parallel(sampan, [["volume", "create"] for _ in range(10)])
    assert len({r.stdout for r in anonymous}) == 10
    assert len(_names(sampan)) == 22
    assert sorted(p.name for p in (sampan.root / "volumes").iterdir()) == sorted(_names(sampan))
    assert list((sampan.root / "tmp").iterdir()) == [] and list((sampan.root / "trash").iterdir()) == []
    assert sampan("system", "check").stdout.strip() == "store is consistent"


def test_crash_leftover_directory_is_explained_and_reclaimed(sampan: Sampan) -> None:
    """A create killed between its rename and its commit leaves a directory without a row: ``system check``
    reports it, and the next create of that name replaces it."""
    from sampan.engine import volumes

    sampan("volume", "create", "ok")
    orphan = sampan.root / "volumes" / "ghost"
    (orphan / "_data").mkdir(parents=True)
    (orphan / "_data" / "junk").write_text("x")
    with sampan.engine() as engine:
        assert volumes.leftovers(engine, engine.db.conn) == [str(orphan)]
        assert volumes.problems(engine, engine.db.conn) == []
        assert volumes.disk_usage(engine) == (1, 0, 0, 0)
    check = sampan("system", "check", check=False)
    assert check.returncode == 1 and f"leftover {orphan}" in check.stdout
    sampan("volume", "create", "ghost")
    assert list((orphan / "_data").iterdir()) == []
    with sampan.engine() as engine:
        assert volumes.leftovers(engine, engine.db.conn) == []
        (sampan.root / "volumes" / "ok" / "_data" / "f").write_bytes(b"y" * 100)
        assert volumes.disk_usage(engine) == (2, 0, 100, 100)


def test_no_top_level_shortcut(sampan: Sampan) -> None:
    r = sampan("volumes", check=False)
    assert r.returncode == 125 and "'volumes' is not a sampan command" in r.stderr
    assert "Manage volumes" in sampan("--help").stdout


def test_inspect_matches_docker(sampan: Sampan, docker: dict[str, str]) -> None:
    args = ["--label", "a=b", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=64m", "sampan-vol-test"]
    docker_cli(docker, "volume", "create", *args)
    try:
        theirs = json.loads(docker_cli(docker, "volume", "inspect", "sampan-vol-test"))[0]
        their_rows = [json.loads(line) for line in docker_cli(docker, "volume", "ls", "--format", "json").splitlines()]
    finally:
        docker_cli(docker, "volume", "rm", "sampan-vol-test")
    sampan("volume", "create", *args)
    ours = json.loads(sampan("volume", "inspect", "sampan-vol-test").stdout)[0]
    assert list(ours) == list(theirs)
    for key in ("Driver", "Labels", "Name", "Options", "Scope"):
        assert ours[key] == theirs[key]
    assert theirs["Mountpoint"].endswith("/volumes/sampan-vol-test/_data")
    row = json.loads(sampan("volume", "ls", "--format", "json").stdout)
    theirs_row = next(r for r in their_rows if r["Name"] == "sampan-vol-test")
    assert set(theirs_row) <= set(row)
    assert {k: row[k] for k in theirs_row if k != "Mountpoint"} == \
        {k: v for k, v in theirs_row.items() if k != "Mountpoint"}
