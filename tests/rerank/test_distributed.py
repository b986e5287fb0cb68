"""Scoring on Ray workers (a local Ray of 2 CPUs): the same bytes as one process, and what survives a death.

Most tests use a tiny random Llama saved with SmolLM2's tokenizer (workers load it by path in
milliseconds); one test runs the packaged SmolLM2 itself on a few demo queries.
"""
import contextlib
import logging
import os
import sys

import pytest
from click.testing import CliRunner

from routehead_pyserini.engine.cache import ScoreCache
from routehead_pyserini.cli import main
from routehead_pyserini.data.corpus import read_corpus
from routehead_pyserini.pipeline.demo import DEMO_DATA
from routehead_pyserini.rerank.distributed import (DistributedReranker, WorkerConfig, WorkerError, WorkerPool, require_ray)
from routehead_pyserini.engine.models import load_model
from routehead_pyserini.firststage.sources import DictTexts
from routehead_pyserini.rerank.reranker import PromptSettings, Reranker
from routehead_pyserini.firststage.search import bm25_search
from routehead_pyserini.data.trec import Run, read_topics, write_run

TOP_K = 6
#: CPUs per worker: two pools of two workers fit the local Ray's 2 CPUs at once (one thread each all the same)
CPUS = 0.5


@pytest.fixture(scope="module")
def local_ray(jvm):
    try:  # require_ray, not a bare import: it turns Ray's failure-signal handler off before Ray is imported
        ray = require_ray()  # (the JVM lives in this process too)
    except WorkerError:
        pytest.skip("Ray is not installed")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny_dir(smollm2, tmp_path_factory):
    """A random 4-layer Llama (4 heads, 2 KV heads) with SmolLM2's tokenizer and chat template."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    folder = tmp_path_factory.mktemp("models") / "tiny-llama"
    config = LlamaConfig(vocab_size=len(smollm2.tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    smollm2.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def demo_run(demo_index):
    """BM25 top-8 of the 16 demo queries, their topics and the corpus text."""
    topics = read_topics(DEMO_DATA / "queries.jsonl")
    run = bm25_search(demo_index, topics, hits=8, progress=False)
    texts = DictTexts({d.docid: d for d in read_corpus(DEMO_DATA / "corpus.jsonl")})
    return run, topics, texts


@pytest.fixture(scope="module")
def tiny_pool(local_ray, tiny_dir):
    with WorkerPool(WorkerConfig(str(tiny_dir), cpus=CPUS), 2, queries_per_task=2) as pool:
        yield pool


@contextlib.contextmanager
def torch_threads(n: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def trec_bytes(run, path) -> bytes:
    write_run(run, path)
    return path.read_bytes()


@pytest.mark.parametrize("heads,order", [("all", "bm25"), ("1.0,3.2", "both")])
def test_workers_write_the_same_run_as_one_process(tiny_pool, tiny_dir, demo_run, tmp_path, heads, order):
    run, topics, texts = demo_run
    settings = PromptSettings(order=order)
    # the same arithmetic as the workers (one torch thread each): float sums depend on the thread
    # count, so byte-identity holds between processes with the same number of threads
    with torch_threads(1):
        single, _ = Reranker(load_model(str(tiny_dir)), heads, settings=settings, cache=False).rerank_run(
            run, topics, texts, top_k=TOP_K, progress=False)
    expected = trec_bytes(single, tmp_path / "single.trec")

    fresh, stats = DistributedReranker(tiny_pool, heads, settings=settings, cache=str(tmp_path / "cache")).rerank_run(
        run, topics, texts, top_k=TOP_K, progress=False)
    assert stats.queries == 16 and stats.cached_queries == 0 and stats.seconds_scoring > 0
    assert trec_bytes(fresh, tmp_path / "workers.trec") == expected
    again, stats = DistributedReranker(tiny_pool, heads, settings=settings, cache=str(tmp_path / "cache")).rerank_run(
        run, topics, texts, top_k=TOP_K, progress=False)
    assert stats.cached_queries == 16  # every query was stored once, on arrival
    assert trec_bytes(again, tmp_path / "again.trec") == expected
    uncached, _ = DistributedReranker(tiny_pool, heads, settings=settings, cache=False).rerank_run(
        run, topics, texts, top_k=TOP_K, progress=False)
    assert trec_bytes(uncached, tmp_path / "uncached.trec") == expected


def test_a_killed_job_resumes_from_the_cache(tiny_pool, tiny_dir, demo_run, tmp_path):
    run, topics, texts = demo_run
    with torch_threads(1):  # the workers' arithmetic
        expected, _ = Reranker(load_model(str(tiny_dir)), cache=False).rerank_run(run, topics, texts, top_k=TOP_K, progress=False)
    cache_dir = tmp_path / "cache"
    job = DistributedReranker(tiny_pool, cache=str(cache_dir)).iter_scores(run, topics, texts, top_k=TOP_K, progress=False)
    for _ in range(3):  # the driver stops after three queries (the others may be running on the workers)
        next(job)
    job.close()
    stored = len(ScoreCache(tiny_pool.model.fingerprint, PromptSettings(), cache_dir))
    assert 3 <= stored <= 16
    assert not list(cache_dir.rglob("*.tmp"))  # nothing half-written

    resumed, stats = DistributedReranker(tiny_pool, cache=str(cache_dir)).rerank_run(run, topics, texts, top_k=TOP_K, progress=False)
    assert stats.cached_queries == stored  # no finished query is scored again
    assert trec_bytes(resumed, tmp_path / "resumed.trec") == trec_bytes(expected, tmp_path / "expected.trec")


def test_a_worker_killed_mid_job_leaves_the_run_complete_and_correct(local_ray, tiny_dir, demo_run, tmp_path):
    run, topics, texts = demo_run
    with torch_threads(1):  # the workers' arithmetic
        expected, _ = Reranker(load_model(str(tiny_dir)), cache=False).rerank_run(run, topics, texts, top_k=TOP_K, progress=False)
    marker = tmp_path / "crashed"  # the first worker to start its second batch exits its process (os._exit)
    with WorkerPool(WorkerConfig(str(tiny_dir), cpus=CPUS, crash_marker=str(marker)), 2, queries_per_task=1) as pool:
        result, stats = DistributedReranker(pool, cache=str(tmp_path / "cache")).rerank_run(
            run, topics, texts, top_k=TOP_K, progress=False)
        assert marker.exists() and pool.retried_batches >= 1
    assert stats.queries == 16 and stats.cached_queries == 0
    assert trec_bytes(result, tmp_path / "workers.trec") == trec_bytes(expected, tmp_path / "expected.trec")


def test_smollm2_on_two_workers_matches_one_process(local_ray, smollm2, demo_run, tmp_path):
    run, topics, texts = demo_run
    run = Run({qid: run[qid] for qid in run.qids()[:4]})
    with torch_threads(1):  # the workers' arithmetic
        single, _ = Reranker(smollm2, cache=False).rerank_run(run, topics, texts, top_k=5, progress=False)
    with WorkerPool(WorkerConfig("smollm2-135m", cpus=CPUS), 2, queries_per_task=1) as pool:
        assert pool.model.fingerprint == smollm2.fingerprint
        workers, _ = DistributedReranker(pool, cache=False).rerank_run(run, topics, texts, top_k=5, progress=False)
    assert trec_bytes(workers, tmp_path / "workers.trec") == trec_bytes(single, tmp_path / "single.trec")


def test_rerank_and_label_commands_with_workers(local_ray, tiny_dir, demo_index, tmp_path):
    runner = CliRunner()

    def cli(*args):
        result = runner.invoke(main, ["-q", *map(str, args)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result

    bm25 = tmp_path / "bm25.trec"
    cli("search", "--index", demo_index, "--topics", "demo", "-o", bm25, "--hits", 6)
    common = ["--run", bm25, "--index", demo_index, "--topics", "demo", "--model", tiny_dir, "--top-k", 4]
    with torch_threads(1):  # the workers' arithmetic
        cli("rerank", *common, "--cache-dir", tmp_path / "single", "-o", tmp_path / "single.trec")
    result = cli("rerank", *common, "--cache-dir", tmp_path / "workers", "--workers", 2, "--worker-cpus", CPUS, "-o", tmp_path / "workers.trec")
    assert "16 queries, 64 documents re-ranked; 0 queries from the score cache" in result.output
    assert (tmp_path / "workers.trec").read_bytes() == (tmp_path / "single.trec").read_bytes()
    for cache in ("single", "workers"):
        with torch_threads(1):
            cli("label", *common, "--cache-dir", tmp_path / cache, "--qrels", "demo", "--max-size", 2, "-o", tmp_path / f"{cache}.jsonl",
                *(["--workers", 2, "--worker-cpus", CPUS] if cache == "workers" else []))
    assert (tmp_path / "workers.jsonl").read_bytes() == (tmp_path / "single.jsonl").read_bytes()


def test_without_ray_workers_say_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    result = CliRunner().invoke(main, ["rerank", "--run", "x", "--corpus", "y", "--workers", "2", "-o", str(tmp_path / "o.trec")])
    assert result.exit_code != 0
    assert "--workers needs Ray, which is not installed: pip install 'routehead-pyserini[ray]'" in result.output
    result = CliRunner().invoke(main, ["rerank", "--run", "x", "--corpus", "y", "--ray-address", "auto", "-o", str(tmp_path / "o.trec")])
    assert result.exit_code != 0 and "--ray-address needs --workers" in result.output


def test_worker_settings_are_checked_before_anything_starts():
    with pytest.raises(WorkerError, match="needs --worker-gpus"):
        WorkerConfig("smollm2-135m", device="cuda")
    with pytest.raises(WorkerError, match="add --device cuda"):
        WorkerConfig("smollm2-135m", gpus=1)


def test_ray_leaves_the_jvm_its_signals(monkeypatch):
    """The driver shares its process with the JVM: Ray must not install its failure-signal handler,
    which would take HotSpot's deliberate SIGSEGVs for crashes (a user's own setting wins)."""
    monkeypatch.delenv("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", raising=False)
    try:
        require_ray()
    except WorkerError:
        pytest.skip("Ray is not installed")
    from ray._private import ray_constants

    assert ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER  # read when Ray was first imported, by the fixture
    require_ray()
    assert os.environ["RAY_DISABLE_FAILURE_SIGNAL_HANDLER"] == "1"
    monkeypatch.setenv("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "0")
    require_ray()
    assert os.environ["RAY_DISABLE_FAILURE_SIGNAL_HANDLER"] == "0"
