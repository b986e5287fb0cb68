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

Several prompts (the one-passage prompts of pointwise scoring, or the windows of one long
candidate list) can be scored together by :func:`score_prompts` in padded batches, with the same
sharing: one batched prefill of the prefixes, then one batched query pass and one batched "N/A"
pass on its cache. Prefixes are **left**-padded and suffixes **right**-padded, so every prompt's
real tokens are contiguous from its prefix into its suffix: causal and sliding-window masks
(which transformers computes on cache slots) then see exactly the distances they see unbatched.
Position ids are passed per prompt (its own ``0..n``), the 2-D attention mask hides the padding,
and the recorder places each prompt's spans on its own slots. Results equal the unbatched ones up
to float rounding.

**Shared template prefix.** Pointwise prompts all begin with the same tokens (the chat template's
system turn and the instruction, up to the first passage): 34 of about 160 tokens per SmolLM2
prompt. With a :class:`PrefixCache` (one per re-ranker), those tokens are run once per process and
layer depth; each batch starts from a copy of their keys and values repeated over the batch, and
only the rest of each prefix is prefilled (left-padded *after* the shared part, so every prompt's
real tokens keep their positions; the mask hides the padding). Sliding-window layers measure
distance in cache slots, so the padding would widen them: a model with such layers shares the
prefix only when the whole padded batch fits inside its smallest window (always true for pointwise
prompts of a few hundred tokens and Gemma 3's 512). Scores equal the unshared ones up to float
rounding (tested to 1e-5), so existing score caches stay valid.
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
    """The token layout :func:`score_prompt` needs (built by ``routehead_pyserini.engine.prompt``)."""

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


def score_prompt(model: LoadedModel, prompt: ICRPrompt, heads: HeadSelection = None, *,
                 exclude_sink: bool = False) -> HeadScores:
    """Per-head ICR attention for one prompt: one prefix prefill, then a query and an "N/A" pass.

    ``exclude_sink``: measure each query row's mass among all keys but the prompt's first token
    (the attention sink), i.e. divide it by ``1 - mass on the first token``.
    """
    spec = model.spec
    selected = head_mask(spec, heads)
    _check_prompt(prompt, spec)
    base = _checked_base(model)
    by_layer = _by_layer(selected)
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
                                        heads=by_layer, stop_at_layer=deepest, exclude_sink=exclude_sink)
            _run(base, suffix_ids, pass_cache, recorder, offset, device)
            if not sliding:
                pass_cache.crop(-len(suffix_ids))
            _collect(recorder, by_layer, out)
    return HeadScores(query=query, calib=calib, computed=selected)


class PrefixCache:
    """Keys and values of shared prompt heads, computed once per process (see the module docstring).

    Keyed by the head's token ids; an entry computed down to a deeper layer serves any shallower
    request. Holds a few small tensors (34 tokens x the model's layers for SmolLM2's template).
    """

    def __init__(self, max_entries: int = 8):
        self.max_entries = max_entries
        self._entries: dict[tuple[int, ...], tuple[int, DynamicCache]] = {}
        self.hits = 0
        self.misses = 0

    def get(self, base: torch.nn.Module, head_ids: Sequence[int], deepest: int, device) -> DynamicCache:
        key = tuple(head_ids)
        found = self._entries.get(key)
        if found is not None and found[0] >= deepest:
            self.hits += 1
            return found[1]
        self.misses += 1
        with torch.inference_mode():
            cache = _prefill(base, list(head_ids), deepest, device)
        if len(self._entries) >= self.max_entries:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (deepest, cache)
        return cache


def shared_head_length(prompts: Sequence[ICRPrompt]) -> int:
    """How many leading prefix tokens every prompt shares, stopping before any document's text."""
    first = prompts[0].prefix_ids
    limit = min(min((p.doc_spans[0][0] for p in prompts if p.doc_spans), default=0), *(len(p.prefix_ids) for p in prompts))
    n = 0
    while n < limit and all(p.prefix_ids[n] == first[n] for p in prompts):
        n += 1
    return n


def score_prompts(model: LoadedModel, prompts: Sequence[ICRPrompt], heads: HeadSelection = None, *,
                  batch_size: int = 1, exclude_sink: bool = False, prefix_cache: PrefixCache | None = None) -> list[HeadScores]:
    """:func:`score_prompt` for each of ``prompts``, ``batch_size`` prompts per forward.

    Prompts are grouped by length (longest first, so the first batch shows the peak memory at
    once) to keep padding small; the results come back in the input order. ``batch_size=1`` is
    exactly :func:`score_prompt` per prompt. ``prefix_cache``: share the prompts' common template
    head (computed once, kept in this cache) instead of prefilling it for every prompt.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if (batch_size == 1 and prefix_cache is None) or not prompts or (len(prompts) <= 1 and prefix_cache is None):
        return [score_prompt(model, p, heads, exclude_sink=exclude_sink) for p in prompts]
    spec = model.spec
    selected = head_mask(spec, heads)
    for prompt in prompts:
        _check_prompt(prompt, spec)
    base = _checked_base(model)
    by_layer = _by_layer(selected)
    results: list[HeadScores | None] = [None] * len(prompts)
    by_length = sorted(range(len(prompts)), key=lambda i: (-_longest(prompts[i]), i))
    for start in range(0, len(by_length), batch_size):
        batch = by_length[start:start + batch_size]
        for i, scores in zip(batch, _score_batch(model, base, [prompts[i] for i in batch], selected, by_layer,
                                                 exclude_sink, prefix_cache)):
            results[i] = scores
    return results


def _score_batch(model: LoadedModel, base: torch.nn.Module, prompts: Sequence[ICRPrompt], selected: torch.Tensor,
                 by_layer: dict[int, list[int]], exclude_sink: bool, prefix_cache: PrefixCache | None = None) -> list[HeadScores]:
    """One padded batch: a left-padded prefill (after the shared head, when there is one), then
    right-padded query and "N/A" passes on its cache."""
    spec = model.spec
    outs = [(torch.full((*spec.shape, len(p.doc_spans)), float("nan")),
             torch.full((*spec.shape, len(p.doc_spans)), float("nan"))) for p in prompts]
    if not by_layer:
        return [HeadScores(query=q, calib=c, computed=selected) for q, c in outs]
    deepest = max(by_layer)
    device = model.device
    lengths = [len(p.prefix_ids) for p in prompts]
    head = shared_head_length(prompts) if prefix_cache is not None else 0
    if head and spec.sliding_layers:  # padding after the head widens slot distances: only inside the window
        suffix = max(max(len(p.query_suffix_ids), len(p.calib_suffix_ids)) for p in prompts)
        if max(lengths) + (max(lengths) - min(lengths)) + suffix > min(w for w in spec.attention_windows if w):
            head = 0
    width = max(lengths)
    pads = [width - n for n in lengths]  # left padding: after the shared head, before the rest
    ids = torch.zeros(len(prompts), width - head, dtype=torch.long)
    mask = torch.ones(len(prompts), width, dtype=torch.long)
    positions = torch.zeros(len(prompts), width - head, dtype=torch.long)
    for b, (prompt, pad) in enumerate(zip(prompts, pads)):
        ids[b, pad:] = torch.as_tensor(prompt.prefix_ids[head:], dtype=torch.long)
        mask[b, head:head + pad] = 0
        positions[b, pad:] = torch.arange(head, lengths[b])
    doc_slots = [[(s + pad, e + pad) for s, e in p.doc_spans] for p, pad in zip(prompts, pads)]
    sinks = [0] * len(prompts) if head else pads  # each prompt's first token
    sliding = bool(spec.sliding_layers)
    with torch.inference_mode():
        start = None
        if head:
            start = _repeat_cache(prefix_cache.get(base, prompts[0].prefix_ids[:head], deepest, device), len(prompts), base,
                                  deepest + 1)
        cache = _prefill(base, ids, deepest, device, mask=mask, positions=positions, cache=start, offset=head)
        for which in ("query", "calib"):
            suffixes = [p.query_suffix_ids if which == "query" else p.calib_suffix_ids for p in prompts]
            spans = [tuple(p.query_span if which == "query" else p.calib_span) for p in prompts]
            suffix_width = max(len(x) for x in suffixes)
            suffix_ids = torch.zeros(len(prompts), suffix_width, dtype=torch.long)
            suffix_mask = torch.zeros(len(prompts), suffix_width, dtype=torch.long)
            for b, suffix in enumerate(suffixes):
                suffix_ids[b, :len(suffix)] = torch.as_tensor(suffix, dtype=torch.long)
                suffix_mask[b, :len(suffix)] = 1
            suffix_positions = torch.as_tensor(lengths)[:, None] + torch.arange(suffix_width)[None]
            pass_cache = copy.deepcopy(cache) if sliding and which == "query" else cache
            recorder = QueryRowRecorder(row_spans=spans, position_offset=width, batch_doc_spans=doc_slots,
                                        heads=by_layer, stop_at_layer=deepest, exclude_sink=exclude_sink,
                                        sink_slots=sinks, padded=True)
            run_forward(base, recorder, input_ids=suffix_ids.to(device),
                        attention_mask=torch.cat([mask, suffix_mask], dim=1).to(device),
                        position_ids=suffix_positions.to(device), cache=pass_cache, use_cache=True)
            if not sliding:
                pass_cache.crop(-suffix_width)
            masses = _gather(recorder, by_layer)  # [layers selected..., batch, heads, max docs] on the CPU
            for b, prompt in enumerate(prompts):
                out = outs[b][0 if which == "query" else 1]
                n_docs = len(prompt.doc_spans)
                for layer, mass in masses.items():
                    out[layer, by_layer[layer]] = mass[b, :, :n_docs]
    return [HeadScores(query=q, calib=c, computed=selected) for q, c in outs]


def _gather(recorder: QueryRowRecorder, by_layer: dict[int, list[int]]) -> dict[int, torch.Tensor]:
    """The recorded ``[batch, heads, docs]`` masses per layer, moved to the CPU in one transfer."""
    masses = [recorder.doc_mass(layer) for layer in by_layer]
    missing = [layer for layer, mass in zip(by_layer, masses) if mass is None]
    if missing:
        raise RuntimeError(f"layers {missing} recorded no attention; is the attention implementation active?")
    flat = torch.cat(masses, dim=1).to("cpu", torch.float32)
    return dict(zip(by_layer, flat.split([len(h) for h in by_layer.values()], dim=1)))


def _longest(prompt: ICRPrompt) -> int:
    return len(prompt.prefix_ids) + max(len(prompt.query_suffix_ids), len(prompt.calib_suffix_ids))


def _by_layer(selected: torch.Tensor) -> dict[int, list[int]]:
    """Layer -> selected head indices, for the layers with at least one selected head."""
    return {layer: row.nonzero().flatten().tolist() for layer, row in enumerate(selected) if row.any()}


def _checked_base(model: LoadedModel) -> torch.nn.Module:
    base = model.base_model
    if base.config._attn_implementation != ATTN_IMPLEMENTATION:
        raise ValueError(
            f"the model uses attention {base.config._attn_implementation!r}; load it with "
            f"routehead_pyserini.engine.models.load_model so that it uses {ATTN_IMPLEMENTATION!r}"
        )
    return base


def _collect(recorder: QueryRowRecorder, by_layer: dict[int, list[int]], out: torch.Tensor) -> None:
    """Copy the recorded ``[heads, docs]`` masses into ``out`` with one device-to-host transfer."""
    masses = [recorder.doc_mass(layer) for layer in by_layer]
    missing = [layer for layer, mass in zip(by_layer, masses) if mass is None]
    if missing:
        raise RuntimeError(f"layers {missing} recorded no attention; is the attention implementation active?")
    flat = torch.cat(masses).to("cpu", torch.float32)
    for (layer, layer_heads), mass in zip(by_layer.items(), flat.split([len(h) for h in by_layer.values()])):
        out[layer, layer_heads] = mass


def _repeat_cache(cache: DynamicCache, batch: int, base: torch.nn.Module, layers: int) -> DynamicCache:
    """A new cache holding the first ``layers`` layers of ``cache`` (batch 1) repeated ``batch`` times."""
    out = DynamicCache(config=base.config)
    for layer_idx, layer in enumerate(cache.layers[:layers]):
        if getattr(layer, "keys", None) is None or layer.keys.numel() == 0:
            break
        out.update(layer.keys.expand(batch, *layer.keys.shape[1:]).contiguous(),
                   layer.values.expand(batch, *layer.values.shape[1:]).contiguous(), layer_idx)
    return out


def _prefill(base: torch.nn.Module, prefix_ids: Sequence[int] | torch.Tensor, stop_layer: int, device: torch.device,
             chunk: int | None = None, *, mask: torch.Tensor | None = None,
             positions: torch.Tensor | None = None, cache: DynamicCache | None = None, offset: int = 0) -> DynamicCache:
    """Fill a KV cache with the prefix, for layers up to ``stop_layer`` only.

    The prefix goes through in chunks of ``chunk`` tokens: whatever an attention kernel
    materialises is then at most ``heads x chunk x prefix`` instead of ``heads x prefix x prefix``,
    which bounds peak memory on long candidate lists at no measurable cost in time.

    A padded batch passes ``prefix_ids`` as a ``[batch, width]`` tensor with its 2-D ``mask``
    (1 = token, 0 = padding) and per-token ``positions``. ``cache``/``offset``: continue a cache
    that already holds ``offset`` slots (a shared head); ``mask`` then covers those slots too.
    """
    cache = DynamicCache(config=base.config) if cache is None else cache
    chunk = chunk or PREFILL_CHUNK
    if mask is None:
        for start in range(0, len(prefix_ids), chunk):
            _run(base, prefix_ids[start:start + chunk], cache, QueryRowRecorder(stop_at_layer=stop_layer), start, device)
        return cache
    for start in range(0, prefix_ids.shape[1], chunk):
        end = start + chunk
        run_forward(base, QueryRowRecorder(stop_at_layer=stop_layer, padded=True),
                    input_ids=prefix_ids[:, start:end].to(device), attention_mask=mask[:, :offset + end].to(device),
                    position_ids=positions[:, start:end].to(device), cache=cache, use_cache=True)
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
