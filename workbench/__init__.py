"""nn-workbench: analyses for looking inside neural networks and graphs.

Each analysis lives in its own module and is imported on first use::

    import workbench
    res = workbench.spectra.analyze(model)
"""
from __future__ import annotations

import importlib
import os as _os
import sys as _sys
from typing import Any

__version__ = "0.1.0"


def _prefer_passive_wait() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` before torch loads its OpenMP runtime, unless the user chose a wait
    policy, torch is already imported or ``$WORKBENCH_THREADS`` is ``off``: the thread policy of
    :mod:`workbench.backend` ("Threads on a shared CPU").  Returns whether it set the variable."""
    if _os.environ.get("WORKBENCH_THREADS", "").strip().lower() == "off" or "torch" in _sys.modules:
        return False
    if _os.environ.get("OMP_WAIT_POLICY", "").strip():
        return False
    _os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


_WAIT_POLICY_SET = _prefer_passive_wait()

_SUBMODULES = {
    "backend", "progress", "results", "data", "models", "spectra", "paramspace", "landscape",
    "connectivity", "pruning", "sweep", "intrinsic_dimension", "topology", "report", "cli",
    "batchnorm", "paths", "training", "losses", "validation", "findings", "display", "pages", "parameters",
    "lazy", "plotting", "importpath",
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


__all__ = sorted(_SUBMODULES)
