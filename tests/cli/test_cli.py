import json

import pytest
from click.testing import CliRunner

from routehead_pyserini.cli import main
from routehead_pyserini.pipeline.demo import DEMO_DATA


@pytest.fixture()
def cli():
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(main, ["-q", *map(str, args)], catch_exceptions=False)

    return invoke


def test_every_command_explains_itself(cli):
    top = cli("--help")
    assert top.exit_code == 0
    commands = [name for name in main.commands]
    assert {"index", "search", "evaluate", "datasets", "demo"} <= set(commands)
    for name in commands:
        result = cli(name, "--help")
        assert result.exit_code == 0, name
        assert len(main.commands[name].help or "") > 30, f"{name} needs a real description"
        for param in main.commands[name].params:
            if param.param_type_name == "option" and param.name not in {"help"}:
                assert param.help, f"{name} --{param.name} has no help text"


def test_demo_end_to_end(cli, jvm, smollm2, tmp_path):
    result = cli("demo", "--output-dir", tmp_path, "--hits", 5)
    assert result.exit_code == 0, result.output
    assert "bm25" in result.output and "random-order" in result.output and "icr-reversed-order" in result.output
    for name in ("bm25", "bm25-k1.2-b0.75", "random-order", "icr-bm25-order", "icr-reversed-order"):
        assert (tmp_path / f"{name}.trec").stat().st_size > 0
    assert (tmp_path / "report.md").read_text().startswith("# Demo")


def test_index_search_evaluate_chain(cli, jvm, tmp_path):
    index_dir, run = tmp_path / "idx", tmp_path / "bm25.trec"
    assert cli("index", "--corpus", DEMO_DATA / "corpus.jsonl", "--index", index_dir, "--name", "demo-copy").exit_code == 0
    result = cli("search", "--index", "demo-copy", "--topics", "demo", "--output", run, "--hits", 10)
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and run.exists()
    out = cli("evaluate", run, "--qrels", "demo", "-m", "nDCG@10", "--format", "json")
    data = json.loads(out.output)
    assert data["runs"][0]["name"] == "bm25" and data["runs"][0]["queries"] == 16
    assert 0 < data["runs"][0]["means"]["nDCG@10"] <= 1


def test_evaluate_against_baseline_to_file(cli, shared_data, tmp_path):
    out_file = tmp_path / "report.md"
    result = cli("--data-dir", shared_data, "evaluate", "trec-dl-2019", "--qrels", "trec-dl-2019", "-l", 2,
                 "--top-k", 20, "--format", "markdown", "-o", out_file)
    assert result.exit_code == 0, result.output
    assert "0.5058" in out_file.read_text()


def test_malformed_run_is_one_clear_line(cli, tmp_path):
    bad = tmp_path / "bad.trec"
    bad.write_text("1 Q0 d1 1 1.0 t\n1 Q0 d2 two 0.5 t\n")
    result = CliRunner().invoke(main, ["evaluate", str(bad), "--qrels", str(DEMO_DATA / "qrels.txt")])
    assert result.exit_code == 1
    assert f"Error: {bad}:2: rank 'two' is not an integer" in result.output
    assert "Traceback" not in result.output


def test_missing_index_is_one_clear_line(cli, jvm, tmp_path):
    result = CliRunner().invoke(main, ["search", "--index", str(tmp_path / "none"), "--topics", "demo", "-o", str(tmp_path / "x.trec")])
    assert result.exit_code == 1
    assert "does not exist" in result.output and "routehead-pyserini index" in result.output
    assert not (tmp_path / "x.trec").exists()


def test_rerank_and_analyze_heads_on_the_demo(cli, jvm, smollm2, demo_index, tmp_path):
    """The real SmolLM2 through the CLI: two demo queries, top-4; the analysis reuses the cache."""
    bm25 = tmp_path / "bm25.trec"
    assert cli("search", "--index", demo_index, "--topics", "demo", "-o", bm25, "--hits", 6).exit_code == 0
    common = ["--run", bm25, "--index", demo_index, "--topics", "demo", "--top-k", 4, "--sample", 2, "--cache-dir", tmp_path / "cache"]
    out = tmp_path / "icr.trec"
    result = cli("rerank", *common, "--method", "icr", "-o", out)
    assert result.exit_code == 0, result.output
    assert "2 queries, 8 documents re-ranked; 0 queries from the score cache" in result.output
    lines = out.read_text().splitlines()
    assert len(lines) == 12 and all(line.endswith("routehead-smollm2-135m") for line in lines)
    again = cli("rerank", *common, "--heads", "20.1,25.3", "-o", tmp_path / "two-heads.trec")
    assert "2 queries from the score cache" in again.output
    analysis = cli("analyze-heads", *common, "--qrels", "demo", "--folds", 2, "-o", tmp_path / "analysis")
    assert analysis.exit_code == 0, analysis.output
    for name in ("bm25", "random-order", "icr-all-heads", "best-single-head-cv", "oracle-head", "oracle-head-null"):
        assert name in analysis.output
        assert (tmp_path / "analysis" / f"{name}.trec").exists()
    assert (tmp_path / "analysis" / "icr-all-heads.trec").read_text() == out.read_text().replace("routehead-smollm2-135m", "icr-all-heads")


def test_rerank_needs_one_text_source(cli, tmp_path):
    result = CliRunner().invoke(main, ["rerank", "--run", "x", "-o", str(tmp_path / "o.trec")])
    assert result.exit_code != 0 and "exactly one of --index, --corpus, --candidates" in result.output


def test_label_train_and_routed_rerank_on_the_demo(cli, jvm, smollm2, demo_index, tmp_path):
    """Plumbing of the RouteHead commands with the real SmolLM2 (16 demo queries, top-4: no quality claim)."""
    from routehead_pyserini.heads.head_set import read_head_set
    from routehead_pyserini.heads.labels import read_labels
    from routehead_pyserini.heads.loading import load_router

    bm25 = tmp_path / "bm25.trec"
    assert cli("search", "--index", demo_index, "--topics", "demo", "-o", bm25, "--hits", 6).exit_code == 0
    common = ["--run", bm25, "--index", demo_index, "--topics", "demo", "--top-k", 4, "--cache-dir", tmp_path / "cache"]
    labelled = cli("label", *common, "--qrels", "demo", "-o", tmp_path / "labels.jsonl", "--max-size", 3,
                   "--static-heads", str(tmp_path / "static{k}.json"), "--static-k", "1,5", "--random-heads", tmp_path / "random.json")
    assert labelled.exit_code == 0, labelled.output
    labels = read_labels(tmp_path / "labels.jsonl")
    assert len(labels) >= 10 and all(1 <= len(q.heads) <= 3 for q in labels.queries.values())
    # the search starts from the best single heads, so a label is never worse than the best one
    assert all(q.ndcg >= float(q.single_head_ndcg.max()) - 1e-6 for q in labels.queries.values())
    static = read_head_set(tmp_path / "static5.json")
    assert len(static.heads) == 5 and static.normalise == "zscore" and static.model_shape == (30, 9)
    assert set(read_head_set(tmp_path / "static1.json").heads) <= set(static.heads)
    mean_size = round(sum(len(q.heads) for q in labels.queries.values()) / len(labels))
    assert len(read_head_set(tmp_path / "random.json").heads) == max(1, mean_size)

    trained = cli("train", "--labels", tmp_path / "labels.jsonl", "--topics", "demo", "-o", tmp_path / "router.pt",
                  "--epochs", 20, "--patience", 5, "--top-k", 3)
    assert trained.exit_code == 0, trained.output
    assert load_router(tmp_path / "router.pt", model=smollm2).extra["normalise"] == "zscore"

    routed = cli("rerank", *common, "--router", tmp_path / "router.pt", "-o", tmp_path / "routed.trec")
    assert routed.exit_code == 0, routed.output
    assert "16 queries from the score cache" in routed.output  # routed heads are a subset of cached all-heads scores
    fixed = cli("rerank", *common, "--heads", tmp_path / "static5.json", "-o", tmp_path / "static.trec")
    assert fixed.exit_code == 0 and (tmp_path / "static.trec").read_text() != (tmp_path / "routed.trec").read_text()


def test_evaluate_common_queries(cli, tmp_path):
    full, part = tmp_path / "full.trec", tmp_path / "part.trec"
    full.write_text("q01 Q0 D01 1 2.0 t\nq02 Q0 D07 1 2.0 t\n")
    part.write_text("q01 Q0 D01 1 2.0 t\n")
    data = json.loads(cli("evaluate", full, part, "--qrels", DEMO_DATA / "qrels.txt", "--common-queries", "--format", "json").output)
    assert [r["queries"] for r in data["runs"]] == [1, 1]
    data = json.loads(cli("evaluate", full, part, "--qrels", DEMO_DATA / "qrels.txt", "--format", "json").output)
    assert [r["queries"] for r in data["runs"]] == [2, 1]


def test_scoring_settings_are_one_readable_log_line():
    from routehead_pyserini.cli.options import describe_scoring

    line = describe_scoring({"model": "smollm2-135m", "fingerprint": "fp", "heads": "all heads",
                              "settings": {"doc_max_tokens": 256, "order": "bm25", "max_context": None}, "max_context": 8192})
    assert line == "smollm2-135m (fp); heads: all heads; doc-max-tokens=256 order=bm25; max-context=8192"


def test_model_progress_bars_only_at_debug_and_sigterm_handler_restored(monkeypatch):
    import os
    import signal

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    assert CliRunner().invoke(main, ["--log-level", "DEBUG", "datasets"]).exit_code == 0
    assert "HF_HUB_DISABLE_PROGRESS_BARS" not in os.environ
    assert CliRunner().invoke(main, ["datasets"]).exit_code == 0
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"  # transformers' loading bars off at INFO
    assert signal.getsignal(signal.SIGTERM) == before  # the command's SIGTERM handler does not outlive it


def test_threads_option_sets_torch_threads(demo_cli, tmp_path):
    """--threads N (or ROUTEHEAD_THREADS) is what torch runs the model with."""
    import torch
    from click.testing import CliRunner

    from routehead_pyserini.cli import main

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        CliRunner().invoke(main, ["--threads", "1", "rerank", "--method", "icr", "--run", str(demo_cli.bm25),
                                  "--index", str(tmp_path / "missing-index"), "-o", str(tmp_path / "x.trec")])
        assert torch.get_num_threads() == 1
        CliRunner().invoke(main, ["rerank", "--method", "icr", "--run", str(demo_cli.bm25),
                                  "--index", str(tmp_path / "missing-index"), "-o", str(tmp_path / "x.trec")],
                           env={"ROUTEHEAD_THREADS": "2"})
        assert torch.get_num_threads() == 2
        bad = CliRunner().invoke(main, ["--threads", "0", "datasets"])
        assert bad.exit_code == 2 and "--threads" in bad.output
    finally:
        torch.set_num_threads(before)


def test_the_public_face_is_lazy():
    """Importing the package starts neither torch nor the JVM; names resolve on first use."""
    import subprocess
    import sys

    code = ("import sys, routehead_pyserini as r; assert 'torch' not in sys.modules and 'jnius' not in sys.modules; "
            "assert set(r.__all__) >= {'Reranker', 'read_run', 'evaluate_run', 'get_preset'}; "
            "r.read_run; assert 'torch' not in sys.modules; r.Reranker; assert 'torch' in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
