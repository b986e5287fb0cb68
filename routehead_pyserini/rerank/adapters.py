"""Inputs in the forms users of this field already hold: Pyserini hits and PyTerrier-style frames.

Neither library is imported here: a hit is anything with ``docid``, ``score`` and its stored raw
document (Pyserini's ``LuceneSearcher.search()`` results), and a frame is a pandas DataFrame with
PyTerrier's column names, so the re-ranker composes with both without depending on PyTerrier.
"""
from __future__ import annotations

import json
from collections.abc import Sequence

from ..data.corpus import Document, parse_document
from ..data.trec import scores_below
from ..errors import UserError

#: The columns :func:`transform_frame` needs; ``score`` and ``rank`` are optional.
FRAME_COLUMNS = ("qid", "query", "docno", "text")


class MissingColumnError(UserError, KeyError):
    """A DataFrame without a column the re-ranker needs."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


def _raw_text(hit) -> str | None:
    raw = getattr(hit, "raw", None)
    if raw is None and getattr(hit, "lucene_document", None) is not None:
        raw = hit.lucene_document.get("raw")
    for name in ("contents", "text"):
        if raw is None:
            raw = getattr(hit, name, None)
    return raw


def documents_of_hits(hits: Sequence) -> tuple[list[Document], list[float]]:
    """The documents and first-stage scores of Pyserini hits, in their order. The text is the stored
    raw document (an index built with ``--storeRaw``), parsed as JSON when it is a corpus record."""
    docs, scores = [], []
    for position, hit in enumerate(hits):
        docid = str(getattr(hit, "docid"))
        raw = _raw_text(hit)
        if raw is None:
            raise UserError(f"hit {position + 1} ({docid!r}) carries no document text: search an index built "
                            "with --storeRaw (routehead-pyserini index stores it)")
        try:
            doc = parse_document(json.loads(raw))
        except (json.JSONDecodeError, KeyError, TypeError):
            doc = Document(docid, str(raw))
        docs.append(Document(docid, doc.text, doc.title))
        scores.append(float(getattr(hit, "score")))
    return docs, scores


def transform_frame(reranker, frame):
    """:meth:`.reranker.Reranker.transform`: re-score each query's candidates (the first
    ``reranker.top_k`` by ``rank``, or by row order without it) and return the frame re-ranked."""
    import pandas as pd  # a dependency of the package; imported here to keep `import routehead_pyserini` light

    missing = [c for c in FRAME_COLUMNS if c not in frame.columns]
    if missing:
        raise MissingColumnError(f"the DataFrame has no column {', '.join(map(repr, missing))}; "
                                 f"it needs {', '.join(FRAME_COLUMNS)} (and score, rank where the first stage gave them)")
    has_score = "score" in frame.columns
    parts = []
    for qid, group in frame.groupby("qid", sort=False):
        group = group.sort_values("rank", kind="stable") if "rank" in group.columns else group
        queries = group["query"].unique()
        if len(queries) != 1:
            raise UserError(f"query {qid!r} has {len(queries)} different query texts in the DataFrame")
        head = group.iloc[:reranker.top_k]
        docs = [Document(str(d), str(t)) for d, t in zip(head["docno"], head["text"])]
        values = reranker.score_documents(str(queries[0]), docs, head["score"].tolist() if has_score else None, qid=str(qid))
        out = group.copy()
        if has_score:
            out["score_first_stage"] = out["score"]
        out["score"] = values + scores_below(values, len(group) - len(values))
        order = sorted(range(len(out)), key=lambda i: (-out["score"].iloc[i], i))
        out = out.iloc[order]
        out["rank"] = range(len(out))
        parts.append(out)
    if not parts:
        return frame.copy()
    return pd.concat(parts).reset_index(drop=True)
