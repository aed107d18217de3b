"""The d_int90 search: the smallest subspace dimension reaching 90 % of a stated baseline.

Each trial is a full :func:`~.subspace.subspace_train` run for one ``(d, seed)``; trials are cached on
disk (one small JSON file each, keyed by everything that determines them: the initial weights, the data,
d, the seed, the projection and the training settings), so a rerun or an interrupted search repeats no
finished trial.  The baseline is explicit: ``baseline="full"`` trains the model's own full parameter
vector with the same seeds (and is cached the same way), a number is a fixed target accuracy.  The
target is ``threshold * baseline``.  A bootstrap over seeds (and baseline runs) gives an interval for
d_int90.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from ..backend import DeviceLike, resolve_device
from ..data import Dataset, as_dataset
from ..models import build, cache_dir as _cache_root, evaluate, train
from ..progress import Progress, ProgressLike
from ..results import Result
from .subspace import num_parameters, subspace_train


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
def _fingerprint_tensor(h: "hashlib._Hash", t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(str((tuple(t.shape), str(t.dtype))).encode())
    h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())


def _fingerprint_data(ds: Optional[Dataset]) -> Optional[str]:
    if ds is None:
        return None
    h = hashlib.sha1()
    _fingerprint_tensor(h, ds.X)
    _fingerprint_tensor(h, ds.y)
    return h.hexdigest()[:16]


def _fingerprint_model(model: nn.Module) -> str:
    h = hashlib.sha1(type(model).__qualname__.encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        _fingerprint_tensor(h, t)
    return h.hexdigest()[:16]


def _model_for(model: Any, seed: int) -> nn.Module:
    """The model whose weights are theta_0 for ``seed``: a fixed module, or a fresh init per seed."""
    if isinstance(model, nn.Module):
        return model
    if isinstance(model, str):
        return build(model, seed=seed)
    if callable(model):
        out = model(seed)
        if not isinstance(out, nn.Module):
            raise TypeError(f"model(seed) must return an nn.Module, got {type(out).__name__}")
        return out
    raise TypeError(f"model must be an nn.Module, a reference name ('mlp', 'cnn', 'resnet') or a callable "
                    f"seed -> nn.Module; got {type(model).__name__}")


# arguments of the training functions that the search sets itself (or that do not change the result)
_SEARCH_OWNED = {"model", "data", "d", "seed", "device", "progress", "test_data", "return_model",
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
        h = hashlib.sha1()
        _fingerprint_tensor(h, value)
        return f"tensor:{h.hexdigest()[:16]}"
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


class TrialCache:
    """One JSON file per finished trial under ``directory`` (atomic writes; safe to interrupt)."""

    def __init__(self, directory: Optional[Union[str, os.PathLike]]):
        self.directory = Path(directory) if directory else None
        if self.directory:
            self.directory.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(spec: Dict[str, Any]) -> str:
        return hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:20]

    def get(self, spec: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        if not self.directory:
            return None
        path = self.directory / f"{self.key(spec)}.json"
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())["result"]
        except (ValueError, KeyError):
            return None

    def put(self, spec: Dict[str, Any], result: Dict[str, Any]) -> None:
        if not self.directory:
            return
        path = self.directory / f"{self.key(spec)}.json"
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"spec": spec, "result": result}, default=str))
        os.replace(tmp, path)


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
# the search
# --------------------------------------------------------------------------------------------
def search(model: Any, data: Any, *, test_data: Any = None, method: str = "bisection",
           dims: Optional[Sequence[int]] = None, d_min: int = 1, d_max: Optional[int] = None,
           seeds: Union[int, Sequence[int]] = 3, projection: str = "fastfood", said: bool = False,
           baseline: Union[str, float] = "full", threshold: float = 0.9, epochs: float = 10, lr: float = 0.1,
           optimizer: str = "adam", batch_size: int = 64, baseline_kwargs: Optional[Dict[str, Any]] = None,
           tolerance: float = 0.1, grid_points: int = 6, rounds: int = 2, bootstrap: int = 1000,
           cache: bool = True, cache_dir: Optional[Union[str, os.PathLike]] = None, seed: int = 0,
           device: DeviceLike = "auto", progress: ProgressLike = True) -> SearchResult:
    """Find d_int90, the smallest ``d`` whose mean accuracy over ``seeds`` reaches ``threshold * baseline``.

    ``model``: an ``nn.Module`` (its weights are ``theta_0`` for every seed), a reference name such as
    ``"mlp"`` / ``"cnn"`` (a fresh seeded initialisation per seed, as in Li et al.), or a callable
    ``seed -> nn.Module``.  Accuracy is measured on the whole ``test_data`` when given, else on the
    training data (use that for memorisation tasks such as shuffled labels).

    ``baseline="full"`` trains the full model (``models.train`` with ``baseline_kwargs``, default its own
    defaults) once per seed; a number is a fixed target accuracy.  ``method="bisection"`` bisects on a
    log scale between ``d_min`` and ``d_max`` (default ``min(D, 4096)``) until the bracket is within
    ``tolerance`` (relative); ``method="grid"`` evaluates ``dims`` (default ``grid_points`` geometric
    values) and refines ``rounds`` times between the last failing and first passing ``d``.  Trials are
    cached in ``cache_dir`` (default under the workbench cache) unless ``cache=False``.
    """
    if method not in ("bisection", "grid"):
        raise ValueError(f"method={method!r}: choose 'bisection' or 'grid'")
    if not 0 < threshold <= 1.5:
        raise ValueError(f"threshold={threshold}: pass a fraction of the baseline such as 0.9")
    ds = as_dataset(data, "data")
    test = as_dataset(test_data, "test_data") if test_data is not None else None
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("seeds is empty; pass a number of seeds >= 1 or a list of seeds")
    dev = resolve_device(device)
    eval_set = test if test is not None else ds
    models_by_seed = {s: _model_for(model, s) for s in seed_list}
    D = num_parameters(models_by_seed[seed_list[0]])
    d_max = int(min(D, 4096) if d_max is None else d_max)
    d_min = max(1, int(d_min))
    if d_min > d_max:
        raise ValueError(f"d_min={d_min} > d_max={d_max}")
    store = TrialCache((cache_dir or default_cache_dir()) if cache else None)
    data_fp, test_fp = _fingerprint_data(ds), _fingerprint_data(test)
    model_fp = {s: _fingerprint_model(m) for s, m in models_by_seed.items()}
    train_settings = dict(epochs=epochs, lr=lr, optimizer=optimizer, batch_size=batch_size)
    full_settings = dict(baseline_kwargs or {})
    # cache keys hold every setting a trial runs with, the functions' defaults resolved, and the device
    sub_key = resolved_settings(subspace_train, dict(train_settings, projection=projection, said=said),
                                "the subspace settings")
    full_key = resolved_settings(train, full_settings, "baseline_kwargs") if baseline == "full" else None
    dev_key = str(dev)

    if method == "bisection":
        steps = 2 + max(0, math.ceil(math.log2(max(1.0, math.log(max(d_max / d_min, 1.0 + 1e-9))
                                                   / math.log(1 + tolerance)))))
    else:
        first = len(dims) if dims is not None else grid_points
        steps = first + rounds * max(0, grid_points - 2)
    n_base = len(seed_list) if baseline == "full" else 0
    trials: List[Dict[str, Any]] = []
    base_rows: List[Dict[str, Any]] = []
    accs: Dict[int, np.ndarray] = {}

    with Progress(n_base + steps * len(seed_list), "d_int search", progress) as bar:
        # ---- baseline -------------------------------------------------------------------
        if baseline == "full":
            for s in seed_list:
                spec = dict(kind="full", seed=s, model=model_fp[s], data=data_fp, test=test_fp, settings=full_key,
                            device=dev_key)
                res = store.get(spec)
                cached = res is not None
                if res is None:
                    m = copy.deepcopy(models_by_seed[s])
                    train(m, ds, seed=s, device=dev, progress=False, **full_settings)
                    ev = evaluate(m, eval_set, device=dev)
                    res = {"accuracy": ev["accuracy"], "loss": ev["loss"]}
                    store.put(spec, res)
                base_rows.append({"seed": s, **res, "cached": cached})
                bar.update()
            base_accs = np.array([r["accuracy"] for r in base_rows])
            base_value = float(base_accs.mean())
        else:
            try:
                base_value = float(baseline)
            except (TypeError, ValueError):
                raise ValueError(f"baseline={baseline!r}: pass 'full' (the model's own full training) or a "
                                 "target accuracy such as 0.95") from None
            base_accs = None
        target = threshold * base_value

        def run(d: int) -> float:
            if d in accs:
                return float(accs[d].mean())
            row_accs = []
            for s in seed_list:
                spec = dict(kind="subspace", d=d, seed=s, projection=projection, said=said, model=model_fp[s],
                            data=data_fp, test=test_fp, settings=sub_key, device=dev_key)
                res = store.get(spec)
                cached = res is not None
                if res is None:
                    r = subspace_train(models_by_seed[s], ds, d, projection=projection, said=said,
                                       test_data=test, seed=s, device=dev, progress=False, **train_settings)
                    res = {"accuracy": r.accuracy, "loss": r.loss, "train_accuracy": r.train_accuracy,
                           "train_loss": r.train_loss, "seconds": r.seconds}
                    store.put(spec, res)
                trials.append({"d": d, "seed": s, **res, "cached": cached})
                row_accs.append(res["accuracy"])
                bar.update()
            accs[d] = np.array(row_accs)
            return float(accs[d].mean())

        # ---- search ---------------------------------------------------------------------
        if method == "bisection":
            hi, lo = d_max, d_min
            if run(hi) >= target:
                if run(lo) >= target:
                    hi = lo
                else:
                    while hi > lo * (1 + tolerance) and hi - lo > 1:
                        mid = int(round(math.sqrt(lo * hi)))
                        mid = min(max(mid, lo + 1), hi - 1)
                        if run(mid) >= target:
                            hi = mid
                        else:
                            lo = mid
        else:
            grid = sorted({int(v) for v in dims} if dims is not None else
                          {int(round(v)) for v in np.geomspace(d_min, d_max, grid_points)})
            if not grid or grid[0] < 1:
                raise ValueError(f"dims={dims}: subspace dimensions must be >= 1")
            for d in grid:
                run(d)
            for _ in range(rounds):
                ordered = sorted(accs)
                passing = [d for d in ordered if accs[d].mean() >= target]
                if not passing:
                    break
                first = passing[0]
                below = [d for d in ordered if d < first]
                if not below or first - below[-1] <= 1:
                    break
                new = {int(round(v)) for v in np.geomspace(below[-1], first, grid_points)[1:-1]} - set(accs)
                new = {v for v in new if below[-1] < v < first}
                if not new:
                    break
                for d in sorted(new):
                    run(d)

    # ---- summarise ----------------------------------------------------------------------
    dims_sorted = sorted(accs)
    summary = pd.DataFrame({
        "d": dims_sorted,
        "mean_accuracy": [float(accs[d].mean()) for d in dims_sorted],
        "std_accuracy": [float(accs[d].std(ddof=1)) if len(accs[d]) > 1 else 0.0 for d in dims_sorted],
        "n_seeds": [len(accs[d]) for d in dims_sorted],
    })
    summary["passed"] = summary["mean_accuracy"] >= target
    passing = summary[summary["passed"]]
    reached = bool(len(passing))
    d_int = float(passing["d"].iloc[0]) if reached else float("nan")
    d_interp = float("nan")
    if reached:
        below = summary[(summary["d"] < d_int)]
        if len(below):
            d0, a0 = float(below["d"].iloc[-1]), float(below["mean_accuracy"].iloc[-1])
            a1 = float(passing["mean_accuracy"].iloc[0])
            frac = (target - a0) / (a1 - a0) if a1 > a0 else 1.0
            d_interp = float(np.exp(np.log(d0) + frac * (np.log(d_int) - np.log(d0))))
        else:
            d_interp = d_int
    interval = bootstrap_dint(accs, base_accs, target, threshold, n_boot=bootstrap, seed=seed) \
        if bootstrap else (float("nan"), float("nan"))
    settings = dict(method=method, seeds=seed_list, projection=projection, said=said, baseline=baseline
                    if baseline == "full" else float(baseline), threshold=threshold,
                    split="test" if test is not None else "train", data=ds.name,
                    test_data=test.name if test is not None else None, device=str(dev), d_min=d_min, d_max=d_max,
                    tolerance=tolerance, bootstrap=bootstrap, seed=seed, baseline_kwargs=full_settings,
                    baseline_settings=full_key,
                    model=model if isinstance(model, str) else type(models_by_seed[seed_list[0]]).__name__,
                    theta0="fixed module" if isinstance(model, nn.Module) else "fresh init per seed",
                    cache_dir=str(store.directory) if store.directory else None, **train_settings)
    return SearchResult(settings=settings, trials=pd.DataFrame(trials), summary=summary,
                        baseline_trials=pd.DataFrame(base_rows), baseline=base_value, target=float(target),
                        d_int90=d_int, d_int90_interp=d_interp, interval=tuple(interval), reached=reached, D=D)
