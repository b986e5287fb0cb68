"""Learned head weights: a sparse linear ranker over per-head scores, optionally fused with the first stage.

**Features.** For one query with candidates ``d_1..d_n`` (first-stage order), feature ``j`` of
document ``i`` is the calibrated score of head ``j`` (layer-major) *z-normalised within the query*
(:func:`.heads.normalise_scores`: mean 0, std 1 over the query's candidates; a flat head is 0).
With fusion, one more feature: the document's first-stage (BM25) score, z-normalised within the
query the same way; with dense fusion, one more again: the cosine similarity of the query and the
document under the packaged all-MiniLM-L6-v2 bi-encoder (:mod:`.dense`), z-normalised the same way. All features are therefore on one scale, and a weight says how many "query
standard deviations" of that head (or of BM25) one unit of score is worth.

**Model.** ``score(d) = sum_j w_j x_j(d)``; no intercept is needed to rank (the pointwise loss
fits one and drops it). With ``w = 0`` every score ties and the candidates keep their first-stage
order, so the most regularised model *is* the first stage (with or without fusion).

**Losses** (each a mean over training queries of a per-query mean):

- ``pointwise``: logistic regression of "grade >= relevance_level" on the features (+ intercept);
- ``pairwise``: RankNet, ``log(1 + exp(-(s_i - s_j)))`` over candidate pairs with ``grade_i > grade_j``;
- ``listwise``: ListNet top-one cross-entropy between ``softmax(s)`` and the gain distribution
  ``(2^grade - 1) / sum``.

Penalty ``l1`` (``lambda * |w|_1``, sparse: only some heads keep a weight) or ``l2``
(``lambda/2 * |w|^2``) on the head weights only: never on the fusion weight nor the intercept. So
the most regularised fused model is the first stage alone, and heads enter it as lambda falls.

**Optimisation.** Full-batch proximal gradient descent with Nesterov momentum (FISTA) with
backtracking and adaptive restart, in float64, starting from ``w = 0`` (or the previous solution
along the lambda path). There is no randomness: the same data and settings give the same weights.

**Choosing lambda.** k-fold cross-validation *over training queries* (folds by a seeded hash of
the qid, :func:`.head_analysis.fold_of`): for each lambda of the grid, train on the other folds and
take the mean nDCG@10 (trec_eval's ``ndcg_cut_10``: ideal over all judged documents, ties by
first-stage rank; :func:`.head_analysis.ndcg_at_k`) over the held-out queries. The best mean wins,
ties going to the larger lambda (the simpler model); the final weights are then trained on all
training queries. Default grid: for ``l1``, ten values from ``lambda_max`` down to
``lambda_max / 1000`` (log-spaced), where ``lambda_max`` is the largest gradient of any head weight
at the head-free optimum over all training queries and over each fold's training part, so that at
the first value every fit keeps no head: the first stage is always a candidate, and wins unless a
smaller lambda beats it on held-out queries. For ``l2``, ``10^1 .. 10^-4``.

Training queries: judged queries with at least one relevant candidate in the top-k (the others give
every model the same nDCG: no signal); they are counted in :attr:`Dataset.skipped`.

**File.** The result is a head-set file (:mod:`.heads`) so ``rerank --heads weights.json`` uses it:
``heads``/``weights`` list every head with a non-zero weight, ``normalise`` is ``zscore``, and two
extra fields::

    "fuse":       {"weight": 0.83, "normalise": "zscore", "feature": "first-stage score"}   # with fusion only
    "fuse_dense": {"weight": 0.41, "normalise": "zscore", "model": "all-minilm-l6-v2"}     # with dense fusion only
    "learned": {"loss": ..., "penalty": ..., "lambda": ..., "cv": [...], "prompt_settings": {...}, ...}

The model block records name, fingerprint and shape; :func:`check_head_set_model` refuses a learned
file on any other model. When L1 removes every head, one head is kept with weight 0 (a head set
needs a head): the ranking is then the fused first stage alone.

Re-ranking with such a file (:func:`fused_scores`): the head set's weighted sum of z-normalised
head scores plus ``fuse.weight`` times the z-normalised first-stage scores of the same candidates
(plus ``fuse_dense.weight`` times their z-normalised dense cosines).
Other readers of head sets (labels, analyses) see only the head part.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch

from ..data.folds import fold_of
from .ndcg import ndcg_at_k
from .head_set import HeadSet, from_pairs
from .features import Batch, Dataset, QueryData, make_batch
from .configs import TrainConfig
from .fusion import DENSE_KEY, FUSE_KEY, LEARNED_KEY, WeightsError

logger = logging.getLogger(__name__)



# --------------------------------------------------------------------------------------------
# Training


def _smooth_loss(theta: torch.Tensor, batch: Batch, config: TrainConfig) -> torch.Tensor:
    n_features = batch.x.shape[-1]
    s = batch.x @ theta[:n_features]  # [Q, D]
    return ranking_loss(s, batch, config, theta[n_features] if config.loss == "pointwise" else None)


@dataclass
class _Flat:
    """A batch's pointwise or pairwise loss as a weighted sum over rows of one 2-D design matrix.

    The same loss as :func:`ranking_loss` (per-query means, then the mean over queries), with the
    per-query weights folded into ``weights``: pointwise rows are documents (``x``, label ``y``),
    pairwise rows are pairs ``x_i - x_j`` with ``grade_i > grade_j``. Its gradient is two matrix
    products, which makes the lambda path tens of times faster than autograd over ``[Q, D, F]``.
    """

    x: torch.Tensor  # [rows, F]
    weights: torch.Tensor  # [rows]
    y: torch.Tensor | None  # [rows] pointwise labels


def _flatten(batch: Batch, config: TrainConfig) -> _Flat:
    key = (config.loss, config.relevance_level)
    cached = getattr(batch, "_flat", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    if config.loss == "pointwise":
        counts = batch.mask.sum(-1).to(torch.float64)  # [Q]
        per_row = (1.0 / (counts * batch.mask.shape[0]))[:, None].expand_as(batch.grades)
        level = config.relevance_level if batch.levels is None else batch.levels[:, None]
        labels = (batch.grades >= level).to(torch.float64)
        flat = _Flat(batch.x[batch.mask], per_row[batch.mask], labels[batch.mask])
    else:
        counts = batch.pairs.sum(dim=(1, 2)).to(torch.float64)
        has = counts > 0
        q, i, j = batch.pairs.nonzero(as_tuple=True)
        diff = batch.x[q, i] - batch.x[q, j]
        flat = _Flat(diff, 1.0 / (counts[q] * int(has.sum())), None)
    object.__setattr__(batch, "_flat", (key, flat))
    return flat


def _flat_value_and_grad(theta: torch.Tensor, flat: _Flat, n_features: int, pointwise: bool,
                         need_grad: bool = True) -> tuple[float, torch.Tensor | None]:
    s = flat.x @ theta[:n_features]
    if pointwise:
        s = s + theta[n_features]
        value = float((flat.weights * (torch.nn.functional.softplus(s) - flat.y * s)).sum())
        if not need_grad:
            return value, None
        r = flat.weights * (torch.sigmoid(s) - flat.y)
        return value, torch.cat([flat.x.T @ r, r.sum()[None]])
    value = float((flat.weights * torch.nn.functional.softplus(-s)).sum())
    if not need_grad:
        return value, None
    return value, -(flat.x.T @ (flat.weights * torch.sigmoid(-s)))


def ranking_loss(s: torch.Tensor, batch: Batch, config: TrainConfig, intercept: torch.Tensor | None = None) -> torch.Tensor:
    """``config.loss`` of scores ``s`` ``[Q, D]`` of ``batch``'s candidates (module docstring); the
    pointwise loss adds ``intercept`` to every score. Also used by the soft router (:mod:`.soft_router`)."""
    if config.loss == "pointwise":
        logits = s + (0.0 if intercept is None else intercept)
        level = config.relevance_level if batch.levels is None else batch.levels[:, None]
        y = (batch.grades >= level).to(s.dtype)
        per_doc = torch.nn.functional.softplus(logits) - y * logits
        per_query = (per_doc * batch.mask).sum(-1) / batch.mask.sum(-1)
        return per_query.mean()
    if config.loss == "pairwise":
        diff = s[:, :, None] - s[:, None, :]
        per_pair = torch.nn.functional.softplus(-diff) * batch.pairs
        counts = batch.pairs.sum(dim=(1, 2))
        has = counts > 0
        return (per_pair.sum(dim=(1, 2))[has] / counts[has]).mean()
    # listwise (ListNet, top one)
    logp = torch.log_softmax(s.masked_fill(~batch.mask, -math.inf), dim=-1)
    gains = (torch.pow(2.0, batch.grades) - 1.0) * batch.mask
    target = gains / gains.sum(-1, keepdim=True)
    return -(target * logp.masked_fill(~batch.mask, 0.0)).sum(-1).mean()


def _value_and_grad(theta: torch.Tensor, batch: Batch, config: TrainConfig) -> tuple[float, torch.Tensor]:
    if config.loss in ("pointwise", "pairwise"):
        return _flat_value_and_grad(theta, _flatten(batch, config), batch.x.shape[-1], config.loss == "pointwise")
    theta = theta.detach().requires_grad_(True)
    value = _smooth_loss(theta, batch, config)
    (grad,) = torch.autograd.grad(value, theta)
    return float(value.detach()), grad


def _penalty(w: torch.Tensor, lam: float, penalty: str) -> float:
    if not bool(w.any()):
        return 0.0  # also for lam = inf (fitting the unpenalised weights alone)
    return lam * float(w.abs().sum()) if penalty == "l1" else 0.5 * lam * float(w.pow(2).sum())


def _prox(theta: torch.Tensor, threshold: float, n_features: int, penalty: str) -> torch.Tensor:
    out = theta.clone()
    w = theta[:n_features]
    if penalty == "l1":
        out[:n_features] = torch.sign(w) * torch.clamp(w.abs() - threshold, min=0.0)
    else:
        out[:n_features] = w / (1.0 + threshold)
    return out


def _fit(batch: Batch, config: TrainConfig, lam: float, init: torch.Tensor | None = None) -> torch.Tensor:
    """Minimise loss + penalty by FISTA with backtracking and restart (deterministic)."""
    n_features = batch.n_heads  # the penalised part
    size = batch.x.shape[-1] + (1 if config.loss == "pointwise" else 0)
    theta = torch.zeros(size, dtype=torch.float64) if init is None else init.clone()

    def smooth(t: torch.Tensor) -> float:
        if config.loss in ("pointwise", "pairwise"):
            return _flat_value_and_grad(t, _flatten(batch, config), batch.x.shape[-1], config.loss == "pointwise", False)[0]
        return float(_smooth_loss(t, batch, config))

    def objective(t: torch.Tensor) -> float:
        return smooth(t) + _penalty(t[:n_features], lam, config.penalty)

    y, momentum, step = theta.clone(), 1.0, 1.0
    current = objective(theta)
    for _ in range(config.max_iter):
        f_y, g_y = _value_and_grad(y, batch, config)
        step *= 1.25  # let the step grow back after backtracking
        while True:
            z = _prox(y - step * g_y, step * lam, n_features, config.penalty)
            d = z - y
            f_z = smooth(z)
            if f_z <= f_y + float(g_y @ d) + float(d @ d) / (2 * step) + 1e-12 or step < 1e-12:
                break
            step *= 0.5
        new_value = f_z + _penalty(z[:n_features], lam, config.penalty)
        change = float((z - theta).abs().max())
        scale = max(1.0, float(theta.abs().max()))
        if new_value > current and momentum > 1.0:  # restart: drop the momentum, step again from theta
            y, momentum = theta.clone(), 1.0
            continue
        next_momentum = (1.0 + math.sqrt(1.0 + 4.0 * momentum * momentum)) / 2.0
        y = z + ((momentum - 1.0) / next_momentum) * (z - theta)
        theta, momentum, current = z, next_momentum, new_value
        if change <= config.tol * scale:
            break
    return theta


def lambda_grid(dataset: Dataset, config: TrainConfig) -> list[float]:
    """The lambdas cross-validation tries, largest first (``config.lambdas`` when given)."""
    if config.lambdas is not None:
        return sorted({float(v) for v in config.lambdas}, reverse=True)
    if config.penalty == "l2":
        return [10.0 ** (1 - i * 0.5) for i in range(11)]
    folds = fold_assignment(dataset, config)
    parts = [dataset.queries] + [[q for q in dataset.queries if folds[q.qid] != f] for f in sorted(set(folds.values()))]
    top = 0.0
    for part in parts:
        if not part:
            continue
        batch = make_batch(part, dataset.n_heads)
        # the optimum of the unpenalised weights (first stage, intercept) with every head at 0
        theta = _fit(batch, config, math.inf) if batch.x.shape[-1] > batch.n_heads or config.loss == "pointwise" else None
        size = batch.x.shape[-1] + (1 if config.loss == "pointwise" else 0)
        _, grad = _value_and_grad(torch.zeros(size, dtype=torch.float64) if theta is None else theta, batch, config)
        top = max(top, float(grad[: batch.n_heads].abs().max()))
    if top <= 0:
        raise WeightsError("the loss has no gradient at w = 0: the features cannot separate anything")
    return [top * (1.0 + 1e-9) * 10.0 ** (-3.0 * i / 9) for i in range(10)]


def _mean_ndcg(theta: torch.Tensor, queries: Sequence[QueryData], k: int) -> float:
    values = [float(ndcg_at_k((q.features @ theta[: q.features.shape[1]])[None], q.grades, q.ideal, k)[0]) for q in queries]
    return sum(values) / len(values)


def _path(batch: Batch, config: TrainConfig, lambdas: Sequence[float]) -> list[torch.Tensor]:
    """Weights for each lambda (largest first, each warm-started from the previous one)."""
    out, previous = [], None
    for lam in lambdas:
        previous = _fit(batch, config, lam, previous)
        out.append(previous)
    return out


@dataclass
class CVPoint:
    """Cross-validated mean nDCG@k of one lambda."""

    lam: float
    ndcg: float
    fold_ndcg: list[float]


@dataclass
class LearnedWeights:
    """Trained weights (``[layers*heads (+1 fusion)]``) and how they were chosen."""

    weights: torch.Tensor
    shape: tuple[int, int]
    fuse: bool
    lam: float
    config: TrainConfig
    cv: list[CVPoint]
    training_queries: int
    skipped: dict[str, list[str]]
    train_ndcg: float
    dense: str | None = None  # the encoder of the dense fusion feature

    @property
    def head_weights(self) -> torch.Tensor:
        """``[layers, heads]``."""
        return self.weights[: self.shape[0] * self.shape[1]].reshape(self.shape)

    @property
    def fuse_weight(self) -> float | None:
        return float(self.weights[self.shape[0] * self.shape[1]]) if self.fuse else None

    @property
    def dense_weight(self) -> float | None:
        return float(self.weights[-1]) if self.dense is not None else None

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """Scores of one query's candidates from :func:`query_features` (same fusion setting)."""
        if features.shape[1] != self.weights.shape[0]:
            raise ValueError(f"{features.shape[1]} features for {self.weights.shape[0]} weights")
        return features @ self.weights


def fold_assignment(dataset: Dataset, config: TrainConfig) -> dict[str, int]:
    """qid -> cross-validation fold: a seeded hash of the qid, or (``cv_by="group"``) its collection."""
    if config.cv_by == "group":
        groups = sorted({q.group for q in dataset.queries})
        return {q.qid: groups.index(q.group) for q in dataset.queries}
    return {q.qid: fold_of(q.qid, config.folds, config.fold_seed) for q in dataset.queries}


def cross_validate(dataset: Dataset, config: TrainConfig, lambdas: Sequence[float], *,
                   patience: int | None = None) -> list[CVPoint]:
    """Mean held-out nDCG@k per lambda, k-fold over the training queries.

    With ``cv_by="group"`` each fold is one collection left out, and the mean is over collections
    (each collection's held-out mean counts once, however many queries it has), which is what a
    user's new collection is: the choice that transfers, not the one that fits the largest set.

    ``patience``: stop walking down the path once the mean has not improved on the best for that
    many successive lambdas (the denser, costlier fits that follow rarely win); the points not
    reached are left out of the result.
    """
    folds = fold_assignment(dataset, config)
    used = sorted(set(folds.values()))
    if len(used) < 2:
        raise WeightsError(f"cross-validation needs queries in at least two folds ({len(dataset.queries)} training queries)")
    parts = []
    for f in used:
        train = [q for q in dataset.queries if folds[q.qid] != f]
        parts.append((make_batch(train, dataset.n_heads), [q for q in dataset.queries if folds[q.qid] == f]))
    sizes = [sum(1 for q in dataset.queries if folds[q.qid] == f) for f in used]
    if config.cv_by == "group":
        sizes = [1] * len(used)  # macro: the mean over collections
    points: list[CVPoint] = []
    previous: list[torch.Tensor | None] = [None] * len(parts)
    best, since = -math.inf, 0
    for lam in lambdas:  # largest first, each fold warm-started from its previous solution
        values = []
        for i, (batch, test) in enumerate(parts):
            previous[i] = _fit(batch, config, lam, previous[i])
            values.append(_mean_ndcg(previous[i], test, config.k))
        mean = sum(v * n for v, n in zip(values, sizes)) / sum(sizes)  # the mean over held-out queries (or collections)
        points.append(CVPoint(lam, mean, values))
        if mean > best + 1e-9:
            best, since = mean, 0
        else:
            since += 1
            if patience is not None and since >= patience:
                break
    return points


def train_weights(dataset: Dataset, config: TrainConfig = TrainConfig()) -> LearnedWeights:
    """Choose lambda by cross-validation over ``dataset``'s queries, then train on all of them."""
    lambdas = lambda_grid(dataset, config)
    if len(lambdas) == 1:
        points = [CVPoint(lambdas[0], float("nan"), [])]
    else:
        points = cross_validate(dataset, config, lambdas, patience=config.patience)
    # best mean nDCG; ties (at 1e-9) to the larger lambda, which comes first
    best = max(points, key=lambda p: (round(p.ndcg, 9), p.lam)) if len(points) > 1 else points[0]
    for p in points if len(points) > 1 else ():
        logger.info("lambda %.3g: cross-validated nDCG@%d %.4f", p.lam, config.k, p.ndcg)
    batch = make_batch(dataset.queries, dataset.n_heads)
    path = _path(batch, config, [lam for lam in lambdas if lam >= best.lam])
    theta = path[-1]
    weights = theta[: dataset.n_features].clone()
    learned = LearnedWeights(weights, dataset.shape, dataset.fuse, best.lam, config, points, len(dataset.queries),
                             dataset.skipped, _mean_ndcg(theta, dataset.queries, config.k), dataset.dense)
    chosen = f"cross-validated nDCG@{config.k} {best.ndcg:.4f}" if len(points) > 1 else "one value: cross-validation skipped"
    logger.info("chose lambda %.3g (%s); %d of %d heads weighted%s%s; training nDCG %.4f",
                best.lam, chosen, int((learned.head_weights != 0).sum()), learned.head_weights.numel(),
                "" if not dataset.fuse else f", fusion weight {learned.fuse_weight:.4f}",
                "" if dataset.dense is None else f", dense weight {learned.dense_weight:.4f}", learned.train_ndcg)
    return learned


# --------------------------------------------------------------------------------------------
# Nested cross-validation (evaluation of the whole procedure on one set of judged queries)


def nested_cv_predictions(
    dataset: Dataset,
    features: Mapping[str, torch.Tensor],
    config: TrainConfig,
    *,
    outer_folds: int = 5,
    seed: int = 0,
) -> tuple[dict[str, torch.Tensor], list[LearnedWeights]]:
    """Scores for every query of ``features``, each from weights trained without its outer fold.

    Outer folds: :func:`.head_analysis.fold_of` with ``seed`` over all queries of ``features``;
    inside each, lambda is chosen by ``config``'s cross-validation with another fold seed, on the
    training queries of the other outer folds only.
    """
    fold = {qid: fold_of(qid, outer_folds, seed) for qid in features}
    scores: dict[str, torch.Tensor] = {}
    models: list[LearnedWeights] = []
    for f in sorted(set(fold.values())):  # the folds that hold queries (not range(): --outer-folds may be huge)
        held_out = [qid for qid in features if fold[qid] == f]
        if not held_out:
            continue
        train = Dataset([q for q in dataset.queries if fold[q.qid] != f], dataset.shape, dataset.fuse, dataset.skipped, dataset.dense)
        if not train.queries:
            raise WeightsError(f"outer fold {f}: no training queries in the other folds")
        inner = TrainConfig(**{**asdict(config), "fold_seed": config.fold_seed + 1 + f})
        learned = train_weights(train, inner)
        models.append(learned)
        for qid in held_out:
            scores[qid] = learned.scores(features[qid])
    return scores, models


# --------------------------------------------------------------------------------------------
# As a head-set file


def to_head_set(
    learned: LearnedWeights,
    *,
    model_name: str | None,
    model_fingerprint: str | None,
    info: Mapping | None = None,
) -> HeadSet:
    """The learned weights as a :class:`HeadSet` (see the module docstring for the fields).

    ``info``: more to record under ``learned`` (prompt settings, run, qrels...); plain values only.
    """
    layers, heads = learned.shape
    grid = learned.head_weights
    pairs = [(l, h) for l in range(layers) for h in range(heads) if float(grid[l, h]) != 0.0]
    values = [float(grid[l, h]) for l, h in pairs]
    if not pairs:
        flat = int(torch.argmax(grid.abs().flatten()))  # all 0: keep one head, weight 0
        pairs, values = [divmod(flat, heads)], [0.0]
        logger.warning("the chosen lambda leaves no head with a weight: the ranking is the %s alone",
                       "fused first stage" if learned.fuse or learned.dense else "first stage (every score ties)")
    config = learned.config
    record = {
        "features": "per-head calibrated scores z-normalised within the query"
                    + (" + first-stage score z-normalised within the query" if learned.fuse else "")
                    + (f" + {learned.dense} cosine z-normalised within the query" if learned.dense else ""),
        "loss": config.loss,
        "penalty": config.penalty,
        "lambda": learned.lam,
        "folds": config.folds,
        "fold_seed": config.fold_seed,
        "relevance_level": config.relevance_level,
        "objective": f"mean nDCG@{config.k} over held-out training queries",
        "cv": [{"lambda": p.lam, "ndcg": round(p.ndcg, 6), "fold_ndcg": [round(v, 6) for v in p.fold_ndcg]} for p in learned.cv],
        "training_queries": learned.training_queries,
        "training_ndcg": round(learned.train_ndcg, 6),
        "skipped": {k: len(v) for k, v in learned.skipped.items()},
        "nonzero_heads": sum(1 for v in values if v != 0.0),
        **dict(info or {}),
    }
    extra: dict = {}
    if learned.fuse:
        extra[FUSE_KEY] = {"weight": learned.fuse_weight, "normalise": "zscore", "feature": "first-stage score"}
    if learned.dense:
        extra[DENSE_KEY] = {"weight": learned.dense_weight, "normalise": "zscore", "model": learned.dense}
    extra[LEARNED_KEY] = record
    source = (f"learned: {config.loss} loss, {config.penalty} lambda {learned.lam:.3g} (chosen by {config.folds}-fold CV "
              f"over {learned.training_queries} training queries)" + (", fused with the first stage" if learned.fuse else "")
              + (f", fused with the {learned.dense} cosine" if learned.dense else ""))
    return from_pairs(pairs, values, model_name=model_name, model_fingerprint=model_fingerprint,
                      model_shape=(layers, heads), source=source, normalise="zscore", extra=extra)
