"""rerank_run: a whole run re-ranked from Python, inputs as objects, files or registered names."""
from __future__ import annotations

import pytest

from routehead_pyserini.data.corpus import Document, read_corpus
from routehead_pyserini.data.trec import read_topics, write_run
from routehead_pyserini.firststage.search import bm25_search
from routehead_pyserini.firststage.sources import DictTexts
from routehead_pyserini.pipeline.demo import DEMO_DATA
from routehead_pyserini.rerank.reranker import Reranker
from routehead_pyserini.rerank.runs import rerank_run


@pytest.fixture(scope="module")
def two_queries(demo_index):
    topics = dict(list(read_topics(DEMO_DATA / "queries.jsonl").items())[:2])
    return bm25_search(demo_index, topics, hits=5, progress=False), topics


def test_files_names_and_objects_give_the_same_run(smollm2, demo_index, two_queries, tmp_path):
    run, topics = two_queries
    reranker = Reranker(smollm2, "10.1,12.4,14.0", cache=False, top_k=3)
    texts = DictTexts({d.docid: d for d in read_corpus(DEMO_DATA / "corpus.jsonl")}, "demo corpus")
    expected, _ = reranker.rerank_run(run, topics, texts, progress=False)

    run_file = tmp_path / "bm25.trec"
    write_run(run, run_file, "bm25")
    from_objects = rerank_run(run, topics, texts, reranker)
    from_files = rerank_run(run_file, "demo", demo_index, reranker)  # topics by registered name, text from the index
    from_corpus = rerank_run(str(run_file), DEMO_DATA / "queries.jsonl", DEMO_DATA / "corpus.jsonl", reranker)
    plain = {d.docid: d.contents for d in read_corpus(DEMO_DATA / "corpus.jsonl")}
    from_dict = rerank_run(run, topics, plain, reranker)
    # an index stores "title\ntext" as one text (no title field), as {docid: text} does: those two agree
    from_contents, _ = reranker.rerank_run(run, topics, DictTexts({k: Document(k, v) for k, v in plain.items()}), progress=False)
    for got, want in [(from_objects, expected), (from_corpus, expected), (from_files, from_contents), (from_dict, from_contents)]:
        assert list(got.hits) == list(want.hits)
        for qid in want.hits:
            assert [h.docid for h in got[qid]] == [h.docid for h in want[qid]]
            assert [h.score for h in got[qid]] == pytest.approx([h.score for h in want[qid]], abs=1e-5)
    assert [h.docid for h in expected[next(iter(topics))]][3:] == [h.docid for h in run[next(iter(topics))]][3:]


def test_top_k_of_the_call_wins_over_the_rerankers(smollm2, two_queries):
    run, topics = two_queries
    plain = {d.docid: d.contents for d in read_corpus(DEMO_DATA / "corpus.jsonl")}
    qid = next(iter(topics))
    cut = rerank_run(run, topics, plain, Reranker(smollm2, "10.1", cache=False, top_k=2))
    assert [h.docid for h in cut[qid]][2:] == [h.docid for h in run[qid]][2:]  # only the first 2 were re-ranked
    wider = rerank_run(run, topics, plain, Reranker(smollm2, "10.1", cache=False, top_k=2), top_k=5)
    same = rerank_run(run, topics, plain, Reranker(smollm2, "10.1", cache=False, top_k=5))
    assert [h.docid for h in wider[qid]] == [h.docid for h in same[qid]]
    assert [h.score for h in wider[qid]] == pytest.approx([h.score for h in same[qid]], abs=1e-6)
