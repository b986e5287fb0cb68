"""Commands that learn from qrels: ``analyze-heads``, ``label``, ``train`` (RouteHead, k-NN),
``train-weights``, ``train-soft-router`` and ``loco`` (leave-one-collection-out and the presets)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from ..heads.configs import (LOSSES, NORMALISATIONS, PENALTIES, STATIC_SET_SIZE, VAL_FRACTION, VOTES, KnnConfig, RouterConfig,
                              SearchParams, SoftRouterConfig, TrainConfig)
from ..config import DTYPES, QUANTIZATIONS
from ..eval.loco_study import PROTOCOLS, Study
from ..pipeline.stage_io import pipeline_io
from ..rerank.settings import MODES
from .app import FOLDS, POSITIVE, RELEVANCE_LEVEL, Context, main
from .types import FRACTION, NON_NEGATIVE, IntList
from .options import TEXT_SOURCES, batch_size_of, prompt_settings_of, ranking_data, scoring_job, fusion_options, query_embedding_options, scoring_options

HEAD_DIM = click.IntRange(1, 4096)  # router head embeddings: larger ones only exhaust memory after the model has run


@pipeline_io(inputs=(*TEXT_SOURCES, "qrels"), outputs=("output-dir",))
@main.command("analyze-heads")
@scoring_options
@click.option("--qrels", required=True, help="Qrels file or registry name.")
@click.option("--output-dir", "-o", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder for the runs, heads.json and report.md.")
@click.option("--folds", default=5, show_default=True, type=FOLDS, help="Cross-validation folds for the best single head.")
@click.option("-l", "--relevance-level", default=1, show_default=True, type=RELEVANCE_LEVEL, help="trec_eval -l for the binary measures of the report.")
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

    job = scoring_job(obj, opts)
    judgements = read_qrels(lookup(qrels, "qrels", obj.data_dir))
    report = analyze(job.reranker, job.run, job.topics, job.texts, judgements, output_dir, top_k=job.top_k,
                     on_missing=job.on_missing, folds=folds, relevance_level=relevance_level, progress=obj.progress)
    click.echo(report, nl=False)


def _static_files(pattern: str, settings) -> list[str]:
    """``--static-heads 'x{k}.json' --static-k 1,16`` writes one file per size."""
    sizes = str(settings.get("static-k", STATIC_SET_SIZE)).split(",")
    return [pattern.replace("{k}", k.strip()) for k in sizes] if "{k}" in pattern else [pattern]


@pipeline_io(inputs=(*TEXT_SOURCES, "qrels"), outputs=("output", "static-heads", "random-heads"),
             expand={"static-heads": _static_files})
@main.command()
@scoring_options
@click.option("--qrels", required=True, help="Qrels of the training queries (file or registry name).")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Labels file to write (JSONL).")
@click.option("--beam", default=SearchParams.beam, show_default=True, type=POSITIVE, help="Beam width of the forward selection.")
@click.option("--max-size", default=SearchParams.max_size, show_default=True, type=POSITIVE, help="Largest head set searched.")
@click.option("--normalise", type=click.Choice(NORMALISATIONS), default=SearchParams.normalise, show_default=True, help="Per-head normalisation within a query before heads are summed.")
@click.option("--static-heads", default=None, help="Also write the QRHead-style static head set (top --static-k heads by mean single-head nDCG@10 over these queries) here; '{k}' in the path is replaced by the size.")
@click.option("--static-k", default=str(STATIC_SET_SIZE), show_default=True, type=IntList(min=1), help="Size(s) of the static head set, comma-separated (1 gives the best single head).")
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
    from ..heads.labels import label_queries, random_head_set, static_head_set, write_labels
    from ..data.registry import lookup
    from ..data.trec import read_qrels

    judgements = read_qrels(lookup(qrels, "qrels", obj.data_dir))  # a bad file fails before the model loads
    job = scoring_job(obj, opts)
    heads = job.reranker.model.spec.num_layers * job.reranker.model.spec.num_heads
    too_big = [k for k in [*map(int, static_k.split(",")), random_size or 1] if k > heads]
    if too_big:  # before any query is scored
        raise click.UsageError(f"--static-k/--random-size {too_big[0]}: the model has only {heads} heads")
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


@pipeline_io(inputs=("labels", "topics"), outputs=("output",))
@main.command()
@click.option("--labels", "labels_path", required=True, type=click.Path(exists=True, dir_okay=False), help="Labels file from `routehead-pyserini label`.")
@click.option("--topics", required=True, help="Topics with the training queries' text (file or registry name).")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Router checkpoint to write.")
@click.option("--model", default=None, help="The LLM the labels were made with [default: the one named in the labels file].")
@query_embedding_options
@click.option("--head-dim", default=RouterConfig.head_dim, show_default=True, type=HEAD_DIM, help="Size of the per-head embeddings.")
@click.option("--sparsity", default=RouterConfig.sparsity, show_default=True, type=NON_NEGATIVE, help="Weight of the sparsity regulariser (mean routing probability).")
@click.option("--epochs", default=RouterConfig.epochs, show_default=True, type=POSITIVE, help="Maximum epochs (early stopping on validation loss).")
@click.option("--patience", default=RouterConfig.patience, show_default=True, type=POSITIVE, help="Epochs without validation improvement before stopping.")
@click.option("--targets", type=click.Choice(["soft", "set", "tied"]), default="soft", show_default=True, help="What the router learns per training query: soft = every head's own nDCG@10 (graded, no arbitrary tie-breaks); set = the searched label set (the paper's pseudo label); tied = all heads tied at the best single-head nDCG@10.")
@click.option("--top-k", default=None, type=POSITIVE, help=f"Heads routed per query at inference [default: {STATIC_SET_SIZE} for soft targets (the static set's size), else the mean label-set size].")
@click.option("--val-fraction", default=VAL_FRACTION, show_default=True, type=FRACTION, help="Share of training queries held out for early stopping (fixed by qid hash).")
@click.option("--seed", default=RouterConfig.seed, show_default=True, help="Seed of the split and of training.")
@click.option("--knn", "knn", default=None, type=click.IntRange(min=1), help="Build the nearest-neighbour baseline with this many neighbours instead of training (no split, no epochs).")
@click.option("--knn-vote", type=click.Choice(VOTES), default=KnnConfig.vote, show_default=True, help="--knn: each neighbour votes 1, or its cosine similarity (>= 0), for every head of its label.")
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
    from ..data.registry import lookup
    from ..data.trec import read_topics
    from ..heads.from_labels import train_from_labels

    if knn is not None:
        config = KnnConfig(k=knn, vote=knn_vote, top_m=top_k, standardise=not knn_raw, embedding_layer=layer, embedding_pooling=pooling)
    else:
        config = RouterConfig(head_dim=head_dim, sparsity=sparsity, epochs=epochs, patience=patience, seed=seed,
                              embedding_layer=layer, embedding_pooling=pooling, top_k=top_k)
    topic_map = read_topics(lookup(topics, "topics", obj.data_dir))
    click.echo(train_from_labels(labels_path, topic_map, output, config, model=model, targets=targets, val_fraction=val_fraction,
                                 topics_origin=topics, progress=obj.progress))


# --------------------------------------------------------------------------------------------
@pipeline_io(inputs=(*TEXT_SOURCES, "qrels"), outputs=("output", "cv-run"))
@main.command("train-weights")
@scoring_options
@click.option("--qrels", default=None, help="Qrels of the training queries (file or registry name).  [required unless --collections]")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Weights file to write: a head-set file for `rerank --heads`.")
@click.option("--loss", type=click.Choice(LOSSES), default=TrainConfig.loss, show_default=True, help="RankNet pairs, logistic regression on relevant/not, or ListNet (top one).")
@click.option("--penalty", type=click.Choice(PENALTIES), default=TrainConfig.penalty, show_default=True, help="Regularisation of the weights (l1 keeps few heads).")
@click.option("--lambdas", default=None, help="Comma-separated regularisation strengths to cross-validate [default: 10 values from the l1 lambda_max down 1000x; l2: 10 .. 1e-4].")
@click.option("--folds", default=TrainConfig.folds, show_default=True, type=FOLDS, help="Cross-validation folds over training queries for choosing lambda (objective: mean nDCG@10).")
@click.option("--fold-seed", default=TrainConfig.fold_seed, show_default=True, help="Seed of the fold assignment (a hash of seed and qid).")
@fusion_options
@click.option("-l", "--relevance-level", default=TrainConfig.relevance_level, show_default=True, type=RELEVANCE_LEVEL, help="--loss pointwise: the smallest grade counted as a positive.")
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
    from ..heads.weights import nested_cv_predictions, to_head_set, train_weights

    try:
        grid = None if lambdas is None else _lambda_grid(lambdas)
        config = TrainConfig(loss=loss, penalty=penalty, lambdas=grid, folds=folds, fold_seed=fold_seed, relevance_level=relevance_level)
    except ValueError as exc:
        raise click.UsageError(f"--lambdas/--folds: {exc}") from None
    if collections_path:
        _train_weights_pooled(obj, collections_path, output, config, fuse, fuse_dense, cv_run, opts)
        return
    if not qrels:
        raise click.UsageError("Missing option '--qrels' (or give --collections)")
    job = scoring_job(obj, opts)
    data = ranking_data(obj, job, qrels, fuse=fuse, fuse_dense=fuse_dense, k=config.k)
    dataset = data.dataset
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
        click.echo(f"wrote {cv_run}: {len(data.queries)} queries, each ranked by weights trained without its fold ({outer_folds} outer folds)")


def _lambda_grid(text: str) -> tuple[float, ...]:
    """--lambdas: comma-separated finite numbers >= 0 (a ValueError names the bad one)."""
    import math

    grid = tuple(float(v) for v in text.split(","))
    for value, part in zip(grid, text.split(",")):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"lambda {part.strip()!r} is not a finite number >= 0")
        if grid.count(value) > 1:
            raise ValueError(f"lambda {part.strip()!r} is given twice; give each value once")
    return grid


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
    collections = read_collections(collections_path)  # a bad file fails before the model loads
    settings, top_k = prompt_settings_of(opts)
    reranker = Reranker(opts["model"], "all", settings=settings, device=opts["device"], dtype=opts["dtype"], quantize=opts["quantize"],
                        batch_size=batch_size_of(opts, settings), cache=opts["cache_dir"] or True)
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


@pipeline_io(inputs=(*TEXT_SOURCES, "qrels"), outputs=("output", "cv-run"))
@main.command("train-soft-router")
@scoring_options
@click.option("--qrels", required=True, help="Qrels of the training queries (file or registry name).")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Router checkpoint to write (`rerank --router`).")
@click.option("--loss", type=click.Choice(LOSSES), default=SoftRouterConfig.loss, show_default=True, help="Ranking loss of the routed scores (as train-weights).")
@click.option("--sparsity", default=SoftRouterConfig.sparsity, show_default=True, type=NON_NEGATIVE, help="Weight of the L1 regulariser on each query's head weights (mean over queries of sum |w|).")
@fusion_options
@query_embedding_options
@click.option("--head-dim", default=SoftRouterConfig.head_dim, show_default=True, type=HEAD_DIM, help="Size of the per-head embeddings.")
@click.option("--route-k", default=SoftRouterConfig.top_k, show_default=True, type=POSITIVE, help="Heads kept per query at inference (by |weight|).")
@click.option("--epochs", default=SoftRouterConfig.epochs, show_default=True, type=POSITIVE, help="Maximum epochs (full batch; early stopping on the validation objective).")
@click.option("--patience", default=SoftRouterConfig.patience, show_default=True, type=POSITIVE, help="Epochs without validation improvement before stopping.")
@click.option("--val-fraction", default=SoftRouterConfig.val_fraction, show_default=True, type=FRACTION, help="Share of training queries held out for early stopping (fixed by qid hash).")
@click.option("--router-seed", default=SoftRouterConfig.seed, show_default=True, help="Seed of the validation split and of training.")
@click.option("-l", "--relevance-level", default=1, show_default=True, type=RELEVANCE_LEVEL, help="--loss pointwise: the smallest grade counted as a positive.")
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
    from ..heads.soft_router import nested_cv_scores, train_soft_router

    config = SoftRouterConfig(loss=loss, relevance_level=relevance_level, sparsity=sparsity, head_dim=head_dim,
                              epochs=epochs, patience=patience, val_fraction=val_fraction, seed=router_seed,
                              top_k=route_k, embedding_layer=layer, embedding_pooling=pooling)
    job = scoring_job(obj, opts, per_query_heads=("--route-k", route_k))
    data = ranking_data(obj, job, qrels, fuse=fuse, fuse_dense=fuse_dense)
    model = job.reranker.model
    qids = [q.qid for q in data.scored]
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
        click.echo(f"wrote {cv_run}: {len(data.queries)} queries, each ranked by a router trained without its fold ({outer_folds} outer folds)")


# --------------------------------------------------------------------------------------------
@pipeline_io(inputs=("collections",), outputs=("output-dir", "presets-dir"))
@main.command("loco")
@click.option("--collections", "collections_path", required=True, type=click.Path(exists=True, dir_okay=False), help="YAML file of judged collections (see pipelines/collections/development.yaml).")
@click.option("--only", multiple=True, help="Use only these collections (repeatable).")
@click.option("--exclude", multiple=True, help="Leave these collections out entirely (repeatable).")
@click.option("--output-dir", "-o", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder for report.md, report.json and every row's run.")
@click.option("--model", default=Study.model, show_default=True, help="The LLM whose heads are scored.")
@click.option("--mode", type=click.Choice(MODES), default=Study.mode, show_default=True, help="Prompt mode of the per-head scores.")
@click.option("--top-k", default=Study.top_k, show_default=True, type=click.IntRange(min=1), help="Candidates scored per query.")
@click.option("--doc-max-tokens", default=Study.doc_max_tokens, show_default=True, type=click.IntRange(min=0), help="Truncate each document to this many tokens (0: no limit).")
@click.option("--batch-size", default=Study.batch_size, show_default=True, type=click.IntRange(min=1), help="Pointwise prompts per forward pass.")
@click.option("--device", default=Study.device, show_default=True, help="torch device.")
@click.option("--dtype", default=Study.dtype, show_default=True, type=click.Choice(DTYPES), help="Model dtype.")
@click.option("--quantize", default="none", show_default=True, type=click.Choice(QUANTIZATIONS), help="Score (and train presets on) the model with int8 linear layers (its own score cache).")
@click.option("--cache-dir", default=None, type=click.Path(file_okay=False), help="Score cache folder [default: <cache dir>/scores].")
@click.option("--methods", default=",".join(Study.methods), show_default=True, help="Learned rows, comma-separated: heads+bm25, heads+bm25+dense, bm25+dense (no head: the control), heads, static top-16, soft+bm25, soft+bm25+dense (soft routing), routehead, routehead+bm25 (RouteHead hard routing).")
@click.option("--protocols", default=",".join(PROTOCOLS), show_default=True, help="loco: leave one collection out; pooled-cv: 5 query folds over all collections mixed.")
@click.option("--losses", default=",".join(Study.losses), show_default=True, help="Losses inner validation chooses among.")
@click.option("--extra-run", "extra_runs", multiple=True, metavar="ROW=PATTERN", help="Another row from existing runs, '{collection}' in the path: 'ICR listwise=runs/icr/{collection}.trec' (repeatable).")
@click.option("--presets-dir", default=None, type=click.Path(file_okay=False, path_type=Path), help="Also train each head method on the collections (but --presets-exclude) and write it as a preset here (<dir>/<model>/<method>.json), with these scores.")
@click.option("--presets-exclude", multiple=True, default=Study.presets_exclude, show_default=True, help="Collections the presets are NOT trained on (repeatable): the shipped default can then be checked on them, its figure there being exactly the LOCO one.")
@click.option("--max-layer", default=None, type=click.IntRange(min=0), help="Cost cap: only heads of layers 0..N get a weight, so re-ranking stops the forward after layer N.")
@click.option("--jobs", default=Study.jobs, show_default=True, type=click.IntRange(min=1), help="Fit this many (method, held-out collection or fold) pairs at once, in forked processes with one torch thread each (same results).")
@click.pass_obj
def loco_cmd(obj: Context, collections_path: str, only: tuple[str, ...], exclude: tuple[str, ...], output_dir: Path, model: str, mode: str,
             top_k: int, doc_max_tokens: int, batch_size: int, device: str, dtype: str, quantize: str, cache_dir: str | None, methods: str,
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

    from ..eval.loco import METHODS
    from ..eval.loco_study import run_study

    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        raise click.UsageError(f"--methods: unknown {unknown}; known: {', '.join(METHODS)}")
    wanted = [p.strip() for p in protocols.split(",") if p.strip()]
    if not wanted or set(wanted) - set(PROTOCOLS):
        raise click.UsageError(f"--protocols takes {' and/or '.join(PROTOCOLS)}")
    chosen_losses = [x.strip() for x in losses.split(",") if x.strip()]
    if not chosen_losses or set(chosen_losses) - set(LOSSES):
        raise click.UsageError(f"--losses takes {', '.join(LOSSES)} (comma-separated), not {losses!r}")
    extra = {}
    for spec in extra_runs:
        row, sep, pattern = spec.partition("=")
        if not sep or not row.strip() or "{collection}" not in pattern:
            raise click.UsageError(f"--extra-run {spec!r}: expected ROW=PATH with '{{collection}}' in the path")
        if row.strip() in extra:
            raise click.UsageError(f"--extra-run: row {row.strip()!r} is given twice")
        extra[row.strip()] = pattern
    for option, values in (("--methods", chosen), ("--protocols", wanted), ("--losses", chosen_losses), ("--only", only),
                           ("--exclude", exclude)):
        repeated = sorted({v for v in values if list(values).count(v) > 1})
        if repeated:
            raise click.UsageError(f"{option}: {repeated[0]!r} is given twice; give each once")
    obj.apply_threads()
    study = Study(collections=collections_path, output_dir=output_dir, methods=chosen, protocols=wanted,
                  losses=tuple(chosen_losses), only=only, exclude=exclude, model=model,
                  mode=mode, top_k=top_k, doc_max_tokens=doc_max_tokens, batch_size=batch_size, device=device, dtype=dtype,
                  quantize=None if quantize == "none" else quantize, cache_dir=cache_dir, extra_runs=extra, presets_dir=presets_dir, presets_exclude=presets_exclude,
                  max_layer=max_layer, jobs=jobs, command="routehead-pyserini " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    result = run_study(study, data_dir=obj.data_dir, progress=obj.progress)
    for table in result.tables:
        click.echo(f"## {table.protocol}\n\n{table.to_markdown()}")
    for path in result.presets:
        click.echo(f"wrote preset {path}")
