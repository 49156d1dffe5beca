"""What a container is on disk and in the store: its places, its name and ID, and its truthful status.

The record's status is what the last writer (CLI or monitor) decided; ``current`` checks it against the live
system before anyone reports or acts on it. A container recorded as running is running only while its run-time
directory exists (cleared by a reboot) and its init process is alive with the start time recorded with its pid.
When the monitor died with its container, the record is settled as exited with status 255, as Docker reports
containers that were running when the host went down.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

from sampan._linux.proc import process_start_time, process_state
from sampan.engine.context import Engine
from sampan.errors import Conflict, InvalidArgument, NotFound
from sampan.store import containers as records
from sampan.store.containers import ContainerRecord
from sampan.store.layout import Layout

TYPE_CHECKING = False  # socket only for an annotation: not imported at run time
if TYPE_CHECKING:
    import socket

ACTIVE = ("running", "paused", "restarting")
MONITOR_DIED = "the container's monitor process died"

# A small version of Docker's namesgenerator: adjective_surname of a scientist or hacker.
_ADJECTIVES = (
    "admiring", "adoring", "agitated", "amazing", "angry", "awesome", "beautiful", "blissful", "bold", "boring",
    "brave", "busy", "charming", "clever", "compassionate", "competent", "confident", "cool", "cranky", "crazy",
    "dazzling", "determined", "distracted", "dreamy", "eager", "ecstatic", "elastic", "elated", "elegant",
    "eloquent", "epic", "exciting", "fervent", "festive", "flamboyant", "focused", "friendly", "frosty", "funny",
    "gallant", "gifted", "goofy", "gracious", "great", "happy", "hardcore", "heuristic", "hopeful", "hungry",
    "infallible", "inspiring", "intelligent", "interesting", "jolly", "jovial", "keen", "kind", "laughing",
    "loving", "lucid", "magical", "modest", "musing", "mystifying", "naughty", "nervous", "nice", "nifty",
    "nostalgic", "objective", "optimistic", "peaceful", "pedantic", "pensive", "practical", "priceless", "quirky",
    "quizzical", "recursing", "relaxed", "reverent", "romantic", "sad", "serene", "sharp", "silly", "sleepy",
    "stoic", "strange", "stupefied", "suspicious", "sweet", "tender", "thirsty", "trusting", "unruffled",
    "upbeat", "vibrant", "vigilant", "vigorous", "wizardly", "wonderful", "xenodochial", "youthful", "zealous",
    "zen",
)
_SURNAMES = (
    "agnesi", "albattani", "allen", "almeida", "archimedes", "ardinghelli", "aryabhata", "austin", "babbage",
    "banach", "bardeen", "bartik", "bassi", "bell", "bhabha", "blackwell", "bohr", "booth", "borg", "bose",
    "brahmagupta", "brattain", "brown", "carson", "cerf", "chandrasekhar", "clarke", "curie", "darwin", "davinci",
    "dijkstra", "driscoll", "einstein", "elion", "engelbart", "euclid", "euler", "fermat", "fermi", "feynman",
    "franklin", "galileo", "gates", "goldberg", "goodall", "hamilton", "hawking", "heisenberg", "hermann",
    "hodgkin", "hopper", "hypatia", "jackson", "jennings", "johnson", "kalam", "keller", "kepler", "khorana",
    "knuth", "kowalevski", "lalande", "lamarr", "lamport", "leakey", "lovelace", "lumiere", "mayer", "mccarthy",
    "mcclintock", "meitner", "mendel", "merkle", "mirzakhani", "montalcini", "moore", "morse", "napier", "nash",
    "newton", "nightingale", "nobel", "noether", "panini", "pascal", "pasteur", "payne", "perlman", "pike",
    "poincare", "ptolemy", "raman", "ritchie", "rosalind", "saha", "sammet", "shannon", "shaw", "shockley",
    "sinoussi", "snyder", "spence", "stallman", "swanson", "swartz", "tesla", "thompson", "torvalds", "turing",
    "varahamihira", "visvesvaraya", "volhard", "wescoff", "wiles", "williams", "wilson", "wing", "wozniak",
    "wright", "yalow", "yonath",
)


class Places:
    """The paths of one container (``Layout`` is the only other place that builds storage paths)."""

    def __init__(self, layout: Layout, container_id: str) -> None:
        self.bundle = layout.containers / container_id
        self.run = layout.container_runs / container_id

    @property
    def config(self) -> Path:
        return self.bundle / "config.json"

    @property
    def diff(self) -> Path:
        return self.bundle / "diff"

    @property
    def work(self) -> Path:
        return self.bundle / "work"

    @property
    def rootfs(self) -> Path:
        return self.bundle / "merged"

    @property
    def hosts(self) -> Path:
        return self.bundle / "hosts"

    @property
    def hostname(self) -> Path:
        return self.bundle / "hostname"

    @property
    def resolv_conf(self) -> Path:
        return self.bundle / "resolv.conf"

    def log(self, container_id: str) -> Path:
        return self.bundle / f"{container_id}-json.log"

    @property
    def attach_socket(self) -> Path:
        return self.run / "attach.sock"


def places(engine: Engine, container_id: str) -> Places:
    return Places(engine.layout, container_id)


def connect_monitor(engine: Engine, container_id: str) -> socket.socket:
    """A connection to the container's monitor (attach and its requests), as ``docker attach`` and the API's
    attach make; ``Conflict`` with Docker's message when no monitor listens (the container is not running)."""
    from sampan.monitor.client import connect

    try:
        return connect(str(places(engine, container_id).attach_socket))
    except OSError:
        raise Conflict("You cannot attach to a stopped container, start it first") from None


def new_id() -> str:
    return os.urandom(32).hex()


def random_name(taken: set[str]) -> str:
    for attempt in range(64):
        name = f"{random.choice(_ADJECTIVES)}_{random.choice(_SURNAMES)}"
        if attempt > 8:
            name += str(random.randint(0, 9))
        if name not in taken:
            return name
    return "sampan_" + os.urandom(6).hex()


def validate_name(name: str) -> str:
    """Docker's container name rule: ``/?[a-zA-Z0-9][a-zA-Z0-9_.-]+``; returned without the slash."""
    import re

    if not re.fullmatch(r"/?[a-zA-Z0-9][a-zA-Z0-9_.-]+", name):
        raise InvalidArgument(f'Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed')
    return name.lstrip("/")


def alive(pid: int, start: str) -> bool:
    return pid > 0 and bool(start) and process_start_time(pid) == start and \
        process_state(pid) not in (None, "Z", "X")


def lookup(engine: Engine, text: str) -> ContainerRecord:
    """A container by full ID, name (with or without "/") or unique ID prefix, with its status made current."""
    found = records.find(engine.db.conn, text.lstrip("/") if text.startswith("/") else text)
    if not found:
        raise NotFound(f"No such container: {text}")
    if len(found) > 1:
        raise InvalidArgument(f"Multiple IDs found with provided prefix: {text}")
    return current(engine, found[0])


def current(engine: Engine, record: ContainerRecord) -> ContainerRecord:
    """The record, settled when the live system says its recorded activity is over (see the module doc)."""
    if record.status not in ACTIVE:
        return record
    if places(engine, record.id).run.is_dir():
        if alive(record.monitor_pid, record.monitor_start):
            return record  # the monitor owns the status; it records the exit itself
        if alive(record.pid, record.pid_start):
            return record  # unsupervised but truthfully running
    with engine.db.transaction() as tx:
        fresh = records.get(tx, record.id)
        if fresh is None or fresh.status not in ACTIVE or fresh.monitor_pid != record.monitor_pid:
            return fresh or record
        now = time.time()
        records.update_state(tx, record.id, status="exited", exit_code=255, error=MONITOR_DIED, pid=0,
                             pid_start="", monitor_pid=0, monitor_start="", finished_at=now)
        fresh = records.get(tx, record.id)
    assert fresh is not None
    return fresh


def all_current(engine: Engine) -> list[ContainerRecord]:
    return [current(engine, record) for record in records.all_containers(engine.db.conn)]


def run_dir_exists(engine: Engine, container_id: str) -> bool:
    return os.path.isdir(places(engine, container_id).run)
