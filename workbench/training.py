"""The one training loop of the workbench: seeded, reproducible, with hooks.

:func:`fit` trains some tensors (a model's parameters, or a subspace coordinate vector) by minimising the
mean loss of ``forward(x)`` over shuffled batches.  Everything that differs between callers is a hook:

* ``after_step()`` runs after every optimiser step (e.g. re-applying a pruning mask so pruned weights stay
  exactly zero);
* ``on_step(step)`` runs after the step counter advanced (e.g. taking a checkpoint);
* ``on_epoch(row)`` runs at the end of every epoch with the epoch's history row, which it may extend (e.g.
  with a test loss).

:func:`workbench.models.train` (a model's own parameters) and
:func:`workbench.intrinsic_dimension.subspace_train` (``theta_d`` of a random subspace) both run on it, so
shuffling, seeding, step counting and the non-finite-loss guard are the same everywhere.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

from .backend import resolve_device
from .data import Dataset
from .losses import resolve as resolve_loss
from .progress import Progress, ProgressLike

__all__ = ["OPTIMIZERS", "steps_per_epoch", "total_steps", "check_schedule", "make_optimizer", "fit"]

OPTIMIZERS = ("sgd", "adam")


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer steps in one epoch over ``n`` examples (the last batch may be short)."""
    return max(1, -(-int(n) // int(batch_size)))


def total_steps(epochs: float, n: int, batch_size: int) -> int:
    """Optimizer steps of a run of ``epochs`` (fractional epochs allowed) over ``n`` examples."""
    return max(1, int(round(float(epochs) * steps_per_epoch(n, batch_size))))


def check_schedule(epochs: float, lr: float, batch_size: int) -> None:
    """Refuse a training schedule that cannot train: no epochs, a non-positive learning rate or batch size."""
    if not isinstance(epochs, numbers.Real) or not math.isfinite(epochs) or epochs <= 0:
        raise ValueError(f"epochs={epochs!r}: pass a positive number of epochs (fractions allowed, e.g. 0.5); "
                         "to skip training, do not call the training function")
    if not isinstance(lr, numbers.Real) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr={lr!r}: the learning rate must be a positive number")
    if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: pass a positive whole number")


def make_optimizer(params: Sequence[torch.Tensor], optimizer: str, *, lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer={optimizer!r}; choose 'sgd' or 'adam'")


def fit(forward: Callable[[torch.Tensor], torch.Tensor], params: Sequence[torch.Tensor], data: Dataset, *,
        epochs: float, lr: float, batch_size: int, optimizer: str = "sgd", momentum: float = 0.9,
        weight_decay: float = 0.0, loss_fn: Optional[Callable] = None, seed: int = 0, device: Any = "auto",
        progress: ProgressLike = True, desc: str = "train", after_step: Optional[Callable[[], None]] = None,
        on_step: Optional[Callable[[int], None]] = None,
        on_epoch: Optional[Callable[[Dict[str, Any]], None]] = None) -> List[Dict[str, Any]]:
    """Minimise the batch-mean ``loss_fn(forward(x), y)`` over ``data`` for ``epochs`` by training ``params``.

    Batches are drawn in a seeded order (``seed * 100003 + epoch`` for the shuffle of each epoch) and the
    global torch RNG is forked and seeded with ``seed`` (dropout), so a run is reproducible.  A NaN or
    infinite loss stops the run with a ``FloatingPointError`` naming the epoch, the step and the learning
    rate.  Returns one history row per epoch: ``epoch``, ``step``, ``train_loss`` (plus what ``on_epoch``
    adds).
    """
    check_schedule(epochs, lr, batch_size)
    dev = resolve_device(device)
    loss_fn = resolve_loss(loss_fn)
    opt = make_optimizer(list(params), optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay)
    steps = total_steps(epochs, len(data), batch_size)
    rows: List[Dict[str, Any]] = []
    step = 0
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []), Progress(steps, desc, progress) as bar:
        torch.manual_seed(seed)
        epoch = 0
        while step < steps:
            running, seen = 0.0, 0
            for xb, yb in data.batches(batch_size, device=dev, shuffle=True, seed=seed * 100003 + epoch):
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(forward(xb), yb)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"{desc}: the training loss became {loss.item()} at epoch {epoch + 1}, step {step + 1} "
                        f"of {steps}; lower lr={lr} (or check the data for extreme values)")
                loss.backward()
                opt.step()
                if after_step is not None:
                    after_step()
                running += loss.item() * len(yb)
                seen += len(yb)
                step += 1
                if on_step is not None:
                    on_step(step)
                bar.update()
                if step >= steps:
                    break
            row: Dict[str, Any] = {"epoch": epoch + 1, "step": step, "train_loss": running / max(seen, 1)}
            if on_epoch is not None:
                on_epoch(row)
            rows.append(row)
            epoch += 1
    bad = [i for i, p in enumerate(params) if not bool(torch.isfinite(p.detach()).all())]
    if bad:  # the last step can diverge after a finite loss
        raise FloatingPointError(f"{desc}: the weights became NaN or infinite after step {step} of {steps} (epoch "
                                 f"{epoch}); lower lr={lr}")
    return rows
