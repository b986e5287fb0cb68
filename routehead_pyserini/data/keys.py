"""Content keys: stable hashes that name a query's candidate list, for every cache keyed by content.

The head-score cache (:mod:`..engine.cache`) and the bi-encoder cache (:mod:`..firststage.dense`) key
an entry by the qid, the query text and each candidate's docid and text, so a changed text or
candidate list is never served from a stale entry.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass

from .corpus import Document


def stable_json(obj) -> str:
    """``obj`` as JSON with sorted keys and no spaces (dataclasses as dicts): the same bytes every run."""
    if is_dataclass(obj):
        obj = asdict(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def digest(text: str, n: int = 20) -> str:
    """The first ``n`` hex digits of the SHA-256 of ``text``."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def entry_key(qid: str, query: str, docids: Sequence[str], texts: Sequence[str]) -> str:
    """Identity of one query's candidate list (qid, query text, docids and their texts)."""
    text_digests = [digest(t, 16) for t in texts]
    return digest(stable_json([qid, query, list(docids), text_digests]), 32)


def query_entry(qid: str, query: str, docs: Sequence[Document]) -> str:
    """:func:`entry_key` of a query's candidate documents (title and text, as the prompts show them)."""
    return entry_key(qid, query, [d.docid for d in docs], [d.title + "\n" + d.text for d in docs])
