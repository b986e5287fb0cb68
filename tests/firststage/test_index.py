import json

import pytest

from routehead_pyserini.data.corpus import CorpusError
from routehead_pyserini.data.trec import TrecFormatError
from routehead_pyserini.pipeline.demo import DEMO_DATA
from routehead_pyserini.firststage.index import MANIFEST, IndexBuildError, build_index, index_is_stale
from routehead_pyserini.firststage.search import DocumentStore


def test_index_records_its_corpus_and_stores_raw(demo_index):
    info = json.loads((demo_index / MANIFEST).read_text())
    assert info["num_docs"] == 48 and info["empty_docs"] == 0
    assert not index_is_stale(demo_index, DEMO_DATA / "corpus.jsonl")
    store = DocumentStore(demo_index)
    assert len(store) == 48
    first = json.loads((DEMO_DATA / "corpus.jsonl").read_text().splitlines()[0])
    doc = store.get(first["_id"])
    assert doc.text == first["title"] + "\n" + first["text"]


def test_existing_target_needs_overwrite(demo_index):
    with pytest.raises(IndexBuildError, match="--overwrite"):
        build_index(DEMO_DATA / "corpus.jsonl", demo_index, progress=False)


def test_duplicate_ids_fail_and_leave_nothing(jvm, tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"_id": "a", "text": "one"}\n{"_id": "a", "text": "two"}\n')
    target = tmp_path / "idx"
    with pytest.raises(CorpusError, match=r"c\.jsonl: duplicate document id 'a' \(lines 1 and 2\)"):
        build_index(corpus, target, progress=False)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == [corpus]  # no temporary folder left behind


@pytest.mark.parametrize("docid", ["a b", "a\tb", " ", ""])
def test_document_ids_that_break_a_run_line_fail_and_leave_nothing(jvm, tmp_path, docid):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"_id": "ok", "text": "one"}) + "\n" + json.dumps({"_id": docid, "text": "two"}) + "\n")
    target = tmp_path / "idx"
    with pytest.raises(TrecFormatError, match=r"c\.jsonl:2: document id .* (whitespace|empty)"):
        build_index(corpus, target, progress=False)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == [corpus]


def test_stale_after_corpus_changes(jvm, tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"_id": "a", "text": "one"}\n')
    build_index(corpus, tmp_path / "idx", progress=False)
    assert not index_is_stale(tmp_path / "idx", corpus)
    corpus.write_text('{"_id": "a", "text": "one"}\n{"_id": "b", "text": "two"}\n')
    assert index_is_stale(tmp_path / "idx", corpus)
