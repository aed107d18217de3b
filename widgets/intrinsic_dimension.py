"""Intrinsic-dimension panel: accuracy against d with the 90 % line and d_int90, and a per-layer ID profile."""
from __future__ import annotations

import html
from typing import Any, Dict

import ipywidgets as ipw

from workbench import data as wdata
from workbench import models as wmodels
from workbench.intrinsic_dimension import analyze, figures, profile

from .base import Panel, copy_figure, model_argument


class IntrinsicDimensionPanel(Panel):
    """Search d_int90 of a digits model (or your own ``model`` on your ``data``) and profile its layers.

    ``IntrinsicDimensionPanel()`` works on the built-in digits data with the reference MLP or CNN;
    ``IntrinsicDimensionPanel(model=my_module, data=test, train_data=train)`` adds a ``"custom"`` choice
    (without ``train_data`` the model trains and is measured on ``data``).
    """

    title = "Intrinsic dimension"
    figure_names = ("search", "profile")

    def __init__(self, *, model: Any = None, data: Any = None, train_data: Any = None, **kw: Any):
        if isinstance(model, str) and data is not None:
            raise TypeError(f"model={model!r} is a built-in model trained on digits; pass an nn.Module "
                            "with data=, or drop data=")
        model = model_argument(model, kw)
        if (model is None) != (data is None):
            raise TypeError("pass model= and data= together (train_data= is optional)")
        self._custom = (model, data, train_data) if model is not None else None
        self.summary = ipw.HTML(value="")
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
            "seeds": ipw.BoundedIntText(value=2, min=1, max=10, description="seeds", style=style, layout=small),
            "epochs": ipw.BoundedIntText(value=5, min=1, max=200, description="epochs", style=style, layout=small),
            "d_min": ipw.BoundedIntText(value=10, min=1, max=10 ** 6, description="d min", style=style, layout=small),
            "d_max": ipw.BoundedIntText(value=2000, min=2, max=10 ** 7, description="d max", style=style,
                                        layout=small),
            "threshold": ipw.BoundedFloatText(value=0.9, min=0.05, max=1.0, step=0.05, description="threshold",
                                              style=style, layout=small),
            "n_train": ipw.BoundedIntText(value=1347, min=50, max=10 ** 7, description="train points", style=style,
                                          layout=small),
            "estimator": ipw.Dropdown(options=["twonn", "twonn-mle", "mle"], value="twonn",
                                      description="layer ID", style=style, layout=small),
        }

    def layout_body(self) -> list:
        return [self.summary, *self.figures.values()]

    def _data(self, model: str, labels: str, n_train: int):
        if model == "custom":
            net, test, train = self._custom
            if train is None:  # trained and measured on the data given
                train, test = test, None
        else:
            train, test = wdata.digits(image=model != "mlp")
            net = model
        train = wdata.as_dataset(train, "data").subset(int(n_train), seed=0)
        if labels == "shuffled":  # nothing to generalise: measure memorisation on the training set
            train, test = wdata.shuffled_labels(train, seed=0), None
        return net, train, test

    def compute(self, progress, *, model, labels, projection, said, method, seeds, epochs, d_min, d_max,
                threshold, n_train, estimator) -> Dict[str, Any]:
        net, train, test = self._data(model, labels, n_train)
        res = analyze(net, test if test is not None else train, train_data=train if test is not None else None,
                      method=method, seeds=int(seeds), projection=projection,
                      said=bool(said), epochs=epochs, d_min=int(d_min), d_max=int(d_max), threshold=threshold,
                      baseline="full", baseline_kwargs=dict(epochs=max(epochs, 10)), progress=progress)
        trained = net if model == "custom" else wmodels.reference_model(model)
        prof = profile(trained, train, estimator=estimator, n=min(2000, len(train)), progress=progress)
        return {"search": res, "profile": prof}

    def draw(self, result: Dict[str, Any]) -> None:
        copy_figure(figures.search(result["search"]), self.figures["search"])
        copy_figure(figures.profile(result["profile"]), self.figures["profile"])
        self.summary.value = f"<b>{html.escape(result['search'].describe())}</b>"
