"""Offering the monitor host's memory to the kernel's same-page merging (KSM), so idle monitors share it again.

Each monitor is forked from the monitor host and shares its pages copy-on-write, but merely running Python
writes to them (reference counts, the allocator's free lists): an idle monitor ends up with ~3 MB of private
copies, and those copies are nearly the same in every monitor. KSM finds such identical pages and shares them
again: with ``ksmd`` running, a monitor's private memory drops from ~3 MB to ~0.3 MB (measured by
``bench/containers.py --ksm``), for ~0.4 MB of the kernel's bookkeeping per monitor.

The host marks its own writable private mappings ``MADV_MERGEABLE`` once it is warm, and its forks inherit the
marks. Marks on mappings, unlike ``PR_SET_MEMORY_MERGE``, end at ``execve``: what a monitor or a worker executes
(a container's process, an external runtime, a hook) is never offered, so containers' memory is never merged
with anything, and no container can probe another's pages through merging.

Whether ``ksmd`` runs is the host's choice (``/sys/kernel/mm/ksm/run``): it scans only memory offered to it, but
other software (virtual machines) may offer theirs, so sampan never turns it on. Without it, the marks cost
nothing. See docs/containers.md.
"""

from __future__ import annotations

from sampan._linux.process import MADV_MERGEABLE, madvise

_SPECIAL = ("[stack]", "[vvar]", "[vdso]", "[vsyscall]", "[vvar_vclock]")


def offer_own_memory() -> int:
    """Mark this process's writable private mappings mergeable; returns how many bytes were marked (0 where
    the kernel has no KSM)."""
    marked = 0
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
            marked += end - start
    return marked
