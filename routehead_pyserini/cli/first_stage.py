"""First-stage commands: ``datasets`` (the registry), ``index`` and ``search`` (BM25 or dense)."""
from __future__ import annotations

from pathlib import Path

import click

from ..pipeline.stage_io import pipeline_io
from .app import POSITIVE, Context, main
from .types import NON_NEGATIVE, UNIT, WORD


@main.command()
@click.pass_obj
def datasets(obj: Context) -> None:
    """List registered names and where their corpus, index, topics, qrels and run live."""
    from ..data.registry import FIELDS, how_to_get, load_registry, user_registry_path

    click.echo(f"# data directory: {obj.data_dir}   user registry: {user_registry_path()}")
    for name, entry in sorted(load_registry(obj.data_dir).items()):
        click.echo(name)
        missing = False
        for field in FIELDS:
            value = getattr(entry, field)
            if value is not None:
                state = "" if value.exists() else "  (missing; built on first use)" if field == "index" else "  (missing)"
                missing = missing or (field != "index" and not value.exists())
                click.echo(f"  {field:7s} {value}{state}")
        if missing:
            click.echo(f"  to get it: {how_to_get(name, obj.data_dir)}")


# --------------------------------------------------------------------------------------------
@pipeline_io(inputs=("corpus",), outputs=("index",))
@main.command()
@click.option("--corpus", required=True, help="JSONL corpus (BEIR _id/title/text or Pyserini id/contents), or a registry name.")
@click.option("--index", "index_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Index folder to create.")
@click.option("--name", default=None, callback=lambda _c, _p, v: _check_name(v), help="Also register the index (and corpus) under this name in the user registry.")
@click.option("--threads", default=1, show_default=True, type=POSITIVE, help="Indexing threads.")
@click.option("--overwrite", is_flag=True, help="Replace an existing index folder.")
@click.option("--dense", is_flag=True, help="Build a dense index (all-MiniLM-L6-v2 vectors in faiss) for `search --dense` instead.")
@click.pass_obj
def index(obj: Context, corpus: str, index_dir: Path, name: str | None, threads: int, overwrite: bool, dense: bool) -> None:
    """Build a Lucene index (Porter stemming, positions, raw documents stored) from a JSONL corpus.

    With --dense, build a dense index instead: the packaged all-MiniLM-L6-v2 embedding of every
    document in an exact faiss inner-product index, for `search --dense`.
    """
    from ..firststage.index import build_index
    from ..data.registry import lookup, register

    corpus_path = lookup(corpus, "corpus", obj.data_dir)
    if dense:
        from ..firststage.dense import load_encoder
        from ..firststage.dense_index import build_dense_index

        if name:
            raise click.UsageError("--name registers Lucene indexes; `search --dense --index NAME` builds a registered corpus's dense index by itself")
        info = build_dense_index(corpus_path, index_dir, load_encoder(), overwrite=overwrite, progress=obj.progress)
        click.echo(f"embedded {info.num_docs} documents into {index_dir} ({info.encoder}, {info.dim} dimensions)")
        return
    info = build_index(corpus_path, index_dir, threads=threads, overwrite=overwrite, progress=obj.progress)
    click.echo(f"indexed {info.num_docs} documents into {index_dir}")
    if name:
        registry = register(name, corpus=corpus_path, index=index_dir)
        click.echo(f"registered {name!r} in {registry}")


# --------------------------------------------------------------------------------------------
@pipeline_io(inputs=("index", "topics"), outputs=("output",))
@main.command()
@click.option("--index", "index_name", required=True, help="Index folder, registry name, or Pyserini prebuilt index name.")
@click.option("--topics", default=None, help="Topics file (TSV, BEIR JSONL, TREC) or registry name [default: the --index name's topics].")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path), help="TREC run to write.")
@click.option("--hits", default=1000, show_default=True, type=POSITIVE, help="Documents per query.")
@click.option("--k1", default=0.9, show_default=True, type=NON_NEGATIVE, help="BM25 k1 (Pyserini's default; a finite number >= 0).")
@click.option("--b", default=0.4, show_default=True, type=UNIT, help="BM25 b (Pyserini's default; 0 to 1).")
@click.option("--threads", default=1, show_default=True, type=POSITIVE, help="Search threads.")
@click.option("--run-tag", default="bm25", show_default=True, type=WORD, help="Last column of the run (--dense: 'dense' unless given).")
@click.option("--dense", is_flag=True, help="Dense first stage (all-MiniLM-L6-v2 cosine, exact faiss search) instead of BM25.")
@click.pass_obj
def search(obj: Context, index_name: str, topics: str | None, output: Path, hits: int, k1: float, b: float, threads: int, run_tag: str, dense: bool) -> None:
    """BM25 search of every topic with Pyserini's LuceneSearcher; writes a TREC run atomically.

    With --dense, a dense first stage instead: the all-MiniLM-L6-v2 cosine over a faiss index
    (`index --dense`, or built on first use for a registered name).
    """
    from ..data.registry import lookup
    from ..firststage.index import resolve_index
    from ..data.trec import read_topics, write_run

    topic_map = read_topics(lookup(topics, "topics", obj.data_dir) if topics else _index_topics(obj, index_name))
    if dense:
        from ..firststage.dense import load_encoder
        from ..firststage.dense_index import dense_search, read_dense_info, resolve_dense_index

        if Path(index_name).expanduser().is_dir():
            read_dense_info(Path(index_name).expanduser())  # a folder that is no dense index fails before the encoder loads
        encoder = load_encoder()
        folder = resolve_dense_index(index_name, encoder, obj.data_dir, progress=obj.progress)
        run = dense_search(folder, topic_map, encoder, hits=hits, progress=obj.progress)
        write_run(run, output, tag="dense" if run_tag == "bm25" else run_tag)
        click.echo(f"wrote {run.num_hits()} hits for {len(run)} queries to {output}")
        return
    from ..firststage.search import bm25_search

    index_dir = resolve_index(index_name, obj.data_dir, progress=obj.progress)
    run = bm25_search(index_dir, topic_map, hits=hits, k1=k1, b=b, threads=threads, progress=obj.progress)
    write_run(run, output, tag=run_tag)
    click.echo(f"wrote {run.num_hits()} hits for {len(run)} queries to {output}")


def _check_name(name: str | None) -> str | None:
    """--name: a name that cannot be registered fails before the index is built."""
    from ..data.registry import name_problem

    problem = None if name is None else name_problem(name)
    if problem:
        raise click.BadParameter(f"{name!r} {problem}", param_hint="'--name'")
    return name


def _index_topics(obj: Context, index_name: str) -> Path:
    """The topics of a registered --index name; any other --index needs --topics (and a name that
    is nothing at all is reported as the index problem it is)."""
    from ..data.registry import load_registry, lookup
    from ..firststage.index import resolve_index

    entry = load_registry(obj.data_dir).get(index_name)
    if entry is None or entry.topics is None:
        if not Path(index_name).expanduser().exists():
            resolve_index(index_name, obj.data_dir, progress=obj.progress)  # raises IndexNotFoundError when unknown
        raise click.UsageError(f"--index {index_name} has no registered topics: give --topics")
    return lookup(index_name, "topics", obj.data_dir)
