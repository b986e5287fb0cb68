import json
import subprocess
import sys

import numpy as np
import pytest

from routehead_pyserini.eval.evaluate import (Measure, MeasureError, build_report, compare, evaluate_run, paired_p_value, parse_measure)
from routehead_pyserini.data.trec import Hit, Run, read_qrels, read_run


def test_parse_measure_names_and_errors():
    assert parse_measure("nDCG@10") == Measure("nDCG", 10)
    assert parse_measure("ndcg@10").trec_eval == "ndcg_cut_10"
    assert parse_measure("RR@10") == Measure("MRR", 10)
    assert parse_measure("Recall@100").trec_eval == "recall_100"
    assert parse_measure("AP").trec_eval == "map"
    assert str(parse_measure("map@100")) == "MAP@100"
    for bad in ("BLEU", "R", "nDCG@0", "nDCG@x"):
        with pytest.raises(MeasureError):
            parse_measure(bad)


QRELS = {"q1": {"a": 2, "b": 1, "c": 0}, "q2": {"x": 1}, "q3": {"y": 1}}


def test_hand_computed_values():
    run = Run({"q1": [Hit("c", 3), Hit("a", 2), Hit("b", 1)], "q2": [Hit("z", 2), Hit("x", 1)], "q9": [Hit("a", 1)]})
    e = evaluate_run(run, QRELS, ["nDCG@10", "MRR@10", "MRR@1", "P@2", "R@100"])
    # q1: gains 0,2,1 ; ideal 2,1,0
    dcg = 2 / np.log2(3) + 1 / np.log2(4)
    idcg = 2 / np.log2(2) + 1 / np.log2(3)
    assert e.per_query["q1"]["nDCG@10"] == pytest.approx(dcg / idcg, abs=1e-4)
    assert e.per_query["q1"]["MRR@10"] == pytest.approx(0.5)
    assert e.per_query["q1"]["MRR@1"] == 0.0
    assert e.per_query["q2"]["P@2"] == pytest.approx(0.5)
    assert e.unjudged_queries == ["q9"] and e.missing_queries == ["q3"]
    assert set(e.per_query) == {"q1", "q2"}
    complete = evaluate_run(run, QRELS, ["nDCG@10"], complete=True)
    assert complete.per_query["q3"]["nDCG@10"] == 0.0 and complete.missing_queries == []


def test_relevance_level_changes_binary_measures_only():
    run = Run({"q1": [Hit("b", 3), Hit("a", 2)]})
    lvl1 = evaluate_run(run, QRELS, ["MRR@10", "nDCG@10"], relevance_level=1)
    lvl2 = evaluate_run(run, QRELS, ["MRR@10", "nDCG@10"], relevance_level=2)
    assert lvl1.per_query["q1"]["MRR@10"] == 1.0 and lvl2.per_query["q1"]["MRR@10"] == 0.5
    assert lvl1.per_query["q1"]["nDCG@10"] == lvl2.per_query["q1"]["nDCG@10"]


def test_compare_counts_and_p_values():
    base = evaluate_run(Run({"q1": [Hit("c", 3), Hit("a", 2)], "q2": [Hit("x", 1)]}), QRELS, ["nDCG@10"], run_name="base")
    better = evaluate_run(Run({"q1": [Hit("a", 3), Hit("b", 2)], "q2": [Hit("x", 1)]}), QRELS, ["nDCG@10"], run_name="new")
    (c,) = compare(better, base)
    assert (c.wins, c.ties, c.losses, c.n) == (1, 1, 0, 2)
    assert 0 < c.p_value <= 1
    assert paired_p_value(np.ones(5), np.ones(5)) == 1.0
    a, b = np.arange(20.0), np.arange(20.0) - 1.0 + np.linspace(0, 0.1, 20)
    p1 = paired_p_value(a, b, "randomization")
    assert p1 == paired_p_value(a, b, "randomization") and p1 < 0.01


def test_report_formats_agree():
    e1 = evaluate_run(Run({"q1": [Hit("c", 3), Hit("a", 2)], "q2": [Hit("x", 1)]}), QRELS, ["nDCG@10"], run_name="base")
    e2 = evaluate_run(Run({"q1": [Hit("a", 3)], "q2": [Hit("z", 1)]}), QRELS, ["nDCG@10"], run_name="new")
    report = build_report([e1, e2], "base")
    data = json.loads(report.to_json())
    assert data["runs"][1]["means"]["nDCG@10"] == pytest.approx(e2.mean("nDCG@10"))
    assert f"{e2.mean('nDCG@10'):.4f}" in report.to_text()
    assert report.to_markdown().startswith("| run | queries | nDCG@10 | W/T/L | p |")
    with pytest.raises(ValueError, match="baseline"):
        build_report([e1, e2], "nope")


@pytest.mark.slow
def test_dl19_bm25_matches_reference_and_trec_eval(shared_data):
    """The shipped DL19 BM25 run: 0.5058 nDCG@10 (Pyserini's published figure), equal to trec_eval's own output."""
    from routehead_pyserini.firststage.jvm import subprocess_env

    d = shared_data / "trec-dl-2019"
    ours = evaluate_run(read_run(d / "run.bm25-pyserini.top100.trec"), read_qrels(d / "qrels.txt"), ["nDCG@10", "MAP@100", "R@100"], relevance_level=2)
    assert round(ours.mean("nDCG@10"), 4) == 0.5058
    out = subprocess.run(
        [sys.executable, "-m", "pyserini.eval.trec_eval", "-c", "-l", "2", "-m", "ndcg_cut.10", "-m", "map_cut.100", "-m", "recall.100",
         str(d / "qrels.txt"), str(d / "run.bm25-pyserini.top100.trec")],
        env=subprocess_env(), capture_output=True, text=True, timeout=300, check=True,
    )
    reference = {line.split()[0]: float(line.split()[2]) for line in out.stdout.splitlines() if "\tall\t" in line}
    assert reference["ndcg_cut_10"] == round(ours.mean("nDCG@10"), 4)
    assert reference["map_cut_100"] == round(ours.mean("MAP@100"), 4)
    assert reference["recall_100"] == round(ours.mean("R@100"), 4)


def test_evaluate_takes_objects_files_and_registered_names(tmp_path):
    from routehead_pyserini.eval.evaluate import evaluate
    from routehead_pyserini.data.trec import write_run
    from routehead_pyserini.pipeline.demo import DEMO_DATA

    qrels = read_qrels(DEMO_DATA / "qrels.txt")
    qid = next(iter(qrels))
    relevant = [d for d, g in qrels[qid].items() if g > 0]
    run = Run({qid: [Hit(relevant[0], 2.0), Hit("not-judged", 1.0)]})
    path = tmp_path / "run.trec"
    write_run(run, path, "test")
    by_object = evaluate(run, qrels, ["nDCG@10", "P@1"])
    assert list(by_object) == ["nDCG@10", "P@1"] and by_object["P@1"] == 1.0
    assert evaluate(path, "demo", ["nDCG@10", "P@1"]) == by_object
    assert evaluate(str(path), DEMO_DATA / "qrels.txt", ["nDCG@10", "P@1"]) == by_object


def test_evaluate_runs_cuts_aligns_and_names_a_run_nobody_judged():
    from routehead_pyserini.eval.evaluate import NoOverlapError, evaluate_runs

    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    full = Run({"q1": [Hit("x", 3.0), Hit("a", 2.0)], "q2": [Hit("b", 1.0)]})
    part = Run({"q1": [Hit("a", 1.0)]})
    cut, other = evaluate_runs([("full", full), ("part", part)], qrels, ["P@1"], top_k=1)
    assert cut.per_query == {"q1": {"P@1": 0.0}, "q2": {"P@1": 1.0}} and other.mean("P@1") == 1.0
    common = evaluate_runs([("full", full), ("part", part)], qrels, ["P@1"], common_queries=True)
    assert [sorted(e.per_query) for e in common] == [["q1"], ["q1"]]
    with pytest.raises(NoOverlapError, match=r"^runs/z\.trec: none of its 1 queries \(e\.g\. zz\) is judged in --qrels x"):
        evaluate_runs([("z", Run({"zz": [Hit("a", 1.0)]}))], qrels, ["P@1"], qrels_name="--qrels x", origins=["runs/z.trec"])
