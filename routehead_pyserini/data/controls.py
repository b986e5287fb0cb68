"""Controls that every effectiveness table carries: a random order of the same candidates.

A re-ranker that does not beat a random permutation of its own candidate list has learned
nothing; the first-stage run is the other control. The permutation is seeded per query from
``(seed, qid)``, so it is the same on every machine and independent of query order.
"""
from __future__ import annotations

import hashlib
import random

from .trec import Hit, Run


def query_rng(seed: int, qid: str) -> random.Random:
    """A generator seeded from ``seed`` and ``qid`` alone (stable across runs and machines)."""
    digest = hashlib.sha256(f"{seed}:{qid}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def random_order(run: Run, *, seed: int = 0, top_k: int | None = None) -> Run:
    """Shuffle the first ``top_k`` hits of each query (all when ``None``); the rest keep their order.

    Scores are rewritten as ``n - rank`` so that every evaluator sees the shuffled order.
    """
    shuffled: dict[str, list[Hit]] = {}
    for qid, hits in run.hits.items():
        k = len(hits) if top_k is None else min(top_k, len(hits))
        head = list(hits[:k])
        query_rng(seed, qid).shuffle(head)
        ordered = head + list(hits[k:])
        shuffled[qid] = [Hit(h.docid, float(len(ordered) - i)) for i, h in enumerate(ordered)]
    return Run(shuffled)


def sample_queries(run: Run, n: int, *, seed: int = 0, offset: int = 0) -> Run:
    """A fixed sample of ``n`` queries of ``run`` (kept in run order), chosen by ``(seed, qid)`` alone.

    Each qid gets a key from :func:`query_rng`; queries are taken in increasing key order, skipping
    the first ``offset``. A query's membership does not depend on the other queries' order, a larger
    ``n`` is a superset, and samples with the same seed and non-overlapping ``[offset, offset + n)``
    ranges are disjoint: ``n=200`` and ``n=100, offset=200`` make a training and a validation split.
    """
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    if offset == 0 and n >= len(run):
        return run
    keys = {qid: query_rng(seed, qid).random() for qid in run.hits}
    keep = set(sorted(keys, key=lambda q: (keys[q], q))[offset:offset + n])
    return Run({qid: hits for qid, hits in run.hits.items() if qid in keep})
