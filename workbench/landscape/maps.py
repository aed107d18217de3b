"""Loss-landscape maps: 1-D lines, 2-D planes, and the interpolation line between two models.

``f(x, y) = L(theta* + x d1 + y d2)`` on a regular grid centred on the model (default 51 x 51 on
``[-1, 1]^2``, which includes the model itself at the centre), evaluated on the whole of each given
split with :func:`workbench.paramspace.evaluate_points` (many grid points per vectorised pass).  A result
keeps loss and accuracy per split, the axes, the origin and the directions, so any point can be
re-evaluated (:meth:`LandscapeResult.theta_at`, :func:`evaluate_at`).  A NaN or infinite loss at a point
is kept as it is (and drawn as a gap with a marker), never an exception.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from ..backend import DeviceLike, describe, resolve_device
from ..batchnorm import has_batchnorm
from ..data import Dataset, as_dataset
from ..paramspace import AffinePoints, evaluate_points, flatten
from ..paths import check_same_architecture, interpolated_buffers
from ..progress import Progress, ProgressLike
from ..results import Result
from ..validation import as_model, check_invariant
from .directions import random_directions

__all__ = ["LandscapeResult", "plane", "line", "interpolate", "evaluate_at", "as_splits"]


@dataclasses.dataclass
class LandscapeResult(Result):
    """Loss and accuracy on a line (``y`` empty) or a plane of parameter space, per data split.

    ``loss[split]`` has shape ``(len(y), len(x))`` for a plane (row ``j`` is ``y[j]``) and ``(len(x),)``
    for a line; the point at ``(x, y)`` is ``origin + x * directions[0] + y * directions[1]``.
    """

    x: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    y: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    loss: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    accuracy: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    origin: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    directions: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0)))
    trajectory: Optional[np.ndarray] = None

    kind = "landscape"

    @property
    def is_plane(self) -> bool:
        return len(self.y) > 0

    @property
    def splits(self) -> list:
        return list(self.loss)

    def to_frame(self) -> pd.DataFrame:
        """One row per (split, grid point): split, x, (y), loss, accuracy, error."""
        frames = []
        for split in self.loss:
            if self.is_plane:
                X, Y = np.meshgrid(self.x, self.y)
                part = pd.DataFrame({"split": split, "x": X.ravel(), "y": Y.ravel(),
                                     "loss": self.loss[split].ravel(), "accuracy": self.accuracy[split].ravel()})
            else:
                part = pd.DataFrame({"split": split, "x": self.x, "loss": self.loss[split],
                                     "accuracy": self.accuracy[split]})
            part["error"] = 1.0 - part["accuracy"]
            frames.append(part)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def findings(self):
        """The key numbers of the map, each with a sentence (:mod:`workbench.findings`)."""
        from .findings import map_findings

        return map_findings(self)

    def theta_at(self, x: float, y: float = 0.0) -> np.ndarray:
        """The flat parameter vector at coordinates ``(x, y)`` (load it with ``paramspace.load_theta``)."""
        theta = self.origin + x * self.directions[0]
        if self.directions.shape[0] > 1:
            theta = theta + y * self.directions[1]
        return theta

    def value_at(self, i: int, j: Optional[int] = None, split: Optional[str] = None) -> Dict[str, float]:
        """Loss and accuracy at grid index ``i`` (x) and ``j`` (y, planes only) on ``split``."""
        split = split or self.splits[0]
        if self.is_plane:
            if j is None:
                raise ValueError("value_at: a plane needs both i (x index) and j (y index)")
            return {"x": float(self.x[i]), "y": float(self.y[j]), "loss": float(self.loss[split][j, i]),
                    "accuracy": float(self.accuracy[split][j, i]), "split": split}
        return {"x": float(self.x[i]), "loss": float(self.loss[split][i]),
                "accuracy": float(self.accuracy[split][i]), "split": split}

    def center_index(self) -> Tuple[int, Optional[int]]:
        i = int(np.argmin(np.abs(self.x)))
        return (i, int(np.argmin(np.abs(self.y)))) if self.is_plane else (i, None)


def as_splits(data: Any, name: str = "data") -> Dict[str, Dataset]:
    """``data`` as a dict split name -> Dataset: a dict stays a dict, anything else becomes one split."""
    if data is None:
        raise ValueError("data is required: pass a Dataset, an (X, y) pair, or a dict like "
                         "{'train': train, 'test': test}")
    if isinstance(data, dict) and not {"X", "y"} <= set(data):
        if not data:
            raise ValueError("data is an empty dict; pass at least one split")
        return {str(k): as_dataset(v, f"data[{k!r}]") for k, v in data.items()}
    return {name: as_dataset(data, "data")}


def _axis(steps: int, lo: float, hi: float, name: str) -> np.ndarray:
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"{name} must be at least 1, got {steps}")
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ValueError(f"span=({lo:g}, {hi:g}): the range must run from a lower to a higher coordinate")
    return np.linspace(lo, hi, steps)


def _centred_axis(steps: int, span: float, name: str = "steps") -> np.ndarray:
    """``steps`` points on ``[-span, span]`` with the model (0) on the grid: ``steps`` must be odd."""
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"{name} must be at least 1, got {steps}")
    if not (np.isfinite(span) and span > 0):
        raise ValueError(f"span={span:g}: the grid covers [-span, span], so span must be a positive number "
                         "(for an asymmetric range along a line use landscape.line's span=(lo, hi))")
    if steps % 2 == 0:
        raise ValueError(f"{name}={steps} is even, so the grid on [-{span:g}, {span:g}] would miss the model "
                         f"(coordinate 0); use an odd number, e.g. {name}={steps + 1}")
    x = np.linspace(-span, span, steps)
    x[steps // 2] = 0.0  # exactly, not up to rounding
    return x


def _axis_with(steps: int, lo: float, hi: float, marks: Tuple[float, ...], name: str = "steps") -> np.ndarray:
    """``steps`` points on ``[lo, hi]`` that must include every coordinate of ``marks`` inside the range."""
    x = _axis(steps, lo, hi, name)
    steps = len(x)
    inside = [m for m in marks if lo <= m <= hi]

    def on_grid(n: int) -> bool:
        if n == 1:
            return all(abs(m - lo) <= 1e-9 * max(1.0, abs(lo)) for m in inside)
        h = (hi - lo) / (n - 1)
        return all(abs((m - lo) / h - round((m - lo) / h)) < 1e-6 for m in inside)

    if not on_grid(steps):
        ok = [n for n in range(2, 20 * steps + 2) if on_grid(n)]
        hint = f"e.g. steps={min(ok, key=lambda n: (abs(n - steps), n))}" if ok else "or change span"
        raise ValueError(f"{name}={steps} on [{lo:g}, {hi:g}] misses {', '.join(f'{m:g}' for m in inside)} "
                         f"(the model{'s' if len(inside) > 1 else ''}); pick {name} so that every one is a grid "
                         f"point, {hint}")
    for m in inside:  # exactly, not up to rounding
        x[int(np.argmin(np.abs(x - m)))] = m
    return x


def _pair(value: Any, name: str) -> Tuple[Any, Any]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be a number or a pair (for x and y), got {value!r}")
        return value[0], value[1]
    return value, value


def _evaluate_splits(model: nn.Module, thetas: torch.Tensor, splits: Dict[str, Dataset], loss_fn, *,
                     bn: str, train_data, batch_size: int, chunk, device, progress, buffers=None,
                     info: Optional[dict] = None, vectorize: Any = "auto"
                     ) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    if train_data is None:  # BatchNorm statistics are recomputed on training data, never on a test split
        train_data = splits.get("train", next(iter(splits.values())))
    loss, acc = {}, {}
    total = thetas.shape[0] * len(splits)
    with Progress(total, "landscape", progress) as bar:
        done = [0]

        def cb(d, _t, _desc):
            bar_done = done[0] + d
            if bar_done > bar.done:
                bar.update(bar_done - bar.done)

        for split, ds in splits.items():
            r = evaluate_points(model, thetas, ds, loss_fn, batch_size=batch_size, chunk=chunk, bn=bn,
                                train_data=train_data, buffers=buffers, device=device,
                                progress=cb if progress else False, info=info, vectorize=vectorize)
            loss[split], acc[split] = r["loss"], r["accuracy"]
            done[0] += thetas.shape[0]
            if bar.done < done[0]:
                bar.update(done[0] - bar.done)
    return loss, acc


def _check_model_point(model: nn.Module, splits: Dict[str, Dataset], loss: Dict[str, np.ndarray], index: Any, *,
                       loss_fn, batch_size: int, device, what: str = "the model") -> None:
    """The map's value at the model itself must be the model's own loss (with its stored statistics)."""
    from ..models import evaluate

    for name, ds in splits.items():
        want = evaluate(model, ds, loss_fn=loss_fn, batch_size=batch_size, device=device)["loss"]
        check_invariant(float(np.asarray(loss[name])[index]), want,
                        f"the map's value at {what} on split {name!r} is not the model's own loss",
                        hint="the flat parameter view does not reproduce the module (a parameter set outside "
                             "named_parameters, or state the forward pass changes); please report the model")


def _settings(model, splits, dev, **kw) -> Dict[str, Any]:
    s = dict(model=type(model).__name__, arch=getattr(model, "arch", None), device=describe(dev),
             splits={k: len(v) for k, v in splits.items()})
    s.update(kw)
    return s


def _bn_data(splits: Dict[str, Dataset], train_data: Any, bn_used: str) -> Optional[str]:
    """Which data BatchNorm statistics were recomputed on: a split's name, ``"train_data"``, or None."""
    if bn_used != "reset":
        return None
    if train_data is not None:
        return "train_data"
    return "train" if "train" in splits else next(iter(splits))


def _directions_for(model: nn.Module, k: int, directions, norm, ignore, seed, orthogonal) -> torch.Tensor:
    theta, spec = flatten(model)
    if directions is None:
        return random_directions(model, k, norm=norm, ignore=ignore, seed=seed, orthogonal=orthogonal)
    d = torch.as_tensor(np.asarray(directions) if not isinstance(directions, torch.Tensor) else directions)
    if d.dim() == 1:
        d = d[None]
    if d.shape[0] < k or d.shape[1] != spec.numel:
        raise ValueError(f"directions has shape {tuple(d.shape)}; expected ({k}, {spec.numel}) for this model")
    return d[:k].to(theta.device, theta.dtype)


def plane(model: nn.Module, data: Any = None, *, loss_fn: Optional[Callable] = None, steps: Any = 51,
          span: Any = 1.0, directions: Any = None, norm: str = "filter", ignore: Optional[str] = "biasbn",
          seed: int = 0, orthogonal: bool = False, bn: str = "eval", train_data: Any = None,
          batch_size: int = 1024, chunk: Optional[int] = None, trajectory: Optional[np.ndarray] = None,
          vectorize: Any = "auto", device: DeviceLike = "auto", progress: ProgressLike = True) -> LandscapeResult:
    """A 2-D loss map ``L(theta* + x d1 + y d2)`` on a regular grid ``[-span, span]^2`` around the model.

    ``steps`` and ``span`` may be pairs ``(x, y)``.  Directions are random (seeded; ``d1`` uses
    ``seed``, ``d2`` ``seed + 1``), normalised by ``norm`` ("filter", "layer", "model", "none") with
    1-D parameters zeroed unless ``ignore=None``; or pass ``directions`` (a ``2 x D`` array, e.g. from
    :func:`~workbench.landscape.pca_directions`).  ``data`` may be a dict of splits,
    ``{"train": ..., "test": ...}``.  ``steps`` must be odd so that the model itself (``x = y = 0``) is
    on the grid (an even number raises a ValueError).
    BatchNorm uses the stored running statistics (``bn="eval"``) or, with ``bn="reset"``, statistics
    recomputed at every point on ``train_data`` (default: the ``"train"`` split, else the first).
    """
    model = as_model(model)
    splits = as_splits(data)
    dev = resolve_device(device)
    nx, ny = _pair(steps, "steps")
    sx, sy = _pair(span, "span")
    x = _centred_axis(nx, float(sx), "steps")
    y = _centred_axis(ny, float(sy), "steps")
    theta, spec = flatten(model)
    d = _directions_for(model, 2, directions, norm, ignore, seed, orthogonal)
    X, Y = np.meshgrid(x, y)  # (ny, nx)
    thetas = AffinePoints(theta, d, np.stack([X.ravel(), Y.ravel()], 1))
    info: Dict[str, Any] = {}
    loss, acc = _evaluate_splits(model, thetas, splits, loss_fn, bn=bn, train_data=train_data,
                                 batch_size=batch_size, chunk=chunk, device=dev, progress=progress, info=info,
                                 vectorize=vectorize)
    loss = {k: v.reshape(len(y), len(x)) for k, v in loss.items()}
    acc = {k: v.reshape(len(y), len(x)) for k, v in acc.items()}
    if info.get("bn", bn) != "reset":  # the centre is the model itself
        _check_model_point(model, splits, loss, (len(y) // 2, len(x) // 2), loss_fn=loss_fn, batch_size=batch_size,
                           device=dev)
    settings = _settings(model, splits, dev, kind="plane", steps=[len(x), len(y)], span=[float(sx), float(sy)],
                         norm=norm if directions is None else "given", ignore=ignore, seed=seed,
                         orthogonal=orthogonal, bn=info.get("bn", bn),
                         bn_data=_bn_data(splits, train_data, info.get("bn", bn)), batch_size=batch_size,
                         chunk=info.get("chunk"),
                         vectorized=info.get("vectorized"),
                         loss_fn=getattr(loss_fn, "__name__", type(loss_fn).__name__) if loss_fn else "cross_entropy")
    return LandscapeResult(settings=settings, x=x, y=y, loss=loss, accuracy=acc,
                           origin=theta.detach().cpu().numpy(), directions=d.detach().cpu().numpy(),
                           trajectory=None if trajectory is None else np.asarray(trajectory, dtype=float))


def line(model: nn.Module, data: Any = None, *, loss_fn: Optional[Callable] = None, steps: int = 51,
         span: Any = 1.0, direction: Any = None, norm: str = "filter", ignore: Optional[str] = "biasbn",
         seed: int = 0, bn: str = "eval", train_data: Any = None, batch_size: int = 1024,
         chunk: Optional[int] = None, vectorize: Any = "auto", device: DeviceLike = "auto",
         progress: ProgressLike = True) -> LandscapeResult:
    """A 1-D loss curve ``L(theta* + x d)`` for ``x`` on ``[-span, span]`` (or ``span=(lo, hi)``).

    The model (``x = 0``) is always a grid point: with a number ``span``, ``steps`` must be odd; with
    ``(lo, hi)`` around 0, ``steps`` must put 0 on the grid (a ValueError suggests a number that does).
    """
    model = as_model(model)
    splits = as_splits(data)
    dev = resolve_device(device)
    if isinstance(span, (tuple, list)):
        lo, hi = map(float, span)
        x = _axis_with(steps, lo, hi, (0.0,), "steps")
    else:
        lo, hi = -float(span), float(span)
        x = _centred_axis(steps, hi, "steps")
    theta, spec = flatten(model)
    d = _directions_for(model, 1, direction, norm, ignore, seed, False)
    thetas = AffinePoints(theta, d, x[:, None])
    info: Dict[str, Any] = {}
    loss, acc = _evaluate_splits(model, thetas, splits, loss_fn, bn=bn, train_data=train_data,
                                 batch_size=batch_size, chunk=chunk, device=dev, progress=progress, info=info,
                                 vectorize=vectorize)
    if info.get("bn", bn) != "reset":
        _check_model_point(model, splits, loss, int(np.argmin(np.abs(x))), loss_fn=loss_fn, batch_size=batch_size,
                           device=dev)
    settings = _settings(model, splits, dev, kind="line", steps=len(x), span=[lo, hi],
                         norm=norm if direction is None else "given", ignore=ignore, seed=seed,
                         bn=info.get("bn", bn), bn_data=_bn_data(splits, train_data, info.get("bn", bn)),
                         batch_size=batch_size, chunk=info.get("chunk"),
                         vectorized=info.get("vectorized"),
                         loss_fn=getattr(loss_fn, "__name__", type(loss_fn).__name__) if loss_fn else "cross_entropy")
    return LandscapeResult(settings=settings, x=x, loss=loss, accuracy=acc, origin=theta.detach().cpu().numpy(),
                           directions=d.detach().cpu().numpy())


def interpolate(model_a: nn.Module, model_b: nn.Module, data: Any = None, *, loss_fn: Optional[Callable] = None,
                steps: int = 41, span: Tuple[float, float] = (-0.5, 1.5), bn: str = "interpolate",
                train_data: Any = None, batch_size: int = 1024, chunk: Optional[int] = None,
                vectorize: Any = "auto", device: DeviceLike = "auto", progress: ProgressLike = True) -> LandscapeResult:
    """Loss along ``theta(a) = (1 - a) theta_A + a theta_B`` for ``a`` on ``span`` (default ``[-0.5, 1.5]``).

    BatchNorm running statistics: ``bn="interpolate"`` (linear in ``a`` like the weights, extrapolated
    outside ``[0, 1]``) or ``"reset"`` (recomputed at every ``a`` on ``train_data``, default the
    ``"train"`` split, else the first).  Both models (``a = 0`` and ``a = 1``, where inside ``span``) must be
    grid points: the default 41 steps on ``[-0.5, 1.5]`` put them there; ``steps`` that do not raise a
    ValueError suggesting a number that does.
    """
    model_a, model_b = as_model(model_a, name="model_a"), as_model(model_b, name="model_b")
    splits = as_splits(data)
    dev = resolve_device(device)
    check_same_architecture(model_a, model_b)
    ta, _spec = flatten(model_a)
    tb, _ = flatten(model_b)
    if bn not in ("interpolate", "reset"):
        raise ValueError(f"bn={bn!r}; choose 'interpolate' or 'reset'")
    lo, hi = map(float, span)
    a = _axis_with(steps, lo, hi, (0.0, 1.0), "steps")
    d = (tb.to(ta.device) - ta)[None]
    thetas = AffinePoints(ta, d, a[:, None])
    has_bn = has_batchnorm(model_a)
    buffers = interpolated_buffers(model_a, model_b, a) if has_bn and bn == "interpolate" else None
    info: Dict[str, Any] = {}
    loss, acc = _evaluate_splits(model_a, thetas, splits, loss_fn, bn="reset" if bn == "reset" else "eval",
                                 train_data=train_data,
                                 batch_size=batch_size, chunk=chunk, device=dev, progress=progress, buffers=buffers,
                                 info=info, vectorize=vectorize)
    if bn != "reset" or not has_bn:  # the ends are the two models themselves
        for end, model in ((0.0, model_a), (1.0, model_b)):
            if lo <= end <= hi:
                _check_model_point(model, splits, loss, int(np.argmin(np.abs(a - end))), loss_fn=loss_fn,
                                   batch_size=batch_size, device=dev, what=f"alpha={end:g}")
    settings = _settings(model_a, splits, dev, kind="interpolation", steps=len(a), span=[lo, hi],
                         bn=bn if has_bn else "none", bn_data=_bn_data(splits, train_data, bn if has_bn else "none"),
                         batch_size=batch_size, chunk=info.get("chunk"),
                         vectorized=info.get("vectorized"),
                         loss_fn=getattr(loss_fn, "__name__", type(loss_fn).__name__) if loss_fn else "cross_entropy")
    return LandscapeResult(settings=settings, x=a, loss=loss, accuracy=acc, origin=ta.detach().cpu().numpy(),
                           directions=d.detach().cpu().numpy())


def evaluate_at(model: nn.Module, data: Any, *, result: LandscapeResult, coords: Any,
                loss_fn: Optional[Callable] = None, bn: Optional[str] = None, train_data: Any = None,
                batch_size: Optional[int] = None, device: DeviceLike = "auto") -> Dict[str, Any]:
    """Re-evaluate ``model``'s architecture at coordinates ``coords`` (``(P, k)``) of a result's map.

    By default the settings the map recorded are used, so a grid point gives back the stored value:
    ``bn`` (``"eval"`` or ``"reset"``) and ``batch_size``.  With ``bn="reset"`` the statistics are
    recomputed on ``train_data``; when it is not given, on the split the map used (``settings["bn_data"]``),
    taken from ``data`` when ``data`` is a dict of splits that holds it, or ``data`` itself when the map had
    that one split.  ``data`` may be one data
    set (the result is ``{"loss": (P,), "accuracy": (P,)}``) or a dict of splits (a dict of those).
    """
    model = as_model(model)
    c = np.atleast_2d(np.asarray(coords, dtype=float))
    k = result.directions.shape[0]
    if c.shape[1] != k:
        raise ValueError(f"coords has {c.shape[1]} columns; this result has {k} direction(s)")
    recorded = result.settings.get("bn", "eval")
    if bn is None:
        if recorded == "interpolate" and has_batchnorm(model):
            raise ValueError("this interpolation interpolated BatchNorm statistics between two models, which "
                             "evaluate_at cannot rebuild from one model; pass bn='eval' or bn='reset', or run "
                             "interpolate() again")
        bn = recorded if recorded in ("eval", "reset") else "eval"
    if batch_size is None:
        batch_size = int(result.settings.get("batch_size") or 1024)
    many = isinstance(data, dict) and not {"X", "y"} <= set(data)
    splits = as_splits(data)
    if bn == "reset" and train_data is None and has_batchnorm(model):
        source = result.settings.get("bn_data")
        if many and source in splits:
            train_data = splits[source]
        elif not many and source is not None and list(result.settings.get("splits", {})) == [source]:
            train_data = next(iter(splits.values()))
        else:
            raise ValueError(f"bn='reset' recomputes BatchNorm statistics on training data: pass train_data= "
                             f"(the map used split {source!r}), or data as a dict of splits holding {source!r}")
    thetas = AffinePoints(torch.as_tensor(result.origin), torch.as_tensor(result.directions), c)
    out = {name: evaluate_points(model, thetas, ds, loss_fn, batch_size=batch_size, bn=bn, train_data=train_data,
                                 device=device) for name, ds in splits.items()}
    return out if many else next(iter(out.values()))
