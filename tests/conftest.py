"""Shared fixtures: one JVM per test session, an isolated registry, the shared benchmark data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from routehead_pyserini import config

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = config.data_dir()  # $ROUTEHEAD_DATA_DIR, else shared/data beside the checkout
REQUIRE_DATA_ENV = "ROUTEHEAD_REQUIRE_DATA"  # set to 1 (CI: .ci/run) to make missing data a failure


def need_shared_data(path: Path = SHARED_DATA) -> Path:
    """``path`` when it exists; otherwise skip the test with the reason, or fail it when
    ``$ROUTEHEAD_REQUIRE_DATA=1`` (CI always has the data, so there a skip would hide a fault)."""
    if path.exists():
        return path
    reason = (f"benchmark data not found at {path} (set {config.DATA_DIR_ENV}; README 'Getting the data'"
              f"; {REQUIRE_DATA_ENV}=1 makes this a failure)")
    if os.environ.get(REQUIRE_DATA_ENV, "") not in ("", "0"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def _isolated_registry(tmp_path_factory: pytest.TempPathFactory):
    """Tests never read or write the user's own registry."""
    path = tmp_path_factory.mktemp("registry") / "registry.yaml"
    old = os.environ.get("ROUTEHEAD_REGISTRY")
    os.environ["ROUTEHEAD_REGISTRY"] = str(path)
    yield path
    if old is None:
        os.environ.pop("ROUTEHEAD_REGISTRY", None)
    else:
        os.environ["ROUTEHEAD_REGISTRY"] = old


@pytest.fixture(scope="session", autouse=True)
def _isolated_score_cache(tmp_path_factory: pytest.TempPathFactory):
    """Tests never read or write the user's per-head score cache (converted models are shared)."""
    old = os.environ.get("ROUTEHEAD_SCORE_CACHE_DIR")
    os.environ["ROUTEHEAD_SCORE_CACHE_DIR"] = str(tmp_path_factory.mktemp("scores"))
    yield
    if old is None:
        os.environ.pop("ROUTEHEAD_SCORE_CACHE_DIR", None)
    else:
        os.environ["ROUTEHEAD_SCORE_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def jvm():
    """The one JVM of this process (pyjnius cannot start a second one)."""
    from routehead_pyserini.firststage.jvm import ensure_jvm

    return ensure_jvm()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The benchmark data folder; without it the test is skipped (a failure with $ROUTEHEAD_REQUIRE_DATA=1)."""
    return need_shared_data()


@pytest.fixture(scope="session")
def demo_index(jvm, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Lucene index of the embedded demo collection."""
    from routehead_pyserini.pipeline.demo import DEMO_DATA
    from routehead_pyserini.firststage.index import build_index

    index_dir = tmp_path_factory.mktemp("indexes") / "demo"
    build_index(DEMO_DATA / "corpus.jsonl", index_dir, progress=False)
    return index_dir


@pytest.fixture
def demo_cli(jvm, demo_index, tmp_path):
    """The CLI on the demo collection: ``cli(*args)`` (quiet, exceptions raised), a BM25 run of the
    16 demo queries (6 hits each), and ``common`` scoring options (top-4, a fresh score cache)."""
    from types import SimpleNamespace

    from click.testing import CliRunner

    from routehead_pyserini.cli import main

    def cli(*args):
        return CliRunner().invoke(main, ["-q", *map(str, args)], catch_exceptions=False)

    bm25 = tmp_path / "bm25.trec"
    assert cli("search", "--index", demo_index, "--topics", "demo", "-o", bm25, "--hits", 6).exit_code == 0
    common = ["--run", bm25, "--index", demo_index, "--topics", "demo", "--top-k", 4, "--cache-dir", tmp_path / "cache"]
    return SimpleNamespace(cli=cli, bm25=bm25, common=common)


# --- models, attention and scoring fixtures -------------------------------------------------------

from dataclasses import dataclass as _dataclass  # noqa: E402


@_dataclass
class SimpleICRPrompt:
    """A minimal object with the layout routehead_pyserini.engine.scoring.ICRPrompt describes (test-only)."""

    prefix_ids: list[int]
    doc_spans: list[tuple[int, int]]
    query_suffix_ids: list[int]
    query_span: tuple[int, int]
    calib_suffix_ids: list[int]
    calib_span: tuple[int, int]


def build_icr_prompt(
    docs: list[list[int]],
    query: list[int],
    calib: list[int],
    *,
    head: list[int],
    separator: list[int],
    query_head: list[int],
    query_tail: list[int],
) -> SimpleICRPrompt:
    """Lay token lists out as ``head doc sep doc sep ... | query_head query query_tail``."""
    prefix, spans = list(head), []
    for doc in docs:
        spans.append((len(prefix), len(prefix) + len(doc)))
        prefix += doc + separator
    span = (len(query_head), len(query_head) + len(query))
    calib_span = (len(query_head), len(query_head) + len(calib))
    return SimpleICRPrompt(prefix, spans, query_head + query + query_tail, span, query_head + calib + query_tail, calib_span)


@pytest.fixture(scope="session")
def smollm2():
    """The packaged SmolLM2-135M, loaded once (converted to safetensors in the cache on first use)."""
    from routehead_pyserini.engine.models import load_model

    return load_model("smollm2-135m")


@pytest.fixture(scope="session")
def gemma3():
    """The packaged Gemma 3 270M, loaded once (first use converts it: about a minute)."""
    from routehead_pyserini.engine.models import load_model

    return load_model("gemma3-270m")


def text_icr_prompt(tokenizer, docs: list[str], query: str) -> SimpleICRPrompt:
    """An ICR-style prompt from texts, tokenised piece by piece so the spans are exact."""
    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False).input_ids

    return build_icr_prompt(
        [ids(doc) for doc in docs], ids(query), ids("N/A"),
        head=ids("Here are some documents:\n"), separator=ids("\n"),
        query_head=ids("Query:"), query_tail=ids("\nThe most relevant document is"),
    )


@pytest.fixture(scope="session")
def smollm2_prompt(smollm2) -> SimpleICRPrompt:
    """A short prompt with four documents, about 80 tokens."""
    docs = [
        "The Eiffel Tower is a wrought-iron tower in Paris, France.",
        "Bananas are yellow fruit rich in potassium.",
        "Python is a programming language used for data science.",
        "The Moon orbits the Earth about once a month.",
    ]
    return text_icr_prompt(smollm2.tokenizer, docs, " Where is the Eiffel Tower?")


@pytest.fixture(scope="session")
def eager_doc_mass():
    """Reference scores from eager attention over two full, independent passes (no cache).

    Returns ``f(loaded_model, prompt) -> (query, calib)``, each ``[layers, heads, docs]``; the model
    is switched to eager attention for the call and back afterwards.
    """
    import torch

    def reference(loaded, prompt):
        model = loaded.model
        implementation = model.config._attn_implementation
        model.set_attn_implementation("eager")
        try:
            results = []
            for suffix, (start, end) in ((prompt.query_suffix_ids, prompt.query_span),
                                         (prompt.calib_suffix_ids, prompt.calib_span)):
                offset = len(prompt.prefix_ids)
                ids = torch.tensor([prompt.prefix_ids + suffix], device=loaded.device)
                with torch.inference_mode():
                    out = model.base_model(input_ids=ids, output_attentions=True)
                maps = torch.stack(out.attentions)[:, 0].float()  # [L, H, S, S]
                rows = maps[:, :, offset + start:offset + end, :]
                mass = torch.stack([rows[..., s:e].sum(-1) for s, e in prompt.doc_spans], dim=-1)
                results.append(mass.mean(dim=2).cpu())
            return tuple(results)
        finally:
            model.set_attn_implementation(implementation)

    return reference


def tiny_llama_config(**overrides):
    """A randomly initialised, 4-layer Llama with GQA (4 heads, 2 KV heads): built in milliseconds."""
    from transformers import LlamaConfig

    values = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    values.update(overrides)
    return LlamaConfig(**values)


def tiny_gemma3_config(**overrides):
    """A tiny Gemma 3 text config: 6 layers, sliding window 8 on all but layers 2 and 5, 1 KV head."""
    from transformers import Gemma3TextConfig

    values = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=6,
                  num_attention_heads=4, num_key_value_heads=1, head_dim=16, sliding_window=8,
                  layer_types=["sliding_attention", "sliding_attention", "full_attention"] * 2,
                  max_position_embeddings=512)
    values.update(overrides)
    return Gemma3TextConfig(**values)


@pytest.fixture
def tiny_model_factory():
    """``f(config) -> LoadedModel``: a seeded random model from a config, wrapped for scoring."""
    import torch
    from transformers import AutoModelForCausalLM

    from routehead_pyserini.engine.attention import register
    from routehead_pyserini.engine.models import wrap_model

    def make(config):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, attn_implementation=register(), dtype=torch.float32)
        return wrap_model(model, name=type(config).__name__)

    return make


def tiny_prompt(n_docs: int = 3, doc_len: int = 6, query_len: int = 3, vocab: int = 128, seed: int = 0) -> SimpleICRPrompt:
    """A prompt of random token ids for tiny models."""
    import random

    rng = random.Random(seed)
    draw = lambda n: [rng.randrange(3, vocab) for _ in range(n)]  # noqa: E731
    return build_icr_prompt([draw(doc_len) for _ in range(n_docs)], draw(query_len), draw(2),
                            head=draw(3), separator=[1], query_head=draw(2), query_tail=draw(3))


@pytest.fixture
def tiny_llama(tiny_model_factory):
    """A random 4-layer Llama (GQA) LoadedModel."""
    return tiny_model_factory(tiny_llama_config())


@pytest.fixture
def tiny_gemma3(tiny_model_factory):
    """A random 6-layer Gemma 3 LoadedModel with an 8-token sliding window on four layers."""
    return tiny_model_factory(tiny_gemma3_config())


@pytest.fixture
def make_tiny_prompt():
    """``f(n_docs=3, doc_len=6, query_len=3, seed=0) -> prompt`` of random token ids."""
    return tiny_prompt


@pytest.fixture
def make_text_prompt():
    """``f(tokenizer, docs, query) -> prompt`` built from texts (see text_icr_prompt)."""
    return text_icr_prompt
