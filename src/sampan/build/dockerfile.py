"""Docker's Dockerfile syntax: parser directives, line continuations, comments, JSON and shell forms, flags, and
variable substitution (moby ``frontend/dockerfile/parser`` and ``shell/lex.go``).

``parse(text)`` turns the file into ``Instruction``s grouped into ``Stage``s, plus the ``ARG``s before the first
``FROM`` (meta args). It checks only what the parser checks (unknown instructions, a missing ``FROM``, JSON arrays
that are not arrays of strings, flags an instruction does not take); meaning is the builder's. Every error is a
``DockerfileError``: one line, with the Dockerfile line number, in Docker's words where they are known.

Substitution (``expand``) follows Docker's shell lexer: ``$VAR``, ``${VAR}``, ``${VAR:-default}``,
``${VAR:+alternative}`` (and ``-``/``+`` without the colon), single quotes literal, double quotes substituted, the
escape character (``\\`` or the ``# escape=`` directive's) protecting the next character. It applies to the
instructions Docker lists (``SUBSTITUTED``), never to RUN, CMD or ENTRYPOINT, whose shell does it.
"""

from __future__ import annotations

import json
import re

from sampan.errors import InvalidArgument

INSTRUCTIONS = frozenset({"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
                          "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME",
                          "WORKDIR"})
SUBSTITUTED = frozenset({"ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME",
                         "WORKDIR", "ARG"})
# Flags each instruction accepts (``--name=value``); others are refused as Docker refuses them.
FLAGS: dict[str, frozenset[str]] = {
    "FROM": frozenset({"platform"}),
    "COPY": frozenset({"from", "chown", "chmod", "link"}),
    "ADD": frozenset({"chown", "chmod", "link", "checksum"}),
    "RUN": frozenset({"network", "mount", "security"}),
    "HEALTHCHECK": frozenset({"interval", "timeout", "start-period", "start-interval", "retries"}),
}
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_NOT_STRINGS = "when using JSON array syntax, arrays must be comprised of strings only"


class DockerfileError(InvalidArgument):
    """A Dockerfile that cannot be parsed or built: one line naming the Dockerfile line (Docker's words). The
    builder adds the file's name and the instruction (``located``), which the parser does not know."""

    def __init__(self, line: int, message: str, instruction: str = "") -> None:
        super().__init__(f"dockerfile parse error on line {line}: {message}" if line else message)
        self.line = line
        self.instruction = instruction


class Heredoc:
    """A here-document (BuildKit's ``<<EOF`` ... ``EOF``): ``name`` is its delimiter, ``data`` its lines with
    their newlines, ``expand`` False when the delimiter was quoted (no substitution), ``chomp`` for ``<<-``
    (leading tabs removed, already applied to ``data``).

    These are plain classes, not dataclasses: each dataclass costs about a millisecond at import, and a fully
    cached rebuild is mostly start-up."""

    __slots__ = ("chomp", "data", "expand", "name")

    def __init__(self, name: str, data: str, expand: bool, chomp: bool) -> None:
        self.name, self.data, self.expand, self.chomp = name, data, expand, chomp


class Instruction:
    """One instruction: ``cmd`` upper-case, ``rest`` the text after the keyword and flags (continuations joined),
    ``json`` the exec-form list when the rest is a JSON array of strings, ``original`` the whole instruction as
    Docker echoes it in ``Step N/M : ...``, ``mounts`` every RUN ``--mount=`` value (the flag repeats)."""

    __slots__ = ("cmd", "flags", "heredocs", "json", "line", "mounts", "original", "rest")

    def __init__(self, cmd: str, rest: str, line: int, original: str, flags: dict[str, str] | None = None,
                 json: list[str] | None = None, heredocs: list[Heredoc] | None = None,
                 mounts: list[str] | None = None) -> None:
        self.cmd, self.rest, self.line, self.original = cmd, rest, line, original
        self.flags = flags if flags is not None else {}
        self.json = json
        self.heredocs = heredocs if heredocs is not None else []
        self.mounts = mounts if mounts is not None else []


class Stage:
    """``base`` is FROM's image (unexpanded), ``name`` the AS name in lower case ("" if none)."""

    __slots__ = ("base", "from_", "index", "instructions", "line", "name")

    def __init__(self, base: str, name: str, index: int, line: int, from_: Instruction) -> None:
        self.base, self.name, self.index, self.line, self.from_ = base, name, index, line, from_
        self.instructions: list[Instruction] = []


class Dockerfile:
    """``notes``: things accepted but ignored (``--platform``)."""

    __slots__ = ("escape", "meta_args", "notes", "stages")

    def __init__(self, meta_args: list[Instruction], stages: list[Stage], escape: str = "\\",
                 notes: list[str] | None = None) -> None:
        self.meta_args, self.stages, self.escape = meta_args, stages, escape
        self.notes = notes if notes is not None else []


# ---------------------------------------------------------------------------------------------- lines


def _directives(lines: list[str]) -> tuple[str, int]:
    """The escape character from the parser directives at the top, and the index of the first other line."""
    escape = "\\"
    seen: set[str] = set()
    for index, line in enumerate(lines):
        match = _DIRECTIVE.match(line.strip())
        if not match:
            return escape, index
        name, value = match.group(1).lower(), match.group(2)
        if name in seen:
            raise DockerfileError(index + 1, f"only one {name} parser directive can be used")
        seen.add(name)
        if name == "escape":
            if value not in ("\\", "`"):
                raise DockerfileError(index + 1, f"invalid escape token '{value}' does not match ` or \\")
            escape = value
    return escape, len(lines)


_HEREDOC_WORD = re.compile(r"^\d*<<(-?)(.+)$")
HEREDOC_INSTRUCTIONS = frozenset({"RUN", "COPY", "ADD"})


def _heredoc_names(joined: str, escape: str) -> list[tuple[str, bool, bool]]:
    """(delimiter, expand, chomp) for each ``<<WORD`` of a RUN/COPY/ADD line (BuildKit's ``heredocsFromLine``:
    a quoted delimiter turns substitution off, ``<<-`` strips leading tabs). A JSON (exec form) line has none."""
    word, _, rest = joined.partition(" ")
    if word.upper() not in HEREDOC_INSTRUCTIONS or rest.lstrip().startswith("["):
        return []
    out = []
    for item in split_words(rest, escape):
        match = _HEREDOC_WORD.match(item)
        if not match or match.group(2).startswith("<"):
            continue
        raw = match.group(2)
        name = expand(raw, {}, escape)  # removes the quotes
        if not name:
            continue
        out.append((name, raw == name, bool(match.group(1))))
    return out


def _logical_lines(text: str) -> tuple[list[tuple[int, str, list[Heredoc]]], str]:
    """(start line, joined text, here-documents) for each instruction, and the escape character. The lines of a
    here-document follow its instruction's line and end at the delimiter alone on a line."""
    lines = text.splitlines()
    escape, start = _directives(lines)
    out: list[tuple[int, str, list[Heredoc]]] = []
    current: list[str] = []
    first = 0
    index = start
    while index < len(lines):
        raw = lines[index]
        number = index + 1
        index += 1
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and (stripped.startswith("#") or not stripped):
            continue  # comments and empty lines inside a continuation are dropped (Docker warns about the latter)
        if not current:
            first = number
        body = raw.lstrip() if not current else raw
        trimmed = body.rstrip()
        if trimmed.endswith(escape):
            current.append(trimmed[:-1])
            continue
        current.append(body)
        joined = "".join(current).strip()
        current = []
        heredocs = []
        for name, expand_, chomp in _heredoc_names(joined, escape):
            content: list[str] = []
            while True:
                if index >= len(lines):
                    raise DockerfileError(first, f"unterminated heredoc {name}", joined)
                line = lines[index]
                index += 1
                if chomp:
                    line = line.lstrip("\t")
                if line == name:
                    break
                content.append(line + "\n")
            heredocs.append(Heredoc(name, "".join(content), expand_, chomp))
        out.append((first, joined, heredocs))
    if current:
        out.append((first, "".join(current).strip(), []))
    return out, escape


# ---------------------------------------------------------------------------------------------- instructions


def _split_flags(cmd: str, rest: str, line: int) -> tuple[dict[str, str], list[str], str]:
    """The ``--name=value`` flags before the arguments; ``--mount`` may repeat (all its values are kept)."""
    flags: dict[str, str] = {}
    mounts: list[str] = []
    while rest.startswith("--"):
        word, _, after = rest.partition(" ")
        if word == "--":
            break
        name, eq, value = word[2:].partition("=")
        allowed = FLAGS.get(cmd, frozenset())
        if name not in allowed:
            raise DockerfileError(line, f"unknown flag: {name}")
        flags[name] = value if eq else "true"
        if name == "mount":
            mounts.append(value)
        rest = after.lstrip()
    return flags, mounts, rest


def parse_json_list(rest: str, line: int) -> list[str] | None:
    """The exec form: a JSON array of strings; None when ``rest`` is no JSON array (shell form). A JSON array
    of other values is an error, as in Docker."""
    text = rest.strip()
    if not text.startswith("[") or not text.endswith("]"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(item, str) for item in value):
        raise DockerfileError(line, _NOT_STRINGS)
    return value


def _instruction(cmd: str, rest: str, line: int, joined: str, heredocs: list[Heredoc]) -> Instruction:
    """One instruction with its flags split off and what the parser alone can check checked."""
    flags, mounts, rest = _split_flags(cmd, rest, line)
    ins = Instruction(cmd, rest, line, joined, flags, heredocs=heredocs, mounts=mounts)
    if cmd in ("RUN", "CMD", "ENTRYPOINT", "SHELL", "VOLUME", "COPY", "ADD"):
        ins.json = parse_json_list(rest, line)
    if cmd == "SHELL" and ins.json is None:
        raise DockerfileError(line, "SHELL requires the arguments to be in JSON form")
    if cmd not in ("CMD", "ENTRYPOINT", "RUN", "HEALTHCHECK") and not rest:
        raise DockerfileError(line, f"{cmd} requires at least one argument")
    if cmd == "FROM":
        parts = rest.split()
        if len(parts) not in (1, 3) or (len(parts) == 3 and parts[1].lower() != "as"):
            raise DockerfileError(line, "FROM requires either one or three arguments")
        if len(parts) == 3 and not re.fullmatch(r"[a-z][a-z0-9\-_.]*", parts[2].lower()):
            raise DockerfileError(line, f"invalid name for build stage: \"{parts[2]}\", name can't start with a "
                                  "number or contain symbols")
    return ins


def parse(text: str) -> Dockerfile:
    """Parse a Dockerfile; raises DockerfileError."""
    logical, escape = _logical_lines(text)
    if not logical:
        raise DockerfileError(0, "the Dockerfile cannot be empty")
    meta: list[Instruction] = []
    stages: list[Stage] = []
    notes: list[str] = []
    names: set[str] = set()
    for line, joined, heredocs in logical:
        word, _, rest = joined.partition(" ") if " " in joined else joined.partition("\t")
        cmd = word.upper()
        try:
            if cmd not in INSTRUCTIONS:
                raise DockerfileError(line, f"unknown instruction: {word}")
            ins = _instruction(cmd, rest.strip(), line, joined, heredocs)
            if cmd == "FROM":
                parts = ins.rest.split()
                name = parts[2].lower() if len(parts) == 3 else ""
                if name in names:
                    raise DockerfileError(line, f"duplicate name {name}")
                names.add(name)
                if "platform" in ins.flags:
                    notes.append(f"line {line}: FROM --platform={ins.flags['platform']} is ignored: sampan "
                                 "builds for the host's platform")
                stages.append(Stage(parts[0], name, len(stages), line, ins))
            elif not stages:
                if cmd != "ARG":
                    raise DockerfileError(line, "no build stage in current context")
                meta.append(ins)
            else:
                stages[-1].instructions.append(ins)
        except DockerfileError as e:
            e.instruction = e.instruction or joined
            raise
    if not stages:
        raise DockerfileError(0, "no build stage in current context")
    return Dockerfile(meta, stages, escape, notes)


# ---------------------------------------------------------------------------------------------- words


def split_words(text: str, escape: str = "\\") -> list[str]:
    """Whitespace-separated words, quotes and escapes kept as written (moby ``parseWords``)."""
    words: list[str] = []
    current: list[str] = []
    quote = ""
    i = 0
    while i < len(text):
        c = text[i]
        if c == escape and i + 1 < len(text) and quote != "'":
            current.append(c + text[i + 1])
            i += 2
            continue
        if quote:
            if c == quote:
                quote = ""
        elif c in ("'", '"'):
            quote = c
        elif c.isspace():
            if current:
                words.append("".join(current))
                current = []
            i += 1
            continue
        current.append(c)
        i += 1
    if current:
        words.append("".join(current))
    return words


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def expand(word: str, env: dict[str, str], escape: str = "\\", line: int = 0) -> str:
    """One word with quotes removed, escapes applied and variables substituted (moby ``ProcessWord``)."""
    out: list[str] = []
    i = 0
    quote = ""
    n = len(word)
    while i < n:
        c = word[i]
        if quote == "'":
            if c == "'":
                quote = ""
            else:
                out.append(c)
            i += 1
            continue
        if c == escape:
            if i + 1 < n:
                nxt = word[i + 1]
                if quote == '"' and nxt not in ('"', "$", escape):
                    out.append(c)
                out.append(nxt)
                i += 2
            else:
                out.append(c)
                i += 1
            continue
        if c == '"':
            quote = "" if quote == '"' else '"'
            i += 1
            continue
        if c == "'" and not quote:
            quote = "'"
            i += 1
            continue
        if c == "$":
            value, i = _variable(word, i + 1, env, escape, line)
            out.append(value)
            continue
        out.append(c)
        i += 1
    return "".join(out)


def expand_text(text: str, env: dict[str, str], escape: str = "\\") -> str:
    """A here-document's body substituted (BuildKit): variables replaced, the escape character protecting a
    ``$``, quotes and everything else kept as written."""
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == escape and text.startswith("$", i + 1):
            out.append("$")
            i += 2
        elif c == "$":
            value, i = _variable(text, i + 1, env, escape, 0)
            out.append(value)
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _variable(word: str, i: int, env: dict[str, str], escape: str, line: int) -> tuple[str, int]:
    if i >= len(word):
        return "$", i
    if word[i] == "{":
        end = _closing_brace(word, i + 1)
        if end < 0:
            raise DockerfileError(line, f"missing '}}' in '{word}'")
        body = word[i + 1:end]
        match = _NAME.match(body)
        if not match:
            raise DockerfileError(line, f"bad substitution: '{word}'")
        name = match.group(0)
        op = body[match.end():]
        value = env.get(name)
        if not op:
            return value or "", end + 1
        colon = op.startswith(":")
        kind = op[1:2] if colon else op[:1]
        arg = expand(op[2:] if colon else op[1:], env, escape, line)
        if kind == "-":
            use_default = value is None or (colon and value == "")
            return (arg if use_default else value or ""), end + 1
        if kind == "+":
            present = value is not None and (not colon or value != "")
            return (arg if present else ""), end + 1
        raise DockerfileError(line, f"unsupported modifier ({op[:2]}) in substitution: '{word}'")
    match = _NAME.match(word, i)
    if not match:
        return "$", i
    return env.get(match.group(0), ""), match.end()


def _closing_brace(word: str, i: int) -> int:
    depth = 0
    while i < len(word):
        if word[i] == "{":
            depth += 1
        elif word[i] == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    return -1


def expand_words(text: str, env: dict[str, str], escape: str = "\\", line: int = 0) -> list[str]:
    """Split then substitute each word (EXPOSE, shell-form COPY/ADD/VOLUME, FROM)."""
    return [expand(word, env, escape, line) for word in split_words(text, escape)]


def key_values(ins: Instruction, env: dict[str, str], escape: str = "\\") -> list[tuple[str, str]]:
    """ENV/LABEL: ``K=V ...`` pairs or the legacy ``K V`` form (one pair, the rest of the line)."""
    words = split_words(ins.rest, escape)
    if not words:
        raise DockerfileError(ins.line, f"{ins.cmd} requires at least one argument")
    if "=" not in words[0]:
        if len(words) < 2 and ins.cmd == "ENV":
            raise DockerfileError(ins.line, "ENV must have two arguments")
        key = words[0]
        value = ins.rest[len(key):].strip()
        return [(expand(key, env, escape, ins.line), expand(value, env, escape, ins.line))]
    pairs = []
    for word in words:
        if "=" not in word:
            raise DockerfileError(ins.line, f"Syntax error - can't find = in \"{word}\". Must be of the form: "
                                  "name=value")
        key, _, value = word.partition("=")
        key = expand(key, env, escape, ins.line)
        if not key:
            raise DockerfileError(ins.line, f"{ins.cmd} names can not be blank")
        pairs.append((key, expand(value, env, escape, ins.line)))
    return pairs
