"""Per-node link-prediction performance and how TC and the baselines correlate with it.

* :func:`fit_link_predictor`: a GCN link predictor (learned node embeddings, sparse message passing over
  the training edges, dot-product decoder, trained with sampled negatives) or the common-neighbours
  heuristic (``model="cn"``).  ``reweight="tc"`` scales each training edge's message-passing weight by
  ``1 + strength * (1 - (TC_i + TC_j) / 2)`` (Train-TC at ``k`` hops), giving more weight to edges around
  low-TC nodes; the rule and strength are recorded in the predictor's settings.
* :func:`node_metrics`: for every node with test neighbours, rank all nodes, excluding the node itself and
  its training (and validation) neighbours, and score Hits@K, NDCG@K, Recall@K and MRR on its test
  neighbours.  Ties in score are broken by one seeded random order of the nodes.
* :func:`correlations`: Pearson and Spearman correlations of predictors (TC, ATC, degree, density) with
  performance over the evaluated nodes.
* :func:`distribution_shift`: Train-TC against Test-TC over nodes where both are defined.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sps
import torch
import torch.nn.functional as F

from ..backend import DeviceLike, describe, resolve_device
from ..progress import Progress, ProgressLike
from ..results import Result
from .concentration import TCResult, _adjacency, _resolve_splits
from .graphs import EdgeSplit

DEFAULT_KS = (5, 10, 20)


# --------------------------------------------------------------------------------------------
# predictors
# --------------------------------------------------------------------------------------------
class GCN(torch.nn.Module):
    """GCN encoder over learned node embeddings: ``H <- A_hat H W`` per layer, ReLU between layers."""

    def __init__(self, num_nodes: int, *, dim: int = 64, hidden: int = 64, layers: int = 2,
                 dropout: float = 0.0):
        super().__init__()
        self.embedding = torch.nn.Embedding(num_nodes, dim)
        torch.nn.init.normal_(self.embedding.weight, std=0.1)
        sizes = [dim] + [hidden] * layers
        self.lins = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.dropout = dropout

    def forward(self, adj: torch.Tensor) -> torch.Tensor:
        h = self.embedding.weight
        for i, lin in enumerate(self.lins):
            h = torch.sparse.mm(adj, lin(h))
            if i < len(self.lins) - 1:
                h = F.dropout(F.relu(h), self.dropout, self.training)
        return h


def normalized_adjacency(edges: np.ndarray, n: int, weights: Optional[np.ndarray] = None,
                         device: DeviceLike = "cpu") -> torch.Tensor:
    """``D^-1/2 (W + I) D^-1/2`` as a torch sparse tensor (``W`` the weighted symmetric adjacency)."""
    w = np.ones(len(edges)) if weights is None else np.asarray(weights, dtype=np.float64)
    rows = np.concatenate([edges[:, 0], edges[:, 1], np.arange(n)])
    cols = np.concatenate([edges[:, 1], edges[:, 0], np.arange(n)])
    vals = np.concatenate([w, w, np.ones(n)])
    deg = np.bincount(rows, weights=vals, minlength=n)
    dinv = 1.0 / np.sqrt(deg)
    vals = vals * dinv[rows] * dinv[cols]
    idx = torch.from_numpy(np.stack([rows, cols]))
    return torch.sparse_coo_tensor(idx, torch.tensor(vals, dtype=torch.float32), (n, n),
                                   check_invariants=False).coalesce().to(
        resolve_device(device))


@dataclasses.dataclass
class LinkPredictor:
    """A trained (or heuristic) link predictor that scores a block of nodes against all nodes."""

    kind: str
    num_nodes: int
    embeddings: Optional[torch.Tensor] = None
    adjacency: Optional[sps.csr_matrix] = None
    history: list = dataclasses.field(default_factory=list)
    settings: dict = dataclasses.field(default_factory=dict)

    def scores(self, nodes: np.ndarray, device: Optional[torch.device] = None) -> torch.Tensor:
        """``(len(nodes), num_nodes)`` float64 scores (higher = more likely an edge)."""
        nodes = np.asarray(nodes, dtype=np.int64)
        if self.kind == "cn":
            block = (self.adjacency[nodes] @ self.adjacency).toarray()
            out = torch.from_numpy(block)
            return out if device is None else out.to(device)
        z = self.embeddings
        out = (z[torch.as_tensor(nodes, device=z.device)] @ z.T).double()
        return out if device is None else out.to(device)


def _edge_weights(edges: np.ndarray, tc_train: np.ndarray, strength: float) -> np.ndarray:
    c = (tc_train[edges[:, 0]] + tc_train[edges[:, 1]]) / 2.0
    return 1.0 + strength * (1.0 - c)


def fit_link_predictor(split: Any, *, model: str = "gcn", epochs: int = 100, lr: float = 0.01, dim: int = 64,
                       hidden: int = 64, layers: int = 2, batch_size: int = 65536, dropout: float = 0.0,
                       reweight: Optional[str] = None, reweight_strength: float = 1.0, k: int = 1,
                       tc: Optional[TCResult] = None, seed: int = 0, device: DeviceLike = "auto",
                       num_nodes: Optional[int] = None, progress: ProgressLike = False) -> LinkPredictor:
    """Train a GCN link predictor on the training edges of ``split`` (or build the CN heuristic).

    ``split`` is an :class:`EdgeSplit` or a training edge collection.  Each epoch visits every training
    edge once in mini-batches of ``batch_size`` positives, with as many uniformly sampled negative pairs;
    the loss is binary cross-entropy on dot-product scores.  ``reweight="tc"`` uses Train-TC at ``k`` hops
    (``tc`` if given) to reweight message passing (see module doc).
    """
    if model not in ("gcn", "cn"):
        raise ValueError(f"model={model!r}: use 'gcn' (trained GCN) or 'cn' (common neighbours)")
    if reweight not in (None, "tc"):
        raise ValueError(f"reweight={reweight!r}: use None or 'tc'")
    edges, n, gname = _resolve_splits(split, None, None, num_nodes, True)
    train = edges["train"]
    settings = {"model": model, "seed": seed, "graph": gname, "num_nodes": n}
    if model == "cn":
        return LinkPredictor(kind="cn", num_nodes=n, adjacency=_adjacency(train, n), settings=settings)
    if epochs < 1:
        raise ValueError(f"epochs={epochs} must be >= 1")
    dev = resolve_device(device)
    weights = None
    if reweight == "tc":
        if tc is None or tc.k != k:
            from .concentration import concentration

            tc = concentration(train, k=k, num_nodes=n, device=device)
        weights = _edge_weights(train, tc.train, reweight_strength)
    adj = normalized_adjacency(train, n, weights, dev)
    gen = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    net = GCN(n, dim=dim, hidden=hidden, layers=layers, dropout=dropout).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    pos_all = torch.from_numpy(np.concatenate([train, train[:, ::-1]])).to(torch.long)
    history = []
    n_batches = int(np.ceil(len(pos_all) / batch_size))
    with Progress(epochs, "GCN link predictor", progress) as bar:
        for epoch in range(epochs):
            net.train()
            perm = torch.randperm(len(pos_all), generator=gen)
            total = 0.0
            for b in range(n_batches):
                pos = pos_all[perm[b * batch_size:(b + 1) * batch_size]].to(dev)
                neg = torch.randint(0, n, pos.shape, generator=gen).to(dev)
                z = net(adj)
                sp = (z[pos[:, 0]] * z[pos[:, 1]]).sum(-1)
                sn = (z[neg[:, 0]] * z[neg[:, 1]]).sum(-1)
                loss = (F.binary_cross_entropy_with_logits(sp, torch.ones_like(sp))
                        + F.binary_cross_entropy_with_logits(sn, torch.zeros_like(sn)))
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"the link-prediction loss became {loss.item()} at epoch {epoch}; "
                                             "lower lr")
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach())
            history.append(total / n_batches)
            bar.update()
    net.eval()
    with torch.no_grad():
        z = net(adj).detach()
    settings.update({"epochs": epochs, "lr": lr, "dim": dim, "hidden": hidden, "layers": layers,
                     "batch_size": batch_size, "dropout": dropout, "reweight": reweight,
                     "reweight_strength": reweight_strength if reweight else None,
                     "k": k if reweight else None, "device": describe(dev)})
    return LinkPredictor(kind="gcn", num_nodes=n, embeddings=z, history=history, settings=settings)


# --------------------------------------------------------------------------------------------
# per-node ranking metrics
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class NodePerformance(Result):
    """Per-node link-prediction performance: one row per evaluated node (index ``node``) with ``n_test``
    (its number of test neighbours) and Hits@K, NDCG@K, Recall@K for each K in ``ks``, and MRR."""

    nodes: pd.DataFrame = None
    ks: list = dataclasses.field(default_factory=list)

    def to_frame(self) -> pd.DataFrame:
        return self.nodes

    @property
    def metric_columns(self) -> list:
        """The performance columns (everything but ``n_test``)."""
        return [c for c in self.nodes.columns if c != "n_test"]

    def __repr__(self) -> str:
        means = ", ".join(f"{c}={self.nodes[c].mean():.4f}" for c in self.metric_columns)
        return f"NodePerformance(nodes={len(self.nodes)}, mean: {means})"


def rank_metrics(ranks: Sequence[int], *, ks: Sequence[int] = DEFAULT_KS) -> Dict[str, float]:
    """Hits@K, NDCG@K, Recall@K and MRR of one node from the 1-based ranks of its test neighbours."""
    r = np.sort(np.asarray(ranks, dtype=np.float64))
    out = {}
    for kk in ks:
        top = r[r <= kk]
        out[f"hits@{kk}"] = float(len(top) > 0)
        out[f"recall@{kk}"] = len(top) / len(r)
        idcg = np.sum(1.0 / np.log2(np.arange(2, min(kk, len(r)) + 2)))
        out[f"ndcg@{kk}"] = float(np.sum(1.0 / np.log2(top + 1)) / idcg)
    out["mrr"] = 1.0 / r[0]
    return out


def node_metrics(predictor: LinkPredictor, split: Any, *, ks: Sequence[int] = DEFAULT_KS,
                 exclude_val: bool = True, nodes: Optional[Sequence[int]] = None, seed: int = 0,
                 block_size: int = 256, device: DeviceLike = "auto",
                 progress: ProgressLike = False) -> NodePerformance:
    """Per-node Hits@K, NDCG@K, Recall@K, MRR of ``predictor`` on the test neighbours of ``split``.

    Every node with at least one test neighbour (or the given ``nodes``) ranks all nodes; itself, its
    training neighbours and (``exclude_val``) validation neighbours are excluded.  A test neighbour's rank
    is 1 + the number of candidates scored higher + the number scored equal that come first in one seeded
    random order of the nodes.  Returns a :class:`NodePerformance` whose ``to_frame()`` has one row per
    node, with ``n_test`` its number of test neighbours.
    """
    if not isinstance(split, EdgeSplit):
        raise TypeError("split must be an EdgeSplit (train/val/test edges); build one with split_edges()")
    edges, n, _ = _resolve_splits(split, None, None, predictor.num_nodes, True)
    if len(edges["test"]) == 0:
        raise ValueError("the split has no test edges: per-node performance is measured on test neighbours")
    dev = resolve_device(device)
    known = _adjacency(edges["train"], n)
    if exclude_val and len(edges["val"]):
        known = known + _adjacency(edges["val"], n)
    known = (known + sps.identity(n, format="csr")).tocsr()
    test_adj = _adjacency(edges["test"], n)
    deg_test = np.diff(test_adj.indptr)
    todo = np.flatnonzero(deg_test > 0) if nodes is None else np.asarray(nodes, dtype=np.int64)
    if nodes is not None and np.any(deg_test[todo] == 0):
        raise ValueError("some of the given nodes have no test neighbour; per-node metrics need at least one")
    order = torch.from_numpy(np.random.default_rng(seed).permutation(n)).to(dev)  # tie-break key
    rows = []
    blocks = [todo[i:i + block_size] for i in range(0, len(todo), block_size)]
    with Progress(len(blocks), "per-node ranking", progress) as bar:
        for blk in blocks:
            s = predictor.scores(blk, device=dev).double()
            kb = known[blk].tocoo()
            s[torch.as_tensor(kb.row, device=dev), torch.as_tensor(kb.col, device=dev)] = -torch.inf
            tb = test_adj[blk].tocoo()
            pr = torch.as_tensor(tb.row, device=dev, dtype=torch.long)
            pt = torch.as_tensor(tb.col, device=dev, dtype=torch.long)
            ranks = torch.empty(len(pr), dtype=torch.long, device=dev)
            chunk = max(1, int(2 ** 24 // max(n, 1)))
            for c in range(0, len(pr), chunk):
                r_, t_ = pr[c:c + chunk], pt[c:c + chunk]
                srow = s[r_]
                st = srow.gather(1, t_[:, None])
                ahead = (srow > st) | ((srow == st) & (order[None, :] < order[t_][:, None]))
                ranks[c:c + chunk] = 1 + ahead.sum(1)
            ranks = ranks.cpu().numpy()
            rr = tb.row
            for li, node in enumerate(blk):
                row = {"node": int(node), "n_test": int(deg_test[node])}
                row.update(rank_metrics(ranks[rr == li], ks=ks))
                rows.append(row)
            bar.update()
    cols = ["node", "n_test"] + list(rank_metrics([1], ks=ks))
    frame = pd.DataFrame(rows, columns=cols).set_index("node")
    return NodePerformance(nodes=frame, ks=[int(x) for x in ks],
                           settings={"predictor": dict(predictor.settings), "ks": [int(x) for x in ks],
                                     "exclude_val": exclude_val, "seed": seed, "device": describe(dev),
                                     "nodes": None if nodes is None else [int(x) for x in todo]})


# --------------------------------------------------------------------------------------------
# correlations and the distribution shift
# --------------------------------------------------------------------------------------------
def correlations(frame: pd.DataFrame, predictors: Sequence[str], targets: Sequence[str]) -> pd.DataFrame:
    """Pearson and Spearman correlation (and p-values) of each predictor column with each target column,
    over the rows of ``frame`` where both are finite.  One row per (predictor, target)."""
    from scipy import stats

    rows = []
    for p in predictors:
        for t in targets:
            x, y = frame[p].to_numpy(float), frame[t].to_numpy(float)
            ok = np.isfinite(x) & np.isfinite(y)
            x, y = x[ok], y[ok]
            if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
                pr = pp = sr = spv = np.nan
            else:
                pr, pp = stats.pearsonr(x, y)
                sr, spv = stats.spearmanr(x, y)
            rows.append({"predictor": p, "target": t, "pearson": float(pr), "pearson_p": float(pp),
                         "spearman": float(sr), "spearman_p": float(spv), "n": int(len(x))})
    return pd.DataFrame(rows)


def distribution_shift(tc: TCResult) -> Dict[str, float]:
    """Train-TC against Test-TC over the nodes where both are defined: means, mean paired difference and
    the fraction of nodes whose Train-TC is above their Test-TC (the topological distribution shift)."""
    both = tc.defined("train") & tc.defined("test")
    if not both.any():
        return {"nodes": 0, "mean_train": np.nan, "mean_test": np.nan, "mean_difference": np.nan,
                "fraction_train_above_test": np.nan}
    a, b = tc.train[both], tc.test[both]
    return {"nodes": int(both.sum()), "mean_train": float(a.mean()), "mean_test": float(b.mean()),
            "mean_difference": float((a - b).mean()), "fraction_train_above_test": float(np.mean(a > b))}


__all__ = ["GCN", "LinkPredictor", "NodePerformance", "fit_link_predictor", "node_metrics", "rank_metrics",
           "correlations", "distribution_shift", "normalized_adjacency"]
