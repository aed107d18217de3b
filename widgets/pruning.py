"""Pruning-regime panel: choose the knob and the grid, run with progress, see a heatmap per metric and
the regime map.  Thin: all computation is :func:`workbench.pruning.analyze` (and
:func:`workbench.pruning.estimate_cost`), all drawing :mod:`workbench.pruning.figures`."""
from __future__ import annotations

import html
from typing import Any, Dict

import ipywidgets as ipw

from workbench.pruning import analyze, estimate_cost, figures

from .base import Panel, model_argument, number, table_html

DEFAULT_VALUES = {"epochs": "1, 3, 10, 30", "batch_size": "256, 64, 16", "lr": "0.01, 0.05, 0.2"}
VALUE_CHECKS = {"epochs": "list of float > 0", "batch_size": "list of int >= 1", "lr": "list of float > 0"}
CHECKS = {"densities": "list of float in (0, 1]", "seeds": "int >= 2", "retrain_epochs": "float > 0",
          "lr": "float > 0", "points": "int >= 3", "dense_epochs": "float > 0", "dense_lr": "float > 0",
          "dense_batch_size": "int >= 1"}


class PruningPanel(Panel):
    """Phase diagram of pruning regimes over a temperature knob x density grid.

    ``model=``: a built-in name, or your untrained model (a module or any model spec); ``data=`` and
    ``train_data=``: the test and the training split (data sets or data specs; built-in digits without).
    """

    title = "Pruning regimes"
    legend = ("Each cell: the dense model trained at one value of the <b>knob</b> (a temperature: fewer epochs, "
              "smaller batches or a larger lr run hotter), pruned to one <b>density</b> (fraction of weights "
              "kept) and retrained from several seeds.<br><b>I</b>: poorly connected (signed mc clearly below 0: "
              "a loss barrier between the retrained copies); <b>II-A</b>: well connected, lower output CKA; "
              "<b>II-B</b>: well connected, high CKA (the copies compute nearly the same function).")
    figure_names = ("regime", "test_error", "mc", "cka")
    figure_hints = {"regime": "every cell coloured by its regime (I, II-A, II-B), with its confidence",
                    "test_error": "test error per cell", "mc": "signed mode connectivity per cell",
                    "cka": "output CKA between the retrained copies per cell"}
    visible_when = {"dense_epochs": lambda v: v["knob"] != "epochs",
                    "dense_lr": lambda v: v["knob"] != "lr",
                    "dense_batch_size": lambda v: v["knob"] != "batch_size"}

    def __init__(self, *, model: Any = None, data: Any = None, train_data: Any = None, store: Any = None,
                 executor: Any = None, **kw: Any):
        self.user_model = model_argument(model, kw)  # an untrained module of yours, or None (a built-in name)
        self.data, self.train_data, self.store, self.executor = data, train_data, store, executor
        self.table = self.output(table=True)
        self.estimate_button = ipw.Button(description="Estimate cost", icon="clock-o",
                                          tooltip="time one cell and extrapolate to the grid (stored cells are free)")
        self.estimate_label = ipw.HTML(value="")
        self.estimate_button.on_click(lambda _b: self.estimate())
        self.cost = None
        if "values" not in kw and kw.get("knob") in DEFAULT_VALUES:
            kw["values"] = DEFAULT_VALUES[kw["knob"]]
        super().__init__(**kw)
        if self.user_model is not None:
            self.widgets["model"].options = ["your model", *self.widgets["model"].options]
            self.widgets["model"].value = "your model"
        self.widgets["knob"].observe(self._knob_changed, names="value")

    @property
    def checks(self) -> Dict[str, str]:
        return {**CHECKS, "values": VALUE_CHECKS[self.widgets["knob"].value]}

    def controls(self) -> Dict[str, ipw.Widget]:
        style = {"description_width": "initial"}
        return {
            "model": ipw.Dropdown(options=["mlp", "cnn", "cnn-gap", "resnet"], value="mlp", description="model",
                                  layout=ipw.Layout(width="190px")),
            "knob": ipw.Dropdown(options=[("epochs of dense training", "epochs"), ("batch size", "batch_size"),
                                          ("learning rate", "lr")], value="epochs", description="knob",
                                 layout=ipw.Layout(width="280px")),
            "values": ipw.Text(value=DEFAULT_VALUES["epochs"], description="knob values", style=style,
                               layout=ipw.Layout(width="260px")),
            "densities": ipw.Text(value="0.02, 0.05, 0.1, 0.2, 0.5", description="densities", style=style,
                                  layout=ipw.Layout(width="280px")),
            "scope": ipw.Dropdown(options=["layer", "global"], value="layer", description="scope",
                                  layout=ipw.Layout(width="170px")),
            "dense_epochs": number(20, "dense epochs", "150px"),
            "dense_lr": number(0.05, "dense lr", "130px"),
            "dense_batch_size": number(64, "dense batch", "140px"),
            "seeds": number(2, "seeds", "100px"),
            "retrain_epochs": number(5, "retrain epochs", "160px"),
            "lr": number(0.1, "retrain lr", "140px"),
            "points": number(25, "path points", "140px"),
        }

    def _knob_changed(self, change) -> None:
        self.widgets["values"].value = DEFAULT_VALUES[change["new"]]

    def on_inputs_changed(self, name: str) -> None:
        self.cost = None  # an estimate of the old grid
        self.estimate_label.value = ""

    def layout_body(self) -> list:
        return [ipw.HBox([self.estimate_button, self.estimate_label], layout=ipw.Layout(align_items="center")),
                self.figure_box("regime"), self.figure_row("test_error", "mc", "cka", min_width=440), self.table]

    def _arguments(self, *, model, knob, values, densities, scope, dense_epochs, dense_lr, dense_batch_size, seeds,
                   retrain_epochs, lr, points) -> dict:
        net = self.user_model if model == "your model" else model
        return dict(model=net, data=self.data, train_data=self.train_data, knob=knob, values=values,
                    densities=densities, scope=scope, dense_epochs=dense_epochs, dense_lr=dense_lr,
                    dense_batch_size=dense_batch_size, seeds=list(range(seeds)), retrain_epochs=retrain_epochs,
                    lr=lr, points=points, store=self.store, executor=self.executor, threads=1)

    def compute(self, progress, **values):
        return analyze(**self._arguments(**values), progress=progress)

    def estimate(self) -> None:
        """Time one cell and show what the grid of the current controls will cost (stored cells are free)."""
        self.error_area.value = ""
        problems = self.problems()
        if problems:
            self.estimate_label.value = ""
            self.show_problems(problems, "Not estimated")
            return
        self.estimate_label.value = "estimating…"
        try:
            self.cost = estimate_cost(**self._arguments(**self.values))
        except Exception as exc:  # shown to the user, not lost
            self.estimate_label.value = ""
            self.show_error(exc)
            return
        self.estimate_label.value = f"before running: {html.escape(str(self.cost))}"

    def draw(self, result) -> None:
        self.show_figure("regime", figures.regimes(result))
        for metric in ("test_error", "mc", "cka"):
            fig = figures.heatmap(result, metric)
            fig.update_layout(height=360)  # two side by side
            self.show_figure(metric, fig)
        cols = ["value", "density", "test_error", "mc", "cka", "regime", "confidence"]
        headers = {"value": self.widgets["knob"].label or "knob value", "test_error": "test error"}
        self.table.value = table_html(result.to_frame()[cols], columns=headers)
