import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from workbench import cli, report

ROOT = Path(__file__).resolve().parents[2]


def _notebook(path: Path, extra_source: str = "") -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('n = 3  # number of points\nlabel = "x"  # axis label')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        "import plotly.graph_objects as go\nfrom workbench.plotting import use_report_renderer\n"
        "use_report_renderer()\ngo.Figure(go.Scatter(y=list(range(n)), name=label)).show()\n"
        "print('points', n)" + extra_source)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["workbench"] = {"ci_parameters": {"n": 2}}
    nbformat.write(nb, str(path))


@pytest.fixture
def nbdir(tmp_path, monkeypatch):
    d = tmp_path / "notebooks"
    d.mkdir()
    _notebook(d / "alpha.ipynb")
    _notebook(d / "beta.ipynb", "\nraise RuntimeError('beta is broken on purpose')")
    monkeypatch.setenv("WORKBENCH_NOTEBOOKS", str(d))
    return d


def test_parameters_are_read_with_help(nbdir):
    params = report.parameters_of(nbdir / "alpha.ipynb")
    assert [(p.name, p.default, p.help) for p in params] == [("n", 3, "number of points"),
                                                             ("label", "x", "axis label")]


def test_curated_notebooks_declare_their_parameters():
    spec = report.parameters_of(ROOT / "notebooks" / "spectra.ipynb")
    assert {"model", "device", "bootstrap"} <= {p.name for p in spec}
    assert all(p.help for p in spec)


def test_unknown_parameter_is_an_error_naming_valid_ones(nbdir, tmp_path):
    with pytest.raises(ValueError, match=r"'nn'.*Did you mean 'n'.*label, n"):
        report.report(["alpha"], out=tmp_path / "out", parameters={"nn": 4}, progress=False)
    assert cli.main(["report", "alpha", "-p", "lable=y", "--out", str(tmp_path / "o2")]) == 2


def test_report_runs_converts_and_indexes(nbdir, tmp_path):
    out = tmp_path / "out"
    res = report.report(out=out, parameters={"alpha.n": 5, "label": "hello"}, progress=False,
                        executor="threads", max_workers=2)
    status = {r["notebook"]: r for r in res.runs}
    assert status["alpha"]["status"] == "ok" and status["beta"]["status"] == "failed"
    assert "beta is broken on purpose" in status["beta"]["error"]
    page = (out / "alpha.html").read_text()
    assert "plotly-graph-div" in page and "points 5" in page
    assert "use_report_renderer" not in page  # code hidden in report mode
    executed = json.loads((out / "alpha.ipynb").read_text())
    assert "widgets" not in executed["metadata"]
    index = (out / "index.html").read_text()
    assert "alpha.html" in index and "beta.html" in index and "failed" in index
    assert status["alpha"]["parameters"] == {"n": 5, "label": "hello"}
    assert not res.ok


def test_small_uses_ci_parameters_and_show_code(nbdir, tmp_path):
    res = report.report(["alpha"], out=tmp_path / "o", small=True, show_code=True, progress=False)
    assert res.runs[0]["parameters"] == {"n": 2}
    page = (tmp_path / "o" / "alpha.html").read_text()
    assert "points 2" in page and "use_report_renderer" in page


def test_cli_list(nbdir, capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "alpha" in out and "n = 3  # number of points  [CI: 2]" in out


def test_console_script_is_installed():
    done = subprocess.run([sys.executable, "-m", "workbench.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "report" in done.stdout
