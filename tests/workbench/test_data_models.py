import pytest
import torch

from workbench import data, models


def test_digits_split_fixed_and_disjoint():
    tr, te = data.digits(seed=0)
    tr2, te2 = data.digits(seed=0)
    assert len(tr) + len(te) == 1797
    assert torch.equal(tr.X, tr2.X) and torch.equal(te.y, te2.y)
    assert tr.X.shape[1] == 64 and float(tr.X.max()) <= 1.0
    img, _ = data.digits(image=True)
    assert img.X.shape[1:] == (1, 8, 8)
    assert set(te.y.tolist()) == set(range(10))


def test_as_dataset_accepts_forms():
    X, y = torch.randn(10, 3), torch.arange(10) % 2
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=3)
    for form in [(X, y), torch.utils.data.TensorDataset(X, y), loader, (X.numpy(), y.numpy())]:
        ds = data.as_dataset(form)
        assert torch.allclose(ds.X, X) and torch.equal(ds.y, y)
    assert sum(len(b[1]) for b in data.as_dataset((X, y)).batches(4)) == 10


def test_bad_data_errors():
    with pytest.raises(ValueError, match="same first dimension"):
        data.Dataset(torch.zeros(3, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="empty"):
        data.Dataset(torch.zeros(0, 2), torch.zeros(0))
    with pytest.raises(ValueError, match="NaN"):
        data.Dataset(torch.tensor([[float("nan")]]), torch.zeros(1))


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet"])
def test_reference_models_learn_digits(name):
    tr, te = data.digits(image=name != "mlp")
    model = models.build(name, seed=1)
    before = models.evaluate(model, te)["accuracy"]
    hist = models.train(model, tr, epochs=6, seed=1, progress=False, test_data=te)
    after = models.evaluate(model, te)["accuracy"]
    assert before < 0.3 and after > 0.85
    assert list(hist.history["epoch"]) == [1, 2, 3, 4, 5, 6]


def test_training_is_seeded_and_checkpoints(tmp_path):
    tr, _ = data.digits()
    a, b = models.build("mlp", seed=0), models.build("mlp", seed=0)
    ha = models.train(a, tr, epochs=1, seed=5, progress=False, checkpoint_every=0.5, checkpoint_dir=tmp_path)
    models.train(b, tr, epochs=1, seed=5, progress=False)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert ha.checkpoint_epochs[0] == 0 and ha.checkpoint_epochs[-1] == pytest.approx(1.0)
    assert len(list(tmp_path.glob("*.pt"))) == len(ha.checkpoints)
    # last checkpoint equals the final weights
    last = ha.checkpoint_states()[-1]
    assert torch.equal(last["head.weight"], a.head.weight.detach())


def test_nan_loss_is_named():
    X = torch.randn(32, 64)
    y = torch.randint(0, 10, (32,))
    model = models.build("mlp")
    with pytest.raises(FloatingPointError, match="lower lr"):
        models.train(model, (X * 1e30, y), epochs=2, lr=1e10, progress=False)


def test_save_load_round_trip(tmp_path):
    model = models.build("cnn", seed=2)
    p = models.save_model(model, tmp_path / "m.pt")
    back = models.load(p)
    x = torch.randn(4, 1, 8, 8)
    assert torch.allclose(model(x), back(x))
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ValueError, match="arch="):
        models.load(tmp_path / "sd.pt")
    back2 = models.load(tmp_path / "sd.pt", arch="cnn")
    assert torch.allclose(model(x), back2(x))
    with pytest.raises(ValueError, match="does not match"):
        models.load(tmp_path / "sd.pt", arch="mlp")


def test_minilm_loads_offline():
    model, tok = models.minilm(with_tokenizer=True)
    assert sum(p.numel() for p in model.parameters()) == 22_713_216
    batch = tok(["a cat sat on the mat", "stocks fell sharply"], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch).last_hidden_state
    assert out.shape[-1] == 384 and torch.isfinite(out).all()


# ------------------------------------------------------------------------------------------ cost of a pass
def test_examples_within_a_budget():
    from workbench.models import examples_within

    # 60 s for 100 passes at 10 ms an example: 60 examples; never more than there are, never below the floor
    assert examples_within(60, 0.01, 100, available=1000) == 60
    assert examples_within(60, 0.01, 100, available=40) == 40
    assert examples_within(1, 0.01, 100, available=1000, minimum=32) == 32
    assert examples_within(1, 0.01, 100, available=20, minimum=32) == 20
    assert examples_within(5, 0.0, 100, available=300) == 300
    with pytest.raises(ValueError, match="seconds=0"):
        examples_within(0, 0.01, 10, available=100)


def test_pass_seconds_times_the_model_and_leaves_it_as_it_was():
    from workbench.models import build, pass_seconds

    torch.manual_seed(0)
    net = build("mlp")
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ds = data.digits()[1]
    cost = pass_seconds(net, ds, n=16, device="cpu")
    assert cost["examples"] == 16 and 0 < cost["forward"] < 1 and 0 < cost["backward"] < 1
    assert net.training and all(p.grad is None for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    with pytest.raises(ValueError, match="data"):  # data the model cannot take: the probe's error
        pass_seconds(net, (torch.zeros(4, 7), torch.zeros(4, dtype=torch.long)), device="cpu")
