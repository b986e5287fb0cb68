"""Paired comparisons between rows of `loco` reports, per collection: the tables of docs/results.md
that set one configuration against another ("what the heads add", routing against static weights,
int8 against float32, one model against another on the same queries).

Each side is ``LABEL=DIR:ROW`` (a `loco` output folder and a row of its report); a side's runs are
``DIR/<protocol>/<collection>/<row>.trec``. Per collection: both nDCG@10 means over the queries both
runs hold, the difference, the paired t-test p-value, and W/T/L of the first side against the
second; then the mean over collections and how many collections are significantly above/below.

    python scripts/compare_loco.py --collections pipelines/collections/development.yaml \\
        "heads=runs/loco/qwen2.5-coder-0.5b-int8:heads+bm25+dense" "no heads=runs/loco/qwen2.5-coder-0.5b-int8:bm25+dense"
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

ALPHA = 0.05


def side(spec: str) -> tuple[str, Path, str]:
    label, _, rest = spec.partition("=")
    folder, _, row = rest.rpartition(":")
    if not (label and folder and row):
        raise SystemExit(f"expected LABEL=DIR:ROW, got {spec!r}")
    return label, Path(folder), row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first")
    parser.add_argument("second")
    parser.add_argument("--collections", default="pipelines/collections/development.yaml")
    parser.add_argument("--protocol", default="loco")
    parser.add_argument("--measure", default="nDCG@10")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()

    from routehead_pyserini.data.registry import lookup
    from routehead_pyserini.data.trec import read_qrels, read_run
    from routehead_pyserini.eval.evaluate import compare, evaluate_run
    from routehead_pyserini.eval.loco_report import run_file_name
    from routehead_pyserini.heads.pooled import read_collections

    (label_a, dir_a, row_a), (label_b, dir_b, row_b) = side(args.first), side(args.second)
    rows, diffs, up, down = [], [], 0, 0
    print(f"| collection | {label_a} | {label_b} | difference | p | W/T/L | queries |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for col in read_collections(args.collections):
        path_a = dir_a / args.protocol / col.name / run_file_name(row_a)
        path_b = dir_b / args.protocol / col.name / run_file_name(row_b)
        if not (path_a.is_file() and path_b.is_file()):
            print(f"| {col.name} | – | – | | | | |")
            continue
        run_a, run_b = read_run(path_a), read_run(path_b)
        shared = set(run_a.qids()) & set(run_b.qids())
        run_a = type(run_a)({q: h for q, h in run_a.hits.items() if q in shared})
        run_b = type(run_b)({q: h for q, h in run_b.hits.items() if q in shared})
        qrels = read_qrels(lookup(col.qrels_name, "qrels"))
        ev_a = evaluate_run(run_a, qrels, [args.measure], relevance_level=col.relevance_level, run_name=label_a)
        ev_b = evaluate_run(run_b, qrels, [args.measure], relevance_level=col.relevance_level, run_name=label_b)
        c = compare(ev_a, ev_b)[0]
        diff = c.mean - c.baseline_mean
        significant = not math.isnan(c.p_value) and c.p_value < ALPHA
        up += significant and diff > 0
        down += significant and diff < 0
        diffs.append((c.mean, c.baseline_mean))
        rows.append({"collection": col.name, label_a: c.mean, label_b: c.baseline_mean, "p": c.p_value,
                     "wtl": [c.wins, c.ties, c.losses], "n": c.n})
        star = "*" if significant else ""
        print(f"| {col.name} | {c.mean:.4f} | {c.baseline_mean:.4f} | {diff:+.4f}{star} | {c.p_value:.3g} | "
              f"{c.wins}/{c.ties}/{c.losses} | {c.n} |")
    if diffs:
        mean_a = sum(a for a, _ in diffs) / len(diffs)
        mean_b = sum(b for _, b in diffs) / len(diffs)
        print(f"| mean ({len(diffs)} collections) | {mean_a:.4f} | {mean_b:.4f} | {mean_a - mean_b:+.4f} | "
              f"sig. up/down {up}/{down} | | |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
