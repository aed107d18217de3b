import types

import numpy as np
import pytest
import torch

from tests.widgets.toys import tiny_landscape
from widgets.landscape import LandscapePanel
from workbench.data import Dataset


def test_panel_draws_plane_and_inspects_points():
    model, data = tiny_landscape()
    p = LandscapePanel(model=model, data=data, steps=5, span=0.5, log=False, device="cpu")
    p.run_button.click()
    p.wait(60)
    assert p.error is None, p.error_area.value
    res = p.result.plane
    contour = p.figures["contour"].data[0]
    np.testing.assert_allclose(np.asarray(contour.z, dtype=float), res.loss["test"])
    assert len(p.figures["surface"].data) == 1 and len(p.figures["slices"].data) == 4
    # clicking a grid point shows its loss and accuracy on both splits
    got = p.show_point(0.26, -0.24)
    assert got["train"]["x"] == 0.25 and got["train"]["y"] == -0.25
    assert got["test"]["loss"] == pytest.approx(res.loss["test"][1, 3])
    p._on_click(contour, types.SimpleNamespace(xs=[0.0], ys=[0.0], point_inds=[[2, 2]]))
    assert "x=0.000, y=0.000" in p.point_info.value and "test" in p.point_info.value
    # colour controls redraw without recomputing: log colour and fixed levels
    runs = p.runs
    p.set_control("zmax", 1.0)
    p.set_control("zmin", -1.0)
    p.widgets["log"].value = True
    assert p.runs == runs
    z = np.asarray(p.figures["contour"].data[0].z, dtype=float)
    np.testing.assert_allclose(z, np.log10(res.loss["test"]))
    assert p.figures["contour"].data[0].contours.start == -1.0


def test_panel_hessian_spectrum():
    model, data = tiny_landscape()
    p = LandscapePanel(model=model, data=data, steps=3, hessian=True, device="cpu", background=False)
    p.run()
    assert p.error is None, p.error_area.value
    eig = p.result.eigen.eigenvalues
    assert list(eig) == sorted(eig, reverse=True)
    spec = p.figures["spectrum"]
    assert len(spec.data) == 2 and np.trapezoid(spec.data[0].y, spec.data[0].x) == pytest.approx(1.0, abs=0.02)
    np.testing.assert_allclose(np.asarray(spec.data[1].x, float), eig)  # the top eigenvalues, marked
    # unchecking the Hessian and running again leaves no old spectrum on show
    p.widgets["hessian"].value = False
    p.run()
    assert p.error is None, p.error_area.value
    assert p.result.eigen is None and len(p.figures["spectrum"].data) == 0


def test_panel_shows_errors():
    model, data = tiny_landscape()
    p = LandscapePanel(model=model, data=data, steps=3, device="cpu", background=False)
    p.user_data = {"test": Dataset(torch.randn(5, 4), torch.zeros(5, dtype=torch.long), "bad")}
    p.run()
    assert p.status.value.startswith("Failed after") and isinstance(p.error, ValueError)
    assert "cannot be evaluated on data with X of shape (5, 4)" in p.error_area.value


def test_panel_model_name_selects_the_builtin_model():
    p = LandscapePanel(model="mlp", steps=3, span=0.2, device="cpu", background=False)
    assert p.user_model is None and p.widgets["model"].value == "mlp"
    p.run()
    assert p.error is None, p.error_area.value
    res = p.result.plane
    assert res.settings["model"] != "str" and set(res.splits) == {"train", "test"}
    assert res.x[1] == 0.0 and np.isfinite(res.loss["test"]).all()
    assert LandscapePanel(model="cnn", background=False).widgets["model"].value == "cnn"
    with pytest.raises(TypeError, match="model must be a torch.nn.Module or a built-in name"):
        LandscapePanel(model=3)

