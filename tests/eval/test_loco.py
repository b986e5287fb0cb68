"""Leave-one-collection-out and pooled CV: the held-out collection never trains; inner validation
by collection; the tables carry their controls. Synthetic per-head scores (fast, exact)."""
import json

import torch

from routehead_pyserini.eval import loco
from routehead_pyserini.engine.cache import QueryScores
from routehead_pyserini.heads.head_set import normalise_scores
from routehead_pyserini.eval.loco import METHODS, SearchSpace, fit, leave_one_collection_out, pooled_cross_validation
from routehead_pyserini.eval.loco_report import Table, build_table
from routehead_pyserini.heads.pooled import Collection, PooledData, PooledQuery, pooled_qid
from routehead_pyserini.data.trec import Hit
from routehead_pyserini.heads.features import Dataset, build_dataset
from routehead_pyserini.heads.weights import fold_assignment, TrainConfig

LAYERS, HEADS, DOCS = 2, 3, 8


def plant_head(g, shape, docs, q):
    """Random heads; relevance follows head (1, 2) plus BM25."""
    calibrated = torch.rand(*shape, docs, generator=g)
    bm25 = sorted((torch.randn(docs, generator=g) + 10).tolist(), reverse=True)
    return calibrated, bm25, normalise_scores(calibrated)[1, 2] + 0.3 * torch.tensor(bm25)


def synthetic_pool(names=("a", "b", "c"), per=12, seed=0, shape=(LAYERS, HEADS), docs=DOCS, make=plant_head):
    """Collections whose relevant documents follow ``make`` (default: head (1, 2) plus BM25); the same qids in each."""
    g = torch.Generator().manual_seed(seed)
    cols, queries, parts, qrels = [], [], [], {}
    for name in names:
        cols.append(Collection(name=name, run=f"{name}.trec"))
        judged_all, entries = {}, []
        for q in range(per):
            calibrated, bm25, true = make(g, shape, docs, q)
            docids = [f"{name}{q}d{i}" for i in range(docs)]
            judged = {docids[i]: 1 for i in torch.argsort(-true)[:2].tolist()}
            judged_all[str(q)] = judged
            scores = QueryScores(str(q), docids, calibrated, torch.zeros_like(calibrated),
                                 torch.ones(*shape, dtype=torch.bool), torch.ones(docs, dtype=torch.int32))
            queries.append(PooledQuery(name, str(q), scores, bm25, [Hit("below", 0.0)], dense=list(-torch.tensor(bm25))))
            entries.append((QueryScores(pooled_qid(name, str(q)), docids, calibrated, scores.calib, scores.computed,
                                        scores.window_size), bm25))
        qrels[name] = judged_all
        parts.append(build_dataset(entries, {pooled_qid(name, k): v for k, v in judged_all.items()}, fuse=True,
                                   group=name, level=1))
    pooled = Dataset([q for p in parts for q in p.queries], tuple(shape), True, {})
    return PooledData(cols, queries, pooled, "test-encoder", qrels)


def test_pooled_queries_keep_their_collection():
    data = synthetic_pool()
    keys = [q.qid for q in data.dataset.queries]
    assert len(keys) == len(set(keys)) == 36  # the same qid "0" in three collections stays three queries
    assert {q.group for q in data.dataset.queries} == {"a", "b", "c"}
    assert all(q.qid.startswith(q.group + "/") for q in data.dataset.queries)
    part = data.training_set(fuse=True, dense=False, collections=["b"])
    assert {q.group for q in part.queries} == {"b"}


def test_group_folds_are_collections_and_the_mean_is_over_collections():
    data = synthetic_pool()
    train = data.training_set(fuse=True, dense=False)
    folds = fold_assignment(train, TrainConfig(cv_by="group"))
    by_fold = {}
    for q in train.queries:
        by_fold.setdefault(folds[q.qid], set()).add(q.group)
    assert sorted(map(sorted, by_fold.values())) == [["a"], ["b"], ["c"]]


def test_loco_never_trains_on_the_held_out_collection(monkeypatch):
    data = synthetic_pool()
    seen = []
    real_fit = loco.fit

    def spy(train, method, space=SearchSpace(), **kwargs):
        seen.append({q.qid.split("/")[0] for q in train.queries})
        return real_fit(train, method, space, **kwargs)

    monkeypatch.setattr(loco, "fit", spy)
    protocol = leave_one_collection_out(data, [METHODS["heads+bm25"]], SearchSpace(("pointwise",)))
    assert seen == [{"b", "c"}, {"a", "c"}, {"a", "b"}]  # one fit per held-out collection, never with it
    held = [r["held_out"] for r in protocol.fitted["heads+bm25"]]
    assert held == ["a", "b", "c"]
    assert all(r["validation"].startswith("leave-one-collection-out over 2") for r in protocol.fitted["heads+bm25"])
    assert len(protocol.scores["heads+bm25"]) == 36


def test_learned_rows_find_the_signal_and_the_table_has_its_controls():
    data = synthetic_pool(per=16)
    methods = [METHODS["heads+bm25"], METHODS["bm25+dense"]]
    protocol = leave_one_collection_out(data, methods, SearchSpace(("pointwise",)))
    table = build_table(data, protocol, top_k=DOCS)
    assert table.rows[:4] == ["bm25", "random order", "pointwise all heads", "bi-encoder alone"]
    assert {"heads+bm25", "bm25+dense"} <= set(table.rows)
    assert table.mean("heads+bm25") > table.mean("bm25") + 0.1  # the planted head is found on unseen collections
    assert all(r["heads"] == 0 for r in protocol.fitted["bm25+dense"])  # the control keeps no head
    text = table.to_markdown()
    assert "| heads+bm25 |" in text and "sig. up/down" in text
    again = Table.from_json(json.loads(table.to_json()))  # what report.json readers (scripts/models_table.py) get back
    assert again.to_json() == table.to_json() and again.significant_wins("heads+bm25") == table.significant_wins("heads+bm25")


def test_pooled_cv_scores_every_query_once():
    data = synthetic_pool()
    protocol = pooled_cross_validation(data, [METHODS["heads+bm25"]], SearchSpace(("pointwise",)), folds=3)
    assert len(protocol.scores["heads+bm25"]) == 36
    assert all(r["validation"].startswith("5-fold over queries") for r in protocol.fitted["heads+bm25"])


def test_fit_is_deterministic():
    data = synthetic_pool()
    train = data.training_set(fuse=True, dense=False)
    a, b = (fit(train, METHODS["heads+bm25"], SearchSpace(("pointwise",))) for _ in range(2))
    assert torch.equal(a.learned.weights, b.learned.weights) and a.loss == b.loss and a.lam == b.lam


def test_soft_routing_rows_train_on_the_other_collections_only():
    """Soft routing under LOCO: one router per held-out collection, from embeddings of the training queries."""
    data = synthetic_pool(per=10)
    keys = [q.key for q in data.queries]
    data.embeddings = torch.randn(len(keys), 8, generator=torch.Generator().manual_seed(0))
    data.embedding_keys = keys
    protocol = leave_one_collection_out(data, [METHODS["soft+bm25"]], SearchSpace(("pointwise",)))
    assert [r["held_out"] for r in protocol.fitted["soft+bm25"]] == ["a", "b", "c"]
    assert all(r["training_queries"] <= 20 for r in protocol.fitted["soft+bm25"])
    assert len(protocol.scores["soft+bm25"]) == 30


def test_a_layer_cap_never_weights_a_head_above_it():
    from routehead_pyserini.eval.loco import cap_layers, choose_layer_cap

    data = synthetic_pool(per=10)
    train = data.training_set(fuse=True, dense=False)
    capped = fit(train, METHODS["heads+bm25"].capped(0), SearchSpace(("pointwise",)))
    assert capped.method.name == "heads+bm25@L0"
    assert capped.deepest_layer in (None, 0) and bool((capped.learned.head_weights[1:] == 0).all())
    assert bool((cap_layers(train, 0).queries[0].features[:, HEADS:LAYERS * HEADS] == 0).all())
    cap, rows = choose_layer_cap(train, METHODS["heads+bm25"], [0, 1], SearchSpace(("pointwise",)))
    assert [r["max_layer"] for r in rows] == [0, 1]
    assert cap == 1  # the planted head is in layer 1: no cap below it is within noise of the best


def test_static_top_k_picks_the_planted_head_from_the_training_collections():
    from routehead_pyserini.eval.loco import fit_static_topk

    data = synthetic_pool(per=10)
    chosen = fit_static_topk(data.training_set(fuse=False, dense=False, collections=["a", "b"]), k=1)
    assert chosen.heads == [1 * HEADS + 2]  # head (1, 2) carries the relevance
    protocol = leave_one_collection_out(data, [METHODS["static top-16"]])
    assert [r["held_out"] for r in protocol.fitted["static top-16"]] == ["a", "b", "c"]


# --------------------------------------------------------------------------------------------
# RouteHead's hard routing

ROUTED_SHAPE, ROUTED_DOCS = (4, 8), 10  # 32 heads, so a query's 16 routed heads are half of them


def two_kinds(g, shape, docs, q):
    """Even queries: relevance follows every head of layers 0-1 (noisy copies of one signal); odd
    queries: every head of layers 2-3. The other half of the heads is noise; BM25 is noise too."""
    calibrated = torch.rand(*shape, docs, generator=g)
    signal = torch.randn(docs, generator=g)
    planted = slice(0, 2) if q % 2 == 0 else slice(2, 4)
    calibrated[planted] = signal + 0.3 * torch.rand(2, shape[1], docs, generator=g)
    bm25 = sorted((torch.randn(docs, generator=g) + 10).tolist(), reverse=True)
    return calibrated, bm25, signal


def routed_pool(per=12):
    """:func:`two_kinds` queries whose embeddings tell the kind (the first dimension's sign)."""
    data = synthetic_pool(per=per, shape=ROUTED_SHAPE, docs=ROUTED_DOCS, make=two_kinds)
    keys = [q.key for q in data.queries]
    x = torch.randn(len(keys), 8, generator=torch.Generator().manual_seed(1))
    x[:, 0] += torch.tensor([3.0 if int(k.split("/")[1]) % 2 == 0 else -3.0 for k in keys])
    data.embeddings, data.embedding_keys = x, keys
    return data


def test_labels_from_features_are_the_labels_of_the_calibrated_scores():
    from routehead_pyserini.heads.hard_routing import label_dataset
    from routehead_pyserini.heads.labels import label_query

    data = routed_pool(per=4)
    labels = label_dataset(data.training_set(fuse=True, dense=False))
    assert len(labels) == 12 and labels.shape == ROUTED_SHAPE
    for q in data.queries:
        expected = label_query(q.key, q.scores.calibrated, q.scores.docids, data.qrels[q.collection][q.qid])
        got = labels.queries[q.key]
        assert got.heads == expected.heads and got.ndcg == expected.ndcg and got.all_heads_ndcg == expected.all_heads_ndcg
        assert torch.equal(got.single_head_ndcg, expected.single_head_ndcg)


def test_routehead_trains_on_the_other_collections_only(monkeypatch):
    from routehead_pyserini.heads import hard_routing

    data = routed_pool()
    labelled, routed = [], []
    real_label, real_train = hard_routing.label_dataset, hard_routing.train_router

    def label_spy(dataset, *args, **kwargs):
        labelled.append({q.group for q in dataset.queries})
        return real_label(dataset, *args, **kwargs)

    def train_spy(embeddings, targets, config, **kwargs):
        routed.append({k.split("/")[0] for k in kwargs["query_ids"]})
        assert len(embeddings) == len(kwargs["query_ids"]) == len(targets)
        return real_train(embeddings, targets, config, **kwargs)

    monkeypatch.setattr(hard_routing, "label_dataset", label_spy)
    monkeypatch.setattr(hard_routing, "train_router", train_spy)
    methods = [METHODS["routehead"], METHODS["routehead+bm25"]]
    protocol = leave_one_collection_out(data, methods)
    assert labelled == routed == [{"b", "c"}, {"a", "c"}, {"a", "b"}] * 2  # never the held-out collection
    for name in ("routehead", "routehead+bm25"):
        assert [r["held_out"] for r in protocol.fitted[name]] == ["a", "b", "c"]
        assert all(r["training_queries"] == r["labelled_queries"] == 24 and r["top_k"] == 16 for r in protocol.fitted[name])
        assert len(protocol.scores[name]) == 36
    assert all(r["fuse_weights"] is None for r in protocol.fitted["routehead"])
    assert all(len(r["fuse_weights"]) == 2 and r["fusion_queries"] > 0 for r in protocol.fitted["routehead+bm25"])
    json.dumps(protocol.fitted)  # the records go to report.json


def test_routehead_routes_each_kind_of_query_to_its_own_heads():
    from routehead_pyserini.heads.hard_routing import train_hard_routing

    data = routed_pool()
    train = data.training_set(fuse=False, dense=False, collections=["a", "b"])
    routing = train_hard_routing(train, data.embeddings, data.embedding_keys)
    held_out = data.of("c")
    rows = [data.embedding_keys.index(q.key) for q in held_out]
    sets = routing.heads(data.embeddings[rows])
    per_layer = ROUTED_SHAPE[1]
    own = []
    for q, heads in zip(held_out, sets):
        planted = {0, 1} if int(q.qid) % 2 == 0 else {2, 3}
        assert len(heads) == 16
        own.append(sum(h // per_layer in planted for h in heads))
    assert min(own) >= 11 and sum(own) >= 0.9 * 16 * len(own), own  # its own half of the heads (chance: 8 of 16)
    even = {tuple(h) for q, h in zip(held_out, sets) if int(q.qid) % 2 == 0}
    odd = {tuple(h) for q, h in zip(held_out, sets) if int(q.qid) % 2 == 1}
    assert not even & odd  # the two kinds never share a routed set
    features = data.features(fuse=False, dense=False)
    q = held_out[0]
    scores = routing.scores(data.embeddings[rows[0]], features[q.key])
    assert torch.equal(scores, features[q.key][:, sets[0]].sum(dim=1))  # the paper's scoring: the routed heads' sum


def test_routehead_is_deterministic_and_beats_bm25_on_unseen_collections():
    data = routed_pool()
    methods = [METHODS["heads+bm25"], METHODS["routehead"], METHODS["routehead+bm25"]]
    first = leave_one_collection_out(data, methods, SearchSpace(("pointwise",)))
    again = leave_one_collection_out(data, methods[1:], SearchSpace(("pointwise",)))
    for name in ("routehead", "routehead+bm25"):
        assert first.scores[name].keys() == again.scores[name].keys()
        assert all(torch.equal(first.scores[name][k], again.scores[name][k]) for k in first.scores[name])
        assert first.fitted[name] == again.fitted[name]
    table = build_table(data, first, top_k=ROUTED_DOCS)
    assert {"routehead", "routehead+bm25"} <= set(table.rows)
    assert table.mean("routehead") > table.mean("bm25") + 0.2
    cell = table.cells["routehead"]["c"]
    assert cell.p_bm25 == cell.p_bm25 and cell.p_static == cell.p_static  # tested against BM25 and heads+bm25 (not NaN)
    assert "| routehead |" in table.to_markdown()


def test_routehead_runs_under_pooled_cv_and_is_no_preset():
    import pytest

    from routehead_pyserini.eval.loco import LocoError, train_preset

    data = routed_pool()
    protocol = pooled_cross_validation(data, [METHODS["routehead+bm25"]], folds=3)
    assert len(protocol.scores["routehead+bm25"]) == 36
    with pytest.raises(LocoError, match="not a preset"):
        train_preset(data, METHODS["routehead"], model_name="m", model_fingerprint="f", prompt_settings={}, scores={})
    data.embeddings = None
    with pytest.raises(LocoError, match="embeddings"):
        leave_one_collection_out(data, [METHODS["routehead"]])


def test_routehead_fusion_weighs_bm25_when_bm25_carries_relevance():
    from routehead_pyserini.eval.loco import fit_hard

    data = synthetic_pool(per=10)  # relevance: head (1, 2) plus BM25; 6 heads, all routed
    keys = [q.key for q in data.queries]
    embeddings = torch.randn(len(keys), 8, generator=torch.Generator().manual_seed(0))
    fused = fit_hard(data.training_set(fuse=True, dense=False, collections=["a", "b"]), embeddings, keys)
    alone = fit_hard(data.training_set(fuse=False, dense=False, collections=["a", "b"]), embeddings, keys)
    assert fused.router.top_k == 6 and fused.router.fuse_weights[1] > 0
    assert alone.router.fuse_weights is None
    q = data.of("c")[0]
    features = data.features(fuse=True, dense=False)[q.key]
    assert not torch.equal(fused.score(q.key, features), alone.score(q.key, features[:, :LAYERS * HEADS]))


def _sigterm_is_default(_task) -> bool:
    import signal

    return signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_forked_fitting_workers_take_sigterm_quietly():
    """The pool ends its workers with SIGTERM; the CLI's SIGTERM-as-Ctrl-C handler, inherited through the
    fork, made each of them print a KeyboardInterrupt traceback at the end of every `loco --jobs 2`."""
    import signal

    from routehead_pyserini.eval.loco import _run_tasks

    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        assert _run_tasks([0, 1], 2, _sigterm_is_default) == [True, True]
    finally:
        signal.signal(signal.SIGTERM, previous)
