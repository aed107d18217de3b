"""The tour notebook in a real browser: JupyterLab on 127.0.0.1, Debian's chromium driven by Playwright.

Opens the tour, runs all cells, operates the spectra panel (changes the model, clicks Run), checks the
figure changed and no error is shown, and saves a screenshot (``$WORKBENCH_E2E_DIR``, default
``.e2e/`` in the checkout).

Without chromium or Playwright the test is skipped, except in CI (``CI=true``, as CI services set it) or
with ``WORKBENCH_E2E_REQUIRED=1``, where it fails instead: there the browser test must run.
"""
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
# an error output in JupyterLab: a traceback (or "SomethingError: ...") on the stderr mime type
ERROR_OUTPUT_JS = """() => [...document.querySelectorAll(
        ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")]
    .map(e => e.textContent).filter(t => t.includes('Traceback') || t.includes('Error'))"""


def _missing(reason: str):
    if REQUIRED:
        pytest.fail(f"{reason}; the browser test is required here (CI / WORKBENCH_E2E_REQUIRED)", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def test_tour_runs_and_panel_works(lab):
    from playwright.sync_api import sync_playwright

    url, token = lab
    shots = Path(os.environ.get("WORKBENCH_E2E_DIR", ROOT / ".e2e"))
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        try:
            page.goto(f"{url}/lab/tree/tour.ipynb?token={token}")
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
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name=re.compile("^Run All Cells")).click()
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
            assert not tracebacks, "a tour cell failed:\n" + "\n\n".join(tracebacks)[-4000:]
            panel = page.locator(".widget-vbox", has=page.locator("h3", has_text="Low-rank spectra")).first
            panel.scroll_into_view_if_needed()
            # the panel's first figure is drawn after a run; run it, change the model, run again
            run = panel.get_by_role("button", name="Run")
            run.click()
            status = panel.locator(".widget-label").filter(has_text=re.compile("done in|failed"))
            status.first.wait_for()
            title = panel.locator(".js-plotly-plot .gtitle").first
            title.wait_for()
            before = title.text_content()
            panel.locator("select").first.select_option("mlp")
            run.click()
            page.wait_for_function(
                "([el, before]) => el.textContent !== before", arg=[title.element_handle(), before],
                timeout=300_000)
            after = title.text_content()
            assert after != before and "ESD of" in after
            assert "failed" not in " ".join(panel.locator(".widget-label").all_inner_texts())
            assert panel.locator("b", has_text="Error").count() == 0
            panel.screenshot(path=str(shots / "spectra-panel.png"))
        finally:
            page.screenshot(path=str(shots / "tour.png"), full_page=False)
            browser.close()
