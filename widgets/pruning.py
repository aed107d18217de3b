"""Pruning-regime panel: choose the knob and the grid, run with progress, see a heatmap per metric and
the regime map.  Thin: all computation is :func:`workbench.pruning.regime_map`, all drawing
:mod:`workbench.pruning.figures`."""
from __future__ import annotations

import html
from typing import Any, Dict, List

import ipywidgets as ipw

from workbench.pruning import analyze, estimate_cost, figures

from .base import Panel, copy_figure, model_argument

DEFAULT_VALUES = {"epochs": "1, 3, 10, 30", "batch_size": "256, 64, 16", "lr": "0.01, 0.05, 0.2"}


def parse_list(text: str, name: str, cast=float) -> List[Any]:
    """``"1, 3, 10"`` -> ``[1, 3, 10]``; a clear error naming the control otherwise."""
    try:
        items = [cast(t) for t in str(text).replace(";", ",").split(",") if t.strip()]
    except ValueError as exc:
        raise ValueError(f"{name}: {text!r} is not a comma-separated list of numbers") from exc
    if not items:
        raise ValueError(f"{name} is empty; enter comma-separated values such as 0.05, 0.2")
    return items


def _number(text: str):
    value = float(text)
    return int(value) if value.is_integer() else value


class PruningPanel(Panel):
    """Phase diagram of pruning regimes over a temperature knob x density grid."""

    title = "Pruning regimes"
    figure_names = ("regime", "test_error", "mc", "cka")

    def __init__(self, *, model: Any = None, data: Any = None, train_data: Any = None, store: Any = None,
                 executor: Any = None, **kw: Any):
        self.user_model = model_argument(model, kw)  # an untrained module of yours, or None (a built-in name)
        self.data, self.train_data, self.store, self.executor = data, train_data, store, executor
        self.table = ipw.HTML(value="")
        self.estimate_button = ipw.Button(description="Estimate cost", icon="clock-o")
        self.estimate_label = ipw.HTML(value="")
        self.estimate_button.on_click(lambda _b: self.estimate())
        self.cost = None
        super().__init__(**kw)
        if self.user_model is not None:
            self.widgets["model"].options = ["your model", *self.widgets["model"].options]
            self.widgets["model"].value = "your model"
        self.widgets["knob"].observe(self._knob_changed, names="value")

    def controls(self) -> Dict[str, ipw.Widget]:
        style = {"description_width": "initial"}
        return {
            "model": ipw.Dropdown(options=["mlp", "cnn", "cnn-gap", "resnet"], value="mlp", description="model"),
            "knob": ipw.Dropdown(options=["epochs", "batch_size", "lr"], value="epochs", description="knob"),
            "values": ipw.Text(value=DEFAULT_VALUES["epochs"], description="knob values", style=style),
            "densities": ipw.Text(value="0.02, 0.05, 0.1, 0.2, 0.5", description="densities", style=style),
            "scope": ipw.Dropdown(options=["layer", "global"], value="layer", description="scope"),
            "seeds": ipw.IntSlider(value=2, min=2, max=4, description="seeds"),
            "retrain_epochs": ipw.FloatText(value=5, description="retrain epochs", style=style),
            "lr": ipw.FloatText(value=0.1, description="retrain lr", style=style),
            "points": ipw.IntSlider(value=25, min=5, max=51, step=2, description="path points", style=style),
        }

    def _knob_changed(self, change) -> None:
        self.widgets["values"].value = DEFAULT_VALUES[change["new"]]

    def layout_body(self) -> list:
        f = self.figures
        metrics = ipw.HBox([f["test_error"], f["mc"], f["cka"]], layout=ipw.Layout(flex_flow="row wrap"))
        return [ipw.HBox([self.estimate_button, self.estimate_label]), f["regime"], metrics, self.table]

    def _arguments(self, *, model, knob, values, densities, scope, seeds, retrain_epochs, lr, points) -> dict:
        net = self.user_model if model == "your model" else model
        return dict(model=net, data=self.data, train_data=self.train_data, knob=knob,
                    values=parse_list(values, "knob values", _number),
                    densities=parse_list(densities, "densities"), scope=scope,
                    seeds=list(range(int(seeds))), retrain_epochs=retrain_epochs, lr=lr, points=points,
                    store=self.store, executor=self.executor, threads=1)

    def compute(self, progress, **values):
        return analyze(**self._arguments(**values), progress=progress)

    def estimate(self) -> None:
        """Time one cell and show what the grid of the current controls will cost (stored cells are free)."""
        self.error_area.value = ""
        self.estimate_label.value = "estimating..."
        try:
            self.cost = estimate_cost(**self._arguments(**self.values))
        except Exception as exc:  # shown to the user, not lost
            self.estimate_label.value = ""
            self.show_error(exc)
            return
        self.estimate_label.value = f"before running: {html.escape(str(self.cost))}"

    def draw(self, result) -> None:
        copy_figure(figures.regimes(result), self.figures["regime"])
        for metric in ("test_error", "mc", "cka"):
            fig = figures.heatmap(result, metric)
            fig.update_layout(width=420, height=360)
            copy_figure(fig, self.figures[metric])
        cols = ["value", "density", "test_error", "mc", "cka", "regime", "confidence"]
        self.table.value = result.to_frame()[cols].round(4).to_html(index=False, max_rows=60)
