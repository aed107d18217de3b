"""Losses that fit the model: one place decides the ``loss_fn`` an analysis uses.

``loss_fn`` everywhere accepts ``None`` (the loss that fits the model: cross-entropy on classification
logits, token cross-entropy for a Hugging Face language-model head, see
:func:`workbench.models.default_loss`), a name (``"cross_entropy"``, ``"mse"``, ``"nll"``, ``"bce"``,
``"l1"``, ``"huber"``), an import path ``"package.module:function"``, or any callable ``loss_fn(output,
target)`` returning the batch mean.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch.nn as nn
import torch.nn.functional as F

from .importpath import resolve as resolve_import_path

__all__ = ["NAMED", "resolve", "name_of"]

NAMED = {"cross_entropy": F.cross_entropy, "mse": F.mse_loss, "nll": F.nll_loss,
         "bce": F.binary_cross_entropy_with_logits, "l1": F.l1_loss, "huber": F.huber_loss}


def resolve(loss_fn: Any, model: Optional[nn.Module] = None) -> Callable:
    """The callable ``loss_fn`` names (see module docstring)."""
    if loss_fn is None:
        if model is not None:
            from .models.text import default_loss

            return default_loss(model)
        return F.cross_entropy
    if callable(loss_fn):
        return loss_fn
    if isinstance(loss_fn, str):
        key = loss_fn.strip()
        if key.lower() in NAMED:
            return NAMED[key.lower()]
        if ":" in key:
            try:
                target = resolve_import_path(key)
            except (ImportError, AttributeError) as exc:
                raise ValueError(f"loss_fn={loss_fn!r}: cannot import it ({exc})") from exc
            if isinstance(target, type):  # a loss class such as torch.nn:CrossEntropyLoss
                target = target()
            if callable(target):
                return target
    raise ValueError(f"loss_fn={loss_fn!r}: pass None (the loss that fits the model), a name among "
                     f"{sorted(NAMED)}, an import path 'package.module:function', or a callable")


def name_of(loss_fn: Callable) -> str:
    """A short name of a loss for result settings."""
    return getattr(loss_fn, "__name__", type(loss_fn).__name__)
