"""Graph input, cleaning, seeded edge splits and built-in graphs for the topology analysis.

Every entry point of :mod:`workbench.topology` accepts an *edge collection*:

* a ``networkx`` graph (nodes are numbered by their position in ``G.nodes``);
* an integer array (NumPy or torch) of shape ``(2, E)`` or ``(E, 2)`` (a ``(2, 2)`` array is read as two
  rows, i.e. ``(E, 2)``);
* a SciPy sparse adjacency matrix (its non-zero pattern; an entry ``> 1`` counts as repeated edges);
* a path to a graph file: an edge list (two columns of integer or string node ids, separated by white space,
  commas, tabs or semicolons; ``#`` / ``%`` comments; a ``source,target`` header is skipped), a ``.npz`` /
  ``.pt`` file with an ``edge_index``, a GraphML or GML file (see :mod:`.readers`; node ids are kept);
* a :class:`GraphData` (what :func:`builtin` and :func:`as_graph` return).

Graphs are undirected and simple.  Self-loops and repeated edges are never silently counted: with
``clean=True`` (the default) they are removed and a :class:`GraphInputWarning` says how many; with
``clean=False`` they raise :class:`ValueError`.  The same holds for an edge given in two splits (see
:func:`workbench.topology.concentration`).  An array that lists every edge exactly once in each
direction (the PyTorch Geometric convention) is read as one undirected edge per pair without a warning.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from .readers import GRAPH_FILE_FORMS, read_arrays, read_edge_list, read_networkx

SOCIAL_GRAPHS = ("karate", "davis_southern_women", "florentine_families", "les_miserables")
GENERATED_GRAPHS = ("sbm", "powerlaw_cluster", "random_geometric")
BUILTIN_GRAPHS = SOCIAL_GRAPHS + GENERATED_GRAPHS


class GraphInputWarning(UserWarning):
    """Self-loops, repeated edges or edges shared between splits were removed from an input graph."""


@dataclasses.dataclass
class GraphData:
    """An undirected simple graph: ``edges`` is an ``(E, 2)`` int64 array with ``u < v``, each pair once."""

    edges: np.ndarray
    num_nodes: int
    name: str = "graph"
    labels: Optional[list] = None  # original node labels (networkx input), position = node id

    @property
    def num_edges(self) -> int:
        return int(len(self.edges))

    def degrees(self) -> np.ndarray:
        return np.bincount(self.edges.ravel(), minlength=self.num_nodes).astype(np.int64)

    def to_networkx(self):
        import networkx as nx

        g = nx.Graph()
        g.add_nodes_from(range(self.num_nodes))
        g.add_edges_from(map(tuple, self.edges.tolist()))
        return g

    def __repr__(self) -> str:
        return f"GraphData({self.name!r}, num_nodes={self.num_nodes}, num_edges={self.num_edges})"


@dataclasses.dataclass
class EdgeSplit:
    """Seeded train/validation/test split of the edges of one graph (each an ``(E, 2)`` array).

    ``labels``: the graph's own node ids (position = node number), when it has any other than ``0 .. n-1``.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    num_nodes: int
    name: str = "graph"
    settings: dict = dataclasses.field(default_factory=dict)
    labels: Optional[list] = None

    def __repr__(self) -> str:
        return (f"EdgeSplit({self.name!r}, num_nodes={self.num_nodes}, train={len(self.train)}, "
                f"val={len(self.val)}, test={len(self.test)})")


# --------------------------------------------------------------------------------------------
# reading edge collections
# --------------------------------------------------------------------------------------------
def load_graph(spec: Any, *, name: str = "graph") -> Union["GraphData", "EdgeSplit"]:
    """The graph a spec names: a built-in name, an edge-list / array / GraphML / GML file, or anything
    :func:`as_graph` reads.  A file with train/val/test edge arrays gives an :class:`EdgeSplit`."""
    if isinstance(spec, (GraphData, EdgeSplit)):
        return spec
    if isinstance(spec, (str, os.PathLike)):
        path = Path(spec).expanduser()
        if not path.exists():
            key = os.fspath(spec).lower().replace("-", "_")
            if key in BUILTIN_GRAPHS or key in ("karate_club", "davis", "florentine", "lesmis", "powerlaw",
                                                 "geometric", "rgg"):
                return builtin(key)
            raise FileNotFoundError(f"graph={os.fspath(spec)!r} is not an existing file (relative paths are read from "
                                    f"{os.getcwd()}) or a built-in graph ({', '.join(BUILTIN_GRAPHS)}); a graph "
                                    "spec is one of: " + "; ".join(GRAPH_FILE_FORMS))
        if path.suffix.lower() in (".npz", ".pt", ".pth"):
            arrays = read_arrays(path)
            if "edges" in arrays:
                return as_graph(arrays["edges"], num_nodes=arrays["num_nodes"], name=path.stem)
            parts = {k: as_graph(arrays.get(k, np.zeros((0, 2), np.int64)), name=k) for k in ("train", "val", "test")}
            n = max([arrays["num_nodes"] or 0] + [g.num_nodes for g in parts.values()])
            return EdgeSplit(train=parts["train"].edges, val=parts["val"].edges, test=parts["test"].edges, num_nodes=n,
                             name=path.stem, settings={"given": True, "graph": path.stem})
    return as_graph(spec, name=name)


def _raw_pairs(source: Any, name: str):
    """(pairs (E,2) int64, num_nodes or None, labels or None, source name)."""
    if isinstance(source, GraphData):
        return source.edges, source.num_nodes, source.labels, source.name
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{name}: graph file {str(path)!r} does not exist")
        if path.suffix.lower() in (".graphml", ".gml"):
            return _raw_pairs(read_networkx(path), name)
        if path.suffix.lower() in (".npz", ".pt", ".pth"):
            arrays = read_arrays(path)
            edges = arrays.get("edges", arrays.get("train"))
            return edges, arrays["num_nodes"], None, path.stem
        pairs, labels = read_edge_list(path, name)
        return pairs, (len(labels) if labels is not None else None), labels, path.stem
    try:
        import networkx as nx
    except ImportError:  # pragma: no cover
        nx = None
    if nx is not None and isinstance(source, nx.Graph):
        nodes = list(source.nodes())
        index = {v: i for i, v in enumerate(nodes)}
        pairs = np.array([(index[u], index[v]) for u, v in source.edges()], dtype=np.int64).reshape(-1, 2)
        labels = None if nodes == list(range(len(nodes))) else nodes
        return pairs, len(nodes), labels, str(source.name or type(source).__name__)
    import scipy.sparse as sps

    if sps.issparse(source):
        if source.shape[0] != source.shape[1]:
            raise ValueError(f"{name}: a sparse adjacency matrix must be square, got shape {source.shape}")
        coo = sps.coo_matrix(source)
        coo.sum_duplicates()
        keep = coo.data != 0
        rows, cols, data = coo.row[keep], coo.col[keep], coo.data[keep]
        reps = np.maximum(np.rint(np.abs(data)).astype(np.int64), 1)
        pairs = np.stack([np.repeat(rows, reps), np.repeat(cols, reps)], axis=1).astype(np.int64)
        return pairs, int(source.shape[0]), None, "sparse"
    if hasattr(source, "detach"):  # torch tensor
        source = source.detach().cpu().numpy()
    arr = np.asarray(source)
    if arr.size == 0:
        return np.zeros((0, 2), np.int64), None, None, "edges"
    if arr.ndim != 2 or 2 not in arr.shape:
        raise ValueError(f"{name}: expected an edge array of shape (2, E) or (E, 2), got shape {arr.shape}; "
                         "pass edges as pairs of node ids")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name}: node ids must be integers")
    elif arr.dtype.kind not in "iu":
        raise ValueError(f"{name}: node ids must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    pairs = arr if arr.shape[1] == 2 else arr.T
    return np.ascontiguousarray(pairs), None, None, "edges"


def _clean(pairs: np.ndarray, num_nodes: int, *, clean: bool, name: str) -> np.ndarray:
    """Canonical (u < v) unique undirected edges; self-loops and repeats removed with a message."""
    if len(pairs) == 0:
        return np.zeros((0, 2), np.int64)
    if pairs.min() < 0:
        raise ValueError(f"{name}: node ids must be >= 0, found {int(pairs.min())}")
    if pairs.max() >= num_nodes:
        raise ValueError(f"{name}: node id {int(pairs.max())} >= num_nodes={num_nodes}; "
                         "pass a larger num_nodes or renumber the nodes")
    loops = pairs[:, 0] == pairs[:, 1]
    n_loops = int(loops.sum())
    rest = pairs[~loops]
    lo, hi = np.minimum(rest[:, 0], rest[:, 1]), np.maximum(rest[:, 0], rest[:, 1])
    key = lo * np.int64(num_nodes) + hi
    ukey, counts = np.unique(key, return_counts=True)
    n_dup = int(len(key) - len(ukey))
    if n_dup:
        # both directions listed exactly once (the PyTorch Geometric convention) is not a duplicate
        okey = rest[:, 0] * np.int64(num_nodes) + rest[:, 1]
        if np.all(counts == 2) and len(np.unique(okey)) == len(okey):
            n_dup = 0
    problems = []
    if n_loops:
        problems.append(f"{n_loops} self-loop(s)")
    if n_dup:
        problems.append(f"{n_dup} repeated edge(s)")
    if problems:
        what = " and ".join(problems)
        if not clean:
            raise ValueError(f"{name} has {what}; topological concentration needs a simple graph: remove "
                             "them or pass clean=True to drop them")
        warnings.warn(f"{name}: removed {what}; each undirected edge is counted once", GraphInputWarning,
                      stacklevel=4)
    return np.stack([ukey // num_nodes, ukey % num_nodes], axis=1).astype(np.int64)


def as_graph(source: Any, *, num_nodes: Optional[int] = None, clean: bool = True,
             name: str = "graph") -> GraphData:
    """Read any edge collection (see module doc) into a clean :class:`GraphData`."""
    pairs, n_src, labels, src_name = _raw_pairs(source, name)
    n = max(int(num_nodes or 0), int(n_src or 0), int(pairs.max()) + 1 if len(pairs) else 0)
    if num_nodes is not None and len(pairs) and pairs.max() >= num_nodes:
        raise ValueError(f"{name}: node id {int(pairs.max())} >= num_nodes={num_nodes}; "
                         "pass a larger num_nodes or renumber the nodes")
    edges = _clean(pairs, n, clean=clean, name=name)
    return GraphData(edges=edges, num_nodes=n, name=src_name if name == "graph" else name, labels=labels)


def edge_array(source: Any, *, num_nodes: Optional[int] = None, clean: bool = True,
               name: str = "edges") -> np.ndarray:
    """The clean ``(E, 2)`` edge array (``u < v``, unique) of any edge collection."""
    return as_graph(source, num_nodes=num_nodes, clean=clean, name=name).edges


def split_edges(graph: Any, *, val: float = 0.1, test: float = 0.2, seed: int = 0,
                num_nodes: Optional[int] = None, clean: bool = True) -> EdgeSplit:
    """Seeded random split of the edges of ``graph`` into train/validation/test ``(E, 2)`` arrays.

    ``val`` and ``test`` are fractions of the edges (at least one edge each when the fraction is > 0).
    """
    for arg, frac in (("val", val), ("test", test)):
        if not 0.0 <= frac < 1.0:
            raise ValueError(f"{arg}={frac} must be a fraction in [0, 1)")
    if val + test >= 1.0:
        raise ValueError(f"val + test = {val + test} leaves no training edges; use smaller fractions")
    g = as_graph(graph, num_nodes=num_nodes, clean=clean)
    m = g.num_edges
    n_val = int(round(val * m)) if val else 0
    n_test = int(round(test * m)) if test else 0
    n_val, n_test = (max(n_val, 1) if val else 0), (max(n_test, 1) if test else 0)
    if m - n_val - n_test < 1:
        raise ValueError(f"the graph has {m} edges: too few to split into val={val}, test={test} and a "
                         "non-empty training set")
    perm = np.random.default_rng(seed).permutation(m)
    e = g.edges[perm]
    test_e, val_e, train_e = e[:n_test], e[n_test:n_test + n_val], e[n_test + n_val:]
    srt = lambda a: a[np.lexsort((a[:, 1], a[:, 0]))]  # noqa: E731
    return EdgeSplit(train=srt(train_e), val=srt(val_e), test=srt(test_e), num_nodes=g.num_nodes, name=g.name,
                     labels=g.labels,
                     settings={"val": val, "test": test, "seed": seed, "graph": g.name})


# --------------------------------------------------------------------------------------------
# built-in graphs
# --------------------------------------------------------------------------------------------
def _sbm_edges(n: int, blocks: int, p_in: float, p_out: float, rng: np.random.Generator) -> np.ndarray:
    """Stochastic block model (equal blocks) sampled block pair by block pair, O(E) memory."""
    sizes = np.full(blocks, n // blocks)
    sizes[: n % blocks] += 1
    starts = np.concatenate([[0], np.cumsum(sizes)])
    out = []
    for a in range(blocks):
        for b in range(a, blocks):
            p = p_in if a == b else p_out
            if p <= 0:
                continue
            na, nb = sizes[a], sizes[b]
            pairs = na * (na - 1) // 2 if a == b else na * nb
            m = rng.binomial(pairs, p)
            if m == 0:
                continue
            # sample m distinct pair indices (with a small oversampling, then unique)
            idx = np.unique(rng.integers(0, pairs, size=int(m * 1.05) + 16))
            idx = rng.permutation(idx)[:m]
            if a == b:  # index -> (i, j) with i < j inside the block
                i = (np.floor((np.sqrt(8.0 * idx + 1) + 1) / 2)).astype(np.int64)
                i = np.where(i * (i - 1) // 2 > idx, i - 1, i)
                i = np.where((i + 1) * i // 2 <= idx, i + 1, i)
                j = idx - i * (i - 1) // 2
                u, v = starts[a] + j, starts[a] + i
            else:
                u, v = starts[a] + idx // nb, starts[b] + idx % nb
            out.append(np.stack([u, v], axis=1))
    return np.concatenate(out).astype(np.int64) if out else np.zeros((0, 2), np.int64)


def _geometric_edges(n: int, radius: float, rng: np.random.Generator) -> np.ndarray:
    from scipy.spatial import cKDTree

    pts = rng.random((n, 2))
    return cKDTree(pts).query_pairs(radius, output_type="ndarray").astype(np.int64)


def builtin(name: str, *, n: Optional[int] = None, seed: int = 0, degree: float = 10.0,
            blocks: int = 4, p_in: Optional[float] = None, p_out: Optional[float] = None,
            radius: Optional[float] = None, m: int = 3, p_triangle: float = 0.5) -> GraphData:
    """A built-in graph by name.

    Social graphs bundled with networkx (no download): ``"karate"`` (34 nodes, 78 edges),
    ``"davis_southern_women"``, ``"florentine_families"``, ``"les_miserables"``.  Generated graphs, seeded,
    from hundreds to millions of edges (``n`` nodes):

    * ``"sbm"``: stochastic block model with ``blocks`` equal blocks and mean degree ``degree``
      (80 % of it inside the blocks unless ``p_in``/``p_out`` are given); sampled in O(E);
    * ``"powerlaw_cluster"``: Holme-Kim power-law graph with clustering (``m``, ``p_triangle``; networkx);
    * ``"random_geometric"``: ``n`` points in the unit square joined within ``radius`` (default: mean
      degree ``degree``), via a k-d tree, so a million edges take seconds.
    """
    import networkx as nx

    key = name.lower().replace("-", "_").replace(" ", "_")
    rng = np.random.default_rng(seed)
    if key in ("karate", "karate_club"):
        return as_graph(nx.karate_club_graph(), name="karate")
    if key in ("davis_southern_women", "davis"):
        return as_graph(nx.davis_southern_women_graph(), name="davis_southern_women")
    if key in ("florentine_families", "florentine"):
        return as_graph(nx.florentine_families_graph(), name="florentine_families")
    if key in ("les_miserables", "lesmis"):
        return as_graph(nx.les_miserables_graph(), name="les_miserables")
    if key == "sbm":
        n = int(n or 1000)
        size = n / blocks
        if p_in is None:
            p_in = min(1.0, 0.8 * degree / max(size - 1, 1))
        if p_out is None:
            p_out = min(1.0, 0.2 * degree / max(n - size, 1)) if blocks > 1 else 0.0
        edges = _sbm_edges(n, blocks, p_in, p_out, rng)
        return GraphData(edges=_clean(edges, n, clean=True, name="sbm"), num_nodes=n, name=f"sbm(n={n})")
    if key in ("powerlaw_cluster", "powerlaw"):
        n = int(n or 1000)
        g = nx.powerlaw_cluster_graph(n, m, p_triangle, seed=int(seed))
        return as_graph(g, name=f"powerlaw_cluster(n={n})")
    if key in ("random_geometric", "geometric", "rgg"):
        n = int(n or 1000)
        if radius is None:
            radius = float(np.sqrt(degree / (np.pi * max(n - 1, 1))))
        edges = _geometric_edges(n, radius, rng)
        return GraphData(edges=_clean(edges, n, clean=True, name="random_geometric"), num_nodes=n,
                         name=f"random_geometric(n={n})")
    raise ValueError(f"unknown built-in graph {name!r}; choose one of {', '.join(BUILTIN_GRAPHS)}")
