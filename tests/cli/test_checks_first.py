"""Cheap checks first (issue #22): everything that can be checked without the model is checked
before the model or the bi-encoder loads. Each test runs a command whose one fault needs no model
to find, with the model loaders replaced by a function that fails the test if it is ever called."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from routehead_pyserini.cli import main


@pytest.fixture
def no_model(monkeypatch):
    """Every way a command loads the LLM or the bi-encoder now fails the test."""
    def loaded(*_args, **_kwargs):
        raise AssertionError("a model was loaded before the cheap checks")

    import routehead_pyserini.engine.models as models
    import routehead_pyserini.firststage.dense as dense
    import routehead_pyserini.rerank.reranker as reranker

    for module in (models, reranker):
        monkeypatch.setattr(module, "load_model", loaded)
    monkeypatch.setattr(dense, "load_encoder", loaded)


def run(args) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["-q", *map(str, args)], catch_exceptions=True)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return result.exit_code, errors[0]


def _learned_head_set(path, fingerprint: str, heads=((0, 1), (3, 2)), layers=30):
    path.write_text(json.dumps({
        "format": "routehead-heads/1", "model": {"name": "smollm2-135m", "fingerprint": fingerprint, "layers": layers, "heads": 9},
        "heads": [list(h) for h in heads], "weights": [0.5, -0.25], "normalise": "zscore",
        "learned": {"prompt_settings": {"mode": "pointwise", "doc_max_tokens": 128, "order": "bm25", "top_k": 20}}}))
    return path


def test_a_query_without_topic_text(demo_cli, no_model, tmp_path):
    topics = tmp_path / "one.tsv"
    topics.write_text("q01\tbees\n")
    code, line = run(["rerank", "--run", demo_cli.bm25, "--index", demo_cli.common[3], "--topics", topics, "-o", tmp_path / "r.trec"])
    assert code == 1 and "queries of the run have no topic text" in line


def test_a_preset_with_the_other_quantisation(demo_cli, no_model, tmp_path):
    code, line = run(["rerank", *demo_cli.common, "--quantize", "int8", "-o", tmp_path / "r.trec"])
    assert code == 2 and "--quantize int8 conflicts with preset smollm2-135m/" in line and "unquantised scores" in line


def test_weights_learned_on_another_model(demo_cli, no_model, tmp_path):
    heads = _learned_head_set(tmp_path / "w.json", "other-model:abc|float32")
    code, line = run(["rerank", *demo_cli.common, "--heads", heads, "-o", tmp_path / "r.trec"])
    assert code == 1 and "these head weights were learned for model" in line and "other-model:abc" in line


def test_weights_learned_on_int8_scores_refuse_float_weights(demo_cli, no_model, tmp_path):
    from routehead_pyserini.engine.models import peek_model

    int8 = peek_model("smollm2-135m", quantize="int8").fingerprint
    heads = _learned_head_set(tmp_path / "w.json", int8)
    code, line = run(["rerank", *demo_cli.common, "--heads", heads, "--quantize", "none", "-o", tmp_path / "r.trec"])
    assert code == 2 and "trained on int8 scores" in line


def test_a_head_outside_the_model(demo_cli, smollm2, no_model, tmp_path):
    """The converted model's config is on disk (the fixture made it), so its shape is known unloaded."""
    code, line = run(["rerank", *demo_cli.common, "--heads", "40.1", "-o", tmp_path / "r.trec"])
    assert code == 1 and "head 40.1 is outside the model's 30 layers x 9 heads" in line


def test_a_router_of_another_model(demo_cli, no_model, tmp_path):
    router = tmp_path / "router.pt"
    torch.save({"format": "routehead-router/1", "model": {"name": "other", "fingerprint": "other:1|float32", "layers": 4,
                                                         "heads": 2, "hidden": 8}}, router)
    code, line = run(["rerank", *demo_cli.common, "--router", router, "-o", tmp_path / "r.trec"])
    assert code == 1 and "this router was trained for model 'other'" in line


def test_a_device_that_does_not_exist(demo_cli, no_model, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    code, line = run(["rerank", *demo_cli.common, "--method", "icr", "--device", "cuda", "-o", tmp_path / "r.trec"])
    assert code == 1 and "--device cuda: no CUDA device is available here" in line


def test_a_bad_collections_file(no_model, tmp_path):
    bad = tmp_path / "collections.yaml"
    bad.write_text("collections:\n  demo: {run: demo, sample: 0}\n")
    for args in (["loco", "--collections", bad, "-o", tmp_path / "loco"],
                 ["train-weights", "--collections", bad, "-o", tmp_path / "w.json"]):
        code, line = run(args)
        assert code == 1 and "collections.yaml" in line and "sample" in line
