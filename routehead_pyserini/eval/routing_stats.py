"""Which heads a router picks over a set of queries, and how head sets read as text.

:func:`route_topics` routes every query of a topic set with a router file (learned or kNN) and
counts, per (layer, head), how many queries got that head. The counts drive the layer x head
heatmap of the evaluation report (:mod:`.plots`) and ``routehead-pyserini heads ROUTER``.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..heads.head_set import HeadSet
from ..engine.models import load_model
from ..heads.checkpoint import RouterError
from ..heads.loading import load_any_router

logger = logging.getLogger(__name__)


@dataclass
class RoutingStats:
    """Routed head sets of ``qids`` and, per head, how many of them contain it."""

    source: str  # the router file
    kind: str  # "learned" or "knn"
    model_name: str | None
    shape: tuple[int, int]
    qids: list[str]
    sets: list[tuple[tuple[int, int], ...]]

    @property
    def counts(self) -> np.ndarray:
        """``[layers, heads]`` int: the number of queries routed to each head."""
        grid = np.zeros(self.shape, dtype=np.int64)
        for heads in self.sets:
            for layer, head in heads:
                grid[layer, head] += 1
        return grid

    @property
    def share(self) -> np.ndarray:
        """``[layers, heads]``: the fraction of queries routed to each head."""
        return self.counts / max(len(self.sets), 1)

    @property
    def mean_size(self) -> float:
        return float(np.mean([len(s) for s in self.sets])) if self.sets else 0.0

    def top(self, n: int = 10) -> list[tuple[tuple[int, int], int]]:
        """The ``n`` most routed heads with their query counts (ties in layer-major order)."""
        counts = self.counts
        flat = sorted(range(counts.size), key=lambda i: (-int(counts.flat[i]), i))
        return [(divmod(i, self.shape[1]), int(counts.flat[i])) for i in flat[:n] if counts.flat[i] > 0]

    def overlap(self, static: HeadSet | None) -> float | None:
        """Mean over queries of the share of the routed heads that are also in ``static``."""
        if static is None or static.heads is None or not self.sets:
            return None
        members = set(static.heads)
        return float(np.mean([len(members & set(s)) / len(s) for s in self.sets if s]))

    def to_dict(self, static: HeadSet | None = None) -> dict:
        return {
            "router": self.source,
            "kind": self.kind,
            "model": self.model_name,
            "shape": list(self.shape),
            "queries": len(self.sets),
            "mean_set_size": self.mean_size,
            "distinct_heads": int((self.counts > 0).sum()),
            "share_in_static_set": self.overlap(static),
            "top_heads": [{"head": f"{l}.{h}", "queries": c} for (l, h), c in self.top(20)],
            "per_query": {q: [f"{l}.{h}" for l, h in s] for q, s in zip(self.qids, self.sets)},
        }


def route_topics(router_path: str | os.PathLike[str], topics: Mapping[str, str], qids: Sequence[str] | None = None, *,
                 model=None, progress: bool = False) -> RoutingStats:
    """Route ``qids`` (default: every topic) with the router in ``router_path``.

    ``model``: the LLM the router was trained for (a :class:`.models.LoadedModel`); by default the
    one the router file names is loaded. Queries without text in ``topics`` are an error.
    """
    qids = list(topics) if qids is None else [str(q) for q in qids]
    missing = [q for q in qids if q not in topics]
    if missing:
        raise RouterError(f"{len(missing)} queries to route have no text in the topics (e.g. {missing[0]!r})")
    router = load_any_router(router_path)
    if model is None:
        name = router.model_info.get("name")
        if not name:
            raise RouterError(f"{router_path}: the router does not name its LLM")
        model = load_model(name)
    sets = router.route_queries(model, [topics[q] for q in qids], progress=progress)
    kind = "knn" if type(router).__name__ == "KnnRouter" else "learned"
    logger.info("routed %d queries with %s (%s router)", len(qids), router_path, kind)
    return RoutingStats(str(router_path), kind, router.model_info.get("name"), tuple(router.shape), qids,
                        [tuple(s.heads or ()) for s in sets])


def describe_head_set(head_set: HeadSet, path: str = "") -> str:
    """A head set as text: what it is for, then its heads grouped by layer."""
    shape = f"{head_set.model_shape[0]} layers x {head_set.model_shape[1]} heads" if head_set.model_shape else "shape not recorded"
    lines = [f"{path or 'head set'}: {head_set.describe()}",
             f"  model {head_set.model_name or '(not recorded)'} ({shape}); normalise {head_set.normalise}"]
    if head_set.source:
        lines.append(f"  source: {head_set.source}")
    if head_set.heads is not None:
        by_layer: dict[int, list[int]] = {}
        for layer, head in head_set.heads:
            by_layer.setdefault(layer, []).append(head)
        weights = dict(zip(head_set.heads, head_set.weights)) if head_set.weights else {}
        lines.append("  layer  heads")
        for layer, heads in sorted(by_layer.items()):
            cells = [f"{h}" + (f" (w={weights[(layer, h)]:g})" if weights else "") for h in heads]
            lines.append(f"  {layer:>5}  {' '.join(cells)}")
    return "\n".join(lines) + "\n"


def describe_routing(stats: RoutingStats, static: HeadSet | None = None, top: int = 10) -> str:
    """Routing statistics as text: sizes, distinct heads, the most routed heads (marked if in ``static``)."""
    members = set(static.heads or ()) if static is not None else set()
    lines = [f"{stats.source}: {stats.kind} router for {stats.model_name} ({stats.shape[0]} layers x {stats.shape[1]} heads)",
             f"  {len(stats.sets)} queries routed; mean set size {stats.mean_size:.2f}; "
             f"{int((stats.counts > 0).sum())} distinct heads"]
    overlap = stats.overlap(static)
    if overlap is not None:
        lines.append(f"  share of routed heads in the static set: {overlap:.3f} (static set: {len(members)} heads)")
    lines.append("  head     queries  share" + ("  static" if static is not None else ""))
    for (layer, head), count in stats.top(top):
        mark = ("  *" if (layer, head) in members else "") if static is not None else ""
        lines.append(f"  {f'{layer}.{head}':<7}  {count:>7}  {count / max(len(stats.sets), 1):.3f}{mark}")
    return "\n".join(lines) + "\n"
