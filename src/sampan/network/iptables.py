"""sampan's accept rules in iptables' ``filter`` table, so that a firewall made with iptables (Docker's, ufw's,
firewalld's iptables backend) does not drop what sampan's bridges forward.

Why: netfilter runs every base chain at the forward hook and a drop in any of them is final, so sampan's own
table accepting a packet does not save it. Docker, when it turns ``ip_forward`` on itself, sets the filter
table's FORWARD policy to DROP. As podman's netavark and libvirt do, sampan then adds rules of its own there,
two per bridge: ``-i BRIDGE -j ACCEPT`` (what containers send: out of the host, and to a container of the same
bridge when bridge netfilter applies) and ``-o BRIDGE -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j
ACCEPT`` (replies, and connections to published ports). Isolation between sampan's networks and ``--internal``
still hold: sampan's own table drops that traffic, and a drop anywhere is final.

Where: Docker's ``DOCKER-USER`` when it exists (Docker jumps to it first and never flushes it), else at the top
of ``FORWARD``; only when FORWARD can drop at all (a drop policy or any rule: an empty accepting chain needs
nothing). Rules are added and deleted with the program of the table's backend, one process for all of them
(``iptables-nft-restore``: rules written with raw nft can be unreadable to iptables; ``iptables-legacy-restore``
for x_tables), and carry the comment ``TABLE:BRIDGE``: deleting feeds back exactly the ``iptables-save`` lines
with sampan's comments, nothing else.

Cost: a container's start only asks libnftables whether nft's ``ip filter`` table accepts its bridges (~0.2 ms;
~0.02 ms where there is no such table); programs run only when rules are missing (a network made, a firewall's
restart that flushed them). The legacy backend can be read only by running ``iptables-legacy-save`` (~1.5 ms),
so it is looked at when a network or its bridge is made and by ``system check``, not at every start.
"""

from __future__ import annotations

import os
import shlex
from typing import Any

from sampan._linux import nftables
from sampan.errors import SampanError

NFT, LEGACY = "nft", "legacy"
USER_CHAIN, FORWARD = "DOCKER-USER", "FORWARD"
_DIRECTIONS = {"-i": "iifname", "-o": "oifname"}


class Rule:
    """One of sampan's rules as ``iptables-save`` lists it."""

    def __init__(self, backend: str, bridge: str, line: str) -> None:
        self.backend, self.bridge, self.line = backend, bridge, line

    def __repr__(self) -> str:
        return f"iptables-{self.backend}: {self.line}"


class _Filter:
    """A backend's filter table: where sampan's rules belong (None: FORWARD cannot drop) and the (direction,
    bridge) pairs that chain accepts."""

    def __init__(self, chain: str | None, accepted: set[tuple[str, str]]) -> None:
        self.chain, self.accepted = chain, accepted

    def lacking(self, bridges: list[str]) -> list[tuple[str, str]]:
        if self.chain is None:
            return []
        return [(flag, bridge) for bridge in bridges for flag in _DIRECTIONS if (flag, bridge) not in self.accepted]


def _comment(table: str, bridge: str) -> str:
    return f"{table}:{bridge}"


def _spec(table: str, flag: str, bridge: str) -> str:
    state = " -m conntrack --ctstate RELATED,ESTABLISHED,DNAT" if flag == "-o" else ""
    return f'{flag} {bridge}{state} -m comment --comment "{_comment(table, bridge)}" -j ACCEPT'


def _target(policies: dict[str, str], rules: dict[str, Any]) -> str | None:
    if FORWARD not in policies or (policies[FORWARD].lower() != "drop" and not rules.get(FORWARD)):
        return None
    return USER_CHAIN if USER_CHAIN in policies else FORWARD


def _nft_filter() -> _Filter | None:
    """nft's ``ip filter`` table (iptables-nft's), read with libnftables; None when there is none."""
    try:
        out = nftables.run({"nftables": [{"list": {"table": {"family": "ip", "name": "filter"}}}]}) or {}
    except nftables.NftError:
        return None
    policies: dict[str, str] = {}
    rules: dict[str, list[list[dict[str, Any]]]] = {}
    for item in out.get("nftables", []):
        if "chain" in item:
            policies[item["chain"]["name"]] = item["chain"].get("policy", "-")
        elif "rule" in item:
            rules.setdefault(item["rule"]["chain"], []).append(item["rule"]["expr"])
    chain = _target(policies, rules)
    accepted = set()
    for expr in rules.get(chain or "", []):
        match = expr[0].get("match", {})
        key = match.get("left", {}).get("meta", {}).get("key") if isinstance(match.get("left"), dict) else None
        flag = next((f for f, k in _DIRECTIONS.items() if k == key), None)
        if flag and match.get("op") == "==" and isinstance(match.get("right"), str) and "accept" in expr[-1]:
            accepted.add((flag, match["right"]))
    return _Filter(chain, accepted)


def _find(backend: str, kind: str) -> str | None:
    import shutil

    return shutil.which(f"iptables-{backend}-{kind}", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def _legacy_present() -> bool:
    """Whether x_tables has a filter table in this network namespace (no program run), and iptables-legacy is
    there to read it (a table no program of this host can change is left alone)."""
    try:
        with open("/proc/net/ip_tables_names") as f:
            return "filter" in f.read().split() and _find(LEGACY, "save") is not None
    except OSError:
        return False


def _program(backend: str, kind: str) -> str:
    found = _find(backend, kind)
    if found is None:
        raise SampanError(f"iptables-{backend}-{kind} is needed to accept sampan's forwarded traffic in iptables' "
                          "filter table")
    return found


def _exec(backend: str, kind: str, text: str = "") -> str:
    import subprocess

    if kind == "save":
        args = [_program(backend, kind), "-t", "filter"]
    else:  # legacy waits for x_tables' lock; nft's changes are transactions
        args = [_program(backend, kind), "--noflush"] + (["-w"] if backend == LEGACY else [])
    proc = subprocess.run(args, input=text.encode(), capture_output=True, check=False)
    if proc.returncode != 0:
        message = (proc.stderr.decode(errors="replace").strip().splitlines() or ["failed"])[-1]
        raise SampanError(f"iptables-{backend}-{kind}: {message}")
    return proc.stdout.decode(errors="replace")


def _saved(backend: str) -> tuple[dict[str, str], dict[str, list[tuple[list[str], str]]]]:
    """The filter table as ``iptables-save`` lists it: chain policies and each chain's rules (split, and the
    line itself: fed back with ``-D`` it deletes exactly that rule)."""
    policies: dict[str, str] = {}
    rules: dict[str, list[tuple[list[str], str]]] = {}
    for line in _exec(backend, "save").splitlines():
        if line.startswith(":"):
            name, policy = line[1:].split()[:2]
            policies[name] = policy
        elif line.startswith("-A "):
            words = shlex.split(line)
            rules.setdefault(words[1], []).append((words, line))
    return policies, rules


def _legacy_filter() -> _Filter | None:
    if not _legacy_present():
        return None
    policies, rules = _saved(LEGACY)
    chain = _target(policies, rules)
    accepted = {(words[2], words[3]) for words, _ in rules.get(chain or "", [])
                if len(words) > 3 and words[2] in _DIRECTIONS and words[-2:] == ["-j", "ACCEPT"]}
    return _Filter(chain, accepted)


def missing(bridges: list[str]) -> bool:
    """Whether nft's filter table can drop forwarded traffic and does not accept some of these bridges': the
    check at every start (libnftables, no program)."""
    found = _nft_filter()
    return found is not None and bool(found.lacking(bridges))


def _dropping(legacy: bool) -> list[tuple[str, _Filter]]:
    """The backends whose filter table can drop forwarded traffic (``legacy``: the x_tables backend too)."""
    found = [(NFT, _nft_filter()), (LEGACY, _legacy_filter() if legacy else None)]
    return [(backend, f) for backend, f in found if f is not None and f.chain is not None]


def lacking(bridges: list[str], legacy: bool = True) -> list[tuple[str, str, str]]:
    """(backend, chain, bridge) where a filter table that can drop forwarded traffic has no accept rule for one
    of ``bridges``."""
    return [(backend, str(found.chain), bridge) for backend, found in _dropping(legacy)
            for bridge in dict.fromkeys(b for _, b in found.lacking(bridges))]


def ensure(table: str, bridges: list[str], legacy: bool = True) -> list[str]:
    """Add the rules each backend lacks for these bridges, one program run per backend; returns the lines
    added. Raises ``SampanError`` with iptables' message when it refuses."""
    added = []
    for backend, found in _dropping(legacy):
        lines = [f"-I {found.chain} {_spec(table, flag, bridge)}" for flag, bridge in found.lacking(bridges)]
        if lines:
            _exec(backend, "restore", "*filter\n" + "\n".join(lines) + "\nCOMMIT\n")
            added += lines
    return added


def listed(table: str) -> list[Rule]:
    """sampan's rules of this table's bridges in both backends, found by their comments."""
    backends = ([NFT] if _nft_filter() is not None else []) + ([LEGACY] if _legacy_present() else [])
    out = []
    prefix = _comment(table, "")
    for backend in backends:
        for chain_rules in _saved(backend)[1].values():
            for words, line in chain_rules:
                tag = words[words.index("--comment") + 1] if "--comment" in words[:-1] else ""
                if tag.startswith(prefix):
                    out.append(Rule(backend, tag[len(prefix):], line))
    return out


def remove(table: str, bridges: list[str] | None = None) -> list[Rule]:
    """Delete sampan's rules of these bridges (every one of the table's when None), one program run per
    backend; when that fails (a rule went meanwhile), one run a rule, ignoring those that are gone."""
    rules = [rule for rule in listed(table) if bridges is None or rule.bridge in bridges]
    for backend in dict.fromkeys(rule.backend for rule in rules):
        lines = ["-D" + rule.line[2:] for rule in rules if rule.backend == backend]
        try:
            _exec(backend, "restore", "*filter\n" + "\n".join(lines) + "\nCOMMIT\n")
        except SampanError:
            for line in lines:
                try:
                    _exec(backend, "restore", f"*filter\n{line}\nCOMMIT\n")
                except SampanError:
                    pass
    return rules
