"""``analyze``: the spectral metrics of every weight matrix of a model, batched on the device."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
import pandas as pd
import torch

from ..backend import DeviceLike, resolve_device
from ..progress import Progress, ProgressLike
from ..results import Result
from .extract import WeightMatrix, group_by_shape, iter_matrices
from .mp import mp_softrank
from .powerlaw import EVALS_THRESH, PowerLawFit, bootstrap_alpha, fit_powerlaw

COLUMNS = ["name", "kind", "module", "shape", "N", "M", "rf", "num_evals", "num_params", "lambda_max",
           "norm", "log_norm", "log_spectral_norm", "stable_rank", "effective_rank", "numerical_rank",
           "alpha", "alpha_lo", "alpha_hi", "alpha_sigma", "xmin", "ks_distance", "num_pl_spikes",
           "alpha_weighted", "log_alpha_norm", "mp_softrank", "quality"]
THIN_MIN_EVALS, THIN_MIN_TAIL = 50, 10  # below these an alpha is a rough one (SpectraResult.thin_fits)


@dataclass
class SpectraResult(Result):
    """Per-matrix spectral metrics plus every matrix's eigenvalues.

    ``table``: one row per weight matrix in module order (see :data:`COLUMNS`).  ``evals``: the
    eigenvalues of ``W^T W`` of all matrices concatenated (ascending within each matrix; conv slices
    pooled and scaled as in the table), matrix ``i`` at ``evals[offsets[i]:offsets[i + 1]]``.
    ``skipped``: the parameters not analysed and why.
    """

    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    evals: np.ndarray = field(default_factory=lambda: np.zeros(0))
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    skipped: List[Dict[str, str]] = field(default_factory=list)

    kind = "spectra"

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    @property
    def names(self) -> List[str]:
        return list(self.table["name"])

    def _index(self, layer) -> int:
        if isinstance(layer, (int, np.integer)):
            return int(layer)
        try:
            return self.names.index(layer)
        except ValueError:
            raise KeyError(f"layer={layer!r}: not among the analysed matrices {self.names}") from None

    def thin_fits(self, min_evals: int = THIN_MIN_EVALS, min_tail: int = THIN_MIN_TAIL) -> pd.DataFrame:
        """The matrices whose alpha rests on few points: fewer than ``min_evals`` eigenvalues in all, or
        fewer than ``min_tail`` in the fitted tail (``num_pl_spikes``); matrices without an alpha are not
        listed.  Read such an alpha as rough (``docs/spectra.md``, "Reading the numbers")."""
        t = self.table
        if not len(t):
            return pd.DataFrame(columns=["name", "num_evals", "num_pl_spikes", "alpha"])
        fitted = np.isfinite(t["alpha"].astype(float))
        thin = fitted & ((t["num_evals"] < min_evals) | (t["num_pl_spikes"] < min_tail))
        return t.loc[thin, ["name", "num_evals", "num_pl_spikes", "alpha"]].reset_index(drop=True)

    def esd(self, layer) -> np.ndarray:
        """Eigenvalues (ascending) of one matrix, by name or row number."""
        i = self._index(layer)
        return self.evals[self.offsets[i]:self.offsets[i + 1]]

    def singular_values(self, layer) -> np.ndarray:
        """Singular values (descending) of one matrix, undoing the conv scaling."""
        i = self._index(layer)
        scale2 = 0.5 if self.table["kind"].iloc[i] in ("conv1d", "conv2d") else 1.0
        return np.sqrt(np.clip(self.esd(i)[::-1], 0, None) / scale2)


def _eigenvalues(stack: torch.Tensor, method: str) -> torch.Tensor:
    """Eigenvalues of S^T S for a (k, N, M) stack, N >= M, ascending per slice."""
    if method == "gram":
        gram = stack.transpose(1, 2) @ stack
        return torch.linalg.eigvalsh(gram).clamp_min_(0.0)
    if method == "svd":
        return torch.flip(torch.linalg.svdvals(stack) ** 2, [1])
    raise ValueError(f"method={method!r}: use 'gram' (eigenvalues of W^T W, fastest) or 'svd'")


def _quality(alpha: float) -> str:
    if not np.isfinite(alpha):
        return ""
    return "over-trained" if alpha < 2 else ("under-trained" if alpha > 6 else "well-trained")


def rank_tolerance(lam_max: float, N: int, M: int, dtype: torch.dtype) -> float:
    """Eigenvalues of ``W^T W`` at or below this count as zero in ``numerical_rank``.

    ``lambda_max * max(N, M) * eps(dtype)``: the rounding error of an eigenvalue of the Gram matrix (and of
    a squared singular value) computed in ``dtype``.  On singular values this is a relative threshold of
    ``sqrt(max(N, M) * eps)``, so both methods (``gram`` and ``svd``) report the same rank.
    """
    return float(lam_max) * max(N, M) * float(torch.finfo(dtype).eps) if lam_max > 0 else 0.0


def _metrics(entry: WeightMatrix, ev: np.ndarray, fit: PowerLawFit, ci: tuple,
             dtype: torch.dtype = torch.float64, mp: bool = True) -> Dict[str, Any]:
    lam_max = float(ev.max()) if ev.size else np.nan
    norm = float(ev.sum())
    sv = np.sqrt(ev)
    p = sv / sv.sum() if sv.sum() > 0 else sv
    nz = p[p > 0]
    eff = float(np.exp(-np.sum(nz * np.log(nz)))) if nz.size else 0.0
    coarser = dtype if torch.finfo(dtype).eps >= torch.finfo(entry.slices.dtype).eps else entry.slices.dtype
    n_rank = int(np.count_nonzero(ev > rank_tolerance(lam_max, entry.N, entry.M, coarser)))
    alpha = fit.alpha
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_sn = math.log10(lam_max) if lam_max > 0 else -np.inf
        log_alpha_norm = float(np.log10(np.sum(ev ** alpha))) if np.isfinite(alpha) else np.nan
    return {
        "name": entry.name, "kind": entry.kind, "module": entry.module,
        "shape": "x".join(str(s) for s in entry.shape), "N": entry.N, "M": entry.M, "rf": entry.rf,
        "num_evals": int(ev.size), "num_params": int(np.prod(entry.shape)),
        "lambda_max": lam_max, "norm": norm, "log_norm": math.log10(norm) if norm > 0 else -np.inf,
        "log_spectral_norm": log_sn, "stable_rank": norm / lam_max if lam_max > 0 else np.nan,
        "effective_rank": eff, "numerical_rank": n_rank,
        "alpha": alpha, "alpha_lo": ci[0], "alpha_hi": ci[1], "alpha_sigma": fit.sigma, "xmin": fit.xmin,
        "ks_distance": fit.D, "num_pl_spikes": fit.num_tail,
        "alpha_weighted": alpha * log_sn if np.isfinite(alpha) else np.nan,
        "log_alpha_norm": log_alpha_norm,
        "mp_softrank": mp_softrank(ev, entry.N, entry.M) if mp else np.nan,
        "quality": _quality(alpha),
    }


def analyze(model, data: Any = None, *, device: DeviceLike = "auto", embeddings: bool = True, min_evals: int = 8,
            max_size: Optional[int] = None, method: str = "gram", dtype: torch.dtype = torch.float64,
            bootstrap: int = 200, level: float = 0.95, bootstrap_mode: str = "tail", seed: int = 0,
            batch_elements: int = 1 << 25, mp_fit: bool = True, progress: ProgressLike = True) -> SpectraResult:
    """Spectral metrics of every weight matrix of ``model`` (an ``nn.Module`` or a state dict).

    The analysis reads the weights only: ``data`` must be ``None`` (it is there so that every analysis is
    called the same way, see ``docs/protocol.md``).  Definitions: ``docs/spectra.md``.

    Parameters
    ----------
    device : where the eigenvalues are computed (``"auto"``: CUDA when present).
    embeddings : include ``nn.Embedding`` tables (listed as skipped otherwise).
    min_evals : matrices with fewer eigenvalues get no power-law fit (``alpha`` is NaN), as weightwatcher.
    max_size : skip matrices whose smaller side exceeds this (listed in ``skipped``; none by default).
    method : ``"gram"`` (eigenvalues of ``W^T W``; fastest) or ``"svd"`` (singular values directly).
    dtype : precision of the eigenvalue computation (float64 for parity with weightwatcher).
    bootstrap, level, bootstrap_mode, seed : the bootstrap interval on ``alpha``
        (``bootstrap=0`` turns it off; see :func:`~workbench.spectra.powerlaw.bootstrap_alpha`).
    batch_elements : at most this many matrix entries per batched eigenvalue call.
    mp_fit : compute ``mp_softrank`` (weightwatcher's MP fit, see :mod:`~workbench.spectra.mp`); NaN if False.

    ``numerical_rank`` counts the eigenvalues above ``lambda_max * max(N, M) * eps`` (see
    :func:`rank_tolerance`; ``eps`` of ``dtype`` or of the weights' dtype, whichever is coarser), the same for
    ``method="gram"`` and ``"svd"``.
    """
    if data is not None:
        raise ValueError("spectra.analyze reads only the weights: pass data=None (spectra needs no data)")
    dev = resolve_device(device)
    entries, skipped = iter_matrices(model, embeddings=embeddings)
    if max_size is not None:
        keep = []
        for e in entries:
            if e.M > max_size:
                skipped.append({"name": e.name, "reason": f"min dimension {e.M} > max_size={max_size}"})
            else:
                keep.append(e)
        entries = keep
    if not entries:
        detail = "; ".join(f"{s['name']}: {s['reason']}" for s in skipped[:8]) or "no parameters at all"
        raise ValueError(f"model has no weight matrices to analyse ({detail}). Pass an nn.Module with "
                         "Linear/Conv/Embedding layers or a state dict of 2-D/4-D tensors.")
    for e in entries:
        if not bool(torch.isfinite(e.slices).all()):
            bad = int((~torch.isfinite(e.slices)).sum())
            raise ValueError(f"layer {e.name!r} ({e.module}) has {bad} non-finite weights (NaN/inf); "
                             "fix or drop that layer before analysing")

    evals: List[Optional[np.ndarray]] = [None] * len(entries)
    groups = list(group_by_shape(entries))
    with Progress(len(groups) + len(entries), "spectra", progress) as bar:
        for (n_rows, n_cols), idx in groups:
            per_batch = max(1, batch_elements // (n_rows * n_cols))
            slices = [(i, s) for i in idx for s in range(entries[i].rf)]
            chunks: Dict[int, List[torch.Tensor]] = {i: [] for i in idx}
            for start in range(0, len(slices), per_batch):
                part = slices[start:start + per_batch]
                stack = torch.stack([entries[i].slices[s].to(dtype) * entries[i].scale for i, s in part])
                ev = _eigenvalues(stack.to(device=dev, dtype=dtype), method).to("cpu", torch.float64)
                for (i, _), row in zip(part, ev):
                    chunks[i].append(row)
            for i in idx:
                evals[i] = torch.sort(torch.cat(chunks[i])).values.numpy()
            bar.update()
        rows = []
        for k, (e, ev) in enumerate(zip(entries, evals)):
            if ev.size < min_evals:
                fit, ci = PowerLawFit.failed(int((ev > EVALS_THRESH).sum())), (np.nan, np.nan)
            else:
                fit = fit_powerlaw(torch.from_numpy(ev).to(dev))
                ci = bootstrap_alpha(ev, fit, samples=bootstrap, level=level, seed=seed + k,
                                     mode=bootstrap_mode) if bootstrap else (np.nan, np.nan)
            rows.append(_metrics(e, ev, fit, ci, dtype, mp_fit))
            bar.update()
    table = pd.DataFrame(rows, columns=COLUMNS)
    offsets = np.concatenate([[0], np.cumsum([len(ev) for ev in evals])]).astype(np.int64)
    settings = dict(device=str(dev), embeddings=embeddings, min_evals=min_evals, max_size=max_size,
                    method=method, dtype=str(dtype).replace("torch.", ""), bootstrap=bootstrap, level=level,
                    bootstrap_mode=bootstrap_mode, seed=seed, evals_thresh=EVALS_THRESH,
                    conv_scale="sqrt(1/2) per slice", model=type(model).__name__, variant="weightwatcher",
                    numerical_rank_tol="lambda > lambda_max * max(N, M) * eps(coarser of dtype, weight dtype)",
                    mp_softrank="weightwatcher mp_fit: linear KDE bw 0.1, brute+fmin sigma, bulk edge / lambda_max"
                    if mp_fit else "off")
    return SpectraResult(settings=settings, table=table, evals=np.concatenate(evals), offsets=offsets,
                         skipped=skipped)
