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
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..backend import DeviceLike, resolve_device
from ..results import Result
from .analyze import SpectraResult

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

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    @property
    def delta(self) -> Dict[str, float]:
        return {k: self.after[k] - self.before[k] for k in self.before if k in self.after}


def compress(model: nn.Module, plan, *, only: str = "lrc", data: Any = None, loss_fn: Optional[Callable] = None,
             device: DeviceLike = "auto", inplace: bool = False):
    """Replace matrices by truncated SVD factors; returns ``(compressed_model, CompressionResult)``.

    ``plan``: a :class:`WeLoreResult` or a dict name -> rank.  ``only="lrc"`` compresses the LRCs of the
    plan (WeLore's recipe), ``"all"`` every matrix in it.  ``nn.Linear`` layers become
    :class:`LowRankLinear` when that saves parameters; other matrices are replaced by their rank-``r``
    reconstruction in place (same shape).  With ``data``, the loss and accuracy before and after are
    measured on all of it.
    """
    from ..models import evaluate  # local import: models pulls in the training loop

    if isinstance(plan, WeLoreResult):
        table = plan.table
        chosen = table if only == "all" else table[table["lrc"]]
        ranks = dict(zip(chosen["name"], chosen["kept_rank"].astype(int)))
    elif isinstance(plan, dict):
        ranks = {k: int(v) for k, v in plan.items()}
    else:
        raise TypeError("plan: pass a WeLoreResult (from welore()) or a dict of layer name -> rank")
    if only not in ("lrc", "all"):
        raise ValueError(f"only={only!r}: use 'lrc' or 'all'")
    dev = resolve_device(device)
    target = model if inplace else copy.deepcopy(model)
    before = evaluate(model, data, loss_fn=loss_fn, device=dev) if data is not None else {}
    n_before = sum(p.numel() for p in target.parameters())
    rows = []
    for name, rank in ranks.items():
        if "[" in name:  # packed attention projection: reconstruct the rows in place
            modname, rest = name.rsplit(".", 1)
            pname, part = rest[:-1].split("[")
            mod = target.get_submodule(modname)
            w = getattr(mod, pname)
            e = w.shape[0] // 3
            rows_ = slice("qkv".index(part) * e, ("qkv".index(part) + 1) * e)
            with torch.no_grad():
                w[rows_] = _truncate(w[rows_], rank)
            rows.append({"name": name, "rank": rank, "how": "reconstructed"})
            continue
        modname = name.rsplit(".", 1)[0] if "." in name else ""
        try:
            mod = target.get_submodule(modname)
        except AttributeError:
            raise KeyError(f"plan names {name!r}, which is not a module of this model") from None
        if rank < 1:
            raise ValueError(f"rank for {name!r} is {rank}; ranks must be >= 1")
        if type(mod) is nn.Linear and rank * (mod.in_features + mod.out_features) < mod.in_features * mod.out_features:
            parent_name, _, child = modname.rpartition(".")
            parent = target.get_submodule(parent_name) if parent_name else target
            setattr(parent, child, LowRankLinear(mod, rank))
            rows.append({"name": name, "rank": rank, "how": "factorised"})
        else:
            w = mod.weight
            with torch.no_grad():
                if w.dim() == 2 and type(mod).__name__ == "Conv1D":
                    w.copy_(_truncate(w.t(), rank).t())
                elif w.dim() == 2:
                    w.copy_(_truncate(w, rank))
                else:
                    raise ValueError(f"{name!r} is a {w.dim()}-D kernel; WeLore compresses 2-D matrices only")
            rows.append({"name": name, "rank": rank, "how": "reconstructed"})
    after = evaluate(target, data, loss_fn=loss_fn, device=dev) if data is not None else {}
    n_after = sum(p.numel() for p in target.parameters())
    res = CompressionResult(settings=dict(only=only, device=str(dev), num_matrices=len(ranks)),
                            table=pd.DataFrame(rows, columns=["name", "rank", "how"]), before=before,
                            after=after, params_before=int(n_before), params_after=int(n_after))
    return target, res
