"""RouteHead's hard routing trained from a feature :class:`.features.Dataset` in memory, for the
evaluation protocols (:mod:`..eval.loco`): pseudo labels, the router, routing and scoring, with no
labels file, score cache or model in between.

1. **Labels.** Each training query's label is searched by :func:`.labels.label_normalised` from its
   feature rows (the z-normalised head scores of :func:`.features.query_features` are exactly what
   :func:`.labels.label_query` normalises the calibrated scores to, so the labels are the same),
   with the package's :class:`.configs.SearchParams` (beam 4, at most 8 heads, nDCG@10). A query
   without a relevant candidate is skipped, as :func:`.labels.label_queries` does.
2. **Router.** :func:`.router.train_router` with :class:`.configs.RouterConfig` defaults on the
   labelled queries' embeddings and *soft* targets (:func:`.labels.router_targets`, the default of
   ``train-router --targets``); a query is routed to its :data:`.configs.STATIC_SET_SIZE` most
   probable heads (16; fewer when the model has fewer). Early stopping holds out
   :data:`.configs.VAL_FRACTION` of the labelled queries (a seeded hash of their ids). Training is
   seeded (:func:`.router.seeded_training`): the same data give the same router.
3. **Scoring** (the paper's): the sum of the routed heads' z-scored scores. With fusion, that sum
   is z-scored within the query and mixed with the z-scored first-stage score,
   ``cos(a) * z(sum) + sin(a) * z(bm25)``; the angle ``a`` is a 1-D search over
   ``fusion_steps + 1`` values in ``[0, pi/2]`` (0: heads alone, pi/2: BM25 alone) by mean nDCG@10,
   on the router's early-stopping queries routed by the trained router — queries whose own
   routing it never fitted, like the queries it will rank (all labelled queries when too few
   to hold any out). Ties go to the smaller angle.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch

from .configs import STATIC_SET_SIZE, VAL_FRACTION, RouterConfig, RouterError, SearchParams
from .features import Dataset, QueryData
from .head_set import normalise_scores
from .labels import Labels, label_normalised, router_targets
from .ndcg import ndcg_at_k
from .router import TrainedRouter, split_indices, train_router

logger = logging.getLogger(__name__)

#: What the router learns per query (see :func:`.labels.router_targets`): the CLI's default.
TARGETS = "soft"


def label_dataset(dataset: Dataset, params: SearchParams = SearchParams()) -> Labels:
    """The pseudo label of every query of ``dataset`` that can have one, from its head features.

    ``dataset``'s ideal DCGs are at the cutoff it was built with (10 by default), which must be
    ``params.k``. Queries without a relevant candidate are in ``skipped["no_relevant_candidate"]``.
    """
    if params.normalise != "zscore":
        raise ValueError("features hold z-normalised head scores: labels from them need normalise='zscore'")
    queries = {}
    skipped: dict[str, list[str]] = {"no_relevant_candidate": []}
    for q in dataset.queries:
        if q.ideal <= 0 or not bool((q.grades > 0).any()):
            skipped["no_relevant_candidate"].append(q.qid)
            continue
        queries[q.qid] = label_normalised(q.qid, q.features[:, :dataset.n_heads].T, q.grades, q.ideal, dataset.shape, params)
    return Labels(queries, params, skipped=skipped, shape=dataset.shape)


def _zscore(values: torch.Tensor) -> torch.Tensor:
    """One query's per-candidate values z-normalised (flat values give 0), as features are."""
    return normalise_scores(values.to(torch.float64).reshape(1, 1, -1), "zscore")[0, 0]


@dataclass
class HardRouting:
    """A trained hard router and how its routed set is scored (with or without fusion)."""

    router: TrainedRouter
    n_heads: int  # the first n_heads feature columns are heads; the next one the first-stage score
    top_k: int  # heads routed per query
    fuse_angle: float | None = None  # None: the routed sum alone; else cos/sin mix with the first-stage score
    labelled: int = 0  # training queries with a label
    skipped: list[str] = field(default_factory=list)  # training queries without one (no relevant candidate)
    mean_label_size: float = 0.0  # mean size of the searched label sets (what the soft targets were searched beside)
    fusion_queries: int = 0  # queries the fusion angle was chosen on
    fusion_ndcg: float = float("nan")  # their mean nDCG@10 at the chosen angle

    @property
    def fuse_weights(self) -> tuple[float, float] | None:
        """(weight of the z-scored routed sum, weight of the z-scored first-stage score), or None."""
        if self.fuse_angle is None:
            return None
        return math.cos(self.fuse_angle), math.sin(self.fuse_angle)

    def heads(self, embeddings: torch.Tensor) -> list[list[int]]:
        """Each query's routed heads as flat layer-major indices (sorted), from its embedding ``[N, d]``."""
        per_layer = self.router.shape[1]
        return [[layer * per_layer + head for layer, head in head_set.heads]
                for head_set in self.router.route(embeddings, top_k=self.top_k)]

    def scores(self, embedding: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Scores of one query's candidates (:func:`.features.query_features` rows) from its embedding ``[d]``."""
        return self.scored(self.heads(embedding[None])[0], features)

    def scored(self, heads: Sequence[int], features: torch.Tensor) -> torch.Tensor:
        """Scores of one query's candidates given its routed ``heads`` (flat indices)."""
        summed = features[:, list(heads)].sum(dim=1)
        weights = self.fuse_weights
        if weights is None:
            return summed
        return weights[0] * _zscore(summed) + weights[1] * features[:, self.n_heads]


def _choose_angle(routing: HardRouting, queries: Sequence[QueryData], heads: Sequence[Sequence[int]],
                  steps: int, k: int) -> tuple[float, float]:
    """(angle, mean nDCG@k there) of the best fusion of ``queries`` routed to ``heads``."""
    angles = torch.arange(steps + 1, dtype=torch.float64) * (math.pi / 2 / steps)
    total = torch.zeros(steps + 1, dtype=torch.float64)
    for q, chosen in zip(queries, heads):
        summed = _zscore(q.features[:, list(chosen)].sum(dim=1))
        mixed = torch.cos(angles)[:, None] * summed[None] + torch.sin(angles)[:, None] * q.features[None, :, routing.n_heads]
        total += ndcg_at_k(mixed, q.grades, q.ideal, k).to(torch.float64)
    means = torch.round(total / len(queries) * 1e9) / 1e9  # float noise is not a preference
    best = int(torch.argmax(means))  # the first maximum: the smallest angle
    return float(angles[best]), float(means[best])


def train_hard_routing(
    dataset: Dataset,
    embeddings: torch.Tensor,
    query_ids: Sequence[str],
    *,
    params: SearchParams = SearchParams(),
    config: RouterConfig | None = None,
    fusion_steps: int = 20,
) -> HardRouting:
    """Labels, router and (when ``dataset.fuse``) the fusion angle from ``dataset``'s queries, whose
    embeddings are the rows of ``embeddings`` in ``query_ids`` order (``query_ids`` may hold more
    queries: only ``dataset``'s are read). See the module docstring."""
    row = {q: i for i, q in enumerate(query_ids)}
    missing = [q.qid for q in dataset.queries if q.qid not in row]
    if missing:
        raise RouterError(f"{len(missing)} training queries have no query embedding (first: {missing[:3]})")
    labels = label_dataset(dataset, params)
    qids = list(labels.queries)
    if len(qids) < 2:
        raise RouterError(f"hard routing needs at least two labelled training queries, got {len(qids)}")
    top_k = min(STATIC_SET_SIZE, dataset.n_heads)
    config = config or RouterConfig()
    if config.top_k is None:
        config = replace(config, top_k=top_k)
    top_k = config.top_k
    x = embeddings[[row[q] for q in qids]]
    _, val = split_indices(len(qids), val_fraction=VAL_FRACTION, seed=config.seed, query_ids=qids)
    trained = train_router(x, router_targets(labels, qids, TARGETS), config, val_indices=val, query_ids=qids)
    sizes = [len(label.heads) for label in labels.queries.values()]
    routing = HardRouting(trained, dataset.n_heads, top_k, labelled=len(qids),
                          skipped=list(labels.skipped["no_relevant_candidate"]), mean_label_size=sum(sizes) / len(sizes))
    if dataset.fuse:
        by_qid = {q.qid: q for q in dataset.queries}
        chosen = val or list(range(len(qids)))
        queries = [by_qid[qids[i]] for i in chosen]
        routing.fuse_angle, routing.fusion_ndcg = _choose_angle(routing, queries, routing.heads(x[chosen]), fusion_steps, params.k)
        routing.fusion_queries = len(queries)
    fusion = "" if routing.fuse_weights is None else (
        f", fusion heads {routing.fuse_weights[0]:.3f} / first stage {routing.fuse_weights[1]:.3f} "
        f"(nDCG@10 {routing.fusion_ndcg:.4f} on {routing.fusion_queries} queries)")
    logger.info("hard routing: %d labelled queries (%d skipped, mean label size %.2f), top-%d routing, best epoch %d%s",
                len(qids), len(routing.skipped), routing.mean_label_size, top_k, trained.best_epoch, fusion)
    return routing
