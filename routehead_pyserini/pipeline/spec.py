"""YAML pipelines: a chain of ``routehead-pyserini`` commands, validated first, skipped when up to date.

A pipeline file (see ``pipelines/README.md`` for the full format)::

    name: demo
    workdir: runs/pipelines/demo           # stage records (.pipeline/) and logs (logs/) go here
    vars: {model: smollm2-135m, hits: 20}  # ${model}, ${vars.model}; --set model=... overrides
    stages:
      - id: bm25
        uses: search                       # a routehead-pyserini command
        with: {index: demo, output: "${workdir}/bm25.trec", hits: "${hits}"}
      - id: icr
        uses: rerank
        with: {run: "${stages.bm25.output}", index: demo, output: "${workdir}/${method}.trec"}
        methods:                           # one stage per method, side by side
          icr-bm25-order: {order: bm25}
          icr-reversed-order: {order: reversed}
      - id: report
        uses: evaluate
        with: {runs: ["${stages.bm25.output}", "${stages.icr.outputs}"], qrels: demo, report-dir: "${workdir}"}

``with`` keys are the command's option names (``top-k`` or ``top_k``; arguments by name, e.g.
``runs`` of ``evaluate``), checked against the command's click parameters. Each command declares
which keys are inputs (files, folders or registry names it reads) and which are outputs, beside its
options (:func:`.stage_io.pipeline_io`).
A stage may instead run another pipeline file (``pipeline: other.yaml``, ``set: {var: value}``);
its outputs count as the stage's outputs, and ``${stages.ID.workdir}`` is its work folder.

Everything is checked before anything runs: unknown keys (with a did-you-mean), values of the
wrong type, missing required options, unknown variables, references to later stages, and inputs
that neither exist nor are written by an earlier stage. Each error names the file, the stage and
the key. A stage runs in this process (its click command, the same code as on the command line)
unless its record in ``<workdir>/.pipeline/`` shows it up to date (:mod:`.manifest`), so an
interrupted or failed pipeline resumes at the first stage that did not finish.
"""
from __future__ import annotations

import difflib
import logging
import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import yaml

from ..errors import UserError
from ..data.checks import load_yaml, yaml_error
from ..data.trec import read_text
from .checks import option_settings, override_key, pipeline_name
from .stage_io import as_list, canonical_key, command_argv, command_io, command_keys, norm_key

logger = logging.getLogger(__name__)

TOP_KEYS = ("name", "description", "workdir", "vars", "stages")
STAGE_KEYS = ("id", "uses", "with", "methods", "pipeline", "set", "description")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_VAR = re.compile(r"\$\{([^}]*)\}")


class PipelineError(UserError, ValueError):
    """A pipeline file that cannot run as written, or a stage that failed."""


# input keys that also take a registry name, and the registry field they mean
REGISTRY_FIELDS = {"corpus": "corpus", "index": "index", "topics": "topics", "qrels": "qrels",
                   "run": "run", "runs": "run", "baseline": "run"}
# input keys whose value may be a literal instead of a file (e.g. --heads all, --heads 14.3,15.0)
_LITERAL = {"heads": re.compile(r"^\s*(all|[0-9]+\s*[.:]\s*[0-9]+(\s*,\s*[0-9]+\s*[.:]\s*[0-9]+)*)\s*$", re.IGNORECASE)}


# --------------------------------------------------------------------------------------------
# The loaded, validated pipeline


@dataclass
class Stage:
    """One command with its resolved arguments, or another pipeline (``sub``)."""

    id: str
    uses: str | None
    settings: dict[str, Any]  # the resolved `with`, keys as the command's option names
    argv: list[str]
    inputs: list[str] = field(default_factory=list)  # files, folders or registry names read
    outputs: list[str] = field(default_factory=list)  # files or folders written
    description: str = ""
    group: str | None = None  # the stage id of a `methods:` stage this one was expanded from
    sub: Pipeline | None = None

    @property
    def command_line(self) -> str:
        if self.sub is not None:
            return f"routehead-pyserini pipeline run {shlex.quote(str(self.sub.path))}"
        return shlex.join(["routehead-pyserini", str(self.uses), *self.argv])

    @property
    def output(self) -> str | None:
        return self.outputs[0] if self.outputs else None


@dataclass
class Pipeline:
    path: Path
    name: str
    description: str
    workdir: Path
    variables: dict[str, Any]
    stages: list[Stage]

    def all_outputs(self) -> list[str]:
        return [o for s in self.stages for o in s.outputs]


# --------------------------------------------------------------------------------------------
# Loading and validation


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``["model=gemma3-270m", "icr.top-k=10"]`` → ``{"model": "gemma3-270m", "icr.top-k": 10}`` (YAML values)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise PipelineError(f"--set {pair!r}: expected KEY=VALUE (a variable, workdir, or STAGE.OPTION)")
        if override_key(key) in {override_key(k) for k in out}:
            raise PipelineError(f"--set {key.strip()}: given twice (or as another spelling of one option); give each key once")
        try:
            out[key.strip()] = load_yaml(value) if value.strip() else ""
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Unresolved(Exception):
    """A ${...} that names nothing (the caller adds where it was)."""


class _Loader:
    """Reads one pipeline file into a :class:`Pipeline`, checking every stage against its command."""

    def __init__(self, path: Path, *, overrides: Mapping[str, Any], workdir: str | os.PathLike[str] | None,
                 data_dir: Path, group: click.Group, stack: tuple[Path, ...]):
        self.path, self.overrides, self.workdir_override = path, dict(overrides), workdir
        self.data_dir, self.group, self.stack = data_dir, group, stack
        self.used_overrides: set[str] = set()
        self.done: dict[str, Stage] = {}  # stage id -> stage, in file order (expanded methods too)
        self.groups: dict[str, list[Stage]] = {}
        self.written: dict[str, str] = {}  # normalised output path -> stage id
        self.sources: dict[str, str] = {}  # real path of a file the pipeline reads but does not write -> first reader
        self.later: set[str] = set()
        self.base: dict[str, str] = {"data_dir": str(data_dir), "pipeline_dir": str(path.parent)}

    def fail(self, message: str, stage: str | None = None, uses: str | None = None, key: str | None = None) -> PipelineError:
        where = [str(self.path)]
        if stage is not None:
            where.append(f"stage {stage!r}" + (f" ({uses})" if uses else ""))
        if key is not None:
            where.append(f"key {key!r}")
        return PipelineError(": ".join(where) + ": " + message)

    # ---- the file ------------------------------------------------------------------------------
    def load(self) -> Pipeline:
        if not self.path.is_file():
            raise PipelineError(f"{self.path}: pipeline file not found")
        try:
            raw = load_yaml(read_text(self.path))  # not UTF-8, or a key given twice: an error naming the line
        except yaml.YAMLError as exc:
            raise PipelineError(f"{self.path}: invalid YAML{yaml_error(exc)}") from None
        if not isinstance(raw, dict):
            raise self.fail("expected a mapping with keys " + ", ".join(TOP_KEYS))
        for key in raw:
            if key not in TOP_KEYS:
                raise self.fail(f"unknown top-level key{_suggest(str(key), TOP_KEYS)}; allowed: {', '.join(TOP_KEYS)}", key=str(key))
        name = pipeline_name(raw.get("name"), self.path, lambda message, key: self.fail(message, key=key))
        variables = self.variables(raw.get("vars") or {})
        workdir_value = self.overrides.get("workdir", self.workdir_override or raw.get("workdir") or f"runs/pipelines/{name}")
        self.used_overrides.add("workdir")
        try:
            workdir = Path(str(self.interpolate(workdir_value, self.lookup_fn(variables, None, None))))
        except _Unresolved as exc:
            raise self.fail(str(exc), key="workdir") from None
        self.base.update(workdir=str(workdir), name=name)
        stages_raw = raw.get("stages")
        if not isinstance(stages_raw, list) or not stages_raw:
            raise self.fail("'stages' must be a non-empty list of stages", key="stages")
        ids = [s.get("id") for s in stages_raw if isinstance(s, dict)]
        stages: list[Stage] = []
        for index, stage_raw in enumerate(stages_raw, start=1):
            self.later = {str(i) for i in ids[index:] if i is not None}
            stages.extend(self.stage(stage_raw, index, variables))
        unused = [k for k in self.overrides if k not in self.used_overrides]
        if unused:
            choices = [*variables, "workdir", *(f"{s.id}.{k}" for s in stages for k in s.settings)]
            raise self.fail(f"--set {unused[0]}: not a variable, 'workdir' or STAGE.OPTION of this pipeline{_suggest(unused[0], choices)}")
        return Pipeline(self.path, name, str(raw.get("description") or ""), workdir, variables, stages)

    def variables(self, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise self.fail("'vars' must be a mapping of names to values", key="vars")
        values: dict[str, Any] = {}
        for key, value in raw.items():
            key = str(key)
            for name in (key, f"vars.{key}"):
                if name in self.overrides:
                    value = self.overrides[name]
                    self.used_overrides.add(name)
            try:
                values[key] = self.interpolate(value, self.lookup_fn(values, None, None))
            except _Unresolved as exc:
                raise self.fail(str(exc), key=f"vars.{key}") from None
        for name in self.overrides:
            bare = name.removeprefix("vars.")
            if name.startswith("vars.") and bare not in values:
                raise self.fail(f"--set {name}: no such variable{_suggest(bare, list(values))}")
        return values

    # ---- variables -----------------------------------------------------------------------------
    def lookup_fn(self, variables: Mapping[str, Any], method: str | None, stage: str | None) -> Callable[[str], Any]:
        base = dict(self.base)

        def lookup(name: str) -> Any:
            if name == "method":
                if method is None:
                    raise _Unresolved("${method} is only defined inside a stage with 'methods'")
                return method
            if name in base:
                return base[name]
            bare = name.removeprefix("vars.")
            if bare in variables:
                return variables[bare]
            if name.startswith("stages."):
                return self.stage_reference(name)
            known = [*base, *variables, "method", "stages.ID.output"]
            raise _Unresolved(f"unknown variable ${{{name}}}{_suggest(bare, known)}")

        return lookup

    def stage_reference(self, name: str) -> Any:
        stage_id, _, key = name.removeprefix("stages.").rpartition(".")
        if not stage_id:
            raise _Unresolved(f"${{{name}}}: expected ${{stages.ID.output}}, ${{stages.ID.outputs}} or ${{stages.ID.OPTION}}")
        if stage_id in self.groups and stage_id not in self.done:
            members = self.groups[stage_id]
            if key == "outputs":
                return [o for s in members for o in s.outputs]
            raise _Unresolved(f"${{{name}}}: stage {stage_id!r} has several methods; use ${{stages.{stage_id}.outputs}} "
                              f"or ${{stages.{stage_id}.METHOD.{key}}} ({', '.join(s.id for s in members)})")
        stage = self.done.get(stage_id)
        if stage is None:
            if stage_id in self.later or stage_id.split(".")[0] in self.later:
                raise _Unresolved(f"${{{name}}}: stage {stage_id!r} comes later in the file; a stage can only use outputs of earlier stages")
            raise _Unresolved(f"${{{name}}}: no earlier stage {stage_id!r}{_suggest(stage_id, [*self.done, *self.groups])}")
        if key == "outputs":
            return list(stage.outputs)
        if key == "output":
            if stage.output is None:
                raise _Unresolved(f"${{{name}}}: stage {stage_id!r} writes no output")
            return stage.output
        if norm_key(key) in stage.settings:
            return stage.settings[norm_key(key)]
        raise _Unresolved(f"${{{name}}}: stage {stage_id!r} has no key {key!r}{_suggest(norm_key(key), list(stage.settings))}")

    def interpolate(self, value: Any, lookup: Callable[[str], Any]) -> Any:
        if isinstance(value, str):
            whole = _VAR.fullmatch(value.strip())
            if whole:
                return lookup(whole.group(1).strip())

            def one(match: re.Match) -> str:
                found = lookup(match.group(1).strip())
                if isinstance(found, (list, dict)):
                    raise _Unresolved(f"${{{match.group(1)}}} is a list; it can only stand alone as a value, not inside text")
                return str(found)

            return _VAR.sub(one, value)
        if isinstance(value, list):
            out = []
            for item in value:
                resolved = self.interpolate(item, lookup)
                out.extend(resolved if isinstance(resolved, list) and not isinstance(item, list) else [resolved])
            return out
        if isinstance(value, dict):
            return {k: self.interpolate(v, lookup) for k, v in value.items()}
        return value

    # ---- stages --------------------------------------------------------------------------------
    def stage(self, raw: Any, index: int, variables: Mapping[str, Any]) -> list[Stage]:
        if not isinstance(raw, dict):
            raise self.fail(f"stage {index} must be a mapping with keys id, uses, with")
        stage_id = raw.get("id")
        if not isinstance(stage_id, str) or not _ID.match(stage_id):
            raise self.fail(f"stage {index} needs an 'id' of letters, digits, '-' and '_' (got {stage_id!r})", key="id")
        if stage_id in self.done or stage_id in self.groups:
            raise self.fail("a stage with this id comes earlier in the file", stage=stage_id, key="id")
        for key in raw:
            if key not in STAGE_KEYS:
                raise self.fail(f"unknown stage key{_suggest(str(key), STAGE_KEYS)}; allowed: {', '.join(STAGE_KEYS)}",
                                stage=stage_id, key=str(key))
        if ("uses" in raw) == ("pipeline" in raw):
            raise self.fail("give exactly one of 'uses' (a command) or 'pipeline' (another pipeline file)", stage=stage_id)
        description = str(raw.get("description") or "")
        if "pipeline" in raw:
            return [self.sub_pipeline(stage_id, raw, variables, description)]
        uses = raw["uses"]
        if command_io(self.group.commands.get(uses)) is None:
            known = [name for name, command in self.group.commands.items() if command_io(command) is not None]
            raise self.fail(f"unknown command {uses!r}{_suggest(str(uses), known)}; a stage uses one of {', '.join(known)}",
                            stage=stage_id, key="uses")
        for key in ("set",):
            if key in raw:
                raise self.fail("'set' belongs to 'pipeline' stages; a command stage takes its options in 'with'", stage=stage_id, uses=uses, key=key)
        base_with = raw.get("with") or {}
        if not isinstance(base_with, dict):
            raise self.fail("'with' must be a mapping of option names to values", stage=stage_id, uses=uses, key="with")
        methods = raw.get("methods")
        if methods is None:
            stage = self.command_stage(stage_id, uses, [base_with], variables, None, description, None)
            self.done[stage_id] = stage
            return [stage]
        if not isinstance(methods, dict) or not methods:
            raise self.fail("'methods' must be a mapping of method names to option overrides", stage=stage_id, uses=uses, key="methods")
        expanded = []
        for method, extra in methods.items():
            if not isinstance(method, str) or not _ID.match(method):
                raise self.fail(f"method names are letters, digits, '-' and '_' (got {method!r})", stage=stage_id, uses=uses, key="methods")
            if extra is not None and not isinstance(extra, dict):
                raise self.fail(f"method {method!r}: expected a mapping of option overrides", stage=stage_id, uses=uses, key="methods")
            member = self.command_stage(f"{stage_id}.{method}", uses, [base_with, extra or {}], variables, method,
                                        description, stage_id)
            self.done[member.id] = member
            expanded.append(member)
        self.groups[stage_id] = expanded
        return expanded

    def command_stage(self, stage_id: str, uses: str, with_raw: Sequence[Mapping[str, Any]], variables: Mapping[str, Any],
                      method: str | None, description: str, group: str | None) -> Stage:
        command = self.group.commands[uses]
        params = command_keys(command)
        io_keys = command_io(command)
        settings = option_settings(with_raw, params, uses, lambda message, key: self.fail(message, stage=stage_id, uses=uses, key=key))
        for name in (stage_id, group):  # --set STAGE.KEY (a methods stage: its id or METHOD's)
            if name is None:
                continue
            for override, value in self.overrides.items():
                prefix, _, key = override.rpartition(".")
                if prefix == name:
                    param = params.get(norm_key(key))
                    if param is None:
                        raise self.fail(f"--set {override}: not an option of {uses}{_suggest(norm_key(key), sorted({canonical_key(p) for p in params.values()}))}",
                                        stage=stage_id, uses=uses)
                    settings[canonical_key(param)] = value
                    self.used_overrides.add(override)
        lookup = self.lookup_fn(variables, method, stage_id)
        for key in list(settings):
            try:
                settings[key] = self.interpolate(settings[key], lookup)
            except _Unresolved as exc:
                raise self.fail(str(exc), stage=stage_id, uses=uses, key=key) from None
        by_key = {canonical_key(p): p for p in params.values()}
        for key, param in by_key.items():
            if param.required and settings.get(key) is None:
                raise self.fail(f"missing required key {key!r}", stage=stage_id, uses=uses)
        for key, value in settings.items():
            settings[key] = self.check_value(stage_id, uses, key, by_key[key], value, key in io_keys.inputs + io_keys.outputs)
        inputs = [str(v) for k in io_keys.inputs if settings.get(k) is not None for v in as_list(settings[k])]
        for key in io_keys.inputs:
            for value in as_list(settings.get(key)):
                if value is not None:
                    self.check_input(stage_id, uses, key, str(value))
                    if path_key(str(value)) not in self.written and Path(str(value)).expanduser().exists():
                        self.sources.setdefault(os.path.realpath(os.path.expanduser(str(value))), stage_id)
        outputs = [p for k in io_keys.outputs if settings.get(k) is not None for p in io_keys.written(k, settings)]
        for out in outputs:
            earlier = self.written.get(path_key(out))
            if earlier is not None:
                raise self.fail(f"{out} is already written by stage {earlier!r}", stage=stage_id, uses=uses)
            self.check_not_a_source(out, stage_id, uses)
            self.written[path_key(out)] = stage_id
        return Stage(stage_id, uses, settings, command_argv(by_key, settings), inputs, outputs, description, group)

    def check_not_a_source(self, out: str, stage_id: str, uses: str | None) -> None:
        """No stage writes over a pipeline file (this one or one it includes) or over a file that a
        stage reads without the pipeline having made it (its source data)."""
        real = os.path.realpath(os.path.expanduser(out))
        for pipeline_file in self.stack:
            if real == os.path.realpath(pipeline_file):
                raise self.fail(f"{out} is the pipeline file {pipeline_file}: a stage must not write over it", stage=stage_id, uses=uses)
        reader = self.sources.get(real)
        if reader is not None:
            whose = "its own input" if reader == stage_id else f"an input of stage {reader!r}"
            raise self.fail(f"{out} is {whose}, which this pipeline does not make: writing it would replace the input; "
                            "choose another output path", stage=stage_id, uses=uses)

    def check_value(self, stage_id: str, uses: str, key: str, param: click.Parameter, value: Any, is_path: bool) -> Any:
        if value is None:
            return None
        many = (isinstance(param, click.Option) and param.multiple) or param.nargs == -1
        if isinstance(value, dict):
            raise self.fail("expected a value or a list, not a mapping", stage=stage_id, uses=uses, key=key)
        if isinstance(value, list) and not many:
            raise self.fail(f"takes one value, not a list of {len(value)}", stage=stage_id, uses=uses, key=key)
        if isinstance(param, click.Option) and param.is_flag:
            if not isinstance(value, bool):
                raise self.fail(f"is a flag: true or false, not {value!r}", stage=stage_id, uses=uses, key=key)
            return value
        items = value if isinstance(value, list) else [value]
        if not is_path:  # paths are checked as inputs and outputs (they may not exist yet)
            for item in items:
                try:
                    param.type.convert(item, param, None)
                except click.BadParameter as exc:
                    raise self.fail(exc.message, stage=stage_id, uses=uses, key=key) from None
        if many:
            return [str(i) if is_path else i for i in items]
        return value

    def check_input(self, stage_id: str, uses: str, key: str, value: str) -> None:
        if path_key(value) in self.written or Path(value).expanduser().exists():
            return
        if key in _LITERAL and _LITERAL[key].match(value):
            return
        registry_field = REGISTRY_FIELDS.get(key)
        if registry_field is not None:
            from ..data.registry import load_registry

            entry = load_registry(self.data_dir).get(value)
            if entry is not None:
                if registry_field == "index":
                    if (entry.index and entry.index.exists()) or (entry.corpus and entry.corpus.exists()):
                        return
                    raise self.fail(f"registry name {value!r}: neither its index {entry.index} nor its corpus {entry.corpus} exists "
                                    f"(data directory {self.data_dir}; set --data-dir)", stage=stage_id, uses=uses, key=key)
                path = getattr(entry, registry_field)
                if path is None:
                    raise self.fail(f"registry name {value!r} has no {registry_field}", stage=stage_id, uses=uses, key=key)
                if not path.exists():
                    raise self.fail(f"registry name {value!r}: its {registry_field} {path} does not exist "
                                    f"(data directory {self.data_dir}; set --data-dir)", stage=stage_id, uses=uses, key=key)
                return
            if key == "index" and "/" not in value and os.sep not in value:
                return  # perhaps a Pyserini prebuilt index: the stage says so when it runs
        later = [s for s in self.later]
        hint = " (a later stage may write it: stages run in file order)" if later else ""
        raise self.fail(f"{value} does not exist and no earlier stage writes it{hint}", stage=stage_id, uses=uses, key=key)

    def sub_pipeline(self, stage_id: str, raw: Mapping[str, Any], variables: Mapping[str, Any], description: str) -> Stage:
        if "with" in raw or "methods" in raw:
            raise self.fail("a 'pipeline' stage takes 'set' (variables of that pipeline), not 'with' or 'methods'", stage=stage_id)
        lookup = self.lookup_fn(variables, None, stage_id)
        try:
            target = Path(str(self.interpolate(raw["pipeline"], lookup)))
            sets = self.interpolate(raw.get("set") or {}, lookup)
        except _Unresolved as exc:
            raise self.fail(str(exc), stage=stage_id, key="pipeline") from None
        if not isinstance(sets, dict):
            raise self.fail("'set' must be a mapping of variable names to values", stage=stage_id, key="set")
        if not target.is_absolute():
            target = self.path.parent / target
        if target.resolve() in self.stack:
            raise self.fail(f"{target} includes itself", stage=stage_id, key="pipeline")
        if not target.is_file():
            raise self.fail(f"pipeline file {target} not found", stage=stage_id, key="pipeline")
        sub = _Loader(target, overrides={str(k): v for k, v in sets.items()}, workdir=None, data_dir=self.data_dir,
                      group=self.group, stack=(*self.stack, target.resolve())).load()
        for out in sub.all_outputs():
            self.check_not_a_source(out, stage_id, None)
            self.written[path_key(out)] = stage_id
        stage = Stage(stage_id, None, {"workdir": str(sub.workdir)}, [], [], sub.all_outputs(), description, None, sub)
        self.done[stage_id] = stage
        return stage


def path_key(path: str) -> str:
    return os.path.normpath(os.path.abspath(os.path.expanduser(str(path))))


def load_pipeline(path: str | os.PathLike[str], group: click.Group, *, overrides: Mapping[str, Any] | None = None,
                  workdir: str | os.PathLike[str] | None = None, data_dir: str | os.PathLike[str] | None = None) -> Pipeline:
    """Read and validate a pipeline file (nothing runs) against the commands of ``group`` (the
    ``routehead-pyserini`` group: ``routehead_pyserini.cli.main``). ``overrides``: ``--set`` values by key."""
    from .. import config

    path = Path(path)
    return _Loader(path, overrides=overrides or {}, workdir=workdir, data_dir=config.data_dir(data_dir),
                   group=group, stack=(path.resolve(),)).load()
