"""Spectra panel: layer table, ESD with the fitted tail, alpha per layer, and a WeLore tau box."""
from __future__ import annotations

import html
from typing import Any, Dict, Optional

import ipywidgets as ipw
from torch import nn

from workbench import spectra
from workbench.spectra import figures
from workbench.spectra.analyze import THIN_MIN_EVALS, THIN_MIN_TAIL

from .base import Panel, model_argument, number, table_html

TABLE_COLUMNS = ["name", "shape", "num_evals", "num_pl_spikes", "alpha", "alpha_lo", "alpha_hi", "alpha_weighted",
                 "stable_rank", "effective_rank", "log_spectral_norm", "quality"]
TABLE_HEADERS = {"name": "matrix", "num_evals": "eigenvalues", "num_pl_spikes": "tail eigenvalues", "alpha": "α",
                 "alpha_lo": "α low", "alpha_hi": "α high", "alpha_weighted": "weighted α",
                 "log_spectral_norm": "log₁₀ λ_max", "quality": "reading of α"}


def _load_builtin(name: str) -> nn.Module:
    from workbench import models

    return models.minilm() if name == "minilm" else models.reference_model(name)


def _skipped_html(skipped) -> str:
    if not skipped:
        return ""
    items = "".join(f"<li><code>{html.escape(s['name'])}</code>: {html.escape(s['reason'])}</li>"
                    for s in skipped)
    return f"<details><summary>Not analysed: {len(skipped)} parameters</summary><ul>{items}</ul></details>"


def thin_fit_warning(result: spectra.SpectraResult) -> str:
    """The warning (HTML) for the alphas of ``result`` that rest on few points, or ``""``."""
    thin = result.thin_fits()
    if thin.empty:
        return ""
    rows = [f"<code>{html.escape(r.name)}</code> ({r.num_evals} eigenvalues, tail of {r.num_pl_spikes})"
            for r in thin.itertuples()]
    shown = ", ".join(rows[:6]) + (f" and {len(rows) - 6} more" if len(rows) > 6 else "")
    return (f"α of {len(thin)} of {len(result.table)} matrices rests on few points (fewer than {THIN_MIN_EVALS} "
            f"eigenvalues or a tail of fewer than {THIN_MIN_TAIL}): {shown}. Read those α as rough.")


class SpectraPanel(Panel):
    """``SpectraPanel()`` for the built-in models, or ``SpectraPanel(model=my_module)`` for your own (any
    model spec: a module, a Hugging Face folder, a checkpoint, an import path)."""

    title = "Low-rank spectra of weight matrices"
    legend = ("<b>ESD</b>: the eigenvalues of W<sup>T</sup>W of one weight matrix. <b>α</b>: the exponent of a "
              "power law fitted to the ESD's tail; read as α &lt; 2 over-trained, 2–6 well-trained, &gt; 6 "
              "under-trained (close to random). <br><b>WeLore τ</b>: each matrix's singular values are scaled "
              "to [0, 1] and those below τ dropped; <b>LRC</b> (low-rank component): a matrix that loses more "
              "than half its rank, <b>N-LRC</b>: the others.")
    figure_names = ("esd", "alpha", "welore")
    figure_hints = {"esd": "the eigenvalue density of the chosen layer with its fitted power-law tail",
                    "alpha": "α of every matrix with its bootstrap interval",
                    "welore": "the rank each matrix keeps at the chosen τ (LRC and N-LRC)"}
    checks = {"bootstrap": "int >= 0", "tau": "float in [0, 1)"}
    redraw_controls = ("layer", "tau")

    def __init__(self, *, model: Optional[nn.Module] = None, model_name: str = "your model", **values: Any):
        self.user_model = model = model_argument(model, values)
        self.user_model_name = model_name
        self.table = self.output(table=True)
        self.skipped = self.output()  # parameters not analysed, with the reason
        self.plan = None
        super().__init__(**values)
        if model is not None:
            self.widgets["model"].options = [model_name, *self.widgets["model"].options]
            self.widgets["model"].value = model_name

    def controls(self) -> Dict[str, ipw.Widget]:
        small = ipw.Layout(width="190px")
        return {
            "model": ipw.Dropdown(options=["mlp", "cnn", "resnet", "minilm"], value="cnn", description="model",
                                  layout=small),
            "device": ipw.Dropdown(options=["auto", "cpu", "cuda"], value="auto", description="device",
                                   layout=small),
            "bootstrap": number(200, "bootstrap resamples", "190px"),
            "layer": ipw.Dropdown(options=[], description="layer", layout=ipw.Layout(width="300px")),
            "tau": number(0.02, "WeLore τ", "150px", continuous_update=False),
        }

    def layout_body(self) -> list:
        return [self.table, self.skipped, self.figure_box("esd"), self.figure_box("alpha"),
                self.figure_box("welore")]

    def on_clear(self) -> None:
        self.plan = None
        self.widgets["layer"].options = []  # the layers of the result that is gone

    def compute(self, progress, *, model, device, bootstrap, layer, tau):
        if self.user_model is not None and model == self.user_model_name:
            target = self.user_model
        else:
            progress(0, 1, f"loading {model}")
            target = _load_builtin(model)
        return spectra.analyze(target, device=device, bootstrap=bootstrap, progress=progress)

    def draw(self, result) -> None:
        names = result.names
        layer = self.widgets["layer"]
        keep = layer.value if layer.value in names else None
        layer.options = names
        thin = set(result.thin_fits()["name"])  # open on a layer whose alpha means something
        default = next((n for n, a in zip(names, result.table["alpha"]) if a == a and n not in thin),
                       next((n for n, a in zip(names, result.table["alpha"]) if a == a), names[0]))
        layer.value = keep or default
        table = result.to_frame()[TABLE_COLUMNS]
        table = table[[c for c in TABLE_COLUMNS if table[c].notna().any()]]  # no interval without bootstrap
        self.table.value = table_html(table, columns=TABLE_HEADERS)
        self.skipped.value = _skipped_html(result.skipped)
        self.warn(thin_fit_warning(result))
        self.show_figure("alpha", figures.alpha(result))
        self._draw_esd()
        self._draw_welore()

    def redraw(self, changed: str) -> None:
        self._draw_esd() if changed == "layer" else self._draw_welore()

    def _draw_esd(self) -> None:
        if self.result is not None and self.widgets["layer"].value:
            self.show_figure("esd", figures.esd(self.result, self.widgets["layer"].value))

    def _draw_welore(self) -> None:
        if self.result is None:
            return
        try:
            self.plan = spectra.welore(self.result, tau=self.values["tau"])
        except ValueError as exc:  # e.g. a model with conv layers only
            self.plan = None
            self.show_empty("welore", "No WeLore plan for this model", str(exc))
            return
        self.show_figure("welore", figures.welore(self.plan))
