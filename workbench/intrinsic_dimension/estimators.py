"""Intrinsic dimension of point clouds and of a network's representations.

* :func:`twonn` (Facco et al. 2017): ``mu_i = r2 / r1``; ``method="fit"`` fits ``-log(1 - F(mu)) = d log mu``
  through the origin on the smallest 90 % of the ``mu`` (as scikit-dimension and DADApy do);
  ``method="mle"`` gives ``(N - 1) / sum log mu`` (with a discarded fraction: the censored MLE).
* :func:`mle` (Levina and Bickel 2005) with ``k`` neighbours, ``m_i = (k - 1) / sum_j log(T_k / T_j)``,
  aggregated by the harmonic mean (MacKay and Ghahramani), or the mean / median.
* :func:`profile`: the ID of each layer's activations of a model on data.

Nearest neighbours are exact (:func:`knn`): candidate neighbours come from a k-d tree for few features
and many points on the CPU, else from one matrix product per chunk on the device (torch on CPU or CUDA);
their distances are then recomputed in float64 from the differences, so ratios of nearly equal
distances are accurate.  Duplicate points (``r1 = 0``) are never turned into NaN: by default repeated
points are merged first and their number reported (``duplicates="unique"``), or (``"drop"``,
scikit-dimension's behaviour) the points with a zero distance are left out and counted.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from ..backend import DeviceLike, resolve_device
from ..data import as_dataset
from ..progress import Progress, ProgressLike
from ..results import FrameResult, Result
from ..validation import as_model, probe


# --------------------------------------------------------------------------------------------
# nearest neighbours
# --------------------------------------------------------------------------------------------
def _as_points(X: Any, name: str = "X") -> torch.Tensor:
    if isinstance(X, torch.Tensor):
        t = X.detach()
    else:
        if hasattr(X, "get") and type(X).__module__.startswith("cupy"):
            X = X.get()
        t = torch.as_tensor(np.asarray(X))
    if t.dim() == 1:
        raise ValueError(f"{name} is 1-D with shape {tuple(t.shape)}; pass an (n_points, n_features) array "
                         "(use X.reshape(-1, 1) for one feature)")
    if t.dim() > 2:
        t = t.reshape(t.shape[0], -1)
    if not t.is_floating_point():
        t = t.double()
    if t.device.type == "cpu" and t.dtype != torch.bfloat16:  # NumPy: no thread pool to wake for a check
        finite = bool(np.isfinite(t.numpy()).all())
    else:
        finite = bool(torch.isfinite(t).all())
    if not finite:
        raise ValueError(f"{name} contains NaN or infinite values; remove or impute them first")
    return t


def _candidates_rows(Xw: torch.Tensor, sq: torch.Tensor, kc: int, chunk: int) -> torch.Tensor:
    """``kc`` candidate neighbours per point, one product of a row chunk against all points."""
    n = Xw.shape[0]
    out = torch.empty((n, kc), dtype=torch.long, device=Xw.device)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        # ||x_j||^2 - 2 x_i.x_j ranks the neighbours of x_i like the squared distance (one fused product)
        d2 = torch.addmm(sq[None, :], Xw[start:stop], Xw.T, beta=1.0, alpha=-2.0)
        rows = torch.arange(stop - start, device=Xw.device)
        d2[rows, rows + start] = float("inf")
        out[start:stop] = torch.topk(d2, kc, dim=1, largest=False, sorted=False).indices
    return out


def _candidates_symmetric(Xw: torch.Tensor, sq: torch.Tensor, kc: int, chunk: int) -> torch.Tensor:
    """As :func:`_candidates_rows`, computing each block of distances once for both of its row blocks
    (half the matrix products), with running top-``kc`` lists."""
    n = Xw.shape[0]
    dev = Xw.device
    best_d = torch.full((n, kc), float("inf"), dtype=Xw.dtype, device=dev)
    best_i = torch.zeros((n, kc), dtype=torch.long, device=dev)
    starts = list(range(0, n, chunk))

    def merge(r0, r1, d2, c0):
        cols = torch.arange(c0, c0 + d2.shape[1], device=dev).expand(r1 - r0, -1)
        alld = torch.cat([best_d[r0:r1], d2], dim=1)
        alli = torch.cat([best_i[r0:r1], cols], dim=1)
        top = torch.topk(alld, kc, dim=1, largest=False, sorted=False)
        best_d[r0:r1] = top.values
        best_i[r0:r1] = torch.gather(alli, 1, top.indices)

    for a, i0 in enumerate(starts):
        i1 = min(n, i0 + chunk)
        for j0 in starts[a:]:
            j1 = min(n, j0 + chunk)
            d2 = torch.addmm(sq[i0:i1, None] + sq[None, j0:j1], Xw[i0:i1], Xw[j0:j1].T, beta=1.0, alpha=-2.0)
            if i0 == j0:
                d2.fill_diagonal_(float("inf"))
                merge(i0, i1, d2, j0)
            else:
                merge(i0, i1, d2, j0)
                merge(j0, j1, d2.T, i0)
    return best_i


# The shape rule of method="auto" on the CPU.  Measured on full-rank Gaussian points (the hardest case
# for a tree), 50,000 points: with k = 2 the tree takes 0.09x the CPU time of the products at 8
# features, 0.40x at 12, 0.84x at 14 and 2.2x at 16; with k = 20, 0.25x at 8 and 0.85x at 12.  Below
# a few thousand points both take a fraction of a second.
TREE_MAX_FEATURES = 12
TREE_MIN_POINTS = 5000
KNN_METHODS = ("auto", "tree", "brute")


def choose_knn_method(n_points: int, n_features: int, device: DeviceLike = "auto") -> str:
    """The neighbour search ``method="auto"`` uses for ``n_points`` points in ``n_features`` dimensions.

    ``"brute"`` (blocked matrix products, the torch path) on a CUDA device, and on the CPU when there are
    more than :data:`TREE_MAX_FEATURES` features or fewer than :data:`TREE_MIN_POINTS` points; ``"tree"``
    (a k-d tree on the CPU, all cores) otherwise: in few dimensions a tree measures a small share of
    the ``n^2`` pairs the products go through, and that share shrinks as ``n`` grows.
    """
    if resolve_device(device).type == "cuda":
        return "brute"
    if n_features <= TREE_MAX_FEATURES and n_points >= TREE_MIN_POINTS:
        return "tree"
    return "brute"


def _knn_method_arg(method: str, n: int, d: int, device: DeviceLike, name: str = "method") -> str:
    if method not in KNN_METHODS:
        raise ValueError(f"{name}={method!r}: choose 'auto' (by the shape of X), 'tree' (k-d tree on the CPU) "
                         "or 'brute' (blocked matrix products on the device)")
    return choose_knn_method(n, d, device) if method == "auto" else method


def _tree_query(tree: Any, queries: np.ndarray, own: np.ndarray, m: int) -> Tuple[np.ndarray, np.ndarray]:
    """The ``m`` nearest points to each query other than itself (``own``: the queries' indices)."""
    dist, idx = tree.query(queries, m + 1, workers=-1)
    dist, idx = dist.reshape(len(own), m + 1), np.asarray(idx, dtype=np.int64).reshape(len(own), m + 1)
    mine = idx == own[:, None]
    # a point with more than m copies of itself may be left out of its own list: drop the last instead
    mine[~mine.any(1), -1] = True
    return dist[~mine].reshape(-1, m), idx[~mine].reshape(-1, m)


def _candidates_tree(pts: np.ndarray, k: int, kc: int) -> np.ndarray:
    """Candidate neighbours from a k-d tree (float64 coordinates, on the CPU): the ``k + 1`` nearest, or
    the ``kc`` nearest where the ``(k + 1)``-th ties the ``k``-th (within 1e-9: exact ties, or differences
    the float64 rounding could reverse).  Rows are padded to one width by repeating their last
    candidate, which the refinement never keeps."""
    from scipy.spatial import cKDTree

    n = pts.shape[0]
    tree = cKDTree(pts, leafsize=32)  # measured ~20 % faster than the default 16 on 10-d Gaussian points
    first = min(n - 1, k + 1)
    rows = np.arange(n)
    dist, idx = _tree_query(tree, pts, rows, first)
    cand = np.concatenate([idx, np.repeat(idx[:, -1:], max(0, kc - first), axis=1)], axis=1)
    if first > k and kc > first:
        crowded = dist[:, k] <= dist[:, k - 1] * (1 + 1e-9)
        if crowded.any():
            cand[crowded] = _tree_query(tree, pts[crowded], rows[crowded], kc)[1]
    return cand


def _candidates_brute(pts: torch.Tensor, dev: torch.device, kc: int, chunk: Optional[int],
                      symmetric: bool) -> torch.Tensor:
    """``kc`` candidate neighbours per point from blocked distance expansions on ``dev``."""
    n = pts.shape[0]
    work_dtype = torch.float64 if pts.dtype == torch.float64 and dev.type == "cpu" else torch.float32
    Xw = pts.to(dev, work_dtype)
    Xw = Xw - Xw.mean(0, keepdim=True)  # distances are unchanged; centring keeps the expansion accurate
    sq = (Xw * Xw).sum(1)
    if chunk is None:
        if symmetric:
            chunk = max(kc + 1, min(n, 2048))
        else:
            budget = 64 * 1024 ** 2 // 4  # ~64 MB of distances per chunk
            chunk = max(1, min(n, budget // max(n, 1), 4096))
    chunk = int(chunk)
    if symmetric and chunk < n:
        return _candidates_symmetric(Xw, sq, kc, max(chunk, kc))
    return _candidates_rows(Xw, sq, kc, chunk)


def _refine(Xr: Any, cand: Any, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest of each row's candidates, by float64 distances from the coordinate differences.

    ``Xr`` is a float64 NumPy array (CPU) or CUDA tensor.  Candidates are put in index order first and
    sorted stably by distance, so exact ties go to the lower index whichever search proposed them.
    """
    if not isinstance(Xr, np.ndarray):
        return _refine_torch(Xr, torch.as_tensor(cand, device=Xr.device), k)
    cand = np.sort(cand.cpu().numpy() if isinstance(cand, torch.Tensor) else cand, axis=1)
    n, kc = cand.shape
    dists = np.empty((n, k))
    index = np.empty((n, k), dtype=np.int64)
    step = max(256, 2 ** 18 // Xr.shape[1])  # rows per block: ~2 MB of differences stay in cache
    for start in range(0, n, step):
        stop = min(n, start + step)
        c, q = cand[start:stop], Xr[start:stop]
        exact = np.empty(c.shape)
        for j in range(kc):  # one candidate column at a time (measured 2-3x faster than one 3-D block)
            diff = Xr[c[:, j]] - q
            exact[:, j] = np.einsum("ij,ij->i", diff, diff)
        np.sqrt(exact, out=exact)
        order = np.argsort(exact, axis=1, kind="stable")[:, :k]
        dists[start:stop] = np.take_along_axis(exact, order, 1)
        index[start:stop] = np.take_along_axis(c, order, 1)
    return dists, index


def _refine_torch(Xr: torch.Tensor, cand: torch.Tensor, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`_refine` on a GPU."""
    cand = torch.sort(cand, dim=1).values
    n, kc = cand.shape
    dists = np.empty((n, k))
    index = np.empty((n, k), dtype=np.int64)
    step = max(1, 64 * 1024 ** 2 // (8 * kc * Xr.shape[1]))  # ~64 MB of differences
    for start in range(0, n, step):
        stop = min(n, start + step)
        c = cand[start:stop]
        diff = Xr[c] - Xr[start:stop, None, :]
        exact = torch.sqrt((diff * diff).sum(-1))
        order = torch.sort(exact, dim=1, stable=True).indices[:, :k]
        dists[start:stop] = torch.gather(exact, 1, order).cpu().numpy()
        index[start:stop] = torch.gather(c, 1, order).cpu().numpy()
    return dists, index


def knn(X: Any, k: int, *, device: DeviceLike = "auto", chunk: Optional[int] = None,
        margin: int = 4, symmetric: Optional[bool] = None, method: str = "auto") -> Tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest neighbours of every point among the others: ``(distances, indices)``, ``(N, k)``.

    Distances are sorted ascending and exclude the point itself.  Each search proposes candidates (the
    brute search ``k + margin`` per point; the tree the ``k + 1`` nearest, and ``k + margin`` where the
    ``(k + 1)``-th ties the ``k``-th), whose distances are then measured in float64 from the coordinate
    differences (on ``device``) and the ``k`` smallest kept, exact ties going to the lower index.  The
    two searches therefore give the same distances, and the same indices unless more points tie at the
    ``k``-th distance than the margin holds.

    ``method``: ``"tree"`` queries a k-d tree (SciPy's ``cKDTree``, all CPU cores); ``"brute"`` ranks
    candidates by a float32 (or, on the CPU, the input's float64) distance expansion computed in blocks
    of ``chunk`` rows on ``device`` (about 64 MB each by default); ``symmetric=True`` computes each block
    once for both of its row blocks (half the products; brute only).  ``"auto"`` chooses by shape and
    device with :func:`choose_knn_method`.
    """
    pts = _as_points(X)
    n, n_features = pts.shape
    k = int(k)
    if not 1 <= k < n:
        raise ValueError(f"k={k} neighbours need at least k + 1 = {k + 1} points; X has {n}")
    dev = resolve_device(device)
    if method == "auto" and symmetric:
        method = "brute"  # symmetric blocks exist only there
    method = _knn_method_arg(method, n, n_features, dev)
    if method == "tree" and symmetric:
        raise ValueError("symmetric=True applies to method='brute' only; drop it or pass method='brute'")
    if int(margin) < 0:
        raise ValueError(f"margin={margin}: the number of extra candidates must be >= 0")
    kc = min(n - 1, k + int(margin))
    # float64 holds float32 input exactly: the differences are taken in float64, on the GPU or in NumPy
    X64 = pts.to(dev, torch.float64) if dev.type == "cuda" else pts.cpu().double().numpy()
    if method == "tree":
        cand = _candidates_tree(X64 if isinstance(X64, np.ndarray) else pts.cpu().double().numpy(), k, kc)
    else:  # symmetric=None is off: measured, the merging of running lists costs what the halved products save
        cand = _candidates_brute(pts, dev, kc, chunk, bool(symmetric))
    return _refine(X64, cand, k)


def _unique_points(pts: torch.Tensor) -> Tuple[torch.Tensor, int]:
    uniq = torch.unique(pts, dim=0)
    return uniq, int(pts.shape[0] - uniq.shape[0])


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class IDEstimate(Result):
    """An intrinsic-dimension estimate with the per-point quantities behind it.

    ``pointwise`` holds ``mu = r2 / r1`` (TwoNN) or the local dimensions ``m_i`` (MLE) of the points used;
    ``fit_x`` / ``fit_y`` the TwoNN fit coordinates (``log mu``, ``-log(1 - F)``) of the kept points.
    """

    dimension: float = float("nan")
    estimator: str = ""
    n_points: int = 0
    n_used: int = 0
    n_duplicates: int = 0
    pointwise: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    fit_x: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    fit_y: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))

    kind = "id_estimate"

    def __float__(self) -> float:
        return float(self.dimension)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{"estimator": self.estimator, "dimension": self.dimension,
                              "n_points": self.n_points, "n_used": self.n_used,
                              "n_duplicates": self.n_duplicates}])


def _duplicates_arg(duplicates: str) -> str:
    if duplicates not in ("unique", "drop"):
        raise ValueError(f"duplicates={duplicates!r}: choose 'unique' (merge repeated points) or 'drop' "
                         "(leave out points at distance 0 from a neighbour)")
    return duplicates


def twonn(X: Any, *, method: str = "fit", discard_fraction: Optional[float] = None, duplicates: str = "unique",
          device: DeviceLike = "auto", chunk: Optional[int] = None, knn_method: str = "auto") -> IDEstimate:
    """TwoNN intrinsic dimension of the rows of ``X`` (``(n_points, n_features)``).

    ``method="fit"``: least-squares slope through the origin of ``-log(1 - F_emp(mu))`` against
    ``log mu`` on the ``1 - discard_fraction`` smallest ratios (default 0.1 discarded, F over all N).
    ``method="mle"``: ``(N - 1) / sum(log mu)`` (default nothing discarded; with a discarded fraction,
    the Type-II censored MLE ``(n - 1) / (sum_{i<=n} log mu_(i) + (N - n) log mu_(n))``).
    ``knn_method`` is :func:`knn`'s ``method`` (``"auto"``, ``"tree"``, ``"brute"``); the one used is
    ``settings["knn"]``.
    """
    if method not in ("fit", "mle"):
        raise ValueError(f"method={method!r}: choose 'fit' (linear fit of Facco et al.) or 'mle'")
    _duplicates_arg(duplicates)
    discard = (0.1 if method == "fit" else 0.0) if discard_fraction is None else float(discard_fraction)
    if not 0 <= discard < 1:
        raise ValueError(f"discard_fraction={discard_fraction}: must be in [0, 1)")
    pts = _as_points(X)
    n_points = pts.shape[0]
    if n_points < 3:
        raise ValueError(f"TwoNN needs at least 3 points; X has {n_points}")
    search = _knn_method_arg(knn_method, n_points, pts.shape[1], device, "knn_method")
    dist, _ = knn(pts, 2, device=device, chunk=chunk, method=search)
    n_dup = 0
    if (dist[:, 0] == 0).any():
        if duplicates == "unique":
            pts, n_dup = _unique_points(pts)
            if pts.shape[0] < 3:
                raise ValueError(f"X has only {pts.shape[0]} distinct points; TwoNN needs at least 3")
            dist, _ = knn(pts, 2, device=device, chunk=chunk, method=search)
            warnings.warn(f"twonn: merged {n_dup} repeated points (duplicates='unique')")
        else:
            keep = dist[:, 0] > 0
            n_dup = int((~keep).sum())
            dist = dist[keep]
            warnings.warn(f"twonn: left out {n_dup} points with a duplicate (duplicates='drop')")
    mu = dist[:, 1] / dist[:, 0]
    N = len(mu)
    n_keep = int(N * (1 - discard))
    if n_keep < 2:
        raise ValueError(f"only {n_keep} ratios left after discarding {discard:.0%} of {N}; pass more points")
    mu_sorted = np.sort(mu)[:n_keep]
    log_mu = np.log(mu_sorted)
    F = np.arange(1, n_keep + 1) / N
    with np.errstate(divide="ignore"):  # F = 1 at the largest ratio when nothing is discarded
        y = -np.log(1 - F)
    if method == "fit":
        ok = np.isfinite(y)
        denom = float(np.dot(log_mu[ok], log_mu[ok]))
        dim = float(np.dot(log_mu[ok], y[ok]) / denom) if denom > 0 else float("inf")
    else:
        total = float(log_mu.sum() + (N - n_keep) * log_mu[-1])
        dim = (n_keep - 1) / total if total > 0 else float("inf")
    settings = dict(estimator="twonn", method=method, discard_fraction=discard, duplicates=duplicates,
                    device=str(resolve_device(device)), knn=search)
    return IDEstimate(settings=settings, dimension=float(dim), estimator=f"twonn-{method}", n_points=n_points,
                      n_used=int(N), n_duplicates=n_dup, pointwise=mu, fit_x=log_mu, fit_y=y)


def mle(X: Any, k: int = 20, *, unbiased: bool = False, aggregate: str = "harmonic", duplicates: str = "unique",
        device: DeviceLike = "auto", chunk: Optional[int] = None, knn_method: str = "auto") -> IDEstimate:
    """Levina-Bickel maximum-likelihood ID with ``k`` neighbours per point.

    Local estimate ``m_i = (k - 1) / sum_{j<=k} log(T_k(x_i) / T_j(x_i))`` (``k - 2`` with
    ``unbiased=True``), aggregated by ``"harmonic"`` mean (default; MacKay and Ghahramani's correction,
    scikit-dimension's ``comb="mle"``), ``"mean"`` or ``"median"``.  ``knn_method`` is :func:`knn`'s
    ``method``; the one used is ``settings["knn"]``.
    """
    if aggregate not in ("harmonic", "mean", "median"):
        raise ValueError(f"aggregate={aggregate!r}: choose 'harmonic', 'mean' or 'median'")
    _duplicates_arg(duplicates)
    pts = _as_points(X)
    n_points = pts.shape[0]
    k = int(k)
    if k < 2:
        raise ValueError(f"k={k}: the MLE needs at least 2 neighbours")
    if n_points <= k:
        raise ValueError(f"k={k} neighbours need more than {k} points; X has {n_points} (lower k)")
    search = _knn_method_arg(knn_method, n_points, pts.shape[1], device, "knn_method")
    dist, _ = knn(pts, k, device=device, chunk=chunk, method=search)
    n_dup = 0
    if (dist[:, 0] == 0).any():
        if duplicates == "unique":
            pts, n_dup = _unique_points(pts)
            if pts.shape[0] <= k:
                raise ValueError(f"X has only {pts.shape[0]} distinct points; k={k} needs more (lower k)")
            dist, _ = knn(pts, k, device=device, chunk=chunk, method=search)
            warnings.warn(f"mle: merged {n_dup} repeated points (duplicates='unique')")
        else:
            keep = dist[:, 0] > 0
            n_dup = int((~keep).sum())
            dist = dist[keep]
            warnings.warn(f"mle: left out {n_dup} points with a duplicate (duplicates='drop')")
    with np.errstate(divide="ignore"):
        logs = np.log(dist[:, -1:] / dist).sum(1)
    kfac = k - 2 if unbiased else k - 1
    with np.errstate(divide="ignore"):
        local = kfac / logs
    if aggregate == "harmonic":
        dim = 1.0 / float(np.mean(1.0 / local))
    elif aggregate == "mean":
        dim = float(np.mean(local))
    else:
        dim = float(np.median(local))
    settings = dict(estimator="mle", k=k, unbiased=unbiased, aggregate=aggregate, duplicates=duplicates,
                    device=str(resolve_device(device)), knn=search)
    return IDEstimate(settings=settings, dimension=dim, estimator="mle", n_points=n_points, n_used=len(local),
                      n_duplicates=n_dup, pointwise=local)


def estimate(X: Any, estimator: str = "twonn", **kw: Any) -> IDEstimate:
    """Dispatch by name: ``"twonn"`` (fit), ``"twonn-mle"`` or ``"mle"``."""
    name = estimator.lower()
    if name in ("twonn", "twonn-fit"):
        return twonn(X, method="fit", **kw)
    if name == "twonn-mle":
        return twonn(X, method="mle", **kw)
    if name == "mle":
        return mle(X, **kw)
    raise ValueError(f"estimator={estimator!r}: choose 'twonn', 'twonn-mle' or 'mle'")


# --------------------------------------------------------------------------------------------
# per-layer profile
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class ProfileResult(FrameResult):
    """ID of the input and of each chosen layer's output, in forward order."""

    kind = "id_profile"

    def findings(self):
        """The key numbers of the profile, each with a sentence (:mod:`workbench.findings`)."""
        from .findings import profile_findings

        return profile_findings(self)


def default_layers(model: nn.Module) -> List[str]:
    """Leaf modules that hold parameters or reshape the signal (pooling), in registration order; for a
    transformer (a :class:`workbench.models.TokenModel`), the blocks of its longest layer stack."""
    if hasattr(model, "token_mask"):
        stacks = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m)]
        if stacks:
            prefix, stack = max(stacks, key=lambda nm: len(nm[1]))
            return [f"{prefix}.{i}" for i in range(len(stack))]
    names = []
    for name, mod in model.named_modules():
        if name and not list(mod.children()):
            if any(True for _ in mod.parameters(recurse=False)) or isinstance(
                    mod, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
                names.append(name)
    return names


def _first_tensor(out: Any) -> Optional[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        for item in out:
            t = _first_tensor(item)
            if t is not None:
                return t
    if hasattr(out, "to_tuple"):
        return _first_tensor(out.to_tuple())
    return None


@torch.no_grad()
def activations(model: nn.Module, data: Any, *, layers: Optional[Sequence[str]] = None, n: Optional[int] = 2000,
                seed: int = 0, batch_size: int = 512, device: DeviceLike = "auto",
                include_input: bool = True) -> Dict[str, torch.Tensor]:
    """Flattened outputs (on the CPU) of ``layers`` for (a seeded subset of ``n`` of) ``data``.

    For token inputs (a :class:`workbench.models.TokenModel`), a layer's ``(N, L, H)`` output is pooled over
    the positions its attention mask keeps (padding never counts) into one ``(N, H)`` point per example,
    and the input (token ids) is not a representation, so it is left out.
    """
    model = as_model(model)
    ds = probe(model, data, needs_loss=getattr(model, "has_head", True))  # a bare encoder has no loss
    tokens = hasattr(model, "token_mask")
    include_input = include_input and not tokens
    if n is not None:
        ds = ds.subset(int(n), seed=seed)
    dev = resolve_device(device)
    names = list(layers) if layers is not None else default_layers(model)
    modules = dict(model.named_modules())
    unknown = [name for name in names if name not in modules]
    if unknown:
        raise ValueError(f"layers {unknown[:5]} are not modules of the model; choose among "
                         f"{[m for m in modules if m][:12]}...")
    store: Dict[str, List[torch.Tensor]] = {name: [] for name in names}
    mask: List[Optional[torch.Tensor]] = [None]  # the current batch's attention mask (token inputs)
    hooks = []
    for name in names:
        def hook(_m, _inp, out, name=name):
            t = _first_tensor(out)
            if t is None:
                return
            m = mask[0]
            if m is not None and t.dim() == 3 and t.shape[:2] == m.shape:  # pool over the real tokens only
                w = m.unsqueeze(-1).to(t.dtype)
                t = (t * w).sum(1) / w.sum(1).clamp_min(1.0)
            store[name].append(t.detach().reshape(t.shape[0], -1).float().cpu())
        hooks.append(modules[name].register_forward_hook(hook))
    was_training = model.training
    model.eval()
    model.to(dev)
    inputs = []
    try:
        for xb, _ in ds.batches(batch_size, device=dev):
            if include_input:
                inputs.append(xb.reshape(xb.shape[0], -1).float().cpu())
            mask[0] = model.token_mask(xb) if tokens else None
            model(xb)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    out: Dict[str, torch.Tensor] = {}
    if include_input:
        out["input"] = torch.cat(inputs)
    for name in names:
        if store[name]:
            out[name] = torch.cat(store[name])
    return out


def profile(model: nn.Module, data: Any, *, layers: Optional[Sequence[str]] = None, estimator: str = "twonn",
            k: int = 20, n: Optional[int] = 2000, seed: int = 0, batch_size: int = 512,
            device: DeviceLike = "auto", progress: ProgressLike = True) -> ProfileResult:
    """Per-layer intrinsic-dimension profile of ``model``'s representations of ``data``.

    ``layers`` defaults to the leaf modules with parameters (and pooling), plus the input.  ``n`` points
    (a seeded subset; ``None`` for all) are pushed through the model; each layer's flattened output is
    given to ``estimator`` (``"twonn"``, ``"twonn-mle"`` or ``"mle"`` with ``k``).
    """
    model = as_model(model)
    acts = activations(model, data, layers=layers, n=n, seed=seed, batch_size=batch_size, device=device)
    rows = []
    with Progress(len(acts), "ID profile", progress) as bar, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for pos, (name, A) in enumerate(acts.items()):
            kw = {"k": k} if estimator == "mle" else {}
            try:
                est = estimate(A, estimator, device=device, **kw)
                dim, dup, used = est.dimension, est.n_duplicates, est.n_used
            except ValueError:  # e.g. too few distinct points in a collapsed layer
                dim, dup, used = float("nan"), int(A.shape[0] - torch.unique(A, dim=0).shape[0]), 0
            rows.append({"position": pos, "layer": name, "dimension": dim, "n_points": int(A.shape[0]),
                         "n_used": used, "n_duplicates": dup, "n_features": int(A.shape[1])})
            bar.update()
    settings = dict(estimator=estimator, k=k if estimator == "mle" else None, n=n, seed=seed,
                    device=str(resolve_device(device)), model=type(model).__name__,
                    data=getattr(as_dataset(data), "name", "data"))
    return ProfileResult(settings=settings, frame=pd.DataFrame(rows))
