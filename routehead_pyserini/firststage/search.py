"""First stage: BM25 through Pyserini's ``LuceneSearcher``, and document text by docid.

Queries are searched in batches with ``batch_search`` (``threads`` Java threads), a progress bar
per batch. The hits of each query keep Lucene's order; the run is the same for the same index,
topics and parameters.
"""
from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path

from tqdm import tqdm

from ..data.corpus import Document, parse_document
from .index import check_lucene_index
from .jvm import JAVA_INT_MAX, ensure_jvm, java_errors
from ..data.trec import Hit, Run
from ..errors import UserError

logger = logging.getLogger(__name__)


class SearchSettingsError(UserError, ValueError):
    """BM25 parameters or counts that Lucene would refuse (checked before Java sees them)."""


class UnknownDocumentError(UserError, KeyError):
    """A docid that the index does not hold."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def open_searcher(index_dir: str | os.PathLike[str]):
    """A ``LuceneSearcher`` over ``index_dir`` (the JVM is started first); a folder that holds no
    Lucene index, or one Lucene cannot read, is a clear error."""
    check_lucene_index(Path(index_dir))
    ensure_jvm()
    from pyserini.search.lucene import LuceneSearcher

    with java_errors(f"cannot open the Lucene index {index_dir}", _REBUILD.format(index_dir)):
        return LuceneSearcher(str(index_dir))


_REBUILD = "rebuild it with `routehead-pyserini index --corpus CORPUS --index {} --overwrite`"


def check_bm25_settings(*, k1: float, b: float, hits: int, threads: int) -> None:
    """Refuse what Lucene's ``BM25Similarity`` and Anserini's ``batch_search`` would refuse with a
    Java exception: k1 a finite number >= 0, b in [0, 1], hits and threads from 1 to a Java int."""
    if not (math.isfinite(k1) and k1 >= 0):
        raise SearchSettingsError(f"BM25 k1 must be a finite number >= 0 (Lucene's range), got {k1}: change --k1")
    if not 0 <= b <= 1:  # NaN fails too
        raise SearchSettingsError(f"BM25 b must be between 0 and 1 (Lucene's range), got {b}: change --b")
    for name, value in (("hits", hits), ("threads", threads)):
        if not 1 <= value <= JAVA_INT_MAX:
            raise SearchSettingsError(f"--{name} {value}: give 1 to {JAVA_INT_MAX} (a Java int)")


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
    check_bm25_settings(k1=k1, b=b, hits=hits, threads=threads)
    searcher = open_searcher(index_dir)
    def java():  # a fresh context manager per use
        return java_errors(f"BM25 search of {index_dir} (k1={k1}, b={b}, hits={hits}, threads={threads})",
                           "change --k1, --b, --hits or --threads, or rebuild the index (--log-level DEBUG shows the Java trace)")

    with java():
        searcher.set_bm25(k1, b)
    qids = list(topics)
    results: dict[str, list[Hit]] = {}
    empty_queries = 0
    with tqdm(total=len(qids), desc="BM25", unit="query", disable=not progress) as bar:
        for start in range(0, len(qids), batch_size):
            chunk = qids[start : start + batch_size]
            with java():
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
        with java_errors(f"reading document {docid!r} from {self.index_dir}", _REBUILD.format(self.index_dir)):
            doc = self._searcher.doc(docid)
            raw = None if doc is None else doc.raw()
        if doc is None:
            raise UnknownDocumentError(f"document {docid!r} is not in index {self.index_dir}")
        if raw is None:
            raise UnknownDocumentError(f"index {self.index_dir} stores no raw text for {docid!r} (build it with --storeRaw)")
        try:
            return parse_document(json.loads(raw))
        except (json.JSONDecodeError, KeyError):
            return Document(docid, raw)

    def __len__(self) -> int:
        with java_errors(f"counting the documents of {self.index_dir}", _REBUILD.format(self.index_dir)):
            return int(self._searcher.num_docs)
