"""Property-based checks over the public entry points (hypothesis).

For every generated case the answer is right (a permuted model computes the same function, densities are
exact, TC obeys its identities) or the error is the workbench's own: raised by workbench code, of one of its
error types, with a message, never a traceback from inside torch, NumPy or SciPy.

The CI profile keeps the whole module to a few minutes; ``WORKBENCH_PROPERTIES=long`` runs many more cases
(derandomised in CI, random in the long profile).  ``WORKBENCH_PROPERTY_STATS=file.json`` writes how many
cases each property generated and how many bad inputs each entry point was given.
"""
from __future__ import annotations

import collections
import json
import os
import traceback
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import workbench
from workbench import connectivity as lmc
from workbench import intrinsic_dimension as idim
from workbench import landscape, models, pruning, spectra
from workbench import topology as tp
from workbench.data import Dataset

settings.register_profile("ci", max_examples=20, deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("long", max_examples=300, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("WORKBENCH_PROPERTIES", "ci"))

STATS: collections.Counter = collections.Counter()
WORKBENCH_DIR = str(Path(workbench.__file__).resolve().parent)
OWN_ERRORS = (ValueError, TypeError, KeyError, IndexError, FileNotFoundError, lmc.UnsupportedStructure)


@pytest.fixture(scope="module", autouse=True)
def _stats():
    yield
    out = os.environ.get("WORKBENCH_PROPERTY_STATS")
    if out:
        Path(out).write_text(json.dumps(dict(sorted(STATS.items())), indent=1))


def assert_own_error(fn, *, match=None):
    """``fn()`` raises an error of the workbench's own: one of OWN_ERRORS, raised by workbench code (the
    innermost frame is in the workbench package), with a message."""
    try:
        fn()
    except OWN_ERRORS as exc:
        frames = traceback.extract_tb(exc.__traceback__)
        where = frames[-1].filename if frames else ""
        assert str(Path(where).resolve()).startswith(WORKBENCH_DIR), (
            f"{type(exc).__name__} raised outside the workbench ({where}:{frames[-1].lineno}): {exc}")
        assert str(exc).strip(), f"{type(exc).__name__} without a message"
        if match is not None:
            assert match in str(exc), str(exc)
        return exc
    except Exception as exc:  # noqa: BLE001 - any other type is a failure of the property
        raise AssertionError(f"not a workbench error: {type(exc).__name__}: {exc}") from exc
    raise AssertionError("no error raised for a bad input")


# ---------------------------------------------------------------------------------------------------------------
# architectures
# ---------------------------------------------------------------------------------------------------------------
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU, "leaky": nn.LeakyReLU,
               "prelu": nn.PReLU}


def _randomise_norms(model: nn.Module, seed: int) -> None:
    """Random affine parameters and running statistics, so that a misplaced permutation shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)) and m.weight is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            if isinstance(m, nn.PReLU):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5)


@st.composite
def mlps(draw):
    """``(model, input shape)`` of a random MLP from the supported layer types."""
    d_in = draw(st.integers(2, 6))
    layers, prev = [], d_in
    for width in draw(st.lists(st.integers(2, 7), min_size=1, max_size=3)):
        layers.append(nn.Linear(prev, width, bias=draw(st.booleans())))
        norm = draw(st.sampled_from(["none", "bn", "ln"]))
        if norm == "bn":
            layers.append(nn.BatchNorm1d(width))
        elif norm == "ln":
            layers.append(nn.LayerNorm(width))
        act = draw(st.sampled_from(sorted(ACTIVATIONS) + ["prelu-channel"]))
        layers.append(nn.PReLU(width) if act == "prelu-channel" else ACTIVATIONS[act]())
        prev = width
    layers.append(nn.Linear(prev, draw(st.integers(2, 4))))
    seed = draw(st.integers(0, 2 ** 16))
    torch.manual_seed(seed)
    model = nn.Sequential(*layers)
    _randomise_norms(model, seed)
    return model.eval(), (d_in,)


@st.composite
def cnns(draw):
    """``(model, input shape)`` of a random small CNN: conv (BatchNorm) activation (pooling) blocks, then a
    flattened or globally pooled linear head."""
    c_in, size = draw(st.integers(1, 3)), draw(st.sampled_from([6, 8]))
    layers, prev, side = [], c_in, size
    for channels in draw(st.lists(st.integers(2, 5), min_size=1, max_size=2)):
        k = draw(st.sampled_from([1, 3]))
        layers.append(nn.Conv2d(prev, channels, k, padding=k // 2, bias=draw(st.booleans())))
        if draw(st.booleans()):
            layers.append(nn.BatchNorm2d(channels))
        act = draw(st.sampled_from(["relu", "tanh", "prelu", "prelu-channel"]))
        layers.append(nn.PReLU(channels) if act == "prelu-channel" else ACTIVATIONS[act]())
        if side >= 4 and draw(st.booleans()):
            layers.append(draw(st.sampled_from([nn.MaxPool2d, nn.AvgPool2d]))(2))
            side //= 2
        prev = channels
    if draw(st.booleans()):
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(prev, 3)]
    else:
        layers += [nn.Flatten(), nn.Linear(prev * side * side, 3)]
    seed = draw(st.integers(0, 2 ** 16))
    torch.manual_seed(seed)
    model = nn.Sequential(*layers)
    _randomise_norms(model, seed)
    return model.eval(), (c_in, size, size)


class _ChannelScale(nn.Module):
    """A learned per-channel scale on a plain module: a parameter the alignment has to place or refuse."""

    def __init__(self, n):
        super().__init__()
        self.scale = nn.Parameter(torch.rand(n) + 0.5)

    def forward(self, x):
        return x * self.scale


class _Recurrent(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.rnn = nn.GRU(d, h, batch_first=True)
        self.head = nn.Linear(h, 2)

    def forward(self, x):
        return self.head(self.rnn(x.unsqueeze(1))[0][:, -1])


@st.composite
def unsupported(draw):
    """Models whose hidden units cannot all be permuted safely: the alignment must refuse or keep B's
    function."""
    d, h = draw(st.integers(2, 5)), draw(st.integers(2, 6))
    kind = draw(st.sampled_from(["scale", "gru", "loose-bias"]))
    torch.manual_seed(draw(st.integers(0, 2 ** 16)))
    if kind == "scale":
        return nn.Sequential(nn.Linear(d, h), _ChannelScale(h), nn.ReLU(), nn.Linear(h, 2)).eval(), (d,), kind
    if kind == "gru":
        return _Recurrent(d, h).eval(), (d,), kind

    class LooseBias(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(d, h), nn.Linear(h, 2)
            self.shift = nn.Parameter(torch.randn(h))

        def forward(self, x):
            return self.fc2(torch.relu(self.fc1(x) + self.shift))

    return LooseBias().eval(), (d,), kind


def _inputs(shape, n=16, seed=0):
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed))


def _random_perms(spec, seed):
    rng = np.random.default_rng(seed)
    return {p: rng.permutation(n) for p, n in spec.sizes.items()}


def _same_function(a, b, x, rtol=1e-4):
    with torch.no_grad():
        ya, yb = a(x), b(x)
    return float((ya - yb).abs().max()) <= rtol * max(1.0, float(ya.abs().max()))


# ---------------------------------------------------------------------------------------------------------------
# connectivity: permutations preserve the function; alignment preserves B's function or refuses
# ---------------------------------------------------------------------------------------------------------------
@given(net=st.one_of(mlps(), cnns()), seed=st.integers(0, 2 ** 16))
def test_a_random_permutation_computes_the_same_function(net, seed):
    model, shape = net
    x = _inputs(shape)
    try:
        spec = lmc.permutation_spec(model, x)
    except lmc.UnsupportedStructure as exc:
        STATS["permute:refused"] += 1
        assert str(exc)
        return
    STATS["permute:cases"] += 1
    permuted = lmc.permute(model, _random_perms(spec, seed), spec=spec)
    assert _same_function(model, permuted, x)


@given(net=st.one_of(mlps(), cnns()), seed=st.integers(0, 2 ** 16), method=st.sampled_from(["weight", "activation"]))
def test_alignment_of_a_permuted_copy_keeps_its_function_and_comes_closer(net, seed, method):
    model, shape = net
    x = _inputs(shape, n=32)
    try:
        spec = lmc.permutation_spec(model, x)
    except lmc.UnsupportedStructure:
        STATS["align:refused"] += 1
        return
    STATS[f"align-{method}:cases"] += 1
    b = lmc.permute(model, _random_perms(spec, seed), spec=spec)
    aligned = lmc.align(model, b, Dataset(x, torch.zeros(len(x), dtype=torch.long)), method=method,
                        device="cpu", progress=False).model_
    assert _same_function(b, aligned, x)
    if method == "weight":
        # coordinate ascent from the identity never ends farther from A than B started (norms do not change
        # under permutation, so a larger inner product is a smaller distance)
        def dist(m):
            return sum(float(((pa - pm) ** 2).sum()) for pa, pm in zip(model.state_dict().values(),
                                                                     m.state_dict().values())
                       if pa.is_floating_point())

        before, after = dist(b), dist(aligned)
        assert after <= before * (1 + 1e-6) + 1e-9, (before, after)
        STATS["align-weight:exact recovery"] += int(after <= 1e-10 * max(1.0, before))


@given(net=unsupported(), seed=st.integers(0, 2 ** 16))
def test_unsupported_structures_are_refused_or_keep_b_s_function(net, seed):
    model, shape, kind = net
    x = _inputs(shape, n=16)
    b = _perturbed(model, seed)
    try:
        res = lmc.align(model, b, Dataset(x, torch.zeros(len(x), dtype=torch.long)), method="weight",
                        device="cpu", progress=False)
    except lmc.UnsupportedStructure as exc:
        STATS[f"unsupported-{kind}:refused"] += 1
        assert str(exc)
        return
    STATS[f"unsupported-{kind}:aligned"] += 1
    assert _same_function(b, res.model_, x)


def _perturbed(model, seed):
    import copy

    b = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in b.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.5)
    return b


# ---------------------------------------------------------------------------------------------------------------
# pruning: densities are exact, no layer is emptied
# ---------------------------------------------------------------------------------------------------------------
@given(net=st.one_of(mlps(), cnns()), density=st.floats(0.02, 1.0), scope=st.sampled_from(["layer", "global"]))
def test_magnitude_masks_keep_exactly_the_requested_share(net, density, scope):
    import warnings

    model, _ = net
    STATS[f"prune-{scope}:cases"] += 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pruning.PruningWarning)
        mask = pruning.magnitude_mask(model, density, scope=scope)
    sizes = {k: m.numel() for k, m in mask.items()}
    kept = {k: int(m.sum()) for k, m in mask.items()}
    if scope == "layer":
        for k in mask:
            assert kept[k] == max(1, round(density * sizes[k])) or kept[k] == round(density * sizes[k]), k
    else:
        total = sum(sizes.values())
        assert abs(sum(kept.values()) - density * total) <= len(mask) + 1
    # the kept entries are the largest in magnitude (per layer, or over all layers)
    params = dict(model.named_parameters())
    if scope == "layer":
        for k, m in mask.items():
            w = params[k].detach().abs()
            if 0 < kept[k] < sizes[k]:
                assert float(w[m.bool()].min()) >= float(w[~m.bool()].max())


# ---------------------------------------------------------------------------------------------------------------
# topology: identities of TC
# ---------------------------------------------------------------------------------------------------------------
@st.composite
def graphs(draw):
    n = draw(st.integers(6, 40))
    kind = draw(st.sampled_from(["gnp", "powerlaw", "star-clique"]))
    seed = draw(st.integers(0, 2 ** 16))
    if kind == "gnp":
        g = nx.gnp_random_graph(n, draw(st.floats(0.1, 0.5)), seed=seed)
    elif kind == "powerlaw":
        g = nx.powerlaw_cluster_graph(n, 2, 0.3, seed=seed)
    else:
        g = nx.star_graph(n - 1)
        g.add_edges_from((i, j) for i in range(1, 5) for j in range(i + 1, 6))
    assume(g.number_of_edges() >= 8)
    return g, seed


def _dense_tc(split, k):
    """TC from the definition with dense NumPy matrices (docs/topology.md)."""
    n = split.num_nodes
    a = np.zeros((n, n))
    for i, j in split.train:
        a[i, j] = a[j, i] = 1.0
    deg = a.sum(1)
    beta = 1.0 / deg.mean()
    s, t, power = np.zeros((n, n)), np.zeros((n, n)), np.eye(n)
    hop_sizes = np.zeros(n)
    for q in range(1, k + 1):
        power = power @ a
        s += beta ** (q - 1) * power
        reach = (power > 0).astype(float)
        t += beta ** (q - 1) * reach
        hop_sizes += beta ** (q - 1) * power.sum(1)  # |H_i^q|: the number of length-q walks from i
    norm = sum(beta ** (q - 1) for q in range(1, k + 1))
    st_ = s @ t.T
    out = {}
    for name, edges in (("train", split.train), ("test", split.test)):
        nbrs = collections.defaultdict(list)
        for i, j in edges:
            nbrs[i].append(j)
            nbrs[j].append(i)
        vals = np.full(n, np.nan)
        for i, js in nbrs.items():
            denom = norm * hop_sizes[i] - (1.0 if name == "train" else 0.0)
            vals[i] = np.mean([st_[i, j] / denom if denom > 0 else 0.0 for j in js])
        out[name] = vals
    return out


@given(graph=graphs(), k=st.integers(1, 3))
def test_tc_follows_its_definition_and_is_clustering_at_one_hop(graph, k):
    g, seed = graph
    split = tp.split_edges(g, val=0.1, test=0.2, seed=seed)
    STATS["tc:cases"] += 1
    res = tp.concentration(split, k=k, device="cpu")
    want = _dense_tc(split, k)
    for name in ("train", "test"):
        got = getattr(res, name)
        ok = res.defined(name)
        np.testing.assert_allclose(got[ok], want[name][ok], rtol=1e-9, atol=1e-12)
        assert np.all((got[ok] >= -1e-12) & (got[ok] <= 1 + 1e-9))
    if k == 1:
        clust = nx.clustering(nx.Graph(list(map(tuple, split.train))))
        expected = np.array([clust.get(i, 0.0) for i in range(split.num_nodes)])
        ok = res.defined("train")
        np.testing.assert_allclose(res.train[ok], expected[ok], atol=1e-12)
    # a node subset gives the same values on its nodes
    nodes = np.arange(0, split.num_nodes, 2)
    sub = tp.concentration(split, k=k, nodes=nodes, device="cpu")
    np.testing.assert_array_equal(sub.train[nodes], res.train[nodes])


# ---------------------------------------------------------------------------------------------------------------
# spectra: eigenvalues of random matrices, module = state dict
# ---------------------------------------------------------------------------------------------------------------
@given(net=st.one_of(mlps(), cnns()))
def test_spectra_eigenvalues_are_the_squared_singular_values(net):
    model, _ = net
    STATS["spectra:cases"] += 1
    res = spectra.analyze(model, bootstrap=0, min_evals=2, device="cpu", progress=False)
    from_state = spectra.analyze(model.state_dict(), bootstrap=0, min_evals=2, device="cpu", progress=False)
    cols = ["name", "shape", "num_evals", "stable_rank", "log_spectral_norm"]
    assert res.to_frame()[cols].equals(from_state.to_frame()[cols])
    params = dict(model.named_parameters())
    for row in res.to_frame().itertuples():
        w = params[row.name].detach().double()
        w2 = w.reshape(w.shape[0], -1) if w.dim() == 2 else None
        if w2 is not None:
            sv = torch.linalg.svdvals(w2)
            assert row.log_spectral_norm == pytest.approx(float(torch.log10(sv.max() ** 2)), rel=1e-9, abs=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# bad inputs at every entry point: the workbench's own error, before any long work
# ---------------------------------------------------------------------------------------------------------------
def _mlp_and_data(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).eval()
    x = torch.randn(24, 4, generator=torch.Generator().manual_seed(seed))
    return model, Dataset(x, torch.arange(24) % 3)


BAD_DATA = ["wrong-features", "wrong-ndim", "nan", "labels-out-of-range", "length-mismatch", "empty"]


def _bad_data(kind, seed=0):
    g = torch.Generator().manual_seed(seed)
    if kind == "wrong-features":
        return torch.randn(24, 5, generator=g), torch.arange(24) % 3
    if kind == "wrong-ndim":
        return torch.randn(24, 2, 2, 2, generator=g), torch.arange(24) % 3
    if kind == "nan":
        x = torch.randn(24, 4, generator=g)
        x[3, 1] = float("nan")
        return x, torch.arange(24) % 3
    if kind == "labels-out-of-range":
        return torch.randn(24, 4, generator=g), torch.arange(24) % 3 + 5
    if kind == "length-mismatch":
        return torch.randn(24, 4, generator=g), torch.arange(20) % 3
    return torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)


def _entry_points(model, good, bad):
    """name -> a call of that entry point with ``bad`` data (and good everything else)."""
    b = lambda: _mlp_and_data(1)[0]  # noqa: E731
    return {
        "connectivity.barrier": lambda: lmc.barrier(model, b(), bad, points=3, device="cpu", progress=False),
        "connectivity.align(activation)": lambda: lmc.align(model, b(), bad, method="activation", device="cpu",
                                                            progress=False),
        "connectivity.analyze": lambda: lmc.analyze((model, b()), bad, points=3, device="cpu", progress=False),
        "landscape.plane": lambda: landscape.plane(model, bad, steps=3, device="cpu", progress=False),
        "landscape.trace": lambda: landscape.trace(model, bad, n_samples=2, device="cpu", progress=False),
        "landscape.eigenvalues": lambda: landscape.eigenvalues(model, bad, k=1, device="cpu", progress=False),
        "landscape.analyze": lambda: landscape.analyze(model, bad, steps=3, device="cpu", progress=False),
        "intrinsic_dimension.profile": lambda: idim.profile(model, bad, n=None, device="cpu", progress=False),
        "intrinsic_dimension.subspace_train": lambda: idim.subspace_train(model, bad, d=3, epochs=1, device="cpu",
                                                                          progress=False),
        "pruning.finetune": lambda: pruning.finetune(model, bad, mask=pruning.magnitude_mask(model, 0.5),
                                                     epochs=1, device="cpu", progress=False),
        "models.train": lambda: models.train(model, bad, epochs=1, device="cpu", progress=False),
        "models.evaluate": lambda: models.evaluate(model, bad, device="cpu"),
    }


ENTRY_POINTS = sorted(_entry_points(*_mlp_and_data(0), None))


@pytest.mark.parametrize("name", ENTRY_POINTS)
@settings(max_examples=max(6, settings().max_examples // 3))
@given(kind=st.sampled_from(BAD_DATA), seed=st.integers(0, 100))
def test_bad_data_gets_the_workbench_s_own_error(name, kind, seed):
    model, good = _mlp_and_data(seed)
    if kind == "labels-out-of-range" and name == "intrinsic_dimension.profile":
        return  # the profile reads inputs only: labels are not used
    STATS[f"bad-data:{name}"] += 1
    assert_own_error(_entry_points(model, good, _bad_data(kind, seed))[name])


BAD_ARGS = {
    "landscape.plane(steps=4)": lambda m, d: landscape.plane(m, d, steps=4, progress=False),
    "landscape.plane(span=-1)": lambda m, d: landscape.plane(m, d, steps=3, span=-1.0, progress=False),
    "landscape.plane(norm=?)": lambda m, d: landscape.plane(m, d, steps=3, norm="filters", progress=False),
    "landscape.eigenvalues(k=0)": lambda m, d: landscape.eigenvalues(m, d, k=0, progress=False),
    "landscape.trace(n_samples=0)": lambda m, d: landscape.trace(m, d, n_samples=0, progress=False),
    "connectivity.barrier(points=1)": lambda m, d: lmc.barrier(m, _mlp_and_data(1)[0], d, points=1,
                                                               progress=False),
    "connectivity.barrier(bn=?)": lambda m, d: lmc.barrier(m, _mlp_and_data(1)[0], d, bn="rest", progress=False),
    "connectivity.align(method=?)": lambda m, d: lmc.align(m, _mlp_and_data(1)[0], d, method="weights",
                                                           progress=False),
    "pruning.magnitude_mask(density=0)": lambda m, d: pruning.magnitude_mask(m, 0.0),
    "pruning.magnitude_mask(density=1.5)": lambda m, d: pruning.magnitude_mask(m, 1.5),
    "pruning.magnitude_mask(scope=?)": lambda m, d: pruning.magnitude_mask(m, 0.5, scope="model"),
    "pruning.analyze(seeds=[0])": lambda m, d: pruning.analyze(m, d, train_data=d, values=[1], densities=[0.5],
                                                               seeds=[0], progress=False),
    "pruning.analyze(densities=[2])": lambda m, d: pruning.analyze(m, d, train_data=d, values=[1], densities=[2.0],
                                                                   progress=False),
    "models.train(epochs=-1)": lambda m, d: models.train(m, d, epochs=-1, progress=False),
    "models.train(lr=0)": lambda m, d: models.train(m, d, epochs=1, lr=0.0, progress=False),
    "intrinsic_dimension.twonn(one point)": lambda m, d: idim.twonn(np.zeros((1, 3))),
    "intrinsic_dimension.twonn(ties)": lambda m, d: idim.twonn(np.repeat(np.eye(3), 5, axis=0),
                                                              duplicates="keep"),
    "intrinsic_dimension.mle(k=0)": lambda m, d: idim.mle(np.random.default_rng(0).normal(size=(50, 3)), k=0),
    "intrinsic_dimension.analyze(threshold=2)": lambda m, d: idim.analyze(m, d, threshold=2.0, seeds=1,
                                                                          cache=False, progress=False),
    "intrinsic_dimension.subspace_train(d=0)": lambda m, d: idim.subspace_train(m, d, d=0, epochs=1,
                                                                                progress=False),
    "topology.split_edges(test=1.2)": lambda m, d: tp.split_edges(nx.karate_club_graph(), test=1.2),
    "topology.split_edges(empty graph)": lambda m, d: tp.split_edges(nx.empty_graph(5)),
    "topology.concentration(k=0)": lambda m, d: tp.concentration(tp.split_edges(nx.karate_club_graph()), k=0),
    "topology.concentration(nodes out of range)": lambda m, d: tp.concentration(
        tp.split_edges(nx.karate_club_graph()), k=1, nodes=[0, 99]),
    "topology.analyze(tc=?)": lambda m, d: tp.analyze(nx.karate_club_graph(), tc="exactly", progress=False),
    "spectra.analyze(data)": lambda m, d: spectra.analyze(m, d, progress=False),
    "spectra.analyze(no matrices)": lambda m, d: spectra.analyze(nn.Sequential(nn.ReLU()), progress=False),
    "spectra.welore(reduction=1)": lambda m, d: spectra.welore(spectra.analyze(m, bootstrap=0, progress=False),
                                                               reduction=1.0),
    "models.load(unknown)": lambda m, d: models.load("no-such-model"),
    "models.train(epochs=0)": lambda m, d: models.train(m, d, epochs=0, progress=False),
    "models.train(batch_size=0)": lambda m, d: models.train(m, d, epochs=1, batch_size=0, progress=False),
    "topology.analyze(test=0)": lambda m, d: tp.analyze(nx.karate_club_graph(), test=0.0, progress=False),
    "intrinsic_dimension.analyze(one class)": lambda m, d: idim.analyze(
        m, Dataset(d.X, torch.zeros(len(d), dtype=torch.long)), baseline=0.9, seeds=1, d_max=4, cache=False,
        progress=False),
    "spectra.figures.esd(index out of range)": lambda m, d: spectra.figures.esd(
        spectra.analyze(m, bootstrap=0, progress=False), 7),
    "landscape.figures.contour(split=?)": lambda m, d: landscape.figures.contour(
        landscape.plane(m, d, steps=3, progress=False), split="test"),
    "connectivity.summarize([])": lambda m, d: lmc.summarize([]),
    "pruning.analyze(values=[])": lambda m, d: pruning.analyze(m, d, train_data=d, values=[], progress=False),
    "intrinsic_dimension.twonn(NaN points)": lambda m, d: idim.twonn(np.full((20, 3), np.nan)),
}


@pytest.mark.parametrize("case", sorted(BAD_ARGS))
@settings(max_examples=max(2, settings().max_examples // 10))
@given(seed=st.integers(0, 100))
def test_bad_arguments_get_the_workbench_s_own_error(case, seed):
    model, data = _mlp_and_data(seed)
    STATS[f"bad-argument:{case}"] += 1
    assert_own_error(lambda: BAD_ARGS[case](model, data))


@given(seed=st.integers(0, 100), which=st.integers(0, 3), value=st.sampled_from([float("nan"), float("inf")]))
def test_non_finite_weights_are_named_by_parameter(seed, which, value):
    model, data = _mlp_and_data(seed)
    name = sorted(dict(model.named_parameters()))[which]
    with torch.no_grad():
        dict(model.named_parameters())[name].view(-1)[0] = value
    STATS["non-finite-weights:cases"] += 1
    calls = [lambda: landscape.plane(model, data, steps=3, progress=False),
             lambda: lmc.barrier(model, _mlp_and_data(1)[0], data, points=3, progress=False),
             lambda: pruning.prune(model, 0.5),
             lambda: models.train(model, data, epochs=1, progress=False),
             lambda: idim.profile(model, data, n=None, progress=False)]
    if name.endswith("weight"):  # spectra reads the weight matrices only
        calls.append(lambda: spectra.analyze(model, bootstrap=0, progress=False))
    for call in calls:
        exc = assert_own_error(call)
        assert name in str(exc) or name.rsplit(".", 1)[0] in str(exc), str(exc)
