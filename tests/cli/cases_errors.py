"""Bad-input rows of one class: values and folders that used to end in a library's traceback (issue #22).

A Java exception from an option value (BM25 k1/b, a count beyond a Java int or Anserini's thread
pool) is refused before Java sees it, or translated into one line naming the Java exception; a
folder that holds no Lucene index (empty, a dense index, a damaged one) or a file given as --index
is named with the fix; the same run given twice to ``evaluate`` (also through a link) is refused;
a run tag that would break a TREC line is a usage error at option parsing. All fail before a model loads.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from bad_cases import case

_NOT_LUCENE = r"empty-index is not a Lucene index \(no segments file; the folder is empty\): build one with `routehead-pyserini index --corpus CORPUS --index .*empty-index --overwrite`"
_CORRUPT = r"cannot open the Lucene index .*broken-index: Java exception org\.apache\.lucene\.[\w.]+: .*; rebuild it with `routehead-pyserini index"
_A_FILE = r"hello\.txt is a file, not an index folder: give --index the folder"
_TAG = r"'--run-tag': '(my tag|)' must be one word without whitespace"


CASES = [
    # ---- option values Java would refuse (--k1/--b ranges: cases_values.py; their Java translation: test_errors.py)
    case("search-hits-beyond-java-int", "--hits beyond a Java int", "search --index {idx} --topics demo --hits 3000000000 -o {out}/r.trec",
         r"--hits 3000000000: give 1 to 2147483647 \(a Java int\)"),
    case("search-threads-beyond-java-int", "--threads beyond a Java int", "search --index {idx} --topics demo --threads 3000000000 -o {out}/r.trec",
         r"--threads 3000000000: give 1 to 2147483647 \(a Java int\)"),
    case("index-threads-beyond-java-pool", "--threads beyond Anserini's thread pool", "index --corpus demo --index {out}/i --threads 40000",
         r"40000 indexing threads: Anserini's thread pool takes 1 to 32767; lower --threads"),
    # ---- --index folders and files that are no Lucene index
    case("search-empty-index-folder", "an empty folder as --index", "search --index {d}/empty-index --topics demo -o {out}/r.trec", _NOT_LUCENE),
    case("search-folder-not-an-index", "a folder of other files as --index", "search --index {d}/not-an-index --topics demo -o {out}/r.trec",
         r"not-an-index is not a Lucene index \(no segments file\): build one with `routehead-pyserini index --corpus CORPUS --index NEW-FOLDER`"),
    case("search-dense-index-as-lucene", "a dense index as --index of BM25", "search --index {d}/dense-index --topics demo -o {out}/r.trec",
         r"dense-index is a dense \(faiss\) index, not a Lucene index: search it with `routehead-pyserini search --dense"),
    case("search-lucene-index-as-dense", "a Lucene index for --dense", "search --dense --index {idx} --topics demo -o {out}/r.trec",
         r"is not a dense index \(no routehead-dense-index\.json\); build one with `routehead-pyserini index --dense"),
    case("search-damaged-index", "a damaged Lucene index (Java exception)", "search --index {d}/broken-index --topics demo -o {out}/r.trec", _CORRUPT),
    case("search-file-as-index", "a file as --index", "search --index {d}/hello.txt --topics demo -o {out}/r.trec", _A_FILE),
    case("rerank-empty-index-folder", "an empty folder as --index", "rerank --run {bm25} --index {d}/empty-index --topics demo -o {out}/r.trec", _NOT_LUCENE),
    case("rerank-damaged-index", "a damaged Lucene index (Java exception)", "rerank --run {bm25} --index {d}/broken-index --topics demo -o {out}/r.trec", _CORRUPT),
    case("rerank-file-as-index", "a file as --index", "rerank --run {bm25} --index {d}/hello.txt --topics demo -o {out}/r.trec", _A_FILE),
    case("label-empty-index-folder", "an empty folder as --index", "label --run {bm25} --index {d}/empty-index --topics demo --qrels demo -o {out}/l.jsonl", _NOT_LUCENE),
    case("pipeline-stage-damaged-index", "a stage searching a damaged index", "pipeline run {d}/stage_broken_index.yaml --workdir {out}/w",
         r"stage 'bm25' \(search\) failed: cannot open the Lucene index .*broken-index: Java exception"),
    # ---- the same run twice
    case("evaluate-same-run-twice", "the same run twice", "evaluate {bm25} {bm25} --qrels demo", r"run .*bm25\.trec is given twice: give each run once"),
    case("evaluate-run-and-link", "a run and a link to it", "evaluate {bm25} {d}/same-run.trec --qrels demo",
         r"run .*same-run\.trec is the same file as .*bm25\.trec: give each run once"),
    # ---- run tags that would break a TREC line
    case("search-run-tag-space", "--run-tag with a space", "search --index {idx} --topics demo --run-tag my{sp}tag -o {out}/r.trec", _TAG),
    case("search-run-tag-empty", "--run-tag ''", "search --index {idx} --topics demo --run-tag {empty} -o {out}/r.trec", _TAG),
    case("rerank-run-tag-space", "--run-tag with a space", "rerank --run {bm25} --index {idx} --topics demo --run-tag my{sp}tag -o {out}/r.trec", _TAG),
    case("random-order-run-tag-space", "--run-tag with a space", "random-order {bm25} --run-tag my{sp}tag -o {out}/r.trec", _TAG),
    case("random-order-run-tag-empty", "--run-tag ''", "random-order {bm25} --run-tag {empty} -o {out}/r.trec", _TAG),
]


def write_files(d: Path) -> None:
    """The folders and files these rows need, in ``d`` (beside ``d/bm25.trec``, written later)."""
    (d / "empty-index").mkdir(exist_ok=True)
    (d / "not-an-index").mkdir(exist_ok=True)
    (d / "not-an-index" / "notes.txt").write_text("not an index\n")
    (d / "dense-index").mkdir(exist_ok=True)
    (d / "dense-index" / "routehead-dense-index.json").write_text(json.dumps({"encoder": "all-minilm-l6-v2", "dim": 384}) + "\n")
    (d / "broken-index").mkdir(exist_ok=True)
    (d / "broken-index" / "segments_1").write_bytes(b"not a Lucene segments file\n")
    link = d / "same-run.trec"
    if not link.is_symlink():
        os.symlink(d / "bm25.trec", link)
    (d / "stage_broken_index.yaml").write_text(
        "name: broken-index\nstages:\n  - id: bm25\n    uses: search\n"
        f"    with: {{index: {d / 'broken-index'}, topics: demo, output: '${{workdir}}/bm25.trec'}}\n")
