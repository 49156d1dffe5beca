"""Offering the monitor host's memory to the kernel's same-page merging (KSM), so idle monitors share it again.

Each monitor is forked from the monitor host and shares its pages copy-on-write, but merely running Python
writes to them (reference counts, the allocator's free lists): an idle monitor ends up with ~3 MB of private
copies, and those copies are nearly the same in every monitor. KSM finds such identical pages and shares them
again: with ``ksmd`` running, a monitor's private memory drops from ~3 MB to ~0.3 MB (measured by
``bench/containers.py --ksm``), for ~0.4 MB of the kernel's bookkeeping per monitor.

Opt-in (``SAMPAN_KSM=1`` where the host is launched), and ``ksmd`` itself is the host's choice
(``/sys/kernel/mm/ksm/run``): sampan turns on neither. Merged pages are a side channel: a process whose memory
is offered too can tell, by the time a write takes, whether a page of known content exists in other offered
memory. No container process is offered by sampan: the host marks its own writable private mappings
``MADV_MERGEABLE`` once it is warm, its forks (monitors, warm workers, the /proc view's server) inherit the marks,
and marks on mappings, unlike ``PR_SET_MEMORY_MERGE``, end at ``execve`` (a container's processes, an external
runtime, hooks). But a container's process may offer its own memory (``madvise`` is allowed by the default
seccomp profile, as by Docker's), and so may other software on the host (virtual machines): with the opt-in and
ksmd on, such a process could probe what sampan's processes hold, such as a warm worker's command line and
environment. See docs/containers.md.
"""

from __future__ import annotations

import os

from sampan._linux.process import MADV_MERGEABLE, madvise

_SPECIAL = ("[stack]", "[vvar]", "[vdso]", "[vsyscall]", "[vvar_vclock]")


def wanted() -> bool:
    return os.environ.get("SAMPAN_KSM") == "1"


def offer_own_memory() -> None:
    """Advise this process's writable private mappings mergeable (the kernel ignores the advice for mappings
    it cannot merge, and fails it where it has no KSM)."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            perms, name = fields[1], fields[5].strip() if len(fields) > 5 else ""
            if perms[1] != "w" or perms[3] != "p" or name in _SPECIAL:
                continue
            start, end = (int(part, 16) for part in fields[0].split("-"))
            try:
                madvise(start, end - start, MADV_MERGEABLE)
            except OSError:
                continue  # a mapping KSM cannot take, or a kernel without KSM
