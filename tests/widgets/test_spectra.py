import numpy as np
from torch import nn

from widgets.spectra import SpectraPanel


def test_run_fills_table_and_figures():
    p = SpectraPanel(model="mlp", bootstrap=0, background=False)
    p.run()
    assert p.error is None, p.error_area.value
    assert list(p.widgets["layer"].options) == ["layers.0.weight", "layers.1.weight", "head.weight"]
    assert ">weighted α<" in p.table.value and ">tail eigenvalues<" in p.table.value  # headers, not code names
    assert "num_evals" not in p.table.value and "α low" not in p.table.value  # no interval without bootstrap
    alpha = p.result.to_frame()["alpha"].iloc[0]
    assert f">{alpha:.3g}<" in p.table.value  # three significant digits
    assert "Not analysed: 3 parameters" in p.skipped.value
    for name in ("layers.0.bias", "layers.1.bias", "head.bias"):
        assert f"<li><code>{name}</code>: 1-D bias of Linear: no matrix</li>" in p.skipped.value
    assert len(p.figures["esd"].data) == 2
    assert list(p.figures["alpha"].data[0].y) == list(p.result.to_frame()["alpha"])
    before = p.plan.overall
    p.set_control("tau", 0.3)  # re-plans without recomputing spectra
    assert p.plan.overall > before and p.runs == 1
    p.widgets["layer"].value = p.result.names[-1]
    assert p.result.names[-1] in p.figures["esd"].layout.title.text


def test_user_model_and_error_shown():
    good = nn.Sequential(nn.Linear(30, 20), nn.Linear(20, 5))
    p = SpectraPanel(model=good, model_name="mine", bootstrap=0, background=False)
    assert p.widgets["model"].value == "mine"
    p.run()
    assert p.result.names == ["0.weight", "1.weight"]
    bad = SpectraPanel(model=nn.Sequential(nn.ReLU()), bootstrap=0, background=False)
    bad.run()
    assert isinstance(bad.error, ValueError) and "no weight matrices" in bad.error_area.value
    assert np.isfinite(p.result.to_frame()["stable_rank"]).all()
    p.user_model = nn.Sequential(nn.ReLU())  # a failed run leaves no layer of the earlier result to choose
    p.run()
    assert p.result is None and p.plan is None and list(p.widgets["layer"].options) == [] and p.is_empty("esd")
