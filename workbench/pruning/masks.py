"""Magnitude pruning masks: one-shot layer-wise uniform or global, compatible with torch.nn.utils.prune.

A mask is a dict ``parameter name -> 0/1 tensor`` of the parameter's shape (1 = kept).  By default the
weights of every ``nn.Linear`` and ``nn.Conv*`` layer are pruned (biases and normalisation layers are
not), as in the three-regime and lottery-ticket papers.

* ``scope="layer"``: every layer keeps the same fraction ``density`` of its weights (the largest in
  absolute value); the count per layer is ``round(density * numel)`` (at least 1).
* ``scope="global"``: one magnitude threshold across all pruned layers; exactly
  ``round(density * total)`` weights are kept in all.

Ties in magnitude are broken by position (the earlier index is kept), so the density is exact.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from ..results import Result

Mask = Dict[str, torch.Tensor]

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclasses.dataclass
class PruneResult(Result):
    """What :func:`prune` made: the mask (parameter name -> 0/1 tensor) and, in ``model_``, the pruned model
    (not saved).  ``to_frame()``: one row per pruned weight with its size, kept count and density."""

    mask: Dict[str, Any] = dataclasses.field(default_factory=dict)

    kind = "prune"

    def __post_init__(self) -> None:
        self.model_: Optional[nn.Module] = None

    def to_frame(self) -> pd.DataFrame:
        rows = [{"parameter": n, "size": int(np.prod(np.shape(m))), "kept": int(np.asarray(m).sum()),
                 "density": float(np.asarray(m).mean())} for n, m in self.mask.items()]
        return pd.DataFrame(rows, columns=["parameter", "size", "kept", "density"])

    @property
    def density(self) -> float:
        return density_of({k: torch.as_tensor(np.asarray(v)) for k, v in self.mask.items()})


def prunable_parameters(model: nn.Module, *, include_head: bool = True) -> List[str]:
    """Names of the weights magnitude pruning acts on (Linear and Conv weights, in model order)."""
    names = []
    for mod_name, module in model.named_modules():
        if isinstance(module, PRUNABLE) and getattr(module, "weight", None) is not None:
            names.append(f"{mod_name}.weight" if mod_name else "weight")
    if not include_head and names:
        names = names[:-1]
    if not names:
        raise ValueError(f"{type(model).__name__} has no Linear or Conv weights to prune; "
                         "pass parameters=[names] explicitly")
    return names


def _check_density(density: float) -> float:
    density = float(density)
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density={density} must be in (0, 1]: the fraction of weights kept "
                         "(e.g. 0.1 keeps 10%)")
    return density


def _top_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """0/1 mask of the ``k`` largest entries of ``scores``, ties at the threshold broken by lower index.

    Linear time: the threshold is the k-th largest value (``kthvalue``), not a full sort.
    """
    flat = scores.flatten()
    n = flat.numel()
    if k >= n:
        return torch.ones_like(scores)
    threshold = torch.kthvalue(flat, n - k + 1).values
    keep = flat > threshold
    need = k - int(keep.sum())
    if need > 0:
        ties = torch.nonzero(flat == threshold).flatten()[:need]
        keep[ties] = True
    return keep.to(scores.dtype).view_as(scores)


def magnitude_mask(model: nn.Module, density: float, *, scope: str = "layer",
                   parameters: Optional[Sequence[str]] = None, current: Optional[Mask] = None,
                   min_layer_density: Optional[float] = None) -> Mask:
    """The magnitude-pruning mask of ``model`` at ``density`` (fraction kept), without touching the model.

    ``current`` (an existing mask) restricts the choice to weights that are still alive, as in iterative
    pruning: the new mask keeps ``density`` of all the original weights, a subset of ``current``.

    ``scope="global"`` can empty whole layers (a network whose output is then constant).  A warning names
    every layer left below ``EMPTY_LAYER`` of its weights; ``min_layer_density`` keeps at least that fraction
    of every layer (its largest weights) and spends the rest of the budget globally, so the total is still
    exactly ``density``.
    """
    density = _check_density(density)
    if scope not in ("layer", "global"):
        raise ValueError(f"scope={scope!r}; choose 'layer' (uniform per layer) or 'global'")
    if min_layer_density is not None and not 0 < float(min_layer_density) <= density:
        raise ValueError(f"min_layer_density={min_layer_density} must be in (0, density={density}]: the floor "
                         "every layer keeps cannot exceed the overall fraction")
    named = dict(model.named_parameters())
    names = list(parameters) if parameters is not None else prunable_parameters(model)
    missing = [n for n in names if n not in named]
    if missing:
        raise ValueError(f"parameters names weights the model lacks: {missing[:5]}")
    bad = [n for n in names if not bool(torch.isfinite(named[n].detach()).all())]
    if bad:
        raise ValueError(f"parameters {bad[:5]} hold NaN or infinite weights; magnitude pruning cannot rank them "
                         "(fix or reload those weights first)")
    scores = _scores(named, names, current)
    if scope == "layer":
        return {n: _top_k_mask(s, max(1, int(round(density * s.numel())))) for n, s in scores.items()}
    mask = _global_mask(scores, density, min_layer_density)
    _warn_empty(mask, min_layer_density)
    return mask


EMPTY_LAYER = 0.01  # a layer keeping less than this fraction of its weights is reported as (nearly) emptied


def _scores(named, names, current) -> Dict[str, torch.Tensor]:
    """Magnitudes to rank by; weights already pruned by ``current`` rank last."""
    scores = {}
    for n in names:
        s = named[n].detach().abs().float().cpu()
        if current is not None and n in current:
            alive = current[n].detach().float().cpu()
            s = torch.where(alive > 0, s, torch.full_like(s, -1.0))  # dead weights rank last
        scores[n] = s
    return scores


def _global_mask(scores: Dict[str, torch.Tensor], density: float, floor: Optional[float]) -> Mask:
    """One magnitude threshold across layers, after each layer's floor (its top ``floor`` share) is kept."""
    flat = torch.cat([s.flatten() for s in scores.values()])
    k = max(1, int(round(density * flat.numel())))
    reserved = torch.zeros_like(flat)
    if floor is not None:
        start = 0
        for s in scores.values():
            m = max(1, int(math.ceil(float(floor) * s.numel())))
            reserved[start:start + s.numel()] = _top_k_mask(s.flatten(), m)
            start += s.numel()
    rest = k - int(reserved.sum())
    if rest < 0:
        raise ValueError(f"min_layer_density={floor} keeps {int(reserved.sum())} weights, more than density={density} "
                         f"allows ({k}); lower min_layer_density")
    # the remaining budget by magnitude among the weights not reserved
    keep = reserved + _top_k_mask(torch.where(reserved > 0, torch.full_like(flat, -2.0), flat), rest) * (1 - reserved) \
        if rest > 0 else reserved
    mask, start = {}, 0
    for n, s in scores.items():
        mask[n] = keep[start:start + s.numel()].view_as(s).clone()
        start += s.numel()
    return mask


def _warn_empty(mask: Mask, floor: Optional[float]) -> None:
    thin = {n: float(m.mean()) for n, m in mask.items() if float(m.mean()) < EMPTY_LAYER}
    if thin:
        listed = ", ".join(f"{n} ({d:.2%})" for n, d in list(thin.items())[:6])
        warnings.warn(f"global magnitude pruning left {len(thin)} layer(s) with less than {EMPTY_LAYER:.0%} of "
                      f"their weights: {listed}{' ...' if len(thin) > 6 else ''}; an emptied layer makes the output "
                      "constant. Pass min_layer_density= (a floor per layer) or scope='layer'", PruningWarning,
                      stacklevel=3)


class PruningWarning(UserWarning):
    """Magnitude pruning left layers (nearly) empty."""


def apply_mask(model: nn.Module, mask: Mask) -> nn.Module:
    """Zero the pruned weights of ``model`` in place and return it."""
    named = dict(model.named_parameters())
    with torch.no_grad():
        for n, m in mask.items():
            if n not in named:
                raise ValueError(f"mask names a parameter the model lacks: {n!r}")
            if m.shape != named[n].shape:
                raise ValueError(f"mask[{n!r}] has shape {tuple(m.shape)} but the weight has "
                                 f"{tuple(named[n].shape)}; the mask belongs to another architecture")
            named[n].mul_(m.to(named[n].device, named[n].dtype))
    return model


def prune(model: nn.Module, density: float, *, scope: str = "layer", parameters: Optional[Sequence[str]] = None,
          min_layer_density: Optional[float] = None, copy_model: bool = True) -> PruneResult:
    """One-shot magnitude pruning: keep the largest ``density`` fraction of weights.

    Returns a :class:`PruneResult`: ``.mask`` and ``.model_``, a pruned copy unless ``copy_model=False``
    (then ``model`` itself is pruned in place).  Retrain with the mask fixed via
    :func:`workbench.pruning.finetune` or ``workbench.models.train(..., mask=mask)``; hand it to PyTorch
    with :func:`to_torch_prune`.
    """
    from ..validation import check_finite_weights

    check_finite_weights(model)  # the pruned model would compute NaN whatever the mask
    target = copy.deepcopy(model) if copy_model else model
    mask = magnitude_mask(target, density, scope=scope, parameters=parameters, min_layer_density=min_layer_density)
    apply_mask(target, mask)
    res = PruneResult(settings=dict(density=float(density), scope=scope, parameters=list(mask),
                                    min_layer_density=min_layer_density), mask=mask)
    res.model_ = target
    return res


def density_of(mask: Mask) -> float:
    """Fraction of weights kept by ``mask`` (over all the parameters it covers)."""
    kept = sum(float(m.sum()) for m in mask.values())
    total = sum(m.numel() for m in mask.values())
    return kept / total if total else float("nan")


def layer_densities(mask: Mask) -> Dict[str, float]:
    return {n: float(m.sum()) / m.numel() for n, m in mask.items()}


def _split(name: str):
    mod, _, attr = name.rpartition(".")
    return mod, attr


def to_torch_prune(model: nn.Module, mask: Mask) -> nn.Module:
    """Attach ``mask`` with ``torch.nn.utils.prune.custom_from_mask`` (``weight_orig`` + ``weight_mask``)."""
    import torch.nn.utils.prune as tprune

    modules = dict(model.named_modules())
    for n, m in mask.items():
        mod_name, attr = _split(n)
        module = modules[mod_name]
        tprune.custom_from_mask(module, attr, m.to(getattr(module, attr).device))
    return model


def from_torch_prune(model: nn.Module) -> Mask:
    """Read the masks attached by ``torch.nn.utils.prune`` (``<name>_mask`` buffers) as our mask dict."""
    mask: Mask = {}
    for mod_name, module in model.named_modules():
        for buf_name, buf in module.named_buffers(recurse=False):
            if buf_name.endswith("_mask"):
                attr = buf_name[: -len("_mask")]
                mask[f"{mod_name}.{attr}" if mod_name else attr] = buf.detach().clone().float()
    return mask
