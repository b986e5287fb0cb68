"""Scoring on Ray workers: one model per worker, batches of queries, the run merged in order.

A :class:`WorkerPool` starts ``workers`` Ray actors (:class:`ScoringWorker`); each loads the model
once, with torch using as many threads as the CPUs Ray gives it, and turns batches of
:class:`Request` (one query's candidates in one prompt order) into per-head
:class:`.cache.QueryScores`. A :class:`DistributedReranker` is a :class:`.rerank.Reranker` whose
model runs on those workers: before :meth:`~.rerank.Reranker.iter_scores` scores a run, it sends
every query that is not in the score cache to the pool, then goes through the queries in run
order exactly as the single-process re-ranker does (same cache reads, same aggregation, same
:func:`.rerank.ranked_hits`), so the TREC run it writes is byte-identical.

What survives what:

- The driver writes each query's scores to the score cache as soon as they arrive (atomically,
  :mod:`.files`), whatever the order they come back in: a job killed at any point resumes from the
  cache and redoes only the queries whose scores had not arrived. Workers never write the cache,
  so it may live on the driver's disk alone (multi-machine clusters need no shared filesystem).
- A worker that dies (its process or its machine) loses its batch: the batch is queued again in
  front and goes to the first free worker, while Ray restarts the dead one (``max_restarts``),
  which loads the model again and rejoins. A batch that fails ``max_retries`` times, or a pool
  with no worker left, stops the job with :class:`WorkerError`.
- An error raised by the scoring code itself (bad input) is not retried: it stops the job as it
  would in one process.

Ray is an optional dependency (``pip install 'routehead-pyserini[ray]'``): this module imports it
only when a pool is made, and :func:`require_ray` says how to install it.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

import torch

from ..engine.cache import QueryScores, ScoreCache
from ..data.corpus import Document
from ..errors import UserError
from ..heads.head_set import HeadSet
from ..engine.models import LoadedModel
from .reranker import PromptSettings, QueryWork, Reranker
from ..data.keys import query_entry

logger = logging.getLogger(__name__)

RAY_HINT = "pip install 'routehead-pyserini[ray]'"
#: (score-cache entry, prompt order): one forward job, the unit the workers compute and the cache stores.
Key = tuple[str, str]


class WorkerError(UserError, RuntimeError):
    """The workers cannot finish the job (Ray missing, too few resources, workers dying again and again)."""


def require_ray():
    """The ``ray`` module, or a :class:`WorkerError` that says how to install it.

    The driver shares its process with the one JVM (Pyserini reads document text through it).
    HotSpot raises SIGSEGV on purpose in normal operation (safepoint polls, implicit null checks)
    and handles it itself; Ray's native failure-signal handler, which a driver installs by default,
    takes those signals for crashes and kills the process at a random later moment. So Ray is told
    not to install it (``RAY_DISABLE_FAILURE_SIGNAL_HANDLER=1``, read when Ray is imported and
    started; a value set by the user wins). The cost: no native stack trace if Ray itself crashes.
    """
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    already_imported = "ray" in sys.modules
    try:
        import ray
    except ImportError:
        raise WorkerError(f"--workers needs Ray, which is not installed: {RAY_HINT} "
                          "(or leave out --workers and --ray-address to score in this process)") from None
    if already_imported and os.environ["RAY_DISABLE_FAILURE_SIGNAL_HANDLER"] == "1":
        from ray._private import ray_constants

        if not ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER:
            logger.warning("Ray was imported before routehead_pyserini could turn off its failure-signal handler, which "
                           "can crash this process's JVM; set RAY_DISABLE_FAILURE_SIGNAL_HANDLER=1 before importing Ray")
    return ray


@dataclass(frozen=True)
class WorkerConfig:
    """What every worker needs to build its own re-ranker: plain values, sent to each actor."""

    model: str  # a name or path for :func:`.models.load_model`, resolved on the worker's machine
    settings: PromptSettings = PromptSettings()
    device: str = "cpu"
    dtype: str = "float32"
    quantize: str | None = None  # "int8": see :mod:`.engine.quantize`
    batch_size: int = 1  # pointwise candidates per forward pass (see :class:`.rerank.Reranker`)
    cpus: float = 1.0  # Ray CPUs per worker; torch runs this many threads
    gpus: float = 0.0  # Ray GPUs per worker (Ray sets CUDA_VISIBLE_DEVICES, so --device cuda is its own)
    crash_marker: str | None = None  # fault injection for tests: see ScoringWorker.score

    def __post_init__(self):
        if self.cpus <= 0:
            raise WorkerError(f"CPUs per worker must be positive, got {self.cpus}")
        if self.gpus < 0:
            raise WorkerError(f"GPUs per worker cannot be negative, got {self.gpus}")
        on_gpu = torch.device(self.device).type == "cuda"
        if on_gpu and self.gpus == 0:
            raise WorkerError(f"--device {self.device} with --workers needs --worker-gpus (GPUs per worker, e.g. 1): "
                              "Ray shows a worker only the GPUs it reserved for it")
        if self.gpus > 0 and not on_gpu:
            raise WorkerError(f"--worker-gpus {self.gpus} reserves GPUs the model would not use: add --device cuda")


@dataclass(frozen=True)
class Request:
    """One query's candidates to score in one prompt order (``mask``: the heads, None for all)."""

    key: Key
    qid: str
    query: str
    docs: tuple[Document, ...]
    mask: torch.Tensor | None
    order: str


class ScoringWorker:
    """The body of one Ray actor: a re-ranker without a cache, built once, scoring batches."""

    def __init__(self, config: WorkerConfig):
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # one "Loading weights" bar per worker in the driver's terminal
        torch.set_num_threads(max(1, int(config.cpus)))
        self.config = config
        self.reranker = Reranker(config.model, settings=config.settings, device=config.device, dtype=config.dtype,
                                 quantize=config.quantize, cache=False, batch_size=config.batch_size)
        self.batches = 0

    def describe(self) -> dict:
        """The model as the driver needs it (no weights): spec, fingerprint, name, source."""
        model = self.reranker.model
        return {"spec": model.spec, "fingerprint": model.fingerprint, "name": model.name, "source": model.source}

    def score(self, requests: Sequence[Request]) -> list[QueryScores]:
        """Per-head scores of each request, in order."""
        marker = self.config.crash_marker
        if marker and self.batches >= 1 and _claim(marker):  # die once, mid-job, as a killed worker would
            os._exit(1)
        self.batches += 1
        return [self.reranker._compute(r.qid, r.query, list(r.docs), r.mask, r.order) for r in requests]


def _claim(path: str) -> bool:
    """Create ``path``; False when it already exists (so exactly one worker claims it)."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


@dataclass
class _Batch:
    requests: list[Request]
    attempts: int = 0


class WorkerPool:
    """``workers`` Ray actors running :class:`ScoringWorker`, fed batches of requests by the driver.

    ``address``: None starts a local Ray (unless this process already joined one); ``"auto"`` or
    an address joins an existing cluster. ``queries_per_task``: requests per batch (small batches
    balance the load and lose less to a dead worker; each task costs a few milliseconds).
    ``max_retries``: restarts of each worker, and attempts of each batch beyond the first.
    ``startup_timeout``: seconds to wait for every worker to load the model (a cluster without the
    resources asked for would otherwise keep them waiting for ever).
    """

    def __init__(self, config: WorkerConfig, workers: int, *, address: str | None = None,
                 queries_per_task: int = 2, max_retries: int = 3, startup_timeout: float = 900.0):
        ray = require_ray()
        if workers < 1:
            raise WorkerError(f"--workers must be at least 1, got {workers}")
        if queries_per_task < 1:
            raise WorkerError(f"queries per task must be at least 1, got {queries_per_task}")
        self.config, self.workers, self.queries_per_task, self.max_retries = config, workers, queries_per_task, max_retries
        self.retried_batches = 0
        self.actors: list = []
        self._queue: deque[_Batch] = deque()
        self._idle: deque[int] = deque(range(workers))
        self._in_flight: dict = {}  # ObjectRef -> (actor index, batch)
        self._restarting: dict = {}  # ObjectRef of a ping that returns once Ray restarted it -> actor index
        self._failures = [0] * workers
        started = time.perf_counter()
        self._own_ray = not ray.is_initialized()
        if self._own_ray:
            try:
                ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
            except ConnectionError as exc:
                raise WorkerError(f"cannot join the Ray cluster at {address!r}: {exc} (start one with `ray start --head`, "
                                  "or leave out --ray-address for a local Ray)") from None
        elif address:
            logger.info("this process already joined a Ray cluster; --ray-address %s is not used", address)
        self._check_resources(ray.cluster_resources())
        actor = ray.remote(ScoringWorker).options(num_cpus=config.cpus, num_gpus=config.gpus,
                                                  max_restarts=max_retries, max_task_retries=0)
        self.actors = [actor.remote(config) for _ in range(workers)]
        try:
            infos = ray.get([a.describe.remote() for a in self.actors], timeout=startup_timeout)
        except ray.exceptions.GetTimeoutError:
            self.close()
            raise WorkerError(f"the {workers} workers were not ready after {startup_timeout:g} s: does the Ray cluster have "
                              f"{config.cpus:g} CPU and {config.gpus:g} GPU free for each? (`ray status` shows it)") from None
        except ray.exceptions.RayError as exc:
            self.close()
            raise WorkerError(f"the workers could not load model {config.model!r}: {_cause(exc)}") from None
        if len({i["fingerprint"] for i in infos}) > 1:
            self.close()
            raise WorkerError(f"the workers loaded different weights for {config.model!r}: "
                              f"{sorted({i['fingerprint'] for i in infos})}; install the same model on every machine")
        #: the workers' model without its weights: what the driver needs (spec, fingerprint, name)
        self.model = LoadedModel(model=None, tokenizer=None, **infos[0])
        self.startup_seconds = time.perf_counter() - started
        logger.info("%d Ray workers ready in %.1f s (%g CPU, %g GPU each; model %s)", workers,
                    self.startup_seconds, config.cpus, config.gpus, self.model.fingerprint)

    def _check_resources(self, available: dict) -> None:
        needed = {"CPU": self.workers * self.config.cpus, "GPU": self.workers * self.config.gpus}
        short = {k: v for k, v in needed.items() if v > available.get(k, 0.0)}
        if not short:
            return
        message = (f"{self.workers} workers need {', '.join(f'{v:g} {k}' for k, v in short.items())}, but the Ray "
                   f"cluster has {', '.join(f'{available.get(k, 0.0):g} {k}' for k in short)}")
        if self._own_ray:
            self.close()
            raise WorkerError(message + "; lower --workers, --worker-cpus or --worker-gpus")
        logger.warning("%s: workers wait until the cluster grows", message)

    # ------------------------------------------------------------------------------------------
    def submit(self, requests: Iterable[Request]) -> None:
        """Queue ``requests`` (in batches of ``queries_per_task``) and start what free workers can take."""
        requests = list(requests)
        for start in range(0, len(requests), self.queries_per_task):
            self._queue.append(_Batch(requests[start:start + self.queries_per_task]))
        self._dispatch()

    def _dispatch(self) -> None:
        while self._queue and self._idle:
            index, batch = self._idle.popleft(), self._queue.popleft()
            self._in_flight[self.actors[index].score.remote(batch.requests)] = (index, batch)

    def next_results(self) -> list[tuple[Request, QueryScores]]:
        """Wait for the next finished batch and return its results; a lost batch is queued again."""
        import ray

        while self._in_flight or self._restarting:
            [ref], _ = ray.wait([*self._in_flight, *self._restarting], num_returns=1)
            if ref in self._restarting:
                self._rejoin(self._restarting.pop(ref), ref)
                continue
            index, batch = self._in_flight.pop(ref)
            try:
                results = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.ObjectLostError) as exc:
                self._lost(index, batch, exc)
                continue
            except ray.exceptions.RayTaskError as exc:  # the scoring code raised: as in one process
                raise exc.cause if isinstance(exc.cause, UserError) else exc
            self._idle.append(index)
            self._dispatch()
            return list(zip(batch.requests, results))
        raise RuntimeError("no batch is in flight")

    def _lost(self, index: int, batch: _Batch, exc: Exception) -> None:
        batch.attempts += 1
        self._failures[index] += 1
        self.retried_batches += 1
        first = batch.requests[0].qid
        if batch.attempts > self.max_retries:
            raise WorkerError(f"a batch of {len(batch.requests)} queries (first {first!r}) was lost {batch.attempts} "
                              f"times; the last time: {_cause(exc)}")
        logger.warning("worker %d died with a batch of %d queries (first %r): %s; retrying it (%d/%d)", index,
                       len(batch.requests), first, type(exc).__name__, batch.attempts, self.max_retries)
        logger.debug("lost batch", exc_info=exc)
        self._queue.appendleft(batch)  # to the first free worker
        if self._failures[index] <= self.max_retries:  # Ray restarts it (the model loads again); it rejoins then
            ping = self.actors[index].describe.options(max_task_retries=-1).remote()
            self._restarting[ping] = index
        self._check_alive()
        self._dispatch()

    def _rejoin(self, index: int, ping) -> None:
        import ray

        try:
            ray.get(ping)
        except ray.exceptions.RayError as exc:
            logger.warning("worker %d did not come back: %s", index, _cause(exc))
            self._check_alive()
            return
        logger.info("worker %d restarted and rejoins", index)
        self._idle.append(index)
        self._dispatch()

    def _check_alive(self) -> None:
        if not (self._idle or self._in_flight or self._restarting):
            raise WorkerError(f"no worker is left (each died more than {self.max_retries} times); see the Ray logs (/tmp/ray)")

    def cancel(self) -> None:
        """Drop queued batches and cancel running ones (their results are never read)."""
        import ray

        self._queue.clear()
        for ref, (index, _) in self._in_flight.items():
            ray.cancel(ref)
            self._idle.append(index)
        self._in_flight.clear()

    def close(self) -> None:
        """Stop the workers, and the local Ray when this pool started it."""
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        if self._own_ray:
            ray.shutdown()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _cause(exc: Exception) -> str:
    """The first line of a Ray error (its full text carries remote tracebacks)."""
    text = str(getattr(exc, "cause", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ----------------------------------------------------------------------------------------------
class DistributedReranker(Reranker):
    """A :class:`.rerank.Reranker` whose forward passes run on a :class:`WorkerPool`.

    ``settings`` must match the pool's except for ``order`` (orders are per request). ``model``: a
    loaded copy of the workers' model, only for a ``router`` (routing embeds the query text in the
    driver); otherwise the driver holds no weights.
    """

    def __init__(self, pool: WorkerPool, heads: HeadSet | str | None = None, *, settings: PromptSettings = PromptSettings(),
                 cache: bool | str = True, router=None, model: LoadedModel | None = None):
        if replace(settings, order="bm25") != replace(pool.config.settings, order="bm25"):
            raise ValueError(f"prompt settings {settings} differ from the workers' {pool.config.settings}")
        if model is not None and model.fingerprint != pool.model.fingerprint:
            raise WorkerError(f"the driver's model {model.fingerprint} is not the workers' {pool.model.fingerprint}")
        super().__init__(model or pool.model, heads, settings=settings, cache=cache, router=router)
        self.pool = pool
        self._pending: set[Key] = set()  # sent to the workers, not yet taken by score()
        self._ready: dict[Key, QueryScores] = {}  # arrived, not yet taken
        self._stored: set[Key] = set()  # written to the cache on arrival: score() must not write them again
        self._stores = dict(self.caches)
        self.caches = {order: _JobCache(cache, order, self) for order, cache in self.caches.items()}

    def iter_scores(self, *args, **kwargs):
        try:
            yield from super().iter_scores(*args, **kwargs)
        finally:  # the job ended early (an error, a consumer that stopped): nothing of it is left running
            self.pool.cancel()
            self._pending.clear()
            self._ready.clear()
            self._stored.clear()

    def _schedule(self, work: Iterator[QueryWork]) -> list[QueryWork]:
        """Send every query (and order) missing from the cache to the workers, in run order."""
        work = list(work)  # every query's candidates up front, so that the workers can run ahead
        requests = []
        for item in work:
            if not item.docs:
                continue
            mask = item.head_set.mask(self.model.spec.shape)
            entry = query_entry(item.qid, item.query, item.docs)
            for order in self._orders():
                store = self._stores.get(order)
                if store is not None and store.get(entry, mask) is not None:
                    continue
                requests.append(self._request(item.qid, item.query, item.docs, None if item.head_set.is_all else mask, order, entry))
        logger.info("%d forward jobs for %d queries go to %d workers (the rest are in the score cache)",
                    len(requests), len(work), self.pool.workers)
        self.pool.submit(requests)
        return work

    def _request(self, qid: str, query: str, docs: Sequence[Document], mask: torch.Tensor | None, order: str,
                 entry: str | None = None) -> Request:
        key = (entry or query_entry(qid, query, docs), order)
        self._pending.add(key)
        return Request(key, qid, query, tuple(docs), mask, order)

    def _compute(self, qid: str, query: str, docs: Sequence[Document], mask: torch.Tensor | None,
                 order: str | None = None) -> QueryScores:
        """The workers' scores for this query: sent ahead by :meth:`_schedule`, or now (a direct call)."""
        order = order or self.settings.order
        key = (query_entry(qid, query, docs), order)
        if key not in self._pending:
            self.pool.submit([self._request(qid, query, docs, mask, order, key[0])])
        while key not in self._ready:
            for request, scores in self.pool.next_results():
                store = self._stores.get(request.order)
                if store is not None:  # at once, so that a killed job loses nothing that arrived
                    store.put(request.key[0], scores)
                    self._stored.add(request.key)
                self._ready[request.key] = scores
        self._pending.discard(key)
        return self._ready.pop(key)


class _JobCache:
    """The re-ranker's view of one order's :class:`.cache.ScoreCache` while workers fill it.

    A query sent to the workers reads as missing until :meth:`Reranker.score` takes it (so it is
    counted as computed, not cached), and is not written twice (the driver wrote it on arrival).
    """

    def __init__(self, cache: ScoreCache, order: str, job: DistributedReranker):
        self.cache, self.order, self.job = cache, order, job

    def get(self, entry: str, mask: torch.Tensor | None = None) -> QueryScores | None:
        return None if (entry, self.order) in self.job._pending else self.cache.get(entry, mask)

    def put(self, entry: str, scores: QueryScores) -> None:
        if (entry, self.order) in self.job._stored:
            self.job._stored.discard((entry, self.order))
        else:
            self.cache.put(entry, scores)

    def __len__(self) -> int:
        return len(self.cache)

    def __getattr__(self, name: str):
        return getattr(self.cache, name)
