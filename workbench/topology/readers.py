"""Reading graphs from files: edge lists (text, CSV, TSV), arrays (``.npz`` / ``.pt`` with an ``edge_index``
and optional split arrays), GraphML and GML.

Node ids in a file are kept: integer ids numbered ``0 .. n-1`` (or close to it) are used as they are; any
other ids (strings, or sparse integers) are numbered in order of first appearance and the original ids
kept as the graph's ``labels``, shown in tables and figures.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

__all__ = ["read_edge_list", "read_arrays", "read_networkx", "GRAPH_FILE_FORMS"]

HEADER_WORDS = {"source", "target", "src", "dst", "u", "v", "from", "to", "node1", "node2", "head", "tail", "i", "j"}
SPLIT_KEYS = {"train": ("train_edge_index", "train_edges", "train"), "val": ("val_edge_index", "val_edges", "val",
                                                                              "valid_edge_index"),
              "test": ("test_edge_index", "test_edges", "test")}
GRAPH_FILE_FORMS = (
    "an edge list (.txt/.csv/.tsv/.edges: two columns of node ids, integers or strings; '#' or '%' comments)",
    "a .npz / .pt file with edge_index (2 x E), optional train/val/test edge arrays and num_nodes",
    "a GraphML (.graphml) or GML (.gml) file",
)


def _delimiter(line: str) -> Optional[str]:
    for d in ("\t", ",", ";"):
        if d in line:
            return d
    return None  # white space


def _number(ids: List[str]) -> Tuple[np.ndarray, Optional[list]]:
    """Node numbers for the ids in order, and the labels when the ids are not already ``0 .. n-1``."""
    try:
        ints = np.array([int(t) for t in ids], dtype=np.int64)
    except ValueError:
        ints = None
    if ints is not None and len(ints) and ints.min() >= 0 and ints.max() < 2 * len(np.unique(ints)) + 16:
        return ints, None
    order: Dict[str, int] = {}
    for t in ids:
        order.setdefault(t, len(order))
    labels: list = list(order)
    if ints is not None:  # sparse integer ids: keep them as integers
        labels = [int(t) for t in labels]
    return np.array([order[t] for t in ids], dtype=np.int64), labels


def read_edge_list(path: Path, name: str = "graph") -> Tuple[np.ndarray, Optional[list]]:
    """``(pairs (E, 2), labels or None)`` of an edge-list file (see module docstring)."""
    rows: List[List[str]] = []
    with open(path, newline="") as fh:
        lines = [ln for ln in fh if ln.strip() and not ln.lstrip().startswith(("#", "%"))]
    if not lines:
        return np.zeros((0, 2), np.int64), None
    delim = _delimiter(lines[0])
    reader = csv.reader(lines, delimiter=delim) if delim else (ln.split() for ln in lines)
    for i, fields in enumerate(reader):
        fields = [f.strip() for f in fields if f.strip() != ""]
        if len(fields) < 2:
            raise ValueError(f"{name}: line {i + 1} of {str(path)!r} has {len(fields)} field(s); an edge list has "
                             "two node ids per line")
        rows.append(fields[:2])
    if rows and {rows[0][0].lower(), rows[0][1].lower()} <= HEADER_WORDS:
        rows = rows[1:]  # a header line such as "source,target"
    flat, labels = _number([t for r in rows for t in r])
    return flat.reshape(-1, 2), labels


def _edges_of(value: Any) -> np.ndarray:
    arr = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
    if arr.ndim != 2 or 2 not in arr.shape:
        raise ValueError(f"an edge array must be (2, E) or (E, 2), got shape {arr.shape}")
    return (arr.T if arr.shape[0] == 2 and arr.shape[1] != 2 else arr).astype(np.int64)


def read_arrays(path: Path) -> Dict[str, Any]:
    """``{"edges" or "train"/"val"/"test": (E, 2) arrays, "num_nodes": int or None}`` of a ``.npz`` / ``.pt``."""
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    else:
        import torch

        arrays = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(arrays, dict):
            raise ValueError(f"graph={str(path)!r} holds a {type(arrays).__name__}; a graph file holds a dict with "
                             "edge_index (and optional train/val/test edge arrays)")
    out: Dict[str, Any] = {"num_nodes": int(np.asarray(arrays["num_nodes"])) if "num_nodes" in arrays else None}
    for split, keys in SPLIT_KEYS.items():
        key = next((k for k in keys if k in arrays), None)
        if key is not None:
            out[split] = _edges_of(arrays[key])
    if "train" not in out:
        if "edge_index" not in arrays:
            raise ValueError(f"graph={str(path)!r} holds {sorted(arrays)}; a graph file holds edge_index (2 x E) "
                             "or train_edge_index (and val_edge_index, test_edge_index)")
        # with held-out arrays, edge_index holds the training edges (the PyTorch Geometric convention)
        out["train" if ("val" in out or "test" in out) else "edges"] = _edges_of(arrays["edge_index"])
    return out


def read_networkx(path: Path):
    """A networkx graph from a GraphML or GML file (node ids kept as labels)."""
    import networkx as nx

    if path.suffix.lower() == ".graphml":
        g = nx.read_graphml(path)
    else:
        g = nx.read_gml(path)
    g = nx.Graph(g)  # undirected, simple
    g.name = path.stem
    return g
