"""Reports on your own models, data and graphs through the command line (``workbench report -p ...``), and
the typed parameters the command line checks before any kernel starts."""
import re

import pytest

from tests.inputs import build
from workbench import cli, report
from workbench.parameters import check, parse

pytest.importorskip("papermill")


def _run(args, capsys):
    code = cli.main(["report", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _html(path):
    text = path.read_text()
    return re.sub(r"<script.*?</script>", "", text, flags=re.S)  # the page without plotly.js


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    build.hf_folders(root)
    build.cnn_files(root)
    build.image_folder(root / "images")
    build.string_id_edges(root / "club.tsv")
    return root


def test_profile_report_on_a_hugging_face_folder(inputs, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(inputs)  # relative paths, as a user types them
    code, out, err = _run(["profile", "--small", "-p", "model=./bert", "-p", "data=./val.npz", "--out",
                           str(tmp_path / "rep")], capsys)
    assert code == 0, out + err
    page = _html(tmp_path / "rep" / "profile.html")
    assert "bert.encoder.layer.0.attention.self.query.weight" in page  # the model's own layers
    assert "BertForSequenceClassification" in page and "top Hessian eigenvalue" in page
    # the data sections are sized from one timed pass, and the page says how
    assert re.search(r"the loss map uses \d+ of \d+ examples and the Hessian \d+ of \d+", page)


@pytest.mark.parametrize("file, what", [("scripted.pt", "RecursiveScriptModule"), ("w.safetensors", "checkpoint")])
def test_spectra_report_on_a_torchscript_file_and_a_streamed_checkpoint(inputs, capsys, tmp_path, file, what):
    code, out, err = _run(["spectra", "--small", "-p", f"model={inputs / file}", "--out", str(tmp_path / "rep")],
                          capsys)
    assert code == 0, out + err
    page = _html(tmp_path / "rep" / "spectra.html")
    assert "block.conv1.weight" in page and "conv2d" in page and what in page
    assert "3 weight matrices" in page or "4 weight matrices" in page


def test_landscape_report_on_an_import_path_with_weights_and_images(inputs, capsys, tmp_path):
    code, out, err = _run(["landscape", "--small", "-p", "model=tests.inputs.nets:ResidualCNN", "-p",
                           f"weights={inputs / 'w.safetensors'}", "-p", f"data={inputs / 'images'}", "--out",
                           str(tmp_path / "rep")], capsys)
    assert code == 0, out + err
    assert "not known here" in _html(tmp_path / "rep" / "landscape.html")  # no interpolation from its init


def test_connectivity_report_on_two_checkpoints(inputs, capsys, tmp_path):
    code, out, err = _run(["connectivity", "--small", "-p", "model=tests.inputs.nets:ResidualCNN", "-p",
                           f"weights={inputs / 'w.pt'}", "-p", "model_b=tests.inputs.nets:ResidualCNN", "-p",
                           f"weights_b={inputs / 'b.pt'}", "-p", f"data={inputs / 'images'}", "--out",
                           str(tmp_path / "rep")], capsys)
    assert code == 0, out + err
    page = _html(tmp_path / "rep" / "connectivity.html")
    assert "max_minus_mean" in page and "P_stem" not in page  # tables of barriers, not raw permutations


def test_topology_report_on_an_edge_list_with_string_ids(inputs, capsys, tmp_path):
    code, out, err = _run(["topology", "--small", "-p", f"graph={inputs / 'club.tsv'}", "--out",
                           str(tmp_path / "rep")], capsys)
    assert code == 0, out + err
    assert "member-00" in _html(tmp_path / "rep" / "topology.html")


# ------------------------------------------------------------------------------------------------
# typed parameters
# ------------------------------------------------------------------------------------------------
def test_declarations_check_types_and_ranges():
    check("bootstrap", 200, parse("int >= 0"))
    for bad, why in (("abc", "int >= 0, got 'abc'"), (-5, "got -5"), (2.5, "got 2.5"), (True, "True")):
        with pytest.raises(ValueError, match=f"parameter bootstrap must be .*{re.escape(why)}"):
            check("bootstrap", bad, parse("int >= 0"))
    check("steps", 31, parse("odd int >= 3"))
    with pytest.raises(ValueError, match="parameter steps"):
        check("steps", 30, parse("odd int >= 3"))
    check("reduction", 0.0, parse("float in [0, 1)"))
    with pytest.raises(ValueError, match=r"float in \[0, 1\)"):
        check("reduction", 1.0, parse("float in [0, 1)"))
    check("densities", [0.5, 1.0], parse("list of float in (0, 1]"))
    with pytest.raises(ValueError, match=r"got 0 \(int\) in \[0, 0\.5\]"):
        check("densities", [0, 0.5], parse("list of float in (0, 1]"))
    check("device", "cpu", parse("one of auto | cpu | cuda"))
    with pytest.raises(ValueError, match="one of auto | cpu | cuda, got 'gpu0'"):
        check("device", "gpu0", parse("one of auto | cpu | cuda"))
    check("weights", None, parse("file or None"))
    with pytest.raises(ValueError, match="an existing file"):
        check("weights", "missing.safetensors", parse("file or None"))
    check("model", "mynets:Net", parse("model"))  # an import path is not a file
    with pytest.raises(ValueError, match="an existing file or folder"):
        check("model", "./no-such-folder", parse("model"))


def test_every_notebook_declares_every_parameter_and_its_defaults_pass():
    for name, path in report.notebooks().items():
        known = report.parameters_of(path)
        missing = [p.name for p in known if p.declaration is None]
        assert not missing, f"{name}: parameters without a [declaration]: {missing}"
        for p in known:
            check(p.name, p.default, p.declaration, notebook=name)
        ci = report.ci_parameters(path)
        report.validate(name, ci, known)


def test_the_command_line_refuses_bad_values_before_running(capsys, tmp_path):
    for args, message in ((["-p", "bootstrap=abc"], "parameter bootstrap must be int >= 0, got 'abc'"),
                          (["-p", "bootstrap=-5"], "parameter bootstrap must be int >= 0, got -5"),
                          (["-p", "model=./nowhere"], "parameter model must be an existing file or folder"),
                          (["-p", "bootstap=5"], "Did you mean 'bootstrap'")):
        code, out, err = _run(["spectra", *args, "--out", str(tmp_path / "rep")], capsys)
        assert code == 2 and message in err, err
        assert not (tmp_path / "rep" / "spectra.ipynb").exists()  # nothing ran
