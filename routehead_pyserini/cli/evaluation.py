"""Evaluation commands: ``evaluate`` (trec_eval measures, paired tests, reports), ``random-order``
(the control) and ``heads`` (what head sets and routers pick)."""
from __future__ import annotations

import os
from pathlib import Path

import click

from ..pipeline.stage_io import pipeline_io
from .app import MEASURE_HELP, POSITIVE, RELEVANCE_LEVEL, Context, main
from .types import WORD


def _report_files(folder: str, _settings) -> list[str]:
    """``--report-dir`` may hold the runs too: a pipeline tracks the report it writes there."""
    return [str(Path(folder) / "report.md"), str(Path(folder) / "report.json")]


@pipeline_io(inputs=("runs", "baseline", "qrels", "router", "heads", "topics"), outputs=("report-dir", "output"),
             expand={"report-dir": _report_files})
@main.command()
@click.argument("runs", nargs=-1, required=True)
@click.option("--qrels", required=True, help="Qrels file (TREC or BEIR TSV) or registry name.")
@click.option("--baseline", "-b", default=None, help="Run to compare against (a path or one of RUNS; default: the first run).")
@click.option("--measure", "-m", "measures", multiple=True, help=MEASURE_HELP + "  [default: nDCG@10 MAP@100 R@100 MRR@10]")
@click.option("-l", "--relevance-level", default=1, show_default=True, type=RELEVANCE_LEVEL, help="Smallest grade counted relevant by binary measures (trec_eval -l).")
@click.option("-c", "--complete", is_flag=True, help="Score judged queries missing from a run as 0 (trec_eval -c).")
@click.option("--test", type=click.Choice(["t-test", "randomization"]), default="t-test", show_default=True, help="Paired significance test.")
@click.option("--top-k", default=None, type=POSITIVE, help="Evaluate only the first K hits of each run.")
@click.option("--common-queries", is_flag=True, help="Evaluate every run on the queries all runs have (e.g. a sampled re-ranking against a full first-stage run).")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text", show_default=True, help="Report format; json includes per-query values.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the report here (atomically) instead of stdout.")
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="Also write report.md, report.json and PNG figures (means with confidence intervals, per-query deltas, heads) into this folder.")
@click.option("--router", "router_path", default=None, type=click.Path(exists=True, dir_okay=False), help="--report-dir: route the evaluated queries with this router file and plot how often it picks each head.")
@click.option("--heads", "heads_path", default=None, type=click.Path(exists=True, dir_okay=False), help="--report-dir: a static head-set file to mark on the heads figure.")
@click.option("--topics", default=None, help="--router: the queries' text (file or registry name) [default: the --qrels name's topics].")
@click.option("--title", default=None, help="--report-dir: the report's title [default: the qrels and the number of runs].")
@click.pass_obj
def evaluate(obj: Context, runs: tuple[str, ...], qrels: str, baseline: str | None, measures: tuple[str, ...], relevance_level: int, complete: bool, test: str, top_k: int | None, common_queries: bool, fmt: str, output: Path | None,
             report_dir: Path | None, router_path: str | None, heads_path: str | None, topics: str | None, title: str | None) -> None:
    """Evaluate TREC runs with trec_eval measures (pytrec_eval) against a baseline run.

    Prints per-run means, per-query wins/ties/losses against the baseline and a paired
    significance test. Run names in the table are the file names without extension. With
    --report-dir, the same numbers also go to report.md / report.json with figures; --router adds
    a layer x head map of the heads it picks for the evaluated queries (the LLM it names is loaded).
    """
    from ..eval.evaluate import DEFAULT_MEASURES, build_report, evaluate_runs, parse_measure
    from ..files import atomic_write_text
    from ..data.registry import lookup
    from ..data.trec import read_qrels, read_run

    if (router_path or heads_path or topics or title) and not report_dir:
        raise click.UsageError("--router, --heads, --topics and --title belong to --report-dir")
    parsed = [parse_measure(m) for m in (measures or DEFAULT_MEASURES)]
    judgements = read_qrels(lookup(qrels, "qrels", obj.data_dir))
    paths = [lookup(r, "run", obj.data_dir) for r in runs]
    _check_distinct(runs, paths)
    if baseline is not None and baseline not in runs:
        base_path = lookup(baseline, "run", obj.data_dir)
        same = [r for r, p in zip(runs, paths) if _same_file(p, base_path)]
        if same:
            baseline = same[0]  # --baseline names one of RUNS by another path
        else:
            paths.insert(0, base_path)
            runs = (baseline, *runs)
    names = _run_names(runs, paths)
    evaluations = evaluate_runs([(name, read_run(path)) for name, path in zip(names, paths)], judgements, parsed,
                                relevance_level=relevance_level, complete=complete, top_k=top_k, common_queries=common_queries,
                                qrels_name=f"--qrels {qrels}", origins=[str(path) for path in paths])
    base_name = names[runs.index(baseline)] if baseline is not None else names[0]
    report = build_report(evaluations, base_name if len(evaluations) > 1 else None, test=test)
    text = report.render(fmt)
    if output:
        atomic_write_text(output, text)
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)
    if report_dir:
        _write_report_dir(obj, report, report_dir, qrels=qrels, relevance_level=relevance_level, router_path=router_path,
                          heads_path=heads_path, topics=topics, title=title or f"Evaluation on {qrels}: {len(evaluations)} runs",
                          extra={"complete": complete, "top_k": top_k, "common_queries": common_queries})
        click.echo(f"wrote report.md, report.json and figures to {report_dir}")


def _write_report_dir(obj: Context, report, report_dir: Path, *, qrels: str, relevance_level: int, router_path: str | None,
                      heads_path: str | None, topics: str | None, title: str, extra: dict) -> None:
    from ..heads.head_set import read_head_set
    from ..data.registry import lookup
    from ..eval.report import ReportSettings, write_report

    routing = None
    if router_path:
        from ..eval.routing_stats import route_topics
        from ..data.trec import read_topics

        qids = sorted(set().union(*(e.per_query for e in report.evaluations)))
        routing = route_topics(router_path, read_topics(lookup(topics or qrels, "topics", obj.data_dir)), qids, progress=obj.progress)
    static = read_head_set(heads_path) if heads_path else None
    write_report(report, report_dir, ReportSettings(title, qrels, relevance_level, extra), routing=routing, static=static,
                 static_path=heads_path)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a == b or os.path.samefile(a, b)  # symbolic and hard links too
    except OSError:
        return False


def _check_distinct(given: tuple[str, ...], paths: list[Path]) -> None:
    """Each run once: the same file twice (by another path, a link, a registered name) would be
    compared with itself under two names."""
    for i, path in enumerate(paths):
        for j in range(i):
            if _same_file(paths[j], path):
                how = "given twice" if given[i] == given[j] else f"the same file as {given[j]}"
                raise click.UsageError(f"run {given[i]} is {how}: give each run once (--baseline may name one of them)")


def _run_names(given: tuple[str, ...], paths: list[Path]) -> list[str]:
    """Short unique names: file stems, or the given strings where stems collide."""
    stems = [p.name[: -len(".trec")] if p.name.endswith(".trec") else p.stem for p in paths]
    return stems if len(set(stems)) == len(stems) else list(given)


@pipeline_io(inputs=("run",), outputs=("output",))
@main.command("random-order")
@click.argument("run")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path), help="TREC run to write.")
@click.option("--top-k", default=None, type=POSITIVE, help="Shuffle only the first K hits of each query (the rest keep their order) [default: all].")
@click.option("--seed", default=0, show_default=True, help="Seed; the order of a query depends only on (seed, qid).")
@click.option("--run-tag", default=None, type=WORD, help="Last column of the run [default: random-seed<SEED>].")
@click.pass_obj
def random_order_cmd(obj: Context, run: str, output: Path, top_k: int | None, seed: int, run_tag: str | None) -> None:
    """Write a random order of a run's candidates: the control every results table carries."""
    from ..data.controls import random_order
    from ..data.registry import lookup
    from ..data.trec import read_run, write_run

    shuffled = random_order(read_run(lookup(run, "run", obj.data_dir)), seed=seed, top_k=top_k)
    write_run(shuffled, output, tag=run_tag or f"random-seed{seed}")
    click.echo(f"wrote a random order of {len(shuffled)} queries to {output}")


@pipeline_io(inputs=("source", "overlay", "topics", "run"), outputs=("plot",))
@main.command("heads")
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.option("--topics", default=None, help="A router SOURCE: the queries to route (file or registry name).")
@click.option("--run", "run_name", default=None, help="A router SOURCE: route only the queries of this run (file or registry name).")
@click.option("--overlay", default=None, type=click.Path(exists=True, dir_okay=False), help="A static head-set file to compare with and mark on the plot.")
@click.option("--plot", default=None, type=click.Path(dir_okay=False, path_type=Path), help="Also draw a layer x head PNG here.")
@click.option("--top", default=15, show_default=True, type=POSITIVE, help="A router SOURCE: list this many of the most routed heads.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_obj
def heads_cmd(obj: Context, source: str, topics: str | None, run_name: str | None, overlay: str | None, plot: Path | None, top: int, as_json: bool) -> None:
    """Show a head-set file, or a router's routing statistics over a query set.

    SOURCE is a head-set file (label --static-heads, --random-heads, train-weights) or a router
    file (train, learned or --knn). A router routes every query of --topics (or those of --run)
    with the LLM it names; the output lists the mean set size, the number of distinct heads and
    the most routed heads, and --plot draws how often each head is picked.
    """
    import json

    from ..eval import plots
    from ..heads.head_set import read_head_set
    from ..data.registry import lookup
    from ..data.trec import UTF8_BOM
    from ..eval.routing_stats import describe_head_set, describe_routing, route_topics

    static = read_head_set(overlay) if overlay else None
    with open(source, "rb") as handle:  # head-set files are JSON; router files are torch archives
        start = handle.read(64)
    head_set = read_head_set(source) if start.removeprefix(UTF8_BOM).lstrip().startswith(b"{") else None
    if head_set is None:
        from ..heads.checkpoint import sniff_router_file

        sniff_router_file(source, start, "neither a head-set file (JSON) nor ")
    if head_set is not None:
        if topics or run_name:
            raise click.UsageError(f"{source} is a head-set file: --topics and --run are for routers")
        shape = head_set.model_shape or (static.model_shape if static else None)
        if plot:
            if shape is None:
                raise click.UsageError(f"{source} does not record its model's shape; cannot plot it")
            share = head_set.mask(shape).numpy().astype(float)
            plots.plot_head_heatmap(share, plot, static=static.heads or () if static else (), shape=shape,
                                    title=f"{Path(source).name}: {head_set.describe()}", colour_label="in the set")
        data = {"file": source, "heads": None if head_set.heads is None else [f"{l}.{h}" for l, h in head_set.heads],
                "weights": head_set.weights, "model": head_set.model_name, "shape": shape,
                "normalise": head_set.normalise, "source": head_set.source}
        click.echo(json.dumps(data, indent=1) + "\n" if as_json else describe_head_set(head_set, source), nl=False)
    else:
        from ..data.trec import read_run, read_topics

        if not topics:
            raise click.UsageError(f"{source} is a router file: give --topics (the queries to route)")
        topic_map = read_topics(lookup(topics, "topics", obj.data_dir))
        qids = read_run(lookup(run_name, "run", obj.data_dir)).qids() if run_name else None
        stats = route_topics(source, topic_map, qids, progress=obj.progress)
        if plot:
            plots.plot_head_heatmap(stats.share, plot, static=static.heads or () if static else (), shape=stats.shape,
                                    title=f"{Path(source).name}: {len(stats.sets)} queries")
        click.echo(json.dumps(stats.to_dict(static), indent=1) + "\n" if as_json else describe_routing(stats, static, top), nl=False)
    if plot:
        click.echo(f"wrote {plot}")
