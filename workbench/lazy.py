"""Lazy ``figures`` submodules: importing an analysis never imports plotly (or ipywidgets).

Each analysis package sets ``__getattr__ = figures_on_demand(__name__)``, so ``workbench.spectra.figures``
is imported the first time it is asked for.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable


def figures_on_demand(package: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``<package>.figures`` on first access."""

    def __getattr__(name: str) -> Any:
        if name == "figures":
            return importlib.import_module(".figures", package)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
