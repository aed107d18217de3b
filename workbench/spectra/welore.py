"""WeLore: rank reduction from the normalised singular-value spectrum, and low-rank compression.

For each matrix, the singular values are min-max normalised to [0, 1]; those below a global threshold
``tau`` are dropped and the dropped fraction is the matrix's rank reduction.  ``tau`` is solved for a
requested overall reduction (the fraction of all singular values dropped, over the matrices considered).
A matrix whose reduction exceeds ``lrc_ratio`` (0.5 by default) is a low-rank component (LRC), the others
non-low-rank components (N-LRC).  Compressing replaces ``W`` by its truncated SVD factors.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..backend import DeviceLike, resolve_device
from ..results import Result
from .analyze import SpectraResult
from .extract import norm_hook, norm_hooks

ELIGIBLE = ("dense", "attention")


def _normalised(result: SpectraResult, kinds=ELIGIBLE) -> Dict[str, np.ndarray]:
    out = {}
    for i, row in result.table.iterrows():
        if row["kind"] not in kinds or row["rf"] != 1:
            continue
        s = result.singular_values(i)
        span = s.max() - s.min()
        out[row["name"]] = (s - s.min()) / span if span > 0 else np.ones_like(s)
    return out


def solve_tau(result: SpectraResult, reduction: float, *, kinds=ELIGIBLE) -> float:
    """The threshold ``tau`` whose overall rank reduction is ``reduction`` (as close as ties allow)."""
    if not 0.0 <= reduction < 1.0:
        raise ValueError(f"reduction={reduction}: give a fraction in [0, 1)")
    norm = _normalised(result, kinds)
    if not norm:
        raise ValueError("no dense or attention matrices in the result to reduce")
    values = np.sort(np.concatenate(list(norm.values())))
    k = int(round(reduction * len(values)))
    if k == 0:
        return 0.0
    return float(np.nextafter(values[k - 1], np.inf))


@dataclass
class WeLoreResult(Result):
    """Per-matrix rank reduction at one ``tau``; ``overall`` is the fraction of singular values dropped."""

    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    tau: float = 0.0
    overall: float = 0.0
    param_ratio: float = 1.0

    kind = "welore"

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    @property
    def ranks(self) -> Dict[str, int]:
        return dict(zip(self.table["name"], self.table["kept_rank"]))


def welore(result: SpectraResult, *, reduction: Optional[float] = None, tau: Optional[float] = None,
           lrc_ratio: float = 0.5, kinds=ELIGIBLE) -> WeLoreResult:
    """Plan a WeLore reduction from a spectra result, by target overall ``reduction`` or by ``tau``."""
    if (reduction is None) == (tau is None):
        raise ValueError("give exactly one of reduction= (target overall fraction) or tau= (threshold)")
    if tau is None:
        tau = solve_tau(result, reduction, kinds=kinds)
    norm = _normalised(result, kinds)
    rows = []
    kept_total = total = 0
    params_before = params_after = 0
    shapes = dict(zip(result.table["name"], zip(result.table["N"], result.table["M"])))
    for name, s in norm.items():
        full = len(s)
        kept = max(1, int(np.count_nonzero(s >= tau)))
        red = 1.0 - kept / full
        n, m = shapes[name]
        dense = n * m
        low = kept * (n + m)
        rows.append({"name": name, "N": n, "M": m, "rank": full, "kept_rank": kept, "reduction": red,
                     "lrc": bool(red > lrc_ratio), "label": "LRC" if red > lrc_ratio else "N-LRC",
                     "params": dense, "params_lowrank": min(low, dense)})
        kept_total += kept
        total += full
        params_before += dense
        params_after += min(low, dense)
    table = pd.DataFrame(rows)
    return WeLoreResult(settings=dict(tau=tau, reduction=reduction, lrc_ratio=lrc_ratio, kinds=list(kinds)),
                        table=table, tau=float(tau), overall=1.0 - kept_total / total,
                        param_ratio=params_after / params_before)


class LowRankLinear(nn.Module):
    """``x -> x V_r^T diag(s_r) U_r^T + b`` as two linear maps (in -> r -> out)."""

    def __init__(self, linear: nn.Linear, rank: int):
        super().__init__()
        w = linear.weight.detach()
        u, s, vh = torch.linalg.svd(w.to(torch.float64), full_matrices=False)
        r = int(rank)
        self.down = nn.Linear(w.shape[1], r, bias=False, device=w.device, dtype=w.dtype)
        self.up = nn.Linear(r, w.shape[0], bias=linear.bias is not None, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            self.down.weight.copy_((s[:r, None] * vh[:r]).to(w.dtype))
            self.up.weight.copy_(u[:, :r].to(w.dtype))
            if linear.bias is not None:
                self.up.bias.copy_(linear.bias)
        self.in_features, self.out_features, self.rank = w.shape[1], w.shape[0], r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))


def _truncate(w: torch.Tensor, rank: int) -> torch.Tensor:
    u, s, vh = torch.linalg.svd(w.detach().to(torch.float64), full_matrices=False)
    return ((u[:, :rank] * s[:rank]) @ vh[:rank]).to(w.dtype)


@dataclass
class CompressionResult(Result):
    """What compressing did: per matrix the rank kept and how; loss/accuracy before and after."""

    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    before: Dict[str, float] = field(default_factory=dict)
    after: Dict[str, float] = field(default_factory=dict)
    params_before: int = 0
    params_after: int = 0

    kind = "welore-compression"

    def __post_init__(self) -> None:
        self.model_: Optional[nn.Module] = None  # the compressed model (not saved)

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    @property
    def delta(self) -> Dict[str, float]:
        return {k: self.after[k] - self.before[k] for k in self.before if k in self.after}


def _locate(model: nn.Module, name: str):
    """``(module path, module, parameter name, packed rows or None)`` of a plan entry ``name``."""
    rows = None
    if name.endswith("]") and "[" in name:  # packed attention projection, e.g. "attn.in_proj_weight[q]"
        head, part = name[:-1].rsplit("[", 1)
        if part not in ("q", "k", "v"):
            raise KeyError(f"plan names {name!r}: the part in brackets must be q, k or v")
        rows = part
        name = head
    modname, _, pname = name.rpartition(".")
    try:
        mod = model.get_submodule(modname) if modname else model
    except AttributeError:
        raise KeyError(f"plan names {name!r}, but this model has no module {modname!r}") from None
    if not isinstance(getattr(mod, pname, None), torch.Tensor):
        raise KeyError(f"plan names {name!r}, but module {modname or '(root)'!r} ({type(mod).__name__}) "
                       f"has no tensor {pname!r}")
    if rows is not None:
        e = getattr(mod, pname).shape[0] // 3
        i = "qkv".index(rows)
        rows = slice(i * e, (i + 1) * e)
    return modname, mod, pname, rows


def _matrix_of(mod: nn.Module, pname: str, rows) -> torch.Tensor:
    w = getattr(mod, pname).detach()
    if rows is not None:
        w = w[rows]
    if type(mod).__name__ == "Conv1D" and pname == "weight":
        w = w.t()
    return w


def _deepcopy(model: nn.Module) -> nn.Module:
    """``copy.deepcopy``, also for hook-based ``weight_norm`` / ``spectral_norm`` layers (whose cached
    ``.weight`` is a non-leaf tensor that torch refuses to copy); the original is left as it was."""
    saved = []
    for mod in model.modules():
        for hook in norm_hooks(mod):
            t = getattr(mod, hook.name, None)
            if isinstance(t, torch.Tensor) and not isinstance(t, nn.Parameter) and not t.is_leaf:
                saved.append((mod, hook.name, t))
                setattr(mod, hook.name, t.detach())
    try:
        return copy.deepcopy(model)
    finally:
        for mod, name, t in saved:
            setattr(mod, name, t)


def _unparametrise(mod: nn.Module) -> str:
    """Fold a weight parametrisation (weight_norm / spectral_norm, either API) into a plain ``weight``."""
    from torch.nn.utils import parametrize

    if parametrize.is_parametrized(mod, "weight"):
        # torch removes the property from the module's class, which a deep copy shares with the original:
        # give this module a class of its own first so the caller's model keeps working
        cls = mod.__class__
        mod.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
        mod.parametrizations["weight"].eval()  # e.g. no spectral_norm power step while folding
        parametrize.remove_parametrizations(mod, "weight", leave_parametrized=True)
        return " (parametrisation folded in)"
    hook = norm_hook(mod)
    if hook is not None:
        remover = (torch.nn.utils.remove_weight_norm if type(hook).__name__ == "WeightNorm"
                   else torch.nn.utils.remove_spectral_norm)
        remover(mod, "weight")
        return " (parametrisation folded in)"
    return ""


def compress(model: nn.Module, data: Any = None, *, plan, only: str = "lrc", loss_fn: Optional[Callable] = None,
             device: DeviceLike = "auto", inplace: bool = False) -> CompressionResult:
    """Replace matrices by truncated SVD factors; returns a :class:`CompressionResult` whose ``model_`` is
    the compressed model.

    ``plan``: a :class:`WeLoreResult` or a dict name -> rank, names as in the spectra table (``"fc.weight"``,
    ``"attn.in_proj_weight[q]"``, ``"attn.q_proj_weight"``, a loose parameter's name, ``"weight"`` for a
    root ``nn.Linear``).  Every rank must satisfy ``1 <= rank <= min(N, M)`` of its matrix; all are checked
    before anything changes.  ``only="lrc"`` compresses the LRCs of the plan (WeLore's recipe), ``"all"``
    every matrix in it.  ``nn.Linear`` layers become :class:`LowRankLinear` when that saves parameters
    (a root ``nn.Linear`` is then replaced as a whole); other matrices are replaced by their rank-``r``
    reconstruction (same shape); a weight_norm / spectral_norm parametrisation is folded into the weight.

    The caller's ``model`` is neither changed nor moved: ``result.model_`` is a new model (unless
    ``inplace=True``, which edits ``model`` itself; use ``result.model_``, which differs for a root
    ``nn.Linear``).  With
    ``data``, the loss and accuracy before and after are measured on all of it, on copies on ``device``.
    """
    from ..models import evaluate  # local import: models pulls in the training loop

    if only not in ("lrc", "all"):
        raise ValueError(f"only={only!r}: use 'lrc' or 'all'")
    if isinstance(plan, WeLoreResult):
        table = plan.table
        chosen = table if only == "all" else table[table["lrc"]]
        ranks = dict(zip(chosen["name"], chosen["kept_rank"].astype(int)))
    elif isinstance(plan, dict):
        ranks = {k: int(v) for k, v in plan.items()}
    else:
        raise TypeError("plan: pass a WeLoreResult (from welore()) or a dict of layer name -> rank")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    dev = resolve_device(device)
    target = model if inplace else _deepcopy(model)

    # resolve and validate every entry before changing anything
    actions = []
    for name, rank in ranks.items():
        modname, mod, pname, rows = _locate(target, name)
        w = _matrix_of(mod, pname, rows)
        if w.dim() != 2:
            raise ValueError(f"{name!r} is a {w.dim()}-D tensor; WeLore compresses 2-D matrices only")
        limit = min(w.shape)
        if not 1 <= rank <= limit:
            raise ValueError(f"rank for {name!r} is {rank}: give 1 <= rank <= {limit} "
                             f"(the smaller side of its {w.shape[0]}x{w.shape[1]} matrix)")
        actions.append((name, rank, modname, mod, pname, rows))

    before = evaluate(_deepcopy(model), data, loss_fn=loss_fn, device=dev) if data is not None else {}
    n_before = sum(p.numel() for p in target.parameters())
    rows_out = []
    for name, rank, modname, mod, pname, rows in actions:
        note = _unparametrise(mod) if pname == "weight" else ""
        if rows is None and pname == "weight" and type(mod) is nn.Linear \
                and rank * (mod.in_features + mod.out_features) < mod.in_features * mod.out_features:
            low = LowRankLinear(mod, rank)
            if modname:
                parent_name, _, child = modname.rpartition(".")
                parent = target.get_submodule(parent_name) if parent_name else target
                setattr(parent, child, low)
            else:
                target = low
            rows_out.append({"name": name, "rank": rank, "how": "factorised" + note})
            continue
        w = getattr(mod, pname)
        with torch.no_grad():
            if rows is not None:
                w[rows] = _truncate(w[rows], rank)
            elif type(mod).__name__ == "Conv1D" and pname == "weight":
                w.copy_(_truncate(w.t(), rank).t())
            else:
                w.copy_(_truncate(w, rank))
        rows_out.append({"name": name, "rank": rank, "how": "reconstructed" + note})
    after = evaluate(_deepcopy(target), data, loss_fn=loss_fn, device=dev) if data is not None else {}
    n_after = sum(p.numel() for p in target.parameters())
    res = CompressionResult(settings=dict(only=only, device=str(dev), num_matrices=len(ranks)),
                            table=pd.DataFrame(rows_out, columns=["name", "rank", "how"]), before=before,
                            after=after, params_before=int(n_before), params_after=int(n_after))
    res.model_ = target
    return res
