"""Spectra straight from checkpoint files, streaming one tensor at a time.

``spectra.analyze(path)`` accepts, besides a model in memory:

* a ``.safetensors`` file;
* a folder holding a sharded checkpoint, looked up in this order: ``model.safetensors.index.json``, another
  ``*.safetensors.index.json`` (if just one), the ``*.safetensors`` files in it (a tensor name in two of
  them is refused), a ``*.index.json`` of PyTorch shards (``pytorch_model.bin.index.json``), a single
  ``.bin`` / ``.pt`` / ``.pth`` file;
* an index file (``*.index.json``: ``{"weight_map": {tensor name: shard file}}``) itself;
* a ``.pt`` / ``.pth`` / ``.bin`` file holding a state dict (``torch.save(model.state_dict(), path)``).

The plan (which tensor is what) is made from the headers alone: safetensors headers, or the pickle of a
PyTorch file opened with ``torch.load(path, mmap=True, weights_only=True)`` (its tensors are mapped, not
read).  Then each tensor is read when its eigenvalues are computed, copied into the working dtype and
released.  A safetensors file is opened afresh (``safe_open``) for every tensor, so the pages read are
unmapped at once.  A PyTorch file is mapped again once the bytes read through the current mapping would
pass the largest tensor's size (or 4 MiB if that is more: re-reading its pickle for every small tensor
would cost time quadratic in the number of entries), so at most that much of it is resident besides the
work.  The memory held is therefore bounded by the largest matrix in the working dtype plus its Gram
matrix (and the copy of it the eigenvalue routine works on), not by the model; memory freed between
tensors is handed back to the system (:func:`release_freed_memory`), so the resident size does not creep
up over a long run.  A PyTorch file in the old (non-zip) format cannot be mapped: it is then loaded whole
once, with a warning, and held for the call.  ``batch_elements=`` lets same-shape tensors share one
eigenvalue call within that many matrix entries (the budget then adds to the bound).

Entries are read as a state dict is (:func:`~workbench.spectra.extract.state_entry`): 2-D floating-point
tensors are dense matrices, or kind ``embedding`` when the name identifies an embedding table (``embed``
in the owning module's name, or ``wte`` / ``wpe``; ``embeddings=False`` skips them); 3-/4-D floating-point
tensors are convolution kernels ``(out, in, *kernel)`` (other 3-D tensors, such as a ViT's class token or
a fused stack of expert matrices, would be misread: analyse such a model from its module); 1-D tensors,
non-float tensors and non-tensor values are listed in ``skipped`` with the reason.  Files carry no modules:
every row's ``module`` is ``"state_dict"``.  Tied weights are not detected: a table stored under two names
is analysed under both (a safetensors file usually stores it once).

Rows come in the checkpoint's order: a PyTorch file keeps its state dict's order; safetensors files store
no order, so their tensors (and an index's) are taken in natural name order (``layers.2`` before
``layers.10``), which is the state-dict order of a ``Sequential`` or a stack of numbered blocks.  On the
CPU the numbers are identical to those of the same tensors in memory (``analyze(model.state_dict())`` with
the state dict in that order): the same kernels run per matrix whether the matrices are batched or not.  On
a GPU a batched call may take other kernels than a single one, so the two agree to rounding there; for
identical numbers give both calls the same ``batch_elements`` (``0``: one tensor per call).
"""
from __future__ import annotations

import json
import os
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Dict, List, Tuple

import torch

from .extract import WeightMatrix, check_finite, iter_matrices, state_entry

#: safetensors dtype codes (``get_slice(name).get_dtype()``) and the torch dtype each is read as
SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": getattr(torch, "float8_e4m3fn", None), "F8_E5M2": getattr(torch, "float8_e5m2", None),
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "U16": getattr(torch, "uint16", None), "U32": getattr(torch, "uint32", None),
    "U64": getattr(torch, "uint64", None), "BOOL": torch.bool,
}
TORCH_SUFFIXES = (".pt", ".pth", ".bin")
MAP_MIN_BYTES = 4 << 20  # small tensors of a PyTorch file share one mapping up to this many bytes
FORMATS = "a .safetensors file, a .pt/.pth/.bin state dict, or a folder with model.safetensors.index.json " \
          "or *.safetensors shards"


class ModelReader:
    """The matrices of a model (or state dict) already in memory."""

    what = "model"
    batch_elements = 1 << 25

    def __init__(self, model, embeddings: bool = True):
        self.entries, self.skipped = iter_matrices(model, embeddings=embeddings)
        self.settings: Dict[str, Any] = {}

    def check_finite(self, entries: List[WeightMatrix]) -> None:
        for e in entries:  # all before any work starts
            check_finite(e, e.slices)

    @staticmethod
    def load(entry: WeightMatrix) -> torch.Tensor:
        return entry.slices

    @staticmethod
    def release() -> None:
        """Nothing: the model is in memory anyway."""


def open_matrices(subject, *, embeddings: bool = True):
    """A reader of ``subject``'s weight matrices: a :class:`CheckpointReader` for a path, else a
    :class:`ModelReader`.

    A reader has ``entries``, ``skipped``, ``what`` (the subject in words), ``load(entry)`` (the unscaled
    ``(k, N, M)`` slices), ``release()`` (called once a large buffer is freed), ``check_finite(entries)``,
    ``batch_elements`` (its default budget) and ``settings`` (added to the result's).
    """
    if isinstance(subject, (str, os.PathLike)):
        return CheckpointReader(subject, embeddings=embeddings)
    return ModelReader(subject, embeddings=embeddings)


def natural_key(name: str) -> Tuple:
    """Sort key that orders the numbers inside names by value (``h.2`` before ``h.10``)."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", name) if p)


def locate(path) -> Tuple[str, List[Tuple[str, Path]]]:
    """``(format, [(tensor name or "", file)])`` of a checkpoint path; ``""``: every tensor of that file.

    Raises ``FileNotFoundError`` / ``ValueError`` naming the path and what to pass instead.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r}: no such file or folder. Give {FORMATS}.")
    if p.is_file():
        if p.name.endswith(".index.json"):
            return _from_index(p)
        if p.suffix == ".safetensors":
            return "safetensors", [("", p)]
        if p.suffix in TORCH_SUFFIXES:
            return "torch", [("", p)]
        raise ValueError(f"checkpoint {str(path)!r}: unknown file type {p.suffix!r}. Give {FORMATS} "
                         "(a model in memory goes in as the nn.Module or its state dict).")
    files = sorted(f for f in p.iterdir() if f.is_file())
    if not files:
        raise ValueError(f"checkpoint folder {str(path)!r} is empty. Point at the folder holding the "
                         f"checkpoint: {FORMATS}.")
    indexes = [f for f in files if f.name.endswith(".index.json")]
    st_indexes = [f for f in indexes if f.name.endswith(".safetensors.index.json")]
    preferred = [f for f in st_indexes if f.name == "model.safetensors.index.json"]
    if preferred or len(st_indexes) == 1:
        return _from_index((preferred or st_indexes)[0])
    if st_indexes:
        raise ValueError(f"checkpoint folder {str(path)!r} holds several indexes {[f.name for f in st_indexes]}; "
                         "pass the one to read (its path)")
    shards = [f for f in files if f.suffix == ".safetensors"]
    if shards:
        return "safetensors", [("", f) for f in shards]
    if len(indexes) == 1:
        return _from_index(indexes[0])
    torch_files = [f for f in files if f.suffix in TORCH_SUFFIXES]
    if len(torch_files) == 1 and not indexes:
        return "torch", [("", torch_files[0])]
    found = ", ".join(f.name for f in files[:8]) + (", ..." if len(files) > 8 else "")
    if torch_files or indexes:
        raise ValueError(f"checkpoint folder {str(path)!r} holds no .safetensors file but {len(torch_files)} "
                         f"PyTorch files and {len(indexes)} indexes ({found}); pass the file or index to read")
    raise ValueError(f"checkpoint folder {str(path)!r} holds no .safetensors file and no index "
                     f"(*.index.json); it holds: {found}. Give {FORMATS}.")


def _from_index(index: Path) -> Tuple[str, List[Tuple[str, Path]]]:
    try:
        weight_map = json.loads(index.read_text()).get("weight_map")
    except (json.JSONDecodeError, AttributeError) as err:
        raise ValueError(f"checkpoint index {str(index)!r} is not a JSON object ({err}); it should hold "
                         '{"weight_map": {tensor name: shard file}}') from None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"checkpoint index {str(index)!r} has no 'weight_map' (tensor name -> shard file); "
                         "fix the index or pass the shard files' folder without it")
    shards = {s: index.parent / s for s in dict.fromkeys(weight_map.values())}
    missing = [s for s, f in shards.items() if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"checkpoint index {str(index)!r} names shard files that are not in "
                                f"{str(index.parent)!r}: {missing[:4]}; copy them there or fix the index")
    kinds = {"safetensors" if f.suffix == ".safetensors" else "torch" for f in shards.values()}
    bad = [s for s, f in shards.items() if f.suffix != ".safetensors" and f.suffix not in TORCH_SUFFIXES]
    if bad or len(kinds) > 1:
        raise ValueError(f"checkpoint index {str(index)!r}: shards must be all .safetensors or all "
                         f".pt/.pth/.bin files, got {sorted(shards)[:4]}")
    order = sorted(weight_map, key=natural_key)
    return kinds.pop(), [(name, shards[weight_map[name]]) for name in order]


def _torch_load(file: Path, mmap: bool = True):
    """``torch.load`` of a state-dict file (mapped, tensors not read); errors name the file and the fix."""
    try:
        sd = torch.load(file, map_location="cpu", mmap=mmap, weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(f"checkpoint {str(file)!r} holds more than tensors (e.g. a pickled nn.Module), which "
                         "is not loaded unasked. If you trust the file, load it yourself "
                         "(torch.load(path, weights_only=False)) and pass the model or its state_dict() "
                         f"[{str(err).splitlines()[0][:120]}]") from None
    except RuntimeError as err:
        if mmap and "mmap can only be used" in str(err):
            return None  # the old serialisation format: the caller decides
        raise ValueError(f"checkpoint {str(file)!r} could not be read by torch.load: {err}") from None
    if not isinstance(sd, Mapping):
        raise ValueError(f"checkpoint {str(file)!r} holds a {type(sd).__name__}, not a state dict (name -> "
                         "tensor); save model.state_dict() or pass the model itself")
    if sd and not any(isinstance(v, torch.Tensor) for v in sd.values()):
        nested = [k for k, v in sd.items() if isinstance(v, Mapping)]
        if nested:
            raise ValueError(f"checkpoint {str(file)!r} holds no tensors at its top level but dicts under "
                             f"{nested[:4]} (a training checkpoint?); pass the state dict itself, e.g. "
                             f"spectra.analyze(torch.load(path, mmap=True, weights_only=True)[{nested[0]!r}])")
    return sd


class CheckpointReader:
    """The matrices of a checkpoint on disk, planned from the headers and read one tensor at a time."""

    batch_elements = 0  # one tensor per eigenvalue call unless the caller gives a budget

    def __init__(self, path, embeddings: bool = True):
        self.format, files = locate(path)
        self.what = f"checkpoint {str(path)!r}"
        self._file: Dict[str, Path] = {}  # tensor name -> the file it is read from
        self._whole: Dict[Path, Mapping] = {}  # old-format PyTorch files, loaded once
        header = self._safetensors_header(files) if self.format == "safetensors" else self._torch_header(files)
        self.entries: List[WeightMatrix] = []
        self.skipped: List[Dict[str, str]] = []
        for name, value in header:
            entry, why = (None, str(value)) if isinstance(value, _Unreadable) else \
                state_entry(name, value, embeddings=embeddings)
            if entry is None:
                self.skipped.append({"name": name, "reason": why})
            else:
                self.entries.append(entry)
        # a mapped PyTorch file is opened afresh once this many bytes were read through it
        self._map_budget = max([MAP_MIN_BYTES] + [e.slices.numel() * e.slices.element_size() for e in self.entries])
        self._mapped: List[Any] = []  # [file, mapped state dict, bytes read through it]
        used = list(dict.fromkeys(str(f) for f in self._file.values()))
        self.settings: Dict[str, Any] = dict(model="checkpoint", checkpoint=str(path),
                                             checkpoint_format=self.format, checkpoint_files=used)

    def _safetensors_header(self, files: List[Tuple[str, Path]]) -> List[Tuple[str, Any]]:
        """``[(name, meta tensor or the reason it cannot be read)]`` in natural name order."""
        from safetensors import SafetensorError, safe_open

        wanted: Dict[Path, List[str]] = {}
        for name, f in files:
            wanted.setdefault(f, []).append(name)
        found: Dict[str, Any] = {}
        for f, names in wanted.items():
            try:
                with safe_open(str(f), framework="pt") as h:
                    keys = list(h.keys())
                    if names == [""]:
                        names = keys
                    missing = sorted(set(names) - set(keys))
                    if missing:
                        raise ValueError(f"checkpoint shard {str(f)!r} lacks {missing[:4]}, which its index "
                                         "maps to it; fix the index or restore the shard")
                    for name in names:
                        if name in found:
                            raise ValueError(f"tensor {name!r} is in both {str(self._file[name])!r} and "
                                             f"{str(f)!r}; keep one copy, or add the index that says which "
                                             "shard holds it")
                        found[name] = _meta(h.get_slice(name))
                        self._file[name] = f
            except SafetensorError as err:
                raise ValueError(f"checkpoint {str(f)!r} is not a readable .safetensors file ({err})") from None
        return [(name, found[name]) for name in sorted(found, key=natural_key)]

    def _torch_header(self, files: List[Tuple[str, Path]]) -> List[Tuple[str, Any]]:
        """``[(name, meta tensor or value)]``: a file's own order, an index's natural name order."""
        wanted: Dict[Path, List[str]] = {}
        for name, f in files:
            wanted.setdefault(f, []).append(name)
        found: Dict[str, Any] = {}
        for f, names in wanted.items():
            sd = self._open_torch(f)  # mapped: the tensors' data is not read
            for k in (list(sd) if names == [""] else names):
                if k not in sd:
                    raise ValueError(f"checkpoint shard {str(f)!r} lacks {k!r}, which its index maps to it; "
                                     "fix the index or restore the shard")
                v = sd[k]
                found[k] = torch.empty(v.shape, dtype=v.dtype, device="meta") if isinstance(v, torch.Tensor) else v
                self._file[k] = f
            del sd
        order = list(found) if files[0][0] == "" else [name for name, _ in files]
        return [(name, found[name]) for name in order]

    def _open_torch(self, f: Path) -> Mapping:
        if f in self._whole:
            return self._whole[f]
        sd = _torch_load(f)
        if sd is None:
            warnings.warn(f"checkpoint {str(f)!r} is in PyTorch's old serialisation format, which cannot be "
                          "memory-mapped: it is loaded whole and held for this call. Re-save it with "
                          "torch.save(torch.load(path), path) to stream it tensor by tensor.", stacklevel=4)
            sd = self._whole[f] = _torch_load(f, mmap=False)
        return sd

    def _read_torch(self, f: Path, entry: WeightMatrix) -> torch.Tensor:
        """``entry``'s tensor from a mapped PyTorch file, mapped afresh once ``_map_budget`` bytes were read
        through the current mapping (its pages are then unmapped once the tensors read from it are gone)."""
        if f in self._whole:
            return self._whole[f][entry.name]
        nbytes = entry.slices.numel() * entry.slices.element_size()
        if not self._mapped or self._mapped[0] != f or self._mapped[2] + nbytes > self._map_budget:
            self._mapped = []  # drop the previous mapping before making the next
            self._mapped = [f, self._open_torch(f), 0]
        self._mapped[2] += nbytes
        return self._mapped[1][entry.name]

    def check_finite(self, entries: List[WeightMatrix]) -> None:
        """Nothing up front: :meth:`load` checks each tensor as it is read."""

    @staticmethod
    def release() -> None:
        release_freed_memory()

    def load(self, entry: WeightMatrix) -> torch.Tensor:
        """The unscaled ``(k, N, M)`` slices of ``entry``, read from its file now."""
        f = self._file[entry.name]
        if self.format == "safetensors":
            from safetensors import safe_open

            with safe_open(str(f), framework="pt") as h:  # a fresh mapping: unmapped once read
                w = h.get_tensor(entry.name)
        else:
            w = self._read_torch(f, entry)
        read, _ = state_entry(entry.name, w)
        if read is None or read.slices.shape != entry.slices.shape or read.slices.dtype != entry.slices.dtype:
            raise ValueError(f"checkpoint {str(f)!r} changed while it was read: {entry.name!r} is now "
                             f"{tuple(w.shape)} {w.dtype}, planned as {entry.shape} {entry.slices.dtype}")
        check_finite(entry, w, f" in {str(f)!r}")
        return read.slices


def _malloc_trim():
    try:
        import ctypes

        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc: nothing to call
        return None


_TRIM = _malloc_trim()


def release_freed_memory() -> None:
    """Hand memory already freed back to the operating system (glibc's ``malloc_trim``; a no-op elsewhere).

    glibc keeps freed blocks of a few MB in its heap for reuse, and the working buffers of one matrix after
    another (of varying sizes) fragment it, so without this the resident memory of a streamed run creeps
    up by several matrices' worth over the run.
    """
    if _TRIM is not None:
        _TRIM(0)


class _Unreadable(str):
    """Why a header entry cannot be read as a tensor (kept apart from string values of a state dict)."""


def _meta(view) -> Any:
    """A meta tensor with the shape and dtype of a safetensors slice, or why it cannot be read."""
    code = view.get_dtype()
    dtype = SAFETENSORS_DTYPES.get(code)
    if dtype is None:
        return _Unreadable(f"safetensors dtype {code}: no torch dtype to read it as")
    return torch.empty(view.get_shape(), dtype=dtype, device="meta")


def source(spec, *, weights=None):
    """What :func:`~workbench.spectra.analyze` should read for a model spec: the checkpoint path itself when
    ``spec`` names weights on disk that can be streamed (a ``.safetensors`` file, a sharded folder, a
    Hugging Face folder holding safetensors or an index, a ``.pt`` state dict) and no ``weights`` are to be
    loaded into it; otherwise the module :func:`workbench.models.load` gives (a built-in name, an import
    path, a TorchScript or pickled-module file, a module).  Streaming holds one matrix at a time instead of
    the model, so a 7B checkpoint's spectra need no more memory than its largest matrix."""
    from ..models import load
    from ..models.load import _is_torchscript

    path = Path(spec).expanduser() if isinstance(spec, (str, os.PathLike)) else None
    if path is not None and not path.exists():
        if path.suffix in TORCH_SUFFIXES + (".safetensors",) or path.name.endswith(".json"):
            locate(path)  # a checkpoint that is not there: the error lists what can be read
    elif path is not None and weights is None and not (path.is_file() and _is_torchscript(path)):
        try:
            CheckpointReader(path)
            return str(path)
        except (ValueError, TypeError, RuntimeError, FileNotFoundError) as exc:
            unreadable = exc  # not a checkpoint of tensors: perhaps a module file
        try:
            return load(spec)
        except Exception:  # neither: the checkpoint error says what can be read
            raise unreadable from None
    return load(spec, weights=weights)
