"""Topological concentration panel: per-node TC and link-prediction performance of a graph.

Controls pick a graph (a built-in one, or ``TopologyPanel(graph=...)``: any edge collection, an
``EdgeSplit`` or a graph spec: a file or a built-in name), the hops K, the split whose TC is shown, the node
metric and the performance measure; the panel calls :func:`workbench.topology.analyze` and draws with
:mod:`workbench.topology.figures`.  Changing the split, metric or performance measure redraws without
recomputing.
"""
from __future__ import annotations

import html
from typing import Any, Dict

import ipywidgets as ipw

from workbench import topology as tp
from workbench.topology import figures
from workbench.topology.graphs import GENERATED_GRAPHS

from .base import Panel, number

METRICS = ("tc", "atc", "degree", "density")
TARGETS = ("hits@10", "ndcg@10", "recall@10", "mrr", "hits@5", "hits@20")


def metric_column(metric: str, split: str) -> str:
    """The report column of ``metric`` for ``split`` (density has no split)."""
    return "density" if metric == "density" else f"{metric}_{split}"


def few_nodes_warning(result: tp.TopologyReport, target: str, *, few: int = 50) -> str:
    """A warning (HTML) when the correlations with ``target`` rest on fewer than ``few`` test nodes, naming
    the predictors whose correlation the library finds significant (p < 0.05); ``""`` otherwise."""
    c = result.correlations[result.correlations["target"] == target]
    if c.empty or int(c["n"].max()) >= few:
        return ""
    significant = ", ".join(html.escape(str(p)) for p in c.loc[c["pearson_p"] < 0.05, "predictor"]) or "none"
    return (f"The correlations rest on {int(c['n'].max())} test nodes only: read them with their p-values "
            f"(Pearson p &lt; 0.05 here: {significant}).")


class TopologyPanel(Panel):
    title = "Topological concentration"
    legend = ("<b>TC</b> (topological concentration) of a node in a split: how much its K-hop neighbourhood "
              "overlaps with those of its neighbours in that split (Train-TC, Test-TC), from the training "
              "edges only. <b>ATC</b>: a fast approximation from propagated random features.<br>"
              "<b>Performance</b>: how well a link predictor ranks each node's held-out test neighbours "
              "(Hits@10 etc.); <b>density</b>: edge density of the node's K-hop ego net.")
    figure_names = ("scatter", "overview", "correlations")
    figure_hints = {"scatter": "each test node's performance against the chosen node metric",
                    "overview": "the training graph coloured by TC (distributions for large graphs)",
                    "correlations": "how well each node metric predicts performance (Pearson over test nodes)"}
    checks = {"nodes": "int >= 10", "k": "int >= 1", "epochs": "int >= 1", "seed": "int"}
    redraw_controls = ("split", "metric", "target")

    def __init__(self, *, graph: Any = None, **control_values: Any):
        if isinstance(graph, str) and graph.strip().lower() in tp.BUILTIN_GRAPHS:
            control_values.setdefault("graph_name", graph.strip().lower())
            graph = None
        elif isinstance(graph, str):
            graph = tp.load_graph(graph)
        self.graph = graph  # an edge collection or EdgeSplit given in code overrides the dropdown
        given = graph is not None
        self.visible_when = {
            "graph_name": lambda v: not given,
            "nodes": lambda v: not given and v["graph_name"] in GENERATED_GRAPHS,
            "epochs": lambda v: v["model"] == "gcn"}
        self.summary = self.output()
        super().__init__(**control_values)

    def controls(self) -> Dict[str, ipw.Widget]:
        style = {"description_width": "initial"}
        return {
            "graph_name": ipw.Dropdown(options=list(tp.BUILTIN_GRAPHS), value="karate", description="graph",
                                       style=style, layout=ipw.Layout(width="240px")),
            "nodes": number(1000, "nodes (generated)", "190px"),
            "k": number(1, "K (hops)", "120px"),
            "model": ipw.Dropdown(options=[("GCN", "gcn"), ("common neighbours", "cn")], value="gcn",
                                  description="predictor", style=style, layout=ipw.Layout(width="240px")),
            "epochs": number(60, "epochs", "120px"),
            "seed": number(0, "seed", "100px"),
            "split": ipw.Dropdown(options=["train", "val", "test"], value="test", description="split",
                                  style=style, layout=ipw.Layout(width="150px")),
            "metric": ipw.Dropdown(options=list(METRICS), value="tc", description="node metric", style=style,
                                   layout=ipw.Layout(width="190px")),
            "target": ipw.Dropdown(options=list(TARGETS), value="hits@10", description="performance",
                                   style=style, layout=ipw.Layout(width="210px")),
        }

    def layout_body(self) -> list:
        return [self.summary, self.figure_row("scatter", "overview"), self.figure_box("correlations")]

    def compute(self, progress, graph_name, nodes, k, split, metric, target, model, epochs, seed):
        source = self.graph
        if source is None:
            kw = {"n": nodes} if graph_name in GENERATED_GRAPHS else {}
            source = tp.builtin(graph_name, seed=seed, **kw)
        ks = sorted({int(t.split("@")[1]) for t in TARGETS if "@" in t})
        return tp.analyze(source, k=k, model=model, epochs=epochs, ks=ks, seed=seed, progress=progress)

    def draw(self, result: tp.TopologyReport) -> None:
        v = self.values
        column = metric_column(v["metric"], v["split"])
        self.show_figure("scatter", figures.scatter(result, metric=column, target=v["target"]))
        self.show_figure("overview", figures.overview(result, split=v["split"]))
        self.show_figure("correlations", figures.correlations(result, target=v["target"]))
        s = result.shift
        self.summary.value = (
            f"<b>{html.escape(str(result.settings.get('graph')))}</b>: {result.settings.get('num_nodes')} nodes, "
            f"K={result.settings.get('k')}, predictor {html.escape(str(result.settings.get('model')))}. "
            f"Distribution shift over {s.get('nodes')} nodes: mean Train-TC {s.get('mean_train', 0):.3f}, "
            f"mean Test-TC {s.get('mean_test', 0):.3f}, "
            f"{s.get('fraction_train_above_test', 0):.0%} with Train-TC &gt; Test-TC.")
        self.warn(few_nodes_warning(result, v["target"]))
