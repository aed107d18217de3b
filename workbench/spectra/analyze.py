"""``analyze``: the spectral metrics of every weight matrix of a model, batched on the device."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
import pandas as pd
import torch

from ..backend import DeviceLike, check_allocation, resolve_device, run_halving
from ..progress import Progress, ProgressLike
from ..results import Result
from .checkpoint import open_matrices
from .extract import WeightMatrix, group_by_shape
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

    def findings(self):
        """The key numbers of the result, each with a sentence (:mod:`workbench.findings`)."""
        from .findings import spectra_findings

        return spectra_findings(self)

    @property
    def names(self) -> List[str]:
        return list(self.table["name"])

    def _index(self, layer) -> int:
        if isinstance(layer, (int, np.integer)):
            n = len(self.table)
            if not -n <= int(layer) < n:
                raise IndexError(f"layer={int(layer)}: the result has {n} matrices (rows 0 to {n - 1}); pass a row "
                                 f"number in that range or a name from result.names")
            return int(layer) % n
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
        return _gram_eigenvalues(stack.transpose(1, 2) @ stack)
    if method == "svd":
        return torch.flip(torch.linalg.svdvals(stack) ** 2, [1])
    raise ValueError(f"method={method!r}: use 'gram' (eigenvalues of W^T W, fastest) or 'svd'")


def _gram_eigenvalues(gram: torch.Tensor) -> torch.Tensor:
    return torch.linalg.eigvalsh(gram).clamp_min_(0.0)


def _batches(entries: List[WeightMatrix], batch_elements: int) -> List[List[int]]:
    """Indices of same-shape entries, consecutive in shape-group order, at most ``batch_elements`` slice
    entries per batch (a larger tensor makes a batch of its own; ``0``: one tensor per batch)."""
    out: List[List[int]] = []
    for (n_rows, n_cols), idx in group_by_shape(entries):
        batch: List[int] = []
        size = 0
        for i in idx:
            cost = entries[i].rf * n_rows * n_cols
            if batch and size + cost > batch_elements:
                out.append(batch)
                batch, size = [], 0
            batch.append(i)
            size += cost
        out.append(batch)
    return out


def _batch_eigenvalues(entries: List[WeightMatrix], batch: List[int], load, dtype: torch.dtype, dev,
                       method: str, release=lambda: None) -> List[torch.Tensor]:
    """Eigenvalues (CPU float64, ascending) of each entry in ``batch``, all slices in one call.

    Each weight is read by ``load(entry)`` only while it is copied (scaled) into one working-``dtype``
    stack on ``dev``; for ``method="gram"`` the stack is released before the eigenvalue call, so the memory
    held is the stack, then the Gram matrices and their eigenvalues.  ``release()`` is called whenever a
    large buffer has been freed (a streamed checkpoint hands that memory back to the system there).
    """
    first = entries[batch[0]]
    stack = torch.empty((sum(entries[i].rf for i in batch), first.N, first.M), dtype=dtype, device=dev)
    start = 0
    for i in batch:
        e = entries[i]
        w = load(e)
        stack[start:start + e.rf].copy_(w)
        del w
        release()
        if e.scale != 1.0:
            stack[start:start + e.rf].mul_(e.scale)
        start += e.rf
    if method == "gram":
        gram = stack.transpose(1, 2) @ stack
        del stack
        release()
        ev = _gram_eigenvalues(gram)
        del gram
        release()
    else:
        ev = _eigenvalues(stack, method)
    ev = ev.to("cpu", torch.float64)
    return [part.reshape(-1) for part in torch.split(ev, [entries[i].rf for i in batch])]


def eigen_bytes(entries: List[WeightMatrix], batch: List[int], dtype: torch.dtype, method: str) -> int:
    """Peak memory of one eigenvalue call on ``batch``: the ``(k, N, M)`` stack in ``dtype`` plus, for
    ``"gram"``, its ``M x M`` Gram matrices and the copy the symmetric eigensolver works on (``"svd"``:
    the stack and the solver's copy of it)."""
    first = entries[batch[0]]
    k, n_rows, n_cols = sum(entries[i].rf for i in batch), first.N, first.M
    per = n_rows * n_cols + 2 * n_cols * n_cols if method == "gram" else 2 * n_rows * n_cols + n_cols
    return k * per * (torch.finfo(dtype).bits // 8)


def _split_eigenvalues(entries: List[WeightMatrix], batch: List[int], reader, dtype: torch.dtype, dev,
                       method: str, record: Dict[str, Any]):
    """``(index, eigenvalues)`` of every entry in ``batch``: one call, or halves of the batch (and halves of
    those) while a call does not fit in memory (``record`` counts the calls and halvings)."""
    out: List[tuple] = []

    def work(start: int, stop: int) -> List[torch.Tensor]:
        part = batch[start:stop]
        check_allocation(eigen_bytes(entries, part, dtype, method),
                         f"the eigenvalues of {stop - start} matrices {entries[part[0]].N}x{entries[part[0]].M}")
        return _batch_eigenvalues(entries, part, reader.load, dtype, dev, method, reader.release)

    def keep(start: int, stop: int, evs: List[torch.Tensor]) -> None:
        out.extend(zip(batch[start:stop], evs))

    first = entries[batch[0]]
    what = f"{first.N}x{first.M} weight matrices (from {first.name})"
    run_halving(len(batch), len(batch), work, device=dev, on_done=keep, record=record, what=what,
                fix="raise the memory limit, pass dtype=torch.float32, or skip the largest with max_size=")
    return out


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
            batch_elements: Optional[int] = None, mp_fit: bool = True,
            progress: ProgressLike = True) -> SpectraResult:
    """Spectral metrics of every weight matrix of ``model`` (an ``nn.Module``, a state dict or a checkpoint).

    A checkpoint (a path: ``.safetensors``, a sharded folder, a ``.pt``/``.pth``/``.bin`` state dict) is
    streamed one tensor at a time, so the memory held is the largest matrix in ``dtype`` plus its Gram
    matrix, not the model; it gives the same table as its state dict in memory (formats, row order and
    kinds: :mod:`~workbench.spectra.checkpoint`).

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
    batch_elements : same-shape matrices share one eigenvalue call up to this many matrix entries (a larger
        tensor gets a call of its own).  Default ``2**25`` for a model in memory; for a checkpoint ``0``
        (one tensor per call), and any budget given bounds the memory of the streamed run.
    mp_fit : compute ``mp_softrank`` (weightwatcher's MP fit, see :mod:`~workbench.spectra.mp`); NaN if False.

    A batch whose stack and Gram matrices do not fit in memory (see :func:`eigen_bytes`) is split in
    halves until they do, with the same eigenvalues; ``settings["eigen_halvings"]`` counts the splits.

    ``numerical_rank`` counts the eigenvalues above ``lambda_max * max(N, M) * eps`` (see
    :func:`rank_tolerance`; ``eps`` of ``dtype`` or of the weights' dtype, whichever is coarser), the same for
    ``method="gram"`` and ``"svd"``.
    """
    if data is not None:
        raise ValueError("spectra.analyze reads only the weights: pass data=None (spectra needs no data)")
    dev = resolve_device(device)
    if isinstance(model, (str, os.PathLike)):  # a model spec: a checkpoint on disk is streamed, anything else loaded
        from .checkpoint import source

        model = source(model)
    reader = open_matrices(model, embeddings=embeddings)
    entries, skipped = reader.entries, reader.skipped
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
        raise ValueError(f"{reader.what} has no weight matrices to analyse ({detail}). Pass an nn.Module "
                         "with Linear/Conv/Embedding layers, a state dict or a checkpoint of 2-D/4-D tensors.")
    reader.check_finite(entries)  # a checkpoint is checked tensor by tensor as it is read

    evals: List[Optional[np.ndarray]] = [None] * len(entries)
    budget = reader.batch_elements if batch_elements is None else int(batch_elements)
    batches = _batches(entries, budget)
    memory: Dict[str, Any] = {}
    with Progress(len(batches) + len(entries), "spectra", progress) as bar:
        for batch in batches:
            for i, ev in _split_eigenvalues(entries, batch, reader, dtype, dev, method, memory):
                evals[i] = torch.sort(ev).values.numpy()
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
            reader.release()
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
    settings.update(reader.settings, batch_elements=budget, eigen_halvings=memory.get("halvings", 0))
    return SpectraResult(settings=settings, table=table, evals=np.concatenate(evals), offsets=offsets,
                         skipped=skipped)
