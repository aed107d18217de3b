"""Pure figure functions for landscape and curvature results (result -> plotly ``go.Figure``); definitions
in ``docs/landscape.md``.

Colour levels can be fixed (``zmin``/``zmax``) so that maps of two models share one scale; ``log=True``
colours by ``log10(loss)`` and labels the colour bar in the loss' own values.  Grid points whose loss is
NaN or infinite are left as gaps and marked with an ``x``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..plotting import (ROLE, SEQUENTIAL, base_layout, fmt, hover, linear_ticks, log_ticks, loss_label, split_color,
                        vline)
from .curvature import DensityResult, EigenResult, LayerwiseResult, TraceResult
from .maps import LandscapeResult

__all__ = ["contour", "surface", "slices", "curve", "spectrum", "layerwise"]

FEW_VECTORS = 30  # Hutchinson traces from fewer random vectors are marked as rough
NORMS = {"filter": "filter-normalised", "layer": "layer-normalised", "none": "unnormalised",
         "given": "given direction"}
DENSITY_FLOOR = 1e-12


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


def _label(result: LandscapeResult, metric: str, split: str = "") -> str:
    """``"test loss (cross-entropy)"``, ``"test accuracy (fraction correct)"``, ..."""
    if metric == "loss":
        return loss_label(result.settings, split)
    what = {"accuracy": "accuracy (fraction correct)", "error": "error (fraction misclassified)"}[metric]
    return f"{split} {what}".strip()


def color_values(z: np.ndarray, log: bool = False) -> np.ndarray:
    """The values that are coloured: ``z`` (NaN where not finite), or ``log10(z)`` when ``log``."""
    z = np.where(np.isfinite(z), z, np.nan)
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.log10(np.where(z > 0, z, np.nan))
    return z


def _colorbar(label: str, log: bool, lo: float, hi: float) -> dict:
    """A colour bar titled in the quantity's units; with ``log`` its ticks are loss values at log10 positions."""
    bar = dict(title=dict(text=f"{label}<br>(log scale)" if log else label, side="right"))
    vals, text = log_ticks(lo, hi) if log else linear_ticks(lo, hi)
    if vals:
        bar.update(tickmode="array", tickvals=vals, ticktext=text)
    return bar


def _axis_titles(result: LandscapeResult) -> tuple:
    norm = NORMS.get(result.settings.get("norm"), result.settings.get("norm") or "")
    unit = f" ({norm})" if norm else ""
    return f"x: step along direction 1{unit}", f"y: step along direction 2{unit}"


def _bad_points(result: LandscapeResult, z: np.ndarray) -> go.Scatter:
    jj, ii = np.nonzero(~np.isfinite(z))
    return go.Scatter(x=result.x[ii], y=result.y[jj], mode="markers", name="NaN / inf",
                      marker=dict(symbol="x", color=ROLE["missing"], size=8), showlegend=bool(len(ii)),
                      hovertemplate=hover("x = %{x:.3f}, y = %{y:.3f}", "value is NaN or infinite here"))


def _subtitle(result: LandscapeResult) -> str:
    """The grid the result was evaluated on: ``"21 × 21 grid, ±1 × ±1, seed 0"`` or ``"41 points from -1 to 1"``."""
    s = result.settings
    if result.is_plane:
        steps, span = s.get("steps"), s.get("span")
        grid = " × ".join(str(v) for v in steps) + " grid" if isinstance(steps, (list, tuple)) else ""
        reach = " × ".join(f"±{fmt(v)}" for v in span) if isinstance(span, (list, tuple)) else ""
    else:
        grid = f"{len(result.x)} points"
        reach = f"{fmt(float(result.x.min()))} to {fmt(float(result.x.max()))}" if len(result.x) else ""
    seed = f"seed {s['seed']}" if "seed" in s and s.get("kind") != "eigen_slice" else ""
    return ", ".join(p for p in (" over ".join(p for p in (grid, reach) if p), seed) if p)


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
    label = _label(result, metric, split)
    acc = np.asarray(result.accuracy[split], dtype=float)
    fig = go.Figure(go.Contour(
        x=result.x, y=result.y, z=zc, colorscale=SEQUENTIAL, name=f"log10 {metric}" if log else metric,
        contours=dict(start=lo, end=hi, size=(hi - lo) / max(ncontours, 1), showlabels=False),
        zmin=lo, zmax=hi, colorbar=_colorbar(label, log, lo, hi), connectgaps=False,
        line=dict(width=0.5, color="rgba(255,255,255,0.45)"),
        customdata=np.stack([z, acc], -1),
        hovertemplate=hover("x = %{x:.3f}, y = %{y:.3f}", f"{label}: %{{customdata[0]:.4g}}",
                            f"{split} accuracy: %{{customdata[1]:.3f}}")))
    i0, j0 = result.center_index()
    fig.add_trace(go.Scatter(
        x=[0.0], y=[0.0], mode="markers", name="the model", customdata=[[z[j0, i0]]],
        marker=dict(symbol="star", size=14, color="white", line=dict(color="black", width=1)),
        hovertemplate=hover("the model (x = 0, y = 0)", f"{label}: %{{customdata[0]:.4g}}")))
    fig.add_trace(_bad_points(result, z))
    if result.trajectory is not None and len(result.trajectory):
        tr = np.asarray(result.trajectory)
        fig.add_trace(go.Scatter(x=tr[:, 0], y=tr[:, 1], mode="lines+markers", name="training trajectory",
                                 line=dict(color=ROLE["fit"]), marker=dict(size=5),
                                 hovertemplate=hover("checkpoint %{pointNumber}", "x = %{x:.3f}, y = %{y:.3f}")))
    xt, yt = _axis_titles(result)
    head = label[0].upper() + label[1:]
    base_layout(fig, title or f"{head} on a plane through the model", subtitle=_subtitle(result), height=520,
                xaxis_title=xt, yaxis_title=yt)
    fig.update_yaxes(scaleanchor="x", scaleratio=1, zeroline=False, constrain="domain")
    fig.update_xaxes(constrain="domain")
    return fig


def surface(result: LandscapeResult, *, split: Optional[str] = None, metric: str = "loss", log: bool = False,
            zmin: Optional[float] = None, zmax: Optional[float] = None, title: Optional[str] = None) -> go.Figure:
    """3-D surface of a plane (NaN points are holes); fixed ``zmin``/``zmax`` set colour and z range."""
    if not result.is_plane:
        raise ValueError("surface needs a plane result (workbench.landscape.plane)")
    split, z = _values(result, split, metric)
    zc = color_values(z, log)
    label = _label(result, metric, split)
    finite = zc[np.isfinite(zc)]
    lo = zmin if zmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = zmax if zmax is not None else (float(finite.max()) if finite.size else 1.0)
    fig = go.Figure(go.Surface(
        x=result.x, y=result.y, z=zc, colorscale=SEQUENTIAL, cmin=zmin, cmax=zmax,
        colorbar=_colorbar(label, log, lo, hi), customdata=np.where(np.isfinite(z), z, np.nan),
        hovertemplate=hover("x = %{x:.3f}, y = %{y:.3f}", f"{label}: %{{customdata:.4g}}")))
    zaxis = dict(title=dict(text=label.split(" (")[0] + (", log" if log else "")))
    if zmin is not None and zmax is not None:
        zaxis["range"] = [zmin, zmax]
    if log:
        vals, text = log_ticks(lo, hi)
        zaxis.update(tickmode="array", tickvals=vals, ticktext=text)
    scene = dict(xaxis=dict(title=dict(text="x (direction 1)")), yaxis=dict(title=dict(text="y (direction 2)")),
                 zaxis=zaxis, aspectmode="cube", camera=dict(eye=dict(x=1.6, y=-1.6, z=0.9)))
    head = label[0].upper() + label[1:]
    base_layout(fig, title or f"{head} as a surface over the plane", subtitle=_subtitle(result), height=560,
                scene=scene)
    return fig


def _curve_marks(fig: go.Figure, result: LandscapeResult, rows: int) -> None:
    """The models on a line: A at 0 and B at 1 on an interpolation, the model at 0 otherwise."""
    kind = result.settings.get("kind")
    marks = [(0.0, "model A", ROLE["model_a"]), (1.0, "model B", ROLE["model_b"])] if kind == "interpolation" \
        else [(0.0, "the model", ROLE["reference"])]
    for x, name, color in marks:
        for r in range(1, rows + 1):
            vline(fig, x, name if r == 1 else None, color=color, dash="dot", width=1.2, row=r, col=1)


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
            name = f"{metric} ({split})"
            line = dict(color=split_color(split, c), dash="solid" if r == 1 else "dot")
            fig.add_trace(go.Scatter(x=result.x, y=np.where(np.isfinite(z), z, np.nan), mode="lines+markers",
                                     name=name, line=line, marker=dict(size=5), legendgroup=split,
                                     hovertemplate=hover(f"{split} split", "x = %{x:.3f}", f"{metric}: %{{y:.4g}}")),
                          row=r, col=1)
            bad = ~np.isfinite(z)
            if bad.any():
                at = float(np.nanmin(np.where(bad, np.nan, z))) if (~bad).any() else 0.0
                fig.add_trace(go.Scatter(x=result.x[bad], y=np.full(bad.sum(), at), mode="markers",
                                         name=f"NaN ({split})", marker=dict(symbol="x", color=ROLE["missing"]),
                                         hovertemplate=hover("x = %{x:.3f}", f"{split} {metric} is NaN or infinite")),
                              row=r, col=1)
        fig.update_yaxes(title_text=_label(result, metric), type="log" if (log and metric == "loss") else None,
                         row=r, col=1)
    s = result.settings
    if s.get("kind") == "eigen_slice" and "eigenvalue" in s:
        lam = float(s["eigenvalue"])
        for c, (split, l0) in enumerate(s.get("loss0", {}).items()):
            fig.add_trace(go.Scatter(x=result.x, y=l0 + 0.5 * lam * result.x ** 2, mode="lines",
                                     name=f"quadratic model, λ = {lam:.3g} ({split})",
                                     line=dict(color=split_color(split, c), dash="dash"),
                                     hovertemplate=hover(f"loss₀ + λ t² / 2, λ = {lam:.3g}", "t = %{x:.3f}",
                                                         "predicted loss: %{y:.4g}")), row=1, col=1)
    _curve_marks(fig, result, rows)
    norm = NORMS.get(s.get("norm"), "")
    xlabel = {"interpolation": "interpolation coefficient α (0 = model A, 1 = model B)",
              "eigen_slice": "t: distance along the top Hessian eigenvector (unit norm)"}.get(
        s.get("kind"), f"step along the direction ({norm})" if norm else "step along the direction")
    fig.update_xaxes(title_text=xlabel, row=rows, col=1)
    default = {"interpolation": "Loss on the straight line from model A to model B",
               "eigen_slice": "Loss along the top Hessian eigenvector, with its quadratic model"}
    base_layout(fig, title or default.get(s.get("kind"), "Loss along one direction through the model"),
                subtitle=_subtitle(result), height=300 + 160 * rows)
    return fig


def slices(result: LandscapeResult, *, split: Optional[str] = None, log: bool = False,
           title: Optional[str] = None) -> go.Figure:
    """The two 1-D slices of a plane through the model: along x at y = 0 and along y at x = 0."""
    i0, j0 = result.center_index()
    fig = go.Figure()
    for c, sp in enumerate([split] if split else result.splits):
        z = np.asarray(result.loss[sp], dtype=float)
        z = np.where(np.isfinite(z), z, np.nan)
        color = split_color(sp, c)
        fig.add_trace(go.Scatter(x=result.x, y=z[j0, :], mode="lines", name=f"along x, y = 0 ({sp})",
                                 line=dict(color=color), hovertemplate=hover(f"{sp}, along x", "x = %{x:.3f}",
                                                                             "loss: %{y:.4g}")))
        fig.add_trace(go.Scatter(x=result.y, y=z[:, i0], mode="lines", name=f"along y, x = 0 ({sp})",
                                 line=dict(color=color, dash="dash"),
                                 hovertemplate=hover(f"{sp}, along y", "y = %{x:.3f}", "loss: %{y:.4g}")))
    norm = NORMS.get(result.settings.get("norm"), "")
    base_layout(fig, title or "Loss on the two axes of the plane, through the model", subtitle=_subtitle(result),
                xaxis_title=f"step from the model along the direction ({norm})" if norm else "step from the model",
                yaxis_title=loss_label(result.settings))
    if log:
        fig.update_yaxes(type="log")
    vline(fig, 0.0, "the model", dash="dot", width=1.2)
    return fig


def _eigen_marks(fig: go.Figure, density: Optional[DensityResult], eigen: EigenResult, log: bool) -> None:
    """Top eigenvalues: dashed lines, a marker each (on the density when there is one) with hover, λ1 labelled."""
    ev = np.asarray(eigen.eigenvalues, dtype=float)
    if density is not None:
        y = np.interp(ev, density.grid, np.maximum(density.density, DENSITY_FLOOR) if log else density.density)
    else:
        y = np.arange(1, len(ev) + 1)
    res = np.asarray(eigen.residuals, dtype=float) if len(eigen.residuals) == len(ev) else np.full(len(ev), np.nan)
    state = "converged" if eigen.converged else f"not converged after {eigen.n_iter} products"
    fig.add_trace(go.Scatter(
        x=ev, y=y, mode="markers", name=f"top {len(ev)} eigenvalues (Lanczos, {state})",
        marker=dict(color=ROLE["fit"], size=9, symbol="diamond" if eigen.converged else "diamond-open"),
        customdata=np.stack([np.arange(1, len(ev) + 1), res], 1),
        hovertemplate=hover("λ%{customdata[0]} = %{x:.4g}", "residual: %{customdata[1]:.2g}", state)))
    for i, v in enumerate(ev):
        vline(fig, float(v), f"λ1 = {v:.3g}" if i == 0 else None, color=ROLE["fit"], dash="dash", width=1,
              side="left")


def spectrum(density: Optional[DensityResult] = None, eigen: Optional[EigenResult] = None, *,
             trace: Optional[TraceResult] = None, log: bool = True, title: Optional[str] = None) -> go.Figure:
    """Hessian spectral density (log scale by default) with the top eigenvalues marked."""
    fig = go.Figure()
    if density is not None:
        y = np.maximum(density.density, DENSITY_FLOOR) if log else density.density
        runs = density.settings.get("n_runs")
        fig.add_trace(go.Scatter(
            x=density.grid, y=y, mode="lines", fill="tozeroy", line=dict(color=ROLE["data"]),
            name=f"density (stochastic Lanczos quadrature{f', {runs} run' + 's' * (runs != 1) if runs else ''})",
            hovertemplate=hover("λ = %{x:.4g}", "density: %{y:.3g}")))
        if log:
            peak = float(np.max(y))
            fig.update_yaxes(type="log", exponentformat="power",
                             range=[max(np.log10(DENSITY_FLOOR), np.log10(peak) - 8), np.log10(peak) + 0.3])
        fig.update_yaxes(title="spectral density (per unit λ)" + (", log scale" if log else ""))
    else:
        fig.update_yaxes(title="rank (1 = largest eigenvalue)", dtick=1, autorange="reversed")
    if eigen is not None and len(eigen.eigenvalues):
        _eigen_marks(fig, density, eigen, log)
    fig.update_xaxes(title="Hessian eigenvalue λ")
    sub = []
    if trace is not None:
        n = len(trace.samples)
        few = f", rough: only {n} random vectors" if n < FEW_VECTORS else f", {n} random vectors"
        sub.append(f"trace {trace.trace:.4g} ± {trace.stderr:.2g} (Hutchinson{few})")
    data = (density or eigen).settings.get("data") if (density or eigen) is not None else None
    if data:
        sub.append(f"loss on {data} examples")
    return base_layout(fig, title or "Spectrum of the Hessian of the training loss", subtitle="; ".join(sub) or None,
                       height=440)


def layerwise(result: LayerwiseResult, *, title: Optional[str] = None) -> go.Figure:
    """Top eigenvalue and trace (with standard error) per parameter group."""
    f = result.frame
    n = result.settings.get("n_samples")
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.15)
    fig.add_trace(go.Bar(x=f["group"], y=f["top_eigenvalue"], name="top eigenvalue", marker_color=ROLE["fit"],
                         customdata=np.stack([f["n_params"], f["converged"]], 1),
                         hovertemplate=hover("%{x} (%{customdata[0]} parameters)", "λ1 = %{y:.4g}",
                                             "converged: %{customdata[1]}")), 1, 1)
    fig.add_trace(go.Bar(x=f["group"], y=f["trace"], name="trace", marker_color=ROLE["data"],
                         error_y=dict(type="data", array=f["trace_stderr"]),
                         customdata=np.stack([f["trace_stderr"]], 1),
                         hovertemplate=hover("%{x}", "trace: %{y:.4g} ± %{customdata[0]:.2g}")), 1, 2)
    fig.update_xaxes(title_text="parameter group", row=1, col=1)
    fig.update_xaxes(title_text="parameter group", row=1, col=2)
    fig.update_yaxes(title_text="top Hessian eigenvalue λ1", row=1, col=1)
    fig.update_yaxes(title_text="Hessian trace (Hutchinson)", row=1, col=2)
    few = f"; rough: only {n} random vectors per trace" if n is not None and n < FEW_VECTORS else ""
    base_layout(fig, title or "Curvature of each parameter group", showlegend=False,
                subtitle=f"whiskers: standard error of the trace{few}", height=420)
    return fig
