"""nDCG@k of score tensors, vectorised over heads: what labels, learned weights and routers are
trained to raise. Gains come from qrels; the ideal DCG from every judged document of the query."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

def ndcg_at_k(scores: torch.Tensor, gains: torch.Tensor, ideal_dcg: float, k: int = 10) -> torch.Tensor:
    """nDCG@k of each row of ``scores`` ``[n, docs]`` given each doc's gain ``[docs]``.

    Rows are sorted by score (descending), ties by document index (first-stage rank).
    """
    if ideal_dcg <= 0:
        return torch.zeros(scores.shape[0])
    n_docs = scores.shape[-1]
    # stable sort on -score keeps the first-stage order among equal scores
    order = torch.sort(-scores, dim=-1, stable=True).indices[:, :k]
    discounts = 1.0 / torch.log2(torch.arange(2, min(k, n_docs) + 2, dtype=torch.float64))
    dcg = (gains.to(torch.float64)[order] * discounts).sum(dim=-1)
    return (dcg / ideal_dcg).to(torch.float32)


def ideal_dcg(judged: Mapping[str, int], k: int = 10) -> float:
    """Ideal DCG@k over all judged documents of a query (positive grades only)."""
    grades = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    return float(sum(g / math.log2(i + 2) for i, g in enumerate(grades)))


def doc_gains(docids: Sequence[str], judged: Mapping[str, int]) -> torch.Tensor:
    return torch.tensor([max(judged.get(d, 0), 0) for d in docids], dtype=torch.float32)


def training_judgements(qid: str, docids: Sequence[str], qrels: Mapping[str, Mapping[str, int]],
                        skipped: dict[str, list[str]]) -> Mapping[str, int] | None:
    """The judgements of ``qid`` when they can teach anything: the query is judged and one of its
    candidates ``docids`` is relevant (otherwise every ranking scores the same). Else ``None``, and
    the qid is recorded in ``skipped["unjudged"]`` or ``skipped["no_relevant_candidate"]``."""
    judged = qrels.get(qid)
    if not judged:
        skipped.setdefault("unjudged", []).append(qid)
        return None
    if not any(judged.get(d, 0) > 0 for d in docids):
        skipped.setdefault("no_relevant_candidate", []).append(qid)
        return None
    return judged


def per_head_ndcg(calibrated: torch.Tensor, docids: Sequence[str], judged: Mapping[str, int], k: int = 10) -> torch.Tensor:
    """nDCG@k of every head for one query: ``[layers, heads]``."""
    layers, heads, n_docs = calibrated.shape
    flat = calibrated.reshape(layers * heads, n_docs)
    return ndcg_at_k(flat, doc_gains(docids, judged), ideal_dcg(judged, k), k).reshape(layers, heads)
