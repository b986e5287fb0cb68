#!/usr/bin/env bash
# RouteHead and its baselines: labels, static and random head sets, the learned router and the kNN
# router are all chosen on the SciFact training sample; every method is then evaluated on the
# other datasets (never on what it was chosen on), from the score cache of scripts/icr_results.sh.
#   scripts/routehead_results.sh smollm2-135m [eval-job ...]    (eval jobs: dl19 vaswani cacm cranfield)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:?model}; shift
EVALS=${*:-dl19 vaswani cacm cranfield}
R=".venv/bin/routehead-pyserini -q"
W=runs/routehead/$MODEL
mkdir -p "$W"
TRAIN=(--run runs/bm25/scifact.trec --index scifact --top-k 20 --doc-max-tokens 128 --sample 200 --seed 0)

# 1. pseudo labels on the training sample (+ the static top-16 set and a random set of the routed size)
$R label --model "$MODEL" "${TRAIN[@]}" --qrels scifact -o "$W/labels.jsonl" \
   --static-heads "$W/static{k}.json" --static-k 1,16 --random-heads "$W/random.json"
# 2. the learned router and the nearest-neighbour router, on the same labels
$R train --labels "$W/labels.jsonl" --topics scifact -o "$W/router.pt"
$R train --labels "$W/labels.jsonl" --topics scifact -o "$W/knn.pt" --knn 5

# 3. every method on every evaluation set (all from the cache: no LLM time beyond routing)
for job in $EVALS; do
  case $job in
    dl19)      args=(--run trec-dl-2019 --index trec-dl-2019 --top-k 20); qrels=trec-dl-2019; lvl=2; base=trec-dl-2019 ;;
    vaswani|cacm) args=(--run runs/bm25/$job.trec --index $job --top-k 20); qrels=$job; lvl=1; base=runs/bm25/$job.trec ;;
    cranfield) args=(--run runs/bm25/cranfield.trec --index cranfield --top-k 20 --doc-max-tokens 128 --sample 100 --seed 0)
               qrels=cranfield; lvl=1; base=runs/bm25/cranfield.trec ;;
    *) echo "unknown job $job" >&2; exit 2 ;;
  esac
  O=$W/$job; mkdir -p "$O"
  $R random-order "$base" --top-k 20 -o "$O/random-order.trec"   # (sampled sets: --common-queries below)
  $R rerank --model "$MODEL" "${args[@]}" -o "$O/icr-all-heads.trec"
  for hs in static1 static16 random; do
    $R rerank --model "$MODEL" "${args[@]}" --heads "$W/$hs.json" -o "$O/$hs.trec"
  done
  $R rerank --model "$MODEL" "${args[@]}" --router "$W/knn.pt" -o "$O/knn-router.trec"
  $R rerank --model "$MODEL" "${args[@]}" --router "$W/router.pt" -o "$O/routehead.trec"
  echo "## $MODEL $job (vs BM25)"
  $R evaluate "$base" "$O"/{random-order,icr-all-heads,static1,random,static16,knn-router,routehead}.trec \
     --qrels $qrels -l $lvl --common-queries --format markdown | tee "$O/report.md"
  echo "## $MODEL $job (vs ICR)"
  $R evaluate "$O"/{icr-all-heads,static1,random,static16,knn-router,routehead}.trec \
     --qrels $qrels -l $lvl --common-queries --format markdown | tee "$O/report-vs-icr.md"
done
