"""Topological concentration (TC), its approximation (ATC) and the degree / density baselines.

Definitions (``docs/topology.md``; Wang et al., ICLR 2024).  ``A`` is the adjacency of the training edges,
``beta = 1 / mean training degree`` (over all ``num_nodes`` nodes), ``N_i^X`` node ``i``'s neighbours in
split ``X``.  With ``S = sum_k beta^(k-1) A^k`` and ``T = sum_k beta^(k-1) [A^k > 0]``::

    TC_i^{X,K} = mean_{j in N_i^X} (S T^T)_ij / ((sum_k beta^(k-1)) (sum_k beta^(k-1) |H_i^k|) - 1[X = Train])

where ``|H_i^k| = (A^k 1)_i`` is the number of length-k walks from ``i`` (the multiset size).  TC is 0 where
it is undefined (Train: ``d_i <= 1``; Val/Test: no neighbour in the split, or no training edge).

How it is computed, exactly and with bounded memory: ``S`` and ``T`` are symmetric and share one sparsity
pattern, so the numerator summed over ``j in N_i^X`` is::

    sum_v S_vi (T N^X)_vi          (a column sum of S o (T N^X))

and is accumulated over row blocks ``V`` of nodes ``v``: one K-hop sparse expansion of the block gives
``S_V`` and ``T_V`` for all three splits.  Block sizes are chosen from walk counts (an upper bound on the
row sizes) so that no block holds more than ``max_block_nnz`` stored entries.  SciPy sparse on the CPU,
CuPy sparse (cuSPARSE) on a CUDA device.
"""
from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Any, Dict, Optional, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sps

from ..backend import DeviceLike, array_module, describe, resolve_device, synchronize, to_numpy
from ..progress import Progress, ProgressLike
from ..results import Result
from .graphs import EdgeSplit, GraphInputWarning, as_graph

SPLITS = ("train", "val", "test")
MAX_K = 6


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------
def _resolve_splits(train: Any, val: Any, test: Any, num_nodes: Optional[int], clean: bool):
    """Clean edge arrays for the three splits over one common node count."""
    if isinstance(train, EdgeSplit):
        split = train
        val = split.val if val is None else val
        test = split.test if test is None else test
        num_nodes = max(num_nodes or 0, split.num_nodes)
        train = split.train
    if train is None:
        raise ValueError("train is required: pass the training edges (an edge array, networkx graph, "
                         "sparse matrix, file or EdgeSplit)")
    g_train = as_graph(train, num_nodes=None, clean=clean, name="train")
    parts = {"train": g_train}
    for name, src in (("val", val), ("test", test)):
        parts[name] = None if src is None else as_graph(src, clean=clean, name=name)
    n = max([num_nodes or 0] + [p.num_nodes for p in parts.values() if p is not None])
    if num_nodes is not None and n > num_nodes:
        raise ValueError(f"num_nodes={num_nodes} but the edges mention node {n - 1}; pass num_nodes >= {n}")
    edges = {k: (np.zeros((0, 2), np.int64) if p is None else p.edges) for k, p in parts.items()}
    if len(edges["train"]) == 0:
        raise ValueError("train has no edges: TC is defined on the training graph, pass at least one edge")
    edges = _drop_shared(edges, n, clean)
    return edges, n, g_train.name


def _drop_shared(edges: Dict[str, np.ndarray], n: int, clean: bool) -> Dict[str, np.ndarray]:
    """Remove from val the edges also in train, and from test those also in train or val.

    The splits must be disjoint: an edge in two splits would be counted both as an existing and as a new
    neighbour.  Edges are canonical (``u < v``, unique) here.  With ``clean=False`` shared edges raise.
    """
    key = lambda e: e[:, 0] * np.int64(n) + e[:, 1]  # noqa: E731
    keys = {s: key(edges[s]) for s in SPLITS}
    out = dict(edges)
    for s, earlier in (("val", ("train",)), ("test", ("train", "val"))):
        if not len(edges[s]):
            continue
        drop = np.zeros(len(edges[s]), dtype=bool)
        found = []
        for t in earlier:
            hit = np.isin(keys[s], keys[t]) & ~drop
            if hit.any():
                found.append(f"{int(hit.sum())} edge(s) also in {t}")
            drop |= hit
        if not found:
            continue
        what = " and ".join(found)
        if not clean:
            raise ValueError(f"{s} has {what}; the splits must be disjoint: remove them from {s} or pass "
                             "clean=True to drop them")
        warnings.warn(f"{s}: removed {what}; every edge belongs to one split", GraphInputWarning, stacklevel=4)
        out[s] = edges[s][~drop]
        keys[s] = keys[s][~drop]
    return out


def _adjacency(edges: np.ndarray, n: int) -> sps.csr_matrix:
    e = np.asarray(edges, dtype=np.int64)
    rows = np.concatenate([e[:, 0], e[:, 1]])
    cols = np.concatenate([e[:, 1], e[:, 0]])
    a = sps.csr_matrix((np.ones(len(rows), dtype=np.float64), (rows, cols)), shape=(n, n))
    a.sum_duplicates()
    a.sort_indices()
    return a


class _Sparse:
    """The sparse module for a device: SciPy on the CPU, cupyx.scipy.sparse on a CUDA device."""

    def __init__(self, device: DeviceLike):
        self.device = resolve_device(device)
        self.xp = array_module(self.device)
        self.gpu = self.xp is not np
        if self.gpu:
            import cupyx.scipy.sparse as csp

            self.sp = csp
        else:
            self.sp = sps

    def put(self, m: sps.spmatrix):
        return self.sp.csr_matrix(m) if self.gpu else m.tocsr()

    def vec(self, v: np.ndarray):
        return self.xp.asarray(v)


def _indicator(x):
    y = x.copy()
    y.data[:] = 1.0
    return y


def _blocks(weights: np.ndarray, budget: float) -> list:
    """Split 0..n-1 into contiguous blocks whose summed weight stays under ``budget`` (>= 1 row each)."""
    n = len(weights)
    bounds, start, acc = [], 0, 0.0
    for i in range(n):
        w = float(weights[i])
        if i > start and acc + w > budget:
            bounds.append((start, i))
            start, acc = i, 0.0
        acc += w
    if start < n:
        bounds.append((start, n))
    return bounds


def _walk_counts(a: sps.csr_matrix, k: int) -> np.ndarray:
    """``W[k-1] = A^k 1`` for k = 1..k (number of length-k walks from every node)."""
    out = []
    w = np.ones(a.shape[0])
    for _ in range(k):
        w = a @ w
        out.append(w)
    return np.stack(out)


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class TCResult(Result):
    """Per-node TC for the train/val/test neighbours (0 where undefined), plus degrees."""

    train: np.ndarray = None
    val: np.ndarray = None
    test: np.ndarray = None
    degree_train: np.ndarray = None
    degree_val: np.ndarray = None
    degree_test: np.ndarray = None
    beta: float = 0.0
    k: int = 1
    seconds: float = 0.0

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"train": self.train, "val": self.val, "test": self.test,
                             "degree_train": self.degree_train, "degree_val": self.degree_val,
                             "degree_test": self.degree_test},
                            index=pd.RangeIndex(len(self.train), name="node"))

    def defined(self, split: str) -> np.ndarray:
        """Mask of the nodes where TC of ``split`` is defined."""
        if split == "train":
            return self.degree_train >= 2
        return (getattr(self, f"degree_{split}") > 0) & (self.degree_train > 0)

    def __repr__(self) -> str:
        parts = ", ".join(f"{s}={np.mean(getattr(self, s)[self.defined(s)]) if self.defined(s).any() else 0:.4f}"
                          for s in SPLITS)
        return f"TCResult(k={self.k}, nodes={len(self.train)}, mean where defined: {parts})"


@dataclasses.dataclass
class ATCResult(Result):
    """Approximate TC: mean similarity of random-projection embeddings to each split's neighbours."""

    train: np.ndarray = None
    val: np.ndarray = None
    test: np.ndarray = None
    k: int = 1

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"train": self.train, "val": self.val, "test": self.test},
                            index=pd.RangeIndex(len(self.train), name="node"))


# --------------------------------------------------------------------------------------------
# TC
# --------------------------------------------------------------------------------------------
def concentration(train: Any, *, val: Any = None, test: Any = None, k: int = 1,
                  num_nodes: Optional[int] = None, device: DeviceLike = "auto", clean: bool = True,
                  max_block_nnz: float = 2e7, progress: ProgressLike = False) -> TCResult:
    """Exact topological concentration of every node at ``k`` hops for the train/val/test neighbours.

    ``train``, ``val``, ``test`` are edge collections (see :mod:`workbench.topology.graphs`); ``train``
    may be an :class:`EdgeSplit`, whose val/test are then used.  Self-loops, repeated edges and edges
    shared between splits (a val edge also in train; a test edge also in train or val) are dropped from
    the later split with a :class:`GraphInputWarning` (``clean=True``) or raise (``clean=False``).
    ``num_nodes`` defaults to one more than
    the largest node id.  ``max_block_nnz`` bounds the stored entries of one block of the sparse K-hop
    expansion (memory ~ 40 bytes per entry).  Returns a :class:`TCResult`; ``to_frame()`` has one row
    per node with columns ``train``, ``val``, ``test``.
    """
    if not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= MAX_K:
        raise ValueError(f"k={k!r} must be an integer number of hops in 1..{MAX_K}")
    k = int(k)
    start = time.perf_counter()
    edges, n, gname = _resolve_splits(train, val, test, num_nodes, clean)
    a = _adjacency(edges["train"], n)
    nbr = {s: (a if s == "train" else _adjacency(edges[s], n)) for s in SPLITS}
    deg = {s: np.asarray(nbr[s].sum(axis=1)).ravel() for s in SPLITS}
    beta = float(n / (2.0 * len(edges["train"])))
    bk = beta ** np.arange(k)

    walks = _walk_counts(a, k + 1)  # |H_i^k| and, one hop further, a bound on the rows of T N
    size = bk @ walks[:k]
    den_base = bk.sum() * size

    # row weight of a block: stored entries of S_V (<= sum of walk counts) and of T_V N (one more hop)
    est = np.minimum(walks[:k].sum(axis=0) + walks[1:k + 1].sum(axis=0) + 1, float(n) * (k + 1))
    bounds = _blocks(est, max_block_nnz)

    be = _Sparse(device)
    xp = be.xp
    A = be.put(a)
    N = {s: (A if s == "train" else be.put(nbr[s])) for s in SPLITS}
    active = [s for s in SPLITS if deg[s].any()]
    num = {s: xp.zeros(n, dtype=xp.float64) for s in SPLITS}
    with Progress(len(bounds), f"TC k={k}", progress) as bar:
        for lo, hi in bounds:
            x = A[lo:hi]
            s_v = x
            t_v = _indicator(x)
            for step in range(1, k):
                x = x @ A
                s_v = s_v + x * float(bk[step])
                t_v = t_v + _indicator(x) * float(bk[step])
            for s in active:
                c = t_v @ N[s]
                num[s] += xp.asarray(s_v.multiply(c).sum(axis=0)).ravel()
            bar.update()
    synchronize(be.device)

    out: Dict[str, np.ndarray] = {}
    for s in SPLITS:
        numer = to_numpy(num[s])
        den = den_base - (1.0 if s == "train" else 0.0)
        ok = (deg[s] > 0) & (den > 0) & (deg["train"] >= (2 if s == "train" else 1))
        tc = np.zeros(n)
        tc[ok] = numer[ok] / (deg[s][ok] * den[ok])
        out[s] = tc
    return TCResult(
        train=out["train"], val=out["val"], test=out["test"],
        degree_train=deg["train"].astype(np.int64), degree_val=deg["val"].astype(np.int64),
        degree_test=deg["test"].astype(np.int64), beta=beta, k=k, seconds=time.perf_counter() - start,
        settings={"k": k, "device": describe(be.device), "backend": "cupy" if be.gpu else "scipy",
                  "num_nodes": n, "graph": gname, "blocks": len(bounds),
                  "edges": {s: int(len(edges[s])) for s in SPLITS}},
    )


# --------------------------------------------------------------------------------------------
# ATC
# --------------------------------------------------------------------------------------------
def approximate_concentration(train: Any, *, val: Any = None, test: Any = None, k: int = 1,
                              num_nodes: Optional[int] = None, dim: int = 64, similarity: str = "cosine",
                              seed: int = 0, device: DeviceLike = "auto", clean: bool = True) -> ATCResult:
    """ATC: ``P = D^-1 (A + I)``, ``R`` an ``n x dim`` Gaussian matrix (std ``1/dim``, seeded),
    ``E = (1/K) sum_k P^k R``; ``ATC_i^X`` is the mean ``similarity`` (``"cosine"`` or ``"dot"``) of
    ``E_i`` and ``E_j`` over split neighbours ``j`` (0 without neighbours).  Tracks Val/Test TC.
    """
    if similarity not in ("cosine", "dot"):
        raise ValueError(f"similarity={similarity!r}: use 'cosine' or 'dot'")
    if not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= MAX_K:
        raise ValueError(f"k={k!r} must be an integer number of hops in 1..{MAX_K}")
    k = int(k)
    edges, n, gname = _resolve_splits(train, val, test, num_nodes, clean)
    a = _adjacency(edges["train"], n)
    p = a + sps.identity(n, format="csr")
    p = sps.diags(1.0 / np.asarray(p.sum(axis=1)).ravel()) @ p
    r = np.random.default_rng(seed).normal(0.0, 1.0 / dim, size=(n, dim))
    be = _Sparse(device)
    xp = be.xp
    P = be.put(p.tocsr())
    x = xp.asarray(r)
    emb = xp.zeros_like(x)
    for _ in range(k):
        x = P @ x
        emb += x
    emb /= k
    if similarity == "cosine":
        norm = xp.linalg.norm(emb, axis=1, keepdims=True)
        emb = emb / xp.where(norm > 0, norm, 1.0)
    out = {}
    for s in SPLITS:
        e = edges[s]
        if len(e) == 0:
            out[s] = np.zeros(n)
            continue
        u = xp.asarray(np.concatenate([e[:, 0], e[:, 1]]))
        v = xp.asarray(np.concatenate([e[:, 1], e[:, 0]]))
        sim = (emb[u] * emb[v]).sum(axis=1)
        tot = xp.zeros(n)
        cnt = xp.zeros(n)
        if be.gpu:
            import cupyx

            cupyx.scatter_add(tot, u, sim)
            cupyx.scatter_add(cnt, u, 1.0)
        else:
            np.add.at(tot, u, sim)
            np.add.at(cnt, u, 1.0)
        tot, cnt = to_numpy(tot), to_numpy(cnt)
        out[s] = np.where(cnt > 0, tot / np.maximum(cnt, 1), 0.0)
    return ATCResult(train=out["train"], val=out["val"], test=out["test"], k=k,
                     settings={"k": k, "dim": dim, "similarity": similarity, "seed": seed,
                               "device": describe(be.device), "num_nodes": n, "graph": gname})


# --------------------------------------------------------------------------------------------
# baselines
# --------------------------------------------------------------------------------------------
def degrees(train: Any, *, val: Any = None, test: Any = None, num_nodes: Optional[int] = None,
            clean: bool = True) -> pd.DataFrame:
    """Train/val/test degree of every node (one row per node)."""
    edges, n, _ = _resolve_splits(train, val, test, num_nodes, clean)
    return pd.DataFrame({s: np.bincount(edges[s].ravel(), minlength=n) for s in SPLITS},
                        index=pd.RangeIndex(n, name="node"))


def subgraph_density(train: Any, *, k: int = 1, num_nodes: Optional[int] = None, clean: bool = True,
                     device: DeviceLike = "auto", max_block_nnz: float = 2e7) -> np.ndarray:
    """Edge density of every node's K-hop ego network in the training graph: the edges among the nodes
    within ``k`` hops (the node included) over ``m (m - 1) / 2`` for ``m`` such nodes; 0 when ``m <= 1``.
    """
    if not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= MAX_K:
        raise ValueError(f"k={k!r} must be an integer number of hops in 1..{MAX_K}")
    k = int(k)
    edges, n, _ = _resolve_splits(train, None, None, num_nodes, clean)
    a = _adjacency(edges["train"], n)
    walks = _walk_counts(a, k + 1)
    est = np.minimum(walks.sum(axis=0) + 1, float(n) * 2)
    be = _Sparse(device)
    xp = be.xp
    A = be.put(a)
    I = be.put(sps.identity(n, format="csr"))
    dens = np.zeros(n)
    for lo, hi in _blocks(est, max_block_nnz):
        r = I[lo:hi]
        for _ in range(k):
            r = _indicator(r + r @ A)
        m = to_numpy(xp.asarray(r.sum(axis=1)).ravel())
        inner = to_numpy(xp.asarray((r @ A).multiply(r).sum(axis=1)).ravel()) / 2.0
        ok = m > 1
        dens[lo:hi][ok] = inner[ok] / (m[ok] * (m[ok] - 1) / 2.0)
    return dens


def walk_concentration(train: Any, *, val: Any = None, test: Any = None, k: int = 1,
                       num_nodes: Optional[int] = None, nodes: Optional[Sequence[int]] = None,
                       clean: bool = True, cache: bool = True) -> pd.DataFrame:
    """TC by the straightforward method: expand every walk node by node (exponential in ``k``).

    Kept as an independent check of :func:`concentration` and as the baseline the benchmarks time;
    use it on small graphs or few ``nodes`` only.  ``cache=False`` re-expands a neighbour's walks for
    every pair, as the public reference implementation does.
    """
    from collections import Counter

    edges, n, _ = _resolve_splits(train, val, test, num_nodes, clean)
    adj = [[] for _ in range(n)]
    for u, v in edges["train"].tolist():
        adj[u].append(v)
        adj[v].append(u)
    split_adj = {}
    for s in SPLITS:
        lists = [[] for _ in range(n)]
        for u, v in edges[s].tolist():
            lists[u].append(v)
            lists[v].append(u)
        split_adj[s] = lists
    beta = n / (2.0 * len(edges["train"]))
    memo: Dict[int, list] = {}

    def expand(i):
        walks, levels = [i], []
        for _ in range(k):
            walks = [w for x in walks for w in adj[x]]
            levels.append(Counter(walks))
        return levels

    def hops(i):
        if not cache:
            return expand(i)
        if i not in memo:
            memo[i] = expand(i)
        return memo[i]

    rows = []
    for i in (range(n) if nodes is None else nodes):
        hi = hops(i)
        row = {"node": i}
        for s in SPLITS:
            nb = split_adj[s][i]
            den = (sum(beta ** q for q in range(k)) * sum(beta ** q * sum(hi[q].values()) for q in range(k))
                   - (1 if s == "train" else 0))
            if not nb or den <= 0 or len(adj[i]) < (2 if s == "train" else 1):
                row[s] = 0.0
                continue
            vals = []
            for j in nb:
                hj = hops(j)
                tot = 0.0
                for k1 in range(k):
                    for k2 in range(k):
                        common = hi[k1].keys() & hj[k2].keys()
                        tot += beta ** (k1 + k2) * sum(hi[k1][v] for v in common)
                vals.append(tot / den)
            row[s] = float(np.mean(vals))
        rows.append(row)
    return pd.DataFrame(rows, columns=["node", *SPLITS]).set_index("node")
