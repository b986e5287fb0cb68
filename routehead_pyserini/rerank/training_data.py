"""Judged training data from a scoring run (``train-weights``, ``train-soft-router``): every query's
per-head scores (from the score cache, else the model), the first-stage scores of the same
candidates and, for dense fusion, their bi-encoder cosines (cached beside the head scores); then
the :class:`.features.Dataset` learned weights and soft routers train on."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..data.corpus import Document
from ..data.trec import Hit, Run, ranked_hits, write_run
from ..engine.cache import QueryScores
from ..firststage.dense import PACKAGED, CachedDenseScorer
from ..heads.features import Dataset, build_dataset, query_features
from .reranker import ScoredQuery

logger = logging.getLogger(__name__)


@dataclass
class TrainingQuery:
    """One query of the run: its scored candidates (``None``: none had text), their first-stage
    scores in the same order, and the hits left unscored (first-stage order)."""

    qid: str
    scores: QueryScores | None
    first_stage: list[float] | None
    rest: list[Hit]
    docs: list[Document]  # the scored candidates, in ``scores.docids`` order


@dataclass
class RankingData:
    """Every query of a scoring run and the judged ones as a training :class:`.features.Dataset`."""

    queries: list[TrainingQuery]
    dense: dict[str, list[float]] | None  # qid -> bi-encoder cosines of the scored candidates (dense fusion)
    dataset: Dataset
    fuse: bool

    @property
    def scored(self) -> list[TrainingQuery]:
        return [q for q in self.queries if q.scores is not None]

    def features(self) -> dict:
        """qid -> :func:`.features.query_features` of every scored query (judged or not)."""
        return {q.qid: query_features(q.scores.calibrated, q.first_stage if self.fuse else None,
                                      None if self.dense is None else self.dense[q.qid]) for q in self.scored}

    def write_cv_run(self, predicted: Mapping, path: str | Path, tag: str) -> None:
        """A run of every query, scored candidates in the order of ``predicted`` (qid -> scores)."""
        hits = {q.qid: ranked_hits([], [], q.rest) if q.scores is None
                else ranked_hits(q.scores.docids, predicted[q.qid].tolist(), q.rest) for q in self.queries}
        write_run(Run(hits), path, tag=tag)


def ranking_data(items: Iterable[ScoredQuery], run: Run, topics: Mapping[str, str],
                 qrels: Mapping[str, Mapping[str, int]], *, fuse: bool, fuse_dense: bool, k: int = 10,
                 cache_root: str | Path | None = None, cache: bool = True, progress: bool = True) -> RankingData:
    """Collect :meth:`.Reranker.iter_scores` ``items`` of ``run`` as training data; with
    ``fuse_dense``, add the packaged bi-encoder's cosines (cached under ``cache_root`` unless ``cache``
    is off)."""
    queries = []
    for item in items:
        first = {h.docid: h.score for h in run[item.qid]}
        scores = item.scores
        queries.append(TrainingQuery(item.qid, scores, None if scores is None else [first[d] for d in scores.docids], item.rest,
                                     item.docs))
    data = RankingData(queries, None, None, fuse)
    dense_model = None
    if fuse_dense:
        scorer, dense_model = CachedDenseScorer(PACKAGED, root=cache_root, enabled=cache), PACKAGED
        data.dense = {q.qid: scorer.scores(q.qid, topics[q.qid], q.docs)
                      for q in tqdm(data.scored, desc="dense", unit="query", disable=not progress)}
    data.dataset = build_dataset(((q.scores, q.first_stage) for q in data.scored), qrels, fuse=fuse, k=k,
                                 dense=data.dense, dense_model=dense_model)
    return data
