"""Training data from a scoring run: typed queries, first-stage scores aligned with the scored
candidates, unscored queries kept for the cross-validated run, judged ones in the dataset."""
from __future__ import annotations

import torch

from routehead_pyserini.data.corpus import Document
from routehead_pyserini.data.trec import Hit, Run, read_run
from routehead_pyserini.engine.cache import QueryScores
from routehead_pyserini.heads.head_set import parse_heads
from routehead_pyserini.rerank.reranker import ScoredQuery
from routehead_pyserini.rerank.training_data import ranking_data


def _scores(qid: str, docids: list[str], seed: int) -> QueryScores:
    g = torch.Generator().manual_seed(seed)
    shape = (2, 3, len(docids))
    return QueryScores(qid, docids, torch.rand(shape, generator=g), torch.zeros(shape), torch.ones(2, 3, dtype=torch.bool),
                       torch.ones(len(docids), dtype=torch.int32))


def test_queries_align_first_stage_scores_and_keep_unscored_ones(tmp_path):
    run = Run({"q1": [Hit("a", 9.0), Hit("b", 8.0), Hit("c", 7.0)], "q2": [Hit("x", 5.0)], "q3": [Hit("d", 3.0), Hit("e", 2.0)]})
    heads = parse_heads("all")
    doc = {d: Document(d, f"text {d}") for d in "abcdex"}
    # the scored order need not be the run's; q2: no candidate had text
    items = [ScoredQuery("q1", _scores("q1", ["b", "a"], 0), [Hit("c", 7.0)], heads, [doc["b"], doc["a"]]),
             ScoredQuery("q2", None, [Hit("x", 5.0)], heads, []),
             ScoredQuery("q3", _scores("q3", ["d", "e"], 1), [], heads, [doc["d"], doc["e"]])]
    qrels = {"q1": {"a": 1, "b": 0}, "q3": {"d": 0, "e": 0}}  # q3: judged, but nothing relevant among its candidates
    data = ranking_data(items, run, {"q1": "one", "q2": "two", "q3": "three"}, qrels, fuse=True, fuse_dense=False,
                        progress=False)
    assert [q.qid for q in data.queries] == ["q1", "q2", "q3"] and [q.qid for q in data.scored] == ["q1", "q3"]
    assert data.queries[0].first_stage == [8.0, 9.0] and data.queries[1].first_stage is None
    assert [d.docid for d in data.queries[0].docs] == ["b", "a"]
    assert [q.qid for q in data.dataset.queries] == ["q1"] and data.dataset.skipped["no_relevant_candidate"] == ["q3"]
    features = data.features()
    assert set(features) == {"q1", "q3"} and features["q1"].shape == (2, 2 * 3 + 1)  # heads, then the first stage

    path = tmp_path / "cv.trec"
    data.write_cv_run({"q1": torch.tensor([0.1, 0.9]), "q3": torch.tensor([0.5, 0.2])}, path, "cv")
    written = read_run(path)
    assert [h.docid for h in written["q1"]] == ["a", "b", "c"]  # a scored higher; c unscored, below
    assert [h.docid for h in written["q2"]] == ["x"] and [h.docid for h in written["q3"]] == ["d", "e"]
