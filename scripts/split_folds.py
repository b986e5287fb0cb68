#!/usr/bin/env python
"""Split a run into cross-validation folds over its queries (folds by
routehead_pyserini.data.folds.fold_of: a seeded hash of the qid, as everywhere in this project):
writes OUT/fold<f>-train.trec (the other folds' queries) and OUT/fold<f>-test.trec (fold f's).

    .venv/bin/python scripts/split_folds.py RUN OUT [--folds 5] [--seed 0] [--data-dir DIR]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from routehead_pyserini.config import data_dir
from routehead_pyserini.data.folds import fold_of
from routehead_pyserini.data.registry import lookup
from routehead_pyserini.data.trec import Run, read_run, write_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run file or a registry name with a run")
    parser.add_argument("out", type=Path)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    run = read_run(lookup(args.run, "run", data_dir(args.data_dir)))
    fold = {qid: fold_of(qid, args.folds, args.seed) for qid in run.qids()}
    args.out.mkdir(parents=True, exist_ok=True)
    for f in range(args.folds):
        for part, keep in (("train", lambda q: fold[q] != f), ("test", lambda q: fold[q] == f)):
            write_run(Run({q: run[q] for q in run.qids() if keep(q)}), args.out / f"fold{f}-{part}.trec", tag="bm25")
    print(f"wrote {args.folds} folds of {len(fold)} queries to {args.out}")


if __name__ == "__main__":
    main()
