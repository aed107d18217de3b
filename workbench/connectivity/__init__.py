"""Linear mode connectivity: barriers, permutation alignment, layer-wise LMC and merging.

    from workbench import connectivity as lmc
    res = lmc.barrier(model_a, model_b, test, train_data=train, bn="reset")
    res.barriers_            # {"max_minus_mean": ..., "max_minus_chord": ..., "midpoint": ..., "signed_mc": ...}
    b_aligned, perms = lmc.align(model_a, model_b, method="weight")
    full = lmc.analyze(model_a, model_b, test, train_data=train)

Definitions: REFERENCE section 2 (see each module's docstring).  Figures live in
:mod:`workbench.connectivity.figures`.
"""
from .barrier import (BN_MODES, VARIANTS, BarrierResult, PathEvaluator, barrier, barrier_argmax, barrier_variants,
                      has_batchnorm, interpolate_state, repair, reset_bn, summarize)
from .layerwise import (ConnectivityResult, LayerwiseResult, analyze, compare, default_groups, layerwise, merge,
                        singular_alignment)
from .permutation import (AlignResult, PermutationSpec, UnsupportedStructure, activation_matching, align,
                          check_same_architecture, permutation_spec, permute, permute_state, weight_matching)

__all__ = [
    "BN_MODES", "VARIANTS", "AlignResult", "BarrierResult", "ConnectivityResult", "LayerwiseResult", "PathEvaluator",
    "PermutationSpec", "UnsupportedStructure", "activation_matching", "align", "analyze", "barrier", "barrier_argmax",
    "barrier_variants", "check_same_architecture", "compare", "default_groups", "has_batchnorm",
    "interpolate_state", "layerwise", "merge", "permutation_spec", "permute", "permute_state", "repair",
    "reset_bn", "singular_alignment", "summarize", "weight_matching",
]
