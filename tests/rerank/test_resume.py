"""The same bytes after a resume (issue #22): a real `rerank` with the shipped SmolLM2 preset (heads
fused with BM25 and the bi-encoder's cosine) interrupted by SIGTERM mid-run and run again writes the
same file as an uninterrupted run without any cache, and as a third run read wholly from the cache."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from routehead_pyserini.heads.presets import list_presets

REPO = Path(__file__).resolve().parents[2]


def _rerank(args, env, cwd, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "routehead_pyserini.cli", "rerank", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _wait_for(proc: subprocess.Popen, pattern: str, timeout: float = 300) -> str:
    seen, deadline = "", time.monotonic() + timeout
    while not re.search(pattern, seen) and time.monotonic() < deadline and proc.poll() is None:
        seen += proc.stderr.read(1)
    assert re.search(pattern, seen), f"never saw {pattern!r}: {seen[-2000:]}"
    return seen


@pytest.mark.slow
def test_an_interrupted_and_resumed_rerank_writes_the_same_bytes(demo_cli, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    index = demo_cli.common[3]
    # 8 of the 16 demo queries, top 5: their candidates overlap, so a document embedded beside another
    # query's candidates (the old bi-encoder batching) would change the bytes
    # the best shipped SmolLM2 preset that weights heads (the LLM and the bi-encoder both run), whichever is the default
    preset = next(p for p in list_presets("smollm2-135m") if any(p.head_set.weights or ()) and p.head_set.extra.get("fuse_dense"))
    common = ["--run", demo_cli.bm25, "--index", index, "--topics", "demo", "--top-k", 5, "--sample", 8, "--preset", preset.name]
    cache = tmp_path / "scores"
    resumed = tmp_path / "resumed.trec"
    first = _rerank([*common, "--cache-dir", cache, "-o", resumed], env, tmp_path)
    _wait_for(first, r"rerank:[^\r\n]*\b[2-5]/8")  # a few queries scored and cached, more to go
    first.send_signal(signal.SIGTERM)
    _, stderr = first.communicate(timeout=120)
    assert first.returncode != 0 and "Aborted" in stderr and "Traceback" not in stderr
    assert not resumed.exists()
    cached = len(list(cache.rglob("*.safetensors")))
    assert 2 <= cached < 8, cached  # the interrupted run kept what it had scored
    for args in ([*common, "--cache-dir", cache, "-o", resumed],  # resumes from the cache
                 [*common, "--no-cache", "-o", tmp_path / "fresh.trec"],  # no cache at all
                 [*common, "--cache-dir", cache, "-o", tmp_path / "from-cache.trec"]):  # everything from the cache
        proc = _rerank(args, env, tmp_path)
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    assert resumed.read_bytes() == (tmp_path / "fresh.trec").read_bytes() == (tmp_path / "from-cache.trec").read_bytes()
    assert len(resumed.read_text().splitlines()) == 8 * 6
