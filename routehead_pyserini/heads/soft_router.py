"""Soft routing: the router emits per-query head *weights*, trained end to end on the ranking loss.

Hard routing (:mod:`.router`, the paper) learns which heads to *sum* for a query from pseudo label
sets; static weights (:mod:`.weights`) learn one weight per head for every query. The soft router
sits between them. It is the same network as the hard router (:class:`.router.Router`: a learnable
embedding per (layer, head), a projection of the frozen LLM's query embedding, and a bias per head),
but its output is read as one signed weight per head for the query::

    w_q = Router(embed(q))                                      # [L*H]
    s(q, d) = sum_h w_qh x_h(q, d) + sum_f v_f x_f(q, d)        # x: :func:`.features.query_features`

``x_h`` is head ``h``'s calibrated score z-normalised within the query; ``x_f`` the fused
first-stage score (and bi-encoder cosine), with global weights ``v_f``.

Training has two steps, both on the training split only:

1. **Static part.** :func:`.weights.train_weights` (same loss, L1, lambda by 5-fold CV inside the
   training split) gives one weight per head and the fusion weights. They become the router's
   per-head biases ``b`` and the fixed ``v``: with the head embeddings at 0 the router *is* the
   static model.
2. **Per-query part.** The projection and the head embeddings (the bias and ``v`` frozen) are
   trained with AdamW on the ranking loss of :mod:`.weights` (``pairwise``/``pointwise``/
   ``listwise``) over the training queries' judged candidates, plus the sparsity regulariser
   ``sparsity * mean_q sum_h |w_qh|`` (L1 on each query's weights, so deviations that spread weight
   over many heads cost), full batch, with early stopping on the objective of a held-out
   validation split (by a seeded hash of the query ids). Epoch 0 — the static model — is a
   candidate too, so the per-query part is kept only where it helps held-out queries.

Why not learn everything end to end from zero: with a few dozen training queries and hundreds of
heads, Adam moves every bias by about the learning rate per step whatever its gradient, and
early stopping then keeps a dense, near-uniform weighting (close to ICR) before the fusion weights
have grown; measured on TREC DL 2019 that was far below the static weights. Starting from the
static solution keeps the sparse, cross-validated weighting and asks the router only for the
per-query correction, which is what routing is meant to add.

At inference a query keeps its ``top_k`` heads by ``|w_qh|`` (default 16), so re-ranking computes
only those heads and stops at the deepest one; the routed :class:`.heads.HeadSet` carries the
weights, ``normalise: zscore`` and the fusion fields of :mod:`.weights`, so ``rerank --router``
scores it with :func:`.weights.fused_scores` like a learned weights file. The checkpoint is a
router file (:func:`.router.save_router`) with ``"kind": "soft"`` and the fusion weights.
"""
from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from . import head_set as heads_mod
from .head_set import HeadSet
from .router import Router, TrainedRouter, seeded_training, split_indices
from .checkpoint import RouterError
from .configs import SoftRouterConfig
from .fusion import DENSE_KEY, FUSE_KEY
from .features import Dataset, make_batch
from .weights import TrainConfig, ranking_loss, train_weights
from ..data.folds import fold_of

logger = logging.getLogger(__name__)

KIND = "soft"


@dataclass
class SoftRouter(TrainedRouter):
    """A trained soft router: per-query head weights plus global fusion weights."""

    fusion: dict[str, Any] = field(default_factory=dict)  # {"fuse": {...}, "fuse_dense": {...}} as in weights files
    soft: dict[str, Any] = field(default_factory=dict)  # the SoftRouterConfig, as a dict

    def file_fields(self) -> dict[str, Any]:
        """``kind``, the fusion weights and the soft config, for :func:`.router.save_router`."""
        return {"kind": KIND, "fusion": self.fusion, "soft": self.soft}

    def head_weights(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``[N, L, H]`` per-query head weights (all heads, before top-k)."""
        return self.logits(embeddings).reshape(-1, *self.shape)

    def route(self, embeddings: torch.Tensor, *, top_k: int | None = None, threshold: float | None = None) -> list[HeadSet]:
        """One weighted :class:`HeadSet` per query: its ``top_k`` heads by ``|weight|``."""
        if threshold is not None:
            raise RouterError("a soft router routes by top_k (heads by |weight|), not by a threshold")
        top_k = top_k or self.config.top_k or self.default_top_k
        weights = self.logits(embeddings).cpu()
        if not 1 <= top_k <= weights.shape[1]:
            raise RouterError(f"top_k must be in 1..{weights.shape[1]}, got {top_k}")
        per_layer = self.shape[1]
        sets = []
        for row in weights:
            chosen = sorted(torch.topk(row.abs(), top_k, sorted=True).indices.tolist())
            sets.append(heads_mod.from_pairs(
                [(i // per_layer, i % per_layer) for i in chosen], [float(row[i]) for i in chosen],
                model_name=self.model_info.get("name"), model_fingerprint=self.model_info.get("fingerprint"),
                model_shape=self.shape, source="routehead soft router", normalise="zscore", extra=dict(self.fusion)))
        return sets

    def scores(self, embedding: torch.Tensor, features: torch.Tensor, top_k: int | None = None) -> torch.Tensor:
        """Scores of one query's candidates from :func:`.features.query_features` (same fusion), as
        re-ranking with the routed head set would give them."""
        head_set = self.route(embedding[None], top_k=top_k)[0]
        n_heads = self.shape[0] * self.shape[1]
        w = head_set.weight_grid(self.shape).reshape(-1).to(torch.float64)
        values = features[:, :n_heads] @ w
        column = n_heads
        for key in (FUSE_KEY, DENSE_KEY):
            if key in self.fusion:
                values = values + self.fusion[key]["weight"] * features[:, column]
                column += 1
        return values


def _objective(router: Router, fusion: torch.Tensor, intercept: torch.Tensor, x: torch.Tensor, batch, config: TrainConfig,
               sparsity: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(ranking loss + sparsity term, ranking loss) of the queries of ``batch`` with embeddings ``x``."""
    w = router(x).to(torch.float64)  # [Q, L*H]
    n_heads = batch.n_heads
    s = (batch.x[..., :n_heads] * w[:, None, :]).sum(-1) + batch.x[..., n_heads:] @ fusion
    loss = ranking_loss(s, batch, config, intercept)
    return loss + sparsity * w.abs().sum(-1).mean(), loss


def train_soft_router(
    embeddings: torch.Tensor,
    dataset: Dataset,
    query_ids: Sequence[str],
    config: SoftRouterConfig = SoftRouterConfig(),
) -> SoftRouter:
    """Train on ``dataset``'s queries (:func:`.features.build_dataset`), whose query embeddings are
    the rows of ``embeddings`` in ``query_ids`` order (``query_ids`` may hold more queries)."""
    row = {q: i for i, q in enumerate(query_ids)}
    missing = [q.qid for q in dataset.queries if q.qid not in row]
    if missing:
        raise RouterError(f"{len(missing)} training queries have no query embedding (first: {missing[:3]})")
    if len(dataset.queries) < 2:
        raise RouterError("soft routing needs at least two training queries")
    if config.top_k is not None and not 1 <= config.top_k <= dataset.n_heads:
        raise RouterError(f"--route-k {config.top_k}: a query keeps 1 to {dataset.n_heads} heads (the model's)")
    qids = [q.qid for q in dataset.queries]
    x_all = embeddings[[row[q] for q in qids]].detach().to(torch.float32)
    train, val = split_indices(len(qids), val_fraction=config.val_fraction, seed=config.seed, query_ids=qids)
    loss_config = TrainConfig(loss=config.loss, relevance_level=config.relevance_level)
    train_queries = [dataset.queries[i] for i in train]
    train_batch = make_batch(train_queries, dataset.n_heads)
    val_batch = make_batch([dataset.queries[i] for i in val], dataset.n_heads) if val else None
    # 1. the static part: sparse weights chosen by cross-validation inside the training split
    static = train_weights(Dataset(train_queries, dataset.shape, dataset.fuse, dataset.skipped, dataset.dense),
                           TrainConfig(loss=config.loss, penalty="l1", relevance_level=config.relevance_level,
                                       folds=max(2, min(5, len(train_queries))), patience=config.static_patience))
    fusion = static.weights[dataset.n_heads:].clone()
    history: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "val_ranking_loss": []}
    with seeded_training(config.seed):
        router = Router(x_all.shape[1], dataset.shape, config.router_config())
        router.set_input_stats(x_all[train])
        with torch.no_grad():  # 2. start from the static model: w_q = b for every query
            router.head_embeddings.zero_()
            router.head_bias.copy_(static.head_weights.reshape(-1).to(router.head_bias.dtype))
        router.head_bias.requires_grad_(False)
        intercept = torch.zeros((), dtype=torch.float64, requires_grad=True)
        decay = [p for name, p in router.named_parameters() if p.requires_grad and not name.endswith("bias")]
        no_decay = [p for name, p in router.named_parameters() if p.requires_grad and name.endswith("bias")] + [intercept]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
        best = (math.inf, 0, None)
        if val_batch is not None:  # epoch 0: the static model itself
            router.eval()
            with torch.no_grad():
                value, _ = _objective(router, fusion, intercept, x_all[val], val_batch, loss_config, config.sparsity)
            best = (float(value), 0, copy.deepcopy(router.state_dict()))
        for epoch in range(1, config.epochs + 1):
            router.train()  # full batch: the training queries fit in one
            total, _ = _objective(router, fusion, intercept, x_all[train], train_batch, loss_config, config.sparsity)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            history["train_loss"].append(float(total.detach()))
            if val_batch is None:
                best = (math.nan, epoch, None)
                continue
            router.eval()
            with torch.no_grad():
                value, ranking = _objective(router, fusion, intercept, x_all[val], val_batch, loss_config, config.sparsity)
            history["val_loss"].append(float(value))
            history["val_ranking_loss"].append(float(ranking))
            if float(value) < best[0] - 1e-6:
                best = (float(value), epoch, copy.deepcopy(router.state_dict()))
            elif epoch - best[1] >= config.patience:
                break
        if best[2] is not None:
            router.load_state_dict(best[2])
    router.eval()
    values = fusion.detach().tolist()
    fields: dict[str, Any] = {}
    if dataset.fuse:
        fields[FUSE_KEY] = {"weight": values.pop(0), "normalise": "zscore", "feature": "first-stage score"}
    if dataset.dense is not None:
        fields[DENSE_KEY] = {"weight": values.pop(0), "normalise": "zscore", "model": dataset.dense}
    trained = SoftRouter(router=router, config=config.router_config(), default_top_k=config.top_k, history=history,
                         best_epoch=best[1], extra={"n_train": len(train), "n_val": len(val), "kind": KIND,
                                                    "static_lambda": static.lam,
                                                    "static_heads": int((static.head_weights != 0).sum())},
                         fusion=fields, soft=asdict(config))
    logger.info("soft router: %d train / %d validation queries, %d static heads, best epoch %d (0: the static weights)%s",
                len(train), len(val), trained.extra["static_heads"], best[1],
                "" if not fields else ", fusion " + ", ".join(f"{k} {v['weight']:.3f}" for k, v in fields.items()))
    return trained


def nested_cv_scores(
    embeddings: torch.Tensor,
    query_ids: Sequence[str],
    dataset: Dataset,
    features: Mapping[str, torch.Tensor],
    config: SoftRouterConfig,
    *,
    outer_folds: int = 5,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Scores of every query of ``features``, each from a soft router trained without its outer fold
    (folds by :func:`.head_analysis.fold_of`, as :func:`.weights.nested_cv_predictions`)."""
    row = {q: i for i, q in enumerate(query_ids)}
    fold = {qid: fold_of(qid, outer_folds, seed) for qid in features}
    out: dict[str, torch.Tensor] = {}
    for f in sorted(set(fold.values())):  # the folds that hold queries (not range(): --outer-folds may be huge)
        held_out = [qid for qid in features if fold[qid] == f]
        if not held_out:
            continue
        train = Dataset([q for q in dataset.queries if fold[q.qid] != f], dataset.shape, dataset.fuse, dataset.skipped, dataset.dense)
        trained = train_soft_router(embeddings, train, query_ids, config)
        for qid in held_out:
            out[qid] = trained.scores(embeddings[row[qid]], features[qid])
    return out


def soft_router_from(trained: TrainedRouter, payload: Mapping[str, Any]) -> SoftRouter:
    """A loaded :class:`TrainedRouter` and its file's soft fields, as a :class:`SoftRouter`."""
    base = {name: getattr(trained, name) for name in ("router", "config", "default_top_k", "history", "best_epoch",
                                                      "model_info", "prompt_settings", "extra")}
    return SoftRouter(**base, fusion=dict(payload.get("fusion", {})), soft=dict(payload.get("soft", {})))
