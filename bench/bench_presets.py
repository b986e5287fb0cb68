"""What the shipped default costs against today's pointwise path, the bi-encoder and BM25, in one run.

On the first ``--queries`` TREC DL 2019 queries at top-20 (and ``--queries-100`` at top-100), each
method in its own fresh process (so that peak memory and start-up are its own), SmolLM2, no score
cache (every query is computed):

- ``bm25``: the shipped run as it is (reading it);
- ``bi-encoder``: the packaged all-MiniLM-L6-v2 cosine of each candidate;
- ``pointwise, all 30 layers``: every head, one prompt per candidate, no shared template prefix
  (the path before the presets);
- ``preset (prefix + layer cap)``: the default preset's heads only, the template head shared, the
  forward stopped at the preset's deepest layer.

Per method: wall and CPU seconds per query, peak RSS, prompt tokens per query, the FLOP floor of
the layers and tokens it runs at this machine's measured fp32 peak (78 GFLOP/s on 2 cores) and the
ratio of its time to that floor. nDCG@10 is the preset's leave-one-collection-out figure on DL19
(trained without DL19) as the preset records it; for the others, from their runs over all 43 queries.

    python bench/bench_presets.py --queries 10 --queries-100 3 --output bench/results/presets.json
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

from isolated import PEAK_FLOPS, layer_flops_per_token, run_child, write_results



def child(method: str, queries: int, top_k: int) -> None:
    from routehead_pyserini.firststage.jvm import ensure_jvm

    ensure_jvm()
    from routehead_pyserini.firststage.sources import TextSpec, candidate_run, text_source

    run = candidate_run("trec-dl-2019")
    run = type(run)({q: run[q] for q in run.qids()[:queries]})
    texts, topics = text_source(TextSpec(index="trec-dl-2019"))
    tokens = layers_run = 0
    started, cpu0 = time.perf_counter(), time.process_time()
    if method == "bm25":
        pass
    elif method == "bi-encoder":
        from routehead_pyserini.firststage.dense import PACKAGED, dense_rerank, load_encoder

        dense_rerank(load_encoder(PACKAGED), run, topics, texts, top_k=top_k, progress=False)
    else:
        from routehead_pyserini.heads.presets import default_preset
        from routehead_pyserini.rerank.reranker import PromptSettings, Reranker

        preset = default_preset("smollm2-135m")
        settings = PromptSettings(**{k: v for k, v in preset.prompt_settings.items() if k != "top_k"})
        heads = "all" if method == "pointwise-all" else preset.head_set
        reranker = Reranker("smollm2-135m", heads, settings=settings, batch_size=5, cache=False,
                            share_prefix=method != "pointwise-all")
        model_config = reranker.model.model.config.get_text_config()
        for item in reranker.iter_scores(run, topics, texts, top_k=top_k, progress=False):
            tokens += item.scores.info["tokens"]
        layers_run = model_config.num_hidden_layers if heads == "all" else preset.head_set.deepest_layer + 1
        flops = tokens * layers_run * layer_flops_per_token(model_config)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
    result = {"method": method, "top_k": top_k, "queries": queries, "wall_s_per_query": wall / queries,
              "cpu_s_per_query": cpu / queries, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
              "prompt_tokens_per_query": tokens / queries if tokens else 0, "layers_run": layers_run}
    if tokens:
        floor = flops / PEAK_FLOPS / queries
        result.update({"flop_floor_s_per_query": floor, "cpu_over_floor": cpu / queries / floor})
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--queries-100", type=int, default=3)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--child", nargs=3, metavar=("METHOD", "QUERIES", "TOP_K"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]))
        return
    results = []
    for top_k, n in ((20, args.queries), (100, args.queries_100)):
        for method in ("bm25", "bi-encoder", "pointwise-all", "preset"):
            results.append(run_child(__file__, ["--child", method, str(n), str(top_k)],
                                     {"method": method, "top_k": top_k}, error_lines=3))
    by = {(r["method"], r["top_k"]): r for r in results if "failed" not in r}
    for top_k in (20, 100):
        old, new, dense = (by.get((m, top_k)) for m in ("pointwise-all", "preset", "bi-encoder"))
        if old and new:
            print(f"top-{top_k}: preset {old['wall_s_per_query'] / new['wall_s_per_query']:.2f}x faster than pointwise all layers"
                  + (f"; {new['wall_s_per_query'] / dense['wall_s_per_query']:.2f}x the bi-encoder's wall time" if dense else ""))
    write_results(args.output, results)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
