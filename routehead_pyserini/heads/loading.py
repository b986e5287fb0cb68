"""Load a router file of any kind: the learned router, the soft router or the kNN router, chosen by the
file's ``kind``."""
from __future__ import annotations

import math
import os
from typing import Any

from .checkpoint import FORMAT, RouterError, check_model, read_router_file
from .knn_router import knn_router_from_payload
from ..engine.models import LoadedModel
from .router import Router, RouterConfig, TrainedRouter
from .soft_router import soft_router_from

def load_any_router(path: str | os.PathLike[str], *, model: LoadedModel | None = None):
    """A learned router (:class:`TrainedRouter`) or a kNN router (:class:`.knn_router.KnnRouter`),
    whichever ``path`` holds (by its ``"kind"``); with ``model``, checked against it."""
    payload = read_router_file(path)
    if isinstance(payload, dict) and payload.get("kind") == "knn":
        return knn_router_from_payload(payload, path, model=model)
    return _router_from_payload(payload, path, model=model)


def load_router(path: str | os.PathLike[str], *, model: LoadedModel | None = None) -> TrainedRouter:
    """Read a router file; with ``model``, check that it is the LLM the router was trained for."""
    return _router_from_payload(read_router_file(path), path, model=model)


def _router_from_payload(payload: Any, path: str | os.PathLike[str], *, model: LoadedModel | None = None) -> TrainedRouter:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise RouterError(f"{path}: not a router file (expected format {FORMAT!r})")
    if model is not None:
        check_model(payload["model"], model)
    check_finite(payload, path)
    config = RouterConfig.from_dict(payload["config"])
    router = Router(payload["input_dim"], tuple(payload["shape"]), config)
    router.load_state_dict(payload["state_dict"])
    router.eval()
    trained = TrainedRouter(router=router, config=config, default_top_k=int(payload["default_top_k"]),
                            history=payload.get("history", {}), best_epoch=int(payload.get("best_epoch", 0)),
                            model_info=dict(payload["model"]), prompt_settings=dict(payload.get("prompt_settings", {})),
                            extra=dict(payload.get("extra", {})))
    if payload.get("kind") == "soft":  # per-query head weights (:mod:`.soft_router`)

        return soft_router_from(trained, payload)
    return trained


def check_finite(payload: dict, path: str | os.PathLike[str]) -> None:
    """Every parameter, setting and fusion weight of a router file is finite (training history may hold NaN)."""
    import torch

    for name, tensor in (payload.get("state_dict") or {}).items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise RouterError(f"{path}: parameter {name} holds NaN or infinite values (a damaged file, or training diverged)")
    for block in ("config", "fusion"):
        for key, value in (payload.get(block) or {}).items():
            spec = value.get("weight") if isinstance(value, dict) else value
            if isinstance(spec, float) and not math.isfinite(spec):
                raise RouterError(f"{path}: {block}.{key} is {spec}, not a finite number")
