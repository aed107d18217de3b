"""Loss and error along the straight path between two networks, with every named barrier variant.

The path, the BatchNorm modes and the variants are those of :mod:`workbench.paths`
(``docs/connectivity.md``): ``max_minus_mean``, ``max_minus_chord``, ``midpoint`` and ``signed_mc``; BatchNorm
``interpolate``, ``reset`` or ``repair``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
import torch.nn as nn

from ..backend import DeviceLike
from ..batchnorm import has_batchnorm
from ..paths import BN_MODES, VARIANTS, PathEvaluator, barrier_argmax, barrier_variants, peak_indices
from ..progress import Progress, ProgressLike
from ..results import Result
from ..validation import as_model, check_invariant, probe

__all__ = ["BarrierResult", "barrier", "summarize", "BN_MODES", "VARIANTS"]


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
            if metric == "error" and c["error"].isna().all():  # no accuracy (regression, language models)
                continue
            vals = barrier_variants(c["alpha"], c[metric])
            where = barrier_argmax(c["alpha"].to_numpy(), c[metric].to_numpy())
            for v in VARIANTS:
                rows.append({"split": split, "metric": metric, "variant": v, "value": vals[v], "alpha": where[v]})
    return pd.DataFrame(rows)


def _grid(points: int) -> np.ndarray:
    if points < 3:
        raise ValueError(f"points={points}: use at least 3 (25 or more for the standard protocol)")
    return np.unique(np.concatenate([np.linspace(0.0, 1.0, points), [0.5]]))


def _refined(alphas: np.ndarray, curves: Sequence[np.ndarray], refine: int) -> List[float]:
    """New alphas, ``refine`` between the grid neighbours of each peak of each curve (see
    :func:`workbench.paths.peak_indices`); peaks at an end of the path and points already on the grid add nothing."""
    if refine <= 0:
        return []
    alphas = np.asarray(alphas, dtype=np.float64)
    peaks = sorted({i for values in curves for i in peak_indices(alphas, values)})
    new: List[float] = []
    for i in peaks:
        if i in (0, len(alphas) - 1):
            continue
        cand = np.linspace(alphas[i - 1], alphas[i + 1], refine + 2)[1:-1]
        for c in cand:
            if not np.any(np.isclose(c, alphas)) and not np.any(np.isclose(c, new)):
                new.append(float(c))
    return sorted(new)


def _check_endpoints(model_a: nn.Module, model_b: nn.Module, curve: pd.DataFrame, splits, *, loss_fn,
                     batch_size: int, device) -> None:
    """With stored statistics the path's ends are the two models: their losses must be the models' own."""
    from ..models import evaluate

    for name, ds in splits.items():
        c = curve[curve["split"] == name].set_index("alpha")["loss"]
        for end, model in ((0.0, model_a), (1.0, model_b)):
            want = evaluate(model, ds, loss_fn=loss_fn, batch_size=batch_size, device=device)["loss"]
            check_invariant(float(c.loc[end]), want, f"the path's loss at alpha={end:g} on split {name!r} is not "
                            f"model_{'ab'[int(end)]}'s own loss",
                            hint="the state dict does not carry everything the forward pass uses")


def barrier(model_a: nn.Module, model_b: nn.Module, data: Any, *, loss_fn: Optional[Callable] = None,
            points: int = 25, bn: str = "reset", train_data: Any = None, refine: int = 6,
            variant: str = "max_minus_mean", split: str = "test", evaluate_train: bool = True,
            batch_size: int = 512, device: DeviceLike = "auto", progress: ProgressLike = True) -> BarrierResult:
    """Loss and error along ``(1 - a) A + a B`` on ``data`` (and on ``train_data``), with every variant.

    ``points`` evenly spaced alphas (plus 1/2), then ``refine`` more between the grid neighbours of every
    peak of every reported curve (loss and error on each split; the maximum, the maximum above the chord
    and the signed-mc ``t*``).  ``bn`` is the BatchNorm mode (``"interpolate"``, ``"reset"``,
    ``"repair"``); ``reset`` and ``repair`` recompute statistics on ``train_data`` (on ``data``, with a
    warning, when it is missing) at every alpha, both ends included (``settings["bn_endpoints"]``).
    ``variant`` picks the scalar reported as ``loss_barrier_`` / ``error_barrier_``.
    """
    model_a, model_b = as_model(model_a, name="model_a"), as_model(model_b, name="model_b")
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r}; choose one of {VARIANTS}")
    alphas = _grid(points)
    test = probe(model_a, data, loss_fn=loss_fn, name="data")
    train = probe(model_a, train_data, loss_fn=loss_fn, name="train_data") if train_data is not None else None
    path = PathEvaluator(model_a, model_b, bn=bn, train_data=train, fallback_data=test, batch_size=batch_size,
                         device=device, loss_fn=loss_fn)
    splits = {split: test}
    if train is not None and evaluate_train:
        splits["train"] = train
    rows: List[Dict[str, Any]] = []
    with Progress(len(alphas) + 2 * refine, "interpolation", progress) as bar:
        rows += path.curve(alphas, splits, on_point=bar.update)
        first = pd.DataFrame(rows)
        curves = []
        for _name, c in first.groupby("split", sort=False):
            c = c.sort_values("alpha")
            curves += [c["loss"].to_numpy(), c["error"].to_numpy()]
        extra = _refined(alphas, curves, refine)
        bar.set_total(bar.done + len(extra))
        rows += path.curve(extra, splits, on_point=bar.update)
    curve = pd.DataFrame(rows).sort_values(["split", "alpha"], kind="stable").reset_index(drop=True)
    if path.endpoint_mode == "stored":
        _check_endpoints(model_a, model_b, curve, splits, loss_fn=loss_fn, batch_size=batch_size, device=path.dev)
    settings = dict(points=points, refine=refine, bn=bn, variant=variant, split=split, device=str(path.dev),
                    bn_data=path.bn_data, batch_size=batch_size, data=test.name,
                    bn_endpoints=path.endpoint_mode, refined=[float(a) for a in extra],
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
