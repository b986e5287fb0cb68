"""Throughput of re-ranking in one process against Ray workers, side by side, and Ray's start-up cost.

Every setting re-ranks the same queries (the first ``--queries`` TREC DL 2019 queries, BM25 top
``--top-k`` passages of the shipped ``bm25_top100.jsonl``) with SmolLM2, all heads, through
``Reranker.rerank_run`` exactly as ``rerank`` does, with a fresh score cache in a temporary folder
(nothing is read from an earlier cache). Each setting runs in its own subprocess, so each Ray
setting starts (and pays for) its own local Ray:

- ``single``: the single-process path (torch with all cores);
- ``workers:N[:C]``: ``rerank --workers N --worker-cpus C`` (C defaults to 1 CPU, one torch thread, per worker).

Reported per setting: start-up seconds (model load; for Ray also ``ray.init`` and the workers'
start, which includes their model loads), scoring seconds, queries per minute while scoring and
end to end (start-up included), and whether the run written has the same bytes as the first
setting's.

    python bench/bench_distributed.py --queries 8 --top-k 20 --output bench/results/distributed.json
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

from isolated import run_child, write_results

DATA = Path(os.environ.get("ROUTEHEAD_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
DEFAULT_SETTINGS = "single,workers:1,workers:2"


def load_inputs(top_k: int, queries: int):
    """A run, topics and texts for the first ``queries`` DL19 queries (BM25 order, top ``top_k``)."""
    from routehead_pyserini.data.corpus import Document
    from routehead_pyserini.firststage.sources import DictTexts
    from routehead_pyserini.data.trec import Hit, Run

    by_qid: dict[str, list[dict]] = {}
    with (DATA / "trec-dl-2019" / "bm25_top100.jsonl").open() as handle:
        for line in handle:
            row = json.loads(line)
            by_qid.setdefault(row["qid"], []).append(row)
    hits, topics, docs = {}, {}, {}
    for qid in list(by_qid)[:queries]:
        rows = sorted(by_qid[qid], key=lambda r: r["rank"])[:top_k]
        hits[qid] = [Hit(r["docid"], float(r["score"])) for r in rows]
        topics[qid] = rows[0]["query"]
        docs.update({r["docid"]: Document(r["docid"], r["text"]) for r in rows})
    return Run(hits), topics, DictTexts(docs)


def run_one(setting: str, top_k: int, queries: int, run_path: Path) -> dict:
    import torch

    from routehead_pyserini.data.trec import write_run

    run, topics, texts = load_inputs(top_k, queries)
    kind, *rest = setting.split(":")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        result = {"setting": setting, "queries": len(run), "top_k": top_k, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
        if kind == "single":
            from routehead_pyserini.engine.models import load_model
            from routehead_pyserini.rerank.reranker import Reranker

            reranker = Reranker(load_model("smollm2-135m"), cache=cache)
            result.update(torch_threads=torch.get_num_threads())
        else:
            import ray

            from routehead_pyserini.rerank.distributed import DistributedReranker, WorkerConfig, WorkerPool

            workers, cpus = int(rest[0]), float(rest[1]) if len(rest) > 1 else 1.0
            ray.init(include_dashboard=False, logging_level=logging.WARNING)
            result.update(workers=workers, cpus_per_worker=cpus, ray_init_seconds=round(time.perf_counter() - started, 2))
            pool = WorkerPool(WorkerConfig("smollm2-135m", cpus=cpus), workers, queries_per_task=1)
            result.update(workers_ready_seconds=round(pool.startup_seconds, 2))
            reranker = DistributedReranker(pool, cache=cache)
        result["startup_seconds"] = round(time.perf_counter() - started, 2)
        scoring_started = time.perf_counter()
        reranked, stats = reranker.rerank_run(run, topics, texts, top_k=top_k, progress=False)
        scoring = time.perf_counter() - scoring_started
        assert stats.cached_queries == 0, "the score cache was not fresh"
    total = time.perf_counter() - started
    write_run(reranked, run_path)
    result.update(scoring_seconds=round(scoring, 2), total_seconds=round(total, 2),
                  queries_per_minute=round(60 * len(run) / scoring, 2),
                  queries_per_minute_end_to_end=round(60 * len(run) / total, 2),
                  model_seconds_per_query=round(stats.seconds_scoring / len(run), 2))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=8, help="DL19 queries per setting")
    parser.add_argument("--top-k", type=int, default=20, help="BM25 candidates per query")
    parser.add_argument("--settings", default=DEFAULT_SETTINGS, help="comma-separated: single, workers:N or workers:N:CPUS")
    parser.add_argument("--output", type=Path, default=None, help="also write the results as JSON")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--run-path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # child process: one setting
        print(json.dumps(run_one(args.one, args.top_k, args.queries, args.run_path)))
        return

    results, reference = [], None
    with tempfile.TemporaryDirectory() as runs:
        for i, setting in enumerate(args.settings.split(",")):
            run_path = Path(runs) / f"{i}.trec"
            result = run_child(__file__, ["--one", setting, "--queries", str(args.queries), "--top-k", str(args.top_k),
                                          "--run-path", str(run_path)], {"setting": setting}, error_lines=3)
            if "failed" not in result:
                reference = reference or run_path.read_bytes()
                result["same_run_as_first"] = run_path.read_bytes() == reference
            results.append(result)
    single = next((r for r in results if r["setting"] == "single" and "failed" not in r), None)
    if single:
        for r in results:
            if "workers" in r:
                r["speedup_vs_single"] = round(r["queries_per_minute"] / single["queries_per_minute"], 2)
                r["startup_overhead_vs_single_seconds"] = round(r["startup_seconds"] - single["startup_seconds"], 2)
    write_results(args.output, {"cpus": os.cpu_count(), "results": results})


if __name__ == "__main__":
    main()
