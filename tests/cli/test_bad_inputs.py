"""Bad inputs and faults across the commands: each one a one-line error that names what is wrong.

Every row of ``CASES`` runs one command on the demo collection with one bad input and asserts an
exit status other than 0, no traceback, and a message naming the file (and line), the option or
the value at fault. Nearly all fail before any model loads. The signal tests at the end run the
console script in a subprocess: SIGTERM and SIGINT leave the previous output byte for byte (and no
JVM crash log in the working folder), kill -9 leaves it too and a rerun writes the same bytes.
``docs/reliability.md`` is this table in prose (``python tests/cli/test_bad_inputs.py`` prints it).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from routehead_pyserini.cli import main

from bad_cases import Case, case
from cases_values import CASES as VALUE_CASES, write_files as write_value_files
from cases_outputs import CASES as OUTPUT_CASES, write_files as write_output_files
from cases_errors import CASES as ERROR_CASES, write_files as write_error_files
from cases_probe import CASES as PROBE_CASES, write_files as write_probe_files

REPO = Path(__file__).resolve().parents[2]


CASES = [
    # ---- index
    case("index-binary-corpus", "binary corpus", "index --corpus {d}/binary.bin --index {out}/i", r"binary\.bin:1: not UTF-8 text"),
    case("index-latin1-corpus", "Latin-1 line in a corpus", "index --corpus {d}/latin1.jsonl --index {out}/i", r"latin1\.jsonl:2: not UTF-8 text \(byte 0xe9"),
    case("index-empty-corpus", "empty corpus", "index --corpus {d}/empty.jsonl --index {out}/i", r"empty\.jsonl: no documents"),
    case("index-bad-json", "corpus line that is not JSON", "index --corpus {d}/bad.jsonl --index {out}/i", r"bad\.jsonl:2: invalid JSON"),
    case("index-not-a-document", "JSON object without id/text", "index --corpus {d}/notdoc.jsonl --index {out}/i", r"notdoc\.jsonl:1: not a document"),
    case("index-duplicate-id", "duplicate document id", "index --corpus {d}/dup.jsonl --index {out}/i", r"dup\.jsonl: duplicate document id 'a'"),
    case("index-exists", "existing index folder, no --overwrite", "index --corpus demo --index {idx}", r"already exists; pass --overwrite"),
    case("index-missing-corpus", "corpus that does not exist", "index --corpus {d}/nofile.jsonl --index {out}/i", r"nofile\.jsonl' is neither an existing file nor a registered name"),
    case("index-threads-0", "--threads 0", "index --corpus demo --index {out}/i --threads 0", r"'--threads': 0 is not in the range x>=1"),
    case("index-under-a-file", "index folder below a file", "index --corpus demo --index {d}/empty.jsonl/i", r"cannot write .*empty\.jsonl/i: .*empty\.jsonl is a file, not a folder"),
    # ---- search
    case("search-hits-0", "--hits 0", "search --index {idx} --topics demo --hits 0 -o {out}/r.trec", r"'--hits': 0 is not in the range x>=1"),
    case("search-hits-negative", "--hits -5", "search --index {idx} --topics demo --hits -5 -o {out}/r.trec", r"'--hits': -5 is not in the range x>=1"),
    case("search-binary-topics", "binary topics", "search --index {idx} --topics {d}/binary.bin -o {out}/r.trec", r"binary\.bin:1: not UTF-8 text"),
    case("search-latin1-topics", "Latin-1 topics", "search --index {idx} --topics {d}/latin1.tsv -o {out}/r.trec", r"latin1\.tsv:1: not UTF-8 text"),
    case("search-empty-topics", "empty topics", "search --index {idx} --topics {d}/empty.tsv -o {out}/r.trec", r"empty\.tsv: no topics"),
    case("search-empty-query", "topic with empty text (TSV)", "search --index {idx} --topics {d}/empty_query.tsv -o {out}/r.trec", r"empty_query\.tsv:2: query q2 has empty text"),
    case("search-empty-query-jsonl", "topic with empty text (JSONL)", "search --index {idx} --topics {d}/empty_query.jsonl -o {out}/r.trec", r"empty_query\.jsonl:1: query q1 has empty text"),
    case("search-bad-topics-json", "topics line that is not JSON", "search --index {idx} --topics {d}/bad_topics.jsonl -o {out}/r.trec", r"bad_topics\.jsonl:1: invalid JSON"),
    case("search-unknown-index", "unknown --index name", "search --index nosuch -o {out}/r.trec", r"'nosuch' is not an index folder, a registered name, or a Pyserini prebuilt"),
    case("search-missing-index-folder", "--index folder that does not exist", "search --index {d}/no/such --topics demo -o {out}/r.trec", r"Index folder .*no/such does not exist"),
    case("search-folder-without-topics", "index folder, no --topics", "search --index {idx} -o {out}/r.trec", r"--index .* has no registered topics: give --topics"),
    case("search-output-is-folder", "--output is a folder", "search --index {idx} --topics demo -o {d}", r"'--output'.* is a directory"),
    case("search-read-only-output", "read-only output folder", "search --index {idx} --topics demo -o {ro}/r.trec", r"cannot write .*r\.trec: (Permission denied|Read-only file system)"),
    # ---- evaluate
    case("evaluate-empty-run", "empty run", "evaluate {d}/empty.trec --qrels demo", r"empty\.trec: no hits"),
    case("evaluate-comments-only-run", "run of comments only", "evaluate {d}/comments.trec --qrels demo", r"comments\.trec: no hits"),
    case("evaluate-empty-qrels", "empty qrels", "evaluate {bm25} --qrels {d}/empty_qrels.txt", r"empty_qrels\.txt: no judgements"),
    case("evaluate-binary-run", "binary run", "evaluate {d}/binary.bin --qrels demo", r"binary\.bin:1: not UTF-8 text"),
    case("evaluate-binary-qrels", "binary qrels", "evaluate {bm25} --qrels {d}/binary.bin", r"binary\.bin:1: not UTF-8 text"),
    case("evaluate-short-line", "run line with 4 fields", "evaluate {d}/short.trec --qrels demo", r"short\.trec:1: expected 6 fields"),
    case("evaluate-nan-score", "run score NaN", "evaluate {d}/nan.trec --qrels demo", r"nan\.trec:1: score is NaN"),
    case("evaluate-bad-relevance", "qrels grade that is not an integer", "evaluate {bm25} --qrels {d}/bad_rel.txt", r"bad_rel\.txt:1: relevance 'x' is not an integer"),
    case("evaluate-no-overlap", "run whose queries are not judged", "evaluate {d}/other.trec --qrels demo", r"other\.trec: none of its 1 queries \(e\.g\. zz\) is judged in --qrels demo"),
    case("evaluate-unknown-measure", "unknown measure", "evaluate {bm25} --qrels demo -m nDGC@10", r"unknown measure 'nDGC@10'"),
    case("evaluate-top-k-0", "--top-k 0", "evaluate {bm25} --qrels demo --top-k 0", r"'--top-k': 0 is not in the range x>=1"),
    # ---- random-order
    case("random-order-top-k-negative", "--top-k -1", "random-order {bm25} --top-k -1 -o {out}/r.trec", r"'--top-k': -1 is not in the range x>=1"),
    case("random-order-top-k-0", "--top-k 0", "random-order {bm25} --top-k 0 -o {out}/r.trec", r"'--top-k': 0 is not in the range x>=1"),
    case("random-order-empty-run", "empty run", "random-order {d}/empty.trec -o {out}/r.trec", r"empty\.trec: no hits"),
    case("random-order-latin1-run", "Latin-1 run", "random-order {d}/latin1.trec -o {out}/r.trec", r"latin1\.trec:1: not UTF-8 text"),
    case("random-order-read-only-output", "read-only output folder", "random-order {bm25} -o {ro}/r.trec", r"cannot write .*r\.trec: (Permission denied|Read-only file system)"),
    # ---- rerank (all fail before the model loads)
    case("rerank-top-k-negative", "--top-k -1", "rerank --run {bm25} --index {idx} --topics demo --top-k -1 -o {out}/r.trec", r"'--top-k': -1 is not in the range x>=1"),
    case("rerank-top-k-0", "--top-k 0", "rerank --run {bm25} --index {idx} --topics demo --top-k 0 -o {out}/r.trec", r"'--top-k': 0 is not in the range x>=1"),
    case("rerank-batch-size-0", "--batch-size 0", "rerank --run {bm25} --index {idx} --topics demo --batch-size 0 -o {out}/r.trec", r"'--batch-size': 0 is not in the range x>=1"),
    case("rerank-max-context-0", "--max-context 0", "rerank --run {bm25} --index {idx} --topics demo --max-context 0 -o {out}/r.trec", r"'--max-context': 0 is not in the range x>=1"),
    case("rerank-empty-query", "topic with empty text", "rerank --run {bm25} --index {idx} --topics {d}/empty_query.tsv -o {out}/r.trec", r"empty_query\.tsv:2: query q2 has empty text"),
    case("rerank-empty-query-candidates", "--candidates row with empty query", "rerank --run {bm25} --candidates {d}/candidates.jsonl -o {out}/r.trec", r"candidates\.jsonl:2: query q02 has empty text"),
    case("rerank-binary-run", "binary run", "rerank --run {d}/binary.bin --index {idx} --topics demo -o {out}/r.trec", r"binary\.bin:1: not UTF-8 text"),
    case("rerank-corrupt-head-set", "head-set file that is not JSON", "rerank --run {bm25} --index {idx} --topics demo --heads {d}/broken_heads.json -o {out}/r.trec", r"broken_heads\.json: not JSON"),
    case("rerank-foreign-head-set", "JSON file that is not a head set", "rerank --run {bm25} --index {idx} --topics demo --heads {d}/plain.json -o {out}/r.trec", r"plain\.json: not a head-set file"),
    case("rerank-bad-heads-list", "--heads x.y", "rerank --run {bm25} --index {idx} --topics demo --heads x.y -o {out}/r.trec", r"--heads 'x\.y': expected 'all', a head-set file, or 'layer\.head' pairs"),
    case("rerank-text-router", "--router a text file", "rerank --run {bm25} --index {idx} --topics demo --router {d}/hello.txt -o {out}/r.trec", r"hello\.txt: not a router file .*: it is text starting 'hello world'"),
    case("rerank-unknown-index", "unknown --index name", "rerank --run {bm25} --index nosuch -o {out}/r.trec", r"'nosuch' is not an index folder, a registered name, or a Pyserini prebuilt"),
    case("rerank-two-text-sources", "--index and --corpus", "rerank --run {bm25} --index {idx} --corpus demo -o {out}/r.trec", r"give exactly one of --index, --corpus, --candidates"),
    case("rerank-missing-model", "--model folder that does not exist", "rerank --run {bm25} --index {idx} --topics demo --model {d}/no-model/ -o {out}/r.trec", r"model folder not found: .*no-model"),
    # ---- label, train, train-weights
    case("label-binary-qrels", "binary qrels", "label --run {bm25} --index {idx} --topics demo --qrels {d}/binary.bin -o {out}/l.jsonl", r"binary\.bin:1: not UTF-8 text"),
    case("label-empty-qrels", "empty qrels", "label --run {bm25} --index {idx} --topics demo --qrels {d}/empty_qrels.txt -o {out}/l.jsonl", r"empty_qrels\.txt: no judgements"),
    case("label-top-k-0", "--top-k 0", "label --run {bm25} --index {idx} --qrels demo --top-k 0 -o {out}/l.jsonl", r"'--top-k': 0 is not in the range x>=1"),
    case("train-binary-labels", "binary labels file", "train --labels {d}/binary.bin --topics demo -o {out}/r.pt", r"binary\.bin:1: not UTF-8 text"),
    case("train-not-labels", "a run given as labels", "train --labels {bm25} --topics demo -o {out}/r.pt", r"bm25\.trec: not a labels file"),
    case("train-val-fraction-1", "--val-fraction 1", "train --labels {bm25} --topics demo --val-fraction 1 -o {out}/r.pt", r"'--val-fraction': 1\.0 is not in the range 0<=x<1"),
    case("train-epochs-0", "--epochs 0", "train --labels {bm25} --topics demo --epochs 0 -o {out}/r.pt", r"'--epochs': 0 is not in the range x>=1"),
    case("train-weights-folds-1", "--folds 1", "train-weights --run {bm25} --index {idx} --qrels demo --folds 1 -o {out}/w.json", r"'--folds': 1 is not in the range x>=2"),
    case("train-weights-outer-folds-0", "--outer-folds 0", "train-weights --run {bm25} --index {idx} --qrels demo --outer-folds 0 -o {out}/w.json", r"'--outer-folds': 0 is not in the range x>=2"),
    case("train-weights-bad-lambdas", "--lambdas a,b", "train-weights --run {bm25} --index {idx} --qrels demo --lambdas a,b -o {out}/w.json", r"--lambdas/--folds: could not convert string to float: 'a'"),
    # ---- heads
    case("heads-text-file", "a text file", "heads {d}/hello.txt", r"hello\.txt: neither a head-set file \(JSON\) nor a router file .*: it is text starting 'hello world'"),
    case("heads-binary-file", "a binary file", "heads {d}/binary.bin", r"binary\.bin: neither a head-set file \(JSON\) nor a router file .*: it starts with bytes"),
    case("heads-empty-file", "an empty file", "heads {d}/empty.tsv", r"empty\.tsv: neither a head-set file .*: it is empty"),
    case("heads-truncated-router", "a truncated router file", "heads {d}/truncated.pt --topics demo", r"truncated\.pt: a damaged or foreign torch archive, not a router file \(PytorchStreamReader"),
    case("heads-foreign-archive", "a torch archive holding other objects", "heads {d}/foreign.pt --topics demo", r"foreign\.pt: a damaged or foreign torch archive, not a router file \(it holds objects"),
    case("heads-corrupt-head-set", "head-set file that is not JSON", "heads {d}/broken_heads.json", r"broken_heads\.json: not JSON"),
    case("heads-top-0", "--top 0", "heads {d}/hello.txt --top 0", r"'--top': 0 is not in the range x>=1"),
    # ---- pipeline
    case("pipeline-bad-yaml", "pipeline that is not YAML", "pipeline run {d}/bad.yaml --dry-run", r"bad\.yaml: invalid YAML at line"),
    case("pipeline-binary", "binary pipeline file", "pipeline run {d}/binary.bin --dry-run", r"binary\.bin:1: not UTF-8 text"),
    case("pipeline-unknown-key", "unknown top-level key", "pipeline run {d}/unknown_key.yaml --dry-run", r"unknown_key\.yaml: .*unknown top-level key"),
    case("pipeline-missing-file", "pipeline file that does not exist", "pipeline run {d}/nofile.yaml --dry-run", r"nofile\.yaml: pipeline file not found"),
    case("pipeline-stage-bad-topics", "a stage reading binary topics", "pipeline run {d}/stage_binary.yaml --workdir {out}/w", r"binary\.bin:1: not UTF-8 text"),
] + VALUE_CASES
CASES += OUTPUT_CASES  # outputs that would destroy an input (cases_outputs.py)
CASES += ERROR_CASES  # values and folders that ended in a library's traceback (cases_errors.py)
CASES += PROBE_CASES  # found by an independent probe: special outputs, C-int ranges, names (cases_probe.py)


def _write_bad_files(d: Path) -> None:
    import torch

    d.mkdir(parents=True, exist_ok=True)
    (d / "binary.bin").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)  # a PNG header: not UTF-8
    (d / "latin1.jsonl").write_bytes(b'{"_id": "a", "text": "ok"}\n{"_id": "b", "text": "caf\xe9"}\n')
    (d / "latin1.tsv").write_bytes(b"q1\tcaf\xe9 au lait\n")
    (d / "latin1.trec").write_bytes(b"q01 Q0 D\xe9 1 1.0 t\n")
    for name in ("empty.jsonl", "empty.tsv", "empty.trec", "empty_qrels.txt"):
        (d / name).write_text("")
    (d / "comments.trec").write_text("# nothing here\n\n")
    (d / "bad.jsonl").write_text('{"_id": "a", "text": "ok"}\n{"_id": "b", "text": \n')
    (d / "notdoc.jsonl").write_text('{"foo": 1}\n')
    (d / "dup.jsonl").write_text('{"_id": "a", "text": "one"}\n{"_id": "a", "text": "two"}\n')
    (d / "empty_query.tsv").write_text("q1\tbees and flowers\nq2\t   \n")
    (d / "empty_query.jsonl").write_text('{"_id": "q1", "text": ""}\n')
    (d / "bad_topics.jsonl").write_text('{"_id": "q1", "text": \n')
    (d / "short.trec").write_text("q01 Q0 D01 1\n")
    (d / "nan.trec").write_text("q01 Q0 D01 1 nan t\n")
    (d / "other.trec").write_text("zz Q0 D01 1 1.0 t\n")
    (d / "bad_rel.txt").write_text("q01 0 D01 x\n")
    (d / "candidates.jsonl").write_text(json.dumps({"qid": "q01", "query": "bees", "docid": "D01", "text": "bees"}) + "\n"
                                        + json.dumps({"qid": "q02", "query": " ", "docid": "D02", "text": "hives"}) + "\n")
    (d / "broken_heads.json").write_text('{"format": "routehead-heads/1", "heads": [[1, 2]')
    (d / "plain.json").write_text('{"hello": "world"}\n')
    (d / "hello.txt").write_text("hello world\n")
    torch.save({"kind": "router", "state": torch.zeros(8)}, d / "whole.pt")
    data = (d / "whole.pt").read_bytes()
    (d / "truncated.pt").write_bytes(data[: len(data) // 2])
    torch.save({"when": __import__("datetime").date(2020, 1, 1)}, d / "foreign.pt")
    (d / "bad.yaml").write_text("stages:\n  - id: a\n    with: {index: [unclosed\n")
    (d / "unknown_key.yaml").write_text("name: x\nstagez: []\n")
    (d / "stage_binary.yaml").write_text(
        "name: bad-stage\nstages:\n  - id: bm25\n    uses: search\n"
        f"    with: {{index: demo, topics: {d / 'binary.bin'}, output: '${{workdir}}/bm25.trec'}}\n")
    write_value_files(d)
    write_output_files(d)
    write_error_files(d)
    write_probe_files(d)


def _read_only_dir(tmp_path_factory) -> Path | None:
    """A folder this process cannot write: a chmod 0555 one, or (as root, who ignores modes) /sys."""
    folder = tmp_path_factory.mktemp("read-only")
    folder.chmod(0o555)
    candidates = [folder] + ([Path("/sys")] if Path("/sys").is_dir() else [])
    for candidate in candidates:
        probe = candidate / ".routehead-probe"
        try:
            probe.write_text("")
        except OSError:
            return candidate
        probe.unlink()
    return None


@pytest.fixture(scope="module")
def paths(jvm, demo_index, tmp_path_factory):
    """The placeholders of the cases: bad files, the demo index, a BM25 run, a read-only folder."""
    d = tmp_path_factory.mktemp("bad")
    _write_bad_files(d)
    bm25 = d / "bm25.trec"
    result = CliRunner().invoke(main, ["-q", "search", "--index", str(demo_index), "--topics", "demo", "-o", str(bm25), "--hits", "6"])
    assert result.exit_code == 0, result.output
    ro = _read_only_dir(tmp_path_factory)
    return {"d": str(d), "idx": str(demo_index), "bm25": str(bm25), "ro": str(ro) if ro else None}


def invoke(args, cwd: Path | None = None):
    """The CLI in this process; exceptions are caught so an unhandled one shows as result.exception."""
    return CliRunner().invoke(main, ["-q", *args], catch_exceptions=True)


@pytest.mark.parametrize("bad", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_line(bad: Case, paths, tmp_path, monkeypatch):
    if "{ro}" in " ".join(bad.args) and paths["ro"] is None:
        pytest.skip("no folder here is read-only for this user")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ROUTEHEAD_CACHE_DIR", str(tmp_path / "cache"))  # nothing built in the user's cache
    args = [a.format(out=tmp_path / "out", **paths) for a in bad.args]
    before = sorted(p.name for p in tmp_path.iterdir())
    inputs_before = _snapshot(Path(paths["d"]))
    result = invoke(args)
    assert result.exit_code not in (0, None), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"unhandled {type(result.exception).__name__}: {result.exception}")
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert re.search(bad.message, errors[0]), errors[0]
    assert not list((tmp_path / "out").glob("**/*.trec")) if (tmp_path / "out").exists() else True  # no partial output
    assert sorted(p.name for p in tmp_path.iterdir() if p.name not in ("out", "cache")) == before  # nothing in the cwd
    assert _snapshot(Path(paths["d"])) == inputs_before  # every input file and folder as it was, byte for byte


def _snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every path under ``folder`` with its bytes (files), its target (links) or "dir"."""
    out: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        out[key] = f"-> {os.readlink(path)}" if path.is_symlink() else "dir" if path.is_dir() else path.read_bytes()
    return out


def test_the_table_covers_every_command():
    commands = {c.args[0] for c in CASES}
    assert {"index", "search", "evaluate", "random-order", "rerank", "label", "train", "train-weights", "heads", "pipeline"} <= commands
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


# ---- signals -------------------------------------------------------------------------------------

def _cli_env(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    env["ROUTEHEAD_CACHE_DIR"] = str(tmp_path / "cache")
    return env


def _many_topics(path: Path, n: int) -> Path:
    from routehead_pyserini.data.trec import read_topics, write_topics
    from routehead_pyserini.data.registry import lookup

    demo = list(read_topics(lookup("demo", "topics")).values())
    write_topics({f"q{i}": demo[i % len(demo)] for i in range(n)}, path)
    return path


def _search(index: Path, topics: Path, out: Path, cwd: Path, env: dict, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "routehead_pyserini.cli", "search", "--index", str(index),
                             "--topics", str(topics), "--hits", "10", "-o", str(out)],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _wait_for_progress(proc: subprocess.Popen, marker: str = "BM25", timeout: float = 120) -> str:
    """Read stderr until the search's progress bar shows (the JVM is up and the run is being made)."""
    seen, deadline = "", time.monotonic() + timeout
    while marker not in seen and time.monotonic() < deadline and proc.poll() is None:
        seen += proc.stderr.read(1)
    assert marker in seen, f"the search never started: {seen[-2000:]}"
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=["SIGTERM", "SIGINT", "kill-9"])
def test_signal_during_a_run_keeps_the_old_output(signum, demo_index, tmp_path):
    env = _cli_env(tmp_path)
    topics = _many_topics(tmp_path / "many.tsv", 40000)
    out = tmp_path / "runs" / "bm25.trec"
    out.parent.mkdir()
    out.write_text("old Q0 D01 1 1.0 previous\n")
    old = out.read_bytes()
    # SIGINT is ignored in a child of a non-interactive shell: restore the default so Python handles it
    proc = _search(demo_index, topics, out, tmp_path, env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for_progress(proc)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in stderr, stderr[-3000:]
    assert out.read_bytes() == old
    assert not list(tmp_path.glob("hs_err_pid*.log"))  # no JVM crash log in the working folder
    if signum != signal.SIGKILL:
        assert sorted(p.name for p in out.parent.iterdir()) == ["bm25.trec"]  # the temporary file is gone
        assert "Aborted" in stderr
    else:  # a rerun after kill -9 writes what an uninterrupted run writes
        small = _many_topics(tmp_path / "small.tsv", 50)
        for target in (out, tmp_path / "reference.trec"):
            rerun = _search(demo_index, small, target, tmp_path, env)
            assert rerun.wait(timeout=300) == 0, rerun.stderr.read()
        assert out.read_bytes() == (tmp_path / "reference.trec").read_bytes()


# ---- docs/reliability.md -------------------------------------------------------------------------

def markdown_table() -> str:
    """Run every case once (as the test does) and return the table of docs/reliability.md."""
    import tempfile

    from routehead_pyserini.pipeline.demo import DEMO_DATA
    from routehead_pyserini.firststage.index import build_index

    root = Path(tempfile.mkdtemp(prefix="reliability-"))
    os.environ["ROUTEHEAD_CACHE_DIR"] = str(root / "cache")
    os.environ["ROUTEHEAD_REGISTRY"] = str(root / "registry.yaml")
    build_index(DEMO_DATA / "corpus.jsonl", root / "demo-index", progress=False)
    _write_bad_files(root / "bad")
    assert invoke(["search", "--index", str(root / "demo-index"), "--topics", "demo", "-o", str(root / "bad" / "bm25.trec"), "--hits", "6"]).exit_code == 0

    class Factory:
        def mktemp(self, name):
            return Path(tempfile.mkdtemp(prefix=name, dir=root))

    ro = _read_only_dir(Factory())
    real = {"d": str(root / "bad"), "idx": str(root / "demo-index"), "bm25": str(root / "bad" / "bm25.trec"), "ro": str(ro)}
    shown = {"d": "bad", "idx": "demo-index", "bm25": "bm25.trec", "ro": "read-only", "out": "out"}
    lines = ["| input | command | exit | message |", "|---|---|---|---|"]
    for bad in CASES:
        result = invoke([a.format(out=root / "out" / bad.id, **real) for a in bad.args])
        message = next(line for line in result.output.splitlines() if line.startswith("Error:"))
        message = message.replace(str(root / "out" / bad.id), "out").replace(str(ro), "read-only").replace(str(root) + "/", "")
        command = " ".join(a.format(**shown) for a in bad.args)
        cell = message.replace("|", "\\|")
        lines.append(f"| {bad.input} | `routehead-pyserini {command}` | {result.exit_code} | {cell} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # print the table of docs/reliability.md
    from routehead_pyserini.firststage.jvm import ensure_jvm

    ensure_jvm()
    print(markdown_table(), end="")
