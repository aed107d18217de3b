"""Topological concentration panel: per-node TC and link-prediction performance of a graph.

Controls pick a graph, the hops K, the split whose TC is shown, the node metric and the performance
measure; the panel calls :func:`workbench.topology.analyze` and draws with
:mod:`workbench.topology.figures`.  Changing the split, metric or performance measure redraws without
recomputing.
"""
from __future__ import annotations

import html
from typing import Any, Dict

import ipywidgets as ipw

from workbench import topology as tp
from workbench.topology import figures

from .base import Panel, copy_figure

METRICS = ("tc", "atc", "degree", "density")
TARGETS = ("hits@10", "ndcg@10", "recall@10", "mrr", "hits@5", "hits@20")


def metric_column(metric: str, split: str) -> str:
    """The report column of ``metric`` for ``split`` (density has no split)."""
    return "density" if metric == "density" else f"{metric}_{split}"


class TopologyPanel(Panel):
    title = "Topological concentration"
    figure_names = ("scatter", "overview", "correlations")

    def __init__(self, *, graph: Any = None, **control_values: Any):
        self.graph = graph  # an edge collection or EdgeSplit given in code overrides the dropdown
        super().__init__(**control_values)
        for name in ("split", "metric", "target"):
            self.widgets[name].observe(lambda _c: self.redraw(), names="value")

    def controls(self) -> Dict[str, ipw.Widget]:
        style = {"description_width": "initial"}
        return {
            "graph_name": ipw.Dropdown(options=list(tp.BUILTIN_GRAPHS), value="karate", description="graph",
                                       style=style),
            "nodes": ipw.IntText(value=1000, description="nodes (generated)", style=style,
                                 layout=ipw.Layout(width="180px")),
            "k": ipw.IntSlider(value=1, min=1, max=4, description="K (hops)", style=style),
            "split": ipw.Dropdown(options=["train", "val", "test"], value="test", description="split",
                                  style=style, layout=ipw.Layout(width="160px")),
            "metric": ipw.Dropdown(options=list(METRICS), value="tc", description="node metric", style=style,
                                   layout=ipw.Layout(width="200px")),
            "target": ipw.Dropdown(options=list(TARGETS), value="hits@10", description="performance",
                                   style=style, layout=ipw.Layout(width="220px")),
            "model": ipw.Dropdown(options=["gcn", "cn"], value="gcn", description="predictor", style=style,
                                  layout=ipw.Layout(width="170px")),
            "epochs": ipw.IntSlider(value=60, min=1, max=300, description="epochs", style=style),
            "seed": ipw.IntText(value=0, description="seed", layout=ipw.Layout(width="130px")),
        }

    def layout_body(self) -> list:
        self.summary = ipw.HTML(value="")
        f = self.figures
        return [self.summary, ipw.HBox([f["scatter"], f["overview"]]), f["correlations"]]

    def compute(self, progress, graph_name, nodes, k, split, metric, target, model, epochs, seed):
        source = self.graph
        if source is None:
            kw = {"n": int(nodes)} if graph_name in ("sbm", "powerlaw_cluster", "random_geometric") else {}
            source = tp.builtin(graph_name, seed=seed, **kw)
        ks = sorted({int(t.split("@")[1]) for t in TARGETS if "@" in t})
        return tp.analyze(source, k=k, model=model, epochs=epochs, ks=ks, seed=seed, progress=progress)

    def redraw(self) -> None:
        if self.result is not None:
            self.draw(self.result)

    def draw(self, result: tp.TopologyReport) -> None:
        v = self.values
        column = metric_column(v["metric"], v["split"])
        copy_figure(figures.scatter(result, metric=column, target=v["target"]), self.figures["scatter"])
        copy_figure(figures.overview(result, split=v["split"]), self.figures["overview"])
        copy_figure(figures.correlations(result, target=v["target"]), self.figures["correlations"])
        s = result.shift
        self.summary.value = (
            f"<b>{html.escape(str(result.settings.get('graph')))}</b>: {result.settings.get('num_nodes')} nodes, "
            f"K={result.settings.get('k')}, predictor {html.escape(str(result.settings.get('model')))}. "
            f"Distribution shift over {s.get('nodes')} nodes: mean Train-TC {s.get('mean_train', 0):.3f}, "
            f"mean Test-TC {s.get('mean_test', 0):.3f}, "
            f"{s.get('fraction_train_above_test', 0):.0%} with Train-TC &gt; Test-TC.")
