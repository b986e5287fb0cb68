"""The README's Python example runs as it stands (in a fresh interpreter, on the demo index)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _python_example() -> str:
    section = REPO.joinpath("README.md").read_text(encoding="utf-8").split("## From Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the 'From Python' section holds one Python example"
    return blocks[0]


@pytest.mark.slow
def test_the_python_example_runs(demo_index, tmp_path):
    from routehead_pyserini.data.trec import read_topics, write_run
    from routehead_pyserini.firststage.search import bm25_search
    from routehead_pyserini.pipeline.demo import DEMO_DATA

    # what `make demo` leaves under runs/pipelines/demo/ (cut to two queries, 6 hits, to stay fast)
    workdir = tmp_path / "runs" / "pipelines" / "demo"
    shutil.copytree(demo_index, workdir / "index")
    topics = dict(list(read_topics(DEMO_DATA / "queries.jsonl").items())[:2])
    write_run(bm25_search(demo_index, topics, hits=6, progress=False), workdir / "bm25.trec", "bm25")
    script = tmp_path / "example.py"
    script.write_text(_python_example(), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert re.fullmatch(r"\[('[^']+', ){2}'[^']+'\] -?\d\.\d+(e-?\d+)?", lines[0]), lines[0]
    assert re.fullmatch(r"\{'nDCG@10': 0\.\d+, 'MAP@100': 0\.\d+, 'R@100': [01]\.\d+, 'MRR@10': [01]\.\d+\}", lines[1]), lines[1]
