"""Running pipelines (pipeline/runner.py): stages skipped when up to date, resumed after a failure,
forced, and methods expanded; small pipelines on the demo index (BM25, random order, evaluation)."""
from __future__ import annotations

import json

import pytest

from routehead_pyserini.cli import main
from routehead_pyserini.pipeline.demo import DEMO_DATA
from routehead_pyserini.pipeline.spec import PipelineError, load_pipeline
from test_spec import records, run, small_pipeline, write


def test_skip_if_unchanged_and_rerun_what_changed(tmp_path, jvm, demo_index):
    path, work = small_pipeline(tmp_path, demo_index), tmp_path / "work"
    first = run(path, "--workdir", work)
    assert first.exit_code == 0, first.output
    assert "pipeline small: 3 stages, 3 ran, 0 up to date" in first.output
    assert {"bm25", "shuffled", "report"} == set(records(work))
    assert records(work)["bm25"]["command"][-2:] == ["--hits", "10"]
    outputs = {p: p.stat().st_mtime_ns for p in (work / "bm25.trec", work / "random-order.trec", work / "report.json")}

    again = run(path, "--workdir", work)
    assert again.exit_code == 0 and "3 stages, 0 ran, 3 up to date" in again.output
    assert {p: p.stat().st_mtime_ns for p in outputs} == outputs  # nothing rewritten

    plan = run(path, "--workdir", work, "--set", "hits=5", "--dry-run")
    assert "bm25 [search]: would run (settings changed)" in plan.output
    assert "shuffled [random-order]: would run (input" in plan.output  # its input is rewritten first
    changed = run(path, "--workdir", work, "--set", "hits=5")
    assert "3 ran" in changed.output
    assert {len(line.split()) for line in (work / "bm25.trec").read_text().splitlines()} == {6}
    assert len((work / "bm25.trec").read_text().splitlines()) == 16 * 5

    # an output edited by hand runs its stage again; the report after it is skipped, as its input
    # is back to the content it was made from (stages are compared by content, not by time)
    (work / "random-order.trec").write_text((work / "random-order.trec").read_text().splitlines(True)[0])
    plan = run(path, "--workdir", work, "--set", "hits=5", "--dry-run")
    assert "bm25 [search]: would skip (up to date)" in plan.output
    assert f"shuffled [random-order]: would run (output {work}/random-order.trec changed since it was written)" in plan.output
    redone = run(path, "--workdir", work, "--set", "hits=5")
    assert "3 stages, 1 ran, 2 up to date" in redone.output
    assert len((work / "random-order.trec").read_text().splitlines()) == 16 * 5
    logs = sorted((work / "logs").glob("small-*.log"))
    assert logs and "[small 1/3] bm25 (search): up to date, skipped" in logs[-1].read_text()


def test_resume_after_a_failed_stage(tmp_path, jvm, demo_index):
    bad_qrels = tmp_path / "qrels.txt"
    bad_qrels.write_text("q01 0 D01\n")  # three columns: read fails when the stage runs
    path, work = small_pipeline(tmp_path, demo_index, bad_qrels), tmp_path / "work"
    failed = run(path, "--workdir", work)
    assert failed.exit_code == 1
    assert f"{path}: stage 'report' (evaluate) failed: " in failed.output and "resume" in failed.output
    assert set(records(work)) == {"bm25", "shuffled"}  # finished stages keep their records
    assert not (work / "report.json").exists()
    log = next((work / "logs").glob("small-*.log")).read_text()
    assert "report (evaluate) failed" in log

    bad_qrels.write_text((DEMO_DATA / "qrels.txt").read_text())
    resumed = run(path, "--workdir", work)
    assert resumed.exit_code == 0, resumed.output
    assert "3 stages, 1 ran, 2 up to date" in resumed.output
    assert json.loads((work / "report.json").read_text())["runs"][0]["queries"] == 16


def test_force_and_methods(tmp_path, jvm, demo_index):
    path = write(tmp_path, f"""\
        stages:
          - id: bm25
            uses: search
            with: {{index: "{demo_index}", topics: demo, output: "${{workdir}}/${{method}}.trec", hits: 5}}
            methods:
              default: {{}}
              classic: {{k1: 1.2, b: 0.75}}
          - id: eval
            uses: evaluate
            with: {{runs: "${{stages.bm25.outputs}}", qrels: demo, output: "${{workdir}}/eval.json", format: json}}
        """)
    spec = load_pipeline(path, main, workdir=tmp_path / "w")
    assert [s.id for s in spec.stages] == ["bm25.default", "bm25.classic", "eval"]
    assert spec.stages[2].settings["runs"] == [str(tmp_path / "w" / "default.trec"), str(tmp_path / "w" / "classic.trec")]
    assert run(path, "--workdir", tmp_path / "w").exit_code == 0
    assert [r["name"] for r in json.loads((tmp_path / "w" / "eval.json").read_text())["runs"]] == ["default", "classic"]
    assert "3 stages, 3 ran" in run(path, "--workdir", tmp_path / "w", "--force").output
    with pytest.raises(PipelineError, match=r"stage 'bm25' has several methods; use \$\{stages.bm25.outputs\}"):
        load_pipeline(write(tmp_path, path.read_text().replace("stages.bm25.outputs", "stages.bm25.output")), main)
