"""Re-ranking runs with the real packaged SmolLM2 on the embedded demo collection (small inputs)."""
import pytest
import torch

from routehead_pyserini.rerank import reranker as rerank_module
from routehead_pyserini.data.corpus import Document, read_corpus
from routehead_pyserini.pipeline.demo import DEMO_DATA
from routehead_pyserini.heads.head_set import aggregate, parse_heads
from routehead_pyserini.engine.cache import ScoreCache
from routehead_pyserini.firststage.sources import DictTexts
from routehead_pyserini.rerank.reranker import PromptSettings, Reranker
from routehead_pyserini.errors import RerankError
from routehead_pyserini.firststage.search import UnknownDocumentError, bm25_search
from routehead_pyserini.data.trec import read_topics, write_run

TOP_K = 5


@pytest.fixture(scope="module")
def demo_inputs(demo_index):
    topics = dict(list(read_topics(DEMO_DATA / "queries.jsonl").items())[:3])
    run = bm25_search(demo_index, topics, hits=8, progress=False)
    texts = DictTexts({d.docid: d for d in read_corpus(DEMO_DATA / "corpus.jsonl")})
    return run, topics, texts


def test_rank_returns_a_scored_permutation(smollm2):
    reranker = Reranker(smollm2, cache=False)
    docs = ["Fleas live about three months.", ("eiffel", "The Eiffel Tower is in Paris."), Document("cat", "Cats purr.")]
    ranked = reranker.rank("how long do fleas live", docs)
    assert sorted(r.docid for r in ranked) == ["0", "cat", "eiffel"]
    assert [r.rank for r in ranked] == [1, 2, 3]
    assert all(a.score >= b.score for a, b in zip(ranked, ranked[1:]))
    assert ranked == reranker.rank("how long do fleas live", docs)
    assert reranker.rank("anything", []) == []


def test_cached_and_uncached_runs_are_identical(smollm2, demo_inputs, tmp_path):
    run, topics, texts = demo_inputs
    fresh, stats = Reranker(smollm2, cache=str(tmp_path)).rerank_run(run, topics, texts, top_k=TOP_K, progress=False)
    assert stats.cached_queries == 0 and stats.queries == 3 and stats.reranked_docs == 3 * TOP_K
    cached, stats2 = Reranker(smollm2, cache=str(tmp_path)).rerank_run(run, topics, texts, top_k=TOP_K, progress=False)
    assert stats2.cached_queries == 3
    uncached, _ = Reranker(smollm2, cache=False).rerank_run(run, topics, texts, top_k=TOP_K, progress=False)
    write_run(fresh, tmp_path / "a.trec")
    write_run(cached, tmp_path / "b.trec")
    write_run(uncached, tmp_path / "c.trec")
    assert (tmp_path / "a.trec").read_bytes() == (tmp_path / "b.trec").read_bytes() == (tmp_path / "c.trec").read_bytes()
    for qid in run:  # the candidates below top-k keep their first-stage order, below the re-ranked ones
        assert [h.docid for h in fresh[qid][TOP_K:]] == [h.docid for h in run[qid][TOP_K:]]
        assert sorted(h.docid for h in fresh[qid][:TOP_K]) == sorted(h.docid for h in run[qid][:TOP_K])
        assert all(a.score > b.score for a, b in zip(fresh[qid][TOP_K - 1:], fresh[qid][TOP_K:]))


def test_resume_after_a_kill_gives_the_same_run(smollm2, demo_inputs, tmp_path, monkeypatch):
    run, topics, texts = demo_inputs
    reference, _ = Reranker(smollm2, cache=False).rerank_run(run, topics, texts, top_k=TOP_K, progress=False)
    write_run(reference, tmp_path / "reference.trec")

    real, calls = rerank_module.score_prompts, {"n": 0}

    def dies_on_the_second_query(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(rerank_module, "score_prompts", dies_on_the_second_query)
    with pytest.raises(KeyboardInterrupt):
        Reranker(smollm2, cache=str(tmp_path / "cache")).rerank_run(run, topics, texts, top_k=TOP_K, progress=False)
    assert not (tmp_path / "resumed.trec").exists()
    monkeypatch.setattr(rerank_module, "score_prompts", real)
    resumed, stats = Reranker(smollm2, cache=str(tmp_path / "cache")).rerank_run(run, topics, texts, top_k=TOP_K, progress=False)
    assert stats.cached_queries == 1  # the query finished before the kill is not scored again
    write_run(resumed, tmp_path / "resumed.trec")
    assert (tmp_path / "resumed.trec").read_bytes() == (tmp_path / "reference.trec").read_bytes()


def test_head_subset_equals_the_same_heads_of_all_heads(smollm2, demo_inputs):
    run, topics, texts = demo_inputs
    qid = run.qids()[0]
    docs = [texts.get(h.docid) for h in run[qid][:TOP_K]]
    all_heads = Reranker(smollm2, cache=False).score(topics[qid], docs, qid)
    subset = parse_heads("3.1,12.4,17.0")
    routed = Reranker(smollm2, heads=subset, cache=False).score(topics[qid], docs, qid)
    assert int(routed.computed.sum()) == 3
    torch.testing.assert_close(aggregate(routed.calibrated, subset), aggregate(all_heads.calibrated, subset), atol=1e-5, rtol=1e-5)


def test_windows_cover_every_document_once(smollm2, demo_inputs):
    run, topics, texts = demo_inputs
    qid = run.qids()[0]
    docs = [texts.get(h.docid) for h in run[qid]]
    scores = Reranker(smollm2, settings=PromptSettings(max_context=400), cache=False).score(topics[qid], docs, qid)
    assert scores.info["windows"] > 1
    assert not torch.isnan(scores.calibrated).any()
    assert int(scores.window_size.min()) >= 1 and len(scores.docids) == len(docs)


def test_reversed_order_changes_scores_not_shape(smollm2, demo_inputs):
    run, topics, texts = demo_inputs
    qid = run.qids()[0]
    docs = [texts.get(h.docid) for h in run[qid][:TOP_K]]
    a = Reranker(smollm2, cache=False).score(topics[qid], docs, qid)
    b = Reranker(smollm2, settings=PromptSettings(order="reversed"), cache=False).score(topics[qid], docs, qid)
    assert a.query.shape == b.query.shape == (30, 9, TOP_K) and a.docids == b.docids
    assert not torch.allclose(a.query, b.query)


def test_missing_text_and_topics(smollm2, demo_inputs):
    run, topics, texts = demo_inputs
    qid = run.qids()[0]
    partial = DictTexts({k: v for k, v in texts.docs.items() if k != run[qid][0].docid}, "a partial corpus")
    reranker = Reranker(smollm2, cache=False)
    one = type(run)({qid: run[qid]})
    with pytest.raises(UnknownDocumentError, match=f"query {qid}: document .* is not in a partial corpus"):
        reranker.rerank_run(one, topics, partial, top_k=TOP_K, progress=False)
    out, stats = reranker.rerank_run(one, topics, partial, top_k=TOP_K, on_missing="skip", progress=False)
    assert stats.missing_docs == 1 and out[qid][TOP_K - 1].docid == run[qid][0].docid
    with pytest.raises(RerankError, match="no topic text"):
        reranker.rerank_run(one, {}, texts, progress=False)


# --- modes, orders, batching ---------------------------------------------------------------------


def test_default_listwise_cache_key_is_unchanged(tmp_path):
    """Caches made before mode/attention_norm existed keep their keys (hours of CPU work each)."""
    from routehead_pyserini.engine.cache import ScoreCache

    def key(settings):
        return ScoreCache("fp", settings, tmp_path).folder.name

    # the keys of the settings as they were before the new fields (computed with the old code)
    assert key(PromptSettings()) == key({"doc_max_tokens": 256, "max_context": None, "order": "bm25", "chat_template": True}) == "fbe9ced1574f8e878a92"
    assert key(PromptSettings(order="reversed")) == "e16602d0b3909fce0a16"
    assert key(PromptSettings(doc_max_tokens=100)) == "4f58f473e88a542e7b1e"
    assert PromptSettings().cache_key() == {"doc_max_tokens": 256, "max_context": None, "order": "bm25", "chat_template": True}
    others = {key(PromptSettings(mode="pointwise")), key(PromptSettings(attention_norm="no-sink")),
              key(PromptSettings(mode="pointwise", attention_norm="no-sink"))}
    assert len(others) == 3 and "fbe9ced1574f8e878a92" not in others
    with pytest.raises(RerankError, match="pointwise"):
        PromptSettings(mode="pointwise", order="reversed")
    with pytest.raises(ValueError, match="mode"):
        PromptSettings(mode="pairwise")


def test_pointwise_and_listwise_shapes_and_batching(smollm2, demo_inputs):
    run, topics, texts = demo_inputs
    qid = run.qids()[0]
    docs = [texts.get(h.docid) for h in run[qid][:TOP_K]]
    listwise = Reranker(smollm2, cache=False).score(topics[qid], docs, qid)
    pointwise = Reranker(smollm2, settings=PromptSettings(mode="pointwise"), cache=False).score(topics[qid], docs, qid)
    assert pointwise.query.shape == listwise.query.shape == (30, 9, TOP_K) and pointwise.docids == listwise.docids
    assert pointwise.window_size.tolist() == [1] * TOP_K and pointwise.info["prompts"] == TOP_K
    assert not torch.isnan(pointwise.calibrated).any()
    batched = Reranker(smollm2, settings=PromptSettings(mode="pointwise"), cache=False, batch_size=4).score(topics[qid], docs, qid)
    torch.testing.assert_close(batched.query, pointwise.query, atol=1e-5, rtol=0)
    torch.testing.assert_close(batched.calib, pointwise.calib, atol=1e-5, rtol=0)
    # routed heads in pointwise mode: only those heads, equal to the same heads of all heads
    subset = parse_heads("3.1,12.4")
    routed = Reranker(smollm2, heads=subset, settings=PromptSettings(mode="pointwise"), cache=False, batch_size=4).score(topics[qid], docs, qid)
    assert int(routed.computed.sum()) == 2
    torch.testing.assert_close(aggregate(routed.calibrated, subset), aggregate(pointwise.calibrated, subset), atol=1e-5, rtol=1e-5)


def test_listwise_windows_batched_equal_unbatched(smollm2, demo_inputs):
    """The scorer batches listwise windows exactly; the re-ranker scores them one at a time anyway."""
    from routehead_pyserini.engine.windows import build_windows
    from routehead_pyserini.engine.scoring import score_prompts

    run, topics, texts = demo_inputs
    qid = run.qids()[0]
    docs = [texts.get(h.docid) for h in run[qid]]
    windows = build_windows(smollm2.tokenizer, topics[qid], docs, max_context=400)
    assert len(windows) > 1 and len({w.n_docs for w in windows} | {w.prefix_len for w in windows}) > 1
    for one, many in zip(score_prompts(smollm2, windows), score_prompts(smollm2, windows, batch_size=3)):
        torch.testing.assert_close(many.query, one.query, atol=1e-5, rtol=0)
        torch.testing.assert_close(many.calib, one.calib, atol=1e-5, rtol=0)
    assert Reranker(smollm2, cache=False, batch_size=3).batch_size == 1


def test_order_both_is_the_sum_and_reuses_each_order_cache(smollm2, demo_inputs, tmp_path):
    run, topics, texts = demo_inputs
    qid = run.qids()[0]
    docs = [texts.get(h.docid) for h in run[qid][:TOP_K]]
    bm25 = Reranker(smollm2, cache=str(tmp_path)).score(topics[qid], docs, qid)
    rev = Reranker(smollm2, settings=PromptSettings(order="reversed"), cache=False).score(topics[qid], docs, qid)
    both = Reranker(smollm2, settings=PromptSettings(order="both"), cache=str(tmp_path)).score(topics[qid], docs, qid)
    torch.testing.assert_close(both.calibrated, bm25.calibrated + rev.calibrated, atol=1e-5, rtol=0)
    assert both.info["orders"] == {"bm25": "cache", "reversed": "computed"} and not both.info["from_cache"]
    # both single-order entries are now stored; nothing is stored under "both"
    again = Reranker(smollm2, settings=PromptSettings(order="both"), cache=str(tmp_path)).score(topics[qid], docs, qid)
    assert again.info["from_cache"] and torch.equal(again.calibrated, both.calibrated)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ScoreCache(smollm2.fingerprint, PromptSettings(order=o), tmp_path).folder.name for o in ("bm25", "reversed"))
