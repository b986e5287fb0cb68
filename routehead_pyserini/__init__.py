"""routehead-pyserini: re-rank Pyserini runs with (routed) attention heads of a frozen LLM.

The subpackages read like the pipeline and import one way only, each from those before it:
:mod:`.data` (TREC files, corpora, registry) → :mod:`.firststage` (JVM, BM25, dense, candidate text)
→ :mod:`.engine` (the frozen LLM: prompts, query-row attention, per-head scores and their cache)
→ :mod:`.heads` (head sets, learned weights, routers, presets) → :mod:`.rerank` (the Reranker)
→ :mod:`.eval` (measures, reports, leave-one-collection-out) → :mod:`.pipeline` (YAML pipelines)
→ :mod:`.cli` (the ``routehead-pyserini`` command). :mod:`.errors`, :mod:`.config` and
:mod:`.files` sit under all of them.

The public face is small and lazy: importing the package loads neither torch nor the JVM::

    from routehead_pyserini import Reranker, rerank_run, read_run, write_run, evaluate

    reranker = Reranker.from_preset()                # the shipped default for SmolLM2-135M
    ranking = reranker.rank(query, [(docid, text), ...], scores=[bm25, ...])
    ranking.top_k(10).docids
    reranker.rerank_hits(query, searcher.search(query, k=20))      # Pyserini hits
    reranker.transform(df)                           # qid, query, docno, text[, score, rank]
    evaluate(rerank_run("run.trec", "topics.tsv", "index/"), "qrels.txt")   # {"nDCG@10": ...}
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: name -> the module that defines it (imported on first use)
_PUBLIC = {
    "Reranker": "rerank.reranker", "Ranking": "rerank.results", "RankedDocument": "rerank.results",
    "PromptSettings": "rerank.settings", "rerank_run": "rerank.runs",
    "HeadSet": "heads.head_set", "parse_heads": "heads.head_set", "read_head_set": "heads.head_set",
    "write_head_set": "heads.head_set", "load_router": "heads.loading",
    "Preset": "heads.presets", "list_presets": "heads.presets", "get_preset": "heads.presets", "default_preset": "heads.presets",
    "read_run": "data.trec", "write_run": "data.trec", "read_qrels": "data.trec", "read_topics": "data.trec",
    "Run": "data.trec", "Hit": "data.trec", "Document": "data.corpus",
    "evaluate": "eval.evaluate", "evaluate_run": "eval.evaluate",
    "load_model": "engine.models", "UserError": "errors", "ensure_jvm": "firststage.jvm",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'routehead_pyserini' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
