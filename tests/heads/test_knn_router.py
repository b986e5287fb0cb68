"""kNN routing baseline: cluster recovery, votes and ties, leave-one-out, files, the kind dispatcher, the CLI."""
from __future__ import annotations

import math

import pytest
import torch
from click.testing import CliRunner

from routehead_pyserini.cli import main
from routehead_pyserini.heads.head_set import HeadSet
from routehead_pyserini.heads.knn_router import KnnConfig, KnnRouter, label_recall, load_knn_router, save_knn_router
from routehead_pyserini.heads.router import RouterConfig, TrainedRouter, save_router, train_router
from routehead_pyserini.heads.checkpoint import RouterError
from routehead_pyserini.heads.loading import load_any_router, load_router
from helpers import clustered, tiny_wrapped


def exact(routed: list[HeadSet], labels: torch.Tensor) -> float:
    return sum(s.mask(tuple(labels.shape[1:])).equal(labels[i]) for i, s in enumerate(routed)) / len(routed)


def test_routes_held_out_queries_to_their_cluster_set():
    x, y, _, _ = clustered(300)
    x_test, y_test, _, _ = clustered(100, seed=7)
    for vote in ("count", "similarity"):
        router = KnnRouter(x, y, KnnConfig(k=5, vote=vote))
        assert router.default_top_m == 3 and router.shape == (4, 4) and len(router) == 300
        routed = router.route(x_test)
        assert all(isinstance(s, HeadSet) and len(s.heads) == 3 and s.model_shape == (4, 4) for s in routed)
        assert exact(routed, y_test) == 1.0
        assert routed[0].normalise == "zscore" and "knn" in routed[0].source
        assert len(routed[0].extra["neighbours"]) == 5 and routed[0].extra["votes"] == ([5.0] * 3 if vote == "count" else routed[0].extra["similarity"])
    # one query at a time gives the same neighbours and sets as the whole batch
    single = [router.route(x_test[i:i + 1])[0] for i in range(20)]
    assert [(s.heads, s.extra) for s in single] == [(s.heads, s.extra) for s in routed[:20]]
    assert len(router.route(x_test[:2], top_m=2)[0].heads) == 2
    # the nuisance dimensions (huge, shared offset) decide raw cosine: standardising is what makes it work
    raw = KnnRouter(x, y, KnnConfig(k=5, standardise=False))
    assert exact(raw.route(x_test), y_test) < 0.8


def test_votes_and_ties_are_deterministic():
    """2-d unit vectors, no standardisation: votes, then summed similarity, then layer-major order."""

    def at(*degrees):
        return torch.tensor([[math.cos(math.radians(d)), math.sin(math.radians(d))] for d in degrees], dtype=torch.float32)

    train = at(0, 10, -20, 180)
    labels = [[(0, 0), (0, 1)], [(1, 2), (0, 1)], [(1, 2), (1, 0), (0, 2)], [(1, 1)]]
    router = KnnRouter(train, labels, KnnConfig(k=3, standardise=False), shape=(2, 3), query_ids=["a", "b", "c", "d"])
    assert router.default_top_m == 2  # mean label size 2.0
    query = at(0)
    assert router.neighbours(query)[0][0] == (0, pytest.approx(1.0))
    assert [i for i, _ in router.neighbours(query)[0]] == [0, 1, 2]
    # (0,1) and (1,2) both have 2 votes; (0,1) has the larger summed similarity (1 + cos 10 > cos 10 + cos 20)
    assert router.route(query, top_m=1)[0].heads == ((0, 1),)
    assert router.route(query)[0].heads == ((0, 1), (1, 2))
    # one vote each: (0,0) from the nearest neighbour beats (0,2), (1,0) from the farther one ...
    assert router.route(query, top_m=3)[0].heads == ((0, 0), (0, 1), (1, 2))
    # ... and (0,2) and (1,0) tie exactly (same voter): layer-major order takes (0,2)
    four = router.route(query, top_m=4)[0]
    assert four.heads == ((0, 0), (0, 1), (0, 2), (1, 2))
    assert four.extra["votes"] == [1.0, 2.0, 1.0, 2.0] and four.extra["neighbours"] == ["a", "b", "c"]
    # never padded with heads no neighbour voted for: (1,1) is only in the far query's label
    assert router.route(query, top_m=6)[0].heads == ((0, 0), (0, 1), (0, 2), (1, 0), (1, 2))
    assert [router.route(query, top_m=4)[0].heads for _ in range(3)] == [four.heads] * 3

    # count vs similarity votes: two neighbours at +-70 degrees outvote the nearest one, unless weighted
    spread = KnnRouter(at(0, 70, -70, 180), [[(0, 0)], [(1, 1)], [(1, 1)], [(0, 2)]], KnnConfig(k=4, standardise=False),
                       shape=(2, 3))
    assert spread.route(query, top_m=1)[0].heads == ((1, 1),)
    weighted = KnnRouter(spread.embeddings, spread.label_sets, KnnConfig(k=4, vote="similarity", standardise=False), shape=(2, 3))
    assert weighted.route(query, top_m=1)[0].heads == ((0, 0),)
    # the opposite neighbour (cosine -1) weighs 0 under similarity votes and is ranked last
    three = weighted.route(query, top_m=3)[0]
    assert three.heads == ((0, 0), (0, 2), (1, 1))  # extra follows the heads' (layer-major) order
    assert three.extra["votes"] == pytest.approx([1.0, 0.0, 2 * math.cos(math.radians(70))], abs=1e-6)
    assert weighted.route(query, top_m=2)[0].heads == ((0, 0), (1, 1))


def test_exclude_self_is_leave_one_out():
    x, y, _, _ = clustered(60)
    router = KnnRouter(x, y, KnnConfig(k=1, standardise=False))
    with_self = router.route(x)
    assert all(s.extra["neighbours"] == [i] and s.extra["neighbour_similarities"][0] == pytest.approx(1.0)
               for i, s in enumerate(with_self))
    loo = router.route(x, exclude_self=True)
    assert all(i not in s.extra["neighbours"] for i, s in enumerate(loo))
    assert [s.heads for s in router.leave_one_out()] == [s.heads for s in loo]
    # the same as routing each query with an index built without it (no standardisation: same geometry)
    for i in (0, 17, 59):
        keep = [j for j in range(60) if j != i]
        without = KnnRouter(x[keep], y[keep], KnnConfig(k=1, standardise=False))
        assert without.route(x[i:i + 1])[0].heads == loo[i].heads
    # explicit indices: a subset of training queries
    some = router.route(x[[5, 9]], exclude_self=True, indices=[5, 9])
    assert [s.heads for s in some] == [loo[5].heads, loo[9].heads]
    with pytest.raises(RouterError, match="training embeddings"):
        router.route(x[:3], exclude_self=True)
    with pytest.raises(RouterError, match="only used with exclude_self"):
        router.route(x[:3], indices=[0, 1, 2])
    # k larger than the training set: every other query votes
    small = KnnRouter(x[:4], y[:4], KnnConfig(k=10))
    assert len(small.route(x[:4], exclude_self=True)[0].extra["neighbours"]) == 3
    assert label_recall(router.route(x), [s.heads for s in router.route(x)]) == 1.0


def test_bad_inputs():
    x, y, _, _ = clustered(10)
    with pytest.raises(RouterError, match="label sets"):
        KnnRouter(x[:5], y)
    with pytest.raises(RouterError, match="vote"):
        KnnConfig(vote="majority")
    with pytest.raises(RouterError, match="k must be"):
        KnnConfig(k=0)
    with pytest.raises(RouterError, match="shape"):
        KnnRouter(x[:1], [[(0, 0)]])
    with pytest.raises(RouterError, match="outside"):
        KnnRouter(x[:1], [[(4, 0)]], shape=(4, 4))
    router = KnnRouter(x, y)
    with pytest.raises(RouterError, match="embeddings"):
        router.route(x[:, :5])
    with pytest.raises(RouterError, match="top_m"):
        router.route(x, top_m=17)


def test_file_round_trip_wrong_model_and_dispatch(tmp_path):
    llm = tiny_wrapped("tiny-a")  # 4 layers x 4 heads, hidden 64: the synthetic problem's shape
    x, y, _, _ = clustered(80)
    x_test, _, _, _ = clustered(30, seed=3)
    qids = [f"q{i}" for i in range(80)]
    router = KnnRouter(x, y, KnnConfig(k=4, vote="similarity", embedding_layer=-1, embedding_pooling="last"),
                       query_ids=qids, extra={"normalise": "none"})
    path = tmp_path / "knn.pt"
    save_knn_router(router, path, model=llm, prompt_settings={"doc_max_tokens": 300}, extra={"labels": "synthetic"})
    assert not list(tmp_path.glob(".*.tmp"))
    assert torch.load(path, weights_only=True)["kind"] == "knn"
    loaded = load_knn_router(path, model=llm)
    assert [(s.heads, s.extra) for s in loaded.route(x_test)] == [(s.heads, s.extra) for s in router.route(x_test)]
    assert [s.heads for s in loaded.leave_one_out()] == [s.heads for s in router.leave_one_out()]
    assert loaded.config.embedding_layer == 3 and loaded.config.embedding_pooling == "last" and loaded.config.vote == "similarity"
    assert loaded.query_ids == qids and loaded.label_sets == router.label_sets
    assert loaded.prompt_settings == {"doc_max_tokens": 300}
    assert loaded.extra == {"normalise": "none", "labels": "synthetic"} and loaded.route(x_test[:1])[0].normalise == "none"
    assert loaded.model_info["fingerprint"] == llm.fingerprint
    assert loaded.route(x_test[:1])[0].model_fingerprint == llm.fingerprint

    with pytest.raises(RouterError, match="for model 'tiny-a'.*not for model 'tiny-b'.*fingerprint"):
        load_knn_router(path, model=tiny_wrapped("tiny-b"))
    with pytest.raises(RouterError, match=r"cannot belong.*'tiny-deep'"):
        save_knn_router(KnnRouter(x, y), tmp_path / "deep.pt", model=tiny_wrapped("tiny-deep", num_hidden_layers=6))

    # the dispatcher reads either kind; each kind's own loader refuses the other
    learned = train_router(x, y, RouterConfig(epochs=2))
    save_router(learned, tmp_path / "learned.pt", model=llm)
    assert isinstance(load_any_router(tmp_path / "learned.pt", model=llm), TrainedRouter)
    either = load_any_router(path, model=llm)
    assert isinstance(either, KnnRouter) and [s.heads for s in either.route(x_test)] == [s.heads for s in router.route(x_test)]
    with pytest.raises(RouterError, match="not for model 'tiny-b'"):
        load_any_router(path, model=tiny_wrapped("tiny-b"))
    with pytest.raises(RouterError, match="not a router file"):
        load_router(path)
    with pytest.raises(RouterError, match="not a kNN router file"):
        load_knn_router(tmp_path / "learned.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(RouterError, match="not a router file"):
        load_any_router(tmp_path / "junk.pt")


def test_route_queries_and_reranker_check(tiny_llama):
    from helpers import QUERIES, word_tokenizer

    from routehead_pyserini.engine.query_embedding import embed_queries
    from routehead_pyserini.rerank.reranker import Reranker

    tiny_llama.tokenizer = word_tokenizer()
    x = embed_queries(tiny_llama, QUERIES, layer=1)
    labels = [[(i % 4, 0), (1, 2)] for i in range(len(QUERIES))]
    router = KnnRouter(x, labels, KnnConfig(k=2, embedding_layer=1), shape=(4, 4), model=tiny_llama)
    routed = router.route_queries(tiny_llama, QUERIES, batch_size=3)
    assert [s.heads for s in routed] == [s.heads for s in router.route(x)]
    assert all(s.extra["neighbours"][0] == i for i, s in enumerate(routed))  # each query is its own nearest
    assert Reranker(tiny_llama, cache=False, router=router).router is router
    other = tiny_wrapped("other")
    with pytest.raises(RouterError, match="not for model"):
        router.route_queries(other, QUERIES)
    with pytest.raises(RouterError, match="not for model"):
        Reranker(other, cache=False, router=router)


def test_train_knn_options_need_knn(tmp_path):
    labels = tmp_path / "labels.jsonl"
    labels.write_text("{}\n")
    common = ["train", "--labels", str(labels), "--topics", "x", "-o", str(tmp_path / "r.pt")]
    result = CliRunner().invoke(main, [*common, "--knn", "3", "--epochs", "5"])
    assert result.exit_code == 2 and "--epochs: options of the learned router" in result.output
    result = CliRunner().invoke(main, [*common, "--knn-vote", "similarity"])
    assert result.exit_code == 2 and "need --knn" in result.output


def test_cli_train_knn_and_rerank_with_smollm2(smollm2, tmp_path):
    """Plumbing with the real SmolLM2: synthetic labels of the 16 demo queries, `train --knn`, then
    `rerank --router` on two queries of three candidates (text from --candidates: no JVM)."""
    import json
    import random

    from routehead_pyserini.pipeline.demo import DEMO_DATA
    from routehead_pyserini.heads.labels import Labels, QueryLabel, write_labels
    from routehead_pyserini.data.trec import read_run

    queries = {row["_id"]: row["text"] for row in map(json.loads, (DEMO_DATA / "queries.jsonl").read_text().splitlines())}
    docs = [json.loads(line) for line in (DEMO_DATA / "corpus.jsonl").read_text().splitlines()[:3]]
    draw = random.Random(0)
    labelled = {q: QueryLabel(q, tuple(sorted(draw.sample([(l, h) for l in range(30) for h in range(9)], 2))), 0.5, 0.4,
                              torch.zeros(30, 9)) for q in queries}
    write_labels(Labels(labelled, model={"name": smollm2.name, "fingerprint": smollm2.fingerprint}, shape=(30, 9),
                        settings={"top_k": 3}), tmp_path / "labels.jsonl")
    runner = CliRunner()
    built = runner.invoke(main, ["-q", "train", "--labels", str(tmp_path / "labels.jsonl"), "--topics", str(DEMO_DATA / "queries.jsonl"),
                                 "-o", str(tmp_path / "knn.pt"), "--model", "smollm2-135m", "--knn", "3", "--top-k", "4"],
                          catch_exceptions=False)
    assert built.exit_code == 0, built.output
    assert "kNN router over 16 training queries (k=3, vote=count, standardised cosine, 4 heads per query)" in built.output
    assert "leave-one-out label recall" in built.output
    knn = load_any_router(tmp_path / "knn.pt", model=smollm2)
    assert isinstance(knn, KnnRouter) and knn.config.embedding_layer == 15 and knn.query_ids == list(queries)

    qids = list(queries)[:2]
    with open(tmp_path / "cands.jsonl", "w") as out:
        for q in qids:
            for d in docs:
                out.write(json.dumps({"qid": q, "query": queries[q], "docid": d["_id"], "text": d["text"]}) + "\n")
    (tmp_path / "run.trec").write_text("".join(f"{q} Q0 {d['_id']} {r + 1} {3 - r} bm25\n" for q in qids for r, d in enumerate(docs)))
    reranked = runner.invoke(main, ["-q", "rerank", "--run", str(tmp_path / "run.trec"), "--candidates", str(tmp_path / "cands.jsonl"),
                                    "--top-k", "3", "--no-cache", "--router", str(tmp_path / "knn.pt"), "-o", str(tmp_path / "out.trec")],
                             catch_exceptions=False)
    assert reranked.exit_code == 0, reranked.output
    run = read_run(tmp_path / "out.trec")
    assert sorted(run.qids()) == sorted(qids) and all(len(run[q]) == 3 for q in qids)
