"""Every curated notebook runs end to end through papermill with its small CI parameters.

A notebook's CI parameters live in its metadata under ``workbench.ci_parameters`` and override the
defaults of its ``parameters`` cell.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no curated notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_clean_and_parametrised(path):
    nb = json.loads(path.read_text())
    cells = nb["cells"]
    assert not any(c.get("outputs") for c in cells if c["cell_type"] == "code"), "outputs committed"
    assert all(c.get("execution_count") is None for c in cells if c["cell_type"] == "code"), \
        "execution counts committed"
    assert "widgets" not in nb.get("metadata", {}), "widget state committed in the notebook metadata"
    assert not any("widgets" in c.get("metadata", {}) for c in cells), "widget state committed in a cell"
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged 'parameters'"
    for line in "".join(tagged[0]["source"]).splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            assert "# " in line, f"parameter line without a '# help' comment: {line!r}"


def _nbstripout():
    """The virtualenv's nbstripout (a dev dependency), next to the running interpreter."""
    exe = Path(sys.executable).parent / "nbstripout"
    found = str(exe) if exe.exists() else shutil.which("nbstripout")
    assert found, "nbstripout is missing: pip install -e '.[dev]'"
    return found


def test_notebooks_are_clean_per_nbstripout(tmp_path):
    # --keep-id: plain --verify would also rewrite the committed cell ids (nbstripout 0.9)
    done = subprocess.run([_nbstripout(), "--verify", "--keep-id", *map(str, NOTEBOOKS)],
                          capture_output=True, text=True)
    assert done.returncode == 0, "notebooks with outputs; run nbstripout --keep-id notebooks/*.ipynb\n" + \
        done.stdout + done.stderr
    # and the check does catch an output
    nb = json.loads(NOTEBOOKS[0].read_text())
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["hi\n"]}]
    dirty = tmp_path / NOTEBOOKS[0].name
    dirty.write_text(json.dumps(nb))
    done = subprocess.run([_nbstripout(), "--verify", "--keep-id", str(dirty)], capture_output=True, text=True)
    assert done.returncode == 1 and "would have stripped" in done.stdout + done.stderr


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path):
    import papermill as pm

    nb = json.loads(path.read_text())
    params = nb.get("metadata", {}).get("workbench", {}).get("ci_parameters", {})
    pm.execute_notebook(str(path), str(tmp_path / path.name), parameters=params, kernel_name="python3",
                        cwd=str(ROOT), progress_bar=False)
