import pytest

from widgets.connectivity import ConnectivityPanel
from workbench import data as wdata
from workbench import models


@pytest.fixture(scope="module")
def pair():
    return models.reference_model("mlp", seed=0), models.reference_model("mlp", seed=1)


def test_panel_with_given_models_draws_curves_table_and_layers(pair):
    train, test = wdata.digits()
    a, b = pair
    p = ConnectivityPanel(model_a=a, model_b=b, data=test, train_data=train.subset(300), points=9,
                          activation=False)
    assert p.widgets["source"].value == "given"
    p.run_button.click()
    p.wait(120)
    assert p.error is None, p.error_area.value
    res = p.result
    s = res.summary()
    assert s.loc[("weight", "test"), "max_minus_mean"] < s.loc[("original", "test"), "max_minus_mean"] / 3
    names = {t.name for t in p.figures["curves"].data}
    assert names == {"as trained, test", "as trained, train", "aligned by weights, test", "aligned by weights, train"}
    # the drawn test curve is the result's curve
    tr = next(t for t in p.figures["curves"].data if t.name == "as trained, test")
    c = res.curve[(res.curve["model"] == "original") & (res.curve["split"] == "test")].sort_values("alpha")
    assert list(tr.y) == pytest.approx(list(c["loss"]))
    assert ">max minus chord<" in p.table.value and ">signed mc<" in p.table.value
    assert "max_minus_chord" not in p.table.value
    assert "weight" in p.merged_table.value
    assert len(p.figures["layers"].data) == 4 and len(p.figures["diagnostics"].data) == 4


def test_panel_trains_two_seeds():
    p = ConnectivityPanel(epochs=1, points=5, weight=False, activation=False, layerwise=False, background=False)
    p.run()
    assert p.error is None, p.error_area.value
    assert set(p.result.curve["model"]) == {"original"}
    assert p.result.table["value"].notna().all()


def test_panel_errors_are_shown(pair):
    assert "given" not in [v for _, v in ConnectivityPanel().widgets["source"].options]
    with pytest.raises(TypeError, match="source='given' needs the two models"):
        ConnectivityPanel(source="given", background=False)
    with pytest.raises(ValueError, match="pass both model_a= and model_b="):
        ConnectivityPanel(model_a=pair[0])


def test_panel_loads_model_files(pair, tmp_path):
    pa = models.save_model(pair[0], tmp_path / "a.pt")
    pb = models.save_model(pair[1], tmp_path / "b.pt")
    p = ConnectivityPanel(source="files", path_a=str(pa), path_b=str(pb), points=5, activation=False,
                          layerwise=False, background=False)
    p.run()
    assert p.error is None, p.error_area.value
    s = p.result.summary()
    assert s.loc[("weight", "test"), "max_minus_mean"] < s.loc[("original", "test"), "max_minus_mean"]
    p = ConnectivityPanel(source="files", background=False)
    p.run()
    assert "needs both file A and file B" in p.error_area.value


def test_panel_clears_layer_chart_when_layerwise_is_off():
    train, test = wdata.digits()
    a, b = models.build("mlp", seed=0, hidden=(16, 16)), models.build("mlp", seed=1, hidden=(16, 16))
    p = ConnectivityPanel(model_a=a, model_b=b, data=test.subset(100), train_data=train.subset(100), points=5,
                          weight=False, activation=False, layerwise=True, background=False)
    p.run()
    assert p.error is None, p.error_area.value
    assert len(p.figures["layers"].data) == 2  # original: rest at A, rest at B
    p.widgets["layerwise"].value = False
    p.run()
    assert p.error is None, p.error_area.value
    assert len(p.result.layerwise) == 0
    assert len(p.figures["layers"].data) == 0
    assert p.is_empty("layers") and "not computed" in p.figures["layers"].layout.annotations[0].text


def test_panel_rejects_a_name_for_a_model():
    a = models.build("mlp", seed=0, hidden=(8,))
    with pytest.raises(TypeError, match="model_b must be a torch.nn.Module.*arch="):
        ConnectivityPanel(model_a=a, model_b="mlp", background=False)
    with pytest.raises(ValueError, match="pass both model_a= and model_b="):
        ConnectivityPanel(model_a=a, background=False)
