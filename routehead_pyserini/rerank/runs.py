"""Re-rank a whole first-stage run from Python, with inputs given as objects, files or registry names."""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ..data.corpus import Document
from ..data.registry import lookup
from ..data.trec import Run, read_topics
from ..firststage.sources import DictTexts, TextSpec, candidate_run, document_source
from .reranker import Reranker

PathLike = str | os.PathLike


def _texts(documents, data_dir):
    if hasattr(documents, "get") and not isinstance(documents, Mapping):
        return documents  # already a text source: get(docid) -> Document
    if isinstance(documents, Mapping):
        return DictTexts({str(k): v if isinstance(v, Document) else Document(str(k), str(v)) for k, v in documents.items()},
                         "the given documents")
    path = Path(documents).expanduser()
    spec = TextSpec(corpus=str(documents)) if path.is_file() else TextSpec(index=str(documents))
    return document_source(spec, data_dir)


def rerank_run(run: Run | PathLike, topics: Mapping[str, str] | PathLike, documents, reranker: Reranker | None = None, *,
               top_k: int | None = None, on_missing: str = "error", progress: bool = False,
               data_dir: PathLike | None = None) -> Run:
    """Re-rank the top ``top_k`` candidates of every query of ``run`` and return the new run.

    ``run``: a :class:`.trec.Run`, a TREC run file or a registered name (``routehead-pyserini
    datasets``); ``topics``: ``{qid: text}``, a topics file or a registered name; ``documents``: an
    index folder or registered name (stored raw text), a JSONL corpus, ``{docid: text}``, or any
    object with ``get(docid) -> Document``. ``reranker``: default :meth:`.Reranker.from_preset`
    (the shipped default). ``top_k``: default the re-ranker's (a preset's recorded value).
    ``on_missing``: ``"error"`` or ``"skip"`` (candidates without text stay below, unscored).
    """
    run = run if isinstance(run, Run) else candidate_run(str(run), data_dir)
    topic_map = dict(topics) if isinstance(topics, Mapping) else read_topics(lookup(str(topics), "topics", data_dir))
    reranker = reranker if reranker is not None else Reranker.from_preset()
    out, _ = reranker.rerank_run(run, topic_map, _texts(documents, data_dir), top_k=top_k, on_missing=on_missing,
                                 progress=progress)
    return out
