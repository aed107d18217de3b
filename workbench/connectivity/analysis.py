"""The one-call connectivity analysis: barriers before and after alignment, per-layer diagnostics, layer-wise
LMC and the merged midpoint models (``docs/connectivity.md``)."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import torch.nn as nn

from ..backend import DeviceLike, resolve_device
from ..models import evaluate
from ..paths import VARIANTS, check_same_architecture
from ..progress import Progress, ProgressLike
from ..results import Result
from ..validation import as_model, probe
from .barrier import barrier
from .layerwise import compare, layerwise, merge
from .matching import align
from .tracing import permutation_spec

__all__ = ["ConnectivityResult", "analyze"]


@dataclasses.dataclass
class ConnectivityResult(Result):
    """Everything the connectivity panel and report show.

    ``curve``: interpolation curves (column ``model``: ``original``, ``weight``, ``activation``);
    ``table``: barrier variants per model, split and metric; ``diagnostics``: :func:`compare`'s table;
    ``layerwise``: layer-wise barriers of the original and of the best aligned pair; ``merged``: loss and
    accuracy of the merged midpoint models; ``perms``: method -> permutations.
    The aligned models and the merged models are in ``aligned_`` and ``merged_`` (not saved).
    """

    curve: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    table: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    diagnostics: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    layerwise: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    merged: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    perms: Dict[str, Dict[str, np.ndarray]] = dataclasses.field(default_factory=dict)

    kind = "connectivity"

    def __post_init__(self) -> None:
        self.aligned_: Dict[str, nn.Module] = {}
        self.merged_: Dict[str, nn.Module] = {}

    def to_frame(self) -> pd.DataFrame:
        return self.table

    def findings(self):
        """The key numbers of the result, each with a sentence (:mod:`workbench.findings`)."""
        from .findings import connectivity_findings

        return connectivity_findings(self)

    def summary(self, metric: str = "loss") -> pd.DataFrame:
        """Barrier variants (columns) per model and split for one metric."""
        t = self.table[self.table["metric"] == metric]
        return t.pivot_table(index=["model", "split"], columns="variant", values="value", sort=False)[list(VARIANTS)]

    def improvement(self, *, metric: str = "loss", variant: Optional[str] = None,
                    split: Optional[str] = None) -> pd.DataFrame:
        """Per alignment method: the barrier before and after it, their ratio, and the L2 distance to A
        before and after (over all parameters).  One row per model (``original`` first)."""
        variant = variant or self.settings.get("variant", "max_minus_mean")
        split = split or self.settings.get("split", "test")
        t = self.table[(self.table["metric"] == metric) & (self.table["variant"] == variant)
                       & (self.table["split"] == split)].set_index("model")["value"]
        d = self.diagnostics[self.diagnostics["layer"] == "<all parameters>"].set_index("model")["l2"]
        rows = []
        for model, value in t.items():
            rows.append({"model": model, "barrier": float(value), "barrier_original": float(t["original"]),
                         "ratio": float(value / t["original"]) if t["original"] != 0 else float("nan"),
                         "l2": float(d.get(model, np.nan)), "l2_original": float(d.get("original", np.nan))})
        return pd.DataFrame(rows)


def _pair(subject: Any) -> Tuple[nn.Module, nn.Module]:
    if not (isinstance(subject, (tuple, list)) and len(subject) == 2):
        raise TypeError("connectivity.analyze takes the pair of models as its subject: "
                        f"analyze((model_a, model_b), data, ...), got {type(subject).__name__}")
    a, b = as_model(subject[0], name="model_a"), as_model(subject[1], name="model_b")
    check_same_architecture(a, b)
    return a, b


def analyze(subject: Tuple[nn.Module, nn.Module], data: Any = None, *, train_data: Any = None,
            methods: Sequence[str] = ("weight", "activation"), points: int = 25, refine: int = 6,
            bn: str = "reset", variant: str = "max_minus_mean", layer_points: int = 7, run_layerwise: bool = True,
            loss_fn: Optional[Callable] = None, batch_size: int = 512, device: DeviceLike = "auto", seed: int = 0,
            progress: ProgressLike = True) -> ConnectivityResult:
    """Barriers before and after alignment, per-layer diagnostics, layer-wise LMC and merged models.

    ``subject`` is the pair ``(model_a, model_b)``; ``data`` the split the barriers are reported on;
    ``train_data`` the training data for BatchNorm statistics and activation matching (``data`` when it is
    missing).  ``methods`` are the alignment methods (``"weight"``, ``"activation"``); ``variant`` the barrier
    variant reported first.
    """
    model_a, model_b = _pair(subject)
    if data is None:
        raise ValueError("connectivity.analyze needs data: the split the barriers are measured on")
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r}; choose one of {VARIANTS}")
    dev = resolve_device(device)
    test = probe(model_a, data, loss_fn=loss_fn, name="data")
    train = probe(model_a, train_data, loss_fn=loss_fn, name="train_data") if train_data is not None else None
    fit_on = train if train is not None else test
    spec = permutation_spec(model_a, test) if methods else None
    steps = 2 * len(methods) + 1 + ((2 if methods else 1) if run_layerwise else 0)
    with Progress(steps, "connectivity", progress) as bar:
        aligned, perms = {}, {}
        for m in methods:
            res = align(model_a, model_b, fit_on, method=m, spec=spec, seed=seed, batch_size=batch_size, device=dev,
                        progress=bar.stage(f"{m} matching"))
            aligned[m], perms[m] = res.model_, res.perms
            bar.update()
        curves, tables, merged_rows, merged_models = [], [], [], {}
        for name, mb in [("original", model_b), *aligned.items()]:
            r = barrier(model_a, mb, test, loss_fn=loss_fn, points=points, bn=bn, train_data=train, refine=refine,
                        variant=variant, batch_size=batch_size, device=dev,
                        progress=bar.stage(f"barrier ({name})"))
            curves.append(r.curve.assign(model=name))
            tables.append(r.table.assign(model=name))
            merged_models[name] = merge(model_a, mb, bn=bn, train_data=fit_on, batch_size=batch_size, device=dev)
            ev = evaluate(merged_models[name], test, loss_fn=loss_fn, batch_size=batch_size, device=dev)
            merged_rows.append({"model": name, "loss": ev["loss"], "accuracy": ev["accuracy"]})
            bar.update()
        table = pd.concat(tables, ignore_index=True)
        lw = _layerwise(model_a, model_b, aligned, table, test, train, run_layerwise, bar,
                        dict(points=layer_points, bn=bn, loss_fn=loss_fn, batch_size=batch_size, device=dev))
    out = ConnectivityResult(
        settings=dict(methods=list(methods), points=points, refine=refine, bn=bn, variant=variant, seed=seed,
                      device=str(dev), data=test.name, train_data=None if train is None else train.name,
                      layer_points=layer_points, split="test"),
        curve=pd.concat(curves, ignore_index=True), table=table, diagnostics=compare(model_a, model_b, aligned=aligned),
        layerwise=lw, merged=pd.DataFrame(merged_rows), perms=perms)
    out.aligned_, out.merged_ = aligned, merged_models
    return out


def _layerwise(model_a, model_b, aligned, table, test, train, run: bool, bar: Progress, kw) -> pd.DataFrame:
    """Layer-wise barriers of the original pair and of the best aligned pair (lowest loss barrier)."""
    if not run:
        return pd.DataFrame()
    best = None
    if aligned:
        lt = table[(table["metric"] == "loss") & (table["variant"] == "max_minus_mean")
                   & (table["split"] == "test") & (table["model"] != "original")]
        best = str(lt.sort_values("value")["model"].iloc[0])
    frames = []
    for name in ["original"] + ([best] if best else []):
        mb = model_b if name == "original" else aligned[name]
        lw = layerwise(model_a, mb, test, train_data=train, progress=bar.stage(f"layer-wise LMC ({name})"),
                       **kw)
        frames.append(lw.table.assign(model=name))
        bar.update()
    return pd.concat(frames, ignore_index=True)
