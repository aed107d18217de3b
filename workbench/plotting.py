"""Shared plotting conventions for the figure functions of every analysis (plotly only).

Figure functions are pure: they take a result and return a ``plotly.graph_objects.Figure``.  This
module holds what they share: a template, a colour sequence, and :func:`use_report_renderer`, which
notebooks call so that figures shown with ``fig.show()`` survive nbconvert into an offline HTML report.
"""
from __future__ import annotations

import os

import plotly.graph_objects as go
import plotly.io as pio
from plotly.io._base_renderers import NotebookRenderer

TEMPLATE = "plotly_white"
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf"]


def base_layout(fig: go.Figure, title: str = "", **kw) -> go.Figure:
    """Apply the workbench look (template, margins, title) to ``fig`` and return it."""
    fig.update_layout(template=TEMPLATE, title=title or None, margin=dict(l=60, r=20, t=50 if title else 20, b=50),
                      **kw)
    return fig


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
