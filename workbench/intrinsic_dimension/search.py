"""The d_int90 search: the smallest subspace dimension reaching 90 % of a stated baseline.

Each trial is a full :func:`~.subspace.subspace_train` run for one ``(d, seed)``, and each baseline run a
full :func:`workbench.models.train`.  Trials are cells of the sweep engine (:mod:`workbench.sweep`): they are
stored (one file each, written atomically) under a key made of everything that determines them (the
initial weights, the data, d, the seed, the projection, the training settings with the functions' defaults
resolved, the device), so a rerun or an interrupted search repeats no finished trial, and ``executor=``
runs the seeds of a step (or a grid round) on threads, processes or a Dask cluster.  The baseline is
explicit: ``baseline="full"`` trains the model's own full parameter vector with the same seeds, a number is
a fixed target accuracy.  The target is ``threshold * baseline``.  A bootstrap over seeds (and baseline runs)
gives an interval for d_int90.  Definitions: ``docs/intrinsic-dimension.md``.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import math
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from .. import sweep
from ..backend import DeviceLike, resolve_device
from ..data import as_dataset
from ..models import ARCHITECTURES, build, evaluate, train
from ..models import cache_dir as _cache_root
from ..progress import Progress, ProgressLike
from ..results import Result
from ..sweep import fingerprint
from ..validation import as_model, probe
from .subspace import num_parameters, subspace_train

__all__ = ["SearchResult", "analyze", "resolved_settings", "bootstrap_dint", "default_cache_dir"]


@dataclasses.dataclass
class SearchResult(Result):
    """Trials of a d_int90 search, the baseline and target, d_int90 with its bootstrap interval."""

    trials: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    summary: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    baseline_trials: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    baseline: float = float("nan")
    target: float = float("nan")
    d_int90: float = float("nan")
    d_int90_interp: float = float("nan")
    interval: tuple = (float("nan"), float("nan"))
    reached: bool = False
    D: int = 0

    kind = "id_search"

    def to_frame(self) -> pd.DataFrame:
        return self.summary

    def findings(self, name: str = ""):
        """The key numbers of the search, each with a sentence (:mod:`workbench.findings`)."""
        from .findings import search_findings

        return search_findings(self, name)

    def compare(self, other: "SearchResult", *, names: Tuple[str, str] = ("this", "other"),
                much: Optional[float] = None) -> Dict[str, Any]:
        """Whether this search's d_int90 is below ``other``'s, read off both results.

        Returns ``lower`` (the name of the lower one, or ``None`` when undecided or equal), ``ratio``
        (this / other; a lower bound when this one was not reached below its ceiling), ``overlap`` (whether
        the bootstrap intervals overlap), ``decided`` and a one-sentence ``text``.  With ``much``, ``much``
        is whether the ratio is at least ``much`` (e.g. shuffled labels against true labels).
        """
        a, b = names
        out: Dict[str, Any] = {"lower": None, "ratio": float("nan"), "overlap": None, "decided": False}
        if not other.reached:
            out["text"] = f"{a} vs {b}: undecided, d_int90 not reached for {b} (raise d_max or epochs)"
            return out
        single = min(len(self.settings.get("seeds") or [0, 0]), len(other.settings.get("seeds") or [0, 0])) < 2
        if self.reached:
            ratio = self.d_int90 / other.d_int90
            lo_a, hi_a = self.interval
            lo_b, hi_b = other.interval
            intervals = np.isfinite([lo_a, hi_a, lo_b, hi_b]).all()
            out["overlap"] = None if single or not intervals else bool(not (hi_a < lo_b or hi_b < lo_a))
        else:  # not reached up to its ceiling: the ratio is at least ceiling / other
            ratio = float(self.settings.get("d_max", np.nan)) / other.d_int90
        out.update(ratio=float(ratio), decided=True)
        if self.reached and self.d_int90 != other.d_int90:
            out["lower"] = a if self.d_int90 < other.d_int90 else b
        elif not self.reached:
            out["lower"] = b
        if self.reached:
            text = f"{a} d_int90 {self.d_int90:g} is {ratio:.3g} x {b}{_possessive(b)} {other.d_int90:g}"
        else:
            text = (f"{a} d_int90 is not reached up to d = {self.settings.get('d_max')}, so it is at least "
                    f"{ratio:.3g} x {b}{_possessive(b)} {other.d_int90:g}")
        if out["overlap"] is not None:
            text += "; the 95% bootstrap intervals " + ("overlap" if out["overlap"] else "do not overlap")
        elif self.reached and single:
            text += " (one seed: no interval)"
        if much is not None:
            out["much"] = bool(ratio >= much)
            text += f"; {'at least' if out['much'] else 'less than'} {much:g} x"
        out["text"] = text
        return out

    def describe(self) -> str:
        split = self.settings.get("split", "test")
        base = self.settings.get("baseline")
        base_txt = (f"full training ({self.baseline:.3f})" if base == "full" else f"fixed target {self.baseline:.3f}")
        if not self.reached:
            return (f"d_int{int(self.settings.get('threshold', 0.9) * 100)} not reached up to "
                    f"d={int(self.summary['d'].max())} ({split} accuracy; baseline {base_txt})")
        lo, hi = self.interval
        return (f"d_int{int(round(self.settings.get('threshold', 0.9) * 100))} = {int(self.d_int90)} "
                f"(95% bootstrap interval {lo:g}-{hi:g}; D = {self.D}; {split} accuracy; "
                f"target {self.target:.3f} = {self.settings.get('threshold')} x baseline {base_txt})")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _model_for(model: Any, seed: int) -> nn.Module:
    """The model whose weights are theta_0 for ``seed``: a fixed module (any model spec), or a fresh init per
    seed (a built-in architecture's name, or a callable ``seed -> nn.Module``)."""
    if isinstance(model, nn.Module):
        return as_model(model)
    if isinstance(model, str) and model.strip().lower() in ARCHITECTURES:
        return build(model.strip().lower(), seed=seed)
    if isinstance(model, (str, os.PathLike)):
        return as_model(model)
    if callable(model):
        out = model(seed)
        if not isinstance(out, nn.Module):
            raise TypeError(f"model(seed) must return an nn.Module, got {type(out).__name__}")
        return out
    raise TypeError(f"model must be an nn.Module, a reference name ('mlp', 'cnn', 'resnet') or a callable "
                    f"seed -> nn.Module; got {type(model).__name__}")


# arguments of the training functions that the search sets itself (or that do not change the result)
_SEARCH_OWNED = {"model", "data", "d", "seed", "device", "progress", "test_data", "train_data",
                 "checkpoint_every", "checkpoint_dir", "eval_batch_size"}


def _jsonable(value: Any) -> Any:
    """A stable, process-independent form of a setting for the cache key."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        return f"tensor:{fingerprint(value)}"
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}"
    return repr(value)


def resolved_settings(fn: Callable, given: Dict[str, Any], argument: str) -> Dict[str, Any]:
    """``given`` keyword arguments of ``fn`` plus the defaults of all the others it would use.

    The cache key of a trial holds these, so a changed default of ``fn`` (for instance of
    :func:`workbench.models.train`) never brings back a trial trained under the old one.  Arguments the
    search sets itself (data, seed, device, progress, ...) are left out; passing one in ``given`` or an
    argument ``fn`` does not take raises a ``ValueError`` naming ``argument``.
    """
    params = inspect.signature(fn).parameters
    unknown = sorted(set(given) - set(params))
    if unknown:
        raise ValueError(f"{argument} has {unknown}, which {fn.__name__}() does not take; "
                         f"use some of {sorted(set(params) - _SEARCH_OWNED)}")
    owned = sorted(set(given) & _SEARCH_OWNED)
    if owned:
        raise ValueError(f"{argument} sets {owned}, which the search sets itself; pass them to search() "
                         "instead (seeds=, device=) or leave them out")
    out = {name: p.default for name, p in params.items()
           if name not in _SEARCH_OWNED and p.default is not inspect.Parameter.empty
           and p.kind is not inspect.Parameter.VAR_KEYWORD}
    out.update(given)
    return {k: _jsonable(v) for k, v in out.items()}

def default_cache_dir() -> Path:
    return _cache_root() / "intrinsic_dimension" / "trials"


def bootstrap_dint(summary_accs: Dict[int, np.ndarray], baseline_accs: Optional[np.ndarray], fixed_target: float,
                   threshold: float, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple:
    """Bootstrap interval of the smallest passing d: seeds resampled per d (and baseline runs)."""
    rng = np.random.default_rng(seed)
    dims = sorted(summary_accs)
    found = np.empty(n_boot)
    for b in range(n_boot):
        if baseline_accs is not None and len(baseline_accs):
            target = threshold * rng.choice(baseline_accs, len(baseline_accs)).mean()
        else:
            target = fixed_target
        found[b] = np.inf
        for d in dims:
            a = summary_accs[d]
            if rng.choice(a, len(a)).mean() >= target:
                found[b] = d
                break
    alpha = (1 - level) / 2
    lo = float(np.quantile(found, alpha, method="lower"))
    hi = float(np.quantile(found, 1 - alpha, method="higher"))
    return lo, hi


# --------------------------------------------------------------------------------------------
# trials (cells of the sweep engine)
# --------------------------------------------------------------------------------------------
def _trial(context: Dict[str, Any], *, kind: str, seed: int, d: int = 0, **_key: Any) -> Dict[str, Any]:
    """One trial, on any worker: a subspace run at ``d`` or a full-training baseline run."""
    model = context["models"][seed]
    if kind == "full":
        m = copy.deepcopy(model)
        train(m, context["train"], seed=seed, device=context["device"], progress=False, **context["full"])
        ev = evaluate(m, context["eval"], device=context["device"])
        return {"accuracy": ev["accuracy"], "loss": ev["loss"]}
    r = subspace_train(model, context["eval"], d=d, train_data=context["train_arg"], seed=seed,
                       device=context["device"], progress=False, **context["subspace"])
    return {"accuracy": r.accuracy, "loss": r.loss, "train_accuracy": r.train_accuracy, "train_loss": r.train_loss,
            "seconds": r.seconds}


class _Search:
    """The state of one search: its trials, the accuracies per d, and how to run more."""

    def __init__(self, context: Dict[str, Any], keys: Dict[str, Any], seeds: List[int], store, executor,
                 bar: Progress):
        self.context, self.keys, self.seeds = context, keys, seeds
        self.store, self.executor, self.bar = store, executor, bar
        self.accs: Dict[int, np.ndarray] = {}
        self.trials: List[Dict[str, Any]] = []

    def _cells(self, cells: List[Dict[str, Any]], stage: str) -> Tuple[List[Dict[str, Any]], Any]:
        res = sweep.run(functools.partial(_trial, self.context), cells, store=self.store, executor=self.executor,
                        progress=self.bar.stage(stage, len(cells)))
        self.bar.update(len(cells))
        loaded = set(res.loaded)
        return [{**res[c], "cached": sweep.cell_key(c) in loaded} for c in cells], res

    def baseline(self) -> List[Dict[str, Any]]:
        cells = [dict(kind="full", seed=s, model=self.keys["model"][s], **self.keys["full"]) for s in self.seeds]
        rows, _ = self._cells(cells, "baseline training")
        return [{"seed": s, **r} for s, r in zip(self.seeds, rows)]

    def run(self, dims: Sequence[int]) -> None:
        """Train every seed at every new ``d`` (one sweep for all of them)."""
        new = sorted({int(d) for d in dims} - set(self.accs))
        if not new:
            return
        cells = [dict(kind="subspace", d=d, seed=s, model=self.keys["model"][s], **self.keys["subspace"])
                 for d in new for s in self.seeds]
        rows, _ = self._cells(cells, f"subspace training d={', '.join(map(str, new))}")
        for i, d in enumerate(new):
            part = rows[i * len(self.seeds):(i + 1) * len(self.seeds)]
            self.trials += [{"d": d, "seed": s, **r} for s, r in zip(self.seeds, part)]
            self.accs[d] = np.array([r["accuracy"] for r in part])

    def mean(self, d: int) -> float:
        self.run([d])
        return float(self.accs[d].mean())


def _bisect(search: _Search, target: float, d_min: int, d_max: int, tolerance: float) -> None:
    hi, lo = d_max, d_min
    if search.mean(hi) < target or search.mean(lo) >= target:
        return
    while hi > lo * (1 + tolerance) and hi - lo > 1:
        mid = min(max(int(round(math.sqrt(lo * hi))), lo + 1), hi - 1)
        if search.mean(mid) >= target:
            hi = mid
        else:
            lo = mid


def _grid_search(search: _Search, target: float, dims: Sequence[int], grid_points: int, rounds: int) -> None:
    search.run(dims)
    for _ in range(rounds):
        ordered = sorted(search.accs)
        passing = [d for d in ordered if search.accs[d].mean() >= target]
        below = [d for d in ordered if passing and d < passing[0]]
        if not passing or not below or passing[0] - below[-1] <= 1:
            break
        new = {int(round(v)) for v in np.geomspace(below[-1], passing[0], grid_points)[1:-1]}
        new = {v for v in new if below[-1] < v < passing[0]} - set(search.accs)
        if not new:
            break
        search.run(sorted(new))


def _steps(method: str, d_min: int, d_max: int, tolerance: float, dims, grid_points: int, rounds: int) -> int:
    """Subspace dimensions a search will try at most (for the progress total)."""
    if method == "bisection":
        return 2 + max(0, math.ceil(math.log2(max(1.0, math.log(max(d_max / d_min, 1.0 + 1e-9))
                                                  / math.log(1 + tolerance)))))
    return (len(dims) if dims is not None else grid_points) + rounds * max(0, grid_points - 2)


def _summary(accs: Dict[int, np.ndarray], target: float) -> Tuple[pd.DataFrame, float, float]:
    """The per-d table, d_int90 (the smallest passing d) and its log-linear interpolation."""
    dims = sorted(accs)
    summary = pd.DataFrame({
        "d": dims,
        "mean_accuracy": [float(accs[d].mean()) for d in dims],
        "std_accuracy": [float(accs[d].std(ddof=1)) if len(accs[d]) > 1 else 0.0 for d in dims],
        "n_seeds": [len(accs[d]) for d in dims],
    })
    summary["passed"] = summary["mean_accuracy"] >= target
    passing = summary[summary["passed"]]
    if not len(passing):
        return summary, float("nan"), float("nan")
    d_int = float(passing["d"].iloc[0])
    below = summary[summary["d"] < d_int]
    if not len(below):
        return summary, d_int, d_int
    d0, a0 = float(below["d"].iloc[-1]), float(below["mean_accuracy"].iloc[-1])
    a1 = float(passing["mean_accuracy"].iloc[0])
    frac = (target - a0) / (a1 - a0) if a1 > a0 else 1.0
    return summary, d_int, float(np.exp(np.log(d0) + frac * (np.log(d_int) - np.log(d0))))


# --------------------------------------------------------------------------------------------
# the search
# --------------------------------------------------------------------------------------------
def _check_arguments(method: str, threshold: float, baseline: Any, seeds: Union[int, Sequence[int]]) -> List[int]:
    if method not in ("bisection", "grid"):
        raise ValueError(f"method={method!r}: choose 'bisection' or 'grid'")
    if not 0 < threshold <= 1.5:
        raise ValueError(f"threshold={threshold}: pass a fraction of the baseline such as 0.9")
    if baseline != "full":
        try:
            float(baseline)
        except (TypeError, ValueError):
            raise ValueError(f"baseline={baseline!r}: pass 'full' (the model's own full training) or a "
                             "target accuracy such as 0.95") from None
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("seeds is empty; pass a number of seeds >= 1 or a list of seeds")
    return seed_list


def chance_accuracy(data) -> float:
    """The accuracy of always predicting the most common class of ``data`` (NaN when the targets are not
    class labels)."""
    y = data.y
    if y.dtype.is_floating_point or y.dim() != 1 or not len(y):
        return float("nan")
    return float(torch.bincount(y.long() - y.long().min()).max()) / len(y)


def _check_above_chance(data, target: float, base_value: float, baseline: Any) -> float:
    """The chance accuracy of ``data``; refuses a target a constant prediction already reaches (d_int90
    would be the smallest d tried, whatever the model)."""
    chance = chance_accuracy(data)
    if np.isfinite(chance) and target <= chance:
        what = (f"the full-training baseline reaches accuracy {base_value:.3f}, so the target {target:.3f} is no "
                f"better than always predicting the most common class ({chance:.3f})" if baseline == "full" else
                f"the fixed target {target:.3f} is no better than always predicting the most common class "
                f"({chance:.3f})")
        raise ValueError(f"intrinsic_dimension.analyze: {what}; d_int90 would mean nothing. Train the baseline "
                         "longer or with another rate (baseline_kwargs=dict(epochs=..., lr=...)), or pass a higher "
                         "fixed baseline=")
    return chance


def analyze(model: Any, data: Any = None, *, train_data: Any = None, method: str = "bisection",
            dims: Optional[Sequence[int]] = None, d_min: int = 1, d_max: Optional[int] = None,
            seeds: Union[int, Sequence[int]] = 3, projection: str = "fastfood", said: bool = False,
            baseline: Union[str, float] = "full", threshold: float = 0.9, epochs: float = 10, lr: float = 0.1,
            optimizer: str = "adam", batch_size: int = 64, baseline_kwargs: Optional[Dict[str, Any]] = None,
            tolerance: float = 0.1, grid_points: int = 6, rounds: int = 2, bootstrap: int = 1000,
            cache: bool = True, cache_dir: Optional[Union[str, os.PathLike]] = None, executor: Any = None,
            device: DeviceLike = "auto", seed: int = 0, progress: ProgressLike = True) -> SearchResult:
    """Find d_int90, the smallest ``d`` whose mean accuracy on ``data`` over ``seeds`` reaches
    ``threshold * baseline``.

    ``model``: an ``nn.Module`` (its weights are ``theta_0`` for every seed), a reference name such as
    ``"mlp"`` / ``"cnn"`` (a fresh seeded initialisation per seed, as in Li et al.), or a callable
    ``seed -> nn.Module``.  Every run trains on ``train_data`` (default ``data``: a memorisation task such as
    shuffled labels is measured on the data it is trained on) and is measured on all of ``data``.

    ``baseline="full"`` trains the full model (``models.train`` with ``baseline_kwargs``, default its own
    defaults) once per seed; a number is a fixed target accuracy.  ``method="bisection"`` bisects on a
    log scale between ``d_min`` and ``d_max`` (default ``min(D, 4096)``) until the bracket is within
    ``tolerance`` (relative); ``method="grid"`` evaluates ``dims`` (default ``grid_points`` geometric
    values) and refines ``rounds`` times between the last failing and first passing ``d``.  Trials are
    stored in ``cache_dir`` (default under the workbench cache) unless ``cache=False``; ``executor`` is any
    executor of :func:`workbench.sweep.run`.
    """
    seed_list = _check_arguments(method, threshold, baseline, seeds)
    if data is None:
        raise ValueError("intrinsic_dimension.analyze needs data: the split whose accuracy is compared with "
                         "the baseline (and trained on, unless train_data= is given)")
    evaluate_on = as_dataset(data, "data")
    trained_on = as_dataset(train_data, "train_data") if train_data is not None else evaluate_on
    dev = resolve_device(device)
    models_by_seed = {s: _model_for(model, s) for s in seed_list}
    probe(models_by_seed[seed_list[0]], evaluate_on, name="data")
    if train_data is not None:
        probe(models_by_seed[seed_list[0]], trained_on, name="train_data")
    D = num_parameters(models_by_seed[seed_list[0]])
    d_max = int(min(D, 4096) if d_max is None else d_max)
    d_min = max(1, int(d_min))
    if d_min > d_max:
        raise ValueError(f"d_min={d_min} > d_max={d_max}")
    if method == "grid":
        dims = sorted({int(v) for v in dims} if dims is not None else
                      {int(round(v)) for v in np.geomspace(d_min, d_max, grid_points)})
        if not dims or dims[0] < 1:
            raise ValueError(f"dims={dims}: subspace dimensions must be >= 1")
    train_settings = dict(epochs=epochs, lr=lr, optimizer=optimizer, batch_size=batch_size)
    full_settings = dict(baseline_kwargs or {})
    # cell keys hold every setting a trial runs with, the functions' defaults resolved, and the device
    data_keys = dict(data=fingerprint(trained_on), test=fingerprint(evaluate_on) if train_data is not None else None,
                     device=str(dev))
    keys = dict(model={s: fingerprint(m) for s, m in models_by_seed.items()},
                subspace=dict(projection=projection, said=said, **data_keys,
                              settings=resolved_settings(subspace_train, dict(train_settings, projection=projection,
                                                                              said=said), "the subspace settings")),
                full=dict(**data_keys, settings=resolved_settings(train, full_settings, "baseline_kwargs")
                          if baseline == "full" else None))
    context = dict(models=models_by_seed, train=trained_on, eval=evaluate_on,
                   train_arg=trained_on if train_data is not None else None, device=str(dev),
                   full=full_settings, subspace=dict(train_settings, projection=projection, said=said))
    store = sweep.Store(Path(cache_dir) if cache_dir else default_cache_dir()) if cache else None
    n_base = len(seed_list) if baseline == "full" else 0
    steps = _steps(method, d_min, d_max, tolerance, dims, grid_points, rounds)
    with Progress(n_base + steps * len(seed_list), "d_int search", progress) as bar:
        search = _Search(context, keys, seed_list, store, executor, bar)
        base_rows = search.baseline() if baseline == "full" else []
        base_accs = np.array([r["accuracy"] for r in base_rows]) if base_rows else None
        base_value = float(base_accs.mean()) if base_rows else float(baseline)
        target = threshold * base_value
        chance = _check_above_chance(evaluate_on, target, base_value, baseline)
        if method == "bisection":
            _bisect(search, target, d_min, d_max, tolerance)
        else:
            _grid_search(search, target, dims, grid_points, rounds)
    summary, d_int, d_interp = _summary(search.accs, target)
    interval = bootstrap_dint(search.accs, base_accs, target, threshold, n_boot=bootstrap, seed=seed) \
        if bootstrap else (float("nan"), float("nan"))
    settings = dict(method=method, seeds=seed_list, projection=projection, said=said, baseline=baseline
                    if baseline == "full" else float(baseline), threshold=threshold,
                    split="test" if train_data is not None else "train", data=evaluate_on.name,
                    train_data=trained_on.name, device=str(dev), d_min=d_min, d_max=d_max,
                    tolerance=tolerance, bootstrap=bootstrap, seed=seed, baseline_kwargs=full_settings,
                    baseline_settings=keys["full"]["settings"], variant=projection + ("+said" if said else ""),
                    model=model if isinstance(model, str) else type(models_by_seed[seed_list[0]]).__name__,
                    theta0="fixed module" if isinstance(model, nn.Module) else "fresh init per seed", chance=chance,
                    cache_dir=str(store.path) if store is not None else None, **train_settings)
    return SearchResult(settings=settings, trials=pd.DataFrame(search.trials), summary=summary,
                        baseline_trials=pd.DataFrame(base_rows), baseline=base_value, target=float(target),
                        d_int90=d_int, d_int90_interp=d_interp, interval=tuple(interval),
                        reached=not np.isnan(d_int), D=D)


def _possessive(name: str) -> str:
    return "'" if name.endswith("s") else "'s"
