"""Topological concentration: exact values by hand, networkx clustering, input cleaning, metrics."""
import sys
import warnings
from fractions import Fraction

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sps
import torch

from workbench import topology as tp
from tests.optional import optional_module

figures = optional_module("workbench.topology.figures")  # plotly: only the figure tests need it

# A triangle 0-1-2 with a pendant 3 on node 2; validation edge 1-3, test edge 0-3.  beta = 4 / 8 = 1/2.
HAND_TRAIN = [(0, 1), (0, 2), (1, 2), (2, 3)]
HAND_VAL = [(1, 3)]
HAND_TEST = [(0, 3)]


def _hand(k):
    return tp.concentration(HAND_TRAIN, val=HAND_VAL, test=HAND_TEST, k=k, device="cpu")


def _walk_ends(adj, i, k):
    """Multiset (Counter) of the end points of every length-k walk from i, by listing the walks."""
    from collections import Counter

    walks = [(i,)]
    for _ in range(k):
        walks = [w + (v,) for w in walks for v in adj[w[-1]]]
    return Counter(w[-1] for w in walks)


def _exact_tc(train, splits, n, K):
    """TC from the REFERENCE definition in exact rational arithmetic: {split: [Fraction per node]}."""
    adj = {i: [] for i in range(n)}
    for u, v in train:
        adj[u].append(v)
        adj[v].append(u)
    beta = Fraction(n, 2 * len(train))
    H = {i: {k: _walk_ends(adj, i, k) for k in range(1, K + 1)} for i in range(n)}
    out = {}
    for name, edges in splits.items():
        nbr = {i: [] for i in range(n)}
        for u, v in edges:
            nbr[u].append(v)
            nbr[v].append(u)
        vals = []
        for i in range(n):
            den = (sum(beta ** (k - 1) for k in range(1, K + 1))
                   * sum(beta ** (k - 1) * sum(H[i][k].values()) for k in range(1, K + 1))
                   - (1 if name == "train" else 0))
            if not nbr[i] or den <= 0 or len(adj[i]) < (2 if name == "train" else 1):
                vals.append(Fraction(0))
                continue
            total = Fraction(0)
            for j in nbr[i]:
                for k1 in range(1, K + 1):
                    for k2 in range(1, K + 1):
                        common = H[i][k1].keys() & H[j][k2].keys()
                        total += beta ** (k1 + k2 - 2) * sum(H[i][k1][v] for v in common)
            vals.append(total / len(nbr[i]) / den)
        out[name] = vals
    return out


def _assert_matches_exact(got, exact):
    for s, want in exact.items():
        have = getattr(got, s)
        assert len(have) == len(want)
        for node, (h, w) in enumerate(zip(have, want)):
            # float against the exact rational: within a few units in the last place
            assert abs(Fraction(float(h)) - w) <= Fraction(1, 10 ** 15) * max(1, abs(w)), (s, node, h, w)


# hand-derived, see the comments: |H^1| = d = (2, 2, 3, 1), A^2 rows (2,1,1,1), (1,2,1,1), (1,1,3,0),
# (1,1,0,1) so |H^2| = (5, 5, 5, 3); at K=2 the denominators are (3/2)(|H^1| + |H^2|/2) = 27/4, 27/4,
# 33/4, 15/4 (minus 1 for Train)
HAND_EXPECTED = {
    1: {"train": [Fraction(1), Fraction(1), Fraction(1, 3), Fraction(0)],     # clustering
        "val": [Fraction(0), Fraction(1, 2), Fraction(0), Fraction(1)],      # |{2}| / d_i
        "test": [Fraction(1, 2), Fraction(0), Fraction(0), Fraction(1)]},
    2: {"train": [Fraction(39, 46), Fraction(39, 46), Fraction(20, 29), Fraction(0)],
        "val": [Fraction(0), Fraction(4, 9), Fraction(0), Fraction(11, 15)],
        "test": [Fraction(4, 9), Fraction(0), Fraction(0), Fraction(11, 15)]},
}


@pytest.mark.parametrize("k", [1, 2])
def test_hand_example_exact_all_nodes_all_splits(k):
    splits = {"train": HAND_TRAIN, "val": HAND_VAL, "test": HAND_TEST}
    exact = _exact_tc(HAND_TRAIN, splits, 4, k)
    # the walk enumeration reproduces the values worked by hand, exactly:
    # K=2 Train at 2: pairs (2,0) = (2,1) = 1 + 3/2 + 2 + 5/4 = 23/4, (2,3) = 0 + 3/2 + 3/2 + 1/2 = 7/2,
    #   mean 5, over 33/4 - 1 = 29/4 -> 20/29;  Train at 0: (19/4 + 5)/2 = 39/8 over 23/4 -> 39/46;
    # K=2 Val at 1 (neighbour 3): 1 + 1/2 + 1/2 + 4/4 = 3 over 27/4 -> 4/9;  Test at 3: 11/4 over 15/4
    assert exact == HAND_EXPECTED[k]
    got = _hand(k)
    assert got.beta == 0.5
    _assert_matches_exact(got, exact)
    _assert_matches_exact(got, HAND_EXPECTED[k])


def test_irregular_example_exact_from_walks():
    # 7 nodes, 9 training edges: beta = 7/18, not a power of two
    train = [(0, 1), (0, 2), (1, 2), (2, 3), (3, 4), (4, 5), (3, 5), (5, 6), (1, 3)]
    val = [(0, 3), (2, 4)]
    test = [(0, 4), (1, 5), (4, 6), (2, 6)]
    splits = {"train": train, "val": val, "test": test}
    for k in (1, 2, 3):
        exact = _exact_tc(train, splits, 7, k)
        got = tp.concentration(train, val=val, test=test, k=k, device="cpu")
        assert got.beta == pytest.approx(7 / 18, rel=1e-15)
        _assert_matches_exact(got, exact)
        assert all(any(v > 0 for v in exact[s]) for s in splits)
    # one value by hand at K=1: Test at 6 (neighbours 4 and 2, training neighbour 5): H_6^1 = {5};
    # 5 is a training neighbour of 4, not of 2 -> (1 + 0) / 2 / (1 * 1) = 1/2
    assert _exact_tc(train, splits, 7, 1)["test"][6] == Fraction(1, 2)


def test_asymmetric():
    r = _hand(2)
    # 0 and 3 are test neighbours of each other, yet their Test-TC differ
    assert r.test[0] != pytest.approx(r.test[3])
    assert r.test[0] == pytest.approx(4 / 9) and r.test[3] == pytest.approx(11 / 15)


@pytest.mark.parametrize("name,kw", [("karate", {}), ("les_miserables", {}), ("florentine_families", {}),
                                     ("davis_southern_women", {}), ("powerlaw_cluster", {"n": 300}),
                                     ("random_geometric", {"n": 300})])
def test_train_tc_k1_is_clustering(name, kw):
    g = tp.builtin(name, **kw)
    r = tp.concentration(g, k=1, device="cpu")
    want = nx.clustering(g.to_networkx())
    np.testing.assert_allclose(r.train, [want[i] for i in range(g.num_nodes)], atol=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_sparse_matches_walk_expansion(k):
    split = tp.split_edges(tp.builtin("les_miserables"), seed=3)
    fast = tp.concentration(split, k=k, device="cpu").to_frame()[["train", "val", "test"]]
    slow = tp.walk_concentration(split, k=k)
    np.testing.assert_allclose(fast.to_numpy(), slow.to_numpy(), rtol=1e-12, atol=1e-14)
    assert (fast.to_numpy() > 0).any(axis=0).all()


def test_blocking_does_not_change_values():
    split = tp.split_edges(tp.builtin("random_geometric", n=400, seed=1), seed=0)
    one = tp.concentration(split, k=3, device="cpu")
    many = tp.concentration(split, k=3, device="cpu", max_block_nnz=500)
    assert many.settings["blocks"] > 10 and one.settings["blocks"] == 1
    for s in ("train", "val", "test"):
        np.testing.assert_allclose(getattr(one, s), getattr(many, s), rtol=1e-12)


def _hub_graph(seed=0):
    """A star (hub 0 with 40 leaves), a clique on 8 nodes joined to the hub, and up to 60 random edges over
    70 nodes; split seeded.  Hubs make the k-hop supports of their neighbours nearly complete."""
    rng = np.random.default_rng(seed)
    edges = [(0, i) for i in range(1, 41)] + [(i, j) for i in range(41, 49) for j in range(i + 1, 49)]
    edges = {tuple(sorted(e)) for e in edges + [(0, 41)] + [rng.choice(70, 2, replace=False) for _ in range(60)]}
    return tp.split_edges(sorted(edges), val=0.15, test=0.25, seed=seed)


def _dense_tc(split, k):
    """TC from dense NumPy matrices: S = sum beta^(q-1) A^q, T = sum beta^(q-1) [A^q > 0], (S T^T)_ij."""
    n = split.num_nodes
    adj = {}
    for s in ("train", "val", "test"):
        m = np.zeros((n, n))
        e = getattr(split, s)
        m[e[:, 0], e[:, 1]] = m[e[:, 1], e[:, 0]] = 1.0
        adj[s] = m
    a = adj["train"]
    beta = n / a.sum()
    powers = [np.linalg.matrix_power(a, q) for q in range(1, k + 1)]
    S = sum(beta ** q * p for q, p in enumerate(powers))
    T = sum(beta ** q * (p > 0) for q, p in enumerate(powers))
    M = S @ T.T
    size = sum(beta ** q * p.sum(axis=1) for q, p in enumerate(powers))
    out = {}
    for s, m in adj.items():
        deg = m.sum(axis=1)
        den = sum(beta ** q for q in range(k)) * size - (1 if s == "train" else 0)
        ok = (deg > 0) & (den > 0) & (a.sum(axis=1) >= (2 if s == "train" else 1))
        out[s] = np.where(ok, (M * m).sum(axis=1) / np.where(ok, deg * den, 1.0), 0.0)
    return out


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_edge_method_matches_dense_products_on_a_hub_graph(k, monkeypatch):
    split = _hub_graph()
    want = _dense_tc(split, k)
    got = tp.concentration(split, k=k, device="cpu")
    for s in ("train", "val", "test"):
        np.testing.assert_allclose(getattr(got, s), want[s], rtol=1e-12, atol=1e-15)
        assert (want[s] > 0).sum() >= 5
    if k <= 3:  # and the walk expansion, node by node
        slow = tp.walk_concentration(split, k=k).to_numpy()
        np.testing.assert_allclose(got.to_frame()[["train", "val", "test"]].to_numpy(), slow, rtol=1e-12)
    # tiny tables and gather steps: many blocks of table rows, edges cut across steps, two threads
    conc = sys.modules["workbench.topology.concentration"]
    monkeypatch.setattr(conc, "_TABLE", 64)
    monkeypatch.setattr(conc, "_CHUNK", 8)
    small = tp.concentration(split, k=k, device="cpu", threads=2, max_block_nnz=50)
    assert small.settings["blocks"] > 3
    for s in ("train", "val", "test"):
        np.testing.assert_allclose(getattr(small, s), want[s], rtol=1e-12, atol=1e-15)


def test_cupy_code_path_emulated_with_numpy(monkeypatch):
    # the CuPy branches (binary-search repeats, bincount row sums, int32 indices, one thread) run here with
    # NumPy behind a namespace that is not numpy itself
    import types

    from workbench.backend import resolve_device

    conc = sys.modules["workbench.topology.concentration"]
    proxy = types.SimpleNamespace(**{name: getattr(np, name) for name in dir(np) if not name.startswith("_")})

    class Emulated(conc._Sparse):
        def __init__(self, device):
            self.device, self.xp, self.gpu, self.sp, self.index = resolve_device("cpu"), proxy, True, sps, np.int32

    split = _hub_graph(1)
    want = {k: tp.concentration(split, k=k, device="cpu") for k in (1, 3)}
    monkeypatch.setattr(conc, "_Sparse", Emulated)
    monkeypatch.setattr(conc, "_TABLE", 256)
    for k in (1, 3):
        got = tp.concentration(split, k=k, device="cpu", max_block_nnz=200)
        part = tp.concentration(split, k=k, device="cpu", nodes=[0, 5, 44, 60])
        assert got.settings["backend"] == "cupy" and got.settings["threads"] == 1
        for s in ("train", "val", "test"):
            np.testing.assert_allclose(getattr(got, s), getattr(want[k], s), rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(getattr(part, s)[[0, 5, 44, 60]], getattr(want[k], s)[[0, 5, 44, 60]],
                                       rtol=1e-12, atol=1e-15)


def test_node_subset_equals_full_computation():
    split = tp.split_edges(tp.builtin("powerlaw_cluster", n=600, m=3, seed=4), seed=2)
    full = tp.concentration(split, k=3, device="cpu")
    hub = int(np.argmax(full.degree_train))
    lonely = int(np.flatnonzero(full.degree_val == 0)[0])  # no validation neighbour: Val-TC 0
    pick = np.array([hub, lonely, 3, 77, 599, 77])
    part = tp.concentration(split, k=3, device="cpu", nodes=pick)
    chosen = np.isin(np.arange(600), pick)
    for s in ("train", "val", "test"):
        np.testing.assert_allclose(getattr(part, s)[chosen], getattr(full, s)[chosen], rtol=1e-13, atol=1e-15)
        assert np.isnan(getattr(part, s)[~chosen]).all()
        np.testing.assert_array_equal(part.defined(s), full.defined(s) & chosen)
    assert part.val[lonely] == 0.0 and full.test[hub] > 0
    np.testing.assert_array_equal(part.nodes, np.unique(pick))
    assert part.settings["nodes"] == 5 and part.settings["edges"] == full.settings["edges"]
    empty = tp.concentration(split, k=2, device="cpu", nodes=[])
    assert np.isnan(empty.train).all() and not empty.defined("train").any()
    with pytest.raises(ValueError, match="nodes must be node ids in 0..599"):
        tp.concentration(split, k=2, nodes=[5, 600])


def test_memory_limit_splits_the_nodes_into_passes():
    split = tp.split_edges(tp.builtin("powerlaw_cluster", n=800, m=3, seed=1), seed=0)
    one = tp.concentration(split, k=3, device="cpu")
    few = tp.concentration(split, k=3, device="cpu", max_memory=1e6, max_block_nnz=2e4)
    assert one.settings["passes"] == 1 and few.settings["passes"] > 2
    for s in ("train", "val", "test"):
        np.testing.assert_allclose(getattr(few, s), getattr(one, s), rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="max_memory=100 bytes cannot hold the 3-hop rows"):
        tp.concentration(split, k=3, device="cpu", max_memory=100)  # one hub row alone is larger


def test_zero_where_undefined():
    # star 0-{1,2,3} plus isolated node 4; test edge 3-4 (4 has no training edge)
    r = tp.concentration([(0, 1), (0, 2), (0, 3)], test=[(3, 4), (1, 2)], k=2, device="cpu")
    assert r.train[1] == 0 and r.train[4] == 0  # degree <= 1
    assert r.test[4] == 0 and r.test[0] == 0  # no training edge / no test neighbour
    assert r.val.tolist() == [0.0] * 5  # no validation edges at all
    assert r.test[1] > 0
    assert np.all(np.isfinite(r.train)) and np.all(np.isfinite(r.test))


def test_self_loops_and_duplicates_are_cleaned_with_message_or_rejected():
    clean = tp.concentration(HAND_TRAIN, test=HAND_TEST, k=2, device="cpu")
    dirty = HAND_TRAIN + [(1, 0), (2, 2), (0, 2)]
    with pytest.warns(tp.GraphInputWarning, match=r"1 self-loop\(s\) and 2 repeated edge\(s\)"):
        got = tp.concentration(dirty, test=HAND_TEST, k=2, device="cpu")
    np.testing.assert_array_equal(got.train, clean.train)
    np.testing.assert_array_equal(got.degree_train, [2, 2, 3, 1])
    with pytest.raises(ValueError, match="self-loop.*clean=True"):
        tp.concentration(dirty, k=1, clean=False)
    # a sparse matrix with a 2 (double edge) and a diagonal entry
    a = sps.csr_matrix(np.array([[1, 2, 0], [2, 0, 1], [0, 1, 0]]))
    with pytest.warns(tp.GraphInputWarning):
        g = tp.as_graph(a)
    assert g.edges.tolist() == [[0, 1], [1, 2]]
    # both directions listed exactly once (PyTorch Geometric layout) is one edge per pair, silently
    both = np.array([[0, 1, 1, 2], [1, 0, 2, 1]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tp.edge_array(both).tolist() == [[0, 1], [1, 2]]


def test_edges_shared_between_splits_are_dropped_with_message_or_rejected():
    clean = tp.concentration(HAND_TRAIN, val=HAND_VAL, test=HAND_TEST, k=2, device="cpu")
    # val repeats a training edge (given reversed); test repeats a training edge and the val edge
    val = HAND_VAL + [(2, 0)]
    test = HAND_TEST + [(3, 2), (3, 1)]
    with pytest.warns(tp.GraphInputWarning) as rec:
        got = tp.concentration(HAND_TRAIN, val=val, test=test, k=2, device="cpu")
    msgs = [str(w.message) for w in rec]
    assert any(m.startswith("val: removed 1 edge(s) also in train") for m in msgs), msgs
    assert any(m.startswith("test: removed 1 edge(s) also in train and 1 edge(s) also in val") for m in msgs)
    for s in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(got, s), getattr(clean, s))
    np.testing.assert_array_equal(got.degree_val, [0, 1, 0, 1])
    np.testing.assert_array_equal(got.degree_test, [1, 0, 0, 1])
    assert got.settings["edges"] == {"train": 4, "val": 1, "test": 1}
    with pytest.raises(ValueError, match=r"test has 1 edge\(s\) also in val.*clean=True"):
        tp.concentration(HAND_TRAIN, val=HAND_VAL, test=[(0, 3), (1, 3)], clean=False)
    with pytest.raises(ValueError, match=r"val has 1 edge\(s\) also in train"):
        tp.concentration(HAND_TRAIN, val=[(0, 1)], clean=False)
    # an EdgeSplit with a leaked test edge is cleaned the same way everywhere the splits are read
    split = tp.split_edges(tp.builtin("karate"), seed=0)
    leaky = tp.EdgeSplit(train=split.train, val=split.val, test=np.vstack([split.test, split.train[:3]]),
                         num_nodes=split.num_nodes)
    with pytest.warns(tp.GraphInputWarning, match="test: removed 3 edge"):
        np.testing.assert_array_equal(tp.concentration(leaky, k=1, device="cpu").test,
                                      tp.concentration(split, k=1, device="cpu").test)


def test_input_forms_agree(tmp_path):
    g = tp.builtin("karate")
    e = g.edges
    path = tmp_path / "karate.txt"
    path.write_text("# karate club\n" + "\n".join(f"{u} {v}" for u, v in e))
    csv = tmp_path / "karate.csv"
    csv.write_text("\n".join(f"{u},{v}" for u, v in e))
    adj = sps.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(34, 34))
    forms = [nx.karate_club_graph(), e, e.T, torch.from_numpy(e.T.copy()), adj + adj.T, str(path), csv, g]
    ref = tp.concentration(e, k=2, device="cpu").train
    for f in forms:
        np.testing.assert_allclose(tp.concentration(f, k=2, device="cpu").train, ref, rtol=1e-13)


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="k=0"):
        tp.concentration(HAND_TRAIN, k=0)
    with pytest.raises(ValueError, match="train has no edges"):
        tp.concentration(np.zeros((0, 2), int), test=HAND_TEST)
    with pytest.raises(ValueError, match=r"shape \(2, E\) or \(E, 2\)"):
        tp.concentration(np.zeros((3, 4), int))
    with pytest.raises(ValueError, match="num_nodes=3"):
        tp.concentration(HAND_TRAIN, num_nodes=3)
    with pytest.raises(ValueError, match="no training edges"):
        tp.split_edges(HAND_TRAIN, val=0.5, test=0.5)
    with pytest.raises(ValueError, match="unknown built-in graph"):
        tp.builtin("cora")


def test_split_is_seeded_disjoint_and_complete():
    g = tp.builtin("powerlaw_cluster", n=500, seed=2)
    a, b, c = (tp.split_edges(g, seed=s) for s in (7, 7, 8))
    for s in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(a, s), getattr(b, s))
    assert not np.array_equal(a.test, c.test)
    keys = lambda x: set(map(tuple, x.tolist()))  # noqa: E731
    tr, va, te = keys(a.train), keys(a.val), keys(a.test)
    assert not (tr & va or tr & te or va & te)
    assert tr | va | te == keys(g.edges)
    assert len(te) == round(0.2 * g.num_edges) and len(va) == round(0.1 * g.num_edges)


def test_builtin_generated_graphs():
    sbm = tp.builtin("sbm", n=4000, degree=10, seed=0)
    assert sbm.num_nodes == 4000 and abs(2 * sbm.num_edges / 4000 - 10) < 0.5
    block = sbm.edges // 1000
    assert np.mean(block[:, 0] == block[:, 1]) == pytest.approx(0.8, abs=0.03)
    np.testing.assert_array_equal(sbm.edges, tp.builtin("sbm", n=4000, degree=10, seed=0).edges)
    rgg = tp.builtin("random_geometric", n=3000, degree=8, seed=0)
    assert abs(2 * rgg.num_edges / 3000 - 8) < 1.0
    assert tp.builtin("karate").num_edges == 78


def test_density_matches_networkx_ego_graphs():
    g = tp.builtin("les_miserables")
    G = g.to_networkx()
    for k in (1, 2):
        d = tp.subgraph_density(g, k=k, device="cpu")
        want = [nx.density(nx.ego_graph(G, i, radius=k)) for i in range(g.num_nodes)]
        np.testing.assert_allclose(d, want, atol=1e-12)


def test_atc_definition_and_seed():
    split = tp.split_edges(tp.builtin("karate"), seed=0)
    n = split.num_nodes
    r = tp.approximate_concentration(split, k=2, similarity="dot", seed=5, device="cpu")
    # dense re-derivation from the definition
    a = np.zeros((n, n))
    a[split.train[:, 0], split.train[:, 1]] = a[split.train[:, 1], split.train[:, 0]] = 1
    p = (a + np.eye(n)) / (a + np.eye(n)).sum(1, keepdims=True)
    rnd = np.random.default_rng(5).normal(0, 1 / 64, size=(n, 64))
    emb = (p @ rnd + p @ p @ rnd) / 2
    t = split.test
    want = np.zeros(n)
    for i in range(n):
        nb = [v for u, v in t if u == i] + [u for u, v in t if v == i]
        if nb:
            want[i] = np.mean([emb[i] @ emb[j] for j in nb])
    np.testing.assert_allclose(r.test, want, rtol=1e-10, atol=1e-16)
    cos = tp.approximate_concentration(split, k=2, seed=5, device="cpu")
    again = tp.approximate_concentration(split, k=2, seed=5, device="cpu")
    np.testing.assert_array_equal(cos.test, again.test)
    assert np.all(np.abs(cos.train) <= 1 + 1e-12)
    assert not np.array_equal(cos.test, tp.approximate_concentration(split, k=2, seed=6, device="cpu").test)


def test_rank_metrics_by_hand():
    m = tp.rank_metrics([3, 1, 12], ks=(1, 5, 10))
    assert m["hits@1"] == 1 and m["recall@1"] == pytest.approx(1 / 3) and m["mrr"] == 1.0
    assert m["recall@5"] == pytest.approx(2 / 3) and m["recall@10"] == pytest.approx(2 / 3)
    # NDCG@5: (1/log2(2) + 1/log2(4)) / (1 + 1/log2(3) + 1/log2(4))
    assert m["ndcg@5"] == pytest.approx(1.5 / (1.5 + 1 / np.log2(3)))
    m = tp.rank_metrics([7], ks=(5,))
    assert m["hits@5"] == 0 and m["ndcg@5"] == 0 and m["mrr"] == pytest.approx(1 / 7)


def test_node_metrics_common_neighbours_match_brute_force(tmp_path):
    split = tp.split_edges(tp.builtin("les_miserables"), seed=1)
    n = split.num_nodes
    pred = tp.fit_link_predictor(split, model="cn")
    res = tp.node_metrics(pred, split, ks=(1, 5, 10), seed=4, device="cpu")
    assert isinstance(res, tp.NodePerformance) and res.ks == [1, 5, 10] and res.settings["seed"] == 4
    got = res.to_frame()
    a = np.zeros((n, n))
    for u, v in split.train:
        a[u, v] = a[v, u] = 1
    scores = a @ a
    order = np.random.default_rng(4).permutation(n)
    for i in got.index:
        known = {i} | {v for u, v in np.vstack([split.train, split.val]) if u == i} | \
                {u for u, v in np.vstack([split.train, split.val]) if v == i}
        cand = [c for c in range(n) if c not in known]
        ranked = sorted(cand, key=lambda c: (-scores[i, c], order[c]))
        tests = {v for u, v in split.test if u == i} | {u for u, v in split.test if v == i}
        ranks = [ranked.index(t) + 1 for t in tests]
        want = tp.rank_metrics(ranks, ks=(1, 5, 10))
        for key, val in want.items():
            assert got.loc[i, key] == pytest.approx(val), (i, key)
    assert got["n_test"].sum() == 2 * len(split.test)
    back = tp.NodePerformance.load(res.save(tmp_path / "perf"))
    pd.testing.assert_frame_equal(back.to_frame(), got, check_index_type=False)
    assert back.ks == [1, 5, 10] and back.settings["predictor"]["model"] == "cn"


def test_gcn_learns_and_tc_tracks_performance():
    torch.set_num_threads(2)
    rep = tp.analyze(tp.builtin("random_geometric", n=800, degree=10, seed=0), k=2, epochs=40, seed=0,
                     device="cpu")
    hist = rep.history
    assert hist[-1] < 0.8 * hist[0]
    ev = rep.nodes[rep.nodes["n_test"].notna()]
    assert ev["hits@10"].mean() > 0.3  # random ranking would give about 10 / 800 per test neighbour
    c = rep.correlations.set_index(["predictor", "target"])
    # headline claims, in kind: Test-TC correlates with per-node performance better than degree does,
    # and Train-TC sits above Test-TC (topological distribution shift)
    assert c.loc[("tc_test", "hits@10"), "spearman"] > c.loc[("degree_train", "hits@10"), "spearman"]
    assert rep.shift["mean_train"] > rep.shift["mean_test"]
    assert rep.shift["fraction_train_above_test"] > 0.5
    # reweighting is an option that changes the trained model, seeded
    pred = tp.fit_link_predictor(tp.split_edges(tp.builtin("karate"), seed=0), epochs=5, reweight="tc", k=2,
                                 device="cpu")
    assert pred.settings["reweight"] == "tc" and pred.settings["k"] == 2


def test_results_round_trip_and_figures(tmp_path):
    rep = tp.analyze(tp.builtin("karate"), k=2, model="cn", seed=0, device="cpu")
    back = tp.TopologyReport.load(rep.save(tmp_path / "rep"))
    pd.testing.assert_frame_equal(back.nodes, rep.nodes, check_index_type=False)
    assert back.shift == rep.shift and back.settings["k"] == 2
    tc = tp.concentration(tp.split_edges(tp.builtin("karate"), seed=0), k=2, device="cpu")
    back_tc = tp.TCResult.load(tc.save(tmp_path / "tc"))
    np.testing.assert_array_equal(back_tc.test, tc.test)
    assert list(tc.to_frame().columns[:3]) == ["train", "val", "test"] and len(tc.to_frame()) == 34
    fig = figures.scatter(rep, metric="tc_test", target="hits@10")
    ev = rep.nodes[rep.nodes["n_test"].notna()]
    np.testing.assert_allclose(np.asarray(fig.data[0].x, float), ev["tc_test"].to_numpy())
    draw = figures.overview(rep, split="train")
    np.testing.assert_allclose(np.asarray(draw.data[1].marker.color, float), rep.nodes["tc_train"].to_numpy())
    assert len(figures.distributions(tc).data) == 3
    assert len(figures.correlations(rep, target="mrr").data[0].x) == len(tp.PREDICTORS)
    # degree on all three splits and ATC on val are baselines in the correlations, computed over test nodes
    preds = set(rep.correlations["predictor"])
    assert {"degree_train", "degree_val", "degree_test", "atc_val", "atc_test"} <= preds
    from scipy import stats

    c = rep.correlations.set_index(["predictor", "target"])
    for col in ("degree_val", "degree_test", "atc_val"):
        x, y = ev[col].to_numpy(float), ev["mrr"].to_numpy(float)
        assert c.loc[(col, "mrr"), "n"] == len(ev)
        np.testing.assert_allclose(c.loc[(col, "mrr"), "spearman"], stats.spearmanr(x, y)[0], rtol=1e-12,
                                   equal_nan=False)
    np.testing.assert_array_equal(ev["degree_test"].to_numpy(), ev["n_test"].to_numpy())
    assert len(figures.shift(tc).data[0].x) == int((tc.defined("train") & tc.defined("test")).sum())
    assert list(figures.tc_by_hops([tc]).data[0].x) == [2]
    with pytest.raises(ValueError, match="max_nodes"):
        figures.graph(np.zeros((0, 2), int), np.zeros(1000))


@pytest.mark.gpu
def test_gpu_matches_cpu():
    split = tp.split_edges(tp.builtin("random_geometric", n=2000, seed=0), seed=0)
    cpu = tp.concentration(split, k=3, device="cpu")
    gpu = tp.concentration(split, k=3, device="cuda")
    for s in ("train", "val", "test"):
        np.testing.assert_allclose(getattr(gpu, s), getattr(cpu, s), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(tp.subgraph_density(split.train, k=2, device="cuda"),
                               tp.subgraph_density(split.train, k=2, device="cpu"), rtol=1e-12)
    a = tp.approximate_concentration(split, k=2, device="cpu")
    b = tp.approximate_concentration(split, k=2, device="cuda")
    np.testing.assert_allclose(a.test, b.test, rtol=1e-6, atol=1e-9)


def test_analyze_uses_atc_above_the_cost_limit_and_measures_its_agreement():
    from scipy import stats

    from workbench.topology import analysis

    g = tp.builtin("random_geometric", n=900, degree=10, seed=3)
    split = tp.split_edges(g, seed=0)
    assert 0 < analysis.tc_cost(split, 1) < analysis.tc_cost(split, 2) < analysis.tc_cost(split, 3)
    exact = tp.analyze(split, k=2, model="cn", seed=0, device="cpu")
    assert exact.settings["variant"] == "exact-tc" and exact.settings["tc_cost"] <= analysis.TC_AUTO_LIMIT
    assert exact.nodes["tc_test"].notna().all()
    full = tp.concentration(split, k=2, device="cpu")
    atc = tp.approximate_concentration(split, k=2, seed=0, device="cpu")
    rep = tp.analyze(split, k=2, model="cn", seed=0, device="cpu", tc_limit=1e3)
    assert rep.settings["variant"] == "atc" and rep.settings["tc"] == "auto"
    known = rep.nodes["tc_test"].notna().to_numpy()
    assert known.sum() == analysis.TC_SAMPLE
    np.testing.assert_allclose(rep.nodes["tc_test"].to_numpy()[known], full.test[known], rtol=1e-13)
    np.testing.assert_array_equal(rep.nodes["atc_test"].to_numpy(), atc.test)
    for s in ("val", "test"):
        ok = known & full.defined(s)
        assert rep.atc_agreement[f"n_{s}"] == ok.sum() > 100
        want = stats.spearmanr(getattr(atc, s)[ok], getattr(full, s)[ok])[0]
        assert rep.atc_agreement[s] == pytest.approx(want, rel=1e-12) and 0.3 < want < 1
    # the correlations of the tc_* columns run over the sampled nodes only
    c = rep.correlations.set_index(["predictor", "target"])
    assert c.loc[("tc_test", "mrr"), "n"] == (known & rep.nodes["n_test"].notna().to_numpy()).sum()
    # the same seed draws the same sample; "atc" forces it, "exact" forbids it
    forced = tp.analyze(split, k=2, model="cn", seed=0, device="cpu", tc="atc")
    assert forced.settings["variant"] == "atc" and forced.atc_agreement == rep.atc_agreement
    assert tp.analyze(split, k=2, model="cn", seed=0, device="cpu", tc="exact",
                      tc_limit=1e3).settings["variant"] == "exact-tc"
    with pytest.raises(ValueError, match="tc='fast'"):
        tp.analyze(split, k=2, model="cn", device="cpu", tc="fast")


@pytest.mark.gpu
def test_gpu_edge_method_on_hubs_and_subsets():
    split = tp.split_edges(tp.builtin("powerlaw_cluster", n=3000, m=4, seed=0), seed=0)
    pick = np.arange(0, 3000, 7)
    for k in (2, 3):
        cpu = tp.concentration(split, k=k, device="cpu")
        gpu = tp.concentration(split, k=k, device="cuda")
        part = tp.concentration(split, k=k, device="cuda", nodes=pick, max_memory=5e6 if k == 3 else 1e6)
        assert gpu.settings["backend"] == "cupy" and part.settings["passes"] > 1
        for s in ("train", "val", "test"):
            np.testing.assert_allclose(getattr(gpu, s), getattr(cpu, s), rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(getattr(part, s)[pick], getattr(cpu, s)[pick], rtol=1e-12, atol=1e-15)
