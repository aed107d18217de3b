"""Random projections from a small trained vector ``theta_d`` (length d) to parameter space (length D).

Three kinds, each deterministic from ``seed`` (drawn on the CPU with a seeded generator, then moved to
the device, so CPU and GPU runs use the very same projection):

* ``"dense"``: a Gaussian ``D x d`` matrix with unit-norm columns.  It is stored when it fits in
  ``max_bytes``; otherwise its rows are regenerated chunk by chunk from the seed in the forward and
  the backward (same numbers, O(chunk) memory, more time).
* ``"orthogonal"``: a dense matrix with orthonormal columns (QR of the Gaussian one); with ``d = D`` it
  is a rotation, so SGD in the subspace is exactly SGD on the parameters.
* ``"sparse"``: about ``density * D`` nonzeros (``+-1`` before normalisation) per column, ``density``
  ``1/sqrt(D)`` by default, columns normalised to norm 1.
* ``"fastfood"``: ``L`` = next power of two ``>= D``; fixed random ``B`` (``+-1`` diagonal), ``Pi``
  (permutation) and ``G`` (Gaussian diagonal); ``y = H G Pi H B pad(theta_d)``, keep the first ``D``
  entries and divide by ``||g|| sqrt(D)`` (``H`` the unnormalised Walsh-Hadamard matrix).  Memory O(L)
  and time O(L log L), whatever d is; the backward applies the adjoint with ``H^T = H`` and saves
  no intermediate.

Every projection maps a ``(d,)`` tensor to a ``(D,)`` tensor, is differentiable in ``theta_d``, and
offers :meth:`Projection.adjoint` (``P^T v``), :meth:`Projection.matrix` (small cases, for checks)
and :attr:`Projection.nbytes` (the memory the projection itself holds).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from ..backend import DeviceLike, resolve_device

KINDS = ("fastfood", "dense", "sparse", "orthogonal")


# --------------------------------------------------------------------------------------------
# fast Walsh-Hadamard transform
# --------------------------------------------------------------------------------------------
def next_pow2(n: int) -> int:
    return 1 << max(0, int(n - 1).bit_length())


_HADAMARD_CACHE: dict = {}


def _small_hadamard(s: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    key = (s, dtype, str(device))
    H = _HADAMARD_CACHE.get(key)
    if H is None:
        H = torch.ones(1, 1, dtype=torch.float64)
        while H.shape[0] < s:
            H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)], 0)
        H = H.to(device, dtype)
        _HADAMARD_CACHE[key] = H
    return H


def fwht(x: torch.Tensor, *, block: int = 256) -> torch.Tensor:
    """Unnormalised fast Walsh-Hadamard transform along the last axis (length a power of two).

    ``fwht(x) == x @ H`` with ``H`` the Sylvester-ordered Hadamard matrix (entries +-1, ``H @ H = L I``),
    in O(L log L) work.  ``H_L`` is the Kronecker product of small Hadamard blocks, so the transform is
    applied as a few batched matrix products with an explicit ``block x block`` Hadamard (one per group
    of ``log2(block)`` butterfly stages), which is faster than single butterflies on CPU and GPU alike.
    ``block=2`` gives the classic butterfly.  Works on any torch device; returns a new tensor.
    """
    L = x.shape[-1]
    if L < 1 or L & (L - 1):
        raise ValueError(f"fwht needs a power-of-two length on the last axis, got {L}; pad it first")
    if block < 2 or block & (block - 1):
        raise ValueError(f"block={block} must be a power of two >= 2")
    shape = x.shape
    y = x.reshape(-1, L)
    rows = y.shape[0]
    k = L.bit_length() - 1
    step = block.bit_length() - 1
    done = 0
    while done < k:
        b = min(step, k - done)
        s = 1 << b
        inner = 1 << done
        H = _small_hadamard(s, x.dtype, x.device)
        if inner == 1:
            y = (y.reshape(rows * (L // s), s) @ H).reshape(rows, L)
        else:
            y = torch.matmul(H, y.reshape(rows, L // (s * inner), s, inner)).reshape(rows, L)
        done += b
    return y.reshape(shape)


def hadamard(L: int, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The explicit ``L x L`` Sylvester Hadamard matrix (for checks; use :func:`fwht` for work)."""
    return fwht(torch.eye(L, dtype=dtype), block=2)


# --------------------------------------------------------------------------------------------
# projections
# --------------------------------------------------------------------------------------------
def _generator(seed: int, stream: int = 0) -> torch.Generator:
    # distinct, reproducible streams for the different random pieces of one projection
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(stream) * 7919 + 17)


class Projection:
    """Base: a fixed linear map ``R^d -> R^D``; call it on ``theta_d`` to get the parameter offset."""

    kind = "projection"

    def __init__(self, D: int, d: int, *, seed: int = 0, device: DeviceLike = "auto",
                 dtype: torch.dtype = torch.float32):
        D, d = int(D), int(d)
        if D < 1:
            raise ValueError(f"D={D}: the parameter space must have at least one dimension")
        if d < 1:
            raise ValueError(f"d={d}: the subspace must have at least one dimension")
        self.D, self.d, self.seed = D, d, int(seed)
        self.device = resolve_device(device)
        self.dtype = dtype

    def __call__(self, theta_d: torch.Tensor) -> torch.Tensor:
        self._check(theta_d, self.d, "theta_d")
        return self.forward(theta_d)

    def forward(self, theta_d: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def adjoint(self, v: torch.Tensor) -> torch.Tensor:
        """``P^T v`` for a ``(D,)`` vector ``v`` (the backward of the projection)."""
        self._check(v, self.D, "v")
        with torch.no_grad():
            return self._adjoint(v)

    def _adjoint(self, v: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def matrix(self) -> torch.Tensor:
        """The explicit ``D x d`` matrix (small cases only: for checks and plots)."""
        if self.D * self.d > 50_000_000:
            raise MemoryError(f"matrix() of a {self.D} x {self.d} projection is too large to materialise")
        eye = torch.eye(self.d, dtype=self.dtype, device=self.device)
        with torch.no_grad():
            return torch.stack([self.forward(eye[j]) for j in range(self.d)], dim=1)

    @property
    def nbytes(self) -> int:
        return 0

    def describe(self) -> dict:
        return {"projection": self.kind, "D": self.D, "d": self.d, "seed": self.seed, "nbytes": self.nbytes}

    def _check(self, x: torch.Tensor, n: int, name: str) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 1 or x.shape[0] != n:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must be a 1-D tensor of length {n}, got {shape}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(D={self.D}, d={self.d}, seed={self.seed}, device={self.device})"


class _FastfoodFn(torch.autograd.Function):
    """Autograd wrapper that saves nothing: the backward recomputes the adjoint (O(L) memory)."""

    @staticmethod
    def forward(ctx, theta_d, proj):  # type: ignore[override]
        ctx.proj = proj
        return proj._apply(theta_d)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return ctx.proj._adjoint(grad), None


class FastfoodProjection(Projection):
    """Fastfood transform ``theta_d -> (H G Pi H B pad(theta_d))[:D] / (||g|| sqrt(D))``."""

    kind = "fastfood"

    def __init__(self, D: int, d: int, *, seed: int = 0, device: DeviceLike = "auto",
                 dtype: torch.dtype = torch.float32):
        super().__init__(D, d, seed=seed, device=device, dtype=dtype)
        self.L = next_pow2(self.D)
        if self.d > self.L:
            raise ValueError(f"d={self.d} exceeds the Fastfood length L={self.L} (next power of two >= "
                             f"D={self.D}); choose d <= {self.L}")
        L = self.L
        B = torch.randint(0, 2, (L,), generator=_generator(seed, 1)).to(torch.float64) * 2 - 1
        perm = torch.randperm(L, generator=_generator(seed, 2))
        G = torch.randn(L, generator=_generator(seed, 3), dtype=torch.float64)
        self.scale = float(1.0 / (G.norm() * math.sqrt(self.D)))
        dev = self.device
        self.B = B.to(dev, dtype)
        self.G = G.to(dev, dtype)
        self.perm = perm.to(dev)
        self.inv_perm = torch.argsort(perm).to(dev)

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        v = torch.zeros(self.L, dtype=x.dtype, device=x.device)
        v[: self.d] = x * self.B[: self.d]
        v = fwht(v)
        v = fwht(v[self.perm] * self.G)
        return v[: self.D] * self.scale

    def _adjoint(self, v: torch.Tensor) -> torch.Tensor:
        u = torch.zeros(self.L, dtype=v.dtype, device=v.device)
        u[: self.D] = v
        u = fwht(u) * self.G
        u = fwht(u[self.inv_perm])
        return u[: self.d] * self.B[: self.d] * self.scale

    def forward(self, theta_d: torch.Tensor) -> torch.Tensor:
        return _FastfoodFn.apply(theta_d, self)

    @property
    def nbytes(self) -> int:
        return sum(t.element_size() * t.numel() for t in (self.B, self.G, self.perm, self.inv_perm))

    def describe(self) -> dict:
        return {**super().describe(), "L": self.L}


class _DenseChunkFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, theta_d, proj):  # type: ignore[override]
        ctx.proj = proj
        return proj._apply(theta_d)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return ctx.proj._adjoint(grad), None


class DenseProjection(Projection):
    """Gaussian matrix with unit-norm columns; stored if it fits in ``max_bytes``, else regenerated.

    The rows are drawn in blocks of ``chunk_rows`` from per-block seeded generators, so the stored and
    the regenerated matrix are the same numbers.  ``orthogonal=True`` orthonormalises the columns (QR),
    which needs the matrix stored.
    """

    kind = "dense"

    def __init__(self, D: int, d: int, *, seed: int = 0, device: DeviceLike = "auto",
                 dtype: torch.dtype = torch.float32, orthogonal: bool = False,
                 max_bytes: Optional[int] = 2 * 1024 ** 3, chunk_rows: int = 4096, store: Optional[bool] = None):
        super().__init__(D, d, seed=seed, device=device, dtype=dtype)
        self.orthogonal = bool(orthogonal)
        if self.orthogonal:
            self.kind = "orthogonal"
            if self.d > self.D:
                raise ValueError(f"orthogonal projection needs d <= D, got d={self.d} > D={self.D}")
        self.chunk_rows = int(chunk_rows)
        size = self.D * self.d * torch.empty((), dtype=dtype).element_size()
        self.stored = (size <= max_bytes) if store is None else bool(store)
        if self.orthogonal and not self.stored:
            raise MemoryError(f"orthogonal projection of {self.D} x {self.d} needs {size / 2**30:.1f} GiB "
                              f"stored; raise max_bytes or use projection='dense' or 'fastfood'")
        if self.stored and self.orthogonal:
            P = torch.cat([self._block(i) for i in range(self._nblocks)], dim=0)
            q, r = torch.linalg.qr(P)
            P = q * torch.sign(torch.diagonal(r))  # unique QR: positive diagonal of R
            self.P: Optional[torch.Tensor] = P.to(self.device, dtype)
            self.col_norm = None
        else:
            # one pass over the blocks: the column norms and, when stored, the matrix filled in the target
            # dtype (the build needs the matrix plus one block)
            P = torch.empty(self.D, self.d, dtype=dtype) if self.stored else None
            norms = torch.zeros(self.d, dtype=torch.float64)
            for i in range(self._nblocks):
                blk = self._block(i)
                norms += blk.pow(2).sum(0)
                if P is not None:
                    P[i * self.chunk_rows:i * self.chunk_rows + blk.shape[0]] = blk
            if P is not None:
                P /= norms.sqrt().to(dtype)
                self.P, self.col_norm = P.to(self.device), None
            else:
                self.P, self.col_norm = None, norms.sqrt().to(self.device, dtype)

    @property
    def _nblocks(self) -> int:
        return -(-self.D // self.chunk_rows)

    def _block(self, i: int, device=None) -> torch.Tensor:
        rows = min(self.chunk_rows, self.D - i * self.chunk_rows)
        block = torch.randn(rows, self.d, generator=_generator(self.seed, 1000 + i), dtype=torch.float64)
        return block if device is None else block.to(device, self.dtype)

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        z = x / self.col_norm
        out = torch.empty(self.D, dtype=x.dtype, device=x.device)
        for i in range(self._nblocks):
            r0 = i * self.chunk_rows
            blk = self._block(i, x.device)
            out[r0:r0 + blk.shape[0]] = blk @ z
        return out

    def _adjoint(self, v: torch.Tensor) -> torch.Tensor:
        if self.P is not None:
            return self.P.T @ v
        acc = torch.zeros(self.d, dtype=v.dtype, device=v.device)
        for i in range(self._nblocks):
            r0 = i * self.chunk_rows
            blk = self._block(i, v.device)
            acc += blk.T @ v[r0:r0 + blk.shape[0]]
        return acc / self.col_norm

    def forward(self, theta_d: torch.Tensor) -> torch.Tensor:
        if self.P is not None:
            return self.P @ theta_d
        return _DenseChunkFn.apply(theta_d, self)

    def matrix(self) -> torch.Tensor:
        if self.P is not None:
            return self.P
        return super().matrix()

    @property
    def nbytes(self) -> int:
        t = self.P if self.P is not None else self.col_norm
        return t.element_size() * t.numel()

    def describe(self) -> dict:
        return {**super().describe(), "stored": self.stored}


class SparseProjection(Projection):
    """Sparse random matrix: ``round(density * D)`` entries ``+-1`` per column, columns of norm 1."""

    kind = "sparse"

    def __init__(self, D: int, d: int, *, seed: int = 0, device: DeviceLike = "auto",
                 dtype: torch.dtype = torch.float32, density: Optional[float] = None):
        super().__init__(D, d, seed=seed, device=device, dtype=dtype)
        self.density = float(density) if density is not None else 1.0 / math.sqrt(self.D)
        if not 0 < self.density <= 1:
            raise ValueError(f"density={density}: must be in (0, 1]")
        k = max(1, int(round(self.density * self.D)))
        gen = _generator(seed, 4)
        rows = torch.randint(0, self.D, (self.d, k), generator=gen).reshape(-1)
        cols = torch.arange(self.d).repeat_interleave(k)
        vals = (torch.randint(0, 2, (self.d * k,), generator=gen) * 2 - 1).to(torch.float64)
        key, inverse = torch.unique(cols * self.D + rows, return_inverse=True)  # merge repeated places
        vals = torch.zeros(len(key), dtype=torch.float64).index_add_(0, inverse, vals)
        rows, cols = key % self.D, key // self.D
        keep = vals != 0  # a +1 and a -1 drawn at the same place cancel
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
        norms = torch.zeros(self.d, dtype=torch.float64).index_add_(0, cols, vals * vals).sqrt()
        if (norms == 0).any():  # a column whose entries all cancelled: give it one entry
            empty = torch.nonzero(norms == 0).flatten()
            rows = torch.cat([rows, torch.randint(0, self.D, (len(empty),), generator=gen)])
            cols = torch.cat([cols, empty])
            vals = torch.cat([vals, torch.ones(len(empty), dtype=torch.float64)])
            norms[empty] = 1.0
        vals = vals / norms[cols]
        self.rows = rows.to(self.device)
        self.cols = cols.to(self.device)
        self.vals = vals.to(self.device, dtype)

    def forward(self, theta_d: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(self.D, dtype=theta_d.dtype, device=theta_d.device)
        return out.index_add(0, self.rows, self.vals * theta_d[self.cols])

    def _adjoint(self, v: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(self.d, dtype=v.dtype, device=v.device)
        return out.index_add(0, self.cols, self.vals * v[self.rows])

    @property
    def nbytes(self) -> int:
        return sum(t.element_size() * t.numel() for t in (self.rows, self.cols, self.vals))

    def describe(self) -> dict:
        return {**super().describe(), "density": self.density, "nnz": int(self.vals.numel())}


def make_projection(kind: str, D: int, d: int, *, seed: int = 0, device: DeviceLike = "auto",
                    dtype: torch.dtype = torch.float32, **options) -> Projection:
    """Build a projection by name: ``"fastfood"``, ``"dense"``, ``"sparse"`` or ``"orthogonal"``."""
    if isinstance(kind, Projection):
        return kind
    name = str(kind).lower()
    if name == "fastfood":
        return FastfoodProjection(D, d, seed=seed, device=device, dtype=dtype, **options)
    if name == "dense":
        return DenseProjection(D, d, seed=seed, device=device, dtype=dtype, **options)
    if name == "orthogonal":
        return DenseProjection(D, d, seed=seed, device=device, dtype=dtype, orthogonal=True, **options)
    if name == "sparse":
        return SparseProjection(D, d, seed=seed, device=device, dtype=dtype, **options)
    raise ValueError(f"projection={kind!r}: choose one of {list(KINDS)}")


def projection_memory(kind: str, D: int, d: int, *, dtype_bytes: int = 4, density: Optional[float] = None) -> int:
    """Bytes a projection holds, without building it (dense: the stored matrix)."""
    kind = str(kind).lower()
    if kind == "fastfood":
        L = next_pow2(D)
        return L * (2 * dtype_bytes + 16)
    if kind in ("dense", "orthogonal"):
        return D * d * dtype_bytes
    if kind == "sparse":
        k = max(1, int(round((density or 1 / math.sqrt(D)) * D)))
        return d * k * (16 + dtype_bytes)
    raise ValueError(f"projection={kind!r}: choose one of {list(KINDS)}")


def column_norms(proj: Projection) -> np.ndarray:
    """Norms of the columns of ``proj`` (small cases)."""
    return proj.matrix().double().norm(dim=0).cpu().numpy()
