"""Write each preset's measured cost per query into its preset file, from a `bench/bench_models.py`
run (the rows ``preset:MODEL/NAME``, timed as `rerank` runs them), so that `routehead-pyserini
presets` lists it beside the preset's LOCO figure.

    python bench/bench_models.py --queries 3 --presets MODEL/NAME,... --output bench/results/models.json
    python scripts/record_preset_costs.py bench/results/models.json --reference smollm2-135m/heads+bm25+dense@L20
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="the JSON that bench/bench_models.py --output wrote")
    parser.add_argument("--reference", default="smollm2-135m/heads+bm25+dense@L20",
                        help="the preset every cost is also given relative to (the default the costs were ruled against)")
    parser.add_argument("--presets-dir", type=Path, default=Path("routehead_pyserini/heads/preset_files"))
    args = parser.parse_args()

    from routehead_pyserini.heads.presets import PRESET_KEY, get_preset, write_preset

    data = json.loads(args.results.read_text())
    rows = [r for r in (data["results"] if isinstance(data, dict) else data) if "failed" not in r]
    timed = {r["setting"].removeprefix("preset:"): r for r in rows if str(r.get("setting", "")).startswith("preset:")}
    if args.reference not in timed:
        raise SystemExit(f"{args.results}: no row preset:{args.reference} to measure against")
    reference = timed[args.reference]["wall_s_per_query"]
    commit = data.get("commit", "") if isinstance(data, dict) else ""
    for name, row in timed.items():
        model, _, short = name.partition("/")
        preset = get_preset(short, model, args.presets_dir)
        record = preset.head_set.extra[PRESET_KEY]
        record["cost"] = {"wall_s_per_query": round(row["wall_s_per_query"], 3), "top_k": 20,
                          "queries": row.get("queries"), "peak_rss_gb": round(row.get("peak_rss_gb", 0.0), 2),
                          "machine": "2 CPU cores, 2 torch threads",
                          "relative": f"{row['wall_s_per_query'] / reference:.2f}x {args.reference}",
                          "source": f"bench/bench_models.py ({args.results.name}{', commit ' + commit if commit else ''})"}
        write_preset(preset.head_set, preset.path)
        print(f"{name}: {record['cost']['wall_s_per_query']} s/query ({record['cost']['relative']})")


if __name__ == "__main__":
    main()
