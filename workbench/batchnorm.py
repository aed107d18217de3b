"""BatchNorm in parameter space: detection, pooled channel moments, statistics reset and REPAIR.

Stored running statistics describe the activations of the weights they were trained with.  Anywhere else
in parameter space (a point of a loss map, a point on the path between two networks) they are wrong, so
the workbench recomputes them with one estimator, :func:`reset_bn`, used by landscape maps, interpolation
paths, barriers, merging and the pruning regime map alike.  :func:`repair` is REPAIR (Jordan et al.,
ICLR 2023): after the reset, every hidden channel's mean and standard deviation are rescaled to the
interpolation of the two endpoints' ones.  Definitions: ``docs/connectivity.md`` and
``docs/landscape.md``.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Sequence, Tuple

import torch
import torch.nn as nn

from .backend import DeviceLike, resolve_device
from .data import Dataset, as_dataset

__all__ = ["BATCHNORM_TYPES", "has_batchnorm", "batchnorm_modules", "channel_moments", "reset_bn",
           "reset_bn_buffers", "site_stats", "repair"]

BATCHNORM_TYPES = (nn.modules.batchnorm._BatchNorm,)


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` holds a BatchNorm layer (1-D, 2-D, 3-D, synchronised or lazy)."""
    return any(isinstance(m, BATCHNORM_TYPES) for m in model.modules())


def batchnorm_modules(model: nn.Module) -> Dict[str, nn.Module]:
    """The BatchNorm layers that track running statistics, keyed by their position in ``modules()``."""
    return {str(i): m for i, m in enumerate(model.modules())
            if isinstance(m, BATCHNORM_TYPES) and m.running_mean is not None}


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
    ``batch_size``; with one batch covering the data every layer is exact.  BatchNorms that do not track
    running statistics are left as they are.
    """
    bns = batchnorm_modules(model)
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
def reset_bn_buffers(model: nn.Module, theta: torch.Tensor, spec: Any, train_data: Dataset, *,
                     batch_size: int, device: torch.device) -> Dict[str, torch.Tensor]:
    """The model's buffers at the flat parameter vector ``theta`` (laid out by ``spec``, a
    :class:`workbench.paramspace.ParamSpec`) with BatchNorm statistics recomputed by :func:`reset_bn`."""
    from .paramspace import load_theta

    work = copy.deepcopy(model).to(device)
    load_theta(work, theta, spec)
    reset_bn(work, train_data, batch_size=batch_size, device=device)
    return {k: v.detach().clone() for k, v in work.named_buffers()}


def site_stats(model: nn.Module, modules: Sequence[str], data: Dataset, *, batch_size: int,
               device: torch.device) -> Dict[str, Tuple[torch.Tensor, torch.Tensor]]:
    """Per-channel mean and standard deviation of the outputs of the named ``modules`` over ``data``."""
    named = dict(model.named_modules())
    model.to(device).eval()
    moments = channel_moments(model, {name: named[name] for name in modules}, data, batch_size=batch_size,
                              device=device)
    return {name: (mean, var.sqrt()) for name, (mean, var, _n) in moments.items()}


@torch.no_grad()
def repair(model: nn.Module, stats_a: Dict[str, Tuple[torch.Tensor, torch.Tensor]],
           stats_b: Dict[str, Tuple[torch.Tensor, torch.Tensor]], alpha: float, data: Dataset, *,
           sites: Sequence[str], batch_size: int = 512, device: DeviceLike = "auto") -> nn.Module:
    """REPAIR the interpolated ``model`` in place: reset BN statistics, then, site by site in forward
    order, rescale each channel so its mean and std equal ``(1 - alpha)`` A's + ``alpha`` B's.

    ``sites`` are modules with an affine output per channel (an affine BatchNorm, or a Linear / Conv with a
    bias); the rescaling is folded into their weight and bias.
    """
    dev = resolve_device(device)
    reset_bn(model, data, batch_size=batch_size, device=dev)
    named = dict(model.named_modules())
    for site in sites:
        mean_i, std_i = site_stats(model, [site], data, batch_size=batch_size, device=dev)[site]
        ma, sa = stats_a[site]
        mb, sb = stats_b[site]
        mean_t = (1 - alpha) * ma + alpha * mb
        std_t = (1 - alpha) * sa + alpha * sb
        ratio = std_t / (std_i + 1e-8)
        mod = named[site]
        w = mod.weight
        shape = (-1,) + (1,) * (w.dim() - 1)
        w.mul_(ratio.to(w.dtype).view(shape))
        mod.bias.copy_(((mod.bias.double() - mean_i) * ratio + mean_t).to(mod.bias.dtype))
    return model
