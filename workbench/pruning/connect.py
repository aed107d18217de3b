"""Signed mode connectivity (mc) between two retrained copies, with BatchNorm reset along the path.

``mc = (f(0) + f(1)) / 2 - f(t*)`` with ``t* = argmax_t |(f(0) + f(1)) / 2 - f(t)|`` on the linear
path ``theta(t) = (1 - t) theta_A + t theta_B`` (Yang et al. 2021; REFERENCE section 2); ``f`` is the
training error.  ``mc < 0`` means a barrier, ``mc > 0`` a path better than its ends.

:func:`mode_connectivity` uses ``workbench.connectivity.barrier(..., bn="reset")`` when that module
is installed (``engine="connectivity"``) and a small built-in path evaluation otherwise
(``engine="builtin"``); both evaluate the whole data set at every point.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, Optional, Tuple

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from ..backend import DeviceLike, resolve_device
from ..data import as_dataset
from ..models import evaluate

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def signed_mc(values: Any) -> float:
    """Signed mc of a curve ``f(t)`` sampled at increasing ``t`` from 0 to 1 (ends included)."""
    f = np.asarray(values, dtype=float)
    if f.ndim != 1 or f.size < 3:
        raise ValueError("signed_mc needs a 1-D curve of at least 3 points, ends included")
    mean_ends = 0.5 * (f[0] + f[-1])
    dev = mean_ends - f
    return float(dev[int(np.argmax(np.abs(dev)))])


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, _BN) for m in model.modules())


@torch.no_grad()
def reset_batchnorm(model: nn.Module, data: Any, *, batch_size: int = 256, device: DeviceLike = "auto") -> None:
    """Recompute every BatchNorm's running statistics on ``data`` (exact averages over all batches)."""
    bns = [m for m in model.modules() if isinstance(m, _BN)]
    if not bns:
        return
    dev = resolve_device(device)
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    was = model.training
    model.train().to(dev)
    for xb, _ in as_dataset(data).batches(batch_size, device=dev):
        model(xb)
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    model.train(was)


def interpolation_curve(model_a: nn.Module, model_b: nn.Module, data: Any, *, points: int = 25,
                        bn: str = "reset", train_data: Any = None, batch_size: int = 1024,
                        device: DeviceLike = "auto") -> pd.DataFrame:
    """Loss and error along the linear path between two models of one architecture (one row per alpha)."""
    if points < 3:
        raise ValueError(f"points={points}: use at least 3 (25 or more to find off-centre peaks)")
    if bn not in ("reset", "interpolate"):
        raise ValueError(f"bn={bn!r}; the built-in path supports 'reset' and 'interpolate'")
    sa, sb = model_a.state_dict(), model_b.state_dict()
    if sa.keys() != sb.keys() or any(sa[k].shape != sb[k].shape for k in sa):
        raise ValueError("model_a and model_b have different architectures; interpolate models of one kind")
    ds = as_dataset(data, "data")
    reset_on = as_dataset(train_data, "train_data") if train_data is not None else ds
    dev = resolve_device(device)
    probe = copy.deepcopy(model_a).to(dev)
    rows = []
    for alpha in np.linspace(0.0, 1.0, int(points)):
        state = {k: ((1 - alpha) * sa[k].to(dev).double() + alpha * sb[k].to(dev).double()).to(sa[k].dtype)
                 if sa[k].is_floating_point() else sa[k] for k in sa}
        probe.load_state_dict(state)
        if bn == "reset" and has_batchnorm(probe):
            reset_batchnorm(probe, reset_on, device=dev)
        ev = evaluate(probe, ds, batch_size=batch_size, device=dev)
        rows.append({"alpha": float(alpha), "loss": ev["loss"], "error": 1.0 - ev["accuracy"],
                     "accuracy": ev["accuracy"]})
    return pd.DataFrame(rows)


def mode_connectivity(model_a: nn.Module, model_b: nn.Module, data: Any, *, points: int = 25,
                      train_data: Any = None, device: DeviceLike = "auto",
                      engine: str = "auto") -> Tuple[float, pd.DataFrame, str]:
    """``(mc on the error, curve frame, engine used)`` between two models, BN reset along the path."""
    if engine not in ("auto", "builtin", "connectivity"):
        raise ValueError(f"engine={engine!r}; choose 'auto', 'builtin' or 'connectivity'")
    if engine in ("auto", "connectivity"):
        try:
            from ..connectivity import barrier  # type: ignore[attr-defined]
        except ImportError:
            if engine == "connectivity":
                raise
        else:
            kw = dict(points=points, bn="reset", train_data=train_data, device=device, progress=False)
            try:  # evaluate the path once, on the data given, labelled as the training split
                res = barrier(model_a, model_b, data, split="train", evaluate_train=False, **kw)
            except TypeError:  # the agreed minimal signature
                res = barrier(model_a, model_b, data, **kw)
            frame = res.to_frame()
            if "split" in frame.columns and frame["split"].nunique() > 1:
                frame = frame[frame["split"] == ("train" if (frame["split"] == "train").any()
                                                 else frame["split"].iloc[0])]
            frame = frame.sort_values("alpha").reset_index(drop=True)
            return signed_mc(frame["error"].to_numpy()), frame, "connectivity"
    frame = interpolation_curve(model_a, model_b, data, points=points, bn="reset", train_data=train_data,
                                device=device)
    return signed_mc(frame["error"].to_numpy()), frame, "builtin"
