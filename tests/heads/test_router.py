"""RouteHead router: training on a separable synthetic problem, sparsity, determinism, checkpoints."""
from __future__ import annotations

import re

import pytest
import torch

from routehead_pyserini.heads.head_set import HeadSet
from routehead_pyserini.heads.router import Router, RouterConfig, save_router, split_indices, train_router
from routehead_pyserini.heads.checkpoint import RouterError
from routehead_pyserini.heads.loading import load_router
from helpers import clustered, tiny_wrapped


FAST = dict(epochs=60, patience=10, batch_size=64)


def test_recovers_cluster_head_sets():
    x, y, _, _ = clustered(800)
    trained = train_router(x, y, RouterConfig(**FAST))
    assert trained.default_top_k == 3 and trained.extra == {"n_train": 640, "n_val": 160}
    assert len(trained.history["train_loss"]) >= trained.best_epoch > 0
    assert trained.history["val_loss"][trained.best_epoch - 1] == min(trained.history["val_loss"])
    x_test, y_test, _, _ = clustered(200, seed=7)
    routed = trained.route(x_test)
    assert all(isinstance(s, HeadSet) and len(s.heads) == 3 and s.model_shape == (4, 4) for s in routed)
    exact = [s.mask((4, 4)).equal(y_test[i]) for i, s in enumerate(routed)]
    assert sum(exact) / len(exact) >= 0.95
    probs = trained.head_probabilities(x_test)
    assert probs.shape == (200, 4, 4) and 0 <= probs.min() and probs.max() <= 1
    # threshold routing gives the same sets on this clean problem
    by_threshold = trained.route(x_test, threshold=0.5)
    assert sum(a.heads == b.heads for a, b in zip(routed, by_threshold)) / 200 >= 0.95
    assert len(trained.route(x_test[:2], top_k=5)[0].heads) == 5
    top5 = trained.route(x_test[:1], top_k=5)[0]
    assert top5.extra["probabilities"] == pytest.approx([probs[0][head].item() for head in top5.heads], abs=1e-6)


def test_soft_targets_recover_each_clusters_best_heads():
    """Soft targets (a graded quality per head, like single-head nDCG): the router learns each
    cluster's best heads from them, and top-k must be given (soft targets have no set size)."""
    x, y, cluster, sets = clustered(800)
    g = torch.Generator().manual_seed(3)
    soft = 0.4 * torch.rand(y.shape, generator=g) + 0.5 * y.float()  # the cluster's heads score higher
    with pytest.raises(RouterError, match="top_k"):
        train_router(x, soft, RouterConfig(**FAST))
    trained = train_router(x, soft, RouterConfig(top_k=3, **FAST))
    assert trained.default_top_k == 3
    x_test, y_test, _, _ = clustered(200, seed=7)
    routed = trained.route(x_test)
    exact = [s.mask((4, 4)).equal(y_test[i]) for i, s in enumerate(routed)]
    assert sum(exact) / len(exact) >= 0.9
    with pytest.raises(RouterError, match=r"\[0, 1\]"):
        train_router(x, soft * 3, RouterConfig(top_k=3, **FAST))


def test_sparsity_weight_shrinks_probabilities():
    """Noisy labels (10% extra heads): a larger lambda gives lower probabilities and smaller sets."""
    x, y, _, _ = clustered(400, noise=0.1)
    routers = [train_router(x, y, RouterConfig(sparsity=lam, epochs=40, patience=40)) for lam in (0.0, 0.5, 3.0)]
    mean_p = [r.head_probabilities(x).mean().item() for r in routers]
    assert mean_p[0] > mean_p[1] > mean_p[2]
    assert mean_p[2] < 0.5 * mean_p[0]
    size = lambda t, th: sum(len(s.heads) for s in t.route(x, threshold=th)) / len(x)  # noqa: E731
    assert size(routers[0], 0.05) > size(routers[1], 0.05) > size(routers[2], 0.05)
    assert size(routers[2], 0.5) < size(routers[0], 0.5)


def test_same_seed_same_weights():
    x, y, _, _ = clustered(200)
    config = RouterConfig(epochs=5, patience=5, hidden=16, dropout=0.2, pos_weight="auto")
    a = train_router(x, y, config).router.state_dict()
    b = train_router(x, y, config).router.state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)
    c = train_router(x, y, RouterConfig(epochs=5, patience=5, hidden=16, dropout=0.2, pos_weight="auto", seed=1)).router.state_dict()
    assert not torch.equal(a["head_embeddings"], c["head_embeddings"])


def test_splits_are_deterministic_and_disjoint():
    train, val = split_indices(50, val_fraction=0.2, seed=3)
    assert (train, val) == split_indices(50, val_fraction=0.2, seed=3)
    assert len(val) == 10 and not set(train) & set(val) and sorted(train + val) == list(range(50))
    ids = [f"q{i}" for i in range(50)]
    _, by_id = split_indices(50, val_fraction=0.2, seed=3, query_ids=ids)
    # a query keeps its side when the list is reordered
    _, reordered = split_indices(50, val_fraction=0.2, seed=3, query_ids=ids[::-1])
    assert {ids[i] for i in by_id} == {ids[::-1][i] for i in reordered}
    x, y, _, _ = clustered(20)
    trained = train_router(x, y, RouterConfig(epochs=2), val_indices=[0, 1, 2])
    assert trained.extra == {"n_train": 17, "n_val": 3}
    no_val = train_router(x, y, RouterConfig(epochs=3), val_fraction=0.0)
    assert no_val.best_epoch == 3 and no_val.history["val_loss"] == []


def test_bad_inputs():
    x, y, _, _ = clustered(10)
    with pytest.raises(RouterError, match="label sets"):
        train_router(x[:5], y)
    with pytest.raises(RouterError, match="layers, heads"):
        train_router(x, y.reshape(10, -1))
    with pytest.raises(RouterError, match="dropout"):
        RouterConfig(dropout=1.5)
    trained = train_router(x, y, RouterConfig(epochs=1))
    with pytest.raises(RouterError, match="embeddings"):
        trained.route(x[:, :5])


def test_checkpoint_round_trip_and_wrong_model(tmp_path):
    llm = tiny_wrapped("tiny-a")  # 4 layers x 4 heads, hidden 64: the synthetic problem's shape
    x, y, _, _ = clustered(100)
    trained = train_router(x, y, RouterConfig(epochs=5, embedding_layer=-1, embedding_pooling="last"))
    path = tmp_path / "router.pt"
    save_router(trained, path, model=llm, prompt_settings={"chat_template": True, "doc_max_tokens": 300},
                extra={"labels": "synthetic"})
    assert path.stat().st_size < 100_000 and not list(tmp_path.glob(".*.tmp"))
    loaded = load_router(path, model=llm)
    assert torch.equal(loaded.logits(x), trained.logits(x))
    assert [s.heads for s in loaded.route(x)] == [s.heads for s in trained.route(x)]
    assert loaded.config.embedding_layer == 3 and loaded.config.embedding_pooling == "last"
    assert loaded.prompt_settings == {"chat_template": True, "doc_max_tokens": 300}
    assert loaded.extra["labels"] == "synthetic" and loaded.default_top_k == trained.default_top_k
    assert loaded.model_info["fingerprint"] == llm.fingerprint and loaded.model_info["hidden"] == 64
    assert loaded.route(x[:1])[0].model_fingerprint == llm.fingerprint
    assert load_router(path).history == trained.history  # no model: no check

    same_shape = tiny_wrapped("tiny-b")  # same architecture, different fingerprint
    with pytest.raises(RouterError, match="trained for model 'tiny-a'.*not for model 'tiny-b'.*fingerprint"):
        load_router(path, model=same_shape)
    deeper = tiny_wrapped("tiny-deep", num_hidden_layers=6)
    with pytest.raises(RouterError, match=r"4 layers x 4 heads.*'tiny-deep' \(6 layers x 4 heads"):
        load_router(path, model=deeper)
    with pytest.raises(RouterError, match="cannot belong"):
        save_router(train_router(x, y, RouterConfig(epochs=1)), tmp_path / "other.pt", model=deeper)
    with pytest.raises(RouterError, match=r"extra\.when: date values"):
        import datetime

        save_router(trained, tmp_path / "bad.pt", model=llm, extra={"when": datetime.date(2024, 1, 1)})
    with pytest.raises(ValueError, match="not found"):
        load_router(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RouterError, match="not a router file"):
        load_router(tmp_path / "junk.pt")


def test_router_logits_are_dot_products_plus_bias():
    router = Router(8, (2, 3), RouterConfig(head_dim=4, dropout=0.0))
    router.eval()
    x = torch.randn(5, 8)
    z = router.project(x)  # input stats are 0 / 1 until set
    expected = z @ router.head_embeddings.T / 2.0 + router.head_bias
    assert torch.allclose(router(x), expected)
    assert router(x).shape == (5, 6)


def test_route_queries_end_to_end(tmp_path, tiny_llama):
    """Embed with the tiny model, train, save, load, then route raw query strings."""
    from helpers import QUERIES, word_tokenizer

    from routehead_pyserini.engine.query_embedding import embed_queries

    tiny_llama.tokenizer = word_tokenizer()
    x = embed_queries(tiny_llama, QUERIES, layer=1)
    y = torch.zeros(len(QUERIES), 4, 4, dtype=torch.bool)
    y[:, 1, 2] = True
    y[::2, 0, 0] = True
    trained = train_router(x, y, RouterConfig(epochs=3, embedding_layer=1), val_fraction=0.25, model=tiny_llama)
    save_router(trained, tmp_path / "r.pt", model=tiny_llama, prompt_settings={})
    loaded = load_router(tmp_path / "r.pt", model=tiny_llama)
    routed = loaded.route_queries(tiny_llama, QUERIES, batch_size=3)
    assert [s.heads for s in routed] == [s.heads for s in trained.route(x)]
    assert all(s.model_fingerprint == tiny_llama.fingerprint for s in routed)
    with pytest.raises(RouterError, match="not for model"):
        loaded.route_queries(tiny_wrapped("other"), QUERIES)


def test_a_router_file_with_non_finite_values_is_refused(tmp_path):
    """Issue #22: NaN parameters (a damaged file, diverged training) or settings never reach a routing."""
    llm = tiny_wrapped("tiny-a")
    x, y, _, _ = clustered(40)
    path = tmp_path / "router.pt"
    save_router(train_router(x, y, RouterConfig(epochs=1)), path, model=llm)
    payload = torch.load(path, weights_only=True)
    name = next(iter(payload["state_dict"]))
    bad = dict(payload, state_dict={**payload["state_dict"], name: payload["state_dict"][name] * float("nan")})
    torch.save(bad, tmp_path / "nan.pt")
    with pytest.raises(RouterError, match=rf"nan\.pt: parameter {re.escape(name)} holds NaN or infinite values"):
        load_router(tmp_path / "nan.pt")
    torch.save(dict(payload, config={**payload["config"], "sparsity": float("inf")}), tmp_path / "inf.pt")
    with pytest.raises(RouterError, match=r"inf\.pt: config\.sparsity is inf, not a finite number"):
        load_router(tmp_path / "inf.pt")
