"""The permutation spec: which permutation of hidden units acts on which axis of which state-dict entry.

A spec is derived from a model by :func:`workbench.connectivity.permutation_spec` (tracing one forward pass,
see :mod:`.tracing`) or written by hand with :meth:`PermutationSpec.from_axes`.  Definitions:
``docs/connectivity.md``.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import torch.nn as nn

__all__ = ["UnsupportedStructure", "PermutationSpec"]


class UnsupportedStructure(ValueError):
    """The model has a structure whose permutation symmetry cannot be derived automatically."""


# --------------------------------------------------------------------------------------------
# the spec
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class PermutationSpec:
    """Which permutation acts on which axis of which state-dict entry.

    ``axes[name]`` is a tuple with one entry per axis of that tensor: a permutation name or ``None``.
    ``sizes[perm]`` is the number of units the permutation acts on.  ``blocks[(name, axis)] = k`` marks
    an axis made of ``k`` consecutive features per unit (a flattened convolution output feeding a
    linear layer).  ``sites`` lists, in forward order, the modules whose outputs carry each hidden
    group (used by activation matching and REPAIR); it is empty for hand-written specs.
    """

    axes: Dict[str, Tuple[Optional[str], ...]]
    sizes: Dict[str, int]
    blocks: Dict[Tuple[str, int], int] = dataclasses.field(default_factory=dict)
    sites: List[Tuple[str, str, str]] = dataclasses.field(default_factory=list)
    group_names: Dict[int, Optional[str]] = dataclasses.field(default_factory=dict)
    derived: bool = False

    @classmethod
    def from_axes(cls, axes: Dict[str, Sequence[Optional[str]]], *, sizes: Optional[Dict[str, int]] = None,
                  blocks: Optional[Dict[Tuple[str, int], int]] = None,
                  model: Optional[nn.Module] = None) -> "PermutationSpec":
        """A hand-written spec: ``{"fc1.weight": ("P1", None), "fc1.bias": ("P1",), ...}``.

        ``sizes`` may be left out when ``model`` is given (read from the tensor shapes).
        """
        axes = {k: tuple(v) for k, v in axes.items()}
        blocks = dict(blocks or {})
        sizes = dict(sizes or {})
        if model is not None:
            state = model.state_dict()
            for k, ax in axes.items():
                if k not in state:
                    raise ValueError(f"spec names {k!r}, which the model's state dict lacks")
                if len(ax) != state[k].dim():
                    raise ValueError(f"spec gives {len(ax)} axes for {k!r}, which has {state[k].dim()}")
                for i, p in enumerate(ax):
                    if p is not None:
                        n = state[k].shape[i] // blocks.get((k, i), 1)
                        if sizes.setdefault(p, n) != n:
                            raise ValueError(f"permutation {p!r} has size {sizes[p]} elsewhere but "
                                             f"{n} on axis {i} of {k!r}")
        missing = {p for ax in axes.values() for p in ax if p is not None} - set(sizes)
        if missing:
            raise ValueError(f"sizes of permutations {sorted(missing)} unknown; pass sizes= or model=")
        return cls(axes=axes, sizes=sizes, blocks=blocks)

    @property
    def perm_to_axes(self) -> Dict[str, List[Tuple[str, int]]]:
        out: Dict[str, List[Tuple[str, int]]] = {p: [] for p in self.sizes}
        for k, ax in self.axes.items():
            for i, p in enumerate(ax):
                if p is not None:
                    out[p].append((k, i))
        return out

    def to_frame(self) -> pd.DataFrame:
        rows = [{"tensor": k, "axis": i, "perm": p, "block": self.blocks.get((k, i), 1)}
                for k, ax in self.axes.items() for i, p in enumerate(ax) if p is not None]
        return pd.DataFrame(rows)

    def identity(self) -> Dict[str, np.ndarray]:
        return {p: np.arange(n) for p, n in self.sizes.items()}

    def random(self, seed: int = 0) -> Dict[str, np.ndarray]:
        """A random permutation for every group (seeded)."""
        rng = np.random.default_rng(seed)
        return {p: rng.permutation(n) for p, n in self.sizes.items()}
