"""Second stage: re-rank candidate lists with attention heads, one query or a whole TREC run.

For each query, the top-``k`` candidates of the first-stage run become one ICR prompt (several
when they do not fit the context: see :func:`.prompt.build_windows`), the scorer returns per-head
scores (:mod:`.scoring`), the :class:`.cache.ScoreCache` stores them, and a head set
(:mod:`.heads`) sums them into one score per document.

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
from dataclasses import asdict, dataclass, field, replace
from typing import Protocol

import numpy as np
import torch
from tqdm import tqdm

from .cache import QueryScores, ScoreCache, entry_key
from .corpus import Document
from .errors import UserError
from .heads import HeadSet, aggregate, parse_heads
from .prompt import DEFAULT_DOC_MAX_TOKENS, as_document, build_pointwise_prompts, build_windows
from .scoring import PrefixCache, score_prompts
from .search import UnknownDocumentError
from .sources import DictTexts  # noqa: F401  (re-exported: the in-memory text source)
from .trec import Hit, Run
from .weights import check_head_set_model, dense_fusion_of, fused_scores, fusion_of

logger = logging.getLogger(__name__)

ORDERS = ("bm25", "reversed", "both")
#: The orders a prompt can have; ``both`` combines one entry of each.
SINGLE_ORDERS = ("bm25", "reversed")
MODES = ("listwise", "pointwise")
ATTENTION_NORMS = ("raw", "no-sink")
#: Settings added after score caches existed: left out of the cache key while at these defaults,
#: so that every cache made before they existed keeps its key (and its hours of work).
_KEY_OPTIONAL = {"mode": "listwise", "attention_norm": "raw"}


#: One query as :meth:`Reranker.iter_scores` scores it: qid, query text, candidates with text (top-k,
#: first-stage order), the hits without text, and its head set.
QueryWork = tuple[str, str, list[Document], list[Hit], HeadSet]


class RerankError(UserError, ValueError):
    """Inputs that do not fit together (a run query without topic text, ...)."""


@dataclass(frozen=True)
class PromptSettings:
    """Everything about the prompt that changes the scores (part of the cache key)."""

    doc_max_tokens: int | None = DEFAULT_DOC_MAX_TOKENS
    max_context: int | None = None  # None: the model's context length
    order: str = "bm25"  # listwise only: bm25, reversed, or both (the two summed)
    chat_template: bool = True
    mode: str = "listwise"  # or pointwise: one prompt per candidate
    attention_norm: str = "raw"  # or no-sink: mass among all keys but the first token

    def __post_init__(self):
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {self.order!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.attention_norm not in ATTENTION_NORMS:
            raise ValueError(f"attention_norm must be one of {ATTENTION_NORMS}, got {self.attention_norm!r}")
        if self.mode == "pointwise" and self.order != "bm25":
            raise RerankError(f"order {self.order!r} applies to listwise prompts; a pointwise prompt holds one passage")

    def cache_key(self) -> dict:
        """The settings that identify a score cache: all fields, except newer ones at their default."""
        values = asdict(self)
        return {k: v for k, v in values.items() if not (k in _KEY_OPTIONAL and v == _KEY_OPTIONAL[k])}


#: What a scoring command uses when neither an option nor a trained file (preset, learned head set,
#: router) says: ICR's listwise prompt in first-stage order, the top 20 candidates.
DEFAULT_TOP_K = 20
SETTING_DEFAULTS = {"mode": "listwise", "order": "bm25", "doc_max_tokens": DEFAULT_DOC_MAX_TOKENS, "attention_norm": "raw",
                    "chat_template": True}
#: Settings a trained file fixes: its scores were learned on prompts built this way.
ENFORCED = tuple(SETTING_DEFAULTS)


def recorded_settings(head_set: HeadSet | None) -> dict:
    """The prompt settings a preset or learned head set was trained with (empty for other sets)."""
    if head_set is None:
        return {}
    for key in ("preset", "learned"):
        block = head_set.extra.get(key)
        if isinstance(block, Mapping) and isinstance(block.get("prompt_settings"), Mapping):
            return {k: v for k, v in block["prompt_settings"].items() if k in (*ENFORCED, "top_k")}
    return {}


def merge_settings(explicit: Mapping[str, object], recorded: Mapping[str, object], origin: str,
                   defaults: Mapping[str, object] = ()) -> dict:
    """Prompt settings: an explicit option, else the trained file's, else :data:`SETTING_DEFAULTS`.

    ``explicit`` maps setting names to the user's values (``None``: not given). An explicit value
    that differs from one the file was trained with is refused, naming both: the file's weights are
    only meaningful on the prompts they were learned from. ``top_k`` may differ (it changes how
    many candidates are scored, not how a prompt is built). ``defaults`` replace
    :data:`SETTING_DEFAULTS` without being enforced (a method's own defaults).
    """
    out = {**SETTING_DEFAULTS, "top_k": DEFAULT_TOP_K, **dict(defaults), **dict(recorded)}
    for key, value in explicit.items():
        if value is None:
            continue
        if key in ENFORCED and key in recorded and recorded[key] != value:
            option = "--" + key.replace("_", "-")
            raise RerankError(f"{option} {value} conflicts with {origin}, which was trained with {key} {recorded[key]}; "
                              f"leave {option} out to use the file's setting")
        out[key] = value
    return out


class TextSource(Protocol):
    """Where document text comes from: an index (:class:`.search.DocumentStore`) or a dict."""

    def get(self, docid: str) -> Document: ...


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


@dataclass(frozen=True)
class RankedDocument:
    """One result of :meth:`Reranker.rank`."""

    docid: str
    score: float
    rank: int
    text: str = field(repr=False, default="")


class Reranker:
    """Attention-head re-ranker over a frozen causal LM.

    >>> reranker = Reranker("smollm2-135m")                       # doctest: +SKIP
    >>> reranker.rank("how long do fleas live", ["Fleas live ...", "Cats ..."])  # doctest: +SKIP
    [RankedDocument(docid='0', score=..., rank=1), ...]

    ``model``: a name for :func:`.models.load_model` or an already loaded ``LoadedModel``.
    ``heads``: ``None``/``"all"`` (ICR), ``"L.H,L.H"``, a head-set file, or a :class:`.heads.HeadSet`.
    ``cache``: ``True`` (default cache folder), a folder, or ``False``.
    """

    def __init__(
        self,
        model="smollm2-135m",
        heads: HeadSet | str | None = None,
        *,
        settings: PromptSettings = PromptSettings(),
        device: str = "cpu",
        dtype: str = "float32",
        cache: bool | str = True,
        router=None,
        batch_size: int = 1,
        share_prefix: bool = True,
    ):
        from .models import LoadedModel, load_model

        self.model = model if isinstance(model, LoadedModel) else load_model(model, device=device, dtype=dtype)
        self.head_set = heads if isinstance(heads, HeadSet) else parse_heads(heads)
        check_head_set_model(self.head_set, self.model)  # learned weights: this very model
        self.head_set.check_shape(self.model.spec.shape)
        self.router = router  # a TrainedRouter or KnnRouter: each query gets its own head set
        if router is not None:
            from .router import check_model

            check_model(router.model_info, self.model)
        self.settings = settings
        self.max_context = settings.max_context or self.model.spec.max_context
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
    def rank(self, query: str, docs: Sequence[Document | str | tuple[str, str]]) -> list[RankedDocument]:
        """Re-rank ``docs`` (strings, ``(docid, text)`` pairs or :class:`Document`) for ``query``."""
        documents = [Document(str(i), d) if isinstance(d, str) else as_document(d, i) for i, d in enumerate(docs)]
        if not documents:
            return []
        if fusion_of(self.head_set) is not None or dense_fusion_of(self.head_set) is not None:
            raise RerankError("this head set fuses first-stage or dense scores: re-rank a run (rerank_run), not a bare document list")
        values = aggregate(self.score(query, documents).calibrated, self.head_set).tolist()
        order = sorted(range(len(documents)), key=lambda i: (-values[i], i))
        return [RankedDocument(documents[i].docid, values[i], r + 1, documents[i].text) for r, i in enumerate(order)]

    def iter_scores(
        self,
        run: Run,
        topics: Mapping[str, str],
        texts: TextSource,
        *,
        top_k: int = 20,
        on_missing: str = "error",
        progress: bool = True,
        stats: RerankStats | None = None,
    ) -> Iterator[tuple[str, QueryScores | None, list[Hit], HeadSet]]:
        """Per query of ``run``: ``(qid, scores of its top-k candidates with text, the other hits, head set)``.

        ``scores`` is ``None`` when no candidate has text. The other hits are the candidates without
        text (``on_missing="skip"``) followed by those below ``top_k``, in first-stage order. The head
        set is the router's choice for the query (all queries are routed first, from their text
        alone), or the re-ranker's fixed set.
        """
        check_run_inputs(run, topics, on_missing)
        stats = stats if stats is not None else RerankStats()
        routed: dict[str, HeadSet] = {}
        if self.router is not None:
            qids = run.qids()
            routed = dict(zip(qids, self.router.route_queries(self.model, [topics[q] for q in qids], progress=progress)))
        work = self._schedule(self._candidates(run, topics, texts, top_k, on_missing, routed))
        for qid, query, docs, skipped, head_set in tqdm(work, total=len(run.qids()), desc="rerank", unit="query", disable=not progress):
            scores = self.score(query, docs, qid=qid, head_set=head_set) if docs else None
            stats.queries += 1
            stats.missing_docs += len(skipped)
            stats.reranked_docs += len(docs)
            if scores is not None:
                cached = bool(scores.info.get("from_cache"))
                stats.cached_queries += cached
                stats.windowed_queries += scores.info.get("windows", 1) > 1
                stats.truncated_docs += scores.info.get("truncated_docs", 0)
                stats.seconds_scoring += 0.0 if cached else scores.info.get("seconds", 0.0)
            yield qid, scores, skipped + list(run[qid][top_k:]), head_set
        if stats.missing_docs:
            logger.warning("%d candidate documents had no text and were kept unscored below the re-ranked ones", stats.missing_docs)

    def _candidates(self, run: Run, topics: Mapping[str, str], texts: TextSource, top_k: int, on_missing: str,
                    routed: Mapping[str, HeadSet]) -> Iterator[QueryWork]:
        """Per query of ``run``, in order and lazily: its text, top-k candidates with text, those without, head set."""
        for qid in run.qids():
            docs, skipped = candidate_texts(qid, run[qid][:top_k], texts, on_missing)
            yield qid, topics[qid], docs, skipped, routed.get(qid, self.head_set)

    def _schedule(self, work: Iterator[QueryWork]) -> Iterable[QueryWork]:
        """Hook: the queries :meth:`iter_scores` will score, in order. Here they are scored lazily, one
        at a time; :class:`.distributed.DistributedReranker` sends the uncached ones to its workers first."""
        return work

    def rerank_run(self, run: Run, topics: Mapping[str, str], texts: TextSource, **kwargs) -> tuple[Run, RerankStats]:
        """Re-rank the top-``top_k`` of every query of ``run`` (keywords as :meth:`iter_scores`)."""
        stats = RerankStats()
        out: dict[str, list[Hit]] = {}
        dense = None  # the bi-encoder, loaded when a head set first fuses its cosine (weights.fused_scores)
        for qid, scores, rest, head_set in self.iter_scores(run, topics, texts, stats=stats, **kwargs):
            if scores is None:
                out[qid] = ranked_hits([], [], rest)
            else:
                first_stage = {h.docid: h.score for h in run[qid]}  # fused head sets add it (weights.fused_scores)
                cosines = None
                if (fusion := dense_fusion_of(head_set)) is not None and fusion.weight != 0.0:
                    if dense is None or dense.model_name != fusion.model:
                        from .dense import CachedDenseScorer

                        # cosines cached beside the head scores (the very values training read)
                        dense = CachedDenseScorer(fusion.model, root=self.cache_root, enabled=bool(self.caches))
                    cosines = dense.scores(qid, topics[qid], [texts.get(d) for d in scores.docids])
                values = fused_scores(scores.calibrated, head_set, [first_stage[d] for d in scores.docids], cosines)
                out[qid] = ranked_hits(scores.docids, values.tolist(), rest)
        return Run(out), stats

    def describe(self) -> dict:
        heads = "routed per query" if self.router is not None else self.head_set.describe()
        return {"model": self.model.name, "fingerprint": self.model.fingerprint, "heads": heads,
                "settings": asdict(self.settings), "max_context": self.max_context}



def check_run_inputs(run: Run, topics: Mapping[str, str], on_missing: str) -> None:
    """Refuse an ``on_missing`` other than error/skip, and a run query without topic text."""
    if on_missing not in {"error", "skip"}:
        raise ValueError("on_missing must be 'error' or 'skip'")
    no_text = [q for q in run if q not in topics]
    if no_text:
        raise RerankError(f"{len(no_text)} queries of the run have no topic text (first: {no_text[:5]}); check --topics")


def candidate_texts(qid: str, hits: Sequence[Hit], texts: TextSource, on_missing: str) -> tuple[list[Document], list[Hit]]:
    """The documents of ``hits`` that have text, and (``on_missing="skip"``) the hits that have none."""
    docs, skipped = [], []
    for hit in hits:
        try:
            docs.append(texts.get(hit.docid))
        except UnknownDocumentError as exc:
            if on_missing == "error":
                raise UnknownDocumentError(f"query {qid}: {exc} (use --on-missing skip to keep it unscored)") from None
            skipped.append(hit)
    return docs, skipped


def query_entry(qid: str, query: str, docs: Sequence[Document]) -> str:
    """The score-cache entry of one query's candidate list (see :func:`.cache.entry_key`)."""
    return entry_key(qid, query, [d.docid for d in docs], [d.title + "\n" + d.text for d in docs])


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


def ranked_hits(docids: Sequence[str], values: Sequence[float], rest: Sequence[Hit] = ()) -> list[Hit]:
    """``docids`` sorted by ``values`` (ties: given order), then ``rest`` in its order with lower scores.

    Scores come out strictly decreasing **in float32**, the precision trec_eval (and pytrec_eval)
    reads scores with: scores that tie there are separated by one float32 ulp, because trec_eval
    would otherwise order tied documents by docid and evaluate another ranking than the one written.
    """
    order = sorted(range(len(docids)), key=lambda i: (-values[i], i))
    ranked = [docids[i] for i in order] + [h.docid for h in rest]
    raw = [float(values[i]) for i in order]
    floor = min(raw, default=0.0)
    raw += [floor - 1.0 - i for i in range(len(rest))]
    scores = np.asarray(raw, dtype=np.float32)
    for i in range(1, len(scores)):
        if scores[i] >= scores[i - 1]:
            scores[i] = np.nextafter(scores[i - 1], np.float32(-np.inf))
    return [Hit(docid, float(score)) for docid, score in zip(ranked, scores)]


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
        from .dense import CachedDenseScorer

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
