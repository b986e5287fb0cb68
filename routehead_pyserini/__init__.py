"""routehead-pyserini: re-rank Pyserini runs with routed attention heads of a frozen LLM.

The package reads like the pipeline: first stage (:mod:`.index`, :mod:`.search`) → prompt →
attention → heads → router → evaluation (:mod:`.evaluate`) → CLI (:mod:`.cli`). Formats live in
:mod:`.trec`; the one JVM is started by :mod:`.jvm` before anything imports Pyserini.
"""
__version__ = "0.1.0"
