"""Curvature of the loss: top eigenvalues, trace, spectral density, per layer, and the eigenvector slice.

Everything is built on :class:`~.hessian.HessianOperator`, the Hessian of the mean loss over the *whole* data
set as a linear operator on flat parameter vectors (``docs/landscape.md``).

* :func:`eigenvalues`: top-``k`` eigenvalues by Lanczos with full reorthogonalisation (default) or by
  deflated power iteration; returned sorted (largest first) with the number of Hessian-vector products
  and the true residuals ``||H u - lambda u||``.
* :func:`trace`: Hutchinson's estimator with Rademacher vectors, with its standard error.
* :func:`density`: the spectral density by stochastic Lanczos quadrature with Gaussian broadening
  (integrates to one).
* :func:`layerwise`: the same per parameter group (diagonal blocks of the Hessian).
* :func:`eigen_slice`: the loss along the top eigenvector (a 1-D map).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from ..backend import DeviceLike, describe, resolve_device
from ..paramspace import parameter_groups
from ..progress import Progress, ProgressLike
from ..results import Result
from ..validation import as_model
from .hessian import HessianOperator, _on_device, lanczos, tridiagonal_eigh

__all__ = ["EigenResult", "TraceResult", "DensityResult", "LayerwiseResult", "eigenvalues", "trace", "density",
           "layerwise", "eigen_slice"]


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class EigenResult(Result):
    """Top eigenvalues of the Hessian, largest first, with eigenvectors and convergence information."""

    eigenvalues: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    eigenvectors: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0)))
    residuals: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    n_iter: int = 0
    converged: bool = False

    kind = "hessian_eigen"

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"rank": np.arange(1, len(self.eigenvalues) + 1), "eigenvalue": self.eigenvalues,
                             "residual": self.residuals})


@dataclasses.dataclass
class TraceResult(Result):
    """Hutchinson estimate of the Hessian trace, its standard error, and the per-vector samples."""

    trace: float = float("nan")
    stderr: float = float("nan")
    samples: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))

    kind = "hessian_trace"

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"sample": np.arange(len(self.samples)), "vHv": self.samples,
                             "running_mean": np.cumsum(self.samples) / np.arange(1, len(self.samples) + 1)})


@dataclasses.dataclass
class DensityResult(Result):
    """Spectral density by stochastic Lanczos quadrature: the broadened density on a grid, and the
    quadrature nodes (Ritz values) and weights of each run."""

    grid: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    density: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    nodes: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0)))
    weights: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0)))

    kind = "hessian_density"

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"eigenvalue": self.grid, "density": self.density})


@dataclasses.dataclass
class LayerwiseResult(Result):
    """Curvature per parameter group (diagonal Hessian blocks).

    ``frame`` has one row per group (``group``, ``params``, ``n_params``, ``top_eigenvalue``, ``residual``,
    ``n_iter``, ``converged``, ``trace``, ``trace_stderr``); ``eigenvalues[group]`` holds the group's
    top-``k`` eigenvalues (largest first) and ``residuals[group]`` their ``||H u - lambda u||``;
    ``densities[group]`` (when asked for) the spectral density of the block: ``grid``, ``density``,
    ``nodes``, ``weights`` and ``sigma`` as in :class:`DensityResult`.
    """

    frame: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    eigenvalues: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    residuals: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    densities: Dict[str, Dict[str, Any]] = dataclasses.field(default_factory=dict)

    kind = "hessian_layerwise"

    @property
    def groups(self) -> List[str]:
        return [str(g) for g in self.frame["group"]] if len(self.frame) else []

    def to_frame(self) -> pd.DataFrame:
        """One row per parameter group (scalars only; the top-k are in :meth:`eigen_frame`)."""
        return self.frame

    def findings(self):
        """The sharpest block and the largest share of the trace (:mod:`workbench.findings`)."""
        from .findings import layerwise_findings

        return layerwise_findings(self)

    def eigen_frame(self) -> pd.DataFrame:
        """One row per (group, rank): ``group``, ``rank`` (1 = largest), ``eigenvalue``, ``residual``."""
        parts = [pd.DataFrame({"group": g, "rank": np.arange(1, len(v) + 1), "eigenvalue": np.asarray(v, float),
                               "residual": np.asarray(self.residuals.get(g, np.full(len(v), np.nan)), float)})
                 for g, v in self.eigenvalues.items()]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
            columns=["group", "rank", "eigenvalue", "residual"])

    def density_frame(self) -> pd.DataFrame:
        """One row per (group, grid point): ``group``, ``eigenvalue``, ``density`` (empty without densities)."""
        parts = [pd.DataFrame({"group": g, "eigenvalue": d["grid"], "density": d["density"]})
                 for g, d in self.densities.items()]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["group", "eigenvalue",
                                                                                      "density"])

    def density_result(self, group: str) -> DensityResult:
        """The density of one group as a :class:`DensityResult` (for ``figures.spectrum``)."""
        if group not in self.densities:
            raise ValueError(f"group={group!r} has no density; groups with one: {list(self.densities)} "
                             "(run layerwise(..., density=True))")
        d = self.densities[group]
        return DensityResult(settings={**self.settings, "group": group, "sigma": float(d["sigma"])},
                             grid=d["grid"], density=d["density"], nodes=d["nodes"], weights=d["weights"])


def _settings(op: HessianOperator, **kw) -> Dict[str, Any]:
    """The operator's description; ``batch_size`` is the one the products ended with (halved from the one
    asked for while a batch did not fit in memory, ``batch_halvings`` times)."""
    s = dict(device=describe(op.device), dim=op.dim, params="all" if len(op.names) == sum(
        1 for p in op.model.parameters() if p.requires_grad) else list(op.names), data=len(op.data),
        loss_fn=getattr(op.loss_fn, "__name__", type(op.loss_fn).__name__), batch_size=op.batch_size,
        batch_halvings=int(op.memory.get("halvings", 0)))
    s.update(kw)
    return s


def _operator(model, data, loss_fn, params, batch_size, device) -> HessianOperator:
    if isinstance(model, HessianOperator):
        return model
    return HessianOperator(model, data, loss_fn=loss_fn, params=params, batch_size=batch_size, device=device)


def _start_vector(dim: int, seed: int, dtype, device, kind: str = "gaussian") -> torch.Tensor:
    gen = torch.Generator().manual_seed(int(seed))
    if kind == "rademacher":
        v = torch.randint(0, 2, (dim,), generator=gen).to(torch.float32) * 2 - 1
    else:
        v = torch.randn(dim, generator=gen)
    return v.to(device, dtype)


# --------------------------------------------------------------------------------------------
# public estimators
# --------------------------------------------------------------------------------------------
def eigenvalues(model: Any, data: Any = None, *, loss_fn: Optional[Callable] = None, k: int = 1,
                method: str = "lanczos", max_iter: int = 100, tol: float = 1e-3, seed: int = 0,
                params: Optional[Sequence[str]] = None, batch_size: int = 1024, device: DeviceLike = "auto",
                progress: ProgressLike = True) -> EigenResult:
    """Top-``k`` (largest algebraic) Hessian eigenvalues, sorted largest first.

    ``method="lanczos"`` (default): Lanczos with full reorthogonalisation, stopped when the residual
    bound of every wanted Ritz pair is below ``tol * |lambda|`` (or after ``max_iter`` products).
    ``method="power"``: power iteration with deflation against the eigenvectors already found
    (PyHessian's scheme; finds the largest in *magnitude*), stopped when the Rayleigh quotient changes
    by less than ``tol`` relative.  ``n_iter`` counts Hessian-vector products; ``residuals`` are the
    true ``||H u - lambda u||`` of the returned unit eigenvectors.
    """
    op = _operator(model, data, loss_fn, params, batch_size, device)
    if k < 1 or k > op.dim:
        raise ValueError(f"k={k}; must be between 1 and the number of parameters ({op.dim})")
    if method not in ("lanczos", "power"):
        raise ValueError(f"method={method!r}; choose 'lanczos' or 'power'")
    start = op.products
    converged = False
    with Progress(max_iter, f"hessian {method}", progress) as bar:
        if method == "lanczos":
            v0 = _start_vector(op.dim, seed, op.dtype, op.device)
            work_dtype = torch.float64 if op.device.type == "cpu" else op.dtype
            state = {"conv": False}

            def cb(j, a, b):
                bar.update()
                if j < k:
                    return False
                theta, S = tridiagonal_eigh(a, b)
                top = np.argsort(theta)[::-1][:k]
                bound = np.abs(b[-1] * S[-1, top])
                if np.all(bound <= tol * np.maximum(np.abs(theta[top]), 1e-12)):
                    state["conv"] = True
                    return True
                return False

            alpha, beta, Q = lanczos(lambda q: op.matvec(q.to(op.dtype)).to(work_dtype), v0.to(work_dtype),
                                     max_iter, callback=cb)
            theta, S = tridiagonal_eigh(alpha, beta)
            top = np.argsort(theta)[::-1][:k]
            vals = theta[top]
            vecs = (torch.as_tensor(S[:, top].T.copy(), dtype=Q.dtype, device=Q.device) @ Q).to(op.dtype)
            # converged by the residual bound, or exact: an invariant subspace (breakdown) / the whole space
            converged = state["conv"] or Q.shape[0] < min(max_iter, op.dim) or Q.shape[0] == op.dim
        else:
            vals_l: List[float] = []
            vecs_l: List[torch.Tensor] = []
            per = max(1, max_iter // k)
            all_conv = True
            for i in range(k):
                v = _start_vector(op.dim, seed + i, op.dtype, op.device)
                lam = None
                conv = False
                for _it in range(per):
                    for u in vecs_l:
                        v = v - (v @ u) * u
                    v = v / v.norm()
                    w = op.matvec(v)
                    for u in vecs_l:  # deflate
                        w = w - (w @ u) * u
                    new = float(w @ v)
                    bar.update()
                    v = w
                    if lam is not None and abs(new - lam) <= tol * max(abs(new), 1e-12):
                        lam = new
                        conv = True
                        break
                    lam = new
                v = v / v.norm()
                vals_l.append(lam)
                vecs_l.append(v)
                all_conv &= conv
            order = np.argsort(vals_l)[::-1]
            vals = np.array(vals_l)[order]
            vecs = torch.stack([vecs_l[i] for i in order])
            converged = all_conv
    vecs = vecs / vecs.norm(dim=1, keepdim=True)
    HV = op.matmat(vecs)
    res = (HV - torch.as_tensor(vals, dtype=op.dtype, device=op.device)[:, None] * vecs).norm(dim=1)
    n_iter = op.products - start - len(vals)
    return EigenResult(settings=_settings(op, k=k, method=method, max_iter=max_iter, tol=tol, seed=seed,
                                          which="largest algebraic" if method == "lanczos" else "largest magnitude"),
                       eigenvalues=np.asarray(vals, dtype=float), eigenvectors=vecs.detach().cpu().numpy(),
                       residuals=res.detach().cpu().numpy().astype(float), n_iter=int(n_iter),
                       converged=bool(converged))


def trace(model: Any, data: Any = None, *, loss_fn: Optional[Callable] = None, n_samples: int = 100,
          block: Optional[int] = None, seed: int = 0, params: Optional[Sequence[str]] = None, batch_size: int = 1024,
          device: DeviceLike = "auto", progress: ProgressLike = True) -> TraceResult:
    """Hutchinson's trace estimate ``mean_i v_i^T H v_i`` with Rademacher ``v_i`` and its standard error
    ``std(samples) / sqrt(n_samples)``.  ``block`` vectors are multiplied per pass over the data
    (batched double backward); the default is 10, or 1 for convolutional models, whose batched
    products are slower than one at a time on a CPU.  The samples do not depend on ``block``."""
    op = _operator(model, data, loss_fn, params, batch_size, device)
    if block is None:
        has_conv = any(isinstance(mod, nn.modules.conv._ConvNd) for mod in op.model.modules())
        block = 1 if (has_conv and op.device.type == "cpu") else 10
    if n_samples < 2:
        raise ValueError(f"n_samples={n_samples}; need at least 2 to report a standard error")
    gen = torch.Generator().manual_seed(int(seed))
    samples: List[float] = []
    with Progress(n_samples, "hutchinson", progress) as bar:
        while len(samples) < n_samples:
            m = min(block, n_samples - len(samples))
            V = (torch.randint(0, 2, (m, op.dim), generator=gen).to(torch.float32) * 2 - 1).to(op.device, op.dtype)
            HV = op.matmat(V)
            samples.extend((HV * V).sum(1).double().cpu().tolist())
            bar.update(m)
    s = np.array(samples)
    return TraceResult(settings=_settings(op, n_samples=n_samples, seed=seed, vectors="rademacher"),
                       trace=float(s.mean()), stderr=float(s.std(ddof=1) / math.sqrt(len(s))), samples=s)


def density(model: Any, data: Any = None, *, loss_fn: Optional[Callable] = None, n_runs: int = 5,
            steps: int = 80, sigma: Optional[float] = None, grid_points: int = 1000, seed: int = 0,
            params: Optional[Sequence[str]] = None, batch_size: int = 1024, device: DeviceLike = "auto",
            progress: ProgressLike = True) -> DensityResult:
    """Spectral density of the Hessian by stochastic Lanczos quadrature (Ghorbani et al. 2019).

    For each of ``n_runs`` Gaussian start vectors, ``steps`` Lanczos iterations give nodes (Ritz values)
    and weights (squared first components of the tridiagonal's eigenvectors, summing to one).  The
    density is their average broadened by Gaussians of width ``sigma`` (default 1% of the spectral
    range), on a grid extending 5 ``sigma`` past the extreme nodes; it integrates to one.
    """
    op = _operator(model, data, loss_fn, params, batch_size, device)
    steps = int(min(steps, op.dim))
    work_dtype = torch.float64 if op.device.type == "cpu" else op.dtype
    nodes = np.full((n_runs, steps), np.nan)
    weights = np.zeros((n_runs, steps))
    with Progress(n_runs * steps, "slq", progress) as bar:
        for r in range(n_runs):
            v0 = _start_vector(op.dim, seed + r, work_dtype, op.device)
            alpha, beta, _Q = lanczos(lambda q: op.matvec(q.to(op.dtype)).to(work_dtype), v0, steps,
                                      callback=lambda j, a, b: bar.update() and False)
            theta, S = tridiagonal_eigh(alpha, beta)
            nodes[r, : len(theta)] = theta
            weights[r, : len(theta)] = S[0] ** 2
    finite = nodes[np.isfinite(nodes)]
    lo, hi = float(finite.min()), float(finite.max())
    width = hi - lo if hi > lo else max(abs(hi), 1.0)
    sig = float(sigma) if sigma is not None else 0.01 * width
    grid = np.linspace(lo - 5 * sig, hi + 5 * sig, int(grid_points))
    dens = np.zeros_like(grid)
    for r in range(n_runs):
        ok = np.isfinite(nodes[r])
        diff = grid[:, None] - nodes[r, ok][None]
        dens += (weights[r, ok][None] * np.exp(-0.5 * (diff / sig) ** 2) / (sig * math.sqrt(2 * math.pi))).sum(1)
    dens /= n_runs
    return DensityResult(settings=_settings(op, n_runs=n_runs, steps=steps, sigma=sig, seed=seed,
                                            method="stochastic lanczos quadrature"),
                         grid=grid, density=dens, nodes=nodes, weights=weights)


_density = density  # layerwise() takes a ``density`` flag


def layerwise(model: nn.Module, data: Any = None, *, loss_fn: Optional[Callable] = None, by: str = "module",
              k: int = 1, n_samples: int = 50, max_iter: int = 60, tol: float = 1e-3, density: bool = False,
              density_runs: int = 3, density_steps: int = 40, sigma: Optional[float] = None, seed: int = 0,
              batch_size: int = 1024, device: DeviceLike = "auto", progress: ProgressLike = True) -> LayerwiseResult:
    """Top-``k`` eigenvalues, Hutchinson trace and (``density=True``) the SLQ spectral density of each
    diagonal Hessian block, one block per parameter group (``by="module"``: a layer's weight and bias
    together; ``"parameter"``: each tensor alone).

    Each group's eigenvalues come from :func:`eigenvalues` (Lanczos, sorted largest first, ``k`` capped at
    the group's size) with the number of Hessian-vector products used (``n_iter``) and whether they
    converged; the density from :func:`density` with ``density_runs`` runs of ``density_steps`` steps.
    A data batch that does not fit in memory is halved (:class:`~.hessian.HessianOperator`) and the next
    groups start from the smaller size; the settings give the last ``batch_size`` and the ``batch_halvings``.
    """
    model = as_model(model)
    if k < 1:
        raise ValueError(f"k={k}; ask for at least one eigenvalue per group")
    dev = resolve_device(device)
    work = _on_device(model, dev)  # one copy for all groups when the model lives elsewhere
    groups = parameter_groups(work, by=by)
    rows, vals, res, dens, halvings = [], {}, {}, {}, 0
    with Progress(len(groups), "layers", progress) as bar:
        for name, names in groups.items():
            op = HessianOperator(work, data, loss_fn=loss_fn, params=names, batch_size=batch_size, device=dev)
            bs = op.batch_size
            ev = eigenvalues(op, k=min(k, op.dim), max_iter=min(max_iter, op.dim), tol=tol, seed=seed,
                             progress=bar.stage(f"{name}: eigenvalues", 0.5))
            tr = trace(op, n_samples=n_samples, seed=seed, progress=bar.stage(f"{name}: trace", 0.5))
            vals[name] = np.asarray(ev.eigenvalues, dtype=float)
            res[name] = np.asarray(ev.residuals, dtype=float)
            rows.append({"group": name, "params": names, "n_params": op.dim,
                         "top_eigenvalue": float(ev.eigenvalues[0]), "residual": float(ev.residuals[0]),
                         "n_iter": int(ev.n_iter), "converged": bool(ev.converged),
                         "trace": tr.trace, "trace_stderr": tr.stderr})
            if density:
                d = _density(op, n_runs=density_runs, steps=density_steps, sigma=sigma, seed=seed, progress=False)
                dens[name] = {"grid": d.grid, "density": d.density, "nodes": d.nodes, "weights": d.weights,
                              "sigma": float(d.settings["sigma"])}
            halvings += int(op.memory.get("halvings", 0))
            batch_size = op.batch_size if op.batch_size < bs else batch_size  # the next group starts there
            bar.update()
    return LayerwiseResult(settings=dict(by=by, k=k, n_samples=n_samples, max_iter=max_iter, tol=tol, seed=seed,
                                         density=bool(density), density_runs=density_runs if density else None,
                                         density_steps=density_steps if density else None,
                                         device=describe(dev), batch_size=batch_size, batch_halvings=halvings),
                           frame=pd.DataFrame(rows), eigenvalues=vals, residuals=res, densities=dens)


def eigen_slice(model: nn.Module, data: Any = None, *, loss_fn: Optional[Callable] = None,
                eigen: Optional[EigenResult] = None, span: Optional[float] = None, steps: int = 41,
                index: int = 0, batch_size: int = 1024, device: DeviceLike = "auto", progress: ProgressLike = True):
    """The loss along the ``index``-th top Hessian eigenvector ``u`` (unit norm): ``L(theta* + t u)``.

    ``span`` defaults to ``2 sqrt(2 / lambda)`` (where the quadratic model rises by 4).  The result is a
    line :class:`~workbench.landscape.LandscapeResult` whose settings carry ``eigenvalue`` and
    ``loss0`` so the quadratic prediction ``loss0 + lambda t^2 / 2`` can be drawn next to it.
    """
    model = as_model(model)
    from .maps import as_splits, line

    if eigen is None:
        first = next(iter(as_splits(data).values()))
        eigen = eigenvalues(model, first, loss_fn=loss_fn, k=index + 1, batch_size=batch_size, device=device,
                            progress=progress)
    lam = float(eigen.eigenvalues[index])
    if span is None:
        span = 2 * math.sqrt(2 / lam) if lam > 0 else 1.0
    res = line(model, data, loss_fn=loss_fn, steps=steps, span=span, direction=eigen.eigenvectors[index], bn="eval",
               batch_size=batch_size, device=device, progress=progress)
    i0 = int(np.argmin(np.abs(res.x)))
    res.settings.update(kind="eigen_slice", eigenvalue=lam, eigen_index=index,
                        loss0={k: float(v[i0]) for k, v in res.loss.items()})
    return res
