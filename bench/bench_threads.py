"""Jobs side by side: what torch threads do when two re-ranking jobs share this machine's cores.

Each job re-ranks the first ``--queries`` TREC DL 2019 queries at top-20 with the shipped default
(SmolLM2, pointwise, the preset's heads, no score cache: every query is computed), in its own
process, with ``torch.set_num_threads(N)`` as ``routehead-pyserini --threads N`` sets it. Settings,
measured in one run: one job alone with torch's default threads (one per core) and with 1 thread;
two jobs started together with the default threads each (oversubscribed) and with
``cores / jobs`` threads each. Reported: wall seconds per query of each job, and the throughput of
the machine (queries per second over all jobs).

    python bench/bench_threads.py --queries 5 --output bench/results/threads.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from isolated import write_results


def child(queries: int, threads: int | None) -> None:
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    from routehead_pyserini.firststage.jvm import ensure_jvm

    ensure_jvm()
    from routehead_pyserini.firststage.sources import TextSpec, candidate_run, text_source
    from routehead_pyserini.rerank.reranker import Reranker

    run = candidate_run("trec-dl-2019")
    run = type(run)({q: run[q] for q in run.qids()[:queries]})
    texts, topics = text_source(TextSpec(index="trec-dl-2019"))
    reranker = Reranker.from_preset(cache=False)
    reranker.score("warm-up", [texts.get(run[run.qids()[0]][0].docid)])  # load everything before the clock starts
    started = time.perf_counter()
    for _ in reranker.iter_scores(run, topics, texts, progress=False):
        pass
    wall = time.perf_counter() - started
    print(json.dumps({"threads": torch.get_num_threads(), "wall_s_per_query": wall / queries}))


def jobs(script: str, queries: int, n: int, threads: int | None) -> list[dict]:
    args = [sys.executable, script, "--child", "--queries", str(queries)] + ([] if threads is None else ["--threads", str(threads)])
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(n)]
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(stderr.strip().splitlines()[-1])
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    if args.child:
        child(args.queries, args.threads)
        return
    cores = os.cpu_count() or 1
    settings = [("one job, default threads", 1, None), ("one job, 1 thread", 1, 1),
                ("two jobs, default threads each", 2, None), (f"two jobs, {max(cores // 2, 1)} thread(s) each", 2, max(cores // 2, 1))]
    rows = []
    for name, n, threads in settings:
        results = jobs(__file__, args.queries, n, threads)
        per_query = [r["wall_s_per_query"] for r in results]
        row = {"setting": name, "jobs": n, "threads_per_job": results[0]["threads"], "wall_s_per_query": per_query,
               "queries_per_s": sum(1 / s for s in per_query)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    alone = rows[0]["wall_s_per_query"][0]
    for row in rows:
        row["slowdown_vs_alone"] = max(row["wall_s_per_query"]) / alone
    write_results(args.output, {"cores": cores, "queries": args.queries, "top_k": 20, "rows": rows})


if __name__ == "__main__":
    main()
