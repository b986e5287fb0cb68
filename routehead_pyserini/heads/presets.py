"""Trained configurations shipped inside the package: what ``rerank`` does without method options.

A preset is a learned head-set file (:mod:`.weights`: a weight per kept head, and the BM25 and
bi-encoder fusion weights) with one more block, ``preset``, recording everything a user needs to
trust and reproduce it::

    "preset": {"name": "heads+bm25+dense", "method": "...", "model": "smollm2-135m",
               "prompt_settings": {"mode": "pointwise", "doc_max_tokens": 128, ..., "top_k": 20},
               "training": {"collections": {"trec-dl-2019": 43, ...}, "protocol": "..."},
               "scores": {"loco": {"trec-dl-2019": 0.55, ..., "mean": ...}, "pooled_cv": {...}},
               "sample": {"scifact": 300, ...},  # the fixed query samples the figures are over, if any
               "deepest_layer": 17, "created": "2026-12-01", "command": "..."}

Files live in ``routehead_pyserini/heads/preset_files/<model>/<name>.json``; ``routehead-pyserini presets``
lists them with their scores. :func:`default_preset` is the one with the best mean nDCG@10 under
leave-one-collection-out evaluation (collections the preset's own training never saw), which is
what a user's new collection is. A preset is refused on any other model than its own (the
fingerprint of the weights and dtype), as every learned head set is.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .head_set import HeadSet, read_head_set
from .head_set import write_head_set

logger = logging.getLogger(__name__)

PRESET_DIR = Path(__file__).resolve().parent / "preset_files"
PRESET_KEY = "preset"
#: A folder of your own presets (same layout), searched before the shipped ones.
PRESETS_ENV = "ROUTEHEAD_PRESETS_DIR"


def preset_folders() -> list[Path]:
    """``$ROUTEHEAD_PRESETS_DIR`` (when set), then the presets shipped in the package."""
    import os

    env = os.environ.get(PRESETS_ENV)
    return ([Path(env).expanduser()] if env else []) + [PRESET_DIR]


class PresetError(UserError, ValueError):
    """An unknown preset, or one used with another model."""


@dataclass(frozen=True)
class Preset:
    """A shipped configuration: its head set (weights and fusion) and what it records."""

    name: str
    model: str  # the model name it was trained with (``--model``)
    path: Path
    head_set: HeadSet

    @property
    def record(self) -> dict:
        return self.head_set.extra.get(PRESET_KEY, {})

    @property
    def prompt_settings(self) -> dict:
        return dict(self.record.get("prompt_settings", {}))

    @property
    def loco_mean(self) -> float:
        value = self.record.get("scores", {}).get("loco", {}).get("mean")
        return float(value) if isinstance(value, (int, float)) else -math.inf

    @property
    def uses_dense(self) -> bool:
        spec = self.head_set.extra.get("fuse_dense")
        return isinstance(spec, dict) and float(spec.get("weight", 0.0)) != 0.0

    @property
    def uses_heads(self) -> bool:
        return any(w != 0.0 for w in (self.head_set.weights or ()))

    def summary(self) -> str:
        scores = self.record.get("scores", {})
        loco, pooled = scores.get("loco", {}), scores.get("pooled_cv", {})
        return (f"{self.model}/{self.name}: LOCO mean nDCG@10 {loco.get('mean', float('nan')):.4f}, pooled CV "
                f"{pooled.get('mean', float('nan')):.4f}; {len(self.head_set.heads or ())} heads, deepest layer "
                f"{self.record.get('deepest_layer')}; {self.record.get('method', '')}")


def _load(path: Path) -> Preset:
    head_set = read_head_set(path)
    record = head_set.extra.get(PRESET_KEY)
    if not isinstance(record, dict) or "name" not in record or "model" not in record:
        raise PresetError(f"{path}: not a preset (a head-set file needs a 'preset' block with 'name' and 'model')")
    return Preset(str(record["name"]), str(record["model"]), path, head_set)


def list_presets(model: str | None = None, folder: Path | None = None) -> list[Preset]:
    """Every preset (of ``model``, a model name, when given), best LOCO mean first; a name in an
    earlier folder (:func:`preset_folders`, or ``folder`` alone) hides the same name in a later one."""
    found: list[Preset] = []
    for where in ([folder] if folder is not None else preset_folders()):
        for path in sorted(where.glob("*/*.json")) if where.is_dir() else []:
            preset = _load(path)
            if not any(p.name == preset.name and p.model == preset.model for p in found):
                found.append(preset)
    if model is not None:
        found = [p for p in found if p.model == model]
    return sorted(found, key=lambda p: (-p.loco_mean, p.name))


def get_preset(name: str, model: str, folder: Path | None = None) -> Preset:
    """Preset ``name`` (or ``MODEL/NAME``) of ``model``; a preset of another model is a clear error."""
    wanted_model, _, short = name.rpartition("/")
    if wanted_model and wanted_model != model:
        raise PresetError(f"preset {name!r} was trained for model {wanted_model!r}, not {model!r}; "
                          f"use --model {wanted_model} or one of: {_names(model, folder)}")
    for preset in list_presets(None, folder):
        if preset.name == short and preset.model == model:
            return preset
    others = [p.model for p in list_presets(None, folder) if p.name == short]
    if others:
        raise PresetError(f"preset {short!r} exists for model(s) {', '.join(sorted(set(others)))}, not for {model!r}; "
                          f"presets of {model!r}: {_names(model, folder)}")
    raise PresetError(f"no preset {short!r} for model {model!r}; known: {_names(model, folder)} "
                      "(`routehead-pyserini presets` lists them)")


def default_preset(model: str, folder: Path | None = None) -> Preset | None:
    """The preset with the best leave-one-collection-out mean for ``model``, or ``None``: among your
    own (``$ROUTEHEAD_PRESETS_DIR``) when you have some for this model, else among the shipped ones."""
    for where in ([folder] if folder is not None else preset_folders()):
        found = list_presets(model, where)
        if found:
            return found[0]
    return None


def _names(model: str, folder: Path | None) -> str:
    names = [p.name for p in list_presets(model, folder)]
    return ", ".join(names) if names else "none"


def preset_path(folder: str | os.PathLike[str], head_set: HeadSet) -> Path:
    """Where a preset is written in a presets folder: ``<folder>/<model>/<name without its @L cap>.json``
    (``heads+bm25+dense@L20`` -> ``heads+bm25+dense.json``, ``...@L12-int8`` -> ``...-int8.json``)."""
    record = head_set.extra.get(PRESET_KEY, {})
    name = re.sub(r"@L\d+", "", str(record.get("name", "")))
    return Path(folder) / str(record.get("model")) / f"{name}.json"


def write_preset(head_set: HeadSet, path: Path) -> None:
    """Write a preset file (a head-set file with its ``preset`` block), atomically."""
    if PRESET_KEY not in head_set.extra:
        raise PresetError("a preset needs its 'preset' block")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_head_set(head_set, path)
    logger.info("wrote preset %s", path)


def preset_json(preset: Preset) -> str:
    return json.dumps({"name": preset.name, "model": preset.model, "path": str(preset.path), **preset.record},
                      indent=1, sort_keys=True)


