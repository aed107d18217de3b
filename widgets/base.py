"""The common base of every analysis panel.

A panel is a thin view: a title with a short legend of the analysis' vocabulary, controls, a Run and a
Cancel button, one overall progress bar with the current stage and a time estimate, a notice area
(stale results, warnings about thin fits), an error area, and the results (plotly figures, tables).
Subclasses declare their controls in :meth:`Panel.controls`, call the library in :meth:`Panel.compute` and
draw a result in :meth:`Panel.draw`; they hold no math.

Shared behaviour:

* before a run every figure shows what will appear in it (:attr:`Panel.figure_hints`), not empty axes;
* numbers are typed into text boxes that keep what was typed; before a run every visible control with a
  declaration in :attr:`Panel.checks` (the notebook parameter language, :mod:`workbench.parameters`) is
  validated, and a bad value is named in the error area and nothing runs;
* controls that do not apply to the current choice are hidden (:attr:`Panel.visible_when`);
* changing an input after a run marks the results stale (dimmed, with the changed inputs named); an
  error or a cancel clears them; controls in :attr:`Panel.redraw_controls` redraw without recomputing;
* runs happen in a background thread so the cancel button stays live; the library's progress callback
  drives the bar and raises :class:`workbench.progress.Cancelled` once cancel is pressed.  Figures are
  updated through :func:`widgets.figure.copy_figure`, which is safe from that thread.
"""
from __future__ import annotations

import html
import threading
import time
import traceback
from contextlib import contextmanager
from typing import Any, Callable, Dict, List, Optional

import ipywidgets as ipw
import plotly.graph_objects as go
import torch.nn as nn

from workbench.parameters import check as check_value
from workbench.parameters import parse as parse_declaration
from workbench.progress import Cancelled
from workbench.validation import InputError

from .figure import DEFAULT_CELL_WIDTH, CellWidth, PanelFigure, copy_figure, empty_figure, is_empty_state, set_width

__all__ = ["Panel", "copy_figure", "model_argument", "number", "progress_text", "table_html", "STYLE"]

STYLE = """<style>
.wb-panel .wb-legend {color:#555; font-size:12px; line-height:1.4; margin:0 0 6px 0; max-width:100%}
.wb-panel .wb-legend b {color:#333}
.wb-panel .wb-stale {opacity:0.45}
.wb-panel .wb-invalid input, .wb-panel .wb-invalid select {border:1px solid #b00020 !important;
  background:#fff5f5}
.wb-panel .wb-table {overflow:auto; max-height:300px; max-width:100%; border:1px solid #e3e3e3}
.wb-panel .wb-table table {border-collapse:collapse; font-size:12px; white-space:nowrap; margin:0}
.wb-panel .wb-table th {position:sticky; top:0; background:#f4f4f4; z-index:1}
.wb-panel .wb-table th, .wb-panel .wb-table td {padding:2px 8px; border-bottom:1px solid #eee}
.wb-panel .wb-notice {background:#fff8e1; border:1px solid #f0c36d; border-radius:4px; padding:4px 8px;
  font-size:13px}
.wb-panel .wb-stale-note {background:#eef3fb; border:1px solid #9db4d8; border-radius:4px;
  padding:4px 8px; font-size:13px}
.wb-panel .wb-status {font-size:13px; color:#333}
</style>"""

ESTIMATE_AFTER = 1.0  # seconds of a run before the time left is extrapolated
NOT_RUN = "Press Run to compute"
ROW_GAP, ROW_SLACK = 12, 16  # px between figures of a row; px kept free for a scroll bar
CANCELLED = "Cancelled: press Run to compute again"
FAILED = "No result: the run failed (the message is above)"


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


def number(value: Any, description: str, width: str = "150px", **kw: Any) -> ipw.Text:
    """A text box for a number (or a list of numbers) that keeps exactly what is typed; the panel parses
    and validates it before a run (see :attr:`Panel.checks`)."""
    return ipw.Text(value=_as_text(value), description=description, style={"description_width": "initial"},
                    layout=ipw.Layout(width=width), **kw)


def _as_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def _parse_number(text: str, kind: str) -> Any:
    """``text`` as a number (an int when it is a whole one), or ``text`` itself when it is not a number
    (validation then names it)."""
    t = str(text).strip()
    try:
        return int(t)
    except ValueError:
        pass
    try:
        value = float(t)
    except ValueError:
        return text
    return int(value) if kind == "int" and value.is_integer() else value


def parse_text(text: str, declaration: str) -> Any:
    """What a text box holds, read by its declaration (``"int >= 0"``, ``"list of float in (0, 1]"``)."""
    decl = parse_declaration(declaration)
    if decl.kind not in ("int", "float"):
        return text
    if decl.nullable and str(text).strip().lower() in ("", "none"):
        return None
    if decl.is_list:
        items = [t.strip() for t in str(text).replace(";", ",").split(",") if t.strip()]
        values = [_parse_number(t, decl.kind) for t in items]
        return values if all(not isinstance(v, str) for v in values) else text
    return _parse_number(str(text).strip(), decl.kind)


def table_html(frame, *, columns: Optional[Dict[str, str]] = None, digits: int = 3, index: bool = False) -> str:
    """A DataFrame as the reports show it (:func:`workbench.display.table`: readable headers from
    ``columns`` or the names with spaces, ``digits`` significant digits, no index column unless ``index``)
    in a box that scrolls when the table is wider or longer than it."""
    from workbench.display import table

    return f"<div class='wb-table'>{table(frame, digits=digits, columns=columns, index=index).to_html()}</div>"


def _seconds(s: float) -> str:
    s = max(0.0, float(s))
    if s < 10:
        return f"{s:.1f} s"
    if s < 60:
        return f"{s:.0f} s"
    m, sec = divmod(int(round(s)), 60)
    return f"{m} min {sec:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


def _plain(name: str) -> str:
    """A stage name as the start of a sentence (``"loss map"`` -> ``"Loss map"``; identifiers kept)."""
    first = name.split(" ", 1)[0]
    return name[:1].upper() + name[1:] if first.isalpha() and first.islower() else name


def progress_text(done: float, total: float, desc: str, elapsed: float) -> str:
    """``"Hessian eigenvalues: step 2 of 60 · 4.1 s elapsed, about 12 s left"``.

    The stage and its step count come from the stage levels of a :class:`workbench.progress.Label`
    (outermost stage and, when nested, the innermost one with its own count); a plain description counts
    the overall steps.  The time left is extrapolated from the overall fraction done, once 5 % is done.
    """
    levels = getattr(desc, "levels", ())
    if levels:
        name = levels[0][0] if len(levels) == 1 else f"{levels[0][0]} › {levels[-1][0]}"
        step, steps = levels[-1][1], levels[-1][2]
    else:
        name, step, steps = (str(desc) or "working"), done, total
    text = _plain(name) + (f": step {int(step)} of {int(steps)}" if steps and steps > 1 else "")
    fraction = done / total if total else 0.0
    clock = f"{_seconds(elapsed)} elapsed"
    if 0.05 <= fraction < 1 and elapsed >= ESTIMATE_AFTER:
        clock += f", about {_seconds(elapsed * (1 - fraction) / fraction)} left"
    elif fraction < 1:
        clock += ", estimating the time left"
    return f"{text} · {clock}"


class Panel(ipw.VBox):
    """Base panel: subclasses implement :meth:`controls`, :meth:`compute` and :meth:`draw`."""

    title: str = "Analysis"
    legend: str = ""  # one or two lines (HTML) explaining the analysis' vocabulary
    figure_names: tuple = ("main",)
    figure_hints: Dict[str, str] = {}  # figure name -> one line of what it will show
    checks: Dict[str, str] = {}  # control name -> declaration (workbench.parameters), checked before a run
    visible_when: Dict[str, Callable[[Dict[str, Any]], bool]] = {}  # control -> shown when true of the values
    redraw_controls: tuple = ()  # controls that redraw the result without recomputing
    progress_interval: float = 0.15  # seconds between two updates of the bar

    def __init__(self, *, background: bool = True, **control_values: Any):
        self.background = background
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.stale = False
        self.runs = 0
        self._cancel = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._draw_lock = threading.RLock()
        self._quiet_threads: set = set()  # threads drawing now: their control updates are not user input
        self._shown: Optional[Dict[str, Any]] = None  # the inputs of the result on show
        self._started = 0.0
        self._last_shown_progress = 0.0
        self.__dict__.setdefault("_outputs", [])
        self._rows: Dict[str, tuple] = {}  # figure -> (the figures of its row, their minimum width)
        self.cell_width = DEFAULT_CELL_WIDTH

        self.widgets: Dict[str, ipw.Widget] = dict(self.controls())
        for name, value in control_values.items():
            self.set_control(name, value)

        self.run_button = ipw.Button(description="Run", button_style="primary", icon="play")
        self.cancel_button = ipw.Button(description="Cancel", icon="stop", disabled=True)
        self.progress = ipw.FloatProgress(value=0.0, min=0.0, max=1.0, layout=ipw.Layout(width="200px"))
        self.status = ipw.Label(value="Not run yet")
        self.status.add_class("wb-status")
        self.notice = ipw.HTML(value="")
        self.stale_note = ipw.HTML(value="")
        self.error_area = ipw.HTML(value="")
        self.error_area.add_class("wb-error")
        self.figures: Dict[str, go.FigureWidget] = {name: PanelFigure() for name in self.figure_names}
        self.run_button.on_click(lambda _b: self.run())
        self.cancel_button.on_click(lambda _b: self.cancel())

        header = ipw.HTML(STYLE + f"<h3 style='margin:4px 0'>{html.escape(self.title)}</h3>"
                          + (f"<div class='wb-legend'>{self.legend}</div>" if self.legend else ""))
        for name, w in self.widgets.items():
            w.add_class(f"wb-control-{name}")
            w.observe(lambda _c, name=name: self._changed(name), names="value")
        controls_box = ipw.HBox(list(self.widgets.values()), layout=ipw.Layout(flex_flow="row wrap"))
        bar = ipw.HBox([self.run_button, self.cancel_button, self.progress, self.status],
                       layout=ipw.Layout(align_items="center", flex_flow="row wrap"))
        self.cell = CellWidth()  # the panel's width as laid out in the page; figures follow it
        self.cell.observe(self._resized, names="width")
        self.body = ipw.VBox([self.cell, *self.layout_body()], layout=ipw.Layout(width="100%"))
        for name in self.figure_names:
            self.show_figure(name, self.empty_state(name))
        super().__init__([header, controls_box, bar, self.error_area, self.stale_note, self.notice, self.body],
                         layout=ipw.Layout(width="100%"))
        self.add_class("wb-panel")
        self._update_visibility()

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
        """Widgets under the run bar; by default the figures in order, each as wide as the panel."""
        return [self.figure_box(name) for name in self.figure_names]

    def check_values(self, values: Dict[str, Any]) -> List[str]:
        """Problems between controls (``"d min must be below d max"``) found before a run; none by default."""
        return []

    def redraw(self, changed: str) -> None:
        """Redraw after the redraw control ``changed`` changed; by default the whole result."""
        self.draw(self.result)

    def on_inputs_changed(self, name: str) -> None:
        """Called when the input ``name`` changed (drop what was derived from the old inputs)."""

    def on_clear(self) -> None:
        """Called when the results are cleared (before a run, after an error or a cancel)."""

    # -- building blocks for subclasses ------------------------------------------------------
    def output(self, *, table: bool = False) -> ipw.HTML:
        """An HTML output of the panel, emptied whenever the results are cleared; ``table=True`` for a
        table box (use :func:`table_html`)."""
        out = ipw.HTML(value="", layout=ipw.Layout(width="100%", max_width="100%"))
        if table:
            out.add_class("wb-table-box")
        self.__dict__.setdefault("_outputs", []).append(out)
        return out

    def figure_box(self, name: str) -> ipw.VBox:
        """The figure ``name`` as wide as the panel."""
        self._rows.setdefault(name, ((name,), 0))
        box = ipw.VBox([self.figures[name]], layout=ipw.Layout(width="100%"))
        box.add_class("wb-figure")
        return box

    def figure_row(self, *names: str, min_width: int = 420) -> ipw.HBox:
        """Figures side by side while each can be ``min_width`` pixels wide, else fewer per line (the
        others wrap underneath); their widths follow the panel's width as the browser lays it out."""
        boxes = []
        for name in names:
            self._rows[name] = (names, min_width)
            box = ipw.VBox([self.figures[name]])
            box.add_class("wb-figure")
            boxes.append(box)
        return ipw.HBox(boxes, layout=ipw.Layout(flex_flow="row wrap", width="100%", align_items="flex-start"))

    def figure_width(self, name: str) -> int:
        """The width (px) the figure ``name`` is drawn at in a panel :attr:`cell_width` pixels wide."""
        names, min_width = self._rows.get(name, ((name,), 0))
        avail = max(320, self.cell_width - ROW_SLACK)
        per_line = max(1, min(len(names), (avail + ROW_GAP) // (min_width + ROW_GAP))) if min_width else 1
        return (avail - (per_line - 1) * ROW_GAP) // per_line

    def _resized(self, change) -> None:
        with self._draw_lock:  # not half way through a run's drawing
            self.cell_width = int(change["new"]) or self.cell_width
            for name, fig in self.figures.items():
                set_width(fig, self.figure_width(name))

    def empty_state(self, name: str, message: str = NOT_RUN) -> go.Figure:
        hint = self.figure_hints.get(name, "")
        return empty_figure(message, f"Will show: {hint}" if hint and message == NOT_RUN else hint)

    def show_empty(self, name: str, message: str, detail: Optional[str] = None) -> None:
        """Show ``message`` (and ``detail``, by default what the figure shows when computed) instead of the
        figure ``name``, e.g. "Not computed: tick 'Hessian spectrum' and press Run"."""
        hint = self.figure_hints.get(name, "")
        self.show_figure(name, empty_figure(message, detail if detail is not None else
                                            (f"Shows: {hint}" if hint else "")))

    def show_figure(self, name: str, fig: go.Figure) -> None:
        """Draw ``fig`` in the figure ``name``, at the width its place in the panel has."""
        copy_figure(fig, self.figures[name], width=self.figure_width(name))

    def warn(self, message_html: str) -> None:
        """Show a warning about the result on show (e.g. a fit on too few points); ``""`` removes it."""
        self.notice.value = f"<div class='wb-notice'>⚠ {message_html}</div>" if message_html else ""

    def is_empty(self, name: str) -> bool:
        return is_empty_state(self.figures[name]) is not None

    # -- controls ----------------------------------------------------------------------------
    def set_control(self, name: str, value: Any) -> None:
        """Set a control as if typed or chosen (numbers go into their text boxes as typed)."""
        if name not in self.widgets:
            raise TypeError(f"{type(self).__name__} has no control {name!r}; controls are {sorted(self.widgets)}")
        w = self.widgets[name]
        w.value = _as_text(value) if isinstance(w, ipw.Text) and not isinstance(value, str) else value

    def label(self, name: str) -> str:
        return getattr(self.widgets[name], "description", "") or name

    def visible(self, name: str) -> bool:
        rule = self.visible_when.get(name)
        return rule is None or bool(rule(self.raw_values))

    @property
    def raw_values(self) -> Dict[str, Any]:
        return {name: w.value for name, w in self.widgets.items() if hasattr(w, "value")}

    @property
    def values(self) -> Dict[str, Any]:
        """The control values, text boxes read as the numbers their declarations say."""
        out = self.raw_values
        for name, decl in self.checks.items():
            if name in out and isinstance(self.widgets[name], ipw.Text):
                out[name] = parse_text(out[name], decl)
        return out

    def problems(self) -> List[str]:
        """What is wrong with the visible controls, one line each naming the control."""
        values, out = self.values, []
        for name, decl in self.checks.items():
            if name not in values or not self.visible(name):
                continue
            try:
                check_value(name, values[name], parse_declaration(decl))
            except ValueError as exc:
                reason = str(exc).split(f"parameter {name} ", 1)[-1]
                out.append(f"{self.label(name)}: {reason}")
                self.widgets[name].add_class("wb-invalid")
        return out or self.check_values(values)

    def _changed(self, name: str) -> None:
        if threading.get_ident() in self._quiet_threads:
            return
        self.widgets[name].remove_class("wb-invalid")
        if name in self.redraw_controls:
            self._redraw(name)
            return
        self._update_visibility()
        self.on_inputs_changed(name)
        self._update_stale()

    def _redraw(self, name: str) -> None:
        if self.result is None:
            return
        decl = self.checks.get(name)
        if decl is not None:
            try:
                check_value(name, self.values[name], parse_declaration(decl))
            except ValueError as exc:
                self.widgets[name].add_class("wb-invalid")
                self.show_problems([f"{self.label(name)}: {str(exc).split(f'parameter {name} ', 1)[-1]}"],
                                   "Not redrawn")
                return
        self.error_area.value = ""
        try:
            with self._drawing():
                self.redraw(name)
        except InputError as exc:  # e.g. two controls that contradict each other
            self.show_problems([str(exc)], "Not redrawn")
        except Exception as exc:  # shown, not lost
            self.show_error(exc)

    def _update_visibility(self) -> None:
        for name, w in self.widgets.items():
            w.layout.display = None if self.visible(name) else "none"

    def _inputs(self) -> Dict[str, Any]:
        return {n: v for n, v in self.raw_values.items() if n not in self.redraw_controls and self.visible(n)}

    def _update_stale(self) -> None:
        shown = self._shown
        changed = [] if self.result is None or shown is None else \
            [n for n, v in self._inputs().items() if shown.get(n, v) != v or n not in shown]
        self.stale = bool(changed)
        if self.stale:
            self.body.add_class("wb-stale")
            names = ", ".join(html.escape(self.label(n)) for n in changed)
            self.stale_note.value = (f"<div class='wb-stale-note'>The results below are for earlier inputs "
                                     f"(changed: {names}). Press <b>Run</b> to update them.</div>")
        else:
            self.body.remove_class("wb-stale")
            self.stale_note.value = ""

    @contextmanager
    def _drawing(self):
        me = threading.get_ident()
        with self._draw_lock:
            nested = me in self._quiet_threads
            self._quiet_threads.add(me)
            try:
                yield
            finally:
                if not nested:
                    self._quiet_threads.discard(me)

    # -- running -----------------------------------------------------------------------------
    @property
    def figure(self) -> go.FigureWidget:
        return self.figures[self.figure_names[0]]

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _progress(self, done: float, total: float, desc: str) -> None:
        if self._cancel.is_set():
            raise Cancelled("cancelled")
        now = time.perf_counter()
        fraction = min(1.0, done / total) if total else 0.0
        if now - self._last_shown_progress < self.progress_interval and fraction < 1.0:
            return
        self._last_shown_progress = now
        if str(desc) or getattr(desc, "levels", ()):
            self._last_desc = desc
        else:  # a composed run between two stages: keep naming the last stage
            desc = getattr(self, "_last_desc", desc)
        self.progress.value = fraction
        self.status.value = progress_text(done, total, desc, now - self._started)

    def show_error(self, exc: BaseException) -> None:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        details = f"<details><summary>traceback</summary><pre>{html.escape(tb)}</pre></details>"
        self.error_area.value = (
            "<div style='color:#b00020;border:1px solid #b00020;padding:6px;border-radius:4px'>"
            f"<b>{html.escape(type(exc).__name__)}</b>: {html.escape(str(exc))}{details}</div>")

    def show_problems(self, problems: List[str], what: str = "Not run") -> None:
        """Name the inputs that stop a run, one line each."""
        items = "".join(f"<li>{html.escape(p, quote=False)}</li>" for p in problems)
        self.error_area.value = (
            "<div style='color:#b00020;border:1px solid #b00020;padding:6px 8px;border-radius:4px'>"
            f"<b>{html.escape(what)}: fix {'this input' if len(problems) == 1 else 'these inputs'}</b>"
            f"<ul style='margin:2px 0 0 0;padding-left:20px'>{items}</ul></div>")

    def clear(self, message: str = NOT_RUN) -> None:
        """Drop the result: figures back to an empty state saying ``message``, outputs emptied."""
        with self._drawing():
            self.result = None
            self._shown = None
            for name in self.figure_names:
                self.show_figure(name, self.empty_state(name, message))
            for out in self.__dict__.get("_outputs", []):
                out.value = ""
            self.notice.value = ""
            self.on_clear()
        self._update_stale()

    def _elapsed(self) -> str:
        return _seconds(time.perf_counter() - self._started)

    def _work(self, values: Dict[str, Any], inputs: Dict[str, Any]) -> None:
        try:
            result = self.compute(self._progress, **values)
            with self._drawing():
                self.result = result
                self.notice.value = ""
                self.draw(result)
            self._shown = inputs
            self.progress.value = 1.0
            self.status.value = f"Done in {self._elapsed()} (run {self.runs + 1})"
        except Cancelled:
            self.clear(CANCELLED)
            self.status.value = f"Cancelled after {self._elapsed()} (run {self.runs + 1})"
        except Exception as exc:  # shown to the user, not lost
            self.error = exc
            self.clear(FAILED)
            self.show_error(exc)
            self.status.value = f"Failed after {self._elapsed()} (run {self.runs + 1})"
        finally:
            self.runs += 1
            self.run_button.disabled = False
            self.cancel_button.disabled = True
            self._update_stale()

    def run(self, background: Optional[bool] = None) -> None:
        """Run the analysis with the current control values (what the Run button does).

        Invalid inputs are named in the error area and nothing runs (``self.error`` holds the
        :class:`~workbench.validation.InputError`).
        """
        if self.running:
            return
        self.error = None
        self.error_area.value = ""
        problems = self.problems()
        if problems:
            self.error = InputError("; ".join(problems))
            self.show_problems(problems)
            self.status.value = "Not run: fix the input named below" if len(problems) == 1 else \
                f"Not run: fix the {len(problems)} inputs named below"
            return
        values, inputs = self.values, self._inputs()
        self._cancel.clear()
        self.progress.value = 0.0
        self._started = time.perf_counter()
        self._last_shown_progress = 0.0
        self._last_desc = ""
        self.status.value = "Starting…"
        self.run_button.disabled = True
        self.cancel_button.disabled = False
        if background if background is not None else self.background:
            self._thread = threading.Thread(target=self._work, args=(values, inputs), daemon=True)
            self._thread.start()
        else:
            self._work(values, inputs)

    def cancel(self) -> None:
        """Ask a running computation to stop at its next progress step."""
        if self.running:
            self._cancel.set()
            self.status.value = "Cancelling at the next step…"

    def wait(self, timeout: Optional[float] = None) -> None:
        """Block until a background run has finished (for scripts and tests)."""
        if self._thread is not None:
            self._thread.join(timeout)
