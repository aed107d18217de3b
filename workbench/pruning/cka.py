"""Linear centered kernel alignment (Kornblith et al. 2019) between two representations.

``linear_cka(X, Y) = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` with column-centred ``Xc``, ``Yc``
(``n`` examples by features).  It is 1 for identical representations and invariant to orthogonal
transforms and isotropic scaling of either side; the regime map applies it to the two retrained copies'
outputs (logits) over the whole data set.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..backend import DeviceLike, resolve_device
from ..data import as_dataset


def _as_tensor(x: Any, name: str) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    t = t.detach().to(torch.float64)
    if t.dim() == 1:
        t = t[:, None]
    if t.dim() != 2:
        t = t.flatten(1)
    return t


def linear_cka(X: Any, Y: Any) -> float:
    """Linear CKA between ``X`` (n x p) and ``Y`` (n x q), computed in float64 on their device."""
    x, y = _as_tensor(X, "X"), _as_tensor(Y, "Y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"X has {x.shape[0]} rows and Y {y.shape[0]}: both must hold the same examples")
    if x.shape[0] < 2:
        raise ValueError("linear CKA needs at least 2 examples")
    y = y.to(x.device)
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    # for few examples the n x n Gram form is cheaper: ||Y^T X||_F^2 = <XX^T, YY^T>
    if x.shape[0] < max(x.shape[1], y.shape[1]):
        kx, ky = x @ x.T, y @ y.T
        hsic, nx, ny = (kx * ky).sum(), kx.norm(), ky.norm()
    else:
        hsic = (y.T @ x).pow(2).sum()
        nx, ny = (x.T @ x).norm(), (y.T @ y).norm()
    denom = nx * ny
    if float(denom) == 0.0:
        raise ValueError("a representation is constant over the examples; CKA is undefined")
    return float(hsic / denom)


@torch.no_grad()
def outputs(model: nn.Module, data: Any, *, batch_size: int = 1024, device: DeviceLike = "auto") -> torch.Tensor:
    """The model's outputs over the whole of ``data`` (eval mode, in batches), on the CPU."""
    ds = as_dataset(data)
    dev = resolve_device(device)
    was = model.training
    model.eval().to(dev)
    out = torch.cat([model(xb).float().cpu() for xb, _ in ds.batches(batch_size, device=dev)])
    model.train(was)
    return out


def output_cka(model_a: nn.Module, model_b: nn.Module, data: Any, *, batch_size: int = 1024,
               device: DeviceLike = "auto") -> float:
    """Linear CKA between the outputs of two models on the whole of ``data``."""
    return linear_cka(outputs(model_a, data, batch_size=batch_size, device=device),
                      outputs(model_b, data, batch_size=batch_size, device=device))
