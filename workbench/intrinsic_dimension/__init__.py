"""Intrinsic dimension of objectives (subspace training) and of representations (TwoNN, MLE).

Objective ID (Li et al. 2018): train only ``theta_d`` in ``theta = theta_0 + P theta_d`` with a dense,
sparse or Fastfood projection ``P`` (:func:`subspace_train`), and search the smallest ``d`` reaching 90 %
of a stated baseline (:func:`analyze`).  Representation ID: :func:`twonn`, :func:`mle` and a per-layer
:func:`profile` of a model's activations.  Definitions: ``docs/intrinsic-dimension.md``.  Figures live in
:mod:`.figures` (imported on first use).
"""
from ..lazy import figures_on_demand
from .estimators import IDEstimate, ProfileResult, activations, estimate, knn, mle, profile, twonn
from .findings import comparison_findings
from .projections import (DenseProjection, FastfoodProjection, Projection, SparseProjection, fwht, hadamard,
                          make_projection, next_pow2, projection_memory)
from .search import SearchResult, analyze, bootstrap_dint
from .subspace import SubspaceModel, SubspaceResult, num_parameters, subspace_model, subspace_train

__all__ = [
    "DenseProjection", "FastfoodProjection", "Projection", "SparseProjection", "fwht", "hadamard",
    "make_projection", "next_pow2", "projection_memory",
    "SubspaceModel", "SubspaceResult", "num_parameters", "subspace_model", "subspace_train",
    "SearchResult", "analyze", "bootstrap_dint", "comparison_findings",
    "IDEstimate", "ProfileResult", "activations", "estimate", "knn", "mle", "profile", "twonn",
]

__getattr__ = figures_on_demand(__name__)
