"""Loss-landscape maps and curvature.

Maps (:mod:`.maps`): :func:`plane`, :func:`line`, :func:`interpolate` around a model, evaluated on whole
data splits many grid points at a time.  Directions (:mod:`.directions`): seeded, filter-normalised
random directions and PCA directions of a training trajectory.  Curvature (:mod:`.curvature`):
Hessian-vector products, top eigenvalues, Hutchinson trace, spectral density, per-layer variants.
Figures (:mod:`.figures`): pure functions from results to plotly figures.
"""
from .curvature import (DensityResult, EigenResult, HessianOperator, LayerwiseResult, TraceResult, density,
                        eigen_slice, eigenvalues, hvp, lanczos, layerwise, trace)
from .directions import NORMS, normalize_direction, orthogonalize, pca_directions, random_direction, random_directions
from .maps import LandscapeResult, as_splits, evaluate_at, interpolate, line, plane

__all__ = ["plane", "line", "interpolate", "evaluate_at", "LandscapeResult", "as_splits",
           "random_direction", "random_directions", "normalize_direction", "orthogonalize", "pca_directions", "NORMS",
           "HessianOperator", "hvp", "eigenvalues", "trace", "density", "layerwise", "eigen_slice", "lanczos",
           "EigenResult", "TraceResult", "DensityResult", "LayerwiseResult"]
