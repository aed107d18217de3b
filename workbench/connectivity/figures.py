"""Pure figure functions for connectivity results (result -> plotly figure)."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..plotting import COLORS, base_layout
from .analysis import ConnectivityResult
from .barrier import BarrierResult
from .layerwise import LayerwiseResult

__all__ = ["curves", "barrier_table", "layerwise", "diagnostics", "summary"]

_DASH = {"test": "solid", "train": "dash"}


def _curve_frame(result: Union[BarrierResult, ConnectivityResult]) -> pd.DataFrame:
    c = result.curve.copy()
    if "model" not in c.columns:
        c["model"] = "A -> B"
    return c


def curves(result: Union[BarrierResult, ConnectivityResult], *, metrics: Sequence[str] = ("loss", "error"),
                  title: str = "Interpolation A -> B") -> go.Figure:
    """Loss and error along the path, one colour per model (original / aligned), dashed for train."""
    c = _curve_frame(result)
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[m for m in metrics])
    for j, metric in enumerate(metrics):
        for i, (model, g) in enumerate(c.groupby("model", sort=False)):
            for split, s in g.groupby("split", sort=False):
                s = s.sort_values("alpha")
                fig.add_trace(go.Scatter(x=s["alpha"], y=s[metric], mode="lines+markers", marker=dict(size=4),
                                         line=dict(color=COLORS[i % len(COLORS)], dash=_DASH.get(split, "dot")),
                                         name=f"{model} ({split})", legendgroup=f"{model}{split}",
                                         showlegend=j == 0), row=1, col=j + 1)
        fig.update_xaxes(title_text="alpha", row=1, col=j + 1)
    bn = result.settings.get("bn")
    return base_layout(fig, f"{title} (bn={bn})" if bn else title, height=380)


def barrier_table(result: Union[BarrierResult, ConnectivityResult], *, metric: str = "loss") -> go.Figure:
    """The barrier variants as a table figure (rows: model and split)."""
    t = result.table[result.table["metric"] == metric].copy()
    if "model" not in t.columns:
        t["model"] = "A -> B"
    p = t.pivot_table(index=["model", "split"], columns="variant", values="value", sort=False).reset_index()
    cols = list(p.columns)
    cells = [p[c].map(lambda v: f"{v:.4f}") if pd.api.types.is_float_dtype(p[c]) else p[c].astype(str)
             for c in cols]
    fig = go.Figure(go.Table(header=dict(values=cols), cells=dict(values=cells)))
    return base_layout(fig, f"{metric} barriers", height=60 + 30 * (len(p) + 1))


def layerwise(result: Union[LayerwiseResult, ConnectivityResult], *, metric: str = "loss",
                     variant: str = "max_minus_mean") -> go.Figure:
    """Layer-wise barriers per group: one bar per (model, base)."""
    t = result.layerwise if isinstance(result, ConnectivityResult) else result.table
    t = t[(t["metric"] == metric) & (t["variant"] == variant)].copy()
    if "model" not in t.columns:
        t["model"] = ""
    fig = go.Figure()
    for i, ((model, base), g) in enumerate(t.groupby(["model", "base"], sort=False)):
        fig.add_trace(go.Bar(x=g["group"], y=g["value"], name=f"{model} rest at {base.upper()}".strip(),
                             marker_color=COLORS[i % len(COLORS)]))
    fig.update_layout(barmode="group", yaxis_title=f"{metric} barrier ({variant})")
    return base_layout(fig, "Layer-wise LMC", height=360)


def diagnostics(result: ConnectivityResult) -> go.Figure:
    """Per layer: relative L2 distance and singular-vector alignment, before and after alignment."""
    d = result.diagnostics
    fig = make_subplots(rows=1, cols=2, subplot_titles=["relative L2 distance", "singular-vector alignment"])
    for i, (model, g) in enumerate(d.groupby("model", sort=False)):
        fig.add_trace(go.Bar(x=g["layer"], y=g["relative_l2"], name=model, marker_color=COLORS[i % len(COLORS)],
                             legendgroup=model), row=1, col=1)
        h = g[g["layer"] != "<all parameters>"]
        fig.add_trace(go.Bar(x=h["layer"], y=h["sv_alignment"], name=model, marker_color=COLORS[i % len(COLORS)],
                             legendgroup=model, showlegend=False), row=1, col=2)
    fig.update_layout(barmode="group")
    return base_layout(fig, "Distance and alignment per layer", height=380)


def summary(table: pd.DataFrame, *, metric: str = "loss", split: Optional[str] = "test") -> go.Figure:
    """Mean and interval of each barrier variant over seed pairs (:func:`summarize`'s frame)."""
    s = table[table["metric"] == metric]
    if split is not None:
        s = s[s["split"] == split]
    fig = go.Figure(go.Bar(x=s["variant"], y=s["mean"], error_y=dict(type="data", symmetric=False,
                                                                       array=s["high"] - s["mean"],
                                                                       arrayminus=s["mean"] - s["low"]),
                           marker_color=COLORS[0]))
    fig.update_layout(yaxis_title=f"{metric} barrier")
    return base_layout(fig, f"Barriers over {int(s['n'].max()) if len(s) else 0} seed pairs", height=340)
