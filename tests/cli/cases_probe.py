"""Bad-input rows found by an independent probe of the commands (issue #22), one or more per class:

- outputs: a path that is not a regular file (a FIFO, reached through a link) or a symbolic-link
  loop is refused instead of being renamed over, and so is ``-o -`` (click would write a file named '-'); an output inside an input folder (a file in the
  --index), two outputs of one command on one path, and a global --log-file that is an input are
  usage errors naming both options; a --log-file in a missing folder is refused at once;
- numbers: run scores beyond float32 (trec_eval reads an infinity), scores Python reads but C's
  atof does not (``1_000``), negative ranks, relevance grades and levels beyond trec_eval's C int,
  measure cut-offs beyond it, digits that are not ASCII (measures, --heads, --static-k), fields
  split on a no-break space; --threads, --head-dim and a trained router's --top-k beyond what can
  run; a corpus whose text is a number or NaN;
- names and empty values: ``index --name`` with a '/', an empty --heads, a pipeline name with a
  path in it, an option named twice in one stage (``top_k`` and ``top-k``), an id holding a
  no-break space, a --data-dir that is no folder;
- duplicates in list options (measures, --static-k, --lambdas, loco's --methods, pipeline --set):
  errors, as duplicates in files are; an unknown loco --losses value;
- selections that leave nothing: --sample-offset past the run, --only/--exclude past every collection.

All fail before a model loads (the signal-free, environment-dependent cases are in test_probe.py).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from bad_cases import Case, case


def _case(id: str, input: str, args: str, message: str) -> Case:
    """A row whose bad files live in ``{d}/probe``."""
    return case(id, input, args.replace("{d}/", "{d}/probe/"), message)


_TWICE = r"are the same file: one output would replace the other; give each its own path"

CASES = [
    # ---- outputs that are no regular file, inside an input folder, or given twice
    _case("random-order-output-is-fifo", "--output a link to a named pipe", "random-order {bm25} -o {d}/fifo-link.trec",
          r"cannot write .*fifo-link\.trec: it is a named pipe \(FIFO\), not a regular file; writing the output would replace it"),
    _case("random-order-output-dash", "--output - (stdout)", "random-order {bm25} -o -",
          r"--output '-': give a file path \(outputs are files written atomically, not stdout\)"),
    _case("evaluate-output-link-loop", "--output a symbolic-link loop", "evaluate {bm25} --qrels demo -o {d}/loop-a",
          r"cannot write .*loop-a: .* \(a symbolic link that never reaches a file\)"),
    _case("search-output-inside-index", "--output inside the --index folder", "search --index {idx} --topics demo -o {idx}/run.trec",
          r"--output .*run\.trec lies inside the input --index .*: writing it would change the input"),
    _case("label-static-heads-is-output", "--static-heads = --output", "label --run {bm25} --index {idx} --qrels demo --static-heads {out}/l.jsonl -o {out}/l.jsonl",
          r"--output .*l\.jsonl and --static-heads .*l\.jsonl " + _TWICE),
    _case("train-weights-cv-run-is-output", "--cv-run = --output", "train-weights --run {bm25} --index {idx} --qrels demo --cv-run {out}/w.json -o {out}/w.json",
          r"--output .*w\.json and --cv-run .*w\.json " + _TWICE),
    _case("random-order-log-file-is-run", "--log-file = the input run", "--log-file {bm25} random-order {bm25} -o {out}/r.trec",
          r"--log-file .*bm25\.trec is the same file as the input --run .*: logging into it would change the input"),
    _case("random-order-log-file-no-folder", "--log-file in a missing folder", "--log-file {d}/no/such/log.txt random-order {bm25} -o {out}/r.trec",
          r"'--log-file': .*log\.txt: cannot write there \(no folder .*no/such\)"),
    # ---- numbers trec_eval would read otherwise, or that cannot run
    _case("evaluate-score-beyond-float32", "run score 1e308", "evaluate {d}/huge_score.trec --qrels demo",
          r"huge_score\.trec:1: score 1e308 is beyond the float32 range .*: it would read an infinity"),
    _case("evaluate-score-underscore", "run score 1_000", "evaluate {d}/underscore.trec --qrels demo",
          r"underscore\.trec:1: score '1_000' is not a number in plain decimal notation"),
    _case("random-order-negative-rank", "run rank -3", "random-order {d}/negative_rank.trec -o {out}/r.trec",
          r"negative_rank\.trec:1: rank -3 is out of range \(0 to 9223372036854775807\)"),
    _case("evaluate-no-break-space", "run fields split by a no-break space", "evaluate {d}/nbsp.trec --qrels demo",
          r"nbsp\.trec:1: expected 6 fields 'qid Q0 docid rank score tag', got 5"),
    _case("evaluate-grade-beyond-int", "qrels grade 2**31", "evaluate {bm25} --qrels {d}/huge_grade.txt",
          r"huge_grade\.txt:1: relevance 2147483648 is out of range \(-2147483648 to 2147483647\)"),
    _case("evaluate-level-beyond-int", "-l 2**31", "evaluate {bm25} --qrels demo -l 2147483648",
          r"'--relevance-level': 2147483648 is not in the range -2147483648<=x<=2147483647"),
    _case("train-soft-router-level-beyond-int", "-l 10**20", "train-soft-router --run {bm25} --index {idx} --qrels demo -l 100000000000000000000 -o {out}/r.pt",
          r"'--relevance-level': 100000000000000000000 is not in the range"),
    _case("evaluate-cutoff-beyond-int", "-m P@2**31", "evaluate {bm25} --qrels demo -m P@2147483648",
          r"cut-off 2147483648 is beyond trec_eval's range \(1 to 2147483647\) in 'P@2147483648'"),
    _case("evaluate-cutoff-arabic-digits", "-m nDCG@١٠ (Arabic-Indic digits)", "evaluate {bm25} --qrels demo -m nDCG@١٠",
          r"unknown measure 'nDCG@١٠'"),
    _case("rerank-heads-arabic-digits", "--heads ١.٢ (Arabic-Indic digits)", "rerank --run {bm25} --index {idx} --topics demo --heads ١.٢ -o {out}/r.trec",
          r"--heads '١\.٢': expected 'all', a head-set file, or 'layer\.head' pairs"),
    _case("label-static-k-arabic-digit", "--static-k ١", "label --run {bm25} --index {idx} --qrels demo --static-k ١ -o {out}/l.jsonl",
          r"'--static-k': '١' is not an integer"),
    _case("loco-collections-level-beyond-int", "collections relevance_level 10**20", "loco --collections {d}/huge_level.yaml -o {out}/l",
          r"huge_level\.yaml: collection 'demo': relevance_level is 100000000000000000000, above 2147483647"),
    _case("random-order-threads-beyond-max", "--threads 100000 (torch threads)", "--threads 100000 random-order {bm25} -o {out}/r.trec",
          r"'--threads': 100000 is not in the range 1<=x<=1024"),
    _case("train-head-dim-beyond-max", "--head-dim 10**9", "train --labels {d}/labels.jsonl --topics demo --head-dim 1000000000 -o {out}/r.pt",
          r"'--head-dim': 1000000000 is not in the range 1<=x<=4096"),
    _case("train-top-k-beyond-heads", "--top-k above the labels' heads", "train --labels {d}/labels.jsonl --topics demo --top-k 5 -o {out}/r.pt",
          r"--top-k 5: more heads per query than the 4 heads \(2 layers x 2\) of the model these labels were made with"),
    _case("train-labels-without-topics", "labelled queries the topics lack", "train --labels {d}/labels_zz.jsonl --topics demo -o {out}/r.pt",
          r"1 labelled queries have no text in demo"),
    _case("index-text-is-number", "corpus text 42", "index --corpus {d}/text_number.jsonl --index {out}/i",
          r"text_number\.jsonl:2: not a document: 'text' must be a string or null, not int 42"),
    _case("index-text-is-nan", "corpus text NaN", "index --corpus {d}/text_nan.jsonl --index {out}/i",
          r"text_nan\.jsonl:1: not a document: 'text' must be a string or null, not float NaN"),
    _case("index-title-is-list", "corpus title a list", "index --corpus {d}/title_list.jsonl --index {out}/i",
          r"title_list\.jsonl:1: not a document: 'title' must be a string or null, not list"),
    # ---- names and empty values
    _case("index-name-with-slash", "index --name a/b", "index --corpus demo --index {out}/i --name a/b",
          r"'--name': 'a/b' must be one word without whitespace or '/'"),
    _case("rerank-heads-empty", "--heads ''", "rerank --run {bm25} --index {idx} --topics demo --heads {empty} -o {out}/r.trec",
          r"'--heads': an empty value"),
    _case("pipeline-name-with-path", "pipeline name '../../escape'", "pipeline run {d}/name_path.yaml --dry-run",
          r"name_path\.yaml: key 'name': '\.\./\.\./escape' must be a plain file name"),
    _case("pipeline-option-twice", "stage with top_k and top-k", "pipeline run {d}/option_twice.yaml --dry-run",
          r"option_twice\.yaml: stage 'shuffle' \(random-order\): key 'top-k': names the option --top-k again \(as 'top_k' before\)"),
    _case("evaluate-qid-with-no-break-space", "run qid holding a no-break space", "evaluate {d}/qid_nbsp.trec --qrels demo",
          r"qid_nbsp\.trec:1: query id 'q\\xa001' contains whitespace"),
    _case("datasets-data-dir-is-a-pipe", "--data-dir a named pipe", "--data-dir {d}/fifo-link.trec datasets",
          r"--data-dir .*fifo-link\.trec is a file, not the benchmark data folder"),
    # ---- duplicates in list options: errors, as in files
    _case("evaluate-measure-twice", "-m nDCG@10 -m ndcg@10", "evaluate {bm25} --qrels demo -m nDCG@10 -m ndcg@10",
          r"measure nDCG@10 is given twice \(names are case-insensitive\)"),
    _case("label-static-k-twice", "--static-k 16,16", "label --run {bm25} --index {idx} --qrels demo --static-k 16,16 -o {out}/l.jsonl",
          r"'--static-k': 16 is given twice"),
    _case("train-weights-lambda-twice", "--lambdas 0.1,0.1", "train-weights --run {bm25} --index {idx} --qrels demo --lambdas 0.1,0.1 -o {out}/w.json",
          r"--lambdas/--folds: lambda '0\.1' is given twice"),
    _case("loco-method-twice", "--methods heads,heads", "loco --collections {d}/one_collection.yaml --methods heads,heads -o {out}/l",
          r"--methods: 'heads' is given twice"),
    _case("loco-unknown-loss", "--losses baz", "loco --collections {d}/one_collection.yaml --losses baz -o {out}/l",
          r"--losses takes pointwise, pairwise, listwise \(comma-separated\), not 'baz'"),
    _case("pipeline-set-twice", "--set with one option twice", "pipeline run {d}/option_twice.yaml --set shuffle.top_k=1 --set shuffle.top-k=2 --dry-run",
          r"--set shuffle\.top-k: given twice \(or as another spelling of one option\)"),
    # ---- selections that leave nothing to do
    _case("rerank-sample-offset-past-run", "--sample-offset past every query", "rerank --run {bm25} --index {idx} --topics demo --sample 2 --sample-offset 1000 -o {out}/r.trec",
          r"--sample-offset 1000 skips every one of the 16 queries of the run"),
    _case("loco-exclude-every-collection", "--exclude every collection", "loco --collections {d}/one_collection.yaml --exclude demo -o {out}/l",
          r"--only/--exclude leave none of the collections \(demo\)"),
]


def _labels(*qids: str) -> str:
    header = {"format": "routehead-labels/1", "model": {"name": "smollm2-135m"}, "settings": {}, "search": {}, "shape": [2, 2]}
    rows = [{"qid": q, "heads": [[0, 1]], "ndcg": 0.5, "all_heads_ndcg": 0.5, "single_head_ndcg": [[0.1, 0.2], [0.3, 0.4]]} for q in qids]
    return "".join(json.dumps(obj) + "\n" for obj in [header, *rows])


def write_files(d: Path) -> None:
    """Write the bad files of :data:`CASES` into ``d/probe`` (a named pipe beside ``d``, linked from it:
    the test reads every file under ``d``, and reading a pipe would wait for a writer)."""
    p = d / "probe"
    p.mkdir(parents=True, exist_ok=True)
    fifo = d.parent / f"{d.name}-probe-fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    for link, target in ((p / "fifo-link.trec", fifo), (p / "loop-a", p / "loop-b"), (p / "loop-b", p / "loop-a")):
        if not link.is_symlink():
            os.symlink(target, link)
    (p / "huge_score.trec").write_text("q01 Q0 D01 1 1e308 t\n")
    (p / "underscore.trec").write_text("q01 Q0 D01 1 1_000 t\n")
    (p / "negative_rank.trec").write_text("q01 Q0 D01 -3 2.0 t\n")
    (p / "nbsp.trec").write_text("q01\u00a0Q0 D01 1 2.0 t\n")
    (p / "qid_nbsp.trec").write_text("q\u00a001 Q0 D01 1 2.0 t\n")
    (p / "huge_grade.txt").write_text("q01 0 D01 2147483648\n")
    (p / "huge_level.yaml").write_text("collections:\n  demo: {run: demo.trec, relevance_level: 100000000000000000000}\n")
    (p / "one_collection.yaml").write_text("collections:\n  demo: {run: demo.trec}\n")
    (p / "labels.jsonl").write_text(_labels("q01", "q02"))
    (p / "labels_zz.jsonl").write_text(_labels("q01", "zz"))
    (p / "text_number.jsonl").write_text('{"_id": "a", "text": "bees"}\n{"_id": "b", "text": 42}\n')
    (p / "text_nan.jsonl").write_text('{"_id": "a", "text": NaN}\n')
    (p / "title_list.jsonl").write_text('{"_id": "a", "title": ["bees"], "text": "hives"}\n')
    (p / "name_path.yaml").write_text("name: ../../escape\nstages:\n  - id: shuffle\n    uses: random-order\n"
                                      "    with: {run: demo.trec, output: '${workdir}/r.trec'}\n")
    (p / "option_twice.yaml").write_text("name: twice\nstages:\n  - id: shuffle\n    uses: random-order\n"
                                         f"    with: {{run: {d / 'bm25.trec'}, top_k: 3, top-k: 4, output: '${{workdir}}/r.trec'}}\n")
