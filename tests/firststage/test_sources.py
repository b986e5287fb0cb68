"""Text sources: the --candidates JSONL file (one text per docid, one query per qid, ids fit for TREC lines)."""
import json
import logging

import pytest

from routehead_pyserini.data.trec import TrecFormatError
from routehead_pyserini.firststage.sources import TextSpec, read_candidates_file, text_source


def _candidates(path, rows, bom=False):
    path.write_bytes((("\ufeff" if bom else "") + "".join(json.dumps(r) + "\n" for r in rows)).encode("utf-8"))
    return path


def row(qid="q1", query="bees", docid="D1", text="bees buzz", **more):
    return {"qid": qid, "query": query, "docid": docid, "text": text, **more}


def test_candidates_give_text_and_queries(tmp_path, caplog):
    path = _candidates(tmp_path / "c.jsonl", [row(), row(docid="D2", text="hives"), row(qid="q2", query="flowers"),
                                              row(), row()], bom=True)
    with caplog.at_level(logging.WARNING):
        texts, queries = read_candidates_file(path)
    assert queries == {"q1": "bees", "q2": "flowers"}  # the byte-order mark is not part of the first key
    assert texts.get("D1").text == "bees buzz" and texts.get("D2").text == "hives"
    assert "2 repeated (qid, docid) lines with the same text (each kept once)" in caplog.text
    assert text_source(TextSpec(candidates=str(path)))[1] == queries


@pytest.mark.parametrize("rows, message", [
    ([row(), row(text="other")], r"c\.jsonl:2: document 'D1' has another text than at line 1"),
    ([row(), row(qid="q2", query="x", title="T")], r"c\.jsonl:2: document 'D1' has another text than at line 1"),
    ([row(), row(docid="D2", query="wasps")], r"c\.jsonl:2: query 'q1' has another text than at line 1"),
    ([row(docid="D 1")], r"c\.jsonl:1: document id 'D 1' contains whitespace \(TREC run lines are split on whitespace\)"),
    ([row(qid="q\n1")], r"c\.jsonl:1: query id 'q\\n1' contains whitespace"),
    ([row(docid="")], r"c\.jsonl:1: document id '' is empty"),
    ([row(docid=None)], r"c\.jsonl:1: document id None is not a string or an integer"),
    ([row(text=None)], r"c\.jsonl:1: document D1: 'text' and 'title' must be strings"),
    ([row(query="  ")], r"c\.jsonl:1: query q1 has empty text"),
])
def test_conflicting_or_malformed_candidates_are_errors(tmp_path, rows, message):
    with pytest.raises(TrecFormatError, match=message):
        read_candidates_file(_candidates(tmp_path / "c.jsonl", rows))
