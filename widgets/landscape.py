"""Loss-landscape panel: 2-D contour and 3-D surface, 1-D slices, click-to-inspect, Hessian spectrum.

A thin view over :mod:`workbench.landscape`: the controls pick the model (a reference digits model, or
the ``model`` / ``data`` / ``train_data`` passed in, any model or data spec; ``model="cnn"`` selects that
reference model), the grid and the direction normalisation; the colour controls (split, colour, log
scale, colour range) only redraw.  Clicking a grid point of the contour shows its loss and accuracy on
every split.
"""
from __future__ import annotations

import html
from typing import Any, Callable, Dict

import ipywidgets as ipw
import numpy as np

from workbench import landscape as L
from workbench.data import digits
from workbench.landscape import figures
from workbench.models import reference_model
from workbench.validation import InputError

from .base import Panel, model_argument, number

REDRAW = ("split", "metric", "log", "zmin", "zmax")
POINT_HINT = "<i>Click a grid point of the contour map to see its loss and accuracy on every split.</i>"


class LandscapePanel(Panel):
    """Loss landscape of a model around its parameters (``LandscapePanel(model=..., data=...)``)."""

    title = "Loss landscape"
    legend = ("The loss at θ* + x·d<sub>1</sub> + y·d<sub>2</sub> on a grid around the trained weights θ*, for two "
              "seeded random directions. <b>filter</b> normalisation scales each direction filter by filter to "
              "the weights' norm, so maps of different models compare; <b>1-D params</b> biasbn keeps biases and "
              "norm scales fixed.<br><b>Hessian</b>: its top eigenvalues (Lanczos), its trace (Hutchinson, ± "
              "standard error) and its eigenvalue density (stochastic Lanczos quadrature).")
    figure_names = ("contour", "surface", "slices", "spectrum")
    figure_hints = {"contour": "the loss map as contours (click a point to inspect it)",
                    "surface": "the same map as a 3-D surface",
                    "slices": "the loss along x and along y through the trained model",
                    "spectrum": "the Hessian's eigenvalue density with its top eigenvalues marked"}
    checks = {"steps": "odd int >= 3", "span": "float > 0", "seed": "int", "zmin": "float or None",
              "zmax": "float or None", "k": "int >= 1", "max_iter": "int >= 2"}
    visible_when = {"k": lambda v: v["hessian"], "max_iter": lambda v: v["hessian"]}
    redraw_controls = REDRAW

    def __init__(self, model: Any = None, data: Any = None, *, train_data: Any = None, background: bool = True,
                 **values: Any):
        self.user_model = model_argument(model, values)
        self.user_data, self.user_train_data = data, train_data
        self.point_info = ipw.HTML(value=POINT_HINT)
        if self.user_model is not None:  # the model passed in is the one mapped: no model choice to show
            self.visible_when = {**type(self).visible_when, "model": lambda v: False}
        super().__init__(background=background, **values)

    def controls(self) -> Dict[str, ipw.Widget]:
        style = {"description_width": "initial"}
        small = ipw.Layout(width="170px")
        return {
            "model": ipw.Dropdown(options=["mlp", "cnn", "resnet"], value="mlp", description="model",
                                  layout=small, style=style),
            "steps": number(21, "grid steps", "140px"),
            "span": number(1.0, "span ±", "120px"),
            "norm": ipw.Dropdown(options=list(L.NORMS), value="filter", description="normalisation",
                                 layout=ipw.Layout(width="200px"), style=style),
            "ignore": ipw.Dropdown(options=["biasbn", "none"], value="biasbn", description="1-D params",
                                   layout=small, style=style),
            "seed": number(0, "seed", "110px"),
            "hessian": ipw.Checkbox(value=False, description="Hessian spectrum", indent=False,
                                    layout=ipw.Layout(width="150px")),
            "k": number(3, "top eigenvalues", "160px"),
            "max_iter": number(60, "Lanczos steps", "150px"),
            "device": ipw.Dropdown(options=["auto", "cpu", "cuda"], value="auto", description="device",
                                   layout=small, style=style),
            "split": ipw.Dropdown(options=["test", "train"], value="test", description="split", layout=small,
                                  style=style),
            "metric": ipw.Dropdown(options=["loss", "error"], value="loss", description="colour",
                                   layout=small, style=style),
            "log": ipw.Checkbox(value=True, description="log colour", indent=False, layout=ipw.Layout(width="110px")),
            "zmin": number("", "colour from", "150px", placeholder="auto", continuous_update=False),
            "zmax": number("", "to", "110px", placeholder="auto", continuous_update=False),
        }

    def layout_body(self) -> list:
        return [self.figure_row("contour", "surface"), self.point_info, self.figure_row("slices", "spectrum")]

    def on_inputs_changed(self, name: str) -> None:
        self.point_info.value = POINT_HINT  # a point of the old map

    def on_clear(self) -> None:
        self.point_info.value = POINT_HINT

    # -- computation -------------------------------------------------------------------------
    def _model_and_data(self, name: str):
        model = self.user_model if self.user_model is not None else reference_model(name)
        if self.user_data is not None:
            data = L.as_splits(self.user_data)
        else:
            train, test = digits(image=name != "mlp")
            data = {"train": train, "test": test}
        return model, data

    def compute(self, progress: Callable, *, model, steps, span, norm, ignore, seed, hessian, k, max_iter, device,
                **_colour) -> L.LandscapeReport:
        net, data = self._model_and_data(model)
        return L.analyze(net, data, train_data=self.user_train_data, steps=steps, span=span, norm=norm,
                         ignore=None if ignore == "none" else ignore, curvature=bool(hessian), k=k,
                         max_iter=max_iter, trace_vectors=20, density_runs=2, density_steps=40, seed=seed,
                         device=device, progress=progress)

    # -- drawing -----------------------------------------------------------------------------
    def _levels(self):
        lo, hi = self.values["zmin"], self.values["zmax"]
        if lo is not None and hi is not None and hi <= lo:
            raise InputError(f"colour range: 'to' ({hi:g}) must be above 'from' ({lo:g}); leave both empty for "
                             "an automatic range")
        return lo, hi

    def _split(self, res) -> str:
        want = self.widgets["split"].value
        return want if want in res.loss else res.splits[-1]

    def draw(self, result: L.LandscapeReport) -> None:
        res = result.plane
        split, metric, log = self._split(res), self.widgets["metric"].value, bool(self.widgets["log"].value)
        zmin, zmax = self._levels()
        self.show_figure("contour", figures.contour(res, split=split, metric=metric, log=log, zmin=zmin, zmax=zmax))
        self.show_figure("surface", figures.surface(res, split=split, metric=metric, log=log, zmin=zmin, zmax=zmax))
        self.show_figure("slices", figures.slices(res, log=log))
        if result.eigen is not None:
            self.show_figure("spectrum", figures.spectrum(result.density, result.eigen, trace=result.trace))
        else:  # no spectrum for this run: do not leave an earlier run's on show
            self.show_empty("spectrum", "Hessian spectrum: not computed (tick 'Hessian spectrum' and press Run)")
        self.figures["contour"].data[0].on_click(self._on_click)

    def redraw(self, changed: str) -> None:
        self.draw(self.result)

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
