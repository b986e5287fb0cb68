"""Soft routing: per-query head weights learned on the ranking loss, their file and the re-ranking path."""
import pytest
import torch

from routehead_pyserini.engine.cache import QueryScores
from routehead_pyserini.heads.ndcg import ideal_dcg, ndcg_at_k
from routehead_pyserini.heads.checkpoint import RouterError
from routehead_pyserini.heads.loading import load_any_router, load_router
from routehead_pyserini.heads.router import save_router
from routehead_pyserini.heads.soft_router import SoftRouter, SoftRouterConfig, nested_cv_scores, train_soft_router
from routehead_pyserini.heads.features import build_dataset, query_features
from routehead_pyserini.heads.weights import TrainConfig, train_weights
from routehead_pyserini.heads.fusion import fused_scores

LAYERS, HEADS, DOCS, DIM = 4, 4, 10, 64  # the tiny Llama's shape and hidden size
GOOD = {0: (1, 2), 1: (3, 0)}  # query type -> the one head that ranks its candidates


def two_kinds(n: int, seed: int = 0, start: int = 0):
    """Queries of two kinds (told apart by their embedding); each kind's relevant documents are
    the top 3 of a different head, and every other head is noise."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(2, DIM, generator=torch.Generator().manual_seed(99)) * 3
    entries, qrels, embeddings, qids = [], {}, [], []
    for q in range(start, start + n):
        kind = q % 2
        calibrated = torch.rand(LAYERS, HEADS, DOCS, generator=g)
        docids = [f"q{q}d{i}" for i in range(DOCS)]
        good = calibrated[GOOD[kind]]
        qrels[str(q)] = {docids[i]: 1 for i in torch.argsort(-good)[:3].tolist()}
        entries.append((QueryScores(str(q), docids, calibrated, torch.zeros_like(calibrated),
                                    torch.ones(LAYERS, HEADS, dtype=torch.bool), torch.ones(DOCS, dtype=torch.int32)),
                        sorted(torch.rand(DOCS, generator=g).tolist(), reverse=True)))
        embeddings.append(centres[kind] + torch.randn(DIM, generator=g))
        qids.append(str(q))
    return entries, qrels, torch.stack(embeddings), qids


def mean_ndcg(entries, qrels, scores_of):
    values = []
    for scores, _ in entries:
        judged = qrels[scores.qid]
        gains = torch.tensor([float(judged.get(d, 0)) for d in scores.docids])
        values.append(float(ndcg_at_k(scores_of(scores)[None], gains, ideal_dcg(judged), 10)[0]))
    return sum(values) / len(values)


CONFIG = SoftRouterConfig(loss="listwise", sparsity=1e-3, epochs=200, patience=40, top_k=2)


def test_soft_router_learns_each_kind_of_query_its_own_head():
    entries, qrels, x, qids = two_kinds(40)
    trained = train_soft_router(x, build_dataset(entries, qrels, fuse=True), qids, CONFIG)
    weights = trained.head_weights(x)
    for i, kind in enumerate(q % 2 for q in range(40)):  # each query's largest weight is on its kind's head
        flat = int(weights[i].abs().flatten().argmax())
        assert divmod(flat, HEADS) == GOOD[kind]
    # unseen queries: routing beats static weights learned on the same data, which must share one weighting
    test_entries, test_qrels, test_x, _ = two_kinds(20, seed=1, start=100)
    row = {s.qid: i for i, (s, _) in enumerate(test_entries)}
    routed = mean_ndcg(test_entries, test_qrels, lambda s: trained.scores(test_x[row[s.qid]], query_features(s.calibrated, test_entries[row[s.qid]][1])))
    static = train_weights(build_dataset(entries, qrels, fuse=True), TrainConfig(loss="listwise", folds=3))
    fixed = mean_ndcg(test_entries, test_qrels, lambda s: static.scores(query_features(s.calibrated, test_entries[row[s.qid]][1])))
    assert routed > 0.95 and routed > fixed + 0.05
    # the same data and config give the same weights
    again = train_soft_router(x, build_dataset(entries, qrels, fuse=True), qids, CONFIG)
    assert torch.equal(again.head_weights(x), weights)


def test_routed_head_sets_score_as_the_router_does():
    entries, qrels, x, qids = two_kinds(16)
    trained = train_soft_router(x, build_dataset(entries, qrels, fuse=True), qids, SoftRouterConfig(epochs=20, top_k=3))
    sets = trained.route(x[:4])
    assert all(len(s.heads) == 3 and s.normalise == "zscore" and "fuse" in s.extra for s in sets)
    for (scores, bm25), head_set, emb in zip(entries[:4], sets, x[:4]):
        expected = trained.scores(emb, query_features(scores.calibrated, bm25))
        assert torch.allclose(fused_scores(scores.calibrated, head_set, bm25), expected, atol=1e-6)
        # only the routed heads are needed: the others may be missing (NaN) in a routed computation
        masked = scores.calibrated.clone()
        masked[~head_set.mask((LAYERS, HEADS))] = float("nan")
        assert torch.allclose(fused_scores(masked, head_set, bm25), expected, atol=1e-6)
    with pytest.raises(RouterError, match="threshold"):
        trained.route(x[:1], threshold=0.5)


def test_nested_cv_scores_every_query_from_other_folds():
    entries, qrels, x, qids = two_kinds(32)
    dataset = build_dataset(entries, qrels, fuse=False)
    features = {s.qid: query_features(s.calibrated) for s, _ in entries}
    predicted = nested_cv_scores(x, qids, dataset, features, CONFIG, outer_folds=4)
    assert set(predicted) == set(qids) and all(v.shape == (DOCS,) for v in predicted.values())
    assert mean_ndcg(entries, qrels, lambda s: predicted[s.qid]) > 0.9


def test_checkpoint_round_trip_and_wrong_model(tmp_path, tiny_llama, tiny_gemma3):
    entries, qrels, x, qids = two_kinds(12)
    trained = train_soft_router(x, build_dataset(entries, qrels, fuse=True), qids, SoftRouterConfig(epochs=5, top_k=2))
    path = tmp_path / "soft.pt"
    save_router(trained, path, model=tiny_llama, prompt_settings={"mode": "pointwise"})
    back = load_any_router(path, model=tiny_llama)
    assert isinstance(back, SoftRouter) and isinstance(load_router(path), SoftRouter)
    assert back.fusion == trained.fusion and back.soft == trained.soft and back.soft["loss"] == "pointwise"
    assert torch.equal(back.head_weights(x), trained.head_weights(x))
    assert [s.weights for s in back.route(x)] == [s.weights for s in trained.route(x)]
    with pytest.raises(RouterError, match="trained for model"):
        load_any_router(path, model=tiny_gemma3)


def test_bad_training_data():
    entries, qrels, x, qids = two_kinds(6)
    dataset = build_dataset(entries, qrels, fuse=False)
    with pytest.raises(RouterError, match="no query embedding"):
        train_soft_router(x[:3], dataset, qids[:3], CONFIG)
    with pytest.raises(ValueError, match="loss must be one of"):
        SoftRouterConfig(loss="hinge")


def test_train_soft_router_and_rerank_on_the_demo(smollm2, demo_cli, tmp_path):
    """The CLI plumbing with the real SmolLM2 (16 demo queries, top-4: no quality claim)."""
    from routehead_pyserini.data.trec import read_run

    cli, bm25, common = demo_cli.cli, demo_cli.bm25, demo_cli.common
    router = tmp_path / "soft.pt"
    trained = cli("train-soft-router", *common, "--qrels", "demo", "-o", router, "--fuse", "--route-k", 3,
                  "--epochs", 5, "--cv-run", tmp_path / "cv.trec", "--outer-folds", 2)
    assert trained.exit_code == 0, trained.output
    assert "soft router over" in trained.output and "3 heads per query" in trained.output
    assert isinstance(load_router(router, model=smollm2), SoftRouter)
    assert set(read_run(tmp_path / "cv.trec")) == set(read_run(bm25))
    out = tmp_path / "routed.trec"
    reranked = cli("rerank", *common, "--router", router, "-o", out)
    assert reranked.exit_code == 0, reranked.output
    assert set(read_run(out)) == set(read_run(bm25))
