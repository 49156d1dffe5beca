"""The subset of Go's text/template that docker's ``--format`` flags accept, and the docker CLI's tables.

Users paste format strings written for the docker CLI, so parsing, printing of values (``<no value>``,
``[a b]``, ``map[k:v]``), the function set and the error wording follow Go and the docker CLI rather than
Python habits. Data are Docker's JSON objects as dicts (a missing key is Go's missing map key) or objects with
attributes. Deliberate leniencies, because Python data lose Go's static types: a field of ``None`` and
``len``/``index``/``range`` of ``None`` give nothing instead of a nil-pointer error, and printf accepts an
int for ``%f``.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from sampan.errors import InvalidArgument

_SPACE = " \t\r\n"
_KEYWORDS = frozenset({"block", "break", "continue", "define", "else", "end", "if", "range", "template",
                       "with"})
_ACTION_TOKEN = re.compile(r"""
    (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:\\[^\n]+?|[^'\\\n])')
  | (?P<number>[+-]?(?:0[xX][\da-fA-F_]+(?:\.[\da-fA-F_]*)?(?:[pP][+-]?\d+)?|0[bB][01_]+|0[oO][0-7_]+
                     |(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d+)?))
  | (?P<field>\.[^\W\d]\w*)
  | (?P<dot>\.)
  | (?P<var>\$\w*)
  | (?P<word>[^\W\d]\w*)
  | (?P<declare>:=)
  | (?P<punct>[=|(),])
""", re.VERBOSE)
_PUNCT_KINDS = {"=": "assign", "|": "pipe", "(": "lparen", ")": "rparen", ",": "punct"}
_LEX_ERRORS = {'"': "unterminated quoted string", "`": "unterminated raw quoted string",
               "'": "unterminated character constant", ":": "expected :="}
_ESCAPE = re.compile(r"\\(?:([abfnrtv\\'\"])|(x[\da-fA-F]{2}|u[\da-fA-F]{4}|U[\da-fA-F]{8})|([0-7]{3})|)")
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\",
                   "'": "'", '"': '"'}
_QUOTE_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
                  "\\": "\\\\", '"': '\\"'}
_VERB = re.compile(r"%([-+# 0]*)(\d+)?(?:\.(\d*))?(.)?", re.DOTALL)
_OPERAND_START = frozenset({"field", "dot", "var", "word", "bool", "nil", "number", "string", "raw", "char",
                            "lparen"})


class _Missing:
    """Go's invalid reflect.Value: what a missing map key yields; it prints as ``<no value>``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<no value>"


_MISSING: Any = _Missing()
_NO_FINAL: Any = object()  # "no value piped in", distinct from every data value


class _CallError(Exception):
    """A template function rejected its arguments; reported as Go's ``error calling NAME: ...``."""


# ------------------------------------------------------------------------------------------ Go value printing


def _go_float(value: float) -> str:
    """fmt's %v of a float64: shortest digits, exponent form below 1e-4 and from 1e+06 ("1.5", "3")."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    match = re.fullmatch(r"(-?)(\d+)(?:\.(\d+))?(?:e([+-]\d+))?", repr(value))
    assert match is not None
    sign, whole, fraction, exponent = match.groups()
    digits = whole + (fraction or "")
    point = len(whole) + int(exponent or 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0") or "0"
    if digits == "0":
        return sign + "0"
    exp = point - 1
    if exp < -4 or exp >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _sorted_keys(mapping: dict[Any, Any]) -> list[Any]:
    """Go's map ordering for printing and ranging: sorted keys (by text when the key types do not compare)."""
    try:
        return sorted(mapping)
    except TypeError:
        return sorted(mapping, key=str)


def _fmt_value(value: Any) -> str:
    """fmt's %v, which is how an action prints any value that is not a string."""
    if isinstance(value, str):
        return value
    if value is _MISSING:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(_fmt_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{_fmt_value(k)}:{_fmt_value(value[k])}" for k in _sorted_keys(value)) + "]"
    return str(value)


def _go_type(value: Any) -> str:
    """The Go type name a JSON-decoded value would have, for error messages copied from Go."""
    if value is None or value is _MISSING:
        return "<nil>"
    names = {bool: "bool", int: "int", float: "float64", str: "string", list: "[]interface {}",
             tuple: "[]interface {}", dict: "map[string]interface {}"}
    return names.get(type(value), type(value).__name__)


def _go_quote(text: str) -> str:
    """strconv.Quote: how Go's %q and the parser's error messages quote text."""
    parts = []
    for char in text:
        if char in _QUOTE_ESCAPES:
            parts.append(_QUOTE_ESCAPES[char])
        elif char.isprintable():
            parts.append(char)
        elif ord(char) < 0x80:
            parts.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            parts.append(f"\\u{ord(char):04x}")
        else:
            parts.append(f"\\U{ord(char):08x}")
    return '"' + "".join(parts) + '"'


def _truth(value: Any) -> bool:
    """Go's template truth: false, 0, nil, "" and empty collections are false, everything else true."""
    if value is _MISSING or value is None:
        return False
    if isinstance(value, (bool, int, float, str, list, tuple, dict)):
        return bool(value)
    return True


# ----------------------------------------------------------------------------------------------------- printf


def _as_int(value: Any) -> int | None:
    """An integer operand for %d/%x/..., accepting integral floats (JSON numbers), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _bad_verb(verb: str, value: Any) -> str:
    """fmt's in-band complaint for a verb that does not fit the operand (``%!d(string=abc)``)."""
    if value is None:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({_go_type(value)}={_fmt_value(value)})"


def _convert_integer(verb: str, flags: str, value: Any) -> str:
    """%d %b %o %x %X %c; %x of a string is the hex of its UTF-8 bytes, as in Go."""
    if isinstance(value, str) and verb in "xX":
        text = value.encode().hex()
        return text.upper() if verb == "X" else text
    number = _as_int(value)
    if number is None:
        return _bad_verb(verb, value)
    if verb == "c":
        return chr(number)
    sign = "+" if "+" in flags else ""
    alternate = "#" if "#" in flags and verb in "xX" else ""
    return format(number, sign + alternate + verb)


def _convert_float(verb: str, flags: str, precision: int | None, value: Any) -> str:
    """%e %f %g (and upper-case forms); ints are accepted because Python data lose Go's float64 type."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _bad_verb(verb, value)
    sign = "+" if "+" in flags else ""
    if verb in "gG" and precision is None:
        text = _go_float(float(value))
        text = text.upper() if verb == "G" else text
        return sign + text if sign and not text.startswith("-") else text
    return format(float(value), f"{sign}.{6 if precision is None else precision}{verb}")


def _convert(verb: str, flags: str, precision: int | None, value: Any) -> str:
    """One printf operand, before width padding."""
    if verb in "vs":
        text = _fmt_value(value)
        return text[:precision] if precision is not None and isinstance(value, str) else text
    if verb == "q":
        if isinstance(value, str):
            return _go_quote(value)
        number = _as_int(value)
        return _bad_verb(verb, value) if number is None else "'" + _go_quote(chr(number))[1:-1] + "'"
    if verb == "t":
        return _fmt_value(value) if isinstance(value, bool) else _bad_verb(verb, value)
    if verb in "dboxXc":
        return _convert_integer(verb, flags, value)
    if verb in "eEfFgG":
        return _convert_float(verb, flags, precision, value)
    return _bad_verb(verb, value)


def _pad(text: str, flags: str, width: int | None) -> str:
    """Width handling: right-aligned by default, ``-`` left-aligns, ``0`` pads with zeros after the sign."""
    if width is None or len(text) >= width:
        return text
    if "-" in flags:
        return text.ljust(width)
    if "0" in flags:
        sign = text[0] if text[:1] in ("+", "-") else ""
        return sign + text[len(sign):].rjust(width - len(sign), "0")
    return text.rjust(width)


def _sprintf(template: Any, *args: Any) -> str:
    """fmt.Sprintf for the verbs format strings use; mismatches are reported in-band like Go does."""
    if not isinstance(template, str):
        raise _CallError(f"wrong type for value; expected string; got {_go_type(template)}")
    used = 0

    def one(match: re.Match[str]) -> str:
        nonlocal used
        flags, width, precision, verb = match.groups()
        if verb == "%":
            return "%"
        if verb is None:
            return "%!(NOVERB)"
        if used >= len(args):
            return f"%!{verb}(MISSING)"
        used += 1
        text = _convert(verb, flags, None if precision is None else int(precision or 0), args[used - 1])
        return _pad(text, flags, int(width) if width else None)

    text = _VERB.sub(one, template)
    if used < len(args):
        text += "%!(EXTRA " + ", ".join(f"{_go_type(a)}={_fmt_value(a)}" for a in args[used:]) + ")"
    return text


# -------------------------------------------------------------------------------------------------- functions


def _sprint(*args: Any) -> str:
    """fmt.Sprint: a space between operands only where neither side is a string."""
    parts = []
    for index, arg in enumerate(args):
        if index and not isinstance(arg, str) and not isinstance(args[index - 1], str):
            parts.append(" ")
        parts.append(_fmt_value(arg))
    return "".join(parts)


def _sprintln(*args: Any) -> str:
    """fmt.Sprintln: always spaces between operands, and a newline."""
    return " ".join(_fmt_value(arg) for arg in args) + "\n"


def _and(*thunks: Callable[[], Any]) -> Any:
    """Go's short-circuit ``and``: the first false argument, else the last; later ones are not evaluated."""
    value = None
    for thunk in thunks:
        value = thunk()
        if not _truth(value):
            return value
    return value


def _or(*thunks: Callable[[], Any]) -> Any:
    """Go's short-circuit ``or``: the first true argument, else the last."""
    value = None
    for thunk in thunks:
        value = thunk()
        if _truth(value):
            return value
    return value


def _not(value: Any) -> bool:
    return not _truth(value)


def _len(value: Any) -> int:
    """len of a string, list or map; nil counts as empty (JSON null stands for Go's nil slices and maps)."""
    if value is None:
        return 0
    if isinstance(value, (str, list, tuple, dict)):
        return len(value)
    raise _CallError(f"len of type {_go_type(value)}")


def _position(item: Any, key: Any, size: int) -> int:
    """A checked list/string index, with Go's error wording."""
    if isinstance(key, bool) or not isinstance(key, int):
        raise _CallError(f"cannot index slice/array with type {_go_type(key)}")
    if not 0 <= key < size:
        raise _CallError(f"index out of range: {key}")
    return key


def _index(item: Any, *keys: Any) -> Any:
    """Go's ``index``: successive map keys or list positions; a missing key is ``<no value>``."""
    for key in keys:
        if item is None or item is _MISSING:
            return _MISSING
        if isinstance(item, dict):
            try:
                item = item.get(key, _MISSING)
            except TypeError:
                raise _CallError(f"value has type {_go_type(key)}; should be string") from None
        elif isinstance(item, (list, tuple)):
            item = item[_position(item, key, len(item))]
        elif isinstance(item, str):
            item = ord(item[_position(item, key, len(item))])
        else:
            raise _CallError(f"can't index item of type {_go_type(item)}")
    return item


def _slice(item: Any, *indexes: Any) -> Any:
    """Go's ``slice``: ``slice x 1 2`` is x[1:2]; indexes are bounds-checked like Go."""
    if not isinstance(item, (str, list, tuple)):
        raise _CallError(f"can't slice item of type {_go_type(item)}")
    if len(indexes) > 3 or (len(indexes) == 3 and isinstance(item, str)):
        raise _CallError("too many slice indexes" if len(indexes) > 3 else "cannot 3-index slice a string")
    bounds = [_position(item, index, len(item) + 1) for index in indexes]
    if any(low > high for low, high in itertools.pairwise(bounds)):
        raise _CallError(f"invalid slice index: {bounds[0]} > {bounds[1]}")
    start = bounds[0] if bounds else 0
    end = bounds[1] if len(bounds) > 1 else len(item)
    return item[start:end]


def _kind(value: Any) -> str:
    """The comparison class of a value: Go refuses to compare across classes."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "string" if isinstance(value, str) else "other"


def _equal(left: Any, right: Any) -> bool:
    """Go's ``eq`` for two operands: nil equals only nil, different kinds are an error."""
    if left is None or right is None:
        return left is right
    if _kind(left) != _kind(right):
        raise _CallError("incompatible types for comparison")
    return bool(left == right)


def _eq(left: Any, *others: Any) -> bool:
    """``eq a b c`` is true when a equals any of the others, as in Go."""
    return any(_equal(left, other) for other in others)


def _ne(left: Any, right: Any) -> bool:
    return not _equal(left, right)


def _ordered(left: Any, right: Any) -> tuple[Any, Any]:
    """Operands for lt/le/gt/ge: numbers or strings of the same kind only."""
    kind = _kind(left)
    if kind not in ("number", "string") or _kind(right) not in ("number", "string"):
        raise _CallError("invalid type for comparison")
    if kind != _kind(right):
        raise _CallError("incompatible types for comparison")
    return left, right


def _lt(left: Any, right: Any) -> bool:
    a, b = _ordered(left, right)
    return bool(a < b)


def _le(left: Any, right: Any) -> bool:
    a, b = _ordered(left, right)
    return bool(a <= b)


def _gt(left: Any, right: Any) -> bool:
    a, b = _ordered(left, right)
    return bool(a > b)


def _ge(left: Any, right: Any) -> bool:
    a, b = _ordered(left, right)
    return bool(a >= b)


def _json_default(value: Any) -> Any:
    """Objects with attributes encode as their attribute dicts, like Go structs."""
    if hasattr(value, "__dict__"):
        return vars(value)
    raise TypeError(f"json: unsupported type: {type(value).__name__}")


def _json(value: Any) -> str:
    """docker's ``json``: Go's encoder without HTML escaping, compact, keys in the object's own order."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default)
    except (TypeError, ValueError) as error:
        raise _CallError(str(error)) from None


def _text(value: Any) -> str:
    """A string argument; other values are printed rather than rejected."""
    return value if isinstance(value, str) else _fmt_value(value)


def _integer(value: Any) -> int:
    number = _as_int(value)
    if number is None:
        raise _CallError(f"wrong type for value; expected int; got {_go_type(value)}")
    return number


def _join(items: Any, separator: Any) -> str:
    """strings.Join; nil joins to the empty string."""
    return _text(separator).join(_text(item) for item in items or ())


def _split(text: Any, separator: Any) -> list[str]:
    """strings.Split; an empty separator splits into characters as Go does."""
    text, separator = _text(text), _text(separator)
    return text.split(separator) if separator else list(text)


def _title(text: Any) -> str:
    """strings.Title: upper-case the first letter of each word, leaving the rest alone (unlike str.title)."""
    return re.sub(r"(?<!\w)\w", lambda match: match.group().upper(), _text(text))


def _pad_with_space(text: Any, before: Any, after: Any) -> str:
    """docker's ``pad``: spaces around a non-empty string."""
    source = _text(text)
    return " " * _integer(before) + source + " " * _integer(after) if source else source


def _truncate(text: Any, length: Any) -> str:
    """docker's ``truncate``: at most ``length`` characters."""
    return _text(text)[:max(0, _integer(length))]


def _passthrough(value: Any, *_: Any) -> Any:
    """docker's header functions: table headers are shown as they are, whatever the cell function does."""
    return value


# name -> (function, number of arguments, variadic: the number is then a minimum)
_Function = tuple[Callable[..., Any], int, bool]
_FUNCTIONS: dict[str, _Function] = {
    "and": (_and, 1, True), "or": (_or, 1, True), "not": (_not, 1, False), "len": (_len, 1, False),
    "index": (_index, 1, True), "slice": (_slice, 1, True), "print": (_sprint, 0, True),
    "println": (_sprintln, 0, True), "printf": (_sprintf, 1, True), "eq": (_eq, 2, True),
    "ne": (_ne, 2, False),
    "lt": (_lt, 2, False), "le": (_le, 2, False), "gt": (_gt, 2, False), "ge": (_ge, 2, False),
    "json": (_json, 1, False), "join": (_join, 2, False), "split": (_split, 2, False),
    "lower": (lambda text: _text(text).lower(), 1, False),
    "upper": (lambda text: _text(text).upper(), 1, False),
    "title": (_title, 1, False), "pad": (_pad_with_space, 3, False), "truncate": (_truncate, 2, False),
}
_LAZY = frozenset({"and", "or"})
_HEADER_FUNCTIONS: dict[str, _Function] = {
    **_FUNCTIONS, **{name: (_passthrough, _FUNCTIONS[name][1], False)
                     for name in ("json", "join", "split", "title", "lower", "upper", "pad", "truncate")}}


# ------------------------------------------------------------------------------------------------------ lexer


class _Token:
    """One lexical item; ``spaced`` records whitespace before it, which separates command arguments."""

    __slots__ = ("end", "kind", "pos", "spaced", "value")

    def __init__(self, kind: str, value: str, pos: int, end: int, spaced: bool = False) -> None:
        self.kind, self.value, self.pos, self.end, self.spaced = kind, value, pos, end, spaced


def _describe(token: _Token) -> str:
    """Go's item.String(), used in ``unexpected X in Y`` messages."""
    if token.kind == "eof":
        return "EOF"
    if token.kind == "keyword":
        return f"<{token.value}>"
    if len(token.value) > 10:
        return _go_quote(token.value[:10]) + "..."
    return _go_quote(token.value)


def _is_space(text: str, index: int) -> bool:
    return index < len(text) and text[index] in _SPACE


def _word_kind(word: str) -> str:
    if word in _KEYWORDS:
        return "keyword"
    if word in ("true", "false"):
        return "bool"
    return "nil" if word == "nil" else "word"


def _lex_comment(text: str, start: int, tokens: list[_Token]) -> tuple[int, bool]:
    """Skip ``/* ... */``, which must end the action; returns (resume, trim) or (-1, _) after an error."""
    close = text.find("*/", start + 2)
    if close < 0:
        tokens.append(_Token("error", "unclosed comment", start, start))
        return -1, False
    close += 2
    if text.startswith("}}", close):
        return close + 2, False
    if _is_space(text, close) and text.startswith("-}}", close + 1):
        return close + 4, True
    tokens.append(_Token("error", "comment ends before closing delimiter", close, close))
    return -1, False


def _lex_action(text: str, index: int, tokens: list[_Token]) -> tuple[int, bool]:
    """Tokens of one action up to ``}}``; returns (resume, trim next text) or (-1, _) after an error."""
    while True:
        start = index
        while _is_space(text, index):
            index += 1
        spaced = index > start
        if spaced and text.startswith("-}}", index):
            tokens.append(_Token("right", "}}", index, index + 3, True))
            return index + 3, True
        if text.startswith("}}", index):
            tokens.append(_Token("right", "}}", index, index + 2, spaced))
            return index + 2, False
        if index >= len(text):
            tokens.append(_Token("error", "unclosed action", index, index))
            return -1, False
        match = _ACTION_TOKEN.match(text, index)
        if match is None:
            char = text[index]
            if char in _LEX_ERRORS or not "!" <= char <= "~":
                unknown = f"unrecognized character in action: U+{ord(char):04X} '{char}'"
                message = _LEX_ERRORS.get(char, unknown)
                tokens.append(_Token("error", message, index, index))
                return -1, False
            tokens.append(_Token("punct", char, index, index + 1, spaced))
            index += 1
            continue
        kind, value = match.lastgroup or "", match.group()
        if kind == "word":
            kind = _word_kind(value)
        elif kind == "punct":
            kind = _PUNCT_KINDS[value]
        tokens.append(_Token(kind, value, index, match.end(), spaced))
        index = match.end()


def _lex(text: str) -> list[_Token]:
    """The template as tokens: text, ``{{``, action tokens, ``}}``, ...; trim markers are applied here."""
    tokens: list[_Token] = []
    pos, trim = 0, False
    while pos >= 0:
        start = text.find("{{", pos)
        end = len(text) if start < 0 else start
        left_trim = start >= 0 and text.startswith("-", start + 2) and _is_space(text, start + 3)
        chunk = text[pos:end]
        chunk = chunk.lstrip(_SPACE) if trim else chunk
        chunk = chunk.rstrip(_SPACE) if left_trim else chunk
        if chunk:
            tokens.append(_Token("text", chunk, pos, end))
        if start < 0:
            tokens.append(_Token("eof", "", len(text), len(text)))
            break
        inner = start + (4 if left_trim else 2)
        if text.startswith("/*", inner):
            pos, trim = _lex_comment(text, inner, tokens)
        else:
            tokens.append(_Token("left", "{{", start, inner))
            pos, trim = _lex_action(text, inner, tokens)
    return tokens


def _unescape(body: str) -> str:
    """strconv.Unquote's escapes; anything else is Go's ``invalid syntax``."""
    def replace(match: re.Match[str]) -> str:
        simple, code, octal = match.groups()
        if simple:
            return _SIMPLE_ESCAPES[simple]
        if code:
            return chr(int(code[1:], 16))
        if octal:
            return chr(int(octal, 8))
        raise ValueError("invalid syntax")
    return _ESCAPE.sub(replace, body)


def _number(token: _Token) -> int | float:
    """A Go number or character constant."""
    if token.kind == "char":
        char = _unescape(token.value[1:-1])
        if len(char) != 1:
            raise ValueError("invalid syntax")
        return ord(char)
    text = token.value.replace("_", "")
    if re.fullmatch(r"[+-]?0[0-7]+", text):
        return int(text, 8)
    try:
        return int(text, 0)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return float.fromhex(text)


# ------------------------------------------------------------------------------------------------------ nodes


class _Node:
    """An operand or command; ``pos`` and ``src`` locate errors like Go's ``:1:2: ... at <.Foo>``."""

    __slots__ = ("pos", "src")

    def __init__(self, pos: int, src: str) -> None:
        self.pos, self.src = pos, src


class _Dot(_Node):
    __slots__ = ()


class _Nil(_Node):
    __slots__ = ()


class _Literal(_Node):
    __slots__ = ("value",)

    def __init__(self, pos: int, src: str, value: Any) -> None:
        super().__init__(pos, src)
        self.value = value


class _Field(_Node):
    """``.A.B``: field names looked up from dot."""

    __slots__ = ("names",)

    def __init__(self, pos: int, src: str, names: list[str]) -> None:
        super().__init__(pos, src)
        self.names = names


class _Variable(_Node):
    """``$x`` or ``$x.A.B``."""

    __slots__ = ("name", "names")

    def __init__(self, pos: int, src: str, name: str, names: list[str]) -> None:
        super().__init__(pos, src)
        self.name, self.names = name, names


class _Chain(_Node):
    """``(pipeline).A.B``: fields of a computed value."""

    __slots__ = ("names", "term")

    def __init__(self, pos: int, src: str, term: _Node, names: list[str]) -> None:
        super().__init__(pos, src)
        self.term, self.names = term, names


class _Ident(_Node):
    """A function name."""

    __slots__ = ("name",)

    def __init__(self, pos: int, src: str, name: str) -> None:
        super().__init__(pos, src)
        self.name = name


class _Command(_Node):
    __slots__ = ("args",)

    def __init__(self, pos: int, src: str, args: list[_Node]) -> None:
        super().__init__(pos, src)
        self.args = args


class _Pipe(_Node):
    """``[$x :=] command | command ...``; ``assign`` marks ``=`` (update) rather than ``:=`` (declare)."""

    __slots__ = ("assign", "cmds", "decl")

    def __init__(self, pos: int, src: str, decl: list[str], assign: bool, cmds: list[_Command]) -> None:
        super().__init__(pos, src)
        self.decl, self.assign, self.cmds = decl, assign, cmds


class _Paren(_Node):
    __slots__ = ("pipe",)

    def __init__(self, pos: int, src: str, pipe: _Pipe) -> None:
        super().__init__(pos, src)
        self.pipe = pipe


class _Text:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class _Action:
    __slots__ = ("pipe",)

    def __init__(self, pipe: _Pipe) -> None:
        self.pipe = pipe


class _Control:
    """``if``, ``with`` or ``range`` with its body and ``else`` part."""

    __slots__ = ("body", "kind", "orelse", "pipe")

    def __init__(self, kind: str, pipe: _Pipe, body: list[Any], orelse: list[Any]) -> None:
        self.kind, self.pipe, self.body, self.orelse = kind, pipe, body, orelse


class _Jump:
    """``break`` or ``continue`` inside a range."""

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind


# ----------------------------------------------------------------------------------------------------- parser


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


class _Parser:
    """Recursive descent over the tokens, following text/template/parse so errors are reported alike."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _lex(text)
        self.index = 0
        self.prev_end = 0
        self.vars = ["$"]
        self.loops = 0

    def fail(self, message: str, token: _Token) -> NoReturn:
        raise InvalidArgument(f"template: :{_line(self.text, token.pos)}: {message}")

    def unexpected(self, token: _Token, context: str) -> NoReturn:
        self.fail(f"unexpected {_describe(token)} in {context}", token)

    def peek(self, ahead: int = 0) -> _Token:
        token = self.tokens[min(self.index + ahead, len(self.tokens) - 1)]
        if token.kind == "error":
            self.fail(token.value, token)
        return token

    def next(self) -> _Token:
        token = self.peek()
        self.index += 1
        self.prev_end = token.end
        return token

    def expect(self, kind: str, context: str) -> None:
        token = self.next()
        if token.kind != kind:
            self.unexpected(token, context)

    def parse(self) -> list[Any]:
        nodes, stop = self.item_list()
        if stop.kind != "eof":
            self.fail(f"unexpected {{{{{stop.value}}}}}", stop)
        return nodes

    def item_list(self) -> tuple[list[Any], _Token]:
        """Nodes up to EOF, ``{{end}}`` or ``{{else``; returns the stop token for the caller to finish."""
        nodes: list[Any] = []
        while True:
            token = self.next()
            if token.kind == "text":
                nodes.append(_Text(token.value))
                continue
            if token.kind == "eof":
                return nodes, token
            head = self.peek()
            if head.kind != "keyword":
                nodes.append(_Action(self.pipeline("command", "right")))
                continue
            self.next()
            if head.value in ("end", "else"):
                return nodes, head
            nodes.append(self.keyword(head))

    def keyword(self, head: _Token) -> Any:
        if head.value in ("if", "with", "range"):
            return self.control(head.value)
        if head.value in ("break", "continue"):
            if not self.loops:
                self.fail(f"{{{{{head.value}}}}} outside {{{{range}}}}", head)
            self.expect("right", head.value)
            return _Jump(head.value)
        self.fail(f"{{{{{head.value}}}}} is not supported", head)

    def control(self, kind: str) -> _Control:
        mark = len(self.vars)
        pipe = self.pipeline(kind, "right")
        self.loops += kind == "range"
        body, stop = self.item_list()
        self.loops -= kind == "range"
        orelse: list[Any] = []
        if stop.kind == "eof":
            self.fail("unexpected EOF", stop)
        chained = self.peek().kind == "keyword" and self.peek().value == kind
        if stop.value == "else" and kind != "range" and chained:
            self.next()
            orelse = [self.control(kind)]  # "else if": the nested control consumes the single {{end}}
        elif stop.value == "else":
            self.expect("right", "else")
            orelse, stop = self.item_list()
            if stop.kind == "eof":
                self.fail("unexpected EOF", stop)
            if stop.value != "end":
                self.fail(f"expected end; found {{{{{stop.value}}}}}", stop)
            self.expect("right", "end")
        else:
            self.expect("right", "end")
        del self.vars[mark:]
        return _Control(kind, pipe, body, orelse)

    def declaration(self, context: str) -> tuple[list[str], bool]:
        """``$x :=``, ``$x =`` and, in range, ``$i, $v :=``; anything else is left for the commands."""
        first = self.peek()
        if first.kind != "var":
            return [], False
        after = self.tokens[self.index + 1]
        if after.kind in ("declare", "assign"):
            names = [first.value]
            self.index += 2
        elif context == "range" and after.kind == "punct" and after.value == ",":
            self.index += 2
            second = self.next()
            if second.kind != "var":
                self.fail("range can only initialize variables", second)
            names = [first.value, second.value]
            after = self.next()
            if after.kind not in ("declare", "assign"):
                self.unexpected(after, "range")
        else:
            return [], False
        if after.kind == "assign":
            for name in names:
                self.check_var(name, first)
        self.vars.extend(names)
        return names, after.kind == "assign"

    def pipeline(self, context: str, end: str) -> _Pipe:
        start = self.peek()
        decl, assign = self.declaration(context)
        cmds = [self.command(context, end)]
        while self.peek().kind == "pipe":
            self.next()
            cmds.append(self.command(context, end))
        token = self.next()
        if token.kind != end:
            if end == "rparen" and token.kind == "right":
                self.fail("unclosed left paren", token)
            self.unexpected(token, context)
        for stage, cmd in enumerate(cmds[1:], 2):
            if isinstance(cmd.args[0], (_Literal, _Nil, _Dot)):
                self.fail(f"non executable command in pipeline stage {stage}", start)
        return _Pipe(start.pos, self.text[start.pos:token.pos].strip(), decl, assign, cmds)

    def command(self, context: str, end: str) -> _Command:
        first = self.peek()
        if first.kind == end or first.kind == "pipe":
            self.fail(f"missing value for {context}", first)
        args: list[_Node] = []
        while True:
            operand = self.operand()
            if operand is None:
                self.unexpected(self.next(), "operand" if args else context)
            args.append(operand)
            token = self.peek()
            if token.kind in ("right", "rparen", "pipe"):
                return _Command(first.pos, self.text[first.pos:self.prev_end], args)
            if not token.spaced:
                self.unexpected(self.next(), "operand")

    def operand(self) -> _Node | None:
        """A term followed by field names written directly after it (``$x.A``, ``(...).B``)."""
        term = self.term()
        if term is None:
            return None
        names = []
        while self.peek().kind == "field" and not self.peek().spaced:
            names.append(self.next().value[1:])
        if not names:
            return term
        if isinstance(term, (_Literal, _Nil, _Dot)):
            self.fail(f"unexpected . after term {_go_quote(term.src)}", self.tokens[self.index - 1])
        src = self.text[term.pos:self.prev_end]
        if isinstance(term, _Field):
            return _Field(term.pos, src, term.names + names)
        if isinstance(term, _Variable):
            return _Variable(term.pos, src, term.name, term.names + names)
        return _Chain(term.pos, src, term, names)

    def check_var(self, name: str, token: _Token) -> None:
        if name not in self.vars:
            self.fail(f"undefined variable {_go_quote(name)}", token)

    def term(self) -> _Node | None:
        token = self.peek()
        if token.kind not in _OPERAND_START:
            return None
        self.next()
        pos, value = token.pos, token.value
        if token.kind == "field":
            return _Field(pos, value, [value[1:]])
        if token.kind == "dot":
            return _Dot(pos, value)
        if token.kind == "var":
            self.check_var(value, token)
            return _Variable(pos, value, value, [])
        if token.kind == "word":
            if value not in _FUNCTIONS:
                self.fail(f"function {_go_quote(value)} not defined", token)
            return _Ident(pos, value, value)
        if token.kind == "lparen":
            pipe = self.pipeline("parenthesized pipeline", "rparen")
            return _Paren(pos, self.text[pos:self.prev_end], pipe)
        return self.literal(token)

    def literal(self, token: _Token) -> _Node:
        pos, value = token.pos, token.value
        if token.kind == "nil":
            return _Nil(pos, value)
        if token.kind == "bool":
            return _Literal(pos, value, value == "true")
        if token.kind == "raw":
            return _Literal(pos, value, value[1:-1].replace("\r", ""))
        try:
            return _Literal(pos, value, _unescape(value[1:-1]) if token.kind == "string" else _number(token))
        except ValueError:
            message = "invalid syntax" if token.kind == "string" else f"bad number syntax: {_go_quote(value)}"
            self.fail(message, token)


# --------------------------------------------------------------------------------------------------- executor


class _Jumped(Exception):
    """Unwinds to the enclosing range for ``break``/``continue``."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class _Exec:
    """One rendering: output buffer, variable stack (innermost last) and the function table in use."""

    def __init__(self, text: str, data: Any, functions: dict[str, _Function]) -> None:
        self.text = text
        self.functions = functions
        self.vars: list[tuple[str, Any]] = [("$", data)]
        self.out: list[str] = []

    def fail(self, node: _Node, message: str) -> NoReturn:
        line = _line(self.text, node.pos)
        column = node.pos - (self.text.rfind("\n", 0, node.pos) + 1)
        context = node.src if len(node.src) <= 20 else node.src[:20] + "..."
        raise InvalidArgument(f'template: :{line}:{column}: executing "" at <{context}>: {message}')

    def walk(self, dot: Any, nodes: list[Any]) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                self.out.append(node.text)
            elif isinstance(node, _Action):
                value = self.pipeline(dot, node.pipe)
                if not node.pipe.decl:
                    self.out.append(_fmt_value(value))
            elif isinstance(node, _Jump):
                raise _Jumped(node.kind)
            elif node.kind == "range":
                self.range(dot, node)
            else:
                self.branch(dot, node)

    def branch(self, dot: Any, node: _Control) -> None:
        """``if`` and ``with`` (which also moves dot); variables declared inside end with the block."""
        mark = len(self.vars)
        value = self.pipeline(dot, node.pipe)
        if _truth(value):
            self.walk(value if node.kind == "with" else dot, node.body)
        else:
            self.walk(dot, node.orelse)
        del self.vars[mark:]

    def items(self, node: _Control, value: Any) -> Iterable[tuple[Any, Any]]:
        """What range visits: (index, element) of lists, (key, value) of maps by key, 0..n-1 of an int."""
        if isinstance(value, (list, tuple)):
            return enumerate(value)
        if isinstance(value, dict):
            return [(key, value[key]) for key in _sorted_keys(value)]
        if isinstance(value, int) and not isinstance(value, bool):
            return ((i, i) for i in range(value))
        if value is None or value is _MISSING:
            return ()
        self.fail(node.pipe, f"range can't iterate over {_fmt_value(value)}")

    def range(self, dot: Any, node: _Control) -> None:
        mark = len(self.vars)
        value = self.pipeline(dot, node.pipe, declare=False)
        empty = True
        for key, element in self.items(node, value):
            empty = False
            self.bind(node.pipe, [element] if len(node.pipe.decl) == 1 else [key, element])
            try:
                self.walk(element, node.body)
            except _Jumped as jump:
                if jump.kind == "break":
                    break
            finally:
                del self.vars[mark:]
        if empty:
            self.walk(dot, node.orelse)
        del self.vars[mark:]

    def bind(self, pipe: _Pipe, values: list[Any]) -> None:
        """Declare (``:=``) or update (``=``) the pipeline's variables."""
        for name, value in zip(pipe.decl, values):
            if pipe.assign:
                self.assign(pipe, name, value)
            else:
                self.vars.append((name, value))

    def assign(self, node: _Node, name: str, value: Any) -> None:
        for index in range(len(self.vars) - 1, -1, -1):
            if self.vars[index][0] == name:
                self.vars[index] = (name, value)
                return
        self.fail(node, f"undefined variable: {name}")

    def variable(self, node: _Variable) -> Any:
        for name, value in reversed(self.vars):
            if name == node.name:
                return value
        self.fail(node, f"undefined variable: {node.name}")

    def pipeline(self, dot: Any, pipe: _Pipe, declare: bool = True) -> Any:
        value = _NO_FINAL
        for cmd in pipe.cmds:
            value = self.command(dot, cmd, value)
        if declare and pipe.decl:
            self.bind(pipe, [value])
        return value

    def command(self, dot: Any, cmd: _Command, final: Any) -> Any:
        """One pipeline stage; ``final`` is the previous stage's value, passed as the last argument."""
        first, args = cmd.args[0], cmd.args[1:]
        if isinstance(first, _Ident):
            return self.call(dot, cmd, first.name, args, final)
        if isinstance(first, _Field):
            return self.fields(first, dot, first.names, dot, args, final)
        if isinstance(first, _Chain):
            return self.fields(first, self.arg(dot, first.term), first.names, dot, args, final)
        if isinstance(first, _Variable) and first.names:
            return self.fields(first, self.variable(first), first.names, dot, args, final)
        if args or final is not _NO_FINAL:
            self.fail(first, f"can't give argument to non-function {first.src}")
        if isinstance(first, _Nil):
            self.fail(first, "nil is not a command")
        return self.arg(dot, first)

    def arg(self, dot: Any, node: _Node) -> Any:
        """An operand's value as an argument (a function named alone is called without arguments)."""
        if isinstance(node, _Dot):
            return dot
        if isinstance(node, _Literal):
            return node.value
        if isinstance(node, _Nil):
            return None
        if isinstance(node, _Field):
            return self.fields(node, dot, node.names, dot, [], _NO_FINAL)
        if isinstance(node, _Variable):
            value = self.variable(node)
            return self.fields(node, value, node.names, dot, [], _NO_FINAL) if node.names else value
        if isinstance(node, _Chain):
            return self.fields(node, self.arg(dot, node.term), node.names, dot, [], _NO_FINAL)
        if isinstance(node, _Paren):
            return self.pipeline(dot, node.pipe)
        assert isinstance(node, _Ident)
        return self.call(dot, node, node.name, [], _NO_FINAL)

    def fields(self, node: _Node, receiver: Any, names: list[str], dot: Any, args: list[_Node],
               final: Any) -> Any:
        """Successive field lookups; only the last one may take arguments (a method call)."""
        for name in names[:-1]:
            receiver = self.field(node, receiver, name, dot, [], _NO_FINAL)
        return self.field(node, receiver, names[-1], dot, args, final)

    def field(self, node: _Node, receiver: Any, name: str, dot: Any, args: list[_Node], final: Any) -> Any:
        """``.name`` of a dict (key; missing → ``<no value>``) or an object (attribute; a method is called)."""
        has_args = bool(args) or final is not _NO_FINAL
        if receiver is None or receiver is _MISSING:
            return _MISSING
        if isinstance(receiver, dict):
            if has_args:
                self.fail(node, f"{name} is not a method but has arguments")
            try:
                return receiver[name]
            except KeyError:
                return _MISSING
        primitive = isinstance(receiver, (str, int, float, list, tuple))
        if primitive or name.startswith("_") or not hasattr(receiver, name):
            self.fail(node, f"can't evaluate field {name} in type {_go_type(receiver)}")
        value = getattr(receiver, name)
        if callable(value):
            values = [self.arg(dot, arg) for arg in args] + ([] if final is _NO_FINAL else [final])
            return value(*values)
        if has_args:
            self.fail(node, f"{name} is not a method but has arguments")
        return value

    def call(self, dot: Any, node: _Node, name: str, arg_nodes: list[_Node], final: Any) -> Any:
        function, count, variadic = self.functions[name]
        given = len(arg_nodes) + (final is not _NO_FINAL)
        if given < count or (given > count and not variadic):
            want = f"at least {count}" if variadic else str(count)
            self.fail(node, f"wrong number of args for {name}: want {want} got {given}")
        if name in _LAZY:
            values: list[Any] = [lambda arg=arg: self.arg(dot, arg) for arg in arg_nodes]
            values += [] if final is _NO_FINAL else [lambda: final]
        else:
            values = [self.arg(dot, arg) for arg in arg_nodes] + ([] if final is _NO_FINAL else [final])
            values = [None if value is _MISSING else value for value in values]
        try:
            return function(*values)
        except _CallError as error:
            self.fail(node, f"error calling {name}: {error}")


# ------------------------------------------------------------------------------------------------- public API


class Template:
    """A parsed template; render it any number of times."""

    __slots__ = ("_nodes", "_text")

    def __init__(self, text: str, nodes: list[Any]) -> None:
        self._text, self._nodes = text, nodes

    def render(self, data: Any) -> str:
        """Execute with ``data`` as dot and ``$``; errors raise InvalidArgument with Go's wording."""
        return self._execute(data, _FUNCTIONS)

    def _execute(self, data: Any, functions: dict[str, _Function]) -> str:
        state = _Exec(self._text, data, functions)
        state.walk(data, self._nodes)
        return "".join(state.out)


def compile_template(text: str) -> Template:
    """Parse ``text``; a syntax error raises InvalidArgument such as ``template: :1: unclosed action``."""
    return Template(text, _Parser(text).parse())


# ------------------------------------------------------------------------------------------ docker CLI tables

_TAB_MIN_WIDTH = 10  # tabwriter.NewWriter(out, 10, 1, 3, ' ', 0), as the docker CLI formats tables
_TAB_PADDING = 3


def header_name(field: str) -> str:
    """docker's column title: CamelCase words split and upper-cased ("CreatedSince" → "CREATED SINCE")."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", field).upper()


class _Headers(dict[str, str]):
    """Dot for the header line: every field name maps to its column title."""

    def __missing__(self, key: str) -> str:
        return header_name(key)


def _write_lines(lines: list[list[str]], start: int, stop: int, widths: list[int], out: list[str]) -> None:
    for cells in lines[start:stop]:
        padded = (cell.ljust(widths[j]) if j < len(widths) else cell for j, cell in enumerate(cells))
        out.append("".join(padded))


def _format_block(lines: list[list[str]], start: int, stop: int, widths: list[int], out: list[str]) -> None:
    """text/tabwriter's format(): a column's width comes from the run of adjacent lines with a cell there."""
    column = len(widths)
    line = start
    while line < stop:
        if column >= len(lines[line]) - 1:
            line += 1
            continue
        _write_lines(lines, start, line, widths, out)
        start = line
        width = _TAB_MIN_WIDTH
        while line < stop and column < len(lines[line]) - 1:
            width = max(width, len(lines[line][column]) + _TAB_PADDING)
            line += 1
        widths.append(width)
        _format_block(lines, start, line, widths, out)
        widths.pop()
        start = line
    _write_lines(lines, start, stop, widths, out)


def _tabwrite(text: str) -> str:
    """Align tab-terminated cells as Go's tabwriter does (the text after a line's last tab is not padded)."""
    lines = [line.split("\t") for line in text.split("\n")]
    out: list[str] = []
    _format_block(lines, 0, len(lines), [], out)
    return "\n".join(out)


def format_rows(fmt: str, rows: list[dict[str, Any]], *, table_default: str,
                headers: dict[str, str] | None = None) -> str:
    """The docker CLI's ``--format`` for listings: "" / "table" (``table_default``), ``table TEMPLATE``,
    ``json`` or a bare template. Returns the text without a trailing newline."""
    if fmt in ("", "table"):
        fmt = table_default
    if fmt == "json":
        return "\n".join(json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
                         for row in rows)
    is_table = fmt.startswith("table")
    text = fmt[len("table"):] if is_table else fmt
    # docker turns the two characters \t and \n into real ones, so shells need no $'...' quoting
    template = compile_template(text.strip(" ").replace("\\t", "\t").replace("\\n", "\n"))
    lines = [template.render(row) for row in rows]
    if not is_table:
        return "\n".join(lines)
    header = template._execute(_Headers(headers or {}), _HEADER_FUNCTIONS)
    return _tabwrite("\n".join([header, *lines]))
