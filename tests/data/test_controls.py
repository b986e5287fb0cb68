from routehead_pyserini.data.controls import random_order, sample_queries
from routehead_pyserini.data.trec import Hit, Run


def _run():
    return Run({q: [Hit(f"{q}-d{i}", 100.0 - i) for i in range(30)] for q in ("q1", "q2")})


def test_random_order_is_a_seeded_permutation_of_the_top_k():
    run = _run()
    shuffled = random_order(run, seed=7, top_k=20)
    again = random_order(run, seed=7, top_k=20)
    other = random_order(run, seed=8, top_k=20)
    for qid in run:
        ids = [h.docid for h in shuffled[qid]]
        assert sorted(ids[:20]) == sorted(h.docid for h in run[qid][:20])
        assert ids[20:] == [h.docid for h in run[qid][20:]]
        assert ids != [h.docid for h in run[qid]]
        assert all(a.score > b.score for a, b in zip(shuffled[qid], shuffled[qid][1:]))
    assert shuffled.hits == again.hits
    assert shuffled.hits != other.hits


def test_permutation_does_not_depend_on_query_order():
    run = _run()
    reversed_run = Run(dict(reversed(list(run.hits.items()))))
    assert random_order(run, seed=1)["q2"] == random_order(reversed_run, seed=1)["q2"]


def test_sample_queries_is_fixed_and_nested():
    run = Run({f"q{i}": [Hit("d", 1.0)] for i in range(50)})
    ten, twenty = sample_queries(run, 10, seed=3), sample_queries(run, 20, seed=3)
    assert len(ten) == 10 and set(ten.hits) <= set(twenty.hits)
    assert ten.qids() == [q for q in run.qids() if q in ten.hits]
    assert sample_queries(run, 10, seed=3).hits == ten.hits and sample_queries(run, 10, seed=4).hits != ten.hits
    assert sample_queries(run, 99) is run


def test_sample_offset_gives_a_disjoint_split():
    run = Run({f"q{i}": [Hit("d", 1.0)] for i in range(50)})
    train, val = sample_queries(run, 20, seed=1), sample_queries(run, 10, seed=1, offset=20)
    assert len(train) == 20 and len(val) == 10
    assert not set(train.qids()) & set(val.qids())
    assert set(train.qids()) | set(val.qids()) == set(sample_queries(run, 30, seed=1).qids())
