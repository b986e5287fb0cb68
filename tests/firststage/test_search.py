import pytest

from routehead_pyserini.pipeline.demo import DEMO_DATA
from routehead_pyserini.eval.evaluate import evaluate_run
from routehead_pyserini.firststage.search import DocumentStore, UnknownDocumentError, bm25_search
from routehead_pyserini.data.trec import read_qrels, read_topics, write_run


def test_bm25_is_deterministic_and_sorted(demo_index, tmp_path):
    topics = read_topics(DEMO_DATA / "queries.jsonl")
    run = bm25_search(demo_index, topics, hits=10, progress=False)
    assert list(run) == list(topics)
    assert all(0 < len(h) <= 10 for h in run.hits.values())
    for hits in run.hits.values():
        assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    write_run(run, tmp_path / "a.trec")
    write_run(bm25_search(demo_index, topics, hits=10, threads=2, progress=False), tmp_path / "b.trec")
    assert (tmp_path / "a.trec").read_bytes() == (tmp_path / "b.trec").read_bytes()


def test_bm25_parameters_matter(demo_index):
    topics = read_topics(DEMO_DATA / "queries.jsonl")
    default = bm25_search(demo_index, topics, hits=5, progress=False)
    classic = bm25_search(demo_index, topics, hits=5, k1=1.2, b=0.75, progress=False)
    assert default.as_dict() != classic.as_dict()


def test_bm25_beats_nothing_on_demo(demo_index):
    """BM25 finds the grade-3 document in its top 10 for most demo queries (the collection is well formed)."""
    topics, qrels = read_topics(DEMO_DATA / "queries.jsonl"), read_qrels(DEMO_DATA / "qrels.txt")
    run = bm25_search(demo_index, topics, hits=10, progress=False)
    hits_at_10 = sum(any(qrels[q].get(h.docid, 0) == 3 for h in run[q]) for q in topics)
    assert hits_at_10 >= len(topics) // 2
    assert evaluate_run(run, qrels, ["nDCG@10"]).mean("nDCG@10") > 0.3


def test_unknown_docid(demo_index):
    with pytest.raises(UnknownDocumentError, match="'nope' is not in index"):
        DocumentStore(demo_index).get("nope")


@pytest.mark.slow
def test_vaswani_bm25_near_reference(jvm, shared_data, tmp_path):
    """BM25 (k1=0.9, b=0.4) on Vaswani lands near the reference 0.44 nDCG@10 (shared/README.md)."""
    from routehead_pyserini.firststage.index import build_index

    d = shared_data / "vaswani"
    build_index(d / "corpus.jsonl", tmp_path / "idx", progress=False)
    run = bm25_search(tmp_path / "idx", read_topics(d / "queries.jsonl"), hits=1000, progress=False)
    ndcg = evaluate_run(run, read_qrels(d / "qrels.txt"), ["nDCG@10"]).mean("nDCG@10")
    assert 0.42 <= ndcg <= 0.46
