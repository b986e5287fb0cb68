#!/usr/bin/env bash
# The leave-one-collection-out and pooled-CV tables of docs/results.md, the shipped presets, and the
# check that `rerank` with no method option reproduces the preset's LOCO figure on TREC DL 2019.
#   scripts/loco_results.sh [model]     (after scripts/score_collections.sh; reads the score cache)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-smollm2-135m}
R="${R:-.venv/bin/routehead-pyserini} -q --threads 1"
OUT=runs/loco/$MODEL
mkdir -p "$OUT"
# listwise ICR (today's default before the presets) where it was scored, as an extra row
$R loco --collections pipelines/collections/development.yaml --model "$MODEL" -o "$OUT" --jobs "${JOBS:-2}" \
   --methods "heads+bm25,heads+bm25+dense,bm25+dense,static top-16,soft+bm25" --losses "${LOSSES:-pointwise}" \
   --extra-run "ICR listwise (old default)=runs/pool/$MODEL/listwise-{collection}.trec" \
   --presets-dir routehead_pyserini/heads/preset_files
# the shipped default on DL19, as a user runs it (the presets are trained without DL19)
$R rerank --model "$MODEL" --run trec-dl-2019 --index trec-dl-2019 -o "$OUT/default-dl19.trec"
$R evaluate trec-dl-2019 "$OUT/default-dl19.trec" --qrels trec-dl-2019 -l 2 --format markdown | tee "$OUT/default-dl19.md"
