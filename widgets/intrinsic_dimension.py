"""Intrinsic-dimension panel: accuracy against d with the 90 % line and d_int90, and a per-layer ID profile."""
from __future__ import annotations

import html
from typing import Any, Dict, List

import ipywidgets as ipw

from workbench import data as wdata
from workbench import models as wmodels
from workbench.intrinsic_dimension import analyze, figures, profile
from workbench.progress import Progress

from .base import Panel, model_argument, number


class IntrinsicDimensionPanel(Panel):
    """Search d_int90 of a digits model (or your own ``model`` on your ``data``) and profile its layers.

    ``IntrinsicDimensionPanel()`` works on the built-in digits data with the reference MLP or CNN;
    ``IntrinsicDimensionPanel(model=my_module, data=test, train_data=train)`` adds a ``"custom"`` choice
    (any model spec and data specs; without ``train_data`` the model trains and is measured on ``data``).
    """

    title = "Intrinsic dimension"
    legend = ("Training only a d-dimensional subspace, θ = θ<sub>0</sub> + P θ<sub>d</sub> (θ<sub>0</sub> frozen, P a "
              "fixed random projection: fastfood, sparse or dense). <b>d_int90</b>: the smallest d whose accuracy "
              "reaches 90 % (the threshold) of the baseline, the model trained in full.<br><b>SAID</b> adds one "
              "learned scale per weight tensor. <b>Layer ID</b>: the intrinsic dimension of each layer's "
              "representations (TwoNN or the Levina-Bickel MLE).")
    figure_names = ("search", "profile")
    figure_hints = {"search": "accuracy against d, the threshold line and d_int90",
                    "profile": "the intrinsic dimension of each layer's representations"}
    checks = {"seeds": "int >= 1", "epochs": "float > 0", "d_min": "int >= 1", "d_max": "int >= 2",
              "threshold": "float in (0, 1]", "n_train": "int >= 10", "tolerance": "float > 0",
              "grid_points": "int >= 2"}
    visible_when = {"tolerance": lambda v: v["method"] == "bisection",
                    "grid_points": lambda v: v["method"] == "grid"}

    def __init__(self, *, model: Any = None, data: Any = None, train_data: Any = None, **kw: Any):
        if isinstance(model, str) and data is not None and model.strip().lower() in wmodels.BUILTIN_MODELS:
            raise TypeError(f"model={model!r} is a built-in model trained on digits; pass an nn.Module "
                            "with data=, or drop data=")
        model = model_argument(model, kw)
        if (model is None) != (data is None):
            raise TypeError("pass model= and data= together (train_data= is optional)")
        self._custom = (model, data, train_data) if model is not None else None
        self.summary = self.output()
        super().__init__(**kw)
        if self._custom is not None and "model" not in kw:
            self.widgets["model"].value = "custom"

    def controls(self) -> Dict[str, ipw.Widget]:
        style = {"description_width": "initial"}
        small = ipw.Layout(width="190px")
        options = ["mlp", "cnn"] + (["custom"] if getattr(self, "_custom", None) is not None else [])
        return {
            "model": ipw.Dropdown(options=options, value="mlp", description="model", style=style, layout=small),
            "labels": ipw.Dropdown(options=["true", "shuffled"], value="true", description="labels", style=style,
                                   layout=small),
            "projection": ipw.Dropdown(options=["fastfood", "sparse", "dense"], value="fastfood",
                                       description="projection", style=style, layout=small),
            "said": ipw.Checkbox(value=False, description="SAID scales", indent=False,
                                 layout=ipw.Layout(width="120px")),
            "method": ipw.Dropdown(options=["bisection", "grid"], value="bisection", description="search",
                                   style=style, layout=small),
            "tolerance": number(0.1, "tolerance (relative)", "180px"),
            "grid_points": number(6, "grid points", "130px"),
            "seeds": number(2, "seeds", "100px"),
            "epochs": number(5, "epochs", "110px"),
            "d_min": number(10, "d min", "120px"),
            "d_max": number(2000, "d max", "130px"),
            "threshold": number(0.9, "threshold", "130px"),
            "n_train": number(1347, "train points", "150px"),
            "estimator": ipw.Dropdown(options=["twonn", "twonn-mle", "mle"], value="twonn",
                                      description="layer ID", style=style, layout=small),
        }

    def layout_body(self) -> list:
        return [self.summary, self.figure_row("search", "profile")]

    def check_values(self, values: Dict[str, Any]) -> List[str]:
        if values["d_min"] >= values["d_max"]:
            return [f"d min ({values['d_min']}) must be below d max ({values['d_max']})"]
        return []

    def _data(self, model: str, labels: str, n_train: int):
        if model == "custom":
            net, test, train = self._custom
            if train is None:  # trained and measured on the data given
                train, test = test, None
        else:
            train, test = wdata.digits(image=model != "mlp")
            net = model
        train = wdata.as_dataset(train, "data").subset(n_train, seed=0)
        if labels == "shuffled":  # nothing to generalise: measure memorisation on the training set
            train, test = wdata.shuffled_labels(train, seed=0), None
        return net, train, test

    def compute(self, progress, *, model, labels, projection, said, method, tolerance, grid_points, seeds, epochs,
                d_min, d_max, threshold, n_train, estimator) -> Dict[str, Any]:
        net, train, test = self._data(model, labels, n_train)
        with Progress(2, "", progress) as bar:
            res = analyze(net, test if test is not None else train, train_data=train if test is not None else None,
                          method=method, seeds=seeds, projection=projection, said=bool(said), epochs=epochs,
                          d_min=d_min, d_max=d_max, threshold=threshold, tolerance=tolerance, grid_points=grid_points,
                          baseline="full", baseline_kwargs=dict(epochs=max(epochs, 10)),
                          progress=bar.stage("d_int90 search"))
            bar.update()
            trained = net if model == "custom" else wmodels.reference_model(model)
            prof = profile(trained, train, estimator=estimator, n=min(2000, len(train)),
                           progress=bar.stage("layer ID profile"))
        return {"search": res, "profile": prof}

    def draw(self, result: Dict[str, Any]) -> None:
        search = result["search"]
        self.show_figure("search", figures.search(search))
        self.show_figure("profile", figures.profile(result["profile"]))
        self.summary.value = f"<b>{html.escape(search.describe())}</b>"
        if not search.reached:
            name = f"d_int{int(round(search.settings.get('threshold', 0.9) * 100))}"
            self.warn(f"{name} was not reached up to d max = {int(search.summary['d'].max())}: raise d max (or "
                      "train longer) to find it.")
