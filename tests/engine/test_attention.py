"""The registered query-row attention: same numbers as eager attention, SDPA output otherwise."""
from __future__ import annotations

import torch
from transformers import Gemma2Config

from routehead_pyserini.engine.attention import (ATTN_IMPLEMENTATION, RECORDER_KWARG, QueryRowRecorder, doc_mass_hook_name, register, run_forward)
from routehead_pyserini.engine.scoring import score_prompt

TOL = 1e-5


def test_query_rows_match_eager_smollm2(smollm2, smollm2_prompt, eager_doc_mass):
    """(a) All 30 x 9 heads, query and "N/A" rows: equal to eager attention maps within 1e-5."""
    scores = score_prompt(smollm2, smollm2_prompt)
    query, calib = eager_doc_mass(smollm2, smollm2_prompt)
    assert scores.query.shape == (30, 9, 4)
    assert (scores.query - query).abs().max().item() < TOL
    assert (scores.calib - calib).abs().max().item() < TOL
    # A sanity check that the comparison is not vacuous: heads differ and mass is substantial.
    assert scores.query.std().item() > 1e-2
    assert smollm2.model.config._attn_implementation == ATTN_IMPLEMENTATION


def test_without_recorder_output_equals_sdpa(tiny_llama):
    """No recorder: the layer output is exactly the stock SDPA integration's."""
    ids = torch.randint(0, 128, (1, 40), generator=torch.Generator().manual_seed(1))
    base = tiny_llama.base_model
    with torch.inference_mode():
        ours = base(input_ids=ids).last_hidden_state
        tiny_llama.model.set_attn_implementation("sdpa")
        try:
            reference = base(input_ids=ids).last_hidden_state
        finally:
            tiny_llama.model.set_attn_implementation(ATTN_IMPLEMENTATION)
    assert torch.equal(ours, reference)


def test_recorder_hook_names_rows_and_stop(tiny_llama):
    """A recorder passed as a forward kwarg records [heads, docs] under the hook name, then stops."""
    ids = torch.randint(0, 128, (1, 30), generator=torch.Generator().manual_seed(2))
    recorder = QueryRowRecorder(rows=(25, 30), doc_spans=[(0, 10), (10, 20), (20, 25)],
                                heads={0: [1], 2: [0, 3]}, stop_at_layer=2)
    with torch.inference_mode():
        stopped = run_forward(tiny_llama.base_model, recorder, input_ids=ids)
    assert RECORDER_KWARG == "routehead_recorder"
    assert stopped
    assert recorder.hook_layers_run == [0, 1, 2]  # layer 3 never ran
    assert set(recorder.cache) == {doc_mass_hook_name(0), doc_mass_hook_name(2)} == {
        "blocks.0.attn.hook_doc_mass", "blocks.2.attn.hook_doc_mass"}
    assert recorder.doc_mass(2).shape == (2, 3)
    assert recorder.doc_mass(1) is None
    # Causal rows: mass on all earlier tokens is 1; the documents cover tokens 0-24 and the rows
    # (tokens 25-29) also see themselves, so the total is below 1 but positive.
    total = recorder.doc_mass(0).sum(-1)
    assert torch.all(total > 0) and torch.all(total < 1)


def test_gqa_and_causal_rows_match_eager_tiny(tiny_llama, make_tiny_prompt, eager_doc_mass):
    """GQA (4 heads over 2 KV heads) on a random model: equal to eager."""
    prompt = make_tiny_prompt(n_docs=4, doc_len=7)
    scores = score_prompt(tiny_llama, prompt)
    query, calib = eager_doc_mass(tiny_llama, prompt)
    assert (scores.query - query).abs().max().item() < TOL
    assert (scores.calib - calib).abs().max().item() < TOL


def test_softcapping_matches_eager(tiny_model_factory, make_tiny_prompt, eager_doc_mass):
    """Logit softcapping (Gemma 2 style), which SDPA cannot do: rows and outputs equal eager."""
    config = Gemma2Config(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=8,
                          attn_logit_softcapping=5.0, max_position_embeddings=256)
    loaded = tiny_model_factory(config)
    assert loaded.spec.attn_logit_softcapping == 5.0
    prompt = make_tiny_prompt(n_docs=3, doc_len=5)
    scores = score_prompt(loaded, prompt)
    query, calib = eager_doc_mass(loaded, prompt)
    assert (scores.query - query).abs().max().item() < TOL
    assert (scores.calib - calib).abs().max().item() < TOL

    ids = torch.tensor([prompt.prefix_ids + prompt.query_suffix_ids])
    with torch.inference_mode():
        ours = loaded.base_model(input_ids=ids).last_hidden_state
        loaded.model.set_attn_implementation("eager")
        try:
            reference = loaded.base_model(input_ids=ids).last_hidden_state
        finally:
            loaded.model.set_attn_implementation(ATTN_IMPLEMENTATION)
    assert (ours - reference).abs().max().item() < TOL


def test_register_is_idempotent():
    assert register() == register() == ATTN_IMPLEMENTATION
