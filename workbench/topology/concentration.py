"""Topological concentration (TC), its approximation (ATC) and the degree / density baselines.

Definitions (``docs/topology.md``; Wang et al., ICLR 2024).  ``A`` is the adjacency of the training edges,
``beta = 1 / mean training degree`` (over all ``num_nodes`` nodes), ``N_i^X`` node ``i``'s neighbours in
split ``X``.  With ``S = sum_k beta^(k-1) A^k`` and ``T = sum_k beta^(k-1) [A^k > 0]``::

    TC_i^{X,K} = mean_{j in N_i^X} (S T^T)_ij / ((sum_k beta^(k-1)) (sum_k beta^(k-1) |H_i^k|) - 1[X = Train])

where ``|H_i^k| = (A^k 1)_i`` is the number of length-k walks from ``i`` (the multiset size).  TC is 0 where
it is undefined (Train: ``d_i <= 1``; Val/Test: no neighbour in the split, or no training edge).

Exact TC needs ``(S T^T)_ij`` on the split edges only (see ``_pair_numerators``).  SciPy on the CPU,
CuPy (cupyx.scipy.sparse) on a CUDA device, the same array code on both.
"""
from __future__ import annotations

import dataclasses
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Optional, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sps
import torch
from scipy.sparse.csgraph import reverse_cuthill_mckee

from ..backend import (DeviceLike, MemoryBudgetError, array_module, describe, memory_budget, resolve_device,
                       synchronize, to_numpy)
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
        self.sp = sps
        if self.gpu:
            import cupyx.scipy.sparse as csp

            self.sp = csp
        # index arrays for fancy indexing: NumPy scatters fastest with intp, cuSPARSE wants int32
        self.index = self.xp.int32 if self.gpu else np.intp

    def put(self, m: sps.spmatrix):
        return self.sp.csr_matrix(m) if self.gpu else m.tocsr()


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
    """``W[q-1] = A^q 1`` for q = 1..k (number of length-q walks from every node)."""
    out = [a @ np.ones(a.shape[0])]
    for _ in range(1, k):
        out.append(a @ out[-1])
    return np.stack(out)


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class TCResult(Result):
    """Per-node TC for the train/val/test neighbours (0 where undefined), plus degrees.  With ``nodes``
    (the node ids TC was computed for; None: all) the other entries are NaN."""

    train: np.ndarray = None
    val: np.ndarray = None
    test: np.ndarray = None
    degree_train: np.ndarray = None
    degree_val: np.ndarray = None
    degree_test: np.ndarray = None
    beta: float = 0.0
    k: int = 1
    seconds: float = 0.0
    nodes: Optional[np.ndarray] = None

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"train": self.train, "val": self.val, "test": self.test,
                             "degree_train": self.degree_train, "degree_val": self.degree_val,
                             "degree_test": self.degree_test},
                            index=pd.RangeIndex(len(self.train), name="node"))

    def defined(self, split: str) -> np.ndarray:
        """Mask of the nodes where TC of ``split`` is defined."""
        ok = (self.degree_train >= 2) if split == "train" else (
            (getattr(self, f"degree_{split}") > 0) & (self.degree_train > 0))
        return ok & ~np.isnan(getattr(self, split))

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
_TABLE = 1 << 21  # entries of one table of dense S + iT rows (complex128: 32 MB per thread)
_CHUNK = 1 << 18  # stored entries gathered per step (the temporaries stay in cache)


def concentration(train: Any, *, val: Any = None, test: Any = None, k: int = 1,
                  num_nodes: Optional[int] = None, nodes: Optional[Sequence[int]] = None,
                  device: DeviceLike = "auto", clean: bool = True, max_block_nnz: float = 2e7,
                  max_memory: Optional[float] = None, threads: Optional[int] = None,
                  progress: ProgressLike = False) -> TCResult:
    """Exact topological concentration at ``k`` hops for the train/val/test neighbours.

    ``train``, ``val``, ``test`` are edge collections (see :mod:`workbench.topology.graphs`); ``train``
    may be an :class:`EdgeSplit`, whose val/test are then used.  Self-loops, repeated edges and edges
    shared between splits (a val edge also in train; a test edge also in train or val) are dropped from
    the later split with a :class:`GraphInputWarning` (``clean=True``) or raise (``clean=False``).
    ``num_nodes`` defaults to one more than the largest node id.

    ``nodes``: TC of these ids only (NaN elsewhere; ``TCResult.nodes``), at a cost growing with them and their
    split neighbours.  The k-hop rows kept take at most ``max_memory`` bytes (8 per walk count; default: half the
    memory available, at most 4 GB), else the nodes go in halves (``settings["passes"]``); ``max_block_nnz`` bounds
    a k-hop expansion block; ``threads`` (default ``torch.get_num_threads()`` up to 8, 1 on a GPU) run side by side.
    """
    if not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= MAX_K:
        raise ValueError(f"k={k!r} must be an integer number of hops in 1..{MAX_K}")
    k, start = int(k), time.perf_counter()
    edges, n, gname = _resolve_splits(train, val, test, num_nodes, clean)
    subset = None if nodes is None else np.unique(np.asarray(nodes, dtype=np.int64).ravel())
    if subset is not None and len(subset) and (subset[0] < 0 or subset[-1] >= n):
        raise ValueError(f"nodes must be node ids in 0..{n - 1}; got {subset[0]}..{subset[-1]}")
    a = _adjacency(edges["train"], n)
    deg = {s: np.bincount(edges[s].ravel(), minlength=n).astype(np.float64) for s in SPLITS}
    beta = float(n / (2.0 * len(edges["train"])))
    bk, walks, be = beta ** np.arange(k), _walk_counts(a, k), _Sparse(device)
    threads = (1 if be.gpu else min(8, torch.get_num_threads())) if threads is None else max(1, int(threads))
    opts = (max_block_nnz, memory_budget(be.device, cap=4e9) if max_memory is None else float(max_memory), threads)
    with Progress(1, f"TC k={k}", progress) as bar:
        num, blocks, passes = _numerators(be, a, edges, subset, bk, walks, opts, bar)
    synchronize(be.device)
    den_base = bk.sum() * (bk @ walks)
    out: Dict[str, np.ndarray] = {}
    for t, s in enumerate(SPLITS):
        den = den_base - (1.0 if s == "train" else 0.0)
        ok = (deg[s] > 0) & (den > 0) & (deg["train"] >= (2 if s == "train" else 1))
        out[s] = np.zeros(n) if subset is None else np.full(n, np.nan)
        if subset is not None:
            out[s][subset], ok = 0.0, ok & np.isin(np.arange(n), subset)
        out[s][ok] = num[t][ok] / (deg[s][ok] * den[ok])
    return TCResult(
        train=out["train"], val=out["val"], test=out["test"], nodes=subset,
        degree_train=deg["train"].astype(np.int64), degree_val=deg["val"].astype(np.int64),
        degree_test=deg["test"].astype(np.int64), beta=beta, k=k, seconds=time.perf_counter() - start,
        settings={"k": k, "device": describe(be.device), "backend": "cupy" if be.gpu else "scipy",
                  "num_nodes": n, "graph": gname, "blocks": blocks, "passes": passes, "threads": threads,
                  "nodes": None if subset is None else int(len(subset)), "max_memory": opts[1],
                  "edges": {s: int(len(edges[s])) for s in SPLITS}},
    )


def _numerators(be, a, edges, subset, bk, walks, opts, bar):
    """``sum_{j in N_i^X} (S T^T)_ij`` (3 x n) of the nodes ``subset`` (None: all), block and pass counts.
    Past ``max_memory`` the nodes are split in halves (breadth-first order: few shared neighbours)."""
    num, blocks = _pair_numerators(be, a, edges, subset, bk, walks, opts, bar)
    if num is not None:
        return num, blocks, 1
    nodes = np.arange(a.shape[0]) if subset is None else subset
    if len(nodes) <= 1:
        raise MemoryBudgetError(f"max_memory={opts[1]:g} bytes cannot hold the {len(bk)}-hop rows of node(s) {nodes} "
                                "and their split neighbours: raise max_memory (default: half the memory available)")
    nodes = nodes[np.argsort(_bfs_rank(a)[nodes], kind="stable")]
    parts = [_numerators(be, a, edges, np.sort(h), bk, walks, opts, bar) for h in np.array_split(nodes, 2)]
    return sum(p[0] for p in parts), blocks + sum(p[1] for p in parts), sum(p[2] for p in parts)


def _bfs_rank(a) -> np.ndarray:
    """Position of every node in a reverse Cuthill-McKee (breadth-first) order of the training graph."""
    return np.argsort(reverse_cuthill_mckee(a, symmetric_mode=True))


def _waves(fn, items: list, threads: int):
    """``fn(item)`` for every item in order, ``threads`` at a time (the array work releases the GIL)."""
    if threads <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(threads) as pool:
        for i in range(0, len(items), threads):
            yield from pool.map(fn, items[i:i + threads])


def _per_entry(xp, values, indptr):
    """``values[r]`` for every stored entry of row r of a CSR ``indptr`` (CuPy: by binary search)."""
    if xp is np:
        return np.repeat(values, np.diff(indptr))
    return values[xp.searchsorted(indptr[1:], xp.arange(int(indptr[-1])), side="right")]


def _take_rows(xp, x, sel):
    """``(indptr, indices, data)`` of the rows ``sel`` of the CSR ``x`` (array gathers: cheap per call)."""
    start = x.indptr[sel]
    ptr = xp.zeros(len(sel) + 1, dtype=xp.int64)
    xp.cumsum(x.indptr[sel + 1] - start, out=ptr[1:])
    pos = _per_entry(xp, start - ptr[:-1], ptr) + xp.arange(int(ptr[-1]))
    return ptr, xp.take(x.indices, pos), xp.take(x.data, pos)


def _row_sums(xp, values, indptr):
    """Sum of ``values`` over every CSR row (the rows are never empty here)."""
    if xp is np:
        return np.add.reduceat(values, indptr[:-1])
    rows = _per_entry(xp, xp.arange(len(indptr) - 1), indptr)
    return xp.bincount(rows, weights=values, minlength=len(indptr) - 1)


def _walk_rows(be, a, rows: np.ndarray, k: int, walks: np.ndarray, max_block_nnz: float, max_memory: float,
               threads: int):
    """``[X_1, ..., X_k]``: row r of ``X_q`` holds the walk counts ``A^q`` of node ``rows[r]``; None past
    ``max_memory`` bytes.  Row blocks (``max_block_nnz`` estimated entries) are expanded ``threads`` at a
    time into arrays sized by the bound ``min(n, walks)`` per row (pages never written stay unused);
    float32 counts where all walk counts are below 2^24 (exact)."""
    xp, n = be.xp, a.shape[0]
    cap = np.minimum(walks[:, rows], n)
    bounds = _blocks(cap.sum(axis=0) + 1, max_block_nnz)
    kinds = [np.float32 if walks[q].max() < 2 ** 24 else np.float64 for q in range(k)]
    mats = [be.put(a.astype(t)) for t in kinds]
    most = max([0] + [cap[:, lo:hi].sum() for lo, hi in bounds]) + max_memory // 8  # entries ever copied
    out = [(xp.zeros(len(rows) + 1, dtype=xp.int64), xp.empty(int(min(c.sum(), most)), dtype=xp.int32),
            xp.empty(int(min(c.sum(), most)), dtype=t)) for c, t in zip(cap, kinds)]

    def expand(bound):
        sel = rows[bound[0]:bound[1]]
        x, levels = be.sp.csr_matrix(_take_rows(xp, mats[0], xp.asarray(sel))[::-1], shape=(len(sel), n)), []
        for q in range(k):
            x = x if q == 0 else (x if x.dtype == kinds[q] else x.astype(kinds[q])) @ mats[q]
            levels.append(x)
        return bound, levels

    filled, used = [0] * k, 0
    for (lo, hi), levels in _waves(expand, bounds, threads):
        for q, x in enumerate(levels):
            (ptr, ind, dat), e0 = out[q], filled[q]
            filled[q] += x.nnz
            ptr[lo + 1:hi + 1] = x.indptr[1:] + e0
            ind[e0:filled[q]], dat[e0:filled[q]] = x.indices, x.data
            used += x.nnz * (4 + dat.itemsize)
        if used > max_memory:
            return None, len(bounds)
    return [be.sp.csr_matrix((d[:f], i[:f], p), shape=(len(rows), n))
            for (p, i, d), f in zip(out, filled)], len(bounds)


def _pair_numerators(be, a, edges, subset, bk, walks, opts, bar):
    """Numerators of the nodes ``subset`` (None: all), edge by edge; (None, blocks) past ``max_memory``.

    A split edge {u, w} needs ``S_u . T_w`` (for u) and ``S_w . T_u`` (for w), two sums over the k-hop
    support of one endpoint: the endpoint w with the smaller support is iterated, level q by level q
    (``T_w`` is ``beta^(q-1)`` on the support of ``A^q_w``, ``S_w`` is ``beta^(q-1) A^q_w``), against
    dense rows of u laid out in a table (see ``_fill_table``); the u's go in breadth-first order.
    """
    n = a.shape[0]
    e = np.concatenate([edges[s] for s in SPLITS])
    lab = np.concatenate([np.full(len(edges[s]), t) for t, s in enumerate(SPLITS)])
    want = np.ones(e.shape, bool) if subset is None else np.isin(e, subset)
    keep = want.any(axis=1)
    e, lab, want = e[keep], lab[keep], want[keep]
    rows = np.arange(n) if subset is None else np.unique(e)
    pos = np.full(n, -1, np.int64)
    pos[rows] = np.arange(len(rows))
    X, blocks = _walk_rows(be, a, rows, len(bk), walks, *opts)
    if X is None:
        return None, blocks
    ball = sum(np.diff(to_numpy(x.indptr)) for x in X)
    pe = pos[e]
    sw = (ball[pe[:, 1]] > ball[pe[:, 0]]).astype(int)  # 1: the second endpoint is u
    idx = np.arange(len(e))
    u, w, want_u, want_w = pe[idx, sw], pe[idx, 1 - sw], want[idx, sw], want[idx, 1 - sw]
    order = np.flatnonzero(ball[w] > 0)  # an edge to a node without training edges adds 0
    order = order[np.lexsort((w[order], _bfs_rank(a)[rows[u[order]]]))]
    u, w, lab, want_u, want_w = u[order], w[order], lab[order], want_u[order], want_w[order]
    vu, vw = _pair_values(be, X, u, w, ball, bk, bar, opts[2])
    num = np.bincount(np.concatenate([lab * n + rows[u], lab * n + rows[w]]),
                      weights=np.concatenate([vu * want_u, vw * want_w]), minlength=3 * n)
    return num.reshape(3, n), blocks


def _pair_values(be, X, u, w, ball, bk, bar, threads):
    """``(S_u . T_w, S_w . T_u)`` for the edges (u, w) (store rows of ``X``), sorted by u, in blocks of
    u's whose table fits ``_TABLE`` entries, on ``threads`` threads."""
    xp, n = be.xp, X[0].shape[1]
    if not len(u):
        return np.zeros(0), np.zeros(0)
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])  # first edge of every distinct u
    heads, ends = u[starts], np.r_[starts[1:], len(u)]
    bounds, i, acc, table = [], 0, 0, 1
    for j, size in enumerate(ball[heads].tolist() + [0]):  # rows x (union width + 1) <= _TABLE
        if j == len(heads) or (j > i and (j - i + 1) * (min(n, acc + size) + 1) > _TABLE):
            bounds.append((i, j))
            i, acc, table = j, 0, max(table, (j - i) * (min(n, acc) + 1))
        acc += size
    bar.set_total(len(bounds))
    vu, vw, d_w = xp.zeros(len(u)), xp.zeros(len(u)), xp.asarray(w)
    slot = np.repeat(np.arange(len(heads)), ends - starts)  # index of u among the heads
    local = threading.local()

    def run(bound):
        if not hasattr(local, "tab"):  # per-thread workspace
            local.tab = xp.zeros(table, dtype=xp.complex128)
            local.mark, local.loc = xp.zeros(n, dtype=bool), xp.zeros(n, dtype=be.index)
        (tab, loc), (b0, b1) = (local.tab, local.loc), bound
        p0, p1 = int(starts[b0]), int(ends[b1 - 1])
        width, touched = _fill_table(be, X, xp.asarray(heads[b0:b1]), bk, tab, local.mark, loc)
        offs = xp.asarray((slot[p0:p1] - b0) * width, dtype=be.index)
        cum = np.cumsum(ball[w[p0:p1]])
        cut = np.searchsorted(cum, np.arange(_CHUNK, cum[-1], _CHUNK))
        for c0, c1 in zip(np.r_[0, cut], np.r_[cut, p1 - p0]):
            sl = slice(p0 + c0, p0 + c1)
            for q, x in enumerate(X if c1 > c0 else ()):
                ptr, ind, dat = _take_rows(xp, x, d_w[sl])
                got = xp.take(tab, _per_entry(xp, offs[c0:c1], ptr) + xp.take(loc, ind))
                vu[sl] += bk[q] * _row_sums(xp, got.real, ptr)
                vw[sl] += bk[q] * _row_sums(xp, got.imag * dat, ptr)
        tab[touched] = 0.0

    for _ in _waves(run, bounds, threads):
        bar.update()
    return to_numpy(vu), to_numpy(vw)


def _fill_table(be, X, block, bk, tab, mark, loc):
    """Write ``S + iT`` of the store rows ``block`` into ``tab``: row-major, one column per node of the
    union of their supports plus a last, zero, column; ``loc`` maps a node to its column (the zero column
    when absent).  Returns the row width and the positions written."""
    xp = be.xp
    parts = [_take_rows(xp, x, block) for x in X]
    cols = [ind.astype(be.index) for _, ind, _ in parts]
    mark[xp.concatenate(cols)] = True
    union = xp.flatnonzero(mark)
    mark[union] = False
    width = len(union) + 1
    loc.fill(width - 1)
    loc[union] = xp.arange(len(union), dtype=loc.dtype)
    base, touched = xp.arange(len(block), dtype=be.index) * width, []
    for q, ((ptr, _, dat), c) in enumerate(zip(parts, cols)):
        f, v = _per_entry(xp, base, ptr) + xp.take(loc, c), bk[q] * (dat.astype(xp.float64) + 1j)
        if xp is np:
            np.add.at(tab, f, v)  # faster than fancy += in NumPy
        else:
            tab[f] += v  # the positions of one level are distinct
        touched.append(f)
    return width, xp.concatenate(touched)


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
    p = _adjacency(edges["train"], n) + sps.identity(n, format="csr")
    p = sps.diags(1.0 / np.asarray(p.sum(axis=1)).ravel()) @ p
    r = np.random.default_rng(seed).normal(0.0, 1.0 / dim, size=(n, dim))
    be = _Sparse(device)
    xp = be.xp
    P, x = be.put(p.tocsr()), xp.asarray(r)
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
        tot, cnt = xp.zeros(n), xp.zeros(n)
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
    A, I = be.put(a), be.put(sps.identity(n, format="csr"))
    dens = np.zeros(n)
    for lo, hi in _blocks(est, max_block_nnz):
        r = I[lo:hi]
        for _ in range(k):
            r = r + r @ A
            r.data[:] = 1.0
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
    split_adj = {s: [[] for _ in range(n)] for s in SPLITS}
    for s in SPLITS:
        for u, v in edges[s].tolist():
            split_adj[s][u].append(v)
            split_adj[s][v].append(u)
    adj = split_adj["train"]
    beta = n / (2.0 * len(edges["train"]))
    memo: Dict[int, list] = {}

    def expand(i):
        walks, levels = [i], []
        for _ in range(k):
            walks = [w for x in walks for w in adj[x]]
            levels.append(Counter(walks))
        return levels

    def hops(i):
        if cache and i not in memo:
            memo[i] = expand(i)
        return memo[i] if cache else expand(i)

    rows = []
    for i in (range(n) if nodes is None else nodes):
        hi, row = hops(i), {"node": i}
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
                vals.append(sum(beta ** (k1 + k2) * sum(hi[k1][v] for v in hi[k1].keys() & hj[k2].keys())
                                for k1 in range(k) for k2 in range(k)) / den)
            row[s] = float(np.mean(vals))
        rows.append(row)
    return pd.DataFrame(rows, columns=["node", *SPLITS]).set_index("node")
