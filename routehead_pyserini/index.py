"""Build a Lucene index with Pyserini from a JSONL corpus, storing raw documents for text lookup.

The index is Anserini's default for ``JsonCollection`` (English analyzer, Porter stemming, stop
words removed), with positions, document vectors and the raw JSON stored, the same as
``python -m pyserini.index.lucene --collection JsonCollection --storePositions --storeDocvectors
--storeRaw``. It is built in a temporary folder beside the target and renamed into place, so an
interrupted build never leaves a half index behind; ``routehead-index.json`` in the folder records
the corpus it came from, which tells when it is stale.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from .corpus import read_corpus
from .files import atomic_directory, atomic_write_text
from .jvm import ensure_jvm
from .errors import UserError

logger = logging.getLogger(__name__)

MANIFEST = "routehead-index.json"


class IndexBuildError(UserError, RuntimeError):
    """The corpus could not be indexed (duplicate ids, an existing target, ...)."""


@dataclass(frozen=True)
class IndexInfo:
    """What an index was built from (stored as ``routehead-index.json`` in the index folder)."""

    corpus: str
    corpus_bytes: int
    corpus_mtime_ns: int
    num_docs: int
    empty_docs: int


def index_is_stale(index_dir: Path, corpus: Path, manifest_name: str = MANIFEST) -> bool:
    """True when the index was built from another version of ``corpus`` (or has no manifest).

    ``manifest_name``: the manifest file recording ``corpus_bytes`` and ``corpus_mtime_ns`` (the
    Lucene index's, or the dense index's: :data:`.dense_index.MANIFEST`)."""
    manifest = index_dir / manifest_name
    if not manifest.exists() or not corpus.exists():
        return not manifest.exists()
    info = json.loads(manifest.read_text(encoding="utf-8"))
    stat = corpus.stat()
    return info.get("corpus_bytes") != stat.st_size or info.get("corpus_mtime_ns") != stat.st_mtime_ns


def build_index(
    corpus: str | os.PathLike[str],
    index_dir: str | os.PathLike[str],
    *,
    threads: int = 1,
    overwrite: bool = False,
    batch_size: int = 2000,
    progress: bool = True,
) -> IndexInfo:
    """Index ``corpus`` into ``index_dir`` (see the module docstring)."""
    corpus, index_dir = Path(corpus), Path(index_dir)
    if index_dir.exists() and not overwrite:
        raise IndexBuildError(f"{index_dir} already exists; pass --overwrite to rebuild it")
    ensure_jvm()
    from pyserini.index.lucene import LuceneIndexer

    seen: set[str] = set()
    empty = 0
    with atomic_directory(index_dir) as tmp_dir:
        indexer = LuceneIndexer(
            args=["-index", str(tmp_dir), "-storePositions", "-storeDocvectors", "-storeRaw"], threads=threads
        )
        batch: list[str] = []
        for doc in tqdm(read_corpus(corpus), desc=f"index {corpus.name}", unit="doc", disable=not progress):
            if doc.docid in seen:
                raise IndexBuildError(f"{corpus}: duplicate document id {doc.docid!r}")
            seen.add(doc.docid)
            empty += not doc.contents.strip()
            batch.append(json.dumps(doc.to_pyserini(), ensure_ascii=False))
            if len(batch) >= batch_size:
                indexer.add_batch_raw(batch)
                batch = []
        if batch:
            indexer.add_batch_raw(batch)
        indexer.close()
        stat = corpus.stat()
        info = IndexInfo(str(corpus.resolve()), stat.st_size, stat.st_mtime_ns, len(seen), empty)
        atomic_write_text(tmp_dir / MANIFEST, json.dumps(asdict(info), indent=2) + "\n")
    if empty:
        logger.warning("%s: %d documents have no text (indexed as empty)", corpus, empty)
    logger.info("Indexed %d documents from %s into %s", info.num_docs, corpus, index_dir)
    return info
