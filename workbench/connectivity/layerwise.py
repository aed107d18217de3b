"""Layer-wise LMC, distance and singular-vector diagnostics, merging, and the one-call analysis.

* :func:`layerwise`: one layer (or group of parameters) moves along the path while the rest stays at A
  (``base="a"``) or at B (``base="b"``); every barrier variant per group.
* :func:`compare`: per layer, the L2 distance ``||W_A - W_B||`` and the singular-vector alignment
  weighted by singular value,
  ``s = sum_i w_i |<u_i^A, u_i^B>| |<v_i^A, v_i^B>|`` with ``w_i = sigma_i^A sigma_i^B / sum_k sigma_k^A sigma_k^B``
  (singular vectors paired by rank; 1 for identical matrices, invariant to the sign of each pair);
  convolution kernels are reshaped to ``(out, in * kh * kw)``.
* :func:`merge`: the model at ``alpha`` (default the midpoint), with BatchNorm reset or REPAIR.

Definitions: ``docs/connectivity.md``.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from ..backend import DeviceLike, resolve_device
from ..batchnorm import has_batchnorm
from ..data import as_dataset
from ..paths import PathEvaluator, barrier_variants, check_same_architecture
from ..progress import Progress, ProgressLike
from ..results import Result
from ..validation import as_model
from .barrier import _grid

__all__ = ["default_groups", "LayerwiseResult", "layerwise", "singular_alignment", "compare", "merge"]


# --------------------------------------------------------------------------------------------
# layer-wise LMC
# --------------------------------------------------------------------------------------------
def default_groups(model: nn.Module) -> Dict[str, List[str]]:
    """One group per module that owns parameters (its parameters and buffers), in model order."""
    groups: Dict[str, List[str]] = {}
    for name, mod in model.named_modules():
        own = [n for n, _ in mod.named_parameters(recurse=False)]
        if not own:
            continue
        keys = [f"{name}.{n}" if name else n for n, _ in mod.named_parameters(recurse=False)]
        keys += [f"{name}.{n}" if name else n for n, _ in mod.named_buffers(recurse=False)]
        groups[name or "<root>"] = keys
    return groups


@dataclasses.dataclass
class LayerwiseResult(Result):
    """Barriers when only one group moves: one row per (group, base, metric, variant)."""

    table: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    curve: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)

    kind = "layerwise"

    def to_frame(self) -> pd.DataFrame:
        return self.table

    def pivot(self, metric: str = "loss", variant: str = "max_minus_mean") -> pd.DataFrame:
        t = self.table[(self.table["metric"] == metric) & (self.table["variant"] == variant)]
        return t.pivot(index="group", columns="base", values="value").reindex(t["group"].unique())


def layerwise(model_a: nn.Module, model_b: nn.Module, data: Any, *, groups: Optional[Dict[str, Sequence[str]]] = None,
              bases: Sequence[str] = ("a", "b"), points: int = 11, bn: str = "reset", train_data: Any = None,
              loss_fn: Optional[Callable] = None, batch_size: int = 512, device: DeviceLike = "auto",
              progress: ProgressLike = True) -> LayerwiseResult:
    """Layer-wise LMC: interpolate one group of state-dict entries at a time, the rest held at A or at B.

    ``groups`` maps a group name to state-dict keys (default: one group per module owning parameters).
    For ``base="a"`` the path runs from A to A-with-the-group-of-B; for ``base="b"`` from
    B-with-the-group-of-A to B.  Returns every barrier variant per group and base on ``data``.
    """
    model_a, model_b = as_model(model_a, name="model_a"), as_model(model_b, name="model_b")
    check_same_architecture(model_a, model_b)
    groups = dict(groups) if groups is not None else default_groups(model_a)
    state = model_a.state_dict()
    for g, keys in groups.items():
        missing = [k for k in keys if k not in state]
        if missing:
            raise ValueError(f"groups[{g!r}] names entries the model lacks: {missing[:3]}")
    for b in bases:
        if b not in ("a", "b"):
            raise ValueError(f"bases={bases!r}: each base is 'a' or 'b'")
    test = as_dataset(data, "data")
    alphas = _grid(points)
    rows, crow = [], []
    with Progress(len(groups) * len(bases), "layer-wise LMC", progress) as bar:
        for g, keys in groups.items():
            for base in bases:
                path = PathEvaluator(model_a, model_b, bn=bn, train_data=train_data, fallback_data=test,
                                     batch_size=batch_size, device=device, loss_fn=loss_fn, keys=keys, base=base)
                points_ = path.curve(alphas, {"data": test})
                crow += [{"group": g, "base": base, "alpha": r["alpha"], "loss": r["loss"], "error": r["error"]}
                         for r in points_]
                for metric in ("loss", "error"):
                    for v, x in barrier_variants(alphas, [r[metric] for r in points_]).items():
                        rows.append({"group": g, "base": base, "metric": metric, "variant": v, "value": x})
                bar.update()
    dev = resolve_device(device)
    return LayerwiseResult(settings=dict(points=points, bn=bn, bases=list(bases), groups=list(groups),
                                         device=str(dev), data=test.name),
                           table=pd.DataFrame(rows), curve=pd.DataFrame(crow))


# --------------------------------------------------------------------------------------------
# diagnostics
# --------------------------------------------------------------------------------------------
def singular_alignment(wa: torch.Tensor, wb: torch.Tensor) -> float:
    """Singular-value-weighted alignment of the singular vectors of two matrices (see module docstring)."""
    wa = wa.detach().double().reshape(wa.shape[0], -1)
    wb = wb.detach().double().reshape(wb.shape[0], -1)
    ua, sa, vha = torch.linalg.svd(wa, full_matrices=False)
    ub, sb, vhb = torch.linalg.svd(wb, full_matrices=False)
    w = sa * sb
    if float(w.sum()) == 0.0:
        return float("nan")
    cos_u = (ua * ub).sum(0).abs()
    cos_v = (vha * vhb).sum(1).abs()
    return float((w * cos_u * cos_v).sum() / w.sum())


def compare(model_a: nn.Module, model_b: nn.Module, *, aligned: Optional[Dict[str, nn.Module]] = None) -> pd.DataFrame:
    """Per weight tensor (dim >= 2) and in total: L2 distance and singular-vector alignment between A and
    B, and between A and each aligned copy of B in ``aligned`` (name -> model)."""
    model_a, model_b = as_model(model_a, name="model_a"), as_model(model_b, name="model_b")
    check_same_architecture(model_a, model_b)
    variants = {"original": model_b, **(aligned or {})}
    pa = dict(model_a.named_parameters())
    rows = []
    for vname, mb in variants.items():
        pb = dict(mb.named_parameters())
        total = 0.0
        for k, wa in pa.items():
            wb = pb[k].detach().to(wa.device)
            d2 = float(((wa.detach() - wb) ** 2).sum())
            total += d2
            if wa.dim() >= 2:
                rows.append({"model": vname, "layer": k, "l2": d2 ** 0.5,
                             "relative_l2": d2 ** 0.5 / max(float(wa.detach().norm()), 1e-12),
                             "sv_alignment": singular_alignment(wa, wb)})
        rows.append({"model": vname, "layer": "<all parameters>", "l2": total ** 0.5, "relative_l2": total ** 0.5 / max(
            float(sum((p.detach() ** 2).sum() for p in pa.values())) ** 0.5, 1e-12), "sv_alignment": np.nan})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# merging
# --------------------------------------------------------------------------------------------
def merge(model_a: nn.Module, model_b: nn.Module, *, alpha: float = 0.5, bn: str = "reset",
          train_data: Any = None, batch_size: int = 512, device: DeviceLike = "auto") -> nn.Module:
    """The model at ``(1 - alpha) A + alpha B`` with BatchNorm statistics reset (``bn="reset"``) or
    REPAIRed (``bn="repair"``) on ``train_data``; align B first (:func:`align`) for a useful merge."""
    model_a, model_b = as_model(model_a, name="model_a"), as_model(model_b, name="model_b")
    if bn in ("reset", "repair") and train_data is None:
        if bn == "repair" or has_batchnorm(model_a):
            raise ValueError(f"merge(bn={bn!r}) needs train_data= to recompute statistics")
    path = PathEvaluator(model_a, model_b, bn=bn, train_data=train_data, batch_size=batch_size, device=device)
    return copy.deepcopy(path.model_at(float(alpha))).eval()
