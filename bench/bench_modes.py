"""Cost of the prompt modes side by side: listwise (bm25, reversed, both orders) against pointwise,
with and without padded batches, on the same queries and candidates.

Each setting runs in its own subprocess (so that its peak RSS is its own) through
:class:`routehead_pyserini.rerank.reranker.Reranker` exactly as ``rerank`` scores a query, all heads, no
score cache. Candidates: the first ``--queries`` TREC DL 2019 queries with the BM25 passages of
the shipped candidates file (``bm25_top100.jsonl``). Besides wall time the script reports the
process CPU time per query, which a busy machine disturbs less than wall time.

    python bench/bench_modes.py --top-k 20 --queries 3 --output bench/results/modes.json

A setting is ``mode:order:batch`` (``--settings``, comma-separated); the default list covers
listwise bm25 / reversed / both at batch 1, listwise bm25 at batch 4 (the re-ranker scores
listwise prompts one at a time whatever the batch size, so this row repeats batch 1 and shows the
timing noise), and pointwise at batch 1, 5 and 20.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

from isolated import run_child, write_results

DATA = Path(os.environ.get("ROUTEHEAD_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
DEFAULT_SETTINGS = ("listwise:bm25:1,listwise:reversed:1,listwise:both:1,listwise:bm25:4,"
                    "pointwise:bm25:1,pointwise:bm25:5,pointwise:bm25:20")


def load_queries(top_k: int, queries: int):
    from routehead_pyserini.data.corpus import Document

    by_qid: dict[str, list[dict]] = {}
    with (DATA / "trec-dl-2019" / "bm25_top100.jsonl").open() as handle:
        for line in handle:
            row = json.loads(line)
            by_qid.setdefault(row["qid"], []).append(row)
    selected = []
    for qid in list(by_qid)[:queries]:
        hits = sorted(by_qid[qid], key=lambda r: r["rank"])[:top_k]
        selected.append((qid, hits[0]["query"], [Document(h["docid"], h["text"]) for h in hits]))
    return selected


def run_one(setting: str, top_k: int, queries: int) -> dict:
    import torch

    from routehead_pyserini.engine.models import load_model
    from routehead_pyserini.rerank.reranker import PromptSettings, Reranker

    mode, order, batch = setting.split(":")
    torch.manual_seed(0)
    model = load_model("smollm2-135m")
    reranker = Reranker(model, settings=PromptSettings(mode=mode, order=order), cache=False, batch_size=int(batch))
    selected = load_queries(top_k, queries)
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    tokens = prompts = 0
    cpu_started, started = time.process_time(), time.perf_counter()
    for qid, query, docs in selected:
        scores = reranker.score(query, docs, qid)
        tokens += scores.info.get("tokens", 0)
        prompts += scores.info.get("prompts", scores.info.get("windows", 1))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {
        "setting": setting, "mode": mode, "order": order, "batch_size": int(batch), "top_k": top_k,
        "queries": len(selected), "prompts_per_query": prompts / len(selected),
        "tokens_per_query": tokens / len(selected),
        "seconds_per_query": seconds / len(selected), "cpu_seconds_per_query": cpu / len(selected),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "rss_after_load_gb": rss_loaded, "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--top-k", type=int, action="append", help="candidate list sizes (repeatable) [20]")
    parser.add_argument("--queries", type=int, default=3, help="DL19 queries per setting")
    parser.add_argument("--settings", default=DEFAULT_SETTINGS, help="comma-separated mode:order:batch settings")
    parser.add_argument("--output", type=Path, default=None, help="also write the results as JSON")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # child process: one setting, one list size
        setting, top_k = args.one.rsplit("@", 1)
        print(json.dumps(run_one(setting, int(top_k), args.queries)))
        return

    results = []
    for top_k in args.top_k or [20]:
        for setting in args.settings.split(","):
            results.append(run_child(__file__, ["--one", f"{setting}@{top_k}", "--queries", str(args.queries)],
                                     {"setting": setting, "top_k": top_k}))
    write_results(args.output, results)


if __name__ == "__main__":
    main()
