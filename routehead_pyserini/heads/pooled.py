"""Pooled training: several judged collections at once, each query keeping its collection.

A collections file (YAML) lists the training sets; every field but ``run`` defaults from the
collection's registry name (``routehead-pyserini datasets``)::

    collections:
      trec-dl-2019: {run: trec-dl-2019, relevance_level: 2}   # the registry's shipped BM25 run
      vaswani: {run: runs/bm25/vaswani.trec}                  # index, topics, qrels: the name's
      scifact: {run: runs/bm25/scifact.trec, sample: 300}      # a fixed sample of its queries
      mine: {run: my.trec, corpus: my.jsonl, topics: q.tsv, qrels: my.qrels}

Per collection: ``run`` (file or registry name), one text source (``index``, ``corpus`` or
``candidates``; default ``index: NAME``), ``topics`` (default: the text source's), ``qrels``
(default ``NAME``), ``relevance_level`` (the smallest grade a binary loss counts as relevant;
default 1), ``sample``/``seed`` (a fixed sample of the run's queries).

:func:`load_pooled` scores every collection with one re-ranker (one model, one set of prompt
settings: the per-head scores come from the score cache when they are there) and returns each
query with its collection. In the pooled :class:`.features.Dataset` a query's id is
``COLLECTION/QID`` (so two collections' query "1" stay apart) and its ``group`` is the collection,
which is what leave-one-collection-out validation (:mod:`.loco`) splits on.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import torch
import yaml

from ..engine.cache import QueryScores
from ..errors import UserError
from ..data.checks import INT32_MAX, INT32_MIN, int_problem, load_yaml, yaml_error
from ..data.registry import lookup
from ..firststage.sources import TextSpec, candidate_run, text_source
from ..data.trec import Hit, read_qrels, read_text
from .features import Dataset, build_dataset, query_features
from ..firststage.dense import PACKAGED, CachedDenseScorer
from ..engine.query_embedding import embed_queries

logger = logging.getLogger(__name__)

SEPARATOR = "/"


class CollectionsError(UserError, ValueError):
    """A collections file that cannot be read or used."""


@dataclass(frozen=True)
class Collection:
    """One judged training collection (see the module docstring for the defaults)."""

    name: str
    run: str
    index: str | None = None
    corpus: str | None = None
    candidates: str | None = None
    topics: str | None = None
    qrels: str | None = None
    relevance_level: int = 1
    sample: int | None = None
    seed: int = 0

    @property
    def text(self) -> TextSpec:
        index = self.index if (self.index or self.corpus or self.candidates) else self.name
        return TextSpec(index, self.corpus, self.candidates, self.topics)

    @property
    def qrels_name(self) -> str:
        return self.qrels or self.name


_FIELDS = {f.name for f in fields(Collection)} - {"name"}


_PATH_FIELDS = ("run", "index", "corpus", "candidates", "topics", "qrels")


def read_collections(path: str | os.PathLike[str]) -> list[Collection]:
    """The collections of a YAML collections file, in file order.

    Unknown keys and a key given twice are errors; ``run`` and the other inputs are names or paths
    (strings), ``sample`` a positive integer, ``relevance_level`` and ``seed`` integers (YAML's
    ``.nan``, ``.inf``, ``2.5`` and ``true`` are not).
    """
    path = Path(path)
    if not path.exists():
        raise CollectionsError(f"collections file {path} does not exist")
    try:
        data = load_yaml(read_text(path))  # not UTF-8: an error naming file and line
    except yaml.YAMLError as exc:
        raise CollectionsError(f"{path}: not a YAML collections file (invalid YAML{yaml_error(exc)})") from None
    entries = data.get("collections") if isinstance(data, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise CollectionsError(f"{path}: expected a 'collections:' mapping of names to {{run: ..., ...}}")
    unknown = sorted(str(k) for k in data if k != "collections")
    if unknown:
        raise CollectionsError(f"{path}: unknown top-level keys {unknown}; allowed: collections")
    return [_collection(path, name, spec) for name, spec in entries.items()]


def _collection(path: Path, name: object, spec: object) -> Collection:
    if not isinstance(spec, dict) or "run" not in spec:
        raise CollectionsError(f"{path}: collection {name!r} needs at least a 'run'")
    unknown = sorted(str(k) for k in set(spec) - _FIELDS)
    if unknown:
        raise CollectionsError(f"{path}: collection {name!r} has unknown keys {unknown}; allowed: {', '.join(sorted(_FIELDS))}")
    if not isinstance(name, (str, int)) or isinstance(name, bool) or not str(name).strip():
        raise CollectionsError(f"{path}: collection name {name!r} is not a non-empty string")
    if SEPARATOR in str(name) or any(ch.isspace() for ch in str(name)):
        raise CollectionsError(f"{path}: a collection name may not contain {SEPARATOR!r} or whitespace ({name!r})")
    values = {}
    for key, value in spec.items():
        if key in _PATH_FIELDS:
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
                raise CollectionsError(f"{path}: collection {name!r}: {key} must be a file or registry name, got {value!r}")
            values[key] = str(value)
            continue
        low, high = (1, None) if key == "sample" else (INT32_MIN, INT32_MAX) if key == "relevance_level" else (None, None)
        problem = int_problem(value, low, high)  # a relevance level is trec_eval's C int
        if problem and not (key == "sample" and value is None):
            raise CollectionsError(f"{path}: collection {name!r}: {key} is {problem}")
        values[key] = value
    if "run" not in values:
        raise CollectionsError(f"{path}: collection {name!r} needs at least a 'run'")
    return Collection(name=str(name), **values)


def select(collections: Sequence[Collection], only: Sequence[str] = (), exclude: Sequence[str] = ()) -> list[Collection]:
    """``collections`` restricted to ``only`` (when given) and without ``exclude``; unknown names are errors."""
    names = [c.name for c in collections]
    for name in (*only, *exclude):
        if name not in names:
            raise CollectionsError(f"no collection {name!r} (known: {', '.join(names)})")
    chosen = [c for c in collections if (not only or c.name in only) and c.name not in exclude]
    if not chosen:
        raise CollectionsError(f"--only/--exclude leave none of the collections ({', '.join(names)})")
    return chosen


def pooled_qid(collection: str, qid: str) -> str:
    return f"{collection}{SEPARATOR}{qid}"


def split_qid(pooled: str) -> tuple[str, str]:
    collection, _, qid = pooled.partition(SEPARATOR)
    return collection, qid


@dataclass
class PooledQuery:
    """One query of one collection: its per-head scores and the inputs of fusion."""

    collection: str
    qid: str
    scores: QueryScores | None  # None: no candidate had text
    first_stage: list[float] | None  # the scored candidates' first-stage scores
    rest: list[Hit]  # the hits below the scored ones (first-stage order)
    dense: list[float] | None = None  # the scored candidates' bi-encoder cosines (when asked for)

    @property
    def key(self) -> str:
        return pooled_qid(self.collection, self.qid)


@dataclass
class PooledData:
    """Every collection's queries, and the judged ones as one training :class:`.features.Dataset`."""

    collections: list[Collection]
    queries: list[PooledQuery]
    dataset: Dataset
    dense_model: str | None = None
    qrels: dict[str, dict] = field(default_factory=dict)  # collection -> its qrels
    embeddings: torch.Tensor | None = None  # [queries, hidden]: the frozen LLM's query embeddings (soft routing)
    embedding_keys: list[str] = field(default_factory=list)  # COLLECTION/QID of each row of ``embeddings``

    def of(self, collection: str) -> list[PooledQuery]:
        return [q for q in self.queries if q.collection == collection]

    def features(self, fuse: bool, dense: bool) -> dict[str, torch.Tensor]:
        """``COLLECTION/QID`` -> :func:`.features.query_features` of every scored query (judged or not)."""
        if dense and self.dense_model is None:
            raise CollectionsError("dense fusion needs the bi-encoder cosines: load the collections with dense=True")
        return {q.key: query_features(q.scores.calibrated, q.first_stage if fuse else None, q.dense if dense else None)
                for q in self.queries if q.scores is not None}

    def training_set(self, fuse: bool, dense: bool, collections: Sequence[str] | None = None) -> Dataset:
        """The judged queries (of ``collections``, default all) with these fusion features."""
        keep = set(collections) if collections is not None else None
        feats = self.features(fuse, dense)
        chosen = [replace(q, features=feats[q.qid]) for q in self.dataset.queries
                  if keep is None or q.group in keep]
        if not chosen:
            raise CollectionsError(f"no judged training query in {sorted(keep) if keep else 'the collections'}")
        return Dataset(chosen, self.dataset.shape, fuse, self.dataset.skipped, self.dense_model if dense else None)


def load_pooled(collections: Sequence[Collection], reranker, *, top_k: int, data_dir=None, dense: bool = False,
                embeddings: bool = False, on_missing: str = "error", progress: bool = False, k: int = 10) -> PooledData:
    """Score (or read from the cache) every query of every collection with ``reranker``.

    ``dense``: also the packaged bi-encoder's cosines of the scored candidates (cached beside the
    per-head scores, :class:`.dense.CachedDenseScorer`). ``embeddings``: also each query's
    embedding from the frozen LLM (:func:`.query_embedding.embed_queries`, its middle layer), the
    soft router's input.
    """
    if len({c.name for c in collections}) != len(collections):
        raise CollectionsError("two collections have the same name")
    scorer = None
    if dense:
        scorer = CachedDenseScorer(PACKAGED, root=getattr(reranker, "cache_root", None))
    queries: list[PooledQuery] = []
    datasets: list[Dataset] = []
    all_qrels = {}
    topic_text: dict[str, str] = {}
    for col in collections:
        run = candidate_run(col.run, data_dir, sample=col.sample, seed=col.seed)
        texts, topics = text_source(col.text, data_dir, progress=progress)
        qrels = read_qrels(lookup(col.qrels_name, "qrels", data_dir))
        all_qrels[col.name] = qrels
        mine: list[PooledQuery] = []
        for item in reranker.iter_scores(run, topics, texts, top_k=top_k, on_missing=on_missing, progress=progress):
            qid, scores, rest = item.qid, item.scores, item.rest
            first = {h.docid: h.score for h in run[qid]}
            cosines = None
            if scorer is not None and scores is not None:
                cosines = scorer.scores(qid, topics[qid], item.docs)
            mine.append(PooledQuery(col.name, qid, scores, None if scores is None else [first[d] for d in scores.docids],
                                    rest, cosines))
            topic_text[pooled_qid(col.name, qid)] = topics[qid]
        renamed = [(replace(q.scores, qid=q.key), q.first_stage) for q in mine if q.scores is not None]
        judged = {pooled_qid(col.name, qid): docs for qid, docs in qrels.items()}
        try:
            part = build_dataset(renamed, judged, fuse=True, k=k, group=col.name, level=col.relevance_level)
        except UserError as exc:
            raise CollectionsError(f"collection {col.name!r}: {exc}") from None
        logger.info("collection %s: %d queries scored, %d can train (%s)", col.name, len(mine), len(part.queries),
                    ", ".join(f"{k} {len(v)}" for k, v in part.skipped.items()))
        queries.extend(mine)
        datasets.append(part)
    shapes = {d.shape for d in datasets}
    if len(shapes) != 1:
        raise CollectionsError(f"the collections were scored with models of different shapes: {sorted(shapes)}")
    skipped = {reason: [q for d in datasets for q in d.skipped.get(reason, [])] for reason in ("unjudged", "no_relevant_candidate")}
    pooled = Dataset([q for d in datasets for q in d.queries], datasets[0].shape, True, skipped)
    data = PooledData(list(collections), queries, pooled, scorer.model_name if scorer else None, all_qrels)
    if embeddings:
        texts = [topic_text[q.key] for q in queries]
        data.embeddings = embed_queries(reranker.model, texts, progress=progress)
        data.embedding_keys = [q.key for q in queries]
    return data
