#!/usr/bin/env bash
# The leave-one-collection-out and pooled-CV tables of docs/results.md for one model, the presets
# trained from them (into runs/presets/, copied into the package by hand when they ship), and the
# layer-cap curve of the best method.
#   scripts/loco_results.sh [model]     (after scripts/score_collections.sh; reads the score cache)
#   QUANTIZE=int8                        the model's int8 scores (scored with QUANTIZE=int8 too)
#   COLLECTIONS=pipelines/collections/development-sample40.yaml   the fixed 40-query samples
#   CAPS="5 11 17"                       also the layer-cap curve of heads+bm25+dense at these caps
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-smollm2-135m}
R="${R:-.venv/bin/routehead-pyserini} -q --threads 1"
COLLECTIONS=${COLLECTIONS:-pipelines/collections/development.yaml}
QUANTIZE=${QUANTIZE:-none}
TAG=$MODEL
[ "$QUANTIZE" != none ] && TAG=$TAG-$QUANTIZE
case "$COLLECTIONS" in *-sample[0-9]*.yaml) TAG=$TAG-$(basename "${COLLECTIONS##*-}" .yaml);; esac  # e.g. ...-int8-sample40
OUT=runs/loco/$TAG
METHODS="heads+bm25,heads+bm25+dense,bm25+dense,static top-16,soft+bm25,routehead,routehead+bm25"
mkdir -p "$OUT"
$R loco --collections "$COLLECTIONS" --model "$MODEL" --quantize "$QUANTIZE" -o "$OUT" --jobs "${JOBS:-2}" \
   --methods "$METHODS" --losses "${LOSSES:-pointwise}" --presets-dir "runs/presets/$TAG"
for cap in ${CAPS:-}; do
  $R loco --collections "$COLLECTIONS" --model "$MODEL" --quantize "$QUANTIZE" -o "$OUT-cap$cap" --jobs "${JOBS:-2}" \
     --methods heads+bm25+dense,heads+bm25 --protocols loco --losses "${LOSSES:-pointwise}" --max-layer "$cap"
done
