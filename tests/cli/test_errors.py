"""Every error is one line (issue #22): the CLI's catch-all, library exceptions said as what to
change (Java, memory, CUDA, OS), Java exceptions of the first stage, and Ctrl-C or SIGTERM during
a pipeline stage (``Aborted!``, no partial output, no record: a rerun resumes at that stage)."""
from __future__ import annotations

import errno
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

REPO = Path(__file__).resolve().parents[2]
BUG = r"\(a bug: please report it; --log-level DEBUG shows the traceback\)"


def _java_exception():
    """A real ``jnius.JavaException`` (Integer.parseInt("x"): java.lang.NumberFormatException)."""
    from jnius import autoclass

    try:
        autoclass("java.lang.Integer").parseInt("x")
    except Exception as exc:
        return exc
    raise AssertionError("Java parsed 'x'")


def _raising(monkeypatch, exc: BaseException) -> None:
    """``random-order``'s library call raises ``exc``."""
    import routehead_pyserini.data.controls as controls

    def boom(*_args, **_kwargs):
        raise exc

    monkeypatch.setattr(controls, "random_order", boom)


def _one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    return errors[0]


@pytest.fixture
def run_file(tmp_path: Path) -> Path:
    path = tmp_path / "r.trec"
    path.write_text("q01 Q0 D01 1 2.0 t\nq01 Q0 D02 2 1.0 t\n")
    return path


def test_a_bug_is_one_line_naming_the_exception(monkeypatch, run_file, tmp_path):
    _raising(monkeypatch, ZeroDivisionError("division by zero"))
    result = CliRunner().invoke(main, ["-q", "random-order", str(run_file), "-o", str(tmp_path / "out.trec")])
    line = _one_error_line(result)
    assert re.fullmatch(rf"Error: internal error: ZeroDivisionError: division by zero {BUG}", line), line
    assert not (tmp_path / "out.trec").exists()


def test_debug_logs_the_traceback_of_a_bug(monkeypatch, run_file, tmp_path):
    _raising(monkeypatch, ZeroDivisionError("division by zero"))
    result = CliRunner().invoke(main, ["--log-level", "DEBUG", "random-order", str(run_file), "-o", str(tmp_path / "out.trec")])
    assert result.exit_code == 1
    assert "Traceback" in result.output and "ZeroDivisionError" in result.output
    assert [line for line in result.output.splitlines() if line.startswith("Error:")] == [
        f"Error: internal error: ZeroDivisionError: division by zero (a bug: please report it; --log-level DEBUG shows the traceback)"]


@pytest.mark.parametrize("make, expected", [
    (lambda: MemoryError(), r"Error: out of memory: lower --batch-size/--top-k/--doc-max-tokens"),
    (lambda: __import__("torch").OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore"),
     r"Error: out of memory \(CUDA out of memory\. Tried to allocate 2\.00 GiB\): lower --batch-size/--top-k/--doc-max-tokens"),
    (lambda: RuntimeError("Found no NVIDIA driver on your system. Please check ..."),
     r"Error: CUDA is not usable here \(Found no NVIDIA driver .*\): use --device cpu, or a machine with a CUDA GPU and a CUDA build of torch"),
    (lambda: AssertionError("Torch not compiled with CUDA enabled"), r"Error: CUDA is not usable here \(Torch not compiled with CUDA enabled\): use --device cpu, .*"),
    (lambda: OSError(errno.ENOSPC, "No space left on device", "out/r.trec"), r"Error: out/r\.trec: No space left on device"),
    (lambda: RuntimeError("shape mismatch\nat layer 3"), rf"Error: internal error: RuntimeError: shape mismatch {BUG}"),
    (lambda: KeyError("q01"), rf"Error: internal error: KeyError: 'q01' {BUG}"),
], ids=["MemoryError", "torch-OOM", "no-NVIDIA-driver", "torch-without-CUDA", "disk-full", "RuntimeError-bug", "KeyError-bug"])
def test_library_exceptions_say_what_to_change(make, expected, monkeypatch, run_file, tmp_path):
    _raising(monkeypatch, make())
    line = _one_error_line(CliRunner().invoke(main, ["-q", "random-order", str(run_file), "-o", str(tmp_path / "out.trec")]))
    assert re.fullmatch(expected, line), line


def test_a_java_exception_names_its_class(jvm, monkeypatch, run_file, tmp_path):
    _raising(monkeypatch, _java_exception())
    line = _one_error_line(CliRunner().invoke(main, ["-q", "random-order", str(run_file), "-o", str(tmp_path / "out.trec")]))
    assert re.fullmatch(r"Error: Java exception java\.lang\.NumberFormatException: For input string: \"x\".* \(from Lucene/Anserini\): "
                        r"check --index and the search options; --log-level DEBUG shows the Java trace", line), line


def test_ctrl_c_and_exits_pass_through(monkeypatch, run_file, tmp_path):
    _raising(monkeypatch, KeyboardInterrupt())
    result = CliRunner().invoke(main, ["-q", "random-order", str(run_file), "-o", str(tmp_path / "out.trec")])
    assert result.exit_code == 1 and "Aborted!" in result.output and "Error:" not in result.output


# ---- the first stage: checked before Java, and Java's exceptions translated ----------------------

def test_bm25_settings_are_checked_before_java(demo_index):
    from routehead_pyserini.firststage.search import SearchSettingsError, bm25_search

    for settings, message in [({"b": -1.0}, r"BM25 b must be between 0 and 1 .*got -1\.0: change --b"),
                              ({"b": float("nan")}, r"got nan: change --b"),
                              ({"k1": -3.0}, r"BM25 k1 must be a finite number >= 0 .*got -3\.0: change --k1"),
                              ({"k1": float("inf")}, r"got inf: change --k1"),
                              ({"hits": 2**31}, r"--hits 2147483648: give 1 to 2147483647 \(a Java int\)")]:
        with pytest.raises(SearchSettingsError, match=message):
            bm25_search(demo_index, {"q1": "bees"}, progress=False, **settings)


def test_a_java_exception_from_a_value_is_one_line_naming_it(demo_index):
    from routehead_pyserini.errors import UserError
    from routehead_pyserini.firststage.jvm import JavaError, java_errors
    from routehead_pyserini.firststage.search import open_searcher

    searcher = open_searcher(demo_index)
    with pytest.raises(JavaError) as caught:
        with java_errors("BM25 search", "change --b"):
            searcher.set_bm25(0.9, -1.0)
    assert isinstance(caught.value, UserError)
    assert str(caught.value) == ("BM25 search: Java exception java.lang.IllegalArgumentException: illegal b value: -1.0, "
                                 "must be between 0 and 1; change --b")
    with pytest.raises(JavaError, match=r"BM25 search: Java call failed: No methods called batch_search .* \(a value out of Java's range\?\); change --hits"):
        with java_errors("BM25 search", "change --hits"):
            searcher.batch_search(["bees"], ["q1"], k=2**40, threads=1)
    with java_errors("nothing", "nothing"):  # other exceptions pass unchanged
        with pytest.raises(ZeroDivisionError):
            1 / 0


def test_a_damaged_index_is_a_java_error_naming_the_fix(jvm, tmp_path):
    from routehead_pyserini.firststage.jvm import JavaError
    from routehead_pyserini.firststage.search import DocumentStore

    (tmp_path / "segments_1").write_bytes(b"garbage")
    with pytest.raises(JavaError, match=r"cannot open the Lucene index .*: Java exception org\.apache\.lucene\..*; rebuild it with"):
        DocumentStore(tmp_path)


def test_default_run_tags_are_one_word():
    from routehead_pyserini.cli.reranking import default_tag

    assert default_tag("routehead", "/models/my model") == "routehead-my_model"
    assert default_tag("dense", "all-minilm-l6-v2") == "dense-all-minilm-l6-v2"


# ---- Ctrl-C and SIGTERM during a pipeline stage --------------------------------------------------

def _many_topics(path: Path, n: int) -> Path:
    from routehead_pyserini.data.registry import lookup
    from routehead_pyserini.data.trec import read_topics, write_topics

    demo = list(read_topics(lookup("demo", "topics")).values())
    write_topics({f"q{i}": demo[i % len(demo)] for i in range(n)}, path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_a_pipeline_stage_is_one_line_and_the_rerun_resumes_there(signum, demo_index, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", ROUTEHEAD_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    run = tmp_path / "bm25.trec"
    run.write_text("q01 Q0 D01 1 2.0 t\nq01 Q0 D02 2 1.0 t\n")
    topics = _many_topics(tmp_path / "many.tsv", 40000)
    work = tmp_path / "w"
    work.mkdir()
    (work / "big.trec").write_text("old Q0 D01 1 1.0 previous\n")
    old = (work / "big.trec").read_bytes()
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        "name: sig\nstages:\n"
        f"  - id: shuffle\n    uses: random-order\n    with: {{run: {run}, output: '${{workdir}}/shuffled.trec'}}\n"
        f"  - id: big\n    uses: search\n    with: {{index: {demo_index}, topics: {topics}, hits: 10, output: '${{workdir}}/big.trec'}}\n")
    command = [sys.executable, "-m", "routehead_pyserini.cli", "pipeline", "run", str(pipeline), "--workdir", str(work)]
    # SIGINT is ignored in a child of a non-interactive shell: restore the default so Python handles it
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen, deadline = "", time.monotonic() + 180
    while "BM25" not in seen and time.monotonic() < deadline and proc.poll() is None:
        seen += proc.stderr.read(1)
    assert "BM25" in seen, f"the search stage never started: {seen[-2000:]}"
    proc.send_signal(signum)
    _, rest = proc.communicate(timeout=180)
    stderr = seen + rest
    assert proc.returncode == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert stderr.rstrip().splitlines()[-1] == "Aborted!"
    name = "Ctrl-C" if signum == signal.SIGINT else "signal SIGTERM"
    assert re.search(rf"ERROR .*\[sig 2/2\] big \(search\) interrupted \({name}\) after .* run the pipeline again to resume here", stderr)
    # the stage's output is the previous one, no temporary file is left, and only the first stage has a record
    assert (work / "big.trec").read_bytes() == old
    assert sorted(p.name for p in work.iterdir()) == [".pipeline", "big.trec", "logs", "shuffled.trec"]
    assert sorted(p.name for p in (work / ".pipeline").iterdir()) == ["shuffle.json"]
    (log,) = (work / "logs").iterdir()
    assert "Traceback" not in log.read_text() and "interrupted" in log.read_text()
    # a rerun resumes at the interrupted stage
    plan = subprocess.run([*command, "--dry-run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert plan.returncode == 0, plan.stderr
    assert re.search(r"shuffle \[random-order\]: would skip \(up to date\)", plan.stdout), plan.stdout
    assert re.search(r"big \[search\]: would run", plan.stdout), plan.stdout
