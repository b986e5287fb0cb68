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


# ---- issue #22: every number of a head-set file finite; no key twice ----------------------------

def _file(tmp_path, text, name="h.json"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("weights, message", [
    ("[1.0, NaN]", r"weight of head 3\.4 is NaN"),
    ("[Infinity, 1.0]", r"weight of head 1\.2 is infinite \(inf\)"),
    ("[1.0, -Infinity]", r"weight of head 3\.4 is infinite \(-inf\)"),
    ("[1e999, 1.0]", r"weight of head 1\.2 is infinite \(inf\)"),
    ('[1.0, "2"]', r"weight of head 3\.4 is '2', not a number"),
    ("[1.0, true]", r"weight of head 3\.4 is True, not a number"),
    ("[1.0]", r"'weights' must be a list of one number per listed head"),
])
def test_head_weights_must_be_finite_numbers(tmp_path, weights, message):
    path = _file(tmp_path, f'{{"format": "{FORMAT}", "heads": [[1, 2], [3, 4]], "weights": {weights}}}')
    with pytest.raises(HeadSetError, match=rf"h\.json: {message}"):
        read_head_set(path)


@pytest.mark.parametrize("extra, message", [
    ('"fuse": {"weight": NaN, "normalise": "zscore"}', r"fuse\.weight is NaN"),
    ('"fuse_dense": {"weight": -1e999, "model": "m"}', r"fuse_dense\.weight is infinite \(-inf\)"),
    ('"fuse": {"weight": null}', r"fuse\.weight is None, not a number"),
    ('"learned": {"lambda": Infinity}', r"learned\.lambda is infinite \(inf\)"),
    ('"model": {"layers": 2.5, "heads": 4}', r"model\.layers is 2\.5, not an integer"),
    ('"heads": [[1, 2]]', r"key 'heads' appears twice in one object"),
])
def test_every_other_number_finite_and_no_key_twice(tmp_path, extra, message):
    path = _file(tmp_path, f'{{"format": "{FORMAT}", "heads": [[1, 2]], {extra}}}')
    with pytest.raises(HeadSetError, match=rf"h\.json: {message}"):
        read_head_set(path)


def test_heads_must_be_integer_pairs(tmp_path):
    with pytest.raises(HeadSetError, match=r"head \[1\.5, 2\] is not a pair of integers >= 0"):
        read_head_set(_file(tmp_path, f'{{"format": "{FORMAT}", "heads": [[1.5, 2]]}}'))
    with pytest.raises(HeadSetError, match=r"head \[-1, 2\] is not a pair"):
        read_head_set(_file(tmp_path, f'{{"format": "{FORMAT}", "heads": [[-1, 2]]}}'))


def test_a_byte_order_mark_and_an_old_nan_cv_point_are_read(tmp_path):
    text = f'\ufeff{{"format": "{FORMAT}", "heads": [[1, 2]], "weights": [0.5], "learned": {{"cv": [{{"lambda": 0.1, "ndcg": NaN}}]}}}}'
    hs = read_head_set(_file(tmp_path, text))
    assert hs.weights == (0.5,) and hs.extra["learned"]["cv"][0]["ndcg"] is None


def test_write_refuses_a_non_finite_weight_and_writes_strict_json(tmp_path):
    with pytest.raises(HeadSetError, match=r"weight of head 1\.2 is nan"):
        from_pairs([(1, 2)], [float("nan")])
    ok = from_pairs([(1, 2)], [1.0], extra={"fuse": {"weight": float("inf")}})
    with pytest.raises(HeadSetError, match=r"cannot write .*fuse\.weight is inf"):
        write_head_set(ok, tmp_path / "x.json")
    info = from_pairs([(1, 2)], [1.0], extra={"learned": {"cv": [{"lambda": 1.0, "ndcg": float("nan")}]}})
    write_head_set(info, tmp_path / "y.json")
    text = (tmp_path / "y.json").read_text()
    assert "NaN" not in text and json.loads(text)["learned"]["cv"][0]["ndcg"] is None
    assert not (tmp_path / "x.json").exists()


def test_zscore_stays_finite_near_the_float64_limit():
    from routehead_pyserini.heads.head_set import normalise_scores

    scores = torch.tensor([[[1.7e308, 1.7e308, 1.7e308], [1e308, 1e308, -1e308], [1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]],
                          dtype=torch.float64)
    z = normalise_scores(scores)
    assert torch.isfinite(z).all()
    assert z[0, 0].tolist() == [0.0, 0.0, 0.0] and z[0, 3].tolist() == [0.0, 0.0, 0.0]  # a constant head is 0
    assert z[0, 1, 0] == z[0, 1, 1] > 0 > z[0, 1, 2]
    assert torch.equal(z[0, 2], normalise_scores(scores[:, 2:3])[0, 0])  # ordinary rows: the same bits as alone
