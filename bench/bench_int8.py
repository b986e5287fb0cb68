"""Is int8 dynamic quantisation of the linear layers worth shipping (issue: only if it pays)?

The shipped default (SmolLM2, pointwise, the preset's heads and layer cap) scores the first
``--queries`` TREC DL 2019 queries at top-20 twice in one process, no score cache, each after one
untimed warm-up query: float32 as shipped, then with ``torch.ao.quantization.quantize_dynamic`` on
every ``nn.Linear`` (int8 weights, activations quantised per batch).
Reported: wall seconds per query of each, the speed-up, the Spearman rank correlation of the
per-head calibrated scores (every head the preset uses, every candidate), and nDCG@10 of the
fused scores against the qrels over the same queries. The bar to ship it: >= 1.5x faster, rank
correlation >= 0.99, nDCG@10 within +-0.005.

    python bench/bench_int8.py --queries 43 --output bench/results/int8.json
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from isolated import write_results


def spearman(a, b) -> float:
    import torch

    def ranks(x):
        order = torch.argsort(x)
        r = torch.empty_like(x)
        r[order] = torch.arange(len(x), dtype=x.dtype)
        return r

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from routehead_pyserini.data.registry import lookup
    from routehead_pyserini.data.trec import read_qrels
    from routehead_pyserini.eval.evaluate import evaluate_run
    from routehead_pyserini.firststage.jvm import ensure_jvm

    ensure_jvm()
    from routehead_pyserini.firststage.sources import TextSpec, candidate_run, text_source
    from routehead_pyserini.rerank.reranker import Reranker

    run = candidate_run("trec-dl-2019")
    run = type(run)({q: run[q] for q in run.qids()[:args.queries]})
    texts, topics = text_source(TextSpec(index="trec-dl-2019"))
    qrels = read_qrels(lookup("trec-dl-2019", "qrels"))
    reranker = Reranker.from_preset(cache=False)
    mask = reranker.head_set.mask(reranker.model.spec.shape)
    results = {}
    for name in ("float32", "int8"):
        if name == "int8":
            reranker.model.model = torch.ao.quantization.quantize_dynamic(reranker.model.model, {torch.nn.Linear}, dtype=torch.qint8)
            reranker.prefix_cache = type(reranker.prefix_cache)() if reranker.prefix_cache is not None else None
        warm = type(run)({run.qids()[0]: run[run.qids()[0]]})
        reranker.rerank_run(warm, topics, texts, progress=False)  # loads the bi-encoder, warms the kernels: not timed
        started = time.perf_counter()
        out, _ = reranker.rerank_run(run, topics, texts, progress=False)
        wall = time.perf_counter() - started
        scores = {}
        for qid in run.qids():  # per-head scores of the same candidates (cache off: computed again, not timed)
            docs = [texts.get(h.docid) for h in run[qid][:reranker.top_k]]
            scores[qid] = reranker.score(topics[qid], docs, qid=qid).calibrated[mask].flatten()
        ndcg = evaluate_run(out, qrels, ["nDCG@10"]).mean("nDCG@10")
        results[name] = {"wall_s_per_query": wall / len(run), "ndcg@10": ndcg, "scores": scores}
        print(name, results[name]["wall_s_per_query"], ndcg, flush=True)
    rho = [spearman(results["float32"]["scores"][q], results["int8"]["scores"][q]) for q in run.qids()]
    summary = {"queries": len(run), "top_k": reranker.top_k,
               "float32": {k: v for k, v in results["float32"].items() if k != "scores"},
               "int8": {k: v for k, v in results["int8"].items() if k != "scores"},
               "speedup": results["float32"]["wall_s_per_query"] / results["int8"]["wall_s_per_query"],
               "head_score_spearman_min": min(rho), "head_score_spearman_mean": sum(rho) / len(rho),
               "ndcg@10_difference": results["int8"]["ndcg@10"] - results["float32"]["ndcg@10"]}
    summary["ships"] = (summary["speedup"] >= 1.5 and summary["head_score_spearman_min"] >= 0.99
                        and abs(summary["ndcg@10_difference"]) <= 0.005)
    print(summary, flush=True)
    write_results(args.output, summary)


if __name__ == "__main__":
    main()
