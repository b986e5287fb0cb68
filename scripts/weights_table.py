#!/usr/bin/env python
"""The pointwise tables of docs/results.md (issue #7), assembled from the reports that
`scripts/weights_results.sh MODEL <set>-pointwise` writes (runs/weights/<model>/<set>-pointwise/
report-cv.md, report-vs-icr.md, report-vs-fusion.md): one table per dataset, nDCG@10 per model, with
`*` p < 0.05 against BM25, `†` against pointwise all heads, `§` against the fusion of BM25 and the
bi-encoder alone (paired t-tests), and a closing summary of the best configuration per dataset.

    .venv/bin/python scripts/weights_table.py [--measure nDCG@10]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from routehead_table import read_report

MODELS = {"smollm2-135m": "SmolLM2", "gemma3-270m": "Gemma 3"}
JOBS = {"dl19": "TREC DL 2019 (43 queries)", "vaswani": "Vaswani (93 queries)", "cacm": "CACM (52 queries)",
        "cranfield": "Cranfield, 100-query sample", "scifact-val": "SciFact validation split (50 queries)"}
ROWS = [  # (run name in the reports, label)
    ("BM25", "BM25"), ("random-order", "random order of the top-20 (control)"),
    ("listwise-bm25", "listwise, all heads, BM25 order (ICR)"), ("listwise-reversed", "listwise, all heads, reversed order"),
    ("listwise-both", "listwise, all heads, both orders summed"),
    ("icr-all-heads", "pointwise, all heads"),
    ("cv-pairwise", "static weights, pairwise loss"), ("cv-pairwise-fused", "static weights + BM25, pairwise loss"),
    ("cv-pointwise", "static weights, logistic loss"), ("cv-pointwise-fused", "static weights + BM25, logistic loss"),
    ("cv-soft-router-fused", "soft routing (per-query weights, 16 heads) + BM25"),
    ("cv-bm25-dense", "BM25 + bi-encoder (fusion alone, no head)"),
    ("cv-pointwise-fused-dense", "**static weights + BM25 + bi-encoder**"),
    ("cv-soft-router-fused-dense", "soft routing + BM25 + bi-encoder"),
    ("dense", "bi-encoder alone (all-MiniLM-L6-v2)"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", default="nDCG@10")
    parser.add_argument("--root", type=Path, default=Path("runs/weights"))
    args = parser.parse_args()
    for job, title in JOBS.items():
        folders = {m: args.root / m / f"{job}-pointwise" for m in MODELS}
        if not all((f / "report-cv.md").is_file() for f in folders.values()):
            print(f"### {title}: not run yet\n")
            continue
        cells = {label: [] for _, label in ROWS}
        for model, folder in folders.items():
            vs_bm25 = read_report(folder / "report-cv.md", args.measure)
            others = [read_report(folder / name, args.measure) if (folder / name).is_file() else {}
                      for name in ("report-vs-icr.md", "report-vs-fusion.md")]
            bm25_name = next(name for name, (_, p) in vs_bm25.items() if p is None)
            for run, label in ROWS:
                name = {"BM25": bm25_name, "dense": f"{job}.top20"}.get(run, run)
                if name not in vs_bm25:
                    cells[label].append("–")
                    continue
                value, p = vs_bm25[name]
                marks = "*" if p is not None and p < 0.05 else ""
                for report, mark in zip(others, "†§"):
                    if run in report and report[run][1] is not None and report[run][1] < 0.05:
                        marks += mark
                cells[label].append(f"{value:.4f}{marks}" + (f" (p = {p:.2g})" if p is not None else ""))
        print(f"### {title}\n")
        print("| run | " + " | ".join(MODELS.values()) + " |\n|---|" + "---:|" * len(MODELS))
        for _, label in ROWS:
            if any(c != "–" for c in cells[label]):
                print(f"| {label} | " + " | ".join(cells[label]) + " |")
        print()


if __name__ == "__main__":
    main()
