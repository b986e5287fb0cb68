"""Per-head ICR scores: shared-prefix passes, head subsets, early stopping, sliding windows."""
from __future__ import annotations

import math

import pytest
import torch

from routehead_pyserini.engine.attention import QueryRowRecorder, run_forward
from routehead_pyserini.engine.scoring import HeadScores, head_mask, score_prompt, score_prompts

TOL = 1e-5


def independent_passes(loaded, prompt):
    """Scores from two full forward passes (prefix + suffix each), no KV cache, our attention."""
    spec = loaded.spec
    heads = {layer: list(range(spec.num_heads)) for layer in range(spec.num_layers)}
    offset = len(prompt.prefix_ids)
    results = []
    for suffix, (start, end) in ((prompt.query_suffix_ids, prompt.query_span),
                                 (prompt.calib_suffix_ids, prompt.calib_span)):
        recorder = QueryRowRecorder(rows=(offset + start, offset + end), doc_spans=prompt.doc_spans, heads=heads)
        with torch.inference_mode():
            run_forward(loaded.base_model, recorder, input_ids=torch.tensor([prompt.prefix_ids + suffix]))
        results.append(torch.stack([recorder.doc_mass(layer) for layer in range(spec.num_layers)]))
    return results


def count_layer_calls(loaded):
    """Install pre-hooks counting decoder-layer entries; returns (counts, remove)."""
    counts = [0] * loaded.spec.num_layers
    handles = [
        layer.register_forward_pre_hook(lambda *_args, i=i: counts.__setitem__(i, counts[i] + 1))
        for i, layer in enumerate(loaded.base_model.layers)
    ]
    return counts, lambda: [handle.remove() for handle in handles]


def test_shared_prefix_equals_independent_passes(smollm2, smollm2_prompt):
    """(b) One prefill + two cached suffix passes == two full independent passes, within 1e-5."""
    scores = score_prompt(smollm2, smollm2_prompt)
    query, calib = independent_passes(smollm2, smollm2_prompt)
    assert (scores.query - query).abs().max().item() < TOL
    assert (scores.calib - calib).abs().max().item() < TOL
    assert torch.allclose(scores.calibrated(), query - calib, atol=2 * TOL)
    assert scores.computed.all()


def test_head_subset_and_early_stop(smollm2, smollm2_prompt):
    """(c) A subset gives the all-heads numbers for its heads, NaN elsewhere; layers > 7 never run."""
    full = score_prompt(smollm2, smollm2_prompt)
    subset = [(2, 1), (7, 0), (7, 8)]
    counts, remove = count_layer_calls(smollm2)
    try:
        part = score_prompt(smollm2, smollm2_prompt, heads=subset)
    finally:
        remove()
    assert counts == [3] * 8 + [0] * 22  # prefill, query, "N/A" passes; nothing after layer 7
    for layer, head in subset:
        assert part.computed[layer, head]
        assert (part.query[layer, head] - full.query[layer, head]).abs().max().item() < TOL
        assert (part.calib[layer, head] - full.calib[layer, head]).abs().max().item() < TOL
    assert part.computed.sum().item() == len(subset)
    assert torch.isnan(part.query[~part.computed]).all() and torch.isnan(part.calib[~part.computed]).all()
    assert not torch.isnan(part.query[part.computed]).any()


def test_shapes_and_head_selection_tiny(tiny_llama, make_tiny_prompt):
    """(e) Plumbing on a random Llama: shapes, dtypes, masks, NaN for skipped heads."""
    prompt = make_tiny_prompt(n_docs=5)
    scores = score_prompt(tiny_llama, prompt)
    assert isinstance(scores, HeadScores)
    assert scores.query.shape == scores.calib.shape == (4, 4, 5) and scores.num_docs == 5
    assert scores.query.dtype == torch.float32 and scores.query.device.type == "cpu"
    assert scores.computed.dtype == torch.bool and scores.computed.all()
    assert torch.all(scores.query >= 0) and torch.all(scores.query.sum(-1) <= 1 + 1e-6)

    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[1, 2] = True
    only = score_prompt(tiny_llama, prompt, heads=mask)
    assert torch.allclose(only.query[1, 2], scores.query[1, 2], atol=TOL)
    assert torch.isnan(only.query[0]).all() and torch.isnan(only.calibrated()[3]).all()

    none = score_prompt(tiny_llama, prompt, heads=[])
    assert not none.computed.any() and torch.isnan(none.query).all()


def test_head_mask_validation(tiny_llama):
    spec = tiny_llama.spec
    assert head_mask(spec, [(0, 0), (3, 3)]).sum().item() == 2
    with pytest.raises(ValueError, match="outside"):
        head_mask(spec, [(4, 0)])
    with pytest.raises(ValueError, match="bool tensor"):
        head_mask(spec, torch.ones(3, 4, dtype=torch.bool))


def test_bad_spans_are_rejected(tiny_llama, make_tiny_prompt):
    prompt = make_tiny_prompt()
    prompt.query_span = (2, 2)
    with pytest.raises(ValueError, match="query span"):
        score_prompt(tiny_llama, prompt)
    prompt = make_tiny_prompt()
    prompt.doc_spans = [(0, len(prompt.prefix_ids) + 1)]
    with pytest.raises(ValueError, match="document 0"):
        score_prompt(tiny_llama, prompt)


def test_sliding_window_longer_prompt_tiny_gemma3(tiny_gemma3, make_tiny_prompt, eager_doc_mass):
    """(e) A prefix far longer than the 8-token window: cached passes still equal eager full passes."""
    assert tiny_gemma3.spec.sliding_layers == (0, 1, 3, 4)
    prompt = make_tiny_prompt(n_docs=6, doc_len=7, query_len=4)
    assert len(prompt.prefix_ids) > 5 * 8
    scores = score_prompt(tiny_gemma3, prompt)
    query, calib = eager_doc_mass(tiny_gemma3, prompt)
    assert (scores.query - query).abs().max().item() < TOL
    assert (scores.calib - calib).abs().max().item() < TOL
    # Sliding layers cannot see the first document from the query; global layers can.
    assert torch.all(scores.query[[0, 1, 3, 4], :, 0] == 0)
    assert torch.all(scores.query[[2, 5], :, 0] > 0)
    # Stopping inside a sliding layer, before any global layer has run, works too.
    early = score_prompt(tiny_gemma3, prompt, heads=[(1, 0), (1, 3)])
    assert torch.allclose(early.query[1, [0, 3]], scores.query[1, [0, 3]], atol=TOL)


def test_no_documents(tiny_llama, make_tiny_prompt):
    prompt = make_tiny_prompt(n_docs=0)
    scores = score_prompt(tiny_llama, prompt)
    assert scores.query.shape == (4, 4, 0)


@pytest.mark.slow
def test_gemma3_real_sliding_window(gemma3, eager_doc_mass, make_text_prompt):
    """The real Gemma 3 270M on a prompt longer than its 512-token window, vs eager attention."""
    docs = [f"Document number {i} talks about topic {i} " + "and more words " * 12 for i in range(14)]
    prompt = make_text_prompt(gemma3.tokenizer, docs, " Which document talks about topic 12?")
    assert len(prompt.prefix_ids) > 600
    scores = score_prompt(gemma3, prompt)
    query, calib = eager_doc_mass(gemma3, prompt)
    assert (scores.query - query).abs().max().item() < TOL
    assert (scores.calib - calib).abs().max().item() < TOL
    assert math.isclose(scores.query[0, :, 0].abs().sum().item(), 0.0)  # outside the window


@pytest.mark.parametrize("model_fixture", ["tiny_llama", "tiny_gemma3"])
def test_chunked_prefill_is_exact(model_fixture, request, make_tiny_prompt, eager_doc_mass, monkeypatch):
    """Prefill chunks far smaller than the prefix (and than Gemma's 8-token window) change nothing."""
    from routehead_pyserini.engine import scoring

    model = request.getfixturevalue(model_fixture)
    prompt = make_tiny_prompt(n_docs=6, doc_len=7, query_len=4)
    query, calib = eager_doc_mass(model, prompt)
    for chunk in (3, 8, 13):
        monkeypatch.setattr(scoring, "PREFILL_CHUNK", chunk)
        scores = score_prompt(model, prompt)
        assert (scores.query - query).abs().max().item() < TOL, chunk
        assert (scores.calib - calib).abs().max().item() < TOL, chunk


def test_chunked_prefill_real_model(smollm2, smollm2_prompt, monkeypatch):
    from routehead_pyserini.engine import scoring

    whole = score_prompt(smollm2, smollm2_prompt)
    monkeypatch.setattr(scoring, "PREFILL_CHUNK", 16)
    assert len(smollm2_prompt.prefix_ids) > 3 * 16
    chunked = score_prompt(smollm2, smollm2_prompt)
    assert (whole.query - chunked.query).abs().max().item() < TOL
    assert (whole.calib - chunked.calib).abs().max().item() < TOL


# --- padded batches (pointwise candidates, listwise windows) -------------------------------------


def mixed_prompts(make_tiny_prompt):
    """Prompts of different prefix, query and document counts, so padding and row spans differ."""
    shapes = [(1, 5, 3), (1, 12, 3), (3, 7, 5), (1, 3, 2), (2, 9, 4)]
    return [make_tiny_prompt(n_docs=n, doc_len=d, query_len=q, seed=i) for i, (n, d, q) in enumerate(shapes)]


@pytest.mark.parametrize("model_fixture", ["tiny_llama", "tiny_gemma3"])
def test_batched_equals_unbatched_and_eager(model_fixture, request, make_tiny_prompt, eager_doc_mass, monkeypatch):
    """Left-padded prefixes, right-padded suffixes: the same numbers as one prompt at a time and as eager.

    Gemma 3's 8-token sliding window is shorter than most prefixes here, so the padding must keep
    every prompt's slot distances intact.
    """
    model = request.getfixturevalue(model_fixture)
    prompts = mixed_prompts(make_tiny_prompt)
    single = [score_prompt(model, p) for p in prompts]
    for batch_size in (2, 3, len(prompts)):
        batched = score_prompts(model, prompts, batch_size=batch_size)
        for one, many in zip(single, batched):
            assert many.query.shape == one.query.shape
            assert (many.query - one.query).abs().max().item() < TOL, batch_size
            assert (many.calib - one.calib).abs().max().item() < TOL, batch_size
    for prompt, scores in zip(prompts, batched):
        query, calib = eager_doc_mass(model, prompt)
        assert (scores.query - query).abs().max().item() < TOL
        assert (scores.calib - calib).abs().max().item() < TOL
    # a padded prefill in chunks (smaller than the window, not aligned with the padding) changes nothing
    from routehead_pyserini.engine import scoring

    monkeypatch.setattr(scoring, "PREFILL_CHUNK", 5)
    for one, many in zip(single, score_prompts(model, prompts, batch_size=3)):
        assert (many.query - one.query).abs().max().item() < TOL
        assert (many.calib - one.calib).abs().max().item() < TOL


def test_batched_head_subset_and_early_stop(tiny_llama, make_tiny_prompt):
    prompts = mixed_prompts(make_tiny_prompt)
    full = score_prompts(tiny_llama, prompts, batch_size=5)
    counts, remove = count_layer_calls(tiny_llama)
    try:
        part = score_prompts(tiny_llama, prompts, heads=[(1, 2), (0, 0)], batch_size=5)
    finally:
        remove()
    assert counts == [3, 3, 0, 0]  # one batched prefill, query and "N/A" passes; nothing after layer 1
    for a, b in zip(full, part):
        assert int(b.computed.sum()) == 2
        assert torch.allclose(a.query[1, 2], b.query[1, 2], atol=TOL) and torch.allclose(a.calib[0, 0], b.calib[0, 0], atol=TOL)
        assert torch.isnan(b.query[2:]).all()


def eager_mass_without_sink(loaded, prompt):
    """Reference for ``exclude_sink``: each eager row's document mass over (1 - its mass on token 0)."""
    model = loaded.model
    implementation = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        offset = len(prompt.prefix_ids)
        start, end = prompt.query_span
        with torch.inference_mode():
            out = model.base_model(input_ids=torch.tensor([prompt.prefix_ids + prompt.query_suffix_ids]), output_attentions=True)
        rows = torch.stack(out.attentions)[:, 0, :, offset + start:offset + end].float()  # [L, H, r, S]
        mass = torch.stack([rows[..., s:e].sum(-1) for s, e in prompt.doc_spans], dim=-1)
        return (mass / (1 - rows[..., :1])).mean(dim=2)
    finally:
        model.set_attn_implementation(implementation)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_exclude_sink_matches_eager(tiny_llama, make_tiny_prompt, batch_size):
    prompts = mixed_prompts(make_tiny_prompt)
    raw = score_prompts(tiny_llama, prompts, batch_size=batch_size)
    no_sink = score_prompts(tiny_llama, prompts, batch_size=batch_size, exclude_sink=True)
    for prompt, a, b in zip(prompts, raw, no_sink):
        assert (b.query - eager_mass_without_sink(tiny_llama, prompt)).abs().max().item() < TOL
        assert torch.all(b.query >= a.query - 1e-7)


def test_pointwise_real_model_matches_eager(smollm2, eager_doc_mass):
    """Pointwise prompts of SmolLM2 (chat template), batched with padding, equal eager attention."""
    from routehead_pyserini.engine.windows import build_pointwise_prompts

    docs = [("a", "The Eiffel Tower is a wrought-iron tower in Paris, France."),
            ("b", "Bananas are yellow fruit rich in potassium and eaten all over the world."),
            ("c", "The Moon orbits the Earth once a month.")]
    prompts = build_pointwise_prompts(smollm2.tokenizer, "Where is the Eiffel Tower?", docs, max_context=2048)
    assert len({len(p.prefix_ids) for p in prompts}) > 1  # padding is exercised
    batched = score_prompts(smollm2, prompts, batch_size=3)
    for prompt, scores in zip(prompts, batched):
        assert scores.query.shape == (30, 9, 1)
        query, calib = eager_doc_mass(smollm2, prompt)
        assert (scores.query - query).abs().max().item() < TOL
        assert (scores.calib - calib).abs().max().item() < TOL
    # the relevant passage gets the most calibrated mass summed over all heads
    totals = [s.calibrated().sum().item() for s in batched]
    assert totals.index(max(totals)) == 0


def test_batch_size_validation(tiny_llama, make_tiny_prompt):
    with pytest.raises(ValueError, match="batch_size"):
        score_prompts(tiny_llama, [make_tiny_prompt()], batch_size=0)
    assert score_prompts(tiny_llama, [], batch_size=4) == []


def pointwise_tiny_prompts(head_len: int = 6, n: int = 5, seed: int = 0):
    """One-document prompts with a common head (a template) and documents of different lengths."""
    import random

    from conftest import build_icr_prompt

    rng = random.Random(seed)
    draw = lambda k: [rng.randrange(3, 128) for _ in range(k)]  # noqa: E731
    head, query_head, query_tail, query = draw(head_len), draw(2), draw(3), draw(3)
    return [build_icr_prompt([draw(4 + 2 * i)], query, draw(2), head=head, separator=[1], query_head=query_head,
                             query_tail=query_tail) for i in range(n)]


@pytest.mark.parametrize("model_fixture,window", [("tiny_llama", None), ("tiny_gemma3", 8), ("tiny_gemma3", 64)])
def test_shared_template_prefix_equals_unshared(model_fixture, window, request, tiny_model_factory):
    """The template head run once (PrefixCache) gives the unshared scores; a sliding window narrower
    than the padded batch turns the sharing off rather than change a score."""
    from routehead_pyserini.engine.scoring import PrefixCache, shared_head_length
    from conftest import tiny_gemma3_config

    model = request.getfixturevalue(model_fixture) if window in (None, 8) else tiny_model_factory(tiny_gemma3_config(sliding_window=window))
    prompts = pointwise_tiny_prompts()
    assert shared_head_length(prompts) == 6
    for batch_size in (1, 3, 5):
        cache = PrefixCache()
        plain = score_prompts(model, prompts, batch_size=batch_size)
        shared = score_prompts(model, prompts, batch_size=batch_size, prefix_cache=cache)
        for a, b in zip(plain, shared):
            assert (a.query - b.query).abs().max().item() < TOL and (a.calib - b.calib).abs().max().item() < TOL
        used = window is None or window == 64
        assert cache.misses == (1 if used else 0) and (cache.hits > 0) == (used and batch_size < 5)
    subset = score_prompts(model, prompts, heads=[(1, 0)], batch_size=3, prefix_cache=PrefixCache())
    assert all(torch.allclose(a.query[1, 0], b.query[1, 0], atol=TOL) for a, b in zip(plain, subset))


@pytest.mark.parametrize("model_fixture", ["smollm2", pytest.param("gemma3", marks=pytest.mark.slow)])
def test_shared_template_prefix_real_models(model_fixture, request):
    """Pointwise prompts of the packaged models: the chat template's head shared, scores unchanged."""
    from routehead_pyserini.engine.windows import build_pointwise_prompts
    from routehead_pyserini.engine.scoring import PrefixCache, shared_head_length

    model = request.getfixturevalue(model_fixture)
    docs = [("a", "The Eiffel Tower is a wrought-iron tower in Paris, France."),
            ("b", "Bananas are yellow fruit rich in potassium and eaten all over the world, raw or cooked."),
            ("c", "The Moon orbits the Earth once a month.")]
    prompts = build_pointwise_prompts(model.tokenizer, "Where is the Eiffel Tower?", docs, max_context=2048)
    assert shared_head_length(prompts) >= 8  # the template head (system turn, instruction) before the passage
    cache = PrefixCache()
    for batch_size in (1, 3):
        plain = score_prompts(model, prompts, batch_size=batch_size)
        shared = score_prompts(model, prompts, batch_size=batch_size, prefix_cache=cache)
        for a, b in zip(plain, shared):
            assert (a.query - b.query).abs().max().item() < TOL and (a.calib - b.calib).abs().max().item() < TOL
    assert cache.misses == 1
