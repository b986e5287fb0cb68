"""Query embeddings from a frozen causal LM: the input of the RouteHead router.

The router must pick a query's heads *before* the long re-ranking forward pass (so that the heads it
picks can also bound how deep that pass goes). So a query is embedded from the **query text alone**:
the hidden state after one decoder layer, pooled over the query's tokens, with the forward pass
stopped right after that layer.

Design choices, and why:

- **Early stop through a forward hook.** A hook on decoder layer ``layer`` stores that layer's output
  and raises the private stop exception of :mod:`.attention`, which :func:`attention.run_forward`
  catches; later layers, the final norm and the LM head never run. A :class:`QueryRowRecorder` with
  ``stop_at_layer`` would not do: it stops *inside* a layer's attention, before that layer's output
  exists (we would have to stop in layer ``layer + 1`` and read its input, and there is no such
  layer after the last one). The hook is removed whatever happens. Checked with transformers 5.24:
  ``LlamaModel.forward`` is wrapped by ``capture_outputs``, which only installs hooks of its own when
  ``output_hidden_states``/``output_attentions`` are asked for, so an exception from our hook passes
  straight through it.
- **The raw residual stream**, without the model's final norm, for every layer (the last one
  included): the same quantity at every depth. The router standardises its input, so the scale of the
  residual stream (large, with a few outlier dimensions) does not matter.
- **Default layer: the middle one** (``num_layers // 2``). Middle layers carry more of the query's
  meaning than the last, which is shaped for next-token prediction, and cost half a forward pass.
- **Pooling over the query's own tokens only.** Special tokens (BOS, chat-template scaffolding) are
  left out: the first token of a sequence is an attention sink whose hidden state has a huge norm
  (over 4,000 in one dimension for SmolLM2, against about 150 for the other tokens) and would
  dominate a mean. So a BOS token (the tokenizer's, where it has one) always comes first, even for
  tokenizers that do not add one (SmolLM2's does not), and is not pooled.
  ``"mean"`` averages the query's tokens; ``"last"`` takes the last query token (with the causal
  mask, the one that has read the whole query).
- **Right padding** with an attention mask: under the causal mask, real tokens never see the padding
  after them and keep positions ``0..n-1``, so a query's embedding does not depend on its batch
  (checked to 1e-5 by the tests). Batches are formed from queries sorted by length (little padding);
  the results come back in input order.
- ``template=True`` renders the query as the user turn of the model's chat template (with the
  generation prompt), as the ICR prompt does; pooling still covers only the query's tokens.
"""
from __future__ import annotations

import logging
from typing import Any, Literal, Sequence

import torch
from tqdm import tqdm

from . import attention
from ..errors import UserError
from .models import LoadedModel, ModelSpec

logger = logging.getLogger(__name__)

POOLINGS = ("mean", "last")
Pooling = Literal["mean", "last"]


class QueryEmbeddingError(UserError, ValueError):
    """A query or an option that cannot be embedded (empty query, bad layer or pooling)."""


def default_layer(spec: ModelSpec) -> int:
    """The layer queries are embedded at when none is given: the middle one."""
    return spec.num_layers // 2


def resolve_layer(spec: ModelSpec, layer: int | None) -> int:
    """``layer`` as a 0-based index (``None``: :func:`default_layer`; negative: Python-style)."""
    if layer is None:
        return default_layer(spec)
    n = spec.num_layers
    if not -n <= int(layer) < n:
        raise QueryEmbeddingError(f"layer {layer} is outside the model's {n} decoder layers (use -{n}..{n - 1})")
    return int(layer) % n


def decoder_layers(base_model: torch.nn.Module) -> torch.nn.ModuleList:
    """The decoder layer list of a (possibly multimodal) base model."""
    for owner in (base_model, getattr(base_model, "language_model", None)):
        layers = getattr(owner, "layers", None)
        if isinstance(layers, torch.nn.ModuleList):
            return layers
    raise QueryEmbeddingError(f"cannot find the decoder layers of {type(base_model).__name__}")


def tokenize_queries(tokenizer: Any, queries: Sequence[str], *, template: bool = False) -> list[tuple[list[int], tuple[int, int]]]:
    """Token ids of each query and the ``[start, end)`` token range of the query's own text.

    The range covers the tokens overlapping the query's characters (in the rendered chat prompt with
    ``template``), never special tokens. When the query would start the sequence, the tokenizer's BOS
    token (if it has one) is put before it.
    """
    if tokenizer is None:
        raise QueryEmbeddingError("the model has no tokenizer; embedding queries needs one")
    use_template = template and bool(getattr(tokenizer, "chat_template", None))
    if template and not use_template:
        logger.warning("the tokenizer has no chat template; embedding the plain query text")
    # A query that starts at position 0 would make its first token the attention sink (a hidden
    # state with a huge norm): put a BOS token there instead, outside the pooled span.
    sink = getattr(tokenizer, "bos_token_id", None)
    out = []
    for query in queries:
        if not isinstance(query, str) or not query.strip():
            raise QueryEmbeddingError(f"cannot embed an empty query ({query!r})")
        text, char_start = query, 0
        if use_template:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": query}], tokenize=False, add_generation_prompt=True
            )
            char_start = text.find(query)
            if char_start < 0:
                raise QueryEmbeddingError("the chat template altered the query text; pass template=False")
        char_end = char_start + len(query)
        encoded = tokenizer(text, add_special_tokens=not use_template, return_offsets_mapping=True)
        ids = list(encoded["input_ids"])
        inside = [i for i, (s, e) in enumerate(encoded["offset_mapping"]) if e > s and s < char_end and e > char_start]
        if not inside:
            raise QueryEmbeddingError(f"query {query!r} produced no tokens")
        span = (inside[0], inside[-1] + 1)
        if span[0] == 0 and sink is not None:
            ids, span = [sink] + ids, (1, span[1] + 1)
        out.append((ids, span))
    return out


def embed_token_ids(
    model: LoadedModel,
    items: Sequence[tuple[Sequence[int], tuple[int, int]]],
    *,
    layer: int | None = None,
    pooling: Pooling = "mean",
    batch_size: int = 16,
    pad_token_id: int = 0,
    progress: bool = False,
) -> torch.Tensor:
    """Embed token sequences: ``items`` are ``(ids, (start, end))`` with the span to pool over.

    Returns float32 ``[N, hidden]`` on the CPU. See :func:`embed_queries`.
    """
    if pooling not in POOLINGS:
        raise QueryEmbeddingError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if batch_size < 1:
        raise QueryEmbeddingError(f"batch_size must be at least 1, got {batch_size}")
    layer = resolve_layer(model.spec, layer)
    hidden = int(model.model.config.get_text_config(decoder=True).hidden_size)
    result = torch.empty(len(items), hidden, dtype=torch.float32)
    if not items:
        return result
    for ids, (start, end) in items:
        if not 0 <= start < end <= len(ids):
            raise QueryEmbeddingError(f"pooling span {(start, end)} is outside a sequence of {len(ids)} tokens")
    order = sorted(range(len(items)), key=lambda i: (len(items[i][0]), i))
    device = model.device
    captured: list[torch.Tensor] = []

    def stop_after(_module, _args, output):
        captured.append(output[0] if isinstance(output, tuple) else output)
        raise attention._ForwardStopped()

    handle = decoder_layers(model.base_model)[layer].register_forward_hook(stop_after)
    try:
        with torch.inference_mode(), tqdm(total=len(items), desc=f"embed queries (layer {layer})", unit="query",
                                          disable=not progress) as bar:
            for first in range(0, len(order), batch_size):
                batch = order[first:first + batch_size]
                width = max(len(items[i][0]) for i in batch)
                input_ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                pool = torch.zeros((len(batch), width), dtype=torch.float32)
                for row, i in enumerate(batch):
                    ids, (start, end) = items[i]
                    input_ids[row, :len(ids)] = torch.as_tensor(list(ids), dtype=torch.long)
                    mask[row, :len(ids)] = 1
                    if pooling == "mean":
                        pool[row, start:end] = 1.0 / (end - start)
                    else:
                        pool[row, end - 1] = 1.0
                captured.clear()
                stopped = attention.run_forward(model.base_model, None, input_ids=input_ids.to(device),
                                                attention_mask=mask.to(device), use_cache=False)
                if not stopped or len(captured) != 1:
                    raise RuntimeError(f"the forward pass did not stop after decoder layer {layer}")
                states = captured[0].float()  # [B, T, hidden]
                pooled = torch.einsum("bt,bth->bh", pool.to(states.device), states)
                result[torch.as_tensor(batch)] = pooled.cpu()
                bar.update(len(batch))
    finally:
        handle.remove()
    return result


def embed_queries(
    model: LoadedModel,
    queries: Sequence[str],
    *,
    layer: int | None = None,
    pooling: Pooling = "mean",
    batch_size: int = 16,
    template: bool = False,
    progress: bool | None = None,
) -> torch.Tensor:
    """Embed each query as the hidden state after decoder layer ``layer``, pooled over its tokens.

    ``layer``: 0-based, negative counts from the end, ``None`` = the middle layer. ``pooling``:
    ``"mean"`` over the query's tokens or the ``"last"`` query token. ``template``: render the query
    in the model's chat template first. ``progress``: a tqdm bar (default: on for more than 64
    queries). Returns float32 ``[N, hidden]`` on the CPU, in the order of ``queries``; deterministic
    and independent of ``batch_size``. The forward pass stops after ``layer``.
    """
    if isinstance(queries, str):
        raise QueryEmbeddingError("queries must be a sequence of strings, not one string")
    items = tokenize_queries(model.tokenizer, queries, template=template)
    pad = getattr(model.tokenizer, "pad_token_id", None)
    if pad is None:
        pad = getattr(model.tokenizer, "eos_token_id", None) or 0
    if progress is None:
        progress = len(items) > 64
    return embed_token_ids(model, items, layer=layer, pooling=pooling, batch_size=batch_size,
                           pad_token_id=int(pad), progress=progress)
