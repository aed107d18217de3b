"""Matching the hidden units of two networks: Git Re-Basin weight matching and activation matching,
and :func:`align`, which permutes model B onto model A and checks that the permuted copy still computes
B's function.  Definitions: ``docs/connectivity.md``.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from ..backend import DeviceLike, resolve_device, to_numpy
from ..data import as_dataset
from ..paths import check_same_architecture
from ..progress import Progress, ProgressLike
from ..results import Result
from ..validation import as_model, probe
from .permute import _index, permute
from .spec import PermutationSpec, UnsupportedStructure
from .tracing import example_input, permutation_spec, trace_outputs

__all__ = ["weight_matching", "activation_matching", "AlignResult", "align", "check_function_preserved"]


# --------------------------------------------------------------------------------------------
# weight matching
# --------------------------------------------------------------------------------------------
def _moved(w: torch.Tensor, axis: int, n: int, block: int) -> torch.Tensor:
    """``w`` with the units of ``axis`` first, flattened to ``(n, -1)`` (blocks join the rest)."""
    if block > 1:
        shape = list(w.shape)
        w = w.reshape(shape[:axis] + [n, block] + shape[axis + 1:])
    return w.movedim(axis, 0).reshape(n, -1)


def _assign(cost: torch.Tensor) -> np.ndarray:
    from scipy.optimize import linear_sum_assignment

    c = to_numpy(cost)
    _, col = linear_sum_assignment(c if c.dtype == np.float64 else c.astype(np.float64), maximize=True)
    return col


def weight_matching(params_a: Dict[str, torch.Tensor], params_b: Dict[str, torch.Tensor], spec: PermutationSpec,
                    *, max_iter: int = 100, seed: int = 0, init: Optional[Dict[str, Any]] = None,
                    progress: ProgressLike = False) -> Tuple[Dict[str, np.ndarray], List[Dict[str, Any]]]:
    """Git Re-Basin weight matching: coordinate descent over permutations in a seeded random order.

    For permutation ``P`` the cost is ``sum_w W_A(P axis first, flattened) @ W_B(other axes permuted)^T``;
    a linear assignment (maximise) gives the new ``P``; stop when no permutation improves.  Tensors stay
    where they are (GPU cost matrices on a GPU); the assignment runs in SciPy.  Returns the permutations
    and the history (iteration, perm, objective before/after).
    """
    perms = {p: np.asarray(init[p]) if init and p in init else np.arange(n) for p, n in spec.sizes.items()}
    p2a = {p: [(k, i) for k, i in ax if k in params_a] for p, ax in spec.perm_to_axes.items()}
    names = sorted(spec.sizes)
    # P's cost matrix depends only on the permutations on the other axes of the tensors it touches: when
    # none of those changed since P was last solved, the assignment would return the same answer, so it is
    # skipped (the result is exactly that of solving it again)
    deps = {p: sorted({q for k, i in p2a[p] for j, q in enumerate(spec.axes[k]) if q is not None and j != i})
            for p in names}
    version = {p: 0 for p in names}
    solved_at: Dict[str, Tuple[int, ...]] = {}
    rng = np.random.default_rng(seed)
    history: List[Dict[str, Any]] = []
    moved_a: Dict[Tuple[str, int], torch.Tensor] = {}
    terms: Dict[Tuple[str, int], Tuple[Tuple[int, ...], torch.Tensor]] = {}
    with Progress(max_iter, "weight matching", progress) as bar:
        for it in range(max_iter):
            improved = False
            for p in rng.permutation(names):
                n = spec.sizes[p]
                state = tuple(version[q] for q in deps[p])
                if solved_at.get(p) == state:
                    continue
                solved_at[p] = state
                cost = None
                for k, i in p2a[p]:
                    ax = spec.axes[k]
                    # this tensor's term depends only on the permutations of its other axes: reuse it
                    # while none of them changed
                    key = tuple(version[q] for j, q in enumerate(ax) if q is not None and j != i)
                    cached = terms.get((k, i))
                    if cached is not None and cached[0] == key:
                        term = cached[1]
                    else:
                        blk = spec.blocks.get((k, i), 1)
                        if (k, i) not in moved_a:  # A never changes: move its axes once
                            moved_a[(k, i)] = _moved(params_a[k], i, n, blk).contiguous()
                        wa = moved_a[(k, i)]
                        wb = params_b[k]
                        for j, q in enumerate(ax):
                            if q is not None and j != i:
                                wb = wb.index_select(j, _index(perms[q], spec.blocks.get((k, j), 1), wb.device))
                        wb = _moved(wb, i, n, blk)
                        term = wa @ wb.T
                        terms[(k, i)] = (key, term)
                    cost = term if cost is None else cost + term
                if cost is None:
                    continue
                c = to_numpy(cost).astype(np.float64)
                new = _assign(c)
                old_l = float(c[np.arange(n), perms[p]].sum())
                new_l = float(c[np.arange(n), new].sum())
                history.append({"iteration": it, "perm": str(p), "before": old_l, "after": new_l})
                if new_l > old_l + 1e-12 * max(1.0, abs(old_l)):
                    improved = True
                    perms[p] = new
                    version[p] += 1
            bar.update()
            if not improved:
                break
    return perms, history


# --------------------------------------------------------------------------------------------
# activation matching
# --------------------------------------------------------------------------------------------
class _Stats:
    """Running sums for the cross-correlation of A's and B's units."""

    def __init__(self) -> None:
        self.n = 0
        self.sa = self.sb = self.saa = self.sbb = self.sab = None

    def add(self, a: torch.Tensor, b: torch.Tensor) -> None:
        a = a.double()
        b = b.double()
        if self.sa is None:
            c = a.shape[1]
            z = lambda *s: torch.zeros(*s, dtype=torch.float64, device=a.device)  # noqa: E731
            self.sa, self.sb, self.saa, self.sbb, self.sab = z(c), z(c), z(c), z(c), z(c, c)
        self.n += a.shape[0]
        self.sa += a.sum(0)
        self.sb += b.sum(0)
        self.saa += (a * a).sum(0)
        self.sbb += (b * b).sum(0)
        self.sab += a.T @ b

    def correlation(self) -> torch.Tensor:
        n = self.n
        ma, mb = self.sa / n, self.sb / n
        cov = self.sab / n - ma[:, None] * mb[None, :]
        sda = (self.saa / n - ma ** 2).clamp_min(0).sqrt()
        sdb = (self.sbb / n - mb ** 2).clamp_min(0).sqrt()
        return cov / (sda[:, None] * sdb[None, :] + 1e-8)


def _units(t: torch.Tensor) -> torch.Tensor:
    """Activations as (samples, units): channels are dim 1, every other axis is a sample."""
    if t.dim() == 2:
        return t
    return t.movedim(1, -1).reshape(-1, t.shape[1])


def activation_matching(model_a: nn.Module, model_b: nn.Module, data: Any, spec: PermutationSpec, *,
                        batch_size: int = 512, device: DeviceLike = "auto",
                        progress: ProgressLike = False) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """Match units by the correlation of their activations on ``data``.

    For each hidden group, every tensor carrying it (the outputs of the layers producing it, of its
    normalisations and of its activation functions) is taken in A and in B and correlated unit by unit
    over all samples (and spatial positions); the cost matrix sums these correlation matrices (the
    pre-activations separate units that a ReLU leaves constant) and a linear assignment (maximise)
    gives the permutation.  Returns ``(perms, correlation matrices)``.
    """
    if not spec.derived:
        raise ValueError("activation matching needs a spec derived from the model (permutation_spec(model)); "
                         "a hand-written spec does not say where each group's activations are")
    ds = as_dataset(data, "data")
    dev = resolve_device(device)
    model_a = model_a.to(dev).eval()
    model_b = model_b.to(dev).eval()
    stats: Dict[Tuple[str, int], _Stats] = {}

    with Progress(-(-len(ds) // batch_size), "activation matching", progress) as bar:
        for xb, _ in ds.batches(batch_size, device=dev):
            fa, fb = trace_outputs(model_a, xb), trace_outputs(model_b, xb)
            if len(fa) != len(fb):
                raise ValueError("model_a and model_b run different operations; they must share an architecture")
            for idx, ((kind, g, module, oa), (_k, _g, _m, ob)) in enumerate(zip(fa, fb)):
                pname = spec.group_names.get(g)
                if pname is None:
                    continue
                stats.setdefault((pname, idx), _Stats()).add(_units(oa), _units(ob))
            bar.update()
    corr: Dict[str, torch.Tensor] = {}
    for (pname, _idx), st in stats.items():
        c = st.correlation()
        corr[pname] = c if pname not in corr else corr[pname] + c
    perms = {}
    for p, n in spec.sizes.items():
        if p not in corr:
            perms[p] = np.arange(n)
            continue
        perms[p] = _assign(corr[p])
    return perms, {p: to_numpy(c) for p, c in corr.items()}

# --------------------------------------------------------------------------------------------
# the invariant and the public entry point
# --------------------------------------------------------------------------------------------
FUNCTION_RTOL = 1e-4  # permuted B must match B on a probe batch to this relative tolerance


def _leaf_outputs(model: nn.Module, x: torch.Tensor) -> Tuple[Any, List[Tuple[str, torch.Tensor]]]:
    found: List[Tuple[str, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: found.append((n, o)) if isinstance(o, torch.Tensor)
                                     else None)
             for n, m in model.named_modules() if n and not list(m.children())]
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in hooks:
            h.remove()
    return out, found


def check_function_preserved(model_b: nn.Module, permuted: nn.Module, data: Any = None, *,
                             rtol: float = FUNCTION_RTOL) -> float:
    """Check that ``permuted`` computes ``model_b``'s function on a probe batch; returns the largest
    relative difference of the outputs.

    Raises :class:`UnsupportedStructure` naming the first module whose outputs differ by more than a
    reordering of channels when the difference exceeds ``rtol`` (relative to the outputs' scale): that
    module holds something the permutation spec does not cover.
    """
    x = example_input(model_b, data)
    dev = next((p.device for p in model_b.parameters()), torch.device("cpu"))
    modes = (model_b.training, permuted.training)
    model_b.eval()
    permuted.eval()
    try:
        out_b, leaves_b = _leaf_outputs(model_b, x.to(dev))
        out_p, leaves_p = _leaf_outputs(permuted, x.to(dev))
    finally:
        model_b.train(modes[0])
        permuted.train(modes[1])
    ob = torch.cat([t.detach().double().flatten() for t in _outputs(out_b)])
    op = torch.cat([t.detach().double().flatten() for t in _outputs(out_p)])
    scale = max(float(ob.abs().max()), 1e-12)
    diff = float((ob - op).abs().max()) / scale
    if diff <= rtol:
        return diff
    culprit = "the model's output"
    for (name, tb), (_n, tp) in zip(leaves_b, leaves_p):
        vb, vp = tb.detach().double().flatten(1).sort(1).values, tp.detach().double().flatten(1).sort(1).values
        if vb.shape != vp.shape or float((vb - vp).abs().max()) > rtol * max(float(vb.abs().max()), 1e-12):
            culprit = f"module {name!r}"
            break
    raise UnsupportedStructure(
        f"the permuted copy of model B does not compute B's function (largest relative output difference "
        f"{diff:.2e} > {rtol:g}); first difference at {culprit}, which holds a parameter or an operation the "
        "permutation spec does not cover; pass a hand-written spec=PermutationSpec.from_axes(...)")


def _outputs(out: Any) -> List[torch.Tensor]:
    from .tracing import tensors_in

    return tensors_in(out)


@dataclasses.dataclass
class AlignResult(Result):
    """Permutations that align model B to model A, with the permuted copy of B in :attr:`model_`.

    ``settings["function_error"]`` is the largest relative difference between B and the permuted B on a
    probe batch (checked on every call; see :func:`check_function_preserved`).
    """

    perms: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    history: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)

    kind = "align"

    def __post_init__(self) -> None:
        self.model_: Optional[nn.Module] = None
        self.spec_: Optional[PermutationSpec] = None

    def to_frame(self) -> pd.DataFrame:
        rows = []
        for p, perm in self.perms.items():
            perm = np.asarray(perm)
            rows.append({"perm": p, "size": len(perm), "moved": int((perm != np.arange(len(perm))).sum())})
        return pd.DataFrame(rows)


def align(model_a: nn.Module, model_b: nn.Module, data: Any = None, *, method: str = "weight",
          spec: Optional[PermutationSpec] = None, max_iter: int = 100, seed: int = 0, batch_size: int = 512,
          device: DeviceLike = "auto", progress: ProgressLike = True) -> AlignResult:
    """Permute the hidden units of ``model_b`` to line up with ``model_a``.

    ``method="weight"``: Git Re-Basin weight matching; it uses only the weights, but deriving the spec
    traces one forward pass, so ``data`` (a few examples) is needed when the input shape cannot be inferred
    (MLPs, and CNNs whose first layer is a convolution that runs on a square input of side 8, 28, 32, 16,
    64 or 224, need none; see :func:`example_input`).  ``method="activation"``: correlation of activations
    on ``data`` (training data).  ``spec`` defaults to the one derived from ``model_a``.  The permuted copy
    is checked to compute B's function on a probe batch (an :class:`UnsupportedStructure` names the module
    otherwise).  Returns an :class:`AlignResult` (``.model_`` the permuted copy of B, ``.perms``).
    """
    model_a, model_b = as_model(model_a, name="model_a"), as_model(model_b, name="model_b")
    check_same_architecture(model_a, model_b)
    if data is not None:
        data = probe(model_a, data, name="data")
    dev = resolve_device(device)
    if spec is None:
        spec = permutation_spec(model_a, data)
    if method == "weight":
        dtype = torch.float64 if dev.type == "cpu" else torch.float32
        pa = {k: v.detach().to(dev, dtype) for k, v in model_a.named_parameters()}
        pb = {k: v.detach().to(dev, dtype) for k, v in model_b.named_parameters()}
        perms, hist = weight_matching(pa, pb, spec, max_iter=max_iter, seed=seed, progress=progress)
        history = pd.DataFrame(hist)
    elif method == "activation":
        if data is None:
            raise ValueError("method='activation' needs data= (training inputs whose activations are matched)")
        perms, _corr = activation_matching(copy.deepcopy(model_a), copy.deepcopy(model_b), data, spec,
                                           batch_size=batch_size, device=dev, progress=progress)
        history = pd.DataFrame()
    else:
        raise ValueError(f"method={method!r}; choose 'weight' or 'activation'")
    perms = {p: np.asarray(v) for p, v in perms.items()}
    permuted = permute(copy.deepcopy(model_b), perms, spec=spec)
    error = check_function_preserved(model_b, permuted, data)
    res = AlignResult(settings=dict(method=method, seed=seed, max_iter=max_iter, device=str(dev),
                                    perms=sorted(spec.sizes), function_error=error, variant=method),
                      perms=perms, history=history)
    res.model_ = permuted
    res.spec_ = spec
    return res
