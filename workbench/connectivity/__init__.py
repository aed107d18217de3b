"""Linear mode connectivity: barriers, permutation alignment, layer-wise LMC and merging.

    from workbench import connectivity as lmc
    res = lmc.barrier(model_a, model_b, test, train_data=train, bn="reset")
    res.barriers_            # {"max_minus_mean": ..., "max_minus_chord": ..., "midpoint": ..., "signed_mc": ...}
    b_aligned = lmc.align(model_a, model_b, method="weight").model_
    full = lmc.analyze((model_a, model_b), test, train_data=train)

Definitions: ``docs/connectivity.md``.  Figures live in :mod:`workbench.connectivity.figures` (imported on
first use).
"""
from ..batchnorm import has_batchnorm, repair, reset_bn
from ..lazy import figures_on_demand
from ..paths import (BN_MODES, VARIANTS, PathEvaluator, barrier_argmax, barrier_variants, check_same_architecture,
                     interpolate_state, signed_mc)
from .analysis import ConnectivityResult, analyze
from .barrier import BarrierResult, barrier, summarize
from .findings import seed_findings
from .layerwise import LayerwiseResult, compare, default_groups, layerwise, merge, singular_alignment
from .matching import AlignResult, activation_matching, align, check_function_preserved, weight_matching
from .permute import permute, permute_state
from .spec import PermutationSpec, UnsupportedStructure
from .tracing import example_input, permutation_spec

__all__ = [
    "BN_MODES", "VARIANTS", "AlignResult", "BarrierResult", "ConnectivityResult", "LayerwiseResult", "PathEvaluator",
    "PermutationSpec", "UnsupportedStructure", "activation_matching", "align", "analyze", "barrier", "barrier_argmax",
    "barrier_variants", "check_function_preserved", "check_same_architecture", "compare", "default_groups",
    "example_input", "has_batchnorm", "interpolate_state", "layerwise", "merge", "permutation_spec", "permute",
    "permute_state", "repair", "reset_bn", "seed_findings",
    "signed_mc", "singular_alignment", "summarize", "weight_matching",
]

__getattr__ = figures_on_demand(__name__)
