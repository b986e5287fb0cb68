"""The ``routehead-pyserini`` command line.

Every subcommand reads and writes standard formats (JSONL corpora, TREC runs, qrels, topics) and
takes registry names (``routehead-pyserini datasets``) wherever it takes such a file. Heavy
libraries (Pyserini, torch) are imported inside the commands, so ``--help`` is instant. The
commands only parse options and call the library; one module per stage of the pipeline:

- :mod:`.app`: the group, its global options and the error handling;
- :mod:`.first_stage`: ``datasets``, ``index``, ``search``;
- :mod:`.options`: what the scoring commands share (candidates, model, prompt settings, cache);
- :mod:`.reranking`: ``rerank``, ``presets``;
- :mod:`.training`: ``analyze-heads``, ``label``, ``train``, ``train-weights``, ``train-soft-router``, ``loco``;
- :mod:`.evaluation`: ``evaluate``, ``random-order``, ``heads``;
- :mod:`.pipelines`: ``demo``, ``pipeline run``.
"""
from __future__ import annotations

from . import evaluation, first_stage, pipelines, reranking, training  # noqa: F401  (each registers its commands)
from .app import main

__all__ = ["main"]

if __name__ == "__main__":  # pragma: no cover
    main()
