"""Bringing your own model, data and graph: every spec form, built on the fly (no downloads)."""
import copy

import networkx as nx
import numpy as np
import pytest
import torch
import torch.nn as nn

from tests.inputs import build
from workbench import data as wdata
from workbench import intrinsic_dimension as idim
from workbench import landscape, models, spectra
from workbench import topology as tp
from workbench.validation import InputError

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    return build.hf_folders(tmp_path_factory.mktemp("hf"))


def test_hugging_face_folder_keeps_its_own_layer_names(hf):
    m = models.load(hf / "bert")
    own = transformers.BertForSequenceClassification.from_pretrained(hf / "bert")
    assert isinstance(m, models.TokenModel) and m.has_head
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in own.named_parameters()]
    table = spectra.analyze(m, progress=False, bootstrap=0).to_frame()
    assert "bert.encoder.layer.0.attention.self.query.weight" in set(table["name"])
    ref = spectra.analyze(own, progress=False, bootstrap=0).to_frame()
    np.testing.assert_allclose(table["alpha"], ref["alpha"], equal_nan=True)


def test_token_data_and_the_loss_of_a_classifier(hf):
    m = models.load(hf / "bert")
    ds = wdata.load(hf / "val.npz")
    assert ds.X.shape == (24, 2, 10) and ds.y.tolist()[:4] == [0, 1, 2, 0]
    ev = models.evaluate(m, ds, device="cpu")
    ids, mask = ds.X[:, 0], ds.X[:, 1]
    with torch.no_grad():
        logits = m.hf(input_ids=ids, attention_mask=mask).logits
    assert ev["loss"] == pytest.approx(float(nn.functional.cross_entropy(logits, ds.y)), rel=1e-5)
    assert ev["accuracy"] == pytest.approx(float((logits.argmax(1) == ds.y).float().mean()))
    # the centre of a loss map is the model's own loss
    plane = landscape.plane(m, ds, steps=3, span=0.1, device="cpu", progress=False)
    assert plane.loss["data"][1, 1] == pytest.approx(ev["loss"], rel=1e-5)


def test_padding_never_counts_in_representations(hf):
    m = models.load(hf / "bert")
    ids, _ = build.tokens(n=12, length=6, pad_every=0, seed=3)
    short = wdata.from_arrays({"input_ids": ids, "labels": np.zeros(12, dtype=int)})
    padded_ids = np.concatenate([ids, np.zeros((12, 4), dtype=ids.dtype)], 1)
    padded_mask = np.concatenate([np.ones_like(ids), np.zeros((12, 4), dtype=ids.dtype)], 1)
    padded = wdata.from_arrays({"input_ids": padded_ids, "attention_mask": padded_mask, "labels": np.zeros(12, int)})
    a = idim.activations(m, short, n=None, device="cpu")
    b = idim.activations(m, padded, n=None, device="cpu")
    assert set(a) == set(b) == {"bert.encoder.layer.0", "bert.encoder.layer.1"}  # the blocks, no token ids
    for layer in a:
        assert a[layer].shape == (12, 16)
        torch.testing.assert_close(a[layer], b[layer], rtol=1e-4, atol=1e-5)


def test_language_model_loss_matches_the_model_s_own(hf):
    g = models.load(hf / "gpt2")
    lm = wdata.load(hf / "lm.npz")
    assert g.is_causal_lm and torch.equal(lm.y, lm.X[:, 0])  # without labels the targets are the ids
    ev = models.evaluate(g, lm, device="cpu")
    with torch.no_grad():
        own = g.hf(input_ids=lm.X[:, 0], labels=lm.X[:, 0]).loss  # no padding: mean token loss
    assert ev["loss"] == pytest.approx(float(own), rel=1e-5) and np.isnan(ev["accuracy"])
    top = landscape.eigenvalues(g, lm.subset(8), k=1, max_iter=4, device="cpu", progress=False)
    assert np.isfinite(top.eigenvalues[0])


def test_a_bare_encoder_has_no_loss(tmp_path):
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32)
    transformers.BertModel(cfg).save_pretrained(tmp_path / "enc")
    enc = models.load(tmp_path / "enc")
    assert not enc.has_head
    ids, mask = build.tokens(n=6)
    ds = wdata.from_arrays({"input_ids": ids, "attention_mask": mask, "labels": np.zeros(6, int)})
    with pytest.raises(InputError, match="bare encoder"):
        models.evaluate(enc, ds)
    with pytest.raises(InputError, match="bare encoder"):
        landscape.plane(enc, ds, steps=3, progress=False)
    assert idim.activations(enc, ds, n=None)["encoder.layer.0"].shape == (6, 16)


@pytest.fixture(scope="module")
def cnn_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cnn")
    return build.cnn_files(root), root


def test_import_path_with_weights(cnn_files):
    net, root = cnn_files
    x = torch.randn(5, 3, 12, 12)
    for weights in ("w.safetensors", "w.pt"):
        m = models.load("tests.inputs.nets:ResidualCNN", weights=root / weights)
        with torch.no_grad():
            torch.testing.assert_close(m(x), net.eval()(x))
    with pytest.raises(ValueError, match=r"wrong shape, e\.g\. 'stem\.weight' is \(4, 3, 3, 3\)"):
        models.load("tests.inputs.nets:ResidualCNN", weights=root / "narrow.pt")
    other = {"stem.weight": torch.zeros(8, 3, 3, 3), "extra": torch.zeros(1)}
    torch.save(other, root / "partial.pt")
    partial = r"19 missing key\(s\) \['block\.bn1\.bias'.*1 unexpected key\(s\) \['extra'\]"
    with pytest.raises(ValueError, match=partial):
        models.load("tests.inputs.nets:ResidualCNN", weights=root / "partial.pt")
    with pytest.raises(ValueError, match="holds only weights"):
        models.load(root / "w.safetensors")
    assert models.load(root / "w.safetensors", arch="tests.inputs.nets:ResidualCNN").head.weight.shape == (4, 8)
    with pytest.raises(ImportError, match="cannot import 'tests.inputs.nope'"):
        models.load("tests.inputs.nope:Net")


def test_pickled_and_torchscript_modules(cnn_files):
    net, root = cnn_files
    x = torch.randn(3, 3, 12, 12)
    whole, scripted = models.load(root / "whole.pt"), models.load(root / "scripted.pt")
    assert isinstance(scripted, torch.jit.ScriptModule)
    with torch.no_grad():
        torch.testing.assert_close(whole(x), net.eval()(x))
        torch.testing.assert_close(scripted(x), net.eval()(x))
    eager = spectra.analyze(net, bootstrap=0, progress=False).to_frame()
    script = spectra.analyze(scripted, bootstrap=0, progress=False).to_frame()
    assert list(script["name"]) == list(eager["name"])
    np.testing.assert_allclose(script["alpha"], eager["alpha"], equal_nan=True)
    assert list(script["kind"]) == list(eager["kind"])  # the convolutions are read as convolutions


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    return build.image_folder(tmp_path_factory.mktemp("images"))


def test_image_folder_is_read_resized_and_normalised(image_folder, cnn_files):
    ds = wdata.load(image_folder, image_size=12)
    assert ds.X.shape == (20, 3, 12, 12) and ds.classes == ["cat", "dog", "eel", "fox"]
    assert ds.y.tolist() == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 5
    np.testing.assert_allclose(ds.X.mean(dim=(0, 2, 3)).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(ds.X.std(dim=(0, 2, 3), unbiased=False).numpy(), 1, atol=1e-4)
    raw = wdata.load(image_folder, image_size=12, normalize=None)
    assert 0 <= float(raw.X.min()) and float(raw.X.max()) <= 1
    net, _ = cnn_files
    res = landscape.analyze(net, ds, steps=3, k=1, max_iter=3, trace_vectors=2, density_runs=1, density_steps=3,
                            device="cpu", progress=False)
    assert res.plane.loss["data"][1, 1] == pytest.approx(models.evaluate(net, ds, device="cpu")["loss"], rel=1e-5)
    with pytest.raises(InputError, match=r"on data with X of shape \(20, 3, 12, 12\).*expects \(N, 64\) features"):
        landscape.plane(models.build("mlp"), ds, steps=3, progress=False)


def test_npz_csv_import_path_and_splits(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 6)).astype(np.float32), rng.integers(0, 3, 40)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    ds = wdata.load(tmp_path / "d.npz")
    assert ds.X.shape == (40, 6) and ds.y.dtype == torch.int64 and torch.equal(ds.y, torch.as_tensor(y))
    import pandas as pd

    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)]).assign(label=np.array(["a", "b", "c"])[y])
    frame.to_csv(tmp_path / "d.csv", index=False)
    csv = wdata.load(tmp_path / "d.csv")
    torch.testing.assert_close(csv.X, ds.X)
    assert torch.equal(csv.y, ds.y)  # class names numbered in sorted order
    frame.assign(kind="x").to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"feature columns \['kind'\] are not numeric"):
        wdata.load(tmp_path / "bad.csv")
    held, train = wdata.pair(tmp_path / "d.npz", seed=3)
    assert len(held) == 10 and len(train) == 30 and "held out" in held.name
    again, _ = wdata.pair(tmp_path / "d.npz", seed=3)
    assert torch.equal(again.X, held.X)  # the split is seeded
    m = models.load("tests.inputs.nets:small_mlp")
    ev = models.evaluate(m, tmp_path / "d.npz")  # a data spec wherever data is taken
    assert np.isfinite(ev["loss"])
    with pytest.raises(FileNotFoundError, match="no_such.npz"):
        wdata.load("no_such.npz")


def test_edge_list_with_string_ids_keeps_them(tmp_path):
    karate, names = build.string_id_edges(tmp_path / "club.tsv")
    g = tp.load_graph(tmp_path / "club.tsv")
    assert g.num_nodes == 34 and g.num_edges == 78 and set(g.labels) == set(names.values())
    tc = tp.concentration(tp.EdgeSplit(train=g.edges, val=np.zeros((0, 2), int), test=np.zeros((0, 2), int),
                                       num_nodes=g.num_nodes), k=1)
    relabelled = nx.relabel_nodes(karate, names)
    clustering = nx.clustering(relabelled)
    np.testing.assert_allclose(tc.train, [clustering[label] for label in g.labels], atol=1e-12)
    report = tp.analyze(tmp_path / "club.tsv", k=1, epochs=2, seed=0, progress=False)
    assert list(report.nodes["node_id"]) == [str(v) for v in g.labels]


def test_graph_arrays_with_their_splits(tmp_path):
    e = np.array([[0, 1], [1, 2], [2, 0], [2, 3], [3, 4], [4, 0]])
    np.savez(tmp_path / "g.npz", edge_index=e[:4].T, test_edge_index=e[4:].T, num_nodes=6)
    split = tp.load_graph(tmp_path / "g.npz")
    assert isinstance(split, tp.EdgeSplit) and split.num_nodes == 6
    assert len(split.train) == 4 and len(split.test) == 2 and len(split.val) == 0
    np.savez(tmp_path / "all.npz", edge_index=e.T)
    assert tp.load_graph(tmp_path / "all.npz").num_edges == 6


def test_specs_are_taken_wherever_models_and_data_are(cnn_files, image_folder, tmp_path):
    net, root = cnn_files
    spec = "tests.inputs.nets:ResidualCNN"
    plane = landscape.plane(spec, wdata.load(image_folder, image_size=12), steps=3, progress=False)
    assert plane.settings["model"] == "ResidualCNN"
    b = copy.deepcopy(net)
    with torch.no_grad():
        b.head.weight.mul_(0.5)
    torch.save(b, tmp_path / "b.pt")
    from workbench import connectivity

    res = connectivity.barrier(root / "whole.pt", tmp_path / "b.pt", wdata.load(image_folder, image_size=12),
                               points=3, refine=0, bn="interpolate", progress=False)
    assert res.curve["alpha"].tolist()[0] == 0.0


def test_worst_nodes_are_the_lowest_performance_with_their_ids(tmp_path):
    build.string_id_edges(tmp_path / "club.tsv")
    report = tp.analyze(tmp_path / "club.tsv", k=1, epochs=2, seed=0, progress=False)
    worst = report.worst_nodes(5, target="hits@10")
    ev = report.nodes[report.nodes["n_test"].notna()]
    assert len(worst) == min(5, len(ev)) and worst["hits@10"].is_monotonic_increasing
    assert worst["hits@10"].iloc[-1] <= ev["hits@10"].drop(worst.index).min()
    assert all(v.startswith("member-") for v in worst["node_id"])
