"""Pyserini hits and PyTerrier-style DataFrames in, rankings out: the adapters on fakes (fast), then
the shipped default on real Lucene hits of the demo index, checked against rerank_run."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest

from routehead_pyserini.data.corpus import Document
from routehead_pyserini.data.trec import Hit, Run, read_topics
from routehead_pyserini.errors import UserError
from routehead_pyserini.firststage.sources import TextSpec, document_source
from routehead_pyserini.pipeline.demo import DEMO_DATA
from routehead_pyserini.rerank.adapters import MissingColumnError, documents_of_hits, transform_frame


class _LuceneDocument:
    def __init__(self, raw):
        self._raw = raw

    def get(self, name):
        return self._raw if name == "raw" else None


def test_documents_of_hits_reads_every_raw_form():
    hits = [
        SimpleNamespace(docid="a", score=3.5, raw=json.dumps({"id": "a", "contents": "Bees pollinate."})),
        SimpleNamespace(docid="b", score=2, raw=json.dumps({"_id": "b", "title": "T", "text": "Body."})),
        SimpleNamespace(docid="c", score=1.0, raw="plain text, not JSON"),
        SimpleNamespace(docid="d", score=0.5, raw=None, lucene_document=_LuceneDocument('{"id": "d", "contents": "Lava."}')),
        SimpleNamespace(docid="e", score=0.25, raw=None, contents="from contents"),
    ]
    docs, scores = documents_of_hits(hits)
    assert docs == [Document("a", "Bees pollinate."), Document("b", "Body.", "T"), Document("c", "plain text, not JSON"),
                    Document("d", "Lava."), Document("e", "from contents")]
    assert scores == [3.5, 2.0, 1.0, 0.5, 0.25] and all(isinstance(s, float) for s in scores)


def test_a_hit_without_text_names_the_hit_and_the_fix():
    with pytest.raises(UserError, match=r"hit 2 \('x'\) carries no document text.*--storeRaw"):
        documents_of_hits([SimpleNamespace(docid="ok", score=1.0, raw="t"), SimpleNamespace(docid="x", score=0.5, raw=None)])


class _LengthReranker:
    """Scores a document by its text length (plus the first-stage score when given)."""

    def __init__(self, top_k):
        self.top_k = top_k
        self.calls = []

    def score_documents(self, query, docs, scores=None, *, qid="query"):
        self.calls.append((qid, query, [d.docid for d in docs]))
        return [len(d.text) + (scores[i] if scores is not None else 0.0) for i, d in enumerate(docs)]


def _frame():
    return pd.DataFrame({
        "qid": ["q1"] * 4 + ["q2"] * 2,
        "query": ["bees"] * 4 + ["lava"] * 2,
        "docno": ["a", "b", "c", "d", "e", "f"],
        "text": ["x", "xxx", "xx", "xxxxxx", "yy", "y"],
        "score": [4.0, 3.0, 2.0, 1.0, 2.0, 1.0],
        "rank": [0, 1, 2, 3, 0, 1],
    })


def test_transform_reranks_the_top_k_per_query_and_keeps_the_tail_below():
    reranker = _LengthReranker(top_k=3)
    out = transform_frame(reranker, _frame())
    assert reranker.calls == [("q1", "bees", ["a", "b", "c"]), ("q2", "lava", ["e", "f"])]
    q1 = out[out.qid == "q1"]
    assert list(q1.docno) == ["b", "a", "c", "d"]  # 6, 5, 4 by length + BM25; d was below the cut
    assert list(q1["rank"]) == [0, 1, 2, 3]  # 0-based, as PyTerrier writes it
    assert list(q1.score_first_stage) == [3.0, 4.0, 2.0, 1.0]
    assert q1.score.iloc[3] < q1.score.iloc[2]
    assert list(out[out.qid == "q2"].docno) == ["e", "f"]


def test_transform_takes_candidates_in_rank_order_and_works_without_scores():
    frame = _frame().drop(columns="score").iloc[::-1]  # rows shuffled; rank decides
    reranker = _LengthReranker(top_k=2)
    out = transform_frame(reranker, frame)
    assert reranker.calls[0] == ("q2", "lava", ["e", "f"]) and reranker.calls[1][2] == ["a", "b"]
    assert "score_first_stage" not in out.columns
    assert list(out[out.qid == "q1"].docno) == ["b", "a", "c", "d"]


def test_transform_names_missing_columns_and_conflicting_queries():
    with pytest.raises(MissingColumnError, match="no column 'text'.*qid, query, docno, text"):
        transform_frame(_LengthReranker(2), _frame().drop(columns="text"))
    frame = _frame()
    frame.loc[1, "query"] = "wasps"
    with pytest.raises(UserError, match="query 'q1' has 2 different query texts"):
        transform_frame(_LengthReranker(2), frame)
    empty = _frame().iloc[:0]
    assert transform_frame(_LengthReranker(2), empty).empty


@pytest.mark.slow
def test_the_default_gives_one_order_through_hits_frames_and_runs(demo_index, smollm2, tmp_path):
    """Pyserini hits of the real index, a DataFrame of the same candidates and rerank_run of the
    same BM25 run give the same scores with the shipped default preset (fused with BM25 and MiniLM)."""
    from routehead_pyserini.firststage.search import open_searcher
    from routehead_pyserini.rerank.reranker import Reranker

    qid, query = next(iter(read_topics(DEMO_DATA / "queries.jsonl").items()))
    searcher = open_searcher(demo_index)
    hits = searcher.search(query, k=6)
    reranker = Reranker.from_preset(model=smollm2, cache=str(tmp_path / "cache"), top_k=4)
    assert reranker.settings.mode == "pointwise" and reranker.top_k == 4

    from_hits = reranker.rerank_hits(query, hits)
    assert len(from_hits) == 6 and sorted(from_hits.docids[:4]) == sorted(h.docid for h in hits[:4])
    assert from_hits.docids[4:] == [h.docid for h in hits[4:]]  # below the cut: first-stage order, below
    assert from_hits[3].score > from_hits[4].score

    texts = document_source(TextSpec(index=str(demo_index)))
    frame = pd.DataFrame({"qid": qid, "query": query, "docno": [h.docid for h in hits],
                          "text": [texts.get(h.docid).contents for h in hits], "score": [h.score for h in hits]})
    framed = reranker.transform(frame)
    assert list(framed.docno) == from_hits.docids
    assert framed.score.tolist()[:4] == pytest.approx(from_hits.scores[:4], abs=1e-5)

    run = Run({qid: [Hit(h.docid, float(h.score)) for h in hits]})
    out, _ = reranker.rerank_run(run, {qid: query}, texts, progress=False)
    assert [h.docid for h in out[qid]] == from_hits.docids
    assert [h.score for h in out[qid][:4]] == pytest.approx(from_hits.scores[:4], abs=1e-5)
