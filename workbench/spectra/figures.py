"""Pure figure functions for spectra results (plotly ``go.Figure``); definitions in ``docs/spectra.md``.

A power-law fit resting on fewer than :data:`SMALL_SAMPLE` tail eigenvalues is marked as a small sample
(legend, hover and markers): its exponent carries little information.
"""
from __future__ import annotations

from typing import Union

import numpy as np
import plotly.graph_objects as go

from ..plotting import (ROLE, base_layout, fmt, hline, hover, legend_entry, log_axis, many_ticks_height, names_axis,
                        vline)
from .analyze import SpectraResult
from .powerlaw import EVALS_THRESH, powerlaw_pdf
from .welore import WeLoreResult

__all__ = ["esd", "alpha", "metric", "welore"]

SMALL_SAMPLE = 50  # tail eigenvalues below which a power-law fit is marked as a small sample

EIGEN = "eigenvalue λ of WᵀW"
COLUMN_LABELS = {
    "N": "rows N (larger side)", "M": "columns M (smaller side)", "rf": "receptive field (kernel slices)",
    "num_evals": "number of eigenvalues", "num_params": "number of parameters",
    "lambda_max": "largest eigenvalue λ_max of WᵀW", "norm": "squared Frobenius norm ‖W‖²_F",
    "log_norm": "log₁₀ ‖W‖²_F", "log_spectral_norm": "log₁₀ λ_max (squared spectral norm)",
    "stable_rank": "stable rank ‖W‖²_F / λ_max", "effective_rank": "effective rank (singular-value entropy)",
    "numerical_rank": "numerical rank", "alpha": "α (power-law exponent)", "alpha_lo": "α, lower bound",
    "alpha_hi": "α, upper bound", "alpha_sigma": "standard error of α", "xmin": f"x_min (start of the tail, {EIGEN})",
    "ks_distance": "Kolmogorov-Smirnov distance of the fit", "num_pl_spikes": "tail eigenvalues in the fit",
    "alpha_weighted": "weighted α (α · log₁₀ λ_max)", "log_alpha_norm": "log₁₀ Σ λᵢ^α (α-norm)",
    "mp_softrank": "MP soft rank (bulk edge / λ_max)",
}


def _sample_note(n_tail: int, n_total=None) -> str:
    of = f" of {n_total}" if n_total is not None else ""
    if n_tail < SMALL_SAMPLE:
        return f"small sample: fit on {n_tail} tail eigenvalues{of} (fewer than {SMALL_SAMPLE})"
    return f"fit on {n_tail} tail eigenvalues{of}"


def _histogram(ev: np.ndarray, bins: int):
    edges = np.logspace(np.log10(ev.min()), np.log10(ev.max()) + 1e-9, bins + 1)
    counts, _ = np.histogram(ev, bins=edges)
    density = counts / (ev.size * np.diff(edges))
    keep = density > 0
    return edges, counts, density, keep


def esd(result: SpectraResult, layer: Union[int, str] = 0, *, bins: int = 60) -> go.Figure:
    """Histogram of one matrix's ESD on log-log axes, with the fitted power-law tail and ``xmin``."""
    i = result._index(layer)
    row = result.table.iloc[i]
    ev = result.esd(i)
    ev = ev[ev > EVALS_THRESH]
    fig = go.Figure()
    fig.update_xaxes(type="log", title=EIGEN)
    fig.update_yaxes(type="log", title="density (fraction of eigenvalues per unit λ)")
    alpha, xmin, n_tail = float(row["alpha"]), float(row["xmin"]), int(row["num_pl_spikes"])
    if ev.size:
        edges, counts, density, keep = _histogram(ev, bins)
        drawn = [density[keep]]
        fig.add_trace(go.Bar(
            x=np.sqrt(edges[:-1] * edges[1:])[keep], y=density[keep], width=np.diff(edges)[keep], name="ESD",
            marker=dict(color=ROLE["data"], line=dict(width=0)), opacity=0.75,
            customdata=np.stack([edges[:-1], edges[1:], counts], 1)[keep],
            hovertemplate=hover("λ from %{customdata[0]:.3g} to %{customdata[1]:.3g}", "eigenvalues: %{customdata[2]}",
                                "density: %{y:.3g}")))
        if np.isfinite(alpha):
            xs = np.logspace(np.log10(xmin), np.log10(ev.max()), 50)
            frac = np.mean(ev >= xmin)
            small = n_tail < SMALL_SAMPLE
            drawn.append(frac * powerlaw_pdf(xs, alpha, xmin))
            fig.add_trace(go.Scatter(
                x=xs, y=drawn[-1], mode="lines",
                name=f"power-law fit, α = {alpha:.2f}" + (f" (small sample: {n_tail} tail eigenvalues)" * small),
                line=dict(color=ROLE["fit"], width=3, dash="dot" if small else "solid"),
                hovertemplate=hover(f"power law α = {alpha:.3f}", f"x_min = {fmt(xmin)}", _sample_note(n_tail),
                                    "λ = %{x:.3g}", "density: %{y:.3g}")))
        drawn = np.concatenate(drawn)
        fig.update_xaxes(**log_axis(ev.min(), ev.max()))
        fig.update_yaxes(**log_axis(drawn.min(), drawn.max()))
        if np.isfinite(alpha):
            where = np.log10(xmin / ev.min()) / max(np.log10(ev.max() / ev.min()), 1e-12)
            vline(fig, xmin, f"x_min = {fmt(xmin)}", color=ROLE["fit"], side="left" if where > 0.7 else "right")
    else:
        fig.add_annotation(x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                           text=f"no eigenvalue above {EVALS_THRESH:g}")
    if np.isfinite(alpha):
        q = f", read as {row['quality']}" if row["quality"] else ""
        lo, hi = row.get("alpha_lo", np.nan), row.get("alpha_hi", np.nan)
        band = f" [{fmt(lo)}, {fmt(hi)}]" if np.isfinite(lo) and np.isfinite(hi) else ""  # none without bootstrap
        sub = (f"{row['shape']} matrix; α = {alpha:.2f}{band}{q}<br>"
               f"{_sample_note(n_tail, int(row['num_evals']))}")
    else:
        sub = f"{row['shape']} matrix; no power-law fit: {int(row['num_evals'])} eigenvalues (a fit needs 8)"
    return base_layout(fig, f"Eigenvalue spectrum of {row['name']}", subtitle=sub, height=440,
                       bargap=0)


def _alpha_range(t) -> list:
    values = np.concatenate([t[c].to_numpy(float) for c in ("alpha", "alpha_lo", "alpha_hi")] + [[2.0, 6.0]])
    values = values[np.isfinite(values)]
    pad = 0.06 * (values.max() - values.min())
    return [values.min() - pad, values.max() + pad]


def alpha(result: SpectraResult) -> go.Figure:
    """``alpha`` per layer with its bootstrap interval and the 2 and 6 guide lines."""
    t = result.table
    x = list(range(len(t)))
    err_hi = (t["alpha_hi"] - t["alpha"]).to_numpy()
    err_lo = (t["alpha"] - t["alpha_lo"]).to_numpy()
    n_tail = t["num_pl_spikes"].fillna(0).astype(int).to_numpy()
    small = (n_tail < SMALL_SAMPLE) & t["alpha"].notna().to_numpy()
    notes = [_sample_note(n, m) if np.isfinite(a) else f"no fit ({m} eigenvalues)"
             for n, m, a in zip(n_tail, t["num_evals"], t["alpha"])]
    custom = np.stack([t["name"], t["alpha_lo"], t["alpha_hi"], notes, t["quality"]], 1)
    fig = go.Figure(go.Scatter(
        x=x, y=t["alpha"], mode="markers+lines", customdata=custom,
        name=f"α with {result.settings.get('level', 0.95):.0%} bootstrap interval",
        error_y=dict(type="data", symmetric=False, array=np.nan_to_num(err_hi), arrayminus=np.nan_to_num(err_lo),
                     color=ROLE["data"], thickness=1.2),
        hovertemplate=hover("%{customdata[0]}", "α = %{y:.3f} [%{customdata[1]:.2f}, %{customdata[2]:.2f}]",
                            "%{customdata[4]}", "%{customdata[3]}"),
        line=dict(color=ROLE["data"], width=1),
        marker=dict(size=10, color=ROLE["data"], symbol=np.where(small, "circle-open", "circle"),
                    line=dict(width=2, color=ROLE["data"]))))
    if small.any():
        fig.add_trace(legend_entry(f"fit on fewer than {SMALL_SAMPLE} tail eigenvalues (small sample)", ROLE["data"],
                                   symbol="circle-open"))
    fig.update_xaxes(names_axis(t["name"]), tickvals=x, title="weight matrix (module order)")
    fig.update_yaxes(title="α (power-law exponent of the ESD tail)", range=_alpha_range(t) if len(t) else None)
    hline(fig, 2, "α = 2: over-trained below", above=False, left=True, dash="dot")
    hline(fig, 6, "α = 6: under-trained above", left=True, dash="dot")
    unfit = int(t["alpha"].isna().sum())
    sub = "2 ≤ α ≤ 6 reads as well-trained (a heuristic band)"
    if unfit:
        sub += f"; {unfit} matri{'ces' if unfit != 1 else 'x'} with fewer than 8 eigenvalues: no fit"
    return base_layout(fig, "Power-law exponent α of each weight matrix", subtitle=sub,
                       height=many_ticks_height(len(t)))


def metric(result: SpectraResult, metric: str = "stable_rank") -> go.Figure:
    """Any numeric column of the table per layer."""
    t = result.table
    if metric not in t or t[metric].dtype.kind not in "biuf":
        raise KeyError(f"metric={metric!r}: choose a numeric column of {list(t.columns)}")
    label = COLUMN_LABELS.get(metric, metric.replace("_", " "))
    fig = go.Figure(go.Bar(x=t["name"], y=t[metric], marker_color=ROLE["data"], name=label,
                           customdata=np.stack([t["shape"]], 1),
                           hovertemplate=hover("%{x} (%{customdata[0]})", f"{label}: %{{y:.4g}}")))
    fig.update_xaxes(names_axis(t["name"]), title="weight matrix (module order)")
    fig.update_yaxes(title=label)
    head = label[0].upper() + label[1:]
    return base_layout(fig, f"{head} of each weight matrix", height=many_ticks_height(len(t), 380))


def welore(plan: WeLoreResult) -> go.Figure:
    """Per-matrix rank reduction at ``tau``; LRCs and N-LRCs coloured, the LRC ratio as a line."""
    t = plan.table
    colors = [ROLE["fit"] if lrc else ROLE["data"] for lrc in t["lrc"]]
    fig = go.Figure(go.Bar(
        x=t["name"], y=t["reduction"], marker_color=colors, text=t["label"], name="rank reduction", showlegend=False,
        customdata=np.stack([t["kept_rank"], t["rank"]], 1), textposition="auto" if len(t) <= 12 else "none",
        hovertemplate=hover("%{x}: %{text}", "rank reduction: %{y:.1%}",
                            "kept %{customdata[0]} of %{customdata[1]} singular values")))
    fig.add_trace(legend_entry("LRC (low-rank component)", ROLE["fit"]))
    fig.add_trace(legend_entry("N-LRC", ROLE["data"]))
    ratio = plan.settings.get("lrc_ratio", 0.5)
    fig.update_xaxes(names_axis(t["name"]), title="weight matrix (module order)")
    fig.update_yaxes(title="rank reduction (fraction of singular values dropped)", range=[0, 1], tickformat=".0%")
    hline(fig, ratio, f"LRC above {ratio:.0%}", dash="dot")
    return base_layout(fig, f"WeLore drops {plan.overall:.1%} of all singular values at τ = {plan.tau:.3f}",
                       subtitle=f"parameters of the rank-r factors: × {plan.param_ratio:.2f} of the dense matrices",
                       height=many_ticks_height(len(t), 400))
