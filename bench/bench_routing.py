"""Cost of routing, and the speed-up of routed re-ranking over all heads, side by side in one run.

On the first ``--queries`` DL19 queries (BM25 top-20, prompts as ``rerank`` builds them), SmolLM2:

- ``all heads``: :func:`routehead_pyserini.engine.scoring.score_prompt` over all 30 x 9 heads;
- ``routed, deepest layer L``: the same prompt, only the heads of a routed set whose deepest head
  is in layer ``L`` (the forward stops there) — for each ``--deepest`` value;
- ``routing``: embedding the query text (middle layer) and one router forward, per query.

The router and head sets are synthetic stand-ins of the right shape (what they select does not
change the cost, only how many layers run). Every method runs on the same prompts in this process,
one after the other, after one warm-up prompt.

    python bench/bench_routing.py --queries 3 --deepest 8 --deepest 14 --deepest 18 --output bench/results/routing.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from bench_scoring import load_prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=3)
    parser.add_argument("--deepest", type=int, action="append", help="deepest routed layer (repeatable) [8, 14, 18]")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    from routehead_pyserini.engine.models import load_model
    from routehead_pyserini.engine.query_embedding import embed_queries
    from routehead_pyserini.heads.router import RouterConfig, train_router
    from routehead_pyserini.engine.scoring import score_prompt

    model = load_model("smollm2-135m")
    prompts = [windows[0] for windows in load_prompts(model, 20, args.queries)]
    layers, heads = model.spec.shape
    score_prompt(model, prompts[0])  # warm-up

    def timed(selection) -> float:
        started = time.perf_counter()
        for prompt in prompts:
            score_prompt(model, prompt, heads=selection)
        return (time.perf_counter() - started) / len(prompts)

    results = [{"method": "all heads", "layers_run": layers, "seconds_per_query": timed(None)}]
    for deepest in args.deepest or [8, 14, 18]:
        selection = [(deepest, 0), (deepest // 2, 1), (1, 2)]  # three heads, the deepest in layer `deepest`
        results.append({"method": f"routed, deepest layer {deepest}", "layers_run": deepest + 1,
                        "seconds_per_query": timed(selection)})

    queries = [p.query for p in prompts]
    g = torch.Generator().manual_seed(0)
    hidden = model.model.config.get_text_config().hidden_size
    fake = train_router(torch.randn(64, hidden, generator=g),
                        torch.rand(64, layers, heads, generator=g) > 0.97, RouterConfig(epochs=2, patience=1))
    started = time.perf_counter()
    for query in queries:
        fake.route(embed_queries(model, [query], progress=False))
    results.append({"method": "routing (query embedding, middle layer, + router)", "layers_run": layers // 2 + 1,
                    "seconds_per_query": (time.perf_counter() - started) / len(queries)})
    base = results[0]["seconds_per_query"]
    for row in results:
        row["vs_all_heads"] = row["seconds_per_query"] / base
        print(json.dumps(row), flush=True)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
