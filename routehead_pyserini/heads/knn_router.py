"""Nearest-neighbour routing: the memorisation baseline of the learned RouteHead router.

A new query is routed to the heads voted for by its ``k`` nearest training queries. If the learned
router (:mod:`.router`) does not beat this, it has learned nothing that a lookup table of the
training labels does not already hold.

How a query is routed::

    x      = (q - mean) / std           # per-dimension statistics of the training embeddings
    u      = x / |x|                    # cosine similarity = inner product of unit vectors
    N(q)   = the k training queries with the largest u . u_j   (faiss IndexFlatIP: exact search)
    votes  = sum over j in N(q) of w_j * label_j          # label_j: multi-hot over (layer, head)
    route  = the top_m heads by (votes, summed similarity, layer-major order)

Design choices, and why:

- **Standardise, then cosine** (``standardise=True``, the default): the same per-dimension
  standardisation as the learned router. Raw LLM hidden states have a few dimensions with huge
  values shared by every query; raw cosine is then decided by those dimensions (and the common
  direction makes every pair look alike). ``standardise=False`` is plain cosine of the raw
  embeddings. The statistics are recomputed from the stored embeddings on load (bit-identical).
- **Exact search, deterministic ties.** faiss ``IndexFlatIP`` over the float32 unit vectors gives a
  shortlist of ``2k + 8`` candidates; their similarities are recomputed in float64 and sorted by
  (similarity desc, training index asc), and the first ``k`` are the neighbours. So the neighbours
  of a query do not depend on the batch it is routed in (faiss switches to a BLAS path for larger
  batches, whose float32 sums can differ in the last bit) or on faiss's order of tied results.
- **Vote rule** (``vote``): ``"count"`` (default) — each neighbour gives weight 1 to every head of
  its label set: a plain majority vote, the purest memorisation baseline; ``"similarity"`` — weight
  ``max(similarity, 0)``: nearer neighbours count more and dissimilar ones not at all.
- **Ties** between heads with equal votes go to the head with the higher summed similarity of the
  neighbours that voted for it, then to the earlier head in layer-major order.
- **Set size**: ``top_m`` heads (default: the mean label-set size of the training queries, rounded,
  at least 1). Only heads that are in at least one neighbour's label are eligible, so a set can be
  smaller than ``top_m`` when the neighbours agree (never padded with heads nobody voted for).
- **Leave-one-out**: ``route(train_embeddings, exclude_self=True)`` leaves each training query out
  of its own neighbours (by index, not by value: duplicated query texts still find each other).
  Test queries are never in the index, so inference excludes nothing.
- **Files** are one ``torch.save`` dict of plain types and tensors (``"kind": "knn"``, loaded with
  ``weights_only=True``), written atomically: the training embeddings, label sets, query ids, k,
  vote rule, the LLM (:func:`.router.model_info`) and the query-embedding settings. Loading against
  another LLM raises :class:`.router.RouterError`. :func:`.router.load_any_router` reads either kind.
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict
from typing import Any, Sequence

import numpy as np
import torch

from . import head_set as heads_mod
from ..files import atomic_open
from .head_set import HeadSet
from ..engine.models import LoadedModel
from .checkpoint import RouterError, check_plain, check_model, fitting_model_info
from ..engine.query_embedding import embed_queries
from ..engine.query_embedding import resolve_layer
from .checkpoint import model_info as info_of
from .checkpoint import read_router_file
from .configs import KnnConfig

logger = logging.getLogger(__name__)

FORMAT = "routehead-knn-router/1"
KIND = "knn"
_SHORTLIST_MARGIN = 8  # faiss shortlist of 2k + 8, re-scored in float64 (see the module docstring)


def _as_label_sets(labels, n: int, shape: tuple[int, int] | None) -> tuple[list[tuple[tuple[int, int], ...]], tuple[int, int]]:
    """Label sets as sorted (layer, head) tuples, from a ``[N, L, H]`` multi-hot tensor or pair lists."""
    if isinstance(labels, torch.Tensor):
        if labels.dim() != 3:
            raise RouterError("labels must be a [N, layers, heads] tensor or a list of (layer, head) lists")
        if labels.dtype != torch.bool and not ((labels == 0) | (labels == 1)).all():
            raise RouterError("labels must be multi-hot (0/1 or bool)")
        if shape is not None and tuple(shape) != tuple(labels.shape[1:]):
            raise RouterError(f"labels of shape {tuple(labels.shape[1:])}, shape says {tuple(shape)}")
        shape = (int(labels.shape[1]), int(labels.shape[2]))
        sets = [tuple((int(l), int(h)) for l, h in torch.nonzero(row.bool()).tolist()) for row in labels]
    else:
        if shape is None:
            raise RouterError("label sets given as pair lists need shape=(layers, heads)")
        shape = (int(shape[0]), int(shape[1]))
        sets = []
        for i, pairs in enumerate(labels):
            pairs = sorted({(int(l), int(h)) for l, h in pairs})
            for l, h in pairs:
                if not (0 <= l < shape[0] and 0 <= h < shape[1]):
                    raise RouterError(f"label {i}: head {l}.{h} is outside {shape[0]} layers x {shape[1]} heads")
            sets.append(tuple(pairs))
    if len(sets) != n:
        raise RouterError(f"{n} embeddings but {len(sets)} label sets")
    return sets, shape


class KnnRouter:
    """Routes a query to the heads voted for by its ``k`` nearest training queries (see the module docstring).

    Same inference surface as :class:`.router.TrainedRouter`: :attr:`model_info`, :attr:`shape`,
    :attr:`extra`, :attr:`config` (embedding layer/pooling/template), :meth:`route`,
    :meth:`route_queries`.
    """

    def __init__(
        self,
        embeddings: torch.Tensor,
        labels,
        config: KnnConfig | None = None,
        *,
        shape: tuple[int, int] | None = None,
        query_ids: Sequence[str] | None = None,
        model: LoadedModel | None = None,
        model_info: dict[str, Any] | None = None,
        prompt_settings: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ):
        import faiss

        self.config = config or KnnConfig()
        if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2 or len(embeddings) < 1:
            raise RouterError("embeddings must be a non-empty [N, d] tensor")
        self.embeddings = embeddings.detach().to(device="cpu", dtype=torch.float32).contiguous()
        if not torch.isfinite(self.embeddings).all():
            raise RouterError("embeddings contain NaN or infinite values")
        n = len(self.embeddings)
        self.label_sets, self._shape = _as_label_sets(labels, n, shape)
        if not any(self.label_sets):
            raise RouterError("every label set is empty")
        self.query_ids = None if query_ids is None else [str(q) for q in query_ids]
        if self.query_ids is not None and len(self.query_ids) != n:
            raise RouterError(f"{len(self.query_ids)} query ids for {n} embeddings")
        if self.config.k > n:
            logger.warning("knn router: k=%d but only %d training queries; using k=%d", self.config.k, n, n)
        self.default_top_m = max(1, int(round(sum(len(s) for s in self.label_sets) / n)))
        self.model_info: dict[str, Any] = dict(model_info or {})
        if model is not None:
            self.model_info = info_of(model)
        self.prompt_settings: dict[str, Any] = dict(prompt_settings or {})
        self.extra: dict[str, Any] = dict(extra or {})
        # standardisation statistics (float64) and the unit vectors of the training queries
        x = self.embeddings.to(torch.float64)
        if self.config.standardise:
            self._mean = x.mean(dim=0)
            std = x.std(dim=0, unbiased=False) if n > 1 else torch.ones(x.shape[1], dtype=torch.float64)
            self._std = torch.where(std > 1e-6 * float(std.max()), std, torch.ones_like(std))
        else:
            self._mean = torch.zeros(x.shape[1], dtype=torch.float64)
            self._std = torch.ones(x.shape[1], dtype=torch.float64)
        self._unit = self._transform(x)
        self._index = faiss.IndexFlatIP(x.shape[1])
        self._index.add(np.ascontiguousarray(self._unit.numpy().astype(np.float32)))
        # [N, L*H] multi-hot, for vectorised votes
        self._label_matrix = torch.zeros(n, self._shape[0] * self._shape[1], dtype=torch.float64)
        for i, pairs in enumerate(self.label_sets):
            for l, h in pairs:
                self._label_matrix[i, l * self._shape[1] + h] = 1.0

    # -------------------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    @property
    def input_dim(self) -> int:
        return int(self.embeddings.shape[1])

    def __len__(self) -> int:
        return len(self.embeddings)

    def describe(self) -> str:
        return (f"kNN router over {len(self)} training queries (k={min(self.config.k, len(self))}, vote={self.config.vote}, "
                f"{'standardised ' if self.config.standardise else ''}cosine, {self.config.top_m or self.default_top_m} heads per query)")

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.to(torch.float64) - self._mean) / self._std
        return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def _check_input(self, embeddings: torch.Tensor) -> torch.Tensor:
        if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2 or embeddings.shape[1] != self.input_dim:
            shape = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
            raise RouterError(f"expected query embeddings [N, {self.input_dim}], got {shape}")
        embeddings = embeddings.detach().to(device="cpu", dtype=torch.float32)
        if not torch.isfinite(embeddings).all():
            raise RouterError("query embeddings contain NaN or infinite values")
        return embeddings

    def neighbours(
        self, embeddings: torch.Tensor, *, exclude_self: bool = False, indices: Sequence[int] | None = None
    ) -> list[list[tuple[int, float]]]:
        """Per query, its neighbours as ``(training index, cosine similarity)``, nearest first.

        ``exclude_self``: query ``i`` is training query ``indices[i]`` (default: ``i``, so
        ``embeddings`` must be the training embeddings in order) and is left out of its own neighbours.
        """
        x = self._check_input(embeddings)
        n = len(self)
        if exclude_self:
            if n < 2:
                raise RouterError("leave-one-out needs at least two training queries")
            if indices is None:
                if len(x) != n:
                    raise RouterError(f"exclude_self without indices needs the {n} training embeddings, got {len(x)}")
                indices = range(n)
            indices = [int(i) for i in indices]
            if len(indices) != len(x) or any(not 0 <= i < n for i in indices):
                raise RouterError(f"indices must give one training index in 0..{n - 1} per query")
        elif indices is not None:
            raise RouterError("indices are only used with exclude_self=True")
        k = min(self.config.k, n - 1 if exclude_self else n)
        if len(x) == 0:
            return []
        unit = self._transform(x)
        shortlist = min(n, 2 * k + _SHORTLIST_MARGIN + (1 if exclude_self else 0))
        _, ids = self._index.search(np.ascontiguousarray(unit.numpy().astype(np.float32)), shortlist)
        out = []
        for row, candidates in enumerate(ids.tolist()):
            candidates = sorted({c for c in candidates if c >= 0 and not (exclude_self and c == indices[row])})
            sims = (self._unit[candidates] * unit[row]).sum(dim=1).tolist()
            ranked = sorted(zip(candidates, sims), key=lambda item: (-item[1], item[0]))
            out.append(ranked[:k])
        return out

    def votes(self, neighbours: Sequence[tuple[int, float]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(votes, summed similarity, voters)`` per flat head ``[L*H]`` (float64) from one query's neighbours."""
        ids = [i for i, _ in neighbours]
        sims = torch.tensor([s for _, s in neighbours], dtype=torch.float64)
        weights = torch.ones_like(sims) if self.config.vote == "count" else sims.clamp_min(0.0)
        members = self._label_matrix[ids]  # [k, L*H]
        return weights @ members, sims @ members, members.sum(dim=0)

    def route(
        self,
        embeddings: torch.Tensor,
        *,
        top_m: int | None = None,
        exclude_self: bool = False,
        indices: Sequence[int] | None = None,
    ) -> list[HeadSet]:
        """One :class:`HeadSet` per query: the ``top_m`` heads its neighbours vote for (see the module docstring).

        ``extra`` of each set: ``votes`` and ``similarity`` (summed) of its heads, and ``neighbours``
        (training query ids, or indices when there are none) with their ``neighbour_similarities``.
        """
        top_m = int(top_m if top_m is not None else self.config.top_m or self.default_top_m)
        n_heads = self.shape[0] * self.shape[1]
        if not 1 <= top_m <= n_heads:
            raise RouterError(f"top_m must be in 1..{n_heads}, got {top_m}")
        per_layer = self.shape[1]
        meta = dict(model_name=self.model_info.get("name"), model_fingerprint=self.model_info.get("fingerprint"),
                    model_shape=self.shape, source=f"knn router (k={self.config.k}, vote={self.config.vote})",
                    normalise=self.extra.get("normalise", "zscore"))
        sets = []
        for found in self.neighbours(embeddings, exclude_self=exclude_self, indices=indices):
            votes, similarity, voters = self.votes(found)
            eligible = torch.nonzero(voters > 0).flatten().tolist()
            chosen = sorted(eligible, key=lambda h: (-float(votes[h]), -float(similarity[h]), h))[:top_m]
            chosen.sort()  # flat index order is (layer, head) order, as in the HeadSet
            names = [self.query_ids[i] if self.query_ids is not None else i for i, _ in found]
            extra = {"votes": [float(votes[h]) for h in chosen], "similarity": [float(similarity[h]) for h in chosen],
                     "neighbours": names, "neighbour_similarities": [float(s) for _, s in found]}
            sets.append(heads_mod.from_pairs([divmod(h, per_layer) for h in chosen], extra=extra, **meta))
        return sets

    def leave_one_out(self, *, top_m: int | None = None) -> list[HeadSet]:
        """Each training query routed by the others (its own label never votes)."""
        return self.route(self.embeddings, top_m=top_m, exclude_self=True)

    def route_queries(self, model: LoadedModel, queries: Sequence[str], **embed_kwargs) -> list[HeadSet]:
        """Embed ``queries`` with the recorded embedding settings, check the model, then :meth:`route`."""
        check_model(self.model_info, model)
        embeddings = embed_queries(model, queries, layer=self.config.embedding_layer,
                                   pooling=self.config.embedding_pooling, template=self.config.embedding_template,
                                   **embed_kwargs)
        return self.route(embeddings)


def label_recall(routed: Sequence[HeadSet], label_sets: Sequence[Sequence[tuple[int, int]]]) -> float:
    """Mean over queries with a label of ``|routed ∩ label| / min(|routed|, |label|)``."""
    values = []
    for head_set, label in zip(routed, label_sets, strict=True):
        label = {tuple(p) for p in label}
        if label:
            values.append(len(label & set(head_set.heads)) / min(len(head_set.heads), len(label)))
    return sum(values) / len(values) if values else float("nan")


# ------------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------------


def save_knn_router(
    router: KnnRouter,
    path: str | os.PathLike[str],
    *,
    model: LoadedModel,
    prompt_settings: dict | None = None,
    extra: dict | None = None,
) -> None:
    """Write ``router`` to one file (atomically): embeddings, label sets, settings, its LLM.

    ``model`` is the LLM the embeddings and labels came from; the embedding layer is stored as an
    absolute index. ``prompt_settings`` and ``extra`` must hold plain values.
    """
    info = fitting_model_info(model, router.shape, router.input_dim, router.model_info)
    config = asdict(router.config)
    config["embedding_layer"] = resolve_layer(model.spec, router.config.embedding_layer)
    payload = {
        "format": FORMAT,
        "kind": KIND,
        "model": info,
        "shape": list(router.shape),
        "input_dim": router.input_dim,
        "config": config,
        "embedding": {"layer": config["embedding_layer"], "pooling": config["embedding_pooling"],
                      "template": config["embedding_template"]},
        "prompt_settings": dict(prompt_settings if prompt_settings is not None else router.prompt_settings),
        "default_top_m": router.default_top_m,
        "labels": [[list(p) for p in pairs] for pairs in router.label_sets],
        "query_ids": router.query_ids,
        "extra": {**router.extra, **(extra or {})},
        "versions": {"torch": str(torch.__version__)},
        "embeddings": router.embeddings.clone(),
    }
    for key in ("prompt_settings", "extra", "query_ids"):
        check_plain(payload[key], key)
    with atomic_open(path, "wb") as handle:
        torch.save(payload, handle)


def knn_router_from_payload(payload: dict, path: str | os.PathLike[str], *, model: LoadedModel | None = None) -> KnnRouter:
    """A :class:`KnnRouter` from a file's contents (see :func:`load_knn_router`)."""
    if not isinstance(payload, dict) or payload.get("kind") != KIND or payload.get("format") != FORMAT:
        raise RouterError(f"{path}: not a kNN router file (expected format {FORMAT!r})")
    if model is not None:
        check_model(payload["model"], model)
    router = KnnRouter(payload["embeddings"], [[tuple(p) for p in pairs] for pairs in payload["labels"]],
                       KnnConfig.from_dict(payload["config"]), shape=tuple(payload["shape"]),
                       query_ids=payload.get("query_ids"), model_info=dict(payload["model"]),
                       prompt_settings=dict(payload.get("prompt_settings", {})), extra=dict(payload.get("extra", {})))
    if router.default_top_m != int(payload["default_top_m"]):
        raise RouterError(f"{path}: inconsistent kNN router file (default top_m)")
    return router


def load_knn_router(path: str | os.PathLike[str], *, model: LoadedModel | None = None) -> KnnRouter:
    """Read a kNN router file; with ``model``, check that it is the LLM the router was built for."""
    return knn_router_from_payload(read_router_file(path), path, model=model)
