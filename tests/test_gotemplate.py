"""Go text/template as docker's --format uses it, and the docker CLI's table/json/bare listing conventions."""

from __future__ import annotations

from typing import Any

import pytest

from sampan.cli.gotemplate import _tabwrite, compile_template, format_rows, header_name
from sampan.errors import InvalidArgument

CONTAINER: dict[str, Any] = {
    "Id": "4f66ad9a0b2e",
    "ID": "4f66ad9a0b2e",
    "Name": "/web",
    "Repository": "nginx",
    "Tag": "1.25",
    "Args": ["-g", "daemon off;"],
    "Empty": [],
    "Nothing": None,
    "State": {"Status": "running", "Running": True, "Paused": False, "Pid": 4242, "ExitCode": 0},
    "Config": {"Image": "nginx:1.25", "Labels": {"com.example.team": "web", "b": "2", "a": "1"}, "Env": None},
    "Labels": {"com.example": "yes"},
    "Mounts": [{"Source": "/srv/www", "Destination": "/usr/share/nginx/html"},
               {"Source": "/etc/ssl", "Destination": "/ssl"}],
    "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.2"},
                                     "backend": {"IPAddress": "10.0.0.5"}}},
    "Size": 1.5,
    "Count": 3,
}


def render(text: str, data: Any = None) -> str:
    return compile_template(text).render(CONTAINER if data is None else data)


# ------------------------------------------------------------------------------------ what docker users type


@pytest.mark.parametrize(("text", "expected"), [
    ("{{.ID}}", "4f66ad9a0b2e"),
    ("{{.Repository}}:{{.Tag}}", "nginx:1.25"),
    ("{{json .Config.Labels}}", '{"com.example.team":"web","b":"2","a":"1"}'),
    ('{{index .Labels "com.example"}}', "yes"),
    ('{{index .Config.Labels "com.example.team"}}', "web"),
    ("{{range .Mounts}}{{.Source}} {{end}}", "/srv/www /etc/ssl "),
    ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
    ("{{if .State.Paused}}paused{{else}}not paused{{end}}", "not paused"),
    ("{{.State.Pid}}", "4242"),
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}}{{println}}{{end}}", "a=1\nb=2\ncom.example.team=web\n"),
    ('{{join .Args ","}}', "-g,daemon off;"),
    ('{{printf "%-10s|" .Name}}', "/web      |"),
    ("{{len .Mounts}}", "2"),
    ("{{.NetworkSettings.Networks.bridge.IPAddress}}", "172.17.0.2"),
    ("{{with .Config}}{{.Image}}{{end}}", "nginx:1.25"),
    ('{{if eq .State.Status "running"}}running{{end}}', "running"),
    ('{{if ne .State.Status "running"}}stopped{{end}}', ""),
    ("{{range $name, $net := .NetworkSettings.Networks}}{{$name}}:{{$net.IPAddress}} {{end}}",
     "backend:10.0.0.5 bridge:172.17.0.2 "),
    ("{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", "10.0.0.5 172.17.0.2 "),
    ("{{.Name}} {{.State.Status}}", "/web running"),
    ("{{(index .Mounts 1).Source}}", "/etc/ssl"),
    ("{{ index (index .Mounts 0) \"Destination\" }}", "/usr/share/nginx/html"),
    ("{{len (index .Mounts 0).Source}}", "8"),
    ("{{if and .State.Running (eq (len .Mounts) 2) (gt .State.Pid 0)}}ok{{end}}", "ok"),
    ("{{json .State}}", '{"Status":"running","Running":true,"Paused":false,"Pid":4242,"ExitCode":0}'),
    ("{{.Config.Labels}}", "map[a:1 b:2 com.example.team:web]"),
    ("{{.Args}}", "[-g daemon off;]"),
    ("{{.Mounts}}",
     "[map[Destination:/usr/share/nginx/html Source:/srv/www] map[Destination:/ssl Source:/etc/ssl]]"),
    ("{{.Name | printf \"%q\"}}", '"/web"'),
    ("{{upper .Repository}}", "NGINX"),
    ('{{lower "ABC"}} {{title "hello big world"}}', "abc Hello Big World"),
    ('{{pad .Tag 2 1}}|', "  1.25 |"),
    ('{{pad "" 2 1}}|', "|"),
    ('{{truncate .ID 4}}', "4f66"),
    ('{{truncate "ab" 4}}', "ab"),
    ('{{split "a:b:c" ":"}}', "[a b c]"),
    ('{{index (split .Config.Image ":") 1}}', "1.25"),
])
def test_common_docker_formats(text: str, expected: str) -> None:
    assert render(text) == expected


# ---------------------------------------------------------------------------------------------- Go semantics


def test_missing_key_and_nil() -> None:
    assert render("{{.Missing}}") == "<no value>"
    assert render("{{.Missing.Deeper}}") == "<no value>"
    assert render("{{.Nothing}}") == "<nil>"
    assert render("{{.Nothing.Field}}") == "<no value>"
    assert render("{{.Config.Env}}") == "<nil>"
    assert render('{{index .Labels "absent"}}') == "<no value>"
    assert render('{{printf "%v" .Nothing}}') == "<nil>"
    assert render('{{printf "%v" .Missing}}') == "<nil>"
    assert render("{{json .Missing}} {{json .Nothing}}") == "null null"
    assert render("{{len .Nothing}} {{len .Missing}}") == "0 0"
    assert render("{{range .Nothing}}x{{else}}empty{{end}}") == "empty"
    assert render("{{if .Missing}}yes{{else}}no{{end}}") == "no"


@pytest.mark.parametrize(("value", "printed"), [
    (True, "true"), (False, "false"), (0, "0"), (-7, "-7"), (1.0, "1"), (1.5, "1.5"), (-2.25, "-2.25"),
    (123456.0, "123456"), (1e6, "1e+06"), (1234567.5, "1.2345675e+06"), (0.0001, "0.0001"),
    (0.00001, "1e-05"),
    (1e21, "1e+21"), (0.0, "0"), ("text", "text"), ([], "[]"), ([1, "a", None, True], "[1 a <nil> true]"),
    ({}, "map[]"), ({"b": 1, "a": [1, 2]}, "map[a:[1 2] b:1]"), ([{"k": "v"}], "[map[k:v]]"),
])
def test_value_printing(value: Any, printed: str) -> None:
    assert render("{{.V}}", {"V": value}) == printed


@pytest.mark.parametrize(("text", "expected"), [
    ('{{"a\\tb\\u00e9\\x41\\101\\\\\\""}}', 'a\tbéAA\\"'),
    ("{{`raw \\n {{ }}`}}", "raw \\n {{ }}"),
    ("{{'a'}} {{'\\n'}}", "97 10"),
    ("{{0x1F}} {{0o17}} {{017}} {{0b101}} {{1_000}} {{-3}} {{+4}}", "31 15 15 5 1000 -3 4"),
    ("{{1.5}} {{.5}} {{1e3}} {{3.0}}", "1.5 0.5 1000 3"),
    ("{{true}} {{false}}", "true false"),
    ('{{printf "%v" nil}}', "<nil>"),
    ("{{.}}", "map[a:1]"),
])
def test_literals(text: str, expected: str) -> None:
    assert render(text, {"a": 1}) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("a  {{- .X -}}  b", "a1b"),
    ("a  {{- .X}}  b", "a1  b"),
    ("a  {{.X -}}  \n\t b", "a  1b"),
    ("a {{- /* note */ -}} b", "ab"),
    ("a{{/* note */}}b", "ab"),
    ("{{/* multi\nline */}}x", "x"),
    ("{{-3}}", "-3"),
    ("{{.X}} {{- 2}}", "12"),
    ("x\n{{- range .L}}\n  {{.}}\n{{- end}}\n", "x\n  a\n  b\n"),
])
def test_trim_markers_and_comments(text: str, expected: str) -> None:
    assert render(text, {"X": 1, "L": ["a", "b"]}) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("{{$x := .Count}}{{$x}}", "3"),
    ("{{$x := 1}}{{$x = 2}}{{$x}}", "2"),
    ("{{$x := 1}}{{if true}}{{$x = 5}}{{end}}{{$x}}", "5"),
    ("{{range .Args}}{{$.Name}}{{end}}", "/web/web"),
    ("{{with $c := .Config}}{{$c.Image}}{{end}}", "nginx:1.25"),
    ("{{range $i, $m := .Mounts}}{{$i}}={{$m.Source}};{{end}}", "0=/srv/www;1=/etc/ssl;"),
    ("{{range $m := .Mounts}}{{$m.Destination}};{{end}}", "/usr/share/nginx/html;/ssl;"),
    ("{{$n := 0}}{{range .Args}}{{$n = 7}}{{end}}{{$n}}", "7"),
    ("{{$s := .State}}{{$s.Pid}}", "4242"),
    ("{{with .State}}{{$.Name}} {{.Pid}}{{end}}", "/web 4242"),
])
def test_variables(text: str, expected: str) -> None:
    assert render(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("{{if .Empty}}a{{else if .Args}}b{{else}}c{{end}}", "b"),
    ("{{if .Empty}}a{{else if .Nothing}}b{{else}}c{{end}}", "c"),
    ("{{if 0}}a{{end}}{{if 1}}b{{end}}{{if \"\"}}c{{end}}{{if \"x\"}}d{{end}}{{if 0.0}}e{{end}}", "bd"),
    ("{{with .Missing}}x{{else}}none{{end}}", "none"),
    ("{{with .Missing}}x{{else with .State}}{{.Status}}{{end}}", "running"),
    ("{{with .State}}{{.Status}}{{else}}none{{end}}", "running"),
    ("{{range .Empty}}x{{else}}empty{{end}}", "empty"),
    ("{{range 3}}{{.}}{{end}}", "012"),
    ("{{range .Args}}{{break}}{{.}}{{end}}.", "."),
    ("{{range $i, $e := .Config.Labels}}{{if eq $i \"b\"}}{{continue}}{{end}}{{$e}}{{end}}", "1web"),
    ("{{range $i, $e := .Config.Labels}}{{if eq $i \"b\"}}{{break}}{{end}}{{$e}}{{end}}", "1"),
    ("{{range .Mounts}}{{range $.Args}}{{.}}|{{end}}{{end}}", "-g|daemon off;|-g|daemon off;|"),
])
def test_control_structures(text: str, expected: str) -> None:
    assert render(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("{{and 1 0 2}}", "0"),
    ("{{and 1 2}}", "2"),
    ("{{or 0 \"\" \"x\"}}", "x"),
    ("{{or 0 \"\"}}", ""),
    ("{{not .Empty}} {{not .Args}}", "true false"),
    ("{{if and .Empty (index .Empty 0)}}x{{else}}short-circuit{{end}}", "short-circuit"),
    ("{{if or .Args (index .Empty 0)}}short-circuit{{end}}", "short-circuit"),
    ("{{len .Name}} {{len .Config.Labels}} {{len .Args}}", "4 3 2"),
    ("{{index .Args 1}} {{index .Mounts 1 \"Source\"}} {{index .Name 1}}", "daemon off; /etc/ssl 119"),
    ("{{slice .Name 1}} {{slice .Name 1 3}} {{slice .Args 1}} {{slice .Name}}", "web we [daemon off;] /web"),
    ("{{eq 1 1}} {{eq 1 2}} {{eq 1 2 3 1}} {{eq \"a\" \"a\"}} {{eq .Nothing nil}}",
     "true false true true true"),
    ("{{eq .Count 3}} {{eq .Size 1.5}} {{eq 3 3.0}}", "true true true"),
    ("{{ne 1 2}} {{lt 1 2}} {{le 2 2}} {{gt 1 2}} {{ge 2 3}} {{lt \"a\" \"b\"}}",
     "true true true false false true"),
    ('{{print "a" "b" 1 2 "c"}}', "ab1 2c"),
    ('{{println "a" 1}}', "a 1\n"),
    ("{{println}}", "\n"),
    ("{{.Args | len}}", "2"),
    ('{{"x" | printf "%s-%s" "a"}}', "a-x"),
    ("{{.Name | upper | lower}}", "/web"),
    ("{{(len .Args) | printf \"%03d\"}}", "002"),
])
def test_functions(text: str, expected: str) -> None:
    assert render(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ('{{printf "%s|%d|%v|%q" .Name .Count .Args .Tag}}', '/web|3|[-g daemon off;]|"1.25"'),
    ('{{printf "%x %X %x" 255 255 "hi"}}', "ff FF 6869"),
    ('{{printf "[%5s][%-5s][%5d][%-5d][%05d]" "ab" "ab" 42 42 -42}}', "[   ab][ab   ][   42][42   ][-0042]"),
    ('{{printf "%.2f %.0f %f %.1f" .Size 2.5 1.0 3}}', "1.50 2 1.000000 3.0"),
    ('{{printf "%e %g %g" 1234.5 0.5 1e6}}', "1.234500e+03 0.5 1e+06"),
    ('{{printf "%+d %t %c %o %b" 5 true 65 8 5}}', "+5 true A 10 101"),
    ('{{printf "%.3s|%8.2f|" "abcdef" 3.14159}}', "abc|    3.14|"),
    ('{{printf "100%%"}}', "100%"),
    ('{{printf "%d" "x"}}', "%!d(string=x)"),
    ('{{printf "%d %s"  1}}', "1 %!s(MISSING)"),
    ('{{printf "%d" 1 "x" 2}}', "1%!(EXTRA string=x, int=2)"),
    ('{{printf "%q" "a\\"b\\n"}}', '"a\\"b\\n"'),
    ('{{printf "%v %v" .Config.Labels true}}', "map[a:1 b:2 com.example.team:web] true"),
    ('{{printf "%d" .Size}}', "%!d(float64=1.5)"),
    ('{{printf "%d" 3.0}}', "3"),
    ('{{printf "%5.1f%%" 12.345}}', " 12.3%"),
])
def test_printf(text: str, expected: str) -> None:
    assert render(text) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ({"a": "<b>&é", "z": [1, None, True], "m": {"y": 1, "x": 2}},
     '{"a":"<b>&é","z":[1,null,true],"m":{"y":1,"x":2}}'),
    ("text", '"text"'),
    (None, "null"),
    ([], "[]"),
])
def test_json_is_compact_unescaped_and_ordered(value: Any, expected: str) -> None:
    assert render("{{json .V}}", {"V": value}) == expected


class _Box:
    def __init__(self) -> None:
        self.Name = "box"
        self.Inner = {"Key": "value"}

    def Greet(self, who: str) -> str:
        return f"hello {who}"

    def Upper(self) -> str:
        return self.Name.upper()


def test_objects_with_attributes() -> None:
    box = _Box()
    assert render("{{.Name}} {{.Inner.Key}} {{.Upper}}", box) == "box value BOX"
    assert render('{{.Greet "you"}} {{"them" | .Greet}}', box) == "hello you hello them"
    assert render("{{json .}}", box) == '{"Name":"box","Inner":{"Key":"value"}}'
    assert render("{{.Box.Name}}", {"Box": box}) == "box"
    with pytest.raises(InvalidArgument, match="can't evaluate field Missing in type _Box"):
        render("{{.Missing}}", box)


def test_template_is_reusable() -> None:
    template = compile_template("{{.A}}-{{$x := .A}}{{$x}}")
    assert template.render({"A": 1}) == "1-1"
    assert template.render({"A": 2}) == "2-2"


def test_multiline_template() -> None:
    text = "Name: {{.Name}}\n{{range .Mounts}}- {{.Source}}\n{{end}}"
    assert render(text) == "Name: /web\n- /srv/www\n- /etc/ssl\n"


# ----------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("text", "message"), [
    ("{{.ID", "template: :1: unclosed action"),
    ("{{.ID}", 'template: :1: unexpected "}" in operand'),
    ("{{nope .ID}}", 'template: :1: function "nope" not defined'),
    ("{{if .A}}x", "template: :1: unexpected EOF"),
    ("{{range .A}}x{{else}}y", "template: :1: unexpected EOF"),
    ("x{{end}}", "template: :1: unexpected {{end}}"),
    ("{{else}}", "template: :1: unexpected {{else}}"),
    ("{{if .A}}a{{else}}b{{else}}c{{end}}", "template: :1: expected end; found {{else}}"),
    ("{{}}", "template: :1: missing value for command"),
    ("{{if}}x{{end}}", "template: :1: missing value for if"),
    ("{{.A |}}", "template: :1: missing value for command"),
    ('{{"abc}}', "template: :1: unterminated quoted string"),
    ("{{`abc}}", "template: :1: unterminated raw quoted string"),
    ("{{/* abc }}", "template: :1: unclosed comment"),
    ("{{/* abc */ .A}}", "template: :1: comment ends before closing delimiter"),
    ("{{$x}}", 'template: :1: undefined variable "$x"'),
    ("{{if true}}{{$x := 1}}{{end}}{{$x}}", 'template: :1: undefined variable "$x"'),
    ("{{$x = 1}}", 'template: :1: undefined variable "$x"'),
    ("{{break}}", "template: :1: {{break}} outside {{range}}"),
    ('{{define "x"}}{{end}}', "template: :1: {{define}} is not supported"),
    ("{{.A .B\"x\"}}", 'template: :1: unexpected "\\"x\\"" in operand'),
    ("{{len(.A)}}", 'template: :1: unexpected "(" in operand'),
    ("{{(.A}}", "template: :1: unclosed left paren"),
    ("{{.A)}}", 'template: :1: unexpected ")" in command'),
    ("{{.A | 3}}", "template: :1: non executable command in pipeline stage 2"),
    ('{{"x".A}}', 'template: :1: unexpected . after term "\\"x\\""'),
    ('{{"\\q"}}', "template: :1: invalid syntax"),
    ("{{.A @}}", "template: :1: unexpected \"@\" in operand"),
    ("{{.A §}}", "template: :1: unrecognized character in action: U+00A7 '§'"),
    ("a\nb\n{{.A}", 'template: :3: unexpected "}" in operand'),
    ("{{range $a, 1 := .L}}{{end}}", "template: :1: range can only initialize variables"),
])
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        compile_template(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(("text", "data", "message"), [
    ("{{.Foo}}", "text", 'template: :1:2: executing "" at <.Foo>: can\'t evaluate field Foo in type string'),
    ("{{.Name.Foo}}", None,
     'template: :1:2: executing "" at <.Name.Foo>: can\'t evaluate field Foo in type string'),
    ("ab\ncd {{ .Count.X}}", None,
     'template: :2:6: executing "" at <.Count.X>: can\'t evaluate field X in type int'),
    ("{{index .Args 5}}", None,
     'template: :1:2: executing "" at <index .Args 5>: error calling index: index out of range: 5'),
    ('{{index .Args "x"}}', None,
     ('template: :1:2: executing "" at <index .Args "x">: error calling index: '
      "cannot index slice/array with type string")),
    ("{{len .Count}}", None,
     'template: :1:2: executing "" at <len .Count>: error calling len: len of type int'),
    ("{{len}}", None, 'template: :1:2: executing "" at <len>: wrong number of args for len: want 1 got 0'),
    ("{{printf}}", None,
     'template: :1:2: executing "" at <printf>: wrong number of args for printf: want at least 1 got 0'),
    ('{{eq 1 "a"}}', None,
     'template: :1:2: executing "" at <eq 1 "a">: error calling eq: incompatible types for comparison'),
    ("{{lt true false}}", None,
     'template: :1:2: executing "" at <lt true false>: error calling lt: invalid type for comparison'),
    ("{{range .Name}}{{end}}", None,
     'template: :1:8: executing "" at <.Name>: range can\'t iterate over /web'),
    ("{{3 .Name}}", None, 'template: :1:2: executing "" at <3>: can\'t give argument to non-function 3'),
    ("{{.State .Name}}", None,
     'template: :1:2: executing "" at <.State>: State is not a method but has arguments'),
    ("{{nil}}", None, 'template: :1:2: executing "" at <nil>: nil is not a command'),
    ('{{pad "a" "b" 1}}', None,
     ('template: :1:2: executing "" at <pad "a" "b" 1>: error calling pad: '
      "wrong type for value; expected int; got string")),
    ("{{slice .Name 3 1}}", None,
     'template: :1:2: executing "" at <slice .Name 3 1>: error calling slice: invalid slice index: 3 > 1'),
    ("{{.NetworkSettings.Networks.bridge.IPAddress.X}}", None,
     'template: :1:2: executing "" at <.NetworkSettings.Net...>: can\'t evaluate field X in type string'),
])
def test_execution_errors(text: str, data: Any, message: str) -> None:
    template = compile_template(text)
    with pytest.raises(InvalidArgument) as caught:
        template.render(CONTAINER if data is None else data)
    assert str(caught.value) == message


# ----------------------------------------------------------------------------------------------- format_rows

ROWS = [
    {"ID": "abc", "Names": "web", "Status": "Up 2 hours", "CreatedSince": "2 days ago"},
    {"ID": "abcdefghijkl", "Names": "db", "Status": "Exited (0) 3 days ago", "CreatedSince": "3 weeks ago"},
]
DEFAULT = "table {{.ID}}\t{{.Names}}\t{{.Status}}"


def test_table_alignment_follows_tabwriter() -> None:
    # column 0: max(len("abcdefghijkl") + 3, 10) = 15; column 1: max(len("NAMES") + 3, 10) = 10;
    # the last column is not padded
    expected = ("ID" + " " * 13 + "NAMES" + " " * 5 + "STATUS\n"
                "abc" + " " * 12 + "web" + " " * 7 + "Up 2 hours\n"
                "abcdefghijkl" + " " * 3 + "db" + " " * 8 + "Exited (0) 3 days ago")
    assert format_rows("", ROWS, table_default=DEFAULT) == expected
    assert format_rows("table", ROWS, table_default=DEFAULT) == expected
    assert format_rows(DEFAULT, ROWS, table_default="unused") == expected


def test_table_wide_cells_and_minimum_width() -> None:
    rows = [{"A": "x", "B": "averyveryverylongname", "C": "end"}]
    text = format_rows("table {{.A}}\t{{.B}}\t{{.C}}", rows, table_default="")
    assert text.split("\n") == [
        "A" + " " * 9 + "B" + " " * 23 + "C",
        "x" + " " * 9 + "averyveryverylongname   end",
    ]


def test_table_with_literal_backslash_t_and_headers() -> None:
    text = format_rows(r"table {{.ID}}\t{{.CreatedSince}}", ROWS, table_default="",
                       headers={"ID": "IMAGE ID", "CreatedSince": "CREATED"})
    assert text.split("\n") == [
        "IMAGE ID" + " " * 7 + "CREATED",
        "abc" + " " * 12 + "2 days ago",
        "abcdefghijkl   3 weeks ago",
    ]


def test_table_header_uses_header_functions_and_text() -> None:
    rows = [{"Name": "web", "Labels": {"a": "1"}}]
    fmt = 'table {{upper .Name}}\t{{json .Labels}}\tx:{{printf "%.1s" .Name}}'
    text = format_rows(fmt, rows, table_default="")
    assert text.split("\n") == ["NAME" + " " * 6 + "LABELS" + " " * 6 + "x:N",
                                "WEB" + " " * 7 + '{"a":"1"}' + " " * 3 + "x:w"]


def test_table_without_rows_prints_header() -> None:
    assert format_rows("", [], table_default=DEFAULT) == "ID" + " " * 8 + "NAMES" + " " * 5 + "STATUS"


def test_table_missing_field_and_default_header_names() -> None:
    text = format_rows("table {{.CreatedSince}}\t{{.Nope}}", ROWS[:1], table_default="")
    assert text.split("\n") == ["CREATED SINCE   NOPE", "2 days ago      <no value>"]


def test_json_rows() -> None:
    text = format_rows("json", ROWS, table_default=DEFAULT)
    assert text.split("\n") == [
        '{"CreatedSince":"2 days ago","ID":"abc","Names":"web","Status":"Up 2 hours"}',
        '{"CreatedSince":"3 weeks ago","ID":"abcdefghijkl","Names":"db","Status":"Exited (0) 3 days ago"}',
    ]
    assert format_rows("json", [], table_default=DEFAULT) == ""
    assert format_rows("json", [{"Name": "é<>"}], table_default=DEFAULT) == '{"Name":"é<>"}'


def test_bare_template_rows() -> None:
    assert format_rows("{{.ID}}: {{.Names}}", ROWS, table_default=DEFAULT) == "abc: web\nabcdefghijkl: db"
    assert format_rows(r"{{.ID}}\t{{.Names}}", ROWS, table_default=DEFAULT) == "abc\tweb\nabcdefghijkl\tdb"
    assert format_rows("{{json .}}", ROWS[:1], table_default=DEFAULT) == (
        '{"ID":"abc","Names":"web","Status":"Up 2 hours","CreatedSince":"2 days ago"}')
    assert format_rows("{{.ID}}", [], table_default=DEFAULT) == ""
    assert format_rows(r"{{.ID}}\n", ROWS[:1], table_default=DEFAULT) == "abc\n"


def test_format_rows_errors() -> None:
    with pytest.raises(InvalidArgument, match="unclosed action"):
        format_rows("{{.ID", ROWS, table_default=DEFAULT)
    with pytest.raises(InvalidArgument, match="can't evaluate field X in type string"):
        format_rows("table {{.ID.X}}", ROWS, table_default=DEFAULT)


@pytest.mark.parametrize(("field", "header"), [
    ("ID", "ID"), ("CreatedSince", "CREATED SINCE"), ("TotalCount", "TOTAL COUNT"),
    ("IPAddress", "IP ADDRESS"),
    ("Names", "NAMES"), ("RunningFor", "RUNNING FOR"), ("LocalVolumes", "LOCAL VOLUMES"), ("Size", "SIZE"),
])
def test_header_names(field: str, header: str) -> None:
    assert header_name(field) == header


def test_tabwriter_column_blocks() -> None:
    # A line without a cell in a column ends that column's block: the blocks are aligned independently.
    text = "a\tb\nno tabs here\ncccccccccccccc\td"
    assert _tabwrite(text) == "a         b\nno tabs here\ncccccccccccccc   d"
    # Empty cells are padded to the column width (here the minimum, 10, beats 6 + 3); a trailing tab makes the
    # last text a padded cell.
    assert _tabwrite("\tx\nlonger\t") == " " * 10 + "x\nlonger    "
