import copy
import math
import warnings

import numpy as np
import pytest
import torch

import workbench.intrinsic_dimension as I
from workbench import data, models, sweep
from workbench.intrinsic_dimension.projections import hadamard, next_pow2
from workbench.intrinsic_dimension.search import bootstrap_dint
from workbench.progress import Cancelled
from workbench.results import Result


# ---------------------------------------------------------------------------- projections
@pytest.mark.parametrize("L", [1, 2, 8, 64, 1024])
def test_fwht_is_hadamard_product(L):
    x = torch.randn(3, L, dtype=torch.float64, generator=torch.Generator().manual_seed(L))
    H = hadamard(L)
    assert torch.allclose(H @ H, L * torch.eye(L, dtype=torch.float64))
    assert torch.equal(H, H.T) and set(H.unique().tolist()) <= {-1.0, 1.0}
    for block in (2, 4, 256):
        assert torch.allclose(I.fwht(x, block=block), x @ H, atol=1e-10)
    with pytest.raises(ValueError, match="power-of-two"):
        I.fwht(torch.zeros(6))


def test_fastfood_matches_its_definition():
    D, d = 300, 20
    p = I.FastfoodProjection(D, d, seed=3, device="cpu", dtype=torch.float64)
    L = next_pow2(D)
    assert L == 512
    H = hadamard(L)
    B = torch.diag(p.B)
    Pi = torch.eye(L, dtype=torch.float64)[p.perm]  # (Pi v)_i = v[perm[i]]
    G = torch.diag(p.G)
    pad = torch.eye(L, d, dtype=torch.float64)
    full = H @ G @ Pi @ H @ B @ pad
    expected = full[:D] / (p.G.norm() * math.sqrt(D))
    assert torch.allclose(p.matrix(), expected, atol=1e-10)


def test_fastfood_columns_have_unit_norm():
    p = I.FastfoodProjection(20000, 32, seed=0, device="cpu")
    norms = p.matrix().double().norm(dim=0)
    assert (norms - 1).abs().max() < 0.01
    # with D a power of two the norms are exactly one
    q = I.FastfoodProjection(4096, 16, seed=1, device="cpu", dtype=torch.float64)
    assert torch.allclose(q.matrix().norm(dim=0), torch.ones(16, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("kind", ["fastfood", "dense", "sparse", "orthogonal"])
def test_adjoint_identity_and_gradient(kind):
    D, d = 700, 40
    p = I.make_projection(kind, D, d, seed=5, device="cpu", dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    v = torch.randn(D, dtype=torch.float64, generator=g)
    t = torch.randn(d, dtype=torch.float64, generator=g)
    assert torch.dot(v, p(t)).item() == pytest.approx(torch.dot(p.adjoint(v), t).item(), rel=1e-10)
    t.requires_grad_(True)
    (p(t) * v).sum().backward()
    assert torch.allclose(t.grad, p.adjoint(v), atol=1e-10)
    norms = p.matrix().norm(dim=0)
    tol = 0.05 if kind == "fastfood" else 1e-10  # D = 700 is small for Fastfood
    assert (norms - 1).abs().max() < tol


@pytest.mark.parametrize("kind", ["fastfood", "dense", "sparse"])
def test_same_seed_same_projection(kind):
    a = I.make_projection(kind, 500, 30, seed=7, device="cpu").matrix()
    b = I.make_projection(kind, 500, 30, seed=7, device="cpu").matrix()
    c = I.make_projection(kind, 500, 30, seed=8, device="cpu").matrix()
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def _saved_numels(fn):
    """Sizes of the tensors autograd saves for the backward while ``fn`` runs."""
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sizes


@pytest.mark.parametrize("d", [16, 4096])
def test_fastfood_backward_saves_nothing_of_size_d_or_D(d):
    D = 3000
    p = I.FastfoodProjection(D, d, seed=0, device="cpu", dtype=torch.float64)
    theta = torch.randn(d, dtype=torch.float64, requires_grad=True)
    y, sizes = _saved_numels(lambda: p(theta))
    assert sizes == []  # the backward recomputes P^T g from the O(L) pieces B, G, Pi
    v = torch.randn(D, dtype=torch.float64)
    y.backward(v)
    assert torch.allclose(theta.grad, p.adjoint(v), atol=1e-10)
    assert p.nbytes <= 4 * 8 * p.L  # B, G, perm and its inverse: O(L), whatever d is
    # the counter does see what plain autograd through the same transform would keep
    _, plain = _saved_numels(lambda: p._apply(theta))
    assert sum(plain) >= p.L


def test_dense_regenerated_equals_stored_and_sparse_density():
    stored = I.DenseProjection(1000, 25, seed=2, device="cpu", dtype=torch.float64, chunk_rows=300)
    regen = I.DenseProjection(1000, 25, seed=2, device="cpu", dtype=torch.float64, chunk_rows=300, store=False)
    assert stored.stored and not regen.stored
    assert torch.allclose(stored.matrix(), regen.matrix(), atol=1e-12)
    assert regen.nbytes == 25 * 8  # only the column norms are held
    sp = I.SparseProjection(10000, 50, seed=0, device="cpu")
    nnz_per_col = (sp.matrix() != 0).sum(0).float()
    assert abs(nnz_per_col.mean().item() - 100) < 2  # density 1 / sqrt(D) -> ~sqrt(D) per column


def test_projection_errors():
    with pytest.raises(ValueError, match="projection='nope'"):
        I.make_projection("nope", 10, 2)
    with pytest.raises(ValueError, match="exceeds the Fastfood length"):
        I.FastfoodProjection(10, 17, device="cpu")
    p = I.FastfoodProjection(10, 4, device="cpu")
    with pytest.raises(ValueError, match="length 4"):
        p(torch.zeros(5))


# ---------------------------------------------------------------------------- subspace training
@pytest.fixture(scope="module")
def digits_small():
    tr, te = data.digits()
    return tr.subset(600, seed=0), te


def test_orthogonal_full_dimension_reproduces_full_training(digits_small):
    tr, te = digits_small
    m = models.build("mlp", seed=0, hidden=(16,))
    D = I.num_parameters(m)
    before = copy.deepcopy(m.state_dict())
    full = copy.deepcopy(m)
    models.train(full, tr, epochs=1, lr=0.05, batch_size=64, seed=3, device="cpu", progress=False)
    res = I.subspace_train(m, te, d=D, train_data=tr, projection="orthogonal", optimizer="sgd", lr=0.05, epochs=1,
                           seed=3, device="cpu", progress=False)
    sub = res.model_
    for (name, a), (_, b) in zip(full.named_parameters(), sub.named_parameters()):
        assert torch.allclose(a, b, atol=1e-5), name
    assert res.accuracy == pytest.approx(models.evaluate(full, te, device="cpu")["accuracy"], abs=1e-9)
    # the user's model is untouched
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_dense_full_dimension_matches_full_training_accuracy(digits_small):
    tr, te = digits_small
    m = models.build("mlp", seed=0, hidden=(16,))
    D = I.num_parameters(m)
    full = copy.deepcopy(m)
    models.train(full, tr, epochs=8, lr=0.05, seed=0, device="cpu", progress=False)
    acc_full = models.evaluate(full, te, device="cpu")["accuracy"]
    res = I.subspace_train(m, te, d=D, train_data=tr, projection="dense", optimizer="sgd", lr=0.05, epochs=8,
                           seed=0, device="cpu", progress=False)
    assert acc_full > 0.8
    assert abs(res.accuracy - acc_full) < 0.05


def test_said_counts_scales_and_rebuild(digits_small, tmp_path):
    tr, te = digits_small
    m = models.build("mlp", seed=1, hidden=(16,))
    n_tensors = len(list(m.parameters()))
    res = I.subspace_train(m, tr, d=30, said=True, epochs=1, seed=2, device="cpu", progress=False)
    trained = res.model_
    assert res.theta_d.shape == (30 - n_tensors,) and res.scales.shape == (n_tensors,)
    assert not np.allclose(res.scales, 1.0)  # the scales are trained
    with pytest.raises(ValueError, match="said=True"):
        I.subspace_train(m, tr, d=n_tensors, said=True, epochs=1, device="cpu", progress=False)
    res.save(tmp_path / "r")
    loaded = Result.load(tmp_path / "r.npz")
    rebuilt = I.subspace_model(m, loaded, device="cpu")
    for a, b in zip(trained.parameters(), rebuilt.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert loaded.history.equals(res.history)


def test_subspace_training_learns_with_fastfood(digits_small):
    tr, te = digits_small
    m = models.build("mlp", seed=0)
    low = I.subspace_train(m, te, d=2, train_data=tr, epochs=3, seed=0, device="cpu", progress=False)
    high = I.subspace_train(m, te, d=400, train_data=tr, epochs=3, seed=0, device="cpu", progress=False)
    assert high.accuracy > 0.75 and high.accuracy > low.accuracy + 0.3
    assert high.settings["projection"] == "fastfood" and high.D == I.num_parameters(m)


def test_subspace_errors():
    m = models.build("mlp", seed=0, hidden=(4,))
    X, y = torch.randn(20, 64), torch.randint(0, 10, (20,))
    with pytest.raises(ValueError, match="needs d <= D"):
        I.subspace_train(m, (X, y), d=10 ** 6, projection="dense", device="cpu", progress=False)
    with pytest.raises(ValueError, match="optimizer"):
        I.subspace_train(m, (X, y), d=5, optimizer="lbfgs", device="cpu", progress=False)
    with pytest.raises(FloatingPointError, match="lower lr"):
        I.subspace_train(m, (X, y), d=5, lr=1e30, optimizer="sgd", device="cpu", progress=False)


# ---------------------------------------------------------------------------- search
def _tiny():
    tr, _ = data.digits()
    return tr.subset(200, seed=1)


def _small_mlp(seed):
    return models.build("mlp", seed=seed, hidden=(32,))


SEARCH_KW = dict(seeds=2, epochs=3, batch_size=16, d_min=2, d_max=300, tolerance=0.3, baseline=0.6,
                 device="cpu", bootstrap=200)


@pytest.fixture(scope="module")
def interrupted_search(tmp_path_factory):
    """A search stopped after three trials, then run to the end, then run again."""
    cache = tmp_path_factory.mktemp("trials")
    tr = _tiny()

    def stop_after_three(done, total, desc):
        if done >= 3:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        I.analyze(_small_mlp, tr, progress=stop_after_three, cache_dir=cache, **SEARCH_KW)
    files_after_stop = len(list(cache.glob("*.pkl")))
    res = I.analyze(_small_mlp, tr, progress=False, cache_dir=cache, **SEARCH_KW)
    again = I.analyze(_small_mlp, tr, progress=False, cache_dir=cache, **SEARCH_KW)
    return files_after_stop, res, again


def test_search_caches_trials_and_resumes(interrupted_search):
    files_after_stop, res, again = interrupted_search
    assert files_after_stop == 3
    assert res.trials["cached"].sum() == 3 and len(res.trials) > 3
    assert again.trials["cached"].all()
    assert again.summary.equals(res.summary) and again.d_int90 == res.d_int90
    # the search brackets the threshold: every tested d below d_int90 fails, d_int90 passes
    s = res.summary
    assert res.reached and res.target == pytest.approx(0.54)
    assert (s[s.d < res.d_int90].mean_accuracy < res.target).all()
    assert s.set_index("d").loc[int(res.d_int90), "mean_accuracy"] >= res.target
    lo, hi = res.interval
    assert lo <= res.d_int90 <= hi
    assert "d_int90 = " in res.describe() and "fixed target" in res.describe()


def test_search_grid_and_full_baseline(tmp_path):
    tr = _tiny()
    res = I.analyze(_small_mlp, tr, method="grid", dims=[2, 40, 300], seeds=[0, 1], epochs=3, batch_size=16,
                   grid_points=3, rounds=1, baseline="full", baseline_kwargs=dict(epochs=3), cache_dir=tmp_path,
                   device="cpu", progress=False, bootstrap=100)
    assert len(res.baseline_trials) == 2 and res.settings["baseline"] == "full"
    assert res.baseline == pytest.approx(res.baseline_trials["accuracy"].mean())
    assert res.target == pytest.approx(0.9 * res.baseline)
    assert {2, 40, 300} <= set(res.summary["d"])
    assert res.settings["split"] == "train" and res.settings["theta0"] == "fresh init per seed"
    with pytest.raises(ValueError, match="baseline='best'"):
        I.analyze(_small_mlp, tr, baseline="best", cache=False, progress=False, device="cpu")


def test_baseline_cache_key_resolves_train_defaults(tmp_path, monkeypatch):
    import importlib
    import inspect

    search_mod = importlib.import_module("workbench.intrinsic_dimension.search")

    train_defaults = {k: v.default for k, v in inspect.signature(models.train).parameters.items()}
    key = lambda kw: sweep.cell_key(search_mod.resolved_settings(models.train, kw, "baseline_kwargs"))  # noqa: E731
    resolved = search_mod.resolved_settings(models.train, {}, "baseline_kwargs")
    assert resolved["epochs"] == train_defaults["epochs"] and resolved["lr"] == train_defaults["lr"]
    assert resolved["optimizer"] == train_defaults["optimizer"] and "device" not in resolved
    # passing a default explicitly is the same trial; any other value is another
    assert key({}) == key({"lr": train_defaults["lr"]})
    assert key({}) != key({"lr": train_defaults["lr"] * 2}) != key({"momentum": 0.5})
    with pytest.raises(ValueError, match="baseline_kwargs has \\['lrate'\\]"):
        search_mod.resolved_settings(models.train, {"lrate": 0.1}, "baseline_kwargs")
    with pytest.raises(ValueError, match="baseline_kwargs sets \\['device'\\]"):
        search_mod.resolved_settings(models.train, {"device": "cpu"}, "baseline_kwargs")

    # end to end: a changed default of models.train reruns the baseline instead of reusing it
    tr = _tiny()
    kw = dict(method="grid", dims=[50], seeds=[0], epochs=1, batch_size=100, grid_points=2, rounds=0,
              baseline="full", baseline_kwargs=dict(batch_size=20, lr=0.2), cache_dir=tmp_path, device="cpu",
              progress=False, bootstrap=0)
    first = I.analyze(_small_mlp, tr, **kw)
    assert not first.baseline_trials["cached"].any()
    assert first.settings["baseline_settings"]["epochs"] == train_defaults["epochs"]
    assert I.analyze(_small_mlp, tr, **kw).baseline_trials["cached"].all()
    real_train = search_mod.train

    def train_with_other_default(model, data, *, epochs=2, **rest):  # models.train with another default
        return real_train(model, data, epochs=epochs, **rest)

    train_with_other_default.__signature__ = inspect.signature(real_train).replace(parameters=[
        p.replace(default=2) if p.name == "epochs" else p
        for p in inspect.signature(real_train).parameters.values()])
    monkeypatch.setattr(search_mod, "train", train_with_other_default)
    changed = I.analyze(_small_mlp, tr, **kw)
    assert not changed.baseline_trials["cached"].any() and changed.settings["baseline_settings"]["epochs"] == 2
    assert changed.trials["cached"].all()  # the subspace trials do not depend on the baseline
    assert changed.baseline != first.baseline


def test_bootstrap_interval_closed_cases():
    accs = {10: np.array([0.1, 0.1]), 20: np.array([0.95, 0.95]), 40: np.array([0.97, 0.97])}
    assert bootstrap_dint(accs, None, 0.9, 0.9, n_boot=50) == (20.0, 20.0)
    accs = {10: np.array([0.1, 0.95]), 20: np.array([0.95, 0.95])}
    lo, hi = bootstrap_dint(accs, None, 0.9, 0.9, n_boot=400, seed=0)
    assert (lo, hi) == (10.0, 20.0)  # a quarter of resamples pick the passing seed twice at d = 10


# ---------------------------------------------------------------------------- representation ID
def _linear_manifold(n=2000, dim=5, ambient=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, dim)) @ rng.standard_normal((dim, ambient))


def _sphere(n=2000, dim=3, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, dim + 1))
    return Z / np.linalg.norm(Z, axis=1, keepdims=True)  # a curved dim-manifold in R^(dim+1)


def test_knn_matches_brute_force():
    from scipy.spatial.distance import cdist

    X = _linear_manifold(300, 4, 10)
    full = cdist(X, X)
    np.fill_diagonal(full, np.inf)
    order = np.argsort(full, axis=1)[:, :5]
    for symmetric in (False, True):
        dist, idx = I.knn(X, 5, device="cpu", chunk=64, symmetric=symmetric)
        assert np.allclose(dist, np.take_along_axis(full, order, 1), rtol=1e-12)
        assert np.array_equal(idx, order)


def _exact_neighbours(X, k):
    """Ground truth: all pairwise distances, ties to the lower index (a stable sort)."""
    from scipy.spatial.distance import cdist

    full = cdist(X, X)
    np.fill_diagonal(full, np.inf)
    order = np.argsort(full, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(full, order, 1), order


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [1, 2, 7, 20])
def test_knn_tree_matches_brute(k, dtype):
    X = _linear_manifold(1200, 3, 6, seed=5).astype(dtype)
    d_tree, i_tree = I.knn(X, k, device="cpu", method="tree")
    d_brute, i_brute = I.knn(X, k, device="cpu", method="brute")
    np.testing.assert_allclose(d_tree, d_brute, rtol=1e-12, atol=0)
    assert np.array_equal(i_tree, i_brute)
    d_true, i_true = _exact_neighbours(X.astype(np.float64), k)  # float64 differences of the given values
    np.testing.assert_allclose(d_tree, d_true, rtol=1e-12, atol=0)
    assert np.array_equal(i_tree, i_true)


@pytest.mark.parametrize("k", [1, 4, 5, 8])
def test_knn_tree_matches_brute_on_exact_ties(k):
    # an integer grid: every interior point has 4 neighbours at 1, 4 at sqrt(2), 4 at 2 (exact distances)
    G = np.stack(np.meshgrid(np.arange(15), np.arange(12)), -1).reshape(-1, 2).astype(float)
    d_true, i_true = _exact_neighbours(G, k)
    for method in ("tree", "brute"):
        d, i = I.knn(G, k, device="cpu", method=method)
        assert np.array_equal(d, d_true), method
        assert np.array_equal(i, i_true), method  # ties go to the lower index in both searches


def test_knn_tree_matches_brute_on_duplicates():
    X = _linear_manifold(600, 3, 5, seed=6)
    Xd = np.vstack([X, X[:50], X[:10], np.repeat(X[100:101], 8, axis=0)])  # pairs, triples, 9 copies of one
    from scipy.spatial.distance import cdist

    full = cdist(Xd, Xd)
    np.fill_diagonal(full, np.inf)
    for k in (1, 2, 6):
        d_true, i_true = _exact_neighbours(Xd, k)
        d_tree, i_tree = I.knn(Xd, k, device="cpu", method="tree")
        d_brute, i_brute = I.knn(Xd, k, device="cpu", method="brute")
        assert np.array_equal(d_tree, d_brute)
        np.testing.assert_allclose(d_tree, d_true, rtol=1e-12, atol=0)
        assert (d_tree[:, 0] == 0).sum() == 2 * 40 + 3 * 10 + 9
        # the indices agree wherever the points tied at the k-th distance fit in the k + 4 candidates
        crowded = (full <= d_true[:, -1:]).sum(1) > k + 4
        assert 0 < crowded.sum() <= 20  # the 9 copies of one point (k < 6), or some points near them (k = 6)
        for i in (i_tree, i_brute):
            assert np.array_equal(i[~crowded], i_true[~crowded])
            # elsewhere each index is a point at the stated distance
            np.testing.assert_allclose(np.take_along_axis(full, i, 1), d_true, rtol=1e-12, atol=0)
    # more copies than candidates (k + margin = 3 < 8 other copies): the point itself is still never returned
    copies = np.flatnonzero((Xd == X[100]).all(1))
    for method in ("tree", "brute"):
        d, i = I.knn(Xd, 2, device="cpu", method=method, margin=1)
        assert (d[copies] == 0).all() and np.isin(i[copies], copies).all()
        assert not (i == np.arange(len(Xd))[:, None]).any()


@pytest.mark.parametrize("duplicates", ["unique", "drop"])
def test_estimators_identical_under_both_searches(duplicates):
    X = _sphere(1500, 3, seed=7)
    Xd = np.vstack([X, X[:60], X[:5]])
    for points in (X, Xd):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runs = {m: (I.twonn(points, duplicates=duplicates, device="cpu", knn_method=m),
                        I.twonn(points, method="mle", duplicates=duplicates, device="cpu", knn_method=m),
                        I.mle(points, k=10, duplicates=duplicates, device="cpu", knn_method=m))
                    for m in ("tree", "brute")}
        for tree, brute in zip(runs["tree"], runs["brute"]):
            assert tree.settings["knn"] == "tree" and brute.settings["knn"] == "brute"
            # one float64 refinement of the same neighbours: the same numbers, bit for bit
            assert tree.dimension == brute.dimension and np.isfinite(tree.dimension)
            assert (tree.n_used, tree.n_duplicates) == (brute.n_used, brute.n_duplicates)
            assert np.array_equal(tree.pointwise, brute.pointwise)
    assert runs["tree"][0].n_duplicates == (65 if duplicates == "unique" else 125)


def test_knn_method_rule_by_shape():
    from workbench.intrinsic_dimension.estimators import choose_knn_method

    assert choose_knn_method(100_000, 10, "cpu") == "tree"
    assert choose_knn_method(1_000_000, 3, "cpu") == "tree"
    assert choose_knn_method(10_000, 768, "cpu") == "brute"
    assert choose_knn_method(100_000, 768, "cpu") == "brute"
    assert choose_knn_method(1_000, 10, "cpu") == "brute"  # few points: the products are fast
    # the documented bounds
    assert choose_knn_method(50_000, 12, "cpu") == "tree" and choose_knn_method(50_000, 13, "cpu") == "brute"
    assert choose_knn_method(5_000, 3, "cpu") == "tree" and choose_knn_method(4_999, 3, "cpu") == "brute"
    # what "auto" picks is what the estimators record
    small, large = _sphere(800, 2, seed=8), _sphere(6000, 2, seed=8)
    assert I.twonn(small, device="cpu").settings["knn"] == "brute"
    assert I.twonn(large, device="cpu").settings["knn"] == "tree"
    assert I.mle(large, k=5, device="cpu").settings["knn"] == "tree"
    assert I.mle(large @ np.ones((3, 40)), k=5, device="cpu").settings["knn"] == "brute"


def test_knn_method_errors():
    X = np.random.default_rng(0).random((50, 3))
    with pytest.raises(ValueError, match="method='ball'"):
        I.knn(X, 2, method="ball")
    with pytest.raises(ValueError, match="knn_method='kd'"):
        I.twonn(X, knn_method="kd")
    with pytest.raises(ValueError, match="knn_method='kd'"):
        I.mle(X, k=5, knn_method="kd")
    with pytest.raises(ValueError, match="symmetric=True"):
        I.knn(X, 2, method="tree", symmetric=True)
    with pytest.raises(ValueError, match="margin=-1"):
        I.knn(X, 2, margin=-1)


@pytest.mark.parametrize("maker,dim", [(_linear_manifold, 5), (_sphere, 3)])
def test_estimators_recover_known_dimension(maker, dim):
    X = maker()
    assert I.twonn(X).dimension == pytest.approx(dim, abs=0.4)
    assert I.twonn(X, method="mle").dimension == pytest.approx(dim, abs=0.4)
    assert I.mle(X, k=20).dimension == pytest.approx(dim, abs=0.4)


def test_twonn_mle_closed_form():
    X = _sphere(500, 2, seed=3)
    dist, _ = I.knn(X, 2, device="cpu")
    mu = dist[:, 1] / dist[:, 0]
    est = I.twonn(X, method="mle")
    assert est.dimension == pytest.approx((len(mu) - 1) / np.log(mu).sum(), rel=1e-12)
    assert float(est) == est.dimension and est.n_used == 500


def test_duplicates_are_reported_not_nan():
    X = _linear_manifold(500, 3, 8)
    Xd = np.vstack([X, X[:40]])
    with pytest.warns(UserWarning, match="merged 40 repeated points"):
        est = I.twonn(Xd)
    assert est.n_duplicates == 40 and est.dimension == pytest.approx(I.twonn(X).dimension, rel=1e-12)
    with pytest.warns(UserWarning, match="left out 80"):
        dropped = I.twonn(Xd, duplicates="drop")
    assert dropped.n_used == 460 and np.isfinite(dropped.dimension)
    with pytest.warns(UserWarning):
        m = I.mle(Xd, k=10)
    assert m.n_duplicates == 40 and m.dimension == pytest.approx(I.mle(X, k=10).dimension, rel=1e-12)


def test_estimator_input_errors():
    with pytest.raises(ValueError, match="1-D"):
        I.twonn(np.zeros(10))
    with pytest.raises(ValueError, match="NaN"):
        I.mle(np.full((30, 3), np.nan))
    with pytest.raises(ValueError, match="k=20"):
        I.mle(np.random.rand(15, 3), k=20)
    with pytest.raises(ValueError, match="method="):
        I.twonn(np.random.rand(15, 3), method="slope")


def test_agreement_with_scikit_dimension():
    skdim = pytest.importorskip("skdim")
    X = _sphere(1500, 4, seed=1) @ np.random.default_rng(1).standard_normal((5, 30))
    assert I.twonn(X).dimension == pytest.approx(skdim.id.TwoNN().fit(X).dimension_, rel=1e-9)
    assert I.twonn(X, method="mle").dimension == pytest.approx(
        skdim.id.TwoNN(method="mle", discard_fraction=0.0).fit(X).dimension_, rel=1e-9)
    assert I.twonn(X, method="mle", discard_fraction=0.1).dimension == pytest.approx(
        skdim.id.TwoNN(method="mle", discard_fraction=0.1).fit(X).dimension_, rel=1e-9)
    assert I.mle(X).dimension == pytest.approx(skdim.id.MLE().fit(X).dimension_, rel=1e-9)
    assert I.mle(X, k=10, unbiased=True).dimension == pytest.approx(
        skdim.id.MLE(unbiased=True).fit(X, n_neighbors=10).dimension_, rel=1e-9)
    # duplicates: scikit-dimension drops the points, as duplicates='drop' (in few dimensions, where its
    # neighbour search is exact; in many, its distance expansion leaves tiny nonzero r1 instead)
    X = _sphere(800, 4, seed=2)
    Xd = np.vstack([X, X[:25]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert I.twonn(Xd, duplicates="drop").dimension == pytest.approx(
            skdim.id.TwoNN().fit(Xd).dimension_, rel=1e-9)


def test_profile_of_reference_mlp(tmp_path):
    tr, _ = data.digits()
    m = models.build("mlp", seed=0)
    prof = I.profile(m, tr, n=500, progress=False, device="cpu")
    f = prof.to_frame()
    assert list(f["layer"]) == ["input", "layers.0", "layers.1", "head"]
    assert list(f["n_features"]) == [64, 128, 128, 10]
    assert (f["n_points"] == 500).all() and np.isfinite(f["dimension"]).all() and (f["dimension"] > 1).all()
    # the input row is the plain TwoNN of the same subset
    X = tr.subset(500, seed=0).X.numpy()
    assert f["dimension"].iloc[0] == pytest.approx(I.twonn(X).dimension, rel=1e-9)
    prof.save(tmp_path / "p")
    assert Result.load(tmp_path / "p.npz").frame.equals(f)
    with pytest.raises(ValueError, match="not modules"):
        I.profile(m, tr, layers=["nope"], progress=False)


def test_figures_show_threshold_and_dint(interrupted_search):
    res = interrupted_search[1]
    fig = I.figures.search(res)
    assert fig.data[0].x is not None and len(fig.data[0].x) == len(res.trials)
    shapes = fig.layout.shapes
    assert any(s.y0 == pytest.approx(res.target) for s in shapes)
    assert any(s.x0 == res.d_int90 for s in shapes if s.type == "line")
    est = I.twonn(_sphere(200, 2))
    tf = I.figures.twonn(est)
    assert tf.data[1].y[1] == pytest.approx(est.dimension * est.fit_x.max())


@pytest.mark.gpu
def test_gpu_matches_cpu():
    p_cpu = I.FastfoodProjection(5000, 100, seed=4, device="cpu")
    p_gpu = I.FastfoodProjection(5000, 100, seed=4, device="cuda")
    t = torch.randn(100)
    assert torch.allclose(p_cpu(t), p_gpu(t.cuda()).cpu(), atol=1e-4)
    X = _linear_manifold(1000, 4, 20)
    assert I.twonn(X, device="cuda").dimension == pytest.approx(I.twonn(X, device="cpu").dimension, rel=1e-9)
    assert I.mle(X, device="cuda").dimension == pytest.approx(I.mle(X, device="cpu").dimension, rel=1e-9)


def _search_result(d, interval, reached=True, d_max=1000):
    return I.SearchResult(settings={"d_max": d_max}, d_int90=float(d) if reached else float("nan"),
                          interval=interval, reached=reached)


def test_compare_reads_the_order_the_ratio_and_the_overlap():
    cnn, mlp = _search_result(120, (100, 140)), _search_result(300, (250, 350))
    c = cnn.compare(mlp, names=("CNN", "MLP"))
    assert c["lower"] == "CNN" and c["ratio"] == pytest.approx(0.4) and c["overlap"] is False and c["decided"]
    assert "0.4 x" in c["text"] and "do not overlap" in c["text"]
    close = _search_result(280, (200, 320)).compare(mlp, names=("CNN", "MLP"))
    assert close["lower"] == "CNN" and close["overlap"] is True and "intervals overlap" in close["text"]
    assert mlp.compare(cnn, names=("MLP", "CNN"))["lower"] == "CNN"
    assert _search_result(300, (300, 300)).compare(mlp)["lower"] is None  # equal: no lower one
    # not reached below its ceiling: a lower bound on the ratio, the other one is lower
    shuffled = _search_result(0, (np.inf, np.inf), reached=False, d_max=26000)
    s = shuffled.compare(mlp, names=("shuffled", "true"), much=10)
    assert s["lower"] == "true" and s["ratio"] == pytest.approx(26000 / 300) and s["much"] is True
    assert "at least 86.7 x true's 300" in s["text"]
    # the other one not reached: undecided
    u = mlp.compare(shuffled)
    assert not u["decided"] and u["lower"] is None and "undecided" in u["text"]


def test_compare_with_one_seed_claims_no_interval():
    one = I.SearchResult(settings={"d_max": 1000, "seeds": [0]}, d_int90=120.0, interval=(120, 120), reached=True)
    mlp = _search_result(300, (250, 350))
    c = one.compare(mlp, names=("CNN", "MLP"))
    assert c["lower"] == "CNN" and c["overlap"] is None and "one seed: no interval" in c["text"]
    f = I.comparison_findings({"mlp": mlp, "cnn": one})
    assert len(f) == 1 and "not settled" in f[0].text


def test_a_target_at_chance_level_is_refused():
    # ten balanced classes: a constant prediction scores 0.1; a fixed target of 0.1 means nothing
    X = torch.randn(100, 4)
    y = torch.arange(100) % 10
    assert I.search.chance_accuracy(data.Dataset(X, y)) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="most common class"):
        I.analyze(torch.nn.Sequential(torch.nn.Linear(4, 10)), (X, y), baseline=0.1, threshold=0.9, seeds=1, d_max=4,
                  cache=False, progress=False)


@pytest.mark.gpu
def test_gpu_knn_searches_agree():
    from workbench.intrinsic_dimension.estimators import choose_knn_method

    assert choose_knn_method(100_000, 10, "cuda") == "brute"
    X = _linear_manifold(3000, 3, 6, seed=9)
    d_gpu, i_gpu = I.knn(X, 5, device="cuda", method="brute")
    d_tree, i_tree = I.knn(X, 5, device="cpu", method="tree")
    np.testing.assert_allclose(d_gpu, d_tree, rtol=1e-12)
    assert np.array_equal(i_gpu, i_tree)
    assert I.twonn(X, device="cuda").settings["knn"] == "brute"
