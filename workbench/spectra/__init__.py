"""Low-rank spectra of weight matrices: ESDs, heavy-tail alpha, ranks, and WeLore compression.

``analyze(model)`` returns a :class:`SpectraResult` (one row per weight matrix); ``model`` may also be a
checkpoint on disk (``.safetensors``, a sharded folder, ``.pt``), streamed one tensor at a time (see
:mod:`workbench.spectra.checkpoint`).  ``welore(result, ...)`` plans a rank reduction and
``compress(model, data, plan=...)`` applies it.  Definitions: ``docs/spectra.md``.  Figures live in
:mod:`workbench.spectra.figures` (imported on first use).
"""
from ..lazy import figures_on_demand
from .analyze import COLUMNS, SpectraResult, analyze
from .checkpoint import source
from .extract import WeightMatrix, iter_matrices
from .powerlaw import PowerLawFit, bootstrap_alpha, fit_powerlaw
from .welore import CompressionResult, LowRankLinear, WeLoreResult, compress, solve_tau, welore

__all__ = ["analyze", "source", "SpectraResult", "COLUMNS", "fit_powerlaw", "bootstrap_alpha", "PowerLawFit",
           "iter_matrices", "WeightMatrix", "welore", "solve_tau", "WeLoreResult", "compress",
           "CompressionResult", "LowRankLinear"]

__getattr__ = figures_on_demand(__name__)
