import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
plotly = pytest.importorskip("plotly")  # reports draw with plotly (absent on some GPU machines)
pytest.importorskip("plotly.offline")

from workbench import cli, report  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _notebook(path: Path, extra_source: str = "") -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('n = 3  # number of points (n = 0 draws none)\nlabel = "x"  # axis label')
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


class _Scripts(HTMLParser):
    """Every <script>: its src (or None) and its inline text."""

    def __init__(self):
        super().__init__()
        self.scripts, self._open = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self._open = [dict(attrs).get("src"), ""]
            self.scripts.append(self._open)

    def handle_data(self, data):
        if self._open is not None:
            self._open[1] += data

    def handle_endtag(self, tag):
        if tag == "script":
            self._open = None


def test_parameters_are_read_with_help(nbdir):
    params = report.parameters_of(nbdir / "alpha.ipynb")
    assert [(p.name, p.default, p.help) for p in params] == [("n", 3, "number of points (n = 0 draws none)"),
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
    # figures visible offline: the plotly.js bundle itself is inline, and no script comes from the network
    scripts = _Scripts()
    scripts.feed(page)
    assert any(plotly.offline.get_plotlyjs() in text for src, text in scripts.scripts)
    remote = [src for src, _ in scripts.scripts if src and src.lower().startswith(("http:", "https:", "//"))]
    assert not remote, f"scripts loaded from the network: {remote}"
    assert '"name":"hello","y":[0,1,2,3,4]' in page  # the figure's data
    assert "use_report_renderer" not in page  # code hidden in report mode
    executed = json.loads((out / "alpha.ipynb").read_text())
    assert "widgets" not in executed["metadata"]
    index = (out / "index.html").read_text()
    assert "alpha.html" in index and "beta.html" in index and "failed" in index
    assert status["alpha"]["parameters"] == {"n": 5, "label": "hello"}
    assert not res.ok


def test_small_uses_ci_parameters_and_show_code(nbdir, tmp_path, caplog):
    caplog.set_level("WARNING")
    res = report.report(["alpha"], out=tmp_path / "o", small=True, show_code=True, progress=False)
    assert res.runs[0]["parameters"] == {"n": 2}
    # papermill's line-based guess trips over the '=' in n's help and would call n unknown
    assert not [r for r in caplog.records if r.name.startswith("papermill")], caplog.text
    page = (tmp_path / "o" / "alpha.html").read_text()
    assert "points 2" in page and "use_report_renderer" in page


def test_cli_list(nbdir, capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "alpha" in out and "n = 3  # number of points (n = 0 draws none)  [CI: 2]" in out


def test_console_script_is_installed():
    done = subprocess.run([sys.executable, "-m", "workbench.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "report" in done.stdout


def test_config_file_and_command_line_parameters(nbdir, tmp_path):
    config = tmp_path / "params.yaml"
    config.write_text("alpha:\n  n: 4\nlabel: from-yaml\n")
    out = tmp_path / "out"
    assert cli.main(["report", "alpha", "--config", str(config), "-p", "label=cli", "--out", str(out)]) == 0
    page = (out / "alpha.html").read_text()
    assert "points 4" in page and '"name":"cli","y":[0,1,2,3]' in page  # -p overrides the file
    bad = tmp_path / "bad.yaml"
    bad.write_text("- n\n- 4\n")
    with pytest.raises(SystemExit, match="expected a mapping"):
        cli.main(["report", "alpha", "--config", str(bad), "--out", str(out)])
    typo = tmp_path / "typo.yaml"
    typo.write_text("alpha:\n  nn: 4\n")
    assert cli.main(["report", "alpha", "--config", str(typo), "--out", str(out)]) == 2


def test_lab_command(nbdir, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd: calls.append(cmd) or 7)
    assert cli.main(["lab", "--port", "8899", "--no-browser", "--ServerApp.token=abc"]) == 7
    assert calls == [[sys.executable, "-m", "jupyter", "lab", f"--notebook-dir={nbdir}", "--port=8899",
                      "--no-browser", "--ServerApp.token=abc"]]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["lab", "--notebooks", str(empty)]) == 2 and len(calls) == 1


def test_notebook_folder_is_found_or_named_in_the_error(nbdir, tmp_path, monkeypatch, capsys):
    # an installed wheel: no notebooks/ next to the package
    monkeypatch.delenv("WORKBENCH_NOTEBOOKS")
    monkeypatch.setattr(report, "_checkout_notebooks", lambda: tmp_path / "site-packages" / "notebooks")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(FileNotFoundError, match="--notebooks DIR"):
        report.notebooks()
    assert cli.main(["list"]) == 2
    assert "--notebooks DIR" in capsys.readouterr().err
    assert cli.main(["list", "--notebooks", str(nbdir)]) == 0
    assert "n = 3  # number of points (n = 0 draws none)" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)  # ./notebooks
    assert list(report.notebooks()) == ["alpha", "beta"]
    with pytest.raises(FileNotFoundError, match="--notebooks="):
        report.notebook_dir(elsewhere)
    # the checkout's own folder comes first
    monkeypatch.undo()
    assert report.notebook_dir() == ROOT / "notebooks"


def test_scheduler_option(nbdir, tmp_path, monkeypatch):
    args = cli.build_parser().parse_args(["report", "alpha", "--scheduler", "tcp://10.0.0.1:8786"])
    assert args.scheduler == "tcp://10.0.0.1:8786" and args.executor is None
    with pytest.raises(SystemExit, match="either --scheduler"):
        cli.main(["report", "--scheduler", "tcp://10.0.0.1:8786", "--executor", "threads"])
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "distributed", None)  # dask not installed
        with pytest.raises(SystemExit, match=r"nn-workbench\[dask\]"):
            cli.main(["report", "alpha", "--scheduler", "tcp://10.0.0.1:8786"])
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        seen = []
        real = cli.dask_client
        monkeypatch.setattr(cli, "dask_client", lambda address: seen.append(address) or real(address))
        out = tmp_path / "out"
        assert cli.main(["report", "alpha", "--scheduler", cluster.scheduler_address, "-p", "n=4",
                         "--out", str(out)]) == 0
        assert seen == [cluster.scheduler_address]
        assert "points 4" in (out / "alpha.html").read_text(), (out / "index.html").read_text()
        assert "run_cell" in cluster.scheduler.task_prefixes  # the sweep engine's tasks ran on the cluster
