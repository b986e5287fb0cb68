"""Query-row attention: read a few rows of the attention pattern without materialising it.

In-Context Re-ranking needs, per (layer, head), how much attention the query tokens pay to each
document's tokens. Eager attention with ``output_attentions=True`` would give that, but it builds
every ``[heads, seq, seq]`` map of every layer (gigabytes at 1,500 tokens). Instead we register an
attention function with ``transformers.AttentionInterface`` (and pair it with SDPA's mask function in
``AttentionMaskInterface``) that

1. computes the layer output with ``torch.nn.functional.scaled_dot_product_attention`` exactly as the
   built-in ``"sdpa"`` integration does (it calls that integration), and
2. only when a :class:`QueryRowRecorder` is passed to the model call as ``routehead_recorder=...``
   (transformers forwards unknown keyword arguments from ``model(...)`` through every decoder layer
   to the attention function), computes ``softmax(Q K^T * scale + mask)`` for the recorder's query
   rows and the requested heads of that layer only, reduces it at once to the attention mass on
   each document's key span, and stores that ``[heads, docs]`` result.

The recorder can also stop the forward pass at a given layer (:data:`QueryRowRecorder.stop_at_layer`):
the attention function of that layer raises a private exception after the cache update and the
recording, so later layers (and that layer's output projection and MLP) never run. The model is
never modified; :func:`run_forward` catches the exception.

Stable, greppable names (TransformerLens style):

``ATTN_IMPLEMENTATION = "routehead_query_rows"``
    the ``attn_implementation`` name the models are loaded with (see :func:`register`).
``RECORDER_KWARG = "routehead_recorder"``
    the forward keyword argument that carries a :class:`QueryRowRecorder`.
``blocks.{layer}.attn.hook_doc_mass``
    key in ``QueryRowRecorder.cache`` (see :func:`doc_mass_hook_name`): a float32 tensor
    ``[n_selected_heads, n_docs]`` (``[batch, n_selected_heads, n_docs]`` for a padded batch of
    prompts), the attention mass of each selected head on each document,
    **averaged over the recorded query rows** (each row's mass is the sum of its softmax
    probabilities over the document's key positions, so it lies in [0, 1]).
``QueryRowRecorder.hook_layers_run``
    the layer indices whose attention function ran during the call (to check early stopping).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

logger = logging.getLogger(__name__)

ATTN_IMPLEMENTATION = "routehead_query_rows"
RECORDER_KWARG = "routehead_recorder"
DOC_MASS_HOOK = "blocks.{layer}.attn.hook_doc_mass"

# Rows of the explicit (softcapped) output path computed at once; bounds its memory to
# heads x chunk x keys floats instead of heads x seq x seq.
_EAGER_OUTPUT_CHUNK = 256


def doc_mass_hook_name(layer: int) -> str:
    """The recorder cache key for one layer's per-document attention mass."""
    return DOC_MASS_HOOK.format(layer=layer)


class _ForwardStopped(Exception):
    """Raised inside the stop layer's attention to end the forward pass early (caught by run_forward)."""


@dataclass
class QueryRowRecorder:
    """What to record during one forward call, and where the results go.

    Inputs:
        rows: ``[start, end)`` indices of the query rows to record, relative to this call's input
            tokens; ``None`` records nothing (e.g. a prefill pass that only fills the cache).
        position_offset: absolute position of this call's first token (the number of tokens
            already in the KV cache). Needed to place document spans on the cached keys, which
            for sliding-window layers no longer start at position 0.
        doc_spans: ``[start, end)`` absolute token positions of each document.
        heads: layer index -> head indices to record in that layer.
        stop_at_layer: end the forward inside this layer's attention (after its KV cache update
            and recording); ``None`` runs the whole model.
        exclude_sink: divide each row's mass by ``1 - (its mass on the prompt's first token)``,
            i.e. measure the attention share among all keys but the attention sink.

    Padded batches (several prompts in one call, see :mod:`.scoring`): positions above are then
    *cache slots* (``position_offset`` + index in this call), which differ from the token positions
    of a left-padded prompt by its padding; and per batch element:

        row_spans: the ``rows`` of each element (replaces ``rows``);
        batch_doc_spans: the ``doc_spans`` of each element, in slots (elements may hold different
            numbers of documents; missing ones record 0);
        sink_slots: the slot of each element's first token (for ``exclude_sink``; default 0);
        padded: the batch holds padding, so some rows (left padding) see no key at all; such
            rows are given their whole row back, which keeps their (discarded) outputs finite
            whatever the kernel (a NaN there would reach real rows as 0 x NaN in later layers).

    Outputs:
        cache: ``blocks.{layer}.attn.hook_doc_mass`` -> float32 ``[len(heads[layer]), n_docs]``,
            averaged over the rows (on the model's device); ``[batch, len(heads[layer]),
            max docs]`` when ``row_spans`` or ``batch_doc_spans`` is given.
        hook_layers_run: layers whose attention function ran.
    """

    rows: tuple[int, int] | None = None
    position_offset: int = 0
    doc_spans: Sequence[tuple[int, int]] = ()
    heads: Mapping[int, Sequence[int]] = field(default_factory=dict)
    stop_at_layer: int | None = None
    exclude_sink: bool = False
    row_spans: Sequence[tuple[int, int]] | None = None
    batch_doc_spans: Sequence[Sequence[tuple[int, int]]] | None = None
    sink_slots: Sequence[int] | None = None
    padded: bool = False
    cache: dict[str, torch.Tensor] = field(default_factory=dict)
    hook_layers_run: list[int] = field(default_factory=list)
    # Index tensors built once per device rather than once per layer (on a GPU every small
    # host-to-device copy is a synchronisation point).
    _device_tensors: dict[tuple, torch.Tensor] = field(default_factory=dict, init=False, repr=False)

    @property
    def batched(self) -> bool:
        """Whether rows or documents are given per batch element (results get a batch dimension)."""
        return self.row_spans is not None or self.batch_doc_spans is not None

    @property
    def recording(self) -> bool:
        return self.rows is not None or self.row_spans is not None

    def row_range(self) -> tuple[int, int]:
        """The union ``[start, end)`` of the rows of all batch elements."""
        if self.row_spans is None:
            return tuple(self.rows)
        return min(s for s, _ in self.row_spans), max(e for _, e in self.row_spans)

    def doc_mass(self, layer: int) -> torch.Tensor | None:
        """The recorded ``[heads, docs]`` mass for ``layer``, or None if it was not recorded."""
        return self.cache.get(doc_mass_hook_name(layer))

    def head_index(self, layer: int, device: torch.device) -> torch.Tensor:
        """The selected heads of ``layer`` as a long tensor on ``device``."""
        key = ("heads", layer, device)
        if key not in self._device_tensors:
            self._device_tensors[key] = torch.as_tensor(list(self.heads[layer]), dtype=torch.long, device=device)
        return self._device_tensors[key]

    def doc_bounds(self, device: torch.device) -> torch.Tensor:
        """Document spans as a ``[batch or 1, 2, docs]`` long tensor (starts, ends) on ``device``."""
        key = ("docs", device)
        if key not in self._device_tensors:
            per_element = self.batch_doc_spans if self.batch_doc_spans is not None else [self.doc_spans]
            n_docs = max((len(spans) for spans in per_element), default=0)
            bounds = torch.zeros(len(per_element), 2, n_docs, dtype=torch.long)  # (0, 0): no document
            for b, spans in enumerate(per_element):
                if spans:
                    bounds[b, :, :len(spans)] = torch.as_tensor(list(spans), dtype=torch.long).reshape(-1, 2).T
            self._device_tensors[key] = bounds.to(device)
        return self._device_tensors[key]

    def row_weights(self, device: torch.device) -> torch.Tensor | None:
        """``[batch, rows]`` weights averaging each element over its own rows; None when all share them."""
        if self.row_spans is None or len(set(map(tuple, self.row_spans))) == 1:
            return None
        key = ("rows", device)
        if key not in self._device_tensors:
            start, end = self.row_range()
            index = torch.arange(start, end)[None]
            spans = torch.as_tensor(list(self.row_spans), dtype=torch.long)
            inside = ((index >= spans[:, :1]) & (index < spans[:, 1:])).float()
            self._device_tensors[key] = (inside / inside.sum(-1, keepdim=True)).to(device)
        return self._device_tensors[key]

    def sink_index(self, device: torch.device) -> torch.Tensor | None:
        """The slot of each element's first token as a ``[batch or 1]`` tensor, when excluding the sink."""
        if not self.exclude_sink:
            return None
        key = ("sink", device)
        if key not in self._device_tensors:
            self._device_tensors[key] = torch.as_tensor(list(self.sink_slots or [0]), dtype=torch.long, device=device)
        return self._device_tensors[key]


def register() -> str:
    """Register the attention and mask functions under :data:`ATTN_IMPLEMENTATION` (idempotent).

    The mask function is SDPA's: our output path is SDPA, and the row path reads the same mask.
    Without a mask-interface entry transformers would build no mask at all for a custom name.
    """
    AttentionInterface.register(ATTN_IMPLEMENTATION, query_rows_attention_forward)
    AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)
    return ATTN_IMPLEMENTATION


def run_forward(base_model: torch.nn.Module, recorder: QueryRowRecorder | None = None, **model_kwargs: Any) -> bool:
    """Call ``base_model(**model_kwargs)`` with the recorder; returns True if it stopped early.

    The output is discarded: everything we need is in the recorder and the KV cache.
    """
    if recorder is not None:
        model_kwargs[RECORDER_KWARG] = recorder
    try:
        base_model(**model_kwargs)
    except _ForwardStopped:
        return True
    return False


def query_rows_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """The registered attention function: SDPA output plus optional query-row recording.

    Shapes follow transformers: query ``[B, H, q, d]``, key/value ``[B, H_kv, k, d]`` (already
    rotated and cache-extended), mask ``[B, 1, q, k]`` (bool, or additive float) or None.
    """
    recorder: QueryRowRecorder | None = kwargs.pop(RECORDER_KWARG, None)
    if recorder is None:
        return _output(module, query, key, value, attention_mask, dropout, scaling, **kwargs)

    layer = int(module.layer_idx)
    recorder.hook_layers_run.append(layer)
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    if recorder.padded and attention_mask is not None:
        attention_mask = _unmask_empty_rows(attention_mask)
    heads = recorder.heads.get(layer)
    if recorder.recording and heads:
        if not recorder.batched and query.shape[0] != 1:
            raise ValueError(f"a batch of {query.shape[0]} prompts needs per-element row_spans/batch_doc_spans")
        mass = query_row_doc_mass(
            query, key, attention_mask,
            rows=recorder.row_range(),
            row_weights=recorder.row_weights(query.device),
            heads=recorder.head_index(layer, query.device),
            scaling=scaling,
            softcap=kwargs.get("softcap"),
            position_offset=recorder.position_offset,
            doc_bounds=recorder.doc_bounds(query.device),
            sink=recorder.sink_index(query.device),
        )
        recorder.cache[doc_mass_hook_name(layer)] = mass if recorder.batched else mass[0]
    if recorder.stop_at_layer is not None and layer >= recorder.stop_at_layer:
        # Nothing downstream of this layer is needed; its KV were cached before this call.
        raise _ForwardStopped()
    return _output(module, query, key, value, attention_mask, dropout, scaling, **kwargs)


def _output(module, query, key, value, attention_mask, dropout, scaling, **kwargs) -> tuple[torch.Tensor, None]:
    """The layer output: the stock SDPA integration, or an explicit row-chunked path for softcapping."""
    softcap = kwargs.get("softcap")
    if softcap is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    return _softcapped_output(module, query, key, value, attention_mask, scaling, softcap)


def _softcapped_output(module, query, key, value, attention_mask, scaling, softcap) -> tuple[torch.Tensor, None]:
    """Attention with logit softcapping (SDPA cannot do it), computed in row chunks.

    Matches transformers' eager path for softcapped models (Gemma 2): scale, tanh-cap, add the mask,
    softmax in float32. Chunking keeps memory at ``heads x chunk x keys``.
    """
    n_rep = query.shape[1] // key.shape[1]
    key = _repeat_kv(key, n_rep)
    value = _repeat_kv(value, n_rep)
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    q_len, k_len = query.shape[2], key.shape[2]
    outputs = []
    for start in range(0, q_len, _EAGER_OUTPUT_CHUNK):
        end = min(start + _EAGER_OUTPUT_CHUNK, q_len)
        scores = torch.matmul(query[:, :, start:end], key.transpose(2, 3)) * scaling
        scores = torch.tanh(scores / softcap) * softcap
        scores = _apply_mask(scores, attention_mask, start, end, q_len, k_len)
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
        outputs.append(torch.matmul(probs, value))
    out = torch.cat(outputs, dim=2).transpose(1, 2).contiguous()
    return out, None


def _repeat_kv(states: torch.Tensor, n_rep: int) -> torch.Tensor:
    """[B, H_kv, k, d] -> [B, H_kv * n_rep, k, d] (GQA: query head h reads KV head h // n_rep)."""
    if n_rep == 1:
        return states
    return states.repeat_interleave(n_rep, dim=1)


def _apply_mask(
    scores: torch.Tensor, mask: torch.Tensor | None, start: int, end: int, q_len: int, k_len: int
) -> torch.Tensor:
    """Apply the attention mask to score rows ``[start, end)`` of a ``[.., q_len, k_len]`` problem.

    A None mask means what it means to the SDPA integration: plain causal attention with SDPA's
    upper-left alignment when there are several query rows (transformers only drops the mask when
    that is correct), and no mask for a single query row.
    """
    if mask is not None:
        rows = mask[..., start:end, :]
        if rows.dtype == torch.bool:
            return scores.masked_fill(~rows, float("-inf"))
        return scores + rows
    if q_len == 1:
        return scores
    q_idx = torch.arange(start, end, device=scores.device)[:, None]
    k_idx = torch.arange(k_len, device=scores.device)[None, :]
    return scores.masked_fill(k_idx > q_idx, float("-inf"))


def _unmask_empty_rows(mask: torch.Tensor) -> torch.Tensor:
    """Give rows that see no key at all (left padding) their whole row: their outputs are discarded."""
    if mask.dtype == torch.bool:
        return mask | ~mask.any(dim=-1, keepdim=True)
    return mask.masked_fill(torch.isinf(mask).all(dim=-1, keepdim=True), 0.0)


def query_row_doc_mass(
    query: torch.Tensor,
    key: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    rows: tuple[int, int],
    heads: torch.Tensor,
    scaling: float,
    softcap: float | None,
    position_offset: int,
    doc_bounds: torch.Tensor,
    row_weights: torch.Tensor | None = None,
    sink: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-document attention mass of the selected heads, averaged over query rows ``rows``.

    ``heads``: long tensor of query-head indices; ``doc_bounds``: ``[batch or 1, 2, docs]``
    ``[start, end)`` positions (cache slots); ``row_weights``: ``[batch, rows]`` weights of the rows
    ``[start, end)`` per batch element (None: a plain mean); ``sink``: ``[batch or 1]`` slot of the
    first token, whose mass is then left out of each row's total (the row is renormalised over the
    other keys). Only ``[batch, len(heads), n_rows, keys]`` scores are formed (in float32 for
    accuracy whatever the model dtype). Returns float32 ``[batch, len(heads), n_docs]``.
    """
    start, end = rows
    q_len, k_len = query.shape[2], key.shape[2]
    if not 0 <= start < end <= q_len:
        raise ValueError(f"query rows {rows} out of range for {q_len} query tokens")
    n_rep = query.shape[1] // key.shape[1]
    q = query[:, heads, start:end].float()  # [b, h, r, d]
    k = key[:, heads // n_rep].float()  # [b, h, k, d]: the KV head each query head reads
    scores = torch.matmul(q, k.transpose(-1, -2)) * scaling
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    scores = _apply_mask(scores, attention_mask, start, end, q_len, k_len)
    probs = torch.softmax(scores, dim=-1)  # [b, h, r, k]
    # The cached keys end with this call's tokens, so key index 0 is slot:
    kv_offset = position_offset + q_len - k_len
    segments = _doc_indicator(doc_bounds, kv_offset, k_len)  # [b, k, docs]
    mass = torch.matmul(probs, segments[:, None])  # [b, h, r, docs]
    if sink is not None:
        # A sink outside a sliding window has no key: its mass is 0 and nothing changes.
        sink_key = (torch.arange(k_len, device=probs.device)[None] == (sink - kv_offset)[:, None]).to(probs.dtype)
        sink_mass = torch.matmul(probs, sink_key[:, None, :, None])  # [b, h, r, 1]
        mass = mass / (1.0 - sink_mass).clamp_min(1e-6)
    if row_weights is None:
        return mass.mean(dim=2)
    return (mass * row_weights[:, None, :, None]).sum(dim=2)


def _doc_indicator(doc_bounds: torch.Tensor, kv_offset: int, k_len: int) -> torch.Tensor:
    """A ``[batch or 1, keys, docs]`` 0/1 tensor marking each document's key positions.

    Key index ``i`` holds slot ``kv_offset + i``. Document tokens that a sliding-window layer no
    longer holds have no key, which is right: the mask gives them zero probability.
    """
    positions = torch.arange(k_len, device=doc_bounds.device)[None, :, None] + kv_offset
    return ((positions >= doc_bounds[:, :1]) & (positions < doc_bounds[:, 1:])).float()
