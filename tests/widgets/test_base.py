import html
import threading
import time

import ipywidgets as ipw
import plotly.graph_objects as go
import pytest

from widgets.base import Panel, number, parse_text, progress_text
from workbench.progress import Label, Progress
from workbench.validation import InputError


class Echo(Panel):
    title = "echo"
    figure_hints = {"main": "one point per step"}
    checks = {"n": "int >= 1", "scale": "float > 0"}
    visible_when = {"scale": lambda v: v["mode"] == "scaled"}
    redraw_controls = ("colour",)

    def __init__(self, **kw):
        self.computed = 0
        self.gate = None  # a threading.Event a slow run waits on between steps
        self.table = self.output(table=True)
        super().__init__(**kw)

    def controls(self):
        return {"n": number(3, "steps"), "mode": ipw.Dropdown(options=["plain", "scaled"], value="plain"),
                "scale": number(1.0, "scale"), "fail": ipw.Checkbox(value=False), "slow": ipw.Checkbox(value=False),
                "colour": ipw.Dropdown(options=["blue", "red"], value="blue")}

    def compute(self, progress, n, mode, scale, fail, slow, colour):
        self.computed += 1
        with Progress(n, "counting", progress) as bar:
            for i in range(n):
                if slow:
                    self.gate.wait(5)
                bar.update()
        if fail:
            raise ValueError("n must be even, got 3: pass an even n")
        return [i * (scale if mode == "scaled" else 1) for i in range(n)]

    def draw(self, result):
        self.show_figure("main", go.Figure(go.Scatter(y=result, marker_color=self.values["colour"])))
        self.table.value = f"<table><tr><td>{len(result)}</td></tr></table>"


def test_click_run_updates_figure():
    p = Echo(n=4)
    p.run_button.click()
    p.wait(10)
    assert p.result == [0, 1, 2, 3]
    assert list(p.figure.data[0].y) == [0, 1, 2, 3]
    assert p.progress.value == 1.0 and p.error_area.value == "" and p.status.value.startswith("Done in")
    p.set_control("n", 2)
    p.run(background=False)
    assert list(p.figure.data[0].y) == [0, 1]


def test_before_a_run_every_figure_says_what_will_appear():
    p = Echo()
    fig = p.figure
    assert len(fig.data) == 0 and p.is_empty("main")
    text = fig.layout.annotations[0].text
    assert "Press Run to compute" in text and "Will show: one point per step" in text
    assert fig.layout.xaxis.visible is False and fig.layout.yaxis.visible is False  # no empty axes
    assert p.status.value == "Not run yet"
    p.run(background=False)
    assert not p.is_empty("main") and not fig.layout.annotations  # the note is gone with the data shown


def test_typed_numbers_are_kept_not_snapped():
    p = Echo(n=20)
    assert p.widgets["n"].value == "20" and p.values["n"] == 20
    p.set_control("n", "7")
    p.run(background=False)
    assert p.result == list(range(7))
    assert parse_text("0.1, 0.5; 1", "list of float in (0, 1]") == [0.1, 0.5, 1]
    assert parse_text("a, b", "list of float") == "a, b"  # kept as typed, so validation can name it
    assert parse_text("", "float or None") is None and parse_text("2.5", "int >= 1") == 2.5


@pytest.mark.parametrize("typed,reason", [("abc", "must be int >= 1, got 'abc'"), ("2.5", "must be int >= 1, got 2.5"),
                                          ("0", "must be int >= 1, got 0")])
def test_bad_input_names_the_control_and_nothing_runs(typed, reason):
    p = Echo(background=False)
    p.run()
    before = (p.result, p.computed, p.runs)
    p.set_control("n", typed)
    p.run()
    assert (p.result, p.computed, p.runs) == before  # nothing ran, the earlier result is kept
    assert isinstance(p.error, InputError) and "steps: " in str(p.error) and reason in str(p.error)
    shown = html.unescape(p.error_area.value)
    assert "Not run: fix this input" in shown and f"<li>steps: {reason}" in shown
    assert p.status.value.startswith("Not run")
    assert "wb-invalid" in p.widgets["n"]._dom_classes and not p.run_button.disabled
    p.set_control("n", "2")  # fixing it clears the mark; the run goes ahead
    assert "wb-invalid" not in p.widgets["n"]._dom_classes
    p.run()
    assert p.error is None and p.error_area.value == "" and p.result == [0, 1]


def test_hidden_controls_are_hidden_and_not_validated():
    p = Echo(background=False)
    assert p.widgets["scale"].layout.display == "none"
    p.set_control("scale", "-1")  # does not apply to mode "plain": not checked
    p.run()
    assert p.error is None and p.result == [0, 1, 2]
    p.set_control("mode", "scaled")
    assert p.widgets["scale"].layout.display is None
    p.run()
    assert "scale: must be float > 0, got -1" in str(p.error) and p.result == [0, 1, 2]
    assert "scale: must be float &gt; 0, got -1" in p.error_area.value


def test_changing_an_input_marks_the_results_stale_and_changing_it_back_unmarks():
    p = Echo(background=False)
    p.run()
    assert not p.stale and p.stale_note.value == ""
    p.set_control("n", "5")
    assert p.stale and "wb-stale" in p.body._dom_classes
    assert "changed: steps" in p.stale_note.value and "Press <b>Run</b>" in p.stale_note.value
    assert p.result == [0, 1, 2]  # still on show, marked
    p.set_control("n", "3")
    assert not p.stale and "wb-stale" not in p.body._dom_classes
    p.set_control("colour", "red")  # a redraw control: redrawn, not stale
    assert not p.stale and p.figure.data[0].marker.color == "red" and p.computed == 1
    p.set_control("n", "4")
    p.run()
    assert not p.stale and p.stale_note.value == ""


def test_an_error_clears_the_results_and_is_shown():
    p = Echo(background=False)
    p.run()
    assert p.table.value
    p.set_control("fail", True)
    p.run()
    assert isinstance(p.error, ValueError) and p.result is None
    assert "n must be even" in p.error_area.value and "traceback" in p.error_area.value
    assert p.status.value.startswith("Failed after") and not p.run_button.disabled
    assert p.is_empty("main") and "the run failed" in p.figure.layout.annotations[0].text
    assert p.table.value == "" and not p.stale


def test_cancel_stops_the_run_and_clears_the_results():
    p = Echo(n=4)
    p.run(background=False)
    p.set_control("slow", True)
    p.gate = threading.Event()
    p.run()
    deadline = time.time() + 5
    while p.computed < 2 and time.time() < deadline:
        time.sleep(0.01)
    assert p.running and p.cancel_button.disabled is False
    p.cancel()
    p.gate.set()
    p.wait(10)
    assert p.status.value.startswith("Cancelled after") and p.result is None and p.error is None
    assert p.is_empty("main") and "Cancelled" in p.figure.layout.annotations[0].text
    assert p.table.value == "" and p.cancel_button.disabled and not p.run_button.disabled


def test_unknown_control_is_error():
    with pytest.raises(TypeError, match="no control 'm'"):
        Echo(m=3)


def test_progress_text_names_the_stage_its_step_and_the_time():
    lab = Label("Hessian eigenvalues: hessian lanczos", (("Hessian eigenvalues", 2, 60),))
    assert progress_text(1.5, 4, lab, 3.0) == "Hessian eigenvalues: step 2 of 60 · 3.0 s elapsed, about 5.0 s left"
    nested = Label("x", (("d_int90 search", 2.5, 10), ("subspace training", 3, 6)))
    assert progress_text(1, 4, nested, 30) == "d_int90 search › subspace training: step 3 of 6 · 30 s elapsed, " \
                                             "about 1 min 30 s left"
    assert progress_text(3, 12, "spectra", 0.4) == "Spectra: step 3 of 12 · 0.4 s elapsed, estimating the time left"
    assert progress_text(0, 4, "loss map", 2.0) == "Loss map: step 0 of 4 · 2.0 s elapsed, estimating the time left"
    assert progress_text(0, 1, "loading minilm", 2.0) == "Loading minilm · 2.0 s elapsed, estimating the time left"
    assert progress_text(1, 40, "x", 10.0).endswith("estimating the time left")  # too early to extrapolate
    assert progress_text(4, 4, "loss map", 2.0) == "Loss map: step 4 of 4 · 2.0 s elapsed"


class Staged(Panel):
    title = "staged"

    def controls(self):
        return {}

    def compute(self, progress):
        with Progress(2, "staged", progress) as bar:
            with Progress(5, "inner counter", bar.stage("loss map")) as inner:
                for _ in range(5):
                    time.sleep(0.01)
                    inner.update()
            bar.update()
            with Progress(3, "lanczos", bar.stage("Hessian eigenvalues")) as inner:
                for _ in range(3):
                    inner.update()
        return 1

    def draw(self, result):
        pass


def test_the_status_shows_one_overall_bar_with_plain_stage_names(monkeypatch):
    monkeypatch.setattr("widgets.base.ESTIMATE_AFTER", 0.0)  # estimate from the first step of this short run
    p = Staged(background=False)
    p.progress_interval = 0.0
    shown = []  # (bar, status) each time the status changes
    p.status.observe(lambda c: shown.append((p.progress.value, c["new"])), names="value")
    p.run()
    seen = [s for _, s in shown]
    assert any(s.startswith("Loss map: step 3 of 5 · ") for s in seen)
    assert any(s.startswith("Hessian eigenvalues: step 2 of 3 · ") for s in seen)
    assert any("elapsed, about" in s and s.endswith(" left") for s in seen)
    bar = [b for b, _ in shown]
    assert bar == sorted(bar) and bar[-1] == 1.0  # one bar across both stages, never going back
    assert [b for b, s in shown if s.startswith("Hessian eigenvalues: step 1 of 3")] == [pytest.approx(0.5 + 1 / 6)]
    assert seen[-1].startswith("Done in")
