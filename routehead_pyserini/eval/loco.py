"""Leave-one-collection-out (LOCO) and pooled cross-validation of learned head weights.

The honest simulation of a user's new collection: for each collection, every choice (the loss,
the L1 strength, so the number of heads) is made on the *other* collections only, by an inner
leave-one-collection-out validation (:attr:`.weights.TrainConfig.cv_by` ``"group"``: the mean
over collections, each counted once), the weights are trained on all of them, and the held-out
collection is ranked once. Pooled query-level cross-validation is the other protocol: queries of
all collections mixed into 5 folds, so a method may learn collection-specific heads.

A :class:`Method` is one row of the tables: which features are fused with the heads (the BM25
score, the bi-encoder cosine) and whether heads are used at all (the fusion-only control keeps
none). :func:`fit` is the procedure both protocols and the shipped presets (:mod:`.presets`) run.
Other rows choose heads differently, fitted on the same training queries only: the QRHead-style
static top-16, soft routing (:mod:`.soft_router`) and RouteHead's hard routing
(:mod:`.hard_routing`: pseudo labels, router, routed heads summed), the last two from each query's
embedding by the frozen LLM.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from ..errors import UserError
from ..data.folds import fold_of
from ..heads.head_set import HeadSet, aggregate
from ..heads.pooled import PooledData, PooledQuery
from ..heads.presets import PRESET_KEY
from ..data.trec import ranked_hits
from ..data.trec import Hit
from ..heads.features import Dataset
from ..heads.weights import CVPoint, LearnedWeights, TrainConfig, cross_validate, lambda_grid, train_weights
from ..heads.ndcg import ndcg_at_k
from ..heads.soft_router import SoftRouterConfig, train_soft_router
from ..heads.hard_routing import train_hard_routing
from ..heads.weights import to_head_set

logger = logging.getLogger(__name__)

#: The L1 strength of the fusion-only control: every head weight is 0 at this value.
NO_HEADS = 1e12


class LocoError(UserError, ValueError):
    """An evaluation that cannot be run as asked (too few collections, unknown method)."""


@dataclass(frozen=True)
class Method:
    """A learned configuration: heads (or none) with the BM25 score and/or the bi-encoder cosine."""

    name: str
    fuse: bool = True  # the first-stage (BM25) score is a feature
    dense: bool = False  # the bi-encoder cosine is a feature
    heads: bool = True  # False: the fusion alone (the control that shows what the heads add)
    description: str = ""
    router: str = "static"  # "soft": per-query head weights (:mod:`.soft_router`); "hard": RouteHead (:mod:`.hard_routing`)
    max_layer: int | None = None  # cost cap: only heads of layers 0..max_layer may get a weight (the forward stops there)

    def capped(self, max_layer: int | None) -> "Method":
        """This method with only the heads of layers ``0..max_layer`` (``None``: every layer)."""
        from dataclasses import replace

        name = self.name.split("@")[0] + ("" if max_layer is None else f"@L{max_layer}")
        return replace(self, name=name, max_layer=max_layer)

    @property
    def routed(self) -> bool:
        """Per-query routing from the frozen LLM's query embedding (the collections need ``embeddings=True``)."""
        return self.router in ROUTERS


#: The routers that read each query's embedding.
ROUTERS = ("soft", "hard")

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("heads+bm25", fuse=True, description="pointwise heads, learned weights, fused with BM25"),
    Method("heads+bm25+dense", fuse=True, dense=True, description="pointwise heads, learned weights, fused with BM25 and the bi-encoder"),
    Method("bm25+dense", fuse=True, dense=True, heads=False, description="BM25 fused with the bi-encoder, no head (the control)"),
    Method("heads", fuse=False, description="pointwise heads, learned weights, nothing fused"),
    Method("static top-16", fuse=False, router="qrhead",
           description="QRHead-style: the 16 heads of best mean single-head nDCG@10 on the training queries, summed z-scored"),
    Method("soft+bm25", fuse=True, router="soft", description="soft routing: per-query head weights, fused with BM25"),
    Method("soft+bm25+dense", fuse=True, dense=True, router="soft",
           description="soft routing: per-query head weights, fused with BM25 and the bi-encoder"),
    Method("routehead", fuse=False, router="hard",
           description="RouteHead hard routing: the query's 16 routed heads, summed z-scored, nothing fused"),
    Method("routehead+bm25", fuse=True, router="hard",
           description="RouteHead hard routing: the routed heads' sum fused with BM25 (weight chosen on the training queries)"),
)}


@dataclass(frozen=True)
class SearchSpace:
    """What inner validation chooses among: the losses, and (by default) the L1 path of each."""

    losses: tuple[str, ...] = ("pointwise", "pairwise")
    inner_folds: int = 5  # query folds, when the training part holds a single collection
    patience: int | None = 2  # stop the L1 path after this many lambdas without a better mean (None: the whole path)


@dataclass
class Fitted:
    """A method trained on some queries, and how its settings were chosen."""

    method: Method
    learned: LearnedWeights
    loss: str
    lam: float
    validation: str  # how: "leave-one-collection-out over N" or "5-fold over queries"
    cv_ndcg: float  # the chosen setting's inner validation nDCG@10
    tried: list[dict] = field(default_factory=list)  # every (loss, lambda, nDCG) tried

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        return self.learned.scores(features)

    @property
    def n_heads(self) -> int:
        return int((self.learned.head_weights != 0).sum())

    @property
    def deepest_layer(self) -> int | None:
        nonzero = (self.learned.head_weights != 0).nonzero()
        return int(nonzero[:, 0].max()) if len(nonzero) else None


def fit(train: Dataset, method: Method, space: SearchSpace = SearchSpace(), *, cv_by: str | None = None) -> Fitted:
    """Choose the loss and L1 strength by inner validation on ``train`` alone, then train on all of it.

    Inner validation leaves one collection out at a time when ``train`` holds several (the mean
    over collections); else ``space.inner_folds`` query folds. Ties go to the simpler model
    (the larger lambda), then to the loss listed first. ``cv_by="query"`` forces query folds.
    """
    train = cap_layers(train, method.max_layer)
    groups = {q.group for q in train.queries}
    cv_by = cv_by or ("group" if len(groups) >= 2 else "query")
    how = (f"leave-one-collection-out over {len(groups)} collections" if cv_by == "group"
           else f"{space.inner_folds}-fold over queries")
    best: tuple[float, float, str] | None = None
    tried = []
    for loss in space.losses:
        config = TrainConfig(loss=loss, penalty="l1", folds=space.inner_folds, cv_by=cv_by)
        lambdas = [NO_HEADS] if not method.heads else lambda_grid(train, config)
        for point in cross_validate(train, config, lambdas, patience=space.patience):
            tried.append({"loss": loss, "lambda": point.lam, "ndcg": round(point.ndcg, 6),
                          "fold_ndcg": [round(v, 6) for v in point.fold_ndcg]})
            key = (round(point.ndcg, 9), point.lam)
            if best is None or key > best[:2]:
                best = (*key, loss)
    ndcg, lam, loss = best
    learned = train_weights(train, TrainConfig(loss=loss, penalty="l1", lambdas=(lam,), cv_by=cv_by))
    learned.cv = [CVPoint(lam, ndcg, [])]
    logger.info("%s: loss %s, lambda %.3g (%s nDCG@10 %.4f), %d heads", method.name, loss, lam, how, ndcg,
                int((learned.head_weights != 0).sum()))
    return Fitted(method, learned, loss, lam, how, ndcg, tried)


def cap_layers(train: Dataset, max_layer: int | None) -> Dataset:
    """``train`` with the features of heads below layer ``max_layer`` set to 0: an L1 fit never
    weights a zero feature, so the learned heads all sit in layers ``0..max_layer``."""
    if max_layer is None or max_layer >= train.shape[0] - 1:
        return train
    from dataclasses import replace

    cut = (max_layer + 1) * train.shape[1]  # features are layer-major
    capped = []
    for q in train.queries:
        x = q.features.clone()
        x[:, cut:train.n_heads] = 0.0
        capped.append(replace(q, features=x))
    return Dataset(capped, train.shape, train.fuse, train.skipped, train.dense)


def choose_layer_cap(train: Dataset, method: Method, caps: Sequence[int], space: SearchSpace = SearchSpace()) -> tuple[int | None, list[dict]]:
    """The shallowest cap whose inner-validation nDCG@10 is within one standard error of the best
    cap's, and every cap's figures.

    The standard error is that of the *paired* per-fold differences to the best cap: the folds
    (collections, under leave-one-collection-out) differ far more from each other than the caps
    do, and an unpaired error would call every cap "within noise" and always pick the shallowest.
    """
    rows = []
    for cap in caps:
        fitted = fit(train, method.capped(cap), space)
        folds = next((t.get("fold_ndcg") for t in fitted.tried if t["loss"] == fitted.loss and t["lambda"] == fitted.lam), None)
        rows.append({"max_layer": cap, "ndcg": fitted.cv_ndcg, "fold_ndcg": folds or [], "heads": fitted.n_heads,
                     "deepest_layer": fitted.deepest_layer})
    best = max(rows, key=lambda r: r["ndcg"])
    for row in rows:
        diffs = torch.tensor(row["fold_ndcg"], dtype=torch.float64) - torch.tensor(best["fold_ndcg"], dtype=torch.float64)
        row["paired_se"] = float(diffs.std() / math.sqrt(len(diffs))) if len(diffs) > 1 else 0.0
        row["within_noise"] = row["ndcg"] >= best["ndcg"] - row["paired_se"]
    chosen = min((r for r in rows if r["within_noise"]), key=lambda r: r["max_layer"])
    return chosen["max_layer"], rows


# --------------------------------------------------------------------------------------------
# Runs of one collection


def _ranked(query: PooledQuery, values: Sequence[float] | None) -> list[Hit]:
    if query.scores is None or values is None:
        return ranked_hits([], [], query.rest)
    return ranked_hits(query.scores.docids, list(values), query.rest)


def first_stage_hits(query: PooledQuery) -> list[Hit]:
    """The query's first-stage ranking (scored candidates in their first-stage order, then the rest)."""
    if query.scores is None:
        return ranked_hits([], [], query.rest)
    n = len(query.scores.docids)
    return ranked_hits(query.scores.docids, [float(n - i) for i in range(n)], query.rest)


def all_heads_hits(query: PooledQuery) -> list[Hit]:
    """Pointwise all heads, unweighted (the sum of every head's calibrated score: ICR's aggregation)."""
    if query.scores is None:
        return _ranked(query, None)
    return _ranked(query, aggregate(query.scores.calibrated, HeadSet()).tolist())


def dense_hits(query: PooledQuery) -> list[Hit]:
    """The bi-encoder alone: the candidates by cosine."""
    return _ranked(query, query.dense)


@dataclass
class Protocol:
    """Predicted scores of every query under one protocol: ``{method: {COLLECTION/QID: scores}}``."""

    name: str
    scores: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    fitted: dict[str, list[dict]] = field(default_factory=dict)  # method -> what each training chose


@dataclass
class SoftFitted:
    """A soft router trained on some queries: per-query head weights from the query embedding."""

    router: object  # soft_router.SoftRouter, hard_routing.HardRouting: .scores(embedding, features)
    embeddings: torch.Tensor
    rows: dict[str, int]
    validation: str = "static part: 5-fold over queries; per-query part: early stopping on 20% of the queries"

    def score(self, key: str, features: torch.Tensor) -> torch.Tensor:
        return self.router.scores(self.embeddings[self.rows[key]], features)


def fit_soft(train: Dataset, method: Method, embeddings: torch.Tensor, keys: Sequence[str],
             space: SearchSpace = SearchSpace()) -> SoftFitted:
    """A soft router on ``train`` (its default settings; the loss is the first of ``space.losses``)."""
    router = train_soft_router(embeddings, train, list(keys), SoftRouterConfig(loss=space.losses[0], top_k=min(16, train.n_heads),
                                                                                static_patience=space.patience))
    return SoftFitted(router, embeddings, {k: i for i, k in enumerate(keys)})


@dataclass
class HardFitted(SoftFitted):
    """RouteHead's hard router trained on some queries (:class:`.hard_routing.HardRouting`)."""

    validation: str = ("labels: beam search per training query; router: early stopping on 20% of them, "
                       "which also choose the fusion weight")


def fit_hard(train: Dataset, embeddings: torch.Tensor, keys: Sequence[str]) -> HardFitted:
    """A hard router on ``train`` (labels, router and fusion with the package's defaults)."""
    return HardFitted(train_hard_routing(train, embeddings, list(keys)), embeddings, {k: i for i, k in enumerate(keys)})


@dataclass
class StaticTopK:
    """QRHead-style static set: the ``k`` heads with the best mean single-head nDCG@10 over the
    training queries (ties: the earlier head, layer-major), their z-scored scores summed."""

    heads: list[int]  # flat layer-major indices
    validation: str = "none (the set is the training queries' top heads by mean nDCG@10)"

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        return features[:, self.heads].sum(dim=1)


def fit_static_topk(train: Dataset, k: int = 16) -> StaticTopK:
    total = torch.zeros(train.n_heads, dtype=torch.float64)
    for q in train.queries:
        total += ndcg_at_k(q.features[:, :train.n_heads].T.contiguous(), q.grades, q.ideal).to(torch.float64)
    top = torch.sort(-torch.round(total / len(train.queries) * 1e6), stable=True).indices[:min(k, train.n_heads)]
    return StaticTopK(sorted(top.tolist()))


def _fit_any(data: PooledData, train: Dataset, method: Method, space: SearchSpace, cv_by: str | None = None):
    if method.router == "qrhead":
        return fit_static_topk(train)
    if method.routed and data.embeddings is None:
        raise LocoError(f"{method.name} needs query embeddings: load the collections with embeddings=True")
    if method.router == "soft":
        return fit_soft(train, method, data.embeddings, data.embedding_keys, space)
    if method.router == "hard":
        return fit_hard(train, data.embeddings, data.embedding_keys)
    return fit(train, method, space, cv_by=cv_by)


def _predict(fitted, key: str, features: torch.Tensor) -> torch.Tensor:
    return fitted.score(key, features) if isinstance(fitted, SoftFitted) else fitted.scores(features)


_SHARED: dict = {}  # what forked workers read (set just before the pool starts, cleared after)


def _loco_task(task: tuple[str, str]) -> tuple[str, str, dict, dict]:
    """One (method, held-out collection) of :func:`leave_one_collection_out`, in this process or a worker."""
    data, space, methods = _SHARED["data"], _SHARED["space"], _SHARED["methods"]
    method, name = methods[task[0]], task[1]
    names = [c.name for c in data.collections]
    features = data.features(method.fuse, method.dense)
    train = data.training_set(method.fuse, method.dense, [n for n in names if n != name])
    assert name not in {q.group for q in train.queries}  # never trains on the held-out collection
    fitted = _fit_any(data, train, method, space)
    scores = {q.key: _predict(fitted, q.key, features[q.key]) for q in data.of(name) if q.scores is not None}
    return method.name, name, _record(fitted, held_out=name, train=train), scores


def _run_tasks(tasks: list, jobs: int, task=None) -> list:
    """``task`` (default :func:`_loco_task`) over ``tasks``, on ``jobs`` forked processes (one torch
    thread each) when more than one; results in task order either way."""
    task = task or _loco_task
    if jobs <= 1 or len(tasks) <= 1:
        return [task(t) for t in tasks]
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(min(jobs, len(tasks)), initializer=_worker_init) as pool:
        return pool.map(task, tasks, chunksize=1)


def _worker_init() -> None:
    """A forked fitting worker: one torch thread, and the default SIGTERM action (the pool ends its
    workers with SIGTERM when the map is done; the CLI's handler, inherited through the fork, would
    print a KeyboardInterrupt traceback from each of them)."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    torch.set_num_threads(1)


def leave_one_collection_out(data: PooledData, methods: Sequence[Method], space: SearchSpace = SearchSpace(),
                             held_out: Sequence[str] | None = None, *, jobs: int = 1) -> Protocol:
    """For each collection (or those of ``held_out``): fit on all the others, score it.

    ``jobs``: fit that many (method, held-out collection) pairs at once in forked processes; the
    results do not depend on it (each fit is deterministic and single-threaded there).
    """
    names = [c.name for c in data.collections]
    if len(names) < 2:
        raise LocoError("leave-one-collection-out needs at least two collections")
    out = Protocol("loco")
    _SHARED.update(data=data, space=space, methods={m.name: m for m in methods})
    try:
        results = _run_tasks([(m.name, name) for m in methods for name in held_out or names], jobs)
    finally:
        _SHARED.clear()
    for method_name, _, record, scores in results:  # in task order: methods, then collections
        out.fitted.setdefault(method_name, []).append(record)
        out.scores.setdefault(method_name, {}).update(scores)
    return out


def _pooled_task(task: tuple[str, int]) -> tuple[str, int, dict, dict]:
    """One (method, fold) of :func:`pooled_cross_validation`."""
    data, space, methods, folds, seed = (_SHARED[k] for k in ("data", "space", "methods", "folds", "seed"))
    method, f = methods[task[0]], task[1]
    features = data.features(method.fuse, method.dense)
    full = data.training_set(method.fuse, method.dense)
    fold = {key: fold_of(key, folds, seed) for key in features}
    train = Dataset([q for q in full.queries if fold[q.qid] != f], full.shape, full.fuse, full.skipped, full.dense)
    fitted = _fit_any(data, train, method, space, cv_by="query")  # mixed: inner folds over queries too
    scores = {key: _predict(fitted, key, x) for key, x in features.items() if fold[key] == f}
    return method.name, f, _record(fitted, held_out=f"fold {f}", train=train), scores


def pooled_cross_validation(data: PooledData, methods: Sequence[Method], space: SearchSpace = SearchSpace(),
                            folds: int = 5, seed: int = 0, *, jobs: int = 1) -> Protocol:
    """Queries of all collections mixed into ``folds`` folds; each fold scored by a fit on the others
    (whose inner validation is query folds too, with collections mixed)."""
    out = Protocol("pooled-cv")
    _SHARED.update(data=data, space=space, methods={m.name: m for m in methods}, folds=folds, seed=seed)
    try:
        results = _run_tasks([(m.name, f) for m in methods for f in range(folds)], jobs, _pooled_task)
    finally:
        _SHARED.clear()
    for method_name, _, record, scores in results:
        out.fitted.setdefault(method_name, []).append(record)
        out.scores.setdefault(method_name, {}).update(scores)
    return out


def _record(fitted, *, held_out: str, train: Dataset) -> dict:
    if isinstance(fitted, StaticTopK):
        per_layer = train.shape[1]
        return {"held_out": held_out, "validation": fitted.validation, "heads": len(fitted.heads),
                "deepest_layer": max(h // per_layer for h in fitted.heads), "training_queries": len(train.queries),
                "set": [f"{h // per_layer}.{h % per_layer}" for h in fitted.heads]}
    if isinstance(fitted, HardFitted):
        routing = fitted.router
        return {"held_out": held_out, "validation": fitted.validation, "best_epoch": routing.router.best_epoch,
                "top_k": routing.top_k, "labelled_queries": routing.labelled, "skipped": len(routing.skipped),
                "mean_label_size": round(routing.mean_label_size, 4), "fuse_weights": routing.fuse_weights,
                "fusion_queries": routing.fusion_queries, "training_queries": len(train.queries)}
    if isinstance(fitted, SoftFitted):
        extra = fitted.router.extra
        return {"held_out": held_out, "validation": fitted.validation, "best_epoch": fitted.router.best_epoch,
                "static_heads": extra.get("static_heads"), "static_lambda": extra.get("static_lambda"),
                "training_queries": len(train.queries)}
    return {"held_out": held_out, "loss": fitted.loss, "lambda": fitted.lam, "validation": fitted.validation,
            "cv_ndcg": round(fitted.cv_ndcg, 6), "heads": fitted.n_heads, "deepest_layer": fitted.deepest_layer,
            "training_queries": len(train.queries),
            "fuse_weight": fitted.learned.fuse_weight, "dense_weight": fitted.learned.dense_weight}


def runs_of(data: PooledData, protocol: Protocol, collection: str) -> dict[str, dict[str, list[Hit]]]:
    """``{method: {qid: hits}}`` of one collection under ``protocol`` (plain qids, as in its run)."""
    out = {}
    for method, scores in protocol.scores.items():
        out[method] = {q.qid: _ranked(q, None if q.key not in scores else scores[q.key].tolist())
                       for q in data.of(collection)}
    return out


def mean(values: Mapping[str, float]) -> float:
    vals = [v for v in values.values() if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else float("nan")


def train_preset(data, method, *, model_name: str, model_fingerprint: str, prompt_settings: dict,
                 scores: dict, command: str = "", created: str | None = None, exclude=(), space=None,
                 quantize: str | None = None) -> HeadSet:
    """Fit ``method`` (:class:`.loco.Method`) on the collections of ``data`` (:class:`.pooled.PooledData`)
    but ``exclude``, with leave-one-collection-out inner validation, as a preset head set.

    Leaving a benchmark out (TREC DL 2019 by default) makes the preset's figure there exactly its
    leave-one-collection-out figure, which anyone can check with ``rerank`` and ``evaluate``.

    ``scores``: ``{"loco": {collection: nDCG@10, "mean": ...}, "pooled_cv": {...}}`` of the same
    method from :mod:`.loco_report` (the figures a user should expect on a new collection).
    """
    import datetime

    if method.router != "static":
        raise LocoError(f"{method.name} is not a preset: presets are learned static head weights "
                        "(the static top-16 and the routers are table rows; routers are router files)")
    keep = [c.name for c in data.collections if c.name not in set(exclude)]
    train = data.training_set(method.fuse, method.dense, keep)
    fitted = fit(train, method, space or SearchSpace())
    counts = {name: sum(1 for q in train.queries if q.group == name) for name in keep}
    sampled = {c.name: c.sample for c in data.collections if c.sample}  # the figures hold for these samples only
    info = {"prompt_settings": dict(prompt_settings), "collections": counts}
    head_set = to_head_set(fitted.learned, model_name=model_name, model_fingerprint=model_fingerprint, info=info)
    record = {
        "name": method.name + (f"-{quantize}" if quantize else ""),  # an int8 preset is its own (`rerank --preset`)
        "quantize": quantize or "none",
        "method": method.description,
        "model": model_name,
        "prompt_settings": dict(prompt_settings),
        "training": {"collections": counts, "queries": len(train.queries), "left_out": sorted(set(exclude)),
                     "protocol": f"loss and L1 strength chosen by {fitted.validation} (mean nDCG@10 {fitted.cv_ndcg:.4f}), "
                                 "then trained on every training query"},
        "loss": fitted.loss,
        "lambda": fitted.lam,
        "heads": fitted.n_heads,
        "deepest_layer": fitted.deepest_layer,
        "max_layer": method.max_layer,
        "scores": scores,
        **({"sample": sampled} if sampled else {}),
        "created": created or datetime.date.today().isoformat(),
        "command": command,
    }
    return HeadSet(head_set.heads, head_set.weights, head_set.model_name, head_set.model_fingerprint, head_set.model_shape,
                   f"preset {model_name}/{record['name']}: " + head_set.source, head_set.normalise,
                   {**head_set.extra, PRESET_KEY: record})
