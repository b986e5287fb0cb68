import pytest

from routehead_pyserini.data.corpus import CorpusError, Document, read_corpus
from routehead_pyserini.data.trec import TrecFormatError


def test_both_layouts(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(
        '{"_id": "a", "title": "Title", "text": "Body."}\n'
        '{"id": "b", "contents": "Only contents"}\n'
        '{"_id": "c", "title": "", "text": "No title", "authors": "x"}\n'
    )
    docs = list(read_corpus(path))
    assert docs == [Document("a", "Body.", "Title"), Document("b", "Only contents"), Document("c", "No title")]
    assert docs[0].contents == "Title\nBody."
    assert docs[2].to_pyserini() == {"id": "c", "contents": "No title"}


def test_malformed_corpus_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"_id": "a", "text": "ok"}\n{"name": "no id"}\n')
    with pytest.raises(TrecFormatError, match=r"c.jsonl:2: not a document"):
        list(read_corpus(path))


@pytest.mark.parametrize("line, message", [
    ('{"_id": "a b", "text": "x"}', r"c\.jsonl:2: document id 'a b' contains whitespace \(TREC run lines are split on whitespace\)"),
    ('{"id": "a\\tb", "contents": "x"}', r"c\.jsonl:2: document id 'a\\tb' contains whitespace"),
    ('{"_id": "", "text": "x"}', r"c\.jsonl:2: document id '' is empty"),
    ('{"_id": null, "text": "x"}', r"c\.jsonl:2: document id None is not a string or an integer"),
    ('{"_id": 1.5, "text": "x"}', r"c\.jsonl:2: document id 1\.5 is not a string or an integer"),
])
def test_document_ids_that_break_a_run_line_are_errors(tmp_path, line, message):
    path = tmp_path / "c.jsonl"
    path.write_text('{"_id": "ok", "text": "fine"}\n' + line + "\n")
    with pytest.raises(TrecFormatError, match=message):
        list(read_corpus(path))


def test_a_duplicate_document_id_names_both_lines(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"_id": "a", "text": "one"}\n{"_id": 7, "text": "x"}\n\n{"id": "a", "contents": "two"}\n')
    with pytest.raises(CorpusError, match=r"c\.jsonl: duplicate document id 'a' \(lines 1 and 4\)"):
        list(read_corpus(path))


def test_integer_ids_and_a_byte_order_mark(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes('\ufeff{"_id": 12, "text": "one"}\n'.encode("utf-8"))
    assert [d.docid for d in read_corpus(path)] == ["12"]
