"""Loss and error along the straight path between two networks, and every named barrier variant.

Path: ``theta(a) = (1 - a) theta_A + a theta_B``; ``f(a)`` is the loss or the error (1 - accuracy) on a
named split.  The variants (REFERENCE section 2):

* ``max_minus_mean``  (Frankle; Git Re-Basin): ``max_a f(a) - (f(0) + f(1)) / 2``;
* ``max_minus_chord`` (Entezari): ``max_a [f(a) - ((1 - a) f(0) + a f(1))]``;
* ``midpoint``        (Entezari code, REPAIR): ``f(1/2) - (f(0) + f(1)) / 2``;
* ``signed_mc``       (Yang 2021): ``(f(0) + f(1))/2 - f(t*)``, ``t* = argmax_t |(f(0) + f(1))/2 - f(t)|``
  (negative: a barrier; positive: the path is better than its ends).

BatchNorm along the path (``bn=``): ``"interpolate"`` (running statistics interpolated like weights),
``"reset"`` (running statistics recomputed on the training data at every ``a``, 0 and 1 included),
``"repair"`` (REPAIR, Jordan et al. 2022: statistics reset, then every hidden channel's mean and standard
deviation rescaled to the interpolation of the endpoints' ones, folded into the layer's weight and bias;
also at every ``a``).
"""
from __future__ import annotations

import copy
import dataclasses
import warnings
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from ..backend import DeviceLike, resolve_device
from ..data import Dataset, as_dataset
from ..models import evaluate
from ..paramspace import channel_moments, reset_bn
from ..progress import Progress, ProgressLike
from ..results import Result

VARIANTS = ("max_minus_mean", "max_minus_chord", "midpoint", "signed_mc")
BN_MODES = ("interpolate", "reset", "repair")
_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


# --------------------------------------------------------------------------------------------
# the variants on a curve
# --------------------------------------------------------------------------------------------
def barrier_variants(alphas: Sequence[float], values: Sequence[float]) -> Dict[str, float]:
    """Every barrier variant of the curve ``values`` at ``alphas`` (sorted, including 0 and 1).

    ``midpoint`` uses ``f(1/2)``, linearly interpolated when 1/2 is not a grid point.
    """
    a = np.asarray(alphas, dtype=np.float64)
    f = np.asarray(values, dtype=np.float64)
    if a.ndim != 1 or a.shape != f.shape or len(a) < 2:
        raise ValueError(f"alphas and values must be 1-D of the same length (got {a.shape} and {f.shape})")
    order = np.argsort(a, kind="stable")
    a, f = a[order], f[order]
    if not (np.isclose(a[0], 0.0) and np.isclose(a[-1], 1.0)):
        raise ValueError(f"alphas must include both ends 0 and 1 (got {a[0]} .. {a[-1]})")
    if not np.all(np.isfinite(f)):
        bad = a[~np.isfinite(f)]
        raise FloatingPointError(f"the curve is not finite at alpha={bad.tolist()[:5]} (NaN or infinite loss)")
    f0, f1 = f[0], f[-1]
    mean_ends = (f0 + f1) / 2
    chord = (1 - a) * f0 + a * f1
    dev = np.abs(mean_ends - f)
    t = int(np.argmax(dev))
    return {
        "max_minus_mean": float(f.max() - mean_ends),
        "max_minus_chord": float((f - chord).max()),
        "midpoint": float(np.interp(0.5, a, f) - mean_ends),
        "signed_mc": float(mean_ends - f[t]),
    }


def barrier_argmax(alphas: Sequence[float], values: Sequence[float]) -> Dict[str, float]:
    """The alpha at which each variant is attained."""
    a = np.asarray(alphas, dtype=np.float64)
    f = np.asarray(values, dtype=np.float64)
    chord = (1 - a) * f[np.argmin(a)] + a * f[np.argmax(a)]
    mean_ends = (f[np.argmin(a)] + f[np.argmax(a)]) / 2
    return {"max_minus_mean": float(a[np.argmax(f)]), "max_minus_chord": float(a[np.argmax(f - chord)]),
            "midpoint": 0.5, "signed_mc": float(a[np.argmax(np.abs(mean_ends - f))])}


# --------------------------------------------------------------------------------------------
# interpolation and BatchNorm handling
# --------------------------------------------------------------------------------------------
def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, _BN_TYPES) for m in model.modules())


def interpolate_state(state_a: Dict[str, torch.Tensor], state_b: Dict[str, torch.Tensor], alpha: float, *,
                      keys: Optional[Iterable[str]] = None) -> Dict[str, torch.Tensor]:
    """``(1 - alpha) A + alpha B`` for floating entries (all, or only ``keys``); others are taken from A."""
    chosen = set(state_a) if keys is None else set(keys)
    out = {}
    for k, va in state_a.items():
        vb = state_b[k]
        if k in chosen and va.is_floating_point():
            out[k] = torch.lerp(va, vb.to(va.device, va.dtype), float(alpha))
        else:
            out[k] = va.clone()
    return out


def _site_stats(model: nn.Module, modules: Sequence[str], data: Dataset, *, batch_size: int,
                device: torch.device) -> Dict[str, Tuple[torch.Tensor, torch.Tensor]]:
    """Per-channel mean and standard deviation of the outputs of ``modules`` over ``data``."""
    named = dict(model.named_modules())
    model.to(device).eval()
    moments = channel_moments(model, {name: named[name] for name in modules}, data, batch_size=batch_size,
                              device=device)
    return {name: (mean, var.sqrt()) for name, (mean, var, _n) in moments.items()}


def repair_sites(model: nn.Module, data: Any = None) -> List[str]:
    """Modules whose output channels REPAIR rescales: a derived spec's hidden sites with an affine part.

    ``data`` (a few examples suffice) supplies the input used to trace the model; without it the input
    shape is inferred where possible (see :func:`workbench.connectivity.permutation.example_input`).
    """
    from .permutation import permutation_spec

    spec = permutation_spec(model, data)
    named = dict(model.named_modules())
    sites = []
    for module, _perm, _kind in spec.sites:
        mod = named.get(module)
        if isinstance(mod, _BN_TYPES) and mod.affine:
            sites.append(module)
        elif isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) and mod.bias is not None:
            sites.append(module)
    return sites


@torch.no_grad()
def repair(model: nn.Module, stats_a: Dict[str, Tuple[torch.Tensor, torch.Tensor]],
           stats_b: Dict[str, Tuple[torch.Tensor, torch.Tensor]], alpha: float, data: Dataset, *,
           sites: Sequence[str], batch_size: int = 512, device: DeviceLike = "auto") -> nn.Module:
    """REPAIR the interpolated ``model`` in place: reset BN statistics, then, site by site in forward
    order, rescale each channel so its mean and std equal ``(1 - alpha)`` A's + ``alpha`` B's."""
    dev = resolve_device(device)
    reset_bn(model, data, batch_size=batch_size, device=dev)
    named = dict(model.named_modules())
    for site in sites:
        mean_i, std_i = _site_stats(model, [site], data, batch_size=batch_size, device=dev)[site]
        ma, sa = stats_a[site]
        mb, sb = stats_b[site]
        mean_t = (1 - alpha) * ma + alpha * mb
        std_t = (1 - alpha) * sa + alpha * sb
        ratio = std_t / (std_i + 1e-8)
        mod = named[site]
        w = mod.weight
        shape = (-1,) + (1,) * (w.dim() - 1)
        w.mul_(ratio.to(w.dtype).view(shape))
        mod.bias.copy_(((mod.bias.double() - mean_i) * ratio + mean_t).to(mod.bias.dtype))
    return model


class PathEvaluator:
    """Evaluates models on the straight path A -> B with one of the BatchNorm modes."""

    def __init__(self, model_a: nn.Module, model_b: nn.Module, *, bn: str = "reset", train_data: Any = None,
                 fallback_data: Any = None, batch_size: int = 512, device: DeviceLike = "auto",
                 loss_fn: Optional[Callable] = None, keys: Optional[Iterable[str]] = None,
                 base: str = "a"):
        from .permutation import check_same_architecture

        if bn not in BN_MODES:
            raise ValueError(f"bn={bn!r}; choose one of {BN_MODES}")
        check_same_architecture(model_a, model_b)
        self.dev = resolve_device(device)
        self.bn = bn
        self.loss_fn = loss_fn
        self.batch_size = batch_size
        self.keys = None if keys is None else set(keys)
        self.state_a = {k: v.detach().to(self.dev) for k, v in model_a.state_dict().items()}
        self.state_b = {k: v.detach().to(self.dev) for k, v in model_b.state_dict().items()}
        self.base = base
        self.work = copy.deepcopy(model_a).to(self.dev).eval()
        self.bn_data: Optional[str] = None
        self.train = None
        needs_data = bn == "repair" or (bn == "reset" and has_batchnorm(model_a))
        if needs_data:
            if train_data is None:
                if fallback_data is None:
                    raise ValueError(f"bn={bn!r} needs train_data= to recompute statistics")
                warnings.warn(f"bn={bn!r} without train_data=: statistics are recomputed on the evaluation "
                              "data; pass train_data= for the standard protocol", stacklevel=3)
                self.train = as_dataset(fallback_data, "data")
                self.bn_data = "data"
            else:
                self.train = as_dataset(train_data, "train_data")
                self.bn_data = "train_data"
        self.sites: List[str] = []
        if bn == "repair":
            self.sites = repair_sites(model_a, self.train)
            ma = copy.deepcopy(model_a).to(self.dev).eval()
            mb = copy.deepcopy(model_b).to(self.dev).eval()
            self.stats_a = _site_stats(ma, self.sites, self.train, batch_size=batch_size, device=self.dev)
            self.stats_b = _site_stats(mb, self.sites, self.train, batch_size=batch_size, device=self.dev)

    def state_at(self, alpha: float) -> Dict[str, torch.Tensor]:
        if self.keys is None:
            return interpolate_state(self.state_a, self.state_b, alpha)
        if self.base == "a":
            return interpolate_state(self.state_a, self.state_b, alpha, keys=self.keys)
        # base B: the group moves from A (alpha=0) to B, the rest stays at B
        out = interpolate_state(self.state_a, self.state_b, alpha, keys=self.keys)
        for k in self.state_b:
            if k not in self.keys:
                out[k] = self.state_b[k].clone()
        return out

    def model_at(self, alpha: float) -> nn.Module:
        """The model at ``alpha`` (the evaluator's working copy, overwritten by the next call).

        ``reset`` and ``repair`` recompute the statistics at every ``alpha``, the ends included, so every
        point of a curve is produced the same way (the ends then differ from the stored models only by
        their recomputed BatchNorm statistics).
        """
        self.work.load_state_dict(self.state_at(alpha))
        if self.bn == "reset" and self.train is not None:
            reset_bn(self.work, self.train, batch_size=self.batch_size, device=self.dev)
        elif self.bn == "repair":
            repair(self.work, self.stats_a, self.stats_b, alpha, self.train, sites=self.sites,
                   batch_size=self.batch_size, device=self.dev)
        return self.work

    def evaluate(self, alpha: float, data: Dataset) -> Dict[str, float]:
        model = self.model_at(alpha)
        return evaluate(model, data, loss_fn=self.loss_fn, batch_size=self.batch_size, device=self.dev)


# --------------------------------------------------------------------------------------------
# the result
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class BarrierResult(Result):
    """The interpolation curves and every barrier variant.

    ``curve``: one row per (split, alpha) with loss, accuracy and error.  ``table``: one row per (split,
    metric, variant) with the barrier value and the alpha where it is attained.
    ``loss_barrier_`` / ``error_barrier_``: the default variant (``settings["variant"]``) on the
    evaluation split; ``barriers_`` / ``error_barriers_``: variant -> value on that split.
    """

    curve: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    table: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)

    kind = "barrier"

    def to_frame(self) -> pd.DataFrame:
        return self.curve[["alpha", "loss", "error", "accuracy", "split"]].reset_index(drop=True)

    def _lookup(self, metric: str) -> Dict[str, float]:
        split = self.settings.get("split", "test")
        t = self.table[(self.table["split"] == split) & (self.table["metric"] == metric)]
        return {str(v): float(x) for v, x in zip(t["variant"], t["value"])}

    @property
    def barriers_(self) -> Dict[str, float]:
        return self._lookup("loss")

    @property
    def error_barriers_(self) -> Dict[str, float]:
        return self._lookup("error")

    @property
    def loss_barrier_(self) -> float:
        return self.barriers_[self.settings.get("variant", "max_minus_mean")]

    @property
    def error_barrier_(self) -> float:
        return self.error_barriers_[self.settings.get("variant", "max_minus_mean")]

    def split_curve(self, split: Optional[str] = None) -> pd.DataFrame:
        split = split or self.settings.get("split", "test")
        return self.curve[self.curve["split"] == split].sort_values("alpha").reset_index(drop=True)


def _table(curve: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for split, c in curve.groupby("split", sort=False):
        c = c.sort_values("alpha")
        for metric in ("loss", "error"):
            vals = barrier_variants(c["alpha"], c[metric])
            where = barrier_argmax(c["alpha"].to_numpy(), c[metric].to_numpy())
            for v in VARIANTS:
                rows.append({"split": split, "metric": metric, "variant": v, "value": vals[v], "alpha": where[v]})
    return pd.DataFrame(rows)


def _grid(points: int) -> np.ndarray:
    if points < 3:
        raise ValueError(f"points={points}: use at least 3 (25 or more for the standard protocol)")
    return np.unique(np.concatenate([np.linspace(0.0, 1.0, points), [0.5]]))


def _peak_indices(alphas: np.ndarray, values: np.ndarray) -> List[int]:
    """Grid indices where the variants of one curve are attained: ``max f``, ``max (f - chord)`` and the
    signed-mc ``t* = argmax |(f(0) + f(1))/2 - f|`` (``alphas`` sorted, from 0 to 1)."""
    f = np.asarray(values, dtype=np.float64)
    chord = (1 - alphas) * f[0] + alphas * f[-1]
    mean_ends = (f[0] + f[-1]) / 2
    return [int(np.argmax(f)), int(np.argmax(f - chord)), int(np.argmax(np.abs(mean_ends - f)))]


def _refined(alphas: np.ndarray, curves: Sequence[np.ndarray], refine: int) -> List[float]:
    """New alphas, ``refine`` between the grid neighbours of each peak of each curve (see
    :func:`_peak_indices`); peaks at an end of the path and points already on the grid add nothing."""
    if refine <= 0:
        return []
    alphas = np.asarray(alphas, dtype=np.float64)
    peaks = sorted({i for values in curves for i in _peak_indices(alphas, values)})
    new: List[float] = []
    for i in peaks:
        if i in (0, len(alphas) - 1):
            continue
        cand = np.linspace(alphas[i - 1], alphas[i + 1], refine + 2)[1:-1]
        for c in cand:
            if not np.any(np.isclose(c, alphas)) and not np.any(np.isclose(c, new)):
                new.append(float(c))
    return sorted(new)


def _endpoint_mode(bn: str, path: PathEvaluator) -> str:
    """How the models at alpha 0 and 1 were evaluated: with their ``"stored"`` statistics or, like every
    other point, after ``"reset"`` / ``"repair"``."""
    if bn == "repair":
        return "repair"
    return "reset" if (bn == "reset" and path.train is not None) else "stored"


def barrier(model_a: nn.Module, model_b: nn.Module, data: Any, *, loss_fn: Optional[Callable] = None,
            points: int = 25, bn: str = "reset", train_data: Any = None, refine: int = 6,
            variant: str = "max_minus_mean", split: str = "test", evaluate_train: bool = True,
            batch_size: int = 512, device: DeviceLike = "auto", progress: ProgressLike = False) -> BarrierResult:
    """Loss and error along ``(1 - a) A + a B`` on ``data`` (and on ``train_data``), with every variant.

    ``points`` evenly spaced alphas (plus 1/2), then ``refine`` more between the grid neighbours of every
    peak of every reported curve (loss and error on each split; the maximum, the maximum above the chord
    and the signed-mc ``t*``).  ``bn`` is the BatchNorm mode (``"interpolate"``, ``"reset"``,
    ``"repair"``); ``reset`` and ``repair`` recompute statistics on ``train_data`` (on ``data``, with a
    warning, when it is missing) at every alpha, both ends included (``settings["bn_endpoints"]``).
    ``variant`` picks the scalar reported as ``loss_barrier_`` / ``error_barrier_``.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r}; choose one of {VARIANTS}")
    alphas = _grid(points)
    test = as_dataset(data, "data")
    train = as_dataset(train_data, "train_data") if train_data is not None else None
    path = PathEvaluator(model_a, model_b, bn=bn, train_data=train, fallback_data=test, batch_size=batch_size,
                         device=device, loss_fn=loss_fn)
    splits: List[Tuple[str, Dataset]] = [(split, test)]
    if train is not None and evaluate_train:
        splits.append(("train", train))
    rows: List[Dict[str, Any]] = []

    def run(alist, bar):
        for a in alist:
            path.model_at(float(a))
            for name, ds in splits:
                ev = evaluate(path.work, ds, loss_fn=loss_fn, batch_size=batch_size, device=path.dev)
                if not np.isfinite(ev["loss"]):
                    raise FloatingPointError(f"loss is {ev['loss']} at alpha={a} on split {name!r}")
                rows.append({"alpha": float(a), "split": name, "loss": ev["loss"], "accuracy": ev["accuracy"],
                             "error": 1.0 - ev["accuracy"]})
            bar.update()

    with Progress(len(alphas) + 2 * refine, "interpolation", progress) as bar:
        run(alphas, bar)
        first = pd.DataFrame(rows)
        curves = []
        for _name, c in first.groupby("split", sort=False):
            c = c.sort_values("alpha")
            curves += [c["loss"].to_numpy(), c["error"].to_numpy()]
        extra = _refined(alphas, curves, refine)
        bar.set_total(bar.done + len(extra))
        run(extra, bar)
    curve = pd.DataFrame(rows).sort_values(["split", "alpha"], kind="stable").reset_index(drop=True)
    settings = dict(points=points, refine=refine, bn=bn, variant=variant, split=split, device=str(path.dev),
                    bn_data=path.bn_data, batch_size=batch_size, data=test.name,
                    bn_endpoints=_endpoint_mode(bn, path), refined=[float(a) for a in extra],
                    train_data=None if train is None else train.name,
                    loss_fn=getattr(loss_fn, "__name__", "cross_entropy") if loss_fn else "cross_entropy",
                    batchnorm=has_batchnorm(model_a))
    return BarrierResult(settings=settings, curve=curve, table=_table(curve))


def summarize(results: Sequence[BarrierResult], *, confidence: float = 0.95,
              labels: Optional[Sequence[Any]] = None) -> pd.DataFrame:
    """Mean and Student-t interval of every barrier variant over several seed pairs.

    One row per (split, metric, variant): ``n``, ``mean``, ``std`` (ddof=1), ``low``, ``high``.
    """
    from scipy import stats

    if not results:
        raise ValueError("results is empty; pass the BarrierResults of one or more seed pairs")
    frames = []
    for i, r in enumerate(results):
        t = r.table.copy()
        t["pair"] = labels[i] if labels is not None else i
        frames.append(t)
    allt = pd.concat(frames, ignore_index=True)
    rows = []
    for (split, metric, variant), g in allt.groupby(["split", "metric", "variant"], sort=False):
        v = g["value"].to_numpy(dtype=np.float64)
        n = len(v)
        mean = float(v.mean())
        std = float(v.std(ddof=1)) if n > 1 else float("nan")
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * std / np.sqrt(n)) if n > 1 else float("nan")
        rows.append({"split": split, "metric": metric, "variant": variant, "n": n, "mean": mean, "std": std,
                     "low": mean - half, "high": mean + half})
    return pd.DataFrame(rows)
