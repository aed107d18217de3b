"""Spectra panel: layer table, ESD with the fitted tail, alpha per layer, and a WeLore tau slider."""
from __future__ import annotations

import html
from typing import Any, Dict, Optional

import ipywidgets as ipw
from torch import nn

from workbench import spectra
from workbench.spectra import figures

from .base import Panel, copy_figure, model_argument

TABLE_COLUMNS = ["name", "shape", "num_evals", "alpha", "alpha_lo", "alpha_hi", "alpha_weighted",
                 "stable_rank", "effective_rank", "log_spectral_norm", "quality"]


def _load_builtin(name: str) -> nn.Module:
    from workbench import models

    return models.minilm() if name == "minilm" else models.reference_model(name)


def _skipped_html(skipped) -> str:
    if not skipped:
        return ""
    items = "".join(f"<li><code>{html.escape(s['name'])}</code>: {html.escape(s['reason'])}</li>"
                    for s in skipped)
    return f"<details><summary>Not analysed: {len(skipped)} parameters</summary><ul>{items}</ul></details>"


class SpectraPanel(Panel):
    """``SpectraPanel()`` for the built-in models, or ``SpectraPanel(model=my_module)`` for your own."""

    title = "Low-rank spectra of weight matrices"
    figure_names = ("esd", "alpha", "welore")

    def __init__(self, *, model: Optional[nn.Module] = None, model_name: str = "your model", **values: Any):
        self.user_model = model = model_argument(model, values)
        self.user_model_name = model_name
        super().__init__(**values)
        if model is not None:
            self.widgets["model"].options = [model_name, *self.widgets["model"].options]
            self.widgets["model"].value = model_name
        self.table = ipw.HTML()
        self.skipped = ipw.HTML()  # parameters not analysed, with the reason
        self.children = (*self.children[:4], self.table, self.skipped, *self.children[4:])
        self.widgets["layer"].observe(lambda ch: self._redraw_esd(), names="value")
        self.widgets["tau"].observe(lambda ch: self._redraw_welore(), names="value")
        self.plan = None

    def controls(self) -> Dict[str, ipw.Widget]:
        return {
            "model": ipw.Dropdown(options=["mlp", "cnn", "resnet", "minilm"], value="cnn", description="model"),
            "device": ipw.Dropdown(options=["auto", "cpu", "cuda"], value="auto", description="device"),
            "bootstrap": ipw.IntSlider(value=200, min=0, max=1000, step=50, description="bootstrap"),
            "layer": ipw.Dropdown(options=[], description="layer"),
            "tau": ipw.FloatSlider(value=0.02, min=0.0, max=0.5, step=0.005, readout_format=".3f",
                                   description="WeLore tau", continuous_update=False),
        }

    def compute(self, progress, *, model, device, bootstrap, layer, tau):
        target = self.user_model if (self.user_model is not None and model == self.user_model_name) \
            else _load_builtin(model)
        return spectra.analyze(target, device=device, bootstrap=bootstrap, progress=progress)

    def draw(self, result) -> None:
        names = result.names
        layer = self.widgets["layer"]
        keep = layer.value if layer.value in names else None
        layer.options = names
        default = next((n for n, a in zip(names, result.table["alpha"]) if a == a), names[0])
        layer.value = keep or default
        self.table.value = result.to_frame()[TABLE_COLUMNS].to_html(float_format=lambda v: f"{v:.3g}",
                                                                    index=False, max_rows=60)
        self.skipped.value = _skipped_html(result.skipped)
        copy_figure(figures.alpha(result), self.figures["alpha"])
        self._redraw_esd()
        self._redraw_welore()

    def _redraw_esd(self) -> None:
        if self.result is not None and self.widgets["layer"].value:
            copy_figure(figures.esd(self.result, self.widgets["layer"].value), self.figures["esd"])

    def _redraw_welore(self) -> None:
        if self.result is None:
            return
        try:
            self.plan = spectra.welore(self.result, tau=self.widgets["tau"].value)
        except ValueError as exc:  # e.g. a model with conv layers only
            self.show_error(exc)
            return
        copy_figure(figures.welore(self.plan), self.figures["welore"])
