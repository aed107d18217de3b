"""What every panel shares: an empty state before a run, a legend, hidden controls that do not apply, and
inputs validated as typed (no slider snapping, no silent clamping)."""
import html

import numpy as np
import pytest
from torch import nn

from tests.widgets.toys import tiny_landscape
from widgets.connectivity import ConnectivityPanel
from widgets.intrinsic_dimension import IntrinsicDimensionPanel
from widgets.landscape import POINT_HINT, LandscapePanel
from widgets.pruning import PruningPanel
from widgets.spectra import SpectraPanel
from widgets.topology import TopologyPanel

PANELS = [SpectraPanel, ConnectivityPanel, LandscapePanel, PruningPanel, IntrinsicDimensionPanel, TopologyPanel]


def _shown(p, name):
    return p.widgets[name].layout.display != "none"


@pytest.mark.parametrize("cls", PANELS, ids=lambda c: c.__name__)
def test_before_a_run_each_figure_says_what_it_will_show(cls):
    p = cls(background=False)
    assert p.result is None and p.status.value == "Not run yet"
    assert set(p.figure_hints) == set(p.figure_names)  # every figure has its one line
    for name, fig in p.figures.items():
        assert len(fig.data) == 0 and p.is_empty(name)
        text = fig.layout.annotations[0].text
        assert text.startswith("<b>Press Run to compute</b>") and p.figure_hints[name][:20] in text
    assert p.legend and "wb-legend" in p.children[0].value
    free_text = {"path_a", "path_b"}  # file names: checked when loaded
    assert all(name in p.checks for name, w in p.widgets.items() if type(w).__name__ == "Text"
               and name not in free_text)  # every typed number is validated before a run


def test_the_spectra_bootstrap_keeps_what_was_typed():
    model = nn.Sequential(nn.Linear(40, 30), nn.Linear(30, 20))
    p = SpectraPanel(model=model, bootstrap=20, background=False)  # a step-50 slider made this 0
    assert p.widgets["bootstrap"].value == "20"
    p.run()
    assert p.error is None, p.error_area.value
    assert p.result.settings["bootstrap"] == 20 and np.isfinite(p.result.table["alpha_lo"]).any()
    assert "rests on few points" in p.notice.value and "<code>1.weight</code> (20 eigenvalues" in p.notice.value


def test_a_threshold_out_of_range_is_refused_not_clamped():
    p = IntrinsicDimensionPanel(threshold=1.5, background=False)  # a bounded box made this 1.0
    p.run()
    assert p.runs == 0 and p.result is None
    assert "<li>threshold: must be float in (0, 1], got 1.5 (float)</li>" in p.error_area.value
    p.set_control("seeds", "two")
    p.run()
    shown = html.unescape(p.error_area.value)
    assert "fix these inputs" in shown and "<li>seeds: must be int >= 1, got 'two' (str)</li>" in shown
    assert "<li>threshold:" in shown and p.runs == 0


def test_controls_that_do_not_apply_are_hidden():
    c = ConnectivityPanel(source="reference")
    assert not _shown(c, "path_a") and not _shown(c, "epochs") and _shown(c, "seed_a")
    c.set_control("source", "files")
    assert _shown(c, "path_a") and _shown(c, "path_b") and not _shown(c, "seed_a") and not _shown(c, "arch")
    c.set_control("source", "train")
    assert _shown(c, "epochs") and not _shown(c, "path_b")
    pr = PruningPanel()
    assert not _shown(pr, "dense_epochs") and _shown(pr, "dense_lr")  # knob epochs: its values are the epochs
    pr.set_control("knob", "lr")
    assert _shown(pr, "dense_epochs") and not _shown(pr, "dense_lr") and pr.widgets["values"].value == "0.01, 0.05, 0.2"
    i = IntrinsicDimensionPanel()
    assert _shown(i, "tolerance") and not _shown(i, "grid_points")
    i.set_control("method", "grid")
    assert not _shown(i, "tolerance") and _shown(i, "grid_points")
    t = TopologyPanel()
    assert not _shown(t, "nodes") and _shown(t, "epochs")
    t.set_control("graph_name", "sbm")
    t.set_control("model", "cn")
    assert _shown(t, "nodes") and not _shown(t, "epochs")
    assert not _shown(TopologyPanel(graph=np.array([[0, 1], [1, 2]])), "graph_name")
    ls = LandscapePanel()
    assert not _shown(ls, "k") and not _shown(ls, "max_iter")
    ls.set_control("hessian", True)
    assert _shown(ls, "k") and _shown(ls, "max_iter")


def test_the_clicked_point_goes_with_the_inputs_it_was_computed_for():
    model, data = tiny_landscape(40, 20)
    p = LandscapePanel(model=model, data=data, steps=5, device="cpu", background=False)
    p.run()
    p.show_point(0.0, 0.0)
    assert "point x=0.000" in p.point_info.value
    p.set_control("span", "0.5")
    assert p.point_info.value == POINT_HINT and p.stale and "span" in p.stale_note.value
    p.run()
    p.show_point(0.0, 0.0)
    p.set_control("steps", "4")  # refused: the point of the map on show stays
    p.run()
    assert "grid steps: must be odd int >= 3, got 4" in html.unescape(p.error_area.value)
    p.set_control("steps", "5")
    p.set_control("zmin", "2")  # a colour control: redraws, nothing goes stale
    p.set_control("zmax", "1")
    shown = html.unescape(p.error_area.value)
    assert "Not redrawn" in shown and "colour range: 'to' (1) must be above 'from' (2)" in shown and not p.stale
    p.set_control("zmax", "3")
    assert p.error_area.value == "" and p.figures["contour"].data[0].contours.start == 2.0


def test_side_by_side_figures_share_the_panel_width_or_wrap():
    p = LandscapePanel()
    p.cell.set_state({"width": 968})  # the browser reports the panel's width (JupyterLab at 1400 px)
    assert [p.figures[n].layout.width for n in ("contour", "surface", "slices", "spectrum")] == [470] * 4
    p.cell.set_state({"width": 700})  # too narrow for two: one under the other, each as wide as the panel
    assert p.figures["contour"].layout.width == p.figures["surface"].layout.width == 684
    pr = PruningPanel()
    pr.cell.set_state({"width": 968})
    # three heatmaps of at least 440 px: two per line, the third underneath
    assert pr.figures["regime"].layout.width == 952 and pr.figures["mc"].layout.width == (952 - 12) // 2
    pr.show_figure("mc", pr.empty_state("mc"))  # a figure drawn after the width change gets it too
    assert pr.figures["mc"].layout.width == 470
