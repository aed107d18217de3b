import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from workbench import backend, batchnorm, models
from workbench import paramspace as ps
from workbench.data import Dataset


def _data(n=120, d=64, classes=10, seed=0, image=False):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    if image:
        X = X.view(n, 1, 8, 8)
    return Dataset(X, torch.randint(0, classes, (n,), generator=g), "rand")


def test_flatten_unflatten_roundtrip_and_load():
    m = models.build("cnn", seed=1)
    theta, spec = ps.flatten(m)
    assert theta.numel() == sum(p.numel() for p in m.parameters()) == spec.numel
    parts = ps.unflatten(theta, spec)
    for name, p in m.named_parameters():
        assert torch.equal(parts[name], p.detach())
    # batched unflatten gives (P, *shape)
    stack = torch.stack([theta, 2 * theta])
    bparts = ps.unflatten(stack, spec)
    assert bparts["conv1.weight"].shape == (2, *m.conv1.weight.shape)
    assert torch.equal(bparts["fc2.bias"][1], 2 * m.fc2.bias.detach())
    m2 = models.build("cnn", seed=2)
    ps.load_theta(m2, theta, spec)
    assert torch.equal(ps.flatten(m2)[0], theta)
    with pytest.raises(ValueError, match="parameters"):
        ps.unflatten(theta[:-1], spec)


@pytest.mark.parametrize("arch", ["mlp", "resnet"])
def test_batched_equals_one_point_at_a_time(arch):
    m = models.build(arch, seed=0)
    # give the BatchNorm layers non-trivial running statistics
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
    data = _data(90, image=arch != "mlp")
    theta, spec = ps.flatten(m)
    g = torch.Generator().manual_seed(3)
    thetas = theta[None] + 0.1 * torch.randn(5, theta.numel(), generator=g)
    thetas[0] = theta
    batched = ps.evaluate_points(m, thetas, data, batch_size=32, chunk=5, device="cpu")
    for i in range(5):
        mi = copy.deepcopy(m)
        ps.load_theta(mi, thetas[i], spec)
        ref = models.evaluate(mi, data, batch_size=1000, device="cpu")
        assert batched["loss"][i] == pytest.approx(ref["loss"], rel=1e-5, abs=1e-6)
        assert batched["accuracy"][i] == pytest.approx(ref["accuracy"], abs=1e-12)
    # neither the chunk size nor vectorisation changes the numbers
    for vec in (True, False):
        info = {}
        other = ps.evaluate_points(m, thetas, data, batch_size=50, chunk=2, device="cpu", vectorize=vec, info=info)
        assert info["vectorized"] is vec
        np.testing.assert_allclose(other["loss"], batched["loss"], rtol=1e-5)
        np.testing.assert_array_equal(other["accuracy"], batched["accuracy"])
    # the model itself is untouched
    assert torch.equal(ps.flatten(m)[0], theta)


def test_bn_reset_matches_recomputed_statistics():
    m = models.build("resnet", seed=0, width=4)
    train = _data(64, image=True, seed=1)
    test = _data(40, image=True, seed=2)
    theta, spec = ps.flatten(m)
    thetas = torch.stack([theta, theta * 1.3])
    got = ps.evaluate_points(m, thetas, test, bn="reset", train_data=train, batch_size=16, device="cpu")
    for i in range(2):
        mi = copy.deepcopy(m)
        ps.load_theta(mi, thetas[i], spec)
        # the per-point path must equal resetting one model on its own (exactness of that reset is
        # tested in test_connectivity)
        batchnorm.reset_bn(mi, train, batch_size=16, device="cpu")
        ref = models.evaluate(mi, test, device="cpu")
        assert got["loss"][i] == pytest.approx(ref["loss"], rel=1e-5)
    plain = ps.evaluate_points(m, thetas, test, device="cpu")
    assert abs(plain["loss"][0] - got["loss"][0]) > 1e-4  # the statistics really were recomputed


def test_nan_points_are_kept_and_bad_shapes_named():
    m = nn.Linear(3, 2)
    data = _data(20, d=3, classes=2)
    theta, _ = ps.flatten(m)
    thetas = torch.stack([theta, torch.full_like(theta, float("nan")), theta * 2])
    r = ps.evaluate_points(m, thetas, data, device="cpu")
    assert np.isnan(r["loss"][1]) and np.isfinite(r["loss"][[0, 2]]).all()
    with pytest.raises(ValueError, match=r"expected \(P, 8\)"):
        ps.evaluate_points(m, torch.zeros(2, 7), data, device="cpu")
    with pytest.raises(ValueError, match="bn="):
        ps.evaluate_points(m, thetas, data, bn="train", device="cpu")


def test_chunk_shrinks_on_out_of_memory(monkeypatch):
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    data = _data(30, d=4, classes=3)
    theta, spec = ps.flatten(m)
    thetas = theta[None] + 0.3 * torch.randn(10, theta.numel(), generator=torch.Generator().manual_seed(0))
    expected = ps.evaluate_points(m, thetas, data, chunk=1, device="cpu")
    info = {}
    with backend.memory_limit(int(3.5 * theta.numel() * 4)):  # pretend more than 3 points at once do not fit
        got = ps.evaluate_points(m, thetas, data, chunk=10, device="cpu", info=info)
    assert info["chunk"] <= 3
    np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-6)


def test_custom_loss_module_and_regression_targets():
    m = nn.Linear(3, 1)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(25, 3, generator=g)
    y = torch.randn(25, 1, generator=g)
    theta, _ = ps.flatten(m)
    r = ps.evaluate_points(m, theta, (X, y), nn.MSELoss(), batch_size=7, device="cpu")
    with torch.no_grad():
        ref = F.mse_loss(m(X), y).item()
    assert r["loss"][0] == pytest.approx(ref, rel=1e-6)
    assert np.isnan(r["accuracy"][0])  # no classes: accuracy is undefined, not made up


def test_affine_points_equal_the_dense_stack():
    m = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    data = _data(40, d=5, classes=3)
    theta, _ = ps.flatten(m)
    g = torch.Generator().manual_seed(1)
    d = torch.randn(2, theta.numel(), generator=g)
    coefs = np.array([[0.0, 0.0], [0.5, -1.0], [-2.0, 0.25]])
    pts = ps.AffinePoints(theta, d, coefs)
    assert pts.shape == (3, theta.numel())
    dense = theta[None] + torch.as_tensor(coefs, dtype=torch.float32) @ d
    torch.testing.assert_close(pts[1:3], dense[1:3])
    assert torch.equal(pts[0], theta)  # zero coefficients give the model exactly
    a = ps.evaluate_points(m, pts, data, chunk=2, device="cpu")
    b = ps.evaluate_points(m, dense, data, chunk=3, device="cpu")
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-6)
