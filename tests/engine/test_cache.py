import torch

from routehead_pyserini.engine.cache import QueryScores, ScoreCache
from routehead_pyserini.data.keys import entry_key


def _scores(computed=None):
    g = torch.Generator().manual_seed(0)
    q, c = torch.rand(3, 2, 4, generator=g), torch.rand(3, 2, 4, generator=g)
    computed = torch.ones(3, 2, dtype=torch.bool) if computed is None else computed
    q[~computed] = float("nan")
    c[~computed] = float("nan")
    return QueryScores("q1", ["a", "b", "c", "d"], q, c, computed, torch.tensor([2, 2, 2, 2]), {"windows": 2})


def test_round_trip_and_keys(tmp_path):
    cache = ScoreCache("model-fp", {"order": "bm25"}, tmp_path)
    key = entry_key("q1", "query", ["a", "b"], ["ta", "tb"])
    assert cache.get(key) is None
    cache.put(key, _scores())
    back = cache.get(key)
    assert torch.equal(back.query, _scores().query) and back.docids == ["a", "b", "c", "d"] and back.info == {"windows": 2}
    assert torch.allclose(back.calibrated, (back.query - back.calib) * 2)
    assert len(cache) == 1 and (cache.folder / "settings.json").exists()
    # any change of identity is another entry / another folder
    assert key != entry_key("q1", "query", ["a", "b"], ["ta", "tB"])
    assert key != entry_key("q1", "other", ["a", "b"], ["ta", "tb"])
    assert ScoreCache("model-fp", {"order": "reversed"}, tmp_path).folder != cache.folder
    assert ScoreCache("other-fp", {"order": "bm25"}, tmp_path).folder != cache.folder


def test_partial_entries_serve_only_their_heads(tmp_path):
    cache = ScoreCache("fp", {}, tmp_path)
    computed = torch.zeros(3, 2, dtype=torch.bool)
    computed[1, 0] = True
    cache.put("e", _scores(computed))
    assert cache.get("e") is None  # all heads asked, not all computed
    assert cache.get("e", computed) is not None
    other = torch.zeros(3, 2, dtype=torch.bool)
    other[2, 1] = True
    assert cache.get("e", other) is None


def test_corrupt_entry_is_ignored(tmp_path):
    cache = ScoreCache("fp", {}, tmp_path)
    cache.put("e", _scores())
    (cache.folder / "e.safetensors").write_bytes(b"garbage")
    assert cache.get("e") is None
