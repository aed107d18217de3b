"""Mode-connectivity panel: two models, curves before and after alignment, barrier table, per-layer chart."""
from __future__ import annotations

from typing import Any, Dict, Optional

import ipywidgets as ipw
import plotly.graph_objects as go
import torch.nn as nn

from widgets.base import Panel, copy_figure
from workbench import connectivity as lmc
from workbench import data as wdata
from workbench import models
from workbench.connectivity import figures


class ConnectivityPanel(Panel):
    """Linear mode connectivity between two networks.

    The two models are trained in the panel from two seeds on digits (``source="train"``), taken from
    the cached reference models (``source="reference"``), loaded from files written by
    :func:`workbench.models.save_model` (``source="files"``, evaluated on digits), or passed in
    (``model_a=``, ``model_b=``, with ``data=`` and ``train_data=``; ``source="given"``).
    """

    title = "Linear mode connectivity"
    figure_names = ("curves", "layers", "diagnostics")

    def __init__(self, *, model_a: Optional[nn.Module] = None, model_b: Optional[nn.Module] = None,
                 data: Any = None, train_data: Any = None, background: bool = True, **control_values: Any):
        for name, m in (("model_a", model_a), ("model_b", model_b)):
            if isinstance(m, str) and m.strip().lower() in models.ARCHITECTURES:
                raise TypeError(f"{name} must be a torch.nn.Module or a spec of your own model; {m!r} is a built-in "
                                f"architecture: pass arch={m!r} to train two copies in the panel")
        model_a = models.load(model_a) if model_a is not None else None
        model_b = models.load(model_b) if model_b is not None else None
        self.given = (model_a, model_b)
        self.given_data = (data, train_data)
        self.table = ipw.HTML(value="")
        self.merged_table = ipw.HTML(value="")
        if model_a is not None and model_b is not None:
            control_values.setdefault("source", "given")
        elif (model_a is None) != (model_b is None):
            raise ValueError("pass both model_a= and model_b= (or neither, to train or load them in the panel)")
        super().__init__(background=background, **control_values)

    def controls(self) -> Dict[str, ipw.Widget]:
        style = {"description_width": "initial"}
        return {
            "source": ipw.Dropdown(options=["train", "reference", "files", "given"], value="train",
                                   description="models", style=style),
            "arch": ipw.Dropdown(options=["mlp", "cnn", "cnn-gap", "resnet"], value="mlp", description="architecture",
                                 style=style),
            "path_a": ipw.Text(value="", placeholder="model A file", description="file A",
                               layout=ipw.Layout(width="220px")),
            "path_b": ipw.Text(value="", placeholder="model B file", description="file B",
                               layout=ipw.Layout(width="220px")),
            "seed_a": ipw.IntText(value=0, description="seed A", layout=ipw.Layout(width="130px")),
            "seed_b": ipw.IntText(value=1, description="seed B", layout=ipw.Layout(width="130px")),
            "epochs": ipw.FloatText(value=10, description="epochs", layout=ipw.Layout(width="140px")),
            "points": ipw.IntSlider(value=25, min=5, max=61, description="points", style=style),
            "bn": ipw.Dropdown(options=list(lmc.BN_MODES), value="reset", description="BatchNorm", style=style),
            "weight": ipw.Checkbox(value=True, description="weight matching", indent=False),
            "activation": ipw.Checkbox(value=True, description="activation matching", indent=False),
            "layerwise": ipw.Checkbox(value=True, description="layer-wise LMC", indent=False),
            "device": ipw.Dropdown(options=["auto", "cpu", "cuda"], value="auto", description="device"),
        }

    def layout_body(self) -> list:
        return [self.figures["curves"], ipw.HTML("<b>Barriers (loss)</b>"), self.table,
                ipw.HTML("<b>Merged midpoint models</b>"), self.merged_table, self.figures["layers"],
                self.figures["diagnostics"]]

    def _models(self, progress, source, arch, seed_a, seed_b, epochs, path_a="", path_b=""):
        if source == "given":
            a, b = self.given
            if a is None:
                raise ValueError("source='given' but no models were passed; create the panel with model_a=, model_b=")
            test, train = self.given_data
            if test is None:
                raise ValueError("source='given' needs data= (and train_data=) when the panel is created")
            return a, b, test, train
        if source == "files":
            if not path_a or not path_b:
                raise ValueError("source='files' needs both file A and file B (written by workbench.models.save_model)")
            a, b = models.load(path_a), models.load(path_b)
            arch = getattr(a, "arch", None) or arch
            train, test = wdata.digits(image=arch != "mlp")
            return a, b, test, train
        train, test = wdata.digits(image=arch != "mlp")
        if source == "reference":
            return (models.reference_model(arch, seed=int(seed_a)), models.reference_model(arch, seed=int(seed_b)),
                    test, train)
        out = []
        for i, seed in enumerate((seed_a, seed_b)):
            m = models.build(arch, seed=int(seed))
            models.train(m, train, epochs=float(epochs), seed=int(seed), device="cpu",
                         progress=lambda d, t, s, i=i: progress(d, t, f"train model {'AB'[i]}"))
            out.append(m)
        return out[0], out[1], test, train

    def compute(self, progress, source, arch, path_a, path_b, seed_a, seed_b, epochs, points, bn, weight, activation,
                layerwise, device):
        a, b, test, train = self._models(progress, source, arch, seed_a, seed_b, epochs, path_a, path_b)
        methods = [m for m, on in (("weight", weight), ("activation", activation)) if on]
        return lmc.analyze((a, b), test, train_data=train, methods=methods, points=int(points), bn=bn,
                           run_layerwise=bool(layerwise), device=device, progress=progress)

    def draw(self, result: lmc.ConnectivityResult) -> None:
        copy_figure(figures.curves(result), self.figures["curves"])
        if len(result.layerwise):
            copy_figure(figures.layerwise(result), self.figures["layers"])
        else:  # not computed this run: drop the previous run's chart
            empty = go.Figure()
            empty.update_layout(title="Layer-wise LMC: not computed (tick 'layer-wise LMC' to compute it)",
                                height=120)
            copy_figure(empty, self.figures["layers"])
        copy_figure(figures.diagnostics(result), self.figures["diagnostics"])
        self.table.value = result.summary("loss").to_html(float_format=lambda v: f"{v:.4f}")
        self.merged_table.value = result.merged.to_html(index=False, float_format=lambda v: f"{v:.4f}")
