"""The one data container the analyses share, and the built-in digits data.

Analyses take ``data`` as any of: a :class:`Dataset`, a ``(X, y)`` pair of tensors or arrays, a
``torch.utils.data.TensorDataset``, a ``DataLoader`` / iterable of ``(X, y)`` batches (concatenated once), a
dict of token arrays (``input_ids`` / ``attention_mask`` / ``labels``), or a data spec (a file, a folder, an
import path or a built-in name, see :mod:`workbench.data.load`).  :func:`as_dataset` normalises all of them,
and :meth:`Dataset.batches` walks the whole set in batches: analyses evaluate on the whole given data unless
asked for a subset.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Tuple

import numpy as np
import torch

from ..backend import DeviceLike, resolve_device


@dataclass
class Dataset:
    """Inputs ``X`` and targets ``y`` (same first dimension), with a name for reports."""

    X: torch.Tensor
    y: torch.Tensor
    name: str = "data"

    def __post_init__(self) -> None:
        if not isinstance(self.X, torch.Tensor):
            self.X = torch.as_tensor(np.asarray(self.X))
        if not isinstance(self.y, torch.Tensor):
            self.y = torch.as_tensor(np.asarray(self.y))
        if self.X.shape[0] != self.y.shape[0]:
            raise ValueError(
                f"data: X has {self.X.shape[0]} rows but y has {self.y.shape[0]}; "
                "inputs and targets must have the same first dimension"
            )
        if self.X.shape[0] == 0:
            raise ValueError(f"data {self.name!r} is empty; pass at least one example")
        if self.X.is_floating_point() and not torch.isfinite(self.X).all():
            raise ValueError(f"data {self.name!r}: X contains NaN or infinite values")

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def __repr__(self) -> str:
        dt = lambda t: str(t.dtype).replace("torch.", "")  # noqa: E731
        classes = f", {self.num_classes} classes" if self.num_classes else ""
        return (f"Dataset({self.name!r}: {len(self)} examples, X {tuple(self.X.shape)} {dt(self.X)}, "
                f"y {tuple(self.y.shape)} {dt(self.y)}{classes})")

    def to(self, device: DeviceLike) -> "Dataset":
        dev = resolve_device(device)
        return Dataset(self.X.to(dev), self.y.to(dev), self.name)

    def batches(self, batch_size: Optional[int] = None, *, device: DeviceLike = None,
                shuffle: bool = False, seed: int = 0) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(X, y)`` batches covering the whole set (the last one may be smaller)."""
        n = len(self)
        bs = n if not batch_size else int(batch_size)
        dev = resolve_device(device) if device is not None else None
        if shuffle:
            gen = torch.Generator().manual_seed(seed)
            order = torch.randperm(n, generator=gen)
        for start in range(0, n, bs):
            if shuffle:
                idx = order[start:start + bs]
                xb, yb = self.X[idx], self.y[idx]
            else:
                xb, yb = self.X[start:start + bs], self.y[start:start + bs]
            if dev is not None:
                xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
            yield xb, yb

    def subset(self, n: int, *, seed: int = 0) -> "Dataset":
        """A seeded random subset of ``n`` examples (all of them if ``n >= len(self)``)."""
        if n >= len(self):
            return self
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self), generator=gen)[:n]
        return Dataset(self.X[idx], self.y[idx], f"{self.name}[{n}]")

    @property
    def num_classes(self) -> int:
        return int(self.y.max().item()) + 1 if not self.y.is_floating_point() else 0


def as_dataset(data: Any, name: str = "data") -> Dataset:
    """Normalise any supported data argument into a :class:`Dataset` (see module docstring)."""
    if isinstance(data, Dataset):
        return data
    if data is None:
        raise ValueError(f"{name} is None; pass a Dataset, an (X, y) pair, a DataLoader or a data spec")
    if isinstance(data, (str, os.PathLike)):
        from .load import load

        return load(data, name=name)
    if isinstance(data, Mapping) and ("input_ids" in data or {"X", "y"} <= set(data)):
        from .load import from_arrays

        return from_arrays(dict(data), name=name)
    if isinstance(data, torch.utils.data.TensorDataset):
        if len(data.tensors) < 2:
            raise ValueError(f"{name}: a TensorDataset needs (inputs, targets) tensors")
        return Dataset(data.tensors[0], data.tensors[1], name)
    if isinstance(data, (tuple, list)) and len(data) == 2 and not isinstance(data[0], (tuple, list)):
        return Dataset(data[0], data[1], name)
    if isinstance(data, (torch.utils.data.DataLoader,)) or hasattr(data, "__iter__"):
        xs, ys = [], []
        for batch in data:
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise ValueError(f"{name}: each batch must be an (inputs, targets) pair")
            xs.append(torch.as_tensor(batch[0]))
            ys.append(torch.as_tensor(batch[1]))
        if not xs:
            raise ValueError(f"{name} yielded no batches; it is empty")
        return Dataset(torch.cat(xs), torch.cat(ys), name)
    raise TypeError(f"{name}: cannot use {type(data).__name__} as data; "
                    "pass a Dataset, an (X, y) pair, a TensorDataset or a DataLoader")


def digits(*, seed: int = 0, test_fraction: float = 0.25, image: bool = False,
           dtype: torch.dtype = torch.float32) -> Tuple[Dataset, Dataset]:
    """scikit-learn's handwritten digits (1,797 8x8 images, 10 classes) as a seeded train/test split.

    Pixels are scaled to [0, 1].  ``image=True`` gives ``(N, 1, 8, 8)`` inputs for convolutional
    models, otherwise flat ``(N, 64)`` vectors.  The split is stratified and fixed by ``seed``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    X = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=test_fraction, random_state=seed, stratify=y)
    shape = (-1, 1, 8, 8) if image else (-1, 64)
    tr = Dataset(torch.as_tensor(Xtr, dtype=dtype).reshape(shape), torch.as_tensor(ytr), "digits/train")
    te = Dataset(torch.as_tensor(Xte, dtype=dtype).reshape(shape), torch.as_tensor(yte), "digits/test")
    return tr, te


def shuffled_labels(data: Dataset, *, seed: int = 0) -> Dataset:
    """A copy of ``data`` with its targets permuted at random (a control with no learnable signal)."""
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(data), generator=gen)
    return Dataset(data.X, data.y[perm], f"{data.name}/shuffled")
