import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from workbench import spectra
from tests.optional import optional_module
from workbench.spectra.checkpoint import natural_key
from workbench.spectra.powerlaw import bootstrap_alpha, fit_powerlaw

figures = optional_module("workbench.spectra.figures")  # plotly: only the figure tests need it


def _matrix(singular, n=None, seed=0):
    """An n x m matrix with exactly the given singular values."""
    rng = np.random.default_rng(seed)
    m = len(singular)
    n = n or 2 * m
    u, _ = np.linalg.qr(rng.standard_normal((n, m)))
    v, _ = np.linalg.qr(rng.standard_normal((m, m)))
    return (u * np.asarray(singular)) @ v.T


def _model_of(*mats):
    seq = nn.Sequential(*[nn.Linear(w.shape[1], w.shape[0], bias=False, dtype=torch.float64) for w in mats])
    with torch.no_grad():
        for lin, w in zip(seq, mats):
            lin.weight.copy_(torch.as_tensor(w))
    return seq


def test_known_singular_values_give_exact_metrics():
    s = np.linspace(1.0, 5.0, 40)
    res = spectra.analyze(_model_of(_matrix(s)), progress=False, bootstrap=0, device="cpu")
    row = res.to_frame().iloc[0]
    np.testing.assert_allclose(res.esd(0), np.sort(s ** 2), rtol=1e-10)
    np.testing.assert_allclose(res.singular_values(0), np.sort(s)[::-1], rtol=1e-10)
    assert row["num_evals"] == 40 and row["N"] == 80 and row["M"] == 40
    assert row["lambda_max"] == pytest.approx(25.0)
    assert row["stable_rank"] == pytest.approx(np.sum(s ** 2) / 25.0)
    assert row["log_norm"] == pytest.approx(math.log10(np.sum(s ** 2)))
    assert row["log_spectral_norm"] == pytest.approx(math.log10(25.0))
    p = s / s.sum()
    assert row["effective_rank"] == pytest.approx(math.exp(-np.sum(p * np.log(p))))
    assert row["numerical_rank"] == 40
    assert row["alpha_weighted"] == pytest.approx(row["alpha"] * math.log10(25.0))
    assert row["log_alpha_norm"] == pytest.approx(math.log10(np.sum(s ** (2 * row["alpha"]))))
    # s_k = 1 + 4k/39, k = 0..39: sum s^2 evaluated exactly as a rational, not by the code under test
    from fractions import Fraction

    sq = sum((1 + Fraction(4 * k, 39)) ** 2 for k in range(40))
    assert row["norm"] == pytest.approx(float(sq), rel=1e-12)
    assert row["stable_rank"] == pytest.approx(float(sq / 25), rel=1e-12)
    # equal singular values: stable, effective and numerical rank all equal the size
    flat = spectra.analyze(_model_of(_matrix(np.full(10, 3.0))), progress=False, bootstrap=0,
                           device="cpu").to_frame().iloc[0]
    assert flat["stable_rank"] == pytest.approx(10.0, rel=1e-12)
    assert flat["effective_rank"] == pytest.approx(10.0, rel=1e-12)
    assert flat["numerical_rank"] == 10
    # one dominant direction: effective rank of p = (1 - e, e/9, ...) in closed form
    spike = spectra.analyze(_model_of(_matrix(np.r_[91.0, np.ones(9)])), progress=False, bootstrap=0,
                            device="cpu").to_frame().iloc[0]
    p1 = np.r_[0.91, np.full(9, 0.01)]
    assert spike["effective_rank"] == pytest.approx(math.exp(-np.sum(p1 * np.log(p1))), rel=1e-12)
    assert spike["stable_rank"] == pytest.approx((91.0 ** 2 + 9) / 91.0 ** 2, rel=1e-12)


def test_rank_r_plus_noise():
    rng = np.random.default_rng(1)
    w = _matrix([10.0, 8.0, 6.0] + [0.0] * 57, n=100) + 1e-9 * rng.standard_normal((100, 60))
    for method in ("gram", "svd"):
        row = spectra.analyze(_model_of(w), progress=False, bootstrap=0, method=method).to_frame().iloc[0]
        assert row["stable_rank"] == pytest.approx((100 + 64 + 36) / 100, rel=1e-6)
        # noise singular values ~2e-8 against 10: below the tolerance sqrt(max(N, M) * eps) = 1.5e-7
        assert row["numerical_rank"] == 3, method
        p = np.array([10.0, 8.0, 6.0]) / 24.0
        assert row["effective_rank"] == pytest.approx(math.exp(-np.sum(p * np.log(p))), rel=1e-5)


@pytest.mark.parametrize("method", ["gram", "svd"])
@pytest.mark.parametrize("weight_dtype", [torch.float64, torch.float32])
def test_numerical_rank_of_exact_low_rank_matrices(method, weight_dtype):
    rng = np.random.default_rng(7)
    for (n, m), r in [((100, 60), 1), ((100, 60), 3), ((60, 100), 3), ((200, 120), 10), ((80, 80), 40)]:
        u, _ = np.linalg.qr(rng.standard_normal((n, r)))
        v, _ = np.linalg.qr(rng.standard_normal((m, r)))
        w = (u * np.linspace(1.0, 10.0, r)) @ v.T
        model = _model_of(w).to(weight_dtype)
        row = spectra.analyze(model, progress=False, bootstrap=0, method=method, mp_fit=False,
                              device="cpu").to_frame().iloc[0]
        assert row["numerical_rank"] == r, (n, m, r)
    full = spectra.analyze(_model_of(_matrix(np.linspace(1.0, 2.0, 30))).to(weight_dtype), progress=False,
                           bootstrap=0, method=method, mp_fit=False).to_frame().iloc[0]
    assert full["numerical_rank"] == 30


def test_gaussian_versus_pareto_tails():
    rng = np.random.default_rng(0)
    gauss = rng.standard_normal((1000, 500))
    pareto = rng.pareto(1.5, (1000, 500)) * rng.choice([-1, 1], (1000, 500))
    res = spectra.analyze(_model_of(gauss, pareto.T), progress=False, bootstrap=100)
    a_gauss, a_pareto = res.to_frame()["alpha"]
    assert 8.0 < a_gauss < 12.0  # REFERENCE: about 9-10 for a 1000x500 Gaussian matrix
    # entries with tail index mu = 1.5 < 2: ESD tail exponent about 1 + mu / 2 = 1.75 (finite size: a bit more)
    assert 1.5 < a_pareto < 2.0
    t = res.to_frame()
    assert (t["alpha_lo"] <= t["alpha"]).all() and (t["alpha"] <= t["alpha_hi"]).all()
    assert list(t["quality"]) == ["under-trained", "over-trained"]
    from workbench.spectra.analyze import _quality

    assert [_quality(a) for a in (1.99, 2.0, 6.0, 6.01, np.nan)] == \
        ["over-trained", "well-trained", "well-trained", "under-trained", ""]


def test_hill_estimate_at_the_chosen_xmin_is_exact():
    x = np.array([1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 55.0, 89.0] * 3) * np.repeat([1, 1.01, 1.02], 10)
    fit = fit_powerlaw(x)
    tail = np.sort(x)[np.sort(x) >= fit.xmin]
    assert fit.num_tail == len(tail)
    assert fit.alpha == pytest.approx(1 + len(tail) / np.sum(np.log(tail / fit.xmin)), rel=1e-12)
    cdf_fit = 1 - (tail / fit.xmin) ** (1 - fit.alpha)
    assert fit.D == pytest.approx(np.max(np.abs(cdf_fit - np.arange(len(tail)) / len(tail))), rel=1e-10)


def test_bootstrap_is_seeded():
    rng = np.random.default_rng(3)
    ev = np.linalg.svd(rng.pareto(2.0, (300, 150)), compute_uv=False) ** 2
    fit = fit_powerlaw(ev)
    assert bootstrap_alpha(ev, fit, seed=4) == bootstrap_alpha(ev, fit, seed=4)
    lo, hi = bootstrap_alpha(ev, fit, seed=4, samples=400)
    assert lo < fit.alpha < hi


def test_conv_slices_pooled_and_scaled():
    conv = nn.Conv2d(8, 16, 3, bias=False)
    res = spectra.analyze(nn.Sequential(conv), progress=False, bootstrap=0)
    row = res.to_frame().iloc[0]
    assert (row["N"], row["M"], row["rf"], row["num_evals"]) == (16, 8, 9, 72)
    w = conv.weight.detach().double()
    expected = np.sort(np.concatenate([np.linalg.svd(w[:, :, i, j].numpy(), compute_uv=False) ** 2 * 0.5
                                       for i in range(3) for j in range(3)]))
    np.testing.assert_allclose(res.esd(0), expected, rtol=1e-9, atol=1e-12)


def test_supported_and_skipped_layers_are_listed():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(50, 16)
            self.attn = nn.MultiheadAttention(16, 2)
            self.norm = nn.LayerNorm(16)
            self.conv1 = nn.Conv1d(16, 16, 3)
            self.conv3 = nn.Conv3d(2, 2, 2)
            self.fc = nn.Linear(16, 4)

    res = spectra.analyze(Net(), progress=False, bootstrap=0)
    assert res.names == ["emb.weight", "attn.in_proj_weight[q]", "attn.in_proj_weight[k]",
                         "attn.in_proj_weight[v]", "attn.out_proj.weight", "conv1.weight", "fc.weight"]
    reasons = {s["name"]: s["reason"] for s in res.skipped}
    assert "norm layer" in reasons["norm.weight"] and "not supported" in reasons["conv3.weight"]
    no_emb = spectra.analyze(Net(), progress=False, bootstrap=0, embeddings=False)
    assert "emb.weight" not in no_emb.names and any("embedding" in s["reason"] for s in no_emb.skipped)


def test_state_dict_input_matches_module():
    m = nn.Sequential(nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 10))
    a = spectra.analyze(m, progress=False, bootstrap=0).to_frame()
    b = spectra.analyze(m.state_dict(), progress=False, bootstrap=0).to_frame()
    np.testing.assert_allclose(a["alpha"].to_numpy(), b["alpha"].to_numpy())
    assert list(b["name"]) == ["0.weight", "2.weight"]


def test_bad_input_names_the_layer():
    with pytest.raises(ValueError, match="no weight matrices"):
        spectra.analyze(nn.Sequential(nn.ReLU(), nn.LayerNorm(4)), progress=False)
    m = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    with torch.no_grad():
        m[1].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"layer '1.weight'.*non-finite"):
        spectra.analyze(m, progress=False)


def test_save_load_round_trip(tmp_path):
    res = spectra.analyze(nn.Sequential(nn.Linear(40, 30), nn.Linear(30, 10)), progress=False, bootstrap=20)
    back = spectra.SpectraResult.load(res.save(tmp_path / "spec"))
    assert type(back) is spectra.SpectraResult
    np.testing.assert_array_equal(back.evals, res.evals)
    assert back.to_frame().equals(res.to_frame()) and back.settings == res.settings


def test_welore_tau_solves_the_target():
    s1 = np.concatenate([np.linspace(0, 0.1, 80), np.linspace(0.5, 1, 20)])  # mostly small: a low-rank one
    s2 = np.linspace(0.0, 1.0, 100)
    res = spectra.analyze(_model_of(_matrix(s1 + 1e-3), _matrix(s2 + 1e-3, seed=1)), progress=False, bootstrap=0)
    plan = spectra.welore(res, reduction=0.5)
    assert plan.overall == pytest.approx(0.5)
    t = plan.to_frame()
    assert list(t["label"]) == ["LRC", "N-LRC"]
    assert t["kept_rank"].sum() == 100
    # by tau directly: min-max normalised values below tau are dropped
    p2 = spectra.welore(res, tau=0.3)
    n1 = (s1 - s1.min()) / (s1.max() - s1.min())
    assert p2.to_frame()["kept_rank"].iloc[0] == np.count_nonzero(n1 >= 0.3)


def test_compress_exact_low_rank_is_lossless():
    from workbench.data import Dataset

    w = _matrix([5.0, 3.0, 1.0] + [0.0] * 29, n=64)
    m = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10)).double()
    with torch.no_grad():
        m[0].weight.copy_(torch.as_tensor(w))
    x = torch.randn(50, 32, dtype=torch.float64)
    data = Dataset(x, m(x).argmax(1))
    rep = spectra.compress(m, data, plan={"0.weight": 3}, device="cpu")
    compressed = rep.model_
    assert rep.to_frame()["how"].tolist() == ["factorised"]
    torch.testing.assert_close(compressed(x), m(x))
    assert rep.params_after == rep.params_before - 32 * 64 + 3 * (32 + 64)
    assert rep.before["accuracy"] == rep.after["accuracy"] == 1.0


def test_compress_reference_mlp_reports_the_change():
    from workbench import data, models

    model = models.reference_model("mlp")
    _, test = data.digits()
    res = spectra.analyze(model, progress=False, bootstrap=0)
    plan = spectra.welore(res, reduction=0.6)
    rep = spectra.compress(model, test, plan=plan, only="all", device="cpu")
    assert rep.before["accuracy"] > 0.9
    assert rep.params_after < rep.params_before
    assert set(rep.delta) == {"loss", "accuracy"}


def test_figures():
    res = spectra.analyze(nn.Sequential(nn.Linear(200, 100), nn.Linear(100, 20)), progress=False, bootstrap=50)
    fig = figures.esd(res, "0.weight")
    assert [t.type for t in fig.data] == ["bar", "scatter"]
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    afig = figures.alpha(res)
    assert list(afig.data[0].y) == list(res.to_frame()["alpha"])
    assert {s.y0 for s in afig.layout.shapes} == {2, 6}
    wfig = figures.welore(spectra.welore(res, reduction=0.3))
    assert len(wfig.data[0].x) == 2


def _checkpoint_model():
    """A CNN + MLP whose weights come in natural name order (as a safetensors file is read)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 24, 3, bias=False), nn.Flatten(),
                         nn.Linear(24, 48), nn.ReLU(), nn.Linear(48, 48), nn.Linear(48, 32), nn.Linear(32, 10),
                         nn.Linear(10, 40), nn.Linear(40, 40), nn.Linear(40, 12))  # 12 modules: '11.weight'


def _save_sharded(state, folder, shards=3):
    """Shards of ``state`` in ``folder`` and the index json mapping each tensor to its shard."""
    from safetensors.torch import save_file

    folder.mkdir()
    names = list(state)
    weight_map = {}
    for k in range(shards):
        part = {n: state[n].contiguous() for n in names[k::shards]}
        fname = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        save_file(part, str(folder / fname))
        weight_map.update({n: fname for n in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def test_checkpoint_files_give_the_in_memory_numbers(tmp_path):
    from safetensors.torch import save_file

    model = _checkpoint_model()
    state = model.state_dict()
    weights = [k for k in state if k.endswith("weight")]
    assert weights == sorted(weights, key=natural_key)
    save_file(state, str(tmp_path / "model.safetensors"))
    torch.save(state, tmp_path / "model.pt")
    folder = _save_sharded(state, tmp_path / "sharded")
    bins = tmp_path / "bins"  # PyTorch shards and their index, as older Hugging Face checkpoints come
    bins.mkdir()
    names = list(state)
    for k, part in enumerate([names[:9], names[9:]]):
        torch.save({n: state[n] for n in part}, bins / f"pytorch_model-{k + 1}.bin")
    (bins / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"weight_map": {n: f"pytorch_model-{1 + (i >= 9)}.bin" for i, n in enumerate(names)}}))
    kw = dict(progress=False, bootstrap=30, device="cpu")
    ref = spectra.analyze(state, **kw)
    module = spectra.analyze(model, **kw)
    assert ref.names[-1] == "11.weight" and len(ref.names) == 9
    # the module path names modules' classes; everything else is the same, number for number
    cols = [c for c in spectra.COLUMNS if c != "module"]
    pd.testing.assert_frame_equal(module.table[cols], ref.table[cols], check_exact=True)
    for path in [tmp_path / "model.safetensors", str(tmp_path / "model.pt"), folder,
                 folder / "model.safetensors.index.json", bins]:
        res = spectra.analyze(path, **kw)
        pd.testing.assert_frame_equal(res.table, ref.table, check_exact=True)
        np.testing.assert_array_equal(res.evals, ref.evals)
        np.testing.assert_array_equal(res.offsets, ref.offsets)
        # the biases: the same list, in the file's order (natural name order for safetensors)
        assert res.skipped == (ref.skipped if str(path).endswith(".pt") else
                               sorted(ref.skipped, key=lambda s: natural_key(s["name"])))
        assert res.settings["model"] == "checkpoint" and res.settings["checkpoint"] == str(path)
        assert {k: v for k, v in res.settings.items() if not k.startswith(("checkpoint", "model"))} == \
            {k: v for k, v in ref.settings.items() if k != "model"} | {"batch_elements": 0}
    assert len(spectra.analyze(folder, **kw).settings["checkpoint_files"]) == 3
    # the shards without their index, and a budget that batches same-shape tensors: the same numbers
    (folder / "model.safetensors.index.json").unlink()
    pd.testing.assert_frame_equal(spectra.analyze(folder, **kw).table, ref.table, check_exact=True)
    batched = spectra.analyze(tmp_path / "model.safetensors", batch_elements=1 << 20, **kw)
    pd.testing.assert_frame_equal(batched.table, ref.table, check_exact=True)
    assert batched.settings["batch_elements"] == 1 << 20


def test_float16_checkpoint_and_file_order(tmp_path):
    from safetensors.torch import save_file

    half = {k: v.half() for k, v in _checkpoint_model().state_dict().items()}
    save_file(half, str(tmp_path / "half.safetensors"))
    kw = dict(progress=False, bootstrap=0, device="cpu")
    res = spectra.analyze(tmp_path / "half.safetensors", **kw)
    pd.testing.assert_frame_equal(res.table, spectra.analyze(half, **kw).table, check_exact=True)
    # a PyTorch file keeps its own order; a safetensors file is read in natural name order
    shuffled = {k: half[k] for k in ["8.weight", "0.weight", "11.weight", "2.weight"]}
    torch.save(shuffled, tmp_path / "shuffled.pt")
    save_file(shuffled, str(tmp_path / "shuffled.safetensors"))
    assert spectra.analyze(tmp_path / "shuffled.pt", **kw).names == list(shuffled)
    assert spectra.analyze(tmp_path / "shuffled.safetensors", **kw).names == \
        ["0.weight", "2.weight", "8.weight", "11.weight"]


def test_checkpoint_kinds_and_skipped_entries(tmp_path):
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    state = {
        "model.embed_tokens.weight": torch.randn(50, 16, generator=g),
        "transformer.wte.weight": torch.randn(40, 16, generator=g),
        "embeddings.LayerNorm.weight": torch.ones(16),
        "patch_embed.proj.weight": torch.randn(16, 3, 2, 2, generator=g),
        "h.0.attn.c_attn.weight": torch.randn(16, 48, generator=g),
        "conv1d.weight": torch.randn(8, 4, 3, generator=g),
        "position_ids": torch.arange(16)[None],
        "bn.num_batches_tracked": torch.tensor(3),
        "cube.weight": torch.randn(2, 2, 2, 2, 2, generator=g),
    }
    save_file(state, str(tmp_path / "m.safetensors"))
    kw = dict(progress=False, bootstrap=0, device="cpu")
    for embeddings in (True, False):
        res = spectra.analyze(tmp_path / "m.safetensors", embeddings=embeddings, **kw)
        kinds = dict(zip(res.names, res.table["kind"]))
        table = [("conv1d.weight", "conv1d"), ("h.0.attn.c_attn.weight", "dense"),
                 ("model.embed_tokens.weight", "embedding"), ("patch_embed.proj.weight", "conv2d"),
                 ("transformer.wte.weight", "embedding")]
        assert kinds == {n: k for n, k in table if embeddings or k != "embedding"}
        reasons = {s["name"]: s["reason"] for s in res.skipped}
        assert reasons["embeddings.LayerNorm.weight"] == "1-D tensor: no weight matrix"
        assert reasons["position_ids"] == "non-float tensor (torch.int64), e.g. a buffer"
        assert reasons["bn.num_batches_tracked"] == "non-float tensor (torch.int64), e.g. a buffer"
        assert reasons["cube.weight"] == "5-D tensor: no weight matrix"
        assert (reasons.get("model.embed_tokens.weight") == "embedding (embeddings=False)") == (not embeddings)
        # a state dict in memory is read by the same rules
        mem = spectra.analyze({k: state[k] for k in sorted(state, key=natural_key)},
                              embeddings=embeddings, **kw)
        pd.testing.assert_frame_equal(res.table, mem.table, check_exact=True)
        assert res.skipped == mem.skipped
    conv = res.table.set_index("name").loc["conv1d.weight"]
    assert (conv["N"], conv["M"], conv["rf"]) == (8, 4, 3)
    w = state["conv1d.weight"].double()
    expected = np.sort(np.concatenate([np.linalg.svd(w[:, :, k].numpy(), compute_uv=False) ** 2 * 0.5
                                       for k in range(3)]))
    np.testing.assert_allclose(res.esd("conv1d.weight"), expected, rtol=1e-9)


def test_checkpoint_errors_name_the_path_and_the_fix(tmp_path):
    from safetensors.torch import save_file

    kw = dict(progress=False, bootstrap=0, device="cpu")
    with pytest.raises(FileNotFoundError, match=r"'.*nope\.safetensors': no such file or folder\. Give a "):
        spectra.analyze(tmp_path / "nope.safetensors", **kw)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"folder '.*empty' is empty\. Point at the folder"):
        spectra.analyze(tmp_path / "empty", **kw)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"'.*other' holds no \.safetensors file and no index.*config\.json"):
        spectra.analyze(tmp_path / "other", **kw)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"unknown file type '\.txt'"):
        spectra.analyze(tmp_path / "notes.txt", **kw)
    for k in (1, 2):
        torch.save({"w": torch.randn(4, 4)}, tmp_path / "other" / f"run{k}.pt")
    with pytest.raises(ValueError, match=r"no \.safetensors file but 2 PyTorch files and 0 indexes.*pass the "):
        spectra.analyze(tmp_path / "other", **kw)
    folder = _save_sharded(_checkpoint_model().state_dict(), tmp_path / "sharded")
    (folder / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"names shard files that are not in .*model-00002-of-00003"):
        spectra.analyze(folder, **kw)
    # a tensor in two shards without an index, a pickled module, a non-finite weight, no matrices at all
    (tmp_path / "dup").mkdir()
    for k in (1, 2):
        save_file({"fc.weight": torch.randn(4, 4)}, str(tmp_path / "dup" / f"part{k}.safetensors"))
    with pytest.raises(ValueError, match=r"'fc.weight' is in both .*part1.* and .*part2.*add the index"):
        spectra.analyze(tmp_path / "dup", **kw)
    torch.save(nn.Linear(3, 4), tmp_path / "module.pt")  # a pickled module is a model spec: loaded, not streamed
    assert list(spectra.analyze(tmp_path / "module.pt", **kw).to_frame()["name"]) == ["weight"]
    with pytest.raises(ValueError, match=r"module\.pt' holds more than tensors .*pass the model"):
        spectra.checkpoint.CheckpointReader(tmp_path / "module.pt")
    torch.save({"model": nn.Linear(3, 4).state_dict(), "epoch": 3}, tmp_path / "train.pt")
    with pytest.raises(ValueError, match=r"dicts under \['model'\].*\['model'\]\)"):
        spectra.analyze(tmp_path / "train.pt", **kw)
    bad = {"a.weight": torch.randn(6, 6), "b.weight": torch.randn(6, 6)}
    bad["b.weight"][2, 3] = float("inf")
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match=r"layer 'b.weight' \(state_dict\) in '.*bad\.safetensors' has 1 "
                                         r"non-finite"):
        spectra.analyze(tmp_path / "bad.safetensors", **kw)
    save_file({"bias": torch.zeros(4)}, str(tmp_path / "vector.safetensors"))
    with pytest.raises(ValueError, match=r"checkpoint '.*vector\.safetensors' has no weight matrices.*bias: 1-D"):
        spectra.analyze(tmp_path / "vector.safetensors", **kw)


def test_old_format_pt_file_is_loaded_whole_with_a_warning(tmp_path):
    state = _checkpoint_model().state_dict()
    torch.save(state, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    kw = dict(progress=False, bootstrap=0, device="cpu")
    with pytest.warns(UserWarning, match="old serialisation format.*loaded whole"):
        res = spectra.analyze(tmp_path / "old.pt", **kw)
    pd.testing.assert_frame_equal(res.table, spectra.analyze(state, **kw).table, check_exact=True)


_PEAK_SCRIPT = r"""
import json, sys
import torch
from workbench import spectra

torch.set_num_threads(2)

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))

def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:  # VmHWM back to the current resident size
        f.write("5")

spectra.analyze({"w": torch.randn(64, 32)}, progress=False, bootstrap=0, device="cpu")  # warm up
out = {}
for path in sys.argv[1:]:
    reset_peak()
    base = status("VmRSS")
    res = spectra.analyze(path, progress=False, bootstrap=0, device="cpu")
    out[path] = {"growth": status("VmHWM") - base, "rows": len(res.names)}
reset_peak()  # and the instrument does see a model held in memory
base = status("VmRSS")
held = torch.load(sys.argv[2], weights_only=True)
out["whole"] = {"growth": status("VmHWM") - base, "rows": len(held)}
print(json.dumps(out))
"""


def test_streaming_memory_stays_far_below_the_checkpoint(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from safetensors.torch import save_file

    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pytest.skip("needs Linux /proc/self/clear_refs to measure the peak resident memory")
    g = torch.Generator().manual_seed(0)
    state = {f"layers.{i}.weight": torch.randn(1024, 1024, generator=g) for i in range(24)}
    save_file(state, str(tmp_path / "big.safetensors"))
    torch.save(state, tmp_path / "big.pt")
    del state
    size = (tmp_path / "big.safetensors").stat().st_size  # 100 MB of float32
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
               OMP_WAIT_POLICY="PASSIVE")
    paths = [str(tmp_path / "big.safetensors"), str(tmp_path / "big.pt")]
    run = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, *paths], capture_output=True, text=True, env=env,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    one = 2 * 1024 * 1024 * 8  # one matrix and its Gram matrix in float64: 16 MB
    assert out["whole"]["growth"] > 0.9 * size  # the measurement does see a model held in memory
    for path in paths:
        assert out[path]["rows"] == 24
        assert out[path]["growth"] < 0.4 * size, (path, out[path]["growth"] / 2 ** 20)
        assert out[path]["growth"] < 3 * one, (path, out[path]["growth"] / 2 ** 20)


weightwatcher = pytest.importorskip("weightwatcher")


def _weightwatcher_frame(model, **kwargs):
    import logging

    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return weightwatcher.WeightWatcher(model=model).analyze(**kwargs)
    finally:
        logging.disable(logging.NOTSET)


def _matched(ours, theirs):
    """Our rows for weightwatcher's layers, matched by module path (weightwatcher's ``longname``)."""
    module = ours["name"].str.replace(r"\.weight$", "", regex=True)
    by_module = ours.assign(module=module).set_index("module")
    assert set(theirs["longname"]) <= set(by_module.index), set(theirs["longname"]) - set(by_module.index)
    return by_module.loc[list(theirs["longname"])].reset_index()


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet"])
def test_agrees_with_weightwatcher(name):
    from workbench import models

    # trained reference models for mlp/cnn; the ResNet (BatchNorm, 1x1 shortcut, conv stem) as built
    model = models.build("resnet") if name == "resnet" else models.reference_model(name)
    theirs = _weightwatcher_frame(model)
    ours = spectra.analyze(model, progress=False, bootstrap=0).to_frame()
    # weightwatcher analyses every matrix with at least min_evals eigenvalues, and only those
    assert sorted(theirs["longname"]) == sorted(n[:-len(".weight")] for n in ours["name"][ours["num_evals"] >= 8])
    mine = _matched(ours, theirs)
    for col in ["alpha", "alpha_weighted", "stable_rank", "log_norm", "log_spectral_norm", "num_evals", "N", "M",
                "rf"]:
        np.testing.assert_allclose(mine[col].to_numpy(dtype=float), theirs[col].to_numpy(dtype=float),
                                   rtol=1e-6, atol=1e-7, err_msg=col)


def test_fit_agrees_with_weightwatcher_fit():
    from weightwatcher.WW_powerlaw import WWFit

    rng = np.random.default_rng(5)
    for shape, pareto in [((600, 300), False), ((400, 200), True), ((30, 15), False), ((24, 12), True)]:
        w = rng.pareto(2.0, shape) if pareto else rng.standard_normal(shape)
        ev = np.linalg.svd(w, compute_uv=False) ** 2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = WWFit(ev[ev > 1e-5])
        ours = fit_powerlaw(ev)
        assert ours.alpha == pytest.approx(ref.alpha, rel=1e-10)
        assert ours.xmin == pytest.approx(ref.xmin, rel=1e-12)
        assert ours.D == pytest.approx(ref.D, rel=1e-8)


def test_mp_softrank_matches_weightwatcher():
    rng = np.random.default_rng(11)
    spike = _matrix(np.r_[30.0, np.zeros(49)], n=150, seed=2)  # one large spike on a Gaussian bulk
    mats = [rng.standard_normal((150, 50)), rng.standard_normal((60, 60)), rng.standard_normal((150, 50)) + spike]
    model = nn.Sequential(_model_of(*mats), nn.Conv2d(4, 8, 3, bias=False).double())
    theirs = _weightwatcher_frame(model, mp_fit=True)
    ours = spectra.analyze(model, progress=False, bootstrap=0, method="svd").to_frame()
    assert [n.rsplit(".", 1)[0] for n in ours["name"]] == list(theirs["longname"])
    np.testing.assert_allclose(ours["mp_softrank"], theirs["mp_softrank"], rtol=1e-6)
    gauss, square, spiked, conv = ours["mp_softrank"]
    assert 0.9 < gauss < 1.2 and 0.9 < square < 1.2  # all bulk: the MP edge is about the largest eigenvalue
    # a rank-one signal of strength 30 on 150 x 50 noise: top eigenvalue ~ (900 + 150)(900 + 50) / 900
    # = 1108 against the bulk edge (sqrt(150) + sqrt(50))^2 = 373, a ratio of 0.34 (the fitted edge sits a
    # little higher: the spike inflates the rescaling), far below the all-bulk values near 1
    assert 0.3 < spiked < 0.45


def test_every_parameter_is_analysed_or_listed():
    from torch.nn.utils import parametrizations

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Parameter(torch.randn(16, 8))  # a loose matrix
            self.wn = parametrizations.weight_norm(nn.Linear(8, 16))
            self.sn = parametrizations.spectral_norm(nn.Linear(16, 16))
            self.mha = nn.MultiheadAttention(8, 2, kdim=6, vdim=5)  # separate q/k/v projections
            self.cube = nn.Parameter(torch.randn(2, 3, 4))
            self.temp = nn.Parameter(torch.tensor(1.0))
            self.head = nn.Linear(8, 16, bias=False)
            self.head.weight = self.proj  # tied

    torch.manual_seed(0)
    net = Net()
    u_before = net.sn.parametrizations.weight[0]._u.clone()
    res = spectra.analyze(net, progress=False, bootstrap=0, device="cpu")
    assert res.names == ["proj", "wn.weight", "sn.weight", "mha.q_proj_weight", "mha.k_proj_weight",
                         "mha.v_proj_weight", "mha.out_proj.weight"]
    torch.testing.assert_close(net.sn.parametrizations.weight[0]._u, u_before)  # no power step taken
    assert net.sn.training
    # parametrised layers: the ESD is that of the effective weight (read in eval mode: no power step)
    net.eval()
    for name, mod in [("wn.weight", net.wn), ("sn.weight", net.sn)]:
        expected = np.linalg.svd(mod.weight.detach().double().numpy(), compute_uv=False) ** 2
        np.testing.assert_allclose(res.esd(name), np.sort(expected), rtol=1e-6)
    reasons = {s["name"]: s["reason"] for s in res.skipped}
    named = dict(net.named_parameters(remove_duplicate=False))
    assert set(reasons) | set(res.names) >= set(named) - {"wn.weight", "sn.weight"}
    assert "analysed as the effective weight" in reasons["wn.parametrizations.weight.original0"]
    assert "analysed as the effective weight" in reasons["sn.parametrizations.weight.original"]
    assert "bias" in reasons["wn.bias"] and "bias" in reasons["mha.in_proj_bias"]
    assert "3-D" in reasons["cube"] and "scalar" in reasons["temp"]
    assert reasons["head.weight"] == "shared with 'proj' (analysed there)"


def test_hook_based_weight_norm_uses_the_current_weight():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lin = torch.nn.utils.weight_norm(nn.Linear(12, 20).double())
    with torch.no_grad():
        lin.weight_g.mul_(3.0)  # the stored .weight is stale until the next forward
    res = spectra.analyze(nn.Sequential(lin), progress=False, bootstrap=0, device="cpu")
    assert res.names == ["0.weight"]
    w = lin.weight_v.detach() * (lin.weight_g.detach() / lin.weight_v.detach().norm(dim=1, keepdim=True))
    np.testing.assert_allclose(res.esd(0), np.sort(np.linalg.svd(w.numpy(), compute_uv=False) ** 2), rtol=1e-10)
    assert {s["name"] for s in res.skipped} == {"0.weight_g", "0.weight_v", "0.bias"}
    # compressing folds the parametrisation into a plain weight of the copy; the original keeps its hook
    x = torch.randn(3, 12, dtype=torch.float64)
    lin(x).sum().backward()  # the cached .weight is now a non-leaf tensor, which a plain deepcopy refuses
    rep = spectra.compress(nn.Sequential(lin), plan={"0.weight": 12}, device="cpu")
    out = rep.model_
    assert rep.to_frame()["how"].tolist() == ["reconstructed (parametrisation folded in)"]
    torch.testing.assert_close(out(x), lin(x))  # full rank: the same map
    assert "weight_g" in dict(lin.named_parameters()) and "weight_g" not in dict(out[0].named_parameters())


def _rank(w: torch.Tensor) -> int:
    return int(torch.linalg.matrix_rank(w.detach().float()))  # float32 tolerance: the weights are float32


def test_compress_attention_root_linear_and_parametrised_weights():
    from torch.nn.utils import parametrizations

    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, kdim=6, vdim=5)  # separate q/k/v projections
    packed = nn.MultiheadAttention(8, 2)
    model = nn.ModuleDict({"mha": mha, "packed": packed, "wn": parametrizations.weight_norm(nn.Linear(40, 30))})
    state = {k: v.clone() for k, v in model.state_dict().items()}
    plan = {"mha.q_proj_weight": 2, "mha.k_proj_weight": 3, "packed.in_proj_weight[k]": 1, "wn.weight": 4}
    rep = spectra.compress(model, plan=plan, device="cpu")
    out = rep.model_
    assert out is not model
    for k, v in model.state_dict().items():  # the caller's model is untouched
        torch.testing.assert_close(v, state[k], rtol=0, atol=0)
    assert _rank(out["mha"].q_proj_weight) == 2 and _rank(out["mha"].k_proj_weight) == 3
    torch.testing.assert_close(out["mha"].v_proj_weight, mha.v_proj_weight)
    w = out["packed"].in_proj_weight
    assert _rank(w[8:16]) == 1
    torch.testing.assert_close(w[:8], packed.in_proj_weight[:8])
    torch.testing.assert_close(w[16:], packed.in_proj_weight[16:])
    assert isinstance(out["wn"], spectra.LowRankLinear) and out["wn"].rank == 4
    assert rep.to_frame()["how"].tolist() == ["reconstructed"] * 3 + ["factorised (parametrisation folded in)"]
    # the factorised layer is the best rank-4 approximation of the effective weight
    x = torch.randn(5, 40)
    u, s, vh = torch.linalg.svd(model["wn"].weight.detach())
    w4 = (u[:, :4] * s[:4]) @ vh[:4]
    torch.testing.assert_close(out["wn"](x), x @ w4.T + model["wn"].bias.detach(), rtol=1e-4, atol=1e-5)

    # a root nn.Linear: its matrix is called "weight" and the returned model is the factorised layer
    root = nn.Linear(32, 64, bias=False).double()
    with torch.no_grad():
        root.weight.copy_(torch.as_tensor(_matrix([5.0, 3.0, 1.0] + [0.0] * 29, n=64)))
    rep = spectra.compress(root, plan={"weight": 3}, device="cpu")
    low = rep.model_
    assert isinstance(low, spectra.LowRankLinear) and type(root) is nn.Linear
    xx = torch.randn(4, 32, dtype=torch.float64)
    torch.testing.assert_close(low(xx), root(xx))


def test_compress_rejects_bad_ranks_naming_the_layer():
    model = nn.ModuleDict({"attn": nn.MultiheadAttention(8, 2), "fc": nn.Linear(8, 4)})
    before = model["fc"].weight.clone()
    with pytest.raises(ValueError, match=r"rank for 'attn.in_proj_weight\[v\]' is 9: give 1 <= rank <= 8"):
        spectra.compress(model, plan={"attn.in_proj_weight[v]": 9}, device="cpu")
    with pytest.raises(ValueError, match=r"rank for 'fc.weight' is 0: give 1 <= rank <= 4"):
        spectra.compress(model, plan={"attn.in_proj_weight[q]": 2, "fc.weight": 0}, device="cpu", inplace=True)
    torch.testing.assert_close(model["fc"].weight, before)  # validated before anything changed
    with pytest.raises(ValueError, match=r"rank for 'fc.weight' is 5"):
        spectra.compress(model, plan={"fc.weight": 5}, device="cpu")
    with pytest.raises(KeyError, match="no module 'nope'"):
        spectra.compress(model, plan={"nope.weight": 1}, device="cpu")


@pytest.mark.gpu
def test_cuda_agrees_with_cpu():
    from workbench import models

    torch.manual_seed(0)
    model = nn.Sequential(models.build("cnn"), nn.Linear(300, 200))
    numeric = ["lambda_max", "norm", "stable_rank", "effective_rank", "numerical_rank", "alpha", "alpha_lo",
               "alpha_hi", "xmin", "ks_distance", "alpha_weighted", "log_alpha_norm"]
    for method in ("gram", "svd"):
        cpu = spectra.analyze(model, device="cpu", method=method, progress=False, bootstrap=50)
        gpu = spectra.analyze(model, device="cuda", method=method, progress=False, bootstrap=50)
        assert gpu.settings["device"].startswith("cuda") and cpu.names == gpu.names
        np.testing.assert_allclose(gpu.evals, cpu.evals, rtol=1e-9, atol=1e-12 * cpu.evals.max())
        a, b = cpu.to_frame(), gpu.to_frame()
        for col in numeric:
            np.testing.assert_allclose(b[col].to_numpy(float), a[col].to_numpy(float), rtol=1e-7, err_msg=col)
        # the MP fit polishes sigma with Nelder-Mead (xtol 1e-4): agreement to that tolerance
        np.testing.assert_allclose(b["mp_softrank"], a["mp_softrank"], rtol=1e-4)


@pytest.mark.gpu
def test_compress_on_cuda_leaves_the_model_on_cpu():
    from workbench.data import Dataset

    m = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    x = torch.randn(40, 16)
    rep = spectra.compress(m, Dataset(x, m(x).argmax(1)), plan={"0.weight": 2}, device="cuda")
    out = rep.model_
    assert rep.settings["device"].startswith("cuda") and rep.before["accuracy"] == 1.0
    assert all(p.device.type == "cpu" for p in m.parameters())
    assert all(p.device.type == "cpu" for p in out.parameters())


def test_a_torchscript_module_gives_the_table_of_its_eager_module():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=2),
                        nn.Flatten(), nn.Linear(8 * 16, 20), nn.Embedding(30, 12))
    eager = spectra.analyze(net, bootstrap=0, progress=False)
    scripted = spectra.analyze(torch.jit.script(net), bootstrap=0, progress=False)
    pd.testing.assert_frame_equal(eager.to_frame(), scripted.to_frame())
    assert list(eager.to_frame()["kind"]) == ["conv2d", "dense", "embedding"]
    assert [s["reason"] for s in scripted.skipped] == [s["reason"] for s in eager.skipped]
    assert any("grouped convolution" in s["reason"] for s in scripted.skipped)


def test_thin_fits_lists_alphas_resting_on_few_points():
    rng = np.random.default_rng(0)
    # 200 eigenvalues but a Gaussian spectrum's power-law tail is short; 12 eigenvalues; 4 (too few for an alpha)
    res = spectra.analyze(_model_of(rng.standard_normal((400, 200)), rng.standard_normal((30, 12)),
                                    rng.standard_normal((8, 4))), bootstrap=0, progress=False)
    t = res.table.set_index("name")
    assert np.isnan(t.loc["2.weight", "alpha"]) and t.loc["0.weight", "num_pl_spikes"] < 10
    thin = res.thin_fits()
    assert list(thin["name"]) == ["0.weight", "1.weight"]  # the short tail, the small matrix; no alpha: not listed
    assert list(thin["num_evals"]) == [200, 12]
    assert list(res.thin_fits(min_tail=0)["name"]) == ["1.weight"]
    assert res.thin_fits(min_evals=12, min_tail=0).empty
    assert list(res.thin_fits(min_evals=13, min_tail=0)["name"]) == ["1.weight"]
