"""Bad values: numbers that are not finite or out of range, ids that break a TREC line, duplicates,
byte-order marks and UTF-16 (issue #22: never pass a non-finite value). Rows of the bad-input table
(tests/cli/test_bad_inputs.py); :func:`write_files` writes the bad files they read. Every row fails
before any model loads."""
from __future__ import annotations

import json
from pathlib import Path

from bad_cases import Case, case

_RUN = "{idx} --topics demo -o {out}/r.trec"  # the tail of a search command line

def _case(id: str, input: str, args: str, message: str) -> Case:
    """A row whose bad files are in ``{d}/values/`` (apart from the other modules' files)."""
    return case(id, input, args.replace("{d}/", "{d}/values/"), message)


CASES = [
    # ---- run files: scores must be finite, ranks and grades integers
    _case("evaluate-inf-score", "run score inf", "evaluate {d}/inf.trec --qrels demo", r"inf\.trec:1: score is not finite \('inf' reads as inf\)"),
    _case("evaluate-overflow-score", "run score 1e999 (overflows)", "evaluate {d}/overflow.trec --qrels demo", r"overflow\.trec:2: score is not finite \('1e999' reads as inf\)"),
    _case("evaluate-float-rank", "run rank 1.5", "evaluate {d}/float_rank.trec --qrels demo", r"float_rank\.trec:1: rank '1\.5' is not an integer"),
    _case("evaluate-nan-grade", "qrels grade nan", "evaluate {bm25} --qrels {d}/nan_rel.txt", r"nan_rel\.txt:1: relevance 'nan' is not an integer"),
    _case("evaluate-whitespace-beir-qrels-id", "BEIR qrels id with a space", "evaluate {bm25} --qrels {d}/space_qrels.tsv", r"space_qrels\.tsv:2: query id 'q 01' contains whitespace"),
    _case("random-order-neg-inf-score", "run score -inf", "random-order {d}/neginf.trec -o {out}/r.trec", r"neginf\.trec:1: score is not finite \('-inf' reads as -inf\)"),
    _case("rerank-inf-run", "run score +inf", "rerank --run {d}/plusinf.trec --index {idx} --topics demo -o {out}/r.trec", r"plusinf\.trec:1: score is not finite \('\+inf' reads as inf\)"),
    # ---- head-set files: every number finite, no key twice
    _case("rerank-nan-head-weight", "head weight NaN", "rerank --run {bm25} --index {idx} --topics demo --heads {d}/nan_weight.json -o {out}/r.trec", r"nan_weight\.json: weight of head 3\.1 is NaN"),
    _case("rerank-overflow-head-weight", "head weight 1e999", "rerank --run {bm25} --index {idx} --topics demo --heads {d}/overflow_weight.json -o {out}/r.trec", r"overflow_weight\.json: weight of head 2\.0 is infinite \(inf\)"),
    _case("rerank-inf-fuse-weight", "fuse weight -Infinity", "rerank --run {bm25} --index {idx} --topics demo --heads {d}/inf_fuse.json -o {out}/r.trec", r"inf_fuse\.json: fuse\.weight is infinite \(-inf\)"),
    _case("heads-nan-head-weight", "head weight NaN", "heads {d}/nan_weight.json", r"nan_weight\.json: weight of head 3\.1 is NaN"),
    _case("heads-nan-dense-weight", "fuse_dense weight NaN", "heads {d}/nan_dense.json", r"nan_dense\.json: fuse_dense\.weight is NaN"),
    _case("heads-string-weight", "head weight \"0.5\" (a string)", "heads {d}/string_weight.json", r"string_weight\.json: weight of head 1\.2 is '0\.5', not a number"),
    _case("heads-duplicate-json-key", "head-set key given twice", "heads {d}/dup_key_heads.json", r"dup_key_heads\.json: key 'weights' appears twice"),
    # ---- labels files
    _case("train-nan-label-ndcg", "labels nDCG NaN", "train --labels {d}/nan_labels.jsonl --topics demo -o {out}/r.pt", r"nan_labels\.jsonl:2: query q01: ndcg holds a value that is not in \[0, 1\]"),
    # ---- collections files
    _case("train-weights-collections-nan-sample", "collections sample .nan", "train-weights --collections {d}/nan_sample.yaml -o {out}/w.json", r"nan_sample\.yaml: collection 'demo': sample is nan, not an integer"),
    _case("train-weights-collections-sample-0", "collections sample 0", "train-weights --collections {d}/zero_sample.yaml -o {out}/w.json", r"zero_sample\.yaml: collection 'demo': sample is 0, below 1"),
    _case("loco-collections-float-level", "collections relevance_level 1.5", "loco --collections {d}/float_level.yaml -o {out}/l", r"float_level\.yaml: collection 'demo': relevance_level is 1\.5, not an integer"),
    _case("loco-collections-duplicate-key", "collections key given twice", "loco --collections {d}/dup_collection.yaml -o {out}/l", r"dup_collection\.yaml: .*invalid YAML at line 3: duplicate key 'demo' \(first at line 2\)"),
    _case("loco-collections-unknown-key", "collections entry with an unknown key", "loco --collections {d}/unknown_collection_key.yaml -o {out}/l", r"unknown_collection_key\.yaml: collection 'demo' has unknown keys \['smaple'\]"),
    # ---- pipelines: duplicate keys, non-finite option values
    _case("pipeline-duplicate-key", "pipeline key given twice", "pipeline run {d}/dup_key.yaml --dry-run", r"dup_key\.yaml: invalid YAML at line 4: duplicate key 'with' \(first at line 3\)"),
    _case("pipeline-bom-duplicate-top-key", "pipeline with a BOM, top-level key twice", "pipeline run {d}/bom_dup.yaml --dry-run", r"bom_dup\.yaml: invalid YAML at line 2: duplicate key 'name' \(first at line 1\)"),
    _case("pipeline-nan-option", "stage option k1: .nan", "pipeline run {d}/nan_option.yaml --dry-run", r"nan_option\.yaml: stage 'bm25' \(search\): key 'k1': nan is not a finite number"),
    # ---- topics: duplicate and whitespace qids, BOM, UTF-16
    _case("search-duplicate-qid", "topics qid twice (TSV)", "search --index {idx} --topics {d}/dup_topics.tsv -o {out}/r.trec", r"dup_topics\.tsv:3: duplicate query id 'q1' \(first at line 1\)"),
    _case("search-duplicate-qid-jsonl", "topics qid twice (JSONL)", "search --index {idx} --topics {d}/dup_topics.jsonl -o {out}/r.trec", r"dup_topics\.jsonl:2: duplicate query id 'q1' \(first at line 1\)"),
    _case("search-duplicate-qid-trec", "topics qid twice (TREC)", "search --index {idx} --topics {d}/dup_topics.txt -o {out}/r.trec", r"dup_topics\.txt:5: duplicate query id '7' \(first at line 1\)"),
    _case("search-bom-duplicate-qid", "BOM topics whose first qid comes again", "search --index {idx} --topics {d}/bom_dup.tsv -o {out}/r.trec", r"bom_dup\.tsv:2: duplicate query id 'q1' \(first at line 1\)"),
    _case("search-whitespace-qid", "topics qid with a space", "search --index {idx} --topics {d}/space_qid.tsv -o {out}/r.trec", r"space_qid\.tsv:1: query id 'q 1' contains whitespace \(TREC run lines are split on whitespace\)"),
    _case("search-utf16-topics", "UTF-16 topics", "search --index {idx} --topics {d}/utf16.tsv -o {out}/r.trec", r"utf16\.tsv:1: not UTF-8 text but UTF-16"),
    _case("rerank-duplicate-qid-topics", "topics qid twice", "rerank --run {bm25} --index {idx} --topics {d}/dup_topics.tsv -o {out}/r.trec", r"dup_topics\.tsv:3: duplicate query id 'q1'"),
    # ---- corpora: document ids that break a run line
    _case("index-whitespace-docid", "document id with a space", "index --corpus {d}/space_id.jsonl --index {out}/i", r"space_id\.jsonl:2: document id 'a b' contains whitespace \(TREC run lines are split on whitespace\)"),
    _case("index-newline-docid", "document id with a newline", "index --corpus {d}/newline_id.jsonl --index {out}/i", r"newline_id\.jsonl:1: document id 'a\\nb' contains whitespace"),
    _case("index-empty-docid", "empty document id", "index --corpus {d}/empty_id.jsonl --index {out}/i", r"empty_id\.jsonl:1: document id '' is empty"),
    _case("index-null-docid", "document id null", "index --corpus {d}/null_id.jsonl --index {out}/i", r"null_id\.jsonl:1: document id None is not a string or an integer"),
    # ---- candidates files
    _case("rerank-candidates-conflicting-text", "candidates: one docid, two texts", "rerank --run {bm25} --candidates {d}/cand_text.jsonl -o {out}/r.trec", r"cand_text\.jsonl:2: document 'D01' has another text than at line 1"),
    _case("rerank-candidates-conflicting-query", "candidates: one qid, two queries", "rerank --run {bm25} --candidates {d}/cand_query.jsonl -o {out}/r.trec", r"cand_query\.jsonl:2: query 'q01' has another text than at line 1"),
    _case("rerank-candidates-whitespace-docid", "candidates: docid with a tab", "rerank --run {bm25} --candidates {d}/cand_space.jsonl -o {out}/r.trec", r"cand_space\.jsonl:1: document id 'D\\t01' contains whitespace"),
    # ---- float options: finite and in range (click usage errors, exit 2)
    _case("search-k1-nan", "--k1 nan", "search --index " + _RUN + " --k1 nan", r"'--k1': 'nan' is not a finite number"),
    _case("search-k1-negative", "--k1 -1", "search --index " + _RUN + " --k1 -1", r"'--k1': -1\.0 is not in the range x>=0"),
    _case("search-b-above-1", "--b 1.5", "search --index " + _RUN + " --b 1.5", r"'--b': 1\.5 is not in the range 0<=x<=1"),
    _case("search-b-negative", "--b -1", "search --index " + _RUN + " --b -1", r"'--b': -1\.0 is not in the range 0<=x<=1"),
    _case("search-b-inf", "--b inf", "search --index " + _RUN + " --b inf", r"'--b': 'inf' is not a finite number"),
    _case("train-weights-lambdas-inf", "--lambdas 0.1,inf", "train-weights --run {bm25} --index {idx} --qrels demo --lambdas 0.1,inf -o {out}/w.json", r"--lambdas/--folds: lambda 'inf' is not a finite number >= 0"),
    _case("train-weights-lambdas-nan", "--lambdas nan", "train-weights --run {bm25} --index {idx} --qrels demo --lambdas nan -o {out}/w.json", r"--lambdas/--folds: lambda 'nan' is not a finite number >= 0"),
    _case("train-sparsity-nan", "--sparsity nan", "train --labels {bm25} --topics demo --sparsity nan -o {out}/r.pt", r"'--sparsity': 'nan' is not a finite number"),
    _case("train-val-fraction-nan", "--val-fraction nan", "train --labels {bm25} --topics demo --val-fraction nan -o {out}/r.pt", r"'--val-fraction': 'nan' is not a finite number"),
    _case("train-soft-router-sparsity-negative", "--sparsity -0.1", "train-soft-router --run {bm25} --index {idx} --qrels demo --sparsity -0.1 -o {out}/r.pt", r"'--sparsity': -0\.1 is not in the range x>=0"),
    _case("train-soft-router-val-fraction-inf", "--val-fraction inf", "train-soft-router --run {bm25} --index {idx} --qrels demo --val-fraction inf -o {out}/r.pt", r"'--val-fraction': 'inf' is not a finite number"),
    _case("label-static-k-0", "--static-k 16,0", "label --run {bm25} --index {idx} --qrels demo --static-k 16,0 -o {out}/l.jsonl", r"'--static-k': 0 is below 1"),
]


def _head_set(**fields) -> str:
    return json.dumps({"format": "routehead-heads/1", "heads": [[1, 2], [2, 0], [3, 1]], **fields})


def write_files(d: Path) -> None:
    """Write the bad files of :data:`CASES` into ``d/values``."""
    d = d / "values"
    d.mkdir(parents=True, exist_ok=True)
    (d / "inf.trec").write_text("q01 Q0 D01 1 inf t\n")
    (d / "overflow.trec").write_text("q01 Q0 D01 1 2.0 t\nq01 Q0 D02 2 1e999 t\n")
    (d / "neginf.trec").write_text("q01 Q0 D01 1 -inf t\n")
    (d / "plusinf.trec").write_text("q01 Q0 D01 1 +inf t\n")
    (d / "float_rank.trec").write_text("q01 Q0 D01 1.5 2.0 t\n")
    (d / "nan_rel.txt").write_text("q01 0 D01 nan\n")
    (d / "space_qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq 01\tD01\t1\n")
    # head sets: JSON's NaN / Infinity tokens, a number that overflows, a string, a key twice
    (d / "nan_weight.json").write_text(_head_set(weights=[1.0, 0.5, float("nan")]))
    (d / "overflow_weight.json").write_text('{"format": "routehead-heads/1", "heads": [[1, 2], [2, 0], [3, 1]], "weights": [1.0, 1e999, 2.0]}')
    (d / "inf_fuse.json").write_text(_head_set(weights=[1.0, 1.0, 1.0], fuse={"weight": float("-inf"), "normalise": "zscore"}))
    (d / "nan_dense.json").write_text(_head_set(fuse_dense={"weight": float("nan"), "normalise": "zscore", "model": "all-minilm-l6-v2"}))
    (d / "string_weight.json").write_text(_head_set(weights=["0.5", 1.0, 1.0]))
    (d / "dup_key_heads.json").write_text('{"format": "routehead-heads/1", "heads": [[1, 2]], "weights": [1.0], "weights": [2.0]}\n')
    header = {"format": "routehead-labels/1", "model": {"name": "smollm2-135m"}, "settings": {}, "search": {}, "shape": [2, 2]}
    row = {"qid": "q01", "heads": [[0, 1]], "ndcg": float("nan"), "all_heads_ndcg": 0.5, "single_head_ndcg": [[0.1, 0.2], [0.3, 0.4]]}
    (d / "nan_labels.jsonl").write_text(json.dumps(header) + "\n" + json.dumps(row) + "\n")
    # collections files (checked before the model loads; the runs need not exist)
    (d / "nan_sample.yaml").write_text("collections:\n  demo: {run: demo.trec, sample: .nan}\n")
    (d / "zero_sample.yaml").write_text("collections:\n  demo: {run: demo.trec, sample: 0}\n")
    (d / "float_level.yaml").write_text("collections:\n  demo: {run: demo.trec, relevance_level: 1.5}\n")
    (d / "dup_collection.yaml").write_text("collections:\n  demo: {run: a.trec}\n  demo: {run: b.trec}\n")
    (d / "unknown_collection_key.yaml").write_text("collections:\n  demo: {run: a.trec, smaple: 3}\n")
    # pipelines
    (d / "dup_key.yaml").write_text("stages:\n  - id: bm25\n    with: {index: demo}\n    with: {index: other}\n    uses: search\n")
    (d / "bom_dup.yaml").write_bytes("\ufeffname: one\nname: two\nstages: []\n".encode("utf-8"))
    (d / "nan_option.yaml").write_text("name: x\nstages:\n  - id: bm25\n    uses: search\n"
                                       "    with: {index: demo, k1: .nan, output: '${workdir}/bm25.trec'}\n")
    # topics
    (d / "dup_topics.tsv").write_text("q1\tbees\nq2\thives\nq1\tflowers\n")
    (d / "dup_topics.jsonl").write_text('{"_id": "q1", "text": "bees"}\n{"_id": "q1", "text": "hives"}\n')
    (d / "dup_topics.txt").write_text("<top>\n<num> Number: 7\n<title> bees\n</top>\n<top>\n<num> Number: 7\n<title> hives\n</top>\n")
    (d / "bom_dup.tsv").write_bytes("\ufeffq1\tbees\nq1\thives\n".encode("utf-8"))
    (d / "space_qid.tsv").write_text("q 1\tbees\n")
    (d / "utf16.tsv").write_bytes("q1\tbees\n".encode("utf-16"))
    # corpora
    (d / "space_id.jsonl").write_text('{"_id": "ok", "text": "one"}\n{"_id": "a b", "text": "two"}\n')
    (d / "newline_id.jsonl").write_text(json.dumps({"_id": "a\nb", "text": "one"}) + "\n")
    (d / "empty_id.jsonl").write_text('{"_id": "", "text": "one"}\n')
    (d / "null_id.jsonl").write_text('{"_id": null, "text": "one"}\n')
    # candidates
    rows = [{"qid": "q01", "query": "bees", "docid": "D01", "text": "bees"}, {"qid": "q02", "query": "hives", "docid": "D01", "text": "hives"}]
    (d / "cand_text.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rows = [{"qid": "q01", "query": "bees", "docid": "D01", "text": "bees"}, {"qid": "q01", "query": "hives", "docid": "D02", "text": "hives"}]
    (d / "cand_query.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "cand_space.jsonl").write_text(json.dumps({"qid": "q01", "query": "bees", "docid": "D\t01", "text": "bees"}) + "\n")
