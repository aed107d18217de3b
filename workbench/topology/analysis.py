"""One call from a graph to the full per-node picture: TC, ATC, baselines, link-prediction performance."""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from ..backend import DeviceLike
from ..progress import Progress, ProgressLike
from ..results import Result
from .concentration import (SPLITS, _adjacency, _walk_counts, approximate_concentration, concentration,
                            subgraph_density)
from .graphs import EdgeSplit, as_graph, load_graph, split_edges
from .linkpred import DEFAULT_KS, correlations, distribution_shift, fit_link_predictor, node_metrics

# every per-node predictor correlated with performance: TC and ATC per split, the degree baselines on
# train/val/test (docs/topology.md) and the K-hop ego-net density
PREDICTORS = ("tc_train", "tc_val", "tc_test", "atc_val", "atc_test", "degree_train", "degree_val",
              "degree_test", "density")
# tc="auto" computes exact TC of every node up to this estimated work (k-hop entries iterated, tc_cost)
# and uses ATC beyond it, with exact TC on a seeded sample of TC_SAMPLE nodes.  For scale: a power-law
# cluster graph with 200,000 edges (hubs of degree ~1,500) costs 3e8 at k=3, a random geometric graph with
# 1.4 million edges 1e8; 2e9 is of the order of a minute of exact TC on two CPU cores
TC_AUTO_LIMIT = 2e9
TC_SAMPLE = 500


@dataclasses.dataclass
class TopologyReport(Result):
    """Per-node TC / ATC / degree / density and link-prediction performance of one graph split.

    ``nodes`` has one row per node (performance columns are NaN for nodes without test neighbours);
    ``correlations`` one row per (predictor, performance metric); ``shift`` the Train-TC against Test-TC
    summary; ``train_edges`` the training graph (for drawing).  ``settings["variant"]`` is ``"exact-tc"``
    (exact TC of every node) or ``"atc"`` (exact TC, the ``tc_*`` columns and ``shift`` on a seeded node
    sample only, NaN elsewhere); ``atc_agreement`` the Spearman rank correlation of ATC with exact TC
    (val, test) over the nodes where both are known, with their number ``n_val``, ``n_test``.
    """

    nodes: pd.DataFrame = None
    correlations: pd.DataFrame = None
    shift: dict = dataclasses.field(default_factory=dict)
    train_edges: np.ndarray = None
    history: list = dataclasses.field(default_factory=list)
    atc_agreement: dict = dataclasses.field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        return self.nodes

    def findings(self, target: str = "hits@10"):
        """The key numbers of the report, each with a sentence (:mod:`workbench.findings`)."""
        from .findings import topology_findings

        return topology_findings(self, target)

    @property
    def performance_columns(self) -> list:
        return [c for c in self.nodes.columns if "@" in c or c == "mrr"]

    def worst_nodes(self, n: int = 10, *, target: str = "hits@10") -> pd.DataFrame:
        """The ``n`` evaluated test nodes with the lowest ``target`` (ties: lowest Test-TC first), with their
        ids, TC and degrees: the nodes the link predictor serves worst."""
        ev = self.nodes[self.nodes["n_test"].notna()]
        if target not in ev.columns:
            raise ValueError(f"target={target!r}; choose one of {self.performance_columns}")
        cols = [c for c in ("node_id", target, "tc_train", "tc_test", "degree_train", "degree_test", "n_test")
                if c in ev.columns]
        return ev.sort_values([target, "tc_test"])[cols].head(int(n))


def _split(graph: Any, data: Any, val: float, test: float, seed: int) -> EdgeSplit:
    """The edge split to analyse: ``graph`` itself (an :class:`EdgeSplit`), ``graph``'s edges as training
    edges with ``data``'s held-out ``{"val": ..., "test": ...}`` edges, or a seeded split of ``graph``."""
    graph = load_graph(graph)
    if isinstance(graph, EdgeSplit):
        if data is not None:
            raise ValueError("graph is already an EdgeSplit (it holds its val/test edges); pass data=None")
        return graph
    if data is None:
        return split_edges(graph, val=val, test=test, seed=seed)
    if not isinstance(data, dict) or not set(data) <= {"val", "test"} or "test" not in data:
        raise ValueError("data: pass the held-out edges as {'val': edges, 'test': edges} ('val' optional), "
                         "or None for a seeded split of graph's edges")
    g = as_graph(graph, name="train")
    held = {s: as_graph(e, name=s) for s, e in data.items()}
    n = max([g.num_nodes] + [h.num_nodes for h in held.values()])
    empty = np.zeros((0, 2), np.int64)
    return EdgeSplit(train=g.edges, val=held["val"].edges if "val" in held else empty, test=held["test"].edges,
                     num_nodes=n, name=g.name, settings={"given": True, "graph": g.name}, labels=g.labels)


def analyze(graph: Any, data: Any = None, *, k: int = 1, val: float = 0.1, test: float = 0.2,
            model: str = "gcn", epochs: int = 100, ks: Sequence[int] = DEFAULT_KS, similarity: str = "cosine",
            reweight: Optional[str] = None, tc: str = "auto", tc_limit: float = TC_AUTO_LIMIT,
            device: DeviceLike = "auto", seed: int = 0, progress: ProgressLike = True) -> TopologyReport:
    """Per-node TC at ``k`` hops for all splits, ATC, degrees and K-hop density, a link predictor
    (``model``: "gcn" or "cn") scored on every test node, and the correlations between them.

    ``graph`` is any edge collection (then its edges are split with ``val`` / ``test`` fractions and
    ``seed``, or ``data`` gives the held-out ``{"val": ..., "test": ...}`` edges) or an :class:`EdgeSplit`.
    ``tc``: ``"exact"``, ``"atc"`` (exact TC on a seeded sample of nodes only) or ``"auto"``: exact when
    :func:`tc_cost` is at most ``tc_limit`` (``reweight="tc"`` still computes the exact Train-TC).
    Definitions: ``docs/topology.md``.
    """
    if tc not in ("auto", "exact", "atc"):
        raise ValueError(f"tc={tc!r}: use 'auto', 'exact' or 'atc'")
    split = _split(graph, data, val, test, seed)
    tc_mode = tc
    with Progress(4, "topology", progress) as bar:
        atc = approximate_concentration(split, k=k, similarity=similarity, seed=seed, device=device)
        tc, variant, agreement, cost = _concentration_variant(split, atc, k, tc_mode, tc_limit, seed, device,
                                                              bar.stage("topological concentration"))
        bar.update()
        dens = subgraph_density(split.train, k=k, num_nodes=split.num_nodes, device=device)
        bar.update()
        pred = fit_link_predictor(split, model=model, epochs=epochs, reweight=reweight, k=k,
                                  tc=tc if variant == "exact-tc" else None, seed=seed, device=device,
                                  progress=bar.stage("link predictor training"))
        bar.update()
        perf = node_metrics(pred, split, ks=ks, seed=seed, device=device).to_frame()
        bar.update()
    nodes = pd.DataFrame({f"tc_{s}": getattr(tc, s) for s in SPLITS}, index=pd.RangeIndex(split.num_nodes,
                                                                                              name="node"))
    for s in SPLITS:
        nodes[f"atc_{s}"] = getattr(atc, s)
    for s in SPLITS:
        nodes[f"degree_{s}"] = getattr(tc, f"degree_{s}")
    nodes["density"] = dens
    if split.labels is not None:  # the graph's own node ids
        nodes.insert(0, "node_id", [str(v) for v in split.labels] + [""] * (split.num_nodes - len(split.labels)))
    nodes = nodes.join(perf)
    evaluated = nodes[nodes["n_test"].notna()]
    targets = [c for c in perf.columns if c != "n_test"]
    corr = correlations(evaluated, PREDICTORS, targets)
    return TopologyReport(
        nodes=nodes, correlations=corr, shift=distribution_shift(tc), train_edges=split.train,
        history=list(pred.history), atc_agreement=agreement,
        settings={"graph": split.name, "k": k, "val": val, "test": test, "model": model, "epochs": epochs,
                  "ks": list(ks), "similarity": similarity, "reweight": reweight, "seed": seed,
                  "device": tc.settings["device"], "num_nodes": split.num_nodes, "beta": tc.beta,
                  "split": dict(split.settings), "variant": variant, "tc": tc_mode, "tc_cost": cost,
                  "tc_limit": tc_limit},
    )


def tc_cost(split: EdgeSplit, k: int, *, sample: int = 256) -> float:
    """Estimated work of exact TC at ``k`` hops: the k-hop row entries :func:`concentration` iterates, one
    row per split edge, of its endpoint with the smaller support.  Supports are bounded by the walk
    counts, ``min(n, sum_q |H^q|)``, and the bound is scaled by the ratio of true to bounded support
    sizes measured on ``sample`` edge endpoints (seeded); hubs make it large."""
    n = split.num_nodes
    a = _adjacency(split.train, n)
    bound = np.minimum(_walk_counts(a, k), n).sum(axis=0)
    e = np.concatenate([np.asarray(x, dtype=np.int64).reshape(-1, 2) for x in (split.train, split.val,
                                                                               split.test)])
    probe = np.random.default_rng(0).choice(e.ravel(), size=min(sample, e.size), replace=False)
    x, true = a[probe], 0
    for q in range(k):
        x = x if q == 0 else x @ a
        true += x.nnz
    return float(np.minimum(bound[e[:, 0]], bound[e[:, 1]]).sum() * true / max(bound[probe].sum(), 1.0))


def _concentration_variant(split, atc, k, mode, limit, seed, device, progress=False):
    """(TCResult, variant, ATC agreement, estimated cost): exact TC of every node, or of a seeded sample
    of ``TC_SAMPLE`` nodes with val or test neighbours when ATC stands in for it."""
    from scipy import stats

    cost = tc_cost(split, k)
    variant = "exact-tc" if mode == "exact" or (mode == "auto" and cost <= limit) else "atc"
    nodes = None
    if variant == "atc":
        held = np.unique(np.concatenate([split.val.ravel(), split.test.ravel()]))
        rng = np.random.default_rng(seed)
        nodes = np.sort(rng.choice(held, size=min(TC_SAMPLE, len(held)), replace=False))
    tc = concentration(split, k=k, nodes=nodes, device=device, progress=progress)
    agreement = {}
    for s in ("val", "test"):
        ok = tc.defined(s)
        rho = stats.spearmanr(getattr(atc, s)[ok], getattr(tc, s)[ok])[0] if ok.sum() > 2 else np.nan
        agreement.update({s: float(rho), f"n_{s}": int(ok.sum())})
    return tc, variant, agreement, cost
