"""One table of `loco` reports side by side: a row per method, a column per report, the mean
nDCG@10 over the collections (and, in brackets, how many collections are significantly above/below
BM25). For reports over the same queries (the same collections file), e.g. several models on the
same fixed samples; `scripts/compare_loco.py` gives the paired per-collection test of any two cells.

    python scripts/models_table.py "SmolLM2-135M=runs/loco/smollm2-135m-sample40" \\
        "Qwen 0.5B int8=runs/loco/qwen2.5-coder-0.5b-int8-sample40" [--protocol loco]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def column(spec: str, protocol: str) -> tuple[str, dict[str, str]]:
    """``LABEL=DIR`` as its label and a formatted cell per method of DIR/report.json's ``protocol`` table."""
    from routehead_pyserini.eval.loco_report import BASELINE, Table

    label, _, folder = spec.partition("=")
    if not (label and folder):
        raise SystemExit(f"expected LABEL=DIR, got {spec!r}")
    path = Path(folder) / "report.json"
    tables = [Table.from_json(t) for t in json.loads(path.read_text()) if t["protocol"] == protocol]
    if not tables:
        raise SystemExit(f"{path}: no {protocol} table")
    table = tables[0]
    cells = {}
    for method in table.rows:
        up, down = table.significant_wins(method)
        cells[method] = f"{table.mean(method):.4f}" + (f" ({up}/{down})" if method != BASELINE else "")
    return label, cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("columns", nargs="+", help="LABEL=DIR, a `loco` output folder")
    parser.add_argument("--protocol", default="loco", choices=("loco", "pooled-cv"))
    args = parser.parse_args()
    columns = [column(spec, args.protocol) for spec in args.columns]
    methods = list(dict.fromkeys(m for _, cells in columns for m in cells))
    print("| method | " + " | ".join(label for label, _ in columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for method in methods:
        print(f"| {method} | " + " | ".join(cells.get(method, "–") for _, cells in columns) + " |")


if __name__ == "__main__":
    main()
