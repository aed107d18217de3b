"""Key findings of intrinsic-dimension results (``SearchResult.findings()``, ``ProfileResult.findings()``;
``docs/intrinsic-dimension.md``)."""
from __future__ import annotations

from typing import List

from ..findings import Finding, fmt, pct


def search_findings(result, name: str = "") -> List[Finding]:
    label = f"{name} " if name else ""
    s = result.settings
    threshold = int(round(100 * s.get("threshold", 0.9)))
    if not result.reached:
        return [Finding(f"{name or 'model'}_d_int", None,
                        f"{label}d_int{threshold} is not reached up to d = {s.get('d_max')} (D = {result.D:,}; "
                        f"{s.get('split', 'test')} accuracy target {fmt(result.target)}).", weight=5)]
    lo, hi = result.interval
    seeds = len(s.get("seeds") or [])
    interval = (f"95% bootstrap interval {fmt(lo)}-{fmt(hi)} over {seeds} seeds" if seeds > 1
                else "one seed: no interval")
    return [Finding(f"{name or 'model'}_d_int", float(result.d_int90),
                    f"{label}d_int{threshold} = {fmt(result.d_int90)} ({interval}), "
                    f"{pct(result.d_int90 / result.D, 2)} of its D = {result.D:,} parameters, for "
                    f"{s.get('split', 'test')} accuracy {fmt(result.target)} = {s.get('threshold')} x the "
                    f"{'full-training' if s.get('baseline') == 'full' else 'fixed'} baseline {fmt(result.baseline)}.",
                    weight=5)]


def profile_findings(result) -> List[Finding]:
    f = result.frame.dropna(subset=["dimension"])
    if not len(f):
        return []
    lo, hi = f.loc[f["dimension"].idxmin()], f.loc[f["dimension"].idxmax()]
    return [Finding("layer_id_range", {"min": float(lo["dimension"]), "max": float(hi["dimension"])},
                    f"The representations' intrinsic dimension ({result.settings.get('estimator')}) runs from "
                    f"{fmt(lo['dimension'])} (at layer {lo['layer']}) to {fmt(hi['dimension'])} "
                    f"(at layer {hi['layer']}) over {len(f)} layers.", weight=3)]


def comparison_findings(results, *, reference: str = "mlp", shuffled: str = "mlp (shuffled)") -> List[Finding]:
    """The papers' orderings read off several searches (a dict name -> SearchResult): every other model
    against ``reference`` (Li et al. 2018 found a CNN's d_int90 below a fully connected network's on MNIST),
    and ``shuffled`` labels against true ones (memorising needs a much larger d)."""
    out: List[Finding] = []
    if reference not in results:
        return out
    ref = results[reference]
    for name, res in results.items():
        if name in (reference, shuffled):
            continue
        c = res.compare(ref, names=(name, reference))
        if not c["decided"]:
            verdict = "undecided"
        elif c["lower"] == name and c["overlap"] is False:
            verdict = "the paper's ordering holds"
        elif c["lower"] == name:
            verdict = "lower, but not settled at this number of seeds"
        elif c["lower"] == reference:
            verdict = "the paper's ordering does not hold here"
        else:
            verdict = "equal"
        out.append(Finding(f"{name}_vs_{reference}", {"ratio": c["ratio"], "lower": c["lower"],
                                                      "overlap": c["overlap"]},
                           f"{c['text']}: {verdict}.", weight=4))
    if shuffled in results and ref.reached:
        c = results[shuffled].compare(ref, names=("shuffled labels", "true labels"), much=10)
        out.append(Finding("shuffled_vs_true", {"ratio": c["ratio"], "much": c.get("much")},
                           f"{c['text']} (training accuracy for shuffled labels, test accuracy for true ones).",
                           weight=3))
    return out
