"""Bad-input rows of one class: an output that would destroy an input (issue #22).

No command writes over or deletes a file it did not create, or any of its own inputs: an output
path that is an input (also through a symbolic link) is refused naming both options, ``--overwrite``
replaces only a folder that is recognisably an index this package built, and a pipeline is refused
when a stage would write over a stage's input or over the pipeline file itself.
"""
from __future__ import annotations

import os
from pathlib import Path

from bad_cases import case

CASES = [
    case("random-order-output-is-input", "output = the input run", "random-order {bm25} -o {bm25}",
         r"--output .*bm25\.trec is the same file as the input --run .*bm25\.trec"),
    case("random-order-output-links-to-input", "output is a link to the input run", "random-order {bm25} -o {d}/link.trec",
         r"--output .*link\.trec is the same file as the input --run"),
    case("rerank-output-is-run", "rerank output = its --run", "rerank --run {bm25} --index {idx} --topics demo -o {bm25}",
         r"--output .*bm25\.trec is the same file as the input --run"),
    case("search-output-is-topics", "search output = its topics file", "search --index {idx} --topics {d}/topics.tsv -o {d}/topics.tsv",
         r"--output .*topics\.tsv is the same file as the input --topics"),
    case("evaluate-output-is-run", "evaluate --output = a run", "evaluate {bm25} --qrels demo --output {bm25}",
         r"--output .*bm25\.trec is the same file as the input --runs"),
    case("train-output-is-labels", "train output = its labels file", "train --labels {bm25} --topics demo -o {bm25}",
         r"--output .*bm25\.trec is the same file as the input --labels"),
    case("index-overwrite-holds-corpus", "--overwrite of the folder that holds the corpus",
         "index --corpus {d}/sub/corpus.jsonl --index {d}/sub --overwrite", r"the input .*corpus\.jsonl lies inside .*sub, which --overwrite would replace"),
    case("index-overwrite-foreign-folder", "--overwrite of a folder that is not an index",
         "index --corpus demo --index {d}/notes --overwrite", r"notes is not a Lucene index built by routehead-pyserini"),
    case("index-overwrite-extra-files", "--overwrite of an index holding a user's file",
         "index --corpus demo --index {d}/index-plus --overwrite", r"index-plus holds 1 file\(s\) that are not part of a Lucene index \(e\.g\. notes\.txt\)"),
    case("pipeline-stage-over-its-input", "a stage writing over its own input", "pipeline run {d}/self_overwrite.yaml --dry-run",
         r"stage 'shuffle' \(random-order\): .*bm25\.trec is its own input"),
    case("pipeline-stage-over-pipeline", "a stage writing over the pipeline file", "pipeline run {d}/over_pipeline.yaml --dry-run",
         r"over_pipeline\.yaml is the pipeline file"),
]


def write_files(d: Path) -> None:
    """The folders and files these rows need, in ``d`` (beside ``d/bm25.trec``, written later)."""
    from routehead_pyserini.pipeline.demo import DEMO_DATA

    (d / "topics.tsv").write_text("q01\tbees and flowers\n")
    link = d / "link.trec"
    if not link.exists():
        os.symlink(d / "bm25.trec", link)
    (d / "sub").mkdir(exist_ok=True)
    (d / "sub" / "corpus.jsonl").write_bytes((DEMO_DATA / "corpus.jsonl").read_bytes())
    (d / "notes").mkdir(exist_ok=True)
    (d / "notes" / "todo.txt").write_text("my notes\n")
    (d / "index-plus").mkdir(exist_ok=True)
    (d / "index-plus" / "routehead-index.json").write_text("{}\n")
    (d / "index-plus" / "segments_1").write_text("")
    (d / "index-plus" / "notes.txt").write_text("mine\n")
    (d / "self_overwrite.yaml").write_text(
        "name: self\nstages:\n  - id: shuffle\n    uses: random-order\n"
        f"    with: {{run: {d / 'bm25.trec'}, output: {d / 'bm25.trec'}}}\n")
    (d / "over_pipeline.yaml").write_text(
        "name: over\nstages:\n  - id: shuffle\n    uses: random-order\n"
        f"    with: {{run: {d / 'bm25.trec'}, output: {d / 'over_pipeline.yaml'}}}\n")
