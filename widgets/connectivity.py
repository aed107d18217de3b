"""Mode-connectivity panel: two models, curves before and after alignment, barrier table, per-layer chart."""
from __future__ import annotations

from typing import Any, Dict, Optional

import ipywidgets as ipw
import torch.nn as nn

from workbench import connectivity as lmc
from workbench import data as wdata
from workbench import models
from workbench.connectivity import figures
from workbench.progress import Progress

from .base import Panel, number, table_html

SOURCES = {"train": "train two here", "reference": "reference models", "files": "model files",
           "given": "the models passed in"}


class ConnectivityPanel(Panel):
    """Linear mode connectivity between two networks.

    The two models are trained in the panel from two seeds on digits (``source="train"``), taken from
    the cached reference models (``source="reference"``), loaded from files written by
    :func:`workbench.models.save_model` (``source="files"``, evaluated on digits), or passed in
    (``model_a=``, ``model_b=``: modules or model specs, with ``data=`` and ``train_data=``: data sets or
    data specs; ``source="given"``).
    """

    title = "Linear mode connectivity"
    legend = ("The loss along the straight path θ(α) = (1 − α) θ<sub>A</sub> + α θ<sub>B</sub>. Barriers: "
              "<b>max_minus_mean</b> the peak minus the mean of the two ends; <b>max_minus_chord</b> the "
              "largest rise above the line joining the ends; <b>midpoint</b> the loss at α = ½ minus the ends' "
              "mean; <b>signed_mc</b> the ends' mean minus the loss where it deviates most (&lt; 0: a barrier)."
              "<br><b>weight / activation matching</b> permute B's units to line up with A's first; "
              "<b>layer-wise LMC</b> interpolates one layer at a time, the rest kept at A or B.")
    figure_names = ("curves", "layers", "diagnostics")
    figure_hints = {"curves": "loss and error along the path, before and after each alignment",
                    "layers": "the barrier when only one layer is interpolated",
                    "diagnostics": "per-layer distance between A and B and how well their units line up"}
    checks = {"seed_a": "int", "seed_b": "int", "epochs": "float > 0", "points": "int >= 3"}
    visible_when = {
        "arch": lambda v: v["source"] in ("train", "reference"),
        "path_a": lambda v: v["source"] == "files", "path_b": lambda v: v["source"] == "files",
        "seed_a": lambda v: v["source"] in ("train", "reference"),
        "seed_b": lambda v: v["source"] in ("train", "reference"),
        "epochs": lambda v: v["source"] == "train",
    }

    def __init__(self, *, model_a: Optional[nn.Module] = None, model_b: Optional[nn.Module] = None,
                 data: Any = None, train_data: Any = None, background: bool = True, **control_values: Any):
        for name, m in (("model_a", model_a), ("model_b", model_b)):
            if isinstance(m, str) and m.strip().lower() in models.ARCHITECTURES:
                raise TypeError(f"{name} must be a torch.nn.Module or a spec of your own model; {m!r} is a built-in "
                                f"architecture: pass arch={m!r} to train two copies in the panel")
        if (model_a is None) != (model_b is None):
            raise ValueError("pass both model_a= and model_b= (or neither, to train or load them in the panel)")
        self.given = (models.load(model_a), models.load(model_b)) if model_a is not None else (None, None)
        self.given_data = (data, train_data)
        if self.given[0] is not None:
            control_values.setdefault("source", "given")
        elif control_values.get("source") == "given":
            raise TypeError("source='given' needs the two models: ConnectivityPanel(model_a=..., model_b=..., "
                            "data=..., train_data=...)")
        self.table = self.output(table=True)
        self.merged_table = self.output(table=True)
        super().__init__(background=background, **control_values)

    def controls(self) -> Dict[str, ipw.Widget]:
        style = {"description_width": "initial"}
        sources = [(label, key) for key, label in SOURCES.items() if key != "given" or self.given[0] is not None]
        return {
            "source": ipw.Dropdown(options=sources, value="train", description="models", style=style,
                                   layout=ipw.Layout(width="240px")),
            "arch": ipw.Dropdown(options=["mlp", "cnn", "cnn-gap", "resnet"], value="mlp", description="architecture",
                                 style=style, layout=ipw.Layout(width="200px")),
            "path_a": ipw.Text(value="", placeholder="model A file", description="file A",
                               layout=ipw.Layout(width="260px")),
            "path_b": ipw.Text(value="", placeholder="model B file", description="file B",
                               layout=ipw.Layout(width="260px")),
            "seed_a": number(0, "seed A", "120px"),
            "seed_b": number(1, "seed B", "120px"),
            "epochs": number(10, "epochs", "130px"),
            "points": number(25, "path points", "150px"),
            "bn": ipw.Dropdown(options=list(lmc.BN_MODES), value="reset", description="BatchNorm", style=style,
                               layout=ipw.Layout(width="200px")),
            "weight": ipw.Checkbox(value=True, description="weight matching", indent=False,
                                   layout=ipw.Layout(width="150px")),
            "activation": ipw.Checkbox(value=True, description="activation matching", indent=False,
                                       layout=ipw.Layout(width="170px")),
            "layerwise": ipw.Checkbox(value=True, description="layer-wise LMC", indent=False,
                                      layout=ipw.Layout(width="140px")),
            "device": ipw.Dropdown(options=["auto", "cpu", "cuda"], value="auto", description="device",
                                   layout=ipw.Layout(width="170px")),
        }

    def layout_body(self) -> list:
        return [self.figure_box("curves"), ipw.HTML("<b>Barriers (loss)</b>"), self.table,
                ipw.HTML("<b>Merged midpoint models</b> (the average of A and aligned B)"), self.merged_table,
                self.figure_box("layers"), self.figure_box("diagnostics")]

    def _models(self, bar: Progress, source, arch, seed_a, seed_b, epochs, path_a="", path_b=""):
        if source == "given":
            a, b = self.given
            test, train = self.given_data
            if test is None:
                raise ValueError("source='given' needs data= (and train_data=) when the panel is created")
            return a, b, test, train
        if source == "files":
            if not path_a.strip() or not path_b.strip():
                raise ValueError("source='files' needs both file A and file B (written by workbench.models.save_model)")
            a, b = models.load(path_a.strip()), models.load(path_b.strip())
            arch = getattr(a, "arch", None) or arch
            train, test = wdata.digits(image=arch != "mlp")
            return a, b, test, train
        train, test = wdata.digits(image=arch != "mlp")
        if source == "reference":
            return models.reference_model(arch, seed=seed_a), models.reference_model(arch, seed=seed_b), test, train
        out = []
        for name, seed in (("A", seed_a), ("B", seed_b)):
            m = models.build(arch, seed=seed)
            models.train(m, train, epochs=float(epochs), seed=seed, device="cpu",
                         progress=bar.stage(f"training model {name}"))
            bar.update()
            out.append(m)
        return out[0], out[1], test, train

    def compute(self, progress, source, arch, path_a, path_b, seed_a, seed_b, epochs, points, bn, weight, activation,
                layerwise, device):
        methods = [m for m, on in (("weight", weight), ("activation", activation)) if on]
        with Progress(3 if source == "train" else 1, "", progress) as bar:
            a, b, test, train = self._models(bar, source, arch, seed_a, seed_b, epochs, path_a, path_b)
            return lmc.analyze((a, b), test, train_data=train, methods=methods, points=points, bn=bn,
                               run_layerwise=bool(layerwise), device=device, progress=bar.stage("mode connectivity"))

    def draw(self, result: lmc.ConnectivityResult) -> None:
        self.show_figure("curves", figures.curves(result))
        if len(result.layerwise):
            self.show_figure("layers", figures.layerwise(result))
        else:  # not computed this run: drop the previous run's chart
            self.show_empty("layers", "Layer-wise LMC: not computed (tick 'layer-wise LMC' and press Run)")
        self.show_figure("diagnostics", figures.diagnostics(result))
        self.table.value = table_html(result.summary("loss"), index=True)
        self.merged_table.value = table_html(result.merged)
