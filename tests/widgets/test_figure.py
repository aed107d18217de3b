"""A figure drawn by a run reaches the browser: the views open during the run and the views created after it.

The browser is :class:`tests.widgets.frontend.FrontEnd`, which applies the kernel's messages as plotly's
figure view does.  The first test is the blank-figure bug of the connectivity panel (a run that said
"done", twelve traces in the kernel, nothing on the page): while the kernel applies a message from the
browser to the figure, a run's thread drawing into it had its messages merged away.
"""
import threading

import plotly.graph_objects as go
import pytest

from widgets.base import Panel, number
from widgets.figure import PanelFigure, copy_figure, empty_figure

from .frontend import FrontEnd

A_BROWSER_MESSAGE = {"_js2py_traceDeltas": {"trace_deltas": [], "trace_edit_id": -1}}  # sent after each update


class Lines(Panel):
    title = "lines"
    figure_hints = {"main": "twelve lines"}
    checks = {"n": "int >= 1"}

    def controls(self):
        return {"n": number(12, "lines")}

    def compute(self, progress, n):
        return n

    def draw(self, n):
        fig = go.Figure([go.Scatter(y=[i, i + 1], name=f"line {i}") for i in range(n)])
        fig.update_layout(title="twelve lines", width=900)
        self.show_figure("main", fig)


@pytest.fixture
def browser(monkeypatch):
    return FrontEnd().attach(monkeypatch)


def _while_the_kernel_applies_a_browser_message(fig, monkeypatch, action, hold=1.0):
    """Run ``action`` in another thread while ``fig.set_state`` (the kernel receiving a browser message) is
    under way: the thread is given ``hold`` seconds inside it, as a run's thread would be."""
    original = fig.trait_metadata

    def slow_from_json(value, widget):
        worker = threading.Thread(target=action)
        worker.start()
        worker.join(hold)
        slow_from_json.worker = worker
        return value

    def metadata(name, key, default=None):
        if name == "_js2py_traceDeltas" and key == "from_json":
            return slow_from_json
        return original(name, key, default)

    monkeypatch.setattr(fig, "trait_metadata", metadata)
    fig.set_state(A_BROWSER_MESSAGE)
    return slow_from_json.worker


def test_a_run_drawing_while_the_kernel_applies_a_browser_message_reaches_the_open_view(browser, monkeypatch):
    p = Lines(background=False)
    view = browser.new_view(p.figure)  # the panel is on the page, its figure rendered
    worker = _while_the_kernel_applies_a_browser_message(p.figure, monkeypatch, p.run)
    worker.join(10)
    assert p.status.value.startswith("Done") and len(p.figure.data) == 12
    assert view.trace_names == [f"line {i}" for i in range(12)]  # what the page shows
    assert view.layout["title"]["text"] == "twelve lines"


def test_the_same_race_loses_the_traces_of_a_plain_figure_widget(browser, monkeypatch):
    """The mechanism the panels' figures guard against (if this stops failing, plotly or traitlets fixed it)."""
    fig = go.FigureWidget()
    view = browser.new_view(fig)
    source = go.Figure([go.Scatter(y=[i, i + 1], name=f"line {i}") for i in range(12)])

    def draw():
        with fig.batch_update():
            fig.data = []
            fig.add_traces(list(source.data))

    _while_the_kernel_applies_a_browser_message(fig, monkeypatch, draw).join(10)
    assert len(fig.data) == 12 and view.trace_names == []  # the kernel holds twelve traces; the page none


def test_a_view_created_after_the_run_shows_the_result(browser):
    p = Lines(background=False)
    p.run()  # before the figure was rendered (or rendered again: a re-attached cell, a second view)
    late = browser.new_view(p.figure)
    assert late.trace_names == [f"line {i}" for i in range(12)]
    assert late.layout["title"]["text"] == "twelve lines"


def test_the_empty_state_leaves_nothing_behind_and_figures_fit_their_cell(browser):
    p = Lines(background=False)
    view = browser.new_view(p.figure)
    assert "Press Run to compute" in view.layout["annotations"][0]["text"] and view.data == []
    p.run()
    assert "annotations" not in view.layout and view.layout["height"] == 420  # the note and its height are gone
    assert view.layout.get("xaxis", {}).get("visible") is not False  # axes of the data, not hidden ones
    assert view.layout["width"] == p.figure_width("main") == 960 - 16  # the panel's width, not the figure's 900
    p.cell.set_state({"width": 700})  # the browser says how wide the panel is laid out
    assert view.layout["width"] == p.figure.layout.width == 700 - 16
    assert browser.new_view(p.figure).layout["width"] == 700 - 16
    p.clear("Cancelled: press Run to compute again")
    assert view.data == [] and "Cancelled" in view.layout["annotations"][0]["text"]
    assert browser.new_view(p.figure).layout["annotations"][0]["text"] == view.layout["annotations"][0]["text"]


def test_copy_figure_from_threads_keeps_views_and_state_in_step(browser):
    fig = PanelFigure(empty_figure("Press Run"))
    view = browser.new_view(fig)
    figures = [go.Figure([go.Bar(y=[k] * (k + 1), name=f"f{k}-{i}") for i in range(k + 1)]) for k in range(6)]
    threads = [threading.Thread(target=copy_figure, args=(f, fig)) for f in figures]
    for t in threads:
        t.start()
        fig.set_state(A_BROWSER_MESSAGE)  # the browser keeps talking to the kernel meanwhile
    for t in threads:
        t.join(10)
    names = [t.name for t in fig.data]
    assert view.trace_names == names and browser.new_view(fig).trace_names == names
    assert names in [[f"f{k}-{i}" for i in range(k + 1)] for k in range(6)]


def test_plotlys_browser_code_is_sent_once_for_all_panel_figures():
    from widgets.figure import PlotlyCode, plotly_code

    a, b = Lines(), Lines()
    figures = [*a.figures.values(), *b.figures.values()]
    code = plotly_code()
    assert isinstance(code, PlotlyCode) and code.source == str(go.FigureWidget._esm)  # plotly's own, 5 MB
    assert all(f._plotly_code == code.model_id for f in figures)  # each figure names it ...
    assert all(len(f.get_state()["_esm"]) < 2000 for f in figures)  # ... and carries a loader, not the 5 MB
    assert "_plotly_code" in figures[0].get_state()
