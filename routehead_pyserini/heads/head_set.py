"""Head sets: which (layer, head) pairs score a query, and how their per-head scores are summed.

A head set is ``None`` (all heads: ICR), or a sorted tuple of ``(layer, head)`` pairs, optionally
with a weight per head (default 1). On the command line ``--heads`` takes

- ``all`` — every head (ICR);
- an explicit list ``"14.3,15.0,20.7"`` — ``layer.head``, 0-based;
- a head-set file (JSON, written by :func:`write_head_set` and by later stages such as the static
  QRHead-style selection)::

      {"format": "routehead-heads/1",
       "model": {"name": "smollm2-135m", "fingerprint": "...", "layers": 30, "heads": 9},
       "heads": [[14, 3], [15, 0]],
       "weights": [1.0, 1.0],          # optional
       "normalise": "zscore",          # per-head normalisation within a query: none (ICR) | zscore
       "source": "how the set was chosen"}

The per-head score grid is ``[layers, heads, docs]`` (see :mod:`.scoring`); :func:`aggregate`
turns it into one score per document: the weighted sum of the selected heads' scores.
"""
from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..files import atomic_write_text
from ..errors import UserError
from ..data.checks import int_problem, number_problem
from ..data.trec import read_text
from .configs import NORMALISATIONS

FORMAT = "routehead-heads/1"
_QUANTUM = 2.0**-32  # see the module docstring: makes head sums exact in float64
_FLAT_STD = 1e-6  # a head whose spread is below this share of its largest magnitude is flat


class HeadSetError(UserError, ValueError):
    """A malformed head set, or one that does not fit the model."""


@dataclass(frozen=True)
class HeadSet:
    """Selected heads (``None``: all) with optional weights, and the model they were chosen for."""

    heads: tuple[tuple[int, int], ...] | None = None
    weights: tuple[float, ...] | None = None
    model_name: str | None = None
    model_fingerprint: str | None = None
    model_shape: tuple[int, int] | None = None
    source: str = ""
    normalise: str = "none"  # how each head's scores are normalised within a query before summing
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        if self.heads is not None:
            if not self.heads:
                raise HeadSetError("a head set needs at least one head")
            if len(set(self.heads)) != len(self.heads):
                raise HeadSetError("a head set lists a head twice")
        if self.weights is not None and (self.heads is None or len(self.weights) != len(self.heads)):
            raise HeadSetError("weights need one value per listed head")
        for (layer, head), weight in zip(self.heads or (), self.weights or ()):
            if not math.isfinite(weight):
                raise HeadSetError(f"weight of head {layer}.{head} is {weight}, not a finite number")
        if self.normalise not in NORMALISATIONS:
            raise HeadSetError(f"normalise must be one of {NORMALISATIONS}, got {self.normalise!r}")

    @property
    def is_all(self) -> bool:
        return self.heads is None

    def describe(self) -> str:
        if self.heads is None:
            return "all heads (ICR)"
        return f"{len(self.heads)} heads: " + ",".join(f"{l}.{h}" for l, h in self.heads[:8]) + ("..." if len(self.heads) > 8 else "")

    def mask(self, shape: tuple[int, int]) -> torch.Tensor:
        """A bool ``[layers, heads]`` mask (checks that every head exists in ``shape``)."""
        self.check_shape(shape)
        if self.heads is None:
            return torch.ones(shape, dtype=torch.bool)
        mask = torch.zeros(shape, dtype=torch.bool)
        for layer, head in self.heads:
            mask[layer, head] = True
        return mask

    def weight_grid(self, shape: tuple[int, int]) -> torch.Tensor:
        """A float ``[layers, heads]`` grid: the weight of each selected head, 0 elsewhere."""
        grid = self.mask(shape).to(torch.float32)
        if self.weights is not None:
            for (layer, head), w in zip(self.heads, self.weights):
                grid[layer, head] = float(w)
        return grid

    def check_shape(self, shape: tuple[int, int]) -> None:
        if self.model_shape is not None and tuple(self.model_shape) != tuple(shape):
            raise HeadSetError(
                f"head set chosen for a model with {self.model_shape[0]} layers x {self.model_shape[1]} heads "
                f"({self.model_name}), not {shape[0]} x {shape[1]}"
            )
        for layer, head in self.heads or ():
            if not (0 <= layer < shape[0] and 0 <= head < shape[1]):
                raise HeadSetError(f"head {layer}.{head} is outside the model's {shape[0]} layers x {shape[1]} heads")

    @property
    def deepest_layer(self) -> int | None:
        return None if self.heads is None else max(layer for layer, _ in self.heads)


def from_pairs(pairs: Iterable[tuple[int, int]], weights: Sequence[float] | None = None, **meta) -> HeadSet:
    """A :class:`HeadSet` of ``pairs`` (sorted; weights follow their heads)."""
    pairs = [(int(layer), int(head)) for layer, head in pairs]
    if weights is not None and len(weights) != len(pairs):
        raise HeadSetError("weights need one value per listed head")
    order = sorted(range(len(pairs)), key=pairs.__getitem__)
    return HeadSet(
        heads=tuple(pairs[i] for i in order),
        weights=None if weights is None else tuple(float(weights[i]) for i in order),
        **meta,
    )


_PAIR = re.compile(r"^\s*([0-9]+)\s*[.:]\s*([0-9]+)\s*$")  # ASCII digits (\d also takes e.g. Arabic-Indic ones)


def parse_heads(spec: str | os.PathLike[str] | None) -> HeadSet:
    """``None``/``"all"``, ``"L.H,L.H"`` or a head-set file path → :class:`HeadSet`."""
    if spec is None or str(spec).strip().lower() in {"", "all"}:
        return HeadSet()
    text = str(spec)
    if Path(text).expanduser().is_file():
        return read_head_set(Path(text).expanduser())
    pairs = []
    for part in text.split(","):
        match = _PAIR.match(part)
        if not match:
            raise HeadSetError(f"--heads {text!r}: expected 'all', a head-set file, or 'layer.head' pairs like '14.3,15.0' (bad part {part!r})")
        pairs.append((int(match.group(1)), int(match.group(2))))
    return from_pairs(pairs, source="command line")


def read_head_set(path: str | os.PathLike[str]) -> HeadSet:
    """Read a head-set file (see the module docstring for the format).

    Every number in it must be finite (Python's ``json`` reads ``NaN`` and ``Infinity``, and
    ``1e999`` overflows to infinity): a weight that is not is an error naming the head, any other
    number one naming its key. A key given twice in one object is an error too.
    """
    try:
        data = json.loads(read_text(path), object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise HeadSetError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    except _DuplicateKey as exc:
        raise HeadSetError(f"{path}: key {exc.args[0]!r} appears twice in one object") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise HeadSetError(f"{path}: not a head-set file (expected \"format\": \"{FORMAT}\")")
    heads = data.get("heads")
    if heads is not None and (not isinstance(heads, list) or not all(isinstance(p, list) and len(p) == 2 for p in heads)):
        raise HeadSetError(f"{path}: 'heads' must be a list of [layer, head] pairs or null")
    for pair in heads or ():
        if any(int_problem(v, 0) for v in pair):
            raise HeadSetError(f"{path}: head {pair} is not a pair of integers >= 0")
    weights = data.get("weights")
    if weights is not None:
        if not isinstance(weights, list) or heads is None or len(weights) != len(heads):
            raise HeadSetError(f"{path}: 'weights' must be a list of one number per listed head")
        for (layer, head), weight in zip(heads, weights):
            problem = number_problem(weight)
            if problem:
                raise HeadSetError(f"{path}: weight of head {layer}.{head} is {problem}")
    model = data.get("model") or {}
    if not isinstance(model, dict):
        raise HeadSetError(f"{path}: 'model' must be an object (name, fingerprint, layers, heads)")
    for key in ("layers", "heads"):
        problem = int_problem(model[key], 1) if key in model else None
        if problem:
            raise HeadSetError(f"{path}: model.{key} is {problem}")
    for key, value in data.items():  # the fusion terms ('fuse', 'fuse_dense'): {"weight": w, ...}
        problem = number_problem(value["weight"]) if isinstance(value, dict) and "weight" in value else None
        if problem:
            raise HeadSetError(f"{path}: {key}.weight is {problem}")
    _forget_nan_cv(data)
    for where, value in _numbers(data, ""):
        problem = number_problem(value)
        if problem:
            raise HeadSetError(f"{path}: {where} is {problem}")
    meta = dict(
        model_name=model.get("name"),
        model_fingerprint=model.get("fingerprint"),
        model_shape=(model["layers"], model["heads"]) if "layers" in model and "heads" in model else None,
        source=str(data.get("source", "")),
        normalise=str(data.get("normalise", "none")),
        extra={k: v for k, v in data.items() if k not in {"format", "model", "heads", "weights", "source", "normalise"}},
    )
    try:
        if heads is None:
            return HeadSet(**meta)
        return from_pairs([tuple(p) for p in heads], weights, **meta)
    except HeadSetError as exc:
        raise HeadSetError(f"{path}: {exc}") from None


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _numbers(value: object, where: str) -> Iterable[tuple[str, object]]:
    """``(dotted key, value)`` of every number (float or int) in a JSON document."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _numbers(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _numbers(item, f"{where}[{i}]")
    elif isinstance(value, float):
        yield where, value


def _forget_nan_cv(data: dict) -> None:
    """Earlier train-weights runs with one --lambdas value recorded their (skipped) CV nDCG as NaN: read it as null."""
    learned = data.get("learned")
    for point in learned.get("cv", []) if isinstance(learned, dict) and isinstance(learned.get("cv"), list) else ():
        if isinstance(point, dict) and isinstance(point.get("ndcg"), float) and math.isnan(point["ndcg"]):
            point["ndcg"] = None


def write_head_set(head_set: HeadSet, path: str | os.PathLike[str]) -> None:
    """Write ``head_set`` as JSON (atomically, keys in a fixed order); a weight that is not finite is
    an error (strict JSON has no NaN), any other non-finite number is written as null."""
    for (layer, head), weight in zip(head_set.heads or (), head_set.weights or ()):
        if not math.isfinite(weight):
            raise HeadSetError(f"cannot write {path}: weight of head {layer}.{head} is {weight}")
    for where, value in _numbers(head_set.extra, ""):
        if where.endswith("weight") and not math.isfinite(value):
            raise HeadSetError(f"cannot write {path}: {where} is {value}")
    data: dict = {"format": FORMAT}
    model = {}
    if head_set.model_name is not None:
        model["name"] = head_set.model_name
    if head_set.model_fingerprint is not None:
        model["fingerprint"] = head_set.model_fingerprint
    if head_set.model_shape is not None:
        model["layers"], model["heads"] = head_set.model_shape
    data["model"] = model
    data["heads"] = None if head_set.heads is None else [list(p) for p in head_set.heads]
    if head_set.weights is not None:
        data["weights"] = list(head_set.weights)
    data["source"] = head_set.source
    data["normalise"] = head_set.normalise
    data.update(_finite_or_null(head_set.extra))
    atomic_write_text(path, json.dumps(data, indent=1, allow_nan=False) + "\n")


def _finite_or_null(value: object) -> object:
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def normalise_scores(calibrated: torch.Tensor, mode: str = "zscore") -> torch.Tensor:
    """Per-head normalised scores ``[layers, heads, docs]`` (float64) of one query.

    ``zscore``: each head's scores minus their mean over the query's documents, divided by their
    (population) std; a flat head (std ≈ 0, or a single document) becomes all 0, so it never
    reorders anything. ``none``: the scores unchanged. Heads are normalised independently (a head
    that was not computed stays NaN and does not affect the others). Values are rounded to
    multiples of 2**-32 so that sums of heads are exact (see :mod:`.labels`).
    """
    if mode not in NORMALISATIONS:
        raise ValueError(f"normalise must be one of {NORMALISATIONS}, got {mode!r}")
    if calibrated.dim() != 3:
        raise ValueError(f"expected a [layers, heads, docs] tensor, got shape {tuple(calibrated.shape)}")
    x = calibrated.to(torch.float64)
    if mode == "zscore" and x.shape[-1] > 0:
        z = _zscore(x)
        overflow = (~torch.isfinite(z) & torch.isfinite(x)).any(dim=-1, keepdim=True)
        if overflow.any():  # values near the float64 limit overflow the mean or the variance: the
            scale = x.abs().amax(dim=-1, keepdim=True)  # z-score of x / max|x| is the same, and finite
            z = torch.where(overflow, _zscore(x / torch.where(scale > 0, scale, torch.ones_like(scale))), z)
        x = torch.where(torch.isnan(calibrated), calibrated.to(torch.float64), z)
    # + 0.0 turns -0.0 into 0.0
    return torch.round(x / _QUANTUM) * _QUANTUM + 0.0


def _zscore(x: torch.Tensor) -> torch.Tensor:
    """Each row minus its mean, over its population std; a flat row (std within 1e-6 of its largest magnitude) is 0."""
    mean = x.mean(dim=-1, keepdim=True)
    centred = x - mean
    std = centred.pow(2).mean(dim=-1, keepdim=True).sqrt()
    scale = x.abs().amax(dim=-1, keepdim=True)
    flat = std <= _FLAT_STD * scale
    return torch.where(flat, torch.zeros_like(x), centred / torch.where(flat, torch.ones_like(std), std))


def aggregate(scores: torch.Tensor, head_set: HeadSet, normalise: str | None = None) -> torch.Tensor:
    """One score per document: the weighted sum over the selected heads of their scores.

    Each head's scores are first normalised within the query by ``normalise`` (default: the head
    set's own :attr:`HeadSet.normalise`; ``none`` for ICR, ``zscore`` for sets found by the label
    search). The sum is in float64 over values on a 2**-32 grid, so it is exact in any order.
    """
    if scores.dim() != 3:
        raise ValueError(f"expected a [layers, heads, docs] tensor, got shape {tuple(scores.shape)}")
    weights = head_set.weight_grid(tuple(scores.shape[:2]))
    selected = weights != 0
    chosen = normalise_scores(scores, normalise or head_set.normalise)[selected]  # [n_selected, docs]
    if torch.isnan(chosen).any():
        raise HeadSetError("some selected heads were not computed for this query (NaN scores)")
    return (chosen * weights[selected][:, None].to(chosen.dtype)).sum(dim=0)
