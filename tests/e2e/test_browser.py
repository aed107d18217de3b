"""The panels in a real browser: JupyterLab on 127.0.0.1, Debian's chromium driven by Playwright.

* the tour notebook: all cells run without an error, and its spectra panel runs twice (a new model the
  second time) with the figure changed and no error shown; it is started first and runs while the
  panels are operated in a second page, so the file takes about as long as the longer of the two;
* a notebook written for this test shows all six panels with small settings; each is run, a control
  changed and run again, given a bad input (named in the error area, nothing runs) and a run cancelled.
  After every successful run every figure of the panel has traces drawn in the page and the error area is
  empty.  A screenshot of each panel goes to ``$WORKBENCH_E2E_DIR`` (default ``.e2e/`` in the checkout).

Without chromium or Playwright the tests are skipped, except in CI (``CI=true``, as CI services set it) or
with ``WORKBENCH_E2E_REQUIRED=1``, where they fail instead: there the browser test must run.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRED = os.environ.get("WORKBENCH_E2E_REQUIRED", "") not in ("", "0") or \
    os.environ.get("CI", "").lower() in ("true", "1")
SHOTS = Path(os.environ.get("WORKBENCH_E2E_DIR", ROOT / ".e2e"))
# an error output in JupyterLab: a traceback (or "SomethingError: ...") on the stderr mime type
ERROR_OUTPUT_JS = """() => [...document.querySelectorAll(
        ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")]
    .map(e => e.textContent).filter(t => t.includes('Traceback') || t.includes('Error'))"""
# every figure of a panel: its trace count in plotly, the traces drawn in the page, any empty-state note
FIGURES_JS = """(panel) => [...panel.querySelectorAll('.wb-figure .js-plotly-plot')].map(el => ({
    traces: (el._fullData || []).length,
    drawn: el.querySelectorAll('.trace, .hm, .contour, .gl-container canvas, .scene').length,
    note: (el._fullData || []).length ? '' : (((el._fullLayout || {}).annotations || [])[0] || {}).text || '',
    signature: JSON.stringify([(el.data || []).map(t => [t.name, (t.y || t.z || []).length,
                                                       JSON.stringify([t.x, t.z || t.y, t.text]).slice(0, 300)]),
                               ((el.layout || {}).title || {}).text || '']),
}))"""

SETUP = """\
import torch
torch.set_num_threads(1)
from workbench import data
from widgets.connectivity import ConnectivityPanel
from widgets.intrinsic_dimension import IntrinsicDimensionPanel
from widgets.landscape import LandscapePanel
from widgets.pruning import PruningPanel
from widgets.spectra import SpectraPanel
from widgets.topology import TopologyPanel
train, test = data.digits()
small = {"train": train.subset(300, seed=0), "test": test.subset(150, seed=0)}"""

# per panel: the cell that shows it, a control to change before the second run, a bad input and the error it
# gives, and the settings of a run long enough to cancel.  (control, value): a text box is typed into, a
# dropdown chosen by its label, a checkbox set.
PANELS = [
    dict(title="Low-rank spectra", shot="spectra-panel.png", states="spectra",
         cell='SpectraPanel(model="mlp", bootstrap=0, device="cpu")',
         change=[("model", "cnn")], bad=("bootstrap", "-5", "bootstrap resamples: must be int >= 0"),
         slow=[("model", "minilm"), ("bootstrap", "300")]),
    dict(title="Linear mode connectivity", shot="connectivity-panel.png",
         cell='ConnectivityPanel(source="reference", points=9, activation=False, device="cpu")',
         change=[("activation", True)], bad=("points", "2", "path points: must be int >= 3"),
         slow=[("source", "train two here"), ("epochs", "20")]),
    dict(title="Loss landscape", shot="landscape-panel.png", states="landscape",
         cell='LandscapePanel(model="mlp", data=small, steps=5, span=0.5, hessian=True, max_iter=8, device="cpu")',
         change=[("steps", "7")], bad=("steps", "4", "grid steps: must be odd int >= 3"),
         slow=[("steps", "61")]),
    dict(title="Pruning regimes", shot="pruning-panel.png",
         cell='PruningPanel(model="mlp", data=small["test"], train_data=small["train"], values="1", '
              'densities="0.1, 0.5", retrain_epochs=1, points=5)',
         change=[("densities", "0.2, 0.5")], bad=("densities", "0.1, 2", "densities: must be list of float in (0, 1]"),
         slow=[("values", "1, 2, 4"), ("retrain_epochs", "20")]),
    dict(title="Intrinsic dimension", shot="intrinsic-dimension-panel.png",
         cell='IntrinsicDimensionPanel(seeds=1, epochs=1, d_min=10, d_max=60, n_train=300, method="grid", '
              'grid_points=3, estimator="mle")',
         change=[("projection", "sparse")], bad=("threshold", "1.5", "threshold: must be float in (0, 1]"),
         slow=[("epochs", "30"), ("seeds", "3")]),
    dict(title="Topological concentration", shot="topology-panel.png",
         cell='TopologyPanel(model="cn", k=1)',
         change=[("k", "2")], bad=("k", "0", "K (hops): must be int >= 1"),
         slow=[("graph_name", "sbm"), ("nodes", "3000"), ("model", "GCN"), ("epochs", "300")]),
]


T0 = time.perf_counter()


def _log(message: str) -> None:
    """A timeline of the run (shown by pytest when a test fails, or with -s)."""
    print(f"[{time.perf_counter() - T0:6.1f} s] {message}", flush=True)


def _missing(reason: str):
    if REQUIRED:
        pytest.fail(f"{reason}; the browser test is required here (CI / WORKBENCH_E2E_REQUIRED)", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _panels_notebook(path: Path) -> None:
    import nbformat

    cells = [nbformat.v4.new_code_cell(SETUP)] + [nbformat.v4.new_code_cell(p["cell"]) for p in PANELS]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                        "display_name": "Python 3"}})
    nbformat.write(nb, str(path))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if CHROMIUM is None:
        _missing("Debian's chromium is not installed (scripts/e2e-setup.sh installs it)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("Playwright is not installed (pip install -e '.[e2e]')")
    nbdir = tmp_path_factory.mktemp("lab")
    shutil.copy(ROOT / "notebooks" / "tour.ipynb", nbdir / "tour.ipynb")
    _panels_notebook(nbdir / "panels.ipynb")
    port, token = _free_port(), "workbench-e2e"
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(nbdir / ".jupyter"), PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={nbdir}", "--ServerApp.open_browser=False",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],
        cwd=str(nbdir), env=env, stdout=subprocess.DEVNULL, stderr=open(nbdir / "lab.log", "w"))
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        if proc.poll() is not None:
            break
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            break
        except Exception:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("JupyterLab did not start:\n" + (nbdir / "lab.log").read_text()[-3000:])
    yield url, token
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                               args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                     "--enable-unsafe-swiftshader"])
        yield b
        b.close()


def _open(browser, lab, notebook: str):
    """A page (its own browser context and JupyterLab workspace) loading ``notebook``."""
    url, token = lab
    _log(f"{notebook}: opening")
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(f"{url}/lab/workspaces/{Path(notebook).stem}/tree/{notebook}?token={token}", wait_until="commit")
    return page


def _start(page, notebook: str) -> None:
    """Run all cells of the notebook in ``page`` (:func:`_wait_all_ran` waits for them)."""
    page.wait_for_selector(".jp-Notebook", state="visible")
    accept = page.locator(".jp-Dialog .jp-mod-accept")  # "Select Kernel" on first open
    try:
        accept.wait_for(timeout=20_000)
        accept.click()
    except Exception:
        pass
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", state="attached")
    news = page.get_by_role("button", name="No", exact=True)  # the news prompt, if shown
    if news.count():
        news.first.click()
    _log(f"{notebook}: kernel idle, running all cells")
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name=re.compile("^Run All Cells")).click()


def _wait_all_ran(page, notebook: str) -> None:
    # all cells done (every code cell has an execution count), or a cell failed: after an error
    # JupyterLab runs no further cells, so their prompts would never get a number
    page.wait_for_function(
        """() => {
            const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
                .map(p => p.textContent.trim());
            return (prompts.length > 0 && prompts.every(t => /^\\[\\d+\\]:$/.test(t)))
                || (%s)().length > 0;
        }""" % ERROR_OUTPUT_JS, timeout=600_000)
    tracebacks = page.evaluate(ERROR_OUTPUT_JS)
    _log(f"{notebook}: all cells ran")
    assert not tracebacks, f"a cell of {notebook} failed:\n" + "\n\n".join(tracebacks)[-4000:]


@pytest.fixture(scope="module")
def pages(browser, lab):
    """The tour and the panels notebook, loaded side by side and started, the tour first: its cells run
    while the panels are operated."""
    opened = {name: _open(browser, lab, f"{name}.ipynb") for name in ("tour", "panels")}
    for name, page in opened.items():
        _start(page, f"{name}.ipynb")
    yield opened
    for page in opened.values():
        page.context.close()


# -- operating one panel ---------------------------------------------------------------------------
def _panel(page, title: str):
    panel = page.locator(".wb-panel", has=page.locator("h3", has_text=title)).first
    panel.wait_for()
    return panel


def _status(panel) -> str:
    return panel.locator(".wb-status").inner_text().strip()


def _set(panel, name: str, value) -> None:
    control = panel.locator(f".wb-control-{name}")
    if isinstance(value, bool):
        control.locator("input[type=checkbox]").set_checked(value)
    elif control.locator("select").count():
        control.locator("select").select_option(label=value)
    else:
        box = control.locator("input")
        box.fill(value)
        box.press("Tab")  # boxes that update on leaving them


def _wait_status(page, panel, pattern: str, timeout: float = 120_000) -> str:
    page.wait_for_function("([el, pattern]) => new RegExp(pattern).test(el.textContent.trim())",
                           arg=[panel.locator(".wb-status").element_handle(), pattern], timeout=timeout)
    return _status(panel)


def _run(page, panel, run: int) -> None:
    panel.get_by_role("button", name="Run").click()
    status = _wait_status(page, panel, rf"\(run {run}\)$")
    error = panel.locator(".wb-error").inner_text().strip()
    assert status.startswith("Done in"), f"run {run}: {status}\n{error}"


def _figures(page, panel) -> list:
    return page.evaluate(FIGURES_JS, panel.element_handle())


def _wait_drawn(page, panel, what: str) -> list:
    """Every figure of the panel with traces in the page, and the error area empty."""
    try:
        page.wait_for_function(f"(panel) => {{ const f = ({FIGURES_JS})(panel); return f.length > 0 && "
                               "f.every(x => x.traces > 0 && x.drawn > 0 && !x.note); }",
                               arg=panel.element_handle(), timeout=30_000)
    except Exception:
        pass  # the assertion below says which figure is blank
    figs = _figures(page, panel)
    blank = [i for i, f in enumerate(figs) if not (f["traces"] and f["drawn"]) or f["note"]]
    assert figs and not blank, f"{what}: figures {blank} blank in the page: {json.dumps(figs)[:1500]}"
    assert panel.locator(".wb-error").inner_text().strip() == "", f"{what}: an error is shown"
    return figs


def _screenshot(page, panel, name: str) -> None:
    page.mouse.move(0, 0)  # no plotly mode bar over the titles
    panel.scroll_into_view_if_needed()
    height = panel.bounding_box()["height"]
    page.set_viewport_size({"width": 1400, "height": int(min(max(1000, height + 250), 4000))})
    panel.scroll_into_view_if_needed()
    page.wait_for_timeout(400)  # plotly redraws on the resize
    panel.screenshot(path=str(SHOTS / name))
    page.set_viewport_size({"width": 1400, "height": 1000})


def _operate(page, spec: dict) -> None:
    title = spec["title"]
    panel = _panel(page, title)
    panel.scroll_into_view_if_needed()
    assert all(f["note"].startswith("<b>Press Run") and not f["traces"] for f in _figures(page, panel)), \
        f"{title}: before a run every figure should say what will appear"
    states = spec.get("states")  # a panel whose other states are kept as screenshots too
    if states:
        _screenshot(page, panel, f"{states}-before-run.png")
    _log(f"{title}: first run")
    _run(page, panel, 1)
    first = _wait_drawn(page, panel, f"{title}, first run")
    for name, value in spec["change"]:
        _set(panel, name, value)
    panel.locator(".wb-stale-note").wait_for()  # the results are marked as of the earlier inputs
    _run(page, panel, 2)
    second = _wait_drawn(page, panel, f"{title}, after changing {spec['change'][0][0]}")
    assert [f["signature"] for f in first] != [f["signature"] for f in second], f"{title}: nothing changed"
    assert panel.locator(".wb-stale-note").count() == 0
    _screenshot(page, panel, spec["shot"])
    _log(f"{title}: second run drawn, screenshot taken")

    name, value, message = spec["bad"]
    good = panel.locator(f".wb-control-{name} input").input_value()
    _set(panel, name, value)
    panel.get_by_role("button", name="Run").click()
    _wait_status(page, panel, "^Not run")
    assert message in panel.locator(".wb-error").inner_text(), f"{title}: {panel.locator('.wb-error').inner_text()}"
    assert [f["signature"] for f in _figures(page, panel)] == [f["signature"] for f in second]  # nothing ran
    if states:
        _screenshot(page, panel, f"{states}-bad-input.png")

    _set(panel, name, good)  # fixed again
    for name, value in spec["slow"]:
        _set(panel, name, value)
    panel.get_by_role("button", name="Run").click()
    _wait_status(page, panel, r"elapsed|\(run 3\)$")
    panel.get_by_role("button", name="Cancel").click()
    status = _wait_status(page, panel, r"\(run 3\)$")
    assert status.startswith("Cancelled after"), f"{title}: the slow run was not cancelled: {status}"
    assert all(f["note"].startswith("<b>Cancelled") for f in _figures(page, panel)), f"{title}: old results kept"
    if states:
        _screenshot(page, panel, f"{states}-cancelled.png")
    _log(f"{title}: refused a bad input, cancelled a run")


def test_all_six_panels_run_change_refuse_and_cancel(pages):
    page = pages["panels"]
    try:
        _wait_all_ran(page, "panels.ipynb")
        for spec in PANELS:
            _operate(page, spec)
    finally:
        page.screenshot(path=str(SHOTS / "panels.png"), full_page=False)


def test_tour_runs_and_panel_works(pages):
    page = pages["tour"]
    try:
        _wait_all_ran(page, "tour.ipynb")
        panel = _panel(page, "Low-rank spectra")
        panel.scroll_into_view_if_needed()
        _run(page, panel, 1)
        title = panel.locator(".js-plotly-plot .gtitle").first
        title.wait_for()
        before = title.text_content()
        _set(panel, "model", "mlp")
        _run(page, panel, 2)
        page.wait_for_function("([el, before]) => el.textContent !== before", arg=[title.element_handle(), before])
        _wait_drawn(page, panel, "tour spectra panel")
        _log("tour: spectra panel run twice")
    finally:
        page.screenshot(path=str(SHOTS / "tour.png"), full_page=False)
