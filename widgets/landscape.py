"""Loss-landscape panel: 2-D contour and 3-D surface, 1-D slices, click-to-inspect, Hessian spectrum.

A thin view over :mod:`workbench.landscape`: the controls pick the model (a reference digits model, or
the ``model`` / ``data`` passed in; ``model="cnn"`` selects that reference model), the grid and the
direction normalisation; the colour controls (log scale, fixed levels, split) only redraw.  Clicking a grid
point of the contour shows its loss and accuracy on every split.
"""
from __future__ import annotations

import html
from typing import Any, Callable, Dict

import ipywidgets as ipw
import numpy as np
import plotly.graph_objects as go

from workbench import landscape as L
from workbench.data import digits
from workbench.landscape import figures
from workbench.models import reference_model

from .base import Panel, copy_figure, model_argument

REDRAW = ("log", "zmin", "zmax", "split", "metric")


class LandscapePanel(Panel):
    """Loss landscape of a model around its parameters (``LandscapePanel(model=..., data=...)``)."""

    title = "Loss landscape"
    figure_names = ("contour", "surface", "slices", "spectrum")

    def __init__(self, model: Any = None, data: Any = None, *, background: bool = True, **values: Any):
        self.user_model = model_argument(model, values)
        self.user_data = data
        self.point_info = ipw.HTML(value="<i>click a grid point of the contour map</i>")
        super().__init__(background=background, **values)
        for name in REDRAW:
            self.widgets[name].observe(lambda _c: self.redraw(), names="value")

    def controls(self) -> Dict[str, ipw.Widget]:
        style = {"description_width": "initial"}
        small = ipw.Layout(width="170px")
        return {
            "model": ipw.Dropdown(options=["mlp", "cnn", "resnet"], value="mlp", description="model",
                                  layout=small, style=style),
            "steps": ipw.IntSlider(value=21, min=3, max=101, step=2, description="grid steps", style=style),
            "span": ipw.FloatSlider(value=1.0, min=0.1, max=3.0, step=0.1, description="span", style=style),
            "norm": ipw.Dropdown(options=list(L.NORMS), value="filter", description="normalisation",
                                 layout=ipw.Layout(width="200px"), style=style),
            "ignore": ipw.Dropdown(options=["biasbn", "none"], value="biasbn", description="1-D params",
                                   layout=small, style=style),
            "seed": ipw.IntText(value=0, description="seed", layout=ipw.Layout(width="120px"), style=style),
            "split": ipw.Dropdown(options=["test", "train"], value="test", description="split", layout=small,
                                  style=style),
            "metric": ipw.Dropdown(options=["loss", "error"], value="loss", description="colour",
                                   layout=small, style=style),
            "log": ipw.Checkbox(value=True, description="log colour", indent=False, layout=ipw.Layout(width="110px")),
            "zmin": ipw.FloatText(value=0.0, description="levels from", layout=ipw.Layout(width="160px"), style=style),
            "zmax": ipw.FloatText(value=0.0, description="to (= from: auto)", layout=ipw.Layout(width="200px"),
                                  style=style),
            "hessian": ipw.Checkbox(value=False, description="Hessian spectrum", indent=False,
                                    layout=ipw.Layout(width="150px")),
            "device": ipw.Dropdown(options=["auto", "cpu", "cuda"], value="auto", description="device",
                                   layout=small, style=style),
        }

    def layout_body(self) -> list:
        f = self.figures
        return [ipw.HBox([f["contour"], f["surface"]]), self.point_info, ipw.HBox([f["slices"], f["spectrum"]])]

    # -- computation -------------------------------------------------------------------------
    def _model_and_data(self, name: str):
        model = self.user_model if self.user_model is not None else reference_model(name)
        if self.user_data is not None:
            data = L.as_splits(self.user_data)
        else:
            train, test = digits(image=name != "mlp")
            data = {"train": train, "test": test}
        return model, data

    def compute(self, progress: Callable, *, model, steps, span, norm, ignore, seed, split, metric, log, zmin,
                zmax, hessian, device) -> L.LandscapeReport:
        net, data = self._model_and_data(model)
        return L.analyze(net, data, steps=int(steps), span=float(span), norm=norm,
                         ignore=None if ignore == "none" else ignore, curvature=bool(hessian), k=3, max_iter=60,
                         trace_vectors=20, density_runs=2, density_steps=40, seed=int(seed), device=device,
                         progress=progress)

    # -- drawing -----------------------------------------------------------------------------
    def _levels(self):
        lo, hi = float(self.widgets["zmin"].value), float(self.widgets["zmax"].value)
        return (lo, hi) if hi > lo else (None, None)

    def _split(self, res) -> str:
        want = self.widgets["split"].value
        return want if want in res.loss else res.splits[-1]

    def draw(self, result: L.LandscapeReport) -> None:
        res = result.plane
        split = self._split(res)
        metric = self.widgets["metric"].value
        log = bool(self.widgets["log"].value)
        zmin, zmax = self._levels()
        copy_figure(figures.contour(res, split=split, metric=metric, log=log, zmin=zmin, zmax=zmax),
                    self.figures["contour"])
        copy_figure(figures.surface(res, split=split, metric=metric, log=log, zmin=zmin, zmax=zmax),
                    self.figures["surface"])
        copy_figure(figures.slices(res, log=log), self.figures["slices"])
        if result.eigen is not None:
            copy_figure(figures.spectrum(result.density, result.eigen, trace=result.trace), self.figures["spectrum"])
        else:  # no spectrum for this run: do not leave an earlier run's on show
            copy_figure(go.Figure(), self.figures["spectrum"])
        self.figures["contour"].data[0].on_click(self._on_click)

    def redraw(self) -> None:
        if self.result is not None:
            try:
                self.draw(self.result)
            except Exception as exc:  # shown, not lost
                self.show_error(exc)

    # -- inspecting a point ------------------------------------------------------------------
    def _on_click(self, trace, points, selector=None) -> None:
        xs, ys = list(getattr(points, "xs", []) or []), list(getattr(points, "ys", []) or [])
        if xs and ys:
            self.show_point(float(xs[0]), float(ys[0]))

    def show_point(self, x: float, y: float) -> Dict[str, Dict[str, float]]:
        """Show (and return) loss and accuracy per split at the grid point nearest to ``(x, y)``."""
        if self.result is None:
            return {}
        res = self.result.plane
        i = int(np.argmin(np.abs(res.x - x)))
        j = int(np.argmin(np.abs(res.y - y)))
        values = {s: res.value_at(i, j, s) for s in res.splits}
        rows = "".join(f"<tr><td>{html.escape(s)}</td><td>{v['loss']:.5g}</td><td>{v['accuracy']:.4f}</td></tr>"
                       for s, v in values.items())
        self.point_info.value = (f"<b>point x={res.x[i]:.3f}, y={res.y[j]:.3f}</b>"
                                 f"<table><tr><th>split</th><th>loss</th><th>accuracy</th></tr>{rows}</table>")
        return values
