"""Retraining with the mask fixed, iterative pruning with weight rewinding, Scratch-E / Scratch-B.

Baselines follow "Rethinking the Value of Network Pruning" (Liu et al., ICLR 2019): a pruned network is
fine-tuned from its surviving weights, or the same sparse architecture is trained from a fresh random
initialisation for the same number of epochs (Scratch-E) or for the same compute as the dense model
(Scratch-B: epochs scaled by dense / sparse parameter count, a proxy of FLOPs, optionally capped).
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any, Dict, Optional, Union

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from ..backend import DeviceLike, resolve_device
from ..data import as_dataset
from ..models import evaluate, train
from ..progress import Progress, ProgressLike
from ..results import FrameResult, Result
from ..training import steps_per_epoch
from .masks import Mask, apply_mask, density_of, magnitude_mask


def _check_mask(model: nn.Module, mask: Mask) -> None:
    named = dict(model.named_parameters())
    for n, m in mask.items():
        if n not in named:
            raise ValueError(f"mask names a parameter the model lacks: {n!r}; the mask belongs to "
                             "another architecture")
        if tuple(m.shape) != tuple(named[n].shape):
            raise ValueError(f"mask[{n!r}] has shape {tuple(m.shape)} but the weight has "
                             f"{tuple(named[n].shape)}; the mask belongs to another architecture")


def finetune(model: nn.Module, data: Any, *, mask: Mask, epochs: float = 10, lr: float = 0.05,
             batch_size: int = 64, seed: int = 0, device: DeviceLike = "auto", test_data: Any = None,
             progress: ProgressLike = True, **train_kw: Any) -> nn.Module:
    """A copy of ``model`` retrained on ``data`` with ``mask`` fixed: pruned weights stay exactly zero.

    ``seed`` sets the data order (and any dropout); two seeds give the two copies a regime map compares.
    """
    _check_mask(model, mask)
    out = copy.deepcopy(model)
    apply_mask(out, mask)
    train(out, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, device=device,
          test_data=test_data, progress=progress, mask=mask, **train_kw)
    return out


def reinitialize(model: nn.Module, *, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every layer's parameters freshly initialised (``reset_parameters``), seeded."""
    out = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in out.modules():
            if hasattr(module, "reset_parameters") and module is not out:
                module.reset_parameters()
            if hasattr(module, "reset_running_stats"):
                module.reset_running_stats()
    return out


def scratch_b_factor(model: nn.Module, mask: Mask, *, max_factor: Optional[float] = None) -> float:
    """Epoch multiplier of Scratch-B: dense / sparse parameter count (a FLOPs proxy), capped by ``max_factor``."""
    total = sum(p.numel() for p in model.parameters())
    pruned = sum(float(m.numel() - m.sum()) for m in mask.values())
    factor = total / max(total - pruned, 1.0)
    return float(min(factor, max_factor) if max_factor else factor)


def scratch(model: nn.Module, data: Any, *, mask: Mask, budget: str = "E", epochs: float = 10,
            max_factor: Optional[float] = None, lr: float = 0.05, batch_size: int = 64, seed: int = 0,
            init_seed: Optional[int] = None, device: DeviceLike = "auto", progress: ProgressLike = True,
            **train_kw: Any) -> nn.Module:
    """Train the sparse architecture of ``mask`` from a fresh initialisation (Scratch-E or Scratch-B)."""
    if budget.upper() not in ("E", "B"):
        raise ValueError(f"budget={budget!r}; choose 'E' (same epochs) or 'B' (same compute)")
    _check_mask(model, mask)
    out = reinitialize(model, seed=seed if init_seed is None else init_seed)
    apply_mask(out, mask)
    n_epochs = epochs * (scratch_b_factor(model, mask, max_factor=max_factor) if budget.upper() == "B" else 1.0)
    train(out, data, epochs=n_epochs, lr=lr, batch_size=batch_size, seed=seed, device=device,
          progress=progress, mask=mask, **train_kw)
    return out


@dataclasses.dataclass
class IterativePruneResult(Result):
    """Iterative magnitude pruning: the final ``mask``, one ``history`` row per round, the weights the
    survivors were rewound to (``rewind``; empty without rewinding), and the final model in ``model_``."""

    mask: Dict[str, Any] = dataclasses.field(default_factory=dict)
    history: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    rewind: Optional[Dict[str, Any]] = None

    kind = "iterative-prune"

    def __post_init__(self) -> None:
        self.model_: Optional[nn.Module] = None

    def to_frame(self) -> pd.DataFrame:
        return self.history


def iterative_prune(model: nn.Module, data: Any, *, density: float, rounds: int = 3,
                    rewind_to: Union[float, Dict[str, torch.Tensor], str] = 0.0,
                    dense_epochs: Optional[float] = None, scope: str = "layer",
                    epochs: float = 10, lr: float = 0.05, batch_size: int = 64, seed: int = 0,
                    device: DeviceLike = "auto", test_data: Any = None,
                    progress: ProgressLike = True, **train_kw: Any) -> IterativePruneResult:
    """Iterative magnitude pruning with weight rewinding (lottery-ticket style).

    Round ``r = 1..rounds`` prunes the trained weights of the previous round to density
    ``density ** (r / rounds)`` (only among surviving weights), rewinds the survivors to the rewind
    weights and retrains them ``epochs`` with the mask fixed (``epochs=0``: no retraining).

    ``rewind_to`` chooses the rewind weights, and with them what ``model`` is:

    * a number of epochs (default ``0``: the initial weights): ``model`` is the *untrained* dense model.
      A copy is trained dense for ``dense_epochs`` (default ``epochs``) with ``seed``; the survivors are
      rewound to its weights after ``rewind_to`` epochs: ``0`` is the lottery-ticket rewinding to the
      initialisation, a small number (e.g. 0.5 - 2) rewinding to an early checkpoint, which is more
      stable for deeper networks (Frankle et al., "Linear Mode Connectivity and the Lottery Ticket
      Hypothesis", 2020).
    * a state dict: ``model`` is the *trained* dense model; survivors are rewound to these weights
      (e.g. the initialisation or a checkpoint you kept).
    * ``"none"``: ``model`` is the trained dense model and there is no rewinding: each round fine-tunes
      the surviving trained weights (the fine-tuning baseline of iterative pruning).
    """
    if rounds < 1:
        raise ValueError(f"rounds={rounds} must be at least 1")
    if epochs < 0:
        raise ValueError(f"epochs={epochs} must be non-negative (0 = no retraining between rounds)")
    rewind: Optional[Dict[str, torch.Tensor]]
    if rewind_to is None:
        raise ValueError("rewind_to=None is ambiguous: pass 0 (rewind to the initial weights; model is the "
                         "untrained model), an early epoch, a state dict, or 'none' (no rewinding)")
    if isinstance(rewind_to, str):
        if rewind_to != "none":
            raise ValueError(f"rewind_to={rewind_to!r}; pass an epoch (0 = the initial weights), a state dict "
                             "or 'none'")
        rewind = None
        current = copy.deepcopy(model)
    elif isinstance(rewind_to, Mapping):
        rewind = {k: torch.as_tensor(v).detach().clone() for k, v in rewind_to.items()}
        current = copy.deepcopy(model)
    else:
        at = float(rewind_to)
        total = float(epochs if dense_epochs is None else dense_epochs)
        if not 0 <= at <= total:
            raise ValueError(f"rewind_to={rewind_to} must be an epoch in [0, dense_epochs={total}]")
        current = copy.deepcopy(model)
        if at == 0:
            rewind = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            if total > 0:
                train(current, data, epochs=total, lr=lr, batch_size=batch_size, seed=seed, device=device,
                      progress=False, **train_kw)
        else:
            res = train(current, data, epochs=total, lr=lr, batch_size=batch_size, seed=seed, device=device,
                        checkpoint_every=at, progress=False, **train_kw)
            step = int(round(at * steps_per_epoch(len(as_dataset(data, "data")), batch_size)))
            state = next(c["state"] for c in res.checkpoints if c["step"] == step)
            rewind = {k: torch.as_tensor(np.asarray(v)) for k, v in state.items()}
    mask: Optional[Mask] = None
    rows = []
    with Progress(rounds, "prune rounds", progress) as bar:
        for r in range(1, rounds + 1):
            target = float(density) ** (r / rounds)
            mask = magnitude_mask(current, target, scope=scope, current=mask)
            if rewind is not None:
                missing, unexpected = current.load_state_dict(rewind, strict=False)
                if missing or unexpected:
                    raise ValueError(f"rewind_to does not match the model: missing {missing[:3]}, "
                                     f"unexpected {unexpected[:3]}")
            apply_mask(current, mask)
            if epochs > 0:
                train(current, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed + r, device=device,
                      progress=False, mask=mask, **train_kw)
            row = {"round": r, "density": density_of(mask)}
            if test_data is not None:
                ev = evaluate(current, test_data, device=device)
                row.update(test_loss=ev["loss"], test_error=1.0 - ev["accuracy"])
            rows.append(row)
            bar.update()
    assert mask is not None
    rewound = rewind_to if not isinstance(rewind_to, Mapping) else "state dict"
    res = IterativePruneResult(settings=dict(density=float(density), rounds=rounds, scope=scope, epochs=epochs,
                                             rewind_to=rewound), mask=mask, history=pd.DataFrame(rows), rewind=rewind)
    res.model_ = current
    return res


@dataclasses.dataclass
class BaselineResult(FrameResult):
    """Fine-tuning against Scratch-E and Scratch-B for one mask: one row per method and seed."""

    kind = "pruning-baselines"

    def summary(self) -> pd.DataFrame:
        return self.frame.groupby("method", sort=False)[["test_error", "epochs"]].agg(["mean", "std"])

    def findings(self):
        """Test error of each method, and which is lowest (:mod:`workbench.findings`)."""
        from ..findings import Finding, fmt

        if not len(self.frame):
            return []
        means = self.frame.groupby("method", sort=False)["test_error"].mean()
        best = means.idxmin()
        seeds = self.frame.groupby("method", sort=False).size().iloc[0]
        parts = ", ".join(f"{m} {fmt(v)}" for m, v in means.items())
        return [Finding("baselines", {m: float(v) for m, v in means.items()},
                        f"Test error at the baseline mask (mean of {seeds} seed{'s' if seeds > 1 else ''}): {parts}; "
                        f"{best} is lowest.", weight=2)]


def compare_baselines(model: nn.Module, data: Any, *, mask: Mask, train_data: Any, epochs: float = 10,
                      max_factor: Optional[float] = None, seeds=(0,), lr: float = 0.05, batch_size: int = 64,
                      device: DeviceLike = "auto", progress: ProgressLike = True) -> BaselineResult:
    """Test error on ``data`` of fine-tuning vs Scratch-E vs Scratch-B for ``mask``, each trained on
    ``train_data`` from the same seeds."""
    if train_data is None:
        raise ValueError("compare_baselines needs train_data= (what the three methods train on)")
    train_ds, test_ds = as_dataset(train_data, "train_data"), as_dataset(data, "data")
    dev = resolve_device(device)
    factor = scratch_b_factor(model, mask, max_factor=max_factor)
    rows = []
    with Progress(3 * len(seeds), "baselines", progress) as bar:
        for s in seeds:
            for method, fn, ep in (
                ("fine-tune", lambda: finetune(model, train_ds, mask=mask, epochs=epochs, lr=lr,
                                               batch_size=batch_size, seed=s, device=dev, progress=False), epochs),
                ("scratch-E", lambda: scratch(model, train_ds, mask=mask, budget="E", epochs=epochs, lr=lr,
                                              batch_size=batch_size, seed=s, device=dev, progress=False), epochs),
                ("scratch-B", lambda: scratch(model, train_ds, mask=mask, budget="B", epochs=epochs,
                                              max_factor=max_factor, lr=lr, batch_size=batch_size, seed=s,
                                              device=dev, progress=False), epochs * factor),
            ):
                ev = evaluate(fn(), test_ds, device=dev)
                rows.append({"method": method, "seed": s, "epochs": ep, "test_loss": ev["loss"],
                             "test_error": 1.0 - ev["accuracy"]})
                bar.update()
    settings = dict(density=density_of(mask), epochs=epochs, max_factor=max_factor, scratch_b_factor=factor,
                    seeds=list(seeds), lr=lr, batch_size=batch_size, device=str(dev),
                    data=train_ds.name, test_data=test_ds.name)
    return BaselineResult(settings=settings, frame=pd.DataFrame(rows))
