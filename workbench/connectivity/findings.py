"""Key findings of a connectivity result (``ConnectivityResult.findings()``; ``docs/connectivity.md``)."""
from __future__ import annotations

from typing import List

import numpy as np

from ..findings import Finding, fmt

NAMES = {"weight": "weight matching", "activation": "activation matching"}


def connectivity_findings(result) -> List[Finding]:
    out: List[Finding] = []
    variant = result.settings.get("variant", "max_minus_mean")
    imp = result.improvement(metric="loss", variant=variant)
    if not len(imp):
        return out
    base = imp.iloc[0]
    out.append(Finding("loss_barrier", float(base["barrier"]),
                       f"The loss barrier ({variant}) between the two models is {fmt(base['barrier'])} on the "
                       f"{result.settings.get('split', 'test')} split.", weight=5))
    for _, row in imp.iloc[1:].iterrows():
        name = NAMES.get(row["model"], row["model"])
        ratio = row["ratio"]
        dist = row["l2"] / row["l2_original"] if row["l2_original"] else np.nan
        phenomenon = ("the barrier falls by an order of magnitude while the distance falls only a little, as "
                      "reported for permutation-aligned networks" if ratio <= 0.1 and dist >= 0.5
                      else "the barrier does not fall by an order of magnitude here" if ratio > 0.1 else
                      "the barrier falls by an order of magnitude and the distance by more than half")
        out.append(Finding(f"loss_barrier_{row['model']}", float(row["barrier"]),
                           f"After {name} it is {fmt(row['barrier'])} ({fmt(ratio)} of before), while the L2 distance "
                           f"to model A goes from {fmt(row['l2_original'])} to {fmt(row['l2'])} ({fmt(dist)} of "
                           f"before): {phenomenon}.", weight=4))
    errors = result.table[(result.table["metric"] == "error") & (result.table["variant"] == variant)
                          & (result.table["split"] == result.settings.get("split", "test"))]
    if len(errors):
        e = errors.set_index("model")["value"]
        out.append(Finding("error_barrier", {k: float(v) for k, v in e.items()},
                           "Error barrier: " + ", ".join(f"{fmt(v)} ({NAMES.get(k, k)})" for k, v in e.items()) + ".",
                           weight=2))
    if len(result.merged):
        m = result.merged.set_index("model")["accuracy"]
        if np.isfinite(m).all():
            out.append(Finding("merged_accuracy", {k: float(v) for k, v in m.items()},
                               "The midpoint model reaches accuracy " + ", ".join(
                                   f"{fmt(v)} ({NAMES.get(k, k)})" for k, v in m.items()) + ".", weight=2))
    return out


def seed_findings(before, after=None, *, metric: str = "loss", variant: str = "max_minus_mean",
                  split: str = "test", confidence: float = 0.95) -> List[Finding]:
    """Findings of :func:`~workbench.connectivity.summarize` tables over seed pairs: the mean barrier and its
    interval before alignment and, when ``after`` is given, after it."""
    out: List[Finding] = []
    for label, frame in (("before alignment", before), ("after weight matching", after)):
        if frame is None:
            continue
        row = frame[(frame["metric"] == metric) & (frame["variant"] == variant) & (frame["split"] == split)]
        if not len(row):
            continue
        r = row.iloc[0]
        interval = (f", {confidence:.0%} interval {fmt(r['low'])} to {fmt(r['high'])}" if np.isfinite(r["low"])
                    else " (one pair: no interval)")
        key = "seeds_" + ("before" if frame is before else "after")
        out.append(Finding(key, {"mean": float(r["mean"]), "low": float(r["low"]), "high": float(r["high"]),
                                 "n": int(r["n"])},
                           f"Over {int(r['n'])} seed pair{'s' if r['n'] != 1 else ''} the {metric} barrier {label} "
                           f"is {fmt(r['mean'])} on average{interval}.", weight=3))
    return out
