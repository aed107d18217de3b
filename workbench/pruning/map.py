"""The regime map: the cells of a temperature knob x density grid, run through the sweep engine.

Per cell the dense model is pruned (one-shot magnitude, or iterative), retrained with the mask fixed from
two or more seeds, and measured: test error, signed mc on the training error between the retrained copies
(BatchNorm reset along the path, :func:`workbench.connectivity.barrier`) and linear CKA between their
outputs; :func:`~.regime.classify_regimes` then labels the cells.  Definitions: ``docs/pruning.md``.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
import math
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from .. import sweep
from ..backend import DeviceLike, resolve_device
from ..data import as_dataset, digits
from ..models import ARCHITECTURES, build, evaluate, train
from ..progress import Progress, ProgressLike
from ..sweep import fingerprint
from ..training import steps_per_epoch
from ..validation import as_model, probe
from .cka import output_cka
from .masks import apply_mask, density_of, magnitude_mask
from .regime import KNOBS, RegimeMapResult, classify_regimes
from .retrain import finetune

__all__ = ["analyze", "estimate_cost", "mode_connectivity", "DEFAULT_DENSITIES"]

DEFAULT_DENSITIES = (0.05, 0.06, 0.07, 0.08, 0.1, 0.14, 0.2, 0.4, 0.8)


def mode_connectivity(model_a: nn.Module, model_b: nn.Module, data: Any, *, points: int = 25, refine: int = 6,
                      device: DeviceLike = "auto") -> tuple:
    """``(signed mc of the error, curve frame)`` along the path between two models on ``data`` (the training
    split), BatchNorm statistics recomputed on ``data`` at every point."""
    from ..connectivity import barrier

    res = barrier(model_a, model_b, data, train_data=data, points=points, refine=refine, bn="reset", split="train",
                  evaluate_train=False, device=device, progress=False)
    frame = res.split_curve("train")
    return float(res.error_barriers_["signed_mc"]), frame


# --------------------------------------------------------------------------------------------
# cells
# --------------------------------------------------------------------------------------------
def _evaluate_cell(context: Dict[str, Any], *, value: Any, density: float, scope: str, seeds: List[int],
                   retrain_epochs: float, lr: float, batch_size: int, points: int, rounds: int = 1, refine: int = 6,
                   **_ignored: Any) -> Dict[str, Any]:
    """One cell: prune the dense model of ``value``, retrain per seed, measure; runs on any worker."""
    threads = context.get("threads")
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        return _cell_body(context, value=value, density=density, scope=scope, seeds=seeds,
                          retrain_epochs=retrain_epochs, lr=lr, batch_size=batch_size, points=points,
                          rounds=rounds, refine=refine)
    finally:
        torch.set_num_threads(before)


def _load_state(template: nn.Module, state: Dict[str, Any]) -> nn.Module:
    model = copy.deepcopy(template)
    model.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in state.items()})
    return model


def _cell_body(context, *, value, density, scope, seeds, retrain_epochs, lr, batch_size, points, rounds=1,
               refine=6):
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
            current = finetune(model, train_ds, mask=mask, epochs=retrain_epochs, lr=lr, batch_size=batch_size,
                               seed=seeds[0], device=device, progress=False)
    apply_mask(model, mask)
    copies, test_err, train_err = [], [], []
    for s in seeds:
        m = finetune(model, train_ds, mask=mask, epochs=retrain_epochs, lr=lr, batch_size=batch_size, seed=s,
                     device=device, progress=False)
        copies.append(m)
        test_err.append(1.0 - evaluate(m, test_ds, device=device)["accuracy"])
        train_err.append(1.0 - evaluate(m, train_ds, device=device)["accuracy"])
    mcs, ends, ckas, curve = [], [], [], None
    for a, b in itertools.combinations(range(len(copies)), 2):
        mc, frame = mode_connectivity(copies[a], copies[b], train_ds, points=points, refine=refine, device=device)
        mcs.append(mc)
        ends.append(abs(float(frame["error"].iloc[-1] - frame["error"].iloc[0])))
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
                mc_ends=float(np.mean(ends)), density_actual=density_of(mask), curve=curve,
                dense_test_error=float(dense["test_error"]))


def _resolve_data(model: Any, data: Any, train_data: Any, seed: int):
    """``(training set, test set)``: the built-in digits split when neither is given."""
    if data is None and train_data is None:
        image = isinstance(model, str) and model.lower() in ("cnn", "resnet")
        return digits(seed=seed, image=image)
    if data is None or train_data is None:
        raise ValueError("pass both data= (the test split) and train_data= (the training split), or neither "
                         "(the built-in digits split is used)")
    return as_dataset(train_data, "train_data"), as_dataset(data, "data")


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


def _stored(st: Optional[sweep.Store], key: str) -> bool:
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
    return dict(name=type(model).__name__, arch=fingerprint(repr(template)), init=fingerprint(template.state_dict()))


class _Plan:
    """Everything a regime map needs before it runs: data, template, the dense and the pruned cells."""

    def __init__(self, model, data, train_data, *, knob, values, densities, scope, seeds, dense_epochs, dense_lr,
                 dense_batch_size, retrain_epochs, lr, batch_size, points, refine, rounds, store, executor,
                 threads, device, seed, **_classification):
        self.dev = resolve_device(device)
        self.train_ds, self.test_ds = _resolve_data(model, data, train_data, seed)
        if isinstance(model, str) and model.strip().lower() in ARCHITECTURES:  # untrained, seeded
            self.template = build(model.strip().lower(), seed=seed)
        elif isinstance(model, (str, os.PathLike, nn.Module)):
            self.template = copy.deepcopy(as_model(model)).cpu()
        else:
            raise TypeError(f"model must be a built-in architecture's name, a model spec or an nn.Module, not "
                            f"{type(model).__name__}")
        probe(self.template, self.train_ds, name="train_data")
        probe(self.template, self.test_ds, name="data")
        self.knob, self.values, self.densities = knob, list(values), list(densities)
        self.store = sweep._as_store(store)
        self.executor = executor
        # on a worker the caller's device choice is resolved there (a worker may have no GPU for "auto")
        self.cell_device = str(self.dev) if executor is None else str(device)
        self.data_fp = fingerprint(self.train_ds.X, self.train_ds.y, self.test_ds.X, self.test_ds.y)
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
                           lr=lr, batch_size=batch_size, points=points, refine=int(refine), rounds=int(rounds),
                           dense={k: c for k, c in self.dense_cells[str(v)].items() if k not in ("stage",)})
                      for v in self.values for d in self.densities]
        self.keys = [sweep.cell_key(c) for c in self.cells]
        self.missing = [c for c, k in zip(self.cells, self.keys) if not _stored(self.store, k)]
        need = {str(c["value"]) for c in self.missing}
        self.needed_values = [v for v in self.values if str(v) in need]
        self.context = dict(template=self.template, dense={}, train=self.train_ds, test=self.test_ds,
                            device=self.cell_device, threads=threads)

    def dense_missing(self) -> List[Any]:
        return [v for v in self.needed_values
                if not _stored(self.store, sweep.cell_key(self.dense_cells[str(v)]))]

    def run_dense(self, progress: ProgressLike) -> Dict[str, int]:
        """Dense states of the values that still have cells to run: loaded from the store or trained
        (and stored); returns how many dense runs were computed and loaded."""
        dense: Dict[str, Dict[str, Any]] = {}
        todo = self.dense_missing()
        loaded = 0
        for v in self.needed_values:
            if v in todo:
                continue
            dense[str(v)] = self.store.read(sweep.cell_key(self.dense_cells[str(v)]))["value"]
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
                    self.store.write(sweep.cell_key(cell), cell, dense[str(v)], secs)
        elif todo:
            ctx = dict(self.context, dense=None)
            res = sweep.run(functools.partial(_dense_cell, ctx), [self.dense_cells[str(v)] for v in todo],
                                   store=self.store, executor=self.executor, progress=progress)
            for v in todo:
                dense[str(v)] = res[self.dense_cells[str(v)]]
        self.context["dense"] = dense
        return dict(dense_computed=len(todo), dense_loaded=loaded)


def _check(knob: str, values: Sequence[Any], densities: Sequence[float], seeds: Sequence[int], rounds: int) -> None:
    if knob not in KNOBS:
        raise ValueError(f"knob={knob!r}; choose one of {KNOBS}")
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds={list(seeds)}: pass two or more distinct retraining seeds (mc and CKA compare "
                         "copies)")
    if int(rounds) < 1:
        raise ValueError(f"rounds={rounds}: pass 1 (one-shot pruning) or more (iterative pruning)")
    if not values or not densities:
        raise ValueError("values and densities must each hold at least one entry")
    for d in densities:
        if not 0 < d <= 1:
            raise ValueError(f"densities: {d} is not in (0, 1]; densities are fractions of weights kept")
    if knob == "epochs" and any(float(v) < 0 for v in values):
        raise ValueError(f"values={list(values)}: epochs must be non-negative")


class _threads:
    """Torch CPU threads set for a block and restored afterwards (``None``: unchanged)."""

    def __init__(self, n: Optional[int]):
        self.n, self.before = n, torch.get_num_threads()

    def __enter__(self):
        if self.n:
            torch.set_num_threads(int(self.n))

    def __exit__(self, *exc):
        torch.set_num_threads(self.before)


def _plan(model: Any, data: Any, options: Dict[str, Any]) -> _Plan:
    options = dict(options)
    options["seeds"] = [int(s) for s in options["seeds"]]
    options["values"] = list(options["values"])
    options["densities"] = [float(d) for d in options["densities"]]
    _check(options["knob"], options["values"], options["densities"], options["seeds"], options["rounds"])
    return _Plan(model, data, options.pop("train_data"), **options)


def analyze(model: Union[str, nn.Module], data: Any = None, *, train_data: Any = None, knob: str = "epochs",
            values: Sequence[Any] = (1, 3, 10, 30), densities: Sequence[float] = DEFAULT_DENSITIES,
            scope: str = "layer", seeds: Sequence[int] = (0, 1), dense_epochs: float = 20, dense_lr: float = 0.05,
            dense_batch_size: int = 64, retrain_epochs: float = 10, lr: float = 0.05, batch_size: int = 64,
            points: int = 25, refine: int = 6, rounds: int = 1, mc_sigmas: float = 2.0,
            cka_threshold: Union[str, float] = "auto", store: Any = None, executor: Any = None,
            threads: Optional[int] = None, device: DeviceLike = "auto", seed: int = 0,
            progress: ProgressLike = True) -> RegimeMapResult:
    """Map the three pruning regimes over a temperature knob x density grid (``docs/pruning.md``).

    Parameters
    ----------
    model : a reference architecture name (``"mlp"``, ``"cnn"``, ``"resnet"``; built with ``seed``) or
        your untrained ``nn.Module`` (the dense runs start from a copy of its weights).
    data, train_data : the test split (test error, CKA) and the training split (dense training, retraining,
        mode connectivity); both ``None``: the built-in digits split with ``seed``.
    knob : ``"epochs"`` (``values`` are epochs of one dense run, read from its checkpoints),
        ``"batch_size"`` or ``"lr"`` (one dense run of ``dense_epochs`` per value).
    densities : fractions of weights kept after magnitude pruning (``scope`` layer or global).
    seeds : retraining seeds (two or more); mc and CKA are averaged over every pair.
    retrain_epochs, lr, batch_size : retraining with the mask fixed (the same for every cell).
    rounds : 1 = one-shot pruning; more = iterative magnitude pruning in ``rounds`` steps of density
        ``density ** (r / rounds)``, the survivors rewound to the dense weights and retrained (first seed)
        between rounds; the final mask is then retrained from every seed as in one-shot.
    points, refine : points on the interpolation path (at least 25 to find off-centre peaks) and extra
        points around each peak (:func:`workbench.connectivity.barrier`).
    mc_sigmas, cka_threshold : classification, see :func:`classify_regimes`.
    store, executor : passed to :func:`workbench.sweep.run` (resumable cells; Dask for several machines).
        The dense runs are stored as cells too, and every cell is keyed by the settings of its dense run
        (knob, value, seed, data fingerprint, model), so a map resumed on another device or thread count
        loads what is stored; ``result.counts`` says how many cells and dense runs were computed / loaded.
    threads : torch CPU threads for the run and inside each cell (1 is fastest for small models on a busy
        machine); restored afterwards.
    device : where cells run; with an executor it is passed to the workers as given.

    :func:`estimate_cost` says what the same call will cost before running it.
    """
    options = {k: v for k, v in locals().items() if k not in ("model", "data", "progress")}
    with _threads(threads):
        plan = _plan(model, data, options)
        return _regime_map(plan, model=model, mc_sigmas=mc_sigmas, cka_threshold=cka_threshold, progress=progress,
                           settings=dict(knob=knob, values=plan.values, densities=plan.densities, scope=scope,
                                         seeds=[int(s) for s in seeds], dense_epochs=dense_epochs,
                                         dense_lr=dense_lr, dense_batch_size=dense_batch_size,
                                         retrain_epochs=retrain_epochs, lr=lr, batch_size=batch_size, points=points,
                                         refine=refine, rounds=int(rounds), mc_sigmas=mc_sigmas,
                                         cka_threshold=cka_threshold, seed=seed,
                                         variant=f"{scope} magnitude, " + ("one-shot" if int(rounds) == 1
                                                                           else f"iterative x{int(rounds)}")))


def estimate_cost(model: Union[str, nn.Module], data: Any = None, *, workers: int = 1,
                  **options: Any) -> sweep.CostEstimate:
    """What :func:`analyze` with the same arguments will cost, before running it.

    One real cell is timed (on a dense model trained one epoch, or the stored dense model) and multiplied
    by the cells not in the store (stored cells cost nothing); one timed dense epoch gives the dense runs
    still to train.  ``workers`` is how many cells run at once.  ``options`` are :func:`analyze`'s keyword
    arguments (``progress`` is ignored).
    """
    import inspect

    params = inspect.signature(analyze).parameters
    unknown = sorted(set(options) - set(params) - {"progress"})
    if unknown:
        raise TypeError(f"estimate_cost got {unknown}, which analyze() does not take")
    full = {name: p.default for name, p in params.items() if p.kind is p.KEYWORD_ONLY and name != "progress"}
    full.update({k: v for k, v in options.items() if k != "progress"})
    with _threads(full["threads"]):
        return _estimate(_plan(model, data, full), workers=workers)


def _estimate(plan: _Plan, *, workers: int) -> sweep.CostEstimate:
    fn = functools.partial(_evaluate_cell, plan.context)
    if not plan.missing:
        return sweep.estimate_cost(fn, plan.cells, store=plan.store, seconds_per_cell=0.0, workers=workers)
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
        stand_in = plan.store.read(sweep.cell_key(plan.dense_cells[str(first["value"])]))["value"]
    plan.context["dense"] = {str(first["value"]): stand_in}
    timed = sweep.estimate_cost(fn, [first], sample=1)
    est = sweep.estimate_cost(fn, plan.cells, store=plan.store, seconds_per_cell=timed.seconds_per_cell,
                                     workers=workers)
    return dataclasses.replace(est, setup_seconds=setup, estimated_seconds=est.estimated_seconds + setup,
                               measured_on=[first])


def _regime_map(plan: _Plan, *, model, mc_sigmas, cka_threshold, progress, settings) -> RegimeMapResult:
    dense_steps = len(plan.dense_missing())
    with Progress(dense_steps + len(plan.cells), "pruning regime map", progress) as bar:
        counts = plan.run_dense(bar.stage("dense training", dense_steps))
        bar.update(dense_steps)
        fn = functools.partial(_evaluate_cell, plan.context)
        res = sweep.run(fn, plan.cells, store=plan.store, executor=plan.executor,
                        progress=bar.stage("pruned cells", len(plan.cells)))
        bar.update(len(plan.cells))
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
