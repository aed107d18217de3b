"""Pure figure functions for spectra results (plotly ``go.Figure``)."""
from __future__ import annotations

from typing import Union

import numpy as np
import plotly.graph_objects as go

from ..plotting import COLORS, base_layout
from .analyze import SpectraResult
from .powerlaw import EVALS_THRESH, powerlaw_pdf
from .welore import WeLoreResult

__all__ = ["esd", "alpha", "metric", "welore"]


def esd(result: SpectraResult, layer: Union[int, str] = 0, *, bins: int = 60) -> go.Figure:
    """Histogram of one matrix's ESD on log-log axes, with the fitted power-law tail and ``xmin``."""
    i = result._index(layer)
    row = result.table.iloc[i]
    ev = result.esd(i)
    ev = ev[ev > EVALS_THRESH]
    fig = go.Figure()
    if ev.size:
        edges = np.logspace(np.log10(ev.min()), np.log10(ev.max()) + 1e-9, bins + 1)
        counts, _ = np.histogram(ev, bins=edges)
        density = counts / (ev.size * np.diff(edges))
        centers = np.sqrt(edges[:-1] * edges[1:])
        keep = density > 0
        fig.add_trace(go.Bar(x=centers[keep], y=density[keep], width=np.diff(edges)[keep], name="ESD",
                             marker_color=COLORS[0], opacity=0.7))
        alpha, xmin = float(row["alpha"]), float(row["xmin"])
        if np.isfinite(alpha):
            xs = np.logspace(np.log10(xmin), np.log10(ev.max()), 50)
            frac = np.mean(ev >= xmin)
            fig.add_trace(go.Scatter(x=xs, y=frac * powerlaw_pdf(xs, alpha, xmin), mode="lines",
                                     name=f"power law, alpha={alpha:.2f}", line=dict(color=COLORS[3], width=3)))
            fig.add_vline(x=xmin, line_dash="dash", line_color=COLORS[3], annotation_text="xmin")
    fig.update_xaxes(type="log", title="eigenvalue of W^T W")
    fig.update_yaxes(type="log", title="density")
    return base_layout(fig, f"ESD of {row['name']} ({row['shape']})")


def alpha(result: SpectraResult) -> go.Figure:
    """``alpha`` per layer with its bootstrap interval and the 2 and 6 guide lines."""
    t = result.table
    x = list(range(len(t)))
    err_hi = (t["alpha_hi"] - t["alpha"]).to_numpy()
    err_lo = (t["alpha"] - t["alpha_lo"]).to_numpy()
    fig = go.Figure(go.Scatter(
        x=x, y=t["alpha"], mode="markers+lines", name="alpha", text=t["name"],
        error_y=dict(type="data", symmetric=False, array=np.nan_to_num(err_hi), arrayminus=np.nan_to_num(err_lo)),
        hovertemplate="%{text}<br>alpha=%{y:.3f}<extra></extra>", marker=dict(size=9, color=COLORS[0])))
    for y, label in ((2, "2: over-trained below"), (6, "6: under-trained above")):
        fig.add_hline(y=y, line_dash="dot", line_color="gray", annotation_text=label)
    fig.update_xaxes(tickmode="array", tickvals=x, ticktext=list(t["name"]), title="layer")
    fig.update_yaxes(title="alpha")
    return base_layout(fig, "Power-law exponent per layer")


def metric(result: SpectraResult, metric: str = "stable_rank") -> go.Figure:
    """Any numeric column of the table per layer."""
    t = result.table
    if metric not in t or t[metric].dtype.kind not in "biuf":
        raise KeyError(f"metric={metric!r}: choose a numeric column of {list(t.columns)}")
    fig = go.Figure(go.Bar(x=t["name"], y=t[metric], marker_color=COLORS[2]))
    fig.update_yaxes(title=metric)
    return base_layout(fig, f"{metric} per layer")


def welore(plan: WeLoreResult) -> go.Figure:
    """Per-matrix rank reduction at ``tau``; LRCs and N-LRCs coloured, the LRC ratio as a line."""
    t = plan.table
    colors = [COLORS[3] if lrc else COLORS[0] for lrc in t["lrc"]]
    fig = go.Figure(go.Bar(x=t["name"], y=t["reduction"], marker_color=colors, text=t["label"],
                           hovertemplate="%{x}<br>reduction=%{y:.2f}<br>%{text}<extra></extra>"))
    fig.add_hline(y=plan.settings.get("lrc_ratio", 0.5), line_dash="dot", line_color="gray",
                  annotation_text="LRC above")
    fig.update_yaxes(title="rank reduction", range=[0, 1])
    return base_layout(fig, f"WeLore at tau={plan.tau:.3f}: overall reduction {plan.overall:.1%}, "
                            f"parameters x{plan.param_ratio:.2f}")
