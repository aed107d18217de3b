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
:func:`classify_regimes`), and every cell carries a confidence.  The map itself is computed by
:func:`workbench.pruning.analyze` (:mod:`.map`).  Definitions: ``docs/pruning.md``.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Optional, Union

import numpy as np
import pandas as pd

from ..results import FrameResult

KNOBS = ("epochs", "batch_size", "lr")
REGIMES = ("I", "II-A", "II-B")
UNDETERMINED = "n/a"  # label of a cell whose metrics are undefined (NaN mc, or NaN CKA where connected)


# --------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class RegimeMapResult(FrameResult):
    """One row per cell (knob value x density) with the metrics, the regime and its confidence."""

    thresholds: Dict[str, Any] = dataclasses.field(default_factory=dict)
    dense: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    counts: Dict[str, int] = dataclasses.field(default_factory=dict)

    kind = "regime-map"

    def findings(self):
        """The key numbers of the map, each with a sentence (:mod:`workbench.findings`)."""
        from .findings import regime_findings

        return regime_findings(self)

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

    @property
    def hot_to_cold(self) -> List[Any]:
        """The knob values from hottest to coldest (fewer epochs, smaller batches, larger learning rates
        are hotter)."""
        values = sorted(self.frame["value"].unique())
        return values[::-1] if self.knob == "lr" else values

    def pattern(self) -> Dict[str, Any]:
        """The paper's two readings of the map, from its cells (``docs/pruning.md``).

        * ``density_contrast``: for the coldest dense model, the sparsest cell is poorly connected (I) while
          the densest is not, with mc lower when sparse;
        * ``temperature``: at the sparsest density, the cells from hot to cold and whether regime I appears
          only on the cold side (``cold_more_poorly_connected``: at least one cell is I, the hottest is not, and
          no hotter cell is I while a colder one is not).

        Returns those flags with the numbers behind them and a ``text`` stating them.
        """
        f = self.frame
        low, high = float(f["density"].min()), float(f["density"].max())
        order = self.hot_to_cold
        coldest = order[-1]
        at = lambda d, v: f[(f["density"] == d) & (f["value"] == v)].iloc[0]  # noqa: E731
        sparse, dense = at(low, coldest), at(high, coldest)
        contrast = bool(sparse["regime"] == "I" and dense["regime"] != "I" and sparse["mc"] < dense["mc"])
        along = [at(low, v) for v in order]
        poor = [r["regime"] == "I" for r in along]
        cold_side = bool(any(poor) and not poor[0] and all(not p or all(poor[i:]) for i, p in enumerate(poor)))
        steps = ", ".join(f"{v:g}: mc {r['mc']:+.3f} ({r['regime']})" for v, r in zip(order, along))
        text = (f"coldest dense model ({self.knob} = {coldest:g}): mc {sparse['mc']:+.3f} ({sparse['regime']}) at "
                f"density {low:.0%} vs {dense['mc']:+.3f} ({dense['regime']}) at {high:.0%}: "
                + ("poorly connected when sparse, connected when dense, as in the paper" if contrast
                   else "the paper's density contrast does not show at these settings")
                + f". At density {low:.0%}, hot to cold: {steps}: "
                + ("regime I only on the cold side, as in the paper" if cold_side
                   else "regime I at every temperature: no direction shows" if all(poor)
                   else "the temperature direction of the paper does not show"))
        return dict(coldest=coldest, sparse_density=low, dense_density=high, mc_sparse=float(sparse["mc"]),
                    mc_dense=float(dense["mc"]), regime_sparse=str(sparse["regime"]),
                    regime_dense=str(dense["regime"]), density_contrast=contrast, hot_to_cold=list(order),
                    regimes_hot_to_cold=[str(r["regime"]) for r in along],
                    cold_more_poorly_connected=cold_side, text=text)


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
    thresholds = dict(mc=t_mc, mc_noise=sigma_mc, noise_rule=noise, mc_sigmas=float(mc_sigmas), cka=t_cka,
                      cka_noise=sigma_cka, cka_rule=rule)
    return out, thresholds
