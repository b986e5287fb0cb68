"""The report's figures, as small PNGs (matplotlib, Agg canvas; no pyplot, no display needed).

Each function draws one figure from plain numbers and writes it atomically. Output is
deterministic: matplotlib's default style (not the user's matplotlibrc), no "Software" metadata,
fixed size and resolution, so the same numbers give the same bytes.

- :func:`plot_means`: one measure per method, mean with its confidence interval;
- :func:`plot_deltas`: per-query differences against the baseline, sorted, one panel per method;
- :func:`plot_head_heatmap`: a layer x head grid (how often a router picks each head), with a
  static head set marked on top.
"""
from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..files import atomic_write_bytes

DPI = 100
_GAIN, _LOSS, _NEUTRAL = "#2a7f62", "#b4413c", "#4c72b0"


@contextmanager
def _figure(width: float, height: float):
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.style.context("default"):
        fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        yield fig


def _save(fig, path: str | os.PathLike[str]) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def plot_means(names: Sequence[str], means: Sequence[float], intervals: Sequence[tuple[float, float]], measure: str,
               path: str | os.PathLike[str], *, baseline: str | None = None, note: str = "") -> Path:
    """Horizontal bars: the mean of ``measure`` per method with its interval; the baseline's mean as a line."""
    n = len(names)
    with _figure(6.4, 1.2 + 0.42 * n) as fig:
        ax = fig.add_subplot()
        y = np.arange(n)[::-1]
        lo = np.array([m - a for m, (a, _) in zip(means, intervals)])
        hi = np.array([b - m for m, (_, b) in zip(means, intervals)])
        colours = ["#8c8c8c" if name == baseline else _NEUTRAL for name in names]
        ax.barh(y, means, color=colours, height=0.6)
        ax.errorbar(means, y, xerr=np.vstack([lo, hi]), fmt="none", ecolor="black", capsize=3, linewidth=1)
        if baseline in names:
            ax.axvline(means[list(names).index(baseline)], color="#8c8c8c", linestyle="--", linewidth=1)
        ax.set_yticks(y, labels=list(names))
        top = max([b for _, b in intervals] + list(means) + [0.0])
        ax.set_xlim(0, min(1.0, top * 1.1) if top <= 1.0 else top * 1.1)
        ax.set_xlabel(f"{measure} (mean; bars: {note or 'confidence interval'})")
        ax.grid(axis="x", alpha=0.3)
        return _save(fig, path)


def plot_deltas(deltas: Mapping[str, Sequence[float]], measure: str, baseline: str, path: str | os.PathLike[str]) -> Path:
    """Per method, each query's ``measure`` minus the baseline's, sorted: wins up, losses down."""
    names = list(deltas)
    cols = min(3, max(len(names), 1))
    rows = max(1, math.ceil(len(names) / cols))
    limit = max([abs(float(v)) for d in deltas.values() for v in d] + [0.05]) * 1.05
    with _figure(3.0 * cols + 0.4, 2.3 * rows + 0.5) as fig:
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax, name in zip(axes.flat, names):
            values = np.sort(np.asarray(deltas[name], dtype=float))[::-1]
            colours = [_GAIN if v > 1e-9 else _LOSS if v < -1e-9 else "#bbbbbb" for v in values]
            ax.bar(np.arange(len(values)), values, color=colours, width=1.0)
            ax.axhline(0, color="black", linewidth=0.8)
            wins, losses = int((values > 1e-9).sum()), int((values < -1e-9).sum())
            ax.set_title(f"{name}\n{wins}/{len(values) - wins - losses}/{losses} W/T/L", fontsize=9)
            ax.set_ylim(-limit, limit)
            ax.set_xticks([])
            ax.tick_params(labelsize=8)
        for ax in list(axes.flat)[len(names):]:
            ax.set_visible(False)
        fig.suptitle(f"{measure} per query minus {baseline} (sorted)", fontsize=10)
        return _save(fig, path)


def plot_head_heatmap(share: np.ndarray | None, path: str | os.PathLike[str], *, static: Iterable[tuple[int, int]] = (),
                      shape: tuple[int, int] | None = None, title: str = "", colour_label: str = "share of queries routed to the head") -> Path:
    """A layer (rows) x head (columns) grid coloured by ``share`` (``None``: blank), ``static`` heads boxed."""
    if share is None and shape is None:
        raise ValueError("give share or shape")
    grid = np.zeros(shape) if share is None else np.asarray(share, dtype=float)
    layers, heads = grid.shape
    with _figure(min(2.4 + 0.32 * heads, 9.0), min(1.6 + 0.16 * layers, 12.0)) as fig:
        ax = fig.add_subplot()
        image = ax.imshow(grid, cmap="viridis", vmin=0.0, vmax=max(float(grid.max()), 1e-9) if share is not None else 1.0,
                          aspect="auto", origin="lower", interpolation="nearest")
        if share is not None:
            fig.colorbar(image, ax=ax, label=colour_label, shrink=0.8)
        members = sorted(set(static))
        if members:
            from matplotlib.patches import Rectangle

            for layer, head in members:
                ax.add_patch(Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor="#ff7f0e", linewidth=1.6))
            ax.plot([], [], marker="s", linestyle="none", markerfacecolor="none", markeredgecolor="#ff7f0e",
                    label=f"static set ({len(members)} heads)")
            fig.legend(loc="outside lower center", fontsize=8, frameon=False)
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_xticks(range(heads))
        step = max(1, layers // 15)
        ax.set_yticks(range(0, layers, step))
        ax.tick_params(labelsize=8)
        if title:
            ax.set_title(title, fontsize=10)
        return _save(fig, path)
