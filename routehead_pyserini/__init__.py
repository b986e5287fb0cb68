"""routehead-pyserini: re-rank Pyserini runs with (routed) attention heads of a frozen LLM.

The package reads like the pipeline: first stage (:mod:`.index`, :mod:`.search`, :mod:`.sources`)
→ prompt → attention → scoring (the frozen LLM) → heads and learned weights (:mod:`.heads`,
:mod:`.weights`, routers) → re-ranking (:mod:`.rerank`, :mod:`.presets`) → evaluation
(:mod:`.evaluate`, :mod:`.loco`) → pipelines → CLI (:mod:`.cli`). Formats live in :mod:`.trec`;
the one JVM is started by :mod:`.jvm` before anything imports Pyserini.

The public face is small and lazy: importing the package loads neither torch nor the JVM::

    from routehead_pyserini import Reranker, read_run, write_run, evaluate_run
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: name -> the module that defines it (imported on first use)
_PUBLIC = {
    "Reranker": "rerank", "PromptSettings": "rerank", "RankedDocument": "rerank",
    "HeadSet": "heads", "parse_heads": "heads", "read_head_set": "heads", "write_head_set": "heads",
    "Preset": "presets", "list_presets": "presets", "get_preset": "presets", "default_preset": "presets",
    "read_run": "trec", "write_run": "trec", "read_qrels": "trec", "read_topics": "trec", "Run": "trec", "Hit": "trec",
    "evaluate_run": "evaluate",
    "load_model": "models",
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
