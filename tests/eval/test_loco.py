"""Leave-one-collection-out and pooled CV: the held-out collection never trains; inner validation
by collection; the tables carry their controls. Synthetic per-head scores (fast, exact)."""
import torch

from routehead_pyserini.eval import loco
from routehead_pyserini.engine.cache import QueryScores
from routehead_pyserini.heads.head_set import normalise_scores
from routehead_pyserini.eval.loco import METHODS, SearchSpace, fit, leave_one_collection_out, pooled_cross_validation
from routehead_pyserini.eval.loco_report import build_table
from routehead_pyserini.heads.pooled import Collection, PooledData, PooledQuery, pooled_qid
from routehead_pyserini.data.trec import Hit
from routehead_pyserini.heads.features import Dataset, build_dataset
from routehead_pyserini.heads.weights import fold_assignment, TrainConfig

LAYERS, HEADS, DOCS = 2, 3, 8


def synthetic_pool(names=("a", "b", "c"), per=12, seed=0):
    """Collections whose relevant documents follow head (1, 2) plus BM25; the same qids in each."""
    g = torch.Generator().manual_seed(seed)
    cols, queries, parts, qrels = [], [], [], {}
    for name in names:
        cols.append(Collection(name=name, run=f"{name}.trec"))
        judged_all, entries = {}, []
        for q in range(per):
            calibrated = torch.rand(LAYERS, HEADS, DOCS, generator=g)
            bm25 = sorted((torch.randn(DOCS, generator=g) + 10).tolist(), reverse=True)
            true = normalise_scores(calibrated)[1, 2] + 0.3 * torch.tensor(bm25)
            docids = [f"{name}{q}d{i}" for i in range(DOCS)]
            judged = {docids[i]: 1 for i in torch.argsort(-true)[:2].tolist()}
            judged_all[str(q)] = judged
            scores = QueryScores(str(q), docids, calibrated, torch.zeros_like(calibrated),
                                 torch.ones(LAYERS, HEADS, dtype=torch.bool), torch.ones(DOCS, dtype=torch.int32))
            queries.append(PooledQuery(name, str(q), scores, bm25, [Hit("below", 0.0)], dense=list(-torch.tensor(bm25))))
            entries.append((QueryScores(pooled_qid(name, str(q)), docids, calibrated, scores.calib, scores.computed,
                                        scores.window_size), bm25))
        qrels[name] = judged_all
        parts.append(build_dataset(entries, {pooled_qid(name, k): v for k, v in judged_all.items()}, fuse=True,
                                   group=name, level=1))
    pooled = Dataset([q for p in parts for q in p.queries], (LAYERS, HEADS), True, {})
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
