import re

import pytest

from routehead_pyserini.data.trec import (Hit, Run, RunWriteError, TrecFormatError, count_ties, read_qrels, read_run, read_text, read_topics,
                                          write_qrels, write_run, write_topics)
from routehead_pyserini.errors import UserError


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_run_round_trip_is_byte_identical(tmp_path):
    run = Run({"q1": [Hit("d3", 2.5), Hit("d1", 1.0 / 3.0)], "q0": [Hit("d2", -1e-9)]})
    first, second = tmp_path / "a.trec", tmp_path / "b.trec"
    write_run(run, first, tag="x")
    write_run(read_run(first), second, tag="x")
    assert first.read_bytes() == second.read_bytes()
    assert read_run(first).hits == run.hits  # scores survive exactly, query order kept
    assert first.read_text().splitlines()[0] == "q1 Q0 d3 1 2.5 x"


def test_malformed_run_line_names_file_and_line(tmp_path):
    path = _write(tmp_path / "bad.trec", "q1 Q0 d1 1 3.0 t\nq1 Q0 d2 2 t\n")
    with pytest.raises(TrecFormatError) as err:
        read_run(path)
    assert f"{path}:2:" in str(err.value) and "6 fields" in str(err.value)


def test_non_numeric_score_is_an_error(tmp_path):
    path = _write(tmp_path / "bad.trec", "q1 Q0 d1 1 high t\n")
    with pytest.raises(TrecFormatError, match=r"bad.trec:1: score 'high' is not a number"):
        read_run(path)


def test_nan_score_is_an_error(tmp_path):
    path = _write(tmp_path / "bad.trec", "q1 Q0 d1 1 nan t\n")
    with pytest.raises(TrecFormatError, match="NaN"):
        read_run(path)


def test_duplicates_keep_first_or_fail_when_strict(tmp_path):
    path = _write(tmp_path / "dup.trec", "q1 Q0 d1 1 3.0 t\nq1 Q0 d2 2 2.0 t\nq1 Q0 d1 3 9.0 t\n")
    run = read_run(path)
    assert run.duplicates == 1
    assert run["q1"] == [Hit("d1", 3.0), Hit("d2", 2.0)]
    with pytest.raises(TrecFormatError, match="dup.trec:3: duplicate document 'd1'"):
        read_run(path, strict=True)


def test_hits_sorted_by_score_and_ties_by_file_rank(tmp_path):
    path = _write(tmp_path / "r.trec", "q Q0 b 2 1.0 t\nq Q0 c 3 5.0 t\nq Q0 a 1 1.0 t\nq Q0 z 4 1.0 t\n")
    run = read_run(path)
    assert [h.docid for h in run["q"]] == ["c", "a", "b", "z"]
    assert count_ties(run) == 2


def test_run_top_and_dict():
    run = Run({"q": [Hit("a", 3.0), Hit("b", 2.0), Hit("c", 1.0)]})
    assert run.top(2).as_dict() == {"q": {"a": 3.0, "b": 2.0}}
    assert run.num_hits() == 3


def test_bad_run_tag_rejected(tmp_path):
    with pytest.raises(ValueError, match="one non-empty word"):
        write_run(Run({"q": [Hit("a", 1.0)]}), tmp_path / "x.trec", tag="two words")


def test_trec_and_beir_qrels(tmp_path):
    trec = _write(tmp_path / "q.txt", "1 0 d1 2\n1 0 d2 0\n2 Q0 d9 1\n")
    beir = _write(tmp_path / "q.tsv", "query-id\tcorpus-id\tscore\n1\td1\t2\n1\td2\t0\n2\td9\t1\n")
    expected = {"1": {"d1": 2, "d2": 0}, "2": {"d9": 1}}
    assert read_qrels(trec) == expected
    assert read_qrels(beir) == expected
    out = tmp_path / "out.txt"
    write_qrels(expected, out)
    assert read_qrels(out) == expected


def test_qrels_errors_and_duplicates(tmp_path):
    with pytest.raises(TrecFormatError, match=r"q.txt:2: relevance 'yes' is not an integer"):
        read_qrels(_write(tmp_path / "q.txt", "1 0 d1 1\n1 0 d2 yes\n"))
    with pytest.raises(TrecFormatError, match=r"q2.txt:1: expected 4 fields"):
        read_qrels(_write(tmp_path / "q2.txt", "1 d1 1\n"))
    assert read_qrels(_write(tmp_path / "q3.txt", "1 0 d1 1\n1 0 d1 3\n")) == {"1": {"d1": 3}}


def test_topics_in_three_formats(tmp_path):
    tsv = _write(tmp_path / "t.tsv", "101\tflea life cycle\n102\twhat is\tan axon\n")
    jsonl = _write(tmp_path / "t.jsonl", '{"_id": "101", "text": "flea life cycle"}\n{"_id": "102", "text": "what is\\tan axon"}\n')
    trec = _write(
        tmp_path / "t.txt",
        "<top>\n<num> Number: 101\n<title> flea life\n cycle\n<desc> Description:\nignored\n</top>\n"
        "<top>\n<num> 102\n<title> Topic: axon\n</top>\n",
    )
    assert read_topics(tsv) == {"101": "flea life cycle", "102": "what is\tan axon"}
    assert read_topics(jsonl) == {"101": "flea life cycle", "102": "what is\tan axon"}
    assert read_topics(trec) == {"101": "flea life cycle", "102": "axon"}
    out = tmp_path / "out.tsv"
    write_topics(read_topics(tsv), out)
    assert read_topics(out) == {"101": "flea life cycle", "102": "what is an axon"}


def test_malformed_topics(tmp_path):
    with pytest.raises(TrecFormatError, match=r"t.jsonl:2: invalid JSON"):
        read_topics(_write(tmp_path / "t.jsonl", '{"_id": "1", "text": "a"}\n{"_id": \n'))
    with pytest.raises(TrecFormatError, match=r"t.tsv:1: expected 'qid<TAB>query text'"):
        read_topics(_write(tmp_path / "t.tsv", "no tab here\n"))


def test_shared_dl19_run_reads(shared_data):
    run = read_run(shared_data / "trec-dl-2019" / "run.bm25-pyserini.top100.trec")
    assert len(run) == 43 and run.num_hits() == 4300 and run.duplicates == 0
    for hits in run.hits.values():
        assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))


# ---- issue #22: finite numbers, integer ranks and grades, ids, duplicates, byte-order marks ----

@pytest.mark.parametrize("score", ["inf", "-inf", "+inf", "Infinity", "1e999", "-1e999"])
def test_infinite_score_is_an_error_naming_the_line(tmp_path, score):
    path = _write(tmp_path / "bad.trec", f"q1 Q0 d0 1 2.0 t\nq1 Q0 d1 2 {score} t\n")
    with pytest.raises(TrecFormatError, match=rf"bad\.trec:2: score is not finite \('{re.escape(score)}' reads as -?inf\)"):
        read_run(path)


@pytest.mark.parametrize("rank", ["1.5", "1.0", "nan", "inf", "1e3", "x"])
def test_rank_must_be_an_integer(tmp_path, rank):
    path = _write(tmp_path / "bad.trec", f"q1 Q0 d1 {rank} 2.0 t\n")
    with pytest.raises(TrecFormatError, match=rf"bad\.trec:1: rank '{re.escape(rank)}' is not an integer"):
        read_run(path)


@pytest.mark.parametrize("grade", ["1.0", "nan", "inf", "1e3", "1_0"])
def test_qrels_grade_must_be_an_integer(tmp_path, grade):
    path = _write(tmp_path / "q.txt", f"q1 0 d1 {grade}\n")
    with pytest.raises(TrecFormatError, match=rf"q\.txt:1: relevance '{re.escape(grade)}' is not an integer"):
        read_qrels(path)
    assert read_qrels(_write(tmp_path / "ok.txt", "q1 0 d1 -1\nq1 0 d2 +2\n")) == {"q1": {"d1": -1, "d2": 2}}


def test_beir_qrels_ids_with_whitespace_are_errors(tmp_path):
    path = _write(tmp_path / "q.tsv", "query-id\tcorpus-id\tscore\nq1\td 1\t1\n")
    with pytest.raises(TrecFormatError, match=r"q\.tsv:2: document id 'd 1' contains whitespace \(TREC run lines"):
        read_qrels(path)


def test_a_utf8_byte_order_mark_is_dropped_everywhere(tmp_path):
    bom = "\ufeff"
    run = _write(tmp_path / "r.trec", bom + "q1 Q0 d1 1 2.0 t\n")
    assert read_run(run).qids() == ["q1"]
    qrels = _write(tmp_path / "q.tsv", bom + "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    assert read_qrels(qrels) == {"q1": {"d1": 1}}  # the BEIR header is still recognised
    assert read_qrels(_write(tmp_path / "q.txt", bom + "q1 0 d1 1\n")) == {"q1": {"d1": 1}}
    for name, text in (("t.tsv", "q1\tbees\n"), ("t.jsonl", '{"_id": "q1", "text": "bees"}\n'),
                       ("t.txt", "<top>\n<num> Number: q1\n<title> bees\n</top>\n")):
        assert read_topics(_write(tmp_path / name, bom + text)) == {"q1": "bees"}, name
    assert read_text(_write(tmp_path / "x.txt", bom + "a\n" + bom + "b\n")) == "a\n" + bom + "b\n"  # only at the start


def test_utf16_is_named(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_bytes("q1\tbees\n".encode("utf-16"))
    with pytest.raises(TrecFormatError, match=r"t\.tsv:1: not UTF-8 text but UTF-16"):
        read_topics(path)


@pytest.mark.parametrize("name, text, line, first", [
    ("t.tsv", "q1\ta\nq2\tb\n\nq1\tc\n", 4, 1),
    ("t.jsonl", '{"_id": "q1", "text": "a"}\n{"_id": "q1", "text": "a"}\n', 2, 1),
    ("t.jsonl", '{"_id": 1, "text": "a"}\n{"_id": "1", "text": "b"}\n', 2, 1),
    ("t.txt", "<top>\n<num> Number: q1\n<title> a\n</top>\n\n<top>\n<num> Number: q1\n<title> b\n</top>\n", 6, 1),
])
def test_a_duplicate_query_id_names_both_lines(tmp_path, name, text, line, first):
    with pytest.raises(TrecFormatError, match=rf"{re.escape(name)}:{line}: duplicate query id '(q1|1)' \(first at line {first}\)"):
        read_topics(_write(tmp_path / name, text))


@pytest.mark.parametrize("name, text", [
    ("t.tsv", "q 1\tbees\n"),
    ("t.jsonl", '{"_id": "q\\t1", "text": "bees"}\n'),
    ("t.jsonl", '{"_id": "", "text": "bees"}\n'),
    ("t.jsonl", '{"_id": ["q1"], "text": "bees"}\n'),
])
def test_query_ids_that_break_a_run_line_are_errors(tmp_path, name, text):
    with pytest.raises(TrecFormatError, match=rf"{re.escape(name)}:1: query id .* (whitespace|empty|not a string)"):
        read_topics(_write(tmp_path / name, text))


def test_tsv_topics_count_lines_as_the_file_does(tmp_path):
    path = _write(tmp_path / "t.tsv", "q1\tform\x0cfeed\nq2\t  \n")  # a form feed is not a line break
    with pytest.raises(TrecFormatError, match=r"t\.tsv:2: query q2 has empty text"):
        read_topics(path)


@pytest.mark.parametrize("hits, message", [
    ({"q1": [Hit("d1", float("nan"))]}, r"query q1, document d1: score nan is not finite"),
    ({"q1": [Hit("d1", 1.0), Hit("d2", float("-inf"))]}, r"query q1, document d2: score -inf is not finite"),
    ({"q1": [Hit("d 1", 1.0)]}, r"query q1: document id 'd 1' contains whitespace"),
    ({"q1": [Hit("", 1.0)]}, r"query q1: document id '' is empty"),
    ({"q\t1": [Hit("d1", 1.0)]}, r"query id 'q\\t1' contains whitespace"),
])
def test_write_run_refuses_what_trec_eval_would_misread(tmp_path, hits, message):
    path = tmp_path / "r.trec"
    with pytest.raises(RunWriteError, match=message):
        write_run(Run(hits), path, tag="x")
    assert not path.exists()  # nothing written
    assert issubclass(RunWriteError, UserError)
