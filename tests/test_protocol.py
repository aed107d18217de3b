"""The analysis protocol (docs/protocol.md), checked for all six analyses: the signature of ``analyze``, the
result type, its settings, ``to_frame``, the save/load round trip, progress and cancellation."""
import importlib
import inspect
import subprocess
import sys

import pandas as pd
import pytest
import torch

from workbench import data as wdata
from workbench import models
from workbench.progress import Cancelled
from workbench.results import Result

ANALYSES = ("spectra", "connectivity", "landscape", "pruning", "intrinsic_dimension", "topology")
RESULTS = {"spectra": "SpectraResult", "connectivity": "ConnectivityResult", "landscape": "LandscapeReport",
           "pruning": "RegimeMapResult", "intrinsic_dimension": "SearchResult", "topology": "TopologyReport"}


def _mlp(seed=0):
    return models.build("mlp", seed=seed, hidden=(8,))


@pytest.fixture(scope="module")
def digits_small():
    train, test = wdata.digits()
    return train.subset(120, seed=0), test.subset(60, seed=0)


def _call(name, digits_small):
    """``(subject, data, options)`` of a small, fast run of each analysis."""
    train, test = digits_small
    if name == "spectra":
        return _mlp(), None, {}
    if name == "connectivity":
        a, b = _mlp(0), _mlp(1)
        for m, s in ((a, 0), (b, 1)):
            models.train(m, train, epochs=1, seed=s, progress=False, device="cpu")
        return (a, b), test, dict(train_data=train, methods=("weight",), points=5, refine=0, run_layerwise=False)
    if name == "landscape":
        return _mlp(), {"train": train, "test": test}, dict(steps=3, k=1, max_iter=4, trace_vectors=2,
                                                             density_runs=1, density_steps=4)
    if name == "pruning":
        return _mlp(), test, dict(train_data=train, values=[1], densities=[0.5], retrain_epochs=1, points=3,
                                  refine=0, threads=1)
    if name == "intrinsic_dimension":
        return _mlp, test, dict(train_data=train, method="grid", dims=[4], seeds=1, epochs=1, baseline=0.5,
                                bootstrap=10, cache=False)
    from workbench import topology

    return topology.builtin("karate"), None, dict(epochs=2)


@pytest.mark.parametrize("name", ANALYSES)
def test_analyze_signature(name):
    mod = importlib.import_module(f"workbench.{name}")
    params = list(inspect.signature(mod.analyze).parameters.values())
    subject, data, rest = params[0], params[1], params[2:]
    assert subject.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and subject.default is inspect.Parameter.empty
    assert data.name == "data" and data.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and data.default is None
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in rest), [p.name for p in rest]
    defaults = {p.name: p.default for p in rest}
    assert defaults["device"] == "auto" and defaults["seed"] == 0 and defaults["progress"] is True
    if "train_data" in defaults:
        assert defaults["train_data"] is None
    assert inspect.signature(mod.analyze).return_annotation in (RESULTS[name], getattr(mod, RESULTS[name]))


@pytest.mark.parametrize("name", ANALYSES)
def test_analyze_result_settings_frame_round_trip_and_progress(name, digits_small, tmp_path):
    mod = importlib.import_module(f"workbench.{name}")
    subject, data, options = _call(name, digits_small)
    calls = []
    res = mod.analyze(subject, data, device="cpu", seed=0, progress=lambda d, t, s: calls.append((d, t, s)),
                      **options)
    assert type(res).__name__ == RESULTS[name] and isinstance(res, Result)
    assert {"device", "seed", "variant"} <= set(res.settings)
    assert res.settings["seed"] == 0 and "cpu" in str(res.settings["device"])
    frame = res.to_frame()
    assert isinstance(frame, pd.DataFrame) and len(frame) > 0
    back = Result.load(res.save(tmp_path / name))
    assert type(back) is type(res) and back.settings["variant"] == res.settings["variant"]
    pd.testing.assert_frame_equal(back.to_frame().reset_index(drop=True), frame.reset_index(drop=True),
                                  check_dtype=False)
    # one overall progress: reported at least at the start and the end, never backwards, ending full
    fractions = [d / t for d, t, _ in calls if t]
    assert len(calls) >= 2 and fractions == sorted(fractions)
    assert fractions[-1] == pytest.approx(1.0) and all(isinstance(s, str) for _, _, s in calls)


@pytest.mark.parametrize("name", ANALYSES)
def test_analyze_cancels_cleanly(name, digits_small):
    mod = importlib.import_module(f"workbench.{name}")
    subject, data, options = _call(name, digits_small)
    seen = []

    def cancel_after_first(done, total, desc):
        seen.append(done)
        if len(seen) > 1:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        mod.analyze(subject, data, device="cpu", progress=cancel_after_first, **options)


@pytest.mark.parametrize("name", ANALYSES)
def test_figures_are_listed_and_imported_lazily(name):
    mod = importlib.import_module(f"workbench.{name}.figures")
    assert mod.__all__ and all(callable(getattr(mod, f)) for f in mod.__all__)
    assert not any(f.endswith("_figure") for f in mod.__all__)  # one naming scheme: figures.<noun>
    code = (f"import sys, workbench.{name} as m; m.analyze; "
            "print(sorted(k for k in ('plotly', 'ipywidgets') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_spectra_refuses_data():
    from workbench import spectra

    with pytest.raises(ValueError, match="data=None"):
        spectra.analyze(_mlp(), (torch.zeros(2, 64), torch.zeros(2, dtype=torch.long)), progress=False)


def test_connectivity_takes_the_pair_as_subject(digits_small):
    from workbench import connectivity

    with pytest.raises(TypeError, match=r"analyze\(\(model_a, model_b\), data"):
        connectivity.analyze(_mlp(), digits_small[1])


def test_building_blocks_follow_the_conventions():
    """The subject first, then data, then keyword-only options (docs/protocol.md)."""
    from workbench import connectivity, intrinsic_dimension, landscape, pruning, spectra

    blocks = [(landscape.plane, 1), (landscape.line, 1), (landscape.interpolate, 2), (landscape.eigenvalues, 1),
              (landscape.trace, 1), (landscape.density, 1), (landscape.layerwise, 1), (landscape.eigen_slice, 1),
              (connectivity.barrier, 2), (connectivity.layerwise, 2), (connectivity.align, 2),
              (intrinsic_dimension.subspace_train, 1), (intrinsic_dimension.profile, 1),
              (pruning.finetune, 1), (pruning.scratch, 1), (pruning.compare_baselines, 1),
              (pruning.iterative_prune, 1), (spectra.compress, 1)]
    for fn, n_subjects in blocks:
        params = list(inspect.signature(fn).parameters.values())
        assert params[n_subjects].name == "data", fn.__name__
        assert all(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in params[n_subjects + 1:]), fn.__name__
        if "progress" in inspect.signature(fn).parameters:
            assert inspect.signature(fn).parameters["progress"].default is True, fn.__name__
