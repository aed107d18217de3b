"""Report pages: an executed notebook made into a page that reads as a report, and the index of a report run.

A page keeps the notebook's narrative and outputs and adds what a reader needs: the key findings (the
block :func:`workbench.display.findings` made) at the top, a contents list of the sections and a link back
to the index.  It drops what only makes sense live: interactive panels (cells tagged ``interactive``),
widget state, progress bars and warnings printed to stderr, and empty sections.  The index gives one
paragraph per report from its findings.
"""
from __future__ import annotations

import copy
import html
import re
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from .display import FINDINGS_MIME

__all__ = ["to_html", "page_notebook", "summary_of", "index_page", "WIDGET_MIME", "INTERACTIVE_TAG"]

PathLike = Union[str, "Path"]
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
INTERACTIVE_TAG = "interactive"

# JupyterLab's page without the scripts it loads from a CDN (require.js, MathJax): a report needs
# neither (plotly.js is embedded by the notebooks' renderer) and must not reach the network.
_REPORT_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
"""

_STYLE = """<style>
.workbench-nav{font-size:0.92em;margin:0.4em 0 1em 0;padding:0.5em 0.8em;background:#f5f6f8;border-radius:4px}
.workbench-nav a{margin-right:0.9em}
.workbench-findings{border-left:4px solid #3b6ea8;background:#f4f7fb;padding:0.4em 1em;margin:0.6em 0 1.2em 0}
.workbench-findings h2{margin-top:0.3em}
.jp-RenderedHTMLCommon table{font-size:0.9em}
.jp-OutputArea-output{overflow-x:auto}
@media print{.workbench-nav{display:none}}
</style>"""


def _drop_live(nb) -> None:
    """Remove what a static page cannot use: widget outputs and state, interactive cells, stderr streams."""
    nb.metadata.pop("widgets", None)
    keep = []
    for cell in nb.cells:
        if INTERACTIVE_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        if cell.get("cell_type") == "code":
            cell["outputs"] = [o for o in cell.get("outputs", []) if WIDGET_MIME not in o.get("data", {})
                               and not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
        keep.append(cell)
    nb.cells = keep


def _headings(nb) -> List[Tuple[int, str]]:
    """``(cell index, text)`` of the section headings (``## ...``) of the markdown cells."""
    out = []
    for i, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "markdown":
            continue
        for line in "".join(cell["source"]).splitlines():
            m = re.match(r"^##\s+(.+)$", line)
            if m:
                out.append((i, m.group(1).strip()))
    return out


def _drop_empty_sections(nb) -> None:
    """A heading whose section has no output (its cells printed nothing) is removed with its text."""
    heads = [i for i, _ in _headings(nb)]
    bounds = heads + [len(nb.cells)]
    drop = set()
    for a, b in zip(bounds[:-1], bounds[1:]):
        cells = nb.cells[a + 1:b]
        code = [c for c in cells if c.get("cell_type") == "code"]
        if code and not any(c.get("outputs") for c in code):
            drop.add(a)
            drop.update(i for i in range(a + 1, b) if nb.cells[i].get("cell_type") == "markdown")
    nb.cells = [c for i, c in enumerate(nb.cells) if i not in drop]


def _findings_cell(nb) -> Optional[int]:
    for i, cell in enumerate(nb.cells):
        if any(FINDINGS_MIME in o.get("data", {}) for o in cell.get("outputs", [])):
            return i
    return None


def page_notebook(nb, *, index_link: str = "index.html"):
    """A copy of the executed notebook ``nb`` shaped as a report page (see module docstring)."""
    import nbformat

    nb = copy.deepcopy(nb)
    _drop_live(nb)
    first = next((i for i, c in enumerate(nb.cells) if c.get("cell_type") == "markdown"), -1)
    at = _findings_cell(nb)
    if at is not None and at > first + 1:  # the key findings come first, under the title
        nb.cells.insert(first + 1, nb.cells.pop(at))
    _drop_empty_sections(nb)  # after the move: the findings belong to no section
    anchors = []
    for n, (i, text) in enumerate(_headings(nb)):
        anchor = f"section-{n + 1}"
        nb.cells[i]["source"] = f"<a id='{anchor}'></a>\n\n" + "".join(nb.cells[i]["source"])
        anchors.append((anchor, text))
    links = " ".join(f"<a href='#{a}'>{html.escape(t)}</a>" for a, t in anchors)
    nav = (f"<div class='workbench-nav'><a href='{html.escape(index_link)}'>&larr; All reports</a>"
           + (f" <b>Contents:</b> {links}" if links else "") + "</div>")
    nb.cells.insert(max(first, 0) + (1 if first >= 0 else 0), nbformat.v4.new_markdown_cell(nav))
    return nb


def summary_of(nb) -> Dict[str, Any]:
    """The title (the first heading) and the findings of an executed notebook, for the index."""
    title = ""
    for cell in nb.cells:
        if cell.get("cell_type") == "markdown":
            m = re.search(r"^#\s+(.+)$", "".join(cell["source"]), re.M)
            if m:
                title = m.group(1).strip()
                break
    found: Dict[str, Any] = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if FINDINGS_MIME in o.get("data", {}):
                found = dict(o["data"][FINDINGS_MIME])
    return {"title": title, "headline": found.get("headline"), "findings": found.get("findings", [])}


def to_html(executed: PathLike, target: PathLike, *, show_code: bool = False, title: str = "") -> Path:
    """Convert an executed notebook to a standalone report page (code hidden unless ``show_code``)."""
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    nb = page_notebook(nbformat.read(str(executed), as_version=4))
    exporter = HTMLExporter(template_name="lab", template_file="workbench_report.html.j2",
                            extra_loaders=[DictLoader({"workbench_report.html.j2": _REPORT_TEMPLATE})],
                            exclude_input=not show_code, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    if title:
        nb.metadata["title"] = title
    body, _ = exporter.from_notebook_node(nb)
    body = body.replace("</head>", _STYLE + "\n</head>", 1)
    target = Path(target)
    target.write_text(body, encoding="utf-8")
    return target


def _paragraph(run: Dict[str, Any], limit: int = 4) -> str:
    items = sorted(run.get("findings") or [], key=lambda f: -f.get("weight", 1))[:limit]
    text = " ".join(html.escape(f["text"]) for f in items)
    if run.get("headline"):
        text = f"<b>{html.escape(run['headline'])}</b> " + text
    return text or "<i>No key findings were recorded by this report.</i>"


def index_page(runs: List[Dict[str, Any]], title: str) -> str:
    """The index of a report run: one section per report with a paragraph of its key findings."""
    parts = []
    for r in runs:
        name = html.escape(r.get("title") or r["notebook"])
        head = f"<a href='{html.escape(r['html'])}'>{name}</a>" if r.get("html") else name
        if r["status"] == "ok":
            state = f"{r['seconds']:.0f} s" + (", kept from an earlier run" if r.get("resumed") else "")
            body = f"<p>{_paragraph(r)}</p>"
        else:
            state = "<b style='color:#b00020'>failed</b>"
            body = f"<p class='error'>{html.escape(r.get('error', ''))}</p>"
        params = ", ".join(f"{k}={v!r}" for k, v in r["parameters"].items()) or "the notebook's defaults"
        source = f" &middot; <a href='{html.escape(r['ipynb'])}'>executed notebook</a>" if r.get("ipynb") else ""
        parts.append(f"<section><h2>{head}</h2>{body}<p class='meta'>{state}{source} &middot; parameters: "
                     f"<code>{html.escape(params)}</code></p></section>")
    failed = sum(r["status"] != "ok" for r in runs)
    lead = (f"{len(runs)} report{'s' if len(runs) != 1 else ''}" + (f", {failed} failed" if failed else "")
            + f", generated {time.strftime('%Y-%m-%d %H:%M')}.")
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>body{{font-family:system-ui,sans-serif;max-width:58em;"
            "margin:2em auto;padding:0 1em;line-height:1.45;color:#222}h2{margin-bottom:0.2em}"
            "section{border-bottom:1px solid #e3e3e3;padding-bottom:0.6em}.meta{color:#666;font-size:0.88em}"
            ".error{color:#b00020}code{font-size:0.9em}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>{lead}</p>" + "".join(parts) + "</body></html>")
