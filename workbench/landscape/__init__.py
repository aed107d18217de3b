"""Loss-landscape maps and curvature.

:func:`analyze` maps a plane around a model and measures its curvature there.  Maps (:mod:`.maps`):
:func:`plane`, :func:`line`, :func:`interpolate` around a model, evaluated on whole data splits many grid
points at a time.  Directions (:mod:`.directions`): seeded, filter-normalised random directions and PCA
directions of a training trajectory.  Curvature (:mod:`.curvature`, on :mod:`.hessian`): Hessian-vector
products, top eigenvalues, Hutchinson trace, spectral density, per-layer variants.  Definitions:
``docs/landscape.md``.  Figures (:mod:`.figures`, imported on first use): pure functions from results to
plotly figures.
"""
from ..lazy import figures_on_demand
from .analysis import LandscapeReport, analyze
from .curvature import (DensityResult, EigenResult, LayerwiseResult, TraceResult, density, eigen_slice, eigenvalues,
                        layerwise, trace)
from .directions import NORMS, normalize_direction, orthogonalize, pca_directions, random_direction, random_directions
from .hessian import HessianOperator, hvp, lanczos
from .maps import LandscapeResult, as_splits, evaluate_at, interpolate, line, plane

__all__ = ["analyze", "LandscapeReport", "plane", "line", "interpolate", "evaluate_at", "LandscapeResult",
           "as_splits", "random_direction", "random_directions", "normalize_direction", "orthogonalize",
           "pca_directions", "NORMS", "HessianOperator", "hvp", "eigenvalues", "trace", "density", "layerwise",
           "eigen_slice", "lanczos", "EigenResult", "TraceResult", "DensityResult", "LayerwiseResult"]

__getattr__ = figures_on_demand(__name__)
