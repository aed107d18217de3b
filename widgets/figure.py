"""Figures in a panel: a plotly ``FigureWidget`` that a run's thread can update without losing the update.

Why a panel's figure could stay blank after a run that said "done" (while the kernel-side widget held its
traces): plotly's ``FigureWidget`` sends each change to the browser as a one-shot message, a synced trait
set to the message and straight back to ``None``.  Two things lose such messages:

* the kernel applies every message from the browser (the view reports trace and layout deltas after each
  update) inside ``set_state``, which holds the widget's trait notifications (traitlets'
  ``hold_trait_notifications`` swaps ``notify_change`` on the instance, for every thread).  A run's thread
  that updates the figure meanwhile has its message and the reset to ``None`` merged into one
  ``None -> None`` change: the browser is sent ``None`` and never draws the traces;
* a view created after an update (the figure not yet rendered when a run ends, a second view of the
  output, a re-attached cell) starts from the widget's synced state (``_widget_data``,
  ``_widget_layout``), which plotly sets only when the widget is built or displayed on its own, not when
  it sits inside a box: such a view shows the figure as it was built, empty.

:class:`PanelFigure` serialises ``set_state`` with :func:`copy_figure`, and :func:`copy_figure` replaces
the traces, removes the layout keys the new figure does not set (a view merges a relayout into what it
shows, so an empty state's note would otherwise stay on top of the real figure) and then resyncs the
state a new view starts from.

Two more things a panel figure does differently from a plain ``FigureWidget``: it is drawn at an explicit
width that follows the panel's width in the page (:class:`CellWidth`; plotly's view measures a figure in a
box before it is laid out and keeps 700 px), and it loads plotly's browser code once per page instead of
once per figure (:data:`PLOTLY_LOADER_ESM`).
"""
from __future__ import annotations

import html
import textwrap
import threading
from contextlib import nullcontext
from copy import deepcopy
from typing import Optional

import anywidget
import plotly.graph_objects as go
import traitlets

EMPTY_HEIGHT = 190
DEFAULT_HEIGHT = 420  # a figure that sets no height (a view would keep the height it had before)
DEFAULT_CELL_WIDTH = 960  # until the browser has said how wide the panel is

# Reports the width of the box the widget sits in and reports it again when it changes.  (plotly's own
# autosizing cannot be relied on in a panel: its view measures the figure before it is in the page, falls
# back to 700 px, and pins that width as soon as a relayout sets a height.)
CELL_WIDTH_ESM = """
export default {
  render({ model, el }) {
    el.style.width = "100%";
    el.style.height = "0px";
    let last = 0;
    const report = () => {
      const width = Math.round(el.getBoundingClientRect().width);
      if (width > 0 && Math.abs(width - last) >= 8) {
        last = width;
        model.set("width", width);
        model.save_changes();
      }
    };
    const observer = new ResizeObserver(report);
    observer.observe(el);
    report();
    return () => observer.disconnect();
  },
};
"""


# plotly's FigureWidget ships its browser code (plotly.js and its widget, 5 MB) with every figure, and the
# browser evaluates it once per figure: a notebook with the six panels sent 95 MB and froze the page for
# most of a minute.  A panel figure ships this loader instead; the code itself is sent once, in one
# PlotlyCode widget, and evaluated once per page.
PLOTLY_LOADER_ESM = """
const loaded = (globalThis.__workbench_plotly_widget ??= new Map());

async function plotlyWidget(model) {
  const id = model.get("_plotly_code");
  if (!loaded.has(id)) {
    loaded.set(id, model.widget_manager.get_model(id).then(async (code) => {
      const url = URL.createObjectURL(new Blob([code.get("source")], { type: "text/javascript" }));
      try {
        return await import(url);
      } finally {
        URL.revokeObjectURL(url);
      }
    }));
  }
  try {
    return (await loaded.get(id)).default();  // plotly's widget for this figure: { initialize, render }
  } catch (error) {
    loaded.delete(id);
    throw error;
  }
}

let widget;
export default {
  async initialize(context) {
    widget = await plotlyWidget(context.model);
    return widget.initialize(context);
  },
  async render(context) {
    widget ??= await plotlyWidget(context.model);
    return widget.render(context);
  },
};
"""


class PlotlyCode(anywidget.AnyWidget):
    """Never shown: holds plotly's widget code (``source``) for every :class:`PanelFigure` of the kernel."""

    _esm = "export default {};"
    source = traitlets.Unicode("").tag(sync=True)


_PLOTLY_CODE: Optional[PlotlyCode] = None
_PLOTLY_CODE_LOCK = threading.Lock()


def plotly_code() -> PlotlyCode:
    """The one :class:`PlotlyCode` widget of this kernel (built on first use)."""
    global _PLOTLY_CODE
    with _PLOTLY_CODE_LOCK:
        if _PLOTLY_CODE is None or _PLOTLY_CODE.comm is None:  # none yet, or closed
            _PLOTLY_CODE = PlotlyCode(source=str(go.FigureWidget._esm))
        return _PLOTLY_CODE


class PanelFigure(go.FigureWidget):
    """A ``FigureWidget`` whose browser messages are applied one at a time with :func:`copy_figure`, and
    whose browser code is loaded once per page (see :data:`PLOTLY_LOADER_ESM`)."""

    _esm = PLOTLY_LOADER_ESM
    _plotly_code = traitlets.Unicode().tag(sync=True)  # the model id of the PlotlyCode widget

    @traitlets.default("_plotly_code")
    def _default_plotly_code(self) -> str:  # in the state the widget opens with
        return plotly_code().model_id

    def __init__(self, *args, **kwargs):
        self._update_lock = threading.RLock()
        super().__init__(*args, **kwargs)

    def set_state(self, sync_data):
        with self._update_lock:
            super().set_state(sync_data)


class CellWidth(anywidget.AnyWidget):
    """An invisible widget whose ``width`` is the width, in pixels, of the box it is placed in."""

    _esm = CELL_WIDTH_ESM
    width = traitlets.Int(0).tag(sync=True)


def fit_to_width(fig: go.Figure, width: Optional[int]) -> go.Figure:
    """A copy of ``fig`` that is ``width`` pixels wide (its own width when ``None``) and has a height
    (:data:`DEFAULT_HEIGHT` unless it sets one)."""
    out = go.Figure(fig)
    if width:
        out.layout.width = int(width)
        out.layout.autosize = False
    if out.layout.height is None:
        out.layout.height = DEFAULT_HEIGHT
    return out


def _resync(target: go.FigureWidget) -> None:
    """The state a view created from now on starts from (what plotly syncs when a widget is displayed)."""
    target._widget_data = deepcopy(target._data)
    target._widget_layout = deepcopy(target._layout_obj._props)


def set_width(target: go.FigureWidget, width: int) -> None:
    """Make the figure in ``target`` ``width`` pixels wide, in every view (from any thread)."""
    with getattr(target, "_update_lock", None) or nullcontext():
        if target.layout.width != int(width):
            target.layout.width = int(width)
            target.layout.autosize = False
            _resync(target)


def copy_figure(source: go.Figure, target: go.FigureWidget, *, width: Optional[int] = None) -> None:
    """Show ``source`` in ``target`` (``width`` pixels wide): its traces and its layout replace what
    ``target`` showed, in the views open now and in every view created later, from any thread (see the
    module docstring)."""
    fig = fit_to_width(source, width)
    lock = getattr(target, "_update_lock", None) or nullcontext()
    with lock:
        new_layout = fig.layout.to_plotly_json()
        gone = [k for k in target.layout.to_plotly_json() if k not in new_layout and k != "template"]
        if gone:  # a view merges a relayout into its layout: remove what the new figure does not set
            target.plotly_relayout({k: None for k in gone})
        with target.batch_update():
            target.data = []
            target.add_traces(list(fig.data))
            target.layout = fig.layout
        if isinstance(target, go.FigureWidget):
            _resync(target)


def empty_figure(message: str, detail: str = "", *, height: int = EMPTY_HEIGHT) -> go.Figure:
    """A figure with no axes that says why it is empty and, in ``detail``, what will appear in it."""
    lines = "<br>".join(html.escape(line, quote=False) for line in textwrap.wrap(detail, 100)) if detail else ""
    text = f"<b>{html.escape(message, quote=False)}</b>"
    if lines:
        text += f"<br><span style='color:#666'>{lines}</span>"
    fig = go.Figure()
    fig.update_layout(
        template="plotly_white", height=height, margin=dict(l=10, r=10, t=10, b=10),
        xaxis=dict(visible=False), yaxis=dict(visible=False), plot_bgcolor="#fafafa", paper_bgcolor="#fafafa",
        annotations=[dict(text=text, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
                          font=dict(size=13, color="#333"), align="center")])
    return fig


def is_empty_state(fig: go.Figure) -> Optional[str]:
    """The message of an :func:`empty_figure` shown in ``fig``, or ``None`` when it shows data."""
    if len(fig.data) or not fig.layout.annotations:
        return None
    return fig.layout.annotations[0].text
