"""Cases of the independent probe (issue #22) that need more than a row of the bad-input table
(``cases_probe.py``): environment variables, outputs through links, code reached only after a
model (cross-validation folds, memory errors), the Java heap setting, and Ctrl-C during ``index``."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from routehead_pyserini.cli import main
from routehead_pyserini.errors import UserError

REPO = Path(__file__).resolve().parents[2]


def _one_error(result, pattern: str) -> str:
    assert result.exit_code not in (0, None), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert pattern in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def run_file(demo_index, tmp_path) -> Path:
    run = tmp_path / "bm25.trec"
    result = CliRunner().invoke(main, ["-q", "search", "--index", str(demo_index), "--topics", "demo", "-o", str(run), "--hits", "5"])
    assert result.exit_code == 0, result.output
    return run


# ---- environment variables ------------------------------------------------------------------------

def test_threads_from_the_environment_beyond_what_torch_runs(run_file, tmp_path):
    result = CliRunner().invoke(main, ["-q", "random-order", str(run_file), "-o", str(tmp_path / "r.trec")],
                                env={"ROUTEHEAD_THREADS": "1000000000"})
    _one_error(result, "'--threads': 1000000000 is not in the range 1<=x<=1024")
    assert not (tmp_path / "r.trec").exists()


def test_data_dir_variable_naming_a_file(tmp_path):
    (tmp_path / "data.txt").write_text("not a folder\n")
    result = CliRunner().invoke(main, ["-q", "datasets"], env={"ROUTEHEAD_DATA_DIR": str(tmp_path / "data.txt")})
    _one_error(result, f"$ROUTEHEAD_DATA_DIR={tmp_path / 'data.txt'} is a file, not the benchmark data folder")


def test_cache_dir_variable_naming_a_file(jvm, tmp_path):
    (tmp_path / "cache.txt").write_text("not a folder\n")
    result = CliRunner().invoke(main, ["-q", "search", "--index", "demo", "--topics", "demo", "-o", str(tmp_path / "r.trec")],
                                env={"ROUTEHEAD_CACHE_DIR": str(tmp_path / "cache.txt")})
    _one_error(result, f"$ROUTEHEAD_CACHE_DIR {tmp_path / 'cache.txt'} is a file, not a folder")


@pytest.mark.parametrize("heap", ["abc", "0", "4 g", " "])
def test_java_heap_variable_that_is_no_size(monkeypatch, heap):
    from routehead_pyserini.firststage.jvm import JVMError, java_setup

    monkeypatch.setenv("ROUTEHEAD_JAVA_HEAP", heap)
    with pytest.raises(JVMError, match=r"\$ROUTEHEAD_JAVA_HEAP=.*: expected a Java heap size such as 4g") as caught:
        java_setup()
    assert "\n" not in str(caught.value)


def test_a_heap_java_refuses_is_one_line():
    from routehead_pyserini.firststage.jvm import JVMError, _preflight, find_java_home

    with pytest.raises(JVMError, match=r"failed \(exit 1\): .*Too small .*; check \$ROUTEHEAD_JAVA_HEAP \(now 1k\)") as caught:
        _preflight(find_java_home(), "1k")
    assert "\n" not in str(caught.value)


# ---- outputs -------------------------------------------------------------------------------------

def test_output_through_a_link_writes_its_target_and_keeps_the_link(run_file, tmp_path):
    (tmp_path / "target.trec").write_text("old\n")
    (tmp_path / "link.trec").symlink_to("target.trec")
    (tmp_path / "dangling.trec").symlink_to("new.trec")
    for name in ("link.trec", "dangling.trec"):
        result = CliRunner().invoke(main, ["-q", "random-order", str(run_file), "-o", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    assert os.readlink(tmp_path / "link.trec") == "target.trec" and os.readlink(tmp_path / "dangling.trec") == "new.trec"
    assert (tmp_path / "target.trec").read_text().startswith("q01 Q0 ")
    assert (tmp_path / "new.trec").read_bytes() == (tmp_path / "target.trec").read_bytes()


def test_a_refused_log_file_is_not_created(run_file, demo_index, tmp_path):
    log = demo_index / "log.txt"
    result = CliRunner().invoke(main, ["-q", "--log-file", str(log), "search", "--index", str(demo_index), "--topics", "demo",
                                       "-o", str(tmp_path / "r.trec")])
    _one_error(result, "lies inside the input --index")
    assert not log.exists()


# ---- code reached only after the model -----------------------------------------------------------

def test_cross_validation_with_more_folds_than_queries_is_quick():
    from routehead_pyserini.eval.head_analysis import best_single_head_cv

    per_query = {f"q{i}": torch.rand(2, 3) for i in range(6)}
    start = time.monotonic()
    choice = best_single_head_cv(per_query, folds=10**12)  # looping over range(folds) never ended
    assert time.monotonic() - start < 5 and set(choice.head) == set(per_query)


def test_cross_validation_of_one_query_is_a_user_error():
    from routehead_pyserini.eval.head_analysis import best_single_head_cv

    with pytest.raises(UserError, match="all 1 queries fall in one fold"):
        best_single_head_cv({"q1": torch.rand(2, 3)}, folds=5)


def test_cpu_allocator_failure_reads_as_out_of_memory():
    from routehead_pyserini.cli.app import describe_error

    message = describe_error(RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: "
                                          "you tried to allocate 2304000000000000 bytes."))
    assert message.startswith("out of memory") and "--batch-size" in message


# ---- signals -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_ctrl_c_during_index_leaves_no_index_and_no_temporary_folder(jvm, tmp_path):
    corpus = tmp_path / "big.jsonl"
    with corpus.open("w") as handle:
        for i in range(200000):
            handle.write(f'{{"_id": "d{i}", "text": "bees hives honey pollen {i}"}}\n')
    env = dict(os.environ, OMP_NUM_THREADS="1", ROUTEHEAD_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "routehead_pyserini.cli", "index", "--corpus", str(corpus), "--index", str(out / "idx")],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen, deadline = "", time.monotonic() + 120
    while "doc" not in seen and time.monotonic() < deadline and proc.poll() is None:
        seen += proc.stderr.read(1)  # the progress bar: the corpus is being read
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr[-2000:]
    assert "Traceback" not in stderr and "Aborted!" in stderr
    assert list(out.iterdir()) == []  # neither the index nor its temporary folder
