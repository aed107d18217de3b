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
import os
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, vmap

from .backend import DeviceLike, resolve_device
from .data import Dataset, as_dataset
from .progress import Progress, ProgressLike

__all__ = ["ParamSpec", "AffinePoints", "flatten", "unflatten", "load_theta", "evaluate_points", "batch_loss_sum",
           "parameter_groups", "has_batchnorm"]

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


def _named_params(model: nn.Module, trainable_only: bool = True) -> List[Tuple[str, torch.Tensor]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad or not trainable_only]


def flatten(model: nn.Module, *, trainable_only: bool = True) -> Tuple[torch.Tensor, ParamSpec]:
    """``(theta, spec)``: a detached copy of the model's parameters as one 1-D tensor, and its layout."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    named = _named_params(model, trainable_only)
    if not named:
        raise ValueError("model has no trainable parameters to flatten")
    names, shapes, offsets = [], [], []
    off = 0
    for n, p in named:
        names.append(n)
        shapes.append(tuple(p.shape))
        offsets.append(off)
        off += p.numel()
    theta = torch.cat([p.detach().reshape(-1) for _, p in named]).clone()
    return theta, ParamSpec(tuple(names), tuple(shapes), tuple(offsets), theta.dtype)


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


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


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
def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, getattr(torch, "OutOfMemoryError", ())):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg
                                              or "not enough memory" in msg)


def _available_memory(dev: torch.device) -> int:
    if dev.type == "cuda":
        free, _total = torch.cuda.mem_get_info(dev)
        return int(free)
    try:
        import psutil  # type: ignore

        return int(psutil.virtual_memory().available)
    except Exception:
        try:
            return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return 2 << 30


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


def auto_chunk(model: nn.Module, spec: ParamSpec, xb: torch.Tensor, dev: torch.device,
               params: Dict[str, torch.Tensor], buffers: Dict[str, torch.Tensor], points: int) -> int:
    """Number of points per pass that fits the memory available (at most 64 on a CPU, 1024 on a GPU)."""
    per_point = 3 * _activation_bytes(model, params, buffers, xb) + 2 * spec.numel * 4
    budget = 0.4 * _available_memory(dev) if dev.type == "cuda" else min(0.25 * _available_memory(dev), 2 << 30)
    cap = 1024 if dev.type == "cuda" else 64
    return int(max(1, min(cap, points, budget // max(per_point, 1))))


@torch.no_grad()
def channel_moments(model: nn.Module, modules: Dict[str, nn.Module], data: Dataset, *, batch_size: int,
                    device: torch.device, inputs: bool = False) -> Dict[str, Tuple[torch.Tensor, torch.Tensor, int]]:
    """Per-channel mean and (biased) variance of the outputs of ``modules`` (or their inputs, with
    ``inputs=True``) pooled over all of ``data``, in float64, from one pass of ``model`` in its current mode.

    Channels are dimension 1; every other dimension counts as samples.  A module the pass never reached is
    absent from the answer.
    """
    sums: Dict[str, List[Any]] = {}

    def record(name: str, t: torch.Tensor) -> None:
        u = t.movedim(1, -1).reshape(-1, t.shape[1]).double() if t.dim() > 2 else t.double()
        s = sums.setdefault(name, [0.0, 0.0, 0])
        s[0] = s[0] + u.sum(0)
        s[1] = s[1] + (u * u).sum(0)
        s[2] += u.shape[0]

    hooks = []
    for name, mod in modules.items():
        if inputs:
            hooks.append(mod.register_forward_pre_hook(lambda m, args, name=name: record(name, args[0])))
        else:
            hooks.append(mod.register_forward_hook(lambda m, args, out, name=name: record(name, out)))
    try:
        for xb, _ in data.batches(batch_size, device=device):
            model(xb)
    finally:
        for h in hooks:
            h.remove()
    out = {}
    for name, (s1, s2, n) in sums.items():
        mean = s1 / n
        out[name] = (mean, (s2 / n - mean ** 2).clamp_min(0), n)
    return out


@torch.no_grad()
def reset_bn(model: nn.Module, data: Any, *, batch_size: int = 512, device: DeviceLike = "auto") -> nn.Module:
    """Recompute every BatchNorm's running statistics on ``data`` (in place; returns ``model``).

    One pass over ``data`` in training mode (each BatchNorm normalises with its batch's statistics, as in
    training; everything else, dropout included, in eval mode).  Each layer's running mean and unbiased
    variance are then set to the pooled statistics of *all* the inputs it saw (sums over every batch,
    weighted per sample), not to an average of per-batch variances.  A BatchNorm whose input does not
    depend on another BatchNorm (the first one) gets the exact statistics of the whole data set for any
    ``batch_size``; with one batch covering the data every layer is exact.  This is the one estimator used
    by landscape maps (:func:`reset_bn_buffers`) and along interpolation paths (``workbench.connectivity``).
    BatchNorms that do not track running statistics are left as they are.
    """
    bns = {str(i): m for i, m in enumerate(model.modules())
           if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None}
    if not bns:
        return model
    ds = as_dataset(data, "train_data")
    dev = resolve_device(device)
    model.to(dev).eval()
    for m in bns.values():
        m.train()
    try:
        moments = channel_moments(model, bns, ds, batch_size=batch_size, device=dev, inputs=True)
    finally:
        for m in bns.values():
            m.eval()
    for key, m in bns.items():
        if key not in moments:  # a BatchNorm the forward pass never reached
            continue
        mean, var, n = moments[key]
        m.running_mean.copy_(mean.to(m.running_mean.dtype))
        m.running_var.copy_((var * (n / max(n - 1, 1))).to(m.running_var.dtype))
        if m.num_batches_tracked is not None:
            m.num_batches_tracked.fill_(1)
    return model


@torch.no_grad()
def reset_bn_buffers(model: nn.Module, theta: torch.Tensor, spec: ParamSpec, train_data: Dataset, *,
                     batch_size: int, device: torch.device) -> Dict[str, torch.Tensor]:
    """The model's buffers at ``theta`` with BatchNorm running statistics recomputed on ``train_data``.

    The statistics are the pooled mean and unbiased variance of each BatchNorm's inputs over all of
    ``train_data`` (the one estimator of :func:`reset_bn`, so maps and barriers agree).
    """
    work = copy.deepcopy(model).to(device)
    load_theta(work, theta, spec)
    reset_bn(work, train_data, batch_size=batch_size, device=device)
    return {k: v.detach().clone() for k, v in work.named_buffers()}


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
    chunk : points per vectorised pass; ``None`` sizes it to the memory available.  Halved on
        out-of-memory.
    bn : ``"eval"`` (stored running statistics) or ``"reset"`` (recompute them at every point on
        ``train_data``, default ``data``).
    buffers : optional name -> ``(P, *shape)`` per-point buffers (e.g. interpolated BatchNorm statistics).
    vectorize : ``True`` evaluates a chunk of points in one :func:`torch.func.vmap` pass; ``False`` one
        point after another on a private copy of the model (``model`` is deep-copied once per call; each
        point's vector is copied into the copy's flat parameter storage, then plain forward passes run
        per batch); ``"auto"`` vectorises on a GPU and not on a CPU, where it was measured not to pay.
    info : optional dict filled with ``chunk`` (the chunk actually used), ``passes`` and ``vectorized``.

    Returns ``{"loss": (P,), "accuracy": (P,)}`` NumPy arrays; a point whose loss is NaN or infinite
    keeps that value (no exception).  Accuracy is NaN when the output is not a ``(N, C)`` score matrix
    with integer targets.
    """
    if bn not in BN_MODES:
        raise ValueError(f"bn={bn!r}; choose one of {BN_MODES}")
    dev = resolve_device(device)
    ds = as_dataset(data, "data")
    loss_fn = loss_fn or F.cross_entropy
    theta0, spec = flatten(model)
    if not isinstance(thetas, AffinePoints):
        thetas = torch.as_tensor(thetas)
    if thetas.dim() == 1:
        thetas = thetas[None]
    if thetas.dim() != 2 or thetas.shape[1] != spec.numel:
        raise ValueError(f"thetas has shape {tuple(thetas.shape)}; expected (P, {spec.numel}) "
                         f"for this model ({spec.numel} parameters), built with paramspace.flatten")
    P = thetas.shape[0]
    model_dev = next(model.parameters()).device
    was_training = model.training
    if model_dev != dev:
        model = copy.deepcopy(model).to(dev)
    model.eval()
    try:
        base_buffers = {k: v.to(dev) for k, v in model.named_buffers()}
        point_buffers: Optional[Dict[str, torch.Tensor]] = None
        if buffers is not None:
            point_buffers = {k: torch.as_tensor(v).to(dev) for k, v in buffers.items()}
            for k, v in point_buffers.items():
                if k not in base_buffers or v.shape[0] != P:
                    raise ValueError(f"buffers[{k!r}] must be a (P={P}, ...) stack of a buffer the model has")
        ds_dev = ds.to(dev)
        train_ds = as_dataset(train_data, "train_data").to(dev) if train_data is not None else ds_dev
        has_bn = has_batchnorm(model)
        do_reset = bn == "reset" and has_bn
        int_targets = not ds_dev.y.is_floating_point()

        def point_fn(params, bufs, xb, yb):
            out = functional_call(model, {**params, **bufs}, (xb,))
            loss = batch_loss_sum(loss_fn, out, yb)
            if out.dim() == 2 and int_targets and yb.dim() == 1:
                correct = (out.argmax(-1) == yb).sum().to(loss.dtype)
            else:
                correct = torch.full((), float("nan"), dtype=loss.dtype, device=loss.device)
            return loss, correct

        if vectorize == "auto":
            # On a GPU one vmap pass over a chunk of points replaces many small kernel launches.  On a CPU
            # the chunk's activations leave the caches and convolutions with per-point weights become
            # grouped convolutions: measured on 2 cores, separate passes were as fast or faster.
            vectorize = dev.type != "cpu"
        if vectorize:
            vmapped_shared = vmap(point_fn, in_dims=(0, None, None, None))
            vmapped_own = vmap(point_fn, in_dims=(0, 0, None, None))
        else:
            # one point after another on a private copy whose parameters are views of one flat tensor:
            # moving to the next point is a single copy, then plain forward passes
            work = copy.deepcopy(model).to(dev).eval()
            flat = torch.empty(spec.numel, dtype=spec.dtype, device=dev)
            wparams = dict(work.named_parameters())
            for name, shape, sl in spec.items():
                wparams[name].data = flat[sl].view(shape)
            wbuffers = dict(work.named_buffers())

            def loop_block(block, bufs):
                m = block.shape[0]
                tl = torch.zeros(m, dtype=torch.float64, device=dev)
                tc = torch.zeros(m, dtype=torch.float64, device=dev)
                for i in range(m):
                    flat.copy_(block[i])
                    if bufs is not None:
                        for k, v in bufs.items():
                            wbuffers[k].copy_(v[i])
                    for xb, yb in ds_dev.batches(batch_size):
                        out = work(xb)
                        tl[i] += batch_loss_sum(loss_fn, out, yb).double()
                        if out.dim() == 2 and int_targets and yb.dim() == 1:
                            tc[i] += (out.argmax(-1) == yb).sum().double()
                        else:
                            tc[i] = float("nan")
                return tl, tc

        first_x = next(ds_dev.batches(batch_size))[0]
        try:  # a clear error for data the model cannot take, before any vectorised pass
            with torch.no_grad():
                probe = model(first_x[:2])
                batch_loss_sum(loss_fn, probe, ds_dev.y[:2])
        except Exception as exc:
            raise ValueError(f"the model cannot be evaluated on data with X of shape {tuple(ds_dev.X.shape)} and "
                             f"y of shape {tuple(ds_dev.y.shape)} ({type(exc).__name__}: {exc}); pass data in the "
                             "shape the model and loss_fn expect") from exc
        if chunk is None:
            p0 = {k: v.to(dev) for k, v in unflatten(theta0, spec).items()}
            chunk_now = auto_chunk(model, spec, first_x, dev, p0, base_buffers, P)
        else:
            if int(chunk) < 1:
                raise ValueError(f"chunk={chunk}; use a positive number of points per pass or None")
            chunk_now = int(min(int(chunk), P))

        n_batches = -(-len(ds_dev) // batch_size) if batch_size else 1
        losses = np.full(P, np.nan)
        accs = np.full(P, np.nan)
        n = len(ds_dev)
        passes = 0
        with Progress(P, "points", progress) as bar:
            start = 0
            while start < P:
                stop = min(P, start + chunk_now)
                try:
                    block = thetas[start:stop].to(dev, spec.dtype)
                    params = unflatten(block, spec)
                    if do_reset:
                        per = [reset_bn_buffers(model, block[i], spec, train_ds, batch_size=batch_size, device=dev)
                               for i in range(stop - start)]
                        bufs = {k: torch.stack([p[k] for p in per]) for k in per[0]}
                    elif point_buffers is not None:
                        bufs = {**{k: v.unsqueeze(0).expand(stop - start, *v.shape)
                                   for k, v in base_buffers.items() if k not in point_buffers},
                                **{k: v[start:stop] for k, v in point_buffers.items()}}
                    else:
                        bufs = None
                    tot_loss = torch.zeros(stop - start, dtype=torch.float64, device=dev)
                    tot_corr = torch.zeros(stop - start, dtype=torch.float64, device=dev)
                    with torch.no_grad():
                        if not vectorize:
                            tot_loss, tot_corr = loop_block(block, bufs)
                            passes += (stop - start) * n_batches
                        for xb, yb in (ds_dev.batches(batch_size) if vectorize else ()):
                            if bufs is None:
                                l, c = vmapped_shared(params, base_buffers, xb, yb)
                            else:
                                l, c = vmapped_own(params, bufs, xb, yb)
                            tot_loss += l.double()
                            tot_corr += c.double()
                            passes += 1
                except Exception as exc:  # shrink the chunk on out-of-memory
                    if _is_oom(exc) and chunk_now > 1:
                        chunk_now = max(1, chunk_now // 2)
                        if dev.type == "cuda":
                            torch.cuda.empty_cache()
                        continue
                    if _is_oom(exc):
                        raise MemoryError(f"one parameter point does not fit in memory with batch_size={batch_size}; "
                                          "lower batch_size") from exc
                    raise
                losses[start:stop] = (tot_loss / n).cpu().numpy()
                accs[start:stop] = (tot_corr / n).cpu().numpy()
                bar.update(stop - start)
                start = stop
    finally:
        model.train(was_training)
    if info is not None:
        info.update(chunk=chunk_now, passes=passes, points=P, device=str(dev), bn=bn if has_bn else "none",
                    vectorized=bool(vectorize))
    return {"loss": losses, "accuracy": accs}
