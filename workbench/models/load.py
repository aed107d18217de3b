"""Model specs: one function, :func:`load`, turns whatever names a model into an ``nn.Module``.

A spec is one of

* an ``nn.Module`` (used as it is; a Hugging Face model is wrapped in :class:`~.text.TokenModel`);
* a built-in name: ``"mlp"``, ``"cnn"``, ``"cnn-gap"``, ``"resnet"`` (trained on digits, cached) or
  ``"minilm"`` (the pretrained all-MiniLM-L6-v2 encoder);
* a local Hugging Face model folder (``config.json`` plus ``*.safetensors`` or ``pytorch_model.bin``),
  loaded offline with the transformers class the config names (``architectures``), else ``AutoModel``;
* a file: ``.pt`` / ``.pth`` / ``.bin`` / ``.ckpt`` holding a whole pickled module, a TorchScript archive, a
  file of :func:`~.reference.save_model`, or a state dict (which needs ``arch=``); a ``.safetensors`` state
  dict (which needs ``arch=``);
* an import path ``"package.module:callable"`` returning an ``nn.Module`` (a class, a factory function such
  as ``torchvision.models:resnet18`` where the user has torchvision, or a module object), called with
  ``options``; the current directory is importable.

``weights=`` (a ``.safetensors`` or state-dict file) is loaded into the module strictly: every missing and
unexpected key is listed in the error, and shape mismatches name the tensor.  ``model_b`` / ``weights_b`` of
a connectivity run take the same forms.
"""
from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import torch
import torch.nn as nn

from ..importpath import resolve as resolve_import_path
from .architectures import ARCHITECTURES, build
from .text import as_token_model

__all__ = ["load", "load_state", "BUILTIN_MODELS", "SPEC_FORMS"]

BUILTIN_MODELS = (*ARCHITECTURES, "minilm")
IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
STATE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
SPEC_FORMS = (
    "a built-in name: " + ", ".join(BUILTIN_MODELS),
    "a Hugging Face model folder (config.json + *.safetensors or pytorch_model.bin)",
    "a .pt/.pth file of a pickled module or a TorchScript archive",
    "a .safetensors or state-dict .pt file with arch= (or weights= on an architecture spec)",
    "an import path package.module:callable returning an nn.Module (weights=FILE loads its state dict)",
)

PathLike = Union[str, os.PathLike]


def _spec_error(spec: Any) -> ValueError:
    return ValueError(f"model={spec!r} is not an nn.Module, a built-in name, an existing file or folder, or an "
                      "import path; a model spec is one of: " + "; ".join(SPEC_FORMS))


def load(spec: Any, *, weights: Optional[PathLike] = None, arch: Any = None,
         options: Optional[Mapping[str, Any]] = None, strict: bool = True) -> nn.Module:
    """The ``nn.Module`` a model spec names (see the module docstring); in eval mode.

    ``arch`` is the architecture for a bare state dict (any spec that gives a module: a built-in name, an
    import path, a module).  ``options`` are keyword arguments of an import-path callable.  ``weights`` is a
    state dict loaded strictly into the result.
    """
    if isinstance(spec, nn.Module):  # the caller's own module: wrapped if needed, its mode left alone
        if weights is not None:
            load_state(spec, weights, strict=strict)
        return as_token_model(spec)
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"model must be a torch.nn.Module or a built-in name or another model spec, got "
                        f"{type(spec).__name__}; a model spec is one of: " + "; ".join(SPEC_FORMS))
    model = _from_text(os.fspath(spec), arch=arch, options=options, strict=strict, untrained=weights is not None)
    if weights is not None:
        load_state(model, weights, strict=strict)
    model = as_token_model(model)
    model.eval()
    return model


def _from_text(text: str, *, arch: Any, options: Optional[Mapping[str, Any]], strict: bool,
               untrained: bool = False) -> nn.Module:
    """The module ``text`` names; a built-in architecture is built untrained when weights follow."""
    path = Path(text).expanduser()
    if path.exists():
        return _from_path(path, arch=arch, strict=strict)
    key = text.strip().lower()
    if key == "minilm":
        from .reference import minilm

        return minilm()
    if key in ARCHITECTURES:
        from .reference import reference_model

        return build(key) if untrained else reference_model(key)
    if IMPORT_PATH.match(text.strip()):
        return _from_import_path(text.strip(), options or {})
    if any(sep in text for sep in ("/", "\\")) or Path(text).suffix:
        raise FileNotFoundError(f"model={text!r}: no such file or folder (relative paths are read from "
                                f"{os.getcwd()})")
    raise _spec_error(text)


def _from_import_path(text: str, options: Mapping[str, Any]) -> nn.Module:
    module_name, attr = text.split(":", 1)
    try:
        target = resolve_import_path(text)
    except ImportError as exc:
        raise ImportError(f"model={text!r}: cannot import {module_name!r} ({exc}); install it or run from the "
                          "folder that holds it") from exc
    except AttributeError:
        raise AttributeError(f"model={text!r}: {module_name!r} has no attribute {attr!r}") from None
    model = target if isinstance(target, nn.Module) else target(**dict(options)) if callable(target) else None
    if not isinstance(model, nn.Module):
        raise TypeError(f"model={text!r} gave {type(model).__name__}, not an nn.Module; the callable must return "
                        "a torch.nn.Module")
    return model


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def _from_path(path: Path, *, arch: Any, strict: bool) -> nn.Module:
    if path.is_dir():
        if (path / "config.json").exists():
            return _from_hf_folder(path)
        raise ValueError(f"model={str(path)!r} is a folder without config.json; a Hugging Face model folder "
                         "holds config.json and its weights (save it with model.save_pretrained(folder))")
    if path.suffix == ".safetensors":
        return _with_architecture(_read_state(path), arch, path, strict)
    if path.suffix not in STATE_SUFFIXES:
        raise ValueError(f"model={str(path)!r}: unknown file type {path.suffix!r}; use a .pt/.pth/.bin/.ckpt or "
                         ".safetensors file, or a Hugging Face model folder")
    if _is_torchscript(path):
        return torch.jit.load(str(path), map_location="cpu")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a pickled module needs the full unpickler (it runs the file's code: your own file)
        payload = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(payload, nn.Module):
        return payload
    if isinstance(payload, Mapping) and "state_dict" in payload and payload.get("arch") and arch is None:
        from .reference import load_saved

        return load_saved(path, strict=strict)
    state = payload.get("state_dict", payload) if isinstance(payload, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"model={str(path)!r} holds a {type(payload).__name__}, not a module or a state dict")
    return _with_architecture(dict(state), arch, path, strict)


def _with_architecture(state: Dict[str, torch.Tensor], arch: Any, path: Path, strict: bool) -> nn.Module:
    if arch is None:
        raise ValueError(f"{str(path)!r} holds only weights (a state dict of {len(state)} tensors); name the "
                         "architecture: load(arch_spec, weights=file), e.g. model='mynets:Net' with "
                         "weights='file', or load(file, arch=...)")
    if isinstance(arch, nn.Module):
        model = arch
    elif isinstance(arch, str) and arch.strip().lower() in ARCHITECTURES:
        model = build(arch.strip().lower())
    else:
        model = load(arch)
    model = getattr(model, "hf", model)
    _load_into(model, state, path, strict)
    return model


def _from_hf_folder(path: Path) -> nn.Module:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import transformers

    config = transformers.AutoConfig.from_pretrained(str(path), local_files_only=True)
    names = list(getattr(config, "architectures", None) or [])
    cls = getattr(transformers, names[0], None) if names else None
    model = (cls or transformers.AutoModel).from_pretrained(str(path), local_files_only=True)
    model.workbench_source = str(path)
    return model


def _read_state(path: Path) -> Dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    payload = torch.load(path, map_location="cpu", weights_only=True)
    state = payload.get("state_dict", payload) if isinstance(payload, Mapping) else payload
    if not isinstance(state, Mapping):
        raise ValueError(f"weights={str(path)!r} holds a {type(payload).__name__}, not a state dict")
    return dict(state)


def load_state(model: nn.Module, weights: PathLike, *, strict: bool = True) -> nn.Module:
    """Load the state dict in ``weights`` (``.safetensors``, or a ``.pt`` state dict) into ``model``."""
    path = Path(weights).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"weights={str(weights)!r}: no such file")
    target = getattr(model, "hf", model)
    _load_into(target, _read_state(path), path, strict)
    return model


def _strip_common_prefix(state: Dict[str, torch.Tensor], want: set) -> Optional[Dict[str, torch.Tensor]]:
    """The state dict without a leading ``module.`` / ``model.``-style prefix when that makes it match."""
    for prefix in ("module.", "model.", "_orig_mod."):
        if state and all(k.startswith(prefix) for k in state):
            stripped = {k[len(prefix):]: v for k, v in state.items()}
            if set(stripped) == want:
                return stripped
    return None


def _load_into(model: nn.Module, state: Dict[str, torch.Tensor], path: Path, strict: bool) -> None:
    want = set(model.state_dict())
    if strict and set(state) != want:
        state = _strip_common_prefix(state, want) or state
    missing, unexpected = sorted(want - set(state)), sorted(set(state) - want)
    if strict and (missing or unexpected):
        raise ValueError(f"the state dict in {str(path)!r} does not match {type(model).__name__}: "
                         f"{len(missing)} missing key(s) {missing[:10]}{' ...' if len(missing) > 10 else ''}, "
                         f"{len(unexpected)} unexpected key(s) {unexpected[:10]}"
                         f"{' ...' if len(unexpected) > 10 else ''}; load them into the architecture they were "
                         "saved from")
    own = model.state_dict()
    wrong = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state.items() if k in own and v.shape != own[k].shape]
    if wrong:
        k, got, need = wrong[0]
        raise ValueError(f"weights {str(path)!r}: {len(wrong)} tensor(s) have the wrong shape, e.g. {k!r} is {got} "
                         f"in the file and {need} in {type(model).__name__}")
    model.load_state_dict(state, strict=strict)
