"""Marchenko-Pastur soft rank, defined as weightwatcher's ``analyze(mp_fit=True)`` defines ``mp_softrank``.

Steps (weightwatcher 0.7 ``mp_fit`` / ``fit_density_with_range`` / ``resid_mp``):

1. rescale the ESD so its mean eigenvalue is 1 (``evals * len(evals) / sum(evals)``);
2. a linear-kernel density estimate (bandwidth 0.1) of the rescaled eigenvalues (of their square roots when
   ``Q = N/M = 1``) on 1000 points from 0 to ``max + 0.5``, keeping the points where the density exceeds 0.01;
3. ``sigma`` minimising the squared residual between that density and the MP density of aspect ratio ``Q``
   (the quarter-circle law when ``Q = 1``), on the grid ``arange(0.05 s, 2 s, 0.01 s)`` with
   ``s = sqrt(max eigenvalue / (1 + 1/sqrt(Q))**2)``, polished by Nelder-Mead (``scipy.optimize.brute``'s default);
   a sigma whose MP edges miss the density's peak or exceed the grid scores ``1000`` per point;
4. ``mp_softrank = (sigma * (1 + 1/sqrt(Q)))**2 / max``: the fitted bulk edge over the largest eigenvalue.

Near (and, for a finite random matrix, often slightly above) 1 when the whole spectrum is MP bulk; small
when a few large eigenvalues stand far outside the bulk.  The density estimate is computed once (it does not
depend on ``sigma``), so the fit costs milliseconds where weightwatcher re-estimates it at every trial sigma.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import optimize

BANDWIDTH = 0.1
GRID = 1000
DENSITY_THRESH = 0.01


def _linear_kde(data: np.ndarray, x: np.ndarray, bw: float) -> np.ndarray:
    """Density of the linear (triangular) kernel estimate at ``x`` (as scikit-learn's ``KernelDensity``)."""
    out = np.zeros_like(x)
    step = max(1, (1 << 18) // max(1, x.size))  # (grid x chunk) blocks of 2 MB: memory stays small
    for s in range(0, data.size, step):
        d = data[s:s + step]
        out += np.clip(1.0 - np.abs(x[:, None] - d[None, :]) / bw, 0.0, None).sum(axis=1)
    return out / (data.size * bw)


def _mp_density(x: np.ndarray, Q: float, sigma: float):
    a = (sigma * (1 - math.sqrt(1 / Q))) ** 2
    b = (sigma * (1 + math.sqrt(1 / Q))) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        val = np.nan_to_num((1 / (2 * np.pi * sigma * sigma * x * (1 / Q))) * np.sqrt((b - x) * (x - a)))
    return val, a, b


def fit_sigma(evals: np.ndarray, Q: float, *, bw: float = BANDWIDTH) -> float:
    """The MP ``sigma`` fitted to (already rescaled) eigenvalues ``evals``, as weightwatcher fits it."""
    to_fit = np.sqrt(evals) if Q == 1 else evals
    xde = np.linspace(0, np.max(to_fit) + 0.5, GRID)
    yde = _linear_kde(to_fit, xde, bw)
    good = yde > DENSITY_THRESH
    xde, yde = xde[good], yde[good]
    peak = xde[np.argmax(yde)]
    xmax = xde.max()

    def objective(p) -> float:
        sigma = float(np.ravel(p)[0])
        if Q == 1:
            with np.errstate(invalid="ignore"):
                ymp = np.nan_to_num((1 / (np.pi * sigma * sigma)) * np.sqrt(4 - xde ** 2))
            return float(np.sum((ymp - yde) ** 2))
        ymp, a, b = _mp_density(xde, Q, sigma)
        if b < peak or b > xmax or a > peak:
            return 1000.0 ** 2 * xde.size
        return float(np.sum((ymp - yde) ** 2))

    scale = math.sqrt(np.max(evals) / (1 + 1 / math.sqrt(Q)) ** 2)  # from the eigenvalues, also when Q = 1
    grid = np.mgrid[slice(0.05 * scale, 2.0 * scale, 0.01 * scale)]
    scores = np.array([objective(s) for s in grid])
    start = grid[int(np.argmin(scores))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        best = optimize.fmin(objective, start, full_output=True, disp=False)[0]
    return float(np.ravel(best)[0])


def mp_softrank(evals: np.ndarray, N: int, M: int) -> float:
    """weightwatcher's ``mp_softrank`` of an ESD with slices ``N x M`` (``N >= M``); NaN when it cannot fit."""
    ev = np.asarray(evals, dtype=np.float64)
    total = float(ev.sum())
    if ev.size < 2 or not total > 0 or not np.isfinite(total):
        return float("nan")
    x = ev * (ev.size / total)
    Q = N / M
    try:
        sigma = fit_sigma(x, Q)
    except (ValueError, FloatingPointError):
        return float("nan")
    return (sigma * (1 + 1 / math.sqrt(Q))) ** 2 / float(x.max())
