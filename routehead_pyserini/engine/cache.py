"""Per-head score tensors of whole queries, and the on-disk cache that lets every stage reuse them.

One forward pass per query is the expensive part of everything in this package. Labelling heads,
training a router, evaluating any head set or ablation all read the same per-head scores, so the
scores of each query are stored once:

    <cache_dir>/scores/<key>/<entry>.safetensors

``key`` is a hash of the model fingerprint and the prompt settings (anything that changes the
numbers); ``entry`` a hash of the qid, the query text and each candidate's docid and text. An
entry holds, for the query's candidates in first-stage order:

- ``query``, ``calib``: ``[layers, heads, docs]`` attention mass from the query (resp. "N/A") rows
  to each document (NaN where a head was not computed);
- ``computed``: ``[layers, heads]`` which heads were computed;
- ``window_size``: ``[docs]`` how many documents shared the prompt window of each document.

Scale across windows: when a candidate list is split into several prompts, a document's attention
share depends on how many documents share its window. :attr:`QueryScores.calibrated` therefore
multiplies the calibrated mass (query − "N/A") by the window size: the score is attention relative
to a uniform share of the window (1 document in n gets 1/n of a uniform head). With one window
this is a constant factor and changes no ranking.

Entries are written atomically (temporary file, then rename), so an interrupted job never leaves a
half entry behind, and a rerun skips every query already stored: the cache is also how long jobs
resume.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from .. import config
from ..files import atomic_open, atomic_write_bytes
from ..data.keys import digest, stable_json

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1


@dataclass
class QueryScores:
    """Per-head scores of one query's candidates (first-stage order)."""

    qid: str
    docids: list[str]
    query: torch.Tensor  # [layers, heads, docs]
    calib: torch.Tensor  # [layers, heads, docs]
    computed: torch.Tensor  # [layers, heads] bool
    window_size: torch.Tensor  # [docs] int
    info: dict = field(default_factory=dict)  # truncated_docs, windows, prompt_tokens, seconds

    @property
    def calibrated(self) -> torch.Tensor:
        """``(query − calib) × window size``: ``[layers, heads, docs]`` (see the module docstring)."""
        return (self.query - self.calib) * self.window_size.to(self.query.dtype)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.computed.shape)

    def covers(self, mask: torch.Tensor) -> bool:
        """True when every head of ``mask`` was computed."""
        return bool((self.computed | ~mask).all())


class ScoreCache:
    """Folder of per-query :class:`QueryScores` for one model and one set of prompt settings."""

    def __init__(self, model_fingerprint: str, settings, root: str | os.PathLike[str] | None = None):
        if hasattr(settings, "cache_key"):  # PromptSettings: newer fields at their default stay out of the key
            settings = settings.cache_key()
        self.settings = json.loads(stable_json(settings))
        key = digest(stable_json({"format": CACHE_FORMAT, "model": model_fingerprint, "settings": self.settings}))
        self.folder = Path(root) if root is not None else config.score_cache_dir()
        self.folder = self.folder / key
        self.model_fingerprint = model_fingerprint

    def _path(self, entry: str) -> Path:
        return self.folder / f"{entry}.safetensors"

    def get(self, entry: str, mask: torch.Tensor | None = None) -> QueryScores | None:
        """The stored scores for ``entry`` if they cover ``mask`` (all heads when ``None``)."""
        path = self._path(entry)
        if not path.exists():
            return None
        try:
            tensors = load_file(str(path))
            with safe_open(str(path), "pt") as handle:
                meta = handle.metadata()
        except Exception as exc:  # a corrupt entry is recomputed, never trusted
            logger.warning("ignoring unreadable cache entry %s: %s", path, exc)
            return None
        scores = QueryScores(
            qid=meta["qid"],
            docids=json.loads(meta["docids"]),
            query=tensors["query"],
            calib=tensors["calib"],
            computed=tensors["computed"].bool(),
            window_size=tensors["window_size"],
            info=json.loads(meta.get("info", "{}")),
        )
        wanted = mask if mask is not None else torch.ones_like(scores.computed)
        return scores if scores.covers(wanted) else None

    def put(self, entry: str, scores: QueryScores) -> None:
        """Store ``scores`` atomically (an existing entry is replaced)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write_manifest()
        tensors = {
            "query": scores.query.contiguous(),
            "calib": scores.calib.contiguous(),
            "computed": scores.computed.to(torch.uint8).contiguous(),
            "window_size": scores.window_size.to(torch.int32).contiguous(),
        }
        meta = {"qid": scores.qid, "docids": json.dumps(scores.docids), "info": json.dumps(scores.info, sort_keys=True)}
        atomic_write_bytes(self._path(entry), save(tensors, metadata=meta))

    def _write_manifest(self) -> None:
        manifest = self.folder / "settings.json"
        if not manifest.exists():
            with atomic_open(manifest) as handle:
                handle.write(json.dumps({"model": self.model_fingerprint, "settings": self.settings}, indent=2, sort_keys=True) + "\n")

    def __len__(self) -> int:
        return sum(1 for _ in self.folder.glob("*.safetensors")) if self.folder.exists() else 0
