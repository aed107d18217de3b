"""Parameter space: flat views of a model's parameters and fast evaluation at many parameter points.

A model's trainable parameters are laid out end to end in one 1-D vector ``theta`` (in
``named_parameters`` order); :class:`ParamSpec` remembers the names, shapes and offsets so that
``unflatten`` gives the tensors back.  :func:`evaluate_points` computes the mean loss and the accuracy
of the model at ``P`` parameter vectors (a ``P x D`` tensor, or :class:`AffinePoints` made chunk by
chunk) over the *whole* data set.  On a GPU it evaluates a chunk of points per pass with
:func:`torch.func.functional_call` under :func:`torch.func.vmap`, so the network runs once per batch for
the whole chunk; the chunk is sized to the memory available and halved on out-of-memory instead of
failing.  On a CPU (where vectorising was measured not to pay) it evaluates one point after another on a
private copy of the model whose parameters are views of one flat tensor: moving to the next point is one
copy of that point's vector, then plain forward passes over the batches; ``vectorize=True`` forces the
vmap path anywhere.

BatchNorm is used in eval mode (the model's running statistics) by default; ``bn="reset"`` recomputes
the running statistics at every point on training data first (the right choice far from the trained
model, where the stored statistics no longer describe the activations).
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, vmap

from .backend import DeviceLike, available_memory, check_allocation, resolve_device, run_in_chunks
from .batchnorm import has_batchnorm, reset_bn_buffers
from .data import Dataset, as_dataset
from .losses import resolve as resolve_loss
from .validation import probe
from .progress import Progress, ProgressLike

__all__ = ["ParamSpec", "AffinePoints", "flatten", "unflatten", "load_theta", "evaluate_points", "batch_loss_sum",
           "parameter_groups"]

BN_MODES = ("eval", "reset")


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """Where each parameter lives in the flat vector: names, shapes, offsets (same order as theta)."""

    names: Tuple[str, ...]
    shapes: Tuple[Tuple[int, ...], ...]
    offsets: Tuple[int, ...]
    dtype: torch.dtype = torch.float32

    @property
    def sizes(self) -> Tuple[int, ...]:
        return tuple(int(np.prod(s)) if len(s) else 1 for s in self.shapes)

    @property
    def numel(self) -> int:
        return self.offsets[-1] + self.sizes[-1] if self.names else 0

    def __len__(self) -> int:
        return len(self.names)

    def slice(self, name: str) -> slice:
        i = self.names.index(name)
        return slice(self.offsets[i], self.offsets[i] + self.sizes[i])

    def items(self):
        """``(name, shape, slice)`` for every parameter, in order."""
        for name, shape, off, size in zip(self.names, self.shapes, self.offsets, self.sizes):
            yield name, shape, slice(off, off + size)

    def to_dict(self) -> Dict[str, Any]:
        return {"names": list(self.names), "shapes": [list(s) for s in self.shapes]}

    @classmethod
    def of(cls, named: Sequence[Tuple[str, torch.Tensor]]) -> "ParamSpec":
        """The layout of ``named`` tensors laid end to end, in the order given."""
        names, shapes, offsets, off = [], [], [], 0
        for n, p in named:
            names.append(n)
            shapes.append(tuple(p.shape))
            offsets.append(off)
            off += p.numel()
        dtype = named[0][1].dtype if named else torch.float32
        return cls(tuple(names), tuple(shapes), tuple(offsets), dtype)


def _named_params(model: nn.Module, trainable_only: bool = True) -> List[Tuple[str, torch.Tensor]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad or not trainable_only]


def flatten(model: nn.Module, *, trainable_only: bool = True) -> Tuple[torch.Tensor, ParamSpec]:
    """``(theta, spec)``: a detached copy of the model's parameters as one 1-D tensor, and its layout."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    named = _named_params(model, trainable_only)
    if not named:
        raise ValueError("model has no trainable parameters to flatten")
    theta = torch.cat([p.detach().reshape(-1) for _, p in named]).clone()
    return theta, dataclasses.replace(ParamSpec.of(named), dtype=theta.dtype)


def unflatten(theta: torch.Tensor, spec: ParamSpec) -> Dict[str, torch.Tensor]:
    """Name -> tensor from a flat ``theta`` (``D``), or name -> ``(P, *shape)`` from a ``P x D`` stack."""
    theta = torch.as_tensor(theta)
    if theta.shape[-1] != spec.numel:
        raise ValueError(f"theta has {theta.shape[-1]} entries but the model has {spec.numel} parameters; "
                         "flatten the same architecture that produced the spec")
    lead = tuple(theta.shape[:-1])
    return {name: theta[..., sl].reshape(*lead, *shape) for name, shape, sl in spec.items()}


@torch.no_grad()
def load_theta(model: nn.Module, theta: torch.Tensor, spec: Optional[ParamSpec] = None) -> nn.Module:
    """Copy a flat parameter vector into ``model`` in place (and return it)."""
    spec = spec or flatten(model)[1]
    params = dict(model.named_parameters())
    for name, tensor in unflatten(torch.as_tensor(theta), spec).items():
        if name not in params:
            raise ValueError(f"theta names parameter {name!r} which the model lacks")
        params[name].copy_(tensor.to(params[name].device, params[name].dtype))
    return model


def parameter_groups(model: nn.Module, spec: Optional[ParamSpec] = None, *,
                     by: str = "module") -> Dict[str, List[str]]:
    """Group parameter names: ``by="module"`` (weight and bias of one layer together) or ``"parameter"``."""
    spec = spec or flatten(model)[1]
    groups: Dict[str, List[str]] = {}
    for name in spec.names:
        key = name.rsplit(".", 1)[0] if (by == "module" and "." in name) else name
        groups.setdefault(key, []).append(name)
    return groups


# --------------------------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------------------------
_REDUCIBLE = (F.cross_entropy, F.mse_loss, F.nll_loss, F.binary_cross_entropy_with_logits, F.l1_loss,
              F.smooth_l1_loss, F.huber_loss, F.kl_div)


def batch_loss_sum(loss_fn: Callable, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sum over the batch's examples of the loss, so that the total over the data divided by ``N`` is
    exactly what the mean-reducing ``loss_fn`` gives on the whole data set at once (for ``mse_loss`` on
    ``C`` outputs: the mean over all ``N * C`` elements).

    Functional losses of ``torch.nn.functional`` are called with ``reduction="sum"``; a loss module
    (``nn.CrossEntropyLoss()``) follows its ``reduction``; any other callable is assumed to return the
    batch mean and is multiplied by the batch size.
    """
    n = y.shape[0] if y.dim() else out.shape[0]
    if loss_fn in _REDUCIBLE:
        total = loss_fn(out, y, reduction="sum")
        # "mean" divides by the number of loss elements; scale so that sum / N is that same mean
        if loss_fn in (F.cross_entropy, F.nll_loss):
            elements = y.numel() if not y.is_floating_point() else n
        else:
            elements = out.numel()
        return total * (n / elements) if elements != n else total
    if isinstance(loss_fn, nn.modules.loss._Loss):
        value = loss_fn(out, y)
        return value if loss_fn.reduction == "sum" else value * n
    return loss_fn(out, y) * n


# --------------------------------------------------------------------------------------------
# evaluation at many points
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def _activation_bytes(model: nn.Module, params: Dict[str, torch.Tensor], buffers: Dict[str, torch.Tensor],
                      xb: torch.Tensor) -> int:
    """Bytes of every module output for one forward pass on ``xb`` (a per-point memory estimate)."""
    total = [0]

    def hook(_m, _i, out):
        if isinstance(out, torch.Tensor):
            total[0] += out.numel() * out.element_size()

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        functional_call(model, {**params, **buffers}, (xb,))
    finally:
        for h in handles:
            h.remove()
    return total[0]


def point_bytes(model: nn.Module, spec: ParamSpec, xb: torch.Tensor, params: Dict[str, torch.Tensor],
                buffers: Dict[str, torch.Tensor]) -> int:
    """Estimated memory of one parameter point in a vectorised pass over the batch ``xb``."""
    return 3 * _activation_bytes(model, params, buffers, xb) + 2 * spec.numel * 4


def auto_chunk(per_point: int, dev: torch.device, points: int) -> int:
    """Number of points per pass that fits the memory available (at most 64 on a CPU, 1024 on a GPU)."""
    free = available_memory(dev)
    budget = 0.4 * free if dev.type == "cuda" else min(0.25 * free, 2 << 30)
    cap = 1024 if dev.type == "cuda" else 64
    return int(max(1, min(cap, points, budget // max(per_point, 1))))


class AffinePoints:
    """Parameter points ``origin + coefs @ directions`` (``P x D``) made one block at a time.

    Pass it to :func:`evaluate_points` instead of a ``P x D`` tensor: a 51 x 51 map of a model with
    millions of parameters never holds all its points in memory at once.
    """

    def __init__(self, origin: torch.Tensor, directions: torch.Tensor, coefs: Any):
        self.origin = torch.as_tensor(origin).reshape(-1)
        self.directions = torch.as_tensor(directions).reshape(-1, self.origin.numel()).to(self.origin)
        self.coefs = torch.as_tensor(np.asarray(coefs, dtype=np.float64)).reshape(-1, self.directions.shape[0])
        self.shape = torch.Size((self.coefs.shape[0], self.origin.numel()))

    def dim(self) -> int:
        return 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> torch.Tensor:
        c = self.coefs[index].to(self.origin.device, self.origin.dtype)
        if c.dim() == 1:
            return self.origin + c @ self.directions
        return self.origin[None] + c @ self.directions



class _Points:
    """What every evaluation strategy shares: the model on the device, the data, the loss."""

    def __init__(self, model: nn.Module, spec: ParamSpec, data: Dataset, loss_fn: Callable, batch_size: int,
                 dev: torch.device):
        self.model, self.spec, self.data, self.loss_fn = model, spec, data, loss_fn
        self.batch_size, self.dev = batch_size, dev
        self.int_targets = not data.y.is_floating_point()
        self.passes = 0

    def scores(self, out: torch.Tensor, yb: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(loss summed over the batch, number correct or NaN)`` of one output."""
        loss = batch_loss_sum(self.loss_fn, out, yb)
        if out.dim() == 2 and self.int_targets and yb.dim() == 1:
            return loss, (out.argmax(-1) == yb).sum().to(loss.dtype)
        return loss, torch.full((), float("nan"), dtype=loss.dtype, device=loss.device)


class _Vectorised(_Points):
    """A chunk of points per pass: ``torch.func.functional_call`` under ``vmap`` (the GPU path)."""

    def __init__(self, *args: Any):
        super().__init__(*args)

        def point(params, bufs, xb, yb):
            return self.scores(functional_call(self.model, {**params, **bufs}, (xb,)), yb)

        self.shared = vmap(point, in_dims=(0, None, None, None))
        self.own = vmap(point, in_dims=(0, 0, None, None))

    def block(self, thetas: torch.Tensor, bufs: Optional[Dict[str, torch.Tensor]],
              base_buffers: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        params = unflatten(thetas, self.spec)
        m = thetas.shape[0]
        tot_loss = torch.zeros(m, dtype=torch.float64, device=self.dev)
        tot_corr = torch.zeros(m, dtype=torch.float64, device=self.dev)
        for xb, yb in self.data.batches(self.batch_size):
            loss, corr = self.shared(params, base_buffers, xb, yb) if bufs is None else self.own(params, bufs, xb, yb)
            tot_loss += loss.double()
            tot_corr += corr.double()
            self.passes += 1
        return tot_loss, tot_corr


class _Sequential(_Points):
    """One point after another on a private copy whose parameters are views of one flat tensor: moving to
    the next point is a single copy, then plain forward passes (the CPU path)."""

    def __init__(self, *args: Any):
        super().__init__(*args)
        self.work = copy.deepcopy(self.model).to(self.dev).eval()
        self.flat = torch.empty(self.spec.numel, dtype=self.spec.dtype, device=self.dev)
        wparams = dict(self.work.named_parameters())
        for name, shape, sl in self.spec.items():
            wparams[name].data = self.flat[sl].view(shape)
        self.wbuffers = dict(self.work.named_buffers())

    def block(self, thetas: torch.Tensor, bufs: Optional[Dict[str, torch.Tensor]],
              base_buffers: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        m = thetas.shape[0]
        tl = torch.zeros(m, dtype=torch.float64, device=self.dev)
        tc = torch.zeros(m, dtype=torch.float64, device=self.dev)
        for i in range(m):
            self.flat.copy_(thetas[i])
            for k, v in (bufs or {}).items():
                self.wbuffers[k].copy_(v[i])
            for xb, yb in self.data.batches(self.batch_size):
                loss, corr = self.scores(self.work(xb), yb)
                tl[i] += loss.double()
                tc[i] += corr.double()
                self.passes += 1
        return tl, tc


def _point_buffers(model: nn.Module, base: Dict[str, torch.Tensor], buffers: Optional[Dict[str, Any]], P: int,
                   dev: torch.device) -> Optional[Dict[str, torch.Tensor]]:
    if buffers is None:
        return None
    out = {k: torch.as_tensor(v).to(dev) for k, v in buffers.items()}
    for k, v in out.items():
        if k not in base or v.shape[0] != P:
            raise ValueError(f"buffers[{k!r}] must be a (P={P}, ...) stack of a buffer the model has")
    return out


def evaluate_points(model: nn.Module, thetas: torch.Tensor, data: Any, loss_fn: Optional[Callable] = None, *,
                    batch_size: int = 1024, chunk: Optional[int] = None, bn: str = "eval",
                    train_data: Any = None, buffers: Optional[Dict[str, torch.Tensor]] = None,
                    device: DeviceLike = "auto", progress: ProgressLike = False,
                    vectorize: Union[str, bool] = "auto",
                    info: Optional[Dict[str, Any]] = None) -> Dict[str, np.ndarray]:
    """Mean loss and accuracy of ``model`` at each row of ``thetas`` (``P x D``) over the whole ``data``.

    Parameters
    ----------
    model : the architecture; its parameters are replaced by each row of ``thetas`` (laid out as
        :func:`flatten` does); its buffers (BatchNorm statistics) are used as they are unless ``bn``
        or ``buffers`` say otherwise.  The model itself is not modified.
    thetas : ``P x D`` tensor (or a single ``D`` vector), or an :class:`AffinePoints`.
    data : anything :func:`workbench.data.as_dataset` accepts; evaluated whole, in batches.
    loss_fn : ``loss_fn(output, target)`` returning the batch mean (default cross-entropy).
    chunk : points per pass; ``None`` sizes it to the memory available.  Halved on out-of-memory.
    bn : ``"eval"`` (stored running statistics) or ``"reset"`` (recompute them at every point on
        ``train_data``, default ``data``).
    buffers : optional name -> ``(P, *shape)`` per-point buffers (e.g. interpolated BatchNorm statistics).
    vectorize : ``True`` evaluates a chunk of points in one :func:`torch.func.vmap` pass; ``False`` one
        point after another on a private copy of the model; ``"auto"`` vectorises on a GPU and not on a
        CPU, where it was measured not to pay.
    info : optional dict filled with ``chunk`` (the chunk actually used), ``passes`` and ``vectorized``.

    Returns ``{"loss": (P,), "accuracy": (P,)}`` NumPy arrays; a point whose loss is NaN or infinite
    keeps that value (no exception).  Accuracy is NaN when the output is not a ``(N, C)`` score matrix
    with integer targets.
    """
    if bn not in BN_MODES:
        raise ValueError(f"bn={bn!r}; choose one of {BN_MODES}")
    dev = resolve_device(device)
    ds = as_dataset(data, "data")
    loss_fn = resolve_loss(loss_fn, model)
    theta0, spec = flatten(model)
    if not isinstance(thetas, AffinePoints):
        thetas = torch.as_tensor(thetas)
    if thetas.dim() == 1:
        thetas = thetas[None]
    if thetas.dim() != 2 or thetas.shape[1] != spec.numel:
        raise ValueError(f"thetas has shape {tuple(thetas.shape)}; expected (P, {spec.numel}) "
                         f"for this model ({spec.numel} parameters), built with paramspace.flatten")
    P = thetas.shape[0]
    was_training = model.training
    if next(model.parameters()).device != dev:
        model = copy.deepcopy(model).to(dev)
    model.eval()
    try:
        base = {k: v.to(dev) for k, v in model.named_buffers()}
        point_bufs = _point_buffers(model, base, buffers, P, dev)
        ds_dev = ds.to(dev)
        train_ds = as_dataset(train_data, "train_data").to(dev) if train_data is not None else ds_dev
        has_bn = has_batchnorm(model)
        vectorize = dev.type != "cpu" if vectorize == "auto" else bool(vectorize)
        strategy = (_Vectorised if vectorize else _Sequential)(model, spec, ds_dev, loss_fn, batch_size, dev)
        probe(model, ds_dev, loss_fn=loss_fn)  # a clear error for data the model cannot take, before any pass
        first_x = next(ds_dev.batches(batch_size))[0]
        per_point = 0
        if chunk is None or vectorize:  # the memory one point needs in a vectorised pass
            per_point = point_bytes(model, spec, first_x, {k: v.to(dev) for k, v in unflatten(theta0, spec).items()},
                                    base)
        if chunk is not None and int(chunk) < 1:
            raise ValueError(f"chunk={chunk}; use a positive number of points per pass or None")
        chunk_now = auto_chunk(per_point, dev, P) if chunk is None else int(min(int(chunk), P))
        losses, accs = np.full(P, np.nan), np.full(P, np.nan)

        def work(start: int, stop: int):
            point = spec.numel * torch.finfo(spec.dtype).bits // 8 + (per_point if vectorize else 0)
            check_allocation(point * (stop - start), "a chunk of parameter points")
            block = thetas[start:stop].to(dev, spec.dtype)
            bufs = None
            if bn == "reset" and has_bn:
                per = [reset_bn_buffers(model, block[i], spec, train_ds, batch_size=batch_size, device=dev)
                       for i in range(stop - start)]
                bufs = {k: torch.stack([p[k] for p in per]) for k in per[0]}
            elif point_bufs is not None:
                bufs = {**{k: v.unsqueeze(0).expand(stop - start, *v.shape) for k, v in base.items()
                           if k not in point_bufs}, **{k: v[start:stop] for k, v in point_bufs.items()}}
            with torch.no_grad():
                return strategy.block(block, bufs, base)

        with Progress(P, "points", progress) as bar:
            def done(start: int, stop: int, value) -> None:
                losses[start:stop] = (value[0] / len(ds_dev)).cpu().numpy()
                accs[start:stop] = (value[1] / len(ds_dev)).cpu().numpy()
                bar.update(stop - start)

            chunk_now = run_in_chunks(P, chunk_now, work, device=dev, on_done=done, what="parameter points")
    finally:
        model.train(was_training)
    if info is not None:
        info.update(chunk=chunk_now, passes=strategy.passes, points=P, device=str(dev),
                    bn=bn if has_bn else "none", vectorized=bool(vectorize))
    return {"loss": losses, "accuracy": accs}
