"""Deriving a permutation spec from a model by tracing one forward pass.

The pass runs under a :class:`torch.overrides.TorchFunctionMode` that follows the channel axis (dim 1) of
every tensor.  Each operation is handled by the rule of its family (a dispatch table):

* **producers** (``linear``, ``conv1d/2d/3d``): the output starts a new hidden-unit group, which the
  weight's output axis and the bias take; the weight's input axis takes the incoming tensor's group;
* **norms** (``batch_norm``, ``instance_norm``, ``layer_norm`` over the feature axis): the output and the
  norm's weight, bias and running statistics follow the input's group;
* **channel-wise parameters** (``prelu`` slopes, a learned per-channel scale or bias ``x * s``, ``x + b``
  broadcast along the channel axis): the parameter's channel axis follows the group;
* **binary** operations of two traced tensors tie their groups (residual streams share one permutation);
* **reshapes**: flattening ``(N, C, ...)`` gives blocks of ``prod(...)`` features per channel;
* **mixing** operations (attention, matrix products, concatenation, indexing, transposes, embeddings,
  cumulative sums, ...) and operations whose output is not one tensor (recurrent layers) are refused;
* anything else must keep the first two dimensions (activations, pooling, dropout) and keeps the group.

A parameter or buffer of the model that enters an operation and cannot be placed on a group (it would
be left unpermuted while its channels move) is refused with :class:`UnsupportedStructure` naming the
module and the parameter: a permuted model that no longer computes the same function is never returned.
The groups that reach the model's output or touch its input are not permuted.  Definitions:
``docs/connectivity.md``.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from ..data import as_dataset
from .spec import PermutationSpec, UnsupportedStructure

__all__ = ["permutation_spec", "example_input", "trace_outputs"]

PRODUCERS = {"linear", "conv1d", "conv2d", "conv3d"}
NORMS = {"batch_norm", "instance_norm"}
ACTIVATIONS = {"relu", "relu_", "gelu", "silu", "tanh", "sigmoid", "leaky_relu", "elu", "selu", "softplus",
               "relu6", "hardtanh", "mish", "hardswish", "prelu"}
BINARY = {"add", "__add__", "__radd__", "__iadd__", "sub", "__sub__", "__rsub__", "__isub__", "mul", "__mul__",
          "__rmul__", "__imul__", "div", "__truediv__", "__rtruediv__", "__itruediv__", "add_", "mul_", "sub_",
          "div_", "where", "maximum", "minimum", "addcmul", "lerp"}
RESHAPES = {"flatten", "view", "reshape"}
MIXING = {"matmul", "__matmul__", "bmm", "mm", "einsum", "scaled_dot_product_attention",
          "multi_head_attention_forward", "embedding", "cat", "concat", "concatenate", "stack", "split", "chunk",
          "transpose", "permute", "t", "unflatten", "group_norm", "pixel_shuffle", "channel_shuffle",
          "__getitem__", "roll", "flip", "gather", "index_select", "conv_transpose1d", "conv_transpose2d",
          "conv_transpose3d", "cumsum", "cumprod", "cummax", "cummin", "diff", "movedim", "swapaxes",
          "narrow", "select", "take_along_dim", "scatter", "scatter_add", "tensordot", "kron", "outer"}
IGNORE = {"dim", "size", "__get__", "numel", "__len__", "is_floating_point", "__format__", "__bool__", "item",
          "__eq__", "__ne__", "__lt__", "__gt__", "__le__", "__ge__", "tolist", "__repr__", "__hash__",
          "__setstate__", "type", "is_complex", "element_size", "stride", "storage_offset", "data_ptr",
          "is_contiguous", "requires_grad_", "__iter__", "shape", "dtype", "device"}

INPUT = 0  # group id of the model input


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


def tensors_in(obj: Any) -> List[torch.Tensor]:
    """Every tensor inside ``obj`` (tensors, lists, tuples, dicts, Hugging Face model outputs)."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in tensors_in(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in tensors_in(o)]
    if hasattr(obj, "to_tuple"):  # transformers ModelOutput
        return tensors_in(obj.to_tuple())
    return []


class ChannelTracer(TorchFunctionMode):
    """Follows the channel axis (dim 1) of every tensor through one forward pass (see module docstring)."""

    def __init__(self, model: nn.Module, on_output: Optional[Callable[[str, int, str, torch.Tensor], None]] = None):
        super().__init__()
        self.names: Dict[int, str] = {id(p): n for n, p in model.named_parameters()}
        self.names.update({id(b): n for n, b in model.named_buffers()})
        self.labels: Dict[int, Tuple[int, int]] = {}  # id(tensor) -> (group, block)
        self.keep: List[torch.Tensor] = []  # keeps labelled tensors alive so ids stay unique
        self.uf = _UnionFind()
        self.uf.add(INPUT)
        self.next_group = 1
        self.sizes: Dict[int, int] = {}
        self.axes: Dict[str, List[Optional[int]]] = {}
        self.blocks: Dict[Tuple[str, int], int] = {}
        self.producers: Dict[int, str] = {}
        self.events: List[Tuple[str, str, int]] = []  # (kind, module, group) in forward order
        self.module_stack: List[str] = [""]
        self.on_output = on_output
        self.derived: Dict[int, str] = {}  # id(tensor computed from parameters only) -> parameter name
        self.dispatch: Dict[str, Callable] = {}
        for family, handler in ((PRODUCERS, self._producer), (NORMS, self._norm), ({"layer_norm"}, self._layer_norm),
                                (RESHAPES, self._reshape), (BINARY, self._binary), (MIXING, self._mixing)):
            self.dispatch.update(dict.fromkeys(family, handler))

    # -- helpers -----------------------------------------------------------------------------
    def label(self, t: torch.Tensor, group: int, block: int = 1) -> None:
        self.labels[id(t)] = (group, block)
        self.keep.append(t)

    def get(self, t: Any) -> Optional[Tuple[int, int]]:
        return self.labels.get(id(t)) if isinstance(t, torch.Tensor) else None

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

    def _model_tensors(self, args, kwargs) -> List[torch.Tensor]:
        return [t for t in tensors_in(list(args) + list(kwargs.values())) if id(t) in self.names]

    def _side_inputs(self, args, kwargs) -> List[Tuple[torch.Tensor, str, bool]]:
        """Parameters and buffers of the model, and tensors computed from them, among the inputs:
        ``(tensor, parameter name, whether it is the parameter itself)``."""
        out = []
        for t in tensors_in(list(args) + list(kwargs.values())):
            if id(t) in self.names:
                out.append((t, self.names[id(t)], True))
            elif id(t) in self.derived:
                out.append((t, self.derived[id(t)], False))
        return out

    def _place_channelwise(self, op: str, side: Tuple[torch.Tensor, str, bool], lab: Tuple[int, int],
                           ref: torch.Tensor) -> None:
        """Put the channel axis of a broadcast parameter (``x * s``, ``x + b``, ``prelu`` slopes) on
        ``lab``'s group, or refuse it when its channels cannot be placed on the permuted axis."""
        param, name, own = side
        if param.numel() == 1:  # a scalar: the same for every channel
            return
        ch = 1 if ref.dim() >= 2 else 0
        c = 0 if op == "prelu" else ch - ref.dim() + param.dim()  # broadcasting aligns the trailing axes
        if c < 0 or param.shape[c] == 1:  # constant along the channel axis
            return
        if own and param.shape[c] == ref.shape[ch] and all(s == 1 for s in param.shape[:c]):
            self.set_axis(name, param.dim(), c, lab[0], lab[1])
            return
        what = f"parameter {name!r}" if own else f"a tensor computed from parameter {name!r}"
        self.fail(f"{what} (shape {tuple(param.shape)}) enters {op!r} on a tensor of shape {tuple(ref.shape)}, "
                  "and its channels cannot be placed on the permuted axis")

    # -- the mode ----------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", str(func))
        if name in IGNORE:
            return out
        tracked = [t for t in tensors_in(list(args) + list(kwargs.values())) if id(t) in self.labels]
        if not tracked:
            sides = self._side_inputs(args, kwargs)
            if sides and isinstance(out, torch.Tensor):  # computed from a parameter: remember which
                self.derived[id(out)] = sides[0][1]
                self.keep.append(out)
            return out
        if not isinstance(out, torch.Tensor):
            self.fail(f"operation {name!r} returns {type(out).__name__}, not one tensor (e.g. a recurrent "
                      "layer), so its channels cannot be followed")
        handler = self.dispatch.get(name, self._elementwise)
        handler(name, args, kwargs, out, tracked)
        return out

    # -- families ----------------------------------------------------------------------------
    def _producer(self, name, args, kwargs, out, tracked) -> None:
        x, w = args[0], args[1] if len(args) > 1 else kwargs["weight"]
        b = args[2] if len(args) > 2 else kwargs.get("bias")
        if name.startswith("conv"):
            groups = args[6] if len(args) > 6 else kwargs.get("groups", 1)
            if groups != 1:
                self.fail(f"grouped convolution (groups={groups})")
        lab = self.get(x)
        if lab is None:  # the weight is what is traced (e.g. a weight computed from a traced tensor)
            self.fail(f"{name} whose input is not the traced signal")
        if id(w) not in self.names:
            self.fail(f"{name} with a weight that is not a parameter of the model")
        wname = self.names[id(w)]
        module = wname.rsplit(".", 1)[0] if "." in wname else wname
        gin, blk = lab
        self.set_axis(wname, w.dim(), 1, gin, blk)
        g = self.new_group(int(w.shape[0]), module)
        self.set_axis(wname, w.dim(), 0, g)
        if isinstance(b, torch.Tensor):
            if id(b) not in self.names:
                self.fail(f"{name} with a bias that is not a parameter of the model")
            self.set_axis(self.names[id(b)], 1, 0, g)
        self.label(out, g)
        self.events.append(("producer", module, g))
        if self.on_output is not None:
            self.on_output("producer", g, module, out)

    def _norm(self, name, args, kwargs, out, tracked) -> None:
        lab = self.get(args[0])
        if lab is None or lab[1] != 1:
            self.fail(f"{name} on a flattened tensor")
        module = self.module()
        for t in self._model_tensors(args[1:], kwargs):
            self.set_axis(self.names[id(t)], 1, 0, lab[0])
            module = self.names[id(t)].rsplit(".", 1)[0]
        self.label(out, lab[0])
        self.events.append(("norm", module, lab[0]))
        if self.on_output is not None:
            self.on_output("norm", lab[0], module, out)

    def _layer_norm(self, name, args, kwargs, out, tracked) -> None:
        x = args[0]
        lab = self.get(x)
        shape = args[1] if len(args) > 1 else kwargs.get("normalized_shape")
        if lab is None or x.dim() != 2 or tuple(shape) != (x.shape[1],):
            self.fail("layer_norm over more than the feature axis")
        for t in self._model_tensors(args[2:], kwargs):
            self.set_axis(self.names[id(t)], 1, 0, lab[0])
        self.label(out, lab[0])

    def _reshape(self, name, args, kwargs, out, tracked) -> None:
        x = args[0]
        lab = self.get(x)
        if lab is None:
            self.fail(f"{name} of a tensor derived from a parameter")
        g, blk = lab
        if self.uf.find(g) == self.uf.find(INPUT):  # the model's input is never permuted: any reshape of it
            self.label(out, g)
            return
        if out.dim() == 2 and x.dim() > 2 and out.shape[0] == x.shape[0]:
            self.label(out, g, blk * int(np.prod(x.shape[2:])))
        elif out.dim() >= 2 and out.shape[:2] == x.shape[:2]:
            self.label(out, g, blk)
        else:
            self.fail(f"reshape from {tuple(x.shape)} to {tuple(out.shape)}")

    def _binary(self, name, args, kwargs, out, tracked) -> None:
        labs = [self.get(t) for t in tracked]
        g = labs[0][0]
        for lab in labs[1:]:
            if lab[1] != labs[0][1]:
                self.fail(f"{name} of tensors with different channel layouts")
            g = self.uf.union(g, lab[0])
        for side in self._side_inputs(args, kwargs):
            self._place_channelwise(name, side, labs[0], tracked[0])
        self.label(out, g, labs[0][1])

    def _mixing(self, name, args, kwargs, out, tracked) -> None:
        self.fail(f"operation {name!r} mixes or reorders the channel axis (attention heads, concatenation, "
                  "indexing, embeddings, transposes and cumulative operations are not supported)")

    def _elementwise(self, name, args, kwargs, out, tracked) -> None:
        x = tracked[0]
        lab = self.get(x)
        keeps = (out.dim() >= 2 and x.dim() >= 2 and out.shape[:2] == x.shape[:2]) or \
                (out.dim() == 1 and x.dim() == 1 and out.shape == x.shape)
        if len(tracked) != 1 or not keeps:
            self.fail(f"operation {name!r} (input {tuple(x.shape)} -> output {tuple(out.shape)})")
        for side in self._side_inputs(args, kwargs):
            self._place_channelwise(name, side, lab, x)
        self.label(out, *lab)
        if name in ACTIVATIONS and self.on_output is not None:
            self.on_output("activation", lab[0], self.module(), out)


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
        if isinstance(mod, nn.RNNBase):
            raise UnsupportedStructure(
                f"module {mname!r} is a recurrent layer ({cls}), whose hidden units are mixed across time "
                "steps by its own weights; pass a hand-written spec=PermutationSpec.from_axes(...)")


def run_traced(model: nn.Module, x: torch.Tensor, tracer: ChannelTracer) -> Any:
    """Run ``model`` on ``x`` under ``tracer`` (the model's current mode), tracking the module stack."""
    hooks = []
    for mname, mod in model.named_modules():
        if mname:
            hooks.append(mod.register_forward_pre_hook(
                lambda m, a, n=mname: (tracer.module_stack.append(n), None)[1]))
            hooks.append(mod.register_forward_hook(lambda m, a, o: (tracer.module_stack.pop(), None)[1]))
    try:
        with torch.no_grad():
            x = x.clone()
            tracer.label(x, INPUT)
            with tracer:
                out = model(x)
    finally:
        for h in hooks:
            h.remove()
    return out


def trace_outputs(model: nn.Module, x: torch.Tensor) -> List[Tuple[str, int, str, torch.Tensor]]:
    """``(kind, group, module, output)`` of every producer, norm and activation of one traced pass."""
    found: List[Tuple[str, int, str, torch.Tensor]] = []
    run_traced(model, x, ChannelTracer(model, lambda kind, g, module, out: found.append((kind, g, module, out))))
    return found


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
    """A small input batch for tracing: from ``data`` (a data set, or an input tensor) if given, else inferred
    from the model.

    Without ``data``: the ``config`` of the reference models; otherwise the first layer that touches the
    input, a ``Linear`` (``(2, in_features)``) or a ``Conv1d``/``Conv2d``/``Conv3d`` (``in_channels`` with
    the first spatial size among 8, 28, 32, 16, 64, 224 that the model runs on).  Raises a ValueError
    asking for ``data=`` when no shape works.
    """
    if isinstance(data, torch.Tensor):  # an input batch itself
        return data[: min(4, len(data))]
    if data is not None:
        ds = as_dataset(data, "data")
        return ds.X[: min(4, len(ds))]
    config = getattr(model, "config", None) or {}
    if isinstance(config, dict) and "in_features" in config:
        return torch.zeros(2, config["in_features"])
    if isinstance(config, dict) and "in_channels" in config:
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


def _group_names(tracer: ChannelTracer, out: Any) -> Tuple[Dict[int, Optional[str]], Dict[str, int]]:
    """A permutation name for every hidden group (``None`` for groups tied to the input or the output)."""
    uf = tracer.uf
    fixed = {uf.find(INPUT)}
    for t in tensors_in(out):
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
    return {g: roots.get(uf.find(g)) for g in list(tracer.sizes) + [INPUT]}, sizes


def permutation_spec(model: nn.Module, data: Any = None) -> PermutationSpec:
    """Derive the permutation spec of ``model`` from one traced forward pass (see module docstring).

    ``data`` supplies an example input (needed when :func:`example_input` cannot infer one).
    """
    _precheck(model)
    x = example_input(model, data)
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    tracer = ChannelTracer(model)
    was_training = model.training
    model.eval()
    try:
        out = run_traced(model, x.to(dev), tracer)
    finally:
        model.train(was_training)
    group_names, sizes = _group_names(tracer, out)
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
