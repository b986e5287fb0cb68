import torch

from routehead_pyserini.eval.evaluate import evaluate_run
from routehead_pyserini.eval.head_analysis import best_single_head_cv, oracle_heads, shuffled
from routehead_pyserini.data.folds import fold_of
from routehead_pyserini.heads.ndcg import per_head_ndcg
from routehead_pyserini.data.trec import ranked_hits
from routehead_pyserini.data.trec import Hit, Run


def test_per_head_ndcg_equals_trec_eval_of_the_reranked_run():
    g = torch.Generator().manual_seed(1)
    docids = [f"d{i}" for i in range(15)]
    judged = {"d1": 3, "d4": 1, "d7": 2, "d14": 1, "elsewhere": 2, "d3": 0}  # one relevant doc was not retrieved
    scores = torch.randn(4, 3, 15, generator=g)
    scores[0, 0, :] = 1.0  # all ties: first-stage order
    grid = per_head_ndcg(scores, docids, judged, k=10)
    tail = [Hit("d99", 0.0)]
    for layer in range(4):
        for head in range(3):
            run = Run({"q": ranked_hits(docids, scores[layer, head].tolist(), tail)})
            expected = evaluate_run(run, {"q": judged}, ["nDCG@10"]).mean("nDCG@10")
            assert abs(float(grid[layer, head]) - expected) < 1e-4, (layer, head)


def test_shuffled_is_a_seeded_permutation_per_head():
    scores = torch.arange(2 * 2 * 6, dtype=torch.float32).reshape(2, 2, 6)
    a, b = shuffled(scores, "q1"), shuffled(scores, "q1")
    assert torch.equal(a, b) and not torch.equal(a, scores)
    assert torch.equal(a.sort(dim=-1).values, scores)
    assert not torch.equal(shuffled(scores, "q2"), a)


def test_cross_validation_never_picks_a_head_on_its_own_query():
    # every query's best head is unique to it: a leak would pick that head for the query itself
    per_query = {}
    for i in range(20):
        grid = torch.full((4, 5), 0.1)
        grid[i % 4, i % 5] = 1.0
        grid[3, 4] = 0.5  # the head that is good on average
        per_query[f"q{i}"] = grid
    choice = best_single_head_cv(per_query, folds=5, seed=0)
    assert set(choice.head) == set(per_query)
    for qid, head in choice.head.items():
        others = [q for q in per_query if choice.fold[q] != choice.fold[qid]]
        mean = torch.stack([per_query[q] for q in others]).mean(0)
        assert head == divmod(int(mean.argmax()), 5)
    assert oracle_heads(per_query)["q6"] == (2, 1)
    assert {fold_of(q, 5) for q in per_query} == set(range(5))
