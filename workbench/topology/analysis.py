"""One call from a graph to the full per-node picture: TC, ATC, baselines, link-prediction performance."""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from ..backend import DeviceLike
from ..progress import ProgressLike
from ..results import Result
from .concentration import SPLITS, approximate_concentration, concentration, subgraph_density
from .graphs import EdgeSplit, split_edges
from .linkpred import DEFAULT_KS, correlations, distribution_shift, fit_link_predictor, node_metrics

# every per-node predictor correlated with performance: TC and ATC per split, the degree baselines on
# train/val/test (REFERENCE section 6) and the K-hop ego-net density
PREDICTORS = ("tc_train", "tc_val", "tc_test", "atc_val", "atc_test", "degree_train", "degree_val",
              "degree_test", "density")


@dataclasses.dataclass
class TopologyReport(Result):
    """Per-node TC / ATC / degree / density and link-prediction performance of one graph split.

    ``nodes`` has one row per node (performance columns are NaN for nodes without test neighbours);
    ``correlations`` one row per (predictor, performance metric); ``shift`` the Train-TC against Test-TC
    summary; ``train_edges`` the training graph (for drawing).
    """

    nodes: pd.DataFrame = None
    correlations: pd.DataFrame = None
    shift: dict = dataclasses.field(default_factory=dict)
    train_edges: np.ndarray = None
    history: list = dataclasses.field(default_factory=list)

    def to_frame(self) -> pd.DataFrame:
        return self.nodes

    @property
    def performance_columns(self) -> list:
        return [c for c in self.nodes.columns if "@" in c or c == "mrr"]


def analyze(graph: Any, *, k: int = 1, val: float = 0.1, test: float = 0.2, model: str = "gcn",
            epochs: int = 100, ks: Sequence[int] = DEFAULT_KS, similarity: str = "cosine",
            reweight: Optional[str] = None, seed: int = 0, device: DeviceLike = "auto",
            progress: ProgressLike = False) -> TopologyReport:
    """Split ``graph`` (or use an :class:`EdgeSplit` as is), compute TC at ``k`` hops for all splits,
    ATC, degrees and K-hop density, train ``model`` ("gcn" or "cn"), score every test node and correlate.
    """
    split = graph if isinstance(graph, EdgeSplit) else split_edges(graph, val=val, test=test, seed=seed)
    tc = concentration(split, k=k, device=device)
    atc = approximate_concentration(split, k=k, similarity=similarity, seed=seed, device=device)
    dens = subgraph_density(split.train, k=k, num_nodes=split.num_nodes, device=device)
    pred = fit_link_predictor(split, model=model, epochs=epochs, reweight=reweight, k=k, tc=tc, seed=seed,
                              device=device, progress=progress)
    perf = node_metrics(pred, split, ks=ks, seed=seed, device=device).to_frame()
    nodes = pd.DataFrame({f"tc_{s}": getattr(tc, s) for s in SPLITS}, index=pd.RangeIndex(split.num_nodes,
                                                                                              name="node"))
    for s in SPLITS:
        nodes[f"atc_{s}"] = getattr(atc, s)
    for s in SPLITS:
        nodes[f"degree_{s}"] = getattr(tc, f"degree_{s}")
    nodes["density"] = dens
    nodes = nodes.join(perf)
    evaluated = nodes[nodes["n_test"].notna()]
    targets = [c for c in perf.columns if c != "n_test"]
    corr = correlations(evaluated, PREDICTORS, targets)
    return TopologyReport(
        nodes=nodes, correlations=corr, shift=distribution_shift(tc), train_edges=split.train,
        history=list(pred.history),
        settings={"graph": split.name, "k": k, "val": val, "test": test, "model": model, "epochs": epochs,
                  "ks": list(ks), "similarity": similarity, "reweight": reweight, "seed": seed,
                  "device": tc.settings["device"], "num_nodes": split.num_nodes, "beta": tc.beta,
                  "split": dict(split.settings)},
    )
