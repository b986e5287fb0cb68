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
    # issue #22: a key twice (YAML's safe_load would keep the last silently), non-finite option values
    ("    uses: search", "    uses: search\n    uses: random-order", "p.yaml: invalid YAML at line 7: duplicate key 'uses' (first at line 6)"),
    ("  hits: 10", "  hits: 10\n  hits: 20", "p.yaml: invalid YAML at line 4: duplicate key 'hits' (first at line 3)"),
    ("hits: \"${hits}\"", "hits: 5, k1: .nan", "p.yaml: stage 'bm25' (search): key 'k1': nan is not a finite number"),
    ("hits: \"${hits}\"", "hits: 5, b: 1.5", "p.yaml: stage 'bm25' (search): key 'b': 1.5 is not in the range 0<=x<=1"),
    ("hits: \"${hits}\"", "hits: 5, k1: -.inf", "p.yaml: stage 'bm25' (search): key 'k1': -inf is not a finite number"),
])
def test_validation_errors_name_file_stage_and_key(tmp_path, old, new, message):
    path = broken(tmp_path, old, new)
    with pytest.raises(PipelineError) as caught:
        load_pipeline(path, main)
    assert str(caught.value).startswith(str(path)), caught.value
    assert message.removeprefix("p.yaml") in str(caught.value)


def test_a_byte_order_mark_is_dropped(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_bytes(("\ufeff" + SMALL.format(index=DEMO_DATA, qrels=DEMO_DATA / "qrels.txt")).replace("name: small", "name: bom").encode("utf-8"))
    assert load_pipeline(path, main).name == "bom"  # not a key '\ufeffname'


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


# (running them: test_runner.py)


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
