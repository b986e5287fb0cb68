"""Load a router file of any kind: the learned router, the soft router or the kNN router, chosen by the
file's ``kind``."""
from __future__ import annotations

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
