"""``demo`` and ``pipeline run``: chains of the other commands."""
from __future__ import annotations

from pathlib import Path

import click

from .. import config
from .app import POSITIVE, Context, main


@main.command()
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/demo"), show_default=True, help="Folder for the index, the runs and report.md.")
@click.option("--hits", default=20, show_default=True, type=POSITIVE, help="BM25 depth: the candidate list the re-ranker sees.")
@click.option("--model", default=config.DEFAULT_MODEL, show_default=True, help="LLM for the ICR rows; 'none' skips them.")
@click.pass_obj
def demo(obj: Context, output_dir: Path, hits: int, model: str) -> None:
    """Run the demo on the embedded collection: index, BM25, ICR re-ranking, evaluation table.

    The table compares BM25 (Pyserini defaults) with BM25 at Lucene's classic parameters, a random
    order of the same candidates (the control every table here carries), and all-heads attention
    re-ranking (ICR) with the passages in BM25 order and reversed. The demo collection is a smoke
    test written for this project, not evidence of effectiveness.
    """
    from ..pipeline.demo import run_demo

    click.echo(run_demo(output_dir, hits=hits, model=None if model == "none" else model, progress=obj.progress), nl=False)


@main.group()
def pipeline() -> None:
    """YAML pipelines: chains of these commands, validated first, each stage skipped when up to date.

    See pipelines/README.md for the format; pipelines/demo.yaml is the demo.
    """


@pipeline.command("run")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a variable (model=gemma3-270m), the work folder (workdir=DIR) or a stage option (STAGE.OPTION=VALUE); repeatable.")
@click.option("--workdir", default=None, type=click.Path(file_okay=False, path_type=Path), help="Work folder (stage records, logs) [default: the file's 'workdir', else runs/pipelines/NAME].")
@click.option("--dry-run", is_flag=True, help="Validate and print the plan (which stages would run, and why) without running anything.")
@click.option("--force", is_flag=True, help="Run every stage even when its record shows it up to date.")
@click.pass_context
def pipeline_run(ctx: click.Context, file: Path, overrides: tuple[str, ...], workdir: Path | None, dry_run: bool, force: bool) -> None:
    """Run the stages of a pipeline FILE in order, skipping stages whose inputs, settings and outputs are unchanged.

    The whole file is validated first (unknown keys, missing inputs, references to later stages:
    each error names the file, the stage and the key). Each stage runs one routehead-pyserini
    command in this process; a stage that fails stops the pipeline, and running it again resumes at
    that stage. Every run logs to WORKDIR/logs/.
    """
    from ..pipeline.runner import describe_plan, run_pipeline
    from ..pipeline.spec import load_pipeline, parse_overrides

    from ..pipeline.stage_io import same_file

    obj: Context = ctx.obj
    log_file = ctx.find_root().params.get("log_file")
    if log_file and same_file(log_file, file):
        raise click.UsageError(f"--log-file {log_file} is the pipeline file {file}: logging would write into it; choose another log file")
    spec = load_pipeline(file, main, overrides=parse_overrides(overrides), workdir=workdir, data_dir=obj.data_dir)
    outcome = run_pipeline(spec, ctx=ctx, data_dir=obj.data_dir, force=force, dry_run=dry_run)
    if dry_run:
        click.echo(describe_plan(spec, outcome.results), nl=False)
        return
    seconds = sum(r.seconds for r in outcome.results)
    click.echo(f"pipeline {spec.name}: {len(outcome.results)} stages, {outcome.count('ran')} ran, {outcome.count('skipped')} "
               f"up to date ({seconds:.1f} s); log {outcome.log_path}")
