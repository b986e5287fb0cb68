"""Pseudo labels for the router: per training query, the head set that re-ranks its candidates best.

The router is trained to map a query to a few heads; its targets come from an offline search over
the cached per-head scores (:mod:`.cache`), no model time needed.

**Objective.** nDCG@k (default 10) of the query's candidate list re-ranked by the set's aggregated
scores, computed by :func:`.head_analysis.ndcg_at_k` — trec_eval's ``ndcg_cut_k``: graded gains,
ideal DCG over *all* judged documents of the query, score ties broken by first-stage rank. So a
label's nDCG is what ``evaluate`` reports for the run :mod:`.rerank` would write with that set
(tested).

**Aggregation.** A set's score for a document is the sum over its heads of the head's scores
*after per-head normalisation within the query* (:func:`normalise_scores`). Raw calibrated masses
differ by orders of magnitude between heads, so a raw sum is decided by the one or two loudest
heads and "adding a head" mostly means nothing; z-normalising each head over the query's documents
(mean 0, std 1; a head with no spread contributes 0) gives every head in a set an equal vote.
``normalise="none"`` keeps the raw sum (what ICR does). Inference must score with the same
normalisation as the labels were searched with: :func:`normalised_aggregate` is that function.

Normalised values are rounded to multiples of 2**-32 (far below any meaningful difference), which
makes every sum of up to ~2**16 heads exact in float64 whatever the order of addition: the search,
which adds one head at a time, and inference, which sums a set in layer-major order, therefore
rank the documents identically, ties included.

**Search.** Beam search over growing sets (:class:`SearchParams`: beam width ``beam``, largest
set ``max_size``). The beam starts with the ``beam`` best single heads. Each step tries every
remaining head on every beam member in one batched computation (``[beam, heads, docs]`` sums, one
sort); a child is kept only if it beats its own parent by more than ``min_gain``, and the best
``beam`` distinct children form the next beam. The search stops when no child improves, at
``max_size``, or once a set reaches the best nDCG the candidate list allows. The label is the best
set visited, ties broken towards the smaller set, then the lexicographically smaller head list
(layer-major), so labels are deterministic. Width 1 is plain greedy forward selection; a wider beam
can find pairs of heads that only help together.

Queries whose candidate list holds no relevant document (every set scores 0) carry no signal and
are skipped by :func:`label_queries`, which reports them.

Also here: the baselines built from the same numbers — the static QRHead-style set
(:func:`static_head_set`: top-k heads by mean single-head nDCG over training queries) and a seeded
random set (:func:`random_head_set`) — and :func:`label_frequency` for analysis.

Labels file (JSONL, :func:`write_labels`): the first line is a header::

    {"format": "routehead-labels/1", "model": {...}, "settings": {...}, "objective": {...},
     "search": {...}, "shape": [layers, heads], "queries": n, "skipped": {...}}

then one line per query: ``qid``, ``heads`` (``[[layer, head], ...]``), ``ndcg``,
``all_heads_ndcg`` and ``single_head_ndcg`` (``[layers][heads]``), floats rounded to 6 decimals.
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import torch

from ..engine.cache import QueryScores
from ..errors import UserError
from ..files import atomic_open
from .ndcg import doc_gains, ideal_dcg, ndcg_at_k, training_judgements
from .head_set import HeadSet, aggregate, from_pairs, normalise_scores
from .configs import SearchParams
from ..data.trec import read_text

logger = logging.getLogger(__name__)

FORMAT = "routehead-labels/1"


class LabelsError(UserError, ValueError):
    """A malformed labels file, or labels that do not fit what they are used with."""


# --------------------------------------------------------------------------------------------
# Scoring a head set the way labels and inference both do


def normalised_aggregate(calibrated: torch.Tensor, head_set: HeadSet, normalise: str = "zscore") -> torch.Tensor:
    """One score per document: ``head_set``'s sum of the ``normalise``-d per-head scores."""
    return aggregate(calibrated, head_set, normalise)


# --------------------------------------------------------------------------------------------
# The search


@dataclass
class QueryLabel:
    """The label of one query: its best head set and the numbers it was chosen from."""

    qid: str
    heads: tuple[tuple[int, int], ...]  # sorted (layer, head) pairs
    ndcg: float
    all_heads_ndcg: float
    single_head_ndcg: torch.Tensor  # [layers, heads]

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.single_head_ndcg.shape)


def _key(ndcg: float, members: tuple[int, ...]) -> tuple:
    """Sort key of a visited set: best nDCG, then smaller, then lexicographically smaller."""
    return (-ndcg, len(members), members)


def label_query(
    qid: str,
    calibrated: torch.Tensor,
    docids: Sequence[str],
    judged: Mapping[str, int],
    params: SearchParams = SearchParams(),
) -> QueryLabel:
    """Search the head set of one query (see the module docstring for objective and search)."""
    if calibrated.dim() != 3 or calibrated.shape[-1] != len(docids):
        raise ValueError(f"expected [layers, heads, {len(docids)}] scores, got shape {tuple(calibrated.shape)}")
    if torch.isnan(calibrated).any():
        raise ValueError(f"query {qid}: labels need every head's scores (some are NaN: not computed)")
    layers, heads, n_docs = calibrated.shape
    z = normalise_scores(calibrated, params.normalise).reshape(layers * heads, n_docs)
    gains, ideal = doc_gains(docids, judged), ideal_dcg(judged, params.k)
    best_set, best_val, single = _beam_search(z, gains, ideal, params)
    pairs = tuple(divmod(i, heads) for i in best_set)
    # reported through the inference path (equal to the search's value: sums are exact)
    final = normalised_aggregate(calibrated, from_pairs(pairs), params.normalise)
    all_heads = normalised_aggregate(calibrated, HeadSet(), params.normalise)
    both = ndcg_at_k(torch.stack([final, all_heads]), gains, ideal, params.k)
    if float(both[0]) != best_val:
        logger.warning("query %s: label nDCG %.6f at inference, %.6f in the search", qid, float(both[0]), best_val)
    return QueryLabel(qid, pairs, float(both[0]), float(both[1]), single.reshape(layers, heads))


def label_normalised(
    qid: str,
    normalised: torch.Tensor,
    gains: torch.Tensor,
    ideal: float,
    shape: tuple[int, int],
    params: SearchParams = SearchParams(),
) -> QueryLabel:
    """:func:`label_query` from scores already normalised per head: ``normalised`` ``[layers*heads,
    docs]`` (layer-major; e.g. the head columns of :func:`.features.query_features`, transposed,
    for ``params.normalise == "zscore"``), each document's gain and the query's ideal DCG@``params.k``.
    The same search, so the same label as :func:`label_query` on the calibrated scores."""
    layers, heads = shape
    if normalised.dim() != 2 or normalised.shape[0] != layers * heads or normalised.shape[1] != len(gains):
        raise ValueError(f"expected [{layers * heads}, {len(gains)}] normalised scores, got shape {tuple(normalised.shape)}")
    if torch.isnan(normalised).any():
        raise ValueError(f"query {qid}: labels need every head's scores (some are NaN: not computed)")
    z = normalised.to(torch.float64)
    best_set, best_val, single = _beam_search(z, gains, ideal, params)
    both = ndcg_at_k(torch.stack([z[list(best_set)].sum(dim=0), z.sum(dim=0)]), gains, ideal, params.k)
    return QueryLabel(qid, tuple(divmod(i, heads) for i in best_set), float(both[0]), float(both[1]),
                      single.reshape(layers, heads))


def _beam_search(z: torch.Tensor, gains: torch.Tensor, ideal: float,
                 params: SearchParams) -> tuple[tuple[int, ...], float, torch.Tensor]:
    """The search of the module docstring over normalised scores ``z`` ``[n_heads, docs]``: the best
    set (sorted flat head indices), its nDCG@k and every single head's nDCG@k ``[n_heads]``."""
    n_heads, n_docs = z.shape
    k = params.k
    # the best any order of these candidates can do: no set can beat it, so reaching it ends the search
    ceiling = float(ndcg_at_k(gains[None].to(torch.float64), gains, ideal, k)[0])

    single = ndcg_at_k(z, gains, ideal, k)  # [n_heads] float32
    order = torch.sort(-single, stable=True).indices[: params.beam].tolist()
    beam_sets: list[tuple[int, ...]] = [(i,) for i in order]
    beam_vals = single[order]
    beam_sums = z[order]  # [beam, docs]
    best_set, best_val = beam_sets[0], float(beam_vals[0])

    for _ in range(1, min(params.max_size, n_heads)):
        if best_val >= ceiling:
            break
        nb = len(beam_sets)
        vals = ndcg_at_k((beam_sums[:, None, :] + z[None, :, :]).reshape(nb * n_heads, n_docs), gains, ideal, k)
        vals = vals.reshape(nb, n_heads).to(torch.float64)
        member = torch.zeros(nb, n_heads, dtype=torch.bool)
        for b, members in enumerate(beam_sets):
            member[b, list(members)] = True
        ok = (vals > beam_vals.to(torch.float64)[:, None] + params.min_gain) & ~member
        if not ok.any():
            break
        masked = torch.where(ok, vals, torch.full_like(vals, -math.inf))
        chosen: dict[tuple[int, ...], tuple[int, int, float]] = {}
        for value in torch.unique(vals[ok]).flip(0).tolist():
            group = {}
            for b, h in torch.nonzero(masked == value).tolist():
                group.setdefault(tuple(sorted(beam_sets[b] + (h,))), (b, h, value))
            for members in sorted(group):
                if len(chosen) < params.beam and members not in chosen:
                    chosen[members] = group[members]
            if len(chosen) >= params.beam:
                break
        beam_sets = list(chosen)
        parents = torch.tensor([chosen[s][0] for s in beam_sets])
        added = torch.tensor([chosen[s][1] for s in beam_sets])
        beam_sums = beam_sums[parents] + z[added]
        beam_vals = torch.tensor([chosen[s][2] for s in beam_sets], dtype=torch.float32)
        if _key(float(beam_vals[0]), beam_sets[0]) < _key(best_val, best_set):
            best_set, best_val = beam_sets[0], float(beam_vals[0])
    return best_set, best_val, single


@dataclass
class Labels:
    """Labels of many queries, with what they were computed from."""

    queries: dict[str, QueryLabel]
    params: SearchParams = SearchParams()
    model: dict = field(default_factory=dict)  # name, fingerprint
    settings: dict = field(default_factory=dict)  # prompt settings of the score cache
    skipped: dict[str, list[str]] = field(default_factory=dict)  # reason -> qids
    shape: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.queries)

    def head_set(self, qid: str) -> HeadSet:
        """The label of ``qid`` as a :class:`HeadSet` (for re-ranking with it)."""
        label = self.queries[qid]
        return from_pairs(label.heads, source=f"label of query {qid}", normalise=self.params.normalise, **self._model_meta())

    def _model_meta(self) -> dict:
        return dict(model_name=self.model.get("name"), model_fingerprint=self.model.get("fingerprint"), model_shape=self.shape)


def label_queries(
    scores: Iterable[QueryScores],
    qrels: Mapping[str, Mapping[str, int]],
    params: SearchParams = SearchParams(),
    *,
    model_name: str | None = None,
    model_fingerprint: str | None = None,
    settings: Mapping | None = None,
) -> Labels:
    """Labels of every query of ``scores`` that can have one.

    Skipped (and listed in :attr:`Labels.skipped`): queries without judgements, and queries whose
    candidates hold no relevant document — every set scores 0 there, so any label would be noise.
    """
    started = time.perf_counter()
    queries: dict[str, QueryLabel] = {}
    skipped: dict[str, list[str]] = {"unjudged": [], "no_relevant_candidate": []}
    shape = None
    for entry in scores:
        judged = training_judgements(entry.qid, entry.docids, qrels, skipped)
        if judged is None:
            continue
        if shape is None:
            shape = entry.shape
        elif entry.shape != shape:
            raise ValueError(f"query {entry.qid}: scores of shape {entry.shape}, others {shape}")
        queries[entry.qid] = label_query(entry.qid, entry.calibrated, entry.docids, judged, params)
    logger.info("labelled %d queries in %.1f s (skipped: %d unjudged, %d without a relevant candidate)",
                len(queries), time.perf_counter() - started, len(skipped["unjudged"]), len(skipped["no_relevant_candidate"]))
    model = {k: v for k, v in {"name": model_name, "fingerprint": model_fingerprint}.items() if v is not None}
    return Labels(queries, params, model, dict(settings or {}), skipped, shape)


# --------------------------------------------------------------------------------------------
# Storage


def _objective(params: SearchParams) -> dict:
    return {"measure": f"nDCG@{params.k}", "trec_eval": f"ndcg_cut_{params.k}",
            "ideal": "all judged documents of the query", "ties": "first-stage rank",
            "aggregation": f"sum of per-head {params.normalise}-normalised scores"}


def write_labels(labels: Labels, path: str | os.PathLike[str]) -> None:
    """Write ``labels`` as JSONL (header line, then one query per line), atomically."""
    header = {
        "format": FORMAT,
        "model": labels.model,
        "settings": labels.settings,
        "objective": _objective(labels.params),
        "search": asdict(labels.params),
        "shape": None if labels.shape is None else list(labels.shape),
        "queries": len(labels.queries),
        "skipped": labels.skipped,
    }
    with atomic_open(path) as handle:
        handle.write(json.dumps(header, sort_keys=False) + "\n")
        for label in labels.queries.values():
            handle.write(json.dumps({
                "qid": label.qid,
                "heads": [list(p) for p in label.heads],
                "ndcg": round(label.ndcg, 6),
                "all_heads_ndcg": round(label.all_heads_ndcg, 6),
                "single_head_ndcg": [[round(float(v), 6) for v in row] for row in label.single_head_ndcg.tolist()],
            }) + "\n")


def read_labels(path: str | os.PathLike[str]) -> Labels:
    """Read a labels file written by :func:`write_labels`; every nDCG must be a number in [0, 1]
    (not NaN or an infinity) and a query may have one label only."""
    lines = read_text(path).splitlines()  # bytes that are not UTF-8: an error naming file and line
    try:
        header = json.loads(lines[0]) if lines else None
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise LabelsError(f"{path}: not a labels file (expected a first line with \"format\": \"{FORMAT}\")")
    try:
        params = SearchParams(**header.get("search", {}))
        if not math.isfinite(params.min_gain):
            raise ValueError(f"min_gain is {params.min_gain}")
    except (TypeError, ValueError) as exc:
        raise LabelsError(f"{path}:1: bad 'search' settings in the header ({exc})") from None
    shape = tuple(header["shape"]) if header.get("shape") else None
    queries: dict[str, QueryLabel] = {}
    first_line: dict[str, int] = {}
    for line_no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            label = QueryLabel(
                qid=str(row["qid"]),
                heads=tuple((int(l), int(h)) for l, h in row["heads"]),
                ndcg=float(row["ndcg"]),
                all_heads_ndcg=float(row["all_heads_ndcg"]),
                single_head_ndcg=torch.tensor(row["single_head_ndcg"], dtype=torch.float32),
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise LabelsError(f"{path}:{line_no}: malformed label ({exc})") from None
        for what, values in (("ndcg", torch.tensor([label.ndcg, label.all_heads_ndcg])),
                             ("single_head_ndcg", label.single_head_ndcg)):
            if not bool(((values >= 0) & (values <= 1)).all()):  # NaN fails both comparisons
                raise LabelsError(f"{path}:{line_no}: query {label.qid}: {what} holds a value that is not in [0, 1] "
                                  "(NaN, an infinity or out of range)")
        if shape is not None and label.shape != shape:
            raise LabelsError(f"{path}:{line_no}: single_head_ndcg of shape {label.shape}, header says {shape}")
        if label.qid in first_line:
            raise LabelsError(f"{path}:{line_no}: duplicate label for query {label.qid!r} (first at line {first_line[label.qid]})")
        first_line[label.qid] = line_no
        queries[label.qid] = label
    return Labels(queries, params, dict(header.get("model") or {}), dict(header.get("settings") or {}),
                  dict(header.get("skipped") or {}), shape)


# --------------------------------------------------------------------------------------------
# Baselines and analysis from the same numbers


def _label_shape(labels: Labels) -> tuple[int, int]:
    if not labels.queries:
        raise LabelsError("no labelled queries")
    return labels.shape or next(iter(labels.queries.values())).shape


def static_head_set(labels: Labels, k: int = 16) -> HeadSet:
    """QRHead-style static set: the ``k`` heads with the best mean single-head nDCG over ``labels``.

    Means are compared at the labels file's precision (6 decimals); ties go to the earlier head in
    layer-major order. Meant for training queries only: the set is
    then evaluated, unchanged, on test queries.
    """
    layers, heads = _label_shape(labels)
    if not 1 <= k <= layers * heads:
        raise ValueError(f"k must be between 1 and {layers * heads}, got {k}")
    # summed in integer millionths (the precision of the labels file): exact, so ties are real ties
    # and labels read back from a file give the same set as the labels they were written from
    stacked = torch.stack([q.single_head_ndcg for q in labels.queries.values()]).to(torch.float64)
    total = torch.round(stacked * 1e6).to(torch.int64).sum(dim=0).flatten()
    top = torch.sort(-total, stable=True).indices[:k].tolist()
    return from_pairs(
        [divmod(i, heads) for i in top],
        source=f"static: top-{k} heads by mean single-head nDCG@{labels.params.k} over {len(labels)} training queries",
        normalise=labels.params.normalise,
        extra={"selection": {"method": "static-mean-single-head-ndcg", "k": k, "training_queries": len(labels)}},
        **labels._model_meta(),
    )


def random_head_set(shape: tuple[int, int], size: int, seed: int = 0, normalise: str = "zscore", **meta) -> HeadSet:
    """``size`` distinct heads drawn uniformly from ``shape`` (same seed, same set, on any machine).

    ``meta``: :class:`HeadSet` model fields (``model_name``, ``model_fingerprint``).
    """
    layers, heads = shape
    if not 1 <= size <= layers * heads:
        raise ValueError(f"size must be between 1 and {layers * heads}, got {size}")
    drawn = random.Random(seed).sample(range(layers * heads), size)
    return from_pairs([divmod(i, heads) for i in drawn], model_shape=(layers, heads),
                      source=f"random: {size} heads, seed {seed}", normalise=normalise,
                      extra={"selection": {"method": "random", "size": size, "seed": seed}}, **meta)


def label_frequency(labels: Labels) -> torch.Tensor:
    """How many queries' label sets contain each head: ``[layers, heads]`` (int64)."""
    layers, heads = _label_shape(labels)
    counts = torch.zeros(layers, heads, dtype=torch.int64)
    for label in labels.queries.values():
        for layer, head in label.heads:
            counts[layer, head] += 1
    return counts


# --------------------------------------------------------------------------------------------
# Router targets from labels

#: What the router is trained to predict from a query (see :func:`router_targets`).
TARGETS = ("set", "tied", "soft")


def router_targets(labels: Labels, qids: Sequence[str], kind: str = "soft") -> torch.Tensor:
    """``[N, layers, heads]`` float targets in [0, 1] for the router, one row per qid of ``qids``.

    - ``set``: the searched label set, multi-hot (the paper's pseudo label);
    - ``tied``: every head whose single-head nDCG equals the query's best single-head nDCG,
      multi-hot (the label search keeps one of them, chosen by head order, when many heads tie —
      frequent when the candidates hold one or two relevant documents);
    - ``soft``: each head's single-head nDCG itself — how well the head alone re-ranks the query's
      candidates — as a soft binary-cross-entropy target. No head is named arbitrarily, and the
      router learns a graded order of heads per query, which top-k routing reads.
    """
    if kind not in TARGETS:
        raise LabelsError(f"targets must be one of {TARGETS}, got {kind!r}")
    missing = [q for q in qids if q not in labels.queries]
    if missing:
        raise LabelsError(f"{len(missing)} queries have no label (first: {missing[:5]})")
    shape = _label_shape(labels)
    rows = []
    for qid in qids:
        label = labels.queries[qid]
        single = label.single_head_ndcg.to(torch.float32)
        if kind == "set":
            row = torch.zeros(shape)
            for layer, head in label.heads:
                row[layer, head] = 1.0
        elif kind == "tied":
            # compared at the labels file's precision, so labels read back give the same targets
            millionths = torch.round(single.to(torch.float64) * 1e6)
            row = (millionths == millionths.max()).to(torch.float32)
        else:
            row = single.clamp(0.0, 1.0)
        rows.append(row)
    return torch.stack(rows)


def target_sets(targets: torch.Tensor, top_k: int | None = None) -> list[tuple[tuple[int, int], ...]]:
    """Head sets from router targets ``[N, layers, heads]`` (for the nearest-neighbour router).

    With ``top_k`` (soft targets): each query's ``top_k`` heads by target value, ties to the earlier
    head in layer-major order. Without: the heads whose target is above 0.5 (multi-hot targets).
    """
    n, layers, heads = targets.shape
    sets = []
    for row in targets.reshape(n, -1):
        chosen = torch.sort(-row, stable=True).indices[:top_k].tolist() if top_k else torch.nonzero(row > 0.5).flatten().tolist()
        sets.append(tuple(divmod(i, heads) for i in sorted(chosen)))
    return sets
