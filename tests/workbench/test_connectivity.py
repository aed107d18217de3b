import copy

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

from workbench import batchnorm, models
from workbench import connectivity as lmc
from workbench import data as wdata
from tests.optional import optional_module
from workbench.results import Result

figures = optional_module("workbench.connectivity.figures")  # plotly: only the figure tests need it


def _randomise_bn(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen))
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.randn(n, generator=gen))
            m.bias.data.copy_(torch.randn(n, generator=gen))
    return model


def _input(name, n=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 64, generator=gen) if name == "mlp" else torch.randn(n, 1, 8, 8, generator=gen)


@pytest.fixture(scope="module")
def digits_flat():
    return wdata.digits()


@pytest.fixture(scope="module")
def trained_mlps():
    return models.reference_model("mlp", seed=0), models.reference_model("mlp", seed=1)


# ------------------------------------------------------------------------------------------
# permutation specs and invariance
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet"])
def test_permuting_leaves_outputs_unchanged(name):
    model = _randomise_bn(models.build(name, seed=3)).eval()
    spec = lmc.permutation_spec(model)
    perms = spec.random(seed=7)
    assert all((p != np.arange(len(p))).any() for p in perms.values())
    permuted = lmc.permute(model, perms, spec=spec).eval()
    x = _input(name)
    with torch.no_grad():
        assert torch.allclose(model(x), permuted(x), atol=1e-5)
    # the weights did move
    moved = [k for k, v in model.state_dict().items() if not torch.equal(v, permuted.state_dict()[k])]
    assert len(moved) > 3


def test_resnet_spec_ties_residual_stream_and_permutes_bn_buffers():
    model = models.build("resnet", seed=0)
    spec = lmc.permutation_spec(model)
    stream = spec.axes["conv1.weight"][0]
    # the stem, the first block's second BN and the next block's input share the stream permutation
    assert spec.axes["blocks.0.bn2.weight"] == (stream,)
    assert spec.axes["blocks.0.conv2.weight"][0] == stream
    assert spec.axes["blocks.1.conv1.weight"][1] == stream
    assert spec.axes["blocks.1.shortcut.0.weight"][1] == stream
    # the second stage's stream ties conv2/bn2 with the shortcut
    s2 = spec.axes["blocks.1.bn2.weight"][0]
    assert spec.axes["blocks.1.shortcut.1.running_mean"] == (s2,)
    assert spec.axes["fc.weight"] == (None, s2)
    for buf in ("running_mean", "running_var"):
        assert spec.axes[f"bn1.{buf}"] == (stream,)
    assert spec.sizes == {"P_conv1": 16, "P_blocks.0.conv1": 16, "P_blocks.1.conv1": 32, "P_blocks.1.conv2": 32}


def test_cnn_spec_has_flatten_blocks_and_fixed_output():
    model = models.build("cnn", seed=0)
    spec = lmc.permutation_spec(model)
    assert spec.blocks == {("fc1.weight", 1): 16}
    assert spec.axes["fc2.weight"] == (None, "P_fc1")
    assert "fc2.bias" not in spec.axes
    assert spec.axes["conv1.weight"] == ("P_conv1", None, None, None)


class _Attn(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        h = self.proj(x)
        return self.out(self.attn(h, h, h)[0])


class _Grouped(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.dw = nn.Conv2d(4, 4, 3, groups=4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.dw(self.conv(x)).mean((2, 3)))


class _Cat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(4, 3)
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        return self.head(torch.cat([self.a(x), self.b(x)], 1))


def test_unsupported_structures_name_the_module():
    with pytest.raises(lmc.UnsupportedStructure, match="'attn'.*attention"):
        lmc.permutation_spec(_Attn(), data=(torch.zeros(2, 3, 8), torch.zeros(2)))
    with pytest.raises(lmc.UnsupportedStructure, match="'dw'.*grouped"):
        lmc.permutation_spec(_Grouped(), data=(torch.zeros(2, 1, 8, 8), torch.zeros(2)))
    with pytest.raises(lmc.UnsupportedStructure, match="'cat'.*'<model>'|'cat'"):
        lmc.permutation_spec(_Cat(), data=(torch.zeros(2, 4), torch.zeros(2)))


def test_hand_written_spec_matches_derived_and_aligns():
    model = models.build("mlp", seed=0, hidden=(16, 12))
    axes = {"layers.0.weight": ("P0", None), "layers.0.bias": ("P0",),
            "layers.1.weight": ("P1", "P0"), "layers.1.bias": ("P1",), "head.weight": (None, "P1")}
    spec = lmc.PermutationSpec.from_axes(axes, model=model)
    assert spec.sizes == {"P0": 16, "P1": 12}
    derived = lmc.permutation_spec(model)
    rename = {"P_layers.0": "P0", "P_layers.1": "P1"}
    assert {k: tuple(rename.get(p, p) for p in v) for k, v in derived.axes.items()} == axes
    perms = spec.random(seed=1)
    other = lmc.permute(model, perms, spec=spec)
    res = lmc.align(model, other, spec=spec, device="cpu")
    for p in perms:
        np.testing.assert_array_equal(np.asarray(perms[p])[res.perms[p]], np.arange(spec.sizes[p]))
    with pytest.raises(ValueError, match="axes for 'head.weight'"):
        lmc.PermutationSpec.from_axes({"head.weight": ("P",)}, model=model)
    with pytest.raises(ValueError, match="not a permutation"):
        lmc.permute(model, {"P0": np.zeros(16, dtype=int)}, spec=spec)


# ------------------------------------------------------------------------------------------
# matching recovers permutations
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet"])
def test_weight_matching_recovers_random_permutation(name):
    model = _randomise_bn(models.build(name, seed=5)).eval()
    spec = lmc.permutation_spec(model)
    perms = spec.random(seed=11)
    other = lmc.permute(model, perms, spec=spec)
    res_align = lmc.align(model, other, method="weight", device="cpu", seed=0)
    aligned, found = res_align.model_, res_align.perms
    for p in perms:
        # other[j] = model[perms[j]]; aligned[i] = other[found[i]] = model[i]
        np.testing.assert_array_equal(np.asarray(perms[p])[found[p]], np.arange(spec.sizes[p]))
    for k, v in model.state_dict().items():
        assert torch.equal(v, aligned.state_dict()[k]), k
    x = _input(name, n=64)
    data = (x, torch.randint(0, 10, (64,)))
    res = lmc.barrier(model, aligned, data, points=5, bn="interpolate", refine=0)
    for v in lmc.VARIANTS:
        assert abs(res.barriers_[v]) < 1e-6
    assert np.ptp(res.curve["loss"]) < 1e-6


def test_activation_matching_recovers_permutation(digits_flat, trained_mlps):
    train, _ = digits_flat
    a, _ = trained_mlps
    spec = lmc.permutation_spec(a)
    perms = spec.random(seed=3)
    other = lmc.permute(a, perms, spec=spec)
    res = lmc.align(a, other, method="activation", data=train.subset(400), device="cpu")
    for p in perms:
        np.testing.assert_array_equal(np.asarray(perms[p])[res.perms[p]], np.arange(spec.sizes[p]))
    with pytest.raises(ValueError, match="needs data="):
        lmc.align(a, other, method="activation")
    with pytest.raises(ValueError, match="method='nope'"):
        lmc.align(a, other, method="nope")


@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_activation_matching_recovers_permutation_conv_and_residual(name):
    train, _ = wdata.digits(image=True)
    sub = train.subset(200)
    model = models.build(name, seed=0).eval()
    lmc.reset_bn(model, sub)
    spec = lmc.permutation_spec(model)
    perms = spec.random(seed=4)
    other = lmc.permute(model, perms, spec=spec)
    res = lmc.align(model, other, method="activation", data=sub, device="cpu")
    for p in perms:
        np.testing.assert_array_equal(np.asarray(perms[p])[res.perms[p]], np.arange(spec.sizes[p]))


def test_mismatched_architectures_are_clear_errors():
    a = models.build("mlp", seed=0, hidden=(16,))
    b = models.build("mlp", seed=0, hidden=(8,))
    with pytest.raises(ValueError, match="different architectures.*layers.0.weight"):
        lmc.align(a, b)
    with pytest.raises(ValueError, match="different architectures"):
        lmc.barrier(a, b, (torch.zeros(4, 64), torch.zeros(4, dtype=torch.long)), bn="interpolate")


# ------------------------------------------------------------------------------------------
# barrier variants on synthetic curves
# ------------------------------------------------------------------------------------------
def test_barrier_variants_closed_form():
    a = np.linspace(0, 1, 9)  # contains 0.5 and 0.625
    f = 1 + a + 4 * a * (1 - a)  # ends 1 and 2; chord gap 4a(1-a), peak of f at a = 5/8
    v = lmc.barrier_variants(a, f)
    assert v["max_minus_mean"] == pytest.approx(2.5625 - 1.5)
    assert v["max_minus_chord"] == pytest.approx(1.0)
    assert v["midpoint"] == pytest.approx(1.0)
    assert v["signed_mc"] == pytest.approx(-1.0625)
    where = lmc.barrier_argmax(a, f)
    assert where["max_minus_mean"] == 0.625 and where["max_minus_chord"] == 0.5


def test_barrier_variants_dip_and_off_centre_peak():
    a = np.linspace(0, 1, 21)
    dip = 1 - 2 * a * (1 - a)  # better in the middle
    v = lmc.barrier_variants(a, dip)
    assert v["signed_mc"] == pytest.approx(0.5) and v["max_minus_mean"] == pytest.approx(0.0)
    assert v["midpoint"] == pytest.approx(-0.5)
    peak = np.exp(-((a - 0.15) / 0.05) ** 2)  # off-centre bump: the midpoint misses it
    v = lmc.barrier_variants(a, peak)
    assert v["max_minus_chord"] == pytest.approx(peak.max() - ((1 - 0.15) * peak[0] + 0.15 * peak[-1]), rel=1e-9)
    assert v["midpoint"] < 0.01 < 0.9 < v["max_minus_mean"]
    # unsorted input gives the same answer
    order = np.random.default_rng(0).permutation(len(a))
    assert lmc.barrier_variants(a[order], peak[order]) == v


def test_barrier_variants_errors():
    with pytest.raises(ValueError, match="both ends"):
        lmc.barrier_variants([0.0, 0.5], [1.0, 2.0])
    with pytest.raises(FloatingPointError, match="alpha=\\[0.5\\]"):
        lmc.barrier_variants([0.0, 0.5, 1.0], [1.0, np.nan, 2.0])


def test_summarize_mean_and_t_interval():
    def fake(x):
        t = pd.DataFrame([{"split": "test", "metric": "loss", "variant": "max_minus_mean", "value": x, "alpha": .5}])
        return lmc.BarrierResult(settings={}, curve=pd.DataFrame(), table=t)

    s = lmc.summarize([fake(1.0), fake(2.0), fake(3.0)])
    row = s.iloc[0]
    assert row["n"] == 3 and row["mean"] == pytest.approx(2.0) and row["std"] == pytest.approx(1.0)
    half = 4.302652729911275 / np.sqrt(3)  # t_{0.975, 2}
    assert row["low"] == pytest.approx(2 - half) and row["high"] == pytest.approx(2 + half)
    fig = figures.summary(s)
    assert list(fig.data[0].y) == [2.0]


# ------------------------------------------------------------------------------------------
# the curve on real models
# ------------------------------------------------------------------------------------------
def test_barrier_result_contract_and_round_trip(digits_flat, trained_mlps, tmp_path):
    train, test = digits_flat
    a, b = trained_mlps
    res = lmc.barrier(a, b, test, train_data=train, points=25)
    frame = res.to_frame()
    assert list(frame.columns) == ["alpha", "loss", "error", "accuracy", "split"]
    assert set(frame["split"]) == {"test", "train"}
    t = frame[frame["split"] == "test"]
    assert len(t) > 25 and t["alpha"].min() == 0 and t["alpha"].max() == 1 and 0.5 in set(t["alpha"])
    # endpoints equal the models' own evaluation
    assert t[t["alpha"] == 0]["loss"].item() == pytest.approx(models.evaluate(a, test)["loss"], rel=1e-6)
    assert t[t["alpha"] == 1]["accuracy"].item() == pytest.approx(models.evaluate(b, test)["accuracy"])
    # the variants agree with barrier_variants on the stored curve
    assert res.barriers_ == pytest.approx(lmc.barrier_variants(t["alpha"], t["loss"]))
    assert res.loss_barrier_ == res.barriers_["max_minus_mean"]
    assert res.error_barrier_ == pytest.approx(lmc.barrier_variants(t["alpha"], t["error"])["max_minus_mean"])
    assert res.settings["bn"] == "reset" and res.settings["variant"] == "max_minus_mean"
    back = Result.load(res.save(tmp_path / "b"))
    assert isinstance(back, lmc.BarrierResult) and back.barriers_ == res.barriers_
    fig = figures.curves(res)
    assert len(fig.data) == 4


def test_phenomenon_barrier_falls_after_matching(digits_flat, trained_mlps):
    train, test = digits_flat
    a, b = trained_mlps
    before = lmc.barrier(a, b, test, points=25, bn="interpolate", evaluate_train=False).loss_barrier_
    aligned = lmc.align(a, b, method="weight").model_
    after = lmc.barrier(a, aligned, test, points=25, bn="interpolate").loss_barrier_
    assert before > 0.1 and after < before / 5
    d = lmc.compare(a, b, aligned={"weight": aligned})
    total = d[d["layer"] == "<all parameters>"].set_index("model")["l2"]
    assert total["weight"] < total["original"] and total["weight"] > 0.5 * total["original"]


def test_bn_reset_changes_midpoint_only_with_batchnorm():
    x = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    data = (x, torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(1)))
    for name, has_bn in (("resnet", True), ("cnn", False)):
        a = _randomise_bn(models.build(name, seed=0), 0)
        b = _randomise_bn(models.build(name, seed=1), 1)
        outs = {}
        for bn in ("interpolate", "reset"):
            path = lmc.PathEvaluator(a, b, bn=bn, train_data=data, device="cpu")
            with torch.no_grad():
                outs[bn] = path.model_at(0.5)(x)
        assert lmc.has_batchnorm(a) == has_bn
        diff = float((outs["interpolate"] - outs["reset"]).abs().max())
        if has_bn:
            assert diff > 1e-2
        else:
            assert diff == 0.0


def test_reset_bn_equals_exact_statistics():
    model = models.build("resnet", seed=0)
    x = torch.randn(50, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    lmc.reset_bn(model, (x, torch.zeros(50, dtype=torch.long)), batch_size=16, device="cpu")
    with torch.no_grad():
        h = model.conv1(x)
    assert torch.allclose(model.bn1.running_mean, h.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(model.bn1.running_var, h.var((0, 2, 3), unbiased=True), atol=1e-4)


def test_repair_is_identity_when_endpoints_agree_and_rescales(digits_flat, trained_mlps):
    train, test = digits_flat
    a, b = trained_mlps
    sub = train.subset(300)
    same = lmc.PathEvaluator(a, copy.deepcopy(a), bn="repair", train_data=sub, device="cpu")
    with torch.no_grad():
        out = same.model_at(0.5)(test.X)
        assert torch.allclose(out, a(test.X), atol=1e-4)
    path = lmc.PathEvaluator(a, b, bn="repair", train_data=sub, device="cpu")
    model = path.model_at(0.5)
    from workbench.batchnorm import site_stats as _site_stats
    stats = _site_stats(model, path.sites, sub, batch_size=512, device=torch.device("cpu"))
    for site in path.sites[:1]:  # the first site is exact (later ones move with their inputs)
        target = 0.5 * path.stats_a[site][1] + 0.5 * path.stats_b[site][1]
        assert torch.allclose(stats[site][1], target, rtol=1e-4, atol=1e-6)


def test_layerwise_and_merge(digits_flat, trained_mlps):
    train, test = digits_flat
    a, b = trained_mlps
    lw = lmc.layerwise(a, copy.deepcopy(a), test, points=5, bn="interpolate")
    assert np.allclose(lw.table["value"], 0.0, atol=1e-6)
    assert set(lw.table["group"]) == {"layers.0", "layers.1", "head"}
    lw = lmc.layerwise(a, b, test, groups={"head": ["head.weight", "head.bias"]}, points=5, bn="interpolate")
    c = lw.curve[(lw.curve["base"] == "a") & (lw.curve["alpha"] == 0)]
    assert c["loss"].item() == pytest.approx(models.evaluate(a, test)["loss"], rel=1e-6)
    c = lw.curve[(lw.curve["base"] == "b") & (lw.curve["alpha"] == 1)]
    assert c["loss"].item() == pytest.approx(models.evaluate(b, test)["loss"], rel=1e-6)
    with pytest.raises(ValueError, match="groups\\['x'\\]"):
        lmc.layerwise(a, b, test, groups={"x": ["nope"]})
    merged = lmc.merge(a, b, alpha=0.5, bn="interpolate")
    assert torch.allclose(merged.head.weight, 0.5 * (a.head.weight + b.head.weight))
    with pytest.raises(ValueError, match="needs train_data="):
        lmc.merge(a, b, bn="repair")


def test_singular_alignment():
    w = torch.randn(20, 10, generator=torch.Generator().manual_seed(0))
    assert lmc.singular_alignment(w, w) == pytest.approx(1.0)
    assert lmc.singular_alignment(w, -w) == pytest.approx(1.0)
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(1))
    assert lmc.singular_alignment(w, w[perm]) < 0.9


def test_analyze_end_to_end(digits_flat, trained_mlps, tmp_path):
    train, test = digits_flat
    a, b = trained_mlps
    res = lmc.analyze((a, b), test, train_data=train.subset(400), points=9, refine=2, layer_points=3)
    s = res.summary()
    assert s.loc[("weight", "test"), "max_minus_mean"] < s.loc[("original", "test"), "max_minus_mean"] / 3
    assert set(res.merged["model"]) == {"original", "weight", "activation"}
    m = res.merged.set_index("model")["accuracy"]
    assert m["weight"] > m["original"]
    assert set(res.perms) == {"weight", "activation"}
    back = Result.load(res.save(tmp_path / "c"))
    pd.testing.assert_frame_equal(back.table, res.table)
    for fig in (figures.curves(res), figures.barrier_table(res), figures.layerwise(res),
                figures.diagnostics(res)):
        assert len(fig.data) > 0


@pytest.mark.gpu
def test_weight_matching_gpu_matches_cpu():
    model = models.build("mlp", seed=0, hidden=(256, 256))
    other = models.build("mlp", seed=1, hidden=(256, 256))
    cpu = lmc.align(model, other, device="cpu")
    gpu = lmc.align(model, other, device="cuda")
    for p in cpu.perms:
        assert (cpu.perms[p] == gpu.perms[p]).mean() > 0.95


def test_curve_agrees_with_parameter_space_core(digits_flat, trained_mlps):
    paramspace = pytest.importorskip("workbench.paramspace")
    _, test = digits_flat
    a, b = trained_mlps
    res = lmc.barrier(a, b, test, points=9, refine=0, bn="interpolate")
    ta, spec = paramspace.flatten(a)
    tb, _ = paramspace.flatten(b)
    alphas = torch.tensor(res.split_curve()["alpha"].to_numpy(), dtype=ta.dtype)
    thetas = (1 - alphas)[:, None] * ta[None] + alphas[:, None] * tb[None]
    ev = paramspace.evaluate_points(a, thetas, test, device="cpu")
    np.testing.assert_allclose(ev["loss"], res.split_curve()["loss"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ev["accuracy"], res.split_curve()["accuracy"])


def test_barrier_argument_errors_and_bn_fallback_warning():
    x = torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    data = (x, torch.randint(0, 10, (32,), generator=torch.Generator().manual_seed(1)))
    a, b = models.build("resnet", seed=0), models.build("resnet", seed=1)
    with pytest.raises(ValueError, match="bn='nope'"):
        lmc.barrier(a, b, data, bn="nope")
    with pytest.raises(ValueError, match="variant='max'"):
        lmc.barrier(a, b, data, variant="max")
    with pytest.raises(ValueError, match="points=2"):
        lmc.barrier(a, b, data, points=2)
    with pytest.warns(UserWarning, match="without train_data="):
        res = lmc.barrier(a, b, data, points=3, refine=0, bn="reset")
    assert res.settings["bn_data"] == "data" and res.settings["batchnorm"] is True
    c = res.split_curve()
    assert list(c["alpha"]) == [0.0, 0.5, 1.0]


# ------------------------------------------------------------------------------------------
# user-defined models, BatchNorm handling, refinement, loss conventions
# ------------------------------------------------------------------------------------------
class _UserCNN(nn.Module):
    """A plain user CNN with BatchNorm and no ``config``: flatten into a head sized for 28 x 28 inputs."""

    def __init__(self, seed=0, side=28):
        super().__init__()
        torch.manual_seed(seed)
        self.c1 = nn.Conv2d(1, 6, 3, padding=1)
        self.b1 = nn.BatchNorm2d(6)
        self.c2 = nn.Conv2d(6, 8, 3, padding=1)
        self.b2 = nn.BatchNorm2d(8)
        self.head = nn.Linear(8 * (side // 4) ** 2, 3)

    def forward(self, x):
        h = torch.max_pool2d(torch.relu(self.b1(self.c1(x))), 2)
        h = torch.max_pool2d(torch.relu(self.b2(self.c2(h))), 2)
        return self.head(h.flatten(1))


def _user_pair(side=28, n=48):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(n, 1, side, side, generator=gen)
    y = torch.randint(0, 3, (n,), generator=gen)
    a, b = _UserCNN(0, side), _UserCNN(1, side)
    for m in (a, b):  # stored statistics that differ from the data's
        m.train()
        with torch.no_grad():
            m(x[:8] * 2 + 1)
        m.eval()
    return a, b, (x, y)


def _bn_inputs(model, x, train_mode):
    """Mean and unbiased variance of every BatchNorm's input on ``x`` in one forward pass."""
    seen, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            hooks.append(m.register_forward_pre_hook(
                lambda mod, args, name=name: seen.__setitem__(name, args[0].detach().clone())))
    model.train(train_mode)
    with torch.no_grad():
        model(x)
    model.eval()
    for h in hooks:
        h.remove()
    return {k: (v.mean((0, 2, 3)), v.var((0, 2, 3), unbiased=True)) for k, v in seen.items()}


def test_repair_on_user_conv_bn_model():
    a, b, data = _user_pair(side=8)
    assert not hasattr(a, "config")
    res = lmc.barrier(a, b, data, train_data=data, points=5, refine=0, bn="repair", device="cpu")
    assert res.settings["bn"] == "repair" and res.settings["bn_endpoints"] == "repair"
    assert np.isfinite(res.curve["loss"]).all()
    path = lmc.PathEvaluator(a, b, bn="repair", train_data=data, batch_size=16, device="cpu")
    assert path.sites[:2] == ["b1", "b2"]
    model = path.model_at(0.3)
    from workbench.batchnorm import site_stats as _site_stats
    ds = wdata.as_dataset(data)
    got = _site_stats(model, ["b1"], ds, batch_size=16, device=torch.device("cpu"))["b1"]
    for k in (0, 1):  # the first site's mean and std are the interpolation of A's and B's
        target = 0.7 * path.stats_a["b1"][k] + 0.3 * path.stats_b["b1"][k]
        assert torch.allclose(got[k], target, rtol=1e-4, atol=1e-5)


def test_bn_reset_at_every_point_matches_landscape_interpolate():
    from workbench import landscape

    a, b, data = _user_pair(side=8, n=40)
    x, y = data
    test = (x[:24] * 0.5, y[:24])
    res = lmc.barrier(a, b, test, train_data=data, points=21, refine=0, bn="reset", evaluate_train=False,
                      batch_size=16, device="cpu")
    assert res.settings["bn_endpoints"] == "reset"
    c = res.split_curve()
    # the ends are the models with recomputed statistics, not with their stored ones
    a_reset = lmc.reset_bn(copy.deepcopy(a), data, batch_size=16, device="cpu")
    assert c["loss"].iloc[0] == pytest.approx(models.evaluate(a_reset, test, device="cpu")["loss"], rel=1e-5)
    assert abs(c["loss"].iloc[0] - models.evaluate(a, test, device="cpu")["loss"]) > 1e-3
    line = landscape.interpolate(a, b, data={"test": test}, steps=41, bn="reset", train_data=data, batch_size=16,
                                 device="cpu", progress=False)
    inside = (line.x > -1e-9) & (line.x < 1 + 1e-9)
    np.testing.assert_allclose(line.x[inside], c["alpha"], atol=1e-12)
    np.testing.assert_allclose(line.loss["test"][inside], c["loss"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(line.accuracy["test"][inside], c["accuracy"], atol=1e-12)


def test_reset_bn_pooled_statistics_equal_full_data_batch():
    paramspace = pytest.importorskip("workbench.paramspace")
    model = _UserCNN(0, side=8)
    gen = torch.Generator().manual_seed(0)
    # batches of 16 with very different means: averaging per-batch variances would miss the spread
    x = torch.randn(50, 1, 8, 8, generator=gen) + torch.arange(50).view(50, 1, 1, 1) / 10.0
    data = (x, torch.zeros(50, dtype=torch.long))
    exact = _bn_inputs(model, x, train_mode=True)  # one batch holding all the data, in training mode
    # several batches: the first BatchNorm (input independent of other BatchNorms) is exact
    m = lmc.reset_bn(copy.deepcopy(model), data, batch_size=16, device="cpu")
    assert torch.allclose(m.b1.running_mean, exact["b1"][0], atol=1e-5)
    assert torch.allclose(m.b1.running_var, exact["b1"][1], rtol=1e-5, atol=1e-6)
    # one batch covering the data: every layer is exact
    m1 = lmc.reset_bn(copy.deepcopy(model), data, batch_size=64, device="cpu")
    for name in ("b1", "b2"):
        bn = getattr(m1, name)
        assert torch.allclose(bn.running_mean, exact[name][0], atol=1e-5)
        assert torch.allclose(bn.running_var, exact[name][1], rtol=1e-5, atol=1e-6)
    # the parameter-space core uses the same estimator
    theta, spec = paramspace.flatten(model)
    bufs = batchnorm.reset_bn_buffers(model, theta, spec, wdata.as_dataset(data), batch_size=16,
                                       device=torch.device("cpu"))
    for k in ("b1.running_mean", "b1.running_var", "b2.running_mean", "b2.running_var"):
        assert torch.equal(bufs[k], m.state_dict()[k]), k


class _Bias3(nn.Module):
    """Three logits that depend only on the bias: the path's curves are known in closed form."""

    def __init__(self, bias):
        super().__init__()
        self.lin = nn.Linear(1, 3)
        with torch.no_grad():
            self.lin.weight.zero_()
            self.lin.bias.copy_(torch.tensor(bias))

    def forward(self, x):
        return self.lin(x)


def test_refinement_follows_every_curve_peak():
    # logits [5.5 - 10 a, 10 a - 6.5, 0]: class 2 wins only for a in (0.55, 0.65), so with labels 0 and 1
    # the error has a bump at 0.6; the loss (a function of a) has a bump at 0.3 and a deeper dip at 0.8
    a_model, b_model = _Bias3([5.5, -6.5, 0.0]), _Bias3([-4.5, 3.5, 0.0])

    def loss_fn(out, y):
        a = (5.5 - out[:, 0].mean()) / 10
        return 1 + 0.5 * torch.exp(-((a - 0.3) / 0.04) ** 2) - torch.exp(-((a - 0.8) / 0.04) ** 2)

    data = (torch.ones(8, 1), torch.tensor([0, 1] * 4))
    res = lmc.barrier(a_model, b_model, data, loss_fn=loss_fn, points=25, refine=4, bn="interpolate",
                      device="cpu")
    step = 1 / 24
    grid = set(np.round(np.linspace(0, 1, 25), 12)) | {0.5}
    c = res.split_curve()
    new = np.array([a for a in c["alpha"] if round(a, 12) not in grid])
    assert np.allclose(sorted(new), sorted(res.settings["refined"]))
    for peak in (0.3, 0.6, 0.8):  # max of the loss, the error bump, the signed-mc t* of the loss
        near = new[np.abs(new - peak) < step]
        assert len(near) >= 3, (peak, new)
    assert np.all(np.min(np.abs(new[:, None] - np.array([0.3, 0.6, 0.8])[None]), axis=1) < 2 * step)
    t = res.table.set_index(["metric", "variant"])["alpha"]
    assert abs(t[("loss", "max_minus_mean")] - 0.3) < step / 2
    assert abs(t[("loss", "signed_mc")] - 0.8) < step / 2
    assert abs(t[("error", "max_minus_mean")] - 0.6) < step
    assert res.barriers_["signed_mc"] == pytest.approx(1 - c["loss"].min())


def test_align_weight_infers_user_cnn_input_or_asks_for_data():
    a, b, data = _user_pair(side=28, n=8)
    inferred = lmc.align(a, b, method="weight", device="cpu")
    given = lmc.align(a, b, method="weight", data=data, device="cpu")
    assert set(inferred.perms) == set(given.perms) == {"P_c1", "P_c2"}
    for p in given.perms:
        np.testing.assert_array_equal(inferred.perms[p], given.perms[p])
    odd_a, odd_b = _UserCNN(0, side=12), _UserCNN(1, side=12)  # runs only on 12 x 12 inputs
    with pytest.raises(ValueError, match=r"pass data= .*data=\(X\[:4\], y\[:4\]\)"):
        lmc.align(odd_a, odd_b, method="weight", device="cpu")
    x = torch.randn(4, 1, 12, 12)
    assert set(lmc.align(odd_a, odd_b, data=(x, torch.zeros(4, dtype=torch.long)), device="cpu").perms) == \
        {"P_c1", "P_c2"}


def test_mse_loss_is_the_per_element_mean_everywhere():
    paramspace = pytest.importorskip("workbench.paramspace")
    gen = torch.Generator().manual_seed(0)
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    x, y = torch.randn(30, 4, generator=gen), torch.randn(30, 3, generator=gen)
    with torch.no_grad():
        whole = float(torch.nn.functional.mse_loss(a(x), y))
    ev = models.evaluate(a, (x, y), loss_fn=torch.nn.functional.mse_loss, batch_size=7, device="cpu")
    assert ev["loss"] == pytest.approx(whole, rel=1e-6)
    theta, _ = paramspace.flatten(a)
    ps = paramspace.evaluate_points(a, theta[None], (x, y), torch.nn.functional.mse_loss, batch_size=7, device="cpu")
    assert ps["loss"][0] == pytest.approx(whole, rel=1e-6)
    res = lmc.barrier(a, b, (x, y), loss_fn=torch.nn.functional.mse_loss, points=3, refine=0, bn="interpolate",
                      device="cpu")
    mid = nn.Linear(4, 3)
    mid.load_state_dict(lmc.interpolate_state(a.state_dict(), b.state_dict(), 0.5))
    c = res.split_curve().set_index("alpha")["loss"]
    with torch.no_grad():
        assert c[0.5] == pytest.approx(float(torch.nn.functional.mse_loss(mid(x), y)), rel=1e-6)


def test_improvement_reads_barriers_and_distances_before_and_after():
    table = pd.DataFrame([dict(model=m, split="test", metric="loss", variant="max_minus_mean", value=v)
                          for m, v in (("original", 0.4), ("weight", 0.04))])
    diag = pd.DataFrame([dict(model=m, layer="<all parameters>", l2=v) for m, v in (("original", 30.0),
                                                                                     ("weight", 25.0))])
    res = lmc.ConnectivityResult(settings={"variant": "max_minus_mean", "split": "test"}, table=table,
                                 diagnostics=diag)
    imp = res.improvement().set_index("model")
    assert imp.loc["weight", "ratio"] == pytest.approx(0.1) and imp.loc["original", "ratio"] == 1.0
    assert imp.loc["weight", "l2"] == 25.0 and imp.loc["weight", "l2_original"] == 30.0
