"""Option types (cli/types.py): finite floats in a range, integer lists, one-word tags; and a
byte-order mark in a topics file gives the right qids end to end (issue #22)."""
import json

import click
import pytest
from click.testing import CliRunner

from routehead_pyserini.cli import main
from routehead_pyserini.cli.types import FRACTION, NON_NEGATIVE, UNIT, WORD, IntList, finite_range
from routehead_pyserini.data.trec import read_qrels, read_run
from routehead_pyserini.pipeline.demo import DEMO_DATA


@pytest.mark.parametrize("kind, value, expected", [
    (NON_NEGATIVE, "0.9", 0.9), (NON_NEGATIVE, "0", 0.0), (UNIT, "1", 1.0), (FRACTION, "0", 0.0), (finite_range(), "-1e300", -1e300),
])
def test_finite_values_pass(kind, value, expected):
    assert kind.convert(value, None, None) == expected


@pytest.mark.parametrize("kind, value, message", [
    (NON_NEGATIVE, "nan", "'nan' is not a finite number"),
    (NON_NEGATIVE, "inf", "'inf' is not a finite number"),
    (finite_range(), "1e999", "'1e999' is not a finite number"),
    (finite_range(), float("-inf"), "-inf is not a finite number"),
    (NON_NEGATIVE, "-0.5", "-0.5 is not in the range x>=0"),
    (UNIT, "1.5", "1.5 is not in the range 0<=x<=1"),
    (FRACTION, "1", "1.0 is not in the range 0<=x<1"),
    (FRACTION, "NaN", "'NaN' is not a finite number"),
    (UNIT, "x", "'x' is not a valid float"),
])
def test_non_finite_and_out_of_range_values_fail(kind, value, message):
    with pytest.raises(click.BadParameter, match=message.replace(".", r"\.").replace("(", r"\(")):
        kind.convert(value, None, None)


def test_int_list_and_word():
    assert IntList(min=1).convert("1,16", None, None) == "1,16"
    for bad, message in (("1,x", "'x' is not an integer"), ("16,0", "0 is below 1"), ("1.5", "'1.5' is not an integer")):
        with pytest.raises(click.BadParameter, match=message):
            IntList(min=1).convert(bad, None, None)
    assert WORD.convert("bm25-k1", None, None) == "bm25-k1"
    for bad in ("two words", "tab\there", ""):
        with pytest.raises(click.BadParameter, match="one word without whitespace"):
            WORD.convert(bad, None, None)


def test_search_options_are_usage_errors(jvm, demo_index, tmp_path):
    for args, message in ((["--k1", "nan"], "'--k1': 'nan' is not a finite number"),
                          (["--b", "1.5"], "'--b': 1.5 is not in the range 0<=x<=1"),
                          (["--run-tag", "two words"], "'--run-tag': 'two words' must be one word")):
        result = CliRunner().invoke(main, ["-q", "search", "--index", str(demo_index), "--topics", "demo",
                                           "-o", str(tmp_path / "r.trec"), *args])
        assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "r.trec").exists()


def test_search_on_topics_with_a_byte_order_mark_writes_the_right_qids(jvm, demo_index, tmp_path):
    """A topics file saved with a BOM (Windows editors do): the first qid is q01, not '\\ufeffq01',
    so it matches the qrels and evaluates."""
    lines = (DEMO_DATA / "queries.jsonl").read_text(encoding="utf-8").splitlines()[:2]
    tsv = "".join(f"{json.loads(line)['_id']}\t{json.loads(line)['text']}\n" for line in lines)
    topics = tmp_path / "topics.tsv"
    topics.write_bytes(("\ufeff" + tsv).encode("utf-8"))
    run_path = tmp_path / "r.trec"
    result = CliRunner().invoke(main, ["-q", "search", "--index", str(demo_index), "--topics", str(topics),
                                       "-o", str(run_path), "--hits", "3"])
    assert result.exit_code == 0, result.output
    assert run_path.read_bytes().startswith(b"q01 Q0 ")
    assert read_run(run_path).qids() == ["q01", "q02"]
    assert set(read_run(run_path).qids()) <= set(read_qrels(DEMO_DATA / "qrels.txt"))


def test_heads_reads_a_head_set_file_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "h.json"
    path.write_bytes('\ufeff{"format": "routehead-heads/1", "heads": [[1, 2]], "weights": [0.5]}\n'.encode("utf-8"))
    result = CliRunner().invoke(main, ["-q", "heads", str(path)])
    assert result.exit_code == 0, result.output
    assert "1 heads: 1.2" in result.output
