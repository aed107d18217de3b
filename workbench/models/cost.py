"""What a pass over data costs on this machine, and how many examples fit a time budget.

The data sections of a report (a loss map, the Hessian estimates) cost a known number of passes over their
examples; timing one pass on a few examples of the user's model gives the seconds per example, and from
that the number of examples a section may use to finish within its budget (``notebooks/profile.ipynb``).
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Dict, Optional

import torch
import torch.nn as nn

from ..backend import DeviceLike, resolve_device, synchronize

__all__ = ["pass_seconds", "examples_within", "HVP_PASSES"]

HVP_PASSES = 2.0  # a Hessian-vector product (double backward) costs about two forward-and-backward passes


def pass_seconds(model: nn.Module, data: Any, *, n: int = 32, loss_fn: Optional[Callable] = None,
                 device: DeviceLike = "auto", repeats: int = 2) -> Dict[str, float]:
    """Seconds per example of a forward pass (``"forward"``) and of a forward and backward pass of the loss
    (``"backward"``) of ``model`` on ``n`` examples of ``data`` (the best of ``repeats`` after a warm-up), and
    ``"examples"``: how many were timed.  The model's parameters and gradients are left as they were."""
    from ..data import as_dataset
    from ..losses import resolve
    from ..paramspace import batch_loss_sum
    from ..validation import probe

    if int(n) < 1 or int(repeats) < 1:
        raise ValueError(f"n={n}, repeats={repeats}: time at least one example, at least once")
    ds = probe(model, as_dataset(data, "data"), loss_fn=loss_fn, name="data")
    dev = resolve_device(device)
    loss_fn = resolve(loss_fn, model)
    x, y = next(ds.subset(min(int(n), len(ds)), seed=0).batches(int(n), device=dev))
    was_training = model.training
    model.eval()
    grads = {k: None if p.grad is None else p.grad.clone() for k, p in model.named_parameters()}
    try:
        model.to(dev)
        best = {"forward": math.inf, "backward": math.inf}
        for i in range(int(repeats) + 1):  # the first round warms up
            t0 = time.perf_counter()
            with torch.no_grad():
                model(x)
            synchronize(dev)
            t1 = time.perf_counter()
            batch_loss_sum(loss_fn, model(x), y).backward()
            synchronize(dev)
            t2 = time.perf_counter()
            if i:
                best = {"forward": min(best["forward"], t1 - t0), "backward": min(best["backward"], t2 - t1)}
    finally:
        for k, p in model.named_parameters():
            p.grad = grads[k]
        model.train(was_training)
    return {"forward": best["forward"] / len(x), "backward": best["backward"] / len(x), "examples": int(len(x))}


def examples_within(seconds: float, per_example: float, passes: float, *, available: int,
                    minimum: int = 32) -> int:
    """The most examples (at most ``available``, at least ``minimum`` or all there are) with which ``passes``
    passes at ``per_example`` seconds each fit in ``seconds``."""
    if not seconds > 0 or not per_example >= 0 or not passes > 0:
        raise ValueError(f"seconds={seconds}, per_example={per_example}, passes={passes}: a budget above 0 "
                         "seconds, a cost of at least 0 and at least one pass")
    available = int(available)
    fit = available if per_example == 0 else min(available, math.floor(seconds / (passes * per_example)))
    return max(min(int(minimum), available), fit)
