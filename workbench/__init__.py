"""nn-workbench: analyses for looking inside neural networks and graphs.

Each analysis lives in its own module and is imported on first use::

    import workbench
    res = workbench.spectra.analyze(model)
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = {
    "backend", "progress", "results", "data", "models", "spectra", "paramspace", "landscape",
    "connectivity", "pruning", "sweep", "intrinsic_dimension", "topology", "report", "cli",
    "batchnorm", "paths", "training", "losses", "validation", "findings", "display", "pages", "parameters",
    "lazy", "plotting",
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


__all__ = sorted(_SUBMODULES)
