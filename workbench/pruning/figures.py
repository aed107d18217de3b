"""Pure figure functions for pruning results (result -> plotly Figure)."""
from __future__ import annotations

from typing import List, Tuple

import numpy as np
import plotly.graph_objects as go

from ..plotting import COLORS, base_layout
from .regime import REGIMES, RegimeMapResult
from .retrain import BaselineResult

__all__ = ["heatmap", "regimes", "baselines"]

REGIME_COLORS = {"I": "#d62728", "II-A": "#ff7f0e", "II-B": "#2ca02c"}
METRIC_TITLES = {"test_error": "test error", "mc": "signed mc (train error, BN reset)",
                 "cka": "output CKA", "train_error": "train error", "confidence": "regime confidence",
                 "test_error_std": "test error (seed std)", "dense_test_error": "dense test error"}
KNOB_TITLES = {"epochs": "dense training epochs (fewer = hotter)", "batch_size": "batch size (smaller = hotter)",
               "lr": "learning rate (larger = hotter)"}


def _axes(result: RegimeMapResult):
    table = result.pivot("mc")
    values = list(table.index)
    dens = list(table.columns)
    xlabels = [f"{100 * d:g}%" for d in dens]
    ylabels = [f"{v:g}" if isinstance(v, (int, float)) else str(v) for v in values]
    return values, dens, xlabels, ylabels


def _layout(fig: go.Figure, result: RegimeMapResult, title: str, xlabels, ylabels) -> go.Figure:
    base_layout(fig, title)
    fig.update_xaxes(title="density (fraction of weights kept)", tickmode="array",
                     tickvals=list(range(len(xlabels))), ticktext=xlabels)
    fig.update_yaxes(title=KNOB_TITLES.get(result.knob, result.knob), tickmode="array",
                     tickvals=list(range(len(ylabels))), ticktext=ylabels)
    return fig


def heatmap(result: RegimeMapResult, metric: str = "test_error") -> go.Figure:
    """Heatmap of one metric over the knob x density grid (cells annotated with their values)."""
    table = result.pivot(metric)
    _, _, xl, yl = _axes(result)
    z = table.to_numpy(dtype=float)
    kw = dict(colorscale="RdBu", zmid=0.0) if metric == "mc" else dict(colorscale="Viridis")
    fig = go.Figure(go.Heatmap(z=z, x=list(range(len(xl))), y=list(range(len(yl))), text=np.round(z, 3),
                               texttemplate="%{text}", colorbar=dict(title=metric), **kw,
                               hovertemplate="density %{x}<br>knob %{y}<br>" + metric + " %{z:.4f}<extra></extra>"))
    return _layout(fig, result, METRIC_TITLES.get(metric, metric), xl, yl)


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
    text = np.array([[f"{labels[i, j]}<br>{conf[i, j]:.2f}" for j in range(labels.shape[1])]
                     for i in range(labels.shape[0])])
    fig = go.Figure(go.Heatmap(z=code, x=list(range(len(xl))), y=list(range(len(yl))), zmin=-0.5, zmax=2.5,
                               colorscale=scale, text=text, texttemplate="%{text}", opacity=0.85,
                               colorbar=dict(title="regime", tickvals=[0, 1, 2], ticktext=list(REGIMES)),
                               hovertemplate="%{text}<extra></extra>"))
    xs, ys = [], []
    for (x0, y0), (x1, y1) in regime_boundaries(result):
        xs += [x0, x1, None]
        ys += [y0, y1, None]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color="black", width=3),
                             name="regime boundary", hoverinfo="skip", showlegend=False))
    th = result.thresholds
    title = "pruning regimes"
    if th:
        title += f" (I: mc < {th.get('mc', float('nan')):.3f}; II-B: CKA >= {th.get('cka', float('nan')):.3f})"
    return _layout(fig, result, title, xl, yl)


def baselines(result: BaselineResult) -> go.Figure:
    """Test error of fine-tuning vs Scratch-E vs Scratch-B (mean and seed spread)."""
    g = result.frame.groupby("method", sort=False)["test_error"]
    mean, std = g.mean(), g.std().fillna(0.0)
    fig = go.Figure(go.Bar(x=list(mean.index), y=mean.to_numpy(), error_y=dict(array=std.to_numpy()),
                           marker_color=COLORS[: len(mean)]))
    base_layout(fig, f"pruned to density {result.settings.get('density', float('nan')):.3f}")
    fig.update_yaxes(title="test error")
    return fig
