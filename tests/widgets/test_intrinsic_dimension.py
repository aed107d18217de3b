import pytest

from widgets.intrinsic_dimension import IntrinsicDimensionPanel
from workbench import data, models


def _tiny_controls(**kw):
    base = dict(seeds=1, epochs=2, d_min=5, d_max=200, n_train=300, method="grid")
    base.update(kw)
    return base


def test_panel_runs_search_and_profile():
    p = IntrinsicDimensionPanel(**_tiny_controls())
    p.run_button.click()
    p.wait(300)
    assert p.error is None, p.error_area.value
    res, prof = p.result["search"], p.result["profile"]
    fig = p.figures["search"]
    assert list(fig.data[0].x) == list(res.trials["d"])
    assert any(abs(s.y0 - res.target) < 1e-12 for s in fig.layout.shapes)  # the 90 % line
    if res.reached:
        assert any(s.x0 == res.d_int90 for s in fig.layout.shapes)
        assert f"d_int90 = {int(res.d_int90)}" in p.summary.value
    assert list(p.figures["profile"].data[0].x) == list(prof.frame["layer"])
    assert res.settings["split"] == "test" and res.settings["projection"] == "fastfood"


def test_panel_custom_model_shuffled_labels_and_errors():
    tr, te = data.digits()
    net = models.build("mlp", seed=0, hidden=(16,))
    p = IntrinsicDimensionPanel(model=net, data=te, train_data=tr, background=False,
                                **_tiny_controls(labels="shuffled", projection="sparse", estimator="mle"))
    assert p.widgets["model"].value == "custom"
    p.run()
    assert p.error is None, p.error_area.value
    assert p.result["search"].settings["split"] == "train"  # memorisation is measured on the training set
    assert p.result["profile"].settings["estimator"] == "mle"
    runs = p.runs
    p.set_control("d_min", 500)
    p.set_control("d_max", 100)
    p.run()
    assert isinstance(p.error, ValueError) and "d min (500) must be below d max (100)" in p.error_area.value
    assert p.runs == runs
    with pytest.raises(TypeError, match="together"):
        IntrinsicDimensionPanel(model=net)


def test_panel_takes_a_built_in_model_by_name():
    p = IntrinsicDimensionPanel(model="cnn", **_tiny_controls())
    assert p.widgets["model"].value == "cnn" and "custom" not in p.widgets["model"].options
    with pytest.raises(TypeError, match="built-in model"):
        IntrinsicDimensionPanel(model="mlp", data=data.digits()[0])
