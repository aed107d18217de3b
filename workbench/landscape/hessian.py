"""The Hessian of the mean loss over a data set as a linear operator, and the Lanczos iteration.

:class:`HessianOperator` is the Hessian of the mean loss over the *whole* data set (accumulated over
batches, model in eval mode) as a linear operator on flat parameter vectors laid out by a
:class:`workbench.paramspace.ParamSpec`; products with several vectors at once use batched double backward
(``is_grads_batched``).  :func:`lanczos` runs Lanczos with full reorthogonalisation on any such operator.
Definitions: ``docs/landscape.md``.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from ..backend import DeviceLike, resolve_device
from ..data import as_dataset
from ..losses import resolve as resolve_loss
from ..paramspace import ParamSpec, batch_loss_sum, unflatten
from ..validation import as_model, probe

__all__ = ["HessianOperator", "hvp", "lanczos", "tridiagonal_eigh"]


def _math_attention():
    """A context running ``scaled_dot_product_attention`` on its math backend (twice differentiable)."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - older torch
        import contextlib

        return contextlib.nullcontext()
    return sdpa_kernel(SDPBackend.MATH)


class HessianOperator:
    """The Hessian of the mean loss of ``model`` over all of ``data``, restricted to ``params``.

    ``params`` is a list of parameter names (default: all trainable ones).  :meth:`matvec` and
    :meth:`matmat` take flat vectors over those parameters (in ``named_parameters`` order).

    The caller's model is never moved: when some of its parameters or buffers are not on ``device``,
    the operator works on a copy (``self.model``) on that device, a snapshot of the model at
    construction; otherwise ``self.model`` is the model itself.
    """

    def __init__(self, model: nn.Module, data: Any = None, *, loss_fn: Optional[Callable] = None,
                 params: Optional[Sequence[str]] = None, batch_size: int = 1024, device: DeviceLike = "auto"):
        if data is None:
            raise ValueError("data is required: the Hessian is of the mean loss over a data set")
        model = as_model(model)
        probe(model, data, loss_fn=loss_fn)
        self.device = resolve_device(device)
        self.model = _on_device(model, self.device)
        model = self.model
        self.loss_fn = resolve_loss(loss_fn, model)
        self.data = as_dataset(data, "data").to(self.device)
        self.batch_size = batch_size
        named = dict((n, p) for n, p in model.named_parameters() if p.requires_grad)
        names = list(named) if params is None else list(params)
        unknown = [n for n in names if n not in named]
        if unknown:
            raise ValueError(f"params names parameters the model lacks: {unknown[:5]}; "
                             f"choose from {list(named)[:8]}...")
        self.names = names
        self.params = [named[n] for n in names]
        self.spec = ParamSpec.of([(n, named[n]) for n in names])  # the flat layout of the vectors
        self.dim = self.spec.numel
        self.dtype = self.params[0].dtype
        self.products = 0  # number of Hessian-vector products so far
        # when the data is one batch, the gradient graph is built once and reused by every product
        # (the operator is a snapshot of the model at its first product)
        self.cache_graph = len(self.data) <= batch_size
        self._cached: Optional[List[tuple]] = None

    def _gradients(self):
        """``(grads, retain)`` per batch: the first-order gradients with their graph (create_graph).

        Attention runs on the math kernel of ``scaled_dot_product_attention``, the one whose backward is
        itself differentiable (the fused CPU and GPU kernels have no double backward).
        """
        with _math_attention():
            yield from self._batch_gradients()

    def _batch_gradients(self):
        n = len(self.data)
        if self.cache_graph:
            if self._cached is None:
                self._cached = [torch.autograd.grad(self._loss(xb, yb, n), self.params, create_graph=True)
                                for xb, yb in self.data.batches(self.batch_size)]
            for grads in self._cached:
                yield grads, True
            return
        for xb, yb in self.data.batches(self.batch_size):
            yield torch.autograd.grad(self._loss(xb, yb, n), self.params, create_graph=True), False

    def _split(self, V: torch.Tensor) -> List[torch.Tensor]:
        parts = unflatten(V, self.spec)
        return [parts[n] for n in self.names]

    def _loss(self, xb, yb, n_total: int) -> torch.Tensor:
        return batch_loss_sum(self.loss_fn, self.model(xb), yb) / n_total

    def loss(self) -> float:
        """The mean loss over the data (the point where the Hessian is taken)."""
        was = self.model.training
        self.model.eval()
        with torch.no_grad():
            total = sum(float(self._loss(xb, yb, len(self.data))) for xb, yb in self.data.batches(self.batch_size))
        self.model.train(was)
        return total

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``H @ V.T`` as rows: ``V`` is ``(m, dim)``, the result ``(m, dim)``."""
        V = V.to(self.device, self.dtype)
        single = V.dim() == 1
        if single:
            V = V[None]
        was = self.model.training
        self.model.eval()
        out = torch.zeros_like(V)
        Vs = self._split(V)
        try:
            for grads, retain in self._gradients():
                if V.shape[0] == 1:
                    gv = sum((g * v[0]).sum() for g, v in zip(grads, Vs))
                    hv = torch.autograd.grad(gv, self.params, allow_unused=True, retain_graph=retain)
                    hv = [torch.zeros_like(p) if h is None else h for p, h in zip(self.params, hv)]
                    out += torch.cat([h.reshape(-1) for h in hv])[None]
                else:
                    try:
                        hv = torch.autograd.grad(grads, self.params, grad_outputs=Vs, is_grads_batched=True,
                                                 allow_unused=True, retain_graph=True)
                        hv = [torch.zeros((V.shape[0], *p.shape), dtype=p.dtype, device=p.device) if h is None else h
                              for p, h in zip(self.params, hv)]
                        out += torch.cat([h.reshape(V.shape[0], -1) for h in hv], 1)
                    except RuntimeError:  # an op without a batching rule: one vector at a time
                        for i in range(V.shape[0]):
                            gv = sum((g * v[i]).sum() for g, v in zip(grads, Vs))
                            hv = torch.autograd.grad(gv, self.params, retain_graph=True, allow_unused=True)
                            hv = [torch.zeros_like(p) if h is None else h for p, h in zip(self.params, hv)]
                            out[i] += torch.cat([h.reshape(-1) for h in hv])
        finally:
            self.model.train(was)
        self.products += V.shape[0]
        return out[0] if single else out

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self.matmat(v)

    __matmul__ = matvec

    def dense(self) -> torch.Tensor:
        """The full Hessian (``dim x dim``); for small models and tests only."""
        if self.dim > 5000:
            raise ValueError(f"dense(): the Hessian is {self.dim} x {self.dim}; too large to form")
        return self.matmat(torch.eye(self.dim, dtype=self.dtype, device=self.device))


def _same_device(t: torch.Tensor, dev: torch.device) -> bool:
    return t.device.type == dev.type and (dev.index is None or t.device.index == dev.index
                                          or (t.device.index is None and dev.index == 0))


def _on_device(model: nn.Module, dev: torch.device) -> nn.Module:
    """``model`` itself when all its tensors are on ``dev``, else a copy moved there (never moved in place)."""
    tensors = list(model.parameters()) + list(model.buffers())
    if all(_same_device(t, dev) for t in tensors):
        return model
    return copy.deepcopy(model).to(dev)


def hvp(model: nn.Module, data: Any, *, vector: torch.Tensor, loss_fn: Optional[Callable] = None,
        batch_size: int = 1024, device: DeviceLike = "auto") -> torch.Tensor:
    """Hessian-vector product ``H v`` of the mean loss over ``data`` (``vector`` flat over all parameters)."""
    return HessianOperator(model, data, loss_fn=loss_fn, batch_size=batch_size, device=device).matvec(vector)


# --------------------------------------------------------------------------------------------
# Lanczos
# --------------------------------------------------------------------------------------------
def lanczos(op: Callable[[torch.Tensor], torch.Tensor], v0: torch.Tensor, m: int, *,
            callback: Optional[Callable[[int, np.ndarray, np.ndarray], bool]] = None
            ) -> Tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """``m`` steps of Lanczos with full reorthogonalisation from ``v0``.

    Returns ``(alpha, beta, Q)``: the tridiagonal's diagonal (``j``) and off-diagonal (``j - 1``), and the
    ``j x dim`` Lanczos basis (``j <= m``; fewer on breakdown or when ``callback(j, alpha, beta)``
    returns True).
    """
    dim = v0.numel()
    m = int(min(m, dim))
    q = v0 / v0.norm()
    Q = torch.zeros((m, dim), dtype=v0.dtype, device=v0.device)
    alpha: List[float] = []
    beta: List[float] = []
    for j in range(m):
        Q[j] = q
        w = op(q).to(v0.dtype)
        a = float(w @ q)
        alpha.append(a)
        # full reorthogonalisation (twice is enough)
        for _ in range(2):
            w = w - Q[: j + 1].T @ (Q[: j + 1] @ w)
        b = float(w.norm())
        if callback is not None and callback(j + 1, np.array(alpha), np.array(beta + [b])):
            return np.array(alpha), np.array(beta), Q[: j + 1]
        if j == m - 1 or b < 1e-10 * max(1.0, abs(a)):
            return np.array(alpha), np.array(beta), Q[: j + 1]
        beta.append(b)
        q = w / b
    return np.array(alpha), np.array(beta), Q  # pragma: no cover


def tridiagonal_eigh(alpha: np.ndarray, beta: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    T = np.diag(alpha) + np.diag(beta[: len(alpha) - 1], 1) + np.diag(beta[: len(alpha) - 1], -1)
    return np.linalg.eigh(T)
