"""Routers from a labels file (``routehead-pyserini train``): embed the labelled queries with the
frozen LLM, then train the learned router (:mod:`.router`) or build the nearest-neighbour one
(:mod:`.knn_router`), and write it with the labels' prompt settings."""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import replace

from ..engine.models import DEFAULT_MODEL, load_model
from ..engine.query_embedding import embed_queries
from .checkpoint import check_model
from .configs import STATIC_SET_SIZE, VAL_FRACTION, KnnConfig, RouterConfig, RouterError
from .knn_router import KnnRouter, label_recall, save_knn_router
from .labels import read_labels, router_targets, target_sets
from .router import save_router, train_router

logger = logging.getLogger(__name__)


def train_from_labels(labels_path: str | os.PathLike, topics: Mapping[str, str], output: str | os.PathLike,
                      config: RouterConfig | KnnConfig, *, model: str | None = None, targets: str = "soft",
                      val_fraction: float = VAL_FRACTION, topics_origin: str = "the topics", progress: bool = True) -> str:
    """Train (``RouterConfig``) or build (``KnnConfig``) a router from ``labels_path`` and write it to
    ``output``; returns a one-line summary. ``topics``: the labelled queries' text. ``model``:
    default the one the labels were made with. ``targets``: see :func:`.labels.router_targets`;
    with soft targets and no ``top_k`` in ``config``, a query is routed to :data:`.configs.STATIC_SET_SIZE` heads."""
    labels = read_labels(labels_path)
    qids = [q for q in labels.queries if q in topics]  # what the labels alone say, checked before the model loads
    if len(qids) < len(labels.queries):
        raise RouterError(f"{len(labels.queries) - len(qids)} labelled queries have no text in {topics_origin}")
    routed = config.top_m if isinstance(config, KnnConfig) else config.top_k
    if routed is not None and labels.shape is not None and routed > labels.shape[0] * labels.shape[1]:
        raise RouterError(f"--top-k {routed}: more heads per query than the {labels.shape[0] * labels.shape[1]} heads "
                          f"({labels.shape[0]} layers x {labels.shape[1]}) of the model these labels were made with")
    loaded = load_model(model or labels.model.get("name") or DEFAULT_MODEL)
    check_model(labels.model, loaded, what="these labels were made", advice="label with --model " + loaded.name)
    embeddings = embed_queries(loaded, [topics[q] for q in qids], layer=config.embedding_layer,
                               pooling=config.embedding_pooling, progress=progress)
    extra = {"normalise": labels.params.normalise, "labels": str(labels_path), "training_queries": len(qids), "targets": targets}
    goal = router_targets(labels, qids, targets)
    if isinstance(config, KnnConfig):
        if targets == "soft" and config.top_m is None:
            config = replace(config, top_m=STATIC_SET_SIZE)
        router = KnnRouter(embeddings, target_sets(goal, config.top_m if targets == "soft" else None), config,
                           shape=loaded.spec.shape, query_ids=qids, model=loaded)
        recall = label_recall(router.leave_one_out(), router.label_sets) if len(qids) > 1 else float("nan")
        save_knn_router(router, output, model=loaded, prompt_settings=labels.settings, extra=extra)
        return f"wrote {output}: {router.describe()}; leave-one-out label recall {recall:.4f}"
    if targets == "soft" and config.top_k is None:
        config = replace(config, top_k=STATIC_SET_SIZE)
    trained = train_router(embeddings, goal, config, val_fraction=val_fraction, query_ids=qids, model=loaded)
    save_router(trained, output, model=loaded, prompt_settings=labels.settings, extra=extra)
    return (f"wrote {output}: {len(qids)} queries, best epoch {trained.best_epoch}, "
            f"routes {trained.default_top_k} heads per query by default")
