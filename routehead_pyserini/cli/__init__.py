"""The ``routehead-pyserini`` command line.

Every subcommand reads and writes standard formats (JSONL corpora, TREC runs, qrels, topics) and
takes registry names (``routehead-pyserini datasets``) wherever it takes such a file. Heavy
libraries (Pyserini, torch) are imported inside the commands, so ``--help`` is instant.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from .. import __version__, config

logger = logging.getLogger("routehead_pyserini")

POSITIVE = click.IntRange(min=1)  # counts: --top-k, --hits, --threads, --epochs...
FOLDS = click.IntRange(min=2)  # cross-validation needs a held-out fold
FRACTION = click.FloatRange(0, 1, max_open=True)  # [0, 1)
MEASURE_HELP = "Measure, repeatable: nDCG@10, MAP@100, R@100, MRR@10, P@10, MAP, nDCG."


@dataclass
class Context:
    data_dir: Path
    quiet: bool
    threads: int | None = None  # torch threads of the scoring commands (None: torch's default)

    def apply_threads(self) -> None:
        """Set torch's thread count (``--threads``); called by the commands that run a model."""
        if self.threads is not None:
            import torch

            torch.set_num_threads(self.threads)

    @property
    def progress(self) -> bool:
        return not self.quiet


def _setup_logging(level: str, quiet: bool, log_file: str | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    logging.basicConfig(
        level=logging.WARNING if quiet and level == "INFO" else getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader logs every fallback at INFO
    if quiet or level != "DEBUG":
        import os

        # transformers' "Loading weights" / "Writing model shards" bars (read when it is imported)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _sigterm_as_interrupt(ctx: click.Context) -> None:
    """SIGTERM ends a command the way Ctrl-C does: KeyboardInterrupt, temporary files removed,
    earlier outputs intact (the JVM is started with -Xrs so it leaves the signal to Python)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum, _frame):
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    ctx.call_on_close(lambda: signal.signal(signal.SIGTERM, previous))


class FriendlyGroup(click.Group):
    """Turn the package's expected errors into one clear line and exit status 2, not a traceback."""

    def invoke(self, ctx: click.Context):
        from ..errors import UserError

        try:
            return super().invoke(ctx)
        except UserError as exc:
            logger.debug("failed", exc_info=True)
            raise click.ClickException(str(exc)) from exc
        except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
            logger.debug("failed", exc_info=True)  # a path the user gave (or a folder they cannot write)
            raise click.ClickException(f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)) from exc


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="routehead-pyserini")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Benchmark data directory used by registry names [{config.DATA_DIR_HELP}].",
)
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), default="INFO", show_default=True, help="Logging verbosity (stderr).")
@click.option("--log-file", type=click.Path(dir_okay=False), default=None, help="Also write the log to this file.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars; warnings and errors only.")
@click.option("--threads", type=click.IntRange(min=1), default=None, envvar="ROUTEHEAD_THREADS",
              help="Torch threads for model work [env ROUTEHEAD_THREADS; default: torch's, one per core]. Running "
                   "several jobs on one machine, give each cores/jobs threads: oversubscribed threads made one query 20x slower.")
@click.pass_context
def main(ctx: click.Context, data_dir: Path | None, log_level: str, log_file: str | None, quiet: bool, threads: int | None) -> None:
    """Re-rank Pyserini BM25 runs with routed attention heads of a frozen LLM.

    \b
    First stage:  index, search
    Second stage: rerank, analyze-heads
    RouteHead:    label, train, rerank --router; train-soft-router (per-query head weights)
    Baselines:    train-weights (learned head weights, --fuse with BM25, --fuse-dense), rerank --method dense
    Evaluation:   evaluate, random-order (control)
    Registry:     datasets (names usable for --index/--topics/--qrels/--run)
    Demo:         demo (index + BM25 + evaluation on the embedded collection)
    Pipelines:    pipeline run FILE.yaml (stages of these commands); heads (head sets, routing)
    """
    _setup_logging(log_level, quiet, log_file)
    _sigterm_as_interrupt(ctx)
    ctx.obj = Context(data_dir=config.data_dir(data_dir), quiet=quiet, threads=threads)


# --------------------------------------------------------------------------------------------
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
@main.command()
@click.option("--corpus", required=True, help="JSONL corpus (BEIR _id/title/text or Pyserini id/contents), or a registry name.")
@click.option("--index", "index_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Index folder to create.")
@click.option("--name", default=None, help="Also register the index (and corpus) under this name in the user registry.")
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
@main.command()
@click.option("--index", "index_name", required=True, help="Index folder, registry name, or Pyserini prebuilt index name.")
@click.option("--topics", default=None, help="Topics file (TSV, BEIR JSONL, TREC) or registry name [default: the --index name's topics].")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path), help="TREC run to write.")
@click.option("--hits", default=1000, show_default=True, type=POSITIVE, help="Documents per query.")
@click.option("--k1", default=0.9, show_default=True, help="BM25 k1 (Pyserini's default).")
@click.option("--b", default=0.4, show_default=True, help="BM25 b (Pyserini's default).")
@click.option("--threads", default=1, show_default=True, type=POSITIVE, help="Search threads.")
@click.option("--run-tag", default="bm25", show_default=True, help="Last column of the run (--dense: 'dense' unless given).")
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
        from ..firststage.dense_index import dense_search, resolve_dense_index

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


# --------------------------------------------------------------------------------------------
@main.command()
@click.argument("runs", nargs=-1, required=True)
@click.option("--qrels", required=True, help="Qrels file (TREC or BEIR TSV) or registry name.")
@click.option("--baseline", "-b", default=None, help="Run to compare against (a path or one of RUNS; default: the first run).")
@click.option("--measure", "-m", "measures", multiple=True, help=MEASURE_HELP + "  [default: nDCG@10 MAP@100 R@100 MRR@10]")
@click.option("-l", "--relevance-level", default=1, show_default=True, help="Smallest grade counted relevant by binary measures (trec_eval -l).")
@click.option("-c", "--complete", is_flag=True, help="Score judged queries missing from a run as 0 (trec_eval -c).")
@click.option("--test", type=click.Choice(["t-test", "randomization"]), default="t-test", show_default=True, help="Paired significance test.")
@click.option("--top-k", default=None, type=POSITIVE, help="Evaluate only the first K hits of each run.")
@click.option("--common-queries", is_flag=True, help="Evaluate every run on the queries all runs have (e.g. a sampled re-ranking against a full first-stage run).")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text", show_default=True, help="Report format; json includes per-query values.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the report here (atomically) instead of stdout.")
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="Also write report.md, report.json and PNG figures (means with confidence intervals, per-query deltas, heads) into this folder.")
@click.option("--router", "router_path", default=None, type=click.Path(exists=True, dir_okay=False), help="--report-dir: route the evaluated queries with this router file and plot how often it picks each head.")
@click.option("--heads", "heads_path", default=None, type=click.Path(exists=True, dir_okay=False), help="--report-dir: a static head-set file to mark on the heads figure.")
@click.option("--topics", default=None, help="--router: the queries' text (file or registry name) [default: the --qrels name's topics].")
@click.option("--title", default=None, help="--report-dir: the report's title [default: the qrels and the number of runs].")
@click.pass_obj
def evaluate(obj: Context, runs: tuple[str, ...], qrels: str, baseline: str | None, measures: tuple[str, ...], relevance_level: int, complete: bool, test: str, top_k: int | None, common_queries: bool, fmt: str, output: Path | None,
             report_dir: Path | None, router_path: str | None, heads_path: str | None, topics: str | None, title: str | None) -> None:
    """Evaluate TREC runs with trec_eval measures (pytrec_eval) against a baseline run.

    Prints per-run means, per-query wins/ties/losses against the baseline and a paired
    significance test. Run names in the table are the file names without extension. With
    --report-dir, the same numbers also go to report.md / report.json with figures; --router adds
    a layer x head map of the heads it picks for the evaluated queries (the LLM it names is loaded).
    """
    from ..eval.evaluate import DEFAULT_MEASURES, build_report, evaluate_run, parse_measure
    from ..files import atomic_write_text
    from ..data.registry import lookup
    from ..data.trec import read_qrels, read_run

    if (router_path or heads_path or topics or title) and not report_dir:
        raise click.UsageError("--router, --heads, --topics and --title belong to --report-dir")
    parsed = [parse_measure(m) for m in (measures or DEFAULT_MEASURES)]
    judgements = read_qrels(lookup(qrels, "qrels", obj.data_dir))
    paths = [lookup(r, "run", obj.data_dir) for r in runs]
    if baseline is not None and baseline not in runs:
        paths.insert(0, lookup(baseline, "run", obj.data_dir))
        runs = (baseline, *runs)
    names = _run_names(runs, paths)
    loaded = [read_run(path) for path in paths]
    if common_queries:
        shared = set.intersection(*(set(r.qids()) for r in loaded))
        loaded = [type(r)({q: h for q, h in r.hits.items() if q in shared}) for r in loaded]
    evaluations = []
    for name, path, run in zip(names, paths, loaded):
        if top_k:
            run = run.top(top_k)
        evaluations.append(evaluate_run(run, judgements, parsed, relevance_level=relevance_level, complete=complete, run_name=name))
        if not evaluations[-1].per_query:
            from ..eval.evaluate import NoOverlapError

            raise NoOverlapError(f"{path}: none of its {len(run)} queries (e.g. {', '.join(run.qids()[:3])}) is judged in --qrels {qrels} "
                                 f"(e.g. {', '.join(list(judgements)[:3])}); every measure would be undefined")
    base_name = names[runs.index(baseline)] if baseline is not None else names[0]
    report = build_report(evaluations, base_name if len(evaluations) > 1 else None, test=test)
    text = report.render(fmt)
    if output:
        atomic_write_text(output, text)
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)
    if report_dir:
        _write_report_dir(obj, report, report_dir, qrels=qrels, relevance_level=relevance_level, router_path=router_path,
                          heads_path=heads_path, topics=topics, title=title or f"Evaluation on {qrels}: {len(evaluations)} runs",
                          extra={"complete": complete, "top_k": top_k, "common_queries": common_queries})
        click.echo(f"wrote report.md, report.json and figures to {report_dir}")


def _write_report_dir(obj: Context, report, report_dir: Path, *, qrels: str, relevance_level: int, router_path: str | None,
                      heads_path: str | None, topics: str | None, title: str, extra: dict) -> None:
    from ..heads.head_set import read_head_set
    from ..data.registry import lookup
    from ..eval.report import ReportSettings, write_report

    routing = None
    if router_path:
        from ..eval.routing_stats import route_topics
        from ..data.trec import read_topics

        qids = sorted(set().union(*(e.per_query for e in report.evaluations)))
        routing = route_topics(router_path, read_topics(lookup(topics or qrels, "topics", obj.data_dir)), qids, progress=obj.progress)
    static = read_head_set(heads_path) if heads_path else None
    write_report(report, report_dir, ReportSettings(title, qrels, relevance_level, extra), routing=routing, static=static,
                 static_path=heads_path)


def _run_names(given: tuple[str, ...], paths: list[Path]) -> list[str]:
    """Short unique names: file stems, or the given strings where stems collide."""
    stems = [p.name[: -len(".trec")] if p.name.endswith(".trec") else p.stem for p in paths]
    return stems if len(set(stems)) == len(stems) else list(given)


# --------------------------------------------------------------------------------------------
# Options shared by every command that scores candidates with attention heads

_SCORING_OPTIONS = [
    click.option("--run", "run_name", default=None, help="First-stage TREC run (a path or a registry name with a run).  [required]"),
    click.option("--index", "index_name", default=None, help="Index folder or registry name to fetch document text from (stored raw)."),
    click.option("--corpus", default=None, help="JSONL corpus to fetch document text from, instead of --index."),
    click.option("--candidates", default=None, type=click.Path(exists=True, dir_okay=False), help="JSONL with qid, query, docid, text per line (e.g. DL19's bm25_top100.jsonl): text and queries in one file."),
    click.option("--topics", default=None, help="Topics (file or registry name) [default: the --index name's topics, or the queries in --candidates]."),
    click.option("--model", default="smollm2-135m", show_default=True, help="smollm2-135m, gemma3-270m, a Hugging Face name, a local folder or a .gguf file."),
    click.option("--top-k", default=None, type=click.IntRange(min=1), help="Score the first K candidates; the rest keep their order below [default: the trained file's, else 20]."),
    click.option("--order", type=click.Choice(["bm25", "reversed", "both"]), default=None, help="Listwise prompt order: first-stage rank 1 first (ICR), last (nearest the query), or both: the calibrated scores of the two orders summed (reuses each order's cache) [default: the trained file's, else bm25]."),
    click.option("--mode", type=click.Choice(["listwise", "pointwise"]), default=None, help="listwise: all candidates in one prompt (ICR); pointwise: one prompt per candidate (that passage, then the query), window size 1 [default: the trained file's, else listwise]."),
    click.option("--attention-norm", type=click.Choice(["raw", "no-sink"]), default=None, help="Attention mass of the query rows on a passage: raw, or among all keys but the prompt's first token (the attention sink) [default: the trained file's, else raw]."),
    click.option("--batch-size", default=None, type=click.IntRange(min=1), help="--mode pointwise: candidates of one query per forward pass, padded (same scores; 4-8 is fastest on a CPU) [default: 5 pointwise; listwise prompts are scored one at a time]."),
    click.option("--doc-max-tokens", default=None, type=click.IntRange(min=0), help="Truncate each document to this many tokens (counted; 0: no limit) [default: the trained file's, else 256]."),
    click.option("--max-context", default=None, type=POSITIVE, help="Token budget of one prompt; longer lists are split into windows [default: the model's context]."),
    click.option("--device", default="cpu", show_default=True, help="torch device: cpu, cuda, cuda:1..."),
    click.option("--dtype", default="float32", show_default=True, help="float32 (CPU), bfloat16 or float16 (GPU)."),
    click.option("--cache-dir", default=None, type=click.Path(file_okay=False), help="Score cache folder [default: <cache dir>/scores]."),
    click.option("--on-missing", type=click.Choice(["error", "skip"]), default="error", show_default=True, help="A candidate without text: fail, or keep it unscored below the scored ones (counted)."),
    click.option("--sample", default=None, type=POSITIVE, help="Only a fixed random sample of this many queries (chosen by --seed and qid alone)."),
    click.option("--seed", default=0, show_default=True, help="Seed of --sample."),
    click.option("--sample-offset", default=0, show_default=True, type=click.IntRange(min=0), help="Skip the first N queries of the --sample order: --sample 100 --sample-offset 200 is disjoint from --sample 200 (a validation split)."),
    click.option("--workers", default=None, type=click.IntRange(min=1), help="Score on N Ray workers, each loading the model once (needs the ray extra: pip install 'routehead-pyserini[ray]'); the run written is identical to one process's [default: score in this process]."),
    click.option("--ray-address", default=None, help="--workers: join this Ray cluster ('auto': the one `ray start` runs on this machine, or HOST:PORT) [default: start a local Ray for this command]."),
    click.option("--worker-cpus", default=1.0, show_default=True, type=click.FloatRange(min=0, min_open=True), help="--workers: CPUs Ray reserves per worker; torch runs that many threads."),
    click.option("--worker-gpus", default=0.0, show_default=True, type=click.FloatRange(min=0), help="--workers: GPUs Ray reserves per worker (with --device cuda)."),
    click.option("--worker-batch", default=2, show_default=True, type=click.IntRange(min=1), help="--workers: queries per task sent to a worker (a dead worker's task is retried on another)."),
]


def _check_heads(value: str) -> str:
    """--heads: parse it now, so a bad list or a damaged head-set file fails before the model loads."""
    from ..heads.head_set import parse_heads

    parse_heads(value)  # a HeadSetError names the file
    return value


def _check_router(value: str | None) -> str | None:
    """--router: a file that cannot be a router file fails before the model loads."""
    if value is not None:
        from ..heads.checkpoint import sniff_router_file

        with open(value, "rb") as handle:
            sniff_router_file(value, handle.read(64))
    return value


def _describe_scoring(description: dict) -> str:
    """The re-ranker's settings as one log line: ``model (fingerprint), heads, key=value ...``."""
    settings = " ".join(f"{k.replace('_', '-')}={v}" for k, v in description.get("settings", {}).items() if v is not None)
    return (f"{description.get('model')} ({description.get('fingerprint')}); heads: {description.get('heads')}; "
            f"{settings}; max-context={description.get('max_context')}")


def scoring_options(command):
    for option in reversed(_SCORING_OPTIONS):
        command = option(command)
    return command


@dataclass
class ScoringJob:
    """What the scoring options resolve to: a re-ranker and its inputs."""

    reranker: object
    run: object
    topics: dict
    texts: object
    top_k: int
    on_missing: str


def _candidate_run(obj: Context, opts: dict):
    """The first-stage run of the scoring options, or its fixed --sample (after --sample-offset)."""
    from ..firststage.sources import candidate_run

    if not opts.get("run_name"):
        raise click.UsageError("Missing option '--run' (the first-stage run to re-rank).")
    return candidate_run(opts["run_name"], obj.data_dir, sample=opts["sample"], seed=opts["seed"], offset=opts["sample_offset"])


def _scoring_job(obj: Context, opts: dict, heads="all", cache: bool = True, router: str | None = None, *,
                 recorded: dict | None = None, origin: str = "", defaults: dict | None = None) -> ScoringJob:
    """The re-ranker and inputs of the scoring options. ``recorded``: the prompt settings of the
    trained file in use (``origin`` names it): they replace the defaults, and a conflicting explicit
    option is an error."""
    from ..rerank.reranker import Reranker

    obj.apply_threads()

    sources = [opts[k] for k in ("index_name", "corpus", "candidates") if opts[k]]
    if len(sources) != 1:
        raise click.UsageError("give exactly one of --index, --corpus, --candidates for document text")
    if opts.get("ray_address") and not opts.get("workers"):
        raise click.UsageError("--ray-address needs --workers")
    if opts.get("workers"):
        from ..rerank.distributed import require_ray

        require_ray()  # before any slow step: without Ray, say so at once
    model_name = opts["model"]
    run = _candidate_run(obj, opts)
    texts, topic_map = _text_source(obj, opts["index_name"], opts["corpus"], opts["candidates"], opts["topics"])
    settings, top_k = _prompt_settings(opts, recorded, origin, defaults)
    opts = {**opts, "top_k": top_k}
    trained = None
    if router:
        from ..engine.models import load_model
        from ..heads.loading import load_any_router

        loaded = load_model(opts["model"], device=opts["device"], dtype=opts["dtype"])
        trained = load_any_router(router, model=loaded)  # a learned or a kNN router, by the file's kind
        opts = {**opts, "model": loaded}
    cache_arg = (opts["cache_dir"] or True) if cache else False
    if opts.get("workers"):
        reranker = _distributed_reranker(opts, model_name, heads, settings, cache_arg, trained)
    else:
        reranker = Reranker(opts["model"], heads, settings=settings, device=opts["device"], dtype=opts["dtype"], batch_size=_batch_size(opts, settings),
                            cache=cache_arg, router=trained)
    logger.info("scoring with %s", _describe_scoring(reranker.describe()))
    return ScoringJob(reranker, run, topic_map, texts, opts["top_k"], opts["on_missing"])


def _prompt_settings(opts: dict, recorded: dict | None = None, origin: str = "", defaults: dict | None = None):
    """``(PromptSettings, top_k)`` of the scoring options: an explicit option, else the trained file's
    ``recorded`` setting (a conflict is an error naming both), else ``defaults``, else the package's."""
    from ..rerank.settings import PromptSettings, merge_settings

    values = merge_settings({k: opts.get(k) for k in ("mode", "order", "doc_max_tokens", "attention_norm", "top_k")},
                            recorded or {}, origin, defaults or {})
    if values["mode"] == "pointwise" and values["order"] != "bm25":
        raise click.UsageError("--order applies to --mode listwise (a pointwise prompt holds one passage)")
    settings = PromptSettings(doc_max_tokens=values["doc_max_tokens"] or None, max_context=opts["max_context"], order=values["order"],
                              mode=values["mode"], attention_norm=values["attention_norm"])
    return settings, values["top_k"]


def _batch_size(opts: dict, settings) -> int:
    """--batch-size, else 5 pointwise prompts per forward (fastest measured on 2 cores), else 1."""
    return opts.get("batch_size") or (5 if settings.mode == "pointwise" else 1)


def _distributed_reranker(opts: dict, model_name: str, heads: str, settings, cache, router):
    """``--workers``: a re-ranker whose model runs on Ray workers; they stop when the command ends."""
    from ..rerank.distributed import DistributedReranker, WorkerConfig, WorkerPool

    config = WorkerConfig(model_name, settings, device=opts["device"], dtype=opts["dtype"], batch_size=_batch_size(opts, settings),
                          cpus=opts["worker_cpus"], gpus=opts["worker_gpus"])
    pool = WorkerPool(config, opts["workers"], address=opts["ray_address"], queries_per_task=opts["worker_batch"])
    click.get_current_context().call_on_close(pool.close)
    driver_model = opts["model"] if router is not None else None  # routing embeds queries in this process
    return DistributedReranker(pool, heads, settings=settings, cache=cache, router=router, model=driver_model)


# --------------------------------------------------------------------------------------------
@main.command()
@scoring_options
@click.option("--preset", default=None, help="A trained configuration shipped in the package, by name (`routehead-pyserini presets` lists them with their scores) [default: the best one for --model].")
@click.option("--heads", default=None, callback=lambda _c, _p, v: None if v is None else _check_heads(v), help="'all' (ICR), 'layer.head' pairs like '14.3,15.0', or a head-set file (e.g. from train-weights); its recorded prompt settings are used.")
@click.option("--router", "router_path", default=None, type=click.Path(exists=True, dir_okay=False), callback=lambda _c, _p, v: _check_router(v), help="A router file (routehead-pyserini train, learned or --knn; train-soft-router): each query gets its own head set.")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Re-ranked TREC run to write (atomically).")
@click.option("--no-cache", is_flag=True, help="Do not read or write the per-head score cache (no resume).")
@click.option("--run-tag", default=None, help="Last column of the run [default: routehead-<model>].")
@click.option("--method", type=click.Choice(["auto", "icr", "heads", "dense"]), default="auto", show_default=True,
              help="auto: --preset, --heads or --router when given, else the best preset for --model (else ICR with the reversed order); "
                   "icr: the paper's In-Context Re-ranking (listwise prompt, all heads); heads: --heads/--router; "
                   "dense: cosine of --dense-model embeddings (no LLM; the prompt options do not apply).")
@click.option("--dense-model", default="all-minilm-l6-v2", show_default=True, help="--method dense: 'all-minilm-l6-v2' (the copy packaged on PyPI) or a local sentence-transformers folder (mean pooling).")
@click.option("--dense-batch-size", default=32, show_default=True, type=click.IntRange(min=1), help="--method dense: texts per encoder batch.")
@click.pass_obj
def rerank(obj: Context, preset: str | None, heads: str | None, router_path: str | None, output: Path, no_cache: bool, run_tag: str | None, method: str, dense_model: str, dense_batch_size: int, **opts) -> None:
    """Re-rank a first-stage run with attention heads of a frozen LLM and write a TREC run.

    \b
    With no method option, the best trained preset shipped for --model is used: pointwise prompts
    (one per candidate), a learned weight per attention head, fused with the first-stage score
    (and, for some presets, the packaged bi-encoder's cosine). Presets were trained on the
    development collections and chosen by leave-one-collection-out evaluation (docs/results.md).
    A model without a preset falls back to ICR with the reversed order, and says so.

    \b
    The paper's modes stay one option away:
      --method icr        In-Context Re-ranking: all candidates and the query in one prompt, each
                          candidate scored by the attention its tokens get from the query tokens
                          minus the attention from the content-free query "N/A", summed over
                          every head (listwise, first-stage order unless --order is given);
      --heads FILE|L.H    a fixed head set or learned weights (train-weights), QRHead-style;
      --router FILE       RouteHead: each query gets its own heads (train, train-soft-router).

    Per-head scores are cached, so a rerun (or other heads) costs no model time and an interrupted
    job resumes where it stopped. A trained file fixes the prompt settings it was trained with:
    an explicit conflicting option is an error. --method dense is the bi-encoder baseline:
    candidates sorted by the cosine of their all-MiniLM-L6-v2 embedding to the query's.
    """
    from ..data.trec import write_run

    if method == "dense":
        if heads or router_path or preset:
            raise click.UsageError("--heads, --router and --preset belong to --method heads (or auto: attention heads), not --method dense")
        if opts.get("workers"):
            raise click.UsageError("--workers belongs to --method heads (the dense encoder runs in this process)")
        _dense_rerank(obj, opts, dense_model, dense_batch_size, output, run_tag)
        return
    choice = _method_choice(method, preset, heads, router_path, opts)
    from ..heads.head_set import HeadSet
    from ..rerank.reranker import needs_model

    if isinstance(choice.head_set, HeadSet) and not needs_model(choice.head_set):
        _rerank_fusion_only(obj, opts, choice, output, run_tag, no_cache)
        return
    job = _scoring_job(obj, opts, choice.head_set, cache=not no_cache, router=router_path, recorded=choice.recorded,
                       origin=choice.origin, defaults=choice.defaults)
    reranked, stats = job.reranker.rerank_run(job.run, job.topics, job.texts, top_k=job.top_k, on_missing=job.on_missing, progress=obj.progress)
    write_run(reranked, output, tag=run_tag or f"routehead-{Path(str(opts['model'])).name}")
    click.echo(f"wrote {output}: {stats.summary()}")


@dataclass
class MethodChoice:
    """What ``rerank`` scores with: a head set (or "all" for a router), the prompt settings it was
    trained with (enforced), where they come from, and defaults for the settings it leaves open."""

    head_set: object
    recorded: dict
    origin: str
    defaults: dict


def _rerank_fusion_only(obj: Context, opts: dict, choice: "MethodChoice", output: Path, run_tag: str | None, no_cache: bool) -> None:
    """A head set whose every head weight is 0: the fused first stage (and bi-encoder) alone, no LLM."""
    from ..rerank.reranker import rerank_fusion_only
    from ..data.trec import write_run

    _, top_k = _prompt_settings(opts, choice.recorded, choice.origin, choice.defaults)
    run = _candidate_run(obj, opts)
    texts, topics = _text_source(obj, opts["index_name"], opts["corpus"], opts["candidates"], opts["topics"])
    logger.info("%s weights no head: fused first stage%s only, no LLM loaded", choice.origin,
                " and bi-encoder" if choice.head_set.extra.get("fuse_dense") else "")
    reranked, stats = rerank_fusion_only(choice.head_set, run, topics, texts, top_k=top_k, on_missing=opts["on_missing"],
                                         progress=obj.progress, cache_root=opts["cache_dir"], use_cache=not no_cache)
    write_run(reranked, output, tag=run_tag or "fusion")
    click.echo(f"wrote {output}: {stats.queries} queries, {stats.reranked_docs} documents re-ranked by fusion alone (no LLM)")


def _method_choice(method: str, preset: str | None, heads: str | None, router_path: str | None, opts: dict) -> MethodChoice:
    """The head set of ``rerank``'s method options (see its help)."""
    from ..heads.head_set import HeadSet, parse_heads
    from ..heads.presets import default_preset, get_preset
    from ..rerank.reranker import recorded_settings

    given = [name for name, value in (("--preset", preset), ("--heads", heads), ("--router", router_path)) if value]
    if len(given) > 1:
        raise click.UsageError(f"give one of --preset, --heads, --router (got {', '.join(given)})")
    model = str(opts["model"])
    if method == "icr":
        if given:
            raise click.UsageError(f"--method icr uses every head; {given[0]} belongs to --method auto/heads")
        return MethodChoice(HeadSet(), {}, "ICR", {})
    if preset:
        chosen = get_preset(preset, model)
        logger.info("preset %s", chosen.summary())
        return MethodChoice(chosen.head_set, chosen.prompt_settings, f"preset {chosen.model}/{chosen.name}", {})
    if router_path:
        return MethodChoice("all", {}, f"router {router_path}", {})
    if heads:
        head_set = parse_heads(heads)  # a malformed file fails here, before the model loads
        origin = f"head-set file {heads}" if Path(heads).is_file() else "--heads"
        return MethodChoice(head_set, recorded_settings(head_set), origin, {})
    if method == "heads":
        raise click.UsageError("--method heads needs --heads or --router")
    chosen = default_preset(model)
    if chosen is not None:
        logger.info("no method option: using the best preset for %s (%s); --method icr for the paper's ICR", model, chosen.summary())
        return MethodChoice(chosen.head_set, chosen.prompt_settings, f"preset {chosen.model}/{chosen.name}", {})
    logger.warning("no trained preset exists for model %r: falling back to ICR with the reversed order (listwise, all heads); "
                   "train weights on your judged queries with `routehead-pyserini train-weights --model %s --mode pointwise "
                   "--fuse --qrels Q --run R --index I -o heads.json` (or --collections FILE) and pass --heads heads.json",
                   model, model)
    return MethodChoice(HeadSet(), {}, f"the fallback for model {model}", {"order": "reversed"})


def _dense_rerank(obj: Context, opts: dict, dense_model: str, batch_size: int, output: Path, run_tag: str | None) -> None:
    """``rerank --method dense``: the same run, sample and text source as the head re-ranker, no LLM."""
    from ..firststage.dense import dense_rerank, load_encoder
    from ..rerank.reranker import DEFAULT_TOP_K
    from ..data.trec import write_run

    if len([k for k in ("index_name", "corpus", "candidates") if opts[k]]) != 1:
        raise click.UsageError("give exactly one of --index, --corpus, --candidates for document text")
    run = _candidate_run(obj, opts)
    texts, topic_map = _text_source(obj, opts["index_name"], opts["corpus"], opts["candidates"], opts["topics"])
    encoder = load_encoder(dense_model, device=opts["device"])
    reranked, stats = dense_rerank(encoder, run, topic_map, texts, top_k=opts["top_k"] or DEFAULT_TOP_K, on_missing=opts["on_missing"],
                                   batch_size=batch_size, progress=obj.progress)
    write_run(reranked, output, tag=run_tag or f"dense-{Path(dense_model).name}")
    click.echo(f"wrote {output}: {stats.summary()}")


# --------------------------------------------------------------------------------------------
@main.command("analyze-heads")
@scoring_options
@click.option("--qrels", required=True, help="Qrels file or registry name.")
@click.option("--output-dir", "-o", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder for the runs, heads.json and report.md.")
@click.option("--folds", default=5, show_default=True, type=FOLDS, help="Cross-validation folds for the best single head.")
@click.option("-l", "--relevance-level", default=1, show_default=True, help="trec_eval -l for the binary measures of the report.")
@click.pass_obj
def analyze_heads(obj: Context, qrels: str, output_dir: Path, folds: int, relevance_level: int, **opts) -> None:
    """What single heads can do, from the per-head score cache (one forward pass per query, reused).

    Writes and evaluates, against the first-stage run: a random order of the same candidates; all
    heads (ICR); the best single head chosen by cross-validation over queries (never on the query
    it ranks); the per-query oracle (each query's own best head: an upper bound, not a method);
    and the oracle's null (the same oracle over scores shuffled among each query's candidates).
    """
    from ..eval.head_analysis import analyze
    from ..data.registry import lookup
    from ..data.trec import read_qrels

    job = _scoring_job(obj, opts)
    judgements = read_qrels(lookup(qrels, "qrels", obj.data_dir))
    report = analyze(job.reranker, job.run, job.topics, job.texts, judgements, output_dir, top_k=job.top_k,
                     on_missing=job.on_missing, folds=folds, relevance_level=relevance_level, progress=obj.progress)
    click.echo(report, nl=False)


def _text_source(obj: Context, index_name, corpus, candidates, topics):
    """Document text and topics for a scoring command from whichever source was given."""
    from ..firststage.sources import TextSpec, text_source

    return text_source(TextSpec(index_name, corpus, candidates, topics), obj.data_dir, progress=obj.progress)


# --------------------------------------------------------------------------------------------
@main.command()
@scoring_options
@click.option("--qrels", required=True, help="Qrels of the training queries (file or registry name).")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Labels file to write (JSONL).")
@click.option("--beam", default=4, show_default=True, type=POSITIVE, help="Beam width of the forward selection.")
@click.option("--max-size", default=8, show_default=True, type=POSITIVE, help="Largest head set searched.")
@click.option("--normalise", type=click.Choice(["zscore", "none"]), default="zscore", show_default=True, help="Per-head normalisation within a query before heads are summed.")
@click.option("--static-heads", default=None, help="Also write the QRHead-style static head set (top --static-k heads by mean single-head nDCG@10 over these queries) here; '{k}' in the path is replaced by the size.")
@click.option("--static-k", default="16", show_default=True, help="Size(s) of the static head set, comma-separated (1 gives the best single head).")
@click.option("--random-heads", default=None, type=click.Path(dir_okay=False, path_type=Path), help="Also write a random head set of the mean label size here (the random-heads baseline).")
@click.option("--random-seed", default=0, show_default=True, help="Seed of --random-heads.")
@click.option("--random-size", default=None, type=click.IntRange(min=1), help="Size of the --random-heads set [default: the mean label-set size]; give the routed size of the router it is compared with.")
@click.pass_obj
def label(obj: Context, qrels: str, output: Path, beam: int, max_size: int, normalise: str, static_heads: str | None, static_k: str, random_heads: Path | None, random_seed: int, random_size: int | None, **opts) -> None:
    """Pseudo labels: for each judged training query, the head set with the best nDCG@10.

    Reads (or computes once) the all-heads score cache of the candidates, then searches per query
    by greedy forward selection with a beam over heads, vectorised over heads (seconds for
    hundreds of queries); ties go to smaller sets. Stores per query the set, its nDCG@10, the
    all-heads nDCG@10 and every single head's nDCG@10.
    """
    from ..heads.head_set import write_head_set
    from ..heads.labels import SearchParams, label_queries, random_head_set, static_head_set, write_labels
    from ..data.registry import lookup
    from ..data.trec import read_qrels

    judgements = read_qrels(lookup(qrels, "qrels", obj.data_dir))  # a bad file fails before the model loads
    job = _scoring_job(obj, opts)
    entries = (item.scores for item in job.reranker.iter_scores(job.run, job.topics, job.texts, top_k=job.top_k,
                                                                on_missing=job.on_missing, progress=obj.progress)
               if item.scores is not None)
    model = job.reranker.model
    labels = label_queries(entries, judgements, SearchParams(beam=beam, max_size=max_size, normalise=normalise),
                           model_name=model.name, model_fingerprint=model.fingerprint,
                           settings={**job.reranker.describe()["settings"], "top_k": job.top_k})
    write_labels(labels, output)
    mean = sum(q.ndcg for q in labels.queries.values()) / max(len(labels), 1)
    base = sum(q.all_heads_ndcg for q in labels.queries.values()) / max(len(labels), 1)
    click.echo(f"wrote {len(labels)} labels to {output} (mean label nDCG@10 {mean:.4f}, all heads {base:.4f}; "
               f"skipped: {', '.join(f'{k} {len(v)}' for k, v in labels.skipped.items())})")
    sizes = [int(k) for k in static_k.split(",")]
    if static_heads:
        if len(sizes) > 1 and "{k}" not in static_heads:
            raise click.UsageError("several --static-k sizes need '{k}' in the --static-heads path")
        for k in sizes:
            path = static_heads.replace("{k}", str(k))
            write_head_set(static_head_set(labels, k), path)
            click.echo(f"wrote the static top-{k} head set to {path}")
    if random_heads:
        size = random_size or max(1, round(sum(len(q.heads) for q in labels.queries.values()) / max(len(labels), 1)))
        write_head_set(random_head_set(labels.shape, size, seed=random_seed, normalise=normalise,
                                       model_name=model.name, model_fingerprint=model.fingerprint), random_heads)
        click.echo(f"wrote a random set of {size} heads (seed {random_seed}) to {random_heads}")


def query_embedding_options(command):
    """--layer and --pooling: how the frozen LLM embeds a query for routing (train, train-soft-router)."""
    command = click.option("--pooling", type=click.Choice(["mean", "last"]), default="mean", show_default=True,
                           help="Pooling of the query's token states.")(command)
    return click.option("--layer", default=None, type=int,
                        help="Decoder layer whose hidden states embed the query [default: the middle one].")(command)


def fusion_options(command):
    """--fuse and --fuse-dense: the unpenalised features learned beside the heads (train-weights, train-soft-router)."""
    command = click.option("--fuse-dense/--no-fuse-dense", default=False, show_default=True,
                           help="Also learn a weight for the cosine of the packaged all-MiniLM-L6-v2 bi-encoder "
                                "(z-normalised within each query); re-ranking with the result then embeds the candidates too.")(command)
    return click.option("--fuse/--no-fuse", default=False, show_default=True,
                        help="Also learn a weight for the first-stage score (z-normalised within each query).")(command)


# --------------------------------------------------------------------------------------------
@main.command()
@click.option("--labels", "labels_path", required=True, type=click.Path(exists=True, dir_okay=False), help="Labels file from `routehead-pyserini label`.")
@click.option("--topics", required=True, help="Topics with the training queries' text (file or registry name).")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Router checkpoint to write.")
@click.option("--model", default=None, help="The LLM the labels were made with [default: the one named in the labels file].")
@query_embedding_options
@click.option("--head-dim", default=64, show_default=True, type=POSITIVE, help="Size of the per-head embeddings.")
@click.option("--sparsity", default=0.1, show_default=True, help="Weight of the sparsity regulariser (mean routing probability).")
@click.option("--epochs", default=300, show_default=True, type=POSITIVE, help="Maximum epochs (early stopping on validation loss).")
@click.option("--patience", default=30, show_default=True, type=POSITIVE, help="Epochs without validation improvement before stopping.")
@click.option("--targets", type=click.Choice(["soft", "set", "tied"]), default="soft", show_default=True, help="What the router learns per training query: soft = every head's own nDCG@10 (graded, no arbitrary tie-breaks); set = the searched label set (the paper's pseudo label); tied = all heads tied at the best single-head nDCG@10.")
@click.option("--top-k", default=None, type=POSITIVE, help="Heads routed per query at inference [default: 16 for soft targets (the static set's size), else the mean label-set size].")
@click.option("--val-fraction", default=0.2, show_default=True, type=FRACTION, help="Share of training queries held out for early stopping (fixed by qid hash).")
@click.option("--seed", default=0, show_default=True, help="Seed of the split and of training.")
@click.option("--knn", "knn", default=None, type=click.IntRange(min=1), help="Build the nearest-neighbour baseline with this many neighbours instead of training (no split, no epochs).")
@click.option("--knn-vote", type=click.Choice(["count", "similarity"]), default="count", show_default=True, help="--knn: each neighbour votes 1, or its cosine similarity (>= 0), for every head of its label.")
@click.option("--knn-raw", is_flag=True, help="--knn: cosine of the raw embeddings (default: standardised per dimension first).")
@click.pass_obj
def train(obj: Context, labels_path: str, topics: str, output: Path, model: str | None, layer: int | None, pooling: str, head_dim: int, sparsity: float, epochs: int, patience: int, targets: str, top_k: int | None, val_fraction: float, seed: int, knn: int | None, knn_vote: str, knn_raw: bool) -> None:
    """Train the RouteHead router on pseudo labels and save a checkpoint tied to its LLM.

    Each training query is embedded from the frozen LLM's hidden states over the query text alone;
    the router scores every (layer, head) by the interaction of a learned head embedding with the
    projected query, trained with binary cross-entropy on targets from the labels (--targets) plus a
    sparsity regulariser.
    The checkpoint records the LLM (name and config fingerprint), the prompt settings of the labels
    and the hyper-parameters; loading it with another LLM is an error.

    With --knn K, the same embeddings and labels make the nearest-neighbour baseline instead: a
    query is routed to the --top-k heads most voted for by the labels of its K nearest training
    queries (cosine, exact faiss search). `rerank --router` takes either file.
    """
    ctx = click.get_current_context()
    learned_only = ["head_dim", "sparsity", "epochs", "patience", "val_fraction", "seed"]
    if knn is not None:
        given = [n for n in learned_only if ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE]
        if given:
            raise click.UsageError(f"{', '.join('--' + n.replace('_', '-') for n in given)}: options of the learned router, not of --knn")
    elif knn_raw or ctx.get_parameter_source("knn_vote") == click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("--knn-vote and --knn-raw need --knn")
    from ..heads.labels import read_labels, router_targets, target_sets
    from ..engine.models import load_model
    from ..engine.query_embedding import embed_queries
    from ..data.registry import lookup
    from ..heads.router import RouterConfig, save_router, train_router
    from ..heads.checkpoint import RouterError
    from ..data.trec import read_topics

    labels = read_labels(labels_path)
    loaded = load_model(model or labels.model.get("name") or "smollm2-135m")
    if labels.model.get("fingerprint") and labels.model["fingerprint"] != loaded.fingerprint:
        raise RouterError(f"labels were made with {labels.model['fingerprint']}, not {loaded.fingerprint}")
    topic_map = read_topics(lookup(topics, "topics", obj.data_dir))
    qids = [q for q in labels.queries if q in topic_map]
    if len(qids) < len(labels.queries):
        raise RouterError(f"{len(labels.queries) - len(qids)} labelled queries have no text in {topics}")
    embeddings = embed_queries(loaded, [topic_map[q] for q in qids], layer=layer, pooling=pooling, progress=obj.progress)
    extra = {"normalise": labels.params.normalise, "labels": str(labels_path), "training_queries": len(qids), "targets": targets}
    goal = router_targets(labels, qids, targets)
    if targets == "soft" and top_k is None:
        top_k = 16
    if knn is not None:
        from ..heads.knn_router import KnnConfig, KnnRouter, label_recall, save_knn_router

        knn_router = KnnRouter(embeddings, target_sets(goal, top_k if targets == "soft" else None),
                               KnnConfig(k=knn, vote=knn_vote, top_m=top_k, standardise=not knn_raw,
                                         embedding_layer=layer, embedding_pooling=pooling),
                               shape=loaded.spec.shape, query_ids=qids, model=loaded)
        recall = label_recall(knn_router.leave_one_out(), knn_router.label_sets) if len(qids) > 1 else float("nan")
        save_knn_router(knn_router, output, model=loaded, prompt_settings=labels.settings, extra=extra)
        click.echo(f"wrote {output}: {knn_router.describe()}; leave-one-out label recall {recall:.4f}")
        return
    config = RouterConfig(head_dim=head_dim, sparsity=sparsity, epochs=epochs, patience=patience, seed=seed,
                          embedding_layer=layer, embedding_pooling=pooling, top_k=top_k)
    trained = train_router(embeddings, goal, config, val_fraction=val_fraction, query_ids=qids, model=loaded)
    save_router(trained, output, model=loaded, prompt_settings=labels.settings, extra=extra)
    click.echo(f"wrote {output}: {len(qids)} queries, best epoch {trained.best_epoch}, routes {trained.default_top_k} heads per query by default")


# --------------------------------------------------------------------------------------------
@main.command("train-weights")
@scoring_options
@click.option("--qrels", default=None, help="Qrels of the training queries (file or registry name).  [required unless --collections]")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Weights file to write: a head-set file for `rerank --heads`.")
@click.option("--loss", type=click.Choice(["pairwise", "pointwise", "listwise"]), default="pairwise", show_default=True, help="RankNet pairs, logistic regression on relevant/not, or ListNet (top one).")
@click.option("--penalty", type=click.Choice(["l1", "l2"]), default="l1", show_default=True, help="Regularisation of the weights (l1 keeps few heads).")
@click.option("--lambdas", default=None, help="Comma-separated regularisation strengths to cross-validate [default: 10 values from the l1 lambda_max down 1000x; l2: 10 .. 1e-4].")
@click.option("--folds", default=5, show_default=True, type=FOLDS, help="Cross-validation folds over training queries for choosing lambda (objective: mean nDCG@10).")
@click.option("--fold-seed", default=0, show_default=True, help="Seed of the fold assignment (a hash of seed and qid).")
@fusion_options
@click.option("-l", "--relevance-level", default=1, show_default=True, help="--loss pointwise: the smallest grade counted as a positive.")
@click.option("--cv-run", default=None, type=click.Path(dir_okay=False, path_type=Path), help="Also write a run of these queries, each re-ranked by weights trained without its outer fold (lambda chosen inside the other folds).")
@click.option("--outer-folds", default=5, show_default=True, type=FOLDS, help="--cv-run: number of outer folds (assigned with --fold-seed).")
@click.option("--collections", "collections_path", default=None, type=click.Path(exists=True, dir_okay=False), help="Train on several judged collections at once (YAML, see pipelines/collections/development.yaml) instead of --run/--qrels; lambda is then chosen by leaving one collection out at a time.")
@click.pass_obj
def train_weights_cmd(obj: Context, qrels: str | None, output: Path, loss: str, penalty: str, lambdas: str | None, folds: int, fold_seed: int, fuse: bool, fuse_dense: bool, relevance_level: int, cv_run: Path | None, outer_folds: int, collections_path: str | None, **opts) -> None:
    """Learn one weight per head (and for the first stage, with --fuse) on judged training queries.

    Features are the cached per-head scores z-normalised within each query (and, with --fuse, the
    first-stage score, with --fuse-dense the bi-encoder cosine, z-normalised the same way; neither
    is penalised, so the most regularised model is their fusion alone); a linear ranker is trained with the chosen loss
    and penalty, lambda chosen by --folds cross-validation over the training queries (mean nDCG@10).
    The file is a head-set file with a weight per kept head (and a 'fuse' weight): `rerank --heads
    FILE` applies it, and refuses it on any other model. No LLM time when the scores are cached.
    """
    from ..heads.head_set import write_head_set
    from ..heads.weights import TrainConfig, nested_cv_predictions, to_head_set, train_weights

    try:
        grid = None if lambdas is None else tuple(float(v) for v in lambdas.split(","))
        config = TrainConfig(loss=loss, penalty=penalty, lambdas=grid, folds=folds, fold_seed=fold_seed, relevance_level=relevance_level)
    except ValueError as exc:
        raise click.UsageError(f"--lambdas/--folds: {exc}") from None
    if collections_path:
        _train_weights_pooled(obj, collections_path, output, config, fuse, fuse_dense, cv_run, opts)
        return
    if not qrels:
        raise click.UsageError("Missing option '--qrels' (or give --collections)")
    job = _scoring_job(obj, opts)
    data = _ranking_data(obj, job, qrels, fuse=fuse, fuse_dense=fuse_dense, k=config.k)
    entries, dataset = data.entries, data.dataset
    learned = train_weights(dataset, config)
    model = job.reranker.model
    info = {"prompt_settings": {**job.reranker.describe()["settings"], "top_k": job.top_k}, "run": opts["run_name"],
            "qrels": qrels, "sample": opts["sample"], "sample_seed": opts["seed"]}
    write_head_set(to_head_set(learned, model_name=model.name, model_fingerprint=model.fingerprint, info=info), output)
    best = next(p for p in learned.cv if p.lam == learned.lam)
    fused = ("" if not fuse else f", first-stage weight {learned.fuse_weight:.4f}") + (
        "" if not fuse_dense else f", dense weight {learned.dense_weight:.4f}")
    cv = f"CV nDCG@10 {best.ndcg:.4f}" if len(learned.cv) > 1 else "one --lambdas value: CV skipped"
    click.echo(f"wrote {output}: {learned.training_queries} training queries, lambda {learned.lam:.4g} ({cv}), "
               f"{int((learned.head_weights != 0).sum())} of {learned.head_weights.numel()} heads weighted{fused}")
    if cv_run:
        predicted, _ = nested_cv_predictions(dataset, data.features(), config, outer_folds=outer_folds, seed=fold_seed)
        data.write_cv_run(predicted, cv_run, f"weights-cv-{loss}-{penalty}" + ("-fused" if fuse else "") + ("-dense" if fuse_dense else ""))
        click.echo(f"wrote {cv_run}: {len(entries)} queries, each ranked by weights trained without its fold ({outer_folds} outer folds)")


def _train_weights_pooled(obj: Context, collections_path: str, output: Path, config, fuse: bool, fuse_dense: bool,
                          cv_run: Path | None, opts: dict) -> None:
    """``train-weights --collections``: one set of weights over every collection of the file."""
    from dataclasses import replace

    from ..heads.head_set import write_head_set
    from ..heads.pooled import load_pooled, read_collections
    from ..rerank.reranker import Reranker
    from ..heads.weights import to_head_set, train_weights

    obj.apply_threads()
    clashes = [o for o in ("run_name", "index_name", "corpus", "candidates", "topics", "sample") if opts.get(o)]
    if clashes or cv_run:
        raise click.UsageError("--collections replaces --run/--index/--corpus/--candidates/--topics/--sample/--cv-run "
                               "(each collection names its own; `routehead-pyserini loco` evaluates held-out collections)")
    settings, top_k = _prompt_settings(opts)
    reranker = Reranker(opts["model"], "all", settings=settings, device=opts["device"], dtype=opts["dtype"],
                        batch_size=_batch_size(opts, settings), cache=opts["cache_dir"] or True)
    collections = read_collections(collections_path)
    data = load_pooled(collections, reranker, top_k=top_k, data_dir=obj.data_dir, dense=fuse_dense,
                       on_missing=opts["on_missing"], progress=obj.progress)
    groups = len(collections) >= 2
    learned = train_weights(data.training_set(fuse, fuse_dense), replace(config, cv_by="group" if groups else "query"))
    counts = {c.name: sum(1 for q in data.dataset.queries if q.group == c.name) for c in collections}
    info = {"prompt_settings": {**reranker.describe()["settings"], "top_k": top_k}, "collections": counts,
            "validation": "leave one collection out" if groups else f"{config.folds}-fold over queries"}
    model = reranker.model
    write_head_set(to_head_set(learned, model_name=model.name, model_fingerprint=model.fingerprint, info=info), output)
    click.echo(f"wrote {output}: {learned.training_queries} training queries from {len(collections)} collections, "
               f"lambda {learned.lam:.4g}, {int((learned.head_weights != 0).sum())} of {learned.head_weights.numel()} heads weighted")


@dataclass
class RankingData:
    """Judged training data for learned scoring (train-weights, train-soft-router), from a scoring job."""

    entries: list  # (qid, scores or None, first-stage scores of the scored candidates, the other hits)
    dense: dict | None  # qid -> bi-encoder cosines of the scored candidates (--fuse-dense)
    dataset: object  # weights.Dataset
    fuse: bool

    def features(self) -> dict:
        """qid -> :func:`.weights.query_features` of every scored query (judged or not)."""
        from ..heads.weights import query_features

        return {qid: query_features(s.calibrated, fs if self.fuse else None, None if self.dense is None else self.dense[qid])
                for qid, s, fs, _ in self.entries if s is not None}

    def write_cv_run(self, predicted: dict, path: Path, tag: str) -> None:
        """A run of every query, scored candidates in the order of ``predicted`` (qid -> scores)."""
        from ..data.trec import ranked_hits
        from ..data.trec import Run, write_run

        hits = {qid: ranked_hits([], [], rest) if s is None else ranked_hits(s.docids, predicted[qid].tolist(), rest)
                for qid, s, _, rest in self.entries}
        write_run(Run(hits), path, tag=tag)


def _ranking_data(obj: Context, job: ScoringJob, qrels: str, *, fuse: bool, fuse_dense: bool, k: int = 10) -> RankingData:
    """Score (or read from the cache) every query of ``job``; add bi-encoder cosines with ``fuse_dense``."""
    from ..data.registry import lookup
    from ..data.trec import read_qrels
    from ..heads.weights import build_dataset

    judgements = read_qrels(lookup(qrels, "qrels", obj.data_dir))
    entries = []
    for item in job.reranker.iter_scores(job.run, job.topics, job.texts, top_k=job.top_k,
                                         on_missing=job.on_missing, progress=obj.progress):
        first = {h.docid: h.score for h in job.run[item.qid]}
        scores = item.scores
        entries.append((item.qid, scores, None if scores is None else [first[d] for d in scores.docids], item.rest))
    dense, dense_model = None, None
    if fuse_dense:
        from tqdm import tqdm

        from ..firststage.dense import PACKAGED, DenseScorer, load_encoder

        scorer, dense_model = DenseScorer(load_encoder(PACKAGED)), PACKAGED
        dense = {qid: scorer.scores(job.topics[qid], [job.texts.get(d) for d in s.docids])
                 for qid, s, _, _ in tqdm(entries, desc="dense", unit="query", disable=not obj.progress) if s is not None}
    dataset = build_dataset(((s, fs) for _, s, fs, _ in entries if s is not None), judgements, fuse=fuse, k=k,
                            dense=dense, dense_model=dense_model)
    return RankingData(entries, dense, dataset, fuse)


# --------------------------------------------------------------------------------------------
@main.command("train-soft-router")
@scoring_options
@click.option("--qrels", required=True, help="Qrels of the training queries (file or registry name).")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Router checkpoint to write (`rerank --router`).")
@click.option("--loss", type=click.Choice(["pairwise", "pointwise", "listwise"]), default="pointwise", show_default=True, help="Ranking loss of the routed scores (as train-weights).")
@click.option("--sparsity", default=1e-3, show_default=True, help="Weight of the L1 regulariser on each query's head weights (mean over queries of sum |w|).")
@fusion_options
@query_embedding_options
@click.option("--head-dim", default=16, show_default=True, type=POSITIVE, help="Size of the per-head embeddings.")
@click.option("--route-k", default=16, show_default=True, type=POSITIVE, help="Heads kept per query at inference (by |weight|).")
@click.option("--epochs", default=300, show_default=True, type=POSITIVE, help="Maximum epochs (full batch; early stopping on the validation objective).")
@click.option("--patience", default=30, show_default=True, type=POSITIVE, help="Epochs without validation improvement before stopping.")
@click.option("--val-fraction", default=0.2, show_default=True, type=FRACTION, help="Share of training queries held out for early stopping (fixed by qid hash).")
@click.option("--router-seed", default=0, show_default=True, help="Seed of the validation split and of training.")
@click.option("-l", "--relevance-level", default=1, show_default=True, help="--loss pointwise: the smallest grade counted as a positive.")
@click.option("--cv-run", default=None, type=click.Path(dir_okay=False, path_type=Path), help="Also write a run of these queries, each ranked by a router trained without its outer fold.")
@click.option("--outer-folds", default=5, show_default=True, type=FOLDS, help="--cv-run: number of outer folds.")
@click.option("--fold-seed", default=0, show_default=True, help="--cv-run: seed of the fold assignment (a hash of seed and qid).")
@click.pass_obj
def train_soft_router_cmd(obj: Context, qrels: str, output: Path, loss: str, sparsity: float, fuse: bool, fuse_dense: bool, layer: int | None, pooling: str, head_dim: int, route_k: int, epochs: int, patience: int, val_fraction: float, router_seed: int, relevance_level: int, cv_run: Path | None, outer_folds: int, fold_seed: int, **opts) -> None:
    """Train a soft router: per-query head weights from the query embedding, on the ranking loss.

    The hard router (`train`) learns which heads to sum from pseudo label sets; this one learns, for
    each query, one weight per head (the same network: head embeddings x projected query embedding
    + bias), trained end to end on the cached per-head scores of judged queries with a ranking loss
    and an L1 sparsity regulariser on the weights (and a global weight for the first stage with
    --fuse). At inference a query keeps its --route-k heads by |weight|. `rerank --router FILE`
    applies it; loading it with another LLM is an error.
    """
    from ..engine.query_embedding import embed_queries
    from ..heads.checkpoint import model_info
    from ..heads.router import save_router
    from ..heads.soft_router import SoftRouterConfig, nested_cv_scores, train_soft_router

    config = SoftRouterConfig(loss=loss, relevance_level=relevance_level, sparsity=sparsity, head_dim=head_dim,
                              epochs=epochs, patience=patience, val_fraction=val_fraction, seed=router_seed,
                              top_k=route_k, embedding_layer=layer, embedding_pooling=pooling)
    job = _scoring_job(obj, opts)
    data = _ranking_data(obj, job, qrels, fuse=fuse, fuse_dense=fuse_dense)
    model = job.reranker.model
    qids = [qid for qid, s, _, _ in data.entries if s is not None]
    embeddings = embed_queries(model, [job.topics[q] for q in qids], layer=layer, pooling=pooling, progress=obj.progress)
    trained = train_soft_router(embeddings, data.dataset, qids, config)
    trained.model_info = model_info(model)
    save_router(trained, output, model=model, prompt_settings={**job.reranker.describe()["settings"], "top_k": job.top_k},
                extra={"normalise": "zscore", "run": opts["run_name"], "qrels": qrels, "training_queries": len(data.dataset.queries)})
    click.echo(f"wrote {output}: soft router over {len(data.dataset.queries)} training queries, best epoch {trained.best_epoch}, "
               f"{route_k} heads per query")
    if cv_run:
        predicted = nested_cv_scores(embeddings, qids, data.dataset, data.features(), config, outer_folds=outer_folds, seed=fold_seed)
        data.write_cv_run(predicted, cv_run, f"soft-router-cv-{loss}" + ("-fused" if fuse else "") + ("-dense" if fuse_dense else ""))
        click.echo(f"wrote {cv_run}: {len(data.entries)} queries, each ranked by a router trained without its fold ({outer_folds} outer folds)")


# --------------------------------------------------------------------------------------------
@main.command("loco")
@click.option("--collections", "collections_path", required=True, type=click.Path(exists=True, dir_okay=False), help="YAML file of judged collections (see pipelines/collections/development.yaml).")
@click.option("--only", multiple=True, help="Use only these collections (repeatable).")
@click.option("--exclude", multiple=True, help="Leave these collections out entirely (repeatable).")
@click.option("--output-dir", "-o", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder for report.md, report.json and every row's run.")
@click.option("--model", default="smollm2-135m", show_default=True, help="The LLM whose heads are scored.")
@click.option("--mode", type=click.Choice(["listwise", "pointwise"]), default="pointwise", show_default=True, help="Prompt mode of the per-head scores.")
@click.option("--top-k", default=20, show_default=True, type=click.IntRange(min=1), help="Candidates scored per query.")
@click.option("--doc-max-tokens", default=128, show_default=True, type=click.IntRange(min=0), help="Truncate each document to this many tokens (0: no limit).")
@click.option("--batch-size", default=5, show_default=True, type=click.IntRange(min=1), help="Pointwise prompts per forward pass.")
@click.option("--device", default="cpu", show_default=True, help="torch device.")
@click.option("--dtype", default="float32", show_default=True, help="Model dtype.")
@click.option("--cache-dir", default=None, type=click.Path(file_okay=False), help="Score cache folder [default: <cache dir>/scores].")
@click.option("--methods", default="heads+bm25,heads+bm25+dense,bm25+dense", show_default=True, help="Learned rows, comma-separated: heads+bm25, heads+bm25+dense, bm25+dense (no head: the control), heads, soft+bm25, soft+bm25+dense (soft routing).")
@click.option("--protocols", default="loco,pooled-cv", show_default=True, help="loco: leave one collection out; pooled-cv: 5 query folds over all collections mixed.")
@click.option("--losses", default="pointwise,pairwise", show_default=True, help="Losses inner validation chooses among.")
@click.option("--extra-run", "extra_runs", multiple=True, metavar="ROW=PATTERN", help="Another row from existing runs, '{collection}' in the path: 'ICR listwise=runs/icr/{collection}.trec' (repeatable).")
@click.option("--presets-dir", default=None, type=click.Path(file_okay=False, path_type=Path), help="Also train each head method on the collections (but --presets-exclude) and write it as a preset here (<dir>/<model>/<method>.json), with these scores.")
@click.option("--presets-exclude", multiple=True, default=("trec-dl-2019",), show_default=True, help="Collections the presets are NOT trained on (repeatable): the shipped default can then be checked on them, its figure there being exactly the LOCO one.")
@click.option("--max-layer", default=None, type=click.IntRange(min=0), help="Cost cap: only heads of layers 0..N get a weight, so re-ranking stops the forward after layer N.")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1), help="Fit this many (method, held-out collection or fold) pairs at once, in forked processes with one torch thread each (same results).")
@click.pass_obj
def loco_cmd(obj: Context, collections_path: str, only: tuple[str, ...], exclude: tuple[str, ...], output_dir: Path, model: str, mode: str,
             top_k: int, doc_max_tokens: int, batch_size: int, device: str, dtype: str, cache_dir: str | None, methods: str,
             protocols: str, losses: str, extra_runs: tuple[str, ...], presets_dir: Path | None, presets_exclude: tuple[str, ...],
             max_layer: int | None, jobs: int) -> None:
    """Leave-one-collection-out and pooled cross-validation of learned head weights.

    \b
    Every collection of --collections is scored once (per-head scores from the cache when there).
    loco: for each collection, the loss and L1 strength are chosen by leave-one-collection-out
    validation on the OTHER collections, weights are trained on them, and the held-out collection
    is ranked. pooled-cv: 5 query folds over all collections mixed. Each table shows BM25, a random
    order of the same candidates, pointwise all heads, the bi-encoder alone and each method, with
    paired t-tests against BM25 (*) and against static weights + BM25 (heads+bm25, marked with a dagger).
    """
    import shlex

    from ..eval.loco import METHODS, SearchSpace, leave_one_collection_out, pooled_cross_validation
    from ..eval.loco_report import build_table, write_tables
    from ..heads.pooled import load_pooled, read_collections, select
    from ..eval.loco import train_preset
    from ..heads.presets import write_preset
    from ..rerank.reranker import PromptSettings, Reranker
    from ..data.trec import read_run

    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        raise click.UsageError(f"--methods: unknown {unknown}; known: {', '.join(METHODS)}")
    wanted = [p.strip() for p in protocols.split(",") if p.strip()]
    if not wanted or set(wanted) - {"loco", "pooled-cv"}:
        raise click.UsageError("--protocols takes loco and/or pooled-cv")
    space = SearchSpace(tuple(x.strip() for x in losses.split(",") if x.strip()))
    collections = select(read_collections(collections_path), only, exclude)
    obj.apply_threads()
    settings = PromptSettings(doc_max_tokens=doc_max_tokens or None, mode=mode)
    reranker = Reranker(model, "all", settings=settings, device=device, dtype=dtype, batch_size=batch_size, cache=cache_dir or True)
    dense = any(METHODS[m].dense for m in chosen)
    soft = any(METHODS[m].router == "soft" for m in chosen)
    data = load_pooled(collections, reranker, top_k=top_k, data_dir=obj.data_dir, dense=dense, embeddings=soft,
                       progress=obj.progress)
    extra: dict = {}
    for spec in extra_runs:
        row, sep, pattern = spec.partition("=")
        if not sep or "{collection}" not in pattern:
            raise click.UsageError(f"--extra-run {spec!r}: expected ROW=PATH with '{{collection}}' in the path")
        for col in collections:
            path = Path(pattern.format(collection=col.name))
            if path.is_file():
                extra.setdefault(col.name, {})[row.strip()] = read_run(path)
    methods_ = [METHODS[m].capped(max_layer) if max_layer is not None and METHODS[m].heads else METHODS[m] for m in chosen]
    done = {}
    if "loco" in wanted:
        done["loco"] = leave_one_collection_out(data, methods_, space, jobs=jobs)
    if "pooled-cv" in wanted:
        done["pooled-cv"] = pooled_cross_validation(data, methods_, space, jobs=jobs)
    tables = [build_table(data, protocol, top_k, extra) for protocol in done.values()]
    notes = [f"model {reranker.model.name} ({reranker.model.fingerprint}); prompt: {mode}, top {top_k}, documents cut to "
             f"{doc_max_tokens or 'no limit'} tokens; passages in first-stage order",
             "collections: " + ", ".join(f"{c.name} ({sum(1 for q in data.of(c.name) if q.scores is not None)} queries scored, "
                                         f"{sum(1 for q in data.dataset.queries if q.group == c.name)} can train)" for c in collections),
             "command: routehead-pyserini " + " ".join(shlex.quote(a) for a in sys.argv[1:])]
    write_tables(tables, data, done, output_dir, extra, notes=notes)
    for table in tables:
        click.echo(f"## {table.protocol}\n\n{table.to_markdown()}")
    if presets_dir is not None:
        by_protocol = {t.protocol: t for t in tables}
        for method in methods_:
            if not method.heads or method.router != "static":
                continue  # the fusion-only control is a table row, not a preset; routers are `train-soft-router` files
            scores = {key: {**{c: round(t.cells[method.name][c].means["nDCG@10"], 4) for c in t.collections},
                            "mean": round(t.mean(method.name), 4)}
                      for key, t in (("loco", by_protocol.get("loco")), ("pooled_cv", by_protocol.get("pooled-cv"))) if t}
            prompt = {**{k: v for k, v in reranker.describe()["settings"].items() if k != "max_context"}, "top_k": top_k}
            head_set = train_preset(data, method, model_name=reranker.model.name, model_fingerprint=reranker.model.fingerprint,
                                    prompt_settings=prompt, scores=scores, command=notes[-1].removeprefix("command: "),
                                    exclude=presets_exclude, space=space)
            path = presets_dir / reranker.model.name / f"{method.name.split('@')[0]}.json"
            write_preset(head_set, path)
            click.echo(f"wrote preset {path}")


@main.command("presets")
@click.option("--model", default=None, help="Only the presets of this model name.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (every recorded field) instead of text.")
def presets_cmd(model: str | None, as_json: bool) -> None:
    """List the trained presets shipped in the package, best leave-one-collection-out mean first.

    `rerank` with no method option uses the first one listed for --model; `rerank --preset NAME`
    another. Each records its model, prompt settings, training collections and query counts, the
    protocol, its LOCO and pooled-CV nDCG@10 per collection, and the date.
    """
    from ..heads.presets import list_presets, preset_json

    found = list_presets(model)
    if as_json:
        click.echo("[" + ",\n".join(preset_json(p) for p in found) + "]")
        return
    if not found:
        click.echo("no presets" + (f" for model {model!r}" if model else ""))
        return
    current = None
    for preset in found:
        if preset.model != current:
            current = preset.model
            click.echo(f"{current}  (default: {list_presets(current)[0].name})")
        rec = preset.record
        loco = rec.get("scores", {}).get("loco", {})
        pooled = rec.get("scores", {}).get("pooled_cv", {})
        click.echo(f"  {preset.name:20s} LOCO nDCG@10 {loco.get('mean', float('nan')):.4f}  pooled CV {pooled.get('mean', float('nan')):.4f}  "
                   f"{rec.get('heads')} heads (deepest layer {rec.get('deepest_layer')})  {rec.get('training', {}).get('queries')} training queries  "
                   f"{rec.get('created')}")
        click.echo(f"  {'':20s} {rec.get('method', '')}; prompt {rec.get('prompt_settings', {})}")


# --------------------------------------------------------------------------------------------
@main.command("random-order")
@click.argument("run")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path), help="TREC run to write.")
@click.option("--top-k", default=None, type=POSITIVE, help="Shuffle only the first K hits of each query (the rest keep their order) [default: all].")
@click.option("--seed", default=0, show_default=True, help="Seed; the order of a query depends only on (seed, qid).")
@click.pass_obj
def random_order_cmd(obj: Context, run: str, output: Path, top_k: int | None, seed: int) -> None:
    """Write a random order of a run's candidates: the control every results table carries."""
    from ..data.controls import random_order
    from ..data.registry import lookup
    from ..data.trec import read_run, write_run

    shuffled = random_order(read_run(lookup(run, "run", obj.data_dir)), seed=seed, top_k=top_k)
    write_run(shuffled, output, tag=f"random-seed{seed}")
    click.echo(f"wrote a random order of {len(shuffled)} queries to {output}")


# --------------------------------------------------------------------------------------------
@main.command()
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/demo"), show_default=True, help="Folder for the index, the runs and report.md.")
@click.option("--hits", default=20, show_default=True, type=POSITIVE, help="BM25 depth: the candidate list the re-ranker sees.")
@click.option("--model", default="smollm2-135m", show_default=True, help="LLM for the ICR rows; 'none' skips them.")
@click.pass_obj
def demo(obj: Context, output_dir: Path, hits: int, model: str) -> None:
    """Run the demo on the embedded collection: index, BM25, ICR re-ranking, evaluation table.

    The table compares BM25 (Pyserini defaults) with BM25 at Lucene's classic parameters, a random
    order of the same candidates (the control every table here carries), and all-heads attention
    re-ranking (ICR) with the passages in BM25 order and reversed. The demo collection is a smoke
    test written for this project, not evidence of effectiveness.
    """
    from ..pipeline.demo import run_demo

    click.echo(run_demo(output_dir, hits=hits, model=None if model == "none" else model, progress=obj.progress), nl=False)


# --------------------------------------------------------------------------------------------
@main.command("heads")
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.option("--topics", default=None, help="A router SOURCE: the queries to route (file or registry name).")
@click.option("--run", "run_name", default=None, help="A router SOURCE: route only the queries of this run (file or registry name).")
@click.option("--overlay", default=None, type=click.Path(exists=True, dir_okay=False), help="A static head-set file to compare with and mark on the plot.")
@click.option("--plot", default=None, type=click.Path(dir_okay=False, path_type=Path), help="Also draw a layer x head PNG here.")
@click.option("--top", default=15, show_default=True, type=POSITIVE, help="A router SOURCE: list this many of the most routed heads.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_obj
def heads_cmd(obj: Context, source: str, topics: str | None, run_name: str | None, overlay: str | None, plot: Path | None, top: int, as_json: bool) -> None:
    """Show a head-set file, or a router's routing statistics over a query set.

    SOURCE is a head-set file (label --static-heads, --random-heads, train-weights) or a router
    file (train, learned or --knn). A router routes every query of --topics (or those of --run)
    with the LLM it names; the output lists the mean set size, the number of distinct heads and
    the most routed heads, and --plot draws how often each head is picked.
    """
    import json

    from ..eval import plots
    from ..heads.head_set import read_head_set
    from ..data.registry import lookup
    from ..eval.routing_stats import describe_head_set, describe_routing, route_topics

    static = read_head_set(overlay) if overlay else None
    with open(source, "rb") as handle:  # head-set files are JSON; router files are torch archives
        start = handle.read(64)
    head_set = read_head_set(source) if start.lstrip().startswith(b"{") else None
    if head_set is None:
        from ..heads.checkpoint import sniff_router_file

        sniff_router_file(source, start, "neither a head-set file (JSON) nor ")
    if head_set is not None:
        if topics or run_name:
            raise click.UsageError(f"{source} is a head-set file: --topics and --run are for routers")
        shape = head_set.model_shape or (static.model_shape if static else None)
        if plot:
            if shape is None:
                raise click.UsageError(f"{source} does not record its model's shape; cannot plot it")
            share = head_set.mask(shape).numpy().astype(float)
            plots.plot_head_heatmap(share, plot, static=static.heads or () if static else (), shape=shape,
                                    title=f"{Path(source).name}: {head_set.describe()}", colour_label="in the set")
        data = {"file": source, "heads": None if head_set.heads is None else [f"{l}.{h}" for l, h in head_set.heads],
                "weights": head_set.weights, "model": head_set.model_name, "shape": shape,
                "normalise": head_set.normalise, "source": head_set.source}
        click.echo(json.dumps(data, indent=1) + "\n" if as_json else describe_head_set(head_set, source), nl=False)
    else:
        from ..data.trec import read_run, read_topics

        if not topics:
            raise click.UsageError(f"{source} is a router file: give --topics (the queries to route)")
        topic_map = read_topics(lookup(topics, "topics", obj.data_dir))
        qids = read_run(lookup(run_name, "run", obj.data_dir)).qids() if run_name else None
        stats = route_topics(source, topic_map, qids, progress=obj.progress)
        if plot:
            plots.plot_head_heatmap(stats.share, plot, static=static.heads or () if static else (), shape=stats.shape,
                                    title=f"{Path(source).name}: {len(stats.sets)} queries")
        click.echo(json.dumps(stats.to_dict(static), indent=1) + "\n" if as_json else describe_routing(stats, static, top), nl=False)
    if plot:
        click.echo(f"wrote {plot}")


# --------------------------------------------------------------------------------------------
@main.group()
def pipeline() -> None:
    """YAML pipelines: chains of these commands, validated first, each stage skipped when up to date.

    See pipelines/README.md for the format; pipelines/demo.yaml is the demo.
    """


@pipeline.command("run")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a variable (model=gemma3-270m), the work folder (workdir=DIR) or a stage option (STAGE.OPTION=VALUE); repeatable.")
@click.option("--workdir", default=None, type=click.Path(file_okay=False, path_type=Path), help="Work folder (stage records, logs) [default: the file's 'workdir', else runs/pipelines/NAME].")
@click.option("--dry-run", is_flag=True, help="Validate and print the plan (which stages would run, and why) without running anything.")
@click.option("--force", is_flag=True, help="Run every stage even when its record shows it up to date.")
@click.pass_context
def pipeline_run(ctx: click.Context, file: Path, overrides: tuple[str, ...], workdir: Path | None, dry_run: bool, force: bool) -> None:
    """Run the stages of a pipeline FILE in order, skipping stages whose inputs, settings and outputs are unchanged.

    The whole file is validated first (unknown keys, missing inputs, references to later stages:
    each error names the file, the stage and the key). Each stage runs one routehead-pyserini
    command in this process; a stage that fails stops the pipeline, and running it again resumes at
    that stage. Every run logs to WORKDIR/logs/.
    """
    from ..pipeline.spec import describe_plan, load_pipeline, parse_overrides, run_pipeline

    obj: Context = ctx.obj
    spec = load_pipeline(file, overrides=parse_overrides(overrides), workdir=workdir, data_dir=obj.data_dir, group=main)
    outcome = run_pipeline(spec, ctx=ctx, group=main, data_dir=obj.data_dir, force=force, dry_run=dry_run)
    if dry_run:
        click.echo(describe_plan(spec, outcome.results), nl=False)
        return
    seconds = sum(r.seconds for r in outcome.results)
    click.echo(f"pipeline {spec.name}: {len(outcome.results)} stages, {outcome.count('ran')} ran, {outcome.count('skipped')} "
               f"up to date ({seconds:.1f} s); log {outcome.log_path}")


if __name__ == "__main__":  # pragma: no cover
    main()
