import itertools

import pytest
import torch

from routehead_pyserini.engine.cache import QueryScores
from routehead_pyserini.eval.evaluate import evaluate_run
from routehead_pyserini.heads.ndcg import doc_gains, ideal_dcg, ndcg_at_k
from routehead_pyserini.heads.head_set import HeadSet, from_pairs
from routehead_pyserini.heads.labels import (Labels, LabelsError, QueryLabel, SearchParams, label_frequency, label_queries, label_query, normalise_scores, normalised_aggregate, random_head_set, read_labels, router_targets, static_head_set, target_sets, write_labels)
from routehead_pyserini.data.trec import ranked_hits
from routehead_pyserini.data.trec import Hit, Run


def docs(n):
    return [f"d{i}" for i in range(n)]


def set_ndcg(scores, pairs, docids, judged, normalise="zscore"):
    values = normalised_aggregate(scores, from_pairs(pairs), normalise)
    return float(ndcg_at_k(values[None], doc_gains(docids, judged), ideal_dcg(judged), 10)[0])


def brute_force(scores, docids, judged, max_size, normalise="zscore"):
    """Best set of at most ``max_size`` heads: best nDCG, then smaller, then lexicographically smaller."""
    layers, heads, _ = scores.shape
    grid = [(l, h) for l in range(layers) for h in range(heads)]
    best = None
    for size in range(1, max_size + 1):
        for pairs in itertools.combinations(grid, size):
            key = (-set_ndcg(scores, pairs, docids, judged, normalise), size, pairs)
            best = key if best is None or key < best else best
    return best


def anti_relevant_noise(layers, heads, n_docs, relevant, seed):
    """Random heads that rank the relevant documents last."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(layers, heads, n_docs, generator=g)
    scores[:, :, relevant] -= 5.0
    return scores


# ------------------------------------------------------------------------------------------------


def test_normalise_scores_zscores_each_head_and_guards_flat_and_missing_heads():
    scores = torch.randn(2, 3, 7, generator=torch.Generator().manual_seed(0)) * torch.tensor([1e-4, 1.0, 1e3])[None, :, None]
    scores[1, 1] = 0.25  # flat head
    scores[0, 2] = float("nan")  # not computed
    z = normalise_scores(scores)
    assert z.dtype == torch.float64
    assert torch.equal(z[1, 1], torch.zeros(7, dtype=torch.float64))
    assert torch.isnan(z[0, 2]).all()
    ok = z[[0, 0, 1, 1], [0, 1, 0, 2]]
    assert torch.allclose(ok.mean(-1), torch.zeros(4, dtype=torch.float64), atol=1e-8)
    assert torch.allclose(ok.std(-1, unbiased=False), torch.ones(4, dtype=torch.float64), atol=1e-8)
    assert torch.equal(ok.argsort(-1), scores[[0, 0, 1, 1], [0, 1, 0, 2]].argsort(-1))  # same order per head
    raw = normalise_scores(scores, "none")
    assert torch.allclose(raw[~torch.isnan(raw)], scores.double()[~torch.isnan(scores)], atol=1e-9)
    with pytest.raises(ValueError):
        normalise_scores(scores, "minmax")


def test_search_finds_the_pair_that_only_works_together():
    n = 8
    docids, judged = docs(n), {"d2": 2, "d6": 1}
    scores = anti_relevant_noise(3, 4, n, [2, 6], seed=1)
    scores[1, 2] = torch.tensor([0, 0, 10, 0, 0, 0, 8, 0.0]); scores[1, 2, 0] = 9  # d2, d0, d6
    scores[2, 1] = torch.tensor([-5, 0, 8, 0, 0, 0, 9, 0.0])  # d6, d2
    pair = ((1, 2), (2, 1))
    # preconditions: neither head alone is perfect, together they are, and no other pair is
    assert set_ndcg(scores, pair[:1], docids, judged) < 1 and set_ndcg(scores, pair[1:], docids, judged) < 1
    assert set_ndcg(scores, pair, docids, judged) == pytest.approx(1.0)
    assert brute_force(scores, docids, judged, 2)[2] == pair

    label = label_query("q", scores, docids, judged, SearchParams(beam=4, max_size=8))
    assert label.heads == pair
    assert label.ndcg == pytest.approx(1.0)
    assert label.single_head_ndcg.shape == (3, 4)
    assert float(label.single_head_ndcg.max()) < 1


def test_ties_go_to_the_smaller_set_then_the_smaller_heads():
    n = 6
    docids, judged = docs(n), {"d3": 1}
    scores = anti_relevant_noise(2, 2, n, [3], seed=2)
    scores[0, 0] = torch.tensor([3, 0, 0, 2, 0, 0.0])  # rank 2 alone
    scores[0, 1] = torch.tensor([0, 3, 0, 2, 0, 0.0])  # rank 2 alone; (0,0)+(0,1) puts d3 first
    scores[1, 1] = torch.tensor([0, 0, 0, 1, 0, 0.0])  # perfect alone, but later in layer-major order
    assert set_ndcg(scores, ((0, 0), (0, 1)), docids, judged) == pytest.approx(1.0)
    label = label_query("q", scores, docids, judged, SearchParams(beam=4))
    assert label.heads == ((1, 1),)

    scores[1, 0] = scores[1, 1]  # two perfect single heads: the first one in layer-major order
    assert label_query("q", scores, docids, judged).heads == ((1, 0),)

    flat = torch.zeros(2, 2, n)  # every head flat: first-stage order everywhere, so head (0, 0)
    label = label_query("q", flat, docids, judged)
    assert label.heads == ((0, 0),) and label.ndcg == label.all_heads_ndcg


@pytest.mark.parametrize("normalise", ["none", "zscore"])
def test_a_wider_beam_finds_what_greedy_misses(normalise):
    n = 6
    docids, judged = docs(n), {"d5": 1}
    scores = torch.zeros(2, 2, n)
    scores[0, 0] = torch.tensor([0, 0, 0, 0, 20, 4.0])  # A: d5 second, and no partner lifts it
    scores[0, 1] = torch.tensor([6, 6, 0, 0, 0, 5.0])  # B: d5 third
    scores[1, 0] = torch.tensor([0, 0, 6, 6, 0, 5.0])  # C: d5 third; B + C puts it first
    scores[1, 1] = torch.tensor([1, 1, 1, 1, 1, 0.0])  # D: d5 last
    greedy = label_query("q", scores, docids, judged, SearchParams(beam=1, normalise=normalise))
    wide = label_query("q", scores, docids, judged, SearchParams(beam=2, normalise=normalise))
    assert greedy.heads == ((0, 0),) and greedy.ndcg < 1
    assert wide.heads == ((0, 1), (1, 0)) and wide.ndcg == pytest.approx(1.0)


def test_with_every_head_in_the_beam_the_search_is_exhaustive_up_to_pairs():
    g = torch.Generator().manual_seed(3)
    n = 10
    docids = docs(n)
    for trial in range(4):
        scores = torch.randn(3, 4, n, generator=g)
        judged = {"d1": 1, "d4": 2, "d8": 1, "unretrieved": 1}
        label = label_query("q", scores, docids, judged, SearchParams(beam=12, max_size=2))
        neg_ndcg, size, pairs = brute_force(scores, docids, judged, 2)
        assert label.heads == pairs and label.ndcg == pytest.approx(-neg_ndcg), trial
        # the beam never does worse than greedy
        greedy = label_query("q", scores, docids, judged, SearchParams(beam=1, max_size=2))
        assert label.ndcg >= greedy.ndcg


@pytest.mark.parametrize("normalise", ["zscore", "none"])
def test_label_ndcg_equals_trec_eval_of_the_run_reranked_by_the_set(normalise):
    g = torch.Generator().manual_seed(4)
    n = 15
    docids = docs(n)
    qrels = {}
    entries = []
    for q in range(6):
        qid = f"q{q}"
        scores = torch.randn(4, 3, n, generator=g) * torch.rand(4, 3, 1, generator=g) * 10
        scores[0, 1, 3:9] = scores[0, 1, 3]  # ties within a head
        qrels[qid] = {f"d{(q + i * 4) % n}": 1 + (i % 3) for i in range(3)} | {"elsewhere": 1, "d0": 0}
        entries.append(QueryScores(qid, docids, scores, torch.zeros_like(scores), torch.ones(4, 3, dtype=torch.bool),
                                   torch.ones(n, dtype=torch.int32)))
    labels = label_queries(entries, qrels, SearchParams(beam=3, max_size=4, normalise=normalise))
    assert set(labels.queries) == set(qrels)
    tail = [Hit("d99", 0.0)]
    for entry in entries:
        label = labels.queries[entry.qid]
        for head_set, value in [(labels.head_set(entry.qid), label.ndcg), (HeadSet(), label.all_heads_ndcg)]:
            values = normalised_aggregate(entry.calibrated, head_set, normalise).tolist()
            run = Run({entry.qid: ranked_hits(docids, values, tail)})
            expected = evaluate_run(run, {entry.qid: qrels[entry.qid]}, ["nDCG@10"]).mean("nDCG@10")
            assert value == pytest.approx(expected, abs=1e-6), (entry.qid, head_set.describe())
        assert label.ndcg >= float(label.single_head_ndcg.max())


def _entry(qid, scores, n):
    return QueryScores(qid, docs(n), scores, torch.zeros_like(scores), torch.ones(scores.shape[:2], dtype=torch.bool),
                       torch.ones(n, dtype=torch.int32))


def test_labels_round_trip_through_jsonl(tmp_path):
    g = torch.Generator().manual_seed(5)
    n = 12
    entries = [_entry(f"q{i}", torch.randn(3, 2, n, generator=g), n) for i in range(5)]
    qrels = {f"q{i}": {f"d{i}": 1, f"d{i + 3}": 2} for i in range(4)}
    qrels["q3"] = {"elsewhere": 1}  # judged, but no relevant candidate; q4 is unjudged
    params = SearchParams(beam=2, max_size=3)
    labels = label_queries(entries, qrels, params, model_name="m", model_fingerprint="abc", settings={"order": "bm25"})
    assert list(labels.queries) == ["q0", "q1", "q2"]
    assert labels.skipped == {"unjudged": ["q4"], "no_relevant_candidate": ["q3"]}
    path = tmp_path / "labels.jsonl"
    write_labels(labels, path)
    back = read_labels(path)
    assert back.params == params and back.shape == (3, 2) and back.skipped == labels.skipped
    assert back.model == {"name": "m", "fingerprint": "abc"} and back.settings == {"order": "bm25"}
    assert list(back.queries) == list(labels.queries)
    for qid, label in labels.queries.items():
        other = back.queries[qid]
        assert other.heads == label.heads
        assert other.ndcg == pytest.approx(label.ndcg, abs=1e-6)
        assert other.all_heads_ndcg == pytest.approx(label.all_heads_ndcg, abs=1e-6)
        assert torch.allclose(other.single_head_ndcg, label.single_head_ndcg, atol=1e-6)
    assert back.head_set("q0").model_shape == (3, 2) and back.head_set("q0").model_fingerprint == "abc"
    header = path.read_text().splitlines()[0]
    assert '"format": "routehead-labels/1"' in header and "ndcg_cut_10" in header
    (tmp_path / "bad.jsonl").write_text('{"qid": "q0"}\n')
    with pytest.raises(LabelsError):
        read_labels(tmp_path / "bad.jsonl")


def _labels(grids, heads_per_query=None):
    queries = {}
    for i, grid in enumerate(grids):
        heads = heads_per_query[i] if heads_per_query else ((0, 0),)
        queries[f"q{i}"] = QueryLabel(f"q{i}", heads, 1.0, 0.5, grid)
    return Labels(queries, model={"name": "m", "fingerprint": "f"}, shape=tuple(grids[0].shape))


def test_static_head_set_takes_the_best_mean_single_heads():
    a = torch.tensor([[0.1, 0.9, 0.3], [0.5, 0.2, 0.5]])
    b = torch.tensor([[0.3, 0.1, 0.3], [0.5, 0.8, 0.1]])
    labels = _labels([a, b])  # means: [[0.2, 0.5, 0.3], [0.5, 0.5, 0.3]]
    assert static_head_set(labels, k=1).heads == ((0, 1),)  # three heads tie at 0.5: first in layer-major order
    top3 = static_head_set(labels, k=3)
    assert top3.heads == ((0, 1), (1, 0), (1, 1))
    assert top3.model_shape == (2, 3) and top3.model_fingerprint == "f" and "static" in top3.source
    assert static_head_set(labels, k=4).heads == ((0, 1), (0, 2), (1, 0), (1, 1))  # 0.3 tie: (0, 2) before (1, 2)
    with pytest.raises(ValueError):
        static_head_set(labels, k=7)


def test_random_head_set_is_seeded_and_of_the_right_size():
    a = random_head_set((30, 9), 16, seed=1)
    assert a == random_head_set((30, 9), 16, seed=1)
    assert len(a.heads) == 16 and len(set(a.heads)) == 16
    assert all(0 <= l < 30 and 0 <= h < 9 for l, h in a.heads)
    assert a.heads != random_head_set((30, 9), 16, seed=2).heads
    assert len(random_head_set((2, 2), 4).heads) == 4
    with pytest.raises(ValueError):
        random_head_set((2, 2), 5)


def test_label_frequency_counts_heads_over_label_sets():
    grid = torch.zeros(2, 3)
    labels = _labels([grid, grid, grid], [((0, 0), (1, 2)), ((1, 2),), ((0, 1), (1, 2))])
    assert label_frequency(labels).tolist() == [[1, 1, 0], [0, 0, 3]]


def test_router_targets_set_tied_and_soft():
    a = torch.tensor([[1.0, 0.25, 1.0], [0.5, 0.0, 1.0]])  # three heads tie at the best single-head nDCG
    b = torch.tensor([[0.0, 0.75, 0.5], [0.5, 0.25, 0.0]])
    labels = _labels([a, b], [((0, 0),), ((0, 1), (1, 0))])
    hard = router_targets(labels, ["q0", "q1"], "set")
    assert hard.shape == (2, 2, 3) and hard[0].tolist() == [[1, 0, 0], [0, 0, 0]] and hard[1].tolist() == [[0, 1, 0], [1, 0, 0]]
    assert router_targets(labels, ["q0"], "tied")[0].tolist() == [[1, 0, 1], [0, 0, 1]]
    assert router_targets(labels, ["q1"], "tied")[0].tolist() == [[0, 1, 0], [0, 0, 0]]
    soft = router_targets(labels, ["q1", "q0"], "soft")
    assert torch.equal(soft[0], b) and torch.equal(soft[1], a)  # rows follow the qids given
    # soft targets become head sets by their top-k (ties: layer-major order); multi-hot ones by their heads
    assert target_sets(soft, top_k=2) == [((0, 1), (0, 2)), ((0, 0), (0, 2))]
    assert target_sets(hard) == [((0, 0),), ((0, 1), (1, 0))]
    with pytest.raises(LabelsError, match="no label"):
        router_targets(labels, ["q9"], "soft")
    with pytest.raises(LabelsError, match="targets"):
        router_targets(labels, ["q0"], "best")


@pytest.mark.parametrize("change, message", [
    ({"ndcg": float("nan")}, r"l\.jsonl:2: query q0: ndcg holds a value that is not in \[0, 1\]"),
    ({"all_heads_ndcg": float("inf")}, r"l\.jsonl:2: query q0: ndcg holds a value"),
    ({"single_head_ndcg": [[0.1, float("nan")], [0.2, 0.3]]}, r"l\.jsonl:2: query q0: single_head_ndcg holds a value"),
    ({"single_head_ndcg": [[0.1, 1.5], [0.2, 0.3]]}, r"l\.jsonl:2: query q0: single_head_ndcg holds a value"),
])
def test_label_values_must_be_finite_ndcg(tmp_path, change, message):
    """Issue #22: a labels file's NaN / Infinity tokens (Python's json reads them) are errors naming the line."""
    import json

    header = {"format": "routehead-labels/1", "model": {"name": "m"}, "search": {}, "shape": [2, 2]}
    row = {"qid": "q0", "heads": [[0, 1]], "ndcg": 0.5, "all_heads_ndcg": 0.4, "single_head_ndcg": [[0.1, 0.2], [0.3, 0.4]]}
    path = tmp_path / "l.jsonl"
    path.write_text(json.dumps(header) + "\n" + json.dumps({**row, **change}) + "\n")
    with pytest.raises(LabelsError, match=message):
        read_labels(path)
    path.write_text(json.dumps(header) + "\n" + json.dumps(row) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(LabelsError, match=r"l\.jsonl:3: duplicate label for query 'q0' \(first at line 2\)"):
        read_labels(path)
    path.write_text(json.dumps({**header, "search": {"min_gain": float("nan")}}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(LabelsError, match=r"l\.jsonl:1: bad 'search' settings in the header \(min_gain is nan\)"):
        read_labels(path)
    path.write_text(json.dumps({**header, "search": {"beem": 2}}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(LabelsError, match=r"l\.jsonl:1: bad 'search' settings"):
        read_labels(path)
