"""Directions in parameter space for loss-landscape maps.

* :func:`random_direction`: a seeded Gaussian ``N(0, 1)`` direction with the shapes of the model's
  parameters, normalised per filter (Li et al. 2018, default), per layer, per model, or not at all.
  Parameters with at most one dimension (biases, norm scales) are zeroed by default
  (``ignore="biasbn"``); with ``ignore=None`` they are perturbed (under ``"filter"`` normalisation each
  such entry is its own filter, so the direction equals the weight there, as in Li et al.'s code).
* :func:`orthogonalize`: Gram-Schmidt of a second direction against the first.
* :func:`pca_directions`: the top principal components of a training trajectory
  ``theta_t - theta_final`` and the trajectory's coordinates in that plane.

Directions are flat vectors laid out as :func:`workbench.paramspace.flatten` lays out the model.
The random numbers are drawn on the CPU from a seeded generator, so the same seed gives the same
direction on every device.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from ..backend import to_numpy
from ..paramspace import ParamSpec, flatten

NORMS = ("filter", "layer", "model", "none")
IGNORES = ("biasbn", None)

__all__ = ["random_direction", "random_directions", "normalize_direction", "orthogonalize",
           "pca_directions", "NORMS"]


def _check(norm: str, ignore: Optional[str]) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r}; choose one of {NORMS}")
    if ignore not in IGNORES and ignore != "none":
        raise ValueError(f"ignore={ignore!r}; use 'biasbn' (zero 1-D parameters) or None (perturb them)")


def normalize_direction(direction: torch.Tensor, theta: torch.Tensor, spec: ParamSpec, *,
                        norm: str = "filter", ignore: Optional[str] = "biasbn", eps: float = 1e-10) -> torch.Tensor:
    """Rescale a raw direction (flat, like ``theta``) in the named way; returns a new tensor."""
    _check(norm, ignore)
    if ignore == "none":
        ignore = None
    d = direction.clone().to(theta.dtype)
    for name, shape, sl in spec.items():
        dp = d[sl].view(shape) if len(shape) else d[sl]
        wp = theta[sl].view(shape) if len(shape) else theta[sl]
        if len(shape) <= 1:
            if ignore == "biasbn":
                dp.zero_()
                continue
            if norm == "filter":  # each entry is its own filter: |d_i| = |w_i| (Li et al. copy w)
                dp.copy_(wp)
                continue
        if norm == "filter":
            rows_d = dp.reshape(shape[0], -1)
            rows_w = wp.reshape(shape[0], -1)
            scale = rows_w.norm(dim=1) / (rows_d.norm(dim=1) + eps)
            rows_d.mul_(scale[:, None])
        elif norm == "layer":
            dp.mul_(wp.norm() / (dp.norm() + eps))
    if norm == "model":
        mask = torch.ones_like(d, dtype=torch.bool)
        if ignore == "biasbn":
            for name, shape, sl in spec.items():
                if len(shape) <= 1:
                    mask[sl] = False
        d.mul_(theta[mask].norm() / (d.norm() + eps))
    return d


def random_direction(model: Union[nn.Module, Tuple[torch.Tensor, ParamSpec]], *, norm: str = "filter",
                     ignore: Optional[str] = "biasbn", seed: int = 0) -> torch.Tensor:
    """A seeded Gaussian direction of the model's parameter shapes, normalised by ``norm``.

    ``model`` is an ``nn.Module`` or a ``(theta, spec)`` pair from :func:`~workbench.paramspace.flatten`.
    Returns a flat tensor on the device and dtype of the model's parameters.
    """
    _check(norm, ignore)
    theta, spec = flatten(model) if isinstance(model, nn.Module) else model
    gen = torch.Generator().manual_seed(int(seed))
    raw = torch.randn(theta.numel(), generator=gen, dtype=torch.float32).to(theta.device, theta.dtype)
    return normalize_direction(raw, theta, spec, norm=norm, ignore=ignore)


def orthogonalize(d1: torch.Tensor, d2: torch.Tensor, *, keep_norm: bool = True) -> torch.Tensor:
    """``d2`` minus its projection on ``d1`` (rescaled to the norm ``d2`` had when ``keep_norm``)."""
    d2o = d2 - (d2 @ d1) / (d1 @ d1) * d1
    if keep_norm:
        d2o = d2o * (d2.norm() / (d2o.norm() + 1e-30))
    return d2o


def random_directions(model: nn.Module, k: int = 2, *, norm: str = "filter", ignore: Optional[str] = "biasbn",
                      seed: int = 0, orthogonal: bool = False) -> torch.Tensor:
    """``k`` directions (a ``k x D`` tensor); direction ``i`` uses seed ``seed + i``.

    With ``orthogonal=True`` each is made orthogonal to the previous ones (Gram-Schmidt, norm kept);
    normalisation is applied before, so afterwards the per-filter norms hold only approximately.
    """
    theta, spec = flatten(model)
    ds: List[torch.Tensor] = []
    for i in range(k):
        d = random_direction((theta, spec), norm=norm, ignore=ignore, seed=seed + i)
        if orthogonal:
            for prev in ds:
                d = orthogonalize(prev, d)
        ds.append(d)
    return torch.stack(ds)


def _as_flat(state: Any, spec: ParamSpec) -> torch.Tensor:
    """A checkpoint (state dict, module, or flat vector) as a flat parameter vector in ``spec`` order."""
    if isinstance(state, nn.Module):
        return flatten(state)[0]
    if isinstance(state, dict):
        missing = [n for n in spec.names if n not in state]
        if missing:
            raise ValueError(f"checkpoint lacks parameters {missing[:5]}; pass checkpoints of the same model")
        return torch.cat([torch.as_tensor(np.asarray(to_numpy(state[n]))).reshape(-1).float() for n in spec.names])
    t = torch.as_tensor(np.asarray(to_numpy(state))).float().reshape(-1)
    if t.numel() != spec.numel:
        raise ValueError(f"checkpoint vector has {t.numel()} entries, the model {spec.numel}")
    return t


def pca_directions(model: nn.Module, checkpoints: Any, *, k: int = 2, ignore: Optional[str] = "biasbn"
                   ) -> Dict[str, Any]:
    """Principal directions of a training trajectory (Li et al. 2018, section 7).

    ``model`` holds the final parameters theta_final; ``checkpoints`` is a
    :class:`~workbench.models.TrainResult` (its ``checkpoints``) or a list of state dicts / modules /
    flat vectors.  The matrix of ``theta_t - theta_final`` is centred and decomposed (SVD, like
    ``sklearn.decomposition.PCA``); with ``ignore="biasbn"`` 1-D parameters are left out (zero).

    Returns ``{"directions": k x D tensor (unit norm), "explained_variance_ratio": (k,),
    "coords": (T, k) coordinates of every checkpoint, dot((theta_t - theta_final), d_i)}``.
    """
    theta, spec = flatten(model)
    if hasattr(checkpoints, "checkpoint_states"):
        checkpoints = checkpoints.checkpoint_states()
    states = list(checkpoints)
    if len(states) < 2:
        raise ValueError("checkpoints: need at least 2 points of the trajectory (train with checkpoint_every=)")
    M = torch.stack([_as_flat(s, spec).to(theta.dtype) for s in states]) - theta.cpu()[None]
    if ignore == "biasbn":
        for name, shape, sl in spec.items():
            if len(shape) <= 1:
                M[:, sl] = 0
    centred = M - M.mean(0, keepdim=True)
    U, S, Vh = torch.linalg.svd(centred.double(), full_matrices=False)
    k = min(k, Vh.shape[0])
    dirs = Vh[:k].float()
    # deterministic sign: largest-magnitude entry positive
    signs = torch.sign(dirs.gather(1, dirs.abs().argmax(1, keepdim=True)))
    dirs = dirs * signs
    var = S.double() ** 2
    ratio = (var[:k] / var.sum()).numpy() if var.sum() > 0 else np.zeros(k)
    coords = (M.float() @ dirs.T).numpy()
    return {"directions": dirs.to(theta.device), "explained_variance_ratio": ratio, "coords": coords}
