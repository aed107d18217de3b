"""Linear paths between two networks: the architecture check, state interpolation, the path evaluator
and the barrier variants of a curve along the path.

Path: ``theta(a) = (1 - a) theta_A + a theta_B``; ``f(a)`` is the loss or the error (1 - accuracy) on a
named split.  This module is the one place connectivity barriers, landscape interpolation lines and the
pruning regime map's mode connectivity take their path from.  The variants (``docs/connectivity.md``):

* ``max_minus_mean``  (Frankle et al.; Git Re-Basin): ``max_a f(a) - (f(0) + f(1)) / 2``;
* ``max_minus_chord`` (Entezari et al.): ``max_a [f(a) - ((1 - a) f(0) + a f(1))]``;
* ``midpoint``        (Entezari et al.'s code, REPAIR): ``f(1/2) - (f(0) + f(1)) / 2``;
* ``signed_mc``       (Yang et al. 2021): ``(f(0) + f(1))/2 - f(t*)``, ``t* = argmax_t |(f(0) + f(1))/2 - f(t)|``
  (negative: a barrier; positive: the path is better than its ends).

BatchNorm along the path (``bn=``): ``"interpolate"`` (running statistics interpolated like weights),
``"reset"`` (recomputed on the training data at every ``a``, 0 and 1 included, with
:func:`workbench.batchnorm.reset_bn`), ``"repair"`` (:func:`workbench.batchnorm.repair` at every ``a``).
"""
from __future__ import annotations

import copy
import warnings
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from .backend import DeviceLike, resolve_device
from .batchnorm import BATCHNORM_TYPES, has_batchnorm, repair, reset_bn, site_stats
from .data import Dataset, as_dataset

__all__ = ["VARIANTS", "BN_MODES", "check_same_architecture", "interpolate_state", "interpolated_buffers",
           "barrier_variants", "barrier_argmax", "signed_mc", "peak_indices", "repair_sites", "PathEvaluator"]

VARIANTS = ("max_minus_mean", "max_minus_chord", "midpoint", "signed_mc")
BN_MODES = ("interpolate", "reset", "repair")


# --------------------------------------------------------------------------------------------
# the two ends
# --------------------------------------------------------------------------------------------
def check_same_architecture(model_a: nn.Module, model_b: nn.Module) -> None:
    """Raise a ``ValueError`` naming the first entry where the state dicts of the two models differ."""
    for name, m in (("model_a", model_a), ("model_b", model_b)):
        if not isinstance(m, nn.Module):
            raise TypeError(f"{name} must be a torch.nn.Module, got {type(m).__name__}")
    sa, sb = model_a.state_dict(), model_b.state_dict()
    if set(sa) != set(sb):
        diff = sorted(set(sa) ^ set(sb))
        raise ValueError(f"model_a and model_b have different architectures: entries {diff[:5]} are in only "
                         "one of them; pass two models of the same architecture")
    for k in sa:
        if sa[k].shape != sb[k].shape:
            raise ValueError(f"model_a and model_b have different architectures: {k!r} has shape "
                             f"{tuple(sa[k].shape)} in model_a and {tuple(sb[k].shape)} in model_b")


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


def interpolated_buffers(model_a: nn.Module, model_b: nn.Module, alphas: Sequence[float]) -> Dict[str, torch.Tensor]:
    """Every floating buffer (BatchNorm statistics) along the path: name -> ``(len(alphas), *shape)``,
    ``A + a (B - A)`` (extrapolated outside ``[0, 1]``)."""
    ba, bb = dict(model_a.named_buffers()), dict(model_b.named_buffers())
    out = {}
    for k, va in ba.items():
        if va.is_floating_point():
            vb = bb[k].to(va.device)
            at = torch.as_tensor(np.asarray(alphas, dtype=float), dtype=va.dtype, device=va.device)
            out[k] = va[None] + at.view(-1, *([1] * va.dim())) * (vb - va)[None]
    return out


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
    return {
        "max_minus_mean": float(f.max() - mean_ends),
        "max_minus_chord": float((f - chord).max()),
        "midpoint": float(np.interp(0.5, a, f) - mean_ends),
        "signed_mc": signed_mc(f),
    }


def signed_mc(values: Sequence[float]) -> float:
    """Signed mc of a curve ``f(t)`` sampled at increasing ``t`` from 0 to 1 (ends included):
    ``(f(0) + f(1))/2 - f(t*)`` with ``t*`` the point farthest from the mean of the ends."""
    f = np.asarray(values, dtype=float)
    if f.ndim != 1 or f.size < 2:
        raise ValueError("signed_mc needs a 1-D curve of at least 2 points, ends included")
    dev = 0.5 * (f[0] + f[-1]) - f
    return float(dev[int(np.argmax(np.abs(dev)))])


def barrier_argmax(alphas: Sequence[float], values: Sequence[float]) -> Dict[str, float]:
    """The alpha at which each variant is attained."""
    a = np.asarray(alphas, dtype=np.float64)
    f = np.asarray(values, dtype=np.float64)
    chord = (1 - a) * f[np.argmin(a)] + a * f[np.argmax(a)]
    mean_ends = (f[np.argmin(a)] + f[np.argmax(a)]) / 2
    return {"max_minus_mean": float(a[np.argmax(f)]), "max_minus_chord": float(a[np.argmax(f - chord)]),
            "midpoint": 0.5, "signed_mc": float(a[np.argmax(np.abs(mean_ends - f))])}


def peak_indices(alphas: np.ndarray, values: np.ndarray) -> List[int]:
    """Grid indices where the variants of one curve are attained: ``max f``, ``max (f - chord)`` and the
    signed-mc ``t* = argmax |(f(0) + f(1))/2 - f|`` (``alphas`` sorted, from 0 to 1)."""
    f = np.asarray(values, dtype=np.float64)
    chord = (1 - alphas) * f[0] + alphas * f[-1]
    mean_ends = (f[0] + f[-1]) / 2
    return [int(np.argmax(f)), int(np.argmax(f - chord)), int(np.argmax(np.abs(mean_ends - f)))]


# --------------------------------------------------------------------------------------------
# the path evaluator
# --------------------------------------------------------------------------------------------
def repair_sites(model: nn.Module, data: Any = None) -> List[str]:
    """Modules whose output channels REPAIR rescales: a derived permutation spec's hidden sites with an
    affine part.  ``data`` (a few examples suffice) supplies the input used to trace the model; without it
    the input shape is inferred where possible (see :func:`workbench.connectivity.example_input`)."""
    from .connectivity.tracing import permutation_spec  # the tracer lives with the connectivity analysis

    spec = permutation_spec(model, data)
    named = dict(model.named_modules())
    sites = []
    for module, _perm, _kind in spec.sites:
        mod = named.get(module)
        if isinstance(mod, BATCHNORM_TYPES) and mod.affine:
            sites.append(module)
        elif isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) and mod.bias is not None:
            sites.append(module)
    return sites


class PathEvaluator:
    """Models on the straight path A -> B, with one of the BatchNorm modes.

    ``keys`` restricts the interpolation to some state-dict entries (layer-wise LMC): with ``base="a"`` the
    rest stays at A, with ``base="b"`` at B.  ``reset`` and ``repair`` recompute statistics on
    ``train_data`` (on ``fallback_data`` with a warning when it is missing).
    """

    def __init__(self, model_a: nn.Module, model_b: nn.Module, *, bn: str = "reset", train_data: Any = None,
                 fallback_data: Any = None, batch_size: int = 512, device: DeviceLike = "auto",
                 loss_fn: Optional[Callable] = None, keys: Optional[Iterable[str]] = None,
                 base: str = "a"):
        if bn not in BN_MODES:
            raise ValueError(f"bn={bn!r}; choose one of {BN_MODES}")
        if base not in ("a", "b"):
            raise ValueError(f"base={base!r}; choose 'a' or 'b'")
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
        self.train: Optional[Dataset] = None
        if bn == "repair" or (bn == "reset" and has_batchnorm(model_a)):
            self._statistics_data(train_data, fallback_data)
        self.sites: List[str] = []
        if bn == "repair":
            self.sites = repair_sites(model_a, self.train)
            ends = [copy.deepcopy(m).to(self.dev).eval() for m in (model_a, model_b)]
            self.stats_a, self.stats_b = (site_stats(m, self.sites, self.train, batch_size=batch_size,
                                                     device=self.dev) for m in ends)

    def _statistics_data(self, train_data: Any, fallback_data: Any) -> None:
        if train_data is not None:
            self.train, self.bn_data = as_dataset(train_data, "train_data"), "train_data"
            return
        if fallback_data is None:
            raise ValueError(f"bn={self.bn!r} needs train_data= to recompute statistics")
        warnings.warn(f"bn={self.bn!r} without train_data=: statistics are recomputed on the evaluation "
                      "data; pass train_data= for the standard protocol", stacklevel=4)
        self.train, self.bn_data = as_dataset(fallback_data, "data"), "data"

    @property
    def endpoint_mode(self) -> str:
        """How the models at alpha 0 and 1 are evaluated: with their ``"stored"`` statistics or, like every
        other point, after ``"reset"`` / ``"repair"``."""
        if self.bn == "repair":
            return "repair"
        return "reset" if (self.bn == "reset" and self.train is not None) else "stored"

    def state_at(self, alpha: float) -> Dict[str, torch.Tensor]:
        out = interpolate_state(self.state_a, self.state_b, alpha, keys=self.keys)
        if self.keys is not None and self.base == "b":  # the group moves from A to B, the rest stays at B
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
        """Mean loss and accuracy of the model at ``alpha`` on all of ``data``."""
        from .models import evaluate

        return evaluate(self.model_at(alpha), data, loss_fn=self.loss_fn, batch_size=self.batch_size,
                        device=self.dev)

    def curve(self, alphas: Sequence[float], splits: Dict[str, Dataset], *, on_point: Optional[Callable] = None
              ) -> List[Dict[str, Any]]:
        """Rows ``{alpha, split, loss, accuracy, error}`` for every alpha and split (the model at each alpha
        is built once and evaluated on every split); ``on_point()`` is called after each alpha."""
        from .models import evaluate

        rows = []
        for a in alphas:
            model = self.model_at(float(a))
            for name, ds in splits.items():
                ev = evaluate(model, ds, loss_fn=self.loss_fn, batch_size=self.batch_size, device=self.dev)
                if not np.isfinite(ev["loss"]):
                    raise FloatingPointError(f"loss is {ev['loss']} at alpha={a} on split {name!r}")
                rows.append({"alpha": float(a), "split": name, "loss": ev["loss"], "accuracy": ev["accuracy"],
                             "error": 1.0 - ev["accuracy"]})
            if on_point is not None:
                on_point()
        return rows
