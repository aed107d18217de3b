"""Pure plotly figures of topology results (result -> ``go.Figure``); nothing here computes TC.
Definitions in ``docs/topology.md``.

Splits keep their role colours (:data:`workbench.plotting.ROLE`); numbers that rest on fewer than
:data:`FEW_NODES` nodes (correlations, means) are marked as small samples.
"""
from __future__ import annotations

import re
from typing import Optional, Sequence, Union

import numpy as np
import plotly.graph_objects as go

from ..plotting import ROLE, SEQUENTIAL, base_layout, hover, split_color
from .analysis import TopologyReport
from .concentration import SPLITS, TCResult

__all__ = ["scatter", "correlations", "distributions", "shift", "graph", "overview", "tc_by_hops"]

SMALL_GRAPH = 400  # graphs up to this many nodes are drawn, larger ones shown as distributions
FEW_NODES = 30  # correlations and means over fewer nodes are marked as small samples
TARGETS = {"hits": "Hits@{k} (1 if a test neighbour ranks in the top {k})",
           "recall": "Recall@{k} (fraction of test neighbours in the top {k})",
           "ndcg": "NDCG@{k} (ranking quality of the test neighbours)"}


def label(column: str) -> str:
    """A readable name for a column of ``TopologyReport.nodes``, e.g. ``tc_test`` -> ``"topological
    concentration (test)"``."""
    m = re.fullmatch(r"(tc|atc|degree)_(train|val|test)", column)
    if m:
        what = {"tc": "topological concentration", "atc": "approximate TC (ATC)", "degree": "degree"}[m[1]]
        return f"{what} ({m[2]})"
    m = re.fullmatch(r"(hits|recall|ndcg)@(\d+)", column)
    if m:
        return TARGETS[m[1]].format(k=m[2])
    return {"mrr": "MRR (1 / best rank of a test neighbour)", "density": "ego-net density (K hops)",
            "n_test": "number of test neighbours"}.get(column, column.replace("_", " "))


def _short(column: str) -> str:
    return label(column).split(" (")[0] if not column.startswith(("tc_", "atc_", "degree_")) else label(column)


def _few(n: int, what: str = "nodes") -> str:
    return f"{n} {what} (small sample)" if n < FEW_NODES else f"{n} {what}"


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
    note = _few(len(ev), "nodes with test neighbours")
    if len(row):
        note = (f"Pearson {row['pearson'].iloc[0]:.2f}, Spearman {row['spearman'].iloc[0]:.2f} over "
                + note)
    ids = ev["node_id"] if "node_id" in ev.columns else ev.index
    fig = go.Figure(go.Scattergl(
        x=ev[metric], y=ev[target], mode="markers", text=[f"node {i}" for i in ids], name="one node",
        marker=dict(size=7, opacity=0.6, color=ROLE["test"]), customdata=ev[["n_test"]],
        hovertemplate=hover("%{text} (%{customdata[0]} test neighbours)", f"{_short(metric)}: %{{x:.3f}}",
                            f"{_short(target)}: %{{y:.3f}}")))
    head = _short(target)
    base_layout(fig, f"Per-node {head} against {_short(metric)}", subtitle=note, xaxis_title=label(metric),
                yaxis_title=f"per-node {label(target)}", height=440)
    return fig


def correlations(report: TopologyReport, *, target: str = "hits@10") -> go.Figure:
    """Pearson and Spearman correlation of every predictor with ``target``."""
    c = report.correlations[report.correlations["target"] == target]
    if c.empty:
        raise ValueError(f"target={target!r} is not a performance column; use one of "
                         f"{sorted(report.correlations['target'].unique())}")
    names = [label(p).replace("topological concentration", "TC").replace("approximate TC (ATC)", "ATC")
             .replace(" (", "<br>(") for p in c["predictor"]]
    bars = []
    for kind, color in (("pearson", ROLE["data"]), ("spearman", ROLE["secondary"])):
        bars.append(go.Bar(name=kind.capitalize(), x=c["predictor"], y=c[kind], marker_color=color,
                           customdata=np.stack([c[f"{kind}_p"], c["n"], [label(p) for p in c["predictor"]]], 1),
                           hovertemplate=hover("%{customdata[2]}", f"{kind.capitalize()} r = %{{y:.3f}}",
                                               "p-value: %{customdata[0]:.2g}, nodes: %{customdata[1]}")))
    fig = go.Figure(bars)
    n = int(c["n"].max()) if len(c) else 0
    base_layout(fig, f"How well each node property predicts per-node {_short(target)}", barmode="group",
                subtitle=f"correlation over the {_few(n, 'test nodes')}", height=460)
    fig.update_xaxes(title="predictor (per node)", tickmode="array", tickvals=list(c["predictor"]), ticktext=names)
    fig.update_yaxes(title=f"correlation with {_short(target)}", range=[-1.05, 1.05])
    return fig


def distributions(result: Union[TopologyReport, TCResult], *, splits: Sequence[str] = SPLITS,
                  bins: int = 40) -> go.Figure:
    """Histograms of TC per split over the nodes where it is defined (for graphs of any size)."""
    cols = _tc_columns(result)
    shown = np.concatenate([cols[s][0][cols[s][1]] for s in splits] + [np.zeros(0)]).astype(float)
    lo, hi = (min(0.0, float(shown.min())), max(1.0, float(shown.max()))) if shown.size else (0.0, 1.0)
    fig = go.Figure()
    for i, s in enumerate(splits):
        v, m = cols[s]
        n = int(m.sum())
        mean = f"mean {v[m].mean():.3f} over {_few(n)}" if m.any() else "no node with a defined TC"
        fig.add_trace(go.Histogram(x=v[m], name=f"{s}: {mean}", opacity=0.6, histnorm="probability",
                                   xbins=dict(start=lo, end=hi, size=(hi - lo) / max(bins, 1)),
                                   marker_color=split_color(s, i),
                                   hovertemplate=hover(f"{s} split", "TC %{x}", "fraction of nodes: %{y:.3f}")))
    base_layout(fig, "Topological concentration of the nodes, by split", barmode="overlay",
                subtitle="each split over the nodes where its TC is defined",
                xaxis_title="topological concentration (TC)", yaxis_title="fraction of nodes", height=420)
    return fig


def shift(result: Union[TopologyReport, TCResult]) -> go.Figure:
    """Train-TC against Test-TC per node (points under the diagonal: the distribution shift)."""
    cols = _tc_columns(result)
    (tr, mtr), (te, mte) = cols["train"], cols["test"]
    both = mtr & mte
    idx = np.flatnonzero(both)
    fig = go.Figure(go.Scattergl(x=tr[both], y=te[both], mode="markers", name="one node", customdata=idx,
                                 marker=dict(size=7, opacity=0.6, color=ROLE["test"]),
                                 hovertemplate=hover("node %{customdata}", "Train-TC: %{x:.3f}", "Test-TC: %{y:.3f}")))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="Train-TC = Test-TC",
                             line=dict(dash="dash", color=ROLE["reference"]), hoverinfo="skip"))
    frac = float(np.mean(tr[both] > te[both])) if both.any() else float("nan")
    base_layout(fig, f"{frac:.0%} of the nodes have Train-TC above Test-TC",
                subtitle=f"topological distribution shift: points under the diagonal<br>over the "
                         f"{_few(int(both.sum()), 'nodes where both are defined')}",
                xaxis_title="Train-TC (concentration of the training neighbours)",
                yaxis_title="Test-TC (concentration of the test neighbours)", height=480)
    fig.update_xaxes(range=[-0.02, 1.02])
    fig.update_yaxes(range=[-0.02, 1.02], scaleanchor="x", scaleratio=1)
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
    xy = np.array([pos[i] for i in range(n)]).reshape(n, 2)
    ex, ey = [], []
    for u, v in np.asarray(edges).tolist():
        ex += [xy[u, 0], xy[v, 0], None]
        ey += [xy[u, 1], xy[v, 1], None]
    values = np.asarray(values, dtype=float)
    deg = np.bincount(np.asarray(edges, dtype=int).ravel(), minlength=n) if len(edges) else np.zeros(n, int)
    text = [f"node {labels[i] if labels is not None else i}: {values[i]:.3f} ({deg[i]} edges)" for i in range(n)]
    fig = go.Figure([
        go.Scatter(x=ex, y=ey, mode="lines", line=dict(width=0.6, color="#bbbbbb"), hoverinfo="skip",
                   showlegend=False, name="edges"),
        go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers", text=text, hoverinfo="text", showlegend=False,
                   name="nodes", marker=dict(size=11, color=values, colorscale=SEQUENTIAL, showscale=True,
                                             colorbar=dict(title=dict(text="TC", side="right"), outlinewidth=0,
                                                           thickness=14),
                                             line=dict(width=0.5, color="black"))),
    ])
    bad = ~np.isfinite(values)
    if bad.any():
        fig.add_trace(go.Scatter(x=xy[bad, 0], y=xy[bad, 1], mode="markers", name="no value",
                                 marker=dict(symbol="x", size=9, color=ROLE["missing"]), hoverinfo="skip"))
    base_layout(fig, title, subtitle=f"{n} nodes, {len(edges)} edges; spring layout (seed {seed})",
                xaxis=dict(visible=False), yaxis=dict(visible=False), height=520)
    return fig


def overview(report: TopologyReport, *, split: str = "train") -> go.Figure:
    """The graph coloured by ``split`` TC when small, else the TC distributions."""
    if len(report.nodes) <= SMALL_GRAPH:
        labels = list(report.nodes["node_id"]) if "node_id" in report.nodes.columns else None
        return graph(report.train_edges, report.nodes[f"tc_{split}"].to_numpy(), labels=labels,
                     title=f"Training graph coloured by {split}-TC (K = {report.settings.get('k')} hops)")
    return distributions(report)


def tc_by_hops(results: Sequence[TCResult], *, split: str = "train") -> go.Figure:
    """Mean TC (over nodes where defined) against the number of hops, one point per result."""
    ks = [r.k for r in results]
    means = [float(getattr(r, split)[r.defined(split)].mean()) if r.defined(split).any() else 0.0
             for r in results]
    counts = [int(r.defined(split).sum()) for r in results]
    fig = go.Figure(go.Scatter(
        x=ks, y=means, mode="lines+markers", marker=dict(size=9, color=split_color(split)),
        line=dict(color=split_color(split)), name=f"mean {split}-TC", customdata=np.array(counts)[:, None],
        hovertemplate=hover("K = %{x} hops", f"mean {split}-TC: %{{y:.3f}}", "over %{customdata[0]} nodes")))
    n = min(counts) if counts else 0
    base_layout(fig, f"Mean {split}-TC against the number of hops K",
                subtitle=f"over the {_few(n, f'nodes where {split}-TC is defined')}", height=400,
                xaxis_title="K (hops)", yaxis_title=f"mean topological concentration ({split})")
    fig.update_xaxes(dtick=1)
    return fig
