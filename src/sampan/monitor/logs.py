"""Docker's json-file log driver: the monitor writes it, ``sampan logs`` reads it.

The files are byte-compatible with what dockerd writes (moby's daemon/logger/copier.go splits the stream,
jsonfilelog/jsonlog encodes records with its own escaper, loggerutils/logfile.go rotates), so tools that read
``<id>-json.log`` and ``docker logs`` habits keep working. The writer runs in the lean per-container monitor:
it imports only os and time (zlib when it compresses); the reader imports json and gzip when it runs.

Crash safety: each record is appended with one write() on an O_APPEND file, so a reader can only ever meet an
unterminated last line. Readers treat a line without its newline as not yet written; a writer that reopens
the file after a crash first terminates a complete-but-unterminated record or cuts away a torn one.
"""

from __future__ import annotations

import io
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import BinaryIO, Literal

# copier.go's defaultBufSize: a line that fills the copier's buffer without a newline is logged as a partial
# message of exactly this many bytes, without the trailing "\n" that complete lines get.
MAX_MESSAGE = 16 * 1024
_PERMS = 0o640  # loggerutils opens log files 0640
_POLL = 0.05

# jsonlog.ffjsonWriteJSONBytesAsString: control bytes as \u00XX (only \n and \r get short forms, tab does
# not), HTML-safe <, >, &, and the JavaScript line separators U+2028/U+2029.
_ESCAPES = {c: f"\\u{c:04x}" for c in (*range(0x20), ord("<"), ord(">"), ord("&"), 0x2028, 0x2029)}
_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r", ord('"'): '\\"', ord("\\"): "\\\\"})


def escape(data: bytes) -> str:
    """JSON string content as jsonlog writes it. Invalid UTF-8 goes Go's utf8.DecodeRune way: every byte of
    an invalid sequence becomes its own escaped ``\\ufffd`` (Python's "replace" would collapse a truncated
    sequence into one), while a real U+FFFD in the data stays a raw character."""
    parts = []
    while True:
        try:
            parts.append(data.decode().translate(_ESCAPES))
            return "".join(parts)
        except UnicodeDecodeError as err:
            parts.append(data[:err.start].decode().translate(_ESCAPES))
            parts.append("\\ufffd" * (err.end - err.start))
            data = data[err.end:]


def to_ns(ts: float) -> int:
    """Unix seconds to nanoseconds without the float error of ``ts * 1e9`` (1704164645.25 stays .25)."""
    whole = int(ts)
    return whole * 10**9 + round((ts - whole) * 1e9)


def format_time(ts_ns: int) -> str:
    """Go's RFC3339Nano in UTC: the fraction loses its trailing zeros and disappears when it is zero."""
    seconds, nanos = divmod(ts_ns, 10**9)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{text}.{nanos:09d}".rstrip("0") + "Z" if nanos else text + "Z"


def encode_record(stream: str, log: bytes, ts_ns: int) -> bytes:
    """One record exactly as jsonlog.JSONLogs.MarshalJSONBuf writes it (an empty log is omitted, as omitempty
    does), plus the newline the json-file driver appends."""
    fields = []
    if log:
        fields.append('"log":"' + escape(log) + '"')
    if stream:
        fields.append('"stream":"' + stream.translate(_ESCAPES) + '"')
    fields.append(f'"time":"{format_time(ts_ns)}"')
    return ("{" + ",".join(fields) + "}\n").encode()


class JsonFileLog:
    """The writer side: splits each stream into records like Docker's copier and appends them, rotating like
    loggerutils.LogFile (rotate before a write once the file has reached max_size)."""

    def __init__(self, path: str, fd: int, size: int, max_size: int | None, max_file: int,
                 compress: bool) -> None:
        self.path = path
        self._fd = fd
        self._size = size
        self._max_size = max_size
        self._max_file = max_file
        self._compress = compress and max_file > 1
        self._pending: dict[str, bytearray] = {}
        self._partial_ts: dict[str, int] = {}  # a partial series keeps the time of its first piece
        self._last_ts = 0

    @classmethod
    def open(cls, path: str, *, max_size: int | None, max_file: int = 1, compress: bool = False) -> JsonFileLog:
        """Open for appending (a restarted container keeps its log), repairing a tail left by a crash."""
        if max_size is not None and max_size <= 0:
            max_size = None
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, _PERMS)
        size = _repair_tail(path, fd)
        log = cls(path, fd, size, max_size, max(1, max_file), compress)
        if log._compress and os.path.exists(path + ".1"):
            _compress_file(path + ".1", None)  # a crash interrupted the compression after a rotation
        return log

    def write(self, stream: Literal["stdout", "stderr"], data: bytes, ts: float | None = None) -> None:
        """Log one read from a container stream; an unterminated rest waits for its newline (or 16 KiB)."""
        ts_ns = time.time_ns() if ts is None else to_ns(ts)
        buf = self._pending.setdefault(stream, bytearray())
        buf += data
        records = []
        start = 0
        while True:
            end = buf.find(b"\n", start, start + MAX_MESSAGE + 1)
            if end >= 0 and end - start < MAX_MESSAGE:
                line = bytes(buf[start:end + 1])
                records.append(encode_record(stream, line, self._partial_ts.pop(stream, ts_ns)))
                start = end + 1
            elif len(buf) - start >= MAX_MESSAGE:  # the copier's 16K buffer filled up without a newline
                records.append(self._partial(stream, bytes(buf[start:start + MAX_MESSAGE]), ts_ns))
                start += MAX_MESSAGE
            else:
                break
        del buf[:start]
        self._append(records, ts_ns)

    def flush_partial(self) -> None:
        """Write every buffered unterminated rest as a partial record (no "\\n"), as Docker does at EOF."""
        ts_ns = time.time_ns()
        records = [self._partial(stream, bytes(buf), ts_ns) for stream, buf in self._pending.items() if buf]
        for buf in self._pending.values():
            buf.clear()
        self._append(records, ts_ns)

    def close(self) -> None:
        """Flush partial lines and close; the container's streams have ended."""
        if self._fd < 0:
            return
        self.flush_partial()
        os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> JsonFileLog:  # noqa: PYI034 - Self needs typing at run time
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _partial(self, stream: str, piece: bytes, ts_ns: int) -> bytes:
        return encode_record(stream, piece, self._partial_ts.setdefault(stream, ts_ns))

    def _append(self, records: Iterable[bytes], ts_ns: int) -> None:
        """Append records, batching those that fit before the next rotation into one write()."""
        batch = b""
        for record in records:
            if self._max_size is not None and self._size + len(batch) >= self._max_size:
                self._write_all(batch)
                batch = b""
                self._rotate()
            batch += record
        self._write_all(batch)
        self._last_ts = ts_ns

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
            self._size += written

    def _rotate(self) -> None:
        """loggerutils rotate(): shift .N(.gz) up, drop the oldest, move the live file to .1 (or unlink it
        when max_file is 1), start a new file, then gzip .1 with the last timestamp in the gzip header."""
        os.close(self._fd)
        path, ext = self.path, ".gz" if self._compress else ""
        if self._max_file > 1:
            _unlink(f"{path}.{self._max_file - 1}{ext}")
            for i in range(self._max_file - 1, 1, -1):
                _rename(f"{path}.{i - 1}{ext}", f"{path}.{i}{ext}")
            _rename(path, path + ".1")
        else:
            _unlink(path)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, _PERMS)
        self._size = 0
        if self._compress:
            _compress_file(path + ".1", self._last_ts)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _rename(src: str, dst: str) -> None:
    try:
        os.rename(src, dst)
    except FileNotFoundError:
        pass


def _repair_tail(path: str, fd: int) -> int:
    """Make the file end on a record boundary after a crash: terminate a complete last record, cut a torn one.
    Returns the resulting size."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0
    with open(path, "rb") as f:
        last_newline, tail = _last_newline(f, size)
    if not tail:
        return size
    if tail.startswith(b"{") and tail.endswith(b"}") and _is_json(tail):
        os.write(fd, b"\n")
        return size + 1
    os.truncate(path, last_newline + 1)
    return last_newline + 1


def _is_json(data: bytes) -> bool:
    import json

    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def _last_newline(f: BinaryIO, end: int) -> tuple[int, bytes]:
    """The offset of the last "\\n" before ``end`` (-1 if none) and the bytes after it."""
    pos, tail = end, b""
    while pos > 0:
        step = min(65536, pos)
        pos -= step
        f.seek(pos)
        tail = f.read(step) + tail
        index = tail.rfind(b"\n")
        if index >= 0:
            return pos + index, tail[index + 1:]
    return -1, tail


def _compress_file(name: str, last_ts: int | None) -> None:
    """compressFile(): gzip ``name`` to ``name.gz`` with Go's header (OS 255, the rotateFileMetadata JSON
    ``{"LastTime":...}`` as the extra field, which readers use to skip files older than --since), then remove
    ``name``. Readers prefer the plain file while it exists, so a half-written .gz is never read; the .gz is
    written under a temporary name so a crash never leaves a torn one either."""
    import zlib

    if last_ts is None:
        last_ts = _last_record_ns(name)
    extra = ('{"LastTime":"' + format_time(last_ts) + '"}').encode() if last_ts else b""
    header = b"\x1f\x8b\x08" + (b"\x04" if extra else b"\x00") + b"\0\0\0\0\x00\xff"
    if extra:
        header += len(extra).to_bytes(2, "little") + extra
    deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
    crc, length = 0, 0
    tmp = name + ".gz.tmp"
    with open(name, "rb") as src, open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _PERMS), "wb") as dst:
        dst.write(header)
        while chunk := src.read(1 << 16):
            crc, length = zlib.crc32(chunk, crc), length + len(chunk)
            dst.write(deflate.compress(chunk))
        dst.write(deflate.flush() + crc.to_bytes(4, "little") + (length & 0xFFFFFFFF).to_bytes(4, "little"))
    os.rename(tmp, name + ".gz")
    os.unlink(name)


def _last_record_ns(name: str) -> int:
    with open(name, "rb") as f:
        end = _last_newline(f, os.fstat(f.fileno()).st_size)[0]
        if end < 0:
            return 0
        start = _last_newline(f, end)[0] + 1
        f.seek(start)
        record = _decode(f.read(end - start))
    return parse_time_ns(record[2]) if record else 0


# ---------------------------------------------------------------------------------------------------- reader


def read_logs(path: str, *, tail: int | None = None, since: float | None = None, until: float | None = None,
              follow: bool = False, timestamps: bool = False,
              stop: Callable[[], bool] | None = None) -> Iterator[tuple[str, bytes]]:
    """What ``docker logs`` shows: (stream, bytes) over the rotated files (oldest first) and the live one.

    Like loggerutils: ``tail`` picks the last N lines first, then ``since`` skips older records and the first
    record after ``until`` ends the output. ``follow`` then keeps reading the live file, across rotations,
    until ``stop()`` is true and nothing more has arrived. An unterminated last line is not yet a record."""
    since_ns = None if since is None else to_ns(since)
    until_ns = None if until is None else to_ns(until)
    live = _open_live(path, follow, stop)
    if live is None:  # no live file (a writer killed mid-rotation): the rotated files still hold the log
        live = io.BytesIO()
    with live:
        live_end = _last_newline(live, live.seek(0, os.SEEK_END))[0] + 1
        for line in _history(path, live, live_end, tail):
            out = _emit(line, since_ns, until_ns, timestamps)
            if out is False:
                return
            if out:
                yield out
        if follow:
            yield from _follow(path, live, live_end, since_ns, until_ns, timestamps, stop)


def parse_time_ns(text: str) -> int:
    """RFC3339Nano as Docker writes it (UTC, "Z") to unix nanoseconds, without importing datetime."""
    y, mo, d = int(text[0:4]), int(text[5:7]), int(text[8:10])
    h, mi, s = int(text[11:13]), int(text[14:16]), int(text[17:19])
    frac = text[20:-1] if text[19:20] == "." else ""
    # days_from_civil (Howard Hinnant): a proleptic Gregorian date to days since 1970-01-01
    y -= mo <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (mo + (-3 if mo > 2 else 9)) + 2) // 5 + d - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return ((days * 24 + h) * 60 + mi) * 60 * 10**9 + s * 10**9 + int(frac.ljust(9, "0") or 0)


def fixed_time(text: str) -> str:
    """RFC3339NanoFixed, the ``docker logs -t`` prefix: always nine fraction digits."""
    head, _, frac = text[:-1].partition(".")
    return f"{head}.{frac:0<9}Z"


def _open_live(path: str, follow: bool, stop: Callable[[], bool] | None) -> BinaryIO | None:
    """The live file; when following, wait for the monitor to create it."""
    while True:
        try:
            return open(path, "rb", buffering=0)
        except FileNotFoundError:
            if not follow or (stop is not None and stop()):
                return None
            time.sleep(_POLL)


def _rotated_files(path: str) -> list[str]:
    """``<path>.N`` (plain preferred, as Docker does, since a .gz may still be being written) oldest first."""
    directory, base = os.path.split(path)
    numbered: dict[int, str] = {}
    for name in os.listdir(directory or "."):
        rest = name[len(base) + 1:] if name.startswith(base + ".") else ""
        digits = rest.removesuffix(".gz")
        if digits.isdigit() and int(digits) > 0 and (digits == rest or int(digits) not in numbered):
            numbered[int(digits)] = os.path.join(directory, name)
    return [numbered[n] for n in sorted(numbered, reverse=True)]


def _file_lines(name: str) -> Iterator[bytes]:
    """The complete lines of a rotated file (a torn last line is dropped)."""
    import gzip

    try:
        f = gzip.open(name, "rb") if name.endswith(".gz") else open(name, "rb")  # noqa: SIM115
    except FileNotFoundError:
        return  # rotated away meanwhile
    with f:
        try:
            for line in f:
                if line.endswith(b"\n"):
                    yield line
        except (OSError, EOFError):
            return  # a truncated or corrupt archive: keep what was readable


def _live_lines(live: BinaryIO, end: int) -> Iterator[bytes]:
    live.seek(0)
    rest = end
    pending = b""
    while rest > 0:
        chunk = live.read(min(rest, 1 << 16))
        if not chunk:
            break
        rest -= len(chunk)
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
            yield line + b"\n"


def _history(path: str, live: BinaryIO, live_end: int, tail: int | None) -> Iterable[bytes]:
    """The lines that exist now, all of them or the last ``tail`` across files (newest files first)."""
    if tail is not None and tail <= 0:
        return []
    if tail is None:
        return _chain([*(_file_lines(name) for name in _rotated_files(path)), _live_lines(live, live_end)])
    picked = _tail_plain(live, live_end, tail)
    for name in reversed(_rotated_files(path)):
        if len(picked) >= tail:
            break
        older = list(_file_lines(name))
        picked = older[-(tail - len(picked)):] + picked
    return picked


def _chain(sources: list[Iterator[bytes]]) -> Iterator[bytes]:
    for source in sources:
        yield from source


def _tail_plain(f: BinaryIO, end: int, n: int) -> list[bytes]:
    """The last ``n`` lines before ``end`` (a line boundary), reading backwards: a long log costs its tail."""
    pos, buf = end, b""
    while pos > 0 and buf.count(b"\n") <= n:
        step = min(1 << 16, pos)
        pos -= step
        f.seek(pos)
        buf = f.read(step) + buf
    lines = buf.split(b"\n")[:-1]
    if pos > 0:
        lines = lines[1:]  # may have started before pos
    return [line + b"\n" for line in lines[-n:]]


def _decode(line: bytes) -> tuple[str, bytes, str] | None:
    """(stream, log bytes, time text), or None for a line that is not a record (corruption)."""
    import json

    try:
        record = json.loads(line)
        return record.get("stream", ""), record.get("log", "").encode("utf-8", "replace"), record["time"]
    except (ValueError, AttributeError, KeyError, TypeError):
        return None


def _emit(line: bytes, since_ns: int | None, until_ns: int | None,
          timestamps: bool) -> tuple[str, bytes] | None | bool:
    """The output for one line: None to skip it, False once past ``until``."""
    record = _decode(line)
    if record is None:
        return None
    stream, log, stamp = record
    if since_ns is not None or until_ns is not None:
        ts_ns = parse_time_ns(stamp)
        if since_ns is not None and ts_ns < since_ns:
            return None
        if until_ns is not None and ts_ns > until_ns:
            return False
    if timestamps:
        log = fixed_time(stamp).encode() + b" " + log
    return stream, log


def _follow(path: str, live: BinaryIO, pos: int, since_ns: int | None, until_ns: int | None, timestamps: bool,
            stop: Callable[[], bool] | None) -> Iterator[tuple[str, bytes]]:
    """Poll the live file from ``pos``; when the path names a new file (rotation), finish the old one first."""
    f, own = live, False
    f.seek(pos)
    pending, draining = b"", False
    try:
        while True:
            chunk = f.read(1 << 16)
            if chunk:
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    out = _emit(line, since_ns, until_ns, timestamps)
                    if out is False:
                        return
                    if out:
                        yield out
                continue
            if draining:  # the replaced file is read to its end: move to the new one
                if own:
                    f.close()
                f, own, pending, draining = open(path, "rb", buffering=0), True, b"", False  # noqa: SIM115
                continue
            if _replaced(path, f):
                draining = True  # the writer may have appended once more before it rotated
                continue
            if stop is not None and stop():
                return
            time.sleep(_POLL)
    except FileNotFoundError:
        return
    finally:
        if own:
            f.close()


def _replaced(path: str, f: BinaryIO) -> bool:
    """True once ``path`` is a different file than ``f`` (and exists, so the switch can be made)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(f.fileno())
    return (st.st_ino, st.st_dev) != (mine.st_ino, mine.st_dev)
