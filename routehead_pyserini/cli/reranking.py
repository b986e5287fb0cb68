"""Second-stage commands: ``rerank`` (presets, head sets, routers, ICR, the bi-encoder) and ``presets``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from ..pipeline.stage_io import pipeline_io
from .app import Context, logger, main
from .types import WORD
from .options import (TEXT_SOURCES, check_text_source, read_candidates, check_heads, check_router, prompt_settings_of,
                      quantization_of_job, scoring_job, texts_for, scoring_options)


@pipeline_io(inputs=(*TEXT_SOURCES, "heads", "router"), outputs=("output",))
@main.command()
@scoring_options
@click.option("--preset", default=None, help="A trained configuration shipped in the package, by name (`routehead-pyserini presets` lists them with their scores) [default: the best one for --model].")
@click.option("--heads", default=None, callback=lambda _c, _p, v: None if v is None else check_heads(v), help="'all' (ICR), 'layer.head' pairs like '14.3,15.0', or a head-set file (e.g. from train-weights); its recorded prompt settings are used.")
@click.option("--router", "router_path", default=None, type=click.Path(exists=True, dir_okay=False), callback=lambda _c, _p, v: check_router(v), help="A router file (routehead-pyserini train, learned or --knn; train-soft-router): each query gets its own head set.")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Re-ranked TREC run to write (atomically).")
@click.option("--no-cache", is_flag=True, help="Do not read or write the per-head score cache (no resume).")
@click.option("--run-tag", default=None, type=WORD, help="Last column of the run [default: routehead-<model>].")
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
    job = scoring_job(obj, opts, choice.head_set, cache=not no_cache, router=router_path, recorded=choice.recorded,
                       origin=choice.origin, defaults=choice.defaults)
    reranked, stats = job.reranker.rerank_run(job.run, job.topics, job.texts, top_k=job.top_k, on_missing=job.on_missing, progress=obj.progress)
    write_run(reranked, output, tag=run_tag or default_tag("routehead", opts["model"]))
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

    _, top_k = prompt_settings_of(opts, choice.recorded, choice.origin, choice.defaults)
    quantization_of_job(opts, choice.head_set, choice.origin)  # no LLM runs, but a conflicting --quantize is still refused
    run = read_candidates(obj, opts)
    texts, topics = texts_for(obj, opts["index_name"], opts["corpus"], opts["candidates"], opts["topics"])
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
    from ..rerank.settings import DEFAULT_TOP_K
    from ..data.trec import write_run

    check_text_source(opts)
    run = read_candidates(obj, opts)
    texts, topic_map = texts_for(obj, opts["index_name"], opts["corpus"], opts["candidates"], opts["topics"])
    encoder = load_encoder(dense_model, device=opts["device"])
    reranked, stats = dense_rerank(encoder, run, topic_map, texts, top_k=opts["top_k"] or DEFAULT_TOP_K, on_missing=opts["on_missing"],
                                   batch_size=batch_size, progress=obj.progress)
    write_run(reranked, output, tag=run_tag or default_tag("dense", dense_model))
    click.echo(f"wrote {output}: {stats.summary()}")


def default_tag(prefix: str, model: object) -> str:
    """``<prefix>-<model folder name>`` as one word (a model folder may hold spaces; a run line may not)."""
    return "_".join(f"{prefix}-{Path(str(model)).name}".split())


def _mean(scores: dict) -> str:
    """A recorded mean nDCG@10, or '–' where the preset records none for that protocol."""
    value = scores.get("mean")
    return f"{value:.4f}" if isinstance(value, (int, float)) else "–"


def _sampled(record: dict) -> str:
    """Which fixed query samples a preset's figures were measured on ('' for every query)."""
    sample = record.get("sample")
    if not isinstance(sample, dict) or not sample:
        return ""
    sizes = set(sample.values())
    collections = set(record.get("scores", {}).get("loco", {})) - {"mean"}
    if set(sample) == collections and len(sizes) == 1:  # every collection cut to the same size
        return f" (on samples of at most {sizes.pop()} queries per collection)"
    return " (sampled: " + ", ".join(f"{name} {size}" for name, size in sample.items()) + " queries)"


@main.command("presets")
@click.option("--model", default=None, help="Only the presets of this model name.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (every recorded field) instead of text.")
def presets_cmd(model: str | None, as_json: bool) -> None:
    """List the trained presets shipped in the package: the default model's first, then by model,
    best leave-one-collection-out mean first.

    `rerank` with no method option uses the first one listed for --model; `rerank --preset NAME`
    another. Each records its model, prompt settings, training collections and query counts, the
    protocol, its LOCO and pooled-CV nDCG@10 per collection (and the fixed query samples they were
    measured on: means on different samples are not comparable), its measured cost per query, and the date.
    """
    from ..config import DEFAULT_MODEL
    from ..heads.presets import list_presets, preset_json

    found = list_presets(model)
    if as_json:
        click.echo("[" + ",\n".join(preset_json(p) for p in found) + "]")
        return
    if not found:
        click.echo("no presets" + (f" for model {model!r}" if model else ""))
        return
    # the default model first (what `rerank` runs without --model), then the model of the best preset;
    # best LOCO mean first within each (means on different query samples are not comparable)
    by_model: dict[str, list] = {DEFAULT_MODEL: []} if model is None else {}
    for preset in found:
        by_model.setdefault(preset.model, []).append(preset)
    by_model = {name: group for name, group in by_model.items() if group}
    for preset in (p for group in by_model.values() for p in group):
        if preset is by_model[preset.model][0]:
            click.echo(f"{preset.model}  (default: {preset.name})")
        rec = preset.record
        loco = rec.get("scores", {}).get("loco", {})
        pooled = rec.get("scores", {}).get("pooled_cv", {})
        heads = (f"{rec.get('heads')} heads (deepest layer {rec.get('deepest_layer')})" if rec.get("heads")
                 else "no heads: BM25 and the bi-encoder fused, the LLM is not loaded")
        click.echo(f"  {preset.name:22s} LOCO nDCG@10 {_mean(loco)}  pooled CV {_mean(pooled)}{_sampled(rec)}  "
                   f"{heads}  {rec.get('training', {}).get('queries')} training queries  {rec.get('created')}")
        click.echo(f"  {'':22s} {rec.get('method', '')}; prompt {rec.get('prompt_settings', {})}")
        cost = rec.get("cost")
        if isinstance(cost, dict) and cost.get("wall_s_per_query") is not None:
            click.echo(f"  {'':22s} cost: {cost['wall_s_per_query']:.2f} s/query at top-{cost.get('top_k', 20)} on {cost.get('machine', 'the benchmark machine')}"
                       f" ({cost.get('relative', '')}; {cost.get('source', 'bench/bench_models.py')})")
