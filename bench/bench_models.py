"""What each packaged model costs per query, in float32 and int8, at each layer cap, beside the
bi-encoder and today's shipped default, in one run.

On the first ``--queries`` TREC DL 2019 queries at top-20, pointwise prompts (128-token passages, the
presets' settings), no score cache, each setting in its own fresh process (its own peak memory and
start-up), after one untimed warm-up query:

- ``bi-encoder``: the packaged all-MiniLM-L6-v2 cosine of each candidate;
- ``default``: the shipped default preset as `rerank` runs it (its model, quantisation, heads and cap,
  fused with BM25 and the bi-encoder); ``preset:MODEL/NAME`` (``--presets``): any other preset so;
- ``MODEL QUANT @L``: every head of layers 0..L of MODEL (the forward stops after layer L), the
  template prefix shared: what a preset capped at L costs, whichever heads it weights.

Per setting: wall and CPU seconds per query, peak RSS, prompt tokens per query, and the ratio of its
CPU time to the FLOP floor of the layers and tokens it runs at this machine's fp32 matrix-multiply
peak (78 GFLOP/s on 2 cores; for int8 settings the same float floor, so a ratio below 1 is the
int8 kernels' gain). Wall times are only comparable within one run (the host is shared).

    python bench/bench_models.py --queries 5 --output bench/results/models.json
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

from isolated import PEAK_FLOPS, layer_flops_per_token, run_child, write_results

SETTINGS = [  # (model, quantisation, caps: the last one is the model's last layer)
    ("smollm2-135m", "none", (20, 29)),
    ("qwen2.5-coder-0.5b", "none", (5, 11, 17, 23)),
    ("qwen2.5-coder-0.5b", "int8", (5, 11, 17, 23)),
    ("qwen2.5-coder-1.5b", "none", (6, 13, 20, 27)),
    ("qwen2.5-coder-1.5b", "int8", (6, 13, 20, 27)),
]


def child(model: str, quantize: str, cap: int, queries: int) -> None:
    from routehead_pyserini.firststage.jvm import ensure_jvm

    setting = model
    ensure_jvm()
    from routehead_pyserini.firststage.sources import TextSpec, candidate_run, text_source

    run = candidate_run("trec-dl-2019")
    qids = run.qids()[:queries + 1]
    warm, timed = type(run)({qids[0]: run[qids[0]]}), type(run)({q: run[q] for q in qids[1:]})
    texts, topics = text_source(TextSpec(index="trec-dl-2019"))
    tokens, layers_run, flops_per_token = 0, 0, 0.0
    preset = None
    if model == "default" or model.startswith("preset:"):
        from routehead_pyserini.heads.presets import default_preset, get_preset

        name = model.removeprefix("preset:")
        preset = default_preset("smollm2-135m") if model == "default" else get_preset(name.split("/")[1], name.split("/")[0])
    from routehead_pyserini.rerank.reranker import needs_model

    if model == "bi-encoder":
        from routehead_pyserini.firststage.dense import PACKAGED, dense_rerank, load_encoder

        encoder = load_encoder(PACKAGED)
        dense_rerank(encoder, warm, topics, texts, top_k=20, progress=False)
        started, cpu0 = time.perf_counter(), time.process_time()
        dense_rerank(encoder, timed, topics, texts, top_k=20, progress=False)
    elif preset is not None and not needs_model(preset.head_set):  # a fusion-only preset: `rerank` loads no LLM
        from routehead_pyserini.rerank.reranker import rerank_fusion_only

        model, quantize, cap = "fusion (no LLM)", "none", -1
        rerank_fusion_only(preset.head_set, warm, topics, texts, top_k=20, progress=False, use_cache=False)
        started, cpu0 = time.perf_counter(), time.process_time()
        rerank_fusion_only(preset.head_set, timed, topics, texts, top_k=20, progress=False, use_cache=False)
    else:
        from routehead_pyserini.heads.head_set import HeadSet, from_pairs
        from routehead_pyserini.rerank.reranker import PromptSettings, Reranker

        if preset is not None:  # a preset as `rerank` runs it
            reranker = Reranker.from_preset(preset.name, preset.model, cache=False)
            model, quantize, cap = reranker.model.name, "int8" if reranker.model.fingerprint.endswith("|int8") else "none", \
                reranker.head_set.deepest_layer
        else:
            settings = PromptSettings(doc_max_tokens=128, mode="pointwise")
            reranker = Reranker(model, HeadSet(), settings=settings, batch_size=5, cache=False,
                                quantize=None if quantize == "none" else quantize)
            spec = reranker.model.spec
            reranker.head_set = from_pairs([(layer, head) for layer in range(cap + 1) for head in range(spec.num_heads)])
        fused = reranker.head_set.weights is not None  # the default: fused scores and cosines, as `rerank` writes them
        reranker.rerank_run(warm, topics, texts, top_k=20, progress=False)  # loads the bi-encoder too when fused
        started, cpu0 = time.perf_counter(), time.process_time()
        if fused:
            reranker.rerank_run(timed, topics, texts, top_k=20, progress=False)
        else:
            for item in reranker.iter_scores(timed, topics, texts, top_k=20, progress=False):
                tokens += item.scores.info["tokens"]
        layers_run = cap + 1
        flops_per_token = layer_flops_per_token(reranker.model.model.config.get_text_config())
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
    n = len(timed)
    result = {"setting": setting, "model": model, "quantize": quantize, "cap": cap, "queries": n, "wall_s_per_query": wall / n,
              "cpu_s_per_query": cpu / n, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
              "prompt_tokens_per_query": tokens / n if tokens else 0, "layers_run": layers_run}
    if tokens:
        floor = tokens * layers_run * flops_per_token / PEAK_FLOPS / n
        result.update({"flop_floor_s_per_query": floor, "cpu_over_floor": cpu / n / floor})
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--only", default=None, help="only settings whose model contains this text")
    parser.add_argument("--quantize", choices=("none", "int8"), default=None,
                        help="only the model settings of this quantisation (the bi-encoder and presets are always timed)")
    parser.add_argument("--last-cap", default=None,
                        help="comma-separated models timed at their last layer only (no cap curve), e.g. qwen2.5-coder-1.5b")
    parser.add_argument("--presets", default="smollm2-135m/heads+bm25+dense@L20",
                        help="comma-separated MODEL/NAME presets timed as `rerank` runs them, beside the default")
    parser.add_argument("--child", nargs=4, metavar=("MODEL", "QUANTIZE", "CAP", "QUERIES"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]), int(args.child[3]))
        return
    plan = [("bi-encoder", "none", 0), ("default", "none", 0)]
    plan += [(f"preset:{p}", "none", 0) for p in args.presets.split(",") if p]
    last_only = set(args.last_cap.split(",")) if args.last_cap else set()
    plan += [(m, q, c) for m, q, caps in SETTINGS for c in (caps[-1:] if m in last_only else caps)
             if (not args.only or args.only in m) and (not args.quantize or args.quantize == q)]
    results = [run_child(__file__, ["--child", m, q, str(c), str(args.queries)], {"model": m, "quantize": q, "cap": c},
                         error_lines=3) for m, q, c in plan]
    base = results[1]  # the shipped default: every cost is also given relative to it
    if "failed" not in base:
        for r in results:
            if "failed" not in r:
                r["relative_to_default"] = r["wall_s_per_query"] / base["wall_s_per_query"]
    write_results(args.output, results)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
