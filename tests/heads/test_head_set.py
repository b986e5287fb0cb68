import json

import pytest
import torch

from routehead_pyserini.heads.head_set import (FORMAT, HeadSet, HeadSetError, aggregate, from_pairs, parse_heads, read_head_set, write_head_set)


def test_parse_all_list_and_errors():
    assert parse_heads(None).is_all and parse_heads("all").is_all
    hs = parse_heads("15.0, 3.2,14:3")
    assert hs.heads == ((3, 2), (14, 3), (15, 0)) and hs.deepest_layer == 15
    for bad in ("15", "a.b", "1.2,,3.4"):
        with pytest.raises(HeadSetError, match="layer.head"):
            parse_heads(bad)
    with pytest.raises(HeadSetError, match="twice"):
        parse_heads("1.1,1.1")


def test_file_round_trip(tmp_path):
    hs = from_pairs([(5, 1), (2, 0)], [0.5, 2.0], model_name="m", model_fingerprint="fp", model_shape=(6, 2), source="test",
                    extra={"k": 16})
    path = tmp_path / "heads.json"
    write_head_set(hs, path)
    back = read_head_set(path)
    assert back == hs and back.heads == ((2, 0), (5, 1)) and back.weights == (2.0, 0.5)
    assert back.extra == {"k": 16}
    assert parse_heads(str(path)) == hs
    assert json.loads(path.read_text())["format"] == FORMAT


def test_bad_files(tmp_path):
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(HeadSetError, match="not JSON"):
        read_head_set(tmp_path / "a.json")
    (tmp_path / "b.json").write_text('{"heads": [[1, 2]]}')
    with pytest.raises(HeadSetError, match="not a head-set file"):
        read_head_set(tmp_path / "b.json")


def test_shape_checks():
    with pytest.raises(HeadSetError, match="outside the model"):
        from_pairs([(30, 0)]).mask((30, 9))
    with pytest.raises(HeadSetError, match="chosen for a model with 18 layers x 4 heads"):
        from_pairs([(1, 0)], model_shape=(18, 4)).mask((30, 9))


def test_aggregate_sums_selected_heads():
    scores = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    assert torch.equal(aggregate(scores, HeadSet()), scores.sum(dim=(0, 1)))
    assert torch.equal(aggregate(scores, from_pairs([(1, 2)])), scores[1, 2])
    weighted = aggregate(scores, from_pairs([(0, 0), (1, 1)], [2.0, -1.0]))
    assert torch.equal(weighted, 2 * scores[0, 0] - scores[1, 1])
    partial = scores.clone()
    partial[0] = float("nan")
    assert torch.equal(aggregate(partial, from_pairs([(1, 0)])), scores[1, 0])
    with pytest.raises(HeadSetError, match="not computed"):
        aggregate(partial, HeadSet())
