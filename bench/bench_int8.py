"""Which int8 implementation `--quantize int8` should use, side by side on one model in one run.

Every head of ``--model`` scores the first ``--queries`` TREC DL 2019 queries at top-20 (pointwise
prompts, 128-token passages: the presets' settings; no score cache), each backend in its own fresh
process after one untimed warm-up query:

- ``float32``: the model as loaded;
- ``routehead``: this package's :mod:`routehead_pyserini.engine.quantize` (int8 per-channel weights,
  int8 per-token activations, ``torch._int_mm``), what ``--quantize int8`` runs;
- ``torch.ao``: ``torch.ao.quantization.quantize_dynamic`` on every ``nn.Linear`` of the decoder
  (fbgemm; deprecated by PyTorch, which says it will be removed);
- ``torchao``: torchao's ``Int8DynamicActivationInt8WeightConfig`` (the maintained successor), when
  torchao is installed (``pip install torchao==0.18.0``; not a dependency of this package).

Reported per backend: wall seconds per query and the speed-up over float32, and against float32's
scores of the same candidates the mean Pearson correlation of the per-head calibrated scores (a
diagnostic; what decides shipping is the LOCO nDCG@10 of presets retrained on int8 scores,
docs/results.md).

    python bench/bench_int8.py --model qwen2.5-coder-0.5b --queries 5 --output bench/results/int8-backends.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from isolated import run_child, write_results

BACKENDS = ("float32", "routehead", "torch.ao", "torchao")


def child(model_name: str, backend: str, queries: int, scores_out: str) -> None:
    import torch

    from routehead_pyserini.firststage.jvm import ensure_jvm

    ensure_jvm()
    from routehead_pyserini.engine.models import load_model
    from routehead_pyserini.firststage.sources import TextSpec, candidate_run, text_source
    from routehead_pyserini.rerank.reranker import PromptSettings, Reranker

    run = candidate_run("trec-dl-2019")
    qids = run.qids()[:queries + 1]
    texts, topics = text_source(TextSpec(index="trec-dl-2019"))
    model = load_model(model_name, quantize="int8" if backend == "routehead" else None)
    if backend == "torch.ao":
        model.model.model = torch.ao.quantization.quantize_dynamic(model.base_model, {torch.nn.Linear}, dtype=torch.qint8)
    elif backend == "torchao":
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

        quantize_(model.base_model, Int8DynamicActivationInt8WeightConfig())
    reranker = Reranker(model, "all", settings=PromptSettings(doc_max_tokens=128, mode="pointwise"), batch_size=5, cache=False)
    warm, timed = type(run)({qids[0]: run[qids[0]]}), type(run)({q: run[q] for q in qids[1:]})
    list(reranker.iter_scores(warm, topics, texts, top_k=20, progress=False))
    started = time.perf_counter()
    scores = {item.qid: item.scores.calibrated for item in reranker.iter_scores(timed, topics, texts, top_k=20, progress=False)}
    wall = time.perf_counter() - started
    torch.save(scores, scores_out)
    print(json.dumps({"backend": backend, "model": model_name, "queries": len(timed), "wall_s_per_query": wall / len(timed)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--child", nargs=4, metavar=("MODEL", "BACKEND", "QUERIES", "SCORES"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]), args.child[3])
        return
    import torch

    folder = Path(tempfile.mkdtemp(prefix="bench-int8-"))
    results = [run_child(__file__, ["--child", args.model, b, str(args.queries), str(folder / f"{b}.pt")], {"backend": b}, error_lines=2)
               for b in BACKENDS]
    base = torch.load(folder / "float32.pt")
    for result in results:
        if "failed" in result:
            continue
        result["speedup"] = results[0]["wall_s_per_query"] / result["wall_s_per_query"]
        mine = torch.load(folder / f"{result['backend']}.pt")
        result["head_score_pearson_mean"] = sum(
            float(torch.corrcoef(torch.stack([mine[q].flatten(), base[q].flatten()]))[0, 1]) for q in base) / len(base)
    print(json.dumps(results, indent=1))
    write_results(args.output, results)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
