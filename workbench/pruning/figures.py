"""Pure figure functions for pruning results (result -> plotly Figure); definitions in ``docs/pruning.md``.

Cells are drawn on the knob x density grid (first knob value at the bottom); a cell without a value
(e.g. a diverged retraining) is left blank and labelled ``n/a``.
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np
import plotly.graph_objects as go

from ..plotting import COLORS, DIVERGING, ROLE, SEQUENTIAL, base_layout, fmt, hover
from .regime import REGIMES, RegimeMapResult
from .retrain import BaselineResult

__all__ = ["heatmap", "regimes", "baselines"]

REGIME_COLORS = {r: ROLE[r] for r in REGIMES}
REGIME_NAMES = {"I": "I: poorly connected", "II-A": "II-A: connected, dissimilar outputs",
                "II-B": "II-B: connected, similar outputs"}
METRIC_TITLES = {"test_error": "test error (fraction misclassified)",
                 "mc": "signed mode connectivity mc (train error; < 0: barrier)",
                 "cka": "output CKA of the copies (1 = same outputs)",
                 "train_error": "train error (fraction misclassified)",
                 "confidence": "regime confidence (0.5 to 1)",
                 "test_error_std": "test error, standard deviation over seeds",
                 "dense_test_error": "test error of the dense model"}
METRIC_SENTENCES = {"test_error": "Test error after pruning and retraining",
                    "mc": "Mode connectivity between retrained copies",
                    "cka": "Similarity of the retrained copies' outputs",
                    "train_error": "Train error after pruning and retraining",
                    "confidence": "Confidence of the regime of each cell",
                    "test_error_std": "Spread of the test error over seeds",
                    "dense_test_error": "Test error of the dense model before pruning"}
KNOB_TITLES = {"epochs": "dense training epochs (fewer = hotter)", "batch_size": "batch size (smaller = hotter)",
               "lr": "learning rate (larger = hotter)"}
FEW_SEEDS = 3  # a cell from fewer seeds rests on one pair of copies (mc, CKA) or a rough spread


def _axes(result: RegimeMapResult):
    table = result.pivot("mc")
    values = list(table.index)
    dens = list(table.columns)
    xlabels = [f"{100 * d:g}%" for d in dens]
    ylabels = [f"{v:g}" if isinstance(v, (int, float)) else str(v) for v in values]
    return values, dens, xlabels, ylabels


def _cells(xl, yl) -> np.ndarray:
    """Per cell ``[density label, knob label]`` for hover."""
    return np.array([[[x, y] for x in xl] for y in yl], dtype=object)


def _seed_note(result) -> str:
    seeds = result.settings.get("seeds") or []
    if not seeds:
        return ""
    n = len(seeds)
    return f"{n} seeds per cell" + (": mc and CKA from a single pair of copies" if n < FEW_SEEDS else "")


def _layout(fig: go.Figure, result: RegimeMapResult, title: str, xlabels, ylabels, subtitle: str = "") -> go.Figure:
    base_layout(fig, title, subtitle=subtitle or None, height=max(360, 200 + 60 * len(ylabels)))
    fig.update_xaxes(title="density (fraction of weights kept)", tickmode="array",
                     tickvals=list(range(len(xlabels))), ticktext=xlabels, showgrid=False)
    fig.update_yaxes(title=KNOB_TITLES.get(result.knob, result.knob), tickmode="array",
                     tickvals=list(range(len(ylabels))), ticktext=ylabels, showgrid=False, zeroline=False)
    return fig


def heatmap(result: RegimeMapResult, metric: str = "test_error") -> go.Figure:
    """Heatmap of one metric over the knob x density grid (cells annotated with their values)."""
    table = result.pivot(metric)
    _, _, xl, yl = _axes(result)
    z = table.to_numpy(dtype=float)
    kw = dict(colorscale=DIVERGING, zmid=0.0) if metric == "mc" else dict(colorscale=SEQUENTIAL)
    label = METRIC_TITLES.get(metric, metric.replace("_", " "))
    small = bool(np.all(np.abs(z[np.isfinite(z)]) < 10))
    text = np.vectorize(lambda v: "n/a" if not np.isfinite(v) else f"{v:.3f}" if small else fmt(v),
                        otypes=[object])(z)
    knob = KNOB_TITLES.get(result.knob, result.knob).split(" (")[0]
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(len(xl))), y=list(range(len(yl))), text=text, texttemplate="%{text}",
        colorbar=dict(title=dict(text=label.replace(" (", "<br>("), side="right")), **kw,
        customdata=_cells(xl, yl), xgap=1, ygap=1,
        hovertemplate=hover("density %{customdata[0]}", f"{knob} %{{customdata[1]}}", f"{label}: %{{text}}")))
    missing = int((~np.isfinite(z)).sum())
    gaps = f"{missing} cell{'s' * (missing != 1)} without a value (n/a)" if missing else ""
    sub = "; ".join(p for p in (_seed_note(result), gaps) if p)
    return _layout(fig, result, METRIC_SENTENCES.get(metric, label), xl, yl, sub)


def regime_boundaries(result: RegimeMapResult) -> List[Tuple[Tuple[float, float], Tuple[float, float]]]:
    """Cell edges (in grid index coordinates) between neighbouring cells of different regimes."""
    grid = result.pivot("regime").to_numpy()
    edges = []
    rows, cols = grid.shape
    for i in range(rows):
        for j in range(cols):
            if j + 1 < cols and grid[i, j] != grid[i, j + 1]:
                edges.append(((j + 0.5, i - 0.5), (j + 0.5, i + 0.5)))
            if i + 1 < rows and grid[i, j] != grid[i + 1, j]:
                edges.append(((j - 0.5, i + 0.5), (j + 0.5, i + 0.5)))
    return edges


def regimes(result: RegimeMapResult) -> go.Figure:
    """The phase diagram: cells coloured by regime (I / II-A / II-B), with confidence and boundaries drawn."""
    labels = result.pivot("regime").to_numpy()
    conf = result.pivot("confidence").to_numpy(dtype=float)
    _, _, xl, yl = _axes(result)
    code = np.vectorize(lambda r: REGIMES.index(r) if r in REGIMES else np.nan, otypes=[float])(labels)
    scale = []
    for k, r in enumerate(REGIMES):
        scale += [[k / 3, REGIME_COLORS[r]], [(k + 1) / 3, REGIME_COLORS[r]]]
    text = np.array([[f"{labels[i, j]}<br>{conf[i, j]:.2f}" if np.isfinite(conf[i, j]) else "n/a"
                      for j in range(labels.shape[1])] for i in range(labels.shape[0])])
    names = np.vectorize(lambda r: REGIME_NAMES.get(r, "no regime: a value is missing"), otypes=[object])(labels)
    custom = np.concatenate([_cells(xl, yl), names[..., None],
                             np.vectorize(fmt, otypes=[object])(conf)[..., None]], axis=-1)
    knob = KNOB_TITLES.get(result.knob, result.knob).split(" (")[0]
    fig = go.Figure(go.Heatmap(
        z=code, x=list(range(len(xl))), y=list(range(len(yl))), zmin=-0.5, zmax=2.5, colorscale=scale, text=text,
        texttemplate="%{text}", customdata=custom, xgap=1, ygap=1,
        colorbar=dict(title=dict(text="regime", side="right"), tickvals=[0, 1, 2], ticktext=list(REGIMES)),
        hovertemplate=hover("density %{customdata[0]}", f"{knob} %{{customdata[1]}}", "regime %{customdata[2]}",
                            "confidence: %{customdata[3]}")))
    xs, ys = [], []
    for (x0, y0), (x1, y1) in regime_boundaries(result):
        xs += [x0, x1, None]
        ys += [y0, y1, None]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color="black", width=3),
                             name="regime boundary", hoverinfo="skip", showlegend=False))
    th = result.thresholds
    sub = "cells: regime and confidence"
    if th:
        sub = (f"I: mc < {th.get('mc', float('nan')):.3f}; II-B: CKA ≥ {th.get('cka', float('nan')):.3f}"
               f" ({th.get('cka_rule', '')} threshold)")
    seeds = _seed_note(result)
    return _layout(fig, result, "Pruning regimes over dense-training temperature and density", xl, yl,
                   sub + (f"<br>{seeds}" if seeds else ""))


def baselines(result: BaselineResult) -> go.Figure:
    """Test error of fine-tuning vs Scratch-E vs Scratch-B (mean and seed spread)."""
    g = result.frame.groupby("method", sort=False)["test_error"]
    mean, std, n = g.mean(), g.std().fillna(0.0), g.count()
    fig = go.Figure(go.Bar(
        x=list(mean.index), y=mean.to_numpy(), error_y=dict(array=std.to_numpy()), marker_color=COLORS[: len(mean)],
        customdata=np.stack([std.to_numpy(), n.to_numpy()], 1), name="mean over seeds",
        hovertemplate=hover("%{x}", "test error: %{y:.4f}", "standard deviation: %{customdata[0]:.4f}",
                            "seeds: %{customdata[1]}")))
    density = result.settings.get("density", float("nan"))
    seeds = int(n.max()) if len(n) else 0
    few = f"; rough: only {seeds} seeds" if seeds < FEW_SEEDS else f"; {seeds} seeds"
    base_layout(fig, f"Fine-tuning against training from scratch at density {density:.3f}",
                subtitle=f"bars: mean test error; whiskers: standard deviation over seeds{few}", height=380)
    fig.update_xaxes(title="retraining method")
    fig.update_yaxes(title="test error (fraction misclassified)", rangemode="tozero")
    return fig
