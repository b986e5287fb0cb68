"""Running a loaded pipeline (:func:`.spec.load_pipeline`): each stage's click command in this
process, skipped when its record (:mod:`.manifest`) shows it up to date, logged to a file per run."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import click

from . import manifest
from ..errors import UserError, os_error_message
from .spec import Pipeline, PipelineError, Stage, path_key

logger = logging.getLogger(__name__)
# what a stage printed: already on the console, so it goes to the run's log file only
stage_output = logging.getLogger(__name__ + ".output")
stage_output.propagate = False


@dataclass
class StageResult:
    pipeline: str
    stage: str
    status: str  # ran | skipped | failed | would run | would skip
    reason: str = ""
    seconds: float = 0.0


@dataclass
class RunOutcome:
    results: list[StageResult]
    log_path: Path | None = None  # None for a dry run

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)


def input_fingerprints(stage: Stage, data_dir: Path) -> dict[str, str | None]:
    """Content hash of each input: a file or folder, or the files a registry name stands for."""
    out: dict[str, str | None] = {}
    for value in stage.inputs:
        digest = manifest.path_sha256(value)
        if digest is None:
            digest = _registry_fingerprint(value, data_dir)
        out[value] = digest
    return out


def _registry_fingerprint(name: str, data_dir: Path) -> str | None:
    import hashlib

    from ..data.registry import load_registry

    entry = load_registry(data_dir).get(name)
    if entry is None:
        return None  # a literal (--heads all) or a prebuilt index name: part of the command line
    digest = hashlib.sha256(b"registry\0")
    for key in ("corpus", "topics", "qrels", "run", "index"):
        path = getattr(entry, key)
        if path is None or (key == "index" and entry.corpus is not None):
            continue  # a registered index built from its corpus counts as its corpus
        digest.update(f"{key}\0{manifest.path_sha256(path)}\0".encode())
    return digest.hexdigest()


class _Runner:
    def __init__(self, *, group: click.Group, ctx: click.Context, data_dir: Path, force: bool, dry_run: bool):
        self.group, self.ctx, self.data_dir, self.force, self.dry_run = group, ctx, data_dir, force, dry_run
        self.results: list[StageResult] = []
        self.pending: set[str] = set()  # outputs of stages that would run (dry run)

    def run(self, pipeline: Pipeline) -> None:
        total = len(pipeline.stages)
        for number, stage in enumerate(pipeline.stages, start=1):
            label = f"[{pipeline.name} {number}/{total}] {stage.id}"
            if stage.sub is not None:
                logger.info("%s: pipeline %s", label, stage.sub.path)
                self.run(stage.sub)
                continue
            self.run_stage(pipeline, stage, label)

    def run_stage(self, pipeline: Pipeline, stage: Stage, label: str) -> None:
        record_file = manifest.record_path(pipeline.workdir, stage.id)
        waiting = [i for i in stage.inputs if path_key(i) in self.pending]
        if self.dry_run and waiting:
            reason = f"input {waiting[0]} is written by an earlier stage that runs first"
        else:
            inputs = input_fingerprints(stage, self.data_dir)
            reason = "forced (--force)" if self.force else manifest.why_stale(manifest.read_record(record_file), stage.argv, inputs)
        if self.dry_run:
            self.results.append(StageResult(pipeline.name, stage.id, "would skip" if reason is None else "would run", reason or "up to date"))
            if reason is not None:
                self.pending.update(path_key(o) for o in stage.outputs)
            return
        if reason is None:
            logger.info("%s (%s): up to date, skipped", label, stage.uses)
            self.results.append(StageResult(pipeline.name, stage.id, "skipped", "up to date"))
            return
        logger.info("%s (%s): running (%s): %s", label, stage.uses, reason, stage.command_line)
        started = time.perf_counter()
        try:
            captured = self.invoke(stage)
        except (UserError, click.ClickException, OSError) as exc:
            seconds = time.perf_counter() - started
            message = (exc.format_message() if isinstance(exc, click.ClickException)
                       else os_error_message(exc) if isinstance(exc, OSError) else str(exc))
            logger.error("%s (%s) failed after %.1f s: %s", label, stage.uses, seconds, message, exc_info=logger.isEnabledFor(logging.DEBUG))
            self.results.append(StageResult(pipeline.name, stage.id, "failed", message, seconds))
            raise PipelineError(f"{pipeline.path}: stage {stage.id!r} ({stage.uses}) failed: {message}\n"
                                f"  command: {stage.command_line}\n"
                                f"  finished stages keep their records; run the pipeline again to resume here") from exc
        except BaseException as exc:  # Ctrl-C, SIGTERM, a bug: the command line reports it in one line
            seconds = time.perf_counter() - started
            if isinstance(exc, KeyboardInterrupt):
                why = f"interrupted ({str(exc) or 'Ctrl-C'})"
                logger.error("%s (%s) %s after %.1f s: its partial outputs are removed and it has no record; run the "
                             "pipeline again to resume here", label, stage.uses, why, seconds, exc_info=logger.isEnabledFor(logging.DEBUG))
            else:
                why = f"stopped by {type(exc).__name__}"
                logger.error("%s (%s) %s after %.1f s", label, stage.uses, why, seconds, exc_info=logger.isEnabledFor(logging.DEBUG))
            self.results.append(StageResult(pipeline.name, stage.id, "failed", why, seconds))
            raise
        seconds = time.perf_counter() - started
        if captured.strip():
            click.echo(captured, nl=False)
            for line in captured.rstrip("\n").splitlines():
                stage_output.info("%s: %s", stage.id, line)
        missing = [o for o in stage.outputs if manifest.path_sha256(o) is None]
        if missing:
            raise PipelineError(f"{pipeline.path}: stage {stage.id!r} ({stage.uses}) finished without writing {missing[0]}")
        record = manifest.StageRecord(stage.id, stage.argv, input_fingerprints(stage, self.data_dir),
                                      {o: manifest.path_sha256(o) for o in stage.outputs}, round(seconds, 3))
        manifest.write_record(record_file, record)
        logger.info("%s (%s): done in %.1f s", label, stage.uses, seconds)
        self.results.append(StageResult(pipeline.name, stage.id, "ran", reason, seconds))

    def invoke(self, stage: Stage) -> str:
        """Run the stage's click command in this process; return what it printed."""
        command = self.group.commands[str(stage.uses)]
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            with command.make_context(str(stage.uses), list(stage.argv), parent=self.ctx) as sub_ctx:
                command.invoke(sub_ctx)
        return buffer.getvalue()


@contextlib.contextmanager
def log_to_file(path: Path) -> Iterator[Path]:
    """Also log INFO and above to ``path`` for the duration (console handlers keep their level)."""
    root = logging.getLogger()
    previous = root.level
    touched = [(h, h.level) for h in root.handlers]
    for handler, level in touched:
        handler.setLevel(max(level, previous))
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root.addHandler(handler)
    stage_output.addHandler(handler)
    stage_output.setLevel(logging.INFO)
    root.setLevel(min(previous, logging.INFO))
    try:
        yield path
    finally:
        root.removeHandler(handler)
        stage_output.removeHandler(handler)
        handler.close()
        root.setLevel(previous)
        for h, level in touched:
            h.setLevel(level)


def run_pipeline(pipeline: Pipeline, *, ctx: click.Context, data_dir: str | os.PathLike[str] | None = None,
                 force: bool = False, dry_run: bool = False) -> RunOutcome:
    """Run (or, with ``dry_run``, plan) every stage in order; stop at the first that fails.

    ``ctx``: the click context of the caller (its ``obj`` carries ``--data-dir`` and ``--quiet``;
    its root command is the group whose commands the stages call).
    Each run logs to ``<workdir>/logs/<name>-<UTC time>.log``.
    """
    from .. import config

    runner = _Runner(group=ctx.find_root().command, ctx=ctx, data_dir=config.data_dir(data_dir), force=force, dry_run=dry_run)
    if dry_run:
        runner.run(pipeline)
        return RunOutcome(runner.results)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    with log_to_file(pipeline.workdir / "logs" / f"{pipeline.name}-{stamp}.log") as log_path:
        logger.info("pipeline %s (%s): %d stages, work folder %s, log %s", pipeline.name, pipeline.path,
                    len(pipeline.stages), pipeline.workdir, log_path)
        started = time.perf_counter()
        try:
            runner.run(pipeline)
        finally:
            outcome = RunOutcome(runner.results, log_path)
            logger.info("pipeline %s: %d ran, %d skipped, %d failed in %.1f s", pipeline.name, outcome.count("ran"),
                        outcome.count("skipped"), outcome.count("failed"), time.perf_counter() - started)
    return outcome


def describe_plan(pipeline: Pipeline, results: Sequence[StageResult], *, indent: str = "") -> str:
    """The dry-run listing: each stage, whether it would run and why, and its command line."""
    by_id = {(r.pipeline, r.stage): r for r in results}
    lines = [f"{indent}pipeline {pipeline.name} ({pipeline.path}): work folder {pipeline.workdir}"]
    for number, stage in enumerate(pipeline.stages, start=1):
        if stage.sub is not None:
            lines.append(f"{indent}{number:>2}. {stage.id}: pipeline {stage.sub.path}")
            lines.append(describe_plan(stage.sub, results, indent=indent + "    ").rstrip("\n"))
            continue
        result = by_id.get((pipeline.name, stage.id))
        status = f"{result.status} ({result.reason})" if result else "not reached"
        lines.append(f"{indent}{number:>2}. {stage.id} [{stage.uses}]: {status}")
        lines.append(f"{indent}      {stage.command_line}")
    return "\n".join(lines) + "\n"
