"""Key findings of landscape results (``LandscapeResult.findings()``, ``LandscapeReport.findings()``;
``docs/landscape.md``)."""
from __future__ import annotations

from typing import List

import numpy as np

from ..findings import Finding, fmt, pct


def map_findings(result) -> List[Finding]:
    out: List[Finding] = []
    kind = result.settings.get("kind", "plane")
    for split in result.splits:
        z = np.asarray(result.loss[split], dtype=float)
        i, j = result.center_index()
        centre = float(z[j, i]) if result.is_plane else float(z[i])
        finite = z[np.isfinite(z)]
        if kind == "eigen_slice":
            out += _quadratic(result, split)
            continue
        if kind == "interpolation":
            out += _interpolation(result, split)
            continue
        if not finite.size:
            continue
        flat = float(np.mean(finite <= centre * 1.1 + 1e-12))
        what = "map" if result.is_plane else "line"
        out.append(Finding(f"{split}_centre", centre,
                           f"On {split}, the loss at the model is {fmt(centre)}; the highest on the {what} is "
                           f"{fmt(finite.max())}, and {pct(flat)} of the points are within 10% of the model's loss.",
                           weight=3))
        if len(finite) < z.size:
            out.append(Finding(f"{split}_non_finite", int(z.size - finite.size),
                               f"{z.size - finite.size} points of the {what} on {split} have a NaN or infinite loss.",
                               weight=4))
    return out


def _interpolation(result, split: str) -> List[Finding]:
    """Loss at both ends of the straight path and whether it falls monotonically between them."""
    a = np.asarray(result.x, dtype=float)
    z = np.asarray(result.loss[split], dtype=float)
    inside = (a >= 0) & (a <= 1)
    za = z[inside]
    if za.size < 2 or not np.isfinite(za).all():
        return []
    ups = np.diff(za)
    bumps = int((ups > 1e-6 * max(1.0, float(np.abs(za).max()))).sum())
    start, end = float(za[0]), float(za[-1])
    shape = ("falls monotonically" if bumps == 0 else
             f"is not monotone ({bumps} of {len(ups)} steps go up; highest {fmt(za.max())})")
    return [Finding(f"{split}_interpolation", {"start": start, "end": end, "rises": bumps},
                    f"On {split}, from the start of the path ({fmt(start)}) to the end ({fmt(end)}) the loss "
                    f"{shape}.", weight=3)]


def _quadratic(result, split: str) -> List[Finding]:
    """How far the loss along the top eigenvector follows ``loss0 + lambda t^2 / 2``."""
    lam = float(result.settings.get("eigenvalue", np.nan))
    loss0 = float(result.settings.get("loss0", {}).get(split, np.nan))
    t = np.asarray(result.x, dtype=float)
    z = np.asarray(result.loss[split], dtype=float)
    q = loss0 + 0.5 * lam * t ** 2
    rise = np.abs(q - loss0)
    inner = np.abs(t) <= 0.25 * np.abs(t).max()
    inner &= rise > 0
    if not inner.any() or not np.isfinite(lam):
        return []
    rel_inner = float(np.median(np.abs((z[inner] - loss0) - (q[inner] - loss0)) / rise[inner]))
    end = int(np.argmax(np.abs(t)))
    verdict = "follows" if rel_inner <= 0.2 else "does not follow"
    curv = _second_difference(t, z, loss0)
    check = (f" The second difference at the innermost steps (t = +/-{fmt(curv[0])}) gives a curvature of "
             f"{fmt(curv[1])} against lambda = {fmt(lam)}." if curv else "")
    return [Finding(f"{split}_quadratic", rel_inner,
                    f"Along the top eigenvector (lambda = {fmt(lam)}) the loss {verdict} the quadratic model near the "
                    f"minimum (median relative deviation of the rise {pct(rel_inner)} in the inner quarter); at "
                    f"t = {fmt(t[end])} it is {fmt(z[end])} where the quadratic model gives {fmt(q[end])}.{check}",
                    weight=4)]


def _second_difference(t: np.ndarray, z: np.ndarray, loss0: float):
    """(h, (L(h) + L(-h) - 2 L(0)) / h^2) at the smallest h with both signs on the grid, or None."""
    for h in np.sort(np.unique(np.abs(t[t != 0]))):
        plus, minus = np.isclose(t, h), np.isclose(t, -h)
        if plus.any() and minus.any():
            value = (z[plus][0] + z[minus][0] - 2 * loss0) / h ** 2
            return (float(h), float(value)) if np.isfinite(value) else None
    return None


def report_findings(report) -> List[Finding]:
    out = map_findings(report.plane) if report.plane is not None else []
    if report.eigen is not None:
        e = report.eigen
        conv = "" if e.converged else " (not converged: raise max_iter)"
        out.append(Finding("top_eigenvalue", float(e.eigenvalues[0]),
                           f"The top Hessian eigenvalue is {fmt(e.eigenvalues[0])}{conv}.", weight=4))
    if report.trace is not None:
        tr = report.trace
        share = ""
        if report.eigen is not None and tr.trace > 0:
            share = f"; the top {len(report.eigen.eigenvalues)} eigenvalues make up " \
                    f"{pct(float(np.sum(report.eigen.eigenvalues)) / tr.trace)} of it"
        out.append(Finding("trace", float(tr.trace),
                           f"The Hessian trace is {fmt(tr.trace)} +/- {fmt(tr.stderr, 2)} (Hutchinson, "
                           f"{len(tr.samples)} vectors){share}.", weight=3))
    return out


def layerwise_findings(result) -> List[Finding]:
    """Which diagonal Hessian block is the sharpest and which carries most of the trace."""
    f = result.frame
    if not len(f):
        return []
    top = f.loc[f["top_eigenvalue"].idxmax()]
    out = [Finding("sharpest_block", {"group": str(top["group"]), "eigenvalue": float(top["top_eigenvalue"])},
                   f"The sharpest Hessian block is {top['group']} (top eigenvalue {fmt(top['top_eigenvalue'])} of "
                   f"{len(f)} blocks).", weight=2)]
    total = float(f["trace"].clip(lower=0).sum())
    if total > 0:
        big = f.loc[f["trace"].idxmax()]
        out.append(Finding("trace_share", {"group": str(big["group"]), "share": float(big["trace"]) / total},
                           f"{big['group']} carries {pct(float(big['trace']) / total)} of the summed block traces.",
                           weight=1))
    return out
