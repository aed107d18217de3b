"""Topological concentration (TC) for link prediction on graphs (Wang et al., ICLR 2024).

* :mod:`~workbench.topology.graphs`: graph input from networkx graphs, edge arrays, sparse matrices and
  edge-list files; seeded train/val/test edge splits; built-in social and generated graphs.
* :mod:`~workbench.topology.concentration`: exact TC with sparse matrices (SciPy / CuPy), ATC, degree and
  K-hop subgraph density baselines.
* :mod:`~workbench.topology.linkpred`: a GCN link predictor and a common-neighbours baseline, per-node
  Hits@K / NDCG@K / Recall@K / MRR, correlations and the topological distribution shift.
* :mod:`~workbench.topology.figures`: pure plotly figures of the results.

Quick start::

    from workbench import topology as tp
    split = tp.split_edges(tp.builtin("karate"), seed=0)
    tc = tp.concentration(split, k=2)
    tc.to_frame()            # one row per node: train, val, test
    report = tp.analyze(tp.builtin("karate"), k=2)   # TC, ATC, baselines and link prediction per node

Definitions: ``docs/topology.md``.
"""
from ..lazy import figures_on_demand
from .analysis import PREDICTORS, TopologyReport, analyze
from .concentration import (ATCResult, TCResult, approximate_concentration, concentration, degrees, subgraph_density,
                            walk_concentration)
from .graphs import (BUILTIN_GRAPHS, EdgeSplit, GraphData, GraphInputWarning, as_graph, builtin, edge_array,
                     load_graph, split_edges)
from .linkpred import (LinkPredictor, NodePerformance, correlations, distribution_shift, fit_link_predictor,
                       node_metrics, rank_metrics)

__all__ = [
    "analyze", "TopologyReport", "PREDICTORS",
    "ATCResult", "TCResult", "approximate_concentration", "concentration", "degrees", "subgraph_density",
    "walk_concentration", "BUILTIN_GRAPHS", "EdgeSplit", "GraphData", "GraphInputWarning", "as_graph",
    "builtin", "edge_array", "load_graph", "split_edges",
    "LinkPredictor", "NodePerformance", "correlations", "distribution_shift", "fit_link_predictor", "node_metrics",
    "rank_metrics",
]

__getattr__ = figures_on_demand(__name__)
