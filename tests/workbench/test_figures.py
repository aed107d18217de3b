"""Every figure function of every analysis, on small real results: axis titles, annotations inside their
axes (log axes included), hover on every trace, the workbench template, and purity (a figure never
changes the result it draws)."""
from __future__ import annotations

import copy
import dataclasses
import importlib
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from workbench import data as wdata
from workbench import models

ANALYSES = ("spectra", "connectivity", "landscape", "pruning", "intrinsic_dimension", "topology")


# ------------------------------------------------------------------------------------------ results
def _digits():
    train, test = wdata.digits()
    return train.subset(300, seed=0), test.subset(200, seed=0)


def _trained(seed, train, hidden=(16,), epochs=2):
    m = models.build("mlp", seed=seed, hidden=hidden)
    models.train(m, train, epochs=epochs, seed=seed, progress=False, device="cpu")
    return m


def build_spectra():
    from workbench import spectra

    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(200, 120), nn.ReLU(), nn.Linear(120, 16), nn.ReLU(), nn.Linear(16, 10))
    with torch.no_grad():
        m[0].weight.mul_(30.0)  # eigenvalues in the hundreds: a label at x_min in raw units would sit at 1e600
    res = spectra.analyze(m, progress=False, bootstrap=30, device="cpu")
    return {"result": res, "plan": spectra.welore(res, reduction=0.3)}


def build_connectivity(train, test, a, b):
    from workbench import connectivity as lmc

    res = lmc.analyze((a, b), test, train_data=train, points=5, refine=0, layer_points=3, device="cpu",
                      progress=False)
    bars = [lmc.barrier(a, b, test, train_data=train, points=5, refine=0, device="cpu", progress=False),
            lmc.barrier(b, a, test, train_data=train, points=5, refine=0, device="cpu", progress=False)]
    lw = lmc.layerwise(a, b, test, points=3, device="cpu", progress=False)
    return {"result": res, "barrier": bars[0], "summary": lmc.summarize(bars), "layerwise": lw}


def build_landscape(train, test, a, b):
    from workbench import landscape as L

    splits = {"train": train, "test": test}
    rep = L.analyze(a, splits, steps=5, k=4, max_iter=8, trace_vectors=4, density_runs=1, density_steps=8,
                    device="cpu", progress=False)
    return {"report": rep,
            "line": L.line(a, splits, steps=5, device="cpu", progress=False),
            "path": L.interpolate(a, b, splits, steps=5, device="cpu", progress=False),
            "slice": L.eigen_slice(a, {"train": train}, eigen=rep.eigen, steps=5, device="cpu", progress=False),
            "layers": L.layerwise(a, train, k=2, n_samples=4, max_iter=8, density=True, density_runs=1,
                                  density_steps=8, device="cpu", progress=False)}


def build_pruning(train, test):
    from workbench import pruning

    res = pruning.analyze(models.build("mlp", seed=0, hidden=(8,)), test, train_data=train, values=[1, 2],
                          densities=[0.2, 0.6], dense_epochs=1, retrain_epochs=1, points=3, refine=0, threads=1,
                          device="cpu", progress=False)
    dense = _trained(0, train, hidden=(8,), epochs=1)
    mask = pruning.prune(dense, 0.3).mask
    base = pruning.compare_baselines(dense, test, mask=mask, train_data=train.subset(100, seed=0), epochs=1,
                                     max_factor=1.0, seeds=(0, 1), device="cpu", progress=False)
    return {"result": res, "baselines": base}


def build_intrinsic_dimension(train, a):
    import workbench.intrinsic_dimension as I

    tiny = train.subset(200, seed=1)
    search = I.analyze(lambda s: models.build("mlp", seed=s, hidden=(16,)), tiny, method="grid", dims=[2, 40, 100, 300],
                       rounds=0, projection="dense", seeds=2, epochs=4, batch_size=32, baseline=0.6, bootstrap=100,
                       cache=False, device="cpu", progress=False)
    rng = np.random.default_rng(0)
    z = rng.standard_normal((600, 3))
    est = I.twonn((z / np.linalg.norm(z, axis=1, keepdims=True)) @ rng.standard_normal((3, 20)))
    cost = pd.DataFrame([{"projection": p, "d": d, "seconds": s * d ** 0.5, "bytes": b * d}
                         for p, s, b in (("dense", 2e-4, 8e4), ("fastfood", 5e-4, 4e3)) for d in (10, 100, 1000)])
    return {"search": search, "profile": I.profile(a, train, n=200, progress=False, device="cpu"), "twonn": est,
            "cost": cost}


def build_topology():
    from workbench import topology as tp

    graph = tp.builtin("karate")
    split = tp.split_edges(graph, seed=0)
    rep = tp.analyze(graph, k=2, model="cn", seed=0, device="cpu", progress=False)
    return {"report": rep, "tc": tp.concentration(split, k=2, device="cpu"),
            "tcs": [tp.concentration(split, k=k, device="cpu") for k in (1, 2, 3)]}


def build_all():
    """``{analysis: {name: result}}``: one small result of every kind the figures draw."""
    train, test = _digits()
    a, b = _trained(0, train), _trained(1, train)
    return {"spectra": build_spectra(), "connectivity": build_connectivity(train, test, a, b),
            "landscape": build_landscape(train, test, a, b), "pruning": build_pruning(train, test),
            "intrinsic_dimension": build_intrinsic_dimension(train, a), "topology": build_topology()}


def _with_gaps(plane):
    """The plane with two test-loss cells made NaN and a short trajectory (a map with missing values)."""
    loss = {k: v.copy() for k, v in plane.loss.items()}
    loss["test"][0, :2] = np.nan
    path = np.array([[-0.8, -0.6], [-0.4, -0.3], [0.0, 0.0]])
    return dataclasses.replace(plane, loss=loss, trajectory=path)


# ------------------------------------------------------------------------------------------ cases
def _fig(module):
    return importlib.import_module(f"workbench.{module}.figures")


#: (module, function, case, figure from the results); every function of every ``__all__`` is covered.
CASES = [
    ("spectra", "esd", "large eigenvalues", lambda R: _fig("spectra").esd(R["spectra"]["result"], 0)),
    ("spectra", "esd", "small sample", lambda R: _fig("spectra").esd(R["spectra"]["result"], "2.weight")),
    ("spectra", "alpha", "", lambda R: _fig("spectra").alpha(R["spectra"]["result"])),
    ("spectra", "metric", "", lambda R: _fig("spectra").metric(R["spectra"]["result"], "log_spectral_norm")),
    ("spectra", "welore", "", lambda R: _fig("spectra").welore(R["spectra"]["plan"])),
    ("connectivity", "curves", "analysis", lambda R: _fig("connectivity").curves(R["connectivity"]["result"])),
    ("connectivity", "curves", "one pair", lambda R: _fig("connectivity").curves(R["connectivity"]["barrier"])),
    ("connectivity", "barrier_table", "", lambda R: _fig("connectivity").barrier_table(R["connectivity"]["result"])),
    ("connectivity", "layerwise", "analysis", lambda R: _fig("connectivity").layerwise(R["connectivity"]["result"])),
    ("connectivity", "layerwise", "block", lambda R: _fig("connectivity").layerwise(R["connectivity"]["layerwise"])),
    ("connectivity", "diagnostics", "", lambda R: _fig("connectivity").diagnostics(R["connectivity"]["result"])),
    ("connectivity", "summary", "", lambda R: _fig("connectivity").summary(R["connectivity"]["summary"])),
    ("landscape", "contour", "log", lambda R: _fig("landscape").contour(R["landscape"]["report"].plane, log=True)),
    ("landscape", "contour", "fixed levels, gaps", lambda R: _fig("landscape").contour(
        _with_gaps(R["landscape"]["report"].plane), split="test", log=True, zmin=0.2, zmax=0.5)),
    ("landscape", "contour", "accuracy", lambda R: _fig("landscape").contour(R["landscape"]["report"].plane,
                                                                             metric="accuracy")),
    ("landscape", "surface", "log", lambda R: _fig("landscape").surface(R["landscape"]["report"].plane, log=True)),
    ("landscape", "slices", "", lambda R: _fig("landscape").slices(R["landscape"]["report"].plane, log=True)),
    ("landscape", "curve", "line", lambda R: _fig("landscape").curve(R["landscape"]["line"])),
    ("landscape", "curve", "interpolation", lambda R: _fig("landscape").curve(R["landscape"]["path"], log=True)),
    ("landscape", "curve", "eigen slice", lambda R: _fig("landscape").curve(R["landscape"]["slice"])),
    ("landscape", "spectrum", "density", lambda R: _fig("landscape").spectrum(
        R["landscape"]["report"].density, R["landscape"]["report"].eigen, trace=R["landscape"]["report"].trace)),
    ("landscape", "spectrum", "eigenvalues only", lambda R: _fig("landscape").spectrum(
        eigen=R["landscape"]["report"].eigen)),
    ("landscape", "spectrum", "block", lambda R: _fig("landscape").spectrum(
        R["landscape"]["layers"].density_result("head"), log=False)),
    ("landscape", "layerwise", "", lambda R: _fig("landscape").layerwise(R["landscape"]["layers"])),
    ("pruning", "heatmap", "test error", lambda R: _fig("pruning").heatmap(R["pruning"]["result"])),
    ("pruning", "heatmap", "mc", lambda R: _fig("pruning").heatmap(R["pruning"]["result"], "mc")),
    ("pruning", "regimes", "", lambda R: _fig("pruning").regimes(R["pruning"]["result"])),
    ("pruning", "baselines", "", lambda R: _fig("pruning").baselines(R["pruning"]["baselines"])),
    ("intrinsic_dimension", "search", "", lambda R: _fig("intrinsic_dimension").search(
        R["intrinsic_dimension"]["search"])),
    ("intrinsic_dimension", "search", "interval", lambda R: _fig("intrinsic_dimension").search(
        dataclasses.replace(R["intrinsic_dimension"]["search"], interval=(60.0, 100.0)))),
    ("intrinsic_dimension", "comparison", "", lambda R: _fig("intrinsic_dimension").comparison(
        {"digits": R["intrinsic_dimension"]["search"]})),
    ("intrinsic_dimension", "profile", "", lambda R: _fig("intrinsic_dimension").profile(
        R["intrinsic_dimension"]["profile"])),
    ("intrinsic_dimension", "twonn", "", lambda R: _fig("intrinsic_dimension").twonn(
        R["intrinsic_dimension"]["twonn"])),
    ("intrinsic_dimension", "projection_cost", "", lambda R: _fig("intrinsic_dimension").projection_cost(
        R["intrinsic_dimension"]["cost"])),
    ("topology", "scatter", "", lambda R: _fig("topology").scatter(R["topology"]["report"])),
    ("topology", "correlations", "", lambda R: _fig("topology").correlations(R["topology"]["report"])),
    ("topology", "distributions", "report", lambda R: _fig("topology").distributions(R["topology"]["report"])),
    ("topology", "distributions", "TC", lambda R: _fig("topology").distributions(R["topology"]["tc"])),
    ("topology", "shift", "", lambda R: _fig("topology").shift(R["topology"]["tc"])),
    ("topology", "graph", "", lambda R: _fig("topology").graph(R["topology"]["report"].train_edges,
                                                               R["topology"]["tc"].train)),
    ("topology", "overview", "", lambda R: _fig("topology").overview(R["topology"]["report"], split="test")),
    ("topology", "tc_by_hops", "", lambda R: _fig("topology").tc_by_hops(R["topology"]["tcs"], split="test")),
]
IDS = [f"{m}.{f}" + (f"[{c}]" if c else "") for m, f, c, _ in CASES]


@pytest.fixture(scope="module")
def results():
    return build_all()


@pytest.fixture(scope="module")
def figures_of(results):
    return {i: make(results) for i, (_, _, _, make) in zip(IDS, CASES)}


@pytest.mark.parametrize("name", ANALYSES)
def test_every_figure_function_is_covered(name):
    listed = set(_fig(name).__all__)
    covered = {f for m, f, _, _ in CASES if m == name}
    assert listed <= covered, f"figures of {name} without a case in CASES: {sorted(listed - covered)}"
    assert covered <= listed, f"cases for functions not in {name}.figures.__all__: {sorted(covered - listed)}"


# ------------------------------------------------------------------------------------------ checks
CARTESIAN = {"scatter", "scattergl", "bar", "histogram", "heatmap", "contour"}
IDENTIFIER = re.compile(r"[a-z0-9]+(_[a-z0-9]+)+")  # a bare code name such as num_evals or tc_test


def _axis(fig, ref):
    ref = ref.split()[0]
    return fig.layout[f"{ref[0]}axis{ref[1:]}"]


def _numbers(values):
    """The finite numbers among ``values``; None when they are categories (strings)."""
    flat = [v for v in np.asarray(values, dtype=object).ravel() if v is not None]
    if any(isinstance(v, str) for v in flat):
        return None
    f = np.array([float(v) for v in flat], dtype=float)
    return f[np.isfinite(f)]


def _trace_values(trace, letter):
    values = trace[letter] if letter in trace else None
    if values is None and trace.type in ("heatmap", "contour") and trace.z is not None:
        z = np.asarray(trace.z)
        values = np.arange(z.shape[1] if letter == "x" else z.shape[0]) if z.ndim == 2 else None
    return values


def _data_range(fig, ref):
    """(lo, hi) of axis ``ref`` as drawn: its own range if set, else the traces' and shapes' data, in log10
    units on a log axis; None for a categorical axis or one without data."""
    axis, letter = _axis(fig, ref), ref[0]
    if axis.range is not None and None not in axis.range:
        return min(axis.range), max(axis.range)
    found = []
    for t in fig.data:
        if t.type in CARTESIAN and (t[f"{letter}axis"] or letter) == ref:
            values = _trace_values(t, letter)
            if values is None:
                continue
            v = _numbers(values)
            if v is None:
                return None  # a categorical axis
            found.append(v)
    for s in fig.layout.shapes:
        if s[f"{letter}ref"] == ref:
            found.append(np.array([s[f"{letter}0"], s[f"{letter}1"]], dtype=float))
    v = np.concatenate(found) if found else np.zeros(0)
    if not v.size:
        return None
    if axis.type == "log":
        assert (v > 0).all(), f"non-positive values on log axis {ref}: {v[v <= 0]}"
        v = np.log10(v)
    return float(v.min()), float(v.max())


def _axes_in_use(fig):
    """Layout names of the axes some trace draws on (``xaxis``, ``yaxis2``, ``scene.zaxis`` ...)."""
    used = set()
    for t in fig.data:
        if t.type in CARTESIAN:
            used |= {t.xaxis or "x", t.yaxis or "y"}
        elif t.type in ("surface", "scatter3d"):
            used |= {f"{t.scene or 'scene'}.{a}" for a in ("xaxis", "yaxis", "zaxis")}
    return used


def _axis_title(fig, ref):
    if "." in ref:
        scene, axis = ref.split(".")
        return fig.layout[scene][axis].title.text, True
    axis = _axis(fig, ref)
    if axis.visible is False:
        return "hidden", False
    if axis.matches and axis.showticklabels is False:  # a shared axis: titled on the one it matches
        return _axis(fig, axis.matches).title.text, True
    return axis.title.text, True


def _check_position(fig, value, ref, what):
    if ref in ("paper",) or ref.endswith("domain"):
        assert -0.15 <= value <= 1.15, f"{what} at {value} in {ref} coordinates"
        return
    rng = _data_range(fig, ref)
    if rng is None:
        return
    lo, hi = rng
    pad = 0.05 * (hi - lo) + 1e-9 * max(1.0, abs(hi))
    assert lo - pad <= value <= hi + pad, f"{what} at {value} outside axis {ref} range [{lo:.4g}, {hi:.4g}]"


def _hover_ok(trace):
    if trace.type == "table":
        return trace.hoverinfo == "skip"
    return bool(trace.hovertemplate) or trace.hoverinfo not in (None, "all")


@pytest.mark.parametrize("case", IDS)
def test_figure_reads_well(case, figures_of):
    import plotly.io as pio

    from workbench import plotting

    fig = figures_of[case]
    # the workbench look: its template, sized by the container (no fixed width), a height per figure
    assert fig.layout.template.to_plotly_json() == pio.templates[plotting.TEMPLATE].to_plotly_json()
    assert fig.layout.width is None and fig.layout.autosize is True and fig.layout.height
    assert fig.layout.title.text and not IDENTIFIER.fullmatch(fig.layout.title.text)
    assert "new text" not in fig.to_json()
    # a subtitle's plain lines fit a half-width figure (plotly cuts a long title line at the edge)
    sub = fig.layout.title.subtitle.text or ""
    for line in sub.split("<br>"):
        assert "<" in line or len(line) <= plotting.SUBTITLE_CHARS, f"{case}: subtitle line too long: {line!r}"
    # every axis a trace draws on has a readable title (no bare code names)
    for ref in sorted(_axes_in_use(fig)):
        title, shown = _axis_title(fig, ref)
        if shown:
            assert title and title.strip(), f"{case}: axis {ref} has no title"
            assert not IDENTIFIER.fullmatch(title), f"{case}: axis {ref} is titled with a code name {title!r}"
    # every trace names its values on hover (or is a decoration that skips hover)
    for t in fig.data:
        assert _hover_ok(t), f"{case}: trace {t.name!r} ({t.type}) has plotly's default hover"
    # annotations lie inside their axes, in log10 units on log axes, and carry text
    for a in fig.layout.annotations:
        assert a.text and a.text.strip() != "new text", f"{case}: empty annotation"
        _check_position(fig, a.x, a.xref or "x", f"{case}: annotation {a.text!r} x")
        _check_position(fig, a.y, a.yref or "y", f"{case}: annotation {a.text!r} y")
    # no log axis stretched over more than 40 decades (by an annotation or anything else)
    for name in [k for k in fig.layout.to_plotly_json() if re.fullmatch(r"[xy]axis\d*", k)]:
        if fig.layout[name].type == "log":
            ref = name[0] + name[5:]
            lo, hi = _data_range(fig, ref) or (0.0, 0.0)
            for a in fig.layout.annotations:
                if (a.xref if ref[0] == "x" else a.yref) == ref:
                    v = a.x if ref[0] == "x" else a.y
                    lo, hi = min(lo, v), max(hi, v)
            assert hi - lo <= 40, f"{case}: log axis {ref} spans {hi - lo:.0f} decades"


# ------------------------------------------------------------------------------------------ specific values
def _annotation(fig, start):
    found = [a for a in fig.layout.annotations if a.text.startswith(start)]
    assert len(found) == 1, [a.text for a in fig.layout.annotations]
    return found[0]


def test_labels_on_log_axes_sit_by_their_lines(results, figures_of):
    row = results["spectra"]["result"].table.iloc[0]
    fig = figures_of["spectra.esd[large eigenvalues]"]
    assert row["xmin"] > 100  # in raw units the label would sit at 10**xmin
    a = _annotation(fig, "x_min")
    assert a.x == pytest.approx(math.log10(row["xmin"])) and a.xref == "x"
    assert [s.x0 for s in fig.layout.shapes] == [row["xmin"]]  # the line itself is in data units
    search = results["intrinsic_dimension"]["search"]
    assert search.reached
    fig = figures_of["intrinsic_dimension.search[interval]"]
    assert _annotation(fig, "d_int90").x == pytest.approx(math.log10(search.d_int90))
    assert _annotation(fig, "95 % bootstrap").x == pytest.approx(math.log10(60.0))


def test_vline_and_hline_place_labels_in_axis_coordinates():
    import plotly.graph_objects as go

    from workbench import plotting

    fig = go.Figure(go.Scatter(x=[1.0, 1e4], y=[1.0, 2.0]))
    fig.update_xaxes(type="log")
    plotting.vline(fig, 500.0, "at 500")
    plotting.hline(fig, 1.5, "at 1.5")
    assert [a.x for a in fig.layout.annotations][0] == pytest.approx(math.log10(500.0))
    assert fig.layout.annotations[1].y == 1.5 and fig.layout.annotations[1].xref == "x domain"
    assert fig.layout.shapes[0].x0 == 500.0
    plotting.vline(fig, 7.0)  # no label: no annotation, no placeholder text
    assert len(fig.layout.annotations) == 2
    with pytest.raises(ValueError, match="positive value"):
        plotting.vline(fig, 0.0, "zero")


def test_log_ticks_label_values_at_log_positions():
    from workbench.plotting import log_ticks

    assert log_ticks(0.0, 2.0) == ([0.0, 1.0, 2.0], ["1", "10", "100"])
    pos, text = log_ticks(math.log10(0.02), math.log10(0.9))  # under two decades: 1-3 or 1-2-5 mantissas
    assert [float(t) for t in text] == pytest.approx([10 ** p for p in pos]) and len(pos) >= 3
    pos, text = log_ticks(math.log10(2.21), math.log10(2.34))  # narrow: evenly spaced losses
    assert len(pos) >= 3 and all(math.log10(2.21) <= p <= math.log10(2.34) for p in pos)
    assert [float(t) for t in text] == pytest.approx([10 ** p for p in pos], rel=1e-9)
    assert log_ticks(-20.0, 20.0)[0] == sorted(log_ticks(-20.0, 20.0)[0]) and len(log_ticks(-20.0, 20.0)[0]) <= 8
    assert log_ticks(1.0, 1.0) == ([], [])


def test_log_colour_bar_is_labelled_in_losses(results, figures_of):
    plane = results["landscape"]["report"].plane
    fig = figures_of["landscape.contour[log]"]
    c = fig.data[0]
    np.testing.assert_allclose(np.asarray(c.z, float), np.log10(plane.loss["test"]))  # the data: log10 loss
    bar = c.colorbar
    assert bar.tickvals and all(c.zmin - 1e-9 <= v <= c.zmax + 1e-9 for v in bar.tickvals)
    assert [float(t) for t in bar.ticktext] == pytest.approx([10 ** v for v in bar.tickvals], rel=1e-6)
    assert "loss (cross-entropy)" in bar.title.text and "log" in bar.title.text
    fixed = figures_of["landscape.contour[fixed levels, gaps]"]
    assert fixed.data[0].zmin == 0.2 and fixed.data[0].zmax == 0.5
    assert all(0.2 <= v <= 0.5 for v in fixed.data[0].colorbar.tickvals)
    bad = [t for t in fixed.data if t.name == "NaN / inf"][0]
    assert len(bad.x) == 2 and bad.showlegend


def test_small_samples_are_marked(results, figures_of):
    from workbench.spectra.figures import SMALL_SAMPLE

    t = results["spectra"]["result"].table
    fit = figures_of["spectra.esd[small sample]"].data[1]
    assert int(t.set_index("name").loc["2.weight", "num_pl_spikes"]) < SMALL_SAMPLE
    assert "small sample" in fit.name and "small sample" in fit.hovertemplate
    alpha = figures_of["spectra.alpha"]
    small = (t["num_pl_spikes"] < SMALL_SAMPLE) & t["alpha"].notna()
    assert list(alpha.data[0].marker.symbol) == ["circle-open" if s else "circle" for s in small]
    assert any("small sample" in (d.name or "") for d in alpha.data[1:])
    assert "rough: only 4 random vectors" in figures_of["landscape.spectrum[density]"].layout.title.subtitle.text
    assert "small sample" in figures_of["topology.scatter"].layout.title.subtitle.text  # 21 test nodes
    assert "few seeds" in figures_of["intrinsic_dimension.search"].layout.title.subtitle.text


def test_roles_keep_their_colours(figures_of):
    from workbench.plotting import ROLE

    curves = figures_of["connectivity.curves[analysis]"]
    colours = {t.name: t.line.color for t in curves.data}
    assert colours["aligned by weights, test"] == ROLE["aligned_weight"]
    assert colours["aligned by activations, train"] == ROLE["aligned_activation"]
    assert colours["as trained, test"] == ROLE["model_b"]
    assert {t.line.dash for t in curves.data if t.name.endswith("train")} == {"dash"}
    line = figures_of["landscape.curve[interpolation]"]
    assert {t.line.color for t in line.data if "test" in t.name} == {ROLE["test"]}
    dist = figures_of["topology.distributions[TC]"]
    assert [t.marker.color for t in dist.data] == [ROLE["train"], ROLE["val"], ROLE["test"]]
    scale = [c for _, c in figures_of["pruning.regimes"].data[0].colorscale]
    assert {ROLE["I"], ROLE["II-A"], ROLE["II-B"]} <= set(scale)


def test_plotly_is_imported_only_by_figures_and_plotting():
    import pathlib

    import workbench

    root = pathlib.Path(workbench.__file__).parent
    importing = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                       if re.search(r"^\s*(import|from)\s+plotly", p.read_text(), re.M))
    assert importing and all(p.endswith("figures.py") or p == "plotting.py" for p in importing), importing


# ------------------------------------------------------------------------------------------ purity
def _same(a, b, where="result"):
    """Assert that two results (or parts of them) hold the same data."""
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        assert type(a) is type(b), where
        for f in dataclasses.fields(a):
            _same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, obj=where)
    elif isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b, obj=where)
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b, where


def test_figures_do_not_change_the_results_they_draw(results):
    before = copy.deepcopy(results)
    first = [make(results).to_json() for _, _, _, make in CASES]
    _same(results, before)
    again = [make(results).to_json() for _, _, _, make in CASES]
    for name, a, b in zip(IDS, first, again):  # and the same figure every time
        assert a == b, name
