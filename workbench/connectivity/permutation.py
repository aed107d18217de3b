"""Permutation symmetry: specs derived from a model, applying permutations, weight and activation matching.

A :class:`PermutationSpec` says, for every entry of a state dict, which permutation acts on each of its
axes (or ``None``).  :func:`permutation_spec` derives it from the model itself by running one forward
pass under a :class:`torch.overrides.TorchFunctionMode` that follows the channel axis of every tensor:

* ``linear`` / ``conv`` outputs start a new hidden-unit group (their weight's output axis and bias);
  the input axis of the weight takes the group of the incoming tensor;
* BatchNorm (weight, bias, running mean and variance) follows its input's group;
* element-wise ops, pooling and activations keep the group; ``a + b`` ties the groups of ``a`` and ``b``
  (residual streams share one permutation);
* flattening an ``(N, C, H, W)`` tensor gives blocks of ``H*W`` features per channel;
* the groups that reach the model's output or touch its input are not permuted.

Anything that mixes channels in another way (attention heads, grouped convolutions, concatenation,
embeddings, transposes) is an :class:`UnsupportedStructure` error naming the module; a hand-written spec
(:meth:`PermutationSpec.from_axes`) can be passed instead.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from ..backend import DeviceLike, resolve_device, to_numpy
from ..data import as_dataset
from ..progress import Progress, ProgressLike
from ..results import Result


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


# --------------------------------------------------------------------------------------------
# deriving the spec from a forward pass
# --------------------------------------------------------------------------------------------
_PRODUCERS = {"linear", "conv1d", "conv2d", "conv3d"}
_NORMS = {"batch_norm", "instance_norm"}
_ACTIVATIONS = {"relu", "relu_", "gelu", "silu", "tanh", "sigmoid", "leaky_relu", "elu", "selu", "softplus",
                "relu6", "hardtanh", "mish", "hardswish"}
_BINARY = {"add", "__add__", "__radd__", "__iadd__", "sub", "__sub__", "__rsub__", "__isub__", "mul", "__mul__",
           "__rmul__", "__imul__", "div", "__truediv__", "__itruediv__", "add_", "mul_", "where", "maximum",
           "minimum"}
_RESHAPES = {"flatten", "view", "reshape"}
_MIXING = {"matmul", "__matmul__", "bmm", "einsum", "scaled_dot_product_attention", "multi_head_attention_forward",
           "embedding", "cat", "concat", "stack", "split", "chunk", "transpose", "permute", "t", "unflatten",
           "group_norm", "pixel_shuffle", "channel_shuffle", "__getitem__", "roll", "flip", "gather",
           "index_select", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"}
_IGNORE = {"dim", "size", "__get__", "numel", "__len__", "is_floating_point", "__format__", "__bool__", "item",
           "__eq__", "__ne__", "__lt__", "__gt__", "__le__", "__ge__", "tolist", "__repr__", "__hash__"}

_INPUT = 0  # group id of the model input


class _UnionFind:
    def __init__(self) -> None:
        self.parent: Dict[int, int] = {}

    def add(self, g: int) -> None:
        self.parent.setdefault(g, g)

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            lo, hi = min(ra, rb), max(ra, rb)
            self.parent[hi] = lo
        return self.find(a)


def _tensors(obj: Any) -> List[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    if hasattr(obj, "to_tuple"):  # transformers ModelOutput
        return _tensors(obj.to_tuple())
    return []


class _ChannelTracer(TorchFunctionMode):
    """Follows the channel axis (dim 1) of every tensor through one forward pass."""

    def __init__(self, model: nn.Module, on_output: Optional[Callable[[str, int, str, torch.Tensor], None]] = None):
        super().__init__()
        self.names: Dict[int, str] = {}
        for n, p in model.named_parameters():
            self.names[id(p)] = n
        for n, b in model.named_buffers():
            self.names[id(b)] = n
        self.labels: Dict[int, Tuple[int, int]] = {}  # id(tensor) -> (group, block)
        self.keep: List[torch.Tensor] = []  # keeps labelled tensors alive so ids stay unique
        self.uf = _UnionFind()
        self.uf.add(_INPUT)
        self.next_group = 1
        self.sizes: Dict[int, int] = {}
        self.axes: Dict[str, List[Optional[int]]] = {}
        self.blocks: Dict[Tuple[str, int], int] = {}
        self.producers: Dict[int, str] = {}
        self.events: List[Tuple[str, str, int]] = []  # (kind, module, group) in forward order
        self.module_stack: List[str] = [""]
        self.on_output = on_output
        self.last_producer: Dict[int, str] = {}  # id(tensor) -> producing module (linear/conv)

    # -- helpers -----------------------------------------------------------------------------
    def label(self, t: torch.Tensor, group: int, block: int = 1) -> None:
        self.labels[id(t)] = (group, block)
        self.keep.append(t)

    def get(self, t: Any) -> Optional[Tuple[int, int]]:
        if isinstance(t, torch.Tensor):
            return self.labels.get(id(t))
        return None

    def module(self) -> str:
        return self.module_stack[-1] or "<model>"

    def fail(self, what: str) -> None:
        raise UnsupportedStructure(
            f"cannot derive a permutation spec: {what} in module {self.module()!r}; "
            "pass a hand-written spec=PermutationSpec.from_axes(...) instead")

    def set_axis(self, name: str, ndim: int, axis: int, group: int, block: int = 1) -> None:
        ax = self.axes.setdefault(name, [None] * ndim)
        if ax[axis] is not None and self.uf.find(ax[axis]) != self.uf.find(group):
            self.fail(f"parameter {name!r} is used on differently permuted inputs (shared weights)")
        ax[axis] = group
        if block > 1:
            self.blocks[(name, axis)] = block

    def new_group(self, size: int, module: str) -> int:
        g = self.next_group
        self.next_group += 1
        self.uf.add(g)
        self.sizes[g] = size
        self.producers[g] = module
        return g

    # -- the mode ----------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", str(func))
        if name in _IGNORE or not isinstance(out, torch.Tensor):
            return out
        tracked = [t for t in _tensors(list(args) + list(kwargs.values())) if id(t) in self.labels]
        if not tracked:
            return out
        if name in _PRODUCERS:
            x, w = args[0], args[1] if len(args) > 1 else kwargs["weight"]
            b = args[2] if len(args) > 2 else kwargs.get("bias")
            if name.startswith("conv"):
                groups = args[6] if len(args) > 6 else kwargs.get("groups", 1)
                if groups != 1:
                    self.fail(f"grouped convolution (groups={groups})")
            lab = self.get(x)
            if lab is None:
                return out
            if id(w) not in self.names:
                self.fail(f"{name} with a weight that is not a parameter of the model")
            wname = self.names[id(w)]
            module = wname.rsplit(".", 1)[0] if "." in wname else wname
            gin, blk = lab
            self.set_axis(wname, w.dim(), 1, gin, blk)
            g = self.new_group(int(w.shape[0]), module)
            self.set_axis(wname, w.dim(), 0, g)
            if isinstance(b, torch.Tensor):
                self.set_axis(self.names[id(b)], 1, 0, g)
            self.label(out, g)
            self.events.append(("producer", module, g))
            if self.on_output is not None:
                self.on_output("producer", g, module, out)
            return out
        if name in _NORMS:
            x = args[0]
            lab = self.get(x)
            if lab[1] != 1:
                self.fail(f"{name} on a flattened tensor")
            params = list(args[1:5]) + [kwargs.get(k) for k in ("running_mean", "running_var", "weight", "bias")]
            module = self.module()
            for t in params:
                if isinstance(t, torch.Tensor) and id(t) in self.names:
                    self.set_axis(self.names[id(t)], 1, 0, lab[0])
                    module = self.names[id(t)].rsplit(".", 1)[0]
            self.label(out, lab[0])
            self.events.append(("norm", module, lab[0]))
            if self.on_output is not None:
                self.on_output("norm", lab[0], module, out)
            return out
        if name == "layer_norm":
            x = args[0]
            lab = self.get(x)
            shape = args[1] if len(args) > 1 else kwargs.get("normalized_shape")
            if x.dim() != 2 or tuple(shape) != (x.shape[1],):
                self.fail("layer_norm over more than the feature axis")
            for t in list(args[2:4]) + [kwargs.get("weight"), kwargs.get("bias")]:
                if isinstance(t, torch.Tensor) and id(t) in self.names:
                    self.set_axis(self.names[id(t)], 1, 0, lab[0])
            self.label(out, lab[0])
            return out
        if name in _MIXING:
            self.fail(f"operation {name!r} mixes or reorders the channel axis (attention heads, "
                      "concatenation, embeddings and transposes are not supported)")
        if name in _RESHAPES:
            x = args[0]
            g, blk = self.get(x)
            if out.dim() == 2 and x.dim() > 2 and out.shape[0] == x.shape[0]:
                self.label(out, g, blk * int(np.prod(x.shape[2:])))
                return out
            if out.dim() >= 2 and out.shape[:2] == x.shape[:2]:
                self.label(out, g, blk)
                return out
            self.fail(f"reshape from {tuple(x.shape)} to {tuple(out.shape)}")
        if name in _BINARY and len(tracked) >= 2:
            labs = [self.get(t) for t in tracked]
            g = labs[0][0]
            for lab in labs[1:]:
                if lab[1] != labs[0][1]:
                    self.fail(f"{name} of tensors with different channel layouts")
                g = self.uf.union(g, lab[0])
            self.label(out, g, labs[0][1])
            return out
        x = tracked[0]
        lab = self.get(x)
        if len(tracked) == 1 and out.dim() >= 2 and x.dim() >= 2 and out.shape[:2] == x.shape[:2]:
            self.label(out, *lab)
            if name in _ACTIVATIONS and self.on_output is not None:
                self.on_output("activation", lab[0], self.module(), out)
            return out
        if len(tracked) == 1 and out.dim() == 1 and x.dim() == 1 and out.shape == x.shape:
            self.label(out, *lab)
            return out
        self.fail(f"operation {name!r} (input {tuple(x.shape)} -> output {tuple(out.shape)})")


def _precheck(model: nn.Module) -> None:
    for mname, mod in model.named_modules():
        cls = type(mod).__name__
        if isinstance(mod, nn.MultiheadAttention) or "attention" in cls.lower():
            raise UnsupportedStructure(
                f"module {mname!r} ({cls}) has attention heads, whose permutation symmetry is not derived "
                "automatically; pass a hand-written spec=PermutationSpec.from_axes(...)")
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and mod.groups != 1:
            raise UnsupportedStructure(
                f"module {mname!r} is a grouped convolution (groups={mod.groups}); its permutation symmetry "
                "is not derived automatically; pass a hand-written spec=PermutationSpec.from_axes(...)")
        if isinstance(mod, nn.GroupNorm) and mod.num_groups not in (1,):
            raise UnsupportedStructure(
                f"module {mname!r} is a GroupNorm with {mod.num_groups} groups; pass a hand-written spec")


def _run_traced(model: nn.Module, x: torch.Tensor, tracer: _ChannelTracer) -> Any:
    hooks = []
    for mname, mod in model.named_modules():
        if mname:
            hooks.append(mod.register_forward_pre_hook(
                lambda m, a, n=mname: (tracer.module_stack.append(n), None)[1]))
            hooks.append(mod.register_forward_hook(lambda m, a, o: (tracer.module_stack.pop(), None)[1]))
    try:
        with torch.no_grad():
            x = x.clone()
            tracer.label(x, _INPUT)
            with tracer:
                out = model(x)
    finally:
        for h in hooks:
            h.remove()
    return out


_SIDES = (8, 28, 32, 16, 64, 224)  # spatial sizes tried, in order, when guessing a convolutional input


def _runs_on(model: nn.Module, x: torch.Tensor) -> bool:
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x.to(dev))
        return True
    except (RuntimeError, ValueError, IndexError, TypeError):
        return False
    finally:
        model.train(was_training)


def example_input(model: nn.Module, data: Any = None) -> torch.Tensor:
    """A small input batch for tracing: from ``data`` if given, else inferred from the model.

    Without ``data``: the ``config`` of the reference models; otherwise the first layer that touches the
    input, a ``Linear`` (``(2, in_features)``) or a ``Conv1d``/``Conv2d``/``Conv3d`` (``in_channels`` with
    the first spatial size among 8, 28, 32, 16, 64, 224 that the model runs on).  Raises a ValueError
    asking for ``data=`` when no shape works.
    """
    if data is not None:
        ds = as_dataset(data, "data")
        return ds.X[: min(4, len(ds))]
    config = getattr(model, "config", None) or {}
    if "in_features" in config:
        return torch.zeros(2, config["in_features"])
    if "in_channels" in config:
        side = config.get("image_size", 8)
        return torch.zeros(2, config["in_channels"], side, side)
    first = next((m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))), None)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    tried: List[Tuple[int, ...]] = []
    if isinstance(first, nn.Linear):
        tried.append((2, first.in_features))
    elif isinstance(first, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        dims = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}[type(first)]
        tried += [(2, first.in_channels) + (side,) * dims for side in _SIDES]
    for shape in tried:
        x = torch.zeros(shape, dtype=dtype)
        if _runs_on(model, x):
            return x
    what = f"shapes tried: {tried[:3]}{' ...' if len(tried) > 3 else ''}" if tried else \
        "no Linear or Conv layer to read the input size from"
    raise ValueError(f"cannot infer an input shape for {type(model).__name__} ({what}); pass data= with a few "
                     "training examples, e.g. data=(X[:4], y[:4]) or a workbench Dataset, to trace it")


def permutation_spec(model: nn.Module, data: Any = None) -> PermutationSpec:
    """Derive the permutation spec of ``model`` from one traced forward pass (see module docstring).

    ``data`` supplies an example input (needed for models other than the reference ones).
    """
    _precheck(model)
    x = example_input(model, data)
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    tracer = _ChannelTracer(model)
    was_training = model.training
    model.eval()
    try:
        out = _run_traced(model, x.to(dev), tracer)
    finally:
        model.train(was_training)
    uf = tracer.uf
    fixed = {uf.find(_INPUT)}
    for t in _tensors(out):
        lab = tracer.get(t)
        if lab is not None:
            fixed.add(uf.find(lab[0]))
    roots: Dict[int, Optional[str]] = {}
    sizes: Dict[str, int] = {}
    for g in sorted(tracer.sizes):
        r = uf.find(g)
        if r in fixed:
            roots[r] = None
        elif r not in roots:
            pname = "P_" + tracer.producers[g]
            roots[r] = pname
            sizes[pname] = tracer.sizes[g]
        elif roots[r] is not None and tracer.sizes[g] != sizes[roots[r]]:
            raise UnsupportedStructure(f"residual connection joins {tracer.sizes[g]} and {sizes[roots[r]]} "
                                       f"channels at module {tracer.producers[g]!r}")
    group_names = {g: roots.get(uf.find(g)) for g in list(tracer.sizes) + [_INPUT]}
    axes: Dict[str, Tuple[Optional[str], ...]] = {}
    blocks: Dict[Tuple[str, int], int] = {}
    for k, ax in tracer.axes.items():
        names = tuple(None if g is None else group_names.get(g) for g in ax)
        if any(n is not None for n in names):
            axes[k] = names
            for i, n in enumerate(names):
                if n is not None and (k, i) in tracer.blocks:
                    blocks[(k, i)] = tracer.blocks[(k, i)]
    # sites: modules whose output carries a hidden group; a norm replaces the producer it follows
    sites: List[Tuple[str, str, str]] = []
    for kind, module, g in tracer.events:
        pname = group_names.get(g)
        if pname is None:
            continue
        if kind == "norm" and sites and sites[-1][1] == pname and sites[-1][2] == "producer":
            sites[-1] = (module, pname, "norm")
        else:
            sites.append((module, pname, kind))
    return PermutationSpec(axes=axes, sizes=sizes, blocks=blocks, sites=sites, group_names=group_names,
                           derived=True)


# --------------------------------------------------------------------------------------------
# applying permutations
# --------------------------------------------------------------------------------------------
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
    spec = spec or permutation_spec(model)
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


def check_same_architecture(model_a: nn.Module, model_b: nn.Module) -> None:
    sa, sb = model_a.state_dict(), model_b.state_dict()
    if set(sa) != set(sb):
        diff = sorted(set(sa) ^ set(sb))
        raise ValueError(f"model_a and model_b have different architectures: entries {diff[:5]} are in only "
                         "one of them; pass two models of the same architecture")
    for k in sa:
        if sa[k].shape != sb[k].shape:
            raise ValueError(f"model_a and model_b have different architectures: {k!r} has shape "
                             f"{tuple(sa[k].shape)} in model_a and {tuple(sb[k].shape)} in model_b")


# --------------------------------------------------------------------------------------------
# matching
# --------------------------------------------------------------------------------------------
def _moved(w: torch.Tensor, axis: int, n: int, block: int) -> torch.Tensor:
    """``w`` with the units of ``axis`` first, flattened to ``(n, -1)`` (blocks join the rest)."""
    if block > 1:
        shape = list(w.shape)
        w = w.reshape(shape[:axis] + [n, block] + shape[axis + 1:])
    return w.movedim(axis, 0).reshape(n, -1)


def _assign(cost: torch.Tensor) -> np.ndarray:
    from scipy.optimize import linear_sum_assignment

    c = to_numpy(cost)
    _, col = linear_sum_assignment(c if c.dtype == np.float64 else c.astype(np.float64), maximize=True)
    return col


def weight_matching(params_a: Dict[str, torch.Tensor], params_b: Dict[str, torch.Tensor], spec: PermutationSpec,
                    *, max_iter: int = 100, seed: int = 0, init: Optional[Dict[str, Any]] = None,
                    progress: ProgressLike = False) -> Tuple[Dict[str, np.ndarray], List[Dict[str, Any]]]:
    """Git Re-Basin weight matching: coordinate descent over permutations in a seeded random order.

    For permutation ``P`` the cost is ``sum_w W_A(P axis first, flattened) @ W_B(other axes permuted)^T``;
    a linear assignment (maximise) gives the new ``P``; stop when no permutation improves.  Tensors stay
    where they are (GPU cost matrices on a GPU); the assignment runs in SciPy.  Returns the permutations
    and the history (iteration, perm, objective before/after).
    """
    perms = {p: np.asarray(init[p]) if init and p in init else np.arange(n) for p, n in spec.sizes.items()}
    p2a = {p: [(k, i) for k, i in ax if k in params_a] for p, ax in spec.perm_to_axes.items()}
    names = sorted(spec.sizes)
    # P's cost matrix depends only on the permutations on the other axes of the tensors it touches: when
    # none of those changed since P was last solved, the assignment would return the same answer, so it is
    # skipped (the result is exactly that of solving it again)
    deps = {p: sorted({q for k, i in p2a[p] for j, q in enumerate(spec.axes[k]) if q is not None and j != i})
            for p in names}
    version = {p: 0 for p in names}
    solved_at: Dict[str, Tuple[int, ...]] = {}
    rng = np.random.default_rng(seed)
    history: List[Dict[str, Any]] = []
    moved_a: Dict[Tuple[str, int], torch.Tensor] = {}
    terms: Dict[Tuple[str, int], Tuple[Tuple[int, ...], torch.Tensor]] = {}
    with Progress(max_iter, "weight matching", progress) as bar:
        for it in range(max_iter):
            improved = False
            for p in rng.permutation(names):
                n = spec.sizes[p]
                state = tuple(version[q] for q in deps[p])
                if solved_at.get(p) == state:
                    continue
                solved_at[p] = state
                cost = None
                for k, i in p2a[p]:
                    ax = spec.axes[k]
                    # this tensor's term depends only on the permutations of its other axes: reuse it
                    # while none of them changed
                    key = tuple(version[q] for j, q in enumerate(ax) if q is not None and j != i)
                    cached = terms.get((k, i))
                    if cached is not None and cached[0] == key:
                        term = cached[1]
                    else:
                        blk = spec.blocks.get((k, i), 1)
                        if (k, i) not in moved_a:  # A never changes: move its axes once
                            moved_a[(k, i)] = _moved(params_a[k], i, n, blk).contiguous()
                        wa = moved_a[(k, i)]
                        wb = params_b[k]
                        for j, q in enumerate(ax):
                            if q is not None and j != i:
                                wb = wb.index_select(j, _index(perms[q], spec.blocks.get((k, j), 1), wb.device))
                        wb = _moved(wb, i, n, blk)
                        term = wa @ wb.T
                        terms[(k, i)] = (key, term)
                    cost = term if cost is None else cost + term
                if cost is None:
                    continue
                c = to_numpy(cost).astype(np.float64)
                new = _assign(c)
                old_l = float(c[np.arange(n), perms[p]].sum())
                new_l = float(c[np.arange(n), new].sum())
                history.append({"iteration": it, "perm": str(p), "before": old_l, "after": new_l})
                if new_l > old_l + 1e-12 * max(1.0, abs(old_l)):
                    improved = True
                    perms[p] = new
                    version[p] += 1
            bar.update()
            if not improved:
                break
    return perms, history


class _Stats:
    """Running sums for the cross-correlation of A's and B's units."""

    def __init__(self) -> None:
        self.n = 0
        self.sa = self.sb = self.saa = self.sbb = self.sab = None

    def add(self, a: torch.Tensor, b: torch.Tensor) -> None:
        a = a.double()
        b = b.double()
        if self.sa is None:
            c = a.shape[1]
            z = lambda *s: torch.zeros(*s, dtype=torch.float64, device=a.device)  # noqa: E731
            self.sa, self.sb, self.saa, self.sbb, self.sab = z(c), z(c), z(c), z(c), z(c, c)
        self.n += a.shape[0]
        self.sa += a.sum(0)
        self.sb += b.sum(0)
        self.saa += (a * a).sum(0)
        self.sbb += (b * b).sum(0)
        self.sab += a.T @ b

    def correlation(self) -> torch.Tensor:
        n = self.n
        ma, mb = self.sa / n, self.sb / n
        cov = self.sab / n - ma[:, None] * mb[None, :]
        sda = (self.saa / n - ma ** 2).clamp_min(0).sqrt()
        sdb = (self.sbb / n - mb ** 2).clamp_min(0).sqrt()
        return cov / (sda[:, None] * sdb[None, :] + 1e-8)


def _units(t: torch.Tensor) -> torch.Tensor:
    """Activations as (samples, units): channels are dim 1, every other axis is a sample."""
    if t.dim() == 2:
        return t
    return t.movedim(1, -1).reshape(-1, t.shape[1])


def activation_matching(model_a: nn.Module, model_b: nn.Module, data: Any, spec: PermutationSpec, *,
                        batch_size: int = 512, device: DeviceLike = "auto",
                        progress: ProgressLike = False) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """Match units by the correlation of their activations on ``data``.

    For each hidden group, every tensor carrying it (the outputs of the layers producing it, of its
    normalisations and of its activation functions) is taken in A and in B and correlated unit by unit
    over all samples (and spatial positions); the cost matrix sums these correlation matrices (the
    pre-activations separate units that a ReLU leaves constant) and a linear assignment (maximise)
    gives the permutation.  Returns ``(perms, correlation matrices)``.
    """
    if not spec.derived:
        raise ValueError("activation matching needs a spec derived from the model (permutation_spec(model)); "
                         "a hand-written spec does not say where each group's activations are")
    ds = as_dataset(data, "data")
    dev = resolve_device(device)
    model_a = model_a.to(dev).eval()
    model_b = model_b.to(dev).eval()
    stats: Dict[Tuple[str, int], _Stats] = {}

    def collect(model):
        found: List[Tuple[str, int, str, torch.Tensor]] = []

        def on_output(kind, g, module, out):
            found.append((kind, g, module, out))

        return found, on_output

    with Progress(-(-len(ds) // batch_size), "activation matching", progress) as bar:
        for xb, _ in ds.batches(batch_size, device=dev):
            fa, cb_a = collect(model_a)
            fb, cb_b = collect(model_b)
            _run_traced(model_a, xb, _ChannelTracer(model_a, cb_a))
            _run_traced(model_b, xb, _ChannelTracer(model_b, cb_b))
            if len(fa) != len(fb):
                raise ValueError("model_a and model_b run different operations; they must share an architecture")
            for idx, ((kind, g, module, oa), (_k, _g, _m, ob)) in enumerate(zip(fa, fb)):
                pname = spec.group_names.get(g)
                if pname is None:
                    continue
                stats.setdefault((pname, idx), _Stats()).add(_units(oa), _units(ob))
            bar.update()
    corr: Dict[str, torch.Tensor] = {}
    for (pname, _idx), st in stats.items():
        c = st.correlation()
        corr[pname] = c if pname not in corr else corr[pname] + c
    perms = {}
    for p, n in spec.sizes.items():
        if p not in corr:
            perms[p] = np.arange(n)
            continue
        perms[p] = _assign(corr[p])
    return perms, {p: to_numpy(c) for p, c in corr.items()}


# --------------------------------------------------------------------------------------------
# the public entry point
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class AlignResult(Result):
    """Permutations that align model B to model A, with the permuted copy of B in :attr:`model_`.

    Unpacks as ``model_b_aligned, perms = align(...)``.
    """

    perms: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    history: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)

    kind = "align"

    def __post_init__(self) -> None:
        self.model_: Optional[nn.Module] = None
        self.spec_: Optional[PermutationSpec] = None

    def to_frame(self) -> pd.DataFrame:
        rows = []
        for p, perm in self.perms.items():
            perm = np.asarray(perm)
            rows.append({"perm": p, "size": len(perm), "moved": int((perm != np.arange(len(perm))).sum())})
        return pd.DataFrame(rows)

    def __iter__(self):
        return iter((self.model_, self.perms))


def align(model_a: nn.Module, model_b: nn.Module, *, method: str = "weight", data: Any = None,
          spec: Optional[PermutationSpec] = None, max_iter: int = 100, seed: int = 0, batch_size: int = 512,
          device: DeviceLike = "auto", progress: ProgressLike = False) -> AlignResult:
    """Permute the hidden units of ``model_b`` to line up with ``model_a``.

    ``method="weight"``: Git Re-Basin weight matching; it uses only the weights, but deriving the spec
    traces one forward pass, so ``data=`` (a few examples) is needed when the input shape cannot be inferred
    (MLPs, and CNNs whose first layer is a convolution that runs on a square input of side 8, 28, 32, 16,
    64 or 224, need none; see :func:`example_input`).  ``method="activation"``: correlation of activations
    on ``data`` (training data).  ``spec`` defaults to the one derived from ``model_a``.  Returns an
    :class:`AlignResult` (``.model_`` the permuted copy of B, ``.perms``).
    """
    check_same_architecture(model_a, model_b)
    dev = resolve_device(device)
    if spec is None:
        spec = permutation_spec(model_a, data)
    if method == "weight":
        dtype = torch.float64 if dev.type == "cpu" else torch.float32
        named_a = dict(model_a.named_parameters())
        pa = {k: v.detach().to(dev, dtype) for k, v in named_a.items()}
        pb = {k: v.detach().to(dev, dtype) for k, v in model_b.named_parameters()}
        perms, hist = weight_matching(pa, pb, spec, max_iter=max_iter, seed=seed, progress=progress)
        history = pd.DataFrame(hist)
    elif method == "activation":
        if data is None:
            raise ValueError("method='activation' needs data= (training inputs whose activations are matched)")
        perms, _corr = activation_matching(copy.deepcopy(model_a), copy.deepcopy(model_b), data, spec,
                                           batch_size=batch_size, device=dev, progress=progress)
        history = pd.DataFrame()
    else:
        raise ValueError(f"method={method!r}; choose 'weight' or 'activation'")
    res = AlignResult(settings=dict(method=method, seed=seed, max_iter=max_iter, device=str(dev),
                                    perms=sorted(spec.sizes)),
                      perms={p: np.asarray(v) for p, v in perms.items()}, history=history)
    b_cpu = copy.deepcopy(model_b)
    res.model_ = permute(b_cpu, res.perms, spec=spec)
    res.spec_ = spec
    return res
