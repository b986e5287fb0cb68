"""Dense first stage: exact inner-product search with faiss over bi-encoder embeddings of a corpus.

``build_dense_index`` embeds every document of a JSONL corpus with a :class:`.dense.DenseEncoder`
(all-MiniLM-L6-v2 by default: unit vectors, so inner product = cosine), the text as
:func:`.dense.document_text` makes it, and stores a flat (exact, brute-force) faiss index::

    <folder>/vectors.faiss                   faiss.IndexFlatIP, one row per document, corpus order
    <folder>/docids.txt                      the document id of each row
    <folder>/routehead-dense-index.json      encoder, dimension, count and the corpus it came from

It is written into a temporary folder beside the target and renamed into place, like the Lucene
index (:mod:`.index`), so an interrupted build leaves nothing behind. A flat index is exact and
needs no training; at the sizes of the collections here (a few thousand to tens of thousands of
documents) a query costs well under a millisecond. ``dense_search`` embeds each topic and keeps
the ``hits`` best documents, ties broken by corpus order (faiss returns them that way), so the
same inputs give the same run. A registry name (``search --dense --index vaswani``) gets its
dense index built on first use under the cache folder (:func:`resolve_dense_index`).
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from ..data.corpus import read_corpus
from .dense import DenseEncoder, document_text
from ..errors import UserError
from ..files import atomic_directory, atomic_write_text, check_replaceable
from ..data.trec import Hit, Run
from ..config import cache_dir
from .index import index_is_stale
from ..data.registry import load_registry

logger = logging.getLogger(__name__)

MANIFEST = "routehead-dense-index.json"
VECTORS = "vectors.faiss"
DOCIDS = "docids.txt"


class DenseIndexError(UserError, ValueError):
    """A dense index that cannot be built, found or searched as asked."""


@dataclass(frozen=True)
class DenseIndexInfo:
    """What a dense index holds (its manifest)."""

    encoder: str
    dim: int
    num_docs: int
    corpus: str
    corpus_bytes: int
    corpus_mtime_ns: int


def build_dense_index(
    corpus: str | os.PathLike[str],
    index_dir: str | os.PathLike[str],
    encoder: DenseEncoder,
    *,
    batch_size: int = 64,
    overwrite: bool = False,
    progress: bool = True,
) -> DenseIndexInfo:
    """Embed every document of ``corpus`` and write a flat faiss index to ``index_dir``."""
    import faiss

    corpus, index_dir = Path(corpus), Path(index_dir)
    if index_dir.exists() and not overwrite:
        raise DenseIndexError(f"{index_dir} already exists; pass --overwrite to rebuild it")
    check_replaceable(index_dir, marker=MANIFEST, own=lambda name: name in (VECTORS, DOCIDS), kind="dense index",
                      inputs=[corpus])
    docs = list(read_corpus(corpus))
    docids = [d.docid for d in docs]
    if len(set(docids)) != len(docids):
        raise DenseIndexError(f"{corpus}: duplicate document ids")
    if not docs:
        raise DenseIndexError(f"{corpus}: no documents")
    vectors = encoder.encode([document_text(d) for d in docs], batch_size=batch_size, progress=progress,
                             desc=f"embed {corpus.name}")
    index = faiss.IndexFlatIP(encoder.dim)
    index.add(vectors.numpy())
    with atomic_directory(index_dir) as tmp_dir:
        faiss.write_index(index, str(tmp_dir / VECTORS))
        (tmp_dir / DOCIDS).write_text("".join(d + "\n" for d in docids), encoding="utf-8")
        stat = corpus.stat()
        info = DenseIndexInfo(encoder.name, encoder.dim, len(docs), str(corpus.resolve()), stat.st_size, stat.st_mtime_ns)
        atomic_write_text(tmp_dir / MANIFEST, json.dumps(asdict(info), indent=2) + "\n")
    logger.info("embedded %d documents of %s into %s (%s, %d dimensions)", len(docs), corpus, index_dir, encoder.name, encoder.dim)
    return info


def read_dense_info(index_dir: str | os.PathLike[str]) -> DenseIndexInfo:
    """The manifest of a dense index folder, or a clear error."""
    path = Path(index_dir) / MANIFEST
    if not path.is_file():
        raise DenseIndexError(f"{index_dir} is not a dense index (no {MANIFEST}); build one with "
                              f"`routehead-pyserini index --dense --corpus CORPUS --index {index_dir}`")
    return DenseIndexInfo(**json.loads(path.read_text(encoding="utf-8")))


def dense_search(
    index_dir: str | os.PathLike[str],
    topics: Mapping[str, str],
    encoder: DenseEncoder,
    *,
    hits: int = 1000,
    batch_size: int = 64,
    progress: bool = True,
) -> Run:
    """The ``hits`` nearest documents (inner product) of every topic, topics in their given order."""
    import faiss

    info = read_dense_info(index_dir)
    if info.encoder != encoder.name or info.dim != encoder.dim:
        raise DenseIndexError(f"{index_dir} holds {info.encoder} vectors ({info.dim} dimensions); "
                              f"it cannot be searched with {encoder.name} ({encoder.dim} dimensions)")
    if hits < 1:
        raise DenseIndexError("hits must be at least 1")
    index = faiss.read_index(str(Path(index_dir) / VECTORS))
    docids = (Path(index_dir) / DOCIDS).read_text(encoding="utf-8").splitlines()
    qids = list(topics)
    queries = encoder.encode([topics[q] for q in qids], batch_size=batch_size, progress=progress, desc="queries")
    scores, rows = index.search(queries.numpy(), min(hits, index.ntotal))
    out: dict[str, list[Hit]] = {}
    for qid, values, found in zip(qids, scores.tolist(), rows.tolist()):
        ranked = sorted((-v, r) for v, r in zip(values, found) if r >= 0)  # ties: corpus order
        out[qid] = [Hit(docids[r], -v) for v, r in ranked]
    return Run(out)


def resolve_dense_index(name: str, encoder: DenseEncoder, data_dir=None, *, progress: bool = True) -> Path:
    """A dense index folder for ``name``: the folder itself, or for a registry name with a corpus,
    ``<cache>/dense-indexes/<name>-<encoder>`` (built on first use, rebuilt when the corpus changed)."""
    as_path = Path(name).expanduser()
    if as_path.is_dir():
        read_dense_info(as_path)
        return as_path
    entry = load_registry(data_dir).get(name)
    if entry is None or entry.corpus is None:
        raise DenseIndexError(f"dense index {name!r}: not a folder, and not a registered name with a corpus "
                              "(`routehead-pyserini datasets` lists them)")
    if not entry.corpus.exists():
        raise DenseIndexError(f"dense index {name!r}: its corpus {entry.corpus} is missing")
    folder = cache_dir() / "dense-indexes" / f"{name}-{encoder.name}"
    if folder.is_dir() and not index_is_stale(folder, entry.corpus, MANIFEST):
        return folder
    logger.info("building the dense index of %r from %s (first use)", name, entry.corpus)
    build_dense_index(entry.corpus, folder, encoder, overwrite=True, progress=progress)
    return folder
