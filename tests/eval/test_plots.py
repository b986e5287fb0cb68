"""The report's figures: small deterministic PNGs."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from routehead_pyserini.eval import plots

PNG = b"\x89PNG\r\n\x1a\n"


def test_means_plot_is_a_small_deterministic_png(tmp_path):
    args = (["bm25", "icr", "routehead"], [0.5, 0.42, 0.55], [(0.4, 0.6), (0.3, 0.54), (0.47, 0.63)], "nDCG@10")
    a = plots.plot_means(*args, tmp_path / "a.png", baseline="bm25")
    b = plots.plot_means(*args, tmp_path / "b.png", baseline="bm25")
    assert a.read_bytes().startswith(PNG) and a.read_bytes() == b.read_bytes()
    assert a.stat().st_size < 60_000
    assert Image.open(a).size == (640, int(round((1.2 + 0.42 * 3) * plots.DPI)))
    other = plots.plot_means(*args[:1], [0.5, 0.42, 0.56], *args[2:], tmp_path / "c.png", baseline="bm25")
    assert other.read_bytes() != a.read_bytes()
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind


def test_deltas_plot_one_panel_per_method(tmp_path):
    deltas = {"icr": np.array([0.1, -0.2, 0.0, 0.3]), "static": np.array([0.0, 0.0, 0.05, -0.05]),
              "routed": np.array([0.2, 0.1, 0.0, -0.1]), "knn": np.array([0.0, 0.0, 0.0, 0.0])}
    path = plots.plot_deltas(deltas, "nDCG@10", "bm25", tmp_path / "d.png")
    width, height = Image.open(path).size
    assert (width, height) == (int(round((3 * 3 + 0.4) * plots.DPI)), int(round((2.3 * 2 + 0.5) * plots.DPI)))
    assert plots.plot_deltas(deltas, "nDCG@10", "bm25", tmp_path / "e.png").read_bytes() == path.read_bytes()


def test_head_heatmap_with_static_overlay(tmp_path):
    share = np.zeros((30, 9))
    share[14, 3], share[20, 1] = 0.75, 0.25
    plain = plots.plot_head_heatmap(share, tmp_path / "plain.png", title="routed")
    boxed = plots.plot_head_heatmap(share, tmp_path / "boxed.png", static=[(14, 3), (2, 2)], title="routed")
    assert plain.read_bytes() != boxed.read_bytes()
    assert plots.plot_head_heatmap(share, tmp_path / "again.png", static=[(2, 2), (14, 3)], title="routed").read_bytes() == boxed.read_bytes()
    # the cell of the most routed head is drawn in the colour map's top colour (viridis: yellow)
    image = np.asarray(Image.open(plain).convert("RGB")).astype(int)
    yellow = (image[..., 0] > 200) & (image[..., 1] > 200) & (image[..., 2] < 80)
    assert yellow.sum() > 20
    assert plots.plot_head_heatmap(None, tmp_path / "set.png", static=[(1, 1)], shape=(4, 4)).exists()
    with pytest.raises(ValueError, match="share or shape"):
        plots.plot_head_heatmap(None, tmp_path / "x.png")
