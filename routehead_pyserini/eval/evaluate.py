"""trec_eval measures through ``pytrec_eval``, and comparisons of runs against a baseline.

Measures are small objects named as in ir_measures: ``nDCG@10``, ``MAP@100``, ``R@100``,
``MRR@10``, ``P@10``, ``MAP``, ``nDCG``. Each maps to a ``trec_eval`` measure (``ndcg_cut_10``,
``map_cut_100``, ``recall_100``, ...). ``MRR@k`` is ``recip_rank`` over the run cut to its top
``k`` (``trec_eval`` has no cut-off for it).

Which queries count — as ``trec_eval`` does: only queries that are in the run **and** have
judgements. Queries of the run with no judgements are skipped; judged queries missing from the run
are skipped too unless ``complete=True`` (``trec_eval -c``), which scores them 0. Both counts are
reported. ``relevance_level`` is ``trec_eval -l``: the smallest grade that counts as relevant for
binary measures (MAP, recall, MRR, P); nDCG always uses the graded judgements as gains.

Comparisons are paired over the queries both runs are scored on: mean per measure, per-query
wins/ties/losses against the baseline, and a two-sided paired t-test (``scipy.stats.ttest_rel``,
the test ``trec_eval``-based comparisons usually report) or, with ``test="randomization"``, a
paired randomization test (sign flips, fixed seed, 10,000 samples).
"""
from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from ..data.checks import INT32_MAX, INT32_MIN, int_problem
from ..data.registry import lookup
from ..data.trec import Qrels, Run, read_qrels, read_run
from ..errors import UserError


class MeasureError(UserError, ValueError):
    """An unknown or malformed measure name."""


class NoOverlapError(UserError, ValueError):
    """A run none of whose queries is judged: every measure would be undefined."""


class RunNameError(UserError, ValueError):
    """Runs of a report that share a name, or a baseline that is none of them."""


@dataclass(frozen=True)
class Measure:
    """A ranking measure, e.g. ``Measure("nDCG", 10)``; ``str()`` gives back ``nDCG@10``."""

    name: str
    cutoff: int | None = None

    def __str__(self) -> str:
        return self.name if self.cutoff is None else f"{self.name}@{self.cutoff}"

    @property
    def trec_eval(self) -> str:
        """The ``pytrec_eval`` measure key."""
        c = self.cutoff
        return {
            "nDCG": "ndcg" if c is None else f"ndcg_cut_{c}",
            "MAP": "map" if c is None else f"map_cut_{c}",
            "R": f"recall_{c}",
            "P": f"P_{c}",
            "MRR": "recip_rank",
        }[self.name]

    @property
    def trec_eval_family(self) -> str:
        """The measure family ``pytrec_eval.RelevanceEvaluator`` is asked for."""
        key = self.trec_eval
        if key.startswith("ndcg_cut"):
            return "ndcg_cut." + str(self.cutoff)
        if key.startswith("map_cut"):
            return "map_cut." + str(self.cutoff)
        if key.startswith("recall_"):
            return "recall." + str(self.cutoff)
        if key.startswith("P_"):
            return "P." + str(self.cutoff)
        return key


_ALIASES = {"ndcg": "nDCG", "map": "MAP", "ap": "MAP", "r": "R", "recall": "R", "p": "P", "mrr": "MRR", "rr": "MRR"}
_NEEDS_CUTOFF = {"R", "P"}
DEFAULT_MEASURES = ("nDCG@10", "MAP@100", "R@100", "MRR@10")


def parse_measure(text: str) -> Measure:
    """``"nDCG@10"`` → ``Measure("nDCG", 10)``; case-insensitive names, aliases RR, AP, Recall."""
    match = re.fullmatch(r"\s*([A-Za-z]+)\s*(?:@\s*([0-9]+))?\s*", text)
    if not match or match.group(1).lower() not in _ALIASES:
        raise MeasureError(f"unknown measure {text!r}; use e.g. nDCG@10, MAP@100, R@100, MRR@10, P@10, MAP, nDCG")
    name = _ALIASES[match.group(1).lower()]
    cutoff = int(match.group(2)) if match.group(2) else None
    if cutoff is not None and cutoff < 1:
        raise MeasureError(f"cut-off must be positive in {text!r}")
    if cutoff is not None and cutoff > INT32_MAX:
        raise MeasureError(f"cut-off {cutoff} is beyond trec_eval's range (1 to {INT32_MAX}) in {text!r}")
    if name in _NEEDS_CUTOFF and cutoff is None:
        raise MeasureError(f"{name} needs a cut-off, e.g. {name}@100")
    return Measure(name, cutoff)


@dataclass
class Evaluation:
    """Per-query values of some measures for one run."""

    run_name: str
    measures: list[Measure]
    per_query: dict[str, dict[str, float]]  # qid -> str(measure) -> value
    unjudged_queries: list[str] = field(default_factory=list)  # in the run, not in the qrels
    missing_queries: list[str] = field(default_factory=list)  # judged, not in the run

    def mean(self, measure: Measure | str) -> float:
        key = str(measure)
        values = [v[key] for v in self.per_query.values()]
        return float(np.mean(values)) if values else float("nan")

    def values(self, measure: Measure | str, qids: Sequence[str]) -> np.ndarray:
        key = str(measure)
        return np.array([self.per_query[q][key] for q in qids], dtype=float)


def _relevance_evaluator(qrels: Qrels, families: set[str], relevance_level: int):
    import pytrec_eval

    return pytrec_eval.RelevanceEvaluator(qrels, families, relevance_level=relevance_level)


def evaluate_run(
    run: Run,
    qrels: Qrels,
    measures: Sequence[Measure | str] = DEFAULT_MEASURES,
    *,
    relevance_level: int = 1,
    complete: bool = False,
    run_name: str = "run",
) -> Evaluation:
    """Score ``run`` against ``qrels`` per query (see the module docstring for which queries count)."""
    parsed = [m if isinstance(m, Measure) else parse_measure(m) for m in measures]
    repeated = [str(m) for i, m in enumerate(parsed) if m in parsed[:i]]
    if repeated:
        raise MeasureError(f"measure {repeated[0]} is given twice (names are case-insensitive): give each measure once")
    problem = int_problem(relevance_level, INT32_MIN, INT32_MAX)
    if problem:
        raise MeasureError(f"relevance level {problem} (trec_eval -l takes a C int)")
    as_dict = run.as_dict()
    judged = {q: d for q, d in qrels.items() if d}
    unjudged = [q for q in as_dict if q not in judged]
    missing = [q for q in judged if q not in as_dict]
    scored = {q: docs for q, docs in as_dict.items() if q in judged}
    per_query: dict[str, dict[str, float]] = {q: {} for q in scored}

    plain = [m for m in parsed if m.name != "MRR"]
    if plain:
        evaluator = _relevance_evaluator(judged, {m.trec_eval_family for m in plain}, relevance_level)
        results = evaluator.evaluate(scored)
        for qid, values in results.items():
            for m in plain:
                per_query[qid][str(m)] = float(values[m.trec_eval])
    for m in (m for m in parsed if m.name == "MRR"):
        cut = _cut(scored, m.cutoff) if m.cutoff else scored
        evaluator = _relevance_evaluator(judged, {"recip_rank"}, relevance_level)
        for qid, values in evaluator.evaluate(cut).items():
            per_query[qid][str(m)] = float(values["recip_rank"])
    for qid in per_query:  # a query whose every hit was cut away still counts, as 0
        for m in parsed:
            per_query[qid].setdefault(str(m), 0.0)
    if complete:
        for qid in missing:
            per_query[qid] = {str(m): 0.0 for m in parsed}
    return Evaluation(run_name, parsed, per_query, unjudged, [] if complete else missing)


def evaluate_runs(runs: Sequence[tuple[str, Run]], qrels: Qrels, measures: Sequence[Measure | str] = DEFAULT_MEASURES, *,
                  relevance_level: int = 1, complete: bool = False, top_k: int | None = None, common_queries: bool = False,
                  qrels_name: str = "the qrels", origins: Sequence[str] | None = None) -> list[Evaluation]:
    """:func:`evaluate_run` of each ``(name, run)``, each cut to its first ``top_k`` hits when given,
    and with ``common_queries`` on the queries every run holds. A run none of whose queries is
    judged is an error (every measure would be undefined), naming its origin (``origins``, e.g. its
    file; default its name) and ``qrels_name``."""
    loaded = [run for _, run in runs]
    if common_queries:
        shared = set.intersection(*(set(r.qids()) for r in loaded)) if loaded else set()
        loaded = [type(r)({q: h for q, h in r.hits.items() if q in shared}) for r in loaded]
    evaluations = []
    for (name, _), run, origin in zip(runs, loaded, origins or [name for name, _ in runs]):
        if top_k:
            run = run.top(top_k)
        evaluation = evaluate_run(run, qrels, measures, relevance_level=relevance_level, complete=complete, run_name=name)
        if not evaluation.per_query:
            raise NoOverlapError(f"{origin}: none of its {len(run)} queries (e.g. {', '.join(run.qids()[:3])}) is judged in "
                                 f"{qrels_name} (e.g. {', '.join(list(qrels)[:3])}); every measure would be undefined")
        evaluations.append(evaluation)
    return evaluations


def evaluate(run: Run | str | os.PathLike, qrels: Qrels | str | os.PathLike, measures: Sequence[Measure | str] = DEFAULT_MEASURES,
             *, relevance_level: int = 1, data_dir: str | os.PathLike | None = None) -> dict[str, float]:
    """Mean of each measure over the judged queries of ``run``: ``{"nDCG@10": 0.63, ...}``.

    ``run`` and ``qrels`` are objects, files or registered names (``routehead-pyserini datasets``);
    per-query values, paired tests and reports are in :func:`evaluate_run` and :func:`build_report`.
    """
    run = run if isinstance(run, Run) else read_run(lookup(str(run), "run", data_dir))
    qrels = qrels if isinstance(qrels, Mapping) else read_qrels(lookup(str(qrels), "qrels", data_dir))
    evaluation = evaluate_run(run, qrels, measures, relevance_level=relevance_level)
    return {str(m): evaluation.mean(m) for m in evaluation.measures}


def _cut(run: Mapping[str, Mapping[str, float]], k: int) -> dict[str, dict[str, float]]:
    """Top ``k`` of each query in ``trec_eval`` order (score descending, ties by docid descending)."""
    out = {}
    for qid, docs in run.items():
        ranked = sorted(docs.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:k]
        out[qid] = dict(ranked)
    return out


# --------------------------------------------------------------------------------------------
# Comparison against a baseline


@dataclass(frozen=True)
class Comparison:
    """One run against the baseline on one measure, paired over ``n`` queries."""

    measure: str
    mean: float
    baseline_mean: float
    wins: int
    ties: int
    losses: int
    p_value: float
    n: int


def paired_p_value(a: np.ndarray, b: np.ndarray, test: str = "t-test", *, samples: int = 10_000, seed: int = 0) -> float:
    """Two-sided p-value for mean(a - b) = 0 over paired samples."""
    diff = np.asarray(a, float) - np.asarray(b, float)
    if len(diff) < 2 or np.allclose(diff, 0.0):
        return 1.0
    if test == "t-test":
        from scipy.stats import ttest_rel

        p = float(ttest_rel(a, b).pvalue)
        return 1.0 if math.isnan(p) else p
    if test == "randomization":
        rng = np.random.default_rng(seed)
        signs = rng.choice([-1.0, 1.0], size=(samples, len(diff)))
        observed = abs(diff.mean())
        null = np.abs((signs * diff).mean(axis=1))
        return float((1 + np.sum(null >= observed - 1e-12)) / (samples + 1))
    raise ValueError(f"unknown test {test!r}; use 't-test' or 'randomization'")


def compare(run: Evaluation, baseline: Evaluation, *, test: str = "t-test", tolerance: float = 1e-9) -> list[Comparison]:
    """Paired comparison of ``run`` against ``baseline`` on every measure of ``run``."""
    qids = sorted(set(run.per_query) & set(baseline.per_query))
    out = []
    for m in run.measures:
        a, b = run.values(m, qids), baseline.values(m, qids)
        diff = a - b
        out.append(
            Comparison(
                measure=str(m),
                mean=float(a.mean()) if len(a) else float("nan"),
                baseline_mean=float(b.mean()) if len(b) else float("nan"),
                wins=int(np.sum(diff > tolerance)),
                ties=int(np.sum(np.abs(diff) <= tolerance)),
                losses=int(np.sum(diff < -tolerance)),
                p_value=paired_p_value(a, b, test),
                n=len(qids),
            )
        )
    return out


# --------------------------------------------------------------------------------------------
# Reports


@dataclass
class Report:
    """Means of several runs, and each run against the baseline (the first run unless named)."""

    evaluations: list[Evaluation]
    baseline: str | None
    comparisons: dict[str, list[Comparison]]
    test: str

    def to_json(self) -> str:
        return json.dumps(
            {
                "baseline": self.baseline,
                "test": self.test,
                "runs": [
                    {
                        "name": e.run_name,
                        "queries": len(e.per_query),
                        "unjudged_queries_skipped": len(e.unjudged_queries),
                        "judged_queries_missing": len(e.missing_queries),
                        "means": {str(m): e.mean(m) for m in e.measures},
                        "per_query": e.per_query,
                        "vs_baseline": [asdict(c) for c in self.comparisons.get(e.run_name, [])],
                    }
                    for e in self.evaluations
                ],
            },
            indent=2,
            sort_keys=False,
        )

    def rows(self) -> tuple[list[str], list[list[str]]]:
        measures = [str(m) for m in self.evaluations[0].measures]
        header = ["run", "queries", *measures]
        if self.baseline:
            header += ["W/T/L", "p"]
        body = []
        for e in self.evaluations:
            comps = {c.measure: c for c in self.comparisons.get(e.run_name, [])}
            cells = [e.run_name, str(len(e.per_query))]
            for m in measures:
                c = comps.get(m)
                mark = "*" if c is not None and c.p_value < 0.05 else ""
                cells.append(f"{e.mean(m):.4f}{mark}")
            if self.baseline:
                first = comps.get(measures[0])
                if first is None:
                    cells += ["(baseline)", ""]
                else:
                    cells += [f"{first.wins}/{first.ties}/{first.losses}", f"{first.p_value:.3g}"]
            body.append(cells)
        return header, body

    def to_text(self) -> str:
        header, body = self.rows()
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in [header, *body]]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines + self._notes()) + "\n"

    def to_markdown(self) -> str:
        header, body = self.rows()
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines + [""] + self._notes()) + "\n"

    def _notes(self) -> list[str]:
        notes = []
        if self.baseline:
            first = self.evaluations[0].measures[0]
            notes.append(
                f"W/T/L and p: per-query wins/ties/losses and {self.test} p-value on {first} against {self.baseline}; "
                f"* marks p < 0.05 against the baseline."
            )
        for e in self.evaluations:
            if e.unjudged_queries:
                notes.append(f"{e.run_name}: {len(e.unjudged_queries)} queries without judgements skipped (as trec_eval).")
            if e.missing_queries:
                notes.append(f"{e.run_name}: {len(e.missing_queries)} judged queries not in the run skipped (use -c to score them 0).")
        return notes

    def render(self, fmt: str) -> str:
        return {"text": self.to_text, "markdown": self.to_markdown, "json": lambda: self.to_json() + "\n"}[fmt]()


def build_report(evaluations: Sequence[Evaluation], baseline: str | None = None, *, test: str = "t-test") -> Report:
    """Compare every evaluation with the one named ``baseline`` (``None``: no comparison)."""
    evaluations = list(evaluations)
    names = [e.run_name for e in evaluations]
    if len(set(names)) != len(names):
        raise RunNameError(f"run names must be unique, got {names}: give each run once, under its own name")
    comparisons: dict[str, list[Comparison]] = {}
    if baseline is not None:
        base = next((e for e in evaluations if e.run_name == baseline), None)
        if base is None:
            raise RunNameError(f"baseline {baseline!r} is not one of the runs {names}: name one of them as the baseline")
        comparisons = {e.run_name: compare(e, base, test=test) for e in evaluations if e is not base}
    return Report(evaluations, baseline, comparisons, test)
