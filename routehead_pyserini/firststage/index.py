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

from ..data.corpus import read_corpus
from ..files import atomic_directory, atomic_write_text, check_replaceable
from .jvm import JAVA_POOL_MAX, ensure_jvm, java_errors
from ..errors import UserError
import contextlib
import sys
from .. import config
from ..data.registry import how_to_get, load_registry

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
    check_replaceable(index_dir, marker=MANIFEST, own=is_lucene_file, kind="Lucene index", inputs=[corpus])
    if not 1 <= threads <= JAVA_POOL_MAX:
        raise IndexBuildError(f"{threads} indexing threads: Anserini's thread pool takes 1 to {JAVA_POOL_MAX}; lower --threads")
    ensure_jvm()
    from pyserini.index.lucene import LuceneIndexer

    count = empty = 0
    with java_errors(f"indexing {corpus} into {index_dir}", "check the corpus and --threads (--log-level DEBUG shows the Java trace)"), \
            atomic_directory(index_dir) as tmp_dir:
        indexer = LuceneIndexer(
            args=["-index", str(tmp_dir), "-storePositions", "-storeDocvectors", "-storeRaw"], threads=threads
        )
        batch: list[str] = []
        for doc in tqdm(read_corpus(corpus), desc=f"index {corpus.name}", unit="doc", disable=not progress):
            count += 1  # read_corpus refuses a duplicate or malformed document id, naming its lines
            empty += not doc.contents.strip()
            batch.append(json.dumps(doc.to_pyserini(), ensure_ascii=False))
            if len(batch) >= batch_size:
                indexer.add_batch_raw(batch)
                batch = []
        if batch:
            indexer.add_batch_raw(batch)
        indexer.close()
        stat = corpus.stat()
        info = IndexInfo(str(corpus.resolve()), stat.st_size, stat.st_mtime_ns, count, empty)
        atomic_write_text(tmp_dir / MANIFEST, json.dumps(asdict(info), indent=2) + "\n")
    if empty:
        logger.warning("%s: %d documents have no text (indexed as empty)", corpus, empty)
    logger.info("Indexed %d documents from %s into %s", info.num_docs, corpus, index_dir)
    return info


def is_lucene_file(name: str) -> bool:
    """A file name Lucene writes in an index folder (segments, per-segment files, the write lock)."""
    return name.startswith(("_", "segments")) or name in ("write.lock", "pending_segments")


class IndexNotFoundError(UserError, FileNotFoundError):
    """An ``--index`` value that is neither a folder, a registered name, nor a reachable prebuilt index."""


class NotALuceneIndexError(UserError, ValueError):
    """An ``--index`` folder that holds no Lucene index (empty, a dense index, something else)."""


def check_lucene_index(folder: Path) -> Path:
    """``folder`` when it holds a Lucene index (a ``segments_N`` file), else a clear error before
    Java opens it (Lucene's own ``IndexNotFoundException`` names no fix)."""
    from .dense_index import MANIFEST as DENSE_MANIFEST

    names = [p.name for p in folder.iterdir()]
    if any(n.startswith("segments_") for n in names):
        return folder
    if DENSE_MANIFEST in names:
        raise NotALuceneIndexError(f"{folder} is a dense (faiss) index, not a Lucene index: search it with `routehead-pyserini search "
                                   f"--dense --index {folder}`, or give a Lucene index (`routehead-pyserini index --corpus CORPUS --index FOLDER`)")
    empty = "; the folder is empty" if not names else ""
    target = f"{folder} --overwrite" if not names else "NEW-FOLDER"
    raise NotALuceneIndexError(f"{folder} is not a Lucene index (no segments file{empty}): build one with "
                               f"`routehead-pyserini index --corpus CORPUS --index {target}`")


def resolve_index(
    name: str, data_dir: str | os.PathLike[str] | None = None, *, build_missing: bool = True, progress: bool = True
) -> Path:
    """An index folder for ``name`` (see the module docstring for the order tried)."""
    as_path = Path(name).expanduser()
    if as_path.is_dir():
        return check_lucene_index(as_path)
    entry = load_registry(data_dir).get(name)
    if entry is not None and entry.index is not None:
        if entry.index.is_dir() and (entry.index / "routehead-index.json").exists():
            if entry.corpus is None or not index_is_stale(entry.index, entry.corpus):
                return entry.index
        if entry.corpus is not None and entry.corpus.exists() and build_missing:
            logger.info("Building index %r from %s (first use)", name, entry.corpus)
            build_index(entry.corpus, entry.index, overwrite=True, progress=progress)
            return entry.index
        if entry.index.is_dir():
            return check_lucene_index(entry.index)
        raise IndexNotFoundError(
            f"Index {name!r} is registered at {entry.index}, which does not exist, and its corpus "
            f"{entry.corpus} is missing (data directory: {config.data_dir(data_dir)}): {how_to_get(name, data_dir)}."
        )
    return _prebuilt_index(name)


def _prebuilt_index(name: str) -> Path:
    """Pyserini's prebuilt index ``name`` (downloaded to Pyserini's cache), or a clear error."""
    hint = (
        f"Build one from a JSONL corpus and register the name (`routehead-pyserini index --corpus corpus.jsonl "
        f"--index indexes/{name} --name {name}`), or pass an index folder to --index; "
        f"`routehead-pyserini datasets` lists the registered names."
    )
    if Path(name).expanduser().exists():
        raise IndexNotFoundError(f"{name} is a file, not an index folder: give --index the folder that `routehead-pyserini index "
                                 f"--corpus CORPUS --index FOLDER` built, or a registered name (`routehead-pyserini datasets` lists them)")
    if "/" in name or os.sep in name:
        raise IndexNotFoundError(f"Index folder {name} does not exist: build it with `routehead-pyserini index --corpus "
                                 f"corpus.jsonl --index {name}`, or give a registered name (`routehead-pyserini datasets` lists them).")

    ensure_jvm()
    from pyserini.prebuilt_index_info import TF_INDEX_INFO
    from pyserini.util import download_prebuilt_index

    if name not in TF_INDEX_INFO:
        raise IndexNotFoundError(f"{name!r} is not an index folder, a registered name, or a Pyserini prebuilt Lucene index. {hint}")
    # Pyserini prints its download attempts; they go to stdout, so keep them off it.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            return Path(download_prebuilt_index(name, verbose=False))
        except Exception as exc:  # offline: every mirror fails and Pyserini raises (ValueError, URLError...)
            raise IndexNotFoundError(
                f"{name!r} is a Pyserini prebuilt index, but it could not be downloaded (offline?): {str(exc).rstrip('.')}. {hint}"
            ) from exc
