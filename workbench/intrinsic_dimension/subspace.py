"""Training any ``nn.Module`` in a random subspace of its parameters (Li et al. 2018; SAID).

``theta = theta_0 + P theta_d``: ``theta_0`` is the model's weights as given (frozen), ``theta_d`` starts at
zero and is the only trained vector.  The module is never edited: a copy is run with
``torch.func.functional_call`` on parameters rebuilt from ``theta_0 + P theta_d`` at every step.  With
``said=True`` (Aghajanyan et al. 2021) each parameter tensor ``i`` gets its own learned scale
``lambda_i`` (initialised at 1): ``theta_i = theta_0,i + lambda_i (P theta_{d-m})_i``, and the ``m``
scales count in ``d``.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any, Callable, Dict, Optional

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from torch.func import functional_call

from ..backend import DeviceLike, resolve_device
from ..losses import resolve as resolve_loss
from ..models import evaluate
from ..paramspace import flatten
from ..progress import ProgressLike
from ..results import Result
from ..training import fit
from ..validation import as_model, probe
from .projections import Projection, make_projection


def num_parameters(model: nn.Module) -> int:
    """D: the number of trainable parameters (the length of ``theta``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class SubspaceModel(nn.Module):
    """A frozen copy of ``model`` whose parameters are ``theta_0 + P theta_d`` (plus SAID scales).

    The only ``nn.Parameter``\\ s are ``theta_d`` (and ``scales`` with SAID).  Calling it runs the copy
    through ``functional_call``; :meth:`materialize` writes the current ``theta`` into a model copy.
    """

    def __init__(self, model: nn.Module, d: int, *, projection: Any = "fastfood", said: bool = False,
                 seed: int = 0, device: DeviceLike = "auto", **projection_options: Any):
        super().__init__()
        dev = resolve_device(device)
        self.base = copy.deepcopy(model).to(dev)
        for p in self.base.parameters():
            p.requires_grad_(False)
        if num_parameters(model) == 0:
            raise ValueError("model has no trainable parameters: nothing to project")
        theta0, self.spec = flatten(model)
        self.D = self.spec.numel
        self.d = int(d)
        self.said = bool(said)
        m = len(self.spec) if said else 0
        d_proj = self.d - m
        if d_proj < 1:
            raise ValueError(f"d={d} with said=True must exceed the {m} per-tensor scales it includes; "
                             f"pass d > {m}")
        self.theta0 = theta0.to(dev)
        dtype = self.theta0.dtype
        self.projection: Projection = make_projection(projection, self.D, d_proj, seed=seed, device=dev,
                                                      dtype=dtype, **projection_options)
        self.theta_d = nn.Parameter(torch.zeros(d_proj, dtype=dtype, device=dev))
        self.scales = nn.Parameter(torch.ones(m, dtype=dtype, device=dev)) if said else None
        self.device = dev

    def parameters_dict(self) -> Dict[str, torch.Tensor]:
        delta = self.projection(self.theta_d)
        # one split (its backward is a single concatenation), not one slice per tensor (whose backward
        # would build a full-length gradient for every tensor)
        pieces = delta.split(list(self.spec.sizes))
        base = self.theta0.split(list(self.spec.sizes))
        out = {}
        for i, (name, shape, piece, start) in enumerate(zip(self.spec.names, self.spec.shapes, pieces, base)):
            if self.scales is not None:
                piece = piece * self.scales[i]
            out[name] = (start + piece).view(shape)
        return out

    def theta(self) -> torch.Tensor:
        with torch.no_grad():
            params = self.parameters_dict()
            return torch.cat([params[n].reshape(-1) for n in self.spec.names])

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return functional_call(self.base, self.parameters_dict(), args, kwargs)

    def train(self, mode: bool = True) -> "SubspaceModel":
        super().train(mode)
        self.base.train(mode)
        return self

    def materialize(self) -> nn.Module:
        """A copy of the model holding ``theta_0 + P theta_d`` as ordinary weights."""
        model = copy.deepcopy(self.base)
        with torch.no_grad():
            params = self.parameters_dict()
            for name, p in model.named_parameters():
                if name in params:
                    p.copy_(params[name])
                p.requires_grad_(True)
        return model


@dataclasses.dataclass
class SubspaceResult(Result):
    """One subspace training run: per-epoch history, the trained ``theta_d`` (and SAID scales)."""

    history: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    theta_d: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    scales: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    accuracy: float = float("nan")
    loss: float = float("nan")
    train_accuracy: float = float("nan")
    train_loss: float = float("nan")
    D: int = 0
    d: int = 0
    seconds: float = 0.0

    kind = "subspace"

    def __post_init__(self) -> None:
        self.model_: Optional[nn.Module] = None  # the trained model copy (not saved)

    def to_frame(self) -> pd.DataFrame:
        return self.history

    def summary(self) -> Dict[str, Any]:
        return {"d": self.d, "D": self.D, "projection": self.settings.get("projection"),
                "said": self.settings.get("said"), "seed": self.settings.get("seed"),
                "accuracy": self.accuracy, "loss": self.loss, "train_accuracy": self.train_accuracy,
                "train_loss": self.train_loss, "seconds": self.seconds}


def subspace_train(model: nn.Module, data: Any = None, *, d: int, train_data: Any = None,
                   projection: Any = "fastfood", said: bool = False, epochs: float = 10, lr: float = 0.1,
                   batch_size: int = 64, optimizer: str = "adam", momentum: float = 0.9, weight_decay: float = 0.0,
                   loss_fn: Optional[Callable] = None, seed: int = 0, device: DeviceLike = "auto",
                   eval_batch_size: int = 1024, progress: ProgressLike = True,
                   **projection_options: Any) -> SubspaceResult:
    """Train only ``theta_d`` (length ``d``) in ``theta = theta_0 + P theta_d``; ``model`` is not modified.

    ``theta_0`` is ``model``'s current weights.  The run trains on ``train_data`` (default ``data``) and
    reports accuracy and loss on all of ``data`` (and of the training set).  ``projection`` is
    ``"fastfood"`` (default), ``"dense"``, ``"sparse"``, ``"orthogonal"`` or a :class:`~.projections.Projection`;
    ``seed`` fixes the projection and the batch order (the loop of :func:`workbench.training.fit`, the same
    shuffling as :func:`workbench.models.train`, so with ``projection="orthogonal"``, ``d = D`` and SGD the
    run reproduces full training).  ``said=True`` adds one learned scale per parameter tensor, counted in
    ``d``.  The trained model copy is ``result.model_`` (not saved).
    """
    model = as_model(model)
    if data is None:
        raise ValueError("subspace_train needs data: the split whose accuracy is reported")
    test = probe(model, data, loss_fn=loss_fn, name="data")
    ds = probe(model, train_data, loss_fn=loss_fn, name="train_data") if train_data is not None else test
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    d = int(d)
    D = num_parameters(model)
    if d < 1:
        raise ValueError(f"d={d}: pass a subspace dimension >= 1")
    if not isinstance(projection, Projection) and str(projection).lower() in ("dense", "orthogonal") and d > D:
        raise ValueError(f"d={d} exceeds D={D} parameters; a {projection} projection needs d <= D")
    dev = resolve_device(device)
    loss_fn = resolve_loss(loss_fn, model)
    start = time.perf_counter()
    sub = SubspaceModel(model, d, projection=projection, said=said, seed=seed, device=dev, **projection_options)
    params = [sub.theta_d] + ([sub.scales] if sub.scales is not None else [])
    sub.train()
    rows = fit(sub, params, ds, epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer, momentum=momentum,
               weight_decay=weight_decay, loss_fn=loss_fn, seed=seed, device=dev, progress=progress,
               desc=f"subspace d={d}")
    sub.eval()
    trained = sub.materialize()
    tr = evaluate(trained, ds, loss_fn=loss_fn, batch_size=eval_batch_size, device=dev)
    te = evaluate(trained, test, loss_fn=loss_fn, batch_size=eval_batch_size, device=dev) if train_data is not None \
        else tr
    if rows:
        rows[-1].update(test_loss=te["loss"], test_accuracy=te["accuracy"])
    settings = dict(projection=sub.projection.kind, said=bool(said), d=d, D=D, seed=seed, epochs=epochs, lr=lr,
                    batch_size=batch_size, optimizer=optimizer, momentum=momentum, weight_decay=weight_decay,
                    device=str(dev), data=test.name, train_data=ds.name if train_data is not None else None,
                    split="test" if train_data is not None else "train",
                    projection_info=sub.projection.describe(),
                    variant=sub.projection.kind + ("+said" if said else ""))
    result = SubspaceResult(
        settings=settings, history=pd.DataFrame(rows),
        theta_d=sub.theta_d.detach().cpu().numpy().copy(),
        scales=sub.scales.detach().cpu().numpy().copy() if sub.scales is not None else np.zeros(0),
        accuracy=float(te["accuracy"]), loss=float(te["loss"]), train_accuracy=float(tr["accuracy"]),
        train_loss=float(tr["loss"]), D=D, d=d, seconds=time.perf_counter() - start)
    result.model_ = trained
    return result


def subspace_model(model: nn.Module, result: SubspaceResult, *, device: DeviceLike = "auto") -> nn.Module:
    """Rebuild the trained model of ``result`` from ``model`` (its ``theta_0``) and the stored ``theta_d``.

    The projection is redrawn from the seed recorded in the result (it is never stored).
    """
    s = result.settings
    D = num_parameters(model)
    if D != result.D:
        raise ValueError(f"model has D={D} parameters but the result was trained with D={result.D}; "
                         "pass the same architecture and initial weights")
    sub = SubspaceModel(model, result.d, projection=s["projection"], said=s.get("said", False),
                        seed=s["seed"], device=device)
    with torch.no_grad():
        sub.theta_d.copy_(torch.as_tensor(result.theta_d))
        if sub.scales is not None:
            sub.scales.copy_(torch.as_tensor(result.scales))
    return sub.materialize()
