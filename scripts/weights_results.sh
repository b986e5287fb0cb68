#!/usr/bin/env bash
# Learned head weights (with and without first-stage fusion) and the dense bi-encoder baseline.
#   scripts/weights_results.sh smollm2-135m [eval-job ...]   learned weights of one LLM (eval jobs: dl19 vaswani cacm cranfield scifact-val, and <set>-pointwise: e.g. dl19-pointwise)
#   scripts/weights_results.sh dense [eval-job ...]          the all-MiniLM-L6-v2 baseline (also: scifact)
# Weights are read from the per-head score cache of scripts/icr_results.sh (no LLM time when it is
# complete). Two protocols:
#   - in-domain: 5-fold cross-validation over DL19 queries (each query ranked by weights trained on
#     the other folds; lambda chosen by an inner 5-fold CV on those training folds only);
#   - transfer: trained on the SciFact training sample (lambda by 5-fold CV there), applied unchanged
#     to every evaluation set with `rerank --heads`.
#   Outputs that exist are kept (the script resumes where it stopped); FORCE=1 recomputes them.
set -euo pipefail
cd "$(dirname "$0")/.."
todo() { [ -n "${FORCE:-}" ] || [ ! -s "$1" ]; }  # true when output $1 must be (re)made
MODEL=${1:?model or dense}; shift
R=".venv/bin/routehead-pyserini -q"
TRAIN=(--run runs/bm25/scifact.trec --index scifact --top-k 20 --doc-max-tokens 128 --sample 200 --seed 0)

job_args() {  # sets args, qrels, lvl, base for one evaluation set
  case $1 in
    dl19)      args=(--run trec-dl-2019 --index trec-dl-2019 --top-k 20); qrels=trec-dl-2019; lvl=2; base=trec-dl-2019 ;;
    vaswani|cacm) args=(--run runs/bm25/$1.trec --index $1 --top-k 20); qrels=$1; lvl=1; base=runs/bm25/$1.trec ;;
    cranfield) args=(--run runs/bm25/cranfield.trec --index cranfield --top-k 20 --doc-max-tokens 128 --sample 100 --seed 0)
               qrels=cranfield; lvl=1; base=runs/bm25/cranfield.trec ;;
    scifact)   args=("${TRAIN[@]}"); qrels=scifact; lvl=1; base=runs/bm25/scifact.trec ;;
    scifact-val) # SciFact train queries 201-250 of the --sample order: disjoint from the training sample
               args=(--run runs/bm25/scifact.trec --index scifact --top-k 20 --doc-max-tokens 128 --sample 50 --sample-offset 200 --seed 0)
               qrels=scifact; lvl=1; base=runs/bm25/scifact.trec ;;
    *) echo "unknown job $1" >&2; exit 2 ;;
  esac
}

if [ "$MODEL" = dense ]; then
  mkdir -p runs/dense
  for job in ${*:-dl19 vaswani cacm cranfield scifact}; do
    job_args "$job"
    $R rerank --method dense "${args[@]}" -o "runs/dense/$job.top20.trec"
    echo "## dense $job (vs BM25)"
    $R evaluate "$base" "runs/dense/$job.top20.trec" --qrels $qrels -l $lvl --common-queries --format markdown | tee "runs/dense/$job.report.md"
  done
  exit 0
fi

W=runs/weights/$MODEL
mkdir -p "$W/dl19"
# 1. transfer: trained on the SciFact sample, without and with fusion (pairwise loss, l1)
todo "$W/scifact.json" && $R train-weights --model "$MODEL" "${TRAIN[@]}" --qrels scifact -o "$W/scifact.json"
todo "$W/scifact-fused.json" && $R train-weights --model "$MODEL" "${TRAIN[@]}" --qrels scifact -o "$W/scifact-fused.json" --fuse
# 2. in-domain: nested 5-fold CV over DL19 queries
job_args dl19
todo "$W/dl19/cv.trec" && $R train-weights --model "$MODEL" "${args[@]}" --qrels $qrels -o "$W/dl19/weights.json" --cv-run "$W/dl19/cv.trec"
todo "$W/dl19/cv-fused.trec" && $R train-weights --model "$MODEL" "${args[@]}" --qrels $qrels -o "$W/dl19/weights-fused.json" --fuse --cv-run "$W/dl19/cv-fused.trec"
# heads only, with a grid that leaves out lambda_max (the first stage), so that some heads are always kept
todo "$W/dl19/cv-heads-only.trec" && $R train-weights --model "$MODEL" "${args[@]}" --qrels $qrels -o "$W/dl19/weights-heads-only.json" \
   --lambdas 0.1,0.05,0.02,0.01,0.005,0.002,0.001,0.0005 --cv-run "$W/dl19/cv-heads-only.trec"
echo "## $MODEL dl19, 5-fold CV over queries (vs BM25)"
$R evaluate "$base" "$W/dl19/cv.trec" "$W/dl19/cv-fused.trec" "$W/dl19/cv-heads-only.trec" --qrels $qrels -l $lvl --format markdown | tee "$W/dl19/report-cv.md"

# 3. the SciFact weights on every evaluation set (from the cache), beside ICR; a job <set>-pointwise
#    instead scores the set pointwise (one prompt per passage) and cross-validates weights over its queries
for job in ${*:-dl19 vaswani cacm cranfield}; do
  if [[ "$job" == *-pointwise ]]; then   # dl19-pointwise, vaswani-pointwise, ...
    job_args "${job%-pointwise}"; P=$W/$job; mkdir -p "$P"; pw=("${args[@]}" --mode pointwise)
    $R rerank --model "$MODEL" "${pw[@]}" --batch-size 5 -o "$P/icr-all-heads.trec"
    for loss in pairwise pointwise; do
      todo "$P/cv-$loss.trec" && $R train-weights --model "$MODEL" "${pw[@]}" --qrels $qrels -l $lvl --loss $loss -o "$P/weights-$loss.json" --cv-run "$P/cv-$loss.trec"
      todo "$P/cv-$loss-fused.trec" && $R train-weights --model "$MODEL" "${pw[@]}" --qrels $qrels -l $lvl --loss $loss --fuse -o "$P/weights-$loss-fused.json" --cv-run "$P/cv-$loss-fused.trec"
    done
    # the bi-encoder cosine as one more feature (logistic loss, the best recipe above on DL19), and its
    # control: BM25 + cosine alone (a lambda that keeps no head), so the heads' own share shows
    todo "$P/cv-pointwise-fused-dense.trec" && $R train-weights --model "$MODEL" "${pw[@]}" --qrels $qrels -l $lvl --loss pointwise --fuse --fuse-dense \
       -o "$P/weights-pointwise-fused-dense.json" --cv-run "$P/cv-pointwise-fused-dense.trec"
    todo "$P/cv-bm25-dense.trec" && $R train-weights --model "$MODEL" "${pw[@]}" --qrels $qrels -l $lvl --loss pointwise --fuse --fuse-dense --lambdas 1e9 \
       -o "$P/weights-bm25-dense.json" --cv-run "$P/cv-bm25-dense.trec"
    # soft routing: per-query head weights from the query embedding (same loss, fusion and folds)
    todo "$P/cv-soft-router-fused.trec" && $R train-soft-router --model "$MODEL" "${pw[@]}" --qrels $qrels -l $lvl --fuse -o "$P/soft-router-fused.pt" \
       --cv-run "$P/cv-soft-router-fused.trec"
    todo "$P/cv-soft-router-fused-dense.trec" && $R train-soft-router --model "$MODEL" "${pw[@]}" --qrels $qrels -l $lvl --fuse --fuse-dense -o "$P/soft-router-fused-dense.pt" \
       --cv-run "$P/cv-soft-router-fused-dense.trec"
    runs=("$P"/{icr-all-heads,cv-pairwise,cv-pairwise-fused,cv-pointwise,cv-pointwise-fused,cv-soft-router-fused}.trec
          "$P"/{cv-bm25-dense,cv-pointwise-fused-dense,cv-soft-router-fused-dense}.trec)
    $R random-order "$base" --top-k 20 -o "$P/random-order.trec"
    if [ "$job" = dl19-pointwise ]; then  # listwise all heads in each order, and both summed (the DL19 cache has both orders)
      for order in bm25 reversed both; do
        $R rerank --model "$MODEL" "${args[@]}" --order $order -o "$P/listwise-$order.trec"
      done
      runs=("$P"/listwise-{bm25,reversed,both}.trec "${runs[@]}")
    fi
    echo "## $MODEL $job, 5-fold CV over queries (vs BM25)"
    dense=(); [ -s "runs/dense/${job%-pointwise}.top20.trec" ] && dense=("runs/dense/${job%-pointwise}.top20.trec")  # scripts/weights_results.sh dense
    $R evaluate "$base" "$P/random-order.trec" "${runs[@]}" "${dense[@]}" --qrels $qrels -l $lvl --common-queries --format markdown \
       | tee "$P/report-cv.md"
    echo "## $MODEL $job (vs pointwise all heads)"
    $R evaluate "${runs[@]}" -b "$P/icr-all-heads.trec" --qrels $qrels -l $lvl --common-queries --format markdown | tee "$P/report-vs-icr.md"
    echo "## $MODEL $job (vs the fusion of BM25 and the bi-encoder alone)"
    $R evaluate "$P"/{cv-bm25-dense,cv-pointwise-fused-dense,cv-soft-router-fused-dense}.trec \
       --qrels $qrels -l $lvl --common-queries --format markdown | tee "$P/report-vs-fusion.md"
    continue
  fi
  job_args "$job"
  O=$W/$job; mkdir -p "$O"
  $R rerank --model "$MODEL" "${args[@]}" -o "$O/icr-all-heads.trec"
  $R rerank --model "$MODEL" "${args[@]}" --heads "$W/scifact.json" -o "$O/scifact-weights.trec"
  $R rerank --model "$MODEL" "${args[@]}" --heads "$W/scifact-fused.json" -o "$O/scifact-weights-fused.trec"
  echo "## $MODEL $job, weights trained on SciFact (vs BM25)"
  $R evaluate "$base" "$O"/{icr-all-heads,scifact-weights,scifact-weights-fused}.trec \
     --qrels $qrels -l $lvl --common-queries --format markdown | tee "$O/report.md"
done
