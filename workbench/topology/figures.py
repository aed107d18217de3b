"""Pure plotly figures of topology results (result -> ``go.Figure``); nothing here computes TC."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import plotly.graph_objects as go

from ..plotting import COLORS, base_layout
from .analysis import TopologyReport
from .concentration import SPLITS, TCResult

__all__ = ["scatter", "correlations", "distributions", "shift", "graph", "overview", "tc_by_hops"]

SMALL_GRAPH = 400  # graphs up to this many nodes are drawn, larger ones shown as distributions


def _tc_columns(result: Union[TopologyReport, TCResult]):
    """{split: (values, defined mask)} for a report or a TCResult."""
    if isinstance(result, TCResult):
        return {s: (getattr(result, s), result.defined(s)) for s in SPLITS}
    nodes = result.nodes
    out = {}
    for s in SPLITS:
        d = nodes[f"degree_{s}"].to_numpy()
        dt = nodes["degree_train"].to_numpy()
        mask = dt >= 2 if s == "train" else (d > 0) & (dt > 0)
        out[s] = (nodes[f"tc_{s}"].to_numpy(), mask)
    return out


def scatter(report: TopologyReport, *, metric: str = "tc_test", target: str = "hits@10") -> go.Figure:
    """Per-node ``metric`` against per-node performance ``target`` over the evaluated (test) nodes."""
    nodes = report.nodes
    if metric not in nodes.columns or target not in nodes.columns:
        raise ValueError(f"metric={metric!r} / target={target!r} must be columns of report.nodes: "
                         f"{list(nodes.columns)}")
    ev = nodes[nodes["n_test"].notna()]
    row = report.correlations.query("predictor == @metric and target == @target")
    note = ""
    if len(row):
        note = f" (Pearson {row['pearson'].iloc[0]:.2f}, Spearman {row['spearman'].iloc[0]:.2f}, n={len(ev)})"
    ids = ev["node_id"] if "node_id" in ev.columns else ev.index
    fig = go.Figure(go.Scattergl(x=ev[metric], y=ev[target], mode="markers", text=[f"node {i}" for i in ids],
                                 marker=dict(size=6, opacity=0.6, color=COLORS[0])))
    base_layout(fig, f"{target} against {metric}{note}", xaxis_title=metric, yaxis_title=target)
    return fig


def correlations(report: TopologyReport, *, target: str = "hits@10") -> go.Figure:
    """Pearson and Spearman correlation of every predictor with ``target``."""
    c = report.correlations[report.correlations["target"] == target]
    if c.empty:
        raise ValueError(f"target={target!r} is not a performance column; use one of "
                         f"{sorted(report.correlations['target'].unique())}")
    fig = go.Figure([go.Bar(name="Pearson", x=c["predictor"], y=c["pearson"], marker_color=COLORS[0]),
                     go.Bar(name="Spearman", x=c["predictor"], y=c["spearman"], marker_color=COLORS[1])])
    base_layout(fig, f"Correlation with per-node {target}", barmode="group", yaxis_title="correlation")
    return fig


def distributions(result: Union[TopologyReport, TCResult], *, splits: Sequence[str] = SPLITS,
                  bins: int = 40) -> go.Figure:
    """Histograms of TC per split over the nodes where it is defined (for graphs of any size)."""
    cols = _tc_columns(result)
    fig = go.Figure()
    for i, s in enumerate(splits):
        v, m = cols[s]
        fig.add_trace(go.Histogram(x=v[m], name=f"{s} (mean {v[m].mean() if m.any() else 0:.3f})",
                                   opacity=0.6, nbinsx=bins, histnorm="probability",
                                   marker_color=COLORS[i % len(COLORS)]))
    base_layout(fig, "Topological concentration by split", barmode="overlay", xaxis_title="TC",
                yaxis_title="fraction of nodes")
    return fig


def shift(result: Union[TopologyReport, TCResult]) -> go.Figure:
    """Train-TC against Test-TC per node (points under the diagonal: the distribution shift)."""
    cols = _tc_columns(result)
    (tr, mtr), (te, mte) = cols["train"], cols["test"]
    both = mtr & mte
    fig = go.Figure(go.Scattergl(x=tr[both], y=te[both], mode="markers", name="nodes",
                                 marker=dict(size=6, opacity=0.6, color=COLORS[0])))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="Train-TC = Test-TC",
                             line=dict(dash="dash", color="gray")))
    frac = float(np.mean(tr[both] > te[both])) if both.any() else float("nan")
    base_layout(fig, f"Topological distribution shift: {frac:.0%} of nodes have Train-TC > Test-TC",
                xaxis_title="Train-TC", yaxis_title="Test-TC")
    return fig


def graph(edges: np.ndarray, values: np.ndarray, *, title: str = "Training graph coloured by TC",
                  labels: Optional[Sequence] = None, seed: int = 0, max_nodes: int = SMALL_GRAPH) -> go.Figure:
    """Spring-layout drawing of a small graph with nodes coloured by ``values`` (e.g. Train-TC)."""
    import networkx as nx

    n = len(values)
    if n > max_nodes:
        raise ValueError(f"the graph has {n} nodes; drawing is for graphs up to max_nodes={max_nodes}: "
                         "show distributions() instead")
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_edges_from(map(tuple, np.asarray(edges).tolist()))
    pos = nx.spring_layout(g, seed=seed)
    xy = np.array([pos[i] for i in range(n)])
    ex, ey = [], []
    for u, v in np.asarray(edges).tolist():
        ex += [xy[u, 0], xy[v, 0], None]
        ey += [xy[u, 1], xy[v, 1], None]
    text = [f"node {labels[i] if labels is not None else i}: {values[i]:.3f}" for i in range(n)]
    fig = go.Figure([
        go.Scatter(x=ex, y=ey, mode="lines", line=dict(width=0.6, color="#bbbbbb"), hoverinfo="skip",
                   showlegend=False),
        go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers", text=text, hoverinfo="text", showlegend=False,
                   marker=dict(size=10, color=values, colorscale="Viridis", showscale=True,
                               colorbar=dict(title="TC"), line=dict(width=0.5, color="black"))),
    ])
    base_layout(fig, title, xaxis=dict(visible=False), yaxis=dict(visible=False))
    return fig


def overview(report: TopologyReport, *, split: str = "train") -> go.Figure:
    """The graph coloured by ``split`` TC when small, else the TC distributions."""
    if len(report.nodes) <= SMALL_GRAPH:
        labels = list(report.nodes["node_id"]) if "node_id" in report.nodes.columns else None
        return graph(report.train_edges, report.nodes[f"tc_{split}"].to_numpy(), labels=labels,
                     title=f"Training graph coloured by {split}-TC (k={report.settings.get('k')})")
    return distributions(report)


def tc_by_hops(results: Sequence[TCResult], *, split: str = "train") -> go.Figure:
    """Mean TC (over nodes where defined) against the number of hops, one point per result."""
    ks = [r.k for r in results]
    means = [float(getattr(r, split)[r.defined(split)].mean()) if r.defined(split).any() else 0.0
             for r in results]
    fig = go.Figure(go.Scatter(x=ks, y=means, mode="lines+markers", marker_color=COLORS[0]))
    base_layout(fig, f"Mean {split}-TC by hops", xaxis_title="K (hops)", yaxis_title=f"mean {split}-TC")
    return fig
