"""A stand-in for the browser side of widgets, enough to see what a plotly figure view shows.

It records every state update the kernel sends (ipywidgets' ``Widget._send``) and keeps, per widget, the
synced state as the browser's model holds it.  A :class:`View` of a ``FigureWidget`` is what plotly's
browser view does: it starts from the model's ``_widget_data`` / ``_widget_layout`` and then applies the
one-shot ``_py2js_*`` messages (add / delete / move traces, restyle, relayout, update) as they arrive.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List

import ipywidgets as ipw


def _set_path(obj: Dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    for k in keys[:-1]:
        obj = obj.setdefault(k, {})
    if value is None:
        obj.pop(keys[-1], None)
    else:
        obj[keys[-1]] = copy.deepcopy(value)


class View:
    """What one open plotly view of a figure shows."""

    def __init__(self, state: Dict[str, Any]):
        self.data: List[Dict[str, Any]] = copy.deepcopy(state.get("_widget_data") or [])
        self.layout: Dict[str, Any] = copy.deepcopy(state.get("_widget_layout") or {})

    def apply(self, key: str, msg: Any) -> None:
        if msg is None:
            return
        if key == "_py2js_addTraces":
            self.data.extend(copy.deepcopy(msg["trace_data"]))
        elif key == "_py2js_deleteTraces":
            for i in sorted(msg["delete_inds"], reverse=True):
                del self.data[i]
        elif key == "_py2js_moveTraces":
            moved = [self.data[i] for i in msg["current_trace_inds"]]
            for i in sorted(msg["current_trace_inds"], reverse=True):
                del self.data[i]
            for i, t in sorted(zip(msg["new_trace_inds"], moved), key=lambda p: p[0]):
                self.data.insert(i, t)
        elif key == "_py2js_relayout":
            for path, value in msg["relayout_data"].items():
                _set_path(self.layout, path, value)
        elif key in ("_py2js_restyle", "_py2js_update"):
            style = msg.get("restyle_data") or msg.get("style_data") or {}
            traces = msg.get("restyle_traces", msg.get("style_traces"))
            traces = range(len(self.data)) if traces is None else traces
            for path, values in style.items():
                values = values if isinstance(values, list) else [values]
                for n, i in enumerate(traces):
                    _set_path(self.data[i], path, values[n % len(values)])
            for path, value in (msg.get("layout_data") or {}).items():
                _set_path(self.layout, path, value)

    @property
    def trace_names(self) -> List[str]:
        return [t.get("name") for t in self.data]


class FrontEnd:
    """Install with :meth:`attach` (a pytest ``monkeypatch``) before the widgets are built."""

    def __init__(self) -> None:
        self.state: Dict[int, Dict[str, Any]] = {}
        self.views: Dict[int, List[View]] = {}

    def attach(self, monkeypatch) -> "FrontEnd":
        original_open = ipw.Widget.open
        frontend = self

        def open_(widget):
            original_open(widget)
            frontend.state[id(widget)] = dict(widget.get_state())  # what the comm_open message carries

        def send(widget, msg, buffers=None):
            if msg.get("method") != "update":
                return
            frontend.state.setdefault(id(widget), {}).update(msg["state"])
            for view in frontend.views.get(id(widget), []):
                for key, value in msg["state"].items():
                    view.apply(key, value)

        monkeypatch.setattr(ipw.Widget, "open", open_)
        monkeypatch.setattr(ipw.Widget, "_send", send)
        return self

    def new_view(self, widget) -> View:
        """A view of ``widget`` created now (a figure rendered, or re-rendered, in the page)."""
        view = View(self.state.get(id(widget), {}))
        self.views.setdefault(id(widget), []).append(view)
        return view
