"""The validation layer every public entry point uses, so bad input gets a clear error before long work.

* :func:`as_model`: a model spec (see :func:`workbench.models.load`) as an ``nn.Module``, refusing
  non-finite weights by parameter name;
* :func:`probe`: one forward pass on two examples and one loss evaluation, with an error that states what
  the model expects and what the data has;
* small checks of arguments (:func:`positive`, :func:`fraction`, :func:`choice`) that name the argument
  and the fix.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn as nn

from .data import Dataset, as_dataset

__all__ = ["as_model", "check_finite_weights", "check_has_head", "expected_input", "probe", "positive", "fraction",
           "choice", "InputError", "InvariantError", "check_invariant"]


class InputError(ValueError):
    """A model, data set or argument the analysis cannot use, with what to do about it."""


class InvariantError(RuntimeError):
    """A check that every correct result passes failed: the answer would be wrong, so none is given."""


INVARIANT_RTOL = 1e-4


def check_invariant(got: float, want: float, what: str, *, rtol: float = INVARIANT_RTOL, atol: float = 1e-6,
                    hint: str = "") -> None:
    """Raise :class:`InvariantError` when ``got`` and ``want`` (which must agree) differ beyond the tolerance."""
    if not (abs(got - want) <= atol + rtol * abs(want)):
        raise InvariantError(f"{what}: {got!r} where {want!r} was expected (relative tolerance {rtol:g})"
                             + (f"; {hint}" if hint else ""))


def check_finite_weights(model: nn.Module, name: str = "model") -> None:
    """Raise :class:`InputError` naming the first parameters or buffers that hold NaN or infinite values."""
    bad = []
    for pname, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad.append(f"{pname} ({int((~torch.isfinite(t)).sum())} of {t.numel()} values)")
    if bad:
        raise InputError(f"{name} has non-finite (NaN or infinite) weights in {', '.join(bad[:5])}"
                         f"{' ...' if len(bad) > 5 else ''}; fix or reload those weights before analysing")


def as_model(model: Any, *, name: str = "model", weights: Any = None, finite: bool = True) -> nn.Module:
    """The ``nn.Module`` a model spec names (``model`` itself when it is one), with finite weights."""
    from .models import load

    try:
        module = load(model, weights=weights)
    except (ValueError, FileNotFoundError, TypeError, ImportError, AttributeError) as exc:
        if name == "model":
            raise
        raise type(exc)(f"{name}: {exc}") from exc
    if finite:
        check_finite_weights(module, name)
    return module


def expected_input(model: nn.Module) -> str:
    """What the model's first layer takes, in words (for error messages)."""
    from .models import TokenModel

    if isinstance(model, TokenModel):
        return "token ids (N, L), or ids stacked with an attention mask (N, 2, L)"
    for mod in model.modules():
        if isinstance(mod, nn.Embedding):
            return f"integer ids below {mod.num_embeddings} (an embedding)"
        if isinstance(mod, nn.Linear):
            return f"(N, {mod.in_features}) features (its first layer is a Linear with in_features={mod.in_features})"
        if isinstance(mod, nn.modules.conv._ConvNd):
            dims = {1: "L", 2: "H, W", 3: "D, H, W"}[len(mod.kernel_size)]
            return f"(N, {mod.in_channels}, {dims}) inputs (its first layer is a {type(mod).__name__} with " \
                   f"in_channels={mod.in_channels})"
    return "the inputs it was built for"


def _describe(ds: Dataset) -> str:
    return (f"X of shape {tuple(ds.X.shape)} ({str(ds.X.dtype).replace('torch.', '')}) and y of shape "
            f"{tuple(ds.y.shape)} ({str(ds.y.dtype).replace('torch.', '')})")


def check_has_head(model: nn.Module, what: str = "a loss") -> None:
    """Refuse a bare encoder (a Hugging Face model without a head) where ``what`` needs output scores."""
    if getattr(model, "has_head", True) is False:
        raise InputError(f"{getattr(model, 'arch', type(model).__name__)} is a bare encoder: its output is hidden "
                         f"states, not scores, so {what} on it means nothing; load a model with a head (e.g. "
                         "...ForSequenceClassification) or wrap the encoder with your own head")


@torch.no_grad()
def probe(model: nn.Module, data: Any, *, loss_fn: Optional[Callable] = None, name: str = "data",
          device: Any = None, needs_loss: bool = True) -> Dataset:
    """Run ``model`` on two examples of ``data`` and the loss on its output; return the data as a Dataset.

    Raises :class:`InputError` stating what the model expects and what the data has when the forward pass
    fails, and naming the loss, the output and the targets when the loss cannot be taken.  With
    ``needs_loss=False`` (representations only) the loss is not taken.
    """
    from .losses import name_of, resolve
    from .paramspace import batch_loss_sum

    if needs_loss:
        check_has_head(model)
    check_finite_weights(model)
    ds = as_dataset(data, name)
    dev = next((p.device for p in model.parameters()), torch.device("cpu")) if device is None else device
    xb, yb = ds.X[:2].to(dev), ds.y[:2].to(dev)
    was = model.training
    model.eval()
    try:
        try:
            out = model(xb)
        except Exception as exc:
            raise InputError(f"{type(model).__name__} cannot be evaluated on {name} with {_describe(ds)}: the model "
                             f"expects {expected_input(model)} ({type(exc).__name__}: {str(exc).strip()[:300]}); "
                             f"pass {name} in the shape the model takes") from exc
        if not isinstance(out, torch.Tensor):
            raise InputError(f"{type(model).__name__} returns {type(out).__name__}, not a tensor; wrap it so that "
                             "model(x) returns its output scores (a Hugging Face model: workbench.models.load)")
        if not needs_loss:
            return ds
        _check_labels(out, ds, name)
        fn = resolve(loss_fn, model)
        try:
            loss = batch_loss_sum(fn, out, yb)
        except Exception as exc:
            raise InputError(f"the loss {name_of(fn)} cannot compare the model's output of shape {tuple(out.shape)} "
                             f"with the targets of {name} of shape {tuple(yb.shape)} ({type(exc).__name__}: "
                             f"{str(exc).strip()[:200]}); {name} has {_describe(ds)} and the model expects "
                             f"{expected_input(model)}: pass loss_fn= that fits, or data of the right shape") from exc
        if not bool(torch.isfinite(loss).all()):
            raise InputError(f"the loss of {type(model).__name__} on the first examples of {name} is "
                             f"{float(loss)}; check the model's weights and the data's values")
    finally:
        model.train(was)
    return ds


IGNORE_INDEX = -100  # targets a loss skips (the convention of torch's cross-entropy and Hugging Face)


def _check_labels(out: torch.Tensor, ds: Dataset, name: str) -> None:
    """Class labels (integer targets, one score per class on the last axis) must index the model's outputs."""
    y = ds.y
    if y.is_floating_point() or y.is_complex() or out.dim() != y.dim() + 1 or not y.numel():
        return
    classes = out.shape[-1]
    used = y[y != IGNORE_INDEX]
    if not used.numel():
        return
    lo, hi = int(used.min()), int(used.max())
    if lo < 0 or hi >= classes:
        raise InputError(f"the targets of {name} run from {lo} to {hi}, but the model scores {classes} classes "
                         f"(labels 0 to {classes - 1}); relabel {name} to 0..{classes - 1} or give the model "
                         f"{hi + 1} outputs")


def positive(value: Any, name: str, *, integer: bool = False, allow_zero: bool = False) -> None:
    """Refuse a value that is not a (whole) number above zero (or at least zero)."""
    kind = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value) and \
        (value >= 0 if allow_zero else value > 0)
    if not ok:
        what = "whole number" if integer else "number"
        raise InputError(f"{name}={value!r}: pass a {what} {'>= 0' if allow_zero else '> 0'}")


def fraction(value: Any, name: str, *, low: float = 0.0, high: float = 1.0, closed: str = "neither") -> None:
    """Refuse a value outside ``(low, high)`` (``closed``: "left", "right", "both" or "neither")."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        lo_ok = value >= low if closed in ("left", "both") else value > low
        hi_ok = value <= high if closed in ("right", "both") else value < high
        ok = lo_ok and hi_ok
    if not ok:
        left = "[" if closed in ("left", "both") else "("
        right = "]" if closed in ("right", "both") else ")"
        raise InputError(f"{name}={value!r}: pass a number in {left}{low:g}, {high:g}{right}")


def choice(value: Any, name: str, options: Sequence[Any]) -> None:
    if value not in options:
        raise InputError(f"{name}={value!r}; choose one of {list(options)}")
