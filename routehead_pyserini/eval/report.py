"""The evaluation report of a set of runs: ``report.md``, ``report.json`` and PNG figures in one folder.

Every number comes from :mod:`.evaluate` (the same :class:`~.evaluate.Report` that
``routehead-pyserini evaluate`` prints), so the report and the command always agree; this module
adds confidence intervals, the per-measure comparison table and the figures (:mod:`.plots`):

- ``plot-means.png``: the first measure per run, mean with a 95% confidence interval
  (Student's t over the run's queries: mean ± t(0.975, n-1) · sd / sqrt(n));
- ``plot-deltas.png``: per-query differences of the first measure against the baseline;
- ``plot-heads.png`` (with a router and/or a static head set): a layer x head heatmap of how often
  the router picks each head over the evaluated queries, with the static set boxed.

``report.json`` holds everything ``evaluate --format json`` holds (same keys, same values), plus
``title``, ``settings``, ``confidence_intervals``, ``figures`` and ``routing``.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .evaluate import Report
from ..files import atomic_write_text
from ..heads.head_set import HeadSet
from .routing_stats import RoutingStats, describe_routing
from . import plots

LEVEL = 0.95


def confidence_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Student's t interval of the mean of ``values`` (a single value or none: the mean itself)."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return (float("nan"), float("nan"))
    mean = float(values.mean())
    if len(values) < 2:
        return (mean, mean)
    from scipy.stats import t

    half = float(t.ppf(0.5 + level / 2, len(values) - 1)) * float(values.std(ddof=1)) / math.sqrt(len(values))
    return (mean - half, mean + half)


@dataclass
class ReportSettings:
    """What the numbers were computed from, printed at the top of the report."""

    title: str = "Evaluation"
    qrels: str = ""
    relevance_level: int = 1
    extra: dict = field(default_factory=dict)  # e.g. complete, top_k, common_queries


def _intervals(report: Report) -> dict[str, dict[str, list[float]]]:
    out = {}
    for e in report.evaluations:
        qids = sorted(e.per_query)
        out[e.run_name] = {str(m): list(confidence_interval(e.values(m, qids))) for m in e.measures}
    return out


def _deltas(report: Report, measure: str) -> dict[str, np.ndarray]:
    """Per run (not the baseline), per-query ``measure`` minus the baseline's, on their common queries."""
    base = next(e for e in report.evaluations if e.run_name == report.baseline)
    out = {}
    for e in report.evaluations:
        if e is base:
            continue
        qids = sorted(set(e.per_query) & set(base.per_query))
        out[e.run_name] = e.values(measure, qids) - base.values(measure, qids)
    return out


def write_report(report: Report, out_dir: str | os.PathLike[str], settings: ReportSettings | None = None, *,
                 routing: RoutingStats | None = None, static: HeadSet | None = None, static_path: str | None = None) -> list[Path]:
    """Write ``report.md``, ``report.json`` and the figures into ``out_dir``; returns the paths written."""
    settings = settings or ReportSettings()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    measure = str(report.evaluations[0].measures[0])
    intervals = _intervals(report)
    names = [e.run_name for e in report.evaluations]
    figures: dict[str, str] = {}

    plots.plot_means(names, [e.mean(measure) for e in report.evaluations], [tuple(intervals[n][measure]) for n in names],
                     measure, out_dir / "plot-means.png", baseline=report.baseline, note=f"{LEVEL:.0%} t interval")
    figures["means"] = "plot-means.png"
    if report.baseline and len(names) > 1:
        plots.plot_deltas(_deltas(report, measure), measure, report.baseline, out_dir / "plot-deltas.png")
        figures["deltas"] = "plot-deltas.png"
    static_heads = list(static.heads or ()) if static is not None else []
    if routing is not None or static_heads:
        shape = routing.shape if routing is not None else static.model_shape
        if shape is not None:
            title = (f"{routing.kind} router over {len(routing.sets)} queries" if routing is not None else "static head set")
            plots.plot_head_heatmap(routing.share if routing is not None else None, out_dir / "plot-heads.png",
                                    static=static_heads, shape=tuple(shape), title=title)
            figures["heads"] = "plot-heads.png"

    data = json.loads(report.to_json())
    data.update({
        "title": settings.title,
        "settings": {"qrels": settings.qrels, "relevance_level": settings.relevance_level, **settings.extra},
        "confidence_intervals": {"level": LEVEL, "method": "student-t", "runs": intervals},
        "figures": figures,
        "routing": None if routing is None else routing.to_dict(static),
        "static_heads": None if static is None else {"file": static_path, "heads": [f"{l}.{h}" for l, h in static_heads],
                                                     "source": static.source},
    })
    paths = [out_dir / "report.json", out_dir / "report.md"]
    atomic_write_text(paths[0], json.dumps(data, indent=2) + "\n")
    atomic_write_text(paths[1], render_markdown(report, settings, intervals, figures, routing, static, static_path))
    return paths + [out_dir / f for f in figures.values()]


def render_markdown(report: Report, settings: ReportSettings, intervals: dict, figures: dict[str, str],
                    routing: RoutingStats | None, static: HeadSet | None, static_path: str | None) -> str:
    measure = str(report.evaluations[0].measures[0])
    extra = "; ".join(f"{k} {v}" for k, v in settings.extra.items() if v not in (None, False))
    lines = [f"# {settings.title}", "",
             f"Qrels `{settings.qrels}`, relevance level {settings.relevance_level}"
             + (f"; baseline `{report.baseline}`, paired {report.test}" if report.baseline else "")
             + (f"; {extra}" if extra else "") + ".", "",
             "## Measures", "", report.to_markdown().rstrip("\n"), ""]
    if report.baseline and report.comparisons:
        lines += ["## Against the baseline", "",
                  "Every measure, paired over the queries both runs are scored on.", "",
                  "| run | measure | mean | baseline | Δ | W/T/L | p | queries |", "|---|---|---:|---:|---:|---:|---:|---:|"]
        for name, comparisons in report.comparisons.items():
            for c in comparisons:
                lines.append(f"| {name} | {c.measure} | {c.mean:.4f} | {c.baseline_mean:.4f} | {c.mean - c.baseline_mean:+.4f} "
                             f"| {c.wins}/{c.ties}/{c.losses} | {c.p_value:.3g} | {c.n} |")
        lines.append("")
    lines += [f"## {measure}: {LEVEL:.0%} confidence intervals", "", "Student's t over each run's queries.", "",
              "| run | queries | mean | interval |", "|---|---:|---:|---|"]
    for e in report.evaluations:
        lo, hi = intervals[e.run_name][measure]
        lines.append(f"| {e.run_name} | {len(e.per_query)} | {e.mean(measure):.4f} | [{lo:.4f}, {hi:.4f}] |")
    lines.append("")
    if routing is not None or static is not None:
        lines += ["## Heads", ""]
        if static is not None:
            lines.append(f"Static set `{static_path}`: {static.describe()}" + (f" ({static.source})" if static.source else "") + ".")
            lines.append("")
        if routing is not None:
            lines += ["```", describe_routing(routing, static).rstrip("\n"), "```", ""]
    captions = {"means": f"{measure} per run with {LEVEL:.0%} confidence intervals",
                "deltas": f"per-query {measure} against {report.baseline}",
                "heads": "how often the router picks each head (layer x head); the static set boxed"}
    if figures:
        lines += ["## Figures", ""] + [line for k, v in figures.items() for line in (f"![{captions[k]}]({v})", "")]
    return "\n".join(lines)
