"""Cross-validation folds by query id: stable across runs, machines and subsets of queries."""
from __future__ import annotations

from .controls import query_rng


def fold_of(qid: str, folds: int, seed: int = 0) -> int:
    """The cross-validation fold of a query (depends on seed and qid only)."""
    return int(query_rng(seed + 7919, qid).random() * folds)
