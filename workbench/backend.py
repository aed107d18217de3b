"""Device and array-module resolution: the one place that decides where computation runs.

``device`` everywhere in the workbench accepts ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a
``torch.device``.  ``"auto"`` picks CUDA when a GPU is visible, else the CPU.  The environment
variable ``WORKBENCH_DEVICE`` overrides ``"auto"`` (for example ``WORKBENCH_DEVICE=cpu`` on a GPU
machine to compare numbers).

Non-torch code (SciPy/NumPy sparse work, nearest neighbours, ...) asks :func:`array_module` for the
array module that matches a device: CuPy on a CUDA device when it is installed, NumPy otherwise.
"""
from __future__ import annotations

import os
from types import ModuleType
from typing import Any, Union

import numpy as np
import torch

ENV_VAR = "WORKBENCH_DEVICE"

DeviceLike = Union[str, torch.device, None]


class DeviceError(RuntimeError):
    """Raised when a requested device cannot be used."""


def cuda_available() -> bool:
    return bool(torch.cuda.is_available())


def resolve_device(device: DeviceLike = "auto") -> torch.device:
    """Turn ``device`` into a concrete :class:`torch.device`.

    ``None`` and ``"auto"`` mean: the value of ``$WORKBENCH_DEVICE`` if set, else CUDA when available,
    else CPU.  Asking for CUDA without a GPU raises :class:`DeviceError` with the fix.
    """
    if isinstance(device, torch.device):
        dev = device
    else:
        name = "auto" if device is None else str(device).strip().lower()
        if name == "auto":
            env = os.environ.get(ENV_VAR, "").strip().lower()
            if env and env != "auto":
                name = env
            else:
                return torch.device("cuda") if cuda_available() else torch.device("cpu")
        if name == "gpu":
            name = "cuda"
        try:
            dev = torch.device(name)
        except RuntimeError as exc:
            raise DeviceError(
                f"device={device!r} is not a device; use 'auto', 'cpu', 'cuda' or 'cuda:N'"
            ) from exc
    if dev.type == "cuda":
        if not cuda_available():
            raise DeviceError(
                f"device={device!r} asks for CUDA but no CUDA GPU is visible to torch; "
                "use device='auto' or 'cpu' (or unset $WORKBENCH_DEVICE)"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    elif dev.type not in ("cpu", "mps"):
        raise DeviceError(f"device={device!r} is not supported; use 'auto', 'cpu' or 'cuda'")
    return dev


def cupy_available() -> bool:
    try:
        import cupy  # noqa: F401
    except Exception:  # ImportError, or a CUDA runtime mismatch
        return False
    return True


def array_module(device: DeviceLike = "auto") -> ModuleType:
    """NumPy or CuPy, matching ``device``: CuPy on a CUDA device when installed, NumPy otherwise."""
    dev = resolve_device(device)
    if dev.type == "cuda" and cupy_available():
        import cupy

        return cupy
    return np


def to_numpy(x: Any) -> np.ndarray:
    """Bring a torch tensor, CuPy array or array-like back to a NumPy array on the host."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if hasattr(x, "get") and type(x).__module__.startswith("cupy"):
        return x.get()
    return np.asarray(x)


def describe(device: DeviceLike = "auto") -> str:
    """A short human-readable name of the device, for result settings and panels."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        return f"{dev} ({torch.cuda.get_device_name(dev)})"
    return str(dev)


def synchronize(device: DeviceLike) -> None:
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
