"""Pure figure functions for intrinsic-dimension results (result -> plotly Figure); definitions in
``docs/intrinsic-dimension.md``.

The subspace dimension d is drawn on log axes; every guide line is labelled in the axis' own (log10)
coordinates, so labels sit by their lines.  Numbers that rest on fewer than :data:`FEW_SEEDS` seeds per
d are marked as such.
"""
from __future__ import annotations

import math
from typing import Dict, Optional

import numpy as np
import plotly.graph_objects as go

from ..plotting import COLORS, ROLE, base_layout, fmt, hline, hover, log_axis, vline

__all__ = ["search", "comparison", "profile", "twonn", "projection_cost"]

FEW_SEEDS = 3
ESTIMATORS = {"twonn": "TwoNN", "mle": "Levina-Bickel MLE"}
D_AXIS = "subspace dimension d (log scale)"


def _d_axis(fig: go.Figure, *values) -> None:
    d = np.concatenate([np.asarray(v, dtype=float).ravel() for v in values if v is not None and len(v)] or [[1.0]])
    d = d[np.isfinite(d) & (d > 0)]
    fig.update_xaxes(title=D_AXIS, **(log_axis(d.min(), d.max()) if d.size else dict(type="log")))


def _interval(fig: go.Figure, lo: float, hi: float, level: str) -> None:
    """The bootstrap interval of d_int90 as a band, labelled at its top left (log10 coordinates)."""
    fig.add_vrect(x0=lo, x1=hi, fillcolor=ROLE["estimate"], opacity=0.15, line_width=0)
    fig.add_annotation(x=math.log10(lo), xref="x", y=0.98, yref="y domain", text=f"{level} bootstrap interval",
                       showarrow=False, xanchor="right", xshift=-4, yanchor="top", font=dict(color=ROLE["estimate"]),
                       bgcolor="rgba(255,255,255,0.75)")


def _search_subtitle(result, n_seeds: int) -> str:
    thr = result.settings.get("threshold", 0.9)
    name = f"d_int{int(round(thr * 100))}"
    if result.reached:
        lo, hi = result.interval
        head = f"{name} = {int(result.d_int90)} (95 % bootstrap interval {fmt(lo)} to {fmt(hi)})"
    else:
        head = f"{name} not reached up to d = {result.settings.get('d_max')}"
    few = " (few seeds: a rough interval)" if n_seeds < FEW_SEEDS else ""
    proj = result.settings.get("projection")
    return f"{head}<br>{n_seeds} seed{'s' * (n_seeds != 1)} per d{few}" + (f"; {proj} projection" if proj else "")


def search(result, *, title: Optional[str] = None) -> go.Figure:
    """Accuracy against d (log axis): every trial, the mean per d, the 90 % target line, d_int90 and its
    bootstrap interval."""
    fig = go.Figure()
    trials, summary = result.trials, result.summary
    split = result.settings.get("split", "test")
    if len(trials):
        fig.add_trace(go.Scatter(x=trials["d"], y=trials["accuracy"], mode="markers", name="one trial (seed)",
                                 marker=dict(color=ROLE["data"], size=6, opacity=0.45), customdata=trials[["seed"]],
                                 hovertemplate=hover("d = %{x}, seed %{customdata[0]}", "accuracy: %{y:.3f}")))
    if len(summary):
        fig.add_trace(go.Scatter(x=summary["d"], y=summary["mean_accuracy"], mode="lines+markers",
                                 name="mean over seeds ± standard deviation", line=dict(color=ROLE["data"]),
                                 error_y=dict(type="data", array=summary["std_accuracy"], visible=True),
                                 customdata=summary[["std_accuracy", "n_seeds"]],
                                 hovertemplate=hover("d = %{x}", "mean accuracy: %{y:.3f} ± %{customdata[0]:.3f}",
                                                     "seeds: %{customdata[1]}")))
    _d_axis(fig, trials["d"] if len(trials) else None, summary["d"] if len(summary) else None)
    fig.update_yaxes(title=f"{split} accuracy (fraction correct)")
    thr = result.settings.get("threshold", 0.9)
    hline(fig, result.target, f"target: {thr:.0%} of the baseline ({result.baseline:.3f})", color=ROLE["fit"],
          above=False)
    if math.isfinite(result.baseline) and result.settings.get("baseline") == "full":
        hline(fig, result.baseline, f"full training ({result.baseline:.3f})", dash="dot")
    if result.reached:
        lo, hi = result.interval
        if math.isfinite(lo) and math.isfinite(hi) and hi > lo > 0:
            _interval(fig, lo, hi, "95 %")
        d = np.log10(np.asarray(trials["d"] if len(trials) else [result.d_int90], dtype=float))
        right = math.log10(result.d_int90) > (d.min() + d.max()) / 2
        vline(fig, result.d_int90, f"d_int{int(round(thr * 100))} = {int(result.d_int90)}", color=ROLE["estimate"],
              dash="solid", width=2, top=False, side="left" if right else "right")
    n = int(summary["n_seeds"].max()) if len(summary) and "n_seeds" in summary else 0
    name = result.settings.get("model", "")
    return base_layout(fig, title or f"Accuracy of {name or 'the model'} trained in d random directions",
                       subtitle=_search_subtitle(result, n), height=460)


def comparison(results: Dict[str, object], *,
               title: str = "Accuracy relative to each baseline, against the subspace dimension") -> go.Figure:
    """Mean accuracy against d, normalised by each baseline, for several searches (one line each)."""
    fig = go.Figure()
    ds = []
    for i, (label, res) in enumerate(results.items()):
        s = res.summary
        ds.append(s["d"])
        color = COLORS[i % len(COLORS)]
        found = f"d_int90 = {int(res.d_int90)}" if res.reached else f"not reached up to d = {res.settings.get('d_max')}"
        fig.add_trace(go.Scatter(x=s["d"], y=s["mean_accuracy"] / res.baseline, mode="lines+markers",
                                 name=f"{label}: {found}", line=dict(color=color), customdata=s[["mean_accuracy"]],
                                 hovertemplate=hover(label, "d = %{x}", "accuracy / baseline: %{y:.3f}",
                                                     "accuracy: %{customdata[0]:.3f}")))
        if res.reached:
            fig.add_vline(x=res.d_int90, line=dict(color=color, dash="dot"))
    _d_axis(fig, *ds)
    thr = next(iter(results.values())).settings.get("threshold", 0.9) if results else 0.9
    hline(fig, thr, f"{thr:.0%} of the baseline", color=ROLE["fit"], above=False)
    fig.update_yaxes(title="accuracy / baseline accuracy")
    return base_layout(fig, title, subtitle="dotted lines: each task's d_int90", height=460)


def profile(result, *, title: Optional[str] = None) -> go.Figure:
    """Intrinsic dimension of each layer's representation, in forward order."""
    f = result.frame
    est = ESTIMATORS.get(result.settings.get("estimator", ""), result.settings.get("estimator", ""))
    fig = go.Figure(go.Scatter(
        x=f["layer"], y=f["dimension"], mode="lines+markers", name="intrinsic dimension",
        line=dict(color=ROLE["data"]), marker=dict(size=8),
        customdata=np.stack([f["n_features"], f["n_duplicates"], f["n_used"]], axis=1) if len(f) else None,
        hovertemplate=hover("%{x}", "intrinsic dimension: %{y:.2f}", "features (ambient dimension): %{customdata[0]}",
                            "points used: %{customdata[2]}, duplicates: %{customdata[1]}")))
    fig.update_xaxes(title="layer (forward order)")
    fig.update_yaxes(title=f"intrinsic dimension ({est} estimate)" if est else "intrinsic dimension",
                     rangemode="tozero")
    n = result.settings.get("n")
    dup = int(f["n_duplicates"].sum()) if len(f) else 0
    sub = ", ".join(p for p in (f"{n} points per layer" if n else "",
                                f"{dup} duplicate points left out" if dup else "") if p)
    return base_layout(fig, title or "Intrinsic dimension of each layer's representation", subtitle=sub or None,
                       height=400)


def twonn(estimate, *, title: Optional[str] = None) -> go.Figure:
    """The TwoNN fit: -log(1 - F(mu)) against log mu and the line of slope d through the origin."""
    x, y = np.asarray(estimate.fit_x), np.asarray(estimate.fit_y)
    fig = go.Figure(go.Scatter(x=x, y=y, mode="markers", name="points (empirical distribution of μ)",
                               marker=dict(size=4, color=ROLE["data"], opacity=0.6),
                               hovertemplate=hover("log μ = %{x:.3f}", "−log(1 − F(μ)) = %{y:.3f}")))
    if len(x):
        xs = np.array([0.0, float(x.max())])
        fig.add_trace(go.Scatter(x=xs, y=estimate.dimension * xs, mode="lines",
                                 name=f"line through 0 of slope d = {estimate.dimension:.2f}",
                                 line=dict(color=ROLE["fit"], width=2),
                                 hovertemplate=hover(f"fit: slope d = {estimate.dimension:.3f}", "log μ = %{x:.3f}",
                                                     "−log(1 − F(μ)) = %{y:.3f}")))
    fig.update_xaxes(title="log μ (μ = distance to 2nd / 1st nearest neighbour)")
    fig.update_yaxes(title="−log(1 − F(μ)), F the empirical CDF")
    sub = f"fit on {len(x)} of {estimate.n_points} points"
    if estimate.n_duplicates:
        sub += f"; {estimate.n_duplicates} duplicates"
    return base_layout(fig, title or f"TwoNN estimate of the intrinsic dimension: d = {estimate.dimension:.2f}",
                       subtitle=sub, height=420)


def projection_cost(frame, *, title: str = "Time and memory of one training step, per projection") -> go.Figure:
    """Time (and memory) per step against d for each projection, from a benchmark frame with columns
    ``projection``, ``d``, ``seconds`` and ``bytes``."""
    fig = go.Figure()
    for i, (name, g) in enumerate(frame.groupby("projection")):
        color = COLORS[i % len(COLORS)]
        fig.add_trace(go.Scatter(x=g["d"], y=g["seconds"], mode="lines+markers", name=f"{name}: time",
                                 line=dict(color=color),
                                 hovertemplate=hover(f"{name} projection", "d = %{x}", "%{y:.3g} s per step")))
        fig.add_trace(go.Scatter(x=g["d"], y=g["bytes"] / 2 ** 20, mode="lines+markers", name=f"{name}: memory",
                                 yaxis="y2", line=dict(color=color, dash="dot"), marker=dict(symbol="square"),
                                 hovertemplate=hover(f"{name} projection", "d = %{x}", "%{y:.3g} MiB")))
    sec, mib = frame["seconds"].to_numpy(float), frame["bytes"].to_numpy(float) / 2 ** 20
    fig.update_layout(yaxis=dict(title=dict(text="time per step (s), solid"),
                                 **(log_axis(sec.min(), sec.max()) if len(sec) else dict(type="log"))),
                      yaxis2=dict(title=dict(text="memory (MiB), dotted"), overlaying="y", side="right",
                                  showgrid=False, showline=True, ticks="outside", automargin=True,
                                  **(log_axis(mib.min(), mib.max()) if len(mib) else dict(type="log"))))
    _d_axis(fig, frame["d"] if len(frame) else None)
    return base_layout(fig, title, height=440)
