#!/usr/bin/env bash
# RouteHead and its baselines: labels, static and random head sets, the learned router and the kNN
# router are all chosen on the SciFact training sample; every method is then evaluated on the
# other datasets (never on what it was chosen on), from the score cache of scripts/icr_results.sh.
#   scripts/routehead_results.sh smollm2-135m [eval-job ...]    (eval jobs: dl19 vaswani cacm cranfield scifact-val)
# The per-query oracle rows come from scripts/head_analysis.sh (runs/analysis/<model>/<job>/oracle-head*.trec).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:?model}; shift
EVALS=${*:-dl19 vaswani cacm cranfield scifact-val}
R=".venv/bin/routehead-pyserini -q"
W=runs/routehead/$MODEL
mkdir -p "$W"
TRAIN=(--run runs/bm25/scifact.trec --index scifact --top-k 20 --doc-max-tokens 128 --sample 200 --seed 0)

# 1. pseudo labels on the training sample (+ the static top-16 set and a random set of the routed size, 16)
$R label --model "$MODEL" "${TRAIN[@]}" --qrels scifact -o "$W/labels.jsonl" \
   --static-heads "$W/static{k}.json" --static-k 1,16 --random-heads "$W/random.json" --random-size 16
# 2. the learned router (soft targets: every head's nDCG@10, 16 heads per query; and the paper's
#    label sets) and the nearest-neighbour router (soft targets: each neighbour's top-16 heads)
$R train --labels "$W/labels.jsonl" --topics scifact -o "$W/router.pt" --targets soft --top-k 16
$R train --labels "$W/labels.jsonl" --topics scifact -o "$W/router-set.pt" --targets set
$R train --labels "$W/labels.jsonl" --topics scifact -o "$W/knn.pt" --knn 5 --targets soft --top-k 16
# soft routing: per-query head weights trained on the ranking loss of the same cached scores (16 heads kept)
$R train-soft-router --model "$MODEL" "${TRAIN[@]}" --qrels scifact -o "$W/soft-router.pt" --route-k 16

# 3. every method on every evaluation set (all from the cache: no LLM time beyond routing)
for job in $EVALS; do
  case $job in
    dl19)      args=(--run trec-dl-2019 --index trec-dl-2019 --top-k 20); qrels=trec-dl-2019; lvl=2; base=trec-dl-2019 ;;
    vaswani|cacm) args=(--run runs/bm25/$job.trec --index $job --top-k 20); qrels=$job; lvl=1; base=runs/bm25/$job.trec ;;
    cranfield) args=(--run runs/bm25/cranfield.trec --index cranfield --top-k 20 --doc-max-tokens 128 --sample 100 --seed 0)
               qrels=cranfield; lvl=1; base=runs/bm25/cranfield.trec ;;
    scifact-val) # SciFact train queries 201-250 of the --sample order: disjoint from the training sample
               args=(--run runs/bm25/scifact.trec --index scifact --top-k 20 --doc-max-tokens 128 --sample 50 --sample-offset 200 --seed 0)
               qrels=scifact; lvl=1; base=runs/bm25/scifact.trec ;;
    *) echo "unknown job $job" >&2; exit 2 ;;
  esac
  O=$W/$job; mkdir -p "$O"
  $R random-order "$base" --top-k 20 -o "$O/random-order.trec"   # (sampled sets: --common-queries below)
  $R rerank --model "$MODEL" "${args[@]}" -o "$O/icr-all-heads.trec"
  for hs in static1 static16 random; do
    $R rerank --model "$MODEL" "${args[@]}" --heads "$W/$hs.json" -o "$O/$hs.trec"
  done
  $R rerank --model "$MODEL" "${args[@]}" --router "$W/knn.pt" -o "$O/knn-router.trec"
  $R rerank --model "$MODEL" "${args[@]}" --router "$W/router-set.pt" -o "$O/routehead-set.trec"
  $R rerank --model "$MODEL" "${args[@]}" --router "$W/router.pt" -o "$O/routehead.trec"
  $R rerank --model "$MODEL" "${args[@]}" --router "$W/soft-router.pt" -o "$O/soft-router.trec"
  A=runs/analysis/$MODEL/$job; oracle=()
  [ -f "$A/oracle-head.trec" ] && oracle=("$A/oracle-head.trec" "$A/oracle-head-null.trec")
  echo "## $MODEL $job (vs BM25)"
  $R evaluate "$base" "$O"/{random-order,icr-all-heads,static1,random,static16,knn-router,routehead-set,routehead,soft-router}.trec "${oracle[@]}" \
     --qrels $qrels -l $lvl --common-queries --format markdown | tee "$O/report.md"
  echo "## $MODEL $job (vs ICR)"
  $R evaluate "$O"/{icr-all-heads,static1,random,static16,knn-router,routehead-set,routehead,soft-router}.trec \
     --qrels $qrels -l $lvl --common-queries --format markdown | tee "$O/report-vs-icr.md"
  echo "## $MODEL $job (vs the static top-16 set)"
  $R evaluate "$O"/{static16,routehead-set,routehead,soft-router}.trec \
     --qrels $qrels -l $lvl --common-queries --format markdown | tee "$O/report-vs-static.md"
done
