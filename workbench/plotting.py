"""Shared plotting conventions for the figure functions of every analysis (plotly only).

Figure functions are pure: they take a result and return a ``plotly.graph_objects.Figure``.  This
module holds what they share: a template, a colour sequence, and :func:`use_report_renderer`, which
notebooks call so that figures shown with ``fig.show()`` survive nbconvert into an offline HTML report.
"""
from __future__ import annotations

import os

import plotly.graph_objects as go
import plotly.io as pio

TEMPLATE = "plotly_white"
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf"]


def base_layout(fig: go.Figure, title: str = "", **kw) -> go.Figure:
    """Apply the workbench look (template, margins, title) to ``fig`` and return it."""
    fig.update_layout(template=TEMPLATE, title=title or None, margin=dict(l=60, r=20, t=50 if title else 20, b=50),
                      **kw)
    return fig


def use_report_renderer(renderer: str | None = None) -> str:
    """Make ``fig.show()`` emit HTML that nbconvert keeps, with plotly.js embedded (works offline).

    ``$WORKBENCH_PLOTLY_RENDERER`` overrides the default ``"notebook"`` (``"notebook_connected"`` gives
    smaller files that load plotly.js from a CDN).
    """
    name = renderer or os.environ.get("WORKBENCH_PLOTLY_RENDERER", "notebook")
    pio.renderers.default = name
    return name
