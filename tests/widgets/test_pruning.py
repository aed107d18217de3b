import numpy as np
import pytest
import torch

from widgets.pruning import PruningPanel
from workbench.data import digits
from workbench.pruning import REGIMES


@pytest.fixture(scope="module")
def small():
    tr, te = digits()
    return tr.subset(300, seed=0), te.subset(150, seed=0)


def test_panel_runs_and_draws(small):
    before = torch.get_num_threads()
    p = PruningPanel(data=small[1], train_data=small[0], values="1, 3", densities="0.1, 0.5",
                     retrain_epochs=1, points=5)
    try:
        p.run_button.click()
        p.wait(300)
    finally:
        torch.set_num_threads(before)
    assert p.error is None, p.error_area.value
    frame = p.result.to_frame()
    assert len(frame) == 4 and set(frame["regime"]) <= set(REGIMES)
    assert np.asarray(p.figures["mc"].data[0].z).shape == (2, 2)
    np.testing.assert_allclose(np.asarray(p.figures["cka"].data[0].z, dtype=float),
                               p.result.pivot("cka").to_numpy(), rtol=1e-12)
    assert p.figures["regime"].data[0].type == "heatmap" and "<table" in p.table.value
    assert p.progress.value == 1.0


def test_panel_knob_defaults_and_bad_input(small):
    p = PruningPanel(data=small[1], train_data=small[0], background=False)
    p.widgets["knob"].value = "batch_size"
    assert p.widgets["values"].value == "256, 64, 16"
    p.widgets["densities"].value = "0.1, 2"
    p.run()
    assert isinstance(p.error, ValueError) and p.runs == 0  # refused before anything ran
    assert "densities: must be list of float in (0, 1], got 2" in p.error_area.value


def test_panel_estimates_before_running(small):
    before = torch.get_num_threads()
    p = PruningPanel(data=small[1], train_data=small[0], values="1, 2", densities="0.1, 0.3, 0.5",
                     retrain_epochs=1, points=5, background=False)
    try:
        p.estimate_button.click()
    finally:
        torch.set_num_threads(before)
    assert p.cost is not None and (p.cost.cells, p.cost.todo) == (6, 6)
    assert p.cost.estimated_seconds == pytest.approx(6 * p.cost.seconds_per_cell + p.cost.setup_seconds)
    assert "before running: 6 of 6 cells to run" in p.estimate_label.value
    assert p.result is None  # nothing was run
    p.widgets["densities"].value = "0.1, 2"
    assert p.cost is None and p.estimate_label.value == ""  # the estimate was for the old grid
    p.estimate_button.click()
    assert "densities: must be list of float in (0, 1]" in p.error_area.value and p.cost is None
