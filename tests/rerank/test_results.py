"""Ranking: what Reranker.rank returns (pure data, no model)."""
from __future__ import annotations

import pytest

from routehead_pyserini.data.trec import Hit
from routehead_pyserini.rerank.results import RankedDocument, Ranking


def _ranking(n: int) -> Ranking:
    return Ranking(RankedDocument(f"d{i}", 1.0 - i / 10, i + 1, f"text {i}") for i in range(n))


def test_views_keep_the_order():
    ranking = _ranking(3)
    assert ranking.docids == ["d0", "d1", "d2"]
    assert ranking.scores == pytest.approx([1.0, 0.9, 0.8])
    assert [d.rank for d in ranking] == [1, 2, 3]


def test_top_k_cuts_and_stays_a_ranking():
    ranking = _ranking(4)
    top = ranking.top_k(2)
    assert isinstance(top, Ranking) and top.docids == ["d0", "d1"]
    assert ranking.top_k(10).docids == ranking.docids  # fewer than k: all of them
    assert ranking.top_k(0) == []
    with pytest.raises(ValueError, match="at least 0"):
        ranking.top_k(-1)


def test_to_hits_gives_trec_hits():
    assert _ranking(2).to_hits() == [Hit("d0", 1.0), Hit("d1", 0.9)]


def test_repr_is_short_and_names_the_size():
    text = repr(_ranking(7))
    assert text.startswith("Ranking([d0:1, d1:0.9") and text.endswith(", ...], 7 documents)")
    assert "text 0" not in repr(_ranking(1)[0])  # the text stays out of the repr
