"""Pooled training sets: the collections file, and queries that keep their collection."""
import pytest

from routehead_pyserini.heads.pooled import CollectionsError, load_pooled, read_collections, select, split_qid


def write(tmp_path, text):
    path = tmp_path / "collections.yaml"
    path.write_text(text)
    return path


def test_collections_file_defaults_and_errors(tmp_path):
    cols = read_collections(write(tmp_path, "collections:\n  vaswani: {run: runs/bm25/vaswani.trec}\n"
                                            "  trec-dl-2019: {run: trec-dl-2019, relevance_level: 2, sample: 10}\n"))
    assert [c.name for c in cols] == ["vaswani", "trec-dl-2019"]
    assert cols[0].text.index == "vaswani" and cols[0].qrels_name == "vaswani" and cols[1].relevance_level == 2
    assert [c.name for c in select(cols, exclude=["vaswani"])] == ["trec-dl-2019"]
    with pytest.raises(CollectionsError, match="no collection 'nope'"):
        select(cols, only=["nope"])
    for text, message in (("collections: {a: {index: x}}\n", "needs at least a 'run'"),
                          ("collections: {a: {run: r, colour: red}}\n", "unknown keys \\['colour'\\]"),
                          ("stages: []\n", "expected a 'collections:' mapping"),
                          ("collections: {a/b: {run: r}}\n", "may not contain '/'")):
        with pytest.raises(CollectionsError, match=message):
            read_collections(write(tmp_path, text))
    with pytest.raises(CollectionsError, match="does not exist"):
        read_collections(tmp_path / "missing.yaml")


def test_load_pooled_keeps_the_same_qid_of_two_collections_apart(demo_cli, smollm2, tmp_path):
    """Two collections over the same demo queries: every query counted twice, each under its collection."""
    from routehead_pyserini.rerank.reranker import PromptSettings, Reranker

    index = demo_cli.common[demo_cli.common.index("--index") + 1]
    cols = read_collections(write(tmp_path, "collections:\n" + "".join(
        f"  {name}: {{run: {demo_cli.bm25}, index: {index}, topics: demo, qrels: demo}}\n" for name in ("one", "two"))))
    reranker = Reranker(smollm2, "all", settings=PromptSettings(mode="pointwise", doc_max_tokens=32), batch_size=4,
                        cache=str(tmp_path / "cache"))
    data = load_pooled(cols, reranker, top_k=2)
    keys = [q.qid for q in data.dataset.queries]
    assert len(keys) == len(set(keys))
    by_collection = {}
    for key in keys:
        collection, qid = split_qid(key)
        by_collection.setdefault(collection, set()).add(qid)
    assert by_collection["one"] == by_collection["two"] and len(by_collection["one"]) > 0
    assert {q.group for q in data.dataset.queries} == {"one", "two"}
    assert len(data.of("one")) == len(data.of("two")) == 16


@pytest.mark.parametrize("text, message", [
    ("collections: {a: {run: r, sample: .nan}}\n", r"collection 'a': sample is nan, not an integer"),
    ("collections: {a: {run: r, sample: 0}}\n", r"collection 'a': sample is 0, below 1"),
    ("collections: {a: {run: r, sample: 2.5}}\n", r"collection 'a': sample is 2\.5, not an integer"),
    ("collections: {a: {run: r, relevance_level: .inf}}\n", r"collection 'a': relevance_level is inf, not an integer"),
    ("collections: {a: {run: r, relevance_level: true}}\n", r"collection 'a': relevance_level is True, not an integer"),
    ("collections: {a: {run: r, seed: '1'}}\n", r"collection 'a': seed is '1', not an integer"),
    ("collections: {a: {run: [r]}}\n", r"collection 'a': run must be a file or registry name, got \['r'\]"),
    ("collections: {a: {run: r}}\nextra: 1\n", r"unknown top-level keys \['extra'\]; allowed: collections"),
    ("collections:\n  a: {run: r}\n  a: {run: s}\n", r"invalid YAML at line 3: duplicate key 'a' \(first at line 2\)"),
    ("collections:\n  a: {run: r, sample: 3, sample: 4}\n", r"invalid YAML at line 2: duplicate key 'sample' \(first at line 2\)"),
    ("collections: {'a b': {run: r}}\n", r"may not contain '/' or whitespace"),
])
def test_collections_values_are_checked(tmp_path, text, message):
    """Issue #22: numbers of a collections file are integers (no .nan, .inf, 2.5 or true), keys appear once."""
    with pytest.raises(CollectionsError, match=message):
        read_collections(write(tmp_path, text))


def test_collections_file_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes("\ufeffcollections:\n  a: {run: r, sample: 5, seed: 1, relevance_level: 2, qrels: null}\n".encode("utf-8"))
    (col,) = read_collections(path)
    assert (col.name, col.sample, col.seed, col.relevance_level, col.qrels) == ("a", 5, 1, 2, None)
