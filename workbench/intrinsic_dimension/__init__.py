"""Intrinsic dimension of objectives (subspace training) and of representations (TwoNN, MLE).

Objective ID (Li et al. 2018): train only ``theta_d`` in ``theta = theta_0 + P theta_d`` with a dense,
sparse or Fastfood projection ``P`` (:func:`subspace_train`), and search the smallest ``d`` reaching 90 %
of a stated baseline (:func:`search`).  Representation ID: :func:`twonn`, :func:`mle` and a per-layer
:func:`profile` of a model's activations.  Figures live in :mod:`.figures`.
"""
from .projections import (DenseProjection, FastfoodProjection, Projection, SparseProjection, fwht, hadamard,
                          make_projection, next_pow2, projection_memory)
from .subspace import SubspaceModel, SubspaceResult, num_parameters, subspace_model, subspace_train
from .search import SearchResult, TrialCache, search
from .estimators import IDEstimate, ProfileResult, activations, estimate, knn, mle, profile, twonn
from . import figures

__all__ = [
    "DenseProjection", "FastfoodProjection", "Projection", "SparseProjection", "fwht", "hadamard",
    "make_projection", "next_pow2", "projection_memory",
    "SubspaceModel", "SubspaceResult", "num_parameters", "subspace_model", "subspace_train",
    "SearchResult", "TrialCache", "search",
    "IDEstimate", "ProfileResult", "activations", "estimate", "knn", "mle", "profile", "twonn", "figures",
]
