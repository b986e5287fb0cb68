"""A whole leave-one-collection-out study, as ``routehead-pyserini loco`` runs it: score every
collection once, run the protocols, write the tables (and, when asked, the presets trained on every
collection with the scores the tables gave them)."""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from typing import TYPE_CHECKING

from ..config import DEFAULT_MODEL
from ..data.trec import Run, read_run

if TYPE_CHECKING:
    from .loco_report import Table

logger = logging.getLogger(__name__)

PROTOCOLS = ("loco", "pooled-cv")


@dataclass
class Study:
    """What to run: the collections file and which of them, the scoring, the methods and protocols."""

    collections: str
    output_dir: Path
    methods: Sequence[str] = ("heads+bm25", "heads+bm25+dense", "bm25+dense")  # names of :data:`.loco.METHODS`
    protocols: Sequence[str] = PROTOCOLS
    losses: Sequence[str] = ("pointwise", "pairwise")
    only: Sequence[str] = ()
    exclude: Sequence[str] = ()
    model: str = DEFAULT_MODEL
    mode: str = "pointwise"
    top_k: int = 20
    doc_max_tokens: int = 128
    batch_size: int = 5
    device: str = "cpu"
    dtype: str = "float32"
    quantize: str | None = None  # "int8": score (and train presets on) int8 linear layers
    cache_dir: str | None = None
    extra_runs: Mapping[str, str] = field(default_factory=dict)  # table row -> run path with '{collection}'
    presets_dir: Path | None = None
    presets_exclude: Sequence[str] = ("trec-dl-2019",)  # kept out of the presets, so the default can be checked on it
    max_layer: int | None = None
    jobs: int = 1
    command: str = ""  # the command line, recorded in the tables and presets


@dataclass
class StudyResult:
    tables: list[Table]
    presets: list[Path]


def _extra_runs(study: Study, names: Sequence[str]) -> dict[str, dict[str, Run]]:
    extra: dict[str, dict[str, Run]] = {}
    for row, pattern in study.extra_runs.items():
        for name in names:
            path = Path(pattern.format(collection=name))
            if path.is_file():
                extra.setdefault(name, {})[row] = read_run(path)
    return extra


def run_study(study: Study, *, data_dir: str | os.PathLike | None = None, progress: bool = True) -> StudyResult:
    """Run ``study`` and write its tables under ``study.output_dir`` (and presets under ``presets_dir``)."""
    # here, not at the top: the CLI reads the defaults of :class:`Study` without importing torch
    from ..heads.pooled import load_pooled, read_collections, select
    from ..heads.presets import preset_path, write_preset
    from ..engine.models import peek_model
    from ..rerank.reranker import PromptSettings, Reranker
    from .loco import METHODS, SearchSpace, leave_one_collection_out, pooled_cross_validation, train_preset
    from .loco_report import build_table, write_tables

    space = SearchSpace(tuple(study.losses))
    collections = select(read_collections(study.collections), study.only, study.exclude)  # checked before the model loads
    settings = PromptSettings(doc_max_tokens=study.doc_max_tokens or None, mode=study.mode)
    peek_model(study.model, dtype=study.dtype, quantize=study.quantize, device=study.device)
    reranker = Reranker(study.model, "all", settings=settings, device=study.device, dtype=study.dtype, quantize=study.quantize,
                        batch_size=study.batch_size, cache=study.cache_dir or True)
    chosen = [METHODS[m] for m in study.methods]
    data = load_pooled(collections, reranker, top_k=study.top_k, data_dir=data_dir, progress=progress,
                       dense=any(m.dense for m in chosen), embeddings=any(m.routed for m in chosen))
    extra = _extra_runs(study, [c.name for c in collections])
    methods = [m.capped(study.max_layer) if study.max_layer is not None and m.heads else m for m in chosen]
    done = {}
    if "loco" in study.protocols:
        done["loco"] = leave_one_collection_out(data, methods, space, jobs=study.jobs)
    if "pooled-cv" in study.protocols:
        done["pooled-cv"] = pooled_cross_validation(data, methods, space, jobs=study.jobs)
    tables = [build_table(data, protocol, study.top_k, extra) for protocol in done.values()]
    notes = [f"model {reranker.model.name} ({reranker.model.fingerprint}); prompt: {study.mode}, top {study.top_k}, documents "
             f"cut to {study.doc_max_tokens or 'no limit'} tokens; passages in first-stage order",
             "collections: " + ", ".join(f"{c.name} ({sum(1 for q in data.of(c.name) if q.scores is not None)} queries scored, "
                                         f"{sum(1 for q in data.dataset.queries if q.group == c.name)} can train)" for c in collections),
             "command: " + study.command]
    write_tables(tables, data, done, study.output_dir, extra, notes=notes)
    presets = []
    if study.presets_dir is not None:
        by_protocol = {t.protocol: t for t in tables}
        prompt = {**{k: v for k, v in reranker.describe()["settings"].items() if k != "max_context"}, "top_k": study.top_k}
        for method in methods:
            if method.router != "static" or not (method.heads or method.fuse):
                continue  # table rows, not presets: the static top-16 and the (soft, hard) routers
            # the fusion-only control (bm25+dense) is a preset too, with every head at 0: it competes for the
            # default on the same LOCO figure, and `rerank` runs it without loading the LLM
            scores = {key: {**{c: round(t.cells[method.name][c].means["nDCG@10"], 4) for c in t.collections},
                            "mean": round(t.mean(method.name), 4)}
                      for key, t in (("loco", by_protocol.get("loco")), ("pooled_cv", by_protocol.get("pooled-cv"))) if t}
            head_set = train_preset(data, method, model_name=reranker.model.name, model_fingerprint=reranker.model.fingerprint,
                                    prompt_settings=prompt, scores=scores, command=study.command,
                                    exclude=study.presets_exclude, space=space, quantize=study.quantize)
            path = preset_path(study.presets_dir, head_set)
            write_preset(head_set, path)
            presets.append(path)
    return StudyResult(tables, presets)
