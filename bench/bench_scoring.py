"""Cost of per-head ICR scoring against the naive way, side by side in one run.

Methods, each run in its own subprocess so that its peak RSS is its own:

- ``routehead``: this package's scorer (one prefill over the documents, query and "N/A" suffixes
  reusing its KV cache, softmax rows only for the query tokens), all heads;
- ``naive``: eager attention with ``output_attentions=True`` over the full prompt, once with the
  query and once with "N/A", reading the query rows out of the returned maps;
- ``sdpa-floor``: one plain SDPA forward of the base model over prefix + query suffix and nothing
  else — the physical floor for a method that must read the whole prompt once.

Prompts: the first ``--queries`` DL19 queries with their BM25 top-k passages (the shipped
candidates with text), built by :func:`routehead_pyserini.engine.prompt.build_windows` exactly as
``rerank`` builds them. Where the naive method's attention maps alone would exceed
``--naive-max-gb`` it is not run and its estimated map size is reported instead.

    python bench/bench_scoring.py --top-k 20 --top-k 100 --queries 3 --output bench/results/scoring.json
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
METHODS = ("routehead", "naive", "sdpa-floor")


def load_prompts(model, top_k: int, queries: int):
    from routehead_pyserini.data.corpus import Document
    from routehead_pyserini.engine.windows import build_windows

    rows = [json.loads(line) for line in (DATA / "trec-dl-2019" / "bm25_top100.jsonl").open()]
    by_qid: dict[str, list[dict]] = {}
    for row in rows:
        by_qid.setdefault(row["qid"], []).append(row)
    prompts = []
    for qid in list(by_qid)[:queries]:
        hits = sorted(by_qid[qid], key=lambda r: r["rank"])[:top_k]
        docs = [Document(h["docid"], h["text"]) for h in hits]
        prompts.append(build_windows(model.tokenizer, hits[0]["query"], docs, max_context=model.spec.max_context))
    return prompts


def naive_map_gb(model, prompts) -> float:
    """Size of the attention maps ``output_attentions=True`` returns for the longest window."""
    longest = max(w.prefix_len + len(w.query_suffix_ids) for windows in prompts for w in windows)
    spec = model.spec
    return spec.num_layers * spec.num_heads * longest**2 * 4 / 2**30


def run_one(method: str, top_k: int, queries: int) -> dict:
    import torch

    from routehead_pyserini.engine.models import load_model
    from routehead_pyserini.engine.scoring import score_prompt

    torch.manual_seed(0)
    model = load_model("smollm2-135m")
    prompts = load_prompts(model, top_k, queries)
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    if method == "naive":
        from transformers import AutoModelForCausalLM

        eager = AutoModelForCausalLM.from_pretrained(model.source, attn_implementation="eager", dtype=torch.float32).eval()
        del model.model
        base = eager.model
    tokens = 0
    started = time.perf_counter()
    with torch.inference_mode():
        for windows in prompts:
            for w in windows:
                tokens += w.prefix_len + len(w.query_suffix_ids)
                if method == "routehead":
                    score_prompt(model, w)
                elif method == "sdpa-floor":
                    ids = torch.tensor([w.prefix_ids + w.query_suffix_ids])
                    model.base_model(input_ids=ids, use_cache=False)
                else:
                    for suffix, (a, b) in ((w.query_suffix_ids, w.query_span), (w.calib_suffix_ids, w.calib_span)):
                        ids = torch.tensor([w.prefix_ids + suffix])
                        out = base(input_ids=ids, output_attentions=True, use_cache=False)
                        rows = slice(w.prefix_len + a, w.prefix_len + b)
                        per_layer = [att[0, :, rows, :] for att in out.attentions]
                        _ = [torch.stack([m[..., s:e].sum(-1).mean(-1) for s, e in w.doc_spans], -1) for m in per_layer]
                        del out, per_layer
    seconds = time.perf_counter() - started
    return {
        "method": method,
        "top_k": top_k,
        "queries": len(prompts),
        "windows": sum(len(w) for w in prompts),
        "mean_prompt_tokens": tokens / len(prompts),
        "seconds_per_query": seconds / len(prompts),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "rss_after_load_gb": rss_loaded,
        "torch_threads": __import__("torch").get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--top-k", type=int, action="append", help="candidate list sizes (repeatable) [20]")
    parser.add_argument("--queries", type=int, default=3, help="DL19 queries per setting")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--naive-max-gb", type=float, default=12.0, help="skip the naive method when its maps alone exceed this")
    parser.add_argument("--output", type=Path, default=None, help="also write the results as JSON")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # child process: one method, one setting
        method, top_k = args.one.split(":")
        print(json.dumps(run_one(method, int(top_k), args.queries)))
        return

    results = []
    for top_k in args.top_k or [20]:
        for method in args.methods.split(","):
            if method == "naive":
                from routehead_pyserini.engine.models import load_model

                model = load_model("smollm2-135m")
                gb = naive_map_gb(model, load_prompts(model, top_k, args.queries))
                del model
                if gb > args.naive_max_gb:
                    results.append({"method": method, "top_k": top_k, "skipped": f"attention maps alone would be {gb:.0f} GB"})
                    print(json.dumps(results[-1]), flush=True)
                    continue
            results.append(run_child(__file__, ["--one", f"{method}:{top_k}", "--queries", str(args.queries)],
                                     {"method": method, "top_k": top_k}))
    write_results(args.output, results)


if __name__ == "__main__":
    main()
