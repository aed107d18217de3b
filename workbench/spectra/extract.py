"""Find the weight matrices of a model, in module order, as stacks of same-shape slices.

Each entry becomes a :class:`WeightMatrix`: a ``(k, N, M)`` stack (``N >= M``) whose ``k`` slices pool into
one empirical spectral density, and a scale applied to every slice.  The rules (REFERENCE section 1):

* ``nn.Linear`` (and subclasses), Hugging Face ``Conv1D`` (GPT-2 style, weight stored ``in x out``) and any
  other module with a 2-D ``weight``: one matrix.
* ``nn.Embedding``: one matrix (``num_embeddings x dim``), kind ``embedding``; ``embeddings=False`` skips it.
* ``nn.Conv2d`` ``(out, in, kh, kw)``: the ``kh*kw`` slices ``out x in`` pooled, each scaled by
  ``sqrt(1/2)`` (weightwatcher's default conv normalisation).  ``nn.Conv1d`` ``(out, in, k)``: the ``k``
  slices, the same way.
* ``nn.MultiheadAttention`` with a packed ``in_proj_weight``: three matrices ``q``, ``k``, ``v``.
* Norm layers, biases, 3-D convolutions and anything else: listed in ``skipped`` with the reason.

A plain state dict (name -> tensor) is accepted too: 2-D tensors are matrices, 3-/4-D tensors convolution
kernels, 1-D tensors skipped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Iterator, List, Mapping, Tuple

import torch
from torch import nn

CONV_SCALE = math.sqrt(0.5)


@dataclass
class WeightMatrix:
    name: str
    kind: str  # dense | embedding | conv1d | conv2d | attention
    module: str  # class name of the owning module
    shape: Tuple[int, ...]  # the parameter's shape
    slices: torch.Tensor  # (k, N, M) with N >= M, unscaled
    scale: float = 1.0
    param: str = "weight"  # attribute path within the module ("" for state-dict entries)
    part: slice | None = None  # row range of a packed parameter (attention in_proj)

    @property
    def N(self) -> int:
        return int(self.slices.shape[1])

    @property
    def M(self) -> int:
        return int(self.slices.shape[2])

    @property
    def rf(self) -> int:
        return int(self.slices.shape[0])

    @property
    def num_evals(self) -> int:
        return self.M * self.rf


def _orient(mats: torch.Tensor) -> torch.Tensor:
    """Transpose a (k, a, b) stack to (k, N, M) with N >= M."""
    return mats if mats.shape[1] >= mats.shape[2] else mats.transpose(1, 2)


def _conv_slices(w: torch.Tensor) -> torch.Tensor:
    """(out, in, *kernel) -> (prod(kernel), out, in) slices, as weightwatcher reads PyTorch kernels."""
    out, cin = w.shape[:2]
    k = int(torch.tensor(w.shape[2:]).prod()) if w.dim() > 2 else 1
    return _orient(w.reshape(out, cin, k).permute(2, 0, 1))


def _from_tensor(name: str, w: torch.Tensor, module: str, param: str = "weight") -> Tuple[WeightMatrix | None, str]:
    w = w.detach()
    if w.dim() == 2:
        return WeightMatrix(name, "dense", module, tuple(w.shape), _orient(w[None]), 1.0, param), ""
    if w.dim() in (3, 4):
        kind = "conv1d" if w.dim() == 3 else "conv2d"
        return WeightMatrix(name, kind, module, tuple(w.shape), _conv_slices(w), CONV_SCALE, param), ""
    return None, f"{w.dim()}-D tensor: no weight matrix"


def iter_matrices(model, *, embeddings: bool = True) -> Tuple[List[WeightMatrix], List[Dict[str, str]]]:
    """All weight matrices of ``model`` (an ``nn.Module`` or a state dict) and the skipped entries."""
    found: List[WeightMatrix] = []
    skipped: List[Dict[str, str]] = []
    if isinstance(model, Mapping):
        for name, w in model.items():
            if not isinstance(w, torch.Tensor):
                skipped.append({"name": name, "reason": f"not a tensor ({type(w).__name__})"})
                continue
            if not w.is_floating_point():
                skipped.append({"name": name, "reason": f"non-float tensor ({w.dtype}), e.g. a buffer"})
                continue
            entry, why = _from_tensor(name, w, "state_dict", "")
            if entry is None:
                skipped.append({"name": name, "reason": why})
            else:
                found.append(entry)
        return found, skipped
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module or a state dict (name -> tensor), got {type(model).__name__}")

    for mname, mod in model.named_modules():
        cls = type(mod).__name__
        label = mname or "(root)"
        if isinstance(mod, nn.MultiheadAttention):
            if getattr(mod, "in_proj_weight", None) is not None:
                w = mod.in_proj_weight.detach()
                e = w.shape[0] // 3
                for i, part in enumerate("qkv"):
                    rows = slice(i * e, (i + 1) * e)
                    found.append(WeightMatrix(f"{mname}.in_proj_weight[{part}]", "attention", cls,
                                              (e, w.shape[1]), _orient(w[rows][None]), 1.0,
                                              "in_proj_weight", rows))
            else:
                for part in "qkv":
                    p = getattr(mod, f"{part}_proj_weight")
                    found.append(WeightMatrix(f"{mname}.{part}_proj_weight", "attention", cls, tuple(p.shape),
                                              _orient(p.detach()[None]), 1.0, f"{part}_proj_weight"))
            continue
        weight = mod._parameters.get("weight") if hasattr(mod, "_parameters") else None
        if weight is None:
            continue
        name = f"{mname}.weight" if mname else "weight"
        if isinstance(mod, nn.Embedding):
            if not embeddings:
                skipped.append({"name": name, "reason": "embedding (embeddings=False)"})
                continue
            found.append(WeightMatrix(name, "embedding", cls, tuple(weight.shape), _orient(weight.detach()[None])))
            continue
        if isinstance(mod, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)) or "Norm" in cls:
            skipped.append({"name": name, "reason": f"norm layer ({cls}): 1-D scale, no matrix"})
            continue
        if isinstance(mod, nn.Conv3d) or weight.dim() > 4:
            skipped.append({"name": name, "reason": f"{cls} with a {weight.dim()}-D kernel is not supported"})
            continue
        if isinstance(mod, nn.modules.conv._ConvNd) and mod.groups != 1:
            skipped.append({"name": name, "reason": f"grouped convolution (groups={mod.groups}) is not supported"})
            continue
        w = weight.detach()
        if cls == "Conv1D" and w.dim() == 2:  # transformers' GPT-2 style layer: weight is (in, out)
            w = w.t()
        entry, why = _from_tensor(name, w, cls)
        if entry is None:
            skipped.append({"name": name, "reason": f"{cls}: {why}"})
        else:
            found.append(entry)
    return found, skipped


def get_parameter(model: nn.Module, entry: WeightMatrix) -> torch.Tensor:
    """The parameter tensor behind ``entry`` in ``model``."""
    if entry.param == "":
        raise TypeError("state-dict entries have no module")
    modname = entry.name.rsplit(".", 1)[0] if "." in entry.name else ""
    if entry.kind == "attention":
        modname = entry.name.rsplit(".", 1)[0]
    mod = model.get_submodule(modname) if modname and modname != entry.name else model
    return getattr(mod, entry.param)


def group_by_shape(entries: List[WeightMatrix]) -> Iterator[Tuple[Tuple[int, int], List[int]]]:
    """Indices of entries grouped by slice shape (N, M), in first-seen order."""
    groups: Dict[Tuple[int, int], List[int]] = {}
    for i, e in enumerate(entries):
        groups.setdefault((e.N, e.M), []).append(i)
    yield from groups.items()
