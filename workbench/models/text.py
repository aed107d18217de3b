"""Hugging Face models as ordinary ``model(x) -> tensor`` modules, and the losses that fit them.

Every analysis calls ``model(x)`` on one input tensor and reads a tensor.  :class:`TokenModel` gives a
Hugging Face model that interface without changing it: ``x`` is ``(N, 2, L)`` token ids stacked with their
attention mask (what :func:`workbench.data.load` makes of ``input_ids`` / ``attention_mask``), or ``(N, L)``
ids alone (the mask is then ``ids != pad_token_id``).  The output is the model's ``logits`` (a
classification head: ``(N, C)``; a language-model head: ``(N, L, V)``), or, for a bare encoder, the mean of
its last hidden states over the unmasked positions.  The adapter *shares* the wrapped model's submodules and
parameters, so parameter names (and spectra tables) are the model's own.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["TokenModel", "is_hf_model", "as_token_model", "split_tokens", "LanguageModelLoss", "default_loss"]


def is_hf_model(model: Any) -> bool:
    """Whether ``model`` is a Hugging Face ``PreTrainedModel`` (without importing transformers otherwise)."""
    return any(c.__name__ == "PreTrainedModel" and c.__module__.startswith("transformers")
               for c in type(model).__mro__)


def split_tokens(x: torch.Tensor, pad_token_id: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` of a ``(N, 2, L)`` stack or of ``(N, L)`` ids."""
    if x.dim() == 3 and x.shape[1] == 2:
        return x[:, 0], x[:, 1]
    if x.dim() == 2:
        mask = (x != pad_token_id).long() if pad_token_id is not None else torch.ones_like(x)
        return x, mask
    raise ValueError(f"token inputs must be (N, L) ids or (N, 2, L) ids and attention mask; got shape "
                     f"{tuple(x.shape)}")


class TokenModel(nn.Module):
    """``model(x)`` for a Hugging Face model ``hf`` (see module docstring); keywords pass straight through."""

    def __init__(self, hf: nn.Module):
        super().__init__()
        object.__setattr__(self, "hf", hf)  # not a submodule: the adapter shares hf's own modules instead
        self._modules = hf._modules
        self._parameters = hf._parameters
        self._buffers = hf._buffers
        self.config = getattr(hf, "config", None)
        self.arch = type(hf).__name__

    @property
    def has_head(self) -> bool:
        """Whether the model's output is scores a loss can be taken of (logits), not bare hidden states."""
        return any(type(self.hf).__name__.endswith(s) for s in ("ForSequenceClassification", "ForCausalLM",
                                                                "LMHeadModel", "ForMaskedLM",
                                                                "ForTokenClassification"))

    @property
    def is_causal_lm(self) -> bool:
        return any(type(self.hf).__name__.endswith(s) for s in ("ForCausalLM", "LMHeadModel"))

    def token_mask(self, x: torch.Tensor) -> torch.Tensor:
        """The attention mask of an input batch (1 = a real token)."""
        return split_tokens(x, getattr(self.config, "pad_token_id", None))[1]

    def forward(self, x: Optional[torch.Tensor] = None, **kwargs: Any):
        if x is None:  # the Hugging Face interface, unchanged
            return self.hf(**kwargs)
        ids, mask = split_tokens(x.long(), getattr(self.config, "pad_token_id", None))
        out = self.hf(input_ids=ids, attention_mask=mask)
        logits = getattr(out, "logits", None)
        if logits is not None:
            return logits
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)

    def train(self, mode: bool = True) -> "TokenModel":
        super().train(mode)
        self.hf.train(mode)
        return self


def as_token_model(model: nn.Module) -> nn.Module:
    """A Hugging Face model wrapped in :class:`TokenModel`; any other module as it is."""
    return TokenModel(model) if is_hf_model(model) and not isinstance(model, TokenModel) else model


class LanguageModelLoss(nn.Module):
    """Token cross-entropy of ``(N, L, V)`` logits against ``(N, L)`` target ids, next-token (shifted) for a
    causal language model; positions with target ``-100`` or padding (``pad_token_id``) are left out.  The
    value is the mean over examples of each example's mean token loss, so that batch sums add up exactly."""

    def __init__(self, *, causal: bool = True, pad_token_id: Optional[int] = None):
        super().__init__()
        self.causal, self.pad_token_id = causal, pad_token_id

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.dim() == 3 and target.shape[1] == 2:  # (ids, mask) stacked: the ids are the targets
            target = target[:, 0].masked_fill(target[:, 1] == 0, -100)
        if self.causal:
            logits, target = logits[:, :-1], target[:, 1:]
        target = target.long()
        if self.pad_token_id is not None:
            target = target.masked_fill(target == self.pad_token_id, -100)
        per_token = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100,
                                    reduction="none").view(target.shape)
        valid = (target != -100).to(per_token.dtype)
        return ((per_token * valid).sum(1) / valid.sum(1).clamp_min(1.0)).mean()


def default_loss(model: nn.Module):
    """The loss that fits ``model``'s output: token cross-entropy for a language-model head, else
    cross-entropy (classification logits)."""
    if isinstance(model, TokenModel) and model.has_head and (model.is_causal_lm or
                                                              type(model.hf).__name__.endswith("ForMaskedLM")):
        return LanguageModelLoss(causal=model.is_causal_lm, pad_token_id=getattr(model.config, "pad_token_id", None))
    return F.cross_entropy
