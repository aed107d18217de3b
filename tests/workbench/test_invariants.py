"""Invariants that guard every result, each broken on purpose, and bad input refused at the entry points."""
import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from workbench import connectivity as lmc
from workbench import intrinsic_dimension as idim
from workbench import landscape, models, pruning
from workbench.data import Dataset
from workbench.validation import InputError, InvariantError


def _data(n=40, d=6, classes=3, seed=0, image=False):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, 6, 6, generator=g) if image else torch.randn(n, d, generator=g)
    return Dataset(X, torch.randint(0, classes, (n,), generator=g), "toy")


class PReLUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(6, 8), nn.PReLU(8), nn.Linear(8, 3)
        with torch.no_grad():
            self.act.weight.uniform_(0.05, 0.6)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class ScaleAndBias(nn.Module):
    """A learned per-channel scale and a loose per-channel bias between two layers."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 8), nn.Linear(8, 3)
        self.scale = nn.Parameter(torch.linspace(0.5, 2.0, 8))
        self.shift = nn.Parameter(torch.linspace(-1.0, 1.0, 8))

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x) * self.scale + self.shift))


class Gated(nn.Module):
    """A per-channel gate computed from a parameter: its channels cannot be placed."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 8), nn.Linear(8, 3)
        self.gate = nn.Parameter(torch.randn(8))

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)) * torch.sigmoid(self.gate))


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.rnn, self.head = nn.Linear(6, 8), nn.GRU(8, 8, batch_first=True), nn.Linear(8, 3)

    def forward(self, x):
        out, _ = self.rnn(self.fc(x).unsqueeze(1))
        return self.head(out[:, -1])


@pytest.mark.parametrize("cls", [PReLUNet, ScaleAndBias])
def test_per_channel_parameters_are_permuted_with_their_channels(cls):
    torch.manual_seed(0)
    a, b = cls(), cls()
    res = lmc.align(a, b, _data(), method="weight", device="cpu", progress=False)
    x = _data(seed=5).X
    with torch.no_grad():
        torch.testing.assert_close(res.model_(x), b(x), rtol=1e-5, atol=1e-6)
    assert res.settings["function_error"] < 1e-5
    spec = res.spec_
    placed = [k for k in spec.axes if k.startswith(("act.", "scale", "shift"))]
    assert placed, spec.axes  # the per-channel tensors are on the hidden permutation


def test_parameters_that_cannot_be_placed_are_refused_by_name():
    with pytest.raises(lmc.UnsupportedStructure, match="computed from parameter 'gate'"):
        lmc.permutation_spec(Gated(), _data())
    with pytest.raises(lmc.UnsupportedStructure, match="'rnn'.*recurrent"):
        lmc.permutation_spec(Recurrent(), _data())


def test_a_permuted_model_that_changed_its_function_is_refused(monkeypatch):
    from workbench.connectivity import matching

    real = matching.permute

    def forgetful(model, perms, *, spec=None):  # permutes everything but one bias
        out = real(model, perms, spec=spec)
        with torch.no_grad():
            out.fc1.bias.copy_(model.fc1.bias)
        return out

    monkeypatch.setattr(matching, "permute", forgetful)
    torch.manual_seed(0)
    a, b = PReLUNet(), PReLUNet()
    with pytest.raises(lmc.UnsupportedStructure, match="does not compute B's function.*module 'fc1'"):
        lmc.align(a, b, _data(), device="cpu", progress=False)


def test_global_pruning_warns_about_emptied_layers_and_keeps_a_floor():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 3))
    with torch.no_grad():
        net[2].weight.mul_(1e-3)  # one layer of small weights: a global threshold removes all of it
    with pytest.warns(pruning.PruningWarning, match=r"2\.weight \(0\.00%\).*min_layer_density"):
        res = pruning.prune(net, 0.1, scope="global")
    assert float(res.mask["2.weight"].sum()) == 0
    floored = pruning.prune(net, 0.1, scope="global", min_layer_density=0.05)
    total = sum(m.numel() for m in floored.mask.values())
    assert sum(float(m.sum()) for m in floored.mask.values()) == round(0.1 * total)  # the density is exact
    for name, m in floored.mask.items():
        assert float(m.mean()) >= 0.05 - 1e-9, name
    with pytest.raises(ValueError, match="min_layer_density=0.5 must be in"):
        pruning.prune(net, 0.1, scope="global", min_layer_density=0.5)


def test_non_finite_weights_are_named():
    net = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    with torch.no_grad():
        net[2].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"2\.weight \(1 of"):
        pruning.prune(net, 0.5)
    with pytest.raises(InputError, match=r"non-finite .* weights in 2\.weight \(1 of 12 values\)"):
        landscape.plane(net, _data(), steps=3, progress=False)


def test_training_refuses_no_epochs_and_stops_when_it_diverges():
    net = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    with pytest.raises(ValueError, match="epochs=0: pass a positive number of epochs"):
        models.train(net, _data(), epochs=0, progress=False)
    from workbench.data import digits

    train, _ = digits()
    trained = models.reference_model("mlp")
    mask = pruning.magnitude_mask(trained, 0.5)
    with pytest.raises(FloatingPointError, match=r"at epoch 1, step \d+ of 22; lower lr=1000000.0"):
        pruning.finetune(trained, train, mask=mask, epochs=1, lr=1e6, progress=False)


def test_the_centre_of_a_map_is_the_model_s_own_loss(monkeypatch):
    net = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    res = landscape.plane(net, _data(), steps=3, progress=False)
    assert res.loss["data"][1, 1] == pytest.approx(models.evaluate(net, _data())["loss"], rel=1e-6)
    from workbench.landscape import maps

    real = maps.evaluate_points

    def shifted(*args, **kw):  # a map evaluated at the wrong parameters
        out = real(*args, **kw)
        return {"loss": out["loss"] + 0.1, "accuracy": out["accuracy"]}

    monkeypatch.setattr(maps, "evaluate_points", shifted)
    with pytest.raises(InvariantError, match="value at the model on split 'data' is not the model's own loss"):
        landscape.plane(net, _data(), steps=3, progress=False)
    with pytest.raises(InvariantError, match="alpha=0"):
        landscape.interpolate(net, copy.deepcopy(net), _data(), steps=5, span=(0.0, 1.0), progress=False)


def test_the_ends_of_a_path_are_the_two_models(monkeypatch):
    torch.manual_seed(0)
    a, b = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3)), nn.Sequential(nn.Linear(6, 4), nn.ReLU(),
                                                                                     nn.Linear(4, 3))
    res = lmc.barrier(a, b, _data(), points=3, refine=0, bn="interpolate", progress=False)
    c = res.split_curve("test").set_index("alpha")["loss"]
    assert c.loc[0.0] == pytest.approx(models.evaluate(a, _data())["loss"], rel=1e-6)
    from workbench import paths

    real = paths.interpolate_state
    def shifted(sa, sb, alpha, keys=None):  # every state on the path moved a little
        return {k: v + 0.05 for k, v in real(sa, sb, alpha, keys=keys).items()}

    monkeypatch.setattr(paths, "interpolate_state", shifted)
    with pytest.raises(InvariantError, match="alpha=0 on split 'test' is not model_a's own loss"):
        lmc.barrier(a, b, _data(), points=3, refine=0, bn="interpolate", progress=False)


def test_wrong_shape_data_is_refused_before_any_kernel():
    flat, images = _data(), _data(image=True)
    mlp = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    want = r"X of shape \(40, 3, 6, 6\).*expects \(N, 6\) features"
    with pytest.raises(InputError, match=want):
        lmc.barrier(mlp, copy.deepcopy(mlp), images, progress=False)
    with pytest.raises(InputError, match=want):
        landscape.trace(mlp, images, n_samples=2, progress=False)
    with pytest.raises(InputError, match=want):
        idim.profile(mlp, images, progress=False)
    with pytest.raises(InputError, match=want):
        lmc.align(mlp, copy.deepcopy(mlp), images, method="activation", progress=False)
    conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))
    with pytest.raises(InputError, match=r"X of shape \(40, 6\).*expects \(N, 3, H, W\) inputs"):
        landscape.eigenvalues(conv, flat, progress=False)
    with pytest.raises(InputError, match=r"the loss mse_loss cannot compare the model's output of shape \(2, 3\)"):
        landscape.plane(mlp, Dataset(flat.X, torch.randn(40, 5), "reg"), loss_fn="mse", steps=3, progress=False)
    assert np.isfinite(landscape.plane(mlp, flat, steps=3, progress=False).loss["data"]).all()
