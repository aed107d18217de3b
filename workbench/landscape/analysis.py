"""The one-call landscape analysis: a filter-normalised plane around the model and its curvature there
(top Hessian eigenvalues, Hutchinson trace, spectral density).  Definitions: ``docs/landscape.md``."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Optional

import pandas as pd
import torch.nn as nn

from ..backend import DeviceLike, resolve_device
from ..data import Dataset, as_dataset
from ..progress import Progress, ProgressLike
from ..results import Result
from ..validation import as_model
from .curvature import DensityResult, EigenResult, TraceResult, density, eigenvalues, trace
from .maps import LandscapeResult, as_splits, plane

__all__ = ["LandscapeReport", "analyze"]


@dataclasses.dataclass
class LandscapeReport(Result):
    """A plane around the model (``plane``) and, when computed, the curvature at the model: ``eigen`` (top
    eigenvalues), ``trace`` (Hutchinson) and ``density`` (stochastic Lanczos quadrature) of the Hessian of the
    training loss."""

    plane: Optional[LandscapeResult] = None
    eigen: Optional[EigenResult] = None
    trace: Optional[TraceResult] = None
    density: Optional[DensityResult] = None

    kind = "landscape-report"

    def to_frame(self) -> pd.DataFrame:
        return self.plane.to_frame() if self.plane is not None else pd.DataFrame()

    def findings(self):
        """The key numbers of the map and the curvature, each with a sentence (:mod:`workbench.findings`)."""
        from .findings import report_findings

        return report_findings(self)

    def curvature_frame(self) -> pd.DataFrame:
        """One row per top eigenvalue, with the trace estimate beside it (empty without curvature)."""
        if self.eigen is None:
            return pd.DataFrame(columns=["rank", "eigenvalue", "residual"])
        frame = self.eigen.to_frame()
        if self.trace is not None:
            frame["trace"], frame["trace_stderr"] = self.trace.trace, self.trace.stderr
        return frame


def _curvature_data(splits: Dict[str, Dataset], train_data: Any, examples: Optional[int], seed: int) -> Dataset:
    """The data the Hessian is taken on: ``train_data``, else the ``"train"`` split, else the first one
    (a seeded subset of ``examples`` of it when asked for)."""
    ds = as_dataset(train_data, "train_data") if train_data is not None else \
        splits.get("train", next(iter(splits.values())))
    return ds.subset(int(examples), seed=seed) if examples else ds


def analyze(model: nn.Module, data: Any = None, *, train_data: Any = None, loss_fn: Optional[Callable] = None,
            steps: Any = 21, span: Any = 1.0, norm: str = "filter", ignore: Optional[str] = "biasbn",
            bn: str = "eval", curvature: bool = True, k: int = 3, max_iter: int = 60, trace_vectors: int = 20,
            density_runs: int = 2, density_steps: int = 40, hessian_examples: Optional[int] = None,
            batch_size: int = 1024, device: DeviceLike = "auto", seed: int = 0,
            progress: ProgressLike = True) -> LandscapeReport:
    """A ``steps`` x ``steps`` loss map around ``model`` on every split of ``data`` (a data set or a dict of
    splits) and, with ``curvature=True``, the Hessian of the loss on the training data at the model.

    The plane is :func:`~.maps.plane` with seeded random directions normalised by ``norm``; the curvature
    uses ``train_data`` (default: the ``"train"`` split of ``data``, else its first split; ``hessian_examples``
    takes a seeded subset): the top ``k`` eigenvalues (Lanczos, ``max_iter`` products at most), the trace
    (``trace_vectors`` Rademacher vectors) and the spectral density (``density_runs`` x ``density_steps``).
    """
    model = as_model(model)
    if data is None:
        raise ValueError("landscape.analyze needs data: a data set or a dict of splits the map is evaluated on")
    splits = as_splits(data)
    dev = resolve_device(device)
    with Progress(4 if curvature else 1, "landscape", progress) as bar:
        res = plane(model, splits, loss_fn=loss_fn, steps=steps, span=span, norm=norm, ignore=ignore, seed=seed,
                    bn=bn, train_data=train_data, batch_size=batch_size, device=dev, progress=bar.stage("loss map"))
        bar.update()
        report = LandscapeReport(settings=dict(res.settings, variant=norm, seed=seed, curvature=curvature),
                                 plane=res)
        if curvature:
            hess = _curvature_data(splits, train_data, hessian_examples, seed)
            report.settings.update(hessian_data=hess.name, hessian_examples=len(hess))
            report.eigen = eigenvalues(model, hess, loss_fn=loss_fn, k=k, max_iter=max_iter, seed=seed,
                                       batch_size=batch_size, device=dev, progress=bar.stage("Hessian eigenvalues"))
            bar.update()
            report.trace = trace(model, hess, loss_fn=loss_fn, n_samples=trace_vectors, seed=seed,
                                 batch_size=batch_size, device=dev, progress=bar.stage("Hessian trace"))
            bar.update()
            report.density = density(model, hess, loss_fn=loss_fn, n_runs=density_runs, steps=density_steps,
                                     seed=seed, batch_size=batch_size, device=dev,
                                     progress=bar.stage("Hessian spectral density"))
            bar.update()
    return report
