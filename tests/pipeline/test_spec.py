"""YAML pipelines: validation errors, the plan, skip-if-unchanged, resume after a failure."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from routehead_pyserini.cli import main
from routehead_pyserini.pipeline.demo import DEMO_DATA
from routehead_pyserini.pipeline.spec import PipelineError, load_pipeline, parse_overrides

REPO = Path(__file__).resolve().parents[2]

# BM25 → random order → evaluation with the report: no LLM, a second or two per run
SMALL = """\
name: small
vars:
  hits: 10
stages:
  - id: bm25
    uses: search
    with: {{index: "{index}", topics: demo, hits: "${{hits}}", output: "${{workdir}}/bm25.trec"}}
  - id: shuffled
    uses: random-order
    with: {{run: "${{stages.bm25.output}}", output: "${{workdir}}/random-order.trec"}}
  - id: report
    uses: evaluate
    with:
      runs: ["${{stages.bm25.output}}", "${{stages.shuffled.output}}"]
      qrels: "{qrels}"
      measure: [nDCG@10, MAP@100]
      report-dir: ${{workdir}}
"""


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def small_pipeline(tmp_path: Path, index: Path, qrels: Path = DEMO_DATA / "qrels.txt") -> Path:
    return write(tmp_path, SMALL.format(index=index, qrels=qrels))


def run(*args) -> object:
    return CliRunner().invoke(main, ["-q", "pipeline", "run", *map(str, args)])


def records(workdir: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((workdir / ".pipeline").glob("*.json"))}


# --------------------------------------------------------------------------------------------
# validation: every error names the file, the stage and the key


def broken(tmp_path: Path, old: str, new: str) -> Path:
    text = SMALL.format(index=tmp_path, qrels=DEMO_DATA / "qrels.txt")
    assert old in text
    return write(tmp_path, text.replace(old, new, 1))


@pytest.mark.parametrize("old, new, message", [
    ("stages:", "stagse:", "p.yaml: key 'stagse': unknown top-level key (did you mean 'stages'?)"),
    ("hits: \"${hits}\"", "hitz: 5", "p.yaml: stage 'bm25' (search): key 'hitz': not an option of search (did you mean 'hits'?)"),
    ("uses: random-order", "uses: random-ordr", "p.yaml: stage 'shuffled': key 'uses': unknown command 'random-ordr' (did you mean 'random-order'?)"),
    ("hits: \"${hits}\"", "hits: many", "p.yaml: stage 'bm25' (search): key 'hits': 'many' is not a valid integer"),
    ("\"${stages.bm25.output}\", output", "\"${stages.report.output}\", output",
     "p.yaml: stage 'shuffled' (random-order): key 'run': ${stages.report.output}: stage 'report' comes later in the file"),
    ("\"${stages.bm25.output}\", output", "\"${stages.bm26.output}\", output",
     "p.yaml: stage 'shuffled' (random-order): key 'run': ${stages.bm26.output}: no earlier stage 'bm26' (did you mean 'bm25'?)"),
    ("\"${stages.bm25.output}\", output", "runs/none.trec, output",
     "p.yaml: stage 'shuffled' (random-order): key 'run': runs/none.trec does not exist and no earlier stage writes it"),
    ("${hits}", "${hist}", "p.yaml: stage 'bm25' (search): key 'hits': unknown variable ${hist} (did you mean 'hits'?)"),
    (", output: \"${workdir}/bm25.trec\"", "", "p.yaml: stage 'bm25' (search): missing required key 'output'"),
    ("id: shuffled", "id: bm25", "p.yaml: stage 'bm25': key 'id': a stage with this id comes earlier in the file"),
    ("qrels: \"", "qrels: \"/nowhere/", "p.yaml: stage 'report' (evaluate): key 'qrels': /nowhere/"),
    ("    uses: search", "    uses: search\n    wiht: {}", "p.yaml: stage 'bm25': key 'wiht': unknown stage key (did you mean 'with'?)"),
])
def test_validation_errors_name_file_stage_and_key(tmp_path, old, new, message):
    path = broken(tmp_path, old, new)
    with pytest.raises(PipelineError) as caught:
        load_pipeline(path, main)
    assert str(caught.value).startswith(str(path)), caught.value
    assert message.removeprefix("p.yaml") in str(caught.value)


def test_overrides_are_checked_too(tmp_path, demo_index):
    path = small_pipeline(tmp_path, demo_index)
    assert load_pipeline(path, main, overrides=parse_overrides(["hits=3", "bm25.k1=1.2"])).stages[0].argv[-4:] == ["--hits", "3", "--k1", "1.2"]
    with pytest.raises(PipelineError, match=r"--set hist: not a variable.*\(did you mean 'hits'\?\)"):
        load_pipeline(path, main, overrides=parse_overrides(["hist=3"]))
    with pytest.raises(PipelineError, match=r"stage 'bm25' \(search\): --set bm25.hitz: not an option of search \(did you mean 'hits'\?\)"):
        load_pipeline(path, main, overrides=parse_overrides(["bm25.hitz=1"]))
    with pytest.raises(PipelineError, match="expected KEY=VALUE"):
        parse_overrides(["hits"])


def test_nothing_runs_when_a_later_stage_is_invalid(tmp_path, demo_index):
    path = broken(tmp_path, "measure: [nDCG@10, MAP@100]", "measure: [nDCG@10, MAP@100]\n      colour: red")
    path.write_text(path.read_text().replace(str(tmp_path), str(demo_index)))
    result = run(path, "--workdir", tmp_path / "work")
    assert result.exit_code == 1
    assert "stage 'report' (evaluate): key 'colour': not an option of evaluate" in result.output
    assert not (tmp_path / "work").exists()


# --------------------------------------------------------------------------------------------
# running: records, skipping, resuming


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


# --------------------------------------------------------------------------------------------
# the shipped pipelines


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "pipelines").glob("*.yaml")))
def test_shipped_pipelines_validate(name, request, tmp_path):
    data = tmp_path / "no-data" if name == "demo.yaml" else request.getfixturevalue("shared_data")  # the demo needs none
    result = CliRunner().invoke(main, ["-q", "--data-dir", str(data), "pipeline", "run", str(REPO / "pipelines" / name),
                                       "--dry-run", "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    assert "would run" in result.output
    assert not (tmp_path / "w").exists()  # a dry run writes nothing


def test_demo_pipeline_plan(tmp_path):
    spec = load_pipeline(REPO / "pipelines" / "demo.yaml", main, workdir=tmp_path)
    assert [s.id for s in spec.stages] == ["index", "bm25", "bm25-classic", "random-order", "default", "icr.bm25", "icr.reversed", "report"]
    report = spec.stages[-1]
    assert [Path(r).name for r in report.settings["runs"]] == [
        "bm25.trec", "bm25-k1.2-b0.75.trec", "random-order.trec", "rerank-default.trec", "icr-bm25-order.trec", "icr-reversed-order.trec"]
    assert report.outputs == [str(tmp_path / "report.md"), str(tmp_path / "report.json")]
