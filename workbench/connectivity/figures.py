"""Pure figure functions for connectivity results (result -> plotly figure); definitions in
``docs/connectivity.md``.

Colours follow the roles of :data:`workbench.plotting.ROLE`: the path to B as trained in B's colour, the
paths to B aligned by weights or by activations in theirs; the split is the line style (test solid,
train dashed).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..plotting import COLORS, ROLE, base_layout, fmt, hover, loss_label
from .analysis import ConnectivityResult
from .barrier import BarrierResult
from .layerwise import LayerwiseResult

__all__ = ["curves", "barrier_table", "layerwise", "diagnostics", "summary"]

_DASH = {"test": "solid", "train": "dash"}
_PATH = "A -> B"  # the model label of a single BarrierResult's curve
MODEL_ROLE = {"original": "model_b", "weight": "aligned_weight", "activation": "aligned_activation", _PATH: "model_b"}
MODEL_LABEL = {"original": "as trained", "weight": "aligned by weights", "activation": "aligned by activations",
               _PATH: "A → B", "": "A → B"}
VARIANT_LABEL = {"max_minus_mean": "max − mean of the ends", "max_minus_chord": "max above the chord",
                 "midpoint": "midpoint − mean of the ends", "signed_mc": "signed mc (< 0: barrier)"}
ALPHA = "interpolation α (0 = A, 1 = B)"


def _model_color(model: str, i: int = 0) -> str:
    role = MODEL_ROLE.get(model)
    return ROLE[role] if role else COLORS[i % len(COLORS)]


def _metric_label(metric: str, settings: dict, split: str = "") -> str:
    if metric == "loss":
        return loss_label(settings, split)
    what = {"error": "error (fraction misclassified)", "accuracy": "accuracy (fraction correct)"}.get(metric, metric)
    return f"{split} {what}".strip()


def _curve_frame(result: Union[BarrierResult, ConnectivityResult]) -> pd.DataFrame:
    c = result.curve.copy()
    if "model" not in c.columns:
        c["model"] = _PATH
    return c


def _barrier_note(result, metric: str = "loss", bn: Optional[str] = None) -> str:
    """Two lines: the reported variant of the evaluation split's barrier (and the BatchNorm mode), per model."""
    t = result.table
    variant, split = result.settings.get("variant", "max_minus_mean"), result.settings.get("split", "test")
    t = t[(t["metric"] == metric) & (t["variant"] == variant) & (t["split"] == split)]
    if t.empty:
        return ""
    models = t["model"] if "model" in t.columns else [_PATH] * len(t)
    parts = [f"{fmt(v)} {MODEL_LABEL.get(m, m)}" if m != _PATH else fmt(v) for m, v in zip(models, t["value"])]
    head = f"{split} {metric} barrier, {VARIANT_LABEL.get(variant, variant)}" + (f"; BatchNorm {bn}" if bn else "")
    return f"{head}:<br>" + ", ".join(parts)


def curves(result: Union[BarrierResult, ConnectivityResult], *, metrics: Sequence[str] = ("loss", "error"),
           title: str = "The linear path from model A to model B") -> go.Figure:
    """Loss and error along the path, one colour per model (original / aligned), dashed for train."""
    c = _curve_frame(result)
    fig = make_subplots(rows=1, cols=len(metrics), horizontal_spacing=0.15 if len(metrics) > 1 else 0.0)
    for j, metric in enumerate(metrics):
        for i, (model, g) in enumerate(c.groupby("model", sort=False)):
            for split, s in g.groupby("split", sort=False):
                s = s.sort_values("alpha")
                name = f"{MODEL_LABEL.get(model, model)}, {split}" if model != _PATH else split
                fig.add_trace(go.Scatter(
                    x=s["alpha"], y=s[metric], mode="lines+markers", marker=dict(size=5), name=name,
                    line=dict(color=_model_color(model, i), dash=_DASH.get(split, "dot"), width=2),
                    legendgroup=f"{model}{split}", showlegend=j == 0,
                    hovertemplate=hover(name, "α = %{x:.3f}", f"{metric}: %{{y:.4g}}")), row=1, col=j + 1)
        fig.update_xaxes(title_text=ALPHA, row=1, col=j + 1)
        fig.update_yaxes(title_text=_metric_label(metric, result.settings), row=1, col=j + 1)
    bn = result.settings.get("bn") if result.settings.get("batchnorm", True) else None
    return base_layout(fig, title, subtitle=_barrier_note(result, bn=bn) or None, height=460)


def barrier_table(result: Union[BarrierResult, ConnectivityResult], *, metric: str = "loss") -> go.Figure:
    """The barrier variants as a table figure (rows: model and split)."""
    t = result.table[result.table["metric"] == metric].copy()
    if "model" not in t.columns:
        t["model"] = _PATH
    p = t.pivot_table(index=["model", "split"], columns="variant", values="value", sort=False).reset_index()
    cols = list(p.columns)
    cells = [p[c].map(lambda v: f"{v:.4f}") if pd.api.types.is_float_dtype(p[c]) else p[c].astype(str)
             for c in cols]
    cells[0] = p["model"].map(lambda m: MODEL_LABEL.get(m, m))
    header = ["path to B", "split"] + [VARIANT_LABEL.get(c, c) for c in cols[2:]]
    fig = go.Figure(go.Table(
        header=dict(values=[f"<b>{h}</b>" for h in header], fill_color="#eeeeee", align="left", line_color="#dddddd",
                    height=30),
        cells=dict(values=cells, align=["left", "left"] + ["right"] * (len(cols) - 2), fill_color="white",
                   line_color="#e6e6e6", height=26),
        columnwidth=[1.6, 0.7] + [1.0] * (len(cols) - 2), hoverinfo="skip"))
    what = _metric_label(metric, result.settings)
    return base_layout(fig, f"Barriers of the {what} between A and B, in every variant",
                       subtitle="positive values are barriers, except signed mc, negative for a barrier",
                       height=140 + 30 * (len(p) + 1))


def layerwise(result: Union[LayerwiseResult, ConnectivityResult], *, metric: str = "loss",
              variant: str = "max_minus_mean") -> go.Figure:
    """Layer-wise barriers per group: one bar per (model, base)."""
    t = result.layerwise if isinstance(result, ConnectivityResult) else result.table
    t = t[(t["metric"] == metric) & (t["variant"] == variant)].copy()
    if "model" not in t.columns:
        t["model"] = ""
    fig = go.Figure()
    for i, ((model, base), g) in enumerate(t.groupby(["model", "base"], sort=False)):
        name = f"{MODEL_LABEL.get(model, model)}, rest at {base.upper()}"
        fig.add_trace(go.Bar(
            x=g["group"], y=g["value"], name=name, marker=dict(
                color=_model_color(model, i), pattern=dict(shape="/" if base == "b" else "", fgcolor="white")),
            hovertemplate=hover(name, "layer group: %{x}", f"{metric} barrier: %{{y:.4g}}")))
    split = result.settings.get("split", "test")
    fig.update_layout(barmode="group")
    fig.update_xaxes(title="layer group interpolated alone (the rest held at A or at B)")
    fig.update_yaxes(title=f"{split} {metric} barrier ({VARIANT_LABEL.get(variant, variant)})")
    return base_layout(fig, "Which layers carry the barrier", height=400)


def diagnostics(result: ConnectivityResult) -> go.Figure:
    """Per layer: relative L2 distance and singular-vector alignment, before and after alignment."""
    d = result.diagnostics
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.15)
    for i, (model, g) in enumerate(d.groupby("model", sort=False)):
        name = f"B {MODEL_LABEL.get(model, model)}"
        color = _model_color(model, i)
        fig.add_trace(go.Bar(x=g["layer"], y=g["relative_l2"], name=name, marker_color=color, legendgroup=model,
                             hovertemplate=hover(name, "%{x}", "‖W_A − W_B‖ / ‖W_A‖ = %{y:.3f}")), row=1, col=1)
        h = g[g["layer"] != "<all parameters>"]
        fig.add_trace(go.Bar(x=h["layer"], y=h["sv_alignment"], name=name, marker_color=color, legendgroup=model,
                             showlegend=False, hovertemplate=hover(name, "%{x}", "alignment: %{y:.3f}")),
                      row=1, col=2)
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text="weight tensor", row=1, col=1)
    fig.update_xaxes(title_text="weight matrix", row=1, col=2)
    fig.update_yaxes(title_text="relative L2 distance ‖W_A − W_B‖ / ‖W_A‖", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="singular-vector alignment (1 = identical)", rangemode="tozero", row=1, col=2)
    return base_layout(fig, "How far B lies from A, before and after alignment", height=440)


def summary(table: pd.DataFrame, *, metric: str = "loss", split: Optional[str] = "test") -> go.Figure:
    """Mean and interval of each barrier variant over seed pairs (:func:`summarize`'s frame)."""
    s = table[table["metric"] == metric]
    if split is not None:
        s = s[s["split"] == split]
    n = int(s["n"].max()) if len(s) else 0
    labels = [VARIANT_LABEL.get(v, v) for v in s["variant"]]
    fig = go.Figure(go.Bar(
        x=s["variant"], y=s["mean"], name=f"mean over {n} seed pairs", marker_color=ROLE["data"],
        error_y=dict(type="data", symmetric=False, array=s["high"] - s["mean"], arrayminus=s["mean"] - s["low"]),
        customdata=np.stack([labels, s["low"], s["high"], s["n"]], 1) if len(s) else None,
        hovertemplate=hover("%{customdata[0]}", "mean: %{y:.4g}",
                            "interval: %{customdata[1]:.4g} to %{customdata[2]:.4g}", "seed pairs: %{customdata[3]}")))
    fig.update_xaxes(title="barrier variant", tickmode="array", tickvals=list(s["variant"]), ticktext=labels)
    fig.update_yaxes(title=f"{split or ''} {metric} barrier".strip())
    few = " (too few for an interval)" if n < 2 else ""
    return base_layout(fig, f"Barriers over {n} seed pairs{few}", subtitle="bars: mean; whiskers: Student-t interval",
                       height=380)
