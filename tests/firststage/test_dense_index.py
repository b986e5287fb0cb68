"""The dense first stage: a faiss index of the packaged all-MiniLM-L6-v2 over the demo collection."""
import pytest
import torch

from routehead_pyserini.data.corpus import read_corpus
from routehead_pyserini.pipeline.demo import DEMO_DATA
from routehead_pyserini.firststage.dense import document_text, load_encoder
from routehead_pyserini.firststage.dense_index import DenseIndexError, build_dense_index, dense_search, read_dense_info
from routehead_pyserini.eval.evaluate import evaluate_run, parse_measure
from routehead_pyserini.data.trec import read_qrels, read_topics, write_run


@pytest.fixture(scope="module")
def encoder():
    return load_encoder()


@pytest.fixture(scope="module")
def dense_demo(encoder, tmp_path_factory):
    folder = tmp_path_factory.mktemp("dense") / "demo"
    info = build_dense_index(DEMO_DATA / "corpus.jsonl", folder, encoder, batch_size=16, progress=False)
    return folder, info


def test_search_is_exact_cosine_search(encoder, dense_demo):
    folder, info = dense_demo
    docs = list(read_corpus(DEMO_DATA / "corpus.jsonl"))
    assert info.num_docs == len(docs) == 48 and info.dim == 384 and read_dense_info(folder).encoder == "all-minilm-l6-v2"
    topics = read_topics(DEMO_DATA / "queries.jsonl")
    run = dense_search(folder, topics, encoder, hits=5, progress=False)
    doc_vectors = encoder.encode([document_text(d) for d in docs])
    for qid, text in topics.items():  # the same top 5 as brute force over all documents
        cosines = doc_vectors @ encoder.encode([text])[0]
        expected = [docs[i].docid for i in torch.argsort(-cosines)[:5].tolist()]
        assert [h.docid for h in run[qid]] == expected
        assert [h.score for h in run[qid]] == pytest.approx(sorted(cosines.tolist(), reverse=True)[:5], abs=1e-5)
    # a real first stage on the demo topics: well above what a random order of the corpus gives
    ndcg = evaluate_run(dense_search(folder, topics, encoder, hits=48, progress=False),
                        read_qrels(DEMO_DATA / "qrels.txt"), [parse_measure("nDCG@10")])
    assert ndcg.mean("nDCG@10") > 0.6


def test_same_bytes_twice_and_clear_errors(encoder, dense_demo, tmp_path):
    folder, _ = dense_demo
    topics = read_topics(DEMO_DATA / "queries.jsonl")
    for name in ("a", "b"):
        write_run(dense_search(folder, topics, encoder, hits=10, progress=False), tmp_path / f"{name}.trec", tag="dense")
    assert (tmp_path / "a.trec").read_bytes() == (tmp_path / "b.trec").read_bytes()
    with pytest.raises(DenseIndexError, match="already exists"):
        build_dense_index(DEMO_DATA / "corpus.jsonl", folder, encoder)
    with pytest.raises(DenseIndexError, match="not a dense index"):
        dense_search(tmp_path, topics, encoder)


def test_cli_index_and_search_dense(tmp_path):
    from click.testing import CliRunner

    from routehead_pyserini.cli import main

    folder, run = tmp_path / "dense", tmp_path / "dense.trec"
    built = CliRunner().invoke(main, ["-q", "index", "--dense", "--corpus", str(DEMO_DATA / "corpus.jsonl"), "--index", str(folder)])
    assert built.exit_code == 0, built.output
    searched = CliRunner().invoke(main, ["-q", "search", "--dense", "--index", str(folder), "--topics",
                                         str(DEMO_DATA / "queries.jsonl"), "--hits", 10, "-o", str(run)])
    assert searched.exit_code == 0, searched.output
    lines = run.read_text().splitlines()
    assert len(lines) == 160 and lines[0].split()[-1] == "dense"
    missing = CliRunner().invoke(main, ["-q", "search", "--dense", "--index", "no-such-index", "--topics",
                                        str(DEMO_DATA / "queries.jsonl"), "-o", str(run)])
    assert missing.exit_code != 0 and "not a folder, and not a registered name" in missing.output


def test_registered_name_is_built_once_and_rebuilt_when_the_corpus_changes(encoder, tmp_path, monkeypatch):
    from routehead_pyserini.firststage.dense_index import resolve_dense_index
    from routehead_pyserini.data.registry import REGISTRY_ENV, register

    monkeypatch.setenv(REGISTRY_ENV, str(tmp_path / "registry.yaml"))
    monkeypatch.setenv("ROUTEHEAD_CACHE_DIR", str(tmp_path / "cache"))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text((DEMO_DATA / "corpus.jsonl").read_text())
    register("mini", corpus=corpus)
    folder = resolve_dense_index("mini", encoder, progress=False)
    assert folder == tmp_path / "cache" / "dense-indexes" / "mini-all-minilm-l6-v2" and read_dense_info(folder).num_docs == 48
    built = (folder / "vectors.faiss").stat().st_mtime_ns
    assert resolve_dense_index("mini", encoder, progress=False) == folder
    assert (folder / "vectors.faiss").stat().st_mtime_ns == built  # reused, not rebuilt
    corpus.write_text("".join(corpus.read_text().splitlines(keepends=True)[:10]))  # the corpus changed
    assert read_dense_info(resolve_dense_index("mini", encoder, progress=False)).num_docs == 10
