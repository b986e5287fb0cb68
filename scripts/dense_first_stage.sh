#!/usr/bin/env bash
# The dense first stage (search --dense: all-MiniLM-L6-v2 over an exact faiss index, built on first
# use under the cache folder) against BM25, on every registered collection with a full corpus.
#   scripts/dense_first_stage.sh [vaswani cacm cranfield scifact]
set -euo pipefail
cd "$(dirname "$0")/.."
R=".venv/bin/routehead-pyserini -q"
mkdir -p runs/dense-first-stage
for set in ${*:-vaswani cacm cranfield scifact}; do
  /usr/bin/time -f "%e s wall, %M KB peak: search --dense $set" $R search --dense --index $set --hits 1000 -o runs/dense-first-stage/$set.trec
  echo "## $set: dense first stage (vs BM25)"
  $R evaluate runs/bm25/$set.trec runs/dense-first-stage/$set.trec --qrels $set -m nDCG@10 -m MAP@100 -m R@100 -m R@1000 \
     --format markdown | tee runs/dense-first-stage/$set.report.md
done
