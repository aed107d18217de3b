"""Optional modules imported on first use, so that a test module that needs one only in some tests still
collects without it (e.g. plotly on a GPU machine that runs the ``gpu`` tests): the tests that touch the
module skip with ``pytest.importorskip``'s reason, the others run."""
from __future__ import annotations

import pytest


class optional_module:
    """A stand-in for ``import name``: the first attribute read imports it, or skips the test without it."""

    def __init__(self, name: str):
        self._name = name
        self._module = None

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        if self._module is None:
            self._module = pytest.importorskip(self._name)
        return getattr(self._module, attr)

    def __repr__(self) -> str:
        return f"<optional module {self._name!r}>"
