#!/usr/bin/env python
"""The RouteHead table of docs/results.md, assembled from the reports scripts/routehead_results.sh
writes (runs/routehead/<model>/<job>/report*.md); prints a markdown table of nDCG@10 with
`*` p < 0.05 against BM25, `†` against ICR (all heads) and `‡` against the static top-16 set.

    .venv/bin/python scripts/routehead_table.py [--measure nDCG@10]
    .venv/bin/python scripts/routehead_table.py --root runs/routehead-cv --jobs dl19,vaswani --chosen-on "the training folds"
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

MODELS = {"smollm2-135m": "S", "gemma3-270m": "G"}
JOBS = {"dl19": "DL19", "vaswani": "Vaswani", "cacm": "CACM", "cranfield": "Cranfield", "scifact-val": "SciFact val"}
ROWS = [  # (run name in the reports, label)
    ("BM25", "BM25"), ("random-order", "random order of the top-20"), ("icr-all-heads", "ICR, all heads"),
    ("static1", "best single head (chosen on SciFact)"), ("random", "random head set (16 heads)"),
    ("static16", "static top-16 (QRHead-style)"), ("knn-router", "kNN routing (k = 5, 16 heads)"),
    ("routehead-set", "RouteHead, label-set targets (paper)"), ("routehead", "**RouteHead**, soft targets (16 heads)"),
    ("soft-router", "soft routing: per-query head weights (16 heads)"),
    ("oracle-head", "per-query oracle head"), ("oracle-head-null", "oracle over shuffled scores (null)"),
]


def read_report(path: Path, measure: str) -> dict[str, tuple[float, float | None]]:
    """run -> (value, p-value against the report's baseline or None for the baseline)."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    col, p_col = header.index(measure), header.index("p")
    out = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        value = float(cells[col].rstrip("*"))
        p = cells[p_col]
        out[cells[0]] = (value, float(p) if p else None)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", default="nDCG@10")
    parser.add_argument("--root", type=Path, default=Path("runs/routehead"),
                        help="runs/routehead (trained on SciFact) or runs/routehead-cv (scripts/routehead_cv.sh)")
    parser.add_argument("--jobs", default=",".join(JOBS), help="comma-separated evaluation sets (columns)")
    parser.add_argument("--chosen-on", default="SciFact", help="what the heads were chosen on, for the row labels")
    args = parser.parse_args()
    rows = [(run, label.replace("chosen on SciFact", f"chosen on {args.chosen_on}")) for run, label in ROWS]
    columns = [(m, j) for j in args.jobs.split(",") for m in MODELS]
    cells: dict[str, list[str]] = {label: [] for _, label in rows}
    values: dict[str, list[float]] = {label: [] for _, label in rows}
    for model, job in columns:
        folder = args.root / model / job
        vs_bm25 = read_report(folder / "report.md", args.measure)
        vs_icr = read_report(folder / "report-vs-icr.md", args.measure)
        vs_static = read_report(folder / "report-vs-static.md", args.measure)
        bm25_name = next(name for name, (_, p) in vs_bm25.items() if p is None)
        for run, label in rows:
            name = bm25_name if run == "BM25" else run
            if name not in vs_bm25:
                cells[label].append("–")
                continue
            value, p = vs_bm25[name]
            marks = "*" if p is not None and p < 0.05 else ""
            if run in vs_icr and vs_icr[run][1] is not None and vs_icr[run][1] < 0.05:
                marks += "†"
            if run in vs_static and vs_static[run][1] is not None and vs_static[run][1] < 0.05:
                marks += "‡"
            cells[label].append(f"{value:.4f}{marks}")
            values[label].append(value)
    head = " | ".join(f"{JOBS[j]} {MODELS[m]}" for m, j in columns)
    print(f"| run | {head} | mean |\n|---|" + "---:|" * (len(columns) + 1))
    for _, label in rows:
        if not values[label]:
            continue  # a method these reports do not have
        mean = f"{statistics.mean(values[label]):.4f}" if len(values[label]) == len(columns) else "–"
        print(f"| {label} | " + " | ".join(cells[label]) + f" | {mean} |")


if __name__ == "__main__":
    main()
