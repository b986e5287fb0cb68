"""Options and plumbing shared by the commands that score candidates with attention heads:
the candidate run, its text source, the model, the prompt settings, the score cache, the fusion options."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from .. import config
from ..config import DTYPES, QUANTIZATIONS
from ..engine.prompt_text import DEFAULT_DOC_MAX_TOKENS
from ..heads.configs import RouterConfig
from ..rerank.settings import ATTENTION_NORMS, DEFAULT_TOP_K, MODES, ORDERS, POINTWISE_BATCH_SIZE, SETTING_DEFAULTS
from .app import POSITIVE, Context, logger
from .types import finite_range

if TYPE_CHECKING:  # types only: the CLI imports torch and the JVM inside its commands
    from ..data.trec import Run
    from ..firststage.sources import TextSource
    from ..rerank.reranker import Reranker


# Options shared by every command that scores candidates with attention heads

#: The options of the scoring commands that name what they read (pipeline inputs).
TEXT_SOURCES = ("run", "index", "corpus", "candidates", "topics")

_SCORING_OPTIONS = [
    click.option("--run", "run_name", default=None, help="First-stage TREC run (a path or a registry name with a run).  [required]"),
    click.option("--index", "index_name", default=None, help="Index folder or registry name to fetch document text from (stored raw)."),
    click.option("--corpus", default=None, help="JSONL corpus to fetch document text from, instead of --index."),
    click.option("--candidates", default=None, type=click.Path(exists=True, dir_okay=False), help="JSONL with qid, query, docid, text per line (e.g. DL19's bm25_top100.jsonl): text and queries in one file."),
    click.option("--topics", default=None, help="Topics (file or registry name) [default: the --index name's topics, or the queries in --candidates]."),
    click.option("--model", default=config.DEFAULT_MODEL, show_default=True, help="smollm2-135m, gemma3-270m, a Hugging Face name, a local folder or a .gguf file."),
    click.option("--top-k", default=None, type=click.IntRange(min=1), help=f"Score the first K candidates; the rest keep their order below [default: the trained file's, else {DEFAULT_TOP_K}]."),
    click.option("--order", type=click.Choice(ORDERS), default=None, help=f"Listwise prompt order: first-stage rank 1 first (ICR), last (nearest the query), or both: the calibrated scores of the two orders summed (reuses each order's cache) [default: the trained file's, else {SETTING_DEFAULTS['order']}]."),
    click.option("--mode", type=click.Choice(MODES), default=None, help=f"listwise: all candidates in one prompt (ICR); pointwise: one prompt per candidate (that passage, then the query), window size 1 [default: the trained file's, else {SETTING_DEFAULTS['mode']}]."),
    click.option("--attention-norm", type=click.Choice(ATTENTION_NORMS), default=None, help=f"Attention mass of the query rows on a passage: raw, or among all keys but the prompt's first token (the attention sink) [default: the trained file's, else {SETTING_DEFAULTS['attention_norm']}]."),
    click.option("--batch-size", default=None, type=click.IntRange(min=1), help=f"--mode pointwise: candidates of one query per forward pass, padded (same scores; 4-8 is fastest on a CPU) [default: {POINTWISE_BATCH_SIZE} pointwise; listwise prompts are scored one at a time]."),
    click.option("--doc-max-tokens", default=None, type=click.IntRange(min=0), help=f"Truncate each document to this many tokens (counted; 0: no limit) [default: the trained file's, else {DEFAULT_DOC_MAX_TOKENS}]."),
    click.option("--max-context", default=None, type=POSITIVE, help="Token budget of one prompt; longer lists are split into windows [default: the model's context]."),
    click.option("--device", default="cpu", show_default=True, help="torch device: cpu, cuda, cuda:1..."),
    click.option("--dtype", default="float32", show_default=True, type=click.Choice((*DTYPES, "fp32", "bf16", "fp16")), help="Weights and activations: float32 (CPU), bfloat16 or float16 (GPU)."),
    click.option("--quantize", default=None, type=click.Choice(QUANTIZATIONS), help="int8: the decoder's linear layers in int8 (about 3x faster on a CPU; its scores, caches and presets are its own) [default: the trained file's, else none]."),
    click.option("--cache-dir", default=None, type=click.Path(file_okay=False), help="Score cache folder [default: <cache dir>/scores]."),
    click.option("--on-missing", type=click.Choice(["error", "skip"]), default="error", show_default=True, help="A candidate without text: fail, or keep it unscored below the scored ones (counted)."),
    click.option("--sample", default=None, type=POSITIVE, help="Only a fixed random sample of this many queries (chosen by --seed and qid alone)."),
    click.option("--seed", default=0, show_default=True, help="Seed of --sample."),
    click.option("--sample-offset", default=0, show_default=True, type=click.IntRange(min=0), help="Skip the first N queries of the --sample order: --sample 100 --sample-offset 200 is disjoint from --sample 200 (a validation split)."),
    click.option("--workers", default=None, type=click.IntRange(min=1), help="Score on N Ray workers, each loading the model once (needs the ray extra: pip install 'routehead-pyserini[ray]'); the run written is identical to one process's [default: score in this process]."),
    click.option("--ray-address", default=None, help="--workers: join this Ray cluster ('auto': the one `ray start` runs on this machine, or HOST:PORT) [default: start a local Ray for this command]."),
    click.option("--worker-cpus", default=1.0, show_default=True, type=finite_range(0, min_open=True), help="--workers: CPUs Ray reserves per worker; torch runs that many threads."),
    click.option("--worker-gpus", default=0.0, show_default=True, type=finite_range(0), help="--workers: GPUs Ray reserves per worker (with --device cuda)."),
    click.option("--worker-batch", default=2, show_default=True, type=click.IntRange(min=1), help="--workers: queries per task sent to a worker (a dead worker's task is retried on another)."),
]


def check_heads(value: str) -> str:
    """--heads: parse it now, so a bad list or a damaged head-set file fails before the model loads."""
    from ..heads.head_set import parse_heads

    if not value.strip():  # parse_heads reads '' as 'all', but an empty option is more likely a slip
        raise click.BadParameter("an empty value: give 'all', 'layer.head' pairs like '14.3,15.0', or a head-set file",
                                 param_hint="'--heads'")
    parse_heads(value)  # a HeadSetError names the file
    return value


def check_router(value: str | None) -> str | None:
    """--router: a file that cannot be a router file fails before the model loads."""
    if value is not None:
        from ..heads.checkpoint import sniff_router_file

        with open(value, "rb") as handle:
            sniff_router_file(value, handle.read(64))
    return value


def describe_scoring(description: dict) -> str:
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

    reranker: Reranker  # or a distributed one with the same rerank_run/iter_scores
    run: Run
    topics: dict[str, str]
    texts: TextSource
    top_k: int
    on_missing: str


def read_candidates(obj: Context, opts: dict):
    """The first-stage run of the scoring options, or its fixed --sample (after --sample-offset)."""
    from ..firststage.sources import candidate_run

    if not opts.get("run_name"):
        raise click.UsageError("Missing option '--run' (the first-stage run to re-rank).")
    return candidate_run(opts["run_name"], obj.data_dir, sample=opts["sample"], seed=opts["seed"], offset=opts["sample_offset"])


def scoring_job(obj: Context, opts: dict, heads="all", cache: bool = True, router: str | None = None, *,
                 recorded: dict | None = None, origin: str = "", defaults: dict | None = None,
                 per_query_heads: tuple[str, int] | None = None) -> ScoringJob:
    """The re-ranker and inputs of the scoring options. ``recorded``: the prompt settings of the
    trained file in use (``origin`` names it): they replace the defaults, and a conflicting explicit
    option is an error. ``per_query_heads``: an option and its count of heads per query, checked
    against the model's heads before it loads."""
    from ..rerank.reranker import Reranker

    obj.apply_threads()

    check_text_source(opts)
    if opts.get("ray_address") and not opts.get("workers"):
        raise click.UsageError("--ray-address needs --workers")
    if opts.get("workers"):
        from ..rerank.distributed import require_ray

        require_ray()  # before any slow step: without Ray, say so at once
    model_name: str = opts["model"]
    run = read_candidates(obj, opts)
    texts, topic_map = texts_for(obj, opts["index_name"], opts["corpus"], opts["candidates"], opts["topics"])
    settings, top_k = prompt_settings_of(opts, recorded, origin, defaults)
    quantize = quantization_of_job(opts, heads, origin)
    check_before_loading(opts, heads, router, quantize, run, topic_map, per_query_heads)
    model = model_name  # a name, or the model a router file was checked against (loaded once)
    trained = None
    if router:
        from ..engine.models import load_model
        from ..heads.loading import load_any_router

        model = load_model(model_name, device=opts["device"], dtype=opts["dtype"], quantize=quantize)
        trained = load_any_router(router, model=model)  # a learned or a kNN router, by the file's kind
    cache_arg = (opts["cache_dir"] or True) if cache else False
    if opts.get("workers"):
        reranker = distributed_reranker(opts, model_name, heads, settings, cache_arg, trained, model, quantize)
    else:
        reranker = Reranker(model, heads, settings=settings, device=opts["device"], dtype=opts["dtype"], quantize=quantize,
                            batch_size=batch_size_of(opts, settings), cache=cache_arg, router=trained)
    logger.info("scoring with %s", describe_scoring(reranker.describe()))
    return ScoringJob(reranker, run, topic_map, texts, top_k, opts["on_missing"])


def check_before_loading(opts: dict, heads, router: str | None, quantize: str | None, run, topics,
                         per_query_heads: tuple[str, int] | None = None) -> None:
    """Everything that can be checked without the model, checked before it (or the bi-encoder)
    loads: every run query has topic text, the device and dtype exist, the model is installed, a
    trained head set or router belongs to this model (fingerprint, quantisation, shape), a count
    of heads per query is no more than the model has."""
    from ..engine.models import peek_model
    from ..firststage.sources import check_run_inputs
    from ..heads.fusion import check_head_set_model
    from ..heads.head_set import HeadSet

    check_run_inputs(run, topics, opts["on_missing"])
    identity = peek_model(opts["model"], dtype=opts["dtype"], quantize=quantize, device=opts["device"])
    if per_query_heads and identity.spec is not None and per_query_heads[1] > identity.spec.shape[0] * identity.spec.shape[1]:
        layers, per_layer = identity.spec.shape
        raise click.BadParameter(f"{per_query_heads[1]} heads per query: the model has {layers * per_layer} "
                                 f"({layers} layers x {per_layer})", param_hint=f"'{per_query_heads[0]}'")
    if isinstance(heads, HeadSet):
        check_head_set_model(heads, identity)
        if identity.spec is not None:
            heads.check_shape(identity.spec.shape)
    if router:
        from ..heads.checkpoint import check_model, read_router_file
        from ..heads.loading import check_finite

        payload = read_router_file(router)
        if isinstance(payload, dict):
            check_finite(payload, router)
            if isinstance(payload.get("model"), dict):
                check_model(payload["model"], identity)


def quantization_of_job(opts: dict, heads, origin: str) -> str | None:
    """--quantize, else the quantisation the trained head set (preset, learned weights) was trained
    with; an explicit value that conflicts with the file's is a usage error."""
    from ..engine.quantize import QuantizeError, resolve

    fingerprint = getattr(heads, "model_fingerprint", None)
    try:
        return resolve(opts.get("quantize"), fingerprint, origin or "the head set")
    except QuantizeError as error:
        raise click.UsageError(str(error)) from None


def prompt_settings_of(opts: dict, recorded: dict | None = None, origin: str = "", defaults: dict | None = None):
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


def batch_size_of(opts: dict, settings) -> int:
    """--batch-size, else 5 pointwise prompts per forward (fastest measured on 2 cores), else 1."""
    return opts.get("batch_size") or (5 if settings.mode == "pointwise" else 1)


def distributed_reranker(opts: dict, model_name: str, heads: str, settings, cache, router, model=None, quantize: str | None = None):
    """``--workers``: a re-ranker whose model runs on Ray workers; they stop when the command ends."""
    from ..rerank.distributed import DistributedReranker, WorkerConfig, WorkerPool

    config = WorkerConfig(model_name, settings, device=opts["device"], dtype=opts["dtype"], quantize=quantize, batch_size=batch_size_of(opts, settings),
                          cpus=opts["worker_cpus"], gpus=opts["worker_gpus"])
    pool = WorkerPool(config, opts["workers"], address=opts["ray_address"], queries_per_task=opts["worker_batch"])
    click.get_current_context().call_on_close(pool.close)
    driver_model = model if router is not None else None  # routing embeds queries in this process (the loaded model)
    return DistributedReranker(pool, heads, settings=settings, cache=cache, router=router, model=driver_model)


def check_text_source(opts: dict) -> None:
    """Exactly one of --index, --corpus, --candidates (a usage error, before anything slow starts)."""
    from ..firststage.sources import SourceError, TextSpec

    try:
        TextSpec(opts["index_name"], opts["corpus"], opts["candidates"]).check()
    except SourceError as exc:
        raise click.UsageError(str(exc)) from None


def texts_for(obj: Context, index_name, corpus, candidates, topics):
    """Document text and topics for a scoring command from whichever source was given."""
    from ..firststage.sources import TextSpec, text_source

    return text_source(TextSpec(index_name, corpus, candidates, topics), obj.data_dir, progress=obj.progress)


def query_embedding_options(command):
    """--layer and --pooling: how the frozen LLM embeds a query for routing (train, train-soft-router)."""
    command = click.option("--pooling", type=click.Choice(["mean", "last"]), default=RouterConfig.embedding_pooling, show_default=True,
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


def ranking_data(obj: Context, job: ScoringJob, qrels: str, *, fuse: bool, fuse_dense: bool, k: int = 10):
    """Score (or read from the cache) every query of ``job`` as training data (:mod:`..rerank.training_data`)."""
    from ..data.registry import lookup
    from ..data.trec import read_qrels
    from ..rerank.training_data import ranking_data as collect

    judgements = read_qrels(lookup(qrels, "qrels", obj.data_dir))
    items = job.reranker.iter_scores(job.run, job.topics, job.texts, top_k=job.top_k, on_missing=job.on_missing,
                                     progress=obj.progress)
    return collect(items, job.run, job.topics, judgements, fuse=fuse, fuse_dense=fuse_dense, k=k,
                   cache_root=getattr(job.reranker, "cache_root", None), cache=bool(getattr(job.reranker, "caches", True)),
                   progress=obj.progress)
