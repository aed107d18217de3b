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

from ..backend import DeviceLike, check_allocation, is_out_of_memory, resolve_device, run_halving
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

    Products run over the data in batches of ``batch_size`` examples; a batch that does not fit in memory
    (a real out-of-memory error, or above the estimate :meth:`batch_bytes` under a simulated limit) is
    halved and tried again, and the smaller size is kept for the later products (``self.batch_size``;
    ``self.memory`` counts the batches and halvings).  The sum over the data is the same up to rounding.
    """

    def __init__(self, model: nn.Module, data: Any = None, *, loss_fn: Optional[Callable] = None,
                 params: Optional[Sequence[str]] = None, batch_size: int = 1024, device: DeviceLike = "auto"):
        if data is None:
            raise ValueError("data is required: the Hessian is of the mean loss over a data set")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size={batch_size}; use a positive number of examples per batch")
        model = as_model(model)
        probe(model, data, loss_fn=loss_fn)
        self.device = resolve_device(device)
        self.model = _on_device(model, self.device)
        model = self.model
        self.loss_fn = resolve_loss(loss_fn, model)
        self.data = as_dataset(data, "data").to(self.device)
        self.batch_size = int(min(int(batch_size), len(self.data)))
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
        self.memory: dict = {}  # batches run, halvings and batch sizes tried (backend.run_halving)
        self._graph_bytes: Optional[Tuple[float, float]] = None  # (fixed, per example), measured once
        # when the data is one batch, the gradient graph is built once and reused by every product
        # (the operator is a snapshot of the model at its first product)
        self._cached: Optional[tuple] = None

    @property
    def cache_graph(self) -> bool:
        """Whether the first-order graph is kept between products (the data is a single batch)."""
        return len(self.data) <= self.batch_size

    def _batch_grads(self, start: int, stop: int):
        """``(grads, retain)``: first-order gradients of examples ``start:stop`` with their graph."""
        n = len(self.data)
        if (start, stop) == (0, n) and self.cache_graph:
            if self._cached is None:
                self._cached = self._grads(self.data.X, self.data.y)
            return self._cached, True
        self._cached = None
        return self._grads(self.data.X[start:stop], self.data.y[start:stop]), False

    def _grads(self, xb, yb) -> tuple:
        return torch.autograd.grad(self._loss(xb, yb, len(self.data)), self.params, create_graph=True)

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

    def batch_bytes(self, examples: int, vectors: int = 1) -> float:
        """Estimated memory of one batch of ``examples`` multiplied with ``vectors`` vectors at once.

        The tensors the first-order graph saves for the double backward are measured on two small probe
        batches (``fixed + per_example * examples``, parameters and data not counted, shared storage once);
        each vector adds one more graph-sized set of intermediates (the batched double backward), and the
        vectors and their products ``2 * vectors * dim`` entries.
        """
        if self._graph_bytes is None:
            self._graph_bytes = self._measure_graph()
        fixed, per = self._graph_bytes
        item = torch.finfo(self.dtype).bits // 8
        return fixed + (1 + vectors) * per * examples + 2 * vectors * self.dim * item

    def _measure_graph(self) -> Tuple[float, float]:
        n = len(self.data)
        sizes = [n] if n < 2 else [max(1, min(4, n // 2)), 2 * max(1, min(4, n // 2))]
        skip = {t.untyped_storage().data_ptr() for t in [*self.model.parameters(), *self.model.buffers(),
                                                         self.data.X, self.data.y] if isinstance(t, torch.Tensor)}
        got, was = [], self.model.training
        self.model.eval()  # as in the products (no BatchNorm statistics updated, no dropout)
        try:
            with _math_attention():
                for b in sizes:
                    seen: dict = {}
                    with torch.autograd.graph.saved_tensors_hooks(_storage_counter(seen, skip), lambda t: t):
                        grads = self._grads(self.data.X[:b], self.data.y[:b])
                    got.append(float(sum(seen.values())))
                    del grads
        finally:
            self.model.train(was)
        if len(sizes) == 1:
            return 0.0, got[0] / sizes[0]
        per = max(0.0, (got[1] - got[0]) / (sizes[1] - sizes[0]))
        return max(0.0, got[0] - per * sizes[0]), per

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``H @ V.T`` as rows: ``V`` is ``(m, dim)``, the result ``(m, dim)``."""
        V = V.to(self.device, self.dtype)
        single = V.dim() == 1
        if single:
            V = V[None]
        m = V.shape[0]
        was = self.model.training
        self.model.eval()
        out = torch.zeros_like(V)
        Vs = self._split(V)

        def work(start: int, stop: int) -> torch.Tensor:
            check_allocation(self.batch_bytes(stop - start, m), f"a batch of {stop - start} examples "
                                                                   f"times {m} Hessian-vector products")
            grads, retain = self._batch_grads(start, stop)
            return self._products(grads, Vs, m, retain)

        def add(_start: int, _stop: int, part: torch.Tensor) -> None:
            out.add_(part)

        try:
            with _math_attention():
                self.batch_size = run_halving(
                    len(self.data), self.batch_size, work, device=self.device, on_done=add, record=self.memory,
                    what="examples in a batch of Hessian-vector products",
                    fix="raise the memory limit, or multiply fewer vectors at once (trace(block=...))")
        finally:
            self.model.train(was)
        self.products += m
        return out[0] if single else out

    def _products(self, grads, Vs: List[torch.Tensor], m: int, retain: bool) -> torch.Tensor:
        """This batch's share of ``H V`` (``m x dim``) from its first-order ``grads``."""
        if m == 1:
            return self._one_product(grads, [v[0] for v in Vs], retain)[None]
        try:
            hv = torch.autograd.grad(grads, self.params, grad_outputs=Vs, is_grads_batched=True,
                                     allow_unused=True, retain_graph=True)
        except RuntimeError as exc:  # an op without a batching rule: one vector at a time
            if is_out_of_memory(exc):
                raise
            return torch.stack([self._one_product(grads, [v[i] for v in Vs], True) for i in range(m)])
        hv = [torch.zeros((m, *p.shape), dtype=p.dtype, device=p.device) if h is None else h
              for p, h in zip(self.params, hv)]
        return torch.cat([h.reshape(m, -1) for h in hv], 1)

    def _one_product(self, grads, vs: List[torch.Tensor], retain: bool) -> torch.Tensor:
        gv = sum((g * v).sum() for g, v in zip(grads, vs))
        hv = torch.autograd.grad(gv, self.params, allow_unused=True, retain_graph=retain)
        return torch.cat([(torch.zeros_like(p) if h is None else h).reshape(-1) for p, h in zip(self.params, hv)])

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self.matmat(v)

    __matmul__ = matvec

    def dense(self) -> torch.Tensor:
        """The full Hessian (``dim x dim``); for small models and tests only."""
        if self.dim > 5000:
            raise ValueError(f"dense(): the Hessian is {self.dim} x {self.dim}; too large to form")
        return self.matmat(torch.eye(self.dim, dtype=self.dtype, device=self.device))


def _storage_counter(seen: dict, skip: set) -> Callable:
    """A pack hook recording the bytes of every storage saved for backward (once each, ``skip`` left out)."""
    def pack(t):
        try:
            st = t.untyped_storage()
            if st.data_ptr() not in skip:
                seen[st.data_ptr()] = st.nbytes()
        except (AttributeError, RuntimeError, NotImplementedError):  # sparse or wrapped tensors
            pass
        return t

    return pack


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
