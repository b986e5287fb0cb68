import pytest

from routehead_pyserini.data.trec import (Hit, Run, TrecFormatError, count_ties, read_qrels, read_run, read_topics, write_qrels, write_run, write_topics)


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
