#!/usr/bin/env bash
# Fill the per-head score cache for pooled training and leave-one-collection-out evaluation:
# for every development collection, BM25 top-100 (the first stage), then pointwise per-head scores
# of the top 20 (SmolLM2 by default), and the bi-encoder run of the same candidates.
#   scripts/score_collections.sh [model] [collection ...]
#   QUANTIZE=int8   score the model with int8 linear layers (a score cache of its own)
#   SAMPLE=40       a fixed sample of at most 40 queries of every collection (seed 0; the same
#                   queries for every model; pipelines/collections/development-sample40.yaml;
#                   SAMPLE=20 is its prefix, development-sample20.yaml)
# Resumable: finished BM25 runs are kept and scored queries are read from the score cache.
# One model job at a time; set OMP_NUM_THREADS to the cores you give it.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-smollm2-135m}; shift || true
R="${R:-.venv/bin/routehead-pyserini} -q"
SETTINGS=(--mode pointwise --top-k 20 --doc-max-tokens 128 --batch-size 5)
TAG=$MODEL
if [ -n "${QUANTIZE:-}" ]; then SETTINGS+=(--quantize "$QUANTIZE"); TAG=$MODEL-$QUANTIZE; fi
[ -n "${SAMPLE:-}" ] && TAG=$TAG-sample$SAMPLE
mkdir -p runs/bm25 "runs/pool/$TAG"
for c in ${*:-trec-dl-2019 adi medline lisa cacm vaswani scifact cranfield}; do
  if [ "$c" = trec-dl-2019 ]; then run=trec-dl-2019; else
    run=runs/bm25/$c.trec
    [ -s "$run" ] || $R search --index "$c" --output "$run" --hits 100
  fi
  sample=()  # fixed samples of the two largest sets (the CPU budget; the score cache makes more additive)
  [ "$c" = scifact ] && sample=(--sample "${SCIFACT_SAMPLE:-300}" --seed 0)
  [ "$c" = cranfield ] && sample=(--sample "${CRANFIELD_SAMPLE:-100}" --seed 0)
  [ -s "runs/pool/dense-$c.trec" ] || $R rerank --method dense --run "$run" --index "$c" --top-k 20 "${sample[@]}" \
     -o "runs/pool/dense-$c.trec"
  [ -n "${SAMPLE:-}" ] && sample=(--sample "$SAMPLE" --seed 0)
  echo "$(date +%T) scoring $c ($TAG)"
  $R rerank --model "$MODEL" --run "$run" --index "$c" "${SETTINGS[@]}" "${sample[@]}" --heads all \
     -o "runs/pool/$TAG/pointwise-all-$c.trec"
done
echo "$(date +%T) all scored ($TAG)"
