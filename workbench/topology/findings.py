"""Key findings of a topology report (``TopologyReport.findings()``; ``docs/topology.md``)."""
from __future__ import annotations

from typing import List

import numpy as np

from ..findings import Finding, fmt, pct


def topology_findings(report, target: str = "hits@10") -> List[Finding]:
    out: List[Finding] = []
    s = report.shift
    if s.get("nodes"):
        out.append(Finding("distribution_shift", {"train": s["mean_train"], "test": s["mean_test"]},
                           f"Mean Train-TC {fmt(s['mean_train'])} against mean Test-TC {fmt(s['mean_test'])} over "
                           f"{s['nodes']} nodes; {pct(s['fraction_train_above_test'])} of them have a higher "
                           "Train-TC: new neighbours are less embedded in a node's neighbourhood than its old ones."
                           if s["mean_train"] > s["mean_test"] else
                           f"Mean Train-TC {fmt(s['mean_train'])} is not above mean Test-TC "
                           f"{fmt(s['mean_test'])} here.",
                           weight=4))
    c = report.correlations
    c = c[c["target"] == target].set_index("predictor")
    if {"tc_test", "degree_train"} <= set(c.index):
        tc, deg = float(c.loc["tc_test", "spearman"]), float(c.loc["degree_train", "spearman"])
        n = int(c.loc["tc_test", "n"])
        better = np.isfinite(tc) and np.isfinite(deg) and abs(tc) > abs(deg)
        out.append(Finding("tc_vs_degree", {"tc_test": tc, "degree_train": deg},
                           f"Over {n} test nodes, Test-TC correlates with {target} at Spearman {fmt(tc, 2)}, "
                           f"training degree at {fmt(deg, 2)}: "
                           + ("TC tracks per-node performance better than degree." if better
                              else "TC does not track per-node performance better than degree here."), weight=5))
    if report.settings.get("variant") == "atc":
        ag = report.atc_agreement or {}
        out.append(Finding("tc_sample", ag,
                           f"Exact TC was computed on a seeded sample of {ag.get('n_test', 0)} test nodes only (its "
                           f"estimated cost {fmt(report.settings.get('tc_cost'))} is above tc_limit); ATC agrees "
                           f"with it at Spearman {fmt(ag.get('test'), 2)} on the test split.", weight=4))
    perf = report.nodes[target].dropna() if target in report.nodes else []
    if len(perf):
        out.append(Finding("mean_performance", float(np.mean(perf)),
                           f"Mean per-node {target} of the {report.settings.get('model')} predictor: "
                           f"{fmt(np.mean(perf))}.", weight=2))
    return out
