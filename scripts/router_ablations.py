#!/usr/bin/env python
"""Router ablations behind docs/results.md: target kind, sparsity weight, routed set size, and the
layer that embeds the query — each varied alone around the default router (soft targets,
sparsity 0.1, 16 heads, middle layer), everything else fixed.

Every router is trained on the SciFact training sample (200 queries, as scripts/routehead_results.sh)
and scored on the evaluation sets from the score cache (fill it first with scripts/icr_results.sh;
nothing is computed here but query embeddings). nDCG@10 per set is the mean over judged queries,
computed as trec_eval's ndcg_cut_10 (ties by first-stage rank), so the default row equals
`evaluate` on runs/routehead/<model>/<set>/routehead.trec. The "SciFact CV" column is 5-fold
cross-validation over the training sample itself (folds by a hash of the qid).

    .venv/bin/python scripts/router_ablations.py smollm2-135m [-o runs/ablations/smollm2-135m.md]
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from routehead_pyserini.data.controls import sample_queries  # noqa: E402
from routehead_pyserini.files import atomic_write_text  # noqa: E402
from routehead_pyserini.heads.ndcg import doc_gains, ideal_dcg, ndcg_at_k  # noqa: E402
from routehead_pyserini.heads.head_set import normalise_scores  # noqa: E402
from routehead_pyserini.heads.labels import Labels, SearchParams, label_queries, router_targets  # noqa: E402
from routehead_pyserini.engine.models import load_model  # noqa: E402
from routehead_pyserini.engine.query_embedding import embed_queries  # noqa: E402
from routehead_pyserini.data.registry import lookup  # noqa: E402
from routehead_pyserini.firststage.index import resolve_index  # noqa: E402
from routehead_pyserini.rerank.reranker import PromptSettings, Reranker  # noqa: E402
from routehead_pyserini.heads.router import RouterConfig, train_router  # noqa: E402
from routehead_pyserini.firststage.search import DocumentStore  # noqa: E402
from routehead_pyserini.data.trec import read_qrels, read_run, read_topics  # noqa: E402

SETS = {  # name: (run, index, passage tokens, sample, sample offset) — as scripts/icr_results.sh
    "scifact": ("runs/bm25/scifact.trec", "scifact", 128, 200, 0),
    "dl19": ("trec-dl-2019", "trec-dl-2019", 256, None, 0),
    "vaswani": ("runs/bm25/vaswani.trec", "vaswani", 256, None, 0),
    "cacm": ("runs/bm25/cacm.trec", "cacm", 256, None, 0),
    "cranfield": ("runs/bm25/cranfield.trec", "cranfield", 128, 100, 0),
    "scifact-val": ("runs/bm25/scifact.trec", "scifact", 128, 50, 200),
}
EVAL = ["dl19", "vaswani", "cacm", "cranfield", "scifact-val"]


class QuerySet:
    """Per-query z-normalised head scores, gains and query embeddings of one dataset, from the cache."""

    def __init__(self, model, name: str, layers: list[int]):
        run_name, index, doc_tokens, sample, offset = SETS[name]
        run = read_run(lookup(run_name, "run"))
        if sample:
            run = sample_queries(run, sample, seed=0, offset=offset)
        topics, qrels = read_topics(lookup(index, "topics")), read_qrels(lookup(index, "qrels"))
        reranker = Reranker(model, settings=PromptSettings(doc_max_tokens=doc_tokens))
        self.entries, self.z, self.gains, self.ideal = [], {}, {}, {}
        for item in reranker.iter_scores(run, topics, DocumentStore(resolve_index(index)), top_k=20, progress=False):
            qid, scores = item.qid, item.scores
            if not scores.info.get("from_cache"):
                logging.warning("%s: query %s was not in the score cache (computed now)", name, qid)
            judged = qrels.get(qid, {})
            if not judged:
                continue  # evaluate averages over judged queries only
            self.entries.append(scores)
            self.z[qid] = normalise_scores(scores.calibrated).reshape(-1, len(scores.docids))
            self.gains[qid], self.ideal[qid] = doc_gains(scores.docids, judged), ideal_dcg(judged, 10)
        self.qids = [s.qid for s in self.entries]
        self.qrels = {q: qrels[q] for q in self.qids}
        self.embeddings = {layer: embed_queries(model, [topics[q] for q in self.qids], layer=layer, progress=False) for layer in layers}

    def ndcg(self, qids: list[str], sets: list[torch.Tensor]) -> float:
        """Mean nDCG@10 of ``qids`` re-ranked by the z-score sums of their head index sets."""
        values = [float(ndcg_at_k(self.z[q][s].sum(0, keepdim=True), self.gains[q], self.ideal[q], 10)[0]) for q, s in zip(qids, sets)]
        return statistics.mean(values)


def fold(qid: str, folds: int = 5) -> int:
    return int(hashlib.sha256(f"0\x1f{qid}".encode()).hexdigest(), 16) % folds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("-o", "--output", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    model = load_model(args.model)
    n_layers = model.spec.num_layers
    middle = n_layers // 2
    layers = sorted({n_layers // 4, middle, 3 * n_layers // 4, n_layers - 1})
    data = {name: QuerySet(model, name, layers) for name in ["scifact", *EVAL]}
    train = data["scifact"]
    labels: Labels = label_queries(train.entries, train.qrels, SearchParams())
    qids = list(labels.queries)  # judged training queries with a relevant candidate

    default = dict(targets="soft", config=RouterConfig(sparsity=0.1, top_k=16, embedding_layer=middle))
    variants = [("default: soft targets, sparsity 0.1, 16 heads, middle layer", default)]
    variants += [(f"targets = {t}" + (" (16 heads)" if t != "set" else " (mean label size)"),
                  dict(default, targets=t, config=replace(default["config"], top_k=16 if t != "set" else None)))
                 for t in ["set", "tied"]]
    variants += [(f"sparsity = {s}", dict(default, config=replace(default["config"], sparsity=s))) for s in [0.0, 0.01, 1.0, 3.0]]
    variants += [(f"set size = {k}", dict(default, config=replace(default["config"], top_k=k))) for k in [1, 4, 8, 32]]
    variants += [(f"query embedding layer = {layer}", dict(default, config=replace(default["config"], embedding_layer=layer)))
                 for layer in layers if layer != middle]

    def fit(names: list[str], spec) -> object:
        x = train.embeddings[spec["config"].embedding_layer][[train.qids.index(q) for q in names]]
        return train_router(x, router_targets(labels, names, spec["targets"]), spec["config"], query_ids=names)

    def routed(trained, qset: QuerySet, names: list[str], layer: int) -> list[torch.Tensor]:
        x = qset.embeddings[layer][[qset.qids.index(q) for q in names]]
        k = trained.config.top_k or trained.default_top_k
        return list(torch.topk(trained.logits(x), k, dim=1).indices)

    rows = []
    for title, spec in variants:
        layer = spec["config"].embedding_layer
        cv_values = []
        for f in range(5):
            held = [q for q in qids if fold(q) == f]
            trained = fit([q for q in qids if fold(q) != f], spec)
            cv_values.append(train.ndcg(held, routed(trained, train, held, layer)) * len(held))
        trained = fit(qids, spec)
        row = [sum(cv_values) / len(qids)] + [data[n].ndcg(data[n].qids, routed(trained, data[n], data[n].qids, layer)) for n in EVAL]
        rows.append((title, row))
        print(f"{title:60s} " + " ".join(f"{v:.4f}" for v in row), flush=True)

    header = "| router | SciFact CV | " + " | ".join(EVAL) + " | mean (eval sets) |\n|---|" + "---:|" * (len(EVAL) + 2) + "\n"
    body = "".join(f"| {t} | " + " | ".join(f"{v:.4f}" for v in r) + f" | {statistics.mean(r[1:]):.4f} |\n" for t, r in rows)
    text = f"Router ablations, {args.model} (nDCG@10; trained on the SciFact sample of 200 queries)\n\n{header}{body}"
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.output, text)
    print(text)


if __name__ == "__main__":
    main()
