"""Learned head weights: recovery of a known weighting, the head-set file, model checks, fusion math."""
import json
from types import SimpleNamespace

import pytest
import torch

from routehead_pyserini.engine.cache import QueryScores
from routehead_pyserini.heads.ndcg import ideal_dcg, ndcg_at_k
from routehead_pyserini.heads.head_set import (aggregate, from_pairs, normalise_scores, parse_heads, read_head_set, write_head_set)
from routehead_pyserini.heads.features import build_dataset, query_features
from routehead_pyserini.heads.weights import TrainConfig, nested_cv_predictions, to_head_set, train_weights
from routehead_pyserini.heads.fusion import WeightsError, check_head_set_model, first_stage_feature, fused_scores

LAYERS, HEADS, DOCS = 3, 4, 10
TRUE_HEADS = {(0, 1): 2.0, (2, 3): -1.0}  # the hidden weighting
TRUE_FUSE = 0.5


def synthetic(n_queries: int, seed: int = 0, start: int = 0):
    """Queries whose top-3 documents by a known weighting of two heads and BM25 are relevant."""
    g = torch.Generator().manual_seed(seed)
    entries, qrels = [], {}
    for q in range(start, start + n_queries):
        # heads on very different raw scales: the z-normalisation must make them comparable
        calibrated = torch.rand(LAYERS, HEADS, DOCS, generator=g) * torch.rand(LAYERS, HEADS, 1, generator=g) * 10 ** torch.randint(-3, 2, (LAYERS, HEADS, 1), generator=g)
        bm25 = sorted((torch.randn(DOCS, generator=g) * 3 + 20).tolist(), reverse=True)  # first-stage order
        z = normalise_scores(calibrated)
        true = sum(w * z[l, h] for (l, h), w in TRUE_HEADS.items()) + TRUE_FUSE * first_stage_feature(bm25)
        docids = [f"q{q}d{i}" for i in range(DOCS)]
        qrels[str(q)] = {docids[i]: 2 if rank == 0 else 1 for rank, i in enumerate(torch.argsort(-true)[:3].tolist())}
        qrels[str(q)][docids[int(torch.argmin(true))]] = 0  # a judged non-relevant one
        scores = QueryScores(str(q), docids, calibrated, torch.zeros_like(calibrated),
                             torch.ones(LAYERS, HEADS, dtype=torch.bool), torch.ones(DOCS, dtype=torch.int32))
        entries.append((scores, bm25))
    return entries, qrels


def mean_ndcg(entries, qrels, scorer):
    values = []
    for scores, bm25 in entries:
        judged = qrels[scores.qid]
        gains = torch.tensor([float(max(judged.get(d, 0), 0)) for d in scores.docids])
        values.append(float(ndcg_at_k(scorer(scores, bm25)[None], gains, ideal_dcg(judged), 10)[0]))
    return sum(values) / len(values)


@pytest.mark.parametrize("loss", ["pairwise", "pointwise", "listwise"])
def test_l1_recovers_a_known_weighting(loss):
    entries, qrels = synthetic(40)
    learned = train_weights(build_dataset(entries, qrels, fuse=True), TrainConfig(loss=loss, penalty="l1", folds=4))
    w = learned.weights / learned.weights.abs().max()
    grid = learned.head_weights / learned.weights.abs().max()
    # the two true heads carry the largest weights, with the true signs; BM25 a positive one
    others = [float(grid[l, h]) for l in range(LAYERS) for h in range(HEADS) if (l, h) not in TRUE_HEADS]
    assert grid[0, 1] == pytest.approx(1.0) and grid[2, 3] < -max(map(abs, others)) and float(w[-1]) > 0
    assert max(map(abs, others)) < 0.15
    if loss == "pairwise":  # the ranking loss also recovers the ratios (pointwise and listwise only roughly)
        assert grid[2, 3] == pytest.approx(-0.5, abs=0.1) and float(w[-1]) == pytest.approx(TRUE_FUSE / 2.0, abs=0.1)
    # the cross-validated choice beats the most regularised point (the first stage alone)
    assert max(p.ndcg for p in learned.cv) > learned.cv[0].ndcg + 0.1
    # and ranks unseen queries almost perfectly, much better than BM25 alone
    test_entries, test_qrels = synthetic(20, seed=1, start=100)
    learned_ndcg = mean_ndcg(test_entries, test_qrels, lambda s, b: learned.scores(query_features(s.calibrated, b)))
    bm25_ndcg = mean_ndcg(test_entries, test_qrels, lambda s, b: torch.tensor(b))
    assert learned_ndcg > 0.95 and learned_ndcg > bm25_ndcg + 0.2


def test_l2_is_dense_and_deterministic():
    entries, qrels = synthetic(30)
    dataset = build_dataset(entries, qrels, fuse=False)
    a = train_weights(dataset, TrainConfig(penalty="l2", folds=3))
    b = train_weights(dataset, TrainConfig(penalty="l2", folds=3))
    assert torch.equal(a.weights, b.weights) and a.lam == b.lam
    assert a.weights.shape == (LAYERS * HEADS,) and a.fuse_weight is None
    assert int((a.weights != 0).sum()) == LAYERS * HEADS  # no exact zeros with l2
    top = torch.topk(a.weights.abs(), 2).indices.tolist()
    assert sorted(divmod(i, HEADS) for i in top) == sorted(TRUE_HEADS)


def test_first_grid_point_is_the_first_stage():
    """At lambda_max no head is kept, so every fold ranks by the first stage: CV nDCG = BM25's."""
    entries, qrels = synthetic(30)
    bm25 = mean_ndcg(entries, qrels, lambda s, b: torch.tensor(b))
    for fuse in (False, True):
        learned = train_weights(build_dataset(entries, qrels, fuse=fuse), TrainConfig(folds=3))
        assert learned.cv[0].ndcg == pytest.approx(bm25, abs=1e-6)
    # a lambda that keeps no head: the file still needs one head, kept at weight 0, and every score ties
    noise = train_weights(build_dataset(entries, qrels, fuse=False), TrainConfig(folds=3, lambdas=(1e6,)))
    head_set = to_head_set(noise, model_name="m", model_fingerprint="fp")
    assert not bool(noise.weights.any()) and head_set.weights == (0.0,)
    scores = entries[0][0]
    assert torch.equal(fused_scores(scores.calibrated, head_set, entries[0][1]), torch.zeros(DOCS, dtype=torch.float64))


def test_file_round_trip_and_rerank_scores_equal_the_model(tmp_path):
    entries, qrels = synthetic(24)
    learned = train_weights(build_dataset(entries, qrels, fuse=True), TrainConfig(folds=3))
    settings = {"doc_max_tokens": 128, "order": "bm25", "top_k": 10}
    head_set = to_head_set(learned, model_name="tiny", model_fingerprint="tiny-fp", info={"prompt_settings": settings})
    path = tmp_path / "weights.json"
    write_head_set(head_set, path)
    data = json.loads(path.read_text())
    assert data["model"] == {"name": "tiny", "fingerprint": "tiny-fp", "layers": LAYERS, "heads": HEADS}
    assert data["normalise"] == "zscore" and data["fuse"]["weight"] == learned.fuse_weight
    assert data["learned"]["prompt_settings"] == settings and data["learned"]["lambda"] == learned.lam
    assert len(data["learned"]["cv"]) == len(learned.cv)
    assert len(data["heads"]) == int((learned.head_weights != 0).sum()) and 0.0 not in data["weights"]
    back = parse_heads(str(path))
    assert back == head_set and back.extra == head_set.extra
    for scores, bm25 in entries:  # the re-ranking path computes what the model predicts
        expected = learned.scores(query_features(scores.calibrated, bm25))
        assert torch.allclose(fused_scores(scores.calibrated, back, bm25), expected, atol=1e-9)


def test_nested_cv_never_trains_on_the_query_it_ranks():
    entries, qrels = synthetic(30)
    dataset = build_dataset(entries, qrels, fuse=True)
    features = {s.qid: query_features(s.calibrated, b) for s, b in entries}
    predicted, models = nested_cv_predictions(dataset, features, TrainConfig(folds=3, lambdas=(0.01, 0.001)), outer_folds=3)
    assert set(predicted) == set(features) and len(models) == 3
    assert sum(m.training_queries for m in models) == 2 * len(entries)  # each query trains 2 of the 3 models
    assert mean_ndcg(entries, qrels, lambda s, b: predicted[s.qid]) > 0.9


def test_fusion_math():
    calibrated = torch.arange(2 * 2 * 3, dtype=torch.float32).reshape(2, 2, 3) % 5
    heads = from_pairs([(0, 1), (1, 0)], [1.5, -0.5], normalise="zscore")
    fused = from_pairs([(0, 1), (1, 0)], [1.5, -0.5], normalise="zscore", extra={"fuse": {"weight": 2.0, "normalise": "zscore"}})
    bm25 = [12.0, 10.0, 8.0]
    z = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64) * (1.5 ** 0.5)  # (x - mean) / population std
    assert torch.allclose(first_stage_feature(bm25), z)
    assert torch.allclose(fused_scores(calibrated, fused, bm25), aggregate(calibrated, heads) + 2.0 * z)
    assert torch.equal(fused_scores(calibrated, heads, None), aggregate(calibrated, heads))  # no fuse field: unchanged
    assert torch.equal(first_stage_feature([3.0, 3.0, 3.0]), torch.zeros(3, dtype=torch.float64))  # flat: no vote
    with pytest.raises(WeightsError, match="fuses the first-stage score"):
        fused_scores(calibrated, fused, None)
    with pytest.raises(WeightsError, match="numeric 'weight'"):
        fused_scores(calibrated, from_pairs([(0, 0)], extra={"fuse": {"weight": "big"}}), bm25)
    with pytest.raises(WeightsError, match="zscore"):
        fused_scores(calibrated, from_pairs([(0, 0)], extra={"fuse": {"weight": 1.0, "normalise": "minmax"}}), bm25)


def test_dense_fusion_feature_is_learned_and_applied(tmp_path):
    """A third, unpenalised feature (the bi-encoder cosine) that carries part of the truth gets a weight."""
    entries, qrels = synthetic(30)
    g = torch.Generator().manual_seed(5)
    dense = {}
    for scores, bm25 in entries:  # a cosine that agrees with the relevant documents, and noise
        judged = qrels[scores.qid]
        dense[scores.qid] = [0.5 * max(judged.get(d, 0), 0) + 0.3 * float(torch.rand(1, generator=g)) for d in scores.docids]
    dataset = build_dataset(entries, qrels, fuse=True, dense=dense, dense_model="all-minilm-l6-v2")
    assert dataset.n_features == LAYERS * HEADS + 2
    learned = train_weights(dataset, TrainConfig(folds=3))
    assert learned.dense_weight > 0 and learned.fuse_weight is not None and learned.dense == "all-minilm-l6-v2"
    head_set = to_head_set(learned, model_name="tiny", model_fingerprint="fp")
    write_head_set(head_set, tmp_path / "w.json")
    back = read_head_set(tmp_path / "w.json")
    assert back.extra["fuse_dense"] == {"weight": learned.dense_weight, "normalise": "zscore", "model": "all-minilm-l6-v2"}
    for scores, bm25 in entries:
        expected = learned.scores(query_features(scores.calibrated, bm25, dense[scores.qid]))
        assert torch.allclose(fused_scores(scores.calibrated, back, bm25, dense[scores.qid]), expected, atol=1e-9)
    with pytest.raises(WeightsError, match="fuses the dense cosine"):
        fused_scores(entries[0][0].calibrated, back, entries[0][1], None)
    with pytest.raises(WeightsError, match="needs its dense scores"):
        build_dataset(entries, qrels, fuse=False, dense={}, dense_model="all-minilm-l6-v2")


def test_learned_weights_refuse_another_model(tiny_llama):
    entries, qrels = synthetic(12)
    learned = train_weights(build_dataset(entries, qrels, fuse=True), TrainConfig(folds=2, lambdas=(0.01,)))
    head_set = to_head_set(learned, model_name="smollm2-135m", model_fingerprint="smollm2-135m:abc|float32")
    other = SimpleNamespace(name="gemma3-270m", fingerprint="gemma3-270m:def|float32", spec=SimpleNamespace(num_layers=18, num_heads=4))
    with pytest.raises(WeightsError, match=r"learned for model 'smollm2-135m' \(3 layers x 4 heads.*not for model 'gemma3-270m' \(18 layers x 4 heads"):
        check_head_set_model(head_set, other)
    check_head_set_model(head_set, SimpleNamespace(name="x", fingerprint="smollm2-135m:abc|float32", spec=None))  # its own model
    check_head_set_model(from_pairs([(0, 0)], model_fingerprint="anything"), other)  # plain head sets: shape checks only
    from routehead_pyserini.rerank.reranker import Reranker

    with pytest.raises(WeightsError, match="train them again with --model"):
        Reranker(tiny_llama, head_set, cache=False)


def test_training_needs_judged_queries_with_a_relevant_candidate():
    entries, qrels = synthetic(4)
    with pytest.raises(WeightsError, match="no training query"):
        build_dataset(entries, {q: {d: 0 for d in j} for q, j in qrels.items()}, fuse=False)
    dataset = build_dataset(entries, {k: v for k, v in list(qrels.items())[:3]}, fuse=False)
    assert len(dataset.queries) == 3 and dataset.skipped["unjudged"] == ["3"]
    with pytest.raises(ValueError, match="loss must be one of"):
        TrainConfig(loss="hinge")
    nan = entries[0][0].calibrated.clone()
    nan[0, 0] = float("nan")
    with pytest.raises(WeightsError, match="every head"):
        query_features(nan)


def test_train_weights_and_fused_rerank_on_the_demo(smollm2, demo_cli, tmp_path):
    """The CLI plumbing with the real SmolLM2 (16 demo queries, top-4: no quality claim)."""
    from click.testing import CliRunner

    from routehead_pyserini.cli import main

    cli, bm25, common = demo_cli.cli, demo_cli.bm25, demo_cli.common
    weights = tmp_path / "weights.json"
    trained = cli("train-weights", *common, "--qrels", "demo", "-o", weights, "--fuse", "--folds", 2,
                  "--cv-run", tmp_path / "cv.trec", "--outer-folds", 2)
    assert trained.exit_code == 0, trained.output
    assert "training queries" in trained.output and "first-stage weight" in trained.output
    head_set = read_head_set(weights)
    assert head_set.model_shape == (30, 9) and head_set.model_fingerprint == smollm2.fingerprint
    assert head_set.extra["learned"]["prompt_settings"]["top_k"] == 4 and "fuse" in head_set.extra
    dense_weights = tmp_path / "weights-dense.json"  # the bi-encoder cosine as one more feature
    trained = cli("train-weights", *common, "--qrels", "demo", "-o", dense_weights, "--fuse", "--fuse-dense", "--folds", 2)
    assert trained.exit_code == 0, trained.output
    assert "dense weight" in trained.output and read_head_set(dense_weights).extra["fuse_dense"]["model"] == "all-minilm-l6-v2"
    assert cli("rerank", *common, "--heads", dense_weights, "-o", tmp_path / "dense.trec").exit_code == 0
    cv_lines = (tmp_path / "cv.trec").read_text().splitlines()
    assert len(cv_lines) == len(bm25.read_text().splitlines())
    reranked = cli("rerank", *common, "--heads", weights, "-o", tmp_path / "weights.trec")
    assert reranked.exit_code == 0, reranked.output
    assert "16 queries from the score cache" in reranked.output
    bad = CliRunner().invoke(main, ["train-weights", *map(str, common), "--qrels", "demo", "-o", str(weights), "--lambdas", "1,-2"])
    assert bad.exit_code != 0 and "lambdas" in bad.output


def test_one_lambda_skips_cross_validation_and_says_so(caplog):
    """One --lambdas value: nothing to choose, so no CV, and no 'nan' logged as if it were a result."""
    import logging

    entries, qrels = synthetic(12)
    with caplog.at_level(logging.INFO, logger="routehead_pyserini.heads.weights"):
        learned = train_weights(build_dataset(entries, qrels, fuse=True), TrainConfig(folds=3, lambdas=(0.01,)))
    assert learned.lam == 0.01
    assert "one value: cross-validation skipped" in caplog.text
    assert "nan" not in caplog.text


def test_a_fusion_only_file_never_loads_the_llm(smollm2, demo_cli, tmp_path, monkeypatch):
    """All head weights 0 (the BM25 + bi-encoder control): `rerank` ranks by the fusion alone, with
    the very numbers the LLM path gives, and never loads the LLM."""
    from routehead_pyserini.engine import models
    from routehead_pyserini.rerank.reranker import Reranker, needs_model
    from routehead_pyserini.firststage.sources import TextSpec, text_source
    from routehead_pyserini.data.trec import read_run, write_run

    cli, common = demo_cli.cli, demo_cli.common
    control = tmp_path / "control.json"
    assert cli("train-weights", *common, "--qrels", "demo", "-o", control, "--fuse", "--fuse-dense", "--lambdas", "1e9").exit_code == 0
    head_set = read_head_set(control)
    assert not needs_model(head_set) and head_set.extra["fuse_dense"]["weight"] != 0
    with_llm = tmp_path / "with-llm.trec"
    index = common[common.index("--index") + 1]
    texts, topics = text_source(TextSpec(index=str(index), topics="demo"))
    reranked, _ = Reranker(smollm2, head_set, cache=str(tmp_path / "cache"), settings=__import__(
        "routehead_pyserini.rerank.reranker", fromlist=["PromptSettings"]).PromptSettings()).rerank_run(
        read_run(demo_cli.bm25), topics, texts, top_k=4, progress=False)
    write_run(reranked, with_llm, tag="fusion")

    def refuse(*args, **kwargs):
        raise AssertionError("the LLM was loaded")

    monkeypatch.setattr(models, "load_model", refuse)
    result = cli("rerank", *common, "--heads", control, "-o", tmp_path / "no-llm.trec")
    assert result.exit_code == 0, result.output
    assert "no LLM" in result.output
    assert (tmp_path / "no-llm.trec").read_bytes() == with_llm.read_bytes()


def test_fusion_weights_must_be_finite_and_a_constant_first_stage_fuses_as_zero():
    """Issue #22: no NaN reaches a fused score (a flat first stage z-normalises to 0, not 0/0)."""
    from routehead_pyserini.heads.fusion import dense_fusion_of, fusion_of

    for key, reader, spec in (("fuse", fusion_of, {"weight": float("nan")}),
                              ("fuse_dense", dense_fusion_of, {"weight": float("inf"), "model": "m"})):
        with pytest.raises(WeightsError, match="finite numeric 'weight'"):
            reader(from_pairs([(0, 0)], [1.0], extra={key: spec}))
    assert first_stage_feature([3.0, 3.0, 3.0]).tolist() == [0.0, 0.0, 0.0]
    assert first_stage_feature([1e308, 1e308]).tolist() == [0.0, 0.0]
    calibrated = torch.tensor([[[0.2, 0.1, 0.3]]])
    fused = fused_scores(calibrated, from_pairs([(0, 0)], [1.0], normalise="zscore", extra={"fuse": {"weight": 0.5}}),
                         first_stage=[7.0, 7.0, 7.0])
    assert torch.isfinite(fused).all()
