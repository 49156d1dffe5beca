"""The json-file log: byte-for-byte records as dockerd writes them, Docker's rotation, crash-safe reading,
tail/since/until/timestamps like ``docker logs``, and following across rotations."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import docker_cli

from sampan.monitor.logs import MAX_MESSAGE, JsonFileLog, encode_record, format_time, read_logs
from sampan.units import parse_timestamp

T0 = 1704164645.25  # 2024-01-02T03:04:05.25Z, exact as a float


def records(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def write_log(path: Path, chunks: list[tuple[str, bytes]], **options: object) -> None:
    options.setdefault("max_size", None)
    with JsonFileLog.open(str(path), **options) as log:  # type: ignore[arg-type]
        for stream, data in chunks:
            log.write(stream, data, T0)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ encoding, splitting


def test_record_escaping_matches_dockers_jsonlog_encoder() -> None:
    line = encode_record("stdout", b'a\tb\r<x>&"\\\x01\x7f\xe2\x80\xa8\xff\xe2\x82 \xf0\x9f\x90\xb3\n', 1704164645123456789)
    assert line == (b'{"log":"a\\u0009b\\r\\u003cx\\u003e\\u0026\\"\\\\\\u0001\x7f\\u2028\\ufffd\\ufffd\\ufffd '
                    b'\xf0\x9f\x90\xb3\\n","stream":"stdout","time":"2024-01-02T03:04:05.123456789Z"}\n')


def test_time_is_rfc3339nano_with_trailing_zeros_trimmed() -> None:
    assert format_time(1704164645_120000000) == "2024-01-02T03:04:05.12Z"
    assert format_time(1704164645_000000000) == "2024-01-02T03:04:05Z"
    assert format_time(1704164645_000000001) == "2024-01-02T03:04:05.000000001Z"


def test_lines_partials_and_16k_pieces(tmp_path: Path) -> None:
    log = tmp_path / "c-json.log"
    write_log(log, [("stdout", b"one\ntw"), ("stderr", b"err"), ("stdout", b"o\n"), ("stdout", b"x" * 40000 + b"\n"),
                    ("stdout", b"y" * MAX_MESSAGE + b"\n"), ("stdout", b"tail")])
    got = [(r["stream"], r["log"]) for r in records(log)]
    assert got == [("stdout", "one\n"), ("stdout", "two\n"), ("stdout", "x" * MAX_MESSAGE), ("stdout", "x" * MAX_MESSAGE),
                   ("stdout", "x" * (40000 - 2 * MAX_MESSAGE) + "\n"), ("stdout", "y" * MAX_MESSAGE),
                   ("stdout", "\n"), ("stdout", "tail"), ("stderr", "err")]


def test_partial_pieces_share_the_first_pieces_time(tmp_path: Path) -> None:
    log = tmp_path / "c-json.log"
    with JsonFileLog.open(str(log), max_size=None) as writer:
        writer.write("stdout", b"z" * MAX_MESSAGE, 100.0)
        writer.write("stdout", b"end\n", 200.0)
        writer.write("stdout", b"next\n", 300.0)
    assert [r["time"] for r in records(log)] == ["1970-01-01T00:01:40Z"] * 2 + ["1970-01-01T00:05:00Z"]


# ----------------------------------------------------------------------------------------------------- reading


def test_read_tail_since_until_and_timestamps(tmp_path: Path) -> None:
    log = tmp_path / "c-json.log"
    with JsonFileLog.open(str(log), max_size=None) as writer:
        for i in range(10):
            writer.write("stderr" if i % 2 else "stdout", f"line {i}\n".encode(), T0 + i * 60)
    assert [data for _, data in read_logs(str(log), tail=3)] == [b"line 7\n", b"line 8\n", b"line 9\n"]
    assert list(read_logs(str(log), tail=0)) == []
    assert next(read_logs(str(log), timestamps=True)) == ("stdout", b"2024-01-02T03:04:05.250000000Z line 0\n")
    # `docker logs --since 3m` at T0+9m keeps the records from T0+6m on; --until 7m ago stops after T0+2m
    now = T0 + 9 * 60
    since = [d for _, d in read_logs(str(log), since=parse_timestamp("3m", now))]
    assert since == [b"line 6\n", b"line 7\n", b"line 8\n", b"line 9\n"]
    until = [d for _, d in read_logs(str(log), until=parse_timestamp("7m", now))]
    assert until == [b"line 0\n", b"line 1\n", b"line 2\n"]


def test_reader_skips_a_torn_last_record_and_the_writer_repairs_it(tmp_path: Path) -> None:
    log = tmp_path / "c-json.log"
    write_log(log, [("stdout", b"a\nb\n")])
    whole = log.read_bytes()
    log.write_bytes(whole + encode_record("stdout", b"torn\n", 0)[:20])
    assert [d for _, d in read_logs(str(log))] == [b"a\n", b"b\n"]
    assert [d for _, d in read_logs(str(log), tail=5)] == [b"a\n", b"b\n"]
    write_log(log, [("stdout", b"c\n")])  # a restarted monitor cuts the torn record away
    assert [d for _, d in read_logs(str(log))] == [b"a\n", b"b\n", b"c\n"]
    log.write_bytes(log.read_bytes() + encode_record("stdout", b"whole\n", 0)[:-1])  # only the newline is missing
    write_log(log, [("stdout", b"d\n")])
    assert [d for _, d in read_logs(str(log))] == [b"a\n", b"b\n", b"c\n", b"whole\n", b"d\n"]


def test_a_writer_killed_mid_rotation_leaves_the_rotated_files_readable(tmp_path: Path) -> None:
    log = tmp_path / "c-json.log"
    write_log(log, [("stdout", b"a\n")], max_size=1, max_file=3)
    write_log(log, [("stdout", b"b\n")], max_size=1, max_file=3)
    Path(f"{log}.1").rename(f"{log}.2")
    log.rename(f"{log}.1")  # killed after moving the live file away, before creating the new one
    assert [d for _, d in read_logs(str(log))] == [b"a\n", b"b\n"]
    assert [d for _, d in read_logs(str(log), tail=1)] == [b"b\n"]


_KILLED_WRITER = """
import sys
from sampan.monitor.logs import JsonFileLog
log = JsonFileLog.open(sys.argv[1], max_size=4096, max_file=3)
print("ready", flush=True)
i = 0
while True:
    log.write("stdout", b"%d " % i + b"x" * (i % 5000) + b"\\n")
    i += 1
"""


@pytest.mark.parametrize("attempt", range(3))
def test_kill_9_mid_write_leaves_only_whole_records(tmp_path: Path, attempt: int) -> None:
    log = tmp_path / "c-json.log"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(log)], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    time.sleep(0.2 + attempt * 0.13)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    numbers = [int(d.split()[0]) for _, d in read_logs(str(log))]
    assert numbers and numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    write_log(log, [("stdout", b"after\n")], max_size=4096, max_file=3)
    assert [d for _, d in read_logs(str(log))][-1] == b"after\n"


# ---------------------------------------------------------------------------------------------------- rotation


@pytest.mark.parametrize("compress", [False, True])
def test_rotation_names_and_order(tmp_path: Path, compress: bool) -> None:
    log = tmp_path / "c-json.log"
    lines = [b"%04d %s\n" % (i, b"." * 40) for i in range(200)]
    write_log(log, [("stdout", line) for line in lines], max_size=1024, max_file=3, compress=compress)
    ext = ".gz" if compress else ""
    assert sorted(os.listdir(tmp_path)) == ["c-json.log", f"c-json.log.1{ext}", f"c-json.log.2{ext}"]
    if compress:
        with gzip.open(tmp_path / "c-json.log.1.gz", "rb") as f:
            assert f.read().startswith(b'{"log":')
        extra = (tmp_path / "c-json.log.1.gz").read_bytes()[12:][:40]
        assert extra.startswith(b'{"LastTime":"2024-01-02T03:04:05.25Z')
    got = [d for _, d in read_logs(str(log))]
    assert got == lines[-len(got):] and len(got) >= 25
    assert [d for _, d in read_logs(str(log), tail=25)] == lines[-25:]  # tail reaches into rotated files


def test_max_file_one_starts_over(tmp_path: Path) -> None:
    log = tmp_path / "c-json.log"
    write_log(log, [("stdout", b"%03d\n" % i) for i in range(100)], max_size=1024)
    assert os.listdir(tmp_path) == ["c-json.log"] and log.stat().st_size < 1200


def test_follow_sees_appends_and_rotations(tmp_path: Path) -> None:
    log = tmp_path / "c-json.log"
    writer = JsonFileLog.open(str(log), max_size=1024, max_file=2, compress=True)
    writer.write("stdout", b"before\n")
    done = threading.Event()
    seen: list[bytes] = []
    started = threading.Event()

    def consume() -> None:
        for _, data in read_logs(str(log), follow=True, tail=1, stop=done.is_set):
            seen.append(data)
            started.set()

    reader = threading.Thread(target=consume)
    reader.start()
    assert started.wait(10)
    expected = [b"before\n"]
    for i in range(300):
        line = b"line %d\n" % i
        writer.write("stdout", line)
        expected.append(line)
        if i % 50 == 0:
            time.sleep(0.2)
    time.sleep(0.3)
    writer.close()
    done.set()
    reader.join(10)
    assert not reader.is_alive()
    # a reader polling every 50 ms keeps up with a rotation every ~8 lines only while the writer pauses;
    # what it shows is in order, starts with the tail and ends with the last line
    assert seen[:2] == expected[:2] and seen[-1] == expected[-1]
    positions = [expected.index(line) for line in seen]
    assert positions == sorted(positions)


def test_follow_across_slow_rotations_misses_nothing(tmp_path: Path) -> None:
    log = tmp_path / "c-json.log"
    writer = JsonFileLog.open(str(log), max_size=200, max_file=3)
    done = threading.Event()
    seen: list[bytes] = []
    reader = threading.Thread(target=lambda: seen.extend(
        d for _, d in read_logs(str(log), follow=True, stop=done.is_set)))
    reader.start()
    expected = [b"slow %d\n" % i for i in range(30)]
    for line in expected:
        writer.write("stdout", line)
        time.sleep(0.06)
    time.sleep(0.2)
    done.set()
    reader.join(10)
    writer.close()
    assert seen == expected


# ------------------------------------------------------------------------------------------ golden: real dockerd

TRICKY_OUT = [b"plain\n", b"tab\there\r\n", b"<b>&amp;</b>\n", "unicode \u00e9\u4e2d\U0001f433 \u2028\n".encode(),
              b"bad \xff\xfe \xe2\x82 \xed\xa0\x80\n", b"q\"uote\\ \x01\x1b[0m\n", b"L" * 40000 + b"\n",
              b"y" * MAX_MESSAGE + b"\n", b"no newline at the end"]
TRICKY_ERR = [b"err one\n", b"err <two>\n", b"e" * 20000, b"\n", b"err tail"]


_DOCKER_CONTAINERS: list[str] = []  # removed when the module is done: the session's dockerd is shared


@pytest.fixture(scope="module")
def busybox_in_docker(docker: dict[str, str], busybox_archive: Path) -> Iterator[dict[str, str]]:
    docker_cli(docker, "load", "-i", str(busybox_archive))
    yield docker
    if _DOCKER_CONTAINERS:
        docker_cli(docker, "rm", "-f", *_DOCKER_CONTAINERS)
        _DOCKER_CONTAINERS.clear()


def docker_run(env: dict[str, str], tmp: Path, script: str, *options: str) -> Path:
    """Run a busybox script with ``tmp`` mounted at /p; returns the path of Docker's own log file."""
    cid = docker_cli(env, "run", "-d", "-v", f"{tmp}:/p:ro", *options, "busybox", "sh", "-c", script).strip()
    _DOCKER_CONTAINERS.append(cid)
    assert docker_cli(env, "wait", cid).strip() == "0"
    return Path(docker_cli(env, "inspect", "-f", "{{.LogPath}}", cid).strip())


@pytest.mark.slow
def test_golden_records_match_dockerd(busybox_in_docker: dict[str, str], tmp_path: Path) -> None:
    script = []
    for i, (out, err) in enumerate(zip(TRICKY_OUT, TRICKY_ERR + [b""] * 9)):
        (tmp_path / f"o{i}").write_bytes(out)
        (tmp_path / f"e{i}").write_bytes(err)
        script.append(f"cat /p/o{i}; cat /p/e{i} >&2; usleep 20000")
    docker_log = docker_run(busybox_in_docker, tmp_path, "; ".join(script))
    ours = tmp_path / "ours-json.log"
    write_log(ours, [("stdout", b"".join(TRICKY_OUT)), ("stderr", b"".join(TRICKY_ERR))])
    for stream in ("stdout", "stderr"):
        theirs = [line for line in docker_log.read_bytes().splitlines() if f'"stream":"{stream}"'.encode() in line]
        mine = [line for line in ours.read_bytes().splitlines() if f'"stream":"{stream}"'.encode() in line]
        # the raw bytes up to the time field are identical: same escaping, same splitting into records
        assert [line[:line.rindex(b',"time":')] for line in mine] == \
               [line[:line.rindex(b',"time":')] for line in theirs]
    # and `docker logs --tail 3 -t` is what read_logs shows for Docker's own file
    cid = docker_log.parent.name
    proc = subprocess.run(["docker", "logs", "--tail", "3", "-t", cid], env=busybox_in_docker, capture_output=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    shown = list(read_logs(str(docker_log), tail=3, timestamps=True))
    assert b"".join(d for s, d in shown if s == "stdout") == proc.stdout
    assert b"".join(d for s, d in shown if s == "stderr") == proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("compress", [False, True])
def test_golden_rotation_matches_dockerd(busybox_in_docker: dict[str, str], tmp_path: Path, compress: bool) -> None:
    lines = [b"%04d %s\n" % (i, b"." * 40) for i in range(300)]
    (tmp_path / "lines").write_bytes(b"".join(lines))
    options = ["--log-opt", "max-size=1k", "--log-opt", "max-file=3", "--log-opt", f"compress={str(compress).lower()}"]
    docker_log = docker_run(busybox_in_docker, tmp_path, "while read l; do echo \"$l\"; done < /p/lines", *options)
    deadline = time.monotonic() + 10
    while compress and os.path.exists(f"{docker_log}.1") and time.monotonic() < deadline:
        time.sleep(0.1)  # dockerd compresses in the background
    theirs = sorted(name.replace(docker_log.name, "LOG") for name in os.listdir(docker_log.parent)
                    if name.startswith(docker_log.name))
    ours_dir = tmp_path / "ours"
    ours_dir.mkdir()
    write_log(ours_dir / "c-json.log", [("stdout", line) for line in lines], max_size=1024, max_file=3,
              compress=compress)
    assert theirs == sorted(name.replace("c-json.log", "LOG") for name in os.listdir(ours_dir))
    seen_docker = [d for _, d in read_logs(str(docker_log))]
    seen_ours = [d for _, d in read_logs(str(ours_dir / "c-json.log"))]
    assert seen_docker == lines[-len(seen_docker):] and seen_ours == lines[-len(seen_ours):]
    # two full rotated files (~11 records of ~95 bytes each) plus a live file that holds 1 to 11 records,
    # depending on where the last rotation fell: the same window for Docker and for us
    assert 2 * 10 < len(seen_docker) <= 3 * 12 and 2 * 10 < len(seen_ours) <= 3 * 12
    for name in os.listdir(ours_dir):
        data = (ours_dir / name).read_bytes()
        size = len(gzip.decompress(data) if name.endswith(".gz") else data)
        assert size < 1024 + 200  # rotation happens before the write that would start past max-size
