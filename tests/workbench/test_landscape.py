import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from workbench import landscape as L
from workbench import models
from workbench import paramspace as ps
from workbench.data import Dataset
from tests.optional import optional_module
from workbench.results import Result

go = optional_module("plotly.graph_objects")
figures = optional_module("workbench.landscape.figures")  # plotly: only the figure tests need it


class Quadratic(nn.Module):
    """Loss 0.5 theta^T A theta - b^T theta + c (the same for every example): H = A exactly."""

    def __init__(self, A, b, theta0, c=0.0):
        super().__init__()
        self.register_buffer("A", torch.as_tensor(A, dtype=torch.float64).float())
        self.register_buffer("b", torch.as_tensor(b).float())
        self.theta = nn.Parameter(torch.as_tensor(theta0).float().clone())
        self.c = c

    def forward(self, x):
        q = 0.5 * self.theta @ self.A @ self.theta - self.b @ self.theta + self.c
        return x[:, 0] * 0 + q


def mean_out(out, y):
    return out.mean()


def _sym(D, seed, eig=None):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(D, D)))
    w = np.sort(rng.uniform(0.5, 5.0, D))[::-1] if eig is None else np.asarray(eig, float)
    return (Q * w) @ Q.T, w


def _qdata(n=8):
    return Dataset(torch.zeros(n, 1), torch.zeros(n), "dummy")


def test_quadratic_plane_matches_closed_form():
    D = 6
    A, _ = _sym(D, 0)
    rng = np.random.default_rng(1)
    b, theta0 = rng.normal(size=D), rng.normal(size=D)
    m = Quadratic(A, b, theta0)
    dirs = rng.normal(size=(2, D))
    res = L.plane(m, _qdata(), loss_fn=mean_out, steps=(7, 5), span=(1.0, 2.0), directions=dirs, device="cpu",
                  progress=False)
    assert res.loss["data"].shape == (5, 7)
    assert res.x[3] == 0.0 and res.y[2] == 0.0  # centred grid that includes the model
    for j, y in enumerate(res.y):
        for i, x in enumerate(res.x):
            t = theta0 + x * dirs[0] + y * dirs[1]
            assert res.loss["data"][j, i] == pytest.approx(0.5 * t @ A @ t - b @ t, rel=1e-4, abs=1e-4)
    # any point can be re-evaluated from the stored origin and directions
    np.testing.assert_allclose(res.theta_at(res.x[1], res.y[4]), theta0 + res.x[1] * dirs[0] + res.y[4] * dirs[1],
                               rtol=1e-6)
    again = L.evaluate_at(m, _qdata(), result=res, coords=[[res.x[1], res.y[4]]], loss_fn=mean_out, device="cpu")
    assert again["loss"][0] == pytest.approx(res.loss["data"][4, 1], rel=1e-5)


def test_grid_always_includes_the_model():
    m = Quadratic(np.eye(2), np.zeros(2), [1.0, -1.0])
    dirs = [[1.0, 0.0], [0.0, 1.0]]
    for bad in (4, (5, 6)):
        with pytest.raises(ValueError, match=r"steps=\d+ is even.*use an odd number, e\.g\. steps="):
            L.plane(m, _qdata(), loss_fn=mean_out, steps=bad, directions=dirs, device="cpu", progress=False)
    with pytest.raises(ValueError, match="steps=6 is even"):
        L.line(m, _qdata(), loss_fn=mean_out, steps=6, direction=dirs[0], device="cpu", progress=False)
    # an asymmetric line must still hit 0; the error suggests a number of steps that does
    with pytest.raises(ValueError, match=r"steps=5 on \[-1, 2\] misses 0.*e\.g\. steps=4"):
        L.line(m, _qdata(), loss_fn=mean_out, steps=5, span=(-1.0, 2.0), direction=dirs[0], device="cpu",
               progress=False)
    ok = L.line(m, _qdata(), loss_fn=mean_out, steps=7, span=(-1.0, 2.0), direction=dirs[0], device="cpu",
                progress=False)
    assert 0.0 in ok.x and ok.loss["data"][list(ok.x).index(0.0)] == pytest.approx(1.0)  # 0.5 |theta0|^2
    res = L.plane(m, _qdata(), loss_fn=mean_out, steps=(3, 1), span=0.3, directions=dirs, device="cpu", progress=False)
    assert list(res.y) == [0.0] and res.x[1] == 0.0 and res.loss["data"][0, 1] == pytest.approx(1.0)
    ma, mb = Quadratic(np.eye(2), np.zeros(2), [0.0, 0.0]), Quadratic(np.eye(2), np.zeros(2), [2.0, 0.0])
    with pytest.raises(ValueError, match=r"misses 0, 1 \(the models\).*e\.g\. steps=9"):
        L.interpolate(ma, mb, _qdata(), loss_fn=mean_out, steps=10, device="cpu", progress=False)


def test_bn_model_point_re_evaluates_to_the_stored_value():
    g = torch.Generator().manual_seed(0)
    train = Dataset(torch.randn(48, 5, generator=g), torch.randint(0, 3, (48,), generator=g), "tr")
    test = Dataset(torch.randn(20, 5, generator=g) + 0.5, torch.randint(0, 3, (20,), generator=g), "te")
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    with torch.no_grad():  # stored statistics far from the data, so that "eval" and "reset" differ
        m[1].running_mean.fill_(3.0)
        m[1].running_var.fill_(9.0)
    res = L.plane(m, {"train": train, "test": test}, steps=3, span=0.8, bn="reset", batch_size=16,
                  device="cpu", progress=False)
    assert res.settings["bn"] == "reset" and res.settings["bn_data"] == "train"
    coords = [[res.x[0], res.y[2]], [res.x[2], res.y[1]]]
    again = L.evaluate_at(m, {"train": train, "test": test}, result=res, coords=coords, device="cpu")
    for split in ("train", "test"):
        np.testing.assert_allclose(again[split]["loss"], [res.loss[split][2, 0], res.loss[split][1, 2]], rtol=1e-5)
        np.testing.assert_allclose(again[split]["accuracy"], [res.accuracy[split][2, 0], res.accuracy[split][1, 2]])
    # one split: the statistics must come from the map's training split, not from the test data
    one = L.evaluate_at(m, test, result=res, coords=coords, train_data=train, device="cpu")
    np.testing.assert_allclose(one["loss"], again["test"]["loss"], rtol=1e-6)
    with pytest.raises(ValueError, match="pass train_data="):
        L.evaluate_at(m, test, result=res, coords=coords, device="cpu")
    # the stored statistics give other values: the recorded setting is what makes them agree
    stored = L.evaluate_at(m, test, result=res, coords=coords, bn="eval", device="cpu")
    assert np.all(np.abs(stored["loss"] - again["test"]["loss"]) > 1e-3)
    # a map with the default (stored statistics) re-evaluates with them too
    ev = L.plane(m, test, steps=3, span=0.8, device="cpu", progress=False)
    assert ev.settings["bn"] == "eval" and ev.settings["bn_data"] is None
    np.testing.assert_allclose(L.evaluate_at(m, test, result=ev, coords=coords[:1], device="cpu")["loss"],
                               [ev.loss["data"][2, 0]], rtol=1e-5)


def _linear_data(n=50, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    y = X @ torch.randn(d, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g)
    return Dataset(X, y, "lsq")


def _lsq_hessian(X, C=1):
    Xt = np.hstack([X.numpy().astype(float), np.ones((len(X), 1))])
    return 2.0 / (len(X) * C) * Xt.T @ Xt  # per output; weight row then bias


def test_linear_least_squares_eigenvalues_trace_closed_form():
    data = _linear_data()
    torch.manual_seed(0)
    m = nn.Linear(4, 1)
    Hb = _lsq_hessian(data.X)
    # parameter order: weight (1x4) then bias (1): same as the augmented matrix
    op = L.HessianOperator(m, data, loss_fn=F.mse_loss, batch_size=16, device="cpu")
    np.testing.assert_allclose(op.dense().numpy(), Hb, rtol=1e-4, atol=1e-5)
    true = np.sort(np.linalg.eigvalsh(Hb))[::-1]
    ev = L.eigenvalues(m, data, loss_fn=F.mse_loss, k=3, tol=1e-6, device="cpu")
    assert list(ev.eigenvalues) == sorted(ev.eigenvalues, reverse=True)
    np.testing.assert_allclose(ev.eigenvalues, true[:3], rtol=1e-4)
    assert ev.converged and ev.n_iter <= 5 and np.all(ev.residuals < 1e-3 * true[0])
    tr = L.trace(m, data, loss_fn=F.mse_loss, n_samples=200, seed=0, device="cpu")
    exact = np.trace(Hb)
    assert tr.stderr > 0 and abs(tr.trace - exact) < 4 * tr.stderr
    # two outputs: Hessian = kron(I_2, Hb) / 2 (mean over N * C); eigenvalues Hb/2, trace tr(Hb)
    m2 = nn.Linear(4, 2)
    data2 = Dataset(data.X, torch.cat([data.y, -data.y], 1), "lsq2")
    assert L.HessianOperator(m2, data2, loss_fn=F.mse_loss, device="cpu").dense().numpy().trace() == pytest.approx(
        np.trace(Hb), rel=1e-4)


def test_quadratic_eigen_trace_density_exact():
    D = 6
    A, w = _sym(D, 3, eig=[6.0, 4.0, 2.5, 1.0, -0.5, -2.0])
    m = Quadratic(A, np.zeros(D), np.random.default_rng(0).normal(size=D))
    data = _qdata()
    ev = L.eigenvalues(m, data, loss_fn=mean_out, k=2, tol=1e-8, device="cpu")
    np.testing.assert_allclose(ev.eigenvalues, [6.0, 4.0], rtol=1e-4)
    u = ev.eigenvectors[0]
    np.testing.assert_allclose(A @ u, 6.0 * u, atol=1e-3)
    evp = L.eigenvalues(m, data, loss_fn=mean_out, k=2, method="power", max_iter=400, tol=1e-9, device="cpu")
    np.testing.assert_allclose(evp.eigenvalues, [6.0, 4.0], rtol=1e-3)  # largest magnitude: 6, 4 (|-2| < 4)
    tr = L.trace(m, data, loss_fn=mean_out, n_samples=400, seed=1, device="cpu")
    assert abs(tr.trace - w.sum()) < 4 * tr.stderr and tr.stderr < 0.5
    one = L.trace(m, data, loss_fn=mean_out, n_samples=12, seed=1, block=1, device="cpu")
    np.testing.assert_allclose(one.samples, tr.samples[:12], rtol=1e-5)  # same vectors whatever the block
    dens = L.density(m, data, loss_fn=mean_out, n_runs=3, steps=D, sigma=0.05, device="cpu")
    assert np.trapezoid(dens.density, dens.grid) == pytest.approx(1.0, abs=1e-3)
    # Lanczos with D steps is exact: the nodes are the true eigenvalues, all mass sits on them
    for r in range(3):
        np.testing.assert_allclose(np.sort(dens.nodes[r]), np.sort(w), atol=1e-4)
        assert dens.weights[r].sum() == pytest.approx(1.0, abs=1e-6)
    near = np.min(np.abs(dens.grid[:, None] - w[None]), 1) < 4 * 0.05
    assert np.trapezoid(dens.density * near, dens.grid) > 0.999
    # the slice along the top eigenvector is the parabola loss0 + lambda t^2 / 2 (b = 0, theta0 not a minimum:
    # add the linear term explicitly)
    sl = L.eigen_slice(m, data, loss_fn=mean_out, eigen=ev, steps=9, span=1.0, device="cpu")
    theta0 = m.theta.detach().double().numpy()
    expected = [0.5 * (theta0 + t * u) @ A @ (theta0 + t * u) for t in sl.x]
    np.testing.assert_allclose(sl.loss["data"], expected, rtol=1e-4, atol=1e-4)
    assert sl.settings["eigenvalue"] == pytest.approx(6.0, rel=1e-4)


def test_layerwise_blocks_match_dense_hessian():
    g = torch.Generator().manual_seed(0)
    data = Dataset(torch.randn(40, 3, generator=g), torch.randint(0, 2, (40,), generator=g), "tiny")
    torch.manual_seed(1)
    m = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    H = L.HessianOperator(m, data, device="cpu").dense().double().numpy()
    res = L.layerwise(m, data, n_samples=300, tol=1e-8, device="cpu")
    f = res.frame.set_index("group")
    assert list(f.index) == ["0", "2"]
    for group, sl in (("0", slice(0, 16)), ("2", slice(16, 26))):
        block = H[sl, sl]
        assert f.loc[group, "n_params"] == block.shape[0]
        assert f.loc[group, "top_eigenvalue"] == pytest.approx(np.linalg.eigvalsh(block).max(), rel=1e-3)
        assert abs(f.loc[group, "trace"] - np.trace(block)) < 4 * f.loc[group, "trace_stderr"] + 1e-6


class TwoHeads(nn.Module):
    """Two independent linear least-squares heads on disjoint inputs: the Hessian is block-diagonal."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 1)
        self.b = nn.Linear(2, 1)

    def forward(self, x):
        return torch.cat([self.a(x[:, :3]), self.b(x[:, 3:])], 1)


def test_layerwise_top_k_and_density_match_closed_form_blocks(tmp_path):
    g = torch.Generator().manual_seed(3)
    X = torch.randn(40, 5, generator=g) * torch.tensor([1.0, 2.0, 0.5, 3.0, 1.0])
    data = Dataset(X, torch.randn(40, 2, generator=g), "heads")
    torch.manual_seed(0)
    m = TwoHeads()
    # mse over N * 2 elements: each head's block is 2 / (2N) [X_g 1]^T [X_g 1]
    blocks = {"a": _lsq_hessian(X[:, :3], C=2), "b": _lsq_hessian(X[:, 3:], C=2)}
    res = L.layerwise(m, data, loss_fn=F.mse_loss, k=3, n_samples=200, tol=1e-8, density=True, density_runs=2,
                      density_steps=4, sigma=0.02, device="cpu")
    f = res.to_frame().set_index("group")
    assert list(f.index) == ["a", "b"] and len(res.to_frame()) == 2  # one row per group
    for group, H in blocks.items():
        true = np.sort(np.linalg.eigvalsh(H))[::-1]
        vals = res.eigenvalues[group]
        assert len(vals) == 3 and list(vals) == sorted(vals, reverse=True)
        np.testing.assert_allclose(vals, true[:3], rtol=1e-4)
        assert np.all(res.residuals[group] < 1e-3 * true[0])
        assert f.loc[group, "top_eigenvalue"] == pytest.approx(true[0], rel=1e-4)
        assert f.loc[group, "n_params"] == H.shape[0] and 3 <= f.loc[group, "n_iter"] <= H.shape[0]
        assert f.loc[group, "converged"]
        assert abs(f.loc[group, "trace"] - np.trace(H)) < 4 * f.loc[group, "trace_stderr"]
        # the block's density: as many Lanczos steps as parameters, so all mass sits on its eigenvalues
        d = res.density_result(group)
        assert np.trapezoid(d.density, d.grid) == pytest.approx(1.0, abs=1e-3)
        for r in range(2):
            np.testing.assert_allclose(np.sort(d.nodes[r][np.isfinite(d.nodes[r])]), np.sort(true), rtol=1e-4)
        near = np.min(np.abs(d.grid[:, None] - true[None]), 1) < 4 * 0.02
        assert np.trapezoid(d.density * near, d.grid) > 0.999
    ef = res.eigen_frame()
    assert list(ef["group"]) == ["a"] * 3 + ["b"] * 3 and list(ef["rank"]) == [1, 2, 3] * 2
    np.testing.assert_allclose(ef["eigenvalue"], np.concatenate([res.eigenvalues["a"], res.eigenvalues["b"]]))
    assert set(res.density_frame()["group"]) == {"a", "b"}
    back = Result.load(res.save(tmp_path / "layers"))
    np.testing.assert_array_equal(back.eigenvalues["b"], res.eigenvalues["b"])
    np.testing.assert_array_equal(back.densities["a"]["density"], res.densities["a"]["density"])
    assert isinstance(figures.spectrum(back.density_result("a")), go.Figure)
    # k larger than a group: capped at the group's size (b has 3 parameters)
    big = L.layerwise(m, data, loss_fn=F.mse_loss, k=4, n_samples=4, tol=1e-8, device="cpu")
    assert len(big.eigenvalues["a"]) == 4 and len(big.eigenvalues["b"]) == 3
    np.testing.assert_allclose(big.eigenvalues["b"], np.sort(np.linalg.eigvalsh(blocks["b"]))[::-1], rtol=1e-4)


def test_filter_normalised_direction_norms():
    m = models.build("cnn", seed=0)
    theta, spec = ps.flatten(m)
    d = L.random_direction(m, norm="filter", seed=5)
    parts, wparts = ps.unflatten(d, spec), ps.unflatten(theta, spec)
    for name, shape, _sl in spec.items():
        if len(shape) <= 1:
            assert torch.count_nonzero(parts[name]) == 0  # biases zeroed by default
        else:
            dn = parts[name].reshape(shape[0], -1).norm(dim=1)
            wn = wparts[name].reshape(shape[0], -1).norm(dim=1)
            torch.testing.assert_close(dn, wn, rtol=1e-5, atol=1e-6)
    # perturbing 1-D parameters: each entry is its own filter (direction equals the weight there)
    d2 = ps.unflatten(L.random_direction(m, norm="filter", ignore=None, seed=5), spec)
    torch.testing.assert_close(d2["conv1.bias"].abs(), wparts["conv1.bias"].abs())
    # layer and model normalisation
    dl = ps.unflatten(L.random_direction(m, norm="layer", seed=5), spec)
    assert dl["fc1.weight"].norm().item() == pytest.approx(wparts["fc1.weight"].norm().item(), rel=1e-5)
    dm = L.random_direction(m, norm="model", ignore=None, seed=5)
    assert dm.norm().item() == pytest.approx(theta.norm().item(), rel=1e-5)
    # the same seed gives the same direction; another seed another one; raw Gaussian is zero-mean
    assert torch.equal(L.random_direction(m, seed=5), d) and not torch.equal(L.random_direction(m, seed=6), d)
    raw = L.random_direction(m, norm="none", ignore=None, seed=0)
    assert abs(raw.mean().item()) < 4 / np.sqrt(raw.numel()) and raw.std().item() == pytest.approx(1.0, rel=0.02)
    dd = L.random_directions(m, 2, seed=1, orthogonal=True)
    assert abs((dd[0] @ dd[1]).item()) < 1e-3 * dd[0].norm().item() * dd[1].norm().item()
    with pytest.raises(ValueError, match="norm="):
        L.random_direction(m, norm="filters")


def test_pca_directions_recover_trajectory_plane():
    m = nn.Linear(5, 3)
    theta, spec = ps.flatten(m)
    rng = np.random.default_rng(0)
    u1, u2 = np.zeros(theta.numel()), np.zeros(theta.numel())
    u1[:15], u2[:15] = rng.normal(size=15), rng.normal(size=15)  # weights only (biases ignored)
    ts = np.linspace(1, 0, 9)
    states = [theta.numpy() + t * u1 + 0.5 * t ** 2 * u2 for t in ts]
    pca = L.pca_directions(m, states, k=2)
    D = pca["directions"].double().numpy()
    assert pca["explained_variance_ratio"].sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(D @ D.T, np.eye(2), atol=1e-6)
    # the trajectory lies in the plane: its coordinates reproduce every offset
    offsets = np.stack(states) - theta.numpy()[None]
    np.testing.assert_allclose(pca["coords"] @ D, offsets, atol=1e-4)


def test_interpolate_end_points_and_bn_buffers():
    ma, mb = models.build("resnet", seed=0, width=4), models.build("resnet", seed=1, width=4)
    with torch.no_grad():
        for mod in mb.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_var.fill_(2.0)
    g = torch.Generator().manual_seed(0)
    data = Dataset(torch.randn(30, 1, 8, 8, generator=g), torch.randint(0, 10, (30,), generator=g), "img")
    res = L.interpolate(ma, mb, data, steps=9, device="cpu", progress=False)
    assert res.x[2] == 0.0 and res.x[6] == 1.0
    assert res.loss["data"][2] == pytest.approx(models.evaluate(ma, data, device="cpu")["loss"], rel=1e-5)
    assert res.loss["data"][6] == pytest.approx(models.evaluate(mb, data, device="cpu")["loss"], rel=1e-5)
    assert res.settings["bn"] == "interpolate"
    with pytest.raises(ValueError, match="different architectures"):
        L.interpolate(ma, models.build("resnet", width=8), data, device="cpu")


def test_nan_grid_point_kept_and_drawn(tmp_path):
    class Sqrt(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.tensor([0.25, 1.0]))

        def forward(self, x):
            return x[:, 0] * 0 + torch.sqrt(self.w[0]) + self.w[1] ** 2

    m = Sqrt()
    res = L.plane(m, {"train": _qdata(), "test": _qdata(4)}, loss_fn=mean_out, steps=5, span=1.0,
                  directions=[[1.0, 0.0], [0.0, 1.0]], device="cpu", progress=False)
    z = res.loss["test"]
    assert np.isnan(z[:, :2]).all() and np.isfinite(z[:, 2:]).all()  # sqrt of a negative weight
    assert z[2, 2] == pytest.approx(1.5, rel=1e-6)
    fig = figures.contour(res, split="test", log=True, zmin=-1.0, zmax=1.0)
    assert isinstance(fig, go.Figure)
    bad = [t for t in fig.data if t.name == "NaN / inf"][0]
    assert len(bad.x) == 10
    assert fig.data[0].contours.start == -1.0 and fig.data[0].contours.end == 1.0
    assert isinstance(figures.surface(res), go.Figure) and isinstance(figures.slices(res), go.Figure)
    frame = res.to_frame()
    assert len(frame) == 2 * 25 and set(frame["split"]) == {"train", "test"}
    back = Result.load(res.save(tmp_path / "plane"))
    np.testing.assert_array_equal(back.loss["test"], z)
    np.testing.assert_array_equal(back.directions, res.directions)


def test_trained_model_map_is_centred_on_its_loss():
    from workbench.data import digits

    train, test = digits()
    m = models.build("mlp", seed=0, hidden=(16,))
    models.train(m, train, epochs=2, progress=False, device="cpu")
    res = L.line(m, {"test": test}, steps=5, span=0.5, device="cpu", progress=False)
    ev = models.evaluate(m, test, device="cpu")
    assert res.loss["test"][2] == pytest.approx(ev["loss"], rel=1e-5)
    assert res.accuracy["test"][2] == pytest.approx(ev["accuracy"])
    assert res.loss["test"][0] > res.loss["test"][2] and res.loss["test"][4] > res.loss["test"][2]
    fig = figures.curve(res)
    assert len(fig.data) == 2


@pytest.mark.gpu
def test_gpu_matches_cpu():
    g = torch.Generator().manual_seed(0)
    data = Dataset(torch.randn(200, 1, 8, 8, generator=g), torch.randint(0, 10, (200,), generator=g), "img")
    m = models.build("resnet", seed=0, width=4)
    cpu = L.plane(m, data, steps=5, device="cpu", progress=False)
    gpu = L.plane(m, data, steps=5, device="cuda", progress=False)
    np.testing.assert_allclose(gpu.loss["data"], cpu.loss["data"], rtol=1e-4)
    np.testing.assert_allclose(gpu.accuracy["data"], cpu.accuracy["data"], atol=1 / 200 + 1e-9)
    e_cpu = L.eigenvalues(copy.deepcopy(m), data, k=2, tol=1e-6, device="cpu")
    e_gpu = L.eigenvalues(copy.deepcopy(m), data, k=2, tol=1e-6, device="cuda")
    np.testing.assert_allclose(e_gpu.eigenvalues, e_cpu.eigenvalues, rtol=1e-3)


@pytest.mark.gpu
def test_curvature_on_gpu_leaves_the_callers_model_on_cpu():
    data = _linear_data()
    torch.manual_seed(0)
    m = nn.Linear(4, 1)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    op = L.HessianOperator(m, data, loss_fn=F.mse_loss, device="cuda")
    assert op.model is not m and next(op.model.parameters()).is_cuda
    np.testing.assert_allclose(op.dense().cpu().numpy(), _lsq_hessian(data.X), rtol=1e-4, atol=1e-5)
    L.layerwise(m, data, loss_fn=F.mse_loss, n_samples=4, device="cuda")
    L.eigenvalues(m, data, loss_fn=F.mse_loss, device="cuda")
    assert all(p.device.type == "cpu" for p in m.parameters())
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k])
    # on the model's own device no copy is made
    assert L.HessianOperator(m, data, loss_fn=F.mse_loss, device="cpu").model is m
