#!/usr/bin/env bash
# All-heads attention re-ranking (ICR) of BM25 candidates on every shared dataset, for one model.
# Fills the per-head score cache that the head analyses (best single head, oracle) read, and
# writes runs/icr/<model>/<dataset>.<order>.top<k>.trec. Resumable: rerun it after an interruption.
#   scripts/icr_results.sh smollm2-135m [job ...]     (jobs: dl19 dl19-rev dl19-100 vaswani cacm scifact scifact-val cranfield)
# Needs the BM25 runs of docs/results.md (runs/bm25/<dataset>.trec).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:?model}; shift
JOBS=${*:-dl19 dl19-rev vaswani cacm dl19-100 scifact cranfield}
R=".venv/bin/routehead-pyserini -q"
OUT=runs/icr/$MODEL
mkdir -p "$OUT"
for job in $JOBS; do
  start=$(date +%s)
  case $job in
    dl19)      $R rerank --model "$MODEL" --run trec-dl-2019 --index trec-dl-2019 --top-k 20 -o $OUT/dl19.bm25.top20.trec ;;
    dl19-rev)  $R rerank --model "$MODEL" --run trec-dl-2019 --index trec-dl-2019 --top-k 20 --order reversed -o $OUT/dl19.reversed.top20.trec ;;
    dl19-100)  $R rerank --model "$MODEL" --run trec-dl-2019 --index trec-dl-2019 --top-k 100 -o $OUT/dl19.bm25.top100.trec ;;
    vaswani|cacm)
               $R rerank --model "$MODEL" --run runs/bm25/$job.trec --index $job --top-k 20 -o $OUT/$job.bm25.top20.trec ;;
    scifact)   $R rerank --model "$MODEL" --run runs/bm25/scifact.trec --index scifact --top-k 20 --doc-max-tokens 128 \
                 --sample 200 --seed 0 -o $OUT/scifact200.bm25.top20.trec ;;
    scifact-val) $R rerank --model "$MODEL" --run runs/bm25/scifact.trec --index scifact --top-k 20 --doc-max-tokens 128 \
                 --sample 50 --sample-offset 200 --seed 0 -o $OUT/scifact-val50.bm25.top20.trec ;;
    cranfield) $R rerank --model "$MODEL" --run runs/bm25/cranfield.trec --index cranfield --top-k 20 --doc-max-tokens 128 --sample 100 --seed 0 \
                 -o $OUT/cranfield100.bm25.top20.trec ;;
    *) echo "unknown job $job" >&2; exit 2 ;;
  esac
  echo "$MODEL $job done in $(( $(date +%s) - start )) s"
done
