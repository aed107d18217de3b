"""Pruning: magnitude masks, retraining baselines, output CKA and three-regime maps.

* :func:`analyze`: the regime map over a temperature knob x density grid (:mod:`.map`);
  :func:`estimate_cost` says what it will cost first; :func:`classify_regimes` labels the cells.
* :func:`temperature_direction`: the map over several dense-model seeds, and in how many the paper's
  temperature direction shows.
* :func:`prune` / :func:`magnitude_mask`: one-shot magnitude pruning, ``scope="layer"`` or ``"global"``;
  masks interoperate with ``torch.nn.utils.prune`` (:func:`to_torch_prune`, :func:`from_torch_prune`).
* :func:`finetune` (mask fixed), :func:`iterative_prune` (with weight rewinding), :func:`scratch`
  (Scratch-E / Scratch-B) and :func:`compare_baselines`.
* :func:`linear_cka`, :func:`output_cka`; :func:`mode_connectivity` (signed mc along the path).

Definitions: ``docs/pruning.md``.  Figures in :mod:`workbench.pruning.figures` (imported on first use).
"""
from ..lazy import figures_on_demand
from ..paths import signed_mc
from .cka import linear_cka, output_cka, outputs
from .direction import DirectionResult, direction_at, temperature_direction
from .map import DEFAULT_DENSITIES, analyze, estimate_cost, mode_connectivity
from .masks import (PruneResult, PruningWarning, apply_mask, density_of, from_torch_prune, layer_densities,
                    magnitude_mask, prunable_parameters, prune, to_torch_prune)
from .regime import REGIMES, RegimeMapResult, classify_regimes
from .retrain import (BaselineResult, IterativePruneResult, compare_baselines, finetune, iterative_prune, reinitialize,
                      scratch, scratch_b_factor)

__all__ = [
    "analyze", "estimate_cost", "DEFAULT_DENSITIES", "classify_regimes", "RegimeMapResult", "REGIMES",
    "temperature_direction", "DirectionResult", "direction_at",
    "prune", "magnitude_mask", "apply_mask", "density_of", "layer_densities", "prunable_parameters",
    "to_torch_prune", "from_torch_prune", "PruneResult", "PruningWarning",
    "finetune", "scratch", "scratch_b_factor", "reinitialize", "iterative_prune", "IterativePruneResult",
    "compare_baselines", "BaselineResult",
    "linear_cka", "output_cka", "outputs", "signed_mc", "mode_connectivity",
]

__getattr__ = figures_on_demand(__name__)
