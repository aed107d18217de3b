"""Pure figure functions for landscape and curvature results (result -> plotly ``go.Figure``).

Colour levels can be fixed (``zmin``/``zmax``) so that maps of two models share one scale; ``log=True``
colours by ``log10(loss)``.  Grid points whose loss is NaN or infinite are left as gaps and marked with
an ``x``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..plotting import COLORS, base_layout
from .curvature import DensityResult, EigenResult, LayerwiseResult, TraceResult
from .maps import LandscapeResult

__all__ = ["contour", "surface", "slices", "curve", "spectrum", "layerwise"]


def _values(result: LandscapeResult, split: Optional[str], metric: str) -> tuple:
    split = split or result.splits[-1]
    if split not in result.loss:
        raise ValueError(f"split={split!r}; this result has {result.splits}")
    if metric == "loss":
        z = np.asarray(result.loss[split], dtype=float)
    elif metric == "accuracy":
        z = np.asarray(result.accuracy[split], dtype=float)
    elif metric == "error":
        z = 1.0 - np.asarray(result.accuracy[split], dtype=float)
    else:
        raise ValueError(f"metric={metric!r}; choose 'loss', 'accuracy' or 'error'")
    return split, z


def color_values(z: np.ndarray, log: bool = False) -> np.ndarray:
    """The values that are coloured: ``z`` (NaN where not finite), or ``log10(z)`` when ``log``."""
    z = np.where(np.isfinite(z), z, np.nan)
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.log10(np.where(z > 0, z, np.nan))
    return z


def _bad_points(result: LandscapeResult, z: np.ndarray) -> go.Scatter:
    jj, ii = np.nonzero(~np.isfinite(z))
    return go.Scatter(x=result.x[ii], y=result.y[jj], mode="markers", name="NaN / inf",
                      marker=dict(symbol="x", color="black", size=8), showlegend=bool(len(ii)))


def contour(result: LandscapeResult, *, split: Optional[str] = None, metric: str = "loss", log: bool = False,
            zmin: Optional[float] = None, zmax: Optional[float] = None, ncontours: int = 30,
            title: Optional[str] = None) -> go.Figure:
    """2-D contour map of a plane; the model is marked at the origin, a trajectory (if any) drawn on top.

    ``zmin``/``zmax`` fix the colour levels (in log10 units when ``log``) so two maps are comparable.
    """
    if not result.is_plane:
        raise ValueError("contour needs a plane result (workbench.landscape.plane); use curve() for a line")
    split, z = _values(result, split, metric)
    zc = color_values(z, log)
    finite = zc[np.isfinite(zc)]
    lo = zmin if zmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = zmax if zmax is not None else (float(finite.max()) if finite.size else 1.0)
    if hi <= lo:
        hi = lo + 1e-12
    label = f"log10 {metric}" if log else metric
    fig = go.Figure(go.Contour(
        x=result.x, y=result.y, z=zc, colorscale="Viridis", name=label,
        contours=dict(start=lo, end=hi, size=(hi - lo) / max(ncontours, 1), showlabels=False),
        zmin=lo, zmax=hi, colorbar=dict(title=label), connectgaps=False,
        customdata=np.stack([z, np.asarray(result.accuracy[split])], -1),
        hovertemplate="x=%{x:.3f}<br>y=%{y:.3f}<br>loss/metric=%{customdata[0]:.4g}"
                      "<br>accuracy=%{customdata[1]:.3f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[0.0], y=[0.0], mode="markers", name="model",
                             marker=dict(symbol="star", size=12, color="white", line=dict(color="black", width=1))))
    fig.add_trace(_bad_points(result, z))
    if result.trajectory is not None and len(result.trajectory):
        tr = np.asarray(result.trajectory)
        fig.add_trace(go.Scatter(x=tr[:, 0], y=tr[:, 1], mode="lines+markers", name="trajectory",
                                 line=dict(color="red"), marker=dict(size=4)))
    base_layout(fig, title or f"{label} ({split})", xaxis_title="x (direction 1)", yaxis_title="y (direction 2)")
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig


def surface(result: LandscapeResult, *, split: Optional[str] = None, metric: str = "loss", log: bool = False,
            zmin: Optional[float] = None, zmax: Optional[float] = None, title: Optional[str] = None) -> go.Figure:
    """3-D surface of a plane (NaN points are holes); fixed ``zmin``/``zmax`` set colour and z range."""
    if not result.is_plane:
        raise ValueError("surface needs a plane result (workbench.landscape.plane)")
    split, z = _values(result, split, metric)
    zc = color_values(z, log)
    label = f"log10 {metric}" if log else metric
    fig = go.Figure(go.Surface(x=result.x, y=result.y, z=zc, colorscale="Viridis", cmin=zmin, cmax=zmax,
                               colorbar=dict(title=label)))
    scene = dict(xaxis_title="x", yaxis_title="y", zaxis_title=label)
    if zmin is not None and zmax is not None:
        scene["zaxis"] = dict(range=[zmin, zmax])
    base_layout(fig, title or f"{label} surface ({split})", scene=scene)
    return fig


def curve(result: LandscapeResult, *, metrics: Sequence[str] = ("loss", "accuracy"), log: bool = False,
          title: Optional[str] = None) -> go.Figure:
    """A line result (line, interpolation, eigen slice): loss (and accuracy) per split against ``x``.

    For an eigen slice the quadratic prediction ``loss0 + lambda t^2 / 2`` is drawn dashed.
    """
    if result.is_plane:
        return slices(result, log=log, title=title)
    rows = len(metrics)
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    for r, metric in enumerate(metrics, start=1):
        for c, split in enumerate(result.splits):
            _, z = _values(result, split, metric)
            fig.add_trace(go.Scatter(x=result.x, y=np.where(np.isfinite(z), z, np.nan), mode="lines+markers",
                                     name=f"{metric} ({split})", line=dict(color=COLORS[c % len(COLORS)],
                                                                          dash="solid" if r == 1 else "dot"),
                                     marker=dict(size=4)), row=r, col=1)
            bad = ~np.isfinite(z)
            if bad.any():
                fig.add_trace(go.Scatter(x=result.x[bad], y=np.zeros(bad.sum()), mode="markers",
                                         name=f"NaN ({split})", marker=dict(symbol="x", color="black")), row=r, col=1)
        fig.update_yaxes(title_text=metric, type="log" if (log and metric == "loss") else None, row=r, col=1)
    s = result.settings
    if s.get("kind") == "eigen_slice" and "eigenvalue" in s:
        lam = float(s["eigenvalue"])
        for c, (split, l0) in enumerate(s.get("loss0", {}).items()):
            fig.add_trace(go.Scatter(x=result.x, y=l0 + 0.5 * lam * result.x ** 2, mode="lines",
                                     name=f"quadratic, lambda={lam:.3g} ({split})",
                                     line=dict(color=COLORS[c % len(COLORS)], dash="dash")), row=1, col=1)
    xlabel = {"interpolation": "alpha (0 = model A, 1 = model B)", "eigen_slice": "t (along top eigenvector)"}.get(
        s.get("kind"), "x (direction)")
    fig.update_xaxes(title_text=xlabel, row=rows, col=1)
    base_layout(fig, title or {"interpolation": "linear interpolation", "eigen_slice": "slice along top eigenvector"}
                .get(s.get("kind"), "1-D loss slice"))
    return fig


def slices(result: LandscapeResult, *, split: Optional[str] = None, log: bool = False,
           title: Optional[str] = None) -> go.Figure:
    """The two 1-D slices of a plane through the model: along x at y = 0 and along y at x = 0."""
    i0, j0 = result.center_index()
    fig = go.Figure()
    for c, sp in enumerate([split] if split else result.splits):
        z = np.asarray(result.loss[sp], dtype=float)
        z = np.where(np.isfinite(z), z, np.nan)
        fig.add_trace(go.Scatter(x=result.x, y=z[j0, :], mode="lines", name=f"along x ({sp})",
                                 line=dict(color=COLORS[(2 * c) % len(COLORS)])))
        fig.add_trace(go.Scatter(x=result.y, y=z[:, i0], mode="lines", name=f"along y ({sp})",
                                 line=dict(color=COLORS[(2 * c + 1) % len(COLORS)], dash="dash")))
    base_layout(fig, title or "slices through the model", xaxis_title="coordinate", yaxis_title="loss")
    if log:
        fig.update_yaxes(type="log")
    return fig


def spectrum(density: Optional[DensityResult] = None, eigen: Optional[EigenResult] = None, *,
             trace: Optional[TraceResult] = None, log: bool = True, title: Optional[str] = None) -> go.Figure:
    """Hessian spectral density (log scale by default) with the top eigenvalues marked."""
    fig = go.Figure()
    if density is not None:
        y = np.maximum(density.density, 1e-12) if log else density.density
        fig.add_trace(go.Scatter(x=density.grid, y=y, mode="lines", name="density (SLQ)", fill="tozeroy",
                                 line=dict(color=COLORS[0])))
    if eigen is not None:
        for i, v in enumerate(eigen.eigenvalues):
            fig.add_vline(x=float(v), line=dict(color=COLORS[3], dash="dash"),
                          annotation_text=f"lambda{i + 1}={v:.3g}" if i < 3 else None)
    if log and density is not None:
        fig.update_yaxes(type="log")
    sub = f" - trace {trace.trace:.4g} +/- {trace.stderr:.2g}" if trace is not None else ""
    base_layout(fig, (title or "Hessian spectrum") + sub, xaxis_title="eigenvalue", yaxis_title="density")
    return fig


def layerwise(result: LayerwiseResult, *, title: Optional[str] = None) -> go.Figure:
    """Top eigenvalue and trace (with standard error) per parameter group."""
    f = result.frame
    fig = make_subplots(rows=1, cols=2, subplot_titles=("top eigenvalue", "trace (Hutchinson)"))
    fig.add_trace(go.Bar(x=f["group"], y=f["top_eigenvalue"], name="top eigenvalue", marker_color=COLORS[0]), 1, 1)
    fig.add_trace(go.Bar(x=f["group"], y=f["trace"], name="trace", marker_color=COLORS[1],
                         error_y=dict(type="data", array=f["trace_stderr"])), 1, 2)
    base_layout(fig, title or "curvature per layer", showlegend=False)
    return fig
