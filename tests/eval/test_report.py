"""The evaluation report: the same numbers as `evaluate`, intervals, routing statistics, figures."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy import stats

from routehead_pyserini.cli import main
from routehead_pyserini.pipeline.demo import DEMO_DATA
from routehead_pyserini.eval.evaluate import build_report, evaluate_run
from routehead_pyserini.heads.head_set import from_pairs, write_head_set
from routehead_pyserini.eval.report import ReportSettings, confidence_interval, write_report
from routehead_pyserini.data.trec import read_qrels, read_run, read_topics

QRELS = DEMO_DATA / "qrels.txt"


def write_runs(folder: Path) -> list[Path]:
    """Two runs over the demo qrels: one puts judged documents first (noisily), one is random."""
    qrels = read_qrels(QRELS)
    docs = [f"D{i:02d}" for i in range(1, 49)]
    rng = random.Random(0)
    paths = []
    for name, signal in (("good", 1.0), ("noisy", 0.2)):
        lines = []
        for qid in sorted(qrels):
            scores = {d: signal * qrels[qid].get(d, 0) + rng.random() for d in docs}
            ranked = sorted(scores, key=scores.get, reverse=True)[:20]
            lines += [f"{qid} Q0 {d} {r} {scores[d]:.6f} {name}" for r, d in enumerate(ranked, 1)]
        path = folder / f"{name}.trec"
        path.write_text("\n".join(lines) + "\n")
        paths.append(path)
    return paths


def cli(*args):
    result = CliRunner().invoke(main, ["-q", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result.stdout  # (stderr may hold the model loader's progress bar)


def test_report_numbers_equal_evaluate(tmp_path):
    runs = write_runs(tmp_path)
    measures = ["-m", "nDCG@10", "-m", "MAP@100", "-m", "MRR@10"]
    evaluated = json.loads(cli("evaluate", *runs, "--qrels", QRELS, *measures, "--format", "json"))
    table = cli("evaluate", *runs, "--qrels", QRELS, *measures, "--format", "markdown")
    out = cli("evaluate", *runs, "--qrels", QRELS, *measures, "--report-dir", tmp_path / "report", "--title", "Two runs")
    assert f"wrote report.md, report.json and figures to {tmp_path / 'report'}" in out

    report = json.loads((tmp_path / "report" / "report.json").read_text())
    for key in ("baseline", "test", "runs"):
        assert report[key] == evaluated[key], key  # means, per-query values, W/T/L and p: identical
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert markdown.startswith("# Two runs\n")
    assert table.split("\n\n")[0] in markdown  # the evaluate table, row for row
    noisy = next(r for r in report["runs"] if r["name"] == "noisy")
    first = noisy["vs_baseline"][0]
    assert (f"| noisy | nDCG@10 | {first['mean']:.4f} | {first['baseline_mean']:.4f} | {first['mean'] - first['baseline_mean']:+.4f} "
            f"| {first['wins']}/{first['ties']}/{first['losses']} |") in markdown

    # the interval is Student's t over the run's per-query values
    values = np.array([v["nDCG@10"] for v in noisy["per_query"].values()])
    expected = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    assert report["confidence_intervals"]["runs"]["noisy"]["nDCG@10"] == pytest.approx(list(expected), abs=1e-12)
    assert report["figures"] == {"means": "plot-means.png", "deltas": "plot-deltas.png"}
    for name in report["figures"].values():
        assert (tmp_path / "report" / name).read_bytes().startswith(b"\x89PNG")
        assert f"]({name})" in markdown

    # same inputs, same bytes (figures included)
    before = {p.name: p.read_bytes() for p in (tmp_path / "report").iterdir()}
    cli("evaluate", *runs, "--qrels", QRELS, *measures, "--report-dir", tmp_path / "report", "--title", "Two runs")
    assert {p.name: p.read_bytes() for p in (tmp_path / "report").iterdir()} == before


def test_report_options_need_report_dir(tmp_path):
    runs = write_runs(tmp_path)
    result = CliRunner().invoke(main, ["evaluate", *map(str, runs), "--qrels", str(QRELS), "--title", "x"])
    assert result.exit_code == 2 and "--router, --heads, --topics and --title belong to --report-dir" in result.output
    assert "good" not in result.stdout  # refused before anything is computed


def test_confidence_interval_edge_cases():
    assert confidence_interval(np.array([0.4])) == (0.4, 0.4)
    lo, hi = confidence_interval(np.array([0.2, 0.4, 0.6, 0.8]))
    assert lo < 0.5 < hi and hi - 0.5 == pytest.approx(0.5 - lo)
    assert all(np.isnan(confidence_interval(np.array([]))))


def tiny_router(tmp_path: Path, model, topics: dict[str, str], shape: tuple[int, int]) -> Path:
    """A router trained briefly on random labels (plumbing only: its choices mean nothing)."""
    from routehead_pyserini.engine.query_embedding import embed_queries
    from routehead_pyserini.heads.router import RouterConfig, save_router, train_router

    x = embed_queries(model, list(topics.values()), layer=1)
    generator = torch.Generator().manual_seed(0)
    y = torch.rand(len(topics), *shape, generator=generator) < 0.2
    trained = train_router(x, y, RouterConfig(epochs=3, embedding_layer=1, top_k=3), val_fraction=0.25, model=model)
    path = tmp_path / "router.pt"
    save_router(trained, path, model=model, prompt_settings={}, extra={"normalise": "zscore"})
    return path


def test_report_with_routing_statistics(tmp_path, tiny_llama):
    from helpers import word_tokenizer

    from routehead_pyserini.heads.loading import load_router
    from routehead_pyserini.eval.routing_stats import route_topics

    tiny_llama.tokenizer = word_tokenizer()
    topics = read_topics(DEMO_DATA / "queries.jsonl")
    router = tiny_router(tmp_path, tiny_llama, topics, (4, 4))
    routing = route_topics(router, topics, sorted(topics)[:10], model=tiny_llama)
    expected = load_router(router).route_queries(tiny_llama, [topics[q] for q in sorted(topics)[:10]])
    assert routing.sets == [s.heads for s in expected]
    assert routing.counts.sum() == 30 and routing.mean_size == 3.0
    static = from_pairs([(0, 0), (1, 2)], model_shape=(4, 4), source="test")

    evaluations = [evaluate_run(read_run(p), read_qrels(QRELS), ["nDCG@10"], run_name=p.stem) for p in write_runs(tmp_path)]
    written = write_report(build_report(evaluations, "good"), tmp_path / "r", ReportSettings("Routed", "demo"),
                           routing=routing, static=static, static_path="static.json")
    assert {p.name for p in written} == {"report.md", "report.json", "plot-means.png", "plot-deltas.png", "plot-heads.png"}
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["routing"]["queries"] == 10 and data["routing"]["mean_set_size"] == 3.0
    assert data["routing"]["share_in_static_set"] == pytest.approx(routing.overlap(static))
    assert sum(h["queries"] for h in data["routing"]["top_heads"]) == 30
    assert data["static_heads"]["heads"] == ["0.0", "1.2"]
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert "## Heads" in markdown and "10 queries routed; mean set size 3.00" in markdown


@pytest.mark.slow
def test_heads_command_and_report_with_a_smollm2_router(tmp_path, smollm2):
    """The real CLI path: `heads` on a head-set file and on a router, `evaluate --router` (the LLM loaded by name)."""
    topics = read_topics(DEMO_DATA / "queries.jsonl")
    router = tiny_router(tmp_path, smollm2, topics, smollm2.spec.shape)
    static = tmp_path / "static.json"
    write_head_set(from_pairs([(14, 3), (15, 0), (2, 8)], model_name="smollm2-135m", model_shape=(30, 9),
                              source="a test set", normalise="zscore"), static)

    shown = cli("heads", static, "--plot", tmp_path / "static.png")
    assert "3 heads: 2.8,14.3,15.0" in shown and "   14  3" in shown and f"wrote {tmp_path / 'static.png'}" in shown
    assert json.loads(cli("heads", static, "--json"))["heads"] == ["2.8", "14.3", "15.0"]

    routed = json.loads(cli("heads", router, "--topics", "demo", "--overlay", static, "--json"))
    assert routed["queries"] == 16 and routed["mean_set_size"] == 3.0 and routed["model"] == "smollm2-135m"
    text = cli("heads", router, "--topics", "demo", "--overlay", static, "--plot", tmp_path / "routed.png", "--top", 5)
    assert "16 queries routed; mean set size 3.00" in text and (tmp_path / "routed.png").exists()

    runs = write_runs(tmp_path)
    cli("evaluate", *runs, "--qrels", "demo", "--report-dir", tmp_path / "r", "--router", router, "--heads", static)
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["routing"]["per_query"] == routed["per_query"]  # the same 16 queries, routed the same way
    assert data["figures"]["heads"] == "plot-heads.png"
