"""RouteHead: a light router that maps each query to its own small set of attention heads.

A query is embedded from the frozen LLM (:mod:`.query_embedding`); every (layer, head) of the LLM
has a learnable embedding; a head's logit for a query is the dot product of the projected query
with the head's embedding plus a per-head bias::

    x  = (q - mean) / std                      # standardised query embedding, [N, d]
    z  = W2 gelu(W1 dropout(x))   or  W dropout(x)  (hidden=0)           # [N, e]
    logits = z @ E.T / sqrt(e) + b             # E: [L*H, e], b: [L*H]

It is trained on targets derived from the pseudo labels (``[N, L, H]`` values in [0, 1] per training
query: the multi-hot label set as in the paper, or soft targets — each head's own nDCG@10 on the
query, see :func:`.labels.router_targets`) with

    loss = BCE-with-logits(logits, labels; pos_weight) + lambda * mean(sigmoid(logits))

The second term is the sparsity regulariser: it pushes every head's probability down, so routed
sets stay small unless the labels ask for a head. Both terms are means over the same
``N x L*H`` entries, so lambda is on the scale of ``pos_weight``: per (query, head) the gradient
of the loss with respect to the logit is ``-w (1-p)`` for a positive label, ``p`` for a negative one,
plus ``lambda p (1-p)``. A head that is positive for a fraction ``r`` of similar queries thus ends
below ``r``; and with ``lambda >= pos_weight`` even a head that is always positive stops at
``p = pos_weight / lambda``. Useful values of lambda are well below ``pos_weight``.

At inference a query gets its ``top_k`` heads (default: the mean label-set size of multi-hot
training targets; soft targets have no set size, so ``top_k`` must be given) or those with
probability at least ``threshold``.

Design choices, and why:

- **Standardisation, not LayerNorm**: the mean and standard deviation of each input dimension are
  measured on the training split and stored as buffers. LLM hidden states have a few dimensions
  with enormous values; per-dimension statistics tame them without letting one dimension rescale a
  whole vector (which LayerNorm would do).
- **Bias initialised to the label prior** (``logit(frequency of each head in the labels)``): the
  router starts from the static "QRHead" answer and learns per-query deviations from it; the head
  and query embeddings start small.
- **pos_weight**: off by default (1.0). Routing by ``top_k`` only needs the *order* of the heads,
  which reweighting does not fix, and unweighted probabilities stay calibrated, which the sparsity
  term and ``threshold`` routing assume. ``pos_weight="auto"`` (negatives/positives per head,
  capped by ``pos_weight_cap``) is there for threshold routing with very sparse labels.
- **Early stopping on the validation loss** (the training objective, BCE + sparsity, on held-out
  queries): smooth and defined at every epoch, unlike F1 or recall of a handful of validation
  queries. The best epoch's weights are restored. Validation recall@k is logged beside it.
- **Split**: ``val_indices`` if given; else by a seeded hash of the query ids when ``query_ids`` are
  given (a query stays on its side when the training set grows or is reordered); else a seeded
  permutation.
- **Determinism**: the router is built, initialised and trained inside ``torch.random.fork_rng``
  with ``torch.manual_seed(seed)`` and deterministic algorithms, with batches drawn from a seeded
  generator: the same data and config give bit-identical weights (on the same machine).
- **Checkpoints** are one ``torch.save`` file of plain types and tensors (loaded with
  ``weights_only=True``), written atomically. They record the LLM (name, fingerprint, layers,
  heads, hidden size), the prompt settings, the query-embedding settings and the hyper-parameters;
  loading against another LLM raises :class:`RouterError`.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from . import head_set as heads_mod
from ..files import atomic_open
from .head_set import HeadSet
from ..engine.models import LoadedModel
from .checkpoint import FORMAT, RouterError, check_plain, check_model, fitting_model_info, model_info
from .configs import VAL_FRACTION, RouterConfig
from ..engine.query_embedding import embed_queries
from ..engine.query_embedding import resolve_layer

logger = logging.getLogger(__name__)


class Router(nn.Module):
    """Query embedding ``[N, d]`` -> one logit per (layer, head), ``[N, L*H]``."""

    def __init__(self, input_dim: int, shape: tuple[int, int], config: RouterConfig):
        super().__init__()
        self.input_dim = int(input_dim)
        self.shape = (int(shape[0]), int(shape[1]))
        n_heads = self.shape[0] * self.shape[1]
        e = config.head_dim
        self.register_buffer("input_mean", torch.zeros(self.input_dim))
        self.register_buffer("input_std", torch.ones(self.input_dim))
        self.dropout = nn.Dropout(config.dropout)
        if config.hidden:
            self.project = nn.Sequential(nn.Linear(self.input_dim, config.hidden), nn.GELU(),
                                         nn.Linear(config.hidden, e))
        else:
            self.project = nn.Linear(self.input_dim, e)
        self.head_embeddings = nn.Parameter(torch.randn(n_heads, e) * e ** -0.5)
        self.head_bias = nn.Parameter(torch.zeros(n_heads))
        self.scale = e ** -0.5

    def set_input_stats(self, embeddings: torch.Tensor) -> None:
        """Standardise inputs with the mean and standard deviation of ``embeddings`` (the training split)."""
        self.input_mean.copy_(embeddings.mean(dim=0))
        std = embeddings.std(dim=0, unbiased=False) if len(embeddings) > 1 else torch.ones_like(self.input_std)
        # A dimension that is (nearly) constant in training is only centred, not blown up.
        self.input_std.copy_(torch.where(std > 1e-6 * float(std.max()), std, torch.ones_like(std)))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        x = (embeddings - self.input_mean) / self.input_std
        z = self.project(self.dropout(x))
        return z @ self.head_embeddings.T * self.scale + self.head_bias


@dataclass
class TrainedRouter:
    """A trained :class:`Router` with its config, training record and (once saved/loaded) its LLM."""

    router: Router
    config: RouterConfig
    default_top_k: int  # the mean label-set size of the training queries (rounded, at least 1)
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0
    model_info: dict[str, Any] = field(default_factory=dict)  # name, fingerprint, layers, heads, hidden
    prompt_settings: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return self.router.shape

    def file_fields(self) -> dict[str, Any]:
        """Fields a subclass adds to its router file (:func:`save_router`); none here."""
        return {}

    def _check_input(self, embeddings: torch.Tensor) -> torch.Tensor:
        if embeddings.dim() != 2 or embeddings.shape[1] != self.router.input_dim:
            raise RouterError(f"expected query embeddings [N, {self.router.input_dim}], got {tuple(embeddings.shape)}")
        return embeddings.to(dtype=torch.float32, device=self.router.head_bias.device)

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``[N, L*H]`` logits (eval mode, no gradients)."""
        self.router.eval()
        with torch.no_grad():
            return self.router(self._check_input(embeddings))

    def head_probabilities(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``[N, L, H]`` probability that each head belongs to each query's set."""
        return torch.sigmoid(self.logits(embeddings)).reshape(-1, *self.shape)

    def route(self, embeddings: torch.Tensor, *, top_k: int | None = None, threshold: float | None = None) -> list[HeadSet]:
        """One :class:`HeadSet` per query: its ``top_k`` most probable heads, or those with probability
        at least ``threshold`` (at least the most probable one). Defaults come from the config
        (``threshold`` wins when set); ``top_k`` falls back to :attr:`default_top_k`."""
        if top_k is not None and threshold is not None:
            raise RouterError("pass top_k or threshold, not both")
        if top_k is None and threshold is None:
            threshold = self.config.threshold
            top_k = None if threshold is not None else (self.config.top_k or self.default_top_k)
        probs = self.head_probabilities(embeddings).reshape(len(embeddings), -1).cpu()
        n_heads = probs.shape[1]
        if top_k is not None and not 1 <= top_k <= n_heads:
            raise RouterError(f"top_k must be in 1..{n_heads}, got {top_k}")
        per_layer = self.shape[1]
        meta = dict(model_name=self.model_info.get("name"), model_fingerprint=self.model_info.get("fingerprint"),
                    model_shape=self.shape, source="routehead router",
                    normalise=self.extra.get("normalise", "zscore"))
        sets = []
        for row in probs:
            if top_k is not None:
                chosen = torch.topk(row, top_k, sorted=True).indices.tolist()
            else:
                chosen = torch.nonzero(row >= threshold).flatten().tolist() or [int(row.argmax())]
            chosen = sorted(chosen)  # flat index order is (layer, head) order, as in the HeadSet
            pairs = [(i // per_layer, i % per_layer) for i in chosen]
            sets.append(heads_mod.from_pairs(pairs, extra={"probabilities": [float(row[i]) for i in chosen]}, **meta))
        return sets

    def route_queries(self, model: LoadedModel, queries: Sequence[str], **embed_kwargs) -> list[HeadSet]:
        """Embed ``queries`` with the recorded embedding settings, check the model, then :meth:`route`."""
        check_model(self.model_info, model)
        embeddings = embed_queries(model, queries, layer=self.config.embedding_layer,
                                   pooling=self.config.embedding_pooling, template=self.config.embedding_template,
                                   **embed_kwargs)
        return self.route(embeddings)


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def seeded_training(seed: int) -> Iterator[None]:
    """Train inside a forked RNG seeded with ``seed`` and with deterministic algorithms on; both the
    RNG state and the deterministic setting are restored afterwards (also for the soft router)."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(deterministic)


def split_indices(
    n: int, *, val_fraction: float = VAL_FRACTION, seed: int = 0, query_ids: Sequence[str] | None = None
) -> tuple[list[int], list[int]]:
    """Deterministic (train, validation) index lists: by a seeded hash of ``query_ids`` if given,
    else by a seeded permutation. The validation side gets ``round(n * val_fraction)`` queries."""
    if not 0.0 <= val_fraction < 1.0:
        raise RouterError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = int(round(n * val_fraction))
    if query_ids is not None:
        if len(query_ids) != n:
            raise RouterError(f"{len(query_ids)} query ids for {n} embeddings")
        if len(set(map(str, query_ids))) != n:
            raise RouterError("query ids must be unique")
        key = lambda i: hashlib.sha256(f"{seed}\x1f{query_ids[i]}".encode()).digest()  # noqa: E731
        order = sorted(range(n), key=key)
    else:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    val = sorted(order[:n_val])
    train = sorted(order[n_val:])
    return train, val


def _pos_weight(config: RouterConfig, labels: torch.Tensor) -> torch.Tensor | None:
    if config.pos_weight == "auto":
        pos = labels.sum(dim=0)
        neg = labels.shape[0] - pos
        return (neg / pos.clamp_min(1.0)).clamp(1.0, config.pos_weight_cap)
    if float(config.pos_weight) == 1.0:
        return None
    return torch.full((labels.shape[1],), float(config.pos_weight))


def _losses(logits: torch.Tensor, labels: torch.Tensor, pos_weight: torch.Tensor | None, sparsity: float):
    bce = nn.functional.binary_cross_entropy_with_logits(logits, labels, pos_weight=pos_weight)
    density = torch.sigmoid(logits).mean()
    return bce + sparsity * density, bce, density


def _is_multi_hot(labels: torch.Tensor) -> bool:
    return bool(((labels == 0) | (labels == 1)).all())


def _recall_at_k(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Mean over queries with labels of |top-k ∩ labels| / min(k, |labels|); soft targets count
    their own top-k heads as the label."""
    if not _is_multi_hot(labels):
        top_true = torch.topk(labels, k, dim=1).indices
        labels = torch.zeros_like(labels).scatter_(1, top_true, 1.0)
    has = labels.sum(dim=1) > 0
    if not has.any():
        return float("nan")
    top = torch.topk(logits[has], k, dim=1).indices
    hits = labels[has].gather(1, top).sum(dim=1)
    return float((hits / labels[has].sum(dim=1).clamp(max=k)).mean())


def train_router(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    config: RouterConfig | None = None,
    *,
    val_fraction: float = VAL_FRACTION,
    val_indices: Sequence[int] | None = None,
    query_ids: Sequence[str] | None = None,
    model: LoadedModel | None = None,
) -> TrainedRouter:
    """Train a router on query embeddings ``[N, d]`` and head targets ``[N, L, H]`` in [0, 1]
    (multi-hot label sets, or soft targets; soft targets need ``config.top_k``).

    Validation queries: ``val_indices``, else ``val_fraction`` of them (see :func:`split_indices`);
    with none, all epochs run and the last weights are kept. ``model`` (optional) is recorded as the
    LLM the router is for. History: ``train_loss``, ``val_loss``, ``val_bce``, ``val_density``
    (mean probability) and ``val_recall_at_k`` per epoch.
    """
    config = config or RouterConfig()
    embeddings, labels = _check_training_data(embeddings, labels)
    n = len(embeddings)
    shape = (labels.shape[1], labels.shape[2])
    flat = labels.reshape(n, -1).float()
    if val_indices is not None:
        val = sorted({int(i) for i in val_indices})
        if val and not (0 <= val[0] and val[-1] < n):
            raise RouterError(f"validation indices must be in 0..{n - 1}")
        held_out = set(val)
        train = [i for i in range(n) if i not in held_out]
    else:
        train, val = split_indices(n, val_fraction=val_fraction, seed=config.seed, query_ids=query_ids)
    if not train:
        raise RouterError("no training queries left after the validation split")
    x_train, y_train = embeddings[train], flat[train]
    x_val, y_val = embeddings[val], flat[val]
    if _is_multi_hot(flat):
        default_top_k = max(1, int(round(float(y_train.sum(dim=1).mean()))))
    elif config.top_k is None:
        raise RouterError("soft targets have no set size: give top_k (heads routed per query)")
    else:
        default_top_k = config.top_k
    pos_weight = _pos_weight(config, y_train)

    history: dict[str, list[float]] = {k: [] for k in ("train_loss", "val_loss", "val_bce", "val_density", "val_recall_at_k")}
    with seeded_training(config.seed):
        router = Router(embeddings.shape[1], shape, config)
        router.set_input_stats(x_train)
        with torch.no_grad():
            prior = y_train.mean(dim=0).clamp(1.0 / (len(train) + 2), 1.0 - 1.0 / (len(train) + 2))
            router.head_bias.copy_(torch.logit(prior))
        decay = [p for name, p in router.named_parameters() if not name.endswith("bias")]
        no_decay = [p for name, p in router.named_parameters() if name.endswith("bias")]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
        batches = torch.Generator().manual_seed(config.seed + 1)
        best = (math.inf, 0, copy.deepcopy(router.state_dict()))
        for epoch in range(1, config.epochs + 1):
            router.train()
            total, seen = 0.0, 0
            for index in torch.randperm(len(train), generator=batches).split(config.batch_size):
                loss, _, _ = _losses(router(x_train[index]), y_train[index], pos_weight, config.sparsity)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(index)
                seen += len(index)
            history["train_loss"].append(total / seen)
            if not val:
                best = (math.nan, epoch, None)
                continue
            router.eval()
            with torch.no_grad():
                logits = router(x_val)
                loss, bce, density = _losses(logits, y_val, pos_weight, config.sparsity)
            history["val_loss"].append(float(loss))
            history["val_bce"].append(float(bce))
            history["val_density"].append(float(density))
            history["val_recall_at_k"].append(_recall_at_k(logits, y_val, config.top_k or default_top_k))
            if float(loss) < best[0] - config.min_delta:
                best = (float(loss), epoch, copy.deepcopy(router.state_dict()))
            elif epoch - best[1] >= config.patience:
                logger.info("router: early stop at epoch %d (best %d, val loss %.5f)", epoch, best[1], best[0])
                break
        if best[2] is not None:
            router.load_state_dict(best[2])
    router.eval()
    trained = TrainedRouter(router=router, config=config, default_top_k=default_top_k, history=history,
                            best_epoch=best[1], extra={"n_train": len(train), "n_val": len(val)})
    if model is not None:
        trained.model_info = model_info(model)
    logger.info("router: %d train / %d validation queries, best epoch %d, default top-k %d",
                len(train), len(val), best[1], default_top_k)
    return trained


def _check_training_data(embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2:
        raise RouterError("embeddings must be a [N, d] tensor")
    if not isinstance(labels, torch.Tensor) or labels.dim() != 3:
        raise RouterError("labels must be a [N, layers, heads] tensor")
    if len(embeddings) != len(labels):
        raise RouterError(f"{len(embeddings)} embeddings but {len(labels)} label sets")
    if len(embeddings) < 2:
        raise RouterError("training needs at least two queries")
    if labels.dtype != torch.bool and not (torch.isfinite(labels).all() and (labels >= 0).all() and (labels <= 1).all()):
        raise RouterError("targets must be in [0, 1] (multi-hot label sets or soft targets)")
    embeddings = embeddings.detach().to(device="cpu", dtype=torch.float32)
    if not torch.isfinite(embeddings).all():
        raise RouterError("embeddings contain NaN or infinite values")
    return embeddings, labels.detach().cpu().to(torch.float32)


# ------------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------------


def save_router(
    trained: TrainedRouter,
    path: str | os.PathLike[str],
    *,
    model: LoadedModel,
    prompt_settings: dict | None = None,
    extra: dict | None = None,
) -> None:
    """Write ``trained`` to one file (atomically): weights, config, LLM, prompt and embedding settings.

    ``model`` is the LLM the embeddings and labels came from; the embedding layer is stored as an
    absolute index. ``prompt_settings`` and ``extra`` must hold plain values (str, numbers, lists, dicts).
    """
    info = fitting_model_info(model, trained.shape, trained.router.input_dim, trained.model_info)
    config = asdict(trained.config)
    config["embedding_layer"] = resolve_layer(model.spec, trained.config.embedding_layer)
    payload = {
        "format": FORMAT,
        "model": info,
        "shape": list(trained.shape),
        "input_dim": trained.router.input_dim,
        "config": config,
        "embedding": {"layer": config["embedding_layer"], "pooling": config["embedding_pooling"],
                      "template": config["embedding_template"]},
        "prompt_settings": dict(prompt_settings if prompt_settings is not None else trained.prompt_settings),
        "default_top_k": trained.default_top_k,
        "best_epoch": trained.best_epoch,
        "history": trained.history,
        "extra": {**trained.extra, **(extra or {})},
        "versions": {"torch": str(torch.__version__)},
        "state_dict": {k: v.detach().cpu().clone() for k, v in trained.router.state_dict().items()},
    }
    added = trained.file_fields()
    payload.update(added)
    for key in ("prompt_settings", "extra", *added):
        check_plain(payload[key], key)
    with atomic_open(path, "wb") as handle:
        torch.save(payload, handle)


