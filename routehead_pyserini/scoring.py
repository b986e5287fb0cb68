"""Per-head In-Context Re-ranking (ICR) scores for one prompt.

The prompt is ``prefix`` (instructions and all candidate documents) followed by a short suffix
holding the query. For every (layer, head) we measure how much attention the query tokens pay to
each document, and the same for the content-free query "N/A" (the calibration, which removes the
documents' intrinsic attention bias: position, length, attention sinks).

Work is shared as much as possible, because a forward pass over the prefix dominates the cost:

1. one prefill over the prefix fills a KV cache, stopping inside the deepest requested layer
   (its keys and values are cached before the stop; its output is never needed);
2. two short suffix passes (query, then "N/A") reuse that cache, record attention rows only for
   the query-text tokens and only for the requested heads, and stop at the same layer.

Between the two suffix passes the query suffix is cropped off the cache again. Sliding-window
layers drop their oldest entries when a suffix is appended, so cropping back would not restore
them: for models with such layers the first pass runs on a copy of the cache instead (the copy
holds only the layers up to the stop layer). The prefill runs in chunks (see :func:`_prefill`).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Iterable, Protocol, Sequence, Union

import torch
from transformers import DynamicCache

from .attention import ATTN_IMPLEMENTATION, QueryRowRecorder, run_forward
from .models import LoadedModel, ModelSpec

#: Tokens per prefill chunk (see :func:`_prefill`).
PREFILL_CHUNK = 1024


class ICRPrompt(Protocol):
    """The token layout :func:`score_prompt` needs (built by ``routehead_pyserini.prompt``)."""

    prefix_ids: list[int]  # template head + instruction + all documents; shared by both passes
    doc_spans: list[tuple[int, int]]  # [start, end) of each document's text within prefix_ids
    query_suffix_ids: list[int]  # tokens after the prefix for the real query
    query_span: tuple[int, int]  # [start, end) of the query text within query_suffix_ids
    calib_suffix_ids: list[int]  # the same suffix with the content-free query "N/A"
    calib_span: tuple[int, int]  # [start, end) of "N/A" within calib_suffix_ids


# None (all heads), a bool [layers, heads] mask, or (layer, head) pairs.
HeadSelection = Union[None, torch.Tensor, Iterable[tuple[int, int]]]


@dataclass
class HeadScores:
    """Per-head attention from the query rows to each document.

    ``query[l, h, d]`` is the attention mass head ``h`` of layer ``l`` puts on the tokens of
    document ``d``, summed over the document's tokens and averaged over the query-text tokens (so
    each value is in [0, 1] and a head's values over all documents sum to at most 1). ``calib`` is
    the same for the "N/A" query. Both are float32 on the CPU, ``[layers, heads, docs]``; heads not
    computed (``computed[l, h]`` False) are NaN.
    """

    query: torch.Tensor
    calib: torch.Tensor
    computed: torch.Tensor

    def calibrated(self) -> torch.Tensor:
        """ICR's calibrated score: query attention minus "N/A" attention, ``[layers, heads, docs]``."""
        return self.query - self.calib

    @property
    def num_docs(self) -> int:
        return self.query.shape[-1]


def head_mask(spec: ModelSpec, heads: HeadSelection = None) -> torch.Tensor:
    """Normalise a head selection to a bool ``[layers, heads]`` mask."""
    shape = spec.shape
    if heads is None:
        return torch.ones(shape, dtype=torch.bool)
    if isinstance(heads, torch.Tensor):
        if heads.dtype != torch.bool or tuple(heads.shape) != shape:
            raise ValueError(
                f"a head mask must be a bool tensor of shape {shape}, got {heads.dtype} {tuple(heads.shape)}"
            )
        return heads.detach().to("cpu", copy=True)
    mask = torch.zeros(shape, dtype=torch.bool)
    for layer, head in heads:
        if not (0 <= layer < shape[0] and 0 <= head < shape[1]):
            raise ValueError(f"head ({layer}, {head}) outside the model's {shape[0]} layers x {shape[1]} heads")
        mask[layer, head] = True
    return mask


def score_prompt(model: LoadedModel, prompt: ICRPrompt, heads: HeadSelection = None) -> HeadScores:
    """Per-head ICR attention for one prompt: one prefix prefill, then a query and an "N/A" pass."""
    spec = model.spec
    selected = head_mask(spec, heads)
    _check_prompt(prompt, spec)
    base = model.base_model
    if base.config._attn_implementation != ATTN_IMPLEMENTATION:
        raise ValueError(
            f"the model uses attention {base.config._attn_implementation!r}; load it with "
            f"routehead_pyserini.models.load_model so that it uses {ATTN_IMPLEMENTATION!r}"
        )
    by_layer = {layer: row.nonzero().flatten().tolist() for layer, row in enumerate(selected) if row.any()}
    n_docs = len(prompt.doc_spans)
    query = torch.full((*spec.shape, n_docs), float("nan"))
    calib = query.clone()
    if not by_layer:
        return HeadScores(query=query, calib=calib, computed=selected)

    deepest = max(by_layer)
    device = model.device
    with torch.inference_mode():
        cache = _prefill(base, prompt.prefix_ids, deepest, device)
        offset = len(prompt.prefix_ids)
        # Sliding-window layers drop old entries when a suffix is appended, so the first pass needs
        # a copy; without them, cropping the suffix off again is exact and costs no second cache.
        sliding = bool(spec.sliding_layers)
        passes = ((query, prompt.query_suffix_ids, prompt.query_span, copy.deepcopy(cache) if sliding else cache),
                  (calib, prompt.calib_suffix_ids, prompt.calib_span, cache))
        for out, suffix_ids, span, pass_cache in passes:
            recorder = QueryRowRecorder(rows=tuple(span), position_offset=offset, doc_spans=list(prompt.doc_spans),
                                        heads=by_layer, stop_at_layer=deepest)
            _run(base, suffix_ids, pass_cache, recorder, offset, device)
            if not sliding:
                pass_cache.crop(-len(suffix_ids))
            _collect(recorder, by_layer, out)
    return HeadScores(query=query, calib=calib, computed=selected)


def _collect(recorder: QueryRowRecorder, by_layer: dict[int, list[int]], out: torch.Tensor) -> None:
    """Copy the recorded ``[heads, docs]`` masses into ``out`` with one device-to-host transfer."""
    masses = [recorder.doc_mass(layer) for layer in by_layer]
    missing = [layer for layer, mass in zip(by_layer, masses) if mass is None]
    if missing:
        raise RuntimeError(f"layers {missing} recorded no attention; is the attention implementation active?")
    flat = torch.cat(masses).to("cpu", torch.float32)
    for (layer, layer_heads), mass in zip(by_layer.items(), flat.split([len(h) for h in by_layer.values()])):
        out[layer, layer_heads] = mass


def _prefill(base: torch.nn.Module, prefix_ids: Sequence[int], stop_layer: int, device: torch.device,
             chunk: int | None = None) -> DynamicCache:
    """Fill a KV cache with the prefix, for layers up to ``stop_layer`` only.

    The prefix goes through in chunks of ``chunk`` tokens: whatever an attention kernel
    materialises is then at most ``heads x chunk x prefix`` instead of ``heads x prefix x prefix``,
    which bounds peak memory on long candidate lists at no measurable cost in time.
    """
    cache = DynamicCache(config=base.config)
    chunk = chunk or PREFILL_CHUNK
    for start in range(0, len(prefix_ids), chunk):
        _run(base, prefix_ids[start:start + chunk], cache, QueryRowRecorder(stop_at_layer=stop_layer), start, device)
    return cache


def _run(base, token_ids: Sequence[int], cache: DynamicCache, recorder: QueryRowRecorder, offset: int, device) -> None:
    """One forward of ``token_ids`` at positions ``offset..`` on ``cache`` (no logits are computed)."""
    input_ids = torch.tensor([list(token_ids)], dtype=torch.long, device=device)
    positions = torch.arange(offset, offset + input_ids.shape[1], device=device)[None]
    run_forward(base, recorder, input_ids=input_ids, position_ids=positions, cache=cache, use_cache=True)


def _check_prompt(prompt: ICRPrompt, spec: ModelSpec) -> None:
    """Fail early, with a clear message, on spans or lengths the passes cannot handle."""
    n_prefix = len(prompt.prefix_ids)
    for doc, (start, end) in enumerate(prompt.doc_spans):
        if not 0 <= start <= end <= n_prefix:
            raise ValueError(f"document {doc} span ({start}, {end}) is outside the {n_prefix}-token prefix")
    for name, suffix, (start, end) in (("query", prompt.query_suffix_ids, prompt.query_span),
                                       ("calibration", prompt.calib_suffix_ids, prompt.calib_span)):
        if not 0 <= start < end <= len(suffix):
            raise ValueError(f"{name} span ({start}, {end}) is empty or outside its {len(suffix)}-token suffix")
        total = n_prefix + len(suffix)
        if spec.max_context is not None and total > spec.max_context:
            raise ValueError(f"prompt of {total} tokens exceeds the model context of {spec.max_context}")
