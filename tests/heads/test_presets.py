"""Presets: `loco` trains them with their scores, `presets` lists them, `rerank` with no method
options uses the best one, a preset refuses another model, a model without one falls back (and says so)."""
import json
import logging

import pytest

from routehead_pyserini.heads.presets import PresetError, default_preset, get_preset, list_presets
from routehead_pyserini.data.trec import read_run, write_run, Run


def two_collections(demo_cli, tmp_path, sample_a: int | None = None):
    """The demo queries as two 'collections' (first and last 8): the index and the collections file
    (``sample_a``: a fixed sample of that many queries of the first)."""
    index = demo_cli.common[demo_cli.common.index("--index") + 1]
    run = read_run(demo_cli.bm25)
    qids = run.qids()
    for name, part in (("demo-a", qids[:8]), ("demo-b", qids[8:])):
        write_run(Run({q: run[q] for q in part}), tmp_path / f"{name}.trec", tag="bm25")
    collections = tmp_path / "collections.yaml"
    collections.write_text("collections:\n" + "".join(
        f"  {name}: {{run: {tmp_path / name}.trec, index: {index}, topics: demo, qrels: demo"
        + (f", sample: {sample_a}" if sample_a and name == "demo-a" else "") + "}\n" for name in ("demo-a", "demo-b")))
    return index, collections


@pytest.fixture
def demo_presets(demo_cli, tmp_path, monkeypatch):
    """Two 'collections' from the demo queries (first and last 8), LOCO over them and presets written."""
    _, collections = two_collections(demo_cli, tmp_path)
    cache = tmp_path / "cache"
    presets = tmp_path / "presets"
    result = demo_cli.cli("loco", "--collections", collections, "-o", tmp_path / "loco", "--top-k", 4, "--doc-max-tokens", 64, "--jobs", 2,
                          "--presets-exclude", "demo-b",
                          "--methods", "heads+bm25", "--protocols", "loco", "--losses", "pointwise",
                          "--presets-dir", presets, "--cache-dir", cache)
    assert result.exit_code == 0, result.output
    monkeypatch.setenv("ROUTEHEAD_PRESETS_DIR", str(presets))
    return tmp_path, presets, cache, result.output


def test_loco_writes_tables_runs_and_a_preset_with_its_scores(demo_presets, smollm2):
    root, presets, _, output = demo_presets
    report = (root / "loco" / "report.md").read_text()
    for row in ("| bm25 |", "| random order |", "| pointwise all heads |", "| heads+bm25 |"):
        assert row in report
    assert (root / "loco" / "loco" / "demo-a" / "heads+bm25.trec").is_file()
    data = json.loads((presets / "smollm2-135m" / "heads+bm25.json").read_text())
    record = data["preset"]
    assert record["model"] == "smollm2-135m" and data["model"]["fingerprint"] == smollm2.fingerprint
    assert record["prompt_settings"] == {"mode": "pointwise", "doc_max_tokens": 64, "top_k": 4, "order": "bm25",
                                         "chat_template": True, "attention_norm": "raw"}
    assert list(record["training"]["collections"]) == ["demo-a"] and record["training"]["left_out"] == ["demo-b"]
    assert set(record["scores"]["loco"]) == {"demo-a", "demo-b", "mean"}
    assert "5-fold over queries" in record["training"]["protocol"] and record["created"]  # one training collection
    assert "sample" not in record  # every query of both collections


def test_default_rerank_uses_the_best_preset_and_enforces_its_settings(demo_presets, demo_cli, tmp_path):
    _, presets, cache, _ = demo_presets
    preset = default_preset("smollm2-135m")
    assert preset is not None and preset.path.parent.parent == presets
    base = ["--run", demo_cli.bm25, "--index", demo_cli.common[demo_cli.common.index("--index") + 1], "--topics", "demo",
            "--cache-dir", cache]
    default = demo_cli.cli("rerank", *base, "-o", tmp_path / "default.trec")
    assert default.exit_code == 0, default.output
    explicit = demo_cli.cli("rerank", *base, "--heads", preset.path, "-o", tmp_path / "explicit.trec")
    named = demo_cli.cli("rerank", *base, "--preset", "heads+bm25", "-o", tmp_path / "named.trec")
    assert explicit.exit_code == 0 and named.exit_code == 0
    assert (tmp_path / "default.trec").read_bytes() == (tmp_path / "explicit.trec").read_bytes() == (tmp_path / "named.trec").read_bytes()
    assert "16 queries from the score cache" in default.output  # pointwise, top-4, 64 tokens: the preset's settings
    from click.testing import CliRunner

    from routehead_pyserini.cli import main

    clash = CliRunner().invoke(main, ["rerank", *map(str, base), "--mode", "listwise", "-o", str(tmp_path / "x.trec")])
    assert clash.exit_code != 0 and "--mode listwise conflicts with preset smollm2-135m/heads+bm25" in clash.output
    listed = demo_cli.cli("presets")
    assert listed.exit_code == 0 and "heads+bm25" in listed.output and "LOCO nDCG@10" in listed.output


def test_a_preset_refuses_another_model(demo_presets):
    with pytest.raises(PresetError, match="not for 'gemma3-270m'"):
        get_preset("heads+bm25", "gemma3-270m")
    with pytest.raises(PresetError, match="trained for model 'smollm2-135m'"):
        get_preset("smollm2-135m/heads+bm25", "gemma3-270m")
    with pytest.raises(PresetError, match="no preset 'nope'"):
        get_preset("nope", "smollm2-135m")


def test_a_model_without_a_preset_falls_back_to_icr_and_says_so(caplog, monkeypatch, tmp_path):
    from routehead_pyserini.cli.reranking import _method_choice

    monkeypatch.setenv("ROUTEHEAD_PRESETS_DIR", str(tmp_path))
    assert list_presets("some-org/some-model") == []
    with caplog.at_level(logging.WARNING, logger="routehead_pyserini"):
        choice = _method_choice("auto", None, None, None, {"model": "some-org/some-model"})
    assert choice.head_set.is_all and choice.defaults == {"order": "reversed"} and choice.recorded == {}
    assert "no trained preset exists for model 'some-org/some-model'" in caplog.text and "train-weights" in caplog.text
    icr = _method_choice("icr", None, None, None, {"model": "smollm2-135m"})
    assert icr.head_set.is_all and icr.defaults == {} and icr.recorded == {}


def test_an_int8_preset_loads_its_model_in_int8_and_refuses_float(demo_cli, tmp_path, monkeypatch):
    """`loco --quantize int8` trains presets on int8 scores; `rerank` then loads the model in int8 by
    itself (the scores come from the same cache) and refuses --quantize none."""
    index, collections = two_collections(demo_cli, tmp_path)
    cache, presets = tmp_path / "cache", tmp_path / "presets"
    result = demo_cli.cli("loco", "--collections", collections, "-o", tmp_path / "loco", "--top-k", 4, "--doc-max-tokens", 64,
                          "--methods", "heads+bm25", "--protocols", "loco", "--losses", "pointwise", "--quantize", "int8",
                          "--presets-exclude", "demo-b", "--presets-dir", presets, "--cache-dir", cache)
    assert result.exit_code == 0, result.output
    data = json.loads((presets / "smollm2-135m" / "heads+bm25-int8.json").read_text())
    assert data["preset"]["name"] == "heads+bm25-int8" and data["preset"]["quantize"] == "int8"
    assert data["model"]["fingerprint"].endswith("|float32|int8")
    if not any(data["weights"]):  # 8 training queries may zero every head: weight one, so that the LLM runs
        data["weights"][0] = 1.0
        (presets / "smollm2-135m" / "heads+bm25-int8.json").write_text(json.dumps(data))
    monkeypatch.setenv("ROUTEHEAD_PRESETS_DIR", str(presets))
    base = ["--run", demo_cli.bm25, "--index", index, "--topics", "demo", "--cache-dir", cache]
    default = demo_cli.cli("rerank", *base, "-o", tmp_path / "default.trec")
    assert default.exit_code == 0 and "16 queries from the score cache" in default.output  # int8, as trained
    from click.testing import CliRunner

    from routehead_pyserini.cli import main

    clash = CliRunner().invoke(main, ["rerank", *map(str, base), "--quantize", "none", "-o", str(tmp_path / "x.trec")])
    assert clash.exit_code == 2 and "--quantize none conflicts with preset smollm2-135m/heads+bm25-int8" in clash.output


def test_the_fusion_only_control_is_a_preset_that_never_loads_the_llm(demo_cli, tmp_path, monkeypatch):
    """`bm25+dense` (every head at 0) is written as a preset beside the head presets, so it competes for
    the default on its LOCO figure; `rerank` then fuses BM25 and the bi-encoder without the LLM."""
    index, collections = two_collections(demo_cli, tmp_path, sample_a=6)
    presets, cache = tmp_path / "presets", tmp_path / "cache"
    result = demo_cli.cli("loco", "--collections", collections, "-o", tmp_path / "loco", "--top-k", 4, "--doc-max-tokens", 64,
                          "--methods", "bm25+dense", "--protocols", "loco", "--losses", "pointwise",
                          "--presets-exclude", "demo-b", "--presets-dir", presets, "--cache-dir", cache)
    assert result.exit_code == 0, result.output
    data = json.loads((presets / "smollm2-135m" / "bm25+dense.json").read_text())
    assert data["preset"]["name"] == "bm25+dense" and not any(data["weights"]) and data["preset"]["heads"] == 0
    monkeypatch.setenv("ROUTEHEAD_PRESETS_DIR", str(presets))
    assert default_preset("smollm2-135m").name == "bm25+dense"
    listing = demo_cli.cli("presets", "--model", "smollm2-135m").output
    assert "smollm2-135m  (default: bm25+dense)" in listing and "no heads: BM25 and the bi-encoder fused" in listing
    assert "pooled CV –" in listing  # `--protocols loco` records no pooled-CV figure
    assert data["preset"]["sample"] == {"demo-a": 6} and "(sampled: demo-a 6 queries)" in listing  # not comparable with full means
    assert 0 < data["preset"]["training"]["collections"]["demo-a"] <= 6  # the sampled queries that can train
    out = tmp_path / "default.trec"
    default = demo_cli.cli("rerank", "--run", demo_cli.bm25, "--index", index, "--topics", "demo", "--cache-dir", cache, "-o", out)
    assert default.exit_code == 0, default.output
    assert "re-ranked by fusion alone (no LLM)" in default.output
    assert read_run(out).qids() == read_run(demo_cli.bm25).qids()


def test_the_listing_puts_the_default_model_first_and_names_the_samples_of_each_figure(demo_cli, monkeypatch, tmp_path):
    """The shipped presets: the 1.5B's LOCO mean (on 40-query samples) is the highest, yet the model
    `rerank` runs without --model comes first, and each figure says which queries it was measured on."""
    monkeypatch.setenv("ROUTEHEAD_PRESETS_DIR", str(tmp_path))  # none of your own
    listing = demo_cli.cli("presets").output.splitlines()
    assert listing[0].startswith("smollm2-135m  (default: ")
    models = [line.split()[0] for line in listing if not line.startswith(" ")]
    assert models == ["smollm2-135m", "qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"]
    sampled = [line for line in listing if "heads+bm25+dense-int8" in line and "LOCO" in line]
    assert "(on samples of at most 40 queries per collection)" in sampled[0]  # the 1.5B
    assert "(sampled: scifact 300, cranfield 100 queries)" in sampled[1]  # the 0.5B, every query but two samples
