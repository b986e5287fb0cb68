"""Query embeddings: the hidden state after one decoder layer over the query alone, pooled."""
from __future__ import annotations

import pytest
import torch

from helpers import QUERIES, WORDS, word_tokenizer

from routehead_pyserini.engine.query_embedding import (QueryEmbeddingError, decoder_layers, default_layer, embed_queries, resolve_layer, tokenize_queries)


@pytest.fixture
def tiny(tiny_llama):
    tiny_llama.tokenizer = word_tokenizer()
    return tiny_llama


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> bool:
    return (a - b).abs().max().item() <= tol * max(1.0, b.abs().max().item())


def reference(loaded, query: str, layer: int, pooling: str) -> torch.Tensor:
    """Full forward of one unpadded query with output_hidden_states, pooled by hand."""
    [(ids, (start, end))] = tokenize_queries(loaded.tokenizer, [query])
    with torch.inference_mode():
        out = loaded.base_model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    states = out.hidden_states[layer + 1][0]  # index 0 is the embedding output
    return states[start:end].mean(0) if pooling == "mean" else states[end - 1]


def test_tokenize_puts_bos_first_and_pools_only_the_query(tiny):
    [(ids, span)] = tokenize_queries(tiny.tokenizer, ["how long do fleas live"])
    assert ids[0] == 1 and span == (1, len(ids))


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_shape_and_matches_full_forward(tiny, pooling):
    emb = embed_queries(tiny, QUERIES, layer=1, pooling=pooling, batch_size=3)
    assert emb.shape == (len(QUERIES), 64) and emb.dtype == torch.float32 and emb.device.type == "cpu"
    for i, query in enumerate(QUERIES):
        assert close(emb[i], reference(tiny, query, 1, pooling))


def test_batch_size_and_padding_invariance(tiny):
    """One query at a time, all at once, and beside a much longer query: the same vectors."""
    one = embed_queries(tiny, QUERIES, layer=-1, batch_size=1)
    every = embed_queries(tiny, QUERIES, layer=-1, batch_size=len(QUERIES))
    assert close(one, every)
    long_query = " ".join(WORDS * 3)
    padded = embed_queries(tiny, [QUERIES[3], long_query], layer=-1, batch_size=2)[0]
    assert close(padded, one[3])
    again = embed_queries(tiny, QUERIES, layer=-1, batch_size=1)
    assert torch.equal(one, again)  # deterministic


def test_early_stop_skips_later_layers(tiny):
    calls = []
    hooks = [layer.register_forward_pre_hook(lambda _m, _a, i=i: calls.append(i))
             for i, layer in enumerate(decoder_layers(tiny.base_model))]
    try:
        embed_queries(tiny, QUERIES[:3], layer=1, batch_size=3)
        assert calls == [0, 1]
        calls.clear()
        embed_queries(tiny, QUERIES[:3], layer=-1, batch_size=2)
        assert calls == [0, 1, 2, 3] * 2
    finally:
        for hook in hooks:
            hook.remove()
    # the hook is gone: a normal forward runs every layer and returns
    with torch.inference_mode():
        out = tiny.base_model(input_ids=torch.tensor([[1, 5, 6]]))
    assert out.last_hidden_state.shape == (1, 3, 64)


def test_layers_and_errors(tiny):
    assert default_layer(tiny.spec) == 2 and resolve_layer(tiny.spec, None) == 2
    assert resolve_layer(tiny.spec, -1) == 3 and resolve_layer(tiny.spec, -4) == 0
    assert close(embed_queries(tiny, QUERIES[:2], layer=-1), embed_queries(tiny, QUERIES[:2], layer=3))
    with pytest.raises(QueryEmbeddingError, match="outside"):
        embed_queries(tiny, QUERIES[:1], layer=4)
    with pytest.raises(QueryEmbeddingError, match="empty"):
        embed_queries(tiny, ["  "])
    with pytest.raises(QueryEmbeddingError, match="pooling"):
        embed_queries(tiny, QUERIES[:1], pooling="max")
    assert embed_queries(tiny, []).shape == (0, 64)


def test_smollm2_middle_layer(smollm2):
    queries = ["how long do fleas live", "what is the capital of france", "python list comprehension"]
    emb = embed_queries(smollm2, queries, batch_size=2)
    assert emb.shape == (3, 576)
    layer = default_layer(smollm2.spec)
    assert layer == 15
    assert close(emb[0], reference(smollm2, queries[0], layer, "mean"))
    assert close(emb, embed_queries(smollm2, queries, batch_size=1))
    # BOS takes the attention-sink role, so no query token has a runaway norm
    assert emb.abs().max().item() < 1000
    templated = embed_queries(smollm2, queries[:1], template=True)
    assert templated.shape == (1, 576) and not close(templated, emb[:1])
