"""Key findings of a regime map (``RegimeMapResult.findings()``; ``docs/pruning.md``)."""
from __future__ import annotations

from typing import List

from ..findings import Finding, fmt, pct


def regime_findings(result) -> List[Finding]:
    f = result.frame
    out: List[Finding] = []
    counts = {r: int((f["regime"] == r).sum()) for r in ("I", "II-A", "II-B", "n/a")}
    out.append(Finding("regime_counts", counts,
                       f"Of {len(f)} cells, {counts['I']} are poorly connected (I), {counts['II-A']} well connected "
                       f"with lower CKA (II-A) and {counts['II-B']} well connected with high CKA (II-B)"
                       + (f"; {counts['n/a']} could not be labelled" if counts["n/a"] else "") + ".", weight=5))
    if f["value"].nunique() and f["density"].nunique():
        p = result.pattern()
        contrast = ("poorly connected when sparse and connected when dense, as in the paper" if p["density_contrast"]
                    else "the paper's density contrast does not show")
        out.append(Finding("density_contrast", p["density_contrast"],
                           f"For the coldest dense model ({result.knob} = {fmt(p['coldest'])}), mc is "
                           f"{fmt(p['mc_sparse'])} ({p['regime_sparse']}) at density {pct(p['sparse_density'], 1)} "
                           f"and {fmt(p['mc_dense'])} ({p['regime_dense']}) at {pct(p['dense_density'], 1)}: "
                           f"{contrast}.", weight=4))
        regimes = p["regimes_hot_to_cold"]
        direction = ("regime I only on the cold side, as in the paper" if p["cold_more_poorly_connected"]
                     else "regime I at every temperature, so no direction shows" if all(r == "I" for r in regimes)
                     else "no regime I, so no direction shows" if "I" not in regimes
                     else "the paper's temperature direction does not show")
        steps = ", ".join(f"{fmt(v)}: {r}" for v, r in zip(p["hot_to_cold"], regimes))
        out.append(Finding("temperature_direction", p["cold_more_poorly_connected"],
                           f"At density {pct(p['sparse_density'], 1)}, from hot to cold ({result.knob} {steps}): "
                           f"{direction}.", weight=3))
    best = f.loc[f["test_error"].idxmin()]
    out.append(Finding("best_cell", {"value": best["value"], "density": float(best["density"])},
                       f"The lowest test error, {fmt(best['test_error'])}, is at {result.knob} = {fmt(best['value'])} "
                       f"and density {pct(best['density'], 1)}.", weight=2))
    return out
