#!/usr/bin/env bash
# Head analyses behind docs/results.md, read from the score cache that scripts/icr_results.sh fills
# (run that first with the same model and jobs; anything not cached is computed here).
#   scripts/head_analysis.sh smollm2-135m [job ...]   (also dl19-pointwise, vaswani-pointwise: the pointwise caches of scripts/weights_results.sh)
# Writes runs/analysis/<model>/<job>/{*.trec,report.md,heads.json} and prints each report.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:?model}; shift
JOBS=${*:-dl19 dl19-rev vaswani cacm dl19-100 scifact cranfield}
R=".venv/bin/routehead-pyserini -q"
OUT=runs/analysis/$MODEL
for job in $JOBS; do
  case $job in
    dl19)      args=(--run trec-dl-2019 --index trec-dl-2019 --qrels trec-dl-2019 -l 2 --top-k 20) ;;
    dl19-rev)  args=(--run trec-dl-2019 --index trec-dl-2019 --qrels trec-dl-2019 -l 2 --top-k 20 --order reversed) ;;
    dl19-100)  args=(--run trec-dl-2019 --index trec-dl-2019 --qrels trec-dl-2019 -l 2 --top-k 100) ;;
    vaswani|cacm) args=(--run runs/bm25/$job.trec --index $job --qrels $job --top-k 20) ;;
    scifact)   args=(--run runs/bm25/scifact.trec --index scifact --qrels scifact --top-k 20 --doc-max-tokens 128 --sample 200 --seed 0) ;;
    scifact-val) args=(--run runs/bm25/scifact.trec --index scifact --qrels scifact --top-k 20 --doc-max-tokens 128 --sample 50 --sample-offset 200 --seed 0) ;;
    cranfield) args=(--run runs/bm25/cranfield.trec --index cranfield --qrels cranfield --top-k 20 --doc-max-tokens 128 --sample 100 --seed 0) ;;
    dl19-pointwise) args=(--run trec-dl-2019 --index trec-dl-2019 --qrels trec-dl-2019 -l 2 --top-k 20 --mode pointwise) ;;
    vaswani-pointwise) args=(--run runs/bm25/vaswani.trec --index vaswani --qrels vaswani --top-k 20 --mode pointwise) ;;
    *) echo "unknown job $job" >&2; exit 2 ;;
  esac
  echo "## $MODEL $job"
  $R analyze-heads --model "$MODEL" "${args[@]}" -o "$OUT/$job"
done
