"""Evaluation and training of a model on a data set (the loop itself is :func:`workbench.training.fit`)."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from ..backend import DeviceLike, resolve_device
from ..losses import resolve as resolve_loss
from ..progress import ProgressLike
from ..results import Result
from ..training import check_schedule, fit, steps_per_epoch, total_steps

__all__ = ["TrainResult", "evaluate", "train"]


@dataclasses.dataclass
class TrainResult(Result):
    """History of a training run: one row per epoch, and the checkpoints taken along the way."""

    history: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    checkpoints: List[Dict[str, Any]] = dataclasses.field(default_factory=list)

    kind = "train"

    def to_frame(self) -> pd.DataFrame:
        return self.history

    def checkpoint_states(self) -> List[Dict[str, torch.Tensor]]:
        """The checkpoints as torch state dicts, in training order."""
        return [{k: torch.as_tensor(np.asarray(v)) for k, v in c["state"].items()} for c in self.checkpoints]

    @property
    def checkpoint_epochs(self) -> List[float]:
        return [c["epoch"] for c in self.checkpoints]


def _state_numpy(model: nn.Module) -> Dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


@torch.no_grad()
def evaluate(model: nn.Module, data: Any, *, loss_fn: Optional[Callable] = None, batch_size: int = 1024,
             device: DeviceLike = "auto") -> Dict[str, float]:
    """Mean loss and accuracy of ``model`` over the whole of ``data`` (in eval mode).

    Accuracy is NaN when the outputs are not ``(N, C)`` class scores against integer labels (regression,
    language models).

    The loss is what the mean-reducing ``loss_fn`` gives on the whole data set at once, accumulated over
    batches by :func:`workbench.paramspace.batch_loss_sum` (the convention of every parameter-space
    evaluation): for ``F.mse_loss`` on ``C`` outputs, the mean over all ``N * C`` elements.
    """
    from ..paramspace import batch_loss_sum

    from ..validation import check_has_head, probe

    check_has_head(model, "a loss and an accuracy")
    ds = probe(model, data, loss_fn=loss_fn, name="data")
    dev = resolve_device(device)
    loss_fn = resolve_loss(loss_fn, model)
    was_training = model.training
    model.eval()
    model.to(dev)
    total_loss, correct, n = 0.0, 0.0, 0
    for xb, yb in ds.batches(batch_size, device=dev):
        out = model(xb)
        total_loss += float(batch_loss_sum(loss_fn, out, yb))
        if out.dim() == 2 and not yb.is_floating_point() and yb.dim() == 1:
            correct += int((out.argmax(1) == yb).sum())
        else:  # no class scores against class labels: accuracy is undefined, never 0
            correct = float("nan")
        n += len(yb)
    model.train(was_training)
    return {"loss": total_loss / n, "accuracy": correct / n}


def train(model: nn.Module, data: Any, *, epochs: float = 20, lr: float = 0.05, batch_size: int = 64,
          optimizer: str = "sgd", momentum: float = 0.9, weight_decay: float = 0.0,
          loss_fn: Optional[Callable] = None, seed: int = 0, device: DeviceLike = "auto",
          test_data: Any = None, checkpoint_every: Optional[float] = None,
          checkpoint_dir: Optional[Union[str, os.PathLike]] = None, progress: ProgressLike = True,
          mask: Optional[Dict[str, torch.Tensor]] = None) -> TrainResult:
    """Train ``model`` in place on ``data``; seeded (shuffling and any dropout) and reproducible.

    The loop is :func:`workbench.training.fit`.  ``checkpoint_every`` (in epochs, may be fractional) stores
    the weights along the way, including the initial and final ones; they are kept in the result and, with
    ``checkpoint_dir``, written to disk as they are taken.  ``mask`` maps parameter names to 0/1 tensors
    kept fixed (pruned weights stay exactly zero).  Raises on a NaN or infinite loss, naming the epoch.
    """
    from ..validation import probe

    check_schedule(epochs, lr, batch_size)
    ds = probe(model, data, loss_fn=loss_fn, name="data")
    test = probe(model, test_data, loss_fn=loss_fn, name="test_data") if test_data is not None else None
    dev = resolve_device(device)
    loss_fn = resolve_loss(loss_fn, model)
    model.to(dev)
    named = dict(model.named_parameters())
    if mask is not None:
        unknown = set(mask) - set(named)
        if unknown:
            raise ValueError(f"mask names parameters the model lacks: {sorted(unknown)[:5]}")
        mask = {k: m.to(dev, dtype=named[k].dtype) for k, m in mask.items()}
    apply = _masker(named, mask)
    apply()
    per_epoch = steps_per_epoch(len(ds), batch_size)
    steps = total_steps(epochs, len(ds), batch_size)
    checkpoints = _Checkpoints(model, per_epoch, steps, checkpoint_every, checkpoint_dir)

    def on_epoch(row: Dict[str, Any]) -> None:
        if test is not None:
            ev = evaluate(model, test, loss_fn=loss_fn, device=dev)
            row.update(test_loss=ev["loss"], test_accuracy=ev["accuracy"])
            model.train()

    checkpoints.take(0)
    model.train()
    rows = fit(model, [p for p in model.parameters() if p.requires_grad], ds, epochs=epochs, lr=lr,
               batch_size=batch_size, optimizer=optimizer, momentum=momentum, weight_decay=weight_decay,
               loss_fn=loss_fn, seed=seed, device=dev, progress=progress, desc="train", after_step=apply,
               on_step=checkpoints.take, on_epoch=on_epoch)
    model.eval()
    settings = dict(epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer, momentum=momentum,
                    weight_decay=weight_decay, seed=seed, device=str(dev), data=ds.name,
                    checkpoint_every=checkpoint_every)
    return TrainResult(settings=settings, history=pd.DataFrame(rows), checkpoints=checkpoints.taken)


def _masker(named: Dict[str, torch.Tensor], mask: Optional[Dict[str, torch.Tensor]]) -> Callable[[], None]:
    """A function zeroing the masked weights in place (a no-op without a mask)."""
    def apply() -> None:
        if mask is not None:
            with torch.no_grad():
                for k, m in mask.items():
                    named[k].mul_(m)

    return apply


class _Checkpoints:
    """Weights taken every ``every`` epochs (steps rounded), at step 0 and at the last step."""

    def __init__(self, model: nn.Module, per_epoch: int, steps: int, every: Optional[float],
                 directory: Optional[Union[str, os.PathLike]]):
        self.model, self.per_epoch = model, per_epoch
        self.at: set = set()
        if every:
            stride = max(1, int(round(every * per_epoch)))
            self.at = set(range(0, steps + 1, stride)) | {0, steps}
        self.dir = Path(directory) if directory else None
        if self.dir:
            self.dir.mkdir(parents=True, exist_ok=True)
        self.taken: List[Dict[str, Any]] = []

    def take(self, step: int) -> None:
        if step not in self.at:
            return
        state = _state_numpy(self.model)
        self.taken.append({"epoch": step / self.per_epoch, "step": step, "state": state})
        if self.dir:
            torch.save({k: torch.as_tensor(v) for k, v in state.items()}, self.dir / f"step{step:07d}.pt")
