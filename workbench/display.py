"""What the curated notebooks show: formatted tables and the key-findings block of a report.

* :func:`table`: a DataFrame as a table with significant digits, readable column names and no index column;
* :func:`findings`: the key findings of one or more results (``result.findings()``) as a block that reports put
  at the top of the page and summarise in the index (the block carries its findings as JSON under
  :data:`FINDINGS_MIME`, which :mod:`workbench.pages` reads back from the executed notebook).
"""
from __future__ import annotations

import html
import math
import numbers
from typing import Any, Dict, Iterable, List, Optional, Sequence

import pandas as pd

from .findings import Finding, fmt

__all__ = ["table", "findings", "FINDINGS_MIME", "sentence"]

FINDINGS_MIME = "application/vnd.workbench.findings+json"


def _cell(value: Any, digits: int) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        return fmt(value, digits) if math.isfinite(float(value)) else ("" if math.isnan(float(value)) else fmt(value))
    return value


def table(frame: pd.DataFrame, *, digits: int = 3, columns: Optional[Dict[str, str]] = None,
          index: bool = False, max_rows: int = 60, caption: Optional[str] = None):
    """``frame`` as a table: numbers with ``digits`` significant digits (NaN left blank), columns renamed
    by ``columns`` (and underscores spelled as spaces), the index hidden unless ``index`` (then it becomes the
    first column), at most ``max_rows`` rows (the rest counted in the caption)."""
    f = frame.reset_index() if index else frame.reset_index(drop=True)
    more = len(f) - max_rows
    f = f.head(max_rows)
    shown = f.apply(lambda col: col.map(lambda v: _cell(v, digits)))
    names = {c: (columns or {}).get(c, str(c).replace("_", " ")) for c in shown.columns}
    shown = shown.rename(columns=names)
    styler = shown.style.hide(axis="index").format(escape="html")
    note = f"{caption + ' ' if caption else ''}({more} more rows not shown)" if more > 0 else caption
    if note:
        styler = styler.set_caption(html.escape(note))
    return styler


def sentence(findings_: Sequence[Finding], key: str) -> str:
    """The text of the finding ``key`` (for narrative cells that state a measured number)."""
    for f in findings_:
        if f.key == key:
            return f.text
    raise KeyError(f"no finding {key!r}; there are {[f.key for f in findings_]}")


class _Findings:
    """A displayable block of findings (HTML for the page, JSON for the index)."""

    def __init__(self, items: List[Finding], title: str, headline: Optional[str]):
        self.items, self.title, self.headline = items, title, headline

    def _repr_mimebundle_(self, include=None, exclude=None) -> Dict[str, Any]:
        lis = "".join(f"<li>{html.escape(f.text)}</li>" for f in sorted(self.items, key=lambda f: -f.weight))
        head = f"<p><b>{html.escape(self.headline)}</b></p>" if self.headline else ""
        block = (f"<div class='workbench-findings'><h2>{html.escape(self.title)}</h2>{head}<ul>{lis}</ul></div>")
        data = {"title": self.title, "headline": self.headline, "findings": [f.to_dict() for f in self.items]}
        return {"text/html": block, FINDINGS_MIME: data,
                "text/plain": "\n".join(f"- {f.text}" for f in self.items)}


def findings(*groups: Iterable[Finding], title: str = "Key findings", headline: Optional[str] = None) -> _Findings:
    """The key-findings block of a report from the findings of one or more results."""
    items = [f for g in groups for f in g]
    return _Findings(items, title, headline)
