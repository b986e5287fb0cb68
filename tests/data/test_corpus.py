import pytest

from routehead_pyserini.data.corpus import Document, read_corpus
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
