"""Pruning: magnitude masks, retraining baselines, output CKA and three-regime maps.

* :func:`prune` / :func:`magnitude_mask`: one-shot magnitude pruning, ``scope="layer"`` or ``"global"``;
  masks interoperate with ``torch.nn.utils.prune`` (:func:`to_torch_prune`, :func:`from_torch_prune`).
* :func:`finetune` (mask fixed), :func:`iterative_prune` (with weight rewinding), :func:`scratch`
  (Scratch-E / Scratch-B) and :func:`compare_baselines`.
* :func:`linear_cka`, :func:`output_cka`; :func:`mode_connectivity` / :func:`signed_mc`.
* :func:`regime_map` and :func:`classify_regimes`; figures in :mod:`workbench.pruning.figures`.
"""
from .cka import linear_cka, output_cka, outputs
from .connect import interpolation_curve, mode_connectivity, reset_batchnorm, signed_mc
from .masks import (Pruned, apply_mask, density_of, from_torch_prune, layer_densities, magnitude_mask,
                    prunable_parameters, prune, to_torch_prune)
from .regime import REGIMES, RegimeMapResult, classify_regimes, regime_map
from .retrain import (BaselineResult, IterativePruned, compare_baselines, finetune, iterative_prune,
                      reinitialize, scratch, scratch_b_factor)

__all__ = [
    "prune", "magnitude_mask", "apply_mask", "density_of", "layer_densities", "prunable_parameters",
    "to_torch_prune", "from_torch_prune", "Pruned",
    "finetune", "scratch", "scratch_b_factor", "reinitialize", "iterative_prune", "IterativePruned",
    "compare_baselines", "BaselineResult",
    "linear_cka", "output_cka", "outputs", "signed_mc", "mode_connectivity", "interpolation_curve",
    "reset_batchnorm", "regime_map", "classify_regimes", "RegimeMapResult", "REGIMES",
]
