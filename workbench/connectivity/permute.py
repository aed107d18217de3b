"""Applying permutations of hidden units to a state dict or a model (the function is unchanged)."""
from __future__ import annotations

import copy
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from .spec import PermutationSpec

__all__ = ["permute_state", "permute"]


def _index(perm: Any, block: int, device: torch.device) -> torch.Tensor:
    idx = torch.as_tensor(np.asarray(perm), dtype=torch.long, device=device)
    if block > 1:
        idx = (idx[:, None] * block + torch.arange(block, device=device)).reshape(-1)
    return idx


def permute_state(state: Dict[str, torch.Tensor], spec: PermutationSpec, perms: Dict[str, Any], *,
                  except_axis: Optional[Tuple[str, int]] = None) -> Dict[str, torch.Tensor]:
    """Apply ``perms`` to a state dict: entry ``k`` axis ``i`` is re-indexed by ``perms[spec.axes[k][i]]``."""
    out = {}
    for k, v in state.items():
        ax = spec.axes.get(k)
        if ax:
            for i, p in enumerate(ax):
                if p is None or (except_axis is not None and except_axis == (k, i)):
                    continue
                v = v.index_select(i, _index(perms[p], spec.blocks.get((k, i), 1), v.device))
        out[k] = v
    return out


def permute(model: nn.Module, perms: Dict[str, Any], *, spec: Optional[PermutationSpec] = None) -> nn.Module:
    """A copy of ``model`` with its hidden units permuted by ``perms`` (computes the same function)."""
    if spec is None:
        from .tracing import permutation_spec

        spec = permutation_spec(model)
    unknown = set(perms) - set(spec.sizes)
    if unknown:
        raise ValueError(f"perms names permutations the spec lacks: {sorted(unknown)}; spec has {sorted(spec.sizes)}")
    for p, n in spec.sizes.items():
        arr = np.asarray(perms.get(p, np.arange(n)))
        if arr.shape != (n,) or not np.array_equal(np.sort(arr), np.arange(n)):
            raise ValueError(f"perms[{p!r}] is not a permutation of {n} units")
    full = {p: np.asarray(perms.get(p, np.arange(n))) for p, n in spec.sizes.items()}
    new = copy.deepcopy(model)
    new.load_state_dict(permute_state(model.state_dict(), spec, full))
    return new
