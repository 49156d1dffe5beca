"""``inspect``: Docker's JSON array of objects, or one ``--format`` line per object."""

from __future__ import annotations

import sys
from argparse import Namespace
from collections.abc import Callable
from typing import Any

from sampan.cli.command import arg, command
from sampan.engine.context import Engine
from sampan.errors import SampanError


def print_inspected(names: list[str], get: Callable[[str], dict[str, Any]], fmt: str) -> int:
    """Inspect each name; errors for some names are reported without hiding the others' output."""
    from sampan.cli.output import print_json

    found: list[dict[str, Any]] = []
    status = 0
    for name in names:
        try:
            found.append(get(name))
        except SampanError as e:
            print("Error: " + " ".join(str(e).split()), file=sys.stderr)
            status = 1
    if fmt:
        from sampan.cli.gotemplate import compile_template

        template = compile_template(fmt)
        for obj in found:
            print(template.render(obj))
    else:
        print_json(found)
    return status


@command("Return low-level information on sampan objects",
         arg("names", nargs="+", metavar="NAME|ID"),
         arg("-f", "--format", default="", help="Format output using a Go template"),
         arg("-s", "--size", action="store_true", help="Display total file sizes if the type is container"),
         arg("--type", choices=["container", "image", "volume"], help="Only inspect objects of the given type"))
def inspect(engine: Engine, a: Namespace) -> int:
    from sampan.engine import images, volumes
    from sampan.engine.containers import query
    from sampan.errors import NotFound

    getters: list[tuple[str, Callable[[str], dict[str, Any]]]] = [
        ("container", lambda name: query.inspect(engine, name, size=a.size)),
        ("image", lambda name: images.inspect(engine, name)),
        ("volume", lambda name: volumes.inspect(engine, name)),
    ]
    wanted = [(kind, get) for kind, get in getters if a.type in (None, kind)]

    def get(name: str) -> dict[str, Any]:
        for _, getter in wanted:
            try:
                return getter(name)
            except NotFound:
                continue
        raise NotFound(f"No such object: {name}" if a.type is None else f"No such {a.type}: {name}")

    return print_inspected(a.names, get, a.format)
