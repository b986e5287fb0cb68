"""First stage: BM25 through Pyserini's ``LuceneSearcher``, and document text by docid.

Queries are searched in batches with ``batch_search`` (``threads`` Java threads), a progress bar
per batch. The hits of each query keep Lucene's order; the run is the same for the same index,
topics and parameters.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from tqdm import tqdm

from ..data.corpus import Document, parse_document
from .jvm import ensure_jvm
from ..data.trec import Hit, Run
from ..errors import UserError

logger = logging.getLogger(__name__)


class UnknownDocumentError(UserError, KeyError):
    """A docid that the index does not hold."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def open_searcher(index_dir: str | os.PathLike[str]):
    """A ``LuceneSearcher`` over ``index_dir`` (the JVM is started first)."""
    ensure_jvm()
    from pyserini.search.lucene import LuceneSearcher

    return LuceneSearcher(str(index_dir))


def bm25_search(
    index_dir: str | os.PathLike[str],
    topics: Mapping[str, str],
    *,
    hits: int = 1000,
    k1: float = 0.9,
    b: float = 0.4,
    threads: int = 1,
    batch_size: int = 64,
    progress: bool = True,
) -> Run:
    """BM25 top-``hits`` for every topic, as a :class:`Run` in topic order."""
    searcher = open_searcher(index_dir)
    searcher.set_bm25(k1, b)
    qids = list(topics)
    results: dict[str, list[Hit]] = {}
    empty_queries = 0
    with tqdm(total=len(qids), desc="BM25", unit="query", disable=not progress) as bar:
        for start in range(0, len(qids), batch_size):
            chunk = qids[start : start + batch_size]
            found = searcher.batch_search([topics[q] for q in chunk], chunk, k=hits, threads=threads)
            for qid in chunk:
                ranked = [Hit(h.docid, float(h.score)) for h in found.get(qid, [])]
                empty_queries += not ranked
                results[qid] = ranked
            bar.update(len(chunk))
    if empty_queries:
        logger.warning("%d of %d queries retrieved nothing (no query term is in the index)", empty_queries, len(qids))
    return Run(results)


class DocumentStore:
    """Document text by docid from an index built with stored raw documents (``--storeRaw``)."""

    def __init__(self, index_dir: str | os.PathLike[str]):
        self.index_dir = Path(index_dir)
        self._searcher = open_searcher(index_dir)

    def get(self, docid: str) -> Document:
        doc = self._searcher.doc(docid)
        if doc is None:
            raise UnknownDocumentError(f"document {docid!r} is not in index {self.index_dir}")
        raw = doc.raw()
        if raw is None:
            raise UnknownDocumentError(f"index {self.index_dir} stores no raw text for {docid!r} (build it with --storeRaw)")
        try:
            return parse_document(json.loads(raw))
        except (json.JSONDecodeError, KeyError):
            return Document(docid, raw)

    def __len__(self) -> int:
        return int(self._searcher.num_docs)
