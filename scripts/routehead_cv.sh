#!/usr/bin/env bash
# RouteHead over *pointwise* scores, in-domain: 5-fold cross-validation over the queries of one set
# (the same folds as train-weights --cv-run: a seeded hash of the qid). For each fold, labels, the
# static sets, the random set, the soft-target router and the kNN router are made on the other
# folds' queries only, and the fold's queries are re-ranked with them; the folds' runs are then
# joined into one run per method and evaluated. All from the pointwise score cache of
# scripts/weights_results.sh MODEL <set>-pointwise.
# The oracle rows come from scripts/head_analysis.sh MODEL <set>-pointwise, when it has run.
# Folds whose runs exist are kept (FORCE=1 remakes them).
#   scripts/routehead_cv.sh smollm2-135m [dl19|vaswani ...]
set -euo pipefail
cd "$(dirname "$0")/.."
todo() { [ -n "${FORCE:-}" ] || [ ! -s "$1" ]; }  # true when output $1 must be (re)made
MODEL=${1:?model}; shift
R=".venv/bin/routehead-pyserini -q"
METHODS=(icr-all-heads static1 random static16 knn-router routehead)
for job in ${*:-dl19 vaswani}; do
  case $job in
    dl19)    run=trec-dl-2019; index=trec-dl-2019; qrels=trec-dl-2019; lvl=2; base=trec-dl-2019 ;;
    vaswani) run=runs/bm25/vaswani.trec; index=vaswani; qrels=vaswani; lvl=1; base=runs/bm25/vaswani.trec ;;
    *) echo "unknown job $job" >&2; exit 2 ;;
  esac
  O=runs/routehead-cv/$MODEL/$job; mkdir -p "$O"
  .venv/bin/python scripts/split_folds.py "$run" "$O/folds"
  for f in 0 1 2 3 4; do
    F=$O/fold$f; mkdir -p "$F"
    todo "$F/routehead.trec" || continue
    train=(--run "$O/folds/fold$f-train.trec" --index $index --top-k 20 --mode pointwise)
    test=(--run "$O/folds/fold$f-test.trec" --index $index --top-k 20 --mode pointwise)
    $R label --model "$MODEL" "${train[@]}" --qrels $qrels -o "$F/labels.jsonl" \
       --static-heads "$F/static{k}.json" --static-k 1,16 --random-heads "$F/random.json" --random-size 16
    $R train --labels "$F/labels.jsonl" --topics $index -o "$F/router.pt" --targets soft --top-k 16
    $R train --labels "$F/labels.jsonl" --topics $index -o "$F/knn.pt" --knn 5 --targets soft --top-k 16
    $R rerank --model "$MODEL" "${test[@]}" -o "$F/icr-all-heads.trec"
    for hs in static1 static16 random; do
      $R rerank --model "$MODEL" "${test[@]}" --heads "$F/$hs.json" -o "$F/$hs.trec"
    done
    $R rerank --model "$MODEL" "${test[@]}" --router "$F/knn.pt" -o "$F/knn-router.trec"
    $R rerank --model "$MODEL" "${test[@]}" --router "$F/router.pt" -o "$F/routehead.trec"
  done
  runs=()
  for m in "${METHODS[@]}"; do cat "$O"/fold{0,1,2,3,4}/$m.trec > "$O/$m.trec"; runs+=("$O/$m.trec"); done
  A=runs/analysis/$MODEL/$job-pointwise; oracle=()
  [ -f "$A/oracle-head.trec" ] && oracle=("$A/oracle-head.trec" "$A/oracle-head-null.trec")
  $R random-order "$base" --top-k 20 -o "$O/random-order.trec"
  echo "## $MODEL $job pointwise, 5-fold CV (vs BM25)"
  $R evaluate "$base" "$O/random-order.trec" "${runs[@]}" "${oracle[@]}" --qrels $qrels -l $lvl --format markdown | tee "$O/report.md"
  echo "## $MODEL $job pointwise, 5-fold CV (vs ICR)"
  $R evaluate "${runs[@]}" --qrels $qrels -l $lvl --format markdown | tee "$O/report-vs-icr.md"
  echo "## $MODEL $job pointwise, 5-fold CV (vs the static top-16 set)"
  $R evaluate "$O"/{static16,knn-router,routehead}.trec --qrels $qrels -l $lvl --format markdown | tee "$O/report-vs-static.md"
done
