"""int8 linear layers (``--quantize int8``): the layer itself, the model it makes, its fingerprint,
and the per-head scores of the real SmolLM2 on a tiny input against a stored reference."""
from __future__ import annotations

import pytest
import torch

from helpers import tiny_wrapped
from routehead_pyserini.data.corpus import Document
from routehead_pyserini.engine.quantize import (Int8Linear, QuantizeError, fingerprint_suffix, quantization_of,
                                                quantize_decoder, resolve)

QUERY = "how long do fleas live"
DOCS = ["Adult fleas live two to three months on a host, laying eggs daily.",
        "Paris is the capital of France and its largest city.",
        "Flea larvae hatch from eggs in one to ten days and feed on debris."]
#: Per-document calibrated scores summed over SmolLM2's 270 heads, int8, pointwise prompts of 64-token
#: passages (computed once with this module's Int8Linear; float32 gives 18.48, 3.62, 14.09).
INT8_REFERENCE = [18.808185577392578, 4.7607741355896, 14.735782623291016]


@pytest.mark.parametrize("rows", [1, 5, 40])
@pytest.mark.parametrize("bias", [True, False])
def test_int8_linear_is_close_to_the_float_layer(rows, bias):
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 48, bias=bias)
    x = torch.randn(2, rows, 64)
    expected = layer(x)
    got = Int8Linear(layer)(x)
    assert got.shape == expected.shape and got.dtype == torch.float32
    relative = (got - expected).norm() / expected.norm()
    assert relative < 0.02  # per-channel weights and per-token activations: about 1% error
    assert not torch.equal(got, expected)  # it is really quantised


def test_quantize_decoder_replaces_every_linear_of_the_decoder_only():
    loaded = tiny_wrapped("q")
    decoder = loaded.model.base_model
    before = sum(isinstance(m, torch.nn.Linear) for m in decoder.modules())
    assert quantize_decoder(decoder, "int8") == before > 0
    assert not any(isinstance(m, torch.nn.Linear) for m in decoder.modules())
    assert isinstance(loaded.model.lm_head, torch.nn.Linear)  # scoring never runs the LM head
    assert quantize_decoder(decoder, None) == 0 and quantize_decoder(decoder, "none") == 0


def test_fingerprints_and_trained_files_keep_the_quantisation():
    assert fingerprint_suffix(None) == "" and fingerprint_suffix("int8") == "|int8"
    assert quantization_of("m:abc|float32|int8") == "int8" and quantization_of("m:abc|float32") is None
    assert resolve(None, "m:abc|float32|int8", "preset x") == "int8"  # the file's, when not given
    assert resolve(None, None, "ICR") is None
    assert resolve("int8", None, "ICR") == "int8"
    with pytest.raises(QuantizeError, match=r"--quantize none conflicts with preset x, which was trained on int8 scores"):
        resolve("none", "m:abc|float32|int8", "preset x")
    with pytest.raises(QuantizeError, match=r"--quantize int8 conflicts with .* trained on unquantised scores"):
        resolve("int8", "m:abc|float32", "preset x")
    with pytest.raises(QuantizeError, match="unknown quantisation 'int4'"):
        resolve("int4", None, "ICR")


def _scores(model):
    from routehead_pyserini.rerank.reranker import Reranker
    from routehead_pyserini.rerank.settings import PromptSettings

    reranker = Reranker(model, "all", settings=PromptSettings(mode="pointwise", doc_max_tokens=64), cache=False)
    return reranker.score(QUERY, [Document(str(i), d) for i, d in enumerate(DOCS)]).calibrated


@pytest.mark.slow
def test_int8_scores_of_the_real_model_match_the_stored_reference_and_float32(smollm2):
    from routehead_pyserini.engine.models import load_model

    quantised = load_model("smollm2-135m", quantize="int8")
    assert quantised.fingerprint == smollm2.fingerprint + "|int8"
    assert quantised.spec == smollm2.spec
    int8, fp32 = _scores(quantised), _scores(smollm2)
    sums = int8.sum(dim=(0, 1))
    assert torch.allclose(sums, torch.tensor(INT8_REFERENCE), rtol=2e-3, atol=2e-3), sums.tolist()
    assert torch.argsort(sums, descending=True).tolist() == torch.argsort(fp32.sum(dim=(0, 1)), descending=True).tolist()
    # per head, int8 follows float32 closely (the bar for shipping is LOCO nDCG, docs/results.md)
    correlation = torch.corrcoef(torch.stack([int8.flatten(), fp32.flatten()]))[0, 1]
    assert correlation > 0.95, correlation
