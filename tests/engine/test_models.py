"""Model loading: packaged GGUF aliases, conversion cache, specs from configs, clear errors."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from transformers import Gemma3Config, Gemma3TextConfig

from routehead_pyserini.engine import models
from routehead_pyserini.engine.attention import ATTN_IMPLEMENTATION
from routehead_pyserini.engine.models import ModelLoadError, ModelSpec, load_model


def test_smollm2_spec(smollm2):
    """(d) Architecture facts come from the config."""
    spec = smollm2.spec
    assert (spec.num_layers, spec.num_heads, spec.num_kv_heads, spec.head_dim) == (30, 9, 3, 64)
    assert spec.max_context == 8192
    assert spec.sliding_layers == () and spec.global_layers == tuple(range(30))
    assert spec.has_chat_template
    assert spec.shape == (30, 9)


def test_smollm2_loaded_for_scoring(smollm2):
    assert smollm2.model.config._attn_implementation == ATTN_IMPLEMENTATION
    assert not smollm2.model.training
    assert smollm2.device.type == "cpu"
    assert next(smollm2.model.parameters()).dtype == torch.float32
    assert smollm2.base_model is smollm2.model.model  # no LM head in scoring


def test_conversion_is_cached_and_fingerprint_stable(smollm2):
    folder = Path(smollm2.source)
    assert folder.parent.name == "models" and folder.name.startswith("smollm2-135m-")
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert (folder / "tokenizer_config.json").is_file()
    assert not list(folder.parent.glob(".tmp-smollm2-135m-*"))
    started = time.perf_counter()
    again = load_model("smollm2-135m")
    assert time.perf_counter() - started < 20  # reads safetensors; no GGUF dequantisation
    assert again.fingerprint == smollm2.fingerprint
    assert again.fingerprint.startswith("smollm2-135m:") and again.fingerprint.endswith("|float32")


@pytest.mark.slow
def test_gemma3_spec(gemma3):
    """(d) Gemma 3 270M: 18 x 4 heads, one KV head, 512-token windows except layers 5, 11, 17."""
    spec = gemma3.spec
    assert (spec.num_layers, spec.num_heads, spec.num_kv_heads) == (18, 4, 1)
    assert spec.global_layers == (5, 11, 17)
    assert len(spec.sliding_layers) == 15
    assert {spec.attention_windows[i] for i in spec.sliding_layers} == {512}
    assert spec.layer_types[5] == "full_attention" and spec.layer_types[0] == "sliding_attention"
    assert gemma3.model.config._attn_implementation == ATTN_IMPLEMENTATION


def test_spec_from_nested_config():
    """A multimodal config nests the decoder under text_config; the spec reads it generically."""
    text = Gemma3TextConfig(num_hidden_layers=4, num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                            sliding_window=16, layer_types=["sliding_attention"] * 3 + ["full_attention"])
    spec = ModelSpec.from_config(Gemma3Config(text_config=text.to_dict()))
    assert (spec.num_layers, spec.num_heads, spec.num_kv_heads, spec.head_dim) == (4, 2, 1, 32)
    assert spec.attention_windows == (16, 16, 16, None)


def test_unknown_hub_name_offline(monkeypatch):
    """(f) Offline and not cached: a quick, helpful ModelLoadError (no network retries)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(ModelLoadError) as error:
        load_model("routehead-tests/no-such-model")
    assert time.perf_counter() - started < 10
    message = str(error.value)
    assert "routehead-tests/no-such-model" in message
    assert "HF_HUB_OFFLINE" in message and "local model folder" in message and "smollm2-135m" in message


def test_unknown_hub_name_unreachable_hub_fails_fast(monkeypatch):
    """Not offline, not cached, the hub unreachable: an error in seconds, not after the client's retries."""
    from huggingface_hub import constants

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: refused at once
    started = time.perf_counter()
    with pytest.raises(ModelLoadError, match=r"routehead-tests/no-such-model.*not in the local cache and the hub \(127.0.0.1\) cannot be reached"):
        load_model("routehead-tests/no-such-model")
    assert time.perf_counter() - started < 10


def test_missing_paths_and_bad_dtype(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(str(tmp_path / "missing"))
    with pytest.raises(ModelLoadError, match="GGUF file not found"):
        load_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelLoadError, match="unknown dtype"):
        load_model("smollm2-135m", dtype="float8")


def test_interrupted_conversion_is_never_used(tmp_path, monkeypatch):
    """A conversion that dies half-way leaves no target folder and no scratch folder."""
    monkeypatch.setenv("ROUTEHEAD_CACHE_DIR", str(tmp_path))
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF" + bytes(100))

    def dies_half_way(_gguf_path, out):
        out.mkdir(parents=True)
        (out / "model.safetensors").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(models, "_convert_gguf", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        models._gguf_source(gguf)
    assert list((tmp_path / "models").iterdir()) == []

    def converts(_gguf_path, out):
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(models, "_convert_gguf", converts)
    folder, local_only, identity = models._gguf_source(gguf)
    assert local_only and Path(folder).name.startswith("gguf-fake-") and (Path(folder) / "config.json").is_file()
    assert identity.startswith("gguf:fake.gguf:")
    # The second call finds the folder and does not convert again.
    monkeypatch.setattr(models, "_convert_gguf", dies_half_way)
    assert models._gguf_source(gguf)[0] == folder


def test_wrap_model_switches_attention(tiny_model_factory):
    from transformers import AutoModelForCausalLM, LlamaConfig

    model = AutoModelForCausalLM.from_config(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                                                         num_hidden_layers=2, num_attention_heads=2))
    loaded = models.wrap_model(model)
    assert loaded.model.config._attn_implementation == ATTN_IMPLEMENTATION
    assert loaded.spec.shape == (2, 2) and loaded.fingerprint.startswith("memory:")


def test_local_folder(tmp_path, smollm2):
    """A save_pretrained folder loads with our attention; without a tokenizer the error says so."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(vocab_size=smollm2.tokenizer.vocab_size + 64, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, sliding_window=None)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "tiny")
    with pytest.raises(ModelLoadError, match="tokenizer"):
        load_model(str(tmp_path / "tiny"))
    smollm2.tokenizer.save_pretrained(tmp_path / "tiny")
    loaded = load_model(str(tmp_path / "tiny"))
    assert loaded.model.config._attn_implementation == ATTN_IMPLEMENTATION
    assert loaded.spec.shape == (2, 2) and loaded.spec.global_layers == (0, 1)
    assert loaded.fingerprint.startswith("local:tiny:") and loaded.fingerprint.endswith("|float32")
    assert load_model(str(tmp_path / "tiny")).fingerprint == loaded.fingerprint
