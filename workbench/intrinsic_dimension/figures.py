"""Pure figure functions for intrinsic-dimension results (result -> plotly Figure)."""
from __future__ import annotations

import math
from typing import Dict, Optional

import numpy as np
import plotly.graph_objects as go

from ..plotting import COLORS, base_layout

__all__ = ["search", "comparison", "profile", "twonn", "projection_cost"]


def search(result, *, title: Optional[str] = None) -> go.Figure:
    """Accuracy against d (log axis): every trial, the mean per d, the 90 % target line, d_int90 and its
    bootstrap interval."""
    fig = go.Figure()
    trials, summary = result.trials, result.summary
    split = result.settings.get("split", "test")
    if len(trials):
        fig.add_trace(go.Scatter(x=trials["d"], y=trials["accuracy"], mode="markers", name="trials (seeds)",
                                 marker=dict(color=COLORS[0], size=6, opacity=0.45),
                                 hovertemplate="d=%{x}<br>accuracy=%{y:.3f}<extra></extra>"))
    if len(summary):
        fig.add_trace(go.Scatter(x=summary["d"], y=summary["mean_accuracy"], mode="lines+markers",
                                 name="mean over seeds", line=dict(color=COLORS[0]),
                                 error_y=dict(type="data", array=summary["std_accuracy"], visible=True)))
    thr = result.settings.get("threshold", 0.9)
    fig.add_hline(y=result.target, line=dict(color=COLORS[3], dash="dash"),
                  annotation_text=f"{thr:.0%} of baseline ({result.baseline:.3f})", annotation_position="bottom right")
    if math.isfinite(result.baseline) and result.settings.get("baseline") == "full":
        fig.add_hline(y=result.baseline, line=dict(color="#7f7f7f", dash="dot"),
                      annotation_text="full training", annotation_position="top right")
    if result.reached:
        lo, hi = result.interval
        if math.isfinite(lo) and math.isfinite(hi) and hi > lo:
            fig.add_vrect(x0=lo, x1=hi, fillcolor=COLORS[2], opacity=0.15, line_width=0,
                          annotation_text="95% bootstrap", annotation_position="top left")
        fig.add_vline(x=result.d_int90, line=dict(color=COLORS[2], width=2),
                      annotation_text=f"d_int{int(round(thr * 100))} = {int(result.d_int90)}",
                      annotation_position="bottom left")
    fig.update_xaxes(type="log", title="subspace dimension d")
    fig.update_yaxes(title=f"{split} accuracy")
    name = result.settings.get("model", "")
    return base_layout(fig, title or f"Intrinsic dimension search ({name}, {result.settings.get('projection')})")


def comparison(results: Dict[str, object], *, title: str = "d_int90 by task") -> go.Figure:
    """Mean accuracy against d, normalised by each baseline, for several searches (one line each)."""
    fig = go.Figure()
    for i, (label, res) in enumerate(results.items()):
        s = res.summary
        color = COLORS[i % len(COLORS)]
        fig.add_trace(go.Scatter(x=s["d"], y=s["mean_accuracy"] / res.baseline, mode="lines+markers",
                                 name=f"{label}: d_int90={int(res.d_int90) if res.reached else 'n/r'}",
                                 line=dict(color=color)))
        if res.reached:
            fig.add_vline(x=res.d_int90, line=dict(color=color, dash="dot"))
    thr = next(iter(results.values())).settings.get("threshold", 0.9) if results else 0.9
    fig.add_hline(y=thr, line=dict(color=COLORS[3], dash="dash"))
    fig.update_xaxes(type="log", title="subspace dimension d")
    fig.update_yaxes(title="accuracy / baseline")
    return base_layout(fig, title)


def profile(result, *, title: Optional[str] = None) -> go.Figure:
    """Intrinsic dimension of each layer's representation, in forward order."""
    f = result.frame
    fig = go.Figure(go.Scatter(x=f["layer"], y=f["dimension"], mode="lines+markers", name="ID",
                               line=dict(color=COLORS[1]),
                               customdata=np.stack([f["n_features"], f["n_duplicates"]], axis=1) if len(f) else None,
                               hovertemplate="%{x}<br>ID=%{y:.2f}<br>features=%{customdata[0]}"
                                             "<br>duplicates=%{customdata[1]}<extra></extra>"))
    fig.update_xaxes(title="layer")
    fig.update_yaxes(title=f"intrinsic dimension ({result.settings.get('estimator')})", rangemode="tozero")
    return base_layout(fig, title or "Per-layer intrinsic dimension")


def twonn(estimate, *, title: Optional[str] = None) -> go.Figure:
    """The TwoNN fit: -log(1 - F(mu)) against log mu and the line of slope d through the origin."""
    x, y = np.asarray(estimate.fit_x), np.asarray(estimate.fit_y)
    fig = go.Figure(go.Scatter(x=x, y=y, mode="markers", name="points", marker=dict(size=4, color=COLORS[0])))
    if len(x):
        xs = np.array([0.0, float(x.max())])
        fig.add_trace(go.Scatter(x=xs, y=estimate.dimension * xs, mode="lines",
                                 name=f"slope d = {estimate.dimension:.2f}", line=dict(color=COLORS[3])))
    fig.update_xaxes(title="log mu")
    fig.update_yaxes(title="-log(1 - F(mu))")
    return base_layout(fig, title or f"TwoNN fit (d = {estimate.dimension:.2f})")


def projection_cost(frame, *, title: str = "Projection cost per step") -> go.Figure:
    """Time (and memory) per step against d for each projection, from a benchmark frame with columns
    ``projection``, ``d``, ``seconds`` and ``bytes``."""
    fig = go.Figure()
    for i, (name, g) in enumerate(frame.groupby("projection")):
        fig.add_trace(go.Scatter(x=g["d"], y=g["seconds"], mode="lines+markers", name=f"{name} time",
                                 line=dict(color=COLORS[i % len(COLORS)])))
        fig.add_trace(go.Scatter(x=g["d"], y=g["bytes"] / 2 ** 20, mode="lines+markers", name=f"{name} MiB",
                                 yaxis="y2", line=dict(color=COLORS[i % len(COLORS)], dash="dot")))
    fig.update_layout(yaxis=dict(title="seconds per step", type="log"),
                      yaxis2=dict(title="MiB", type="log", overlaying="y", side="right"))
    fig.update_xaxes(type="log", title="d")
    return base_layout(fig, title)
