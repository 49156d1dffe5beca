"""The classic builder (Docker's ``DOCKER_BUILDKIT=0``): one image per instruction.

Each step starts from the previous step's image and commits a new one (``parent`` = the previous image):

- metadata steps (ENV, WORKDIR's config part, CMD, ENTRYPOINT, LABEL, EXPOSE, USER, VOLUME, STOPSIGNAL,
  HEALTHCHECK, SHELL, ARG, ONBUILD, MAINTAINER) change only the config and add a history entry
  ``/bin/sh -c #(nop)  INSTRUCTION`` marked ``empty_layer``, as dockerd writes them;
- RUN runs in a temporary container (``containers.create`` + ``lifecycle.start`` attached, its output passed
  through), with the stage's build args in its environment (``|N K=V ...`` in ``created_by``, as Docker) and the
  ``--network`` of the build (the default bridge unless told otherwise); its writable layer becomes the step's
  layer with OCI whiteouts (``files.write_layer``), so a file deleted by a later RUN is gone from the image;
- COPY, ADD and WORKDIR (which creates its directory) write into a temporary container's mounted root through
  ``unpack_layer`` (fd-relative, never following a link out of the root), then commit the same way.

The temporary container is removed after each step, on success, failure or Ctrl-C.

**Cache.** A step's key is its parent image and its ``created_by`` text, which holds everything the step depends
on: the instruction after substitution, the build args in use (RUN) and, for COPY/ADD, a hash of the copied
files' names, types, permissions and contents (never their times: the classic Docker cache miss) plus the
``--chown``. It is looked up, as Docker's classic builder does, among the images whose ``parent`` is the step's
parent image (the ``images.parent`` column): a child whose last history entry has the same ``created_by`` is
the step's result. No table of its own, so ``rmi`` of an intermediate image simply drops that cache entry.

**Multi-stage.** Only the stages the target needs are built: the target (the last stage by default) and, through
``FROM stage`` and ``COPY --from=stage``, what it depends on. ``COPY --from`` takes a stage (name or index) or
an image; its cache hash is the source image's ID with the source paths.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import stat
import sys
import time
from contextlib import ExitStack, contextmanager

from sampan.build import dockerfile as df
from sampan.build.context import Context, entry_digest
from sampan.errors import CorruptContent, InvalidArgument, NotFound, SampanError

# Only what a fully cached rebuild needs is imported here (it is mostly start-up): tar, temporary files and the
# container machinery are imported by the steps that run.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import tarfile
    from collections.abc import Iterator
    from typing import Any, BinaryIO

    from sampan.engine.context import Engine

DEFAULT_SHELL = ["/bin/sh", "-c"]
_NOP = "/bin/sh -c #(nop)  "
_PIPES = "/dev/pipes"  # where a RUN here-document with a #! line is mounted and run from (BuildKit's place)
# Docker's predefined build args: usable in RUN without an ARG, left out of the history and the cache key.
PROXY_ARGS = frozenset({"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
                        "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"})


class BuildOptions:
    """What to build and how. ``context`` is a directory; ``dockerfile`` a path ("" = CONTEXT/Dockerfile),
    ignored when ``dockerfile_text`` is given; ``network`` default (bridge), none or host; ``secrets`` id ->
    content, for RUN --mount=type=secret. Reproducible builds: image and history times are
    ``source_date_epoch``, file times in new layers are clamped to it; None: the SOURCE_DATE_EPOCH build arg,
    when given (as BuildKit), else the current time.

    This and the builder's other records are plain classes, not dataclasses: each dataclass costs about a
    millisecond at import, and a fully cached rebuild is mostly start-up."""

    def __init__(self, context: str, dockerfile: str = "", dockerfile_text: str | None = None,
                 tags: list[str] | None = None, build_args: dict[str, str] | None = None, target: str = "",
                 no_cache: bool = False, network: str = "default", quiet: bool = False,
                 labels: dict[str, str] | None = None, pull: bool = False, secrets: dict[str, bytes] | None = None,
                 squash: bool = False, source_date_epoch: int | None = None) -> None:
        self.context, self.dockerfile, self.dockerfile_text = context, dockerfile, dockerfile_text
        self.tags = tags if tags is not None else []
        self.build_args = build_args if build_args is not None else {}
        self.target, self.no_cache, self.network, self.quiet = target, no_cache, network, quiet
        self.labels = labels if labels is not None else {}
        self.pull, self.squash, self.source_date_epoch = pull, squash, source_date_epoch
        self.secrets = secrets if secrets is not None else {}


class BuildResult:
    """The image built; ``wasted``: bytes of its layers that later layers delete or overwrite (0: not
    analysed)."""

    __slots__ = ("efficiency", "image_id", "tags", "wasted")

    def __init__(self, image_id: str, tags: list[str], wasted: int = 0, efficiency: float = 1.0) -> None:
        self.image_id, self.tags, self.wasted, self.efficiency = image_id, tags, wasted, efficiency


class BuildError(SampanError):
    """A step failed (a RUN's non-zero exit, a missing COPY source...)."""


# ---------------------------------------------------------------------------------------------- state


class _Stage:
    __slots__ = ("args", "cmd_set", "config", "image_id")

    def __init__(self, image_id: str, config: dict[str, Any], args: dict[str, str]) -> None:
        self.image_id, self.config, self.args = image_id, config, args
        self.cmd_set = False


class _DigestMemo(dict[str, str]):
    """Digests of context files by ``memo_key`` (inode, size, times), kept in the store across builds so that
    a cached rebuild does not read the context again; the cache keys are still the contents' digests."""

    LIMIT = 50_000

    def __init__(self, engine: Engine) -> None:
        self.path = engine.layout.root / "buildcache" / "digests.json"
        try:
            super().__init__(json.loads(self.path.read_text()))
        except (OSError, ValueError):
            super().__init__()
        self.known = len(self)

    def save(self) -> None:
        if len(self) == self.known:
            return
        items = list(self.items())[-self.LIMIT:]
        self.path.parent.mkdir(mode=0o700, exist_ok=True)
        tmp = self.path.with_name(f".digests.{os.getpid()}")
        tmp.write_text(json.dumps(dict(items)))
        os.replace(tmp, self.path)


class _Printer:
    def __init__(self, out: BinaryIO, quiet: bool) -> None:
        self.out, self.quiet = out, quiet

    def line(self, text: str) -> None:
        if not self.quiet:
            self.out.write(text.encode("utf-8", "surrogateescape") + b"\n")
            self.out.flush()

    def raw(self, data: bytes) -> None:
        if not self.quiet:
            self.out.write(data)
            self.out.flush()


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def _go_list(items: list[str]) -> str:
    return "[" + " ".join(json.dumps(item) for item in items) + "]"


def _duration(text: str, line: int) -> int:
    """Go's time.ParseDuration subset (``30s``, ``1m30s``, ``500ms``) in nanoseconds."""
    units = {"ns": 1, "us": 1000, "µs": 1000, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise df.DockerfileError(line, f"time: invalid duration \"{text}\"")
    return int(sum(float(n) * units[u] for n, u in parts))


# ---------------------------------------------------------------------------------------------- images


def _commit(engine: Engine, parent: str, config: dict[str, Any], created_by: str, layer: BinaryIO | None,
            created: float, *, between: tuple[dict[str, Any], ...] = (), comment: str = "") -> str:
    """A new image: the parent's layers (plus ``layer``), ``config``, the parent's history plus ``between``
    (history entries of squashed steps) plus one entry."""
    from sampan.engine import images
    from sampan.engine.containers.files import base_layers, docker_order
    from sampan.engine.image_store import commit_image, put_blob, unpack_layer_blob
    from sampan.engine.operation import storing
    from sampan.image import mediatypes as mt
    from sampan.image.config import format_time, host_architecture
    from sampan.image.manifest import canonical_json

    base = images.load_config(engine, parent)
    with storing(engine) as lease:
        layers = base_layers(engine, lease, parent)
        entry: dict[str, Any] = {"created": format_time(created), "created_by": created_by}
        if comment:
            entry["comment"] = comment
        if layer is not None:
            blob = put_blob(engine, lease, layer, media_type=mt.OCI_LAYER)
            chain = layers[-1].snapshot.chain_id if layers else None
            layers.append(unpack_layer_blob(engine, lease, blob, chain, None))
        else:
            entry["empty_layer"] = True
        raw: dict[str, Any] = {"architecture": base.architecture or host_architecture(),
                               "config": docker_order(config), "created": format_time(created),
                               "history": [*base.history, *between, entry], "os": base.os or "linux"}
        for key in ("os.version", "variant"):
            if base.raw.get(key):
                raw[key] = base.raw[key]
        raw["rootfs"] = {"type": "layers", "diff_ids": [item.snapshot.diff_id for item in layers]}
        return commit_image(engine, lease, canonical_json(raw), layers, parent=parent).id


def _scratch(engine: Engine) -> str:
    """An image with no layers and an empty config (fixed time, so its ID, and the cache, are stable)."""
    from sampan.engine.image_store import commit_image
    from sampan.engine.operation import storing
    from sampan.image.config import host_architecture
    from sampan.image.manifest import canonical_json

    raw = {"architecture": host_architecture(), "config": {}, "created": "1970-01-01T00:00:00Z",
           "history": [], "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    with storing(engine) as lease:
        return commit_image(engine, lease, canonical_json(raw), []).id


@contextmanager
def _container(engine: Engine, image_id: str, *, command: list[str] | None = None, env: list[str] | None = None,
               network: str = "none", attach: bool = False,
               mounts: list[dict[str, Any]] | None = None) -> Iterator[Any]:
    """A temporary container of the image, removed (with its anonymous volumes) whatever happens."""
    from sampan.engine.containers import remove
    from sampan.engine.containers.create import CreateOptions, create
    from sampan.engine.specgen import RunOptions

    mode = {"default": "private", "bridge": "private", "none": "none", "host": "host"}.get(network)
    if mode is None:
        raise InvalidArgument(f"network mode \"{network}\" not supported by sampan's builder (default, none, host)")
    run = RunOptions(command=command or ["true"], entrypoint=[], env=env or [], network_mode=mode)
    record = create(engine, CreateOptions(image=image_id, run=run, proc_view=False, no_healthcheck=True,
                                          attach_stdout=attach, attach_stderr=attach, mounts=mounts or []))
    try:
        yield record
    finally:
        remove.remove(engine, record.id, force=True, volumes=True)


@contextmanager
def _mounted(engine: Engine, record: Any) -> Iterator[str]:
    from sampan.engine.containers import model, rootfs

    with rootfs.temporarily_mounted(engine, record, model.places(engine, record.id)) as root:
        yield root


def _layer_of(engine: Engine, record: Any) -> tuple[BinaryIO, int]:
    import tempfile

    from sampan.engine.containers.files import write_layer

    tmp = tempfile.TemporaryFile(dir=engine.layout.tmp)  # noqa: SIM115 - closed by the caller
    entries = write_layer(engine, record.id, tmp.fileno())
    tmp.seek(0)
    return tmp, entries


# ---------------------------------------------------------------------------------------------- the builder


class Builder:
    def __init__(self, engine: Engine, options: BuildOptions, out: BinaryIO) -> None:
        self.engine = engine
        self.options = options
        self.say = _Printer(out, options.quiet)
        self.context = Context.open(options.context, None if options.dockerfile_text is not None else
                                    self._dockerfile_path())
        self.used_args: set[str] = set()
        self.step = 0
        self.total = 0
        self.stage_images: dict[int, str] = {}
        self.stage_bases: dict[int, str] = {}  # the image each built stage started FROM
        self.built_layer = False  # a step made a new layer (not all from the cache): worth analysing
        self.file_name = "Dockerfile" if options.dockerfile_text is not None else \
            os.path.basename(self._dockerfile_path())
        epoch = options.source_date_epoch
        if epoch is None and options.build_args.get("SOURCE_DATE_EPOCH", "").isdigit():
            epoch = int(options.build_args["SOURCE_DATE_EPOCH"])
            self.used_args.add("SOURCE_DATE_EPOCH")
        self.epoch = epoch
        self.digests = _DigestMemo(engine)
        self.configs: dict[str, dict[str, Any]] = {}

    def _config(self, image_id: str) -> dict[str, Any]:
        """An image's config JSON (verified by the content store), read once per build: a step's result is the
        next step's parent. The cache's path reads it without ``ImageConfig``, whose imports cost more than a
        cached step."""
        config = self.configs.get(image_id)
        if config is None:
            try:
                config = json.loads(self.engine.content.read(image_id))
            except ValueError:
                config = None
            if not isinstance(config, dict):
                raise CorruptContent(f"image config {image_id} is no JSON object")
            self.configs[image_id] = config
        return config

    def _use_cache(self, state: _Stage, created_by: str) -> bool:
        """For a step that changes files: move ``state`` to the cached image when there is one (and say so)."""
        hit = None if self.options.no_cache else self._cached(state.image_id, created_by)
        if hit:
            self.say.line(" ---> Using cache")
            self.say.line(f" ---> {_short(hit)}")
            state.image_id = hit
        return bool(hit)

    def _cached(self, parent: str, created_by: str) -> str | None:
        """The cache hit of a step: among the images whose ``parent`` is the step's parent (Docker's classic
        builder), the one whose config has one more history entry, with the step's ``created_by``."""
        from sampan.store import images as records

        depth = len(self._config(parent).get("history") or []) if parent else 0
        for child in records.children_of(self.engine.db.conn, parent):
            try:
                history = self._config(child).get("history") or []
            except (SampanError, OSError):
                continue
            if len(history) == depth + 1 and isinstance(history[-1], dict) and \
                    history[-1].get("created_by") == created_by:
                return child
        return None

    def _now(self) -> float:
        return float(self.epoch) if self.epoch is not None else time.time()

    def _located(self, error: SampanError, ins: df.Instruction | None) -> SampanError:
        """The error as one line naming ``file:line`` and the instruction (the step, once building)."""
        if getattr(error, "located", False):
            return error
        line = error.line if isinstance(error, df.DockerfileError) and error.line else ins.line if ins else 0
        text = str(error)
        if isinstance(error, df.DockerfileError) and error.line:
            text = text.removeprefix(f"dockerfile parse error on line {error.line}: ")
        what = ins.original if ins is not None else getattr(error, "instruction", "")
        what = what if len(what) <= 80 else what[:77] + "..."
        where = f"step {self.step}/{self.total}: {what}" if ins is not None and self.step else what
        error.args = (f"{self.file_name}:{line}: {text}" + (f" ({where})" if where else ""),)
        error.located = True  # type: ignore[attr-defined]
        return error

    def _dockerfile_path(self) -> str:
        path = self.options.dockerfile or "Dockerfile"
        if not os.path.isabs(path):
            if self.options.dockerfile and os.path.exists(path):
                return os.path.abspath(path)
            path = os.path.join(self.options.context, path)
        return path

    def _read_dockerfile(self) -> str:
        if self.options.dockerfile_text is not None:
            return self.options.dockerfile_text
        path = self._dockerfile_path()
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                return f.read()
        except FileNotFoundError:
            raise NotFound(f"Cannot locate specified Dockerfile: {os.path.basename(path)}") from None

    # -- planning

    def _needed(self, parsed: df.Dockerfile, meta: dict[str, str]) -> list[df.Stage]:
        stages = parsed.stages
        by_name = {stage.name: stage.index for stage in stages if stage.name}
        if self.options.target:
            target = by_name.get(self.options.target.lower())
            if target is None:
                raise InvalidArgument(f"failed to reach build target {self.options.target} in Dockerfile")
        else:
            target = len(stages) - 1

        def ref(text: str, before: int) -> int | None:
            name = text.lower()
            if name in by_name and by_name[name] < before:
                return by_name[name]
            if name.isdigit() and int(name) < before:
                return int(name)
            return None

        need: set[int] = set()
        todo = [target]
        while todo:
            index = todo.pop()
            if index in need:
                continue
            need.add(index)
            stage = stages[index]
            base = df.expand(stage.base, meta, parsed.escape, stage.line)
            dep = ref(base, index)
            if dep is not None:
                todo.append(dep)
            for ins in stage.instructions:
                if ins.cmd == "COPY" and "from" in ins.flags:
                    dep = ref(ins.flags["from"], index)
                    if dep is not None:
                        todo.append(dep)
        return [stage for stage in stages if stage.index in need]

    # -- running

    def run(self) -> BuildResult:
        try:
            parsed = df.parse(self._read_dockerfile())
        except df.DockerfileError as e:
            raise self._located(e, None) from None
        for note in parsed.notes:
            self.say.line(f"[Warning] {note}")
        meta: dict[str, str] = {}
        for ins in parsed.meta_args:
            for name, value in self._arg_pairs(ins, meta, parsed.escape):
                meta[name] = self.options.build_args.get(name, value if value is not None else "")
                if name in self.options.build_args:
                    self.used_args.add(name)
        stages = self._needed(parsed, meta)
        self.total = sum(1 + len(stage.instructions) for stage in stages) + (1 if self.options.labels else 0)
        from sampan.image import reference as refs

        tags = [refs.parse_tag_target(tag) for tag in self.options.tags]  # refused before any work
        image_id = ""
        for stage in stages:
            image_id = self._stage(parsed, stage, meta, stages[-1] is stage)
            self.stage_images[stage.index] = image_id
        self.digests.save()
        if self.options.squash:
            image_id = self._squash(self.stage_bases[stages[-1].index], image_id)
        unused = sorted(set(self.options.build_args) - self.used_args - PROXY_ARGS)
        if unused:
            self.say.line(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed")
        result = BuildResult(image_id, [])
        if self.built_layer:
            analysis = analyze(self.engine, image_id)
            result.wasted, result.efficiency = analysis.wasted, analysis.efficiency
            if analysis.wasted > 0.1 * analysis.added:
                from sampan.units import human_size

                self.say.line(f"[Warning] {human_size(analysis.wasted)} of this image's "
                              f"{human_size(analysis.added)} are deleted or overwritten by later layers "
                              f"(efficiency {analysis.efficiency:.0%}): see 'sampan image analyze'")
        self.say.line(f"Successfully built {_short(image_id)}")
        from sampan.engine import events, images
        from sampan.store import images as records

        for ref in tags:  # parse_tag_target's: the tag defaulted
            if records.by_tag(self.engine.db.conn, ref.name, ref.tag or "latest") == image_id:
                # A rebuild that changed nothing: the tag is there already, and writing it again would cost a
                # synchronous commit, most of a cached build's own work. The event is recorded all the same.
                events.record(self.engine, "image", "tag", image_id, {"name": ref.familiar()})
            else:
                images.tag(self.engine, image_id, ref.familiar())
            result.tags.append(ref.familiar())
            self.say.line(f"Successfully tagged {result.tags[-1]}")
        return result

    def _squash(self, base_id: str, image_id: str) -> str:
        """``--squash``: the final stage's new layers merged into one on top of its FROM image, the config
        kept, the squashed steps' history marked empty plus a ``merge`` entry (dockerd's squash)."""
        import shutil
        import tempfile

        from sampan.build.layers import squash
        from sampan.engine import images
        from sampan.image.compression import open_decompressed
        from sampan.store import images as records

        base = images.load_config(self.engine, base_id)
        final = images.load_config(self.engine, image_id)
        rows = records.layers_of(self.engine.db.conn, image_id)[len(records.layers_of(self.engine.db.conn,
                                                                                      base_id)):]
        with ExitStack() as stack:
            streams = []
            for row in rows:
                raw = stack.enter_context(open(self.engine.content.path(row["blob_digest"]), "rb"))
                stream = open_decompressed(raw)
                if stream is not raw:  # squash reads members back by offset: give it a plain file
                    plain = stack.enter_context(tempfile.TemporaryFile(dir=self.engine.layout.tmp))
                    shutil.copyfileobj(stream, plain)
                    plain.seek(0)
                    stream = plain
                streams.append(stream)
            merged = stack.enter_context(tempfile.TemporaryFile(dir=self.engine.layout.tmp))
            writer = _tar_writer(merged)
            squash(streams, writer.add)
            writer.close()
            merged.seek(0)
            steps = tuple({**entry, "empty_layer": True} for entry in final.history[len(base.history):])
            squashed = _commit(self.engine, base_id, final.container, "", merged if rows else None, self._now(),
                               between=steps, comment=f"merge {image_id} to {base_id}")
        self.say.line(f" ---> squashed into {_short(squashed)}")
        return squashed

    def _step(self, ins: df.Instruction) -> None:
        self.step += 1
        self.say.line(f"Step {self.step}/{self.total} : {ins.original}")

    def _arg_pairs(self, ins: df.Instruction, env: dict[str, str], escape: str) -> list[tuple[str, str | None]]:
        out: list[tuple[str, str | None]] = []
        for word in df.split_words(ins.rest, escape):
            name, eq, value = word.partition("=")
            if not name:
                raise df.DockerfileError(ins.line, "ARG names can not be blank")
            out.append((name, df.expand(value, env, escape, ins.line) if eq else None))
        return out

    def _from(self, parsed: df.Dockerfile, stage: df.Stage, meta: dict[str, str]) -> str:
        from sampan.engine import images

        base = df.expand(stage.base, meta, parsed.escape, stage.line)
        for index, image_id in self.stage_images.items():
            other = parsed.stages[index]
            if (other.name and base.lower() == other.name) or base == str(index):
                return image_id
        if base.lower() == "scratch":
            return _scratch(self.engine)
        platform = stage.from_.flags.get("platform")
        platform = df.expand(platform, meta, parsed.escape, stage.line) if platform else None
        if self.options.pull:
            from sampan.engine.pull import pull

            image_id = pull(self.engine, base, platform=platform)[0].image_id
        else:
            try:
                image_id = images.resolve(self.engine, base)
            except NotFound:
                from sampan.engine.pull import ensure_image

                image_id = ensure_image(self.engine, base, platform=platform)
        if platform:
            self._check_platform(base, image_id, platform)
        return image_id

    def _check_platform(self, base: str, image_id: str, wanted: str) -> None:
        """``FROM --platform``: the base chosen (pulled for that platform, or found in the store) must be of it; a
        store holds one platform per name, so another one is an error rather than a silent substitute."""
        from sampan.image import platforms

        want = platforms.parse(wanted)
        config = self._config(image_id)
        have = platforms.normalize(platforms.Platform(config.get("os") or "linux", config.get("architecture") or "",
                                                      config.get("variant")))
        if (have.os, have.architecture) != (want.os, want.architecture) or \
                (want.variant and have.variant and have.variant != want.variant):
            shown = "/".join(x for x in (have.os, have.architecture, have.variant) if x)
            raise InvalidArgument(f"image {base} is for {shown}, not {wanted} (FROM --platform): pull that "
                                  f"platform's image under its own name, or drop --platform")

    def _stage(self, parsed: df.Dockerfile, stage: df.Stage, meta: dict[str, str], last: bool) -> str:

        self._step(stage.from_)
        try:
            image_id = self._from(parsed, stage, meta)
        except SampanError as e:
            raise self._located(e, stage.from_) from None
        self.stage_bases[stage.index] = image_id
        self.say.line(f" ---> {_short(image_id)}")
        config = json.loads(json.dumps(self._config(image_id).get("config") or {}))
        state = _Stage(image_id, config, {})
        triggers = self._triggers(state, stage.from_)
        for ins in triggers:
            self._instruction_at(parsed, state, ins, meta)
        for ins in stage.instructions:
            self._step(ins)
            self._instruction_at(parsed, state, ins, meta)
        if last and self.options.labels:
            text = "LABEL " + " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(self.options.labels.items()))
            ins = df.Instruction("LABEL", text[6:], 0, text)
            self._step(ins)
            self._instruction_at(parsed, state, ins, meta)
        return state.image_id

    def _instruction_at(self, parsed: df.Dockerfile, state: _Stage, ins: df.Instruction,
                        meta: dict[str, str]) -> None:
        try:
            self._instruction(parsed, state, ins, meta)
        except SampanError as e:
            raise self._located(e, ins) from None

    def _triggers(self, state: _Stage, from_: df.Instruction) -> list[df.Instruction]:
        """The base image's ONBUILD triggers, parsed as instructions of this stage (at the FROM line), to run
        right after FROM; the new image does not inherit them (Docker's classic builder)."""
        texts = state.config.get("OnBuild") or []
        if not texts:
            return []
        state.config["OnBuild"] = None
        self.say.line(f"# Executing {len(texts)} build trigger{'s' if len(texts) > 1 else ''}")
        out = []
        for text in texts:
            try:
                parsed = df.parse("FROM scratch\n" + text)
            except df.DockerfileError as e:
                raise self._located(df.DockerfileError(from_.line, f"invalid ONBUILD trigger {text!r}: "
                                                       f"{str(e).split(': ', 1)[-1]}"), from_) from None
            for ins in parsed.stages[0].instructions:
                ins.line = from_.line
                out.append(ins)
        return out

    def _env(self, state: _Stage) -> dict[str, str]:
        env = dict(state.args)
        for item in state.config.get("Env") or []:
            key, _, value = item.partition("=")
            env[key] = value
        return env

    def _shell(self, state: _Stage) -> list[str]:
        return list(state.config.get("Shell") or DEFAULT_SHELL)

    def _metadata(self, state: _Stage, config: dict[str, Any], text: str) -> None:
        created_by = _NOP + text
        hit = None if self.options.no_cache else self._cached(state.image_id, created_by)
        if hit:
            self.say.line(" ---> Using cache")
            state.image_id = hit
        else:
            state.image_id = _commit(self.engine, state.image_id, config, created_by, None, self._now())
        state.config = config
        self.say.line(f" ---> {_short(state.image_id)}")

    def _instruction(self, parsed: df.Dockerfile, state: _Stage, ins: df.Instruction,
                     meta: dict[str, str]) -> None:
        escape = parsed.escape
        env = self._env(state)
        config = json.loads(json.dumps(state.config))
        cmd = ins.cmd
        if cmd == "RUN":
            self._run(parsed, state, ins, env)
            return
        if cmd in ("COPY", "ADD"):
            self._copy(parsed, state, ins, env)
            return
        if cmd == "ENV":
            items = list(config.get("Env") or [])
            pairs = df.key_values(ins, env, escape)
            for key, value in pairs:
                items = [e for e in items if e.partition("=")[0] != key] + [f"{key}={value}"]
            config["Env"] = items
            text = "ENV " + " ".join(f"{k}={v}" for k, v in pairs)
        elif cmd == "LABEL":
            labels = dict(config.get("Labels") or {})
            pairs = df.key_values(ins, env, escape)
            labels.update(pairs)
            config["Labels"] = labels
            text = "LABEL " + " ".join(f"{k}={v}" for k, v in pairs)
        elif cmd == "MAINTAINER":
            text = "MAINTAINER " + ins.rest
        elif cmd in ("CMD", "ENTRYPOINT"):
            value = ins.json if ins.json is not None else (self._shell(state) + [ins.rest] if ins.rest else [])
            key = "Cmd" if cmd == "CMD" else "Entrypoint"
            config[key] = value
            if cmd == "CMD":
                state.cmd_set = True
            elif not state.cmd_set:
                config["Cmd"] = None
            text = f"{cmd} {_go_list(value)}"
        elif cmd == "WORKDIR":
            path = df.expand(ins.rest, env, escape, ins.line)
            path = posixpath.normpath(posixpath.join(config.get("WorkingDir") or "/", path))
            config["WorkingDir"] = path
            self._workdir(state, config, path)
            return
        elif cmd == "USER":
            config["User"] = df.expand(ins.rest, env, escape, ins.line)
            text = "USER " + config["User"]
        elif cmd == "EXPOSE":
            ports = dict(config.get("ExposedPorts") or {})
            added = []
            for port in df.expand_words(ins.rest, env, escape, ins.line):
                number, _, proto = port.partition("/")
                if not re.fullmatch(r"\d+(-\d+)?", number) or proto.lower() not in ("", "tcp", "udp", "sctp"):
                    raise df.DockerfileError(ins.line, f"invalid containerPort: {port}")
                key = f"{number}/{proto.lower() or 'tcp'}"
                ports[key] = {}
                added.append(key)
            config["ExposedPorts"] = ports
            text = "EXPOSE " + " ".join(sorted(added))
        elif cmd == "VOLUME":
            paths = ins.json if ins.json is not None else df.expand_words(ins.rest, env, escape, ins.line)
            if ins.json is not None:
                paths = [df.expand(p, env, escape, ins.line) for p in paths]
            volumes = dict(config.get("Volumes") or {})
            for path in paths:
                if not path.strip():
                    raise df.DockerfileError(ins.line, "VOLUME specified can not be an empty string")
                volumes[path] = {}
            config["Volumes"] = volumes
            text = "VOLUME " + "[" + " ".join(paths) + "]"
        elif cmd == "STOPSIGNAL":
            from sampan.engine.specgen import parse_signal

            value = df.expand(ins.rest, env, escape, ins.line)
            try:
                parse_signal(value)
            except SampanError as e:
                raise df.DockerfileError(ins.line, str(e)) from None
            config["StopSignal"] = value
            text = "STOPSIGNAL " + value
        elif cmd == "SHELL":
            config["Shell"] = ins.json
            text = "SHELL " + "[" + " ".join(ins.json or []) + "]"
        elif cmd == "ONBUILD":
            trigger = ins.rest.split(None, 1)[0].upper()
            if trigger in ("ONBUILD", "FROM", "MAINTAINER"):
                raise df.DockerfileError(ins.line, f"{trigger} isn't allowed as an ONBUILD trigger")
            config["OnBuild"] = list(config.get("OnBuild") or []) + [ins.rest]
            text = "ONBUILD " + ins.rest
        elif cmd == "HEALTHCHECK":
            config["Healthcheck"] = self._healthcheck(ins)
            text = "HEALTHCHECK " + ins.rest
        elif cmd == "ARG":
            parts = []
            for name, value in self._arg_pairs(ins, env, escape):
                if name in self.options.build_args:
                    state.args[name] = self.options.build_args[name]
                    self.used_args.add(name)
                elif value is not None:
                    state.args[name] = value
                elif name in meta:
                    state.args[name] = meta[name]
                parts.append(name if value is None else f"{name}={value}")
            text = "ARG " + " ".join(parts)
        else:  # pragma: no cover - the parser knows no other instruction
            raise df.DockerfileError(ins.line, f"unknown instruction: {cmd}")
        self._metadata(state, config, text)

    def _healthcheck(self, ins: df.Instruction) -> dict[str, Any]:
        rest = ins.rest.strip()
        if rest.upper() == "NONE":
            if ins.flags:
                raise df.DockerfileError(ins.line, "HEALTHCHECK NONE takes no arguments")
            return {"Test": ["NONE"]}
        word, _, command = rest.partition(" ")
        if word.upper() != "CMD" or not command.strip():
            raise df.DockerfileError(ins.line, "Unknown type \"" + word + "\" in HEALTHCHECK (try CMD)")
        parsed = df.parse_json_list(command, ins.line)
        check: dict[str, Any] = {"Test": ["CMD", *parsed] if parsed is not None else ["CMD-SHELL", command.strip()]}
        for flag, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod"),
                          ("start-interval", "StartInterval")):
            if flag in ins.flags:
                check[key] = _duration(ins.flags[flag], ins.line)
        if "retries" in ins.flags:
            if not ins.flags["retries"].isdigit():
                raise df.DockerfileError(ins.line, f"invalid retries: {ins.flags['retries']}")
            check["Retries"] = int(ins.flags["retries"])
        return check

    # -- steps with a container

    def _finish(self, state: _Stage, record: Any, config: dict[str, Any], created_by: str) -> None:
        layer, entries = _layer_of(self.engine, record)
        with layer:
            if entries and self.epoch is not None:
                with _retimed(self.engine, layer, self.epoch) as clamped:
                    state.image_id = _commit(self.engine, state.image_id, config, created_by, clamped,
                                             self._now())
            else:
                state.image_id = _commit(self.engine, state.image_id, config, created_by,
                                         layer if entries else None, self._now())
        self.built_layer = self.built_layer or bool(entries)
        state.config = config

    def _run_command(self, state: _Stage, ins: df.Instruction) -> tuple[list[str], df.Heredoc | None]:
        """The RUN's argv, and the here-document to mount as an executable script (BuildKit's rules: a lone
        ``<<EOF`` whose body starts with ``#!`` runs as a script; a lone one without runs as the shell's
        command; anything else goes to the shell with its here-documents appended, for the shell to read)."""
        if ins.json is not None:
            return ins.json, None
        text = ins.rest
        if ins.heredocs:
            first = ins.heredocs[0]
            if len(ins.heredocs) == 1 and df.split_words(text) and len(df.split_words(text)) == 1:
                if first.data.startswith("#!"):
                    return [f"{_PIPES}/{first.name}"], first
                text = first.data
            else:
                text = text + "".join(f"\n{doc.data}{doc.name}" for doc in ins.heredocs)
        return self._shell(state) + [text], None

    def _run(self, parsed: df.Dockerfile, state: _Stage, ins: df.Instruction, env: dict[str, str]) -> None:
        command, script = self._run_command(state, ins)
        if ins.flags.get("security", "sandbox") != "sandbox":
            raise BuildError(f"RUN --security={ins.flags['security']} needs an entitlement sampan never grants")
        specs = []
        if ins.mounts:
            from sampan.build import mounts as run_mounts

            try:
                specs = [run_mounts.parse_mount(df.expand(spec, env, parsed.escape, ins.line))
                         for spec in ins.mounts]
            except InvalidArgument as e:
                raise df.DockerfileError(ins.line, f"--mount: {e}") from None
        env_keys = {item.partition("=")[0] for item in state.config.get("Env") or []}
        args = sorted((k, v) for k, v in state.args.items() if k not in env_keys)
        proxies = [f"{k}={v}" for k, v in sorted(self.options.build_args.items())
                   if k in PROXY_ARGS and k not in state.args]
        prefix = f"|{len(args)} " + " ".join(f"{k}={v}" for k, v in args) + " " if args else ""
        sources = [self._mount_from(parsed, spec) for spec in specs]
        keys = "".join(f"--mount={self._mount_key(spec, image)} " for spec, image in zip(specs, sources))
        created_by = prefix + keys + " ".join(command)
        if script is not None:
            created_by += f" {hashlib.sha256(script.data.encode()).hexdigest()}"
        if self._use_cache(state, created_by):
            return
        network = ins.flags.get("network") or self.options.network
        with ExitStack() as stack:
            docker_mounts = [m for spec, image in zip(specs, sources)
                             if (m := stack.enter_context(self._mount(spec, image))) is not None]
            if script is not None:
                docker_mounts.append(stack.enter_context(self._script(script)))
            record = stack.enter_context(_container(
                self.engine, state.image_id, command=command, network=network, attach=True, mounts=docker_mounts,
                env=[f"{k}={v}" for k, v in args] + proxies))
            self.say.line(f" ---> Running in {record.id[:12]}")
            code = self._attached(record)
            if code != 0:
                raise BuildError(f"The command '{' '.join(command)}' returned a non-zero code: {code}")
            _remove_stubs(self.engine, state.image_id, record, [m["Target"] for m in docker_mounts])
            self._finish(state, record, state.config, created_by)
        self.say.line(f" ---> Removed intermediate container {record.id[:12]}")
        self.say.line(f" ---> {_short(state.image_id)}")

    def _mount_from(self, parsed: df.Dockerfile, spec: Any) -> str:
        """The image a bind or cache mount's ``from`` names ("" for the build context or none)."""
        return self._from_image(parsed, spec.from_) if spec.from_ and spec.type in ("bind", "cache") else ""

    def _mount_key(self, spec: Any, image: str) -> str:
        """What of a mount the step's cache key holds: a bind's content (the context's files by content, a
        stage's or image's ID), a cache's or secret's id (never their contents, as BuildKit)."""
        if spec.type == "bind":
            if image:
                origin = image
            else:
                h = hashlib.sha256()
                for source in self.context.sources(spec.source or ".", "RUN --mount"):
                    h.update(f"{source.rel}\0".encode("utf-8", "surrogateescape"))
                    items = self.context.walk(source) if stat.S_ISDIR(source.st.st_mode) else \
                        [(posixpath.basename(source.rel), source.path, source.st)]
                    for rel, path, st in items:
                        entry_digest(h, rel, st, path, self.digests)
                origin = "context:sha256:" + h.hexdigest()
            return f"type=bind,from={origin},source={spec.source or '/'},target={spec.target}" + \
                (",rw" if not spec.readonly else "")
        if spec.type == "cache":
            return f"type=cache,id={spec.id},target={spec.target}" + (f",from={image}" if image else "")
        return f"type={spec.type},target={spec.target}" + (f",id={spec.id}" if spec.type == "secret" else "")

    @contextmanager
    def _mount(self, spec: Any, image: str) -> Iterator[dict[str, Any] | None]:
        """The Docker mount (``--mount`` object) that gives the step what ``spec`` asks for, and whatever it
        needs (a mounted stage, a copy, a lock) for as long as the step runs."""
        import tempfile

        if spec.type == "tmpfs":
            from sampan.units import parse_size

            size = parse_size(spec.size) if spec.size else 0
            yield {"Type": "tmpfs", "Target": spec.target, "TmpfsOptions": {"SizeBytes": size} if size else {}}
        elif spec.type == "secret":
            data = self.options.secrets.get(spec.id)
            if data is None:
                if spec.required:
                    raise BuildError(f"secret {spec.id}: not provided (build --secret id={spec.id},src=FILE)")
                yield None
                return
            with tempfile.TemporaryDirectory(dir=self.engine.layout.tmp) as tmp:
                path = os.path.join(tmp, "secret")
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.chown(path, spec.uid, spec.gid)
                os.chmod(path, spec.mode)
                yield {"Type": "bind", "Source": path, "Target": spec.target, "ReadOnly": True}
        elif spec.type == "cache":
            with self._cache_dir(spec, image) as path:
                yield {"Type": "bind", "Source": path, "Target": spec.target, "ReadOnly": spec.readonly}
        else:
            with self._bind_root(image, spec.readonly) as root:
                yield {"Type": "bind", "Source": _inside_root(root, spec.source), "Target": spec.target,
                       "ReadOnly": spec.readonly}

    @contextmanager
    def _bind_root(self, image: str, readonly: bool) -> Iterator[str]:
        """The tree a bind mount takes its source from: an image's root (a temporary container, so writes of an
        ``rw`` mount are thrown away), the context itself (read-only, nothing excluded), or a copy of the
        context without what ``.dockerignore`` excludes (or for ``rw``)."""
        import tempfile

        if image:
            with _container(self.engine, image) as other, _mounted(self.engine, other) as root:
                yield root
        elif readonly and not self.context.ignore.rules:
            yield self.context.root
        else:
            with tempfile.TemporaryDirectory(dir=self.engine.layout.tmp) as tmp:
                whole = self.context.sources(".", "RUN --mount")[0]
                for rel, path, st in self.context.walk(whole):
                    _copy_entry(path, os.path.join(tmp, rel), st)
                yield tmp

    @contextmanager
    def _cache_dir(self, spec: Any, image: str) -> Iterator[str]:
        """A cache mount's directory under the storage root, kept across builds and keyed by its id (BuildKit
        keys by id; the target is the default id). ``sharing=locked`` waits for other builds using it,
        ``private`` takes a fresh throwaway directory when it is in use, ``shared`` just shares it."""
        import fcntl
        import shutil
        import tempfile

        key = hashlib.sha256(spec.id.encode()).hexdigest()[:32]
        top = self.engine.layout.root / "buildcache"
        top.mkdir(mode=0o700, exist_ok=True)
        path = top / key
        with open(top / f"{key}.lock", "a") as lock:
            if spec.sharing == "locked":
                fcntl.flock(lock, fcntl.LOCK_EX)
            elif spec.sharing == "private":
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    with tempfile.TemporaryDirectory(dir=self.engine.layout.tmp) as tmp:
                        yield tmp
                    return
            else:
                fcntl.flock(lock, fcntl.LOCK_SH)
            if not path.is_dir():
                fresh = tempfile.mkdtemp(dir=top)
                if image:
                    with _container(self.engine, image) as other, _mounted(self.engine, other) as root:
                        shutil.copytree(_inside_root(root, spec.source), fresh, symlinks=True, dirs_exist_ok=True)
                os.chown(fresh, spec.uid, spec.gid)
                os.chmod(fresh, spec.mode if spec.mode is not None else 0o755)
                try:
                    os.rename(fresh, path)
                except OSError:  # another build made it first
                    shutil.rmtree(fresh, ignore_errors=True)
            yield str(path)

    @contextmanager
    def _script(self, doc: df.Heredoc) -> Iterator[dict[str, Any]]:
        import tempfile

        with tempfile.TemporaryDirectory(dir=self.engine.layout.tmp) as tmp:
            path = os.path.join(tmp, "script")
            with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
                f.write(doc.data)
            os.chmod(path, 0o755)
            yield {"Type": "bind", "Source": path, "Target": f"{_PIPES}/{doc.name}", "ReadOnly": True}

    def _attached(self, record: Any) -> int:
        from sampan.engine.containers import lifecycle
        from sampan.monitor import protocol
        from sampan.store import containers as records

        _, sock = lifecycle.start(self.engine, record.id, {"stdin": False, "stdout": True, "stderr": True})
        code: int | None = None
        if sock is not None:
            decoder = protocol.Decoder()
            with sock:
                while code is None:
                    data = sock.recv(65536)
                    if not data:
                        break
                    for kind, payload in decoder.feed(data):
                        if kind in (protocol.STDOUT, protocol.STDERR):
                            self.say.raw(payload)
                        elif kind == protocol.EXIT:
                            code = int(payload or b"0")
                        elif kind == protocol.ERROR:
                            raise BuildError(payload.decode(errors="replace"))
        done = lifecycle.wait_not_running(self.engine, record.id, None)
        if code is None or code < 0:
            fresh = done or records.get(self.engine.db.conn, record.id)
            code = fresh.exit_code if fresh is not None else 1
        return int(code)

    def _workdir(self, state: _Stage, config: dict[str, Any], path: str) -> None:
        created_by = _NOP + "WORKDIR " + path
        if self._use_cache(state, created_by):
            state.config = config
            return
        import tempfile

        with _container(self.engine, state.image_id) as record:
            with _mounted(self.engine, record) as root, tempfile.TemporaryFile(dir=self.engine.layout.tmp) as tar:
                writer = _tar_writer(tar)
                _parents(writer, root, path, (0, 0), include_self=True)
                writer.close()
                tar.seek(0)
                _unpack(tar, root)
            self._finish(state, record, config, created_by)
        self.say.line(f" ---> {_short(state.image_id)}")

    def _copy(self, parsed: df.Dockerfile, state: _Stage, ins: df.Instruction, env: dict[str, str]) -> None:
        escape = parsed.escape
        words = ins.json if ins.json is not None else df.split_words(ins.rest, escape)
        words = [df.expand(word, env, escape, ins.line) for word in words]
        if len(words) < 2:
            raise df.DockerfileError(ins.line, f"{ins.cmd} requires at least two arguments, but only one was "
                                     "provided. Destination could not be determined.")
        srcs, dest = words[:-1], words[-1]
        workdir = state.config.get("WorkingDir") or "/"
        dest_dir = dest.endswith(("/", "/.")) or dest in (".", "..")
        dest = posixpath.normpath(posixpath.join(workdir, dest))
        chown = df.expand(ins.flags.get("chown", ""), env, escape, ins.line)
        chmod = _chmod(df.expand(ins.flags.get("chmod", ""), env, escape, ins.line), ins.line)
        checksum = df.expand(ins.flags.get("checksum", ""), env, escape, ins.line)
        from_image = ""
        if "from" in ins.flags:
            if ins.cmd != "COPY":
                raise df.DockerfileError(ins.line, "ADD does not support --from")
            from_image = self._from_image(parsed, df.expand(ins.flags["from"], env, escape, ins.line))
        plan = _Plan(ins.cmd, srcs, dest, dest_dir, chown)
        with ExitStack() as stack:
            if from_image:
                h = hashlib.sha256(f"{from_image}\0{json.dumps(srcs)}".encode())
                kind = "multi" if len(srcs) > 1 else "from"
            else:
                docs = iter(ins.heredocs)
                for src in srcs:
                    if ins.heredocs and src.startswith("<<"):
                        doc = next(docs)
                        plan.sources.append(stack.enter_context(_heredoc_file(self.engine, doc, env, escape)))
                        plan.literal.add(plan.sources[-1].path)
                    elif _URL.match(src):
                        if ins.cmd != "ADD":
                            raise BuildError(f"COPY failed: source can't be a URL for COPY: {src}")
                        plan.sources.append(stack.enter_context(_download(self.engine, src, checksum)))
                        plan.literal.add(plan.sources[-1].path)
                    else:
                        if checksum:
                            raise BuildError(f"checksum can't be specified for non-HTTP(S) sources: {src}")
                        plan.sources.extend(self.context.sources(src, ins.cmd))
                if len(plan.sources) > 1 and not dest_dir:
                    raise BuildError(f"When using {ins.cmd} with more than one source file, the destination must "
                                     "be a directory and end with a /")
                h = hashlib.sha256()
                for source in plan.sources:
                    h.update(f"{source.rel}\0".encode("utf-8", "surrogateescape"))
                    if stat.S_ISDIR(source.st.st_mode):
                        for rel, path, st in self.context.walk(source):
                            entry_digest(h, rel, st, path, self.digests)
                    else:
                        entry_digest(h, posixpath.basename(source.rel), source.st, source.path, self.digests)
                kind = "multi" if len(plan.sources) > 1 else "dir" if plan.sources and \
                    stat.S_ISDIR(plan.sources[0].st.st_mode) else "file"
            if chown:
                h.update(f"\0chown={chown}".encode())
            if chmod is not None:
                h.update(f"\0chmod={chmod:o}".encode())
            created_by = f"{_NOP.rstrip()} {ins.cmd} {kind}:{h.hexdigest()} in {dest}{'/' if dest_dir else ''} "
            if self._use_cache(state, created_by):
                return
            import tempfile

            with _container(self.engine, state.image_id) as record:
                with _mounted(self.engine, record) as root:
                    owner = _chown(root, chown) if chown else (0, 0)
                    with tempfile.TemporaryFile(dir=self.engine.layout.tmp) as tar:
                        writer = _tar_writer(tar)
                        content = _Chmod(writer, chmod)
                        if from_image:
                            self._from_entries(writer, content, root, plan, from_image, owner if chown else None)
                        else:
                            _context_entries(self.context, writer, content, root, plan, owner)
                        writer.close()
                        tar.seek(0)
                        _unpack(tar, root)
                self._finish(state, record, state.config, created_by)
        self.say.line(f" ---> {_short(state.image_id)}")

    def _from_image(self, parsed: df.Dockerfile, name: str) -> str:
        from sampan.engine import images

        for index, image_id in self.stage_images.items():
            stage = parsed.stages[index]
            if name.lower() == stage.name or name == str(index):
                return image_id
        for stage in parsed.stages:
            if name.lower() == stage.name or name == str(stage.index):
                raise InvalidArgument(f"invalid from flag value {name}: refers to the current or a later stage")
        try:
            return images.resolve(self.engine, name)
        except NotFound:
            from sampan.engine.pull import ensure_image

            return ensure_image(self.engine, name)

    def _from_entries(self, writer: Any, content: Any, root: str, plan: _Plan, image_id: str,
                      owner: tuple[int, int] | None) -> None:
        from sampan._linux import syscalls
        from sampan.engine.containers import copy

        resolve = syscalls.RESOLVE_IN_ROOT | syscalls.RESOLVE_NO_MAGICLINKS
        with _container(self.engine, image_id) as other, _mounted(self.engine, other) as source_root:
            rootfd = os.open(source_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                opened = []
                for src in plan.srcs:
                    clean = posixpath.normpath("/" + src).lstrip("/")
                    try:
                        fd = syscalls.openat2(rootfd, clean or ".", os.O_PATH | os.O_CLOEXEC, resolve)
                    except FileNotFoundError:
                        raise NotFound(f"COPY failed: stat {src}: file does not exist") from None
                    opened.append((clean, fd))
                try:
                    if len(opened) > 1 and not plan.dest_dir:
                        raise BuildError("When using COPY with more than one source file, the destination must "
                                         "be a directory and end with a /")
                    for clean, fd in opened:
                        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
                        target = _target(root, plan, posixpath.basename(clean) or "", is_dir)
                        _parents(writer, root, target if is_dir else posixpath.dirname(target), owner or (0, 0),
                                 include_self=is_dir)
                        copy._walk(content, fd, target.lstrip("/"), include_root=not is_dir, owner=owner)
                finally:
                    for _, fd in opened:
                        os.close(fd)
            finally:
                os.close(rootfd)


class _Plan:
    """A COPY/ADD: its sources, and in ``literal`` the host paths copied as they are (never extracted by ADD)."""

    __slots__ = ("chown", "cmd", "dest", "dest_dir", "literal", "sources", "srcs")

    def __init__(self, cmd: str, srcs: list[str], dest: str, dest_dir: bool, chown: str) -> None:
        self.cmd, self.srcs, self.dest, self.dest_dir, self.chown = cmd, srcs, dest, dest_dir, chown
        self.sources: list[Any] = []
        self.literal: set[str] = set()


def _tar_writer(fileobj: BinaryIO) -> Any:
    from sampan.engine.containers import copy

    return copy._TarWriter(fileobj.fileno())


def _unpack(tar: BinaryIO, root: str) -> None:
    from sampan.snapshot.unpack import unpack_layer

    unpack_layer(tar, root, whiteouts="keep")


def _chown(root: str, spec: str) -> tuple[int, int]:
    from sampan.engine.specgen import lookup_user

    try:
        uid, gid, _ = lookup_user(root, spec)
    except SampanError as e:
        raise BuildError(f"unable to convert uid/gid chown string to host mapping: {e}") from None
    return uid, gid


def _lstat_in(root: str, path: str) -> os.stat_result | None:
    from sampan.engine.containers import copy

    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return copy._follow(fd, path)[1]
    finally:
        os.close(fd)


def _parents(writer: Any, root: str, path: str, owner: tuple[int, int], *, include_self: bool) -> None:
    """Directory entries (0755, ``owner``) for the components of ``path`` missing in the root."""
    import tarfile

    parts = [p for p in path.split("/") if p]
    if not include_self:
        parts = parts[:-1]
    current = ""
    for part in parts:
        current = f"{current}/{part}"
        st = _lstat_in(root, current)
        if st is not None:
            if not stat.S_ISDIR(st.st_mode):
                raise BuildError(f"failed to copy files: {current} is not a directory")
            continue
        info = tarfile.TarInfo(current.lstrip("/"))
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        info.uid, info.gid = owner
        info.mtime = int(time.time())
        writer.add(info, None)


def _target(root: str, plan: _Plan, name: str, is_dir: bool) -> str:
    """Where a source lands: a directory's contents go into DEST; a file goes into DEST when DEST ends with
    ``/`` or is an existing directory, else it becomes DEST."""
    if is_dir:
        return plan.dest
    st = _lstat_in(root, plan.dest)
    if plan.dest_dir or (st is not None and stat.S_ISDIR(st.st_mode)):
        return posixpath.join(plan.dest, name)
    return plan.dest


def _is_archive(path: str) -> bool:
    import tarfile

    try:
        with tarfile.open(path, "r:*") as archive:
            return archive.next() is not None
    except (tarfile.TarError, OSError, EOFError):
        return False


def _context_entries(context: Context, writer: Any, content: Any, root: str, plan: _Plan,
                     owner: tuple[int, int]) -> None:
    """Tar entries for COPY/ADD sources of the context (or here-documents, or downloads): parent
    directories through ``writer``, the copied files through ``content`` (which applies ``--chmod``)."""
    from sampan.engine.containers import copy

    links: dict[tuple[int, int], str] = {}
    for source in plan.sources:
        is_dir = stat.S_ISDIR(source.st.st_mode)
        if plan.cmd == "ADD" and not is_dir and source.path not in plan.literal and _is_archive(source.path):
            _parents(writer, root, plan.dest, owner, include_self=True)
            with open(source.path, "rb") as stream:
                copy._retar(stream, content, plan.dest.lstrip("/"), owner if plan.chown else None)
            continue
        target = _target(root, plan, posixpath.basename(source.rel), is_dir)
        _parents(writer, root, target if is_dir else posixpath.dirname(target), owner, include_self=True)
        if is_dir:
            items = [(posixpath.join(target, rel), path, st) for rel, path, st in context.walk(source)]
        else:
            items = [(target, source.path, source.st)]
        for name, path, st in items:
            fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                copy._emit(content, fd, os.fstat(fd), name.lstrip("/"), owner, links)
            finally:
                os.close(fd)


_URL = re.compile(r"^https?://", re.IGNORECASE)


def _chmod(text: str, line: int) -> int | None:
    """``--chmod``'s octal mode (BuildKit takes octal; the classic builder has no --chmod)."""
    if not text:
        return None
    if not re.fullmatch(r"[0-7]{1,4}", text):
        raise df.DockerfileError(line, f"invalid chmod parameter: {text!r} (an octal mode such as 0755)")
    return int(text, 8)


class _Chmod:
    """A tar writer that gives the entries it passes on ``--chmod``'s mode (symlinks and hard links keep
    theirs: a link has no mode of its own)."""

    def __init__(self, writer: Any, mode: int | None) -> None:
        self.writer, self.mode = writer, mode

    def add(self, info: tarfile.TarInfo, data: Any) -> None:
        if self.mode is not None and not (info.issym() or info.islnk()):
            info.mode = self.mode
        self.writer.add(info, data)


def _source_of(rel: str, path: str) -> Any:
    from sampan.build.context import Source

    return Source(rel, path, os.stat(path))


@contextmanager
def _heredoc_file(engine: Engine, doc: df.Heredoc, env: dict[str, str], escape: str) -> Iterator[Any]:
    """A COPY/ADD here-document as a file named like its delimiter, mode 0644, substituted unless the
    delimiter was quoted (BuildKit)."""
    import tempfile

    with tempfile.TemporaryDirectory(dir=engine.layout.tmp) as tmp:
        path = os.path.join(tmp, doc.name)
        data = df.expand_text(doc.data, env, escape) if doc.expand else doc.data
        with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(data)
        os.chmod(path, 0o644)
        yield _source_of(doc.name, path)


@contextmanager
def _download(engine: Engine, url: str, checksum: str) -> Iterator[Any]:
    """``ADD URL``: the file, as Docker stores it (mode 0600, the Last-Modified time, named after the URL's
    last path segment), verified against ``--checksum`` (``sha256:HEX``) when given."""
    import tempfile
    import urllib.parse
    from email.utils import parsedate_to_datetime

    import urllib3

    if checksum and not re.fullmatch(r"sha256:[0-9a-f]{64}", checksum):
        raise BuildError(f"invalid checksum {checksum!r}: expected sha256:<64 hex digits>")
    name = posixpath.basename(urllib.parse.urlsplit(url).path.rstrip("/")) or "__unnamed__"
    with tempfile.TemporaryDirectory(dir=engine.layout.tmp) as tmp:
        path = os.path.join(tmp, name)
        h = hashlib.sha256()
        try:
            response = urllib3.PoolManager(retries=urllib3.Retry(2, redirect=5)).request(
                "GET", url, preload_content=False, timeout=urllib3.Timeout(connect=10, read=60))
        except urllib3.exceptions.HTTPError as e:
            raise BuildError(f"ADD failed: cannot download {url}: {e}") from None
        with response:
            if response.status != 200:
                raise BuildError(f"ADD failed: cannot download {url}: HTTP {response.status}")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as f:
                for chunk in response.stream(1 << 20):
                    h.update(chunk)
                    f.write(chunk)
            modified = response.headers.get("Last-Modified")
        if checksum and checksum != "sha256:" + h.hexdigest():
            raise BuildError(f"ADD failed: digest mismatch for {url}: expected {checksum}, got "
                             f"sha256:{h.hexdigest()}")
        if modified:
            try:
                stamp = parsedate_to_datetime(modified).timestamp()
                os.utime(path, (stamp, stamp))
            except (TypeError, ValueError):
                pass
        yield _source_of(name, path)


@contextmanager
def _retimed(engine: Engine, layer: BinaryIO, epoch: int) -> Iterator[BinaryIO]:
    """The layer with every time clamped to ``epoch`` (SOURCE_DATE_EPOCH; BuildKit's rewrite-timestamp), so
    the same context gives the same layer digest."""
    import tarfile
    import tempfile

    with tempfile.TemporaryFile(dir=engine.layout.tmp) as out:
        writer = _tar_writer(out)
        with tarfile.open(fileobj=layer, mode="r|", encoding="utf-8", errors="surrogateescape") as archive:
            for member in archive:
                member.mtime = min(int(member.mtime), epoch)
                for key in ("mtime", "atime", "ctime"):
                    member.pax_headers.pop(key, None)
                writer.add(member, archive.extractfile(member) if member.isreg() else None)
        writer.close()
        out.seek(0)
        yield out


def _inside_root(root: str, path: str) -> str:
    """The host path of ``path`` resolved inside ``root`` (symlinks cannot climb out of it)."""
    from sampan._linux import syscalls

    rootfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = syscalls.openat2(rootfd, posixpath.normpath("/" + path).lstrip("/") or ".", os.O_PATH | os.O_CLOEXEC,
                              syscalls.RESOLVE_IN_ROOT | syscalls.RESOLVE_NO_MAGICLINKS)
    except FileNotFoundError:
        raise NotFound(f"mount source {path!r} not found") from None
    finally:
        os.close(rootfd)
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def _copy_entry(src: str, dst: str, st: os.stat_result) -> None:
    import shutil

    if stat.S_ISDIR(st.st_mode):
        os.mkdir(dst, stat.S_IMODE(st.st_mode))
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISREG(st.st_mode):
        shutil.copy2(src, dst, follow_symlinks=False)


def _remove_stubs(engine: Engine, image_id: str, record: Any, targets: list[str]) -> None:
    """Take out of the step's upper directory the mount points the runtime had to create (empty directories
    or files that the image does not have), as BuildKit's stub cleaner does: a mount leaves no trace."""
    from sampan.engine.containers import model, rootfs

    lowers = rootfs.lower_dirs(engine, image_id)
    upper = str(model.places(engine, record.id).diff)
    for target in sorted(targets, key=lambda t: -t.count("/")):
        path = posixpath.normpath(target)
        while path != "/" and not any(os.path.lexists(lower + path) for lower in lowers):
            host = upper + path
            try:
                st = os.lstat(host)
            except FileNotFoundError:
                break
            if stat.S_ISDIR(st.st_mode) and not os.listdir(host):
                os.rmdir(host)
            elif stat.S_ISREG(st.st_mode) and st.st_size == 0 and path == target:
                os.unlink(host)
            else:
                break
            path = posixpath.dirname(path)


def analyze(engine: Engine, image: str) -> Any:
    """``image analyze``: the bytes each layer adds that later layers delete or overwrite
    (``sampan.build.layers.Analysis``)."""
    from sampan.build.layers import analyze as analyze_layers
    from sampan.engine import images
    from sampan.image.compression import open_decompressed
    from sampan.store import images as records

    image_id = images.resolve(engine, image)
    config = images.load_config(engine, image_id)
    created_by = [h.get("created_by", "") for h in config.history if not h.get("empty_layer")]
    rows = records.layers_of(engine.db.conn, image_id)
    with ExitStack() as stack:
        streams = []
        for index, row in enumerate(rows):
            raw = stack.enter_context(open(engine.content.path(row["blob_digest"]), "rb"))
            streams.append((created_by[index] if index < len(created_by) else "", open_decompressed(raw)))
        return analyze_layers(streams)


def build(engine: Engine, options: BuildOptions, out: BinaryIO | None = None) -> BuildResult:
    """``docker build`` with the classic builder; progress in Docker's classic words on ``out`` (stdout)."""
    if not os.path.isdir(options.context):
        raise NotFound(f"unable to prepare context: path \"{options.context}\" not found")
    result = Builder(engine, options, out if out is not None else sys.stdout.buffer).run()
    from sampan.engine import events

    events.record(engine, "image", "build", result.image_id, {"name": ",".join(result.tags) or result.image_id})
    return result
