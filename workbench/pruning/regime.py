"""Pruning-regime maps: temperature knob x density, per cell test error, signed mc and output CKA.

The three-regime model (Zhou, Yang, Chang, Mahoney 2023) reads a pruned network's quality off two
"phase" coordinates: a temperature-like knob set on the dense model (number of training epochs, fewer =
hotter; batch size, smaller = hotter; learning rate) and a load-like knob, the density after pruning.
Per cell the dense model is pruned (one-shot magnitude), retrained with the mask fixed from two or more
seeds, and measured: test error, signed mc on the training error between the retrained copies (BatchNorm
reset along the path), and linear CKA between their outputs.  Cells are then classified:

* ``I``: poorly connected, mc clearly below 0;
* ``II-A``: well connected, lower CKA;
* ``II-B``: well connected, high CKA.

The paper draws the boundaries by hand.  Here they come from the seed-to-seed spread (see
:func:`classify_regimes`), and every cell carries a confidence.  Cells run through
:func:`workbench.sweep.run`, so a map can be stored, resumed and spread over a Dask cluster.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import itertools
import math
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from .. import sweep as sweep_engine
from ..backend import DeviceLike, resolve_device
from ..data import as_dataset, digits
from ..models import build, evaluate, train
from ..progress import ProgressLike
from ..results import Result
from .cka import output_cka
from .connect import mode_connectivity
from .masks import density_of, magnitude_mask, apply_mask
from .retrain import finetune

KNOBS = ("epochs", "batch_size", "lr")
REGIMES = ("I", "II-A", "II-B")
DEFAULT_DENSITIES = (0.05, 0.06, 0.07, 0.08, 0.1, 0.14, 0.2, 0.4, 0.8)


# --------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class RegimeMapResult(Result):
    """One row per cell (knob value x density) with the metrics, the regime and its confidence."""

    frame: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    thresholds: Dict[str, Any] = dataclasses.field(default_factory=dict)
    dense: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)

    kind = "regime-map"

    def to_frame(self) -> pd.DataFrame:
        return self.frame

    @property
    def knob(self) -> str:
        return self.settings.get("knob", "epochs")

    def pivot(self, metric: str) -> pd.DataFrame:
        """``metric`` as a table: rows = knob values (hot to cold), columns = densities."""
        if metric not in self.frame.columns:
            raise KeyError(f"metric {metric!r} is not a column; choose from {list(self.frame.columns)}")
        return self.frame.pivot(index="value", columns="density", values=metric).sort_index().sort_index(axis=1)


# --------------------------------------------------------------------------------------------
# classification
# --------------------------------------------------------------------------------------------
def _phi(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(np.asarray(z, dtype=float) / math.sqrt(2.0)))


def _otsu(values: np.ndarray) -> Optional[float]:
    """Split of 1-D values into two groups minimising within-group variance (midpoint of the gap)."""
    v = np.sort(np.asarray(values, dtype=float))
    if v.size < 2 or v[-1] - v[0] <= 0:
        return None
    best, best_cost = None, np.inf
    for i in range(1, v.size):
        lo, hi = v[:i], v[i:]
        cost = lo.var() * lo.size + hi.var() * hi.size
        if cost < best_cost - 1e-15:
            best_cost, best = cost, 0.5 * (v[i - 1] + v[i])
    return best


def classify_regimes(frame: pd.DataFrame, *, mc_sigmas: float = 2.0,
                     cka_threshold: Union[str, float] = "auto", cka_separation: float = 2.0,
                     cka_fallback: float = 0.95, min_noise: float = 1e-3, noise: str = "median") -> tuple:
    """Classify every cell as I / II-A / II-B; returns ``(frame with regime + confidence, thresholds)``.

    ``frame`` needs columns ``mc``, ``cka`` and the seed-to-seed spread ``train_error_std`` (standard
    deviation of the retrained copies' training error in that cell; optional ``cka_std``).

    * Noise of mc: ``sigma_mc`` = the seed-to-seed spread of the training error pooled over cells:
      ``median(train_error_std) / 0.6745`` (robust to a few cells where retraining failed; ``noise="rms"``
      gives ``sqrt(mean(train_error_std^2))``), at least ``min_noise`` (the regime map passes one
      training example, ``1 / n_train``).  A cell is poorly connected (I) when ``mc < -mc_sigmas * sigma_mc``.
    * CKA threshold: given, or ``"auto"``: the two-group (Otsu) split of the well-connected cells' CKA,
      used when the group means are more than ``cka_separation`` pooled within-group standard deviations
      apart (else ``cka_fallback``).  ``sigma_cka`` = that within-group spread, or the pooled ``cka_std``,
      whichever is larger (at least ``min_noise``).
    * Confidence: ``Phi(|mc - t_mc| / sigma_mc)`` for the connectivity call, times
      ``Phi(|cka - t_cka| / sigma_cka)`` for the CKA call of well-connected cells: 0.5 on a boundary,
      near 1 far from it.
    """
    for col in ("mc", "cka"):
        if col not in frame.columns:
            raise ValueError(f"frame lacks the column {col!r}; classify a regime-map frame")
    out = frame.copy()
    mc = out["mc"].to_numpy(float)
    cka = out["cka"].to_numpy(float)
    spread = out["train_error_std"].to_numpy(float) if "train_error_std" in out else np.zeros_like(mc)
    spread = spread[np.isfinite(spread)]
    if noise == "median":  # robust: for two seeds the std is sigma |Z|, whose median is 0.6745 sigma
        raw = float(np.median(spread)) / 0.6745 if spread.size else 0.0
    elif noise == "rms":
        raw = float(np.sqrt(np.mean(spread ** 2))) if spread.size else 0.0
    else:
        raise ValueError(f"noise={noise!r}; choose 'median' (robust) or 'rms'")
    sigma_mc = max(raw, float(min_noise))
    t_mc = -float(mc_sigmas) * sigma_mc
    poor = mc < t_mc
    conf_mc = _phi(np.abs(mc - t_mc) / sigma_mc)

    well = ~poor
    rule = "given"
    cka_noise = 0.0
    if "cka_std" in out:
        s = out["cka_std"].to_numpy(float)
        s = s[np.isfinite(s)]
        cka_noise = float(np.sqrt(np.mean(s ** 2))) if s.size else 0.0
    if isinstance(cka_threshold, str):
        if cka_threshold != "auto":
            raise ValueError(f"cka_threshold={cka_threshold!r}; pass 'auto' or a number in (0, 1)")
        t_cka, rule = cka_fallback, "fallback"
        vals = cka[well]
        split = _otsu(vals) if vals.size >= 2 else None
        within = 0.0
        if split is not None:
            lo, hi = vals[vals < split], vals[vals >= split]
            within = float(np.sqrt((lo.var() * lo.size + hi.var() * hi.size) / vals.size))
            if hi.mean() - lo.mean() > cka_separation * max(within, cka_noise, min_noise):
                t_cka, rule = float(split), "otsu"
        sigma_cka = max(within if rule == "otsu" else 0.0, cka_noise, float(min_noise))
    else:
        t_cka = float(cka_threshold)
        sigma_cka = max(cka_noise, float(min_noise))
    conf_cka = _phi(np.abs(cka - t_cka) / sigma_cka)
    regime = np.where(poor, "I", np.where(cka >= t_cka, "II-B", "II-A"))
    out["regime"] = regime
    out["confidence"] = np.where(poor, conf_mc, conf_mc * conf_cka)
    thresholds = dict(mc=t_mc, mc_noise=sigma_mc, noise_rule=noise, mc_sigmas=float(mc_sigmas), cka=t_cka, cka_noise=sigma_cka,
                      cka_rule=rule)
    return out, thresholds


# --------------------------------------------------------------------------------------------
# the map
# --------------------------------------------------------------------------------------------
def _fingerprint(*objs: Any) -> str:
    h = hashlib.sha1()
    for obj in objs:
        if isinstance(obj, dict):
            for k in sorted(obj):
                h.update(k.encode())
                h.update(np.ascontiguousarray(np.asarray(obj[k].detach().cpu() if isinstance(obj[k], torch.Tensor)
                                                         else obj[k])).tobytes())
        elif isinstance(obj, torch.Tensor):
            h.update(np.ascontiguousarray(obj.detach().cpu().numpy()).tobytes())
        else:
            h.update(repr(obj).encode())
    return h.hexdigest()[:16]


def _evaluate_cell(context: Dict[str, Any], *, value: Any, density: float, scope: str, seeds: List[int],
                   retrain_epochs: float, lr: float, batch_size: int, points: int, **_ignored: Any) -> Dict[str, Any]:
    """One cell: prune the dense model of ``value``, retrain per seed, measure; runs on any worker."""
    threads = context.get("threads")
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        return _cell_body(context, value=value, density=density, scope=scope, seeds=seeds,
                          retrain_epochs=retrain_epochs, lr=lr, batch_size=batch_size, points=points)
    finally:
        torch.set_num_threads(before)


def _cell_body(context, *, value, density, scope, seeds, retrain_epochs, lr, batch_size, points):
    device = context["device"]
    model = copy.deepcopy(context["template"])
    model.load_state_dict(context["dense"][str(value)])
    mask = magnitude_mask(model, density, scope=scope)
    apply_mask(model, mask)
    train_ds, test_ds = context["train"], context["test"]
    copies, test_err, train_err = [], [], []
    for s in seeds:
        m = finetune(model, mask, train_ds, epochs=retrain_epochs, lr=lr, batch_size=batch_size, seed=s,
                     device=device)
        copies.append(m)
        test_err.append(1.0 - evaluate(m, test_ds, device=device)["accuracy"])
        train_err.append(1.0 - evaluate(m, train_ds, device=device)["accuracy"])
    mcs, ckas, curve, engine = [], [], None, ""
    for a, b in itertools.combinations(range(len(copies)), 2):
        mc, frame, engine = mode_connectivity(copies[a], copies[b], train_ds, points=points, train_data=train_ds,
                                              device=device, engine=context.get("engine", "auto"))
        mcs.append(mc)
        if curve is None:
            curve = frame["error"].tolist()
        ckas.append(output_cka(copies[a], copies[b], test_ds, device=device))
    ddof = 1 if len(seeds) > 1 else 0
    return dict(test_error=float(np.mean(test_err)), test_error_std=float(np.std(test_err, ddof=ddof)),
                train_error=float(np.mean(train_err)), train_error_std=float(np.std(train_err, ddof=ddof)),
                mc=float(np.mean(mcs)), mc_std=float(np.std(mcs, ddof=1)) if len(mcs) > 1 else float("nan"),
                cka=float(np.mean(ckas)), cka_std=float(np.std(ckas, ddof=1)) if len(ckas) > 1 else float("nan"),
                density_actual=density_of(mask), mc_engine=engine, curve=curve)


def _resolve_data(model: Any, data: Any, test_data: Any, seed: int):
    if data is None and test_data is None:
        image = isinstance(model, str) and model.lower() in ("cnn", "resnet")
        return digits(seed=seed, image=image)
    if data is None or test_data is None:
        raise ValueError("pass both data= and test_data=, or neither (digits is used)")
    return as_dataset(data, "data"), as_dataset(test_data, "test_data")


def _dense_runs(template: nn.Module, train_ds, knob: str, values: Sequence[Any], *, dense_epochs: float,
                lr: float, batch_size: int, seed: int, device, progress: ProgressLike):
    """The dense models of every knob value: {str(value): state dict}, and a frame of their settings."""
    states: Dict[str, Dict[str, torch.Tensor]] = {}
    rows = []
    if knob == "epochs":
        steps_per_epoch = max(1, -(-len(train_ds) // batch_size))
        steps = [int(round(float(v) * steps_per_epoch)) for v in values]
        if min(steps) < 0:
            raise ValueError("values: epochs must be non-negative")
        every = functools.reduce(math.gcd, [s for s in steps if s > 0] or [1])
        model = copy.deepcopy(template)
        res = train(model, train_ds, epochs=max(steps) / steps_per_epoch, lr=lr, batch_size=batch_size,
                    seed=seed, device=device, checkpoint_every=every / steps_per_epoch, progress=progress)
        by_step = {c["step"]: c["state"] for c in res.checkpoints}
        for v, s in zip(values, steps):
            states[str(v)] = {k: torch.as_tensor(np.asarray(a)) for k, a in by_step[s].items()}
            rows.append(dict(value=v, epochs=s / steps_per_epoch, lr=lr, batch_size=batch_size))
    else:
        for v in values:
            model = copy.deepcopy(template)
            kw = dict(lr=lr, batch_size=batch_size)
            kw[knob] = int(v) if knob == "batch_size" else float(v)
            train(model, train_ds, epochs=dense_epochs, seed=seed, device=device, progress=progress, **kw)
            states[str(v)] = {k: t.detach().cpu().clone() for k, t in model.state_dict().items()}
            rows.append(dict(value=v, epochs=dense_epochs, **kw))
    return states, pd.DataFrame(rows)


def regime_map(model: Union[str, nn.Module] = "mlp", data: Any = None, test_data: Any = None, *,
               knob: str = "epochs", values: Sequence[Any] = (1, 3, 10, 30),
               densities: Sequence[float] = DEFAULT_DENSITIES, scope: str = "layer",
               seeds: Sequence[int] = (0, 1), dense_epochs: float = 20, dense_lr: float = 0.05,
               dense_batch_size: int = 64, retrain_epochs: float = 10, lr: float = 0.05,
               batch_size: int = 64, points: int = 25, mc_sigmas: float = 2.0,
               cka_threshold: Union[str, float] = "auto", store: Any = None, executor: Any = None,
               engine: str = "auto", threads: Optional[int] = None, device: DeviceLike = "auto",
               seed: int = 0, progress: ProgressLike = True) -> RegimeMapResult:
    """Map the three pruning regimes over a temperature knob x density grid.

    Parameters
    ----------
    model : a reference architecture name (``"mlp"``, ``"cnn"``, ``"resnet"``; built with ``seed``) or
        your untrained ``nn.Module`` (the dense runs start from a copy of its weights).
    data, test_data : training and test sets (default: :func:`workbench.data.digits` with ``seed``).
    knob : ``"epochs"`` (``values`` are epochs of one dense run, read from its checkpoints),
        ``"batch_size"`` or ``"lr"`` (one dense run of ``dense_epochs`` per value).
    densities : fractions of weights kept after one-shot magnitude pruning (``scope`` layer or global).
    seeds : retraining seeds (two or more); mc and CKA are averaged over every pair.
    retrain_epochs, lr, batch_size : retraining with the mask fixed (the same for every cell).
    points : points on the interpolation path (at least 25 to find off-centre peaks).
    mc_sigmas, cka_threshold : classification, see :func:`classify_regimes`.
    store, executor : passed to :func:`workbench.sweep.run` (resumable cells; Dask for several machines).
    engine : mc computation, ``"auto"`` (``workbench.connectivity`` when installed), ``"builtin"`` or
        ``"connectivity"``.
    threads : torch CPU threads for the run and inside each cell (1 is fastest for small models on a busy
        machine); restored afterwards.
    """
    if knob not in KNOBS:
        raise ValueError(f"knob={knob!r}; choose one of {KNOBS}")
    seeds = [int(s) for s in seeds]
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds={seeds}: pass two or more distinct retraining seeds (mc and CKA compare copies)")
    values = list(values)
    densities = [float(d) for d in densities]
    if not values or not densities:
        raise ValueError("values and densities must each hold at least one entry")
    for d in densities:
        if not 0 < d <= 1:
            raise ValueError(f"densities: {d} is not in (0, 1]; densities are fractions of weights kept")
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        return _regime_map(model, data, test_data, knob=knob, values=values, densities=densities, scope=scope,
                           seeds=seeds, dense_epochs=dense_epochs, dense_lr=dense_lr,
                           dense_batch_size=dense_batch_size, retrain_epochs=retrain_epochs, lr=lr,
                           batch_size=batch_size, points=points, mc_sigmas=mc_sigmas,
                           cka_threshold=cka_threshold, store=store, executor=executor, engine=engine,
                           threads=threads, device=device, seed=seed, progress=progress)
    finally:
        torch.set_num_threads(before)


def _regime_map(model, data, test_data, *, knob, values, densities, scope, seeds, dense_epochs, dense_lr,
                dense_batch_size, retrain_epochs, lr, batch_size, points, mc_sigmas, cka_threshold, store,
                executor, engine, threads, device, seed, progress) -> RegimeMapResult:
    dev = resolve_device(device)
    train_ds, test_ds = _resolve_data(model, data, test_data, seed)
    if isinstance(model, str):
        template = build(model, seed=seed)
    elif isinstance(model, nn.Module):
        template = copy.deepcopy(model).cpu()
    else:
        raise TypeError(f"model must be a reference name or an nn.Module, not {type(model).__name__}")
    states, dense_frame = _dense_runs(template, train_ds, knob, values, dense_epochs=dense_epochs, lr=dense_lr,
                                      batch_size=dense_batch_size, seed=seed, device=dev, progress=progress)
    dense_rows = []
    for v in values:
        m = copy.deepcopy(template)
        m.load_state_dict(states[str(v)])
        dense_rows.append(1.0 - evaluate(m, test_ds, device=dev)["accuracy"])
    dense_frame["test_error"] = dense_rows

    data_fp = _fingerprint(train_ds.X, train_ds.y, test_ds.X, test_ds.y)
    context = dict(template=template, dense=states, train=train_ds, test=test_ds,
                   device=str(dev) if executor is None else "auto", engine=engine, threads=threads)
    cells = [dict(knob=knob, value=v, density=d, scope=scope, seeds=seeds, retrain_epochs=retrain_epochs,
                  lr=lr, batch_size=batch_size, points=points, dense=_fingerprint(states[str(v)]), data=data_fp)
             for v in values for d in densities]
    res = sweep_engine.run(functools.partial(_evaluate_cell, context), cells, store=store, executor=executor,
                           progress=progress)
    rows = []
    for cell, out in res.items_by_cell():
        rows.append(dict(value=cell["value"], density=cell["density"],
                         **{k: v for k, v in out.items() if k != "curve"}))
    frame = pd.DataFrame(rows)
    dense_err = dict(zip([str(v) for v in values], dense_rows))
    frame["dense_test_error"] = [dense_err[str(v)] for v in frame["value"]]
    frame, thresholds = classify_regimes(frame, mc_sigmas=mc_sigmas, cka_threshold=cka_threshold,
                                         min_noise=1.0 / len(train_ds))
    curves = {f"{cell['value']}|{cell['density']}": out["curve"] for cell, out in res.items_by_cell()}
    thresholds["curves"] = curves
    settings = dict(model=model if isinstance(model, str) else type(model).__name__, knob=knob, values=values,
                    densities=densities, scope=scope, seeds=seeds, dense_epochs=dense_epochs, dense_lr=dense_lr,
                    dense_batch_size=dense_batch_size, retrain_epochs=retrain_epochs, lr=lr,
                    batch_size=batch_size, points=points, bn="reset", mc_metric="train error",
                    cka_on="test outputs", mc_sigmas=mc_sigmas, cka_threshold=cka_threshold, seed=seed,
                    device=str(dev), data=train_ds.name, test_data=test_ds.name,
                    executor=res.settings["executor"], store=res.settings["store"])
    return RegimeMapResult(settings=settings, frame=frame, thresholds=thresholds, dense=dense_frame)
