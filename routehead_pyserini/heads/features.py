"""Training data of learned head weights (:mod:`.weights`, :mod:`.soft_router`, :mod:`.pooled`): each
judged query's candidates as features (z-normalised head scores, then the first-stage score and the
bi-encoder cosine when fused), their grades and ideal DCG; queries padded into one batch."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from ..engine.cache import QueryScores
from .fusion import WeightsError, first_stage_feature
from .head_set import normalise_scores
from .ndcg import ideal_dcg, training_judgements

logger = logging.getLogger(__name__)


def query_features(calibrated: torch.Tensor, first_stage: Sequence[float] | None = None,
                   dense: Sequence[float] | None = None) -> torch.Tensor:
    """``[docs, layers*heads (+1) (+1)]`` float64: z-normalised head scores (then first-stage score, then dense cosine)."""
    if torch.isnan(calibrated).any():
        raise WeightsError("learned weights need every head's scores (some are NaN: not computed)")
    layers, heads, n_docs = calibrated.shape
    x = normalise_scores(calibrated, "zscore").reshape(layers * heads, n_docs).T
    for feature in (first_stage, dense):
        if feature is not None:
            if len(feature) != n_docs:
                raise ValueError(f"{len(feature)} fusion scores for {n_docs} documents")
            x = torch.cat([x, first_stage_feature(feature)[:, None]], dim=1)
    return x.contiguous()


@dataclass
class QueryData:
    """One query's candidates: features, grades and the ideal DCG the nDCG is divided by."""

    qid: str
    docids: list[str]
    features: torch.Tensor  # [docs, n_features] float64
    grades: torch.Tensor  # [docs] float64, unjudged and negative grades as 0
    ideal: float  # ideal DCG@k over all judged documents (0: unjudged)
    group: str = ""  # the collection the query comes from (pooled training: :mod:`.pooled`)
    level: int | None = None  # pointwise loss: its own relevance level (None: the config's)


@dataclass
class Dataset:
    """Training queries (judged, with a relevant candidate) and what was left out."""

    queries: list[QueryData]
    shape: tuple[int, int]
    fuse: bool
    skipped: dict[str, list[str]] = field(default_factory=dict)
    dense: str | None = None  # the encoder of the dense fusion feature (None: not fused)

    @property
    def n_heads(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def n_features(self) -> int:
        return self.n_heads + int(self.fuse) + int(self.dense is not None)


def build_dataset(
    entries: Iterable[tuple[QueryScores, Sequence[float] | None]],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    fuse: bool,
    k: int = 10,
    dense: Mapping[str, Sequence[float]] | None = None,
    dense_model: str | None = None,
    group: str = "",
    level: int | None = None,
) -> Dataset:
    """Training data from ``(scores, first-stage scores of the same candidates)`` per query.

    ``dense``: qid -> the candidates' dense cosines (in ``scores.docids`` order) from encoder
    ``dense_model``: given, they are one more (unpenalised) feature. ``group`` and ``level``: the
    collection of these queries and its relevance level, recorded on each query (:mod:`.pooled`).
    """
    if (dense is None) != (dense_model is None):
        raise ValueError("dense scores and dense_model go together")
    queries: list[QueryData] = []
    skipped: dict[str, list[str]] = {"unjudged": [], "no_relevant_candidate": []}
    shape = None
    for scores, first_stage in entries:
        judged = training_judgements(scores.qid, scores.docids, qrels, skipped)
        if judged is None:
            continue
        if shape is None:
            shape = scores.shape
        elif scores.shape != shape:
            raise WeightsError(f"query {scores.qid}: scores of shape {scores.shape}, others {shape}")
        if fuse and first_stage is None:
            raise WeightsError(f"query {scores.qid}: fusion needs the first-stage scores")
        if dense is not None and scores.qid not in dense:
            raise WeightsError(f"query {scores.qid}: dense fusion needs its dense scores")
        features = query_features(scores.calibrated, first_stage if fuse else None,
                                  None if dense is None else dense[scores.qid])
        grades = torch.tensor([max(judged.get(d, 0), 0) for d in scores.docids], dtype=torch.float64)
        queries.append(QueryData(scores.qid, list(scores.docids), features, grades, ideal_dcg(judged, k), group, level))
    if not queries:
        raise WeightsError(f"no training query has judgements and a relevant candidate "
                           f"(unjudged: {len(skipped['unjudged'])}, no relevant candidate: {len(skipped['no_relevant_candidate'])})")
    logger.info("%d training queries (skipped: %d unjudged, %d without a relevant candidate)",
                len(queries), len(skipped["unjudged"]), len(skipped["no_relevant_candidate"]))
    return Dataset(queries, shape, fuse, skipped, dense_model)


@dataclass
class Batch:
    """Queries padded to one ``[queries, docs, features]`` block."""

    x: torch.Tensor  # [Q, D, F]
    grades: torch.Tensor  # [Q, D]
    mask: torch.Tensor  # [Q, D] bool
    pairs: torch.Tensor  # [Q, D, D] bool: grade_i > grade_j, both real documents
    n_heads: int  # the first n_heads features are heads (penalised); then the first stage and dense cosine, if fused
    levels: torch.Tensor | None = None  # [Q] each query's own relevance level (pooled collections), else None


def make_batch(queries: Sequence[QueryData], n_heads: int) -> Batch:
    n_docs = max(q.features.shape[0] for q in queries)
    n_features = queries[0].features.shape[1]
    x = torch.zeros(len(queries), n_docs, n_features, dtype=torch.float64)
    grades = torch.zeros(len(queries), n_docs, dtype=torch.float64)
    mask = torch.zeros(len(queries), n_docs, dtype=torch.bool)
    for i, q in enumerate(queries):
        n = q.features.shape[0]
        x[i, :n], grades[i, :n], mask[i, :n] = q.features, q.grades, True
    pairs = (grades[:, :, None] > grades[:, None, :]) & mask[:, :, None] & mask[:, None, :]
    levels = None
    if any(q.level is not None for q in queries):
        if any(q.level is None for q in queries):
            raise ValueError("either every query carries its own relevance level or none does")
        levels = torch.tensor([float(q.level) for q in queries], dtype=torch.float64)
    return Batch(x, grades, mask, pairs, n_heads, levels)
