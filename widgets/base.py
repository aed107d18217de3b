"""The common base of every analysis panel.

A panel is a thin view: controls on top, a run and a cancel button, a progress bar, an error area, and
one or more plotly ``FigureWidget``\\ s.  Subclasses declare their controls in :meth:`Panel.controls`,
call the library in :meth:`Panel.compute` and draw a result in :meth:`Panel.draw`; they hold no math.

Runs happen in a background thread so the cancel button stays live; the library's progress callback
updates the bar and raises :class:`workbench.progress.Cancelled` once cancel is pressed.  An exception
is shown in the error area with its message (the traceback folded underneath) instead of being lost.
"""
from __future__ import annotations

import html
import threading
import time
import traceback
from typing import Any, Callable, Dict, Optional

import ipywidgets as ipw
import plotly.graph_objects as go
import torch.nn as nn

from workbench.progress import Cancelled


def copy_figure(source: go.Figure, target: go.FigureWidget) -> None:
    """Replace the traces and layout of ``target`` with those of ``source`` in one update."""
    with target.batch_update():
        target.data = []
        target.add_traces(list(source.data))
        target.layout = source.layout


def model_argument(model: Any, values: Dict[str, Any]) -> Optional[nn.Module]:
    """A panel's ``model=``: a built-in model's name becomes the value of its ``model`` control (put in
    ``values``) and gives ``None``; any other model spec (a module, a Hugging Face folder, a checkpoint, an
    import path: :func:`workbench.models.load`) is the user's own model."""
    from workbench.models import BUILTIN_MODELS, load

    if isinstance(model, str) and model.strip().lower() in BUILTIN_MODELS:
        values["model"] = model.strip().lower()
        return None
    if model is None:
        return None
    return load(model)


class Panel(ipw.VBox):
    """Base panel: subclasses implement :meth:`controls`, :meth:`compute` and :meth:`draw`."""

    title: str = "Analysis"
    figure_names: tuple = ("main",)

    def __init__(self, *, background: bool = True, **control_values: Any):
        self.background = background
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self._cancel = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.runs = 0

        self.widgets: Dict[str, ipw.Widget] = dict(self.controls())
        for name, value in control_values.items():
            if name not in self.widgets:
                raise TypeError(f"{type(self).__name__} has no control {name!r}; "
                                f"controls are {sorted(self.widgets)}")
            self.widgets[name].value = value

        self.run_button = ipw.Button(description="Run", button_style="primary", icon="play")
        self.cancel_button = ipw.Button(description="Cancel", icon="stop", disabled=True)
        self.progress = ipw.FloatProgress(value=0.0, min=0.0, max=1.0, description="",
                                          layout=ipw.Layout(width="240px"))
        self.status = ipw.Label(value="")
        self.error_area = ipw.HTML(value="")
        self.figures: Dict[str, go.FigureWidget] = {name: go.FigureWidget() for name in self.figure_names}
        self.run_button.on_click(lambda _b: self.run())
        self.cancel_button.on_click(lambda _b: self.cancel())

        header = ipw.HTML(f"<h3 style='margin:4px 0'>{html.escape(self.title)}</h3>")
        controls_box = ipw.HBox(list(self.widgets.values()), layout=ipw.Layout(flex_flow="row wrap"))
        bar = ipw.HBox([self.run_button, self.cancel_button, self.progress, self.status])
        super().__init__([header, controls_box, bar, self.error_area, *self.layout_body()])

    # -- to implement ------------------------------------------------------------------------
    def controls(self) -> Dict[str, ipw.Widget]:
        """Name -> widget; the names are the keyword arguments :meth:`compute` receives."""
        return {}

    def compute(self, progress: Callable[[int, int, str], None], **values: Any) -> Any:
        """Call the library with the control values and return a result."""
        raise NotImplementedError

    def draw(self, result: Any) -> None:
        """Show ``result`` in the figures (via the analysis' pure figure functions)."""
        raise NotImplementedError

    def layout_body(self) -> list:
        """Widgets under the run bar; by default the figures in order."""
        return list(self.figures.values())

    # -- machinery ---------------------------------------------------------------------------
    @property
    def figure(self) -> go.FigureWidget:
        return self.figures[self.figure_names[0]]

    @property
    def values(self) -> Dict[str, Any]:
        return {name: w.value for name, w in self.widgets.items() if hasattr(w, "value")}

    def _progress(self, done: int, total: int, desc: str) -> None:
        if self._cancel.is_set():
            raise Cancelled("cancelled")
        self.progress.value = (done / total) if total else 0.0
        self.status.value = f"{desc} {done}/{total}" if total else desc

    def show_error(self, exc: BaseException) -> None:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.error_area.value = (
            "<div style='color:#b00020;border:1px solid #b00020;padding:6px;border-radius:4px'>"
            f"<b>{html.escape(type(exc).__name__)}</b>: {html.escape(str(exc))}"
            f"<details><summary>traceback</summary><pre>{html.escape(tb)}</pre></details></div>"
        )

    def _work(self) -> None:
        start = time.perf_counter()
        try:
            result = self.compute(self._progress, **self.values)
            self.result = result
            self.draw(result)
            self.progress.value = 1.0
            self.status.value = f"done in {time.perf_counter() - start:.1f} s"
        except Cancelled:
            self.status.value = "cancelled"
        except Exception as exc:  # shown to the user, not lost
            self.error = exc
            self.show_error(exc)
            self.status.value = "failed"
        finally:
            self.runs += 1
            self.run_button.disabled = False
            self.cancel_button.disabled = True

    def run(self, background: Optional[bool] = None) -> None:
        """Run the analysis with the current control values (what the Run button does)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._cancel.clear()
        self.error = None
        self.error_area.value = ""
        self.progress.value = 0.0
        self.status.value = "running"
        self.run_button.disabled = True
        self.cancel_button.disabled = False
        if background if background is not None else self.background:
            self._thread = threading.Thread(target=self._work, daemon=True)
            self._thread.start()
        else:
            self._work()

    def cancel(self) -> None:
        """Ask a running computation to stop at its next progress step."""
        self._cancel.set()

    def wait(self, timeout: Optional[float] = None) -> None:
        """Block until a background run has finished (for scripts and tests)."""
        if self._thread is not None:
            self._thread.join(timeout)
