"""What the heads can do, read from cached per-head scores: single heads, oracles and their nulls.

All of it is vectorised over heads: for one query, the ``[layers, heads, docs]`` scores rank the
candidates once per head, and nDCG@k of every head comes out of one sort.

nDCG here is trec_eval's ``ndcg_cut_k``: linear gains (the qrels grade), log2 discount, ideal DCG
over **all** judged documents of the query (not only the candidates), so a head's value equals
what ``evaluate`` reports for a run re-ranked by that head (tested). Score ties are broken by
first-stage rank, as :mod:`.rerank` does.

- **best single head (cross-validated)**: queries are split into folds by a seeded hash of the
  qid; for each fold the head with the best mean nDCG@k on the *other* folds ranks its queries.
  No query is scored by a head chosen on itself.
- **per-query oracle**: each query ranked by its own best head — an upper bound for any routing
  that picks one head per query, not a method.
- **oracle null**: the same oracle over scores shuffled among each query's candidates (each head
  permuted independently). The gap between the oracle and its null is what selection among heads
  can find beyond picking the luckiest of many random orders.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from ..data.controls import query_rng
from ..data.folds import fold_of
from ..heads.ndcg import per_head_ndcg
from ..data.controls import random_order
from .evaluate import build_report, evaluate_run
from ..files import atomic_write_text
from ..heads.head_set import HeadSet, aggregate
from ..data.trec import ranked_hits
from ..data.trec import Run, write_run
from ..errors import UserError


class AnalysisError(UserError, ValueError):
    """Queries that cannot be cross-validated (all in one fold)."""


def shuffled(calibrated: torch.Tensor, qid: str, seed: int = 0) -> torch.Tensor:
    """Each head's scores permuted independently among the documents (seeded by ``seed`` and qid)."""
    layers, heads, n_docs = calibrated.shape
    generator = torch.Generator().manual_seed(int(query_rng(seed, qid).random() * 2**62))
    perms = torch.argsort(torch.rand(layers * heads, n_docs, generator=generator), dim=-1)
    flat = calibrated.reshape(layers * heads, n_docs)
    return torch.gather(flat, 1, perms).reshape(layers, heads, n_docs)


@dataclass
class HeadChoice:
    """Per query, the (layer, head) used and the fold it was chosen on."""

    head: dict[str, tuple[int, int]]
    fold: dict[str, int]


def best_single_head_cv(per_query: Mapping[str, torch.Tensor], folds: int = 5, seed: int = 0) -> HeadChoice:
    """For each query, the head with the best mean nDCG on the queries of the other folds."""
    qids = list(per_query)
    fold = {q: fold_of(q, folds, seed) for q in qids}
    choice: dict[str, tuple[int, int]] = {}
    for f in sorted(set(fold.values())):  # the folds that hold queries (not range(folds): --folds may be huge)
        train = [per_query[q] for q in qids if fold[q] != f]
        test = [q for q in qids if fold[q] == f]
        if not test:
            continue
        if not train:
            raise AnalysisError(f"the best single head is cross-validated over queries, but all {len(qids)} queries fall in "
                                "one fold: give more queries (or another --folds)")
        mean = torch.stack(train).mean(dim=0)
        layer, head = divmod(int(torch.argmax(mean)), mean.shape[1])
        for q in test:
            choice[q] = (layer, head)
    return HeadChoice(choice, fold)


def oracle_heads(per_query: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, int]]:
    """Each query's own best head (first in layer-major order among ties)."""
    out = {}
    for qid, grid in per_query.items():
        layer, head = divmod(int(torch.argmax(grid)), grid.shape[1])
        out[qid] = (layer, head)
    return out


# --------------------------------------------------------------------------------------------
# The report: runs written, evaluated against the first stage


def analyze(
    reranker,
    run,
    topics: Mapping[str, str],
    texts,
    qrels: Mapping[str, Mapping[str, int]],
    output_dir,
    *,
    top_k: int = 20,
    on_missing: str = "error",
    folds: int = 5,
    seed: int = 0,
    relevance_level: int = 1,
    k: int = 10,
    progress: bool = True,
) -> str:
    """Write the analysis runs, ``heads.json`` and ``report.md`` into ``output_dir``; return the table."""
    import json
    from pathlib import Path


    output_dir = Path(output_dir)
    per_head: dict[str, torch.Tensor] = {}
    per_head_null: dict[str, torch.Tensor] = {}
    kept: dict[str, tuple] = {}
    icr: dict[str, list] = {}
    for item in reranker.iter_scores(run, topics, texts, top_k=top_k, on_missing=on_missing, progress=progress):
        qid, scores, rest = item.qid, item.scores, item.rest
        if scores is None:
            icr[qid] = ranked_hits([], [], rest)
            continue
        calibrated = scores.calibrated
        icr[qid] = ranked_hits(scores.docids, aggregate(calibrated, HeadSet()).tolist(), rest)
        judged = qrels.get(qid)
        if not judged:
            continue
        null = shuffled(calibrated, qid, seed)
        per_head[qid] = per_head_ndcg(calibrated, scores.docids, judged, k)
        per_head_null[qid] = per_head_ndcg(null, scores.docids, judged, k)
        kept[qid] = (scores.docids, calibrated, null, rest)

    def by_head(choice: Mapping[str, tuple[int, int]], use_null: bool = False) -> Run:
        hits = {}
        for qid in run.qids():
            if qid not in kept:
                hits[qid] = icr[qid]
                continue
            docids, calibrated, null, rest = kept[qid]
            layer, head = choice[qid]
            hits[qid] = ranked_hits(docids, (null if use_null else calibrated)[layer, head].tolist(), rest)
        return Run(hits)

    cv = best_single_head_cv(per_head, folds=folds, seed=seed)
    runs = {
        "bm25": run,
        "random-order": random_order(run, seed=seed, top_k=top_k),
        "icr-all-heads": Run(icr),
        "best-single-head-cv": by_head(cv.head),
        "oracle-head": by_head(oracle_heads(per_head)),
        "oracle-head-null": by_head(oracle_heads(per_head_null), use_null=True),
    }
    evaluations = []
    for name, hits in runs.items():
        write_run(hits, output_dir / f"{name}.trec", tag=name)
        evaluations.append(evaluate_run(hits, qrels, ["nDCG@10", "MAP@100", "R@100", "MRR@10"],
                                        relevance_level=relevance_level, run_name=name))
    report = build_report(evaluations, "bm25")
    stacked = torch.stack(list(per_head.values())) if per_head else torch.zeros(0)
    mean = stacked.mean(dim=0) if per_head else None
    top = [] if mean is None else [
        {"head": [int(i) // mean.shape[1], int(i) % mean.shape[1]], "mean_ndcg": round(float(mean.flatten()[i]), 4)}
        for i in torch.argsort(mean.flatten(), descending=True)[:10]
    ]
    chosen = sorted({f"{l}.{h}" for l, h in cv.head.values()})
    info = {
        "model": reranker.model.fingerprint,
        "settings": reranker.describe()["settings"],
        "top_k": top_k,
        "queries_judged": len(per_head),
        "folds": folds,
        "cv_heads_chosen": chosen,
        "top10_heads_by_mean_ndcg_all_queries": top,
    }
    atomic_write_text(output_dir / "heads.json", json.dumps(info, indent=1) + "\n")
    title = (f"# Head analysis: {reranker.model.name}, top-{top_k}, order {reranker.settings.order}, "
             f"{len(per_head)} judged queries\n\n")
    notes = (f"\nBest single head: chosen per fold ({folds} folds over queries) on the other folds; heads chosen: "
             f"{', '.join(chosen)}. The oracle picks each query's own best head (an upper bound); its null does the "
             f"same over scores shuffled among the candidates.\n")
    atomic_write_text(output_dir / "report.md", title + report.to_markdown() + notes)
    return report.to_text() + notes
