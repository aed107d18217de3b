import time

import ipywidgets as ipw
import plotly.graph_objects as go
import pytest

from widgets.base import Panel


class Echo(Panel):
    title = "echo"

    def controls(self):
        return {"n": ipw.IntSlider(value=3, min=1, max=10), "fail": ipw.Checkbox(value=False),
                "slow": ipw.Checkbox(value=False)}

    def compute(self, progress, n, fail, slow):
        for i in range(n):
            if slow:
                time.sleep(0.05)
            progress(i + 1, n, "step")
        if fail:
            raise ValueError("n must be even, got 3: pass an even n")
        return list(range(n))

    def draw(self, result):
        fig = go.Figure(go.Scatter(y=result))
        from widgets.base import copy_figure
        copy_figure(fig, self.figure)


def test_click_run_updates_figure():
    p = Echo(n=4)
    p.run_button.click()
    p.wait(10)
    assert p.result == [0, 1, 2, 3]
    assert list(p.figure.data[0].y) == [0, 1, 2, 3]
    assert p.progress.value == 1.0 and p.error_area.value == ""
    p.widgets["n"].value = 2
    p.run(background=False)
    assert list(p.figure.data[0].y) == [0, 1]


def test_error_is_shown_not_lost():
    p = Echo(fail=True, background=False)
    p.run()
    assert isinstance(p.error, ValueError)
    assert "n must be even" in p.error_area.value and "traceback" in p.error_area.value
    assert not p.run_button.disabled


def test_cancel_stops_run():
    p = Echo(n=10, slow=True)
    p.run()
    p.cancel()
    p.wait(10)
    assert p.status.value == "cancelled" and p.result is None


def test_unknown_control_is_error():
    with pytest.raises(TypeError, match="no control 'm'"):
        Echo(m=3)
