"""Second stage: re-rank candidate lists with attention heads, one query or a whole TREC run.

For each query, the top-``k`` candidates of the first-stage run become one ICR prompt (several
when they do not fit the context: see :func:`.windows.build_windows`), the scorer returns per-head
scores (:mod:`.scoring`), the :class:`.cache.ScoreCache` stores them, and a head set
(:mod:`.heads.head_set`) sums them into one score per document.

Ordering rules of the written run:

- the top-``k`` candidates are sorted by their new score, ties broken by first-stage rank;
- candidates below ``k`` (and, with ``on_missing="skip"``, candidates whose text is missing) keep
  their first-stage order below the re-ranked ones, with scores below the lowest re-ranked score;
- so every evaluator, trec_eval included, sees exactly this order, and the same inputs give the
  same bytes.

Prompt order (``order``): ``bm25`` lists the first-stage rank 1 first, farthest from the query
(the ICR layout); ``reversed`` puts it last, nearest the query. With small models the position of
a passage moves its attention more than its content does, so the order is part of the settings
(and of the cache key). ``both`` scores each document by the sum of its calibrated scores in the
two orders (each window-scaled as in :attr:`.cache.QueryScores.calibrated`), which cancels much
of the position bias; it is computed from (and stored as) the two single-order cache entries, so
either order's existing cache is reused and nothing new is stored under ``both``.

Prompt mode (``mode``): ``listwise`` (ICR) puts all candidates in one prompt; ``pointwise`` builds
one short prompt per candidate (the same template with that passage alone, then the query) and
scores it by the same attention mass from the query rows to the passage, calibrated by the same
"N/A" pass on the same passage prefix. Its window size is 1, so a pointwise score is the raw
calibrated mass ``query - N/A`` of one passage: in [-1, 1], not comparable in scale with listwise
scores (where a head's mass is shared among the window's passages and scaled back by the window
size). ``attention_norm="no-sink"`` measures each query row's mass among all keys but the prompt's
first token (the attention sink that takes most of many heads' mass), in either mode.

Batching (``batch_size``, not a setting: results equal to float rounding): pointwise prompts of
one query go through in padded batches of that many candidates. Listwise prompts are scored one at
a time: the score cache and resumption work query by query, one listwise prompt (thousands of
tokens) already makes the matrix products large, and padding a long prompt costs more than it
saves (a padded batch needs an explicit attention mask, which on the CPU took twice the time and
1.5x the memory of one-at-a-time windows at top-100: docs/performance.md). The scorer itself
(:func:`.scoring.score_prompts`) can batch any prompts, windows included.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import torch
from tqdm import tqdm

from ..engine.cache import QueryScores, ScoreCache
from ..data.keys import query_entry
from ..data.corpus import Document
from ..heads.head_set import HeadSet, parse_heads
from ..engine.prompt import as_document
from ..engine.windows import build_pointwise_prompts, build_windows
from ..engine.scoring import PrefixCache, score_prompts
from ..data.trec import Hit, Run
from ..heads.fusion import check_head_set_model, dense_fusion_of, fused_scores, fusion_of
from ..errors import RerankError
from ..firststage.sources import TextSource, candidate_texts, check_run_inputs
from ..data.trec import ranked_hits, scores_below
from ..firststage.dense import CachedDenseScorer
from ..engine.models import DEFAULT_MODEL, LoadedModel, load_model
from ..engine.quantize import QuantizeError, resolve as resolve_quantization
from ..heads.checkpoint import check_model
from .results import RankedDocument, Ranking
from .settings import (DEFAULT_TOP_K, ENFORCED, SETTING_DEFAULTS, SINGLE_ORDERS, PromptSettings, default_batch_size,
                       recorded_settings, trained_settings, trained_with)

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class QueryWork:
    """One query as :meth:`Reranker.iter_scores` schedules it, before scoring."""

    qid: str
    query: str
    docs: list[Document]  # its top-k candidates with text, first-stage order
    skipped: list[Hit]  # its top-k candidates without text (``on_missing="skip"``)
    head_set: HeadSet  # the router's choice for the query, or the re-ranker's fixed set


@dataclass(frozen=True)
class ScoredQuery:
    """One query as :meth:`Reranker.iter_scores` yields it."""

    qid: str
    scores: QueryScores | None  # per-head scores of its top-k candidates with text (None: none has text)
    rest: list[Hit]  # the candidates without text, then those below top-k, in first-stage order
    head_set: HeadSet
    docs: list[Document]  # the scored candidates' documents, in ``scores.docids`` order (read once)


@dataclass
class RerankStats:
    """What a run re-ranking did (reported by the CLI and logged)."""

    queries: int = 0
    reranked_docs: int = 0
    cached_queries: int = 0
    windowed_queries: int = 0
    truncated_docs: int = 0
    missing_docs: int = 0
    seconds_scoring: float = 0.0

    def summary(self) -> str:
        return (
            f"{self.queries} queries, {self.reranked_docs} documents re-ranked; {self.cached_queries} queries from the "
            f"score cache; {self.windowed_queries} needed several prompt windows; {self.truncated_docs} documents "
            f"truncated; {self.missing_docs} missing documents skipped; {self.seconds_scoring:.1f} s of model time"
        )


class Reranker:
    """Attention-head re-ranker over a frozen causal LM.

    The shipped default (a preset: pointwise prompts, a learned weight per head, fused with the
    first-stage score and the packaged bi-encoder) is one call away; its fused score needs the
    first-stage scores, so give them (``scores=``, Pyserini hits, or a DataFrame's ``score``)::

        reranker = Reranker.from_preset()                      # the best preset for SmolLM2-135M
        ranking = reranker.rank(query, [(docid, text), ...], scores=[bm25, ...])
        ranking[0].docid, ranking.top_k(10).docids
        reranker.rerank_hits(query, searcher.search(query, k=20))   # Pyserini LuceneSearcher hits
        reranker.transform(df)  # qid, query, docno, text[, score, rank] in and out (PyTerrier's layout)

    ``Reranker(model, heads)`` itself is the paper's ICR (listwise, all heads) unless ``heads`` says
    otherwise: ``None``/``"all"``, ``"L.H,L.H"``, a head-set file, or a :class:`.heads.HeadSet`.
    ``model``: a name for :func:`.models.load_model` or an already loaded ``LoadedModel``.
    ``cache``: ``True`` (default cache folder), a folder, or ``False``. ``top_k``: how many
    candidates of each query :meth:`rerank_run` re-ranks when the call does not say.
    """

    def __init__(
        self,
        model=DEFAULT_MODEL,
        heads: HeadSet | str | None = None,
        *,
        settings: PromptSettings = PromptSettings(),
        device: str = "cpu",
        dtype: str = "float32",
        quantize: str | None = None,
        cache: bool | str = True,
        router=None,
        batch_size: int | None = None,
        share_prefix: bool = True,
        top_k: int = DEFAULT_TOP_K,
    ):
        self.model = model if isinstance(model, LoadedModel) else load_model(model, device=device, dtype=dtype, quantize=quantize)
        self.head_set = heads if isinstance(heads, HeadSet) else parse_heads(heads)
        check_head_set_model(self.head_set, self.model)  # learned weights: this very model
        self.head_set.check_shape(self.model.spec.shape)
        self.router = router  # a TrainedRouter or KnnRouter: each query gets its own head set
        if router is not None:
            check_model(router.model_info, self.model)
        self.settings = settings
        self.max_context = settings.max_context or self.model.spec.max_context
        batch_size = default_batch_size(settings) if batch_size is None else batch_size
        if top_k < 1:
            raise RerankError(f"top_k must be at least 1, got {top_k}")
        self.top_k = top_k
        if batch_size < 1:
            raise RerankError(f"batch size must be at least 1, got {batch_size}")
        if batch_size > 1 and settings.mode != "pointwise":
            logger.warning("batch size %d ignored: listwise prompts are scored one at a time (see docs/performance.md)", batch_size)
        self.batch_size = batch_size if settings.mode == "pointwise" else 1
        # pointwise prompts share the template's head (system turn, instruction): run it once per process
        self.prefix_cache = PrefixCache() if settings.mode == "pointwise" and share_prefix else None
        # One cache per single order scored (order "both" reads and writes the bm25 and reversed ones).
        self.caches: dict[str, ScoreCache] = {}
        self.cache_root = None if cache is True or not cache else cache  # None: the default folder
        if cache:
            root = self.cache_root
            for order in self._orders():
                key = replace(settings, order=order).cache_key()
                self.caches[order] = ScoreCache(self.model.fingerprint, key, root)
        self.cache = self.caches.get(settings.order)  # None for order "both" (see self.caches)
        self._dense: CachedDenseScorer | None = None  # the bi-encoder, loaded when a head set first fuses its cosine

    @classmethod
    def from_preset(cls, name: str | None = None, model=DEFAULT_MODEL, **kwargs) -> Reranker:
        """A shipped preset (``routehead-pyserini presets``), by name, or the best one for ``model``;
        the prompt settings and ``top_k`` it was trained with come with it (an explicit conflicting
        ``settings`` is refused). ``model``: its name, or a loaded model of that name."""
        from ..heads.presets import default_preset, get_preset

        model_name = model.name if isinstance(model, LoadedModel) else str(model)
        preset = get_preset(name, model_name) if name else default_preset(model_name)
        if preset is None:
            raise RerankError(f"no preset is shipped for model {model_name!r}: use Reranker(model) (ICR) or from_heads")
        return cls._trained(model, preset.head_set, preset.prompt_settings, f"preset {preset.name!r}", **kwargs)

    @classmethod
    def from_heads(cls, heads: HeadSet | str, model=DEFAULT_MODEL, **kwargs) -> Reranker:
        """A head set (``"L.H,L.H"``, a head-set file such as ``train-weights`` writes, or a
        :class:`.heads.HeadSet`); a learned file's recorded prompt settings and ``top_k`` are used."""
        head_set = heads if isinstance(heads, HeadSet) else parse_heads(heads)
        return cls._trained(model, head_set, recorded_settings(head_set), f"head set {heads!s:.60}", **kwargs)

    @classmethod
    def from_router(cls, path: str, model=DEFAULT_MODEL, *, device: str = "cpu", dtype: str = "float32",
                    quantize: str | None = None, **kwargs) -> Reranker:
        """RouteHead: a router file (``routehead-pyserini train``/``train-soft-router``); each query
        gets its own head set. The router's recorded prompt settings are used."""
        from ..heads.loading import load_any_router

        loaded = model if isinstance(model, LoadedModel) else load_model(model, device=device, dtype=dtype, quantize=quantize)
        router = load_any_router(path, model=loaded)
        return cls._trained(loaded, None, trained_with(getattr(router, "prompt_settings", None)), f"router {path}", router=router,
                            **kwargs)

    @classmethod
    def _trained(cls, model, heads, recorded: Mapping[str, object], origin: str, *, settings: PromptSettings | None = None,
                 top_k: int | None = None, **kwargs) -> Reranker:
        explicit = {} if settings is None else {k: v for k, v in asdict(settings).items() if k in ENFORCED and v != SETTING_DEFAULTS[k]}
        if top_k is not None:
            explicit["top_k"] = top_k
        chosen, k = trained_settings(recorded, explicit, origin, max_context=None if settings is None else settings.max_context)
        if isinstance(heads, HeadSet) and not isinstance(model, LoadedModel):
            try:  # load the model as the file was trained: int8 weights for an int8 preset
                kwargs["quantize"] = resolve_quantization(kwargs.get("quantize"), heads.model_fingerprint, origin)
            except QuantizeError as error:
                raise RerankError(str(error)) from None
        return cls(model, heads, settings=chosen, top_k=k, **kwargs)

    def _orders(self) -> tuple[str, ...]:
        return SINGLE_ORDERS if self.settings.order == "both" else (self.settings.order,)

    # ---------------------------------------------------------------------------------------
    def score(self, query: str, docs: Sequence[Document], qid: str = "query", head_set: HeadSet | None = None) -> QueryScores:
        """Per-head scores of ``docs`` (first-stage order) for ``query``, from the cache when stored.

        Only the heads of ``head_set`` (default: the re-ranker's own) are computed when they are
        not all heads, and the forward stops at the deepest of them.
        """
        head_set = head_set or self.head_set
        mask = head_set.mask(self.model.spec.shape)
        entry = query_entry(qid, query, docs)
        parts = []
        for order in self._orders():
            cache = self.caches.get(order)
            scores = cache.get(entry, mask) if cache is not None else None
            if scores is not None:
                scores.info["from_cache"] = True
            else:
                scores = self._compute(qid, query, docs, None if head_set.is_all else mask, order)
                if cache is not None:
                    cache.put(entry, scores)
            parts.append(scores)
        return parts[0] if len(parts) == 1 else sum_orders(parts)

    def _compute(self, qid: str, query: str, docs: Sequence[Document], mask: torch.Tensor | None,
                 order: str | None = None) -> QueryScores:
        started = time.perf_counter()
        spec = self.model.spec
        order = order or self.settings.order
        in_prompt = list(range(len(docs)))
        if order == "reversed":
            in_prompt.reverse()
        build = build_pointwise_prompts if self.settings.mode == "pointwise" else build_windows
        windows = build(
            self.model.tokenizer,
            query,
            [docs[i] for i in in_prompt],
            max_context=self.max_context,
            doc_max_tokens=self.settings.doc_max_tokens,
            chat_template=self.settings.chat_template and spec.has_chat_template,
        )
        n = len(docs)
        query_t = torch.full((*spec.shape, n), float("nan"))
        calib_t = query_t.clone()
        window_size = torch.zeros(n, dtype=torch.int32)
        computed = None
        truncated = tokens = 0
        all_scores = score_prompts(self.model, windows, heads=mask, batch_size=self.batch_size,
                                   exclude_sink=self.settings.attention_norm == "no-sink", prefix_cache=self.prefix_cache)
        for prompt, head_scores in zip(windows, all_scores):
            computed = head_scores.computed
            targets = [in_prompt[i] for i in prompt.doc_indices]
            query_t[:, :, targets] = head_scores.query
            calib_t[:, :, targets] = head_scores.calib
            window_size[targets] = len(targets)
            truncated += prompt.truncated_docs
            tokens += prompt.prefix_len + len(prompt.query_suffix_ids) + len(prompt.calib_suffix_ids)
        if computed is None:
            computed = torch.zeros(spec.shape, dtype=torch.bool) if mask is None else mask.clone()
        info = {"truncated_docs": truncated, "tokens": tokens, "seconds": round(time.perf_counter() - started, 3)}
        if self.settings.mode == "pointwise":
            info["prompts"] = len(windows)  # one per candidate: not windows of a list
        else:
            info["windows"] = len(windows)
        return QueryScores(qid, [d.docid for d in docs], query_t, calib_t, computed, window_size, info)

    # ---------------------------------------------------------------------------------------
    def score_documents(self, query: str, docs: Sequence[Document | str | tuple[str, str]],
                        scores: Sequence[float] | None = None, *, qid: str = "query") -> list[float]:
        """One score per document of ``docs`` (first-stage order) for ``query``: the head set's sum,
        or for a learned head set that fuses them, with the first-stage ``scores`` and bi-encoder cosine."""
        documents = as_documents(docs)
        if not documents:
            return []
        if scores is not None and len(scores) != len(documents):
            raise RerankError(f"{len(scores)} first-stage scores for {len(documents)} documents")
        if (fusion := fusion_of(self.head_set)) is not None and fusion.weight != 0.0 and scores is None:
            raise RerankError("this head set fuses the first-stage score: give scores= (e.g. BM25), Pyserini hits "
                              "(rerank_hits) or a DataFrame with a 'score' column (transform)")
        head_scores = self.score(query, documents, qid=qid)
        return self._fused(qid, query, head_scores, documents, None if scores is None else [float(x) for x in scores])

    def _fused(self, qid: str, query: str, scores: QueryScores, docs: Sequence[Document], first_stage: list[float] | None,
               head_set: HeadSet | None = None) -> list[float]:
        """The head set's scores of one query's candidates, fused with the first stage and the
        bi-encoder when the head set says so (:func:`.fusion.fused_scores`)."""
        head_set = head_set or self.head_set
        cosines = None
        if (fusion := dense_fusion_of(head_set)) is not None and fusion.weight != 0.0:
            if self._dense is None or self._dense.model_name != fusion.model:
                # cosines cached beside the head scores (the very values training read)
                self._dense = CachedDenseScorer(fusion.model, root=self.cache_root, enabled=bool(self.caches))
            cosines = self._dense.scores(qid, query, docs)
        return fused_scores(scores.calibrated, head_set, first_stage, cosines).tolist()

    def rank(self, query: str, docs: Sequence[Document | str | tuple[str, str]], scores: Sequence[float] | None = None) -> Ranking:
        """Re-rank ``docs`` (strings, ``(docid, text)`` pairs or :class:`Document`; strings get ids
        "0", "1", ...) for ``query``, best first; ties keep the given order. ``scores``: their
        first-stage scores, needed by head sets that fuse them (every shipped preset)."""
        documents = as_documents(docs)
        values = self.score_documents(query, documents, scores)
        order = sorted(range(len(documents)), key=lambda i: (-values[i], i))
        return Ranking(RankedDocument(documents[i].docid, values[i], r + 1, documents[i].text) for r, i in enumerate(order))

    def rerank_hits(self, query: str, hits: Sequence, k: int | None = None) -> Ranking:
        """Re-rank Pyserini search results (``LuceneSearcher.search(query)``: objects with ``docid``,
        ``score`` and the stored raw document) for ``query``; only the first ``k`` (default: the
        re-ranker's ``top_k``) are scored, the rest follow in their order below the lowest score."""
        from .adapters import documents_of_hits

        k = self.top_k if k is None else k
        docs, first_stage = documents_of_hits(hits)
        ranking = self.rank(query, docs[:k], first_stage[:k])
        for doc, score in zip(docs[k:], scores_below(ranking.scores, len(docs[k:]))):
            ranking.append(RankedDocument(doc.docid, score, len(ranking) + 1, doc.text))
        return ranking

    def transform(self, frame):
        """Re-rank a pandas DataFrame in PyTerrier's layout: columns ``qid, query, docno, text`` and
        optionally ``score`` (first-stage, needed by fused head sets) and ``rank``, one row per
        candidate. Returns the same rows with ``score`` replaced by the new score, sorted by query
        then new rank, ``rank`` 0-based as PyTerrier writes it; the first-stage score is kept as
        ``score_first_stage``. Each query's candidates are taken in ``rank`` order when given."""
        from .adapters import transform_frame

        return transform_frame(self, frame)

    def iter_scores(
        self,
        run: Run,
        topics: Mapping[str, str],
        texts: TextSource,
        *,
        top_k: int | None = None,
        on_missing: str = "error",
        progress: bool = True,
        stats: RerankStats | None = None,
    ) -> Iterator[ScoredQuery]:
        """Per query of ``run``, in run order: a :class:`ScoredQuery` (the scores of its top-k candidates
        with text, the other hits, its head set). All queries are routed first, from their text alone.
        ``top_k``: candidates re-ranked per query (default: the re-ranker's ``top_k``)."""
        top_k = self.top_k if top_k is None else top_k
        check_run_inputs(run, topics, on_missing)
        stats = stats if stats is not None else RerankStats()
        routed: dict[str, HeadSet] = {}
        if self.router is not None:
            qids = run.qids()
            routed = dict(zip(qids, self.router.route_queries(self.model, [topics[q] for q in qids], progress=progress)))
        work = self._schedule(self._candidates(run, topics, texts, top_k, on_missing, routed))
        for item in tqdm(work, total=len(run.qids()), desc="rerank", unit="query", disable=not progress):
            scores = self.score(item.query, item.docs, qid=item.qid, head_set=item.head_set) if item.docs else None
            stats.queries += 1
            stats.missing_docs += len(item.skipped)
            stats.reranked_docs += len(item.docs)
            if scores is not None:
                cached = bool(scores.info.get("from_cache"))
                stats.cached_queries += cached
                stats.windowed_queries += scores.info.get("windows", 1) > 1
                stats.truncated_docs += scores.info.get("truncated_docs", 0)
                stats.seconds_scoring += 0.0 if cached else scores.info.get("seconds", 0.0)
            yield ScoredQuery(item.qid, scores, item.skipped + list(run[item.qid][top_k:]), item.head_set, item.docs)
        if stats.missing_docs:
            logger.warning("%d candidate documents had no text and were kept unscored below the re-ranked ones", stats.missing_docs)

    def _candidates(self, run: Run, topics: Mapping[str, str], texts: TextSource, top_k: int, on_missing: str,
                    routed: Mapping[str, HeadSet]) -> Iterator[QueryWork]:
        """Per query of ``run``, in order and lazily: its text, top-k candidates with text, those without, head set."""
        for qid in run.qids():
            docs, skipped = candidate_texts(qid, run[qid][:top_k], texts, on_missing)
            yield QueryWork(qid, topics[qid], docs, skipped, routed.get(qid, self.head_set))

    def _schedule(self, work: Iterator[QueryWork]) -> Iterable[QueryWork]:
        """Hook: the queries :meth:`iter_scores` will score, in order. Here they are scored lazily, one
        at a time; :class:`.distributed.DistributedReranker` sends the uncached ones to its workers first."""
        return work

    def rerank_run(self, run: Run, topics: Mapping[str, str], texts: TextSource, **kwargs) -> tuple[Run, RerankStats]:
        """Re-rank the top-``top_k`` of every query of ``run`` (keywords as :meth:`iter_scores`)."""
        stats = RerankStats()
        out: dict[str, list[Hit]] = {}
        for item in self.iter_scores(run, topics, texts, stats=stats, **kwargs):
            if item.scores is None:
                out[item.qid] = ranked_hits([], [], item.rest)
                continue
            docids = item.scores.docids
            first_stage = {h.docid: h.score for h in run[item.qid]}  # fused head sets add it
            values = self._fused(item.qid, topics[item.qid], item.scores, item.docs, [first_stage[d] for d in docids],
                                 item.head_set)
            out[item.qid] = ranked_hits(docids, values, item.rest)
        return Run(out), stats

    def describe(self) -> dict:
        heads = "routed per query" if self.router is not None else self.head_set.describe()
        return {"model": self.model.name, "fingerprint": self.model.fingerprint, "heads": heads,
                "settings": asdict(self.settings), "max_context": self.max_context}


def as_documents(docs: Sequence[Document | str | tuple[str, str]]) -> list[Document]:
    """Documents from strings (ids "0", "1", ... by position), ``(docid, text)`` pairs or :class:`Document`."""
    return [Document(str(i), d) if isinstance(d, str) else as_document(d, i) for i, d in enumerate(docs)]


def sum_orders(parts: Sequence[QueryScores]) -> QueryScores:
    """Order ``both``: one :class:`QueryScores` whose ``calibrated`` is the sum of the parts'.

    ``query`` and ``calib`` hold the window-scaled sums (so they are not attention masses in
    [0, 1] any more) and ``window_size`` is 1; only heads computed in every part count as computed.
    The info says which parts came from the cache; ``seconds`` is the model time actually spent.
    """
    first = parts[0]
    for other in parts[1:]:
        if other.docids != first.docids:
            raise RerankError(f"query {first.qid}: the orders scored different candidates")
    query = sum(p.query * p.window_size.to(p.query.dtype) for p in parts)
    calib = sum(p.calib * p.window_size.to(p.calib.dtype) for p in parts)
    computed = torch.stack([p.computed for p in parts]).all(dim=0)
    cached = [bool(p.info.get("from_cache")) for p in parts]
    info = {
        "orders": {order: "cache" if c else "computed" for order, c in zip(SINGLE_ORDERS, cached)},
        "windows": max(p.info.get("windows", 1) for p in parts),
        "truncated_docs": max(p.info.get("truncated_docs", 0) for p in parts),
        "tokens": sum(p.info.get("tokens", 0) for p in parts),
        "seconds": round(sum(p.info.get("seconds", 0.0) for p, c in zip(parts, cached) if not c), 3),
        "from_cache": all(cached),
    }
    return QueryScores(first.qid, list(first.docids), query, calib, computed,
                       torch.ones(len(first.docids), dtype=torch.int32), info)


def needs_model(head_set: HeadSet) -> bool:
    """False for a learned head set whose every head weight is 0 (the fusion-only control): its
    ranking is the fused first-stage score and bi-encoder cosine alone, so no LLM is loaded."""
    return not (head_set.weights is not None and head_set.model_shape is not None and all(w == 0.0 for w in head_set.weights)
                and (fusion_of(head_set) is not None or dense_fusion_of(head_set) is not None))


def rerank_fusion_only(head_set: HeadSet, run: Run, topics: Mapping[str, str], texts: TextSource, *, top_k: int = 20,
                       on_missing: str = "error", progress: bool = True, cache_root=None, use_cache: bool = True) -> tuple[Run, RerankStats]:
    """:meth:`Reranker.rerank_run` for a head set that :func:`needs_model` says needs no LLM: the same
    candidates, order rules and fusion arithmetic (:func:`.weights.fused_scores` with every head at 0)."""
    check_run_inputs(run, topics, on_missing)
    dense_fusion = dense_fusion_of(head_set)
    scorer = None
    if dense_fusion is not None and dense_fusion.weight != 0.0:
        scorer = CachedDenseScorer(dense_fusion.model, root=cache_root, enabled=use_cache)
    stats, out = RerankStats(), {}
    for qid in tqdm(run.qids(), desc="rerank (no LLM)", unit="query", disable=not progress):
        docs, skipped = candidate_texts(qid, run[qid][:top_k], texts, on_missing)
        rest = skipped + list(run[qid][top_k:])
        stats.queries += 1
        stats.reranked_docs += len(docs)
        stats.missing_docs += len(skipped)
        if not docs:
            out[qid] = ranked_hits([], [], rest)
            continue
        first = {h.docid: h.score for h in run[qid]}
        cosines = None if scorer is None else scorer.scores(qid, topics[qid], docs)
        no_heads = torch.zeros(*head_set.model_shape, len(docs))  # every head weighs 0: only the fusion terms count
        values = fused_scores(no_heads, head_set, [first[d.docid] for d in docs], cosines)
        out[qid] = ranked_hits([d.docid for d in docs], values.tolist(), rest)
    return Run(out), stats
