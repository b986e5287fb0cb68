"""Tables of a leave-one-collection-out or pooled-CV evaluation, with their controls.

Every table has, per held-out collection and as the mean over collections: BM25 (the first stage),
a random order of the same top-k candidates (seed 0), pointwise all heads unweighted, the
bi-encoder alone (when the cosines were loaded), any extra runs given (today's listwise ICR
default, say) and each learned method. Each cell is nDCG@10; ``*`` marks p < 0.05 (paired t-test
over the collection's queries) against BM25, ``†`` against static weights + BM25 (``heads+bm25``).
A second table gives wins/ties/losses against BM25.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from ..data.controls import random_order
from .evaluate import Evaluation, compare, evaluate_run
from .loco import Protocol, all_heads_hits, dense_hits, first_stage_hits, mean, runs_of
from ..heads.pooled import PooledData
from ..data.trec import Run
from ..files import atomic_write_text
from ..data.trec import write_run

MEASURES = ("nDCG@10", "MAP@100", "MRR@10")
BASELINE = "bm25"
STATIC = "heads+bm25"
ALPHA = 0.05


@dataclass
class Cell:
    """One row on one collection: means, and paired tests against BM25 and the static weights."""

    means: dict[str, float]
    n: int
    p_bm25: float = float("nan")
    p_static: float = float("nan")
    wtl_bm25: tuple[int, int, int] = (0, 0, 0)


@dataclass
class Table:
    protocol: str
    top_k: int
    rows: list[str]
    collections: list[str]
    cells: dict[str, dict[str, Cell]] = field(default_factory=dict)  # row -> collection -> cell
    fitted: dict[str, list[dict]] = field(default_factory=dict)

    def mean(self, row: str, measure: str = "nDCG@10") -> float:
        return mean({c: self.cells[row][c].means[measure] for c in self.collections if c in self.cells.get(row, {})})

    def significant_wins(self, row: str) -> tuple[int, int]:
        """(collections where ``row`` is significantly above BM25, significantly below)."""
        up = down = 0
        for c in self.collections:
            cell = self.cells.get(row, {}).get(c)
            if cell is None or math.isnan(cell.p_bm25) or cell.p_bm25 >= ALPHA:
                continue
            base = self.cells[BASELINE][c].means["nDCG@10"]
            up += cell.means["nDCG@10"] > base
            down += cell.means["nDCG@10"] < base
        return up, down

    def to_markdown(self) -> str:
        head = "| method | " + " | ".join(self.collections) + " | mean |"
        lines = [head, "|---|" + "---:|" * (len(self.collections) + 1)]
        for row in self.rows:
            cells = []
            for c in self.collections:
                cell = self.cells.get(row, {}).get(c)
                if cell is None:
                    cells.append("–")
                    continue
                mark = ("*" if cell.p_bm25 < ALPHA else "") + ("†" if cell.p_static < ALPHA else "")
                cells.append(f"{cell.means['nDCG@10']:.4f}{mark}")
            complete = all(c in self.cells.get(row, {}) for c in self.collections)
            lines.append(f"| {row} | " + " | ".join(cells) + (f" | {self.mean(row):.4f} |" if complete else " | – |"))
        lines.append("")
        lines.append("Wins/ties/losses against BM25 (nDCG@10, per query); significant above/below BM25 on how many collections:")
        lines.append("")
        lines.append("| method | " + " | ".join(self.collections) + " | sig. up/down |")
        lines.append("|---|" + "---:|" * (len(self.collections) + 1))
        for row in self.rows:
            if row == BASELINE:
                continue
            cells = ["/".join(map(str, self.cells[row][c].wtl_bm25)) if c in self.cells.get(row, {}) else "–" for c in self.collections]
            up, down = self.significant_wins(row)
            lines.append(f"| {row} | " + " | ".join(cells) + f" | {up}/{down} |")
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        return json.dumps({"protocol": self.protocol, "top_k": self.top_k, "rows": self.rows, "collections": self.collections,
                           "cells": {r: {c: asdict(cell) for c, cell in cs.items()} for r, cs in self.cells.items()},
                           "means": {r: self.mean(r) for r in self.rows}, "fitted": self.fitted},
                          indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, data: Mapping) -> "Table":
        """The table of one :meth:`to_json` object (an entry of a `loco` folder's ``report.json``)."""
        cells = {r: {c: Cell(**{**cell, "wtl_bm25": tuple(cell["wtl_bm25"])}) for c, cell in cs.items()}
                 for r, cs in data["cells"].items()}
        return cls(data["protocol"], data["top_k"], list(data["rows"]), list(data["collections"]), cells, dict(data["fitted"]))


def collection_runs(data: PooledData, protocol: Protocol, collection: str, top_k: int,
                    extra: Mapping[str, Run] = ()) -> dict[str, Run]:
    """Every row's run on one collection: the controls, ``extra`` runs, then the protocol's methods."""
    queries = data.of(collection)
    bm25 = Run({q.qid: first_stage_hits(q) for q in queries})
    runs = {BASELINE: bm25, "random order": random_order(bm25, seed=0, top_k=top_k),
            "pointwise all heads": Run({q.qid: all_heads_hits(q) for q in queries})}
    if data.dense_model is not None:
        runs["bi-encoder alone"] = Run({q.qid: dense_hits(q) for q in queries})
    for name, run in dict(extra).items():
        runs[name] = Run({qid: run[qid] for qid in bm25.qids() if qid in run.hits})
    for method, hits in runs_of(data, protocol, collection).items():
        runs[method] = Run(hits)
    return runs


def build_table(data: PooledData, protocol: Protocol, top_k: int,
                extra: Mapping[str, Mapping[str, Run]] | None = None,
                measures: Sequence[str] = MEASURES) -> Table:
    """Evaluate every row on every collection (``extra``: collection -> row -> run)."""
    table = Table(protocol.name, top_k, [], [c.name for c in data.collections], fitted=protocol.fitted)
    for col in data.collections:
        runs = collection_runs(data, protocol, col.name, top_k, (extra or {}).get(col.name, {}))
        qrels = data.qrels[col.name]
        evaluations: dict[str, Evaluation] = {
            name: evaluate_run(run, qrels, measures, relevance_level=col.relevance_level, run_name=name)
            for name, run in runs.items()}
        for name, ev in evaluations.items():
            if name not in table.rows:
                table.rows.append(name)
            cell = Cell({str(m): ev.mean(m) for m in ev.measures}, len(ev.per_query))
            if name != BASELINE:
                first = compare(ev, evaluations[BASELINE])[0]
                cell.p_bm25, cell.wtl_bm25 = first.p_value, (first.wins, first.ties, first.losses)
            if STATIC in evaluations and name != STATIC:
                cell.p_static = compare(ev, evaluations[STATIC])[0].p_value
            table.cells.setdefault(name, {})[col.name] = cell
    return table


def run_file_name(row: str) -> str:
    """A row's run file name (``heads+bm25`` -> ``heads+bm25.trec``, spaces as dashes)."""
    return row.replace(" ", "-").replace("/", "-") + ".trec"


def write_tables(tables: Sequence[Table], data: PooledData, protocols: Mapping[str, Protocol], out_dir,
                 extra: Mapping[str, Mapping[str, Run]] | None = None, *, title: str = "", notes: Sequence[str] = ()) -> None:
    """``report.md``, ``report.json`` and every row's run (``<protocol>/<collection>/<row>.trec``) under ``out_dir``."""
    from pathlib import Path


    out = Path(out_dir)
    for table in tables:
        for col in data.collections:
            runs = collection_runs(data, protocols[table.protocol], col.name, table.top_k, (extra or {}).get(col.name, {}))
            for row, run in runs.items():
                path = out / table.protocol / col.name / run_file_name(row)
                path.parent.mkdir(parents=True, exist_ok=True)
                write_run(run, path, tag=row.replace(" ", "-"))
    parts = [f"# {title or 'Leave-one-collection-out and pooled cross-validation'}", ""]
    parts += [f"- {line}" for line in notes] + ([""] if notes else [])
    for table in tables:
        parts += [f"## {table.protocol}", "", table.to_markdown()]
    atomic_write_text(out / "report.md", "\n".join(parts))
    atomic_write_text(out / "report.json", "[" + ",".join(t.to_json() for t in tables) + "]\n")
