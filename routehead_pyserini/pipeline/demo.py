"""The demo: the embedded collection through index → BM25 → evaluation, as one function.

It is what the README's first command runs on a fresh machine, and it needs nothing but the
package itself (the collection ships in ``routehead_pyserini/demo_data``).
"""
from __future__ import annotations

import logging
from pathlib import Path

from ..config import DEFAULT_MODEL
from ..data.controls import random_order
from ..eval.evaluate import build_report, evaluate_run
from ..files import atomic_write_text
from ..firststage.index import build_index
from ..data.registry import PACKAGE_DIR
from ..firststage.search import bm25_search
from ..data.trec import read_qrels, read_topics, write_run
from ..engine.models import load_model
from ..rerank.reranker import PromptSettings, Reranker
from ..firststage.search import DocumentStore

logger = logging.getLogger(__name__)

DEMO_DATA = PACKAGE_DIR / "demo_data"
MEASURES = ("nDCG@10", "MAP@100", "R@100", "MRR@10")


def run_demo(output_dir: Path, *, hits: int = 20, model: str | None = DEFAULT_MODEL, progress: bool = True) -> str:
    """Index the demo collection, run BM25, the controls and ICR re-ranking; write runs and ``report.md``.

    ICR re-ranks the BM25 top-``hits`` with every attention head of ``model`` (``None``: skip),
    once with the passages in BM25 order and once reversed (rank 1 nearest the query).
    Returns the comparison table.
    """
    output_dir = Path(output_dir)
    index_dir = output_dir / "index"
    build_index(DEMO_DATA / "corpus.jsonl", index_dir, overwrite=True, progress=progress)
    topics = read_topics(DEMO_DATA / "queries.jsonl")
    qrels = read_qrels(DEMO_DATA / "qrels.txt")

    runs = {
        "bm25": bm25_search(index_dir, topics, hits=hits, progress=progress),
        "bm25-k1.2-b0.75": bm25_search(index_dir, topics, hits=hits, k1=1.2, b=0.75, progress=progress),
    }
    runs["random-order"] = random_order(runs["bm25"], seed=0)
    if model:
        loaded, texts = load_model(model), DocumentStore(index_dir)
        for order in ("bm25", "reversed"):
            reranker = Reranker(loaded, settings=PromptSettings(order=order))
            runs[f"icr-{order}-order"], _ = reranker.rerank_run(runs["bm25"], topics, texts, top_k=hits, progress=progress)
    evaluations = []
    for name, run in runs.items():
        write_run(run, output_dir / f"{name}.trec", tag=name)
        evaluations.append(evaluate_run(run, qrels, MEASURES, run_name=name))
    report = build_report(evaluations, "bm25")
    title = f"# Demo: {len(topics)} queries, BM25 top-{hits} of the embedded collection, ICR with {model}\n\n"
    atomic_write_text(output_dir / "report.md", title + report.to_markdown())
    return report.to_text() + f"\nruns and report.md written to {output_dir}\n"
