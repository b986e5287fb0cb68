"""Document collections in JSONL: BEIR (``_id``, ``title``, ``text``) or Pyserini (``id``, ``contents``).

A :class:`Document` keeps title and text apart; :attr:`Document.contents` is what gets indexed and
what a re-ranker reads (title, a newline, text — or just whichever is non-empty). Other fields
(e.g. CACM's ``authors``) are ignored.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import UserError
from .checks import id_problem
from .trec import EmptyInputError, TrecFormatError, iter_jsonl


class CorpusError(UserError, ValueError):
    """A corpus that cannot be read as one set of documents (a document id given twice)."""


@dataclass(frozen=True)
class Document:
    """A document: an id, its text and an optional title (empty for MS MARCO passages)."""

    docid: str
    text: str
    title: str = ""

    @property
    def contents(self) -> str:
        return "\n".join(part for part in (self.title.strip(), self.text.strip()) if part)

    def to_pyserini(self) -> dict[str, str]:
        """The ``JsonCollection`` form Anserini indexes (``id``, ``contents``)."""
        return {"id": self.docid, "contents": self.contents}


def _text(obj: dict, key: str) -> str:
    """A text field: a string, or missing/null (empty); a number, list or object is a ``TypeError``
    (``str()`` would index ``42`` or ``{'a': 1}`` as if it were the text)."""
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"{key!r} must be a string or null, not {type(value).__name__} {json.dumps(value)[:40]}")
    return value


def parse_document(obj: dict) -> Document:
    """A :class:`Document` from one JSON object of either layout (``KeyError`` when neither fits,
    ``TypeError`` when a text field is not a string)."""
    if "_id" in obj:
        return Document(str(obj["_id"]), _text(obj, "text"), _text(obj, "title"))
    if "id" in obj and "contents" in obj:
        return Document(str(obj["id"]), _text(obj, "contents"))
    if "docid" in obj and "text" in obj:
        return Document(str(obj["docid"]), _text(obj, "text"), _text(obj, "title"))
    raise KeyError("expected '_id' (+ 'title', 'text') or 'id' + 'contents'")


def read_corpus(path: str | os.PathLike[str]) -> Iterator[Document]:
    """Stream the documents of a JSONL corpus, naming file and line on a malformed one; a corpus
    without documents is an error, and so is a document id that is not a string or an integer, is
    empty, holds whitespace (TREC run lines are split on whitespace) or comes twice."""
    seen: set[str] = set()
    for line_no, obj, line in iter_jsonl(path):
        try:
            document = parse_document(obj)
        except (KeyError, AttributeError, TypeError) as exc:
            raise TrecFormatError(path, line_no, f"not a document: {exc}", line) from None
        raw_id = obj["_id"] if "_id" in obj else obj["id"] if "id" in obj and "contents" in obj else obj["docid"]
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
            raise TrecFormatError(path, line_no, f"document id {raw_id!r} is not a string or an integer", line)
        problem = id_problem(document.docid)
        if problem:
            raise TrecFormatError(path, line_no, f"document id {document.docid!r} {problem}", line)
        if document.docid in seen:
            first = _first_line_of(path, document.docid)
            raise CorpusError(f"{path}: duplicate document id {document.docid!r} (lines {first} and {line_no})")
        seen.add(document.docid)
        yield document
    if not seen:
        raise EmptyInputError(path, "documents")


def _first_line_of(path: str | os.PathLike[str], docid: str) -> int:
    """The first line of ``path`` holding document ``docid`` (read again only to name it in an error)."""
    for line_no, obj, _ in iter_jsonl(path):
        try:
            if parse_document(obj).docid == docid:
                return line_no
        except (KeyError, AttributeError, TypeError):
            continue
    return 0
