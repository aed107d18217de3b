"""The temperature direction of the three-regime model, over several dense-model seeds.

The paper's reading (``docs/pruning.md``): at a fixed low density, a colder dense model (trained longer, with
larger batches or a smaller learning rate) is more often poorly connected after pruning (regime I).  One
map answers that for one dense seed; :func:`temperature_direction` repeats the map over ``seeds`` and says
in how many the direction shows, two ways:

* ``rho``: the Spearman correlation between coldness (rank from hot to cold) and mc at ``density``;
  negative when colder models are less connected, the paper's direction;
* ``holds``: the regime labels follow the rule of :meth:`RegimeMapResult.pattern` (regime I appears, not at
  the hottest value, and never on the hot side of a value that is not I).
"""
from __future__ import annotations

import dataclasses
from typing import Any, List, Sequence

import numpy as np
import pandas as pd

from ..progress import Progress, ProgressLike
from ..results import FrameResult
from .map import analyze

__all__ = ["DirectionResult", "temperature_direction", "direction_at"]


def direction_at(result, density: float) -> dict:
    """The temperature direction of one map at ``density``: ``rho``, ``holds``, the regimes and mc from hot
    to cold."""
    from scipy import stats

    order = result.hot_to_cold
    frame = result.frame
    densities = np.asarray(sorted(frame["density"].unique()), dtype=float)
    near = densities[np.argmin(np.abs(densities - float(density)))]
    at = frame[frame["density"] == near].set_index("value").loc[order]
    poor = list(at["regime"] == "I")
    holds = bool(any(poor) and not poor[0] and all(not p or all(poor[i:]) for i, p in enumerate(poor)))
    mc = at["mc"].to_numpy(dtype=float)
    rho = (float(stats.spearmanr(np.arange(len(order)), mc).statistic)
           if np.isfinite(mc).all() and np.unique(mc).size > 1 else float("nan"))
    return dict(density=float(near), rho=rho, holds=holds, hot_to_cold=list(order),
                regimes=[str(r) for r in at["regime"]], mc=[float(m) for m in mc])


@dataclasses.dataclass
class DirectionResult(FrameResult):
    """One row per dense-model seed: ``seed``, ``rho``, ``holds``, the regimes and mc from hot to cold."""

    kind = "temperature-direction"

    @property
    def consistent(self) -> bool:
        """Whether mc falls from hot to cold (``rho < 0``) in every seed."""
        return bool(len(self.frame) and (self.frame["rho"] < 0).all())

    def findings(self):
        """How many seeds show the direction, by mc and by the regime labels (:mod:`workbench.findings`)."""
        from ..findings import Finding, fmt, pct

        f, s = self.frame, self.settings
        if not len(f):
            return []
        falls, holds, n = int((f["rho"] < 0).sum()), int(f["holds"].sum()), len(f)
        verdict = ("consistent: every seed shows the paper's direction in mc" if falls == n else
                   "not consistent across seeds")
        return [Finding("temperature_direction_seeds", {"falls": falls, "holds": holds, "seeds": n,
                                                        "rho_min": float(f["rho"].min()),
                                                        "rho_max": float(f["rho"].max())},
                        f"Over {n} dense-model seeds ({s.get('knob')} {s.get('values')}, hot to cold, at density "
                        f"{pct(s.get('density'), 1)}), mc falls from hot to cold in {falls} (Spearman "
                        f"{fmt(f['rho'].min(), 2)} to {fmt(f['rho'].max(), 2)}) and regime I sits only on the cold "
                        f"side in {holds}: {verdict}.", weight=4)]


def temperature_direction(model: Any, data: Any = None, *, train_data: Any = None, knob: str = "batch_size",
                          values: Sequence[Any] = (8, 16, 32, 64, 128, 256), density: float = 0.1,
                          densities: Sequence[float] = (0.05, 0.1), seeds: Sequence[int] = (0, 1, 2),
                          progress: ProgressLike = True, **map_options: Any) -> DirectionResult:
    """The map of :func:`~workbench.pruning.analyze` for each dense-model seed in ``seeds`` (``seed=``
    there), read at ``density`` (the nearest of ``densities``).  ``map_options`` go to ``analyze`` (the
    retraining, ``store=`` to keep finished cells, ``threads=`` ...)."""
    if not len(seeds):
        raise ValueError("seeds is empty; pass the dense-model seeds to compare, e.g. seeds=(0, 1, 2)")
    if "seed" in map_options:
        raise ValueError("pass the dense-model seeds as seeds=, not seed=")
    rows: List[dict] = []
    with Progress(len(seeds), "temperature direction", progress) as bar:
        for s in seeds:
            res = analyze(model, data, train_data=train_data, knob=knob, values=values, densities=densities,
                          seed=int(s), progress=bar.stage(f"dense seed {s}"), **map_options)
            rows.append(dict(seed=int(s), **direction_at(res, density)))
            bar.update()
    settings = dict(knob=knob, values=list(values), density=float(rows[0]["density"]), densities=list(densities),
                    seeds=[int(s) for s in seeds], **{k: v for k, v in map_options.items()
                                                      if isinstance(v, (int, float, str, bool, type(None)))})
    return DirectionResult(settings=settings, frame=pd.DataFrame(rows))
