"""Commands over a container's files: cp, diff, commit and export (``sampan.engine.containers.files``).

Flags, messages and exit statuses are the docker CLI's: every failure is one ``Error:`` line and status 1
(usage mistakes 125). Differences: ``cp`` prints no "Successfully copied" progress line (``-q`` is accepted);
``commit -p WORD`` reads WORD as the flag's value when it is a boolean (``-p false``), where the docker CLI would
take it for the container name.
"""

from __future__ import annotations

import os
from argparse import Namespace

from sampan.cli.command import arg, command
from sampan.engine.context import Engine
from sampan.errors import InvalidArgument

_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def split_cp_arg(text: str) -> tuple[str, str]:
    """The docker CLI's ``splitCpArg``: ``(container, path)``, container "" for a local path. An absolute
    path is local even with a colon in it, and so is a relative one whose first part starts with a dot."""
    if os.path.isabs(text):
        return "", text
    container, colon, path = text.partition(":")
    if not colon or container.startswith("."):
        return "", text
    return container, path


@command("Copy files/folders between a container and the local filesystem",
         arg("source", metavar="SRC_PATH|CONTAINER:SRC_PATH"),
         arg("destination", metavar="DEST_PATH|CONTAINER:DEST_PATH"),
         arg("-a", "--archive", action="store_true", help="Archive mode (copy all uid/gid information)"),
         arg("-L", "--follow-link", action="store_true", help="Always follow symbol link in SRC_PATH"),
         arg("-q", "--quiet", action="store_true", help="Suppress progress output during copy"))
def cp(engine: Engine, a: Namespace) -> None:
    from sampan.engine.containers import files

    if not a.source:
        raise InvalidArgument("source can not be empty")
    if not a.destination:
        raise InvalidArgument("destination can not be empty")
    src_container, src = split_cp_arg(a.source)
    dest_container, dest = split_cp_arg(a.destination)
    if src_container and dest_container:
        raise InvalidArgument("copying between containers is not supported")
    if src_container:
        files.copy_from_container(engine, src_container, src, dest, follow_link=a.follow_link)
    elif dest_container:
        files.copy_to_container(engine, dest_container, src, dest, follow_link=a.follow_link, archive=a.archive)
    else:
        raise InvalidArgument("must specify at least one container source")


@command("Inspect changes to files or directories on a container's filesystem",
         arg("container", metavar="CONTAINER"))
def diff(engine: Engine, a: Namespace) -> None:
    from sampan.engine.containers import files

    changes = files.diff(engine, a.container)
    if changes:
        print("\n".join(str(change) for change in changes))


@command("Create a new image from a container's changes",
         arg("words", nargs="*", metavar="CONTAINER [REPOSITORY[:TAG]]"),
         arg("-a", "--author", default="", help='Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")'),
         arg("-c", "--change", action="append", default=[], help="Apply Dockerfile instruction to the created image"),
         arg("-m", "--message", default="", help="Commit message"),
         arg("-p", "--pause", nargs="?", const="true", default="true",
             help="Pause container during commit (default true)"))
def commit(engine: Engine, a: Namespace) -> None:
    from sampan.engine.containers import files
    from sampan.errors import UsageError
    from sampan.image import reference

    words = list(a.words)
    if a.pause not in _TRUE + _FALSE:  # "-p CONTAINER": a bare -p took the next word, as pflag's would not
        words.insert(0, a.pause)
        a.pause = "true"
    if not 1 <= len(words) <= 2:
        raise UsageError('"sampan commit" requires at least 1 and at most 2 arguments (see \'sampan commit '
                         "--help')")
    container, ref = words[0], words[1] if len(words) == 2 else None
    if ref:
        reference.parse_tag_target(ref)  # a bad name fails before anything is read
    stored = files.commit(engine, container, reference=ref, author=a.author, message=a.message,
                          changes=a.change, pause=a.pause in _TRUE)
    print(stored.id)


@command("Export a container's filesystem as a tar archive",
         arg("container", metavar="CONTAINER"),
         arg("-o", "--output", help="Write to a file, instead of STDOUT"))
def export(engine: Engine, a: Namespace) -> None:
    from sampan.cli.output import output_file
    from sampan.engine.containers import files, model

    model.lookup(engine, a.container)  # a missing container fails before the output file is created
    with output_file(a.output) as out:
        files.export(engine, a.container, out)
