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
import time
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from .. import sweep as sweep_engine
from ..backend import DeviceLike, resolve_device
from ..data import as_dataset, digits
from ..models import build, evaluate, steps_per_epoch, train
from ..progress import ProgressLike
from ..results import Result
from .cka import output_cka
from .connect import mode_connectivity
from .masks import density_of, magnitude_mask, apply_mask
from .retrain import finetune

KNOBS = ("epochs", "batch_size", "lr")
REGIMES = ("I", "II-A", "II-B")
UNDETERMINED = "n/a"  # label of a cell whose metrics are undefined (NaN mc, or NaN CKA where connected)
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
    counts: Dict[str, int] = dataclasses.field(default_factory=dict)

    kind = "regime-map"

    def to_frame(self) -> pd.DataFrame:
        return self.frame

    @property
    def knob(self) -> str:
        return self.settings.get("knob", "epochs")

    def pivot(self, metric: str) -> pd.DataFrame:
        """``metric`` as a table: rows = knob values in ascending order, columns = densities ascending.

        Ascending knob values run hot to cold for ``epochs`` and ``batch_size`` and cold to hot for ``lr``
        (fewer epochs, smaller batches and larger learning rates are hotter); figures draw the first row
        at the bottom.
        """
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
    * Confidence, in [0.5, 1]: ``Phi(|mc - t_mc| / sigma_mc)`` for the connectivity call; for a
      well-connected cell the smaller of that and ``Phi(|cka - t_cka| / sigma_cka)`` (the CKA call), i.e.
      how sure the less sure of the two calls the label rests on is: 0.5 on a boundary, near 1 far from
      every boundary.
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
        vals = cka[well & np.isfinite(cka)]
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
    # a cell whose mc, or (when well connected) whose CKA, is undefined (e.g. a diverged copy) gets no label
    unknown = ~np.isfinite(mc) | (~poor & ~np.isfinite(cka))
    out["regime"] = np.where(unknown, UNDETERMINED, regime)
    out["confidence"] = np.where(unknown, np.nan, np.where(poor, conf_mc, np.minimum(conf_mc, conf_cka)))
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
                   retrain_epochs: float, lr: float, batch_size: int, points: int, rounds: int = 1,
                   **_ignored: Any) -> Dict[str, Any]:
    """One cell: prune the dense model of ``value``, retrain per seed, measure; runs on any worker."""
    threads = context.get("threads")
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        return _cell_body(context, value=value, density=density, scope=scope, seeds=seeds,
                          retrain_epochs=retrain_epochs, lr=lr, batch_size=batch_size, points=points,
                          rounds=rounds)
    finally:
        torch.set_num_threads(before)


def _load_state(template: nn.Module, state: Dict[str, Any]) -> nn.Module:
    model = copy.deepcopy(template)
    model.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in state.items()})
    return model


def _cell_body(context, *, value, density, scope, seeds, retrain_epochs, lr, batch_size, points, rounds=1):
    device = context["device"]
    train_ds, test_ds = context["train"], context["test"]
    dense = context["dense"][str(value)]
    model = _load_state(context["template"], dense["state"])
    # iterative magnitude pruning: ``rounds`` steps down to ``density``; between rounds the survivors
    # are rewound to the dense weights and retrained (seed of the first copy); one round = one-shot
    mask, current = None, model
    for r in range(1, int(rounds) + 1):
        mask = magnitude_mask(current, float(density) ** (r / rounds), scope=scope, current=mask)
        if r < rounds:
            current = finetune(model, mask, train_ds, epochs=retrain_epochs, lr=lr, batch_size=batch_size,
                               seed=seeds[0], device=device)
    apply_mask(model, mask)
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
        try:
            ckas.append(output_cka(copies[a], copies[b], test_ds, device=device))
        except ValueError:  # a copy collapsed to a constant output (diverged retraining): CKA undefined
            ckas.append(float("nan"))
    ddof = 1 if len(seeds) > 1 else 0
    return dict(test_error=float(np.mean(test_err)), test_error_std=float(np.std(test_err, ddof=ddof)),
                train_error=float(np.mean(train_err)), train_error_std=float(np.std(train_err, ddof=ddof)),
                mc=float(np.mean(mcs)), mc_std=float(np.std(mcs, ddof=1)) if len(mcs) > 1 else float("nan"),
                cka=float(np.mean(ckas)), cka_std=float(np.std(ckas, ddof=1)) if len(ckas) > 1 else float("nan"),
                density_actual=density_of(mask), mc_engine=engine, curve=curve,
                dense_test_error=float(dense["test_error"]))


def _resolve_data(model: Any, data: Any, test_data: Any, seed: int):
    if data is None and test_data is None:
        image = isinstance(model, str) and model.lower() in ("cnn", "resnet")
        return digits(seed=seed, image=image)
    if data is None or test_data is None:
        raise ValueError("pass both data= and test_data=, or neither (digits is used)")
    return as_dataset(data, "data"), as_dataset(test_data, "test_data")


def _dense_train(template: nn.Module, train_ds, test_ds, *, epochs: float, lr: float, batch_size: int,
                 seed: int, device, progress: ProgressLike = False,
                 at_steps: Optional[Sequence[int]] = None) -> Dict[int, Dict[str, Any]]:
    """Train a copy of ``template``; {step: {"state": numpy state dict, "test_error": float}} at ``at_steps``
    (default: the last step).  Weights at a step do not depend on how long the run goes on afterwards."""
    per_epoch = steps_per_epoch(len(train_ds), batch_size)
    total = int(round(float(epochs) * per_epoch))
    wanted = sorted(set(int(s) for s in (at_steps if at_steps is not None else [total])))
    out: Dict[int, Dict[str, Any]] = {}

    def record(step: int, state: Dict[str, Any]) -> None:
        m = _load_state(template, state)
        out[step] = dict(state={k: np.asarray(v) for k, v in state.items()},
                         test_error=1.0 - evaluate(m, test_ds, device=device)["accuracy"])

    if max(wanted) == 0:  # nothing to train: the initial weights
        record(0, {k: t.detach().cpu().numpy() for k, t in template.state_dict().items()})
        return out
    every = functools.reduce(math.gcd, [s for s in wanted if s > 0])
    model = copy.deepcopy(template)
    res = train(model, train_ds, epochs=max(wanted) / per_epoch, lr=lr, batch_size=batch_size, seed=seed,
                device=device, checkpoint_every=every / per_epoch, progress=progress)
    by_step = {c["step"]: c["state"] for c in res.checkpoints}
    for s in wanted:
        record(s, by_step[s])
    return out


def _dense_cell(context: Dict[str, Any], *, knob: str, value: Any, epochs: float, lr: float, batch_size: int,
                seed: int, **_ignored: Any) -> Dict[str, Any]:
    """One dense run of the batch-size or learning-rate knob (a sweep cell of its own)."""
    threads = context.get("threads")
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        out = _dense_train(context["template"], context["train"], context["test"], epochs=epochs, lr=lr,
                           batch_size=batch_size, seed=seed, device=context["device"])
    finally:
        torch.set_num_threads(before)
    return next(iter(out.values()))


def _stored(st: Optional[sweep_engine.Store], key: str) -> bool:
    """Whether ``key`` is a readable finished cell of ``st`` (a damaged file counts as missing)."""
    if st is None or key not in st:
        return False
    try:
        st.read(key)
        return True
    except Exception:
        return False


def _model_spec(model: Union[str, nn.Module], template: nn.Module, seed: int) -> Dict[str, Any]:
    """What identifies the untrained dense model: a reference name and seed, or the architecture and
    the initial weights of a model passed in (inputs, so the same on every device)."""
    if isinstance(model, str):
        return dict(name=model.lower(), seed=int(seed))
    return dict(name=type(model).__name__, arch=_fingerprint(repr(template)), init=_fingerprint(template.state_dict()))


class _Plan:
    """Everything a regime map needs before it runs: data, template, the dense and the pruned cells."""

    def __init__(self, model, data, test_data, *, knob, values, densities, scope, seeds, dense_epochs, dense_lr,
                 dense_batch_size, retrain_epochs, lr, batch_size, points, rounds, store, executor, engine,
                 threads, device, seed):
        self.dev = resolve_device(device)
        self.train_ds, self.test_ds = _resolve_data(model, data, test_data, seed)
        if isinstance(model, str):
            self.template = build(model, seed=seed)
        elif isinstance(model, nn.Module):
            self.template = copy.deepcopy(model).cpu()
        else:
            raise TypeError(f"model must be a reference name or an nn.Module, not {type(model).__name__}")
        self.knob, self.values, self.densities = knob, list(values), list(densities)
        self.store = sweep_engine._as_store(store)
        self.executor = executor
        # on a worker the caller's device choice is resolved there (a worker may have no GPU for "auto")
        self.cell_device = str(self.dev) if executor is None else str(device)
        self.data_fp = _fingerprint(self.train_ds.X, self.train_ds.y, self.test_ds.X, self.test_ds.y)
        spec = _model_spec(model, self.template, seed)
        self.steps_per_epoch = steps_per_epoch(len(self.train_ds), dense_batch_size)
        self.dense_cells: Dict[str, Dict[str, Any]] = {}
        for v in self.values:
            kw = dict(epochs=float(dense_epochs), lr=float(dense_lr), batch_size=int(dense_batch_size))
            if knob == "epochs":
                kw["epochs"] = float(v)
            else:
                kw[knob] = int(v) if knob == "batch_size" else float(v)
            self.dense_cells[str(v)] = dict(stage="dense", knob=knob, value=v, model=spec, data=self.data_fp,
                                            seed=int(seed), **kw)
        # a pruned cell is keyed by the settings of its dense run, never by the trained weights, so a
        # store resumes on another device or thread count without recomputing anything
        self.cells = [dict(knob=knob, value=v, density=d, scope=scope, seeds=seeds, retrain_epochs=retrain_epochs,
                           lr=lr, batch_size=batch_size, points=points, rounds=int(rounds),
                           dense={k: c for k, c in self.dense_cells[str(v)].items() if k not in ("stage",)})
                      for v in self.values for d in self.densities]
        self.keys = [sweep_engine.cell_key(c) for c in self.cells]
        self.missing = [c for c, k in zip(self.cells, self.keys) if not _stored(self.store, k)]
        need = {str(c["value"]) for c in self.missing}
        self.needed_values = [v for v in self.values if str(v) in need]
        self.context = dict(template=self.template, dense={}, train=self.train_ds, test=self.test_ds,
                            device=self.cell_device, engine=engine, threads=threads)

    def dense_missing(self) -> List[Any]:
        return [v for v in self.needed_values
                if not _stored(self.store, sweep_engine.cell_key(self.dense_cells[str(v)]))]

    def run_dense(self, progress: ProgressLike) -> Dict[str, int]:
        """Dense states of the values that still have cells to run: loaded from the store or trained
        (and stored); returns how many dense runs were computed and loaded."""
        dense: Dict[str, Dict[str, Any]] = {}
        todo = self.dense_missing()
        loaded = 0
        for v in self.needed_values:
            if v in todo:
                continue
            dense[str(v)] = self.store.read(sweep_engine.cell_key(self.dense_cells[str(v)]))["value"]
            loaded += 1
        if todo and self.knob == "epochs":  # one run, read at the checkpoints of every value
            steps = {str(v): int(round(float(v) * self.steps_per_epoch)) for v in todo}
            c0 = self.dense_cells[str(todo[0])]
            start = time.perf_counter()
            out = _dense_train(self.template, self.train_ds, self.test_ds, epochs=max(steps.values()) /
                               self.steps_per_epoch, lr=c0["lr"], batch_size=c0["batch_size"], seed=c0["seed"],
                               device=self.dev, progress=progress, at_steps=list(steps.values()))
            secs = (time.perf_counter() - start) / len(todo)
            for v in todo:
                dense[str(v)] = out[steps[str(v)]]
                if self.store is not None:
                    cell = self.dense_cells[str(v)]
                    self.store.write(sweep_engine.cell_key(cell), cell, dense[str(v)], secs)
        elif todo:
            ctx = dict(self.context, dense=None)
            res = sweep_engine.run(functools.partial(_dense_cell, ctx), [self.dense_cells[str(v)] for v in todo],
                                   store=self.store, executor=self.executor, progress=progress)
            for v in todo:
                dense[str(v)] = res[self.dense_cells[str(v)]]
        self.context["dense"] = dense
        return dict(dense_computed=len(todo), dense_loaded=loaded)


def regime_map(model: Union[str, nn.Module] = "mlp", data: Any = None, test_data: Any = None, *,
               knob: str = "epochs", values: Sequence[Any] = (1, 3, 10, 30),
               densities: Sequence[float] = DEFAULT_DENSITIES, scope: str = "layer",
               seeds: Sequence[int] = (0, 1), dense_epochs: float = 20, dense_lr: float = 0.05,
               dense_batch_size: int = 64, retrain_epochs: float = 10, lr: float = 0.05,
               batch_size: int = 64, points: int = 25, rounds: int = 1, mc_sigmas: float = 2.0,
               cka_threshold: Union[str, float] = "auto", store: Any = None, executor: Any = None,
               engine: str = "auto", threads: Optional[int] = None, device: DeviceLike = "auto",
               seed: int = 0, progress: ProgressLike = True, estimate: bool = False,
               workers: int = 1) -> Union[RegimeMapResult, sweep_engine.CostEstimate]:
    """Map the three pruning regimes over a temperature knob x density grid.

    Parameters
    ----------
    model : a reference architecture name (``"mlp"``, ``"cnn"``, ``"resnet"``; built with ``seed``) or
        your untrained ``nn.Module`` (the dense runs start from a copy of its weights).
    data, test_data : training and test sets (default: :func:`workbench.data.digits` with ``seed``).
    knob : ``"epochs"`` (``values`` are epochs of one dense run, read from its checkpoints),
        ``"batch_size"`` or ``"lr"`` (one dense run of ``dense_epochs`` per value).
    densities : fractions of weights kept after magnitude pruning (``scope`` layer or global).
    seeds : retraining seeds (two or more); mc and CKA are averaged over every pair.
    retrain_epochs, lr, batch_size : retraining with the mask fixed (the same for every cell).
    rounds : 1 = one-shot pruning; more = iterative magnitude pruning in ``rounds`` steps of density
        ``density ** (r / rounds)``, the survivors rewound to the dense weights and retrained (first seed)
        between rounds; the final mask is then retrained from every seed as in one-shot.
    points : points on the interpolation path (at least 25 to find off-centre peaks).
    mc_sigmas, cka_threshold : classification, see :func:`classify_regimes`.
    store, executor : passed to :func:`workbench.sweep.run` (resumable cells; Dask for several machines).
        The dense runs are stored as cells too, and every cell is keyed by the settings of its dense run
        (knob, value, seed, data fingerprint, model), so a map resumed on another device or thread count
        loads what is stored; ``result.counts`` says how many cells and dense runs were computed / loaded.
    engine : mc computation, ``"auto"`` (``workbench.connectivity`` when installed), ``"builtin"`` or
        ``"connectivity"``.
    threads : torch CPU threads for the run and inside each cell (1 is fastest for small models on a busy
        machine); restored afterwards.
    device : where cells run; with an executor it is passed to the workers as given.
    estimate : return a :class:`workbench.sweep.CostEstimate` instead of running: one real cell is timed
        (on a dense model trained one epoch, or the stored dense model) and multiplied by the cells not in
        the store (stored cells cost nothing); one timed dense epoch gives the dense runs still to train.
    workers : for ``estimate``, how many cells run at once.
    """
    if knob not in KNOBS:
        raise ValueError(f"knob={knob!r}; choose one of {KNOBS}")
    seeds = [int(s) for s in seeds]
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds={seeds}: pass two or more distinct retraining seeds (mc and CKA compare copies)")
    if int(rounds) < 1:
        raise ValueError(f"rounds={rounds}: pass 1 (one-shot pruning) or more (iterative pruning)")
    values = list(values)
    densities = [float(d) for d in densities]
    if not values or not densities:
        raise ValueError("values and densities must each hold at least one entry")
    for d in densities:
        if not 0 < d <= 1:
            raise ValueError(f"densities: {d} is not in (0, 1]; densities are fractions of weights kept")
    if knob == "epochs" and any(float(v) < 0 for v in values):
        raise ValueError(f"values={values}: epochs must be non-negative")
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        plan = _Plan(model, data, test_data, knob=knob, values=values, densities=densities, scope=scope,
                     seeds=seeds, dense_epochs=dense_epochs, dense_lr=dense_lr, dense_batch_size=dense_batch_size,
                     retrain_epochs=retrain_epochs, lr=lr, batch_size=batch_size, points=points, rounds=rounds,
                     store=store, executor=executor, engine=engine, threads=threads, device=device, seed=seed)
        if estimate:
            return _estimate(plan, workers=workers)
        return _regime_map(plan, model=model, mc_sigmas=mc_sigmas, cka_threshold=cka_threshold, progress=progress,
                           settings=dict(knob=knob, values=values, densities=densities, scope=scope, seeds=seeds,
                                         dense_epochs=dense_epochs, dense_lr=dense_lr,
                                         dense_batch_size=dense_batch_size, retrain_epochs=retrain_epochs, lr=lr,
                                         batch_size=batch_size, points=points, rounds=int(rounds),
                                         mc_sigmas=mc_sigmas, cka_threshold=cka_threshold, seed=seed))
    finally:
        torch.set_num_threads(before)


def _estimate(plan: _Plan, *, workers: int) -> sweep_engine.CostEstimate:
    fn = functools.partial(_evaluate_cell, plan.context)
    if not plan.missing:
        return sweep_engine.estimate_cost(fn, plan.cells, store=plan.store, seconds_per_cell=0.0, workers=workers)
    first = plan.missing[0]
    dense_todo = plan.dense_missing()
    setup = 0.0
    if dense_todo:
        # time one dense epoch; its model stands in for the dense one while one cell is timed
        c0 = plan.dense_cells[str(first["value"])]
        probe_epochs = 1.0
        for _ in range(2):  # the first run pays one-off start-up costs (threads, allocator): time the second
            start = time.perf_counter()
            probe = _dense_train(plan.template, plan.train_ds, plan.test_ds, epochs=probe_epochs, lr=c0["lr"],
                                 batch_size=c0["batch_size"], seed=c0["seed"], device=plan.dev)
            per_epoch = (time.perf_counter() - start) / probe_epochs
        if plan.knob == "epochs":  # one run up to the longest missing value
            setup = per_epoch * max(float(v) for v in dense_todo)
        else:  # one run per value, spread over the workers; cost per epoch scales with the steps
            probe_steps = steps_per_epoch(len(plan.train_ds), c0["batch_size"])
            for v in dense_todo:
                c = plan.dense_cells[str(v)]
                steps = steps_per_epoch(len(plan.train_ds), c["batch_size"])
                setup += per_epoch * c["epochs"] * steps / probe_steps
            setup /= max(1, int(workers))
        stand_in = next(iter(probe.values()))
    else:
        stand_in = plan.store.read(sweep_engine.cell_key(plan.dense_cells[str(first["value"])]))["value"]
    plan.context["dense"] = {str(first["value"]): stand_in}
    timed = sweep_engine.estimate_cost(fn, [first], sample=1)
    est = sweep_engine.estimate_cost(fn, plan.cells, store=plan.store, seconds_per_cell=timed.seconds_per_cell,
                                     workers=workers)
    return dataclasses.replace(est, setup_seconds=setup, estimated_seconds=est.estimated_seconds + setup,
                               measured_on=[first])


def _regime_map(plan: _Plan, *, model, mc_sigmas, cka_threshold, progress, settings) -> RegimeMapResult:
    counts = plan.run_dense(progress)
    fn = functools.partial(_evaluate_cell, plan.context)
    res = sweep_engine.run(fn, plan.cells, store=plan.store, executor=plan.executor, progress=progress)
    counts.update(cells_computed=len(res.computed), cells_loaded=len(res.loaded))
    rows = []
    for cell, out in res.items_by_cell():
        rows.append(dict(value=cell["value"], density=cell["density"],
                         **{k: v for k, v in out.items() if k != "curve"}))
    frame = pd.DataFrame(rows)
    dense_err = dict(zip(frame["value"].map(str), frame["dense_test_error"]))
    dense_frame = pd.DataFrame([dict(value=v, epochs=plan.dense_cells[str(v)]["epochs"],
                                     lr=plan.dense_cells[str(v)]["lr"],
                                     batch_size=plan.dense_cells[str(v)]["batch_size"],
                                     test_error=dense_err[str(v)]) for v in plan.values])
    frame, thresholds = classify_regimes(frame, mc_sigmas=mc_sigmas, cka_threshold=cka_threshold,
                                         min_noise=1.0 / len(plan.train_ds))
    thresholds["curves"] = {f"{cell['value']}|{cell['density']}": out["curve"] for cell, out in res.items_by_cell()}
    settings = dict(model=model if isinstance(model, str) else type(model).__name__, **settings, bn="reset",
                    mc_metric="train error", cka_on="test outputs", device=str(plan.dev),
                    data=plan.train_ds.name, test_data=plan.test_ds.name, executor=res.settings["executor"],
                    store=res.settings["store"])
    return RegimeMapResult(settings=settings, frame=frame, thresholds=thresholds, dense=dense_frame,
                           counts=counts)
