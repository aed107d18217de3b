"""Data specs: :func:`load` turns whatever names a data set into a :class:`~.dataset.Dataset`.

A spec is one of

* a built-in name: ``"digits"`` (scikit-learn's 1,797 8x8 digits, flat 64 features), ``"digits-image"``
  (the same as ``(N, 1, 8, 8)`` images); ``":train"`` / ``":test"`` pick the built-in seeded split;
* a ``.npz`` or ``.pt`` file of arrays: ``X`` and ``y`` (also ``x`` / ``inputs`` and ``labels`` /
  ``targets``), or token arrays ``input_ids`` (with ``attention_mask`` and ``labels`` when there are
  any; without labels the targets are the ids, for a language model);
* a folder of images in one subfolder per class (read with Pillow, resized to ``image_size`` x
  ``image_size``, scaled to [0, 1] and normalised per channel, see ``normalize``);
* a ``.csv`` / ``.tsv`` file with a label column (``label_column``, else one named ``label``, ``labels``,
  ``y``, ``target`` or ``class``) and numeric feature columns;
* an import path ``"package.module:callable"`` returning a Dataset, a DataLoader, a TensorDataset or an
  ``(X, y)`` pair (the current directory is importable).

Token data become ``X = (N, 2, L)``: ids stacked with their attention mask, which
:class:`workbench.models.TokenModel` reads.  :func:`split` makes a seeded held-out split; :func:`pair` gives
the ``(data, train_data)`` an analysis needs from one or two specs.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from ..importpath import resolve as resolve_import_path
from .dataset import Dataset, as_dataset, digits

__all__ = ["load", "from_arrays", "split", "pair", "BUILTIN_DATA", "SPEC_FORMS", "IMAGE_SUFFIXES"]

BUILTIN_DATA = ("digits", "digits-image")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
LABEL_COLUMNS = ("label", "labels", "y", "target", "class")
SPEC_FORMS = (
    "a built-in name: digits, digits-image (':train' / ':test' for the built-in split)",
    "a .npz / .pt file of arrays X and y, or input_ids (+ attention_mask, labels)",
    "a folder of images in one subfolder per class",
    "a .csv / .tsv file with a label column",
    "an import path package.module:callable returning a Dataset, DataLoader or (X, y)",
)
_KEYS_X, _KEYS_Y = ("X", "x", "inputs", "features"), ("y", "labels", "label", "targets", "target")


def load(spec: Any, *, name: Optional[str] = None, image_size: int = 32, normalize: Optional[str] = "dataset",
         label_column: Optional[str] = None, seed: int = 0) -> Dataset:
    """The :class:`Dataset` a data spec names (see the module docstring).

    ``image_size`` and ``normalize`` (``"dataset"``: per-channel mean and standard deviation of the images
    read; ``"imagenet"``: ImageNet's; ``None``: [0, 1] only) apply to image folders, ``label_column`` to CSV
    files; ``seed`` to the built-in split.
    """
    if not isinstance(spec, (str, os.PathLike)):
        return as_dataset(spec, name or "data")
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if path.exists():
        ds = _from_path(path, image_size=image_size, normalize=normalize, label_column=label_column)
    elif text.split(":")[0].strip().lower() in BUILTIN_DATA:
        ds = _builtin(text.strip().lower(), seed)
    elif ":" in text and not Path(text).suffix:
        ds = _from_import_path(text)
    else:
        raise FileNotFoundError(f"data={text!r} is not an existing file or folder (relative paths are read from "
                                f"{os.getcwd()}), a built-in name or an import path; a data spec is one of: "
                                + "; ".join(SPEC_FORMS))
    if name and name not in ("data", "train_data"):
        ds.name = name
    return ds


def _builtin(text: str, seed: int) -> Dataset:
    base, _, part = text.partition(":")
    train, test = digits(seed=seed, image=base == "digits-image")
    if part == "train":
        return train
    if part == "test":
        return test
    if part:
        raise ValueError(f"data={text!r}: the built-in split has ':train' and ':test'")
    return Dataset(torch.cat([train.X, test.X]), torch.cat([train.y, test.y]), base)


def _from_import_path(text: str) -> Dataset:
    try:
        target = resolve_import_path(text)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"data={text!r}: cannot import it ({exc})") from exc
    value = target() if callable(target) and not hasattr(target, "__len__") else target
    return as_dataset(value, text.split(":", 1)[1])


def _from_path(path: Path, *, image_size: int, normalize: Optional[str], label_column: Optional[str]) -> Dataset:
    if path.is_dir():
        return _image_folder(path, image_size=image_size, normalize=normalize)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            return from_arrays({k: npz[k] for k in npz.files}, name=path.name)
    if suffix in (".pt", ".pth"):
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a pickled Dataset or DataLoader (your own file)
            payload = torch.load(path, map_location="cpu", weights_only=False)
        if isinstance(payload, dict):
            return from_arrays(payload, name=path.name)
        ds = as_dataset(payload, path.name)
        ds.name = path.name
        return ds
    if suffix in (".csv", ".tsv", ".txt"):
        return _table(path, label_column)
    raise ValueError(f"data={str(path)!r}: unknown file type {suffix!r}; a data spec is one of: "
                     + "; ".join(SPEC_FORMS))


def from_arrays(arrays: Dict[str, Any], *, name: str = "data") -> Dataset:
    """A Dataset from a dict of arrays: ``X`` / ``y`` (or their aliases) or token arrays."""
    arrays = {k: torch.as_tensor(np.asarray(v)) if not isinstance(v, torch.Tensor) else v for k, v in arrays.items()}
    if "input_ids" in arrays:
        ids = arrays["input_ids"].long()
        if ids.dim() != 2:
            raise ValueError(f"{name}: input_ids must be (N, L), got shape {tuple(ids.shape)}")
        mask = arrays.get("attention_mask", torch.ones_like(ids)).long()
        if mask.shape != ids.shape:
            raise ValueError(f"{name}: attention_mask has shape {tuple(mask.shape)} but input_ids {tuple(ids.shape)}")
        labels = arrays.get("labels", arrays.get("label"))
        y = labels.long() if labels is not None else ids.masked_fill(mask == 0, -100)  # language-model targets
        return Dataset(torch.stack([ids, mask], dim=1), y, name)
    x_key = next((k for k in _KEYS_X if k in arrays), None)
    y_key = next((k for k in _KEYS_Y if k in arrays), None)
    if x_key is None or y_key is None:
        raise ValueError(f"{name} holds {sorted(arrays)}; a data file holds X and y (or input_ids, "
                         "attention_mask and labels)")
    X, y = arrays[x_key], arrays[y_key]
    if X.dtype == torch.float64:
        X = X.float()
    if not y.is_floating_point():
        y = y.long()
    return Dataset(X, y, name)


def _table(path: Path, label_column: Optional[str]) -> Dataset:
    import pandas as pd

    frame = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
    column = label_column or next((c for c in frame.columns if str(c).lower() in LABEL_COLUMNS), None)
    if column is None or column not in frame.columns:
        raise ValueError(f"data={str(path)!r}: no label column (looked for {label_column or LABEL_COLUMNS}); "
                         f"the columns are {list(frame.columns)}; pass label_column=")
    features = frame.drop(columns=[column])
    text = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if text:
        raise ValueError(f"data={str(path)!r}: feature columns {text} are not numeric; encode them first")
    labels = frame[column]
    if pd.api.types.is_numeric_dtype(labels) and (labels % 1 == 0).all():
        y = torch.as_tensor(labels.to_numpy().copy()).long()
    elif pd.api.types.is_numeric_dtype(labels):
        y = torch.as_tensor(labels.to_numpy(), dtype=torch.float32)
    else:  # class names: numbered in sorted order
        classes = sorted(labels.unique())
        y = torch.as_tensor(labels.map({c: i for i, c in enumerate(classes)}).to_numpy().copy()).long()
    return Dataset(torch.as_tensor(features.to_numpy(dtype=np.float32)), y, path.name)


_IMAGENET = (np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225]))


def _image_folder(path: Path, *, image_size: int, normalize: Optional[str]) -> Dataset:
    from PIL import Image

    classes = sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ValueError(f"data={str(path)!r}: an image folder holds one subfolder of images per class; found none")
    images, labels, mode = [], [], None
    for label, cls in enumerate(classes):
        files = sorted(f for f in (path / cls).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        for f in files:
            with Image.open(f) as im:
                mode = mode or ("L" if im.mode in ("L", "1", "I;16", "I") else "RGB")
                im = im.convert(mode).resize((image_size, image_size), Image.BILINEAR)
                images.append(np.asarray(im, dtype=np.float32) / 255.0)
                labels.append(label)
    if not images:
        raise ValueError(f"data={str(path)!r}: no images ({', '.join(IMAGE_SUFFIXES)}) in the class folders "
                         f"{classes}")
    X = np.stack(images)
    X = X[:, None] if X.ndim == 3 else X.transpose(0, 3, 1, 2)  # (N, C, H, W)
    if normalize == "dataset":
        mean, std = X.mean(axis=(0, 2, 3)), X.std(axis=(0, 2, 3))
    elif normalize == "imagenet" and X.shape[1] == 3:
        mean, std = _IMAGENET
    elif normalize in (None, "none"):
        mean, std = np.zeros(X.shape[1]), np.ones(X.shape[1])
    else:
        raise ValueError(f"normalize={normalize!r}: use 'dataset', 'imagenet' (RGB images) or None")
    X = (X - mean[None, :, None, None]) / np.where(std > 0, std, 1.0)[None, :, None, None]
    ds = Dataset(torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(labels).long(), path.name)
    ds.classes = classes
    return ds


def split(ds: Dataset, *, test_fraction: float = 0.25, seed: int = 0) -> Tuple[Dataset, Dataset]:
    """A seeded ``(train, held-out)`` split of one data set, stratified by class when the targets are class
    labels that allow it."""
    from sklearn.model_selection import train_test_split

    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction}: pass a fraction in (0, 1)")
    n = len(ds)
    if n < 2:
        raise ValueError(f"{ds.name} has {n} example(s); a held-out split needs at least 2")
    idx = np.arange(n)
    y = ds.y.numpy() if ds.y.dim() == 1 and not ds.y.is_floating_point() else None
    strat = y if y is not None and np.bincount(y - y.min()).min() >= 2 and len(np.unique(y)) <= n * test_fraction \
        else None
    tr, te = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=strat)
    tag = f"{int(round(100 * test_fraction))}% held out, seed {seed}"
    return (Dataset(ds.X[tr], ds.y[tr], f"{ds.name} [train: {tag}]"),
            Dataset(ds.X[te], ds.y[te], f"{ds.name} [held out: {tag}]"))


def pair(data: Any, train_data: Any = None, *, test_fraction: float = 0.25, seed: int = 0
         ) -> Tuple[Dataset, Dataset]:
    """``(data, train_data)`` for an analysis that needs both: each from its spec, or, when only ``data``
    is given, a seeded held-out split of it (the built-in digits use their standard split)."""
    if train_data is not None:
        return as_dataset(data, "data"), as_dataset(train_data, "train_data")
    if isinstance(data, str) and data.strip().lower() in BUILTIN_DATA:
        train, test = digits(seed=seed, image=data.strip().lower() == "digits-image", test_fraction=test_fraction)
        return test, train
    train, held = split(as_dataset(data, "data"), test_fraction=test_fraction, seed=seed)
    return held, train
