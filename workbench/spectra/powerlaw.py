"""Power-law fit of an empirical spectral density's tail, vectorised over every candidate ``xmin``.

The fit is the weightwatcher-compatible one (``docs/spectra.md``): eigenvalues ``<= thresh`` are dropped;
for each candidate ``xmin`` among the sorted eigenvalues the Hill/MLE exponent
``alpha = 1 + n / sum(log(x / xmin))`` is computed over the tail ``x >= xmin``, together with the
Kolmogorov-Smirnov distance between the empirical tail CDF and the fitted one; the ``xmin`` with the
smallest distance wins.  Spectra with fewer than 20 eigenvalues use the small-sample variant (bias-corrected
exponent, at least 8 tail points, KS distance penalised by ``0.868 / sqrt(n)``), as weightwatcher does.

Where weightwatcher loops over candidates in Python, here all candidates are evaluated at once as a
(candidates x tail) array in chunks, on the device that holds the eigenvalues.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

EVALS_THRESH = 1e-5
SMALL_N = 20
SMALL_N_KMIN = 8


@dataclass
class PowerLawFit:
    """One tail fit: exponent, lower cut-off, KS distance, standard error and tail size."""

    alpha: float
    xmin: float
    D: float
    sigma: float
    num_tail: int
    num_fit: int  # eigenvalues above the threshold that entered the fit

    @classmethod
    def failed(cls, num_fit: int = 0) -> "PowerLawFit":
        return cls(np.nan, np.nan, np.nan, np.nan, 0, num_fit)


def _as_tensor(evals, device=None) -> torch.Tensor:
    if isinstance(evals, torch.Tensor):
        t = evals.detach()
    else:
        t = torch.as_tensor(np.asarray(evals))
    t = t.to(dtype=torch.float64)
    if device is not None:
        t = t.to(device)
    return t.flatten()


def fit_powerlaw(evals, *, thresh: float = EVALS_THRESH, device=None) -> PowerLawFit:
    """Fit the tail of the eigenvalues ``evals`` (any order; array or tensor) and return a :class:`PowerLawFit`."""
    x = _as_tensor(evals, device)
    x = torch.sort(x[x > thresh]).values
    n = int(x.numel())
    if n < 2:
        return PowerLawFit.failed(n)
    logx = torch.log(x)
    # suffix sums of log x: S[i] = sum_{j >= i} log x_j
    suffix = torch.flip(torch.cumsum(torch.flip(logx, [0]), 0), [0])
    idx = torch.arange(n - 1, device=x.device)
    m = (n - idx).to(torch.float64)  # tail sizes for candidates i = 0..n-2
    s = suffix[:-1] - m * logx[:-1]
    small = n < SMALL_N
    with np.errstate(divide="ignore", invalid="ignore"):
        if small:
            alphas = torch.where(s > 1e-12, 1.0 + (m - 1.0) / s, torch.zeros_like(s))
            valid = (m >= SMALL_N_KMIN) & (s > 1e-12) & (alphas > 1.0)
            alphas = torch.where((m >= SMALL_N_KMIN) & (s > 1e-12), alphas, torch.zeros_like(s))
        else:
            alphas = 1.0 + m / s
            valid = alphas > 1.0
    if small and not bool(valid.any()):
        # no admissible candidate: the whole spectrum is the tail (bias-corrected exponent)
        if float(s[0]) <= 1e-12:
            return PowerLawFit(1.0, float(x[0]), 1.0, 0.0, n, n)
        alphas[0] = 1.0 + (n - 1.0) / s[0]
        valid[0] = bool(alphas[0] > 1.0)
    Ds = _ks_distances(logx, alphas, valid, m)
    sigmas = (alphas - 1.0) / torch.sqrt(m)
    # weightwatcher 0.7 ranks the candidates by the KS distance in both regimes (its small-sample
    # objective is computed but then overridden by the KS argmin); we do the same, for parity.
    best = int(torch.argmin(Ds))
    alpha = float(alphas[best])
    return PowerLawFit(alpha, float(x[best]), float(Ds[best]), float(sigmas[best]), int(n - best), n)


def _ks_distances(logx: torch.Tensor, alphas: torch.Tensor, valid: torch.Tensor, m: torch.Tensor,
                  rows: int = 256) -> torch.Tensor:
    """KS distance of every candidate ``i``: max over ``j >= i`` of ``|F_fit(x_j) - (j - i) / m_i|``."""
    n = logx.numel()
    Ds = torch.ones(n - 1, dtype=torch.float64, device=logx.device)
    j = torch.arange(n, device=logx.device, dtype=torch.float64)
    for start in range(0, n - 1, rows):
        stop = min(n - 1, start + rows)
        i = j[start:stop, None]
        # 1 - F_fit = (x_j / x_i) ** (1 - alpha_i); the deviation is |(1 - emp) - (1 - F_fit)|
        e = (logx[None, start:] - logx[start:stop, None]).mul_(1.0 - alphas[start:stop, None]).exp_()
        one_minus_emp = 1.0 - (j[None, start:] - i) / m[start:stop, None]
        dev = e.sub_(one_minus_emp).abs_()
        dev.masked_fill_(j[None, start:] < i, 0.0)
        dmax = torch.nan_to_num(dev.max(dim=1).values, nan=1.0)
        Ds[start:stop] = torch.where(valid[start:stop], dmax, Ds[start:stop])
    return Ds


def bootstrap_alpha(evals, fit: PowerLawFit, *, samples: int = 200, level: float = 0.95, seed: int = 0,
                    mode: str = "tail", thresh: float = EVALS_THRESH) -> tuple:
    """Bootstrap interval ``(lo, hi)`` for ``alpha``.

    ``mode="tail"`` (default) resamples the tail ``x >= xmin`` with replacement at the fitted ``xmin``
    (fast: one vectorised Hill estimate per resample).  ``mode="refit"`` resamples the whole spectrum and
    repeats the full ``xmin`` search each time (slow; includes the uncertainty of ``xmin``).
    """
    if not np.isfinite(fit.alpha) or samples <= 0:
        return (np.nan, np.nan)
    rng = np.random.default_rng(seed)
    x = np.sort(np.asarray(evals, dtype=np.float64).ravel())
    x = x[x > thresh]
    q = ((1 - level) / 2 * 100, (1 + level) / 2 * 100)
    if mode == "tail":
        tail = x[x >= fit.xmin]
        m = len(tail)
        if m < 2:
            return (np.nan, np.nan)
        logs = np.log(tail / fit.xmin)
        draws = logs[rng.integers(0, m, size=(samples, m))].sum(axis=1)
        corr = (m - 1.0) if m < SMALL_N else float(m)
        with np.errstate(divide="ignore"):
            alphas = 1.0 + corr / draws
        alphas = alphas[np.isfinite(alphas)]
    elif mode == "refit":
        alphas = np.array([fit_powerlaw(rng.choice(x, size=len(x), replace=True), thresh=thresh).alpha
                           for _ in range(samples)])
        alphas = alphas[np.isfinite(alphas)]
    else:
        raise ValueError(f"mode={mode!r}: use 'tail' or 'refit'")
    if len(alphas) == 0:
        return (np.nan, np.nan)
    lo, hi = np.percentile(alphas, q)
    return (float(lo), float(hi))


def powerlaw_pdf(x: Sequence[float], alpha: float, xmin: float) -> np.ndarray:
    """Density of the fitted continuous power law on ``[xmin, inf)``."""
    x = np.asarray(x, dtype=np.float64)
    return (alpha - 1.0) / xmin * (x / xmin) ** (-alpha)
