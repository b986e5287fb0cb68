"""What :meth:`.reranker.Reranker.rank` returns: ranked documents a user can index, iterate and cut."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..data.trec import Hit


@dataclass(frozen=True)
class RankedDocument:
    """One re-ranked document: its id, new score, 1-based rank and text."""

    docid: str
    score: float
    rank: int
    text: str = field(repr=False, default="")


class Ranking(list):
    """A list of :class:`RankedDocument`, best first, with the views a caller usually wants.

    >>> ranking = Ranking([RankedDocument("d2", 0.9, 1), RankedDocument("d1", 0.1, 2)])
    >>> ranking[0].docid, ranking.docids, len(ranking.top_k(1))
    ('d2', ['d2', 'd1'], 1)
    """

    def top_k(self, k: int) -> Ranking:
        """The best ``k`` documents (all of them when there are fewer)."""
        if k < 0:
            raise ValueError(f"k must be at least 0, got {k}")
        return Ranking(self[:k])

    @property
    def docids(self) -> list[str]:
        return [d.docid for d in self]

    @property
    def scores(self) -> list[float]:
        return [d.score for d in self]

    def to_hits(self) -> list[Hit]:
        """The ranking as TREC run hits (:class:`.trec.Hit`), to write with :func:`.trec.write_run`."""
        return [Hit(d.docid, d.score) for d in self]

    def __repr__(self) -> str:
        shown = ", ".join(f"{d.docid}:{d.score:.4g}" for d in self[:5])
        return f"Ranking([{shown}{', ...' if len(self) > 5 else ''}], {len(self)} documents)"
