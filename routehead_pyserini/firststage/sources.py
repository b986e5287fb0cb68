"""Where a scoring job's inputs come from: the first-stage run, document text and query text.

The CLI, pooled training (:mod:`.pooled`) and the Python API resolve their inputs here, from files
or registry names (``routehead-pyserini datasets``):

- document text from exactly one of an index (stored raw documents), a JSONL corpus, or a
  candidates file (``qid, query, docid, text`` per line, like DL19's ``bm25_top100.jsonl``);
- query text from ``topics`` when given, else the index's (or corpus's) registered topics, else
  the queries of the candidates file;
- the run from a file or a registry name, optionally a fixed random sample of its queries.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..data.checks import id_problem
from ..data.controls import sample_queries
from ..data.corpus import Document, read_corpus
from ..errors import UserError
from ..data.registry import lookup
from .index import resolve_index
from ..data.trec import Run, TrecFormatError, iter_jsonl, read_run, read_topics
from collections.abc import Mapping, Sequence
from typing import Protocol
from ..errors import RerankError
from ..data.trec import Hit
from .search import UnknownDocumentError
from .search import DocumentStore


logger = logging.getLogger(__name__)


class SourceError(UserError, ValueError):
    """Inputs that cannot be resolved (no text source, two of them, an option without its partner)."""


class DictTexts:
    """Document text from an in-memory mapping (a corpus file or a candidates file)."""

    def __init__(self, docs: dict[str, Document], origin: str = "the corpus"):
        self.docs, self.origin = docs, origin

    def get(self, docid: str) -> Document:
        try:
            return self.docs[docid]
        except KeyError:
            raise UnknownDocumentError(f"document {docid!r} is not in {self.origin}") from None


@dataclass(frozen=True)
class TextSpec:
    """Which text source to read (exactly one of ``index``, ``corpus``, ``candidates``) and topics."""

    index: str | None = None
    corpus: str | None = None
    candidates: str | None = None
    topics: str | None = None

    def check(self) -> None:
        given = [name for name in ("index", "corpus", "candidates") if getattr(self, name)]
        if len(given) != 1:
            raise SourceError("give exactly one of --index, --corpus, --candidates for document text"
                              + (f" (got {', '.join('--' + g for g in given)})" if given else ""))


def text_source(spec: TextSpec, data_dir: str | os.PathLike[str] | None = None, *, progress: bool = False):
    """``(texts, topics)``: a ``get(docid) -> Document`` source and ``{qid: query text}`` (the given
    topics, else the candidates file's queries, else the topics registered under the corpus or index name)."""
    spec.check()
    topic_map = read_topics(lookup(spec.topics, "topics", data_dir)) if spec.topics else None
    texts, queries = _documents(spec, data_dir, progress)
    if topic_map or spec.candidates:
        return texts, topic_map or queries
    return texts, read_topics(lookup(spec.corpus or spec.index, "topics", data_dir))


def document_source(spec: TextSpec, data_dir: str | os.PathLike[str] | None = None, *, progress: bool = False):
    """Only the ``get(docid) -> Document`` source of ``spec`` (no topics are looked up)."""
    spec.check()
    return _documents(spec, data_dir, progress)[0]


def _documents(spec: TextSpec, data_dir, progress: bool):
    """``(texts, queries)``; ``queries`` is the candidates file's, else empty."""
    if spec.candidates:
        return read_candidates_file(spec.candidates)
    if spec.corpus:
        path = lookup(spec.corpus, "corpus", data_dir)
        return DictTexts({d.docid: d for d in read_corpus(path)}, str(path)), {}
    return DocumentStore(resolve_index(spec.index, data_dir, progress=progress)), {}


def _candidate_id(row: dict, key: str, path: str, line_no: int, line: str) -> str:
    value = row[key]
    what = "query id" if key == "qid" else "document id"
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TrecFormatError(path, line_no, f"{what} {value!r} is not a string or an integer", line)
    problem = id_problem(str(value))
    if problem:
        raise TrecFormatError(path, line_no, f"{what} {str(value)!r} {problem}", line)
    return str(value)


def read_candidates_file(path: str | os.PathLike[str]) -> tuple[DictTexts, dict[str, str]]:
    """Document text and query text of a candidates file (``qid, query, docid, text`` per line).

    A document is one text: the same docid with another text (or title) is an error naming both
    lines; the same ``(qid, docid)`` with the same text again is kept once and counted. A qid whose
    query text differs between lines is an error. Ids may not be empty or hold whitespace.
    """
    path = str(path)
    docs: dict[str, Document] = {}
    doc_line: dict[str, int] = {}
    queries: dict[str, str] = {}
    query_line: dict[str, int] = {}
    pairs: set[tuple[str, str]] = set()
    repeated = 0
    for line_no, row, line in iter_jsonl(path):
        if "docid" not in row or "text" not in row:
            raise TrecFormatError(path, line_no, "a candidate needs 'docid' and 'text' (and 'qid', 'query')", line)
        docid = _candidate_id(row, "docid", path, line_no, line)
        if not isinstance(row["text"], str) or not isinstance(row.get("title") or "", str):
            raise TrecFormatError(path, line_no, f"document {docid}: 'text' and 'title' must be strings", line)
        document = Document(docid, row["text"], row.get("title") or "")
        if docid in docs and docs[docid] != document:
            raise TrecFormatError(path, line_no, f"document {docid!r} has another text than at line {doc_line[docid]}", line)
        docs.setdefault(docid, document)
        doc_line.setdefault(docid, line_no)
        if "qid" in row and "query" in row:
            qid = _candidate_id(row, "qid", path, line_no, line)
            query = row["query"]
            if not isinstance(query, str) or not query.strip():
                raise TrecFormatError(path, line_no, f"query {qid} has empty text", line)
            if qid in queries and queries[qid] != query:
                raise TrecFormatError(path, line_no, f"query {qid!r} has another text than at line {query_line[qid]}", line)
            queries.setdefault(qid, query)
            query_line.setdefault(qid, line_no)
            if (qid, docid) in pairs:
                repeated += 1
            pairs.add((qid, docid))
    if repeated:
        logger.warning("%s: %d repeated (qid, docid) lines with the same text (each kept once)", path, repeated)
    return DictTexts(docs, path), queries


def candidate_run(run_name: str, data_dir: str | os.PathLike[str] | None = None, *, sample: int | None = None,
                  seed: int = 0, offset: int = 0) -> Run:
    """The first-stage run (a file or registry name), or its fixed ``sample`` of queries after ``offset``."""
    run = read_run(lookup(run_name, "run", data_dir))
    if sample is not None:
        sampled = sample_queries(run, sample, seed=seed, offset=offset)
        if not len(sampled):
            raise SourceError(f"--sample-offset {offset} skips every one of the {len(run)} queries of the run {run_name}: "
                              "nothing would be scored")
        return sampled
    if offset:
        raise SourceError("--sample-offset needs --sample")
    return run


def exists(name: str) -> bool:
    return Path(name).expanduser().exists()


class TextSource(Protocol):
    """Where document text comes from: an index (:class:`.search.DocumentStore`) or a dict."""

    def get(self, docid: str) -> Document: ...


def check_run_inputs(run: Run, topics: Mapping[str, str], on_missing: str) -> None:
    """Refuse an ``on_missing`` other than error/skip, and a run query without topic text."""
    if on_missing not in {"error", "skip"}:
        raise ValueError("on_missing must be 'error' or 'skip'")
    no_text = [q for q in run if q not in topics]
    if no_text:
        raise RerankError(f"{len(no_text)} queries of the run have no topic text (first: {no_text[:5]}); check --topics")


def candidate_texts(qid: str, hits: Sequence[Hit], texts: TextSource, on_missing: str) -> tuple[list[Document], list[Hit]]:
    """The documents of ``hits`` that have text, and (``on_missing="skip"``) the hits that have none."""
    docs, skipped = [], []
    for hit in hits:
        try:
            docs.append(texts.get(hit.docid))
        except UnknownDocumentError as exc:
            if on_missing == "error":
                raise UnknownDocumentError(f"query {qid}: {exc} (use --on-missing skip to keep it unscored)") from None
            skipped.append(hit)
    return docs, skipped
