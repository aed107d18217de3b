"""Find the weight matrices of a model, in module order, as stacks of same-shape slices.

Each entry becomes a :class:`WeightMatrix`: a ``(k, N, M)`` stack (``N >= M``) whose ``k`` slices pool into
one empirical spectral density, and a scale applied to every slice.  The rules (``docs/spectra.md``):

* ``nn.Linear`` (and subclasses), Hugging Face ``Conv1D`` (GPT-2 style, weight stored ``in x out``) and any
  other module with a 2-D ``weight``: one matrix.
* ``nn.Embedding``: one matrix (``num_embeddings x dim``), kind ``embedding``; ``embeddings=False`` skips it.
* ``nn.Conv2d`` ``(out, in, kh, kw)``: the ``kh*kw`` slices ``out x in`` pooled, each scaled by
  ``sqrt(1/2)`` (weightwatcher's default conv normalisation).  ``nn.Conv1d`` ``(out, in, k)``: the ``k``
  slices, the same way.
* ``nn.MultiheadAttention``: three matrices ``q``, ``k``, ``v`` (rows of a packed ``in_proj_weight``, or the
  separate ``q_proj_weight`` / ``k_proj_weight`` / ``v_proj_weight``).
* Parametrised weights (``torch.nn.utils.parametrizations.weight_norm`` / ``spectral_norm``, or the older
  hook-based ones): the effective ``.weight``; the factors behind it are listed in ``skipped`` as such.
* Every other parameter: a 2-D floating-point one (a loose ``nn.Parameter``, an RNN's ``weight_ih_l0``, ...)
  is a dense matrix; the rest (biases, norm scales, higher-dimensional tensors outside convolution modules,
  3-D convolutions, grouped convolutions, parameters shared with one already reported) are listed in
  ``skipped`` with the reason.  Nothing is dropped silently.

A plain state dict (name -> tensor), and a checkpoint file read through it (see
:mod:`~workbench.spectra.checkpoint`), follows :func:`state_entry`: a 2-D floating-point tensor is a dense
matrix, or kind ``embedding`` when its name identifies an embedding table (:func:`is_embedding_name`);
3-/4-D floating-point tensors are convolution kernels ``(out, in, *kernel)``; 1-D and non-float tensors and
non-tensors are skipped with the reason.  A state dict carries no modules, so the row's ``module`` is
``"state_dict"``, and tied tensors (one table under two names) are analysed under both names.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Iterator, List, Mapping, Tuple

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.spectral_norm import SpectralNorm as _SpectralNorm
from torch.nn.utils.weight_norm import WeightNorm as _WeightNorm

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
    path: str = ""  # the owning module's path in the model ("" for the root or a state-dict entry)

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


EMBEDDING_NAMES = ("wte", "wpe")  # GPT-2's token and position tables


def is_embedding_name(name: str) -> bool:
    """True if a state-dict name identifies an embedding table.

    The owning module's name (the last dotted part once a trailing ``.weight`` is dropped) contains
    ``embed`` (``embed_tokens``, ``word_embeddings``, ``position_embeddings``, ``embed_positions``, ...) or
    is ``wte`` / ``wpe``.  Only that part counts: ``embeddings.LayerNorm.weight`` and
    ``patch_embed.proj.weight`` (a convolution) are not embeddings.  Tables with other names (T5's
    ``shared``, an untied ``lm_head``) are read as dense matrices.
    """
    base = name[:-len(".weight")] if name.endswith(".weight") else name
    last = base.rsplit(".", 1)[-1].lower()
    return "embed" in last or last in EMBEDDING_NAMES


def state_entry(name: str, w, *, embeddings: bool = True) -> Tuple[WeightMatrix | None, str]:
    """The :class:`WeightMatrix` of one state-dict entry, or ``(None, reason)``.

    ``w`` may live on the ``meta`` device: a checkpoint is planned from its header this way (the slices
    then carry the shape and dtype only) and the data read later.
    """
    if not isinstance(w, torch.Tensor):
        return None, f"not a tensor ({type(w).__name__})"
    if not w.is_floating_point():
        return None, f"non-float tensor ({w.dtype}), e.g. a buffer"
    if w.dim() == 2 and is_embedding_name(name):
        if not embeddings:
            return None, "embedding (embeddings=False)"
        return WeightMatrix(name, "embedding", "state_dict", tuple(w.shape), _orient(w.detach()[None]), 1.0,
                            ""), ""
    return _from_tensor(name, w, "state_dict", "")


def check_finite(entry: WeightMatrix, w: torch.Tensor, where: str = "") -> None:
    """Refuse a weight with NaN/inf entries, naming the layer (and ``where`` it was read from)."""
    if not bool(torch.isfinite(w).all()):
        bad = int((~torch.isfinite(w)).sum())
        raise ValueError(f"layer {entry.name!r} ({entry.module}){where} has {bad} non-finite weights (NaN/inf); "
                         "fix or drop that layer before analysing")


def iter_matrices(model, *, embeddings: bool = True) -> Tuple[List[WeightMatrix], List[Dict[str, str]]]:
    """All weight matrices of ``model`` (an ``nn.Module``, a TorchScript module or a state dict) and the
    skipped entries."""
    if isinstance(model, Mapping):
        return _state_matrices(model, embeddings)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module or a state dict (name -> tensor), got {type(model).__name__}")
    found: List[WeightMatrix] = []
    skipped: List[Dict[str, str]] = []
    claim = _Claims()
    for mname, mod in model.named_modules():
        cls = class_name(mod)
        prefix = f"{mname}." if mname else ""
        if isinstance(mod, nn.MultiheadAttention) or (isinstance(mod, torch.jit.ScriptModule)
                                                        and cls == "MultiheadAttention"):
            handled = _attention_entries(mod, prefix, mname, claim, found)
        else:
            handled = _weight_entry(mod, prefix, mname, embeddings, claim, found, skipped)
        # every other parameter registered directly on this module: loose matrices, biases, scales, ...
        for pname, p in mod.named_parameters(recurse=False):
            if pname not in handled:
                _loose_entry(p, pname, prefix, mname, cls, claim, found, skipped)
    return found, skipped


def class_name(mod: nn.Module) -> str:
    """The class name of ``mod``; for a TorchScript module, the name of the class it was scripted from."""
    if isinstance(mod, torch.jit.ScriptModule):
        return str(getattr(mod, "original_name", type(mod).__name__))
    return type(mod).__name__


def _state_matrices(state: Mapping, embeddings: bool):
    found, skipped = [], []
    for name, w in state.items():
        entry, why = state_entry(name, w, embeddings=embeddings)
        if entry is None:
            skipped.append({"name": name, "reason": why})
        else:
            found.append(entry)
    return found, skipped


class _Claims:
    """Which parameter was reported under which name (shared parameters are analysed once)."""

    def __init__(self):
        self.seen: Dict[int, str] = {}

    def __call__(self, p: torch.Tensor, name: str) -> str:
        """'' if ``p`` is new (and mark it), else the name it was first reported under."""
        first = self.seen.get(id(p))
        if first is None:
            self.seen[id(p)] = name
            return ""
        return first


def _attention_entries(mod, prefix: str, mname: str, claim: _Claims, found: List[WeightMatrix]) -> set:
    """The q, k, v projections of a ``MultiheadAttention`` (packed or separate) as three matrices."""
    cls = class_name(mod)
    if getattr(mod, "in_proj_weight", None) is not None:
        w = mod.in_proj_weight.detach()
        e = w.shape[0] // 3
        claim(mod.in_proj_weight, prefix + "in_proj_weight")
        for i, part in enumerate("qkv"):
            rows = slice(i * e, (i + 1) * e)
            found.append(WeightMatrix(f"{prefix}in_proj_weight[{part}]", "attention", cls, (e, w.shape[1]),
                                      _orient(w[rows][None]), 1.0, "in_proj_weight", rows, mname))
        return {"in_proj_weight"}
    for part in "qkv":
        p = getattr(mod, f"{part}_proj_weight")
        claim(p, f"{prefix}{part}_proj_weight")
        found.append(WeightMatrix(f"{prefix}{part}_proj_weight", "attention", cls, tuple(p.shape),
                                  _orient(p.detach()[None]), 1.0, f"{part}_proj_weight", None, mname))
    return {f"{part}_proj_weight" for part in "qkv"}


def _weight_entry(mod, prefix: str, mname: str, embeddings: bool, claim: _Claims, found, skipped) -> set:
    """The module's (effective) weight as a matrix, or the reason it is not; the parameter names used."""
    weight, how = _module_weight(mod)
    if weight is None:
        return set()
    name = prefix + "weight"
    if how and how != ("weight",):
        for pname in how:
            claim(mod.get_parameter(pname), prefix + pname)
            skipped.append({"name": prefix + pname,
                            "reason": f"factor of the parametrised {name!r}, analysed as the effective weight"})
    first = claim(weight, name) if how == ("weight",) else ""
    if first:
        skipped.append({"name": name, "reason": f"shared with {first!r} (analysed there)"})
        return set(how)
    entry, why = _module_matrix(mod, name, weight.detach(), embeddings)
    if entry is None:
        skipped.append({"name": name, "reason": why})
    else:
        entry.path = mname
        found.append(entry)
    return set(how)


def _loose_entry(p, pname: str, prefix: str, mname: str, cls: str, claim: _Claims, found, skipped) -> None:
    """A parameter registered on a module outside its weight: a 2-D one is a matrix, the rest are listed."""
    name = prefix + pname
    first = claim(p, name)
    if first == name:  # already listed (a parametrisation factor, reported with its weight)
        return
    if first:
        skipped.append({"name": name, "reason": f"shared with {first!r} (analysed there)"})
    elif p.dim() == 2 and p.is_floating_point():
        found.append(WeightMatrix(name, "dense", cls, tuple(p.shape), _orient(p.detach()[None]), 1.0, pname, None,
                                  mname))
    elif p.dim() == 0:
        skipped.append({"name": name, "reason": f"scalar parameter of {cls}"})
    elif p.dim() == 1:
        what = "bias" if "bias" in pname else "scale/shift" if "Norm" in cls else "vector"
        skipped.append({"name": name, "reason": f"1-D {what} of {cls}: no matrix"})
    elif not p.is_floating_point():
        skipped.append({"name": name, "reason": f"non-float parameter ({p.dtype})"})
    else:
        skipped.append({"name": name, "reason": f"{p.dim()}-D parameter of {cls} that is not a convolution "
                                                "kernel: no weight matrix"})


def _module_weight(mod: nn.Module):
    """``(effective weight, names of the parameters behind it)`` of a module, or ``(None, ())``.

    Plain ``weight`` parameters, ``torch.nn.utils.parametrize`` parametrisations (e.g.
    ``parametrizations.weight_norm`` / ``spectral_norm``: the effective ``.weight`` is analysed), and the
    older hook-based ``weight_norm`` / ``spectral_norm`` (recomputed from their parameters).
    """
    if "weight" in mod._parameters and mod._parameters["weight"] is not None:
        return mod._parameters["weight"], ("weight",)
    if parametrize.is_parametrized(mod, "weight"):
        plist = mod.parametrizations["weight"]
        modes = [(m, m.training) for m in plist.modules()]
        plist.eval()  # e.g. spectral_norm would otherwise run (and store) a power iteration
        try:
            with torch.no_grad():
                w = mod.weight
        finally:
            for m, training in modes:
                m.train(training)
        names = tuple(f"parametrizations.weight.{n}" for n, _ in
                      mod.parametrizations["weight"].named_parameters(recurse=False))
        return w, names
    hook = norm_hook(mod)
    with torch.no_grad():
        if isinstance(hook, _WeightNorm):
            return hook.compute_weight(mod), ("weight_g", "weight_v")
        if isinstance(hook, _SpectralNorm):
            return hook.compute_weight(mod, do_power_iteration=False), ("weight_orig",)
    return None, ()


def norm_hooks(mod: nn.Module) -> List:
    """The older hook-based ``weight_norm`` / ``spectral_norm`` hooks of ``mod`` (``hook.name``: the tensor)."""
    return [h for h in mod._forward_pre_hooks.values() if isinstance(h, (_WeightNorm, _SpectralNorm))]


def norm_hook(mod: nn.Module, name: str = "weight"):
    """The hook-based ``weight_norm`` / ``spectral_norm`` acting on ``mod.<name>``, or None."""
    return next((h for h in norm_hooks(mod) if getattr(h, "name", None) == name), None)


_CONV_CLASSES = {c.__name__ for c in (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                                      nn.ConvTranspose3d, nn.LazyConv1d, nn.LazyConv2d, nn.LazyConv3d)}


def _module_matrix(mod: nn.Module, name: str, weight: torch.Tensor, embeddings: bool):
    """The :class:`WeightMatrix` of a module's (effective) ``weight``, or ``(None, reason)``."""
    cls = class_name(mod)
    if parametrize.is_parametrized(mod):  # torch names the class ParametrizedLinear, ParametrizedConv1D, ...
        cls = cls.replace("Parametrized", "", 1)
    scripted = isinstance(mod, torch.jit.ScriptModule)  # no isinstance checks: the scripted class name
    if isinstance(mod, nn.Embedding) or (scripted and cls == "Embedding"):
        if not embeddings:
            return None, "embedding (embeddings=False)"
        return WeightMatrix(name, "embedding", cls, tuple(weight.shape), _orient(weight[None])), ""
    if isinstance(mod, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)) or "Norm" in cls:
        if weight.dim() <= 1:
            return None, f"norm layer ({cls}): 1-D scale, no matrix"
    if not weight.is_floating_point():
        return None, f"non-float weight ({weight.dtype})"
    if weight.dim() > 2:
        if not (isinstance(mod, nn.modules.conv._ConvNd) or (scripted and cls in _CONV_CLASSES)):
            return None, f"{weight.dim()}-D weight of {cls}, not a convolution module: no weight matrix"
        if isinstance(mod, nn.Conv3d) or cls.startswith(("Conv3d", "ConvTranspose3d")) or weight.dim() > 4:
            return None, f"{cls} with a {weight.dim()}-D kernel is not supported"
        if getattr(mod, "groups", 1) != 1:
            return None, f"grouped convolution (groups={mod.groups}) is not supported"
    if cls == "Conv1D" and weight.dim() == 2:  # transformers' GPT-2 style layer: weight is (in, out)
        weight = weight.t()
    entry, why = _from_tensor(name, weight, cls)
    return (entry, "") if entry is not None else (None, f"{cls}: {why}")


def get_parameter(model: nn.Module, entry: WeightMatrix) -> torch.Tensor:
    """The tensor behind ``entry`` in ``model`` (the effective weight for a parametrised one)."""
    if entry.param == "":
        raise TypeError("state-dict entries have no module")
    mod = model.get_submodule(entry.path) if entry.path else model
    return getattr(mod, entry.param)


def group_by_shape(entries: List[WeightMatrix]) -> Iterator[Tuple[Tuple[int, int], List[int]]]:
    """Indices of entries grouped by slice shape (N, M), in first-seen order."""
    groups: Dict[Tuple[int, int], List[int]] = {}
    for i, e in enumerate(entries):
        groups.setdefault((e.N, e.M), []).append(i)
    yield from groups.items()
