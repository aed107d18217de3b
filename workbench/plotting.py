"""Shared plotting conventions for the figure functions of every analysis (plotly only).

Figure functions are pure: they take a result and return a ``plotly.graph_objects.Figure``.  This
module holds what they share:

* the ``"workbench"`` template (:data:`TEMPLATE`): fonts, sizes, margins, grid, legend above the plot;
* :data:`ROLE`, one colour per role used across all figures (model A / B, the aligned copies, the
  train / val / test splits, the pruning regimes, data / fit / reference marks), :data:`COLORS` for series
  without a role, and the :data:`SEQUENTIAL` and :data:`DIVERGING` colour scales;
* :func:`base_layout`, which every figure ends with: template, sentence title and subtitle, a height per
  figure and no fixed width (figures size to their container);
* :func:`vline` / :func:`hline`: guide lines with labels placed correctly on log axes;
* :func:`log_ticks`: colour-bar ticks of a log-coloured quantity, labelled in its own units;
* :func:`use_report_renderer`, which notebooks call so that figures shown with ``fig.show()`` survive
  nbconvert into an offline HTML report.

Importing this module imports plotly; the analyses never import it (only their ``figures`` modules do).
"""
from __future__ import annotations

import math
import os
from typing import List, Optional, Tuple

import plotly.graph_objects as go
import plotly.io as pio
from plotly.io._base_renderers import NotebookRenderer

FONT = "Inter, 'Helvetica Neue', Helvetica, Arial, sans-serif"
TEXT = "#222222"
GRID = "#e6e6e6"

#: One colour per role, the same in every figure (colour-blind safe: Paul Tol's palettes).
ROLE = {
    # a pair of models and the copies of B aligned to A
    "model_a": "#332288", "model_b": "#CC6677", "aligned_weight": "#117733", "aligned_activation": "#DDAA33",
    # data splits
    "train": "#0077BB", "val": "#EE7733", "test": "#EE3377",
    # pruning regimes (light, so cell labels stay readable)
    "I": "#EE99AA", "II-A": "#EECC66", "II-B": "#6699CC",
    # generic marks: measured data, a fitted model, guides, an estimate and its interval, missing values
    "data": "#4477AA", "secondary": "#AA3377", "fit": "#CC3311", "reference": "#777777",
    "estimate": "#009988", "small_sample": "#999999", "missing": "#000000",
}
#: Series without a role, in order.
COLORS = ["#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377", "#BBBBBB", "#332288"]
#: Sequential scale (losses, densities, TC).
SEQUENTIAL = "Viridis"
#: Diverging scale for signed quantities, centred at 0: negative red, positive blue.
DIVERGING = [[0.0, "#B2182B"], [0.25, "#EF8A62"], [0.5, "#F7F7F7"], [0.75, "#67A9CF"], [1.0, "#2166AC"]]

TEMPLATE = "workbench"
HEIGHT = 420  # default figure height in px; the width follows the container


def _axis() -> dict:
    return dict(showline=True, linecolor="#555555", linewidth=1, ticks="outside", tickcolor="#555555",
                ticklen=4, gridcolor=GRID, zeroline=True, zerolinecolor="#b0b0b0", zerolinewidth=1, automargin=True,
                showspikes=False,
                title=dict(standoff=8, font=dict(size=14)), exponentformat="power")


def _template() -> go.layout.Template:
    t = go.layout.Template(pio.templates["plotly_white"])
    t.layout.update(
        font=dict(family=FONT, size=13, color=TEXT),
        title=dict(font=dict(size=16, color=TEXT), x=0, xref="paper", xanchor="left", y=0.98, yref="container",
                   yanchor="top", subtitle=dict(font=dict(size=12, color="#555555"))),
        colorway=COLORS, colorscale=dict(sequential=SEQUENTIAL, diverging=DIVERGING),
        margin=dict(l=60, r=24, t=80, b=16, autoexpand=True),
        xaxis=dict(_axis(), zeroline=False), yaxis=_axis(),
        legend=dict(orientation="h", x=0, xanchor="left", y=0, yref="container", yanchor="bottom",
                    bgcolor="rgba(255,255,255,0)", font=dict(size=12)),
        hoverlabel=dict(font=dict(family=FONT, size=12), bgcolor="white", bordercolor="#888888"),
        coloraxis=dict(colorbar=dict(outlinewidth=0, thickness=14, ticks="outside")),
        autosize=True,
    )
    t.layout.scene.update(xaxis=dict(gridcolor=GRID, backgroundcolor="white"),
                          yaxis=dict(gridcolor=GRID, backgroundcolor="white"),
                          zaxis=dict(gridcolor=GRID, backgroundcolor="white"))
    t.layout.annotationdefaults = dict(font=dict(size=12, color=TEXT))
    for kind in ("heatmap", "contour", "surface"):
        for trace in t.data[kind]:
            trace.update(colorbar=dict(outlinewidth=0, thickness=14, ticks="outside"))
    return t


pio.templates[TEMPLATE] = _template()


def base_layout(fig: go.Figure, title: str = "", *, subtitle: Optional[str] = None, height: int = HEIGHT,
                **kw) -> go.Figure:
    """Apply the workbench look to ``fig`` and return it: the template, ``title`` (a sentence) with an
    optional ``subtitle`` (details such as settings), ``height`` in px and no fixed width (the figure
    fills its container).  ``kw`` goes to ``update_layout``."""
    head = dict(text=title or None)
    if subtitle:
        subtitle = wrap_subtitle(subtitle)
        head["subtitle"] = dict(text=subtitle)
    top = 24 + (30 if title else 0) + (18 * (1 + subtitle.count("<br>")) if subtitle else 0)
    margin = {"t": top, **kw.pop("margin", {})}
    fig.update_layout(template=TEMPLATE, title=head, height=height, autosize=True, width=None, margin=margin, **kw)
    return fig


SUBTITLE_CHARS = 64  # characters per subtitle line: fits a figure half as wide as a notebook cell


def wrap_subtitle(text: str, width: int = SUBTITLE_CHARS) -> str:
    """``text`` with each ``<br>``-separated line of plain text longer than ``width`` characters broken at
    spaces (plotly does not wrap titles; a long line is cut at the figure's edge).  Lines with markup are
    kept whole."""
    import textwrap

    lines = []
    for line in text.split("<br>"):
        short = "<" in line or len(line) <= width
        lines.extend([line] if short else textwrap.wrap(line, width, break_on_hyphens=False))
    return "<br>".join(lines)


def hover(*parts: str) -> str:
    """A hover template from ``"name: %{value}"`` parts, one per line, without the trace-name box."""
    return "<br>".join(p for p in parts if p) + "<extra></extra>"


def _axis_of(fig: go.Figure, ref: str):
    """The layout axis named by a trace/shape reference such as ``"x"``, ``"x2"`` or ``"y domain"``."""
    ref = ref.split()[0]
    return fig.layout[f"{ref[0]}axis{ref[1:]}"]


def _position(fig: go.Figure, ref: str, value: float) -> float:
    """``value`` in the coordinates an annotation uses on axis ``ref``: log10 on a log axis."""
    if _axis_of(fig, ref).type == "log":
        if not value > 0:
            raise ValueError(f"a mark at {value!r} cannot be drawn on a log axis (it needs a positive value)")
        return math.log10(value)
    return value


def vline(fig: go.Figure, x: float, label: Optional[str] = None, *, color: str = ROLE["reference"],
          dash: str = "dash", width: float = 1.5, side: str = "right", top: bool = True,
          row: Optional[int] = None, col: Optional[int] = None) -> go.Figure:
    """A vertical guide at ``x`` over the full height of the axes, with ``label`` written beside it.

    Unlike plotly's ``add_vline(annotation_text=...)`` the label is placed in the axis' own coordinates
    (log10 on a log axis), so it sits next to its line and never stretches the axis.  Set the axis type
    before calling.  ``side``: label right or left of the line; ``top``: at the top or the bottom."""
    kw = dict(row=row, col=col) if row is not None else {}
    fig.add_vline(x=x, line=dict(color=color, dash=dash, width=width), **kw)
    if label:
        shape = fig.layout.shapes[-1]
        fig.add_annotation(x=_position(fig, shape.xref, x), xref=shape.xref, y=0.98 if top else 0.02,
                           yref=shape.yref, text=label, showarrow=False, xanchor="left" if side == "right" else "right",
                           xshift=4 if side == "right" else -4, yanchor="top" if top else "bottom",
                           font=dict(color=color), bgcolor="rgba(255,255,255,0.75)")
    return fig


def hline(fig: go.Figure, y: float, label: Optional[str] = None, *, color: str = ROLE["reference"],
          dash: str = "dash", width: float = 1.5, above: bool = True, left: bool = False,
          row: Optional[int] = None, col: Optional[int] = None) -> go.Figure:
    """A horizontal guide at ``y`` across the axes, labelled above (or below) the line at the right (or
    left) end, in the axis' own coordinates (see :func:`vline`)."""
    kw = dict(row=row, col=col) if row is not None else {}
    fig.add_hline(y=y, line=dict(color=color, dash=dash, width=width), **kw)
    if label:
        shape = fig.layout.shapes[-1]
        fig.add_annotation(y=_position(fig, shape.yref, y), yref=shape.yref, x=0.01 if left else 0.99,
                           xref=shape.xref, text=label, showarrow=False, xanchor="left" if left else "right",
                           yanchor="bottom" if above else "top", yshift=2 if above else -2,
                           font=dict(color=color), bgcolor="rgba(255,255,255,0.75)")
    return fig


def fmt(v: float, digits: int = 3) -> str:
    """A short number for labels: ``digits`` significant digits, plain between 1e-3 and 1e5."""
    if v is None or not math.isfinite(v):
        return "n/a"
    if v == round(v) and abs(v) < 1e5:
        return str(int(round(v)))
    text = f"{v:.{digits}g}"
    return text.replace("e-0", "e-").replace("e+0", "e").replace("e+", "e")


def log_axis(lo: float, hi: float) -> dict:
    """Settings of a log axis whose data run from ``lo`` to ``hi`` (positive values): ticks at every decade
    (as powers of ten) when the data span three decades or more, else a few labelled values
    (:func:`log_ticks`) instead of plotly's crowded minor digits."""
    if not (lo > 0 and hi > 0 and math.isfinite(lo) and math.isfinite(hi)):
        return dict(type="log")
    if math.log10(hi / lo) >= 3:
        return dict(type="log", exponentformat="power", dtick=1, tickmode="linear")
    pos, text = log_ticks(math.log10(lo), math.log10(hi))
    if len(pos) < 2:
        return dict(type="log")
    return dict(type="log", tickmode="array", tickvals=[10 ** p for p in pos], ticktext=text)


def _round_values(a: float, b: float, n: int = 5) -> List[float]:
    """Round values (steps of 1, 2, 2.5 or 5 times a power of ten) from ``a`` to ``b``: as close to ``n`` of
    them as such steps allow, at least three."""
    e = math.floor(math.log10((b - a) / n))
    best: List[float] = [a, b]
    for step in sorted(m * 10.0 ** k for k in (e - 1, e, e + 1) for m in (1, 2, 2.5, 5))[::-1]:
        start = math.ceil(a / step - 1e-9) * step
        vals = [round(start + i * step, 12) for i in range(int((b - start) / step + 1e-9) + 1)]
        if len(vals) >= 3 and (len(best) < 3 or abs(len(vals) - n) < abs(len(best) - n)):
            best = vals
    return best


def log_ticks(lo: float, hi: float, *, max_ticks: int = 8) -> Tuple[List[float], List[str]]:
    """Ticks for a quantity shown in log10 units from ``lo`` to ``hi`` (log10 values): their positions
    (log10) and labels (the quantity's own values), e.g. for a colour bar of ``log10(loss)``.

    Decades (1, 10, 100), then 1-3 and 1-2-5 mantissas, whichever first gives three ticks; a range narrower
    than that gets evenly spaced values."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [], []
    vals: List[float] = []
    for mantissas in ((1,), (1, 3), (1, 2, 5)):
        vals = [m * 10.0 ** k for k in range(math.floor(lo), math.ceil(hi) + 1) for m in mantissas
                if lo - 1e-9 <= math.log10(m) + k <= hi + 1e-9]
        if len(vals) >= 3:
            break
    if len(vals) < 3:
        vals = [v for v in _round_values(10 ** lo, 10 ** hi) if v > 0]
        return [math.log10(v) for v in vals], [f"{v:.6g}" for v in vals]
    while len(vals) > max_ticks:
        vals = vals[::2]
    return [math.log10(v) for v in vals], [fmt(v) for v in vals]


def linear_ticks(lo: float, hi: float, n: int = 5) -> Tuple[List[float], List[str]]:
    """About ``n`` round tick values between ``lo`` and ``hi`` and their labels (for colour bars)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [], []
    vals = _round_values(lo, hi, n)
    return vals, [f"{v:.6g}" for v in vals]


LOSS_NAMES = {"cross_entropy": "cross-entropy", "mse_loss": "mean squared error", "mse": "mean squared error",
              "l1_loss": "mean absolute error", "nll_loss": "negative log-likelihood",
              "binary_cross_entropy_with_logits": "binary cross-entropy", "bce": "binary cross-entropy"}


def loss_label(settings: dict, prefix: str = "") -> str:
    """``"<prefix> loss (cross-entropy)"`` from a result's ``settings["loss_fn"]``; just ``"loss"`` when the
    result does not record which loss it measured."""
    name = settings.get("loss_fn") if isinstance(settings, dict) else None
    head = f"{prefix} loss".strip()
    return f"{head} ({LOSS_NAMES.get(name, name)})" if name else head


def split_color(split: str, i: int = 0) -> str:
    """The role colour of a data split (``train`` / ``val`` / ``test``), else the ``i``-th series colour."""
    return ROLE.get(split, COLORS[i % len(COLORS)]) if split in ("train", "val", "test") else COLORS[i % len(COLORS)]


def short_names(names, width: int = 30) -> List[str]:
    """Tick labels for long parameter names: without a trailing ``.weight``, and of more than ``width``
    characters only the last dotted parts that fit (``"…layer.0.attention.self.query"``); the full names
    belong in the hover."""
    out = []
    for n in map(str, names):
        n = n[: -len(".weight")] if n.endswith(".weight") and not n[: -len(".weight")].isdigit() else n
        parts = n.split(".")
        while len(parts) > 1 and len(".".join(parts)) > width - 1:
            parts = parts[1:]
        tail = ".".join(parts)
        out.append(n if len(n) <= width else "…" + (tail if len(tail) < width else tail[-(width - 1):]))
    return out


MANY_TICKS = 12  # more category labels than this are written vertically, and the figure grows


def many_ticks_height(n: int, base: int = HEIGHT) -> int:
    """A taller figure when ``n`` categories are labelled at an angle under the axis."""
    return base + (200 if n > MANY_TICKS else 0)


def names_axis(names) -> dict:
    """Axis settings labelling categories ``names`` with :func:`short_names` (vertical when many)."""
    names = list(names)
    return dict(tickmode="array", tickvals=names, ticktext=short_names(names),
                tickangle=-90 if len(names) > MANY_TICKS else None)


def legend_entry(name: str, color: str, *, symbol: str = "square", mode: str = "markers",
                 dash: Optional[str] = None) -> go.Scatter:
    """A legend-only entry (no data, no hover) explaining a colour or marker used inside another trace."""
    return go.Scatter(x=[None], y=[None], mode=mode, name=name, hoverinfo="skip", showlegend=True,
                      marker=dict(color=color, symbol=symbol, size=10), line=dict(color=color, dash=dash))


class OfflineNotebookRenderer(NotebookRenderer):
    """plotly's ``"notebook"`` renderer without the MathJax script it loads from a CDN for every figure.

    plotly.js itself is embedded once, when the renderer is activated, so pages work offline.
    """

    def to_mimebundle(self, fig_dict):
        html = pio.to_html(fig_dict, config=self.config, auto_play=self.auto_play,
                           include_plotlyjs=self.include_plotlyjs, include_mathjax=False,
                           post_script=self.post_script, full_html=False, animation_opts=self.animation_opts,
                           default_width="100%", default_height=525, validate=False)
        return {"text/html": html}


REPORT_RENDERER = "workbench_offline"
pio.renderers[REPORT_RENDERER] = OfflineNotebookRenderer()


def use_report_renderer(renderer: str | None = None) -> None:
    """Make ``fig.show()`` emit HTML that nbconvert keeps, with plotly.js embedded (works offline).

    The default is :class:`OfflineNotebookRenderer` (``"workbench_offline"``); ``$WORKBENCH_PLOTLY_RENDERER``
    overrides it (``"notebook_connected"`` gives smaller files that load plotly.js from a CDN).
    """
    pio.renderers.default = renderer or os.environ.get("WORKBENCH_PLOTLY_RENDERER", REPORT_RENDERER)
