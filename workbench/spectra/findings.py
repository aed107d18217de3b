"""Key findings of a spectra result (``SpectraResult.findings()``; ``docs/spectra.md``)."""
from __future__ import annotations

from typing import List

import numpy as np

from ..findings import Finding, fmt, pct

SMALL_FIT = 50  # a power-law fit on fewer eigenvalues than this is read with care


def spectra_findings(result) -> List[Finding]:
    t = result.table
    out: List[Finding] = []
    fitted = t[t["alpha"].notna()]
    out.append(Finding("matrices", int(len(t)), f"{len(t)} weight matrices analysed, {len(result.skipped)} other "
                                                  "parameters listed as not analysed", weight=1))
    if not len(fitted):
        out.append(Finding("alpha", None, "No matrix has enough eigenvalues for a power-law fit.", weight=5))
        return out
    a = fitted["alpha"]
    out.append(Finding("alpha_median", float(a.median()),
                       f"The power-law exponent alpha has a median of {fmt(a.median())} over {len(fitted)} fitted "
                       f"matrices (range {fmt(a.min())} to {fmt(a.max())}).", weight=5))
    bands = {"over-trained": int((a < 2).sum()), "well-trained": int(((a >= 2) & (a <= 6)).sum()),
             "under-trained": int((a > 6).sum())}
    out.append(Finding("alpha_bands", bands,
                       f"{bands['well-trained']} of {len(fitted)} ({pct(bands['well-trained'] / len(fitted))}) fall in "
                       f"the 2-6 band read as well trained; {bands['over-trained']} below 2, "
                       f"{bands['under-trained']} above 6.", weight=4))
    lowest = fitted.loc[a.idxmin()]
    out.append(Finding("lowest_alpha", {"name": lowest["name"], "alpha": float(lowest["alpha"])},
                       f"The heaviest tail is {lowest['name']} (alpha {fmt(lowest['alpha'])}).", weight=2))
    small = fitted[fitted["num_evals"] < SMALL_FIT]
    if len(small):
        out.append(Finding("small_fits", int(len(small)),
                           f"{len(small)} of the fits rest on fewer than {SMALL_FIT} eigenvalues; their alpha and its "
                           "interval are rough.", weight=3))
    out.append(Finding("stable_rank_median", float(np.median(t["stable_rank"].dropna())),
                       f"Median stable rank {fmt(np.median(t['stable_rank'].dropna()))}.", weight=1))
    return out
