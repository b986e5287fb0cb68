"""Prompt settings: everything about a prompt that changes the scores, and how they are chosen.

A setting comes from an explicit option, else from the trained file in use (a preset, a learned
head set or a router records the settings it was trained with, and those are enforced: a conflicting
explicit value is an error naming both), else from :data:`SETTING_DEFAULTS`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from ..engine.prompt_text import DEFAULT_DOC_MAX_TOKENS
from ..errors import RerankError

if TYPE_CHECKING:  # the settings are read by the CLI before torch is imported
    from ..heads.head_set import HeadSet

ORDERS = ("bm25", "reversed", "both")
#: The orders a prompt can have; ``both`` combines one entry of each.
SINGLE_ORDERS = ("bm25", "reversed")
MODES = ("listwise", "pointwise")
ATTENTION_NORMS = ("raw", "no-sink")
#: Settings added after score caches existed: left out of the cache key while at these defaults,
#: so that every cache made before they existed keeps its key (and its hours of work).
_KEY_OPTIONAL = {"mode": "listwise", "attention_norm": "raw"}


@dataclass(frozen=True)
class PromptSettings:
    """Everything about the prompt that changes the scores (part of the cache key)."""

    doc_max_tokens: int | None = DEFAULT_DOC_MAX_TOKENS
    max_context: int | None = None  # None: the model's context length
    order: str = "bm25"  # listwise only: bm25, reversed, or both (the two summed)
    chat_template: bool = True
    mode: str = "listwise"  # or pointwise: one prompt per candidate
    attention_norm: str = "raw"  # or no-sink: mass among all keys but the first token

    def __post_init__(self):
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {self.order!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.attention_norm not in ATTENTION_NORMS:
            raise ValueError(f"attention_norm must be one of {ATTENTION_NORMS}, got {self.attention_norm!r}")
        if self.mode == "pointwise" and self.order != "bm25":
            raise RerankError(f"order {self.order!r} applies to listwise prompts; a pointwise prompt holds one passage")

    def cache_key(self) -> dict:
        """The settings that identify a score cache: all fields, except newer ones at their default."""
        values = asdict(self)
        return {k: v for k, v in values.items() if not (k in _KEY_OPTIONAL and v == _KEY_OPTIONAL[k])}


#: What a scoring command uses when neither an option nor a trained file (preset, learned head set,
#: router) says: ICR's listwise prompt in first-stage order, the top 20 candidates.
DEFAULT_TOP_K = 20
#: Pointwise prompts per forward pass when none is given (the fastest measured on 2 cores: docs/performance.md).
POINTWISE_BATCH_SIZE = 5
SETTING_DEFAULTS = {"mode": "listwise", "order": "bm25", "doc_max_tokens": DEFAULT_DOC_MAX_TOKENS, "attention_norm": "raw",
                    "chat_template": True}
#: Settings a trained file fixes: its scores were learned on prompts built this way.
ENFORCED = tuple(SETTING_DEFAULTS)


def trained_with(prompt_settings: Mapping[str, object] | None) -> dict:
    """Of the prompt settings a trained file records, those that bind its use (:data:`ENFORCED`, and ``top_k``)."""
    return {k: v for k, v in (prompt_settings or {}).items() if k in (*ENFORCED, "top_k")}


def recorded_settings(head_set: HeadSet | None) -> dict:
    """The prompt settings a preset or learned head set was trained with (empty for other sets)."""
    if head_set is None:
        return {}
    for key in ("preset", "learned"):
        block = head_set.extra.get(key)
        if isinstance(block, Mapping) and isinstance(block.get("prompt_settings"), Mapping):
            return trained_with(block["prompt_settings"])
    return {}


def merge_settings(explicit: Mapping[str, object], recorded: Mapping[str, object], origin: str,
                   defaults: Mapping[str, object] = ()) -> dict:
    """Prompt settings: an explicit option, else the trained file's, else :data:`SETTING_DEFAULTS`.

    ``explicit`` maps setting names to the user's values (``None``: not given). An explicit value
    that differs from one the file was trained with is refused, naming both: the file's weights are
    only meaningful on the prompts they were learned from. ``top_k`` may differ (it changes how
    many candidates are scored, not how a prompt is built). ``defaults`` replace
    :data:`SETTING_DEFAULTS` without being enforced (a method's own defaults).
    """
    out = {**SETTING_DEFAULTS, "top_k": DEFAULT_TOP_K, **dict(defaults), **dict(recorded)}
    for key, value in explicit.items():
        if value is None:
            continue
        if key in ENFORCED and key in recorded and recorded[key] != value:
            option = "--" + key.replace("_", "-")
            raise RerankError(f"{option} {value} conflicts with {origin}, which was trained with {key} {recorded[key]}; "
                              f"leave {option} out to use the file's setting")
        out[key] = value
    return out


def trained_settings(recorded: Mapping[str, object], explicit: Mapping[str, object] = (), origin: str = "the file",
                     max_context: int | None = None) -> tuple[PromptSettings, int]:
    """``(PromptSettings, top_k)`` for a trained file that recorded ``recorded`` (see :func:`merge_settings`)."""
    values = merge_settings(dict(explicit), recorded, origin)
    if values["mode"] == "pointwise" and values["order"] != "bm25":
        raise RerankError("order applies to listwise prompts (a pointwise prompt holds one passage)")
    settings = PromptSettings(doc_max_tokens=values["doc_max_tokens"] or None, max_context=max_context, order=values["order"],
                              mode=values["mode"], attention_norm=values["attention_norm"], chat_template=values["chat_template"])
    return settings, int(values["top_k"])


def default_batch_size(settings: PromptSettings) -> int:
    """Pointwise prompts per forward when none is given: 5 (fastest measured on 2 cores); listwise: 1."""
    return POINTWISE_BATCH_SIZE if settings.mode == "pointwise" else 1
