"""Applying a learned head set at inference: its head weights, plus the first-stage (BM25) and dense
fusion terms it records (``fuse``, ``fuse_dense``), and the check that it belongs to the model.

Training those weights is :mod:`.weights`; this module is what re-ranking needs of a weights file.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from ..errors import UserError
from ..data.checks import number_problem
from .checkpoint import check_model
from .head_set import HeadSet, aggregate, normalise_scores


FUSE_KEY = "fuse"


DENSE_KEY = "fuse_dense"


LEARNED_KEY = "learned"


class WeightsError(UserError, ValueError):
    """Learned weights that cannot be trained or used as asked (no data, wrong model, bad file)."""


@dataclass(frozen=True)
class Fusion:
    """The first-stage term of a fused head set: ``weight`` x the ``normalise``-d first-stage score."""

    weight: float
    normalise: str = "zscore"


def fusion_of(head_set: HeadSet) -> Fusion | None:
    """The head set's ``fuse`` field, checked (``None`` when it has none)."""
    spec = head_set.extra.get(FUSE_KEY)
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or number_problem(spec.get("weight")):
        raise WeightsError(f"head set 'fuse' must be an object with a finite numeric 'weight', got {spec!r}")
    if spec.get("normalise", "zscore") != "zscore":
        raise WeightsError(f"head set 'fuse': only \"normalise\": \"zscore\" is supported, got {spec.get('normalise')!r}")
    return Fusion(float(spec["weight"]))


@dataclass(frozen=True)
class DenseFusion:
    """The dense term of a fused head set: ``weight`` x the z-normalised cosine under encoder ``model``."""

    weight: float
    model: str


def dense_fusion_of(head_set: HeadSet) -> DenseFusion | None:
    """The head set's ``fuse_dense`` field, checked (``None`` when it has none)."""
    spec = head_set.extra.get(DENSE_KEY)
    if spec is None:
        return None
    weight = spec.get("weight") if isinstance(spec, Mapping) else None
    if number_problem(weight) or not isinstance(spec.get("model"), str):
        raise WeightsError(f"head set '{DENSE_KEY}' must be an object with a finite numeric 'weight' and a 'model', got {spec!r}")
    if spec.get("normalise", "zscore") != "zscore":
        raise WeightsError(f"head set '{DENSE_KEY}': only \"normalise\": \"zscore\" is supported, got {spec.get('normalise')!r}")
    return DenseFusion(float(weight), spec["model"])


def first_stage_feature(first_stage: Sequence[float]) -> torch.Tensor:
    """First-stage (or any per-candidate) scores z-normalised within the query (float64; flat scores give 0)."""
    values = torch.as_tensor(list(first_stage), dtype=torch.float64).reshape(1, 1, -1)
    return normalise_scores(values, "zscore")[0, 0]


def fused_scores(calibrated: torch.Tensor, head_set: HeadSet, first_stage: Sequence[float] | None = None,
                 dense: Sequence[float] | None = None) -> torch.Tensor:
    """One score per candidate: :func:`.heads.aggregate`, plus the fusion terms the set has.

    ``first_stage``, ``dense``: the candidates' first-stage scores and dense cosines, in the order
    of ``calibrated``'s documents (each needed only when the head set fuses it).
    """
    values = aggregate(calibrated, head_set)
    for fusion, feature, what in ((fusion_of(head_set), first_stage, "the first-stage score"),
                                  (dense_fusion_of(head_set), dense, "the dense cosine")):
        if fusion is None or fusion.weight == 0.0:
            continue
        if feature is None:
            raise WeightsError(f"this head set fuses {what}, but none were given (re-rank a run, not a bare list of documents)")
        if len(feature) != values.shape[0]:
            raise ValueError(f"{len(feature)} fusion scores for {values.shape[0]} documents")
        values = values + fusion.weight * first_stage_feature(feature)
    return values


def check_head_set_model(head_set: HeadSet, model) -> None:
    """Refuse a learned head set (one with a ``learned`` field) on a model other than its own
    (:func:`.checkpoint.check_model`). Other head sets are only checked for shape
    (:meth:`.head_set.HeadSet.check_shape`), as before."""
    if LEARNED_KEY not in head_set.extra:
        return
    shape = head_set.model_shape or (None, None)
    recorded = {"name": head_set.model_name, "fingerprint": head_set.model_fingerprint, "layers": shape[0], "heads": shape[1]}
    if head_set.model_fingerprint is not None:
        check_model(recorded, model, what="these head weights were learned", error=WeightsError,
                    advice=f"train them again with --model {model.name}")
