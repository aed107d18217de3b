"""Every curated notebook runs end to end through papermill with its small CI parameters.

A notebook's CI parameters live in its metadata under ``workbench.ci_parameters`` and override the
defaults of its ``parameters`` cell.
"""
import json
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
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged 'parameters'"
    for line in "".join(tagged[0]["source"]).splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            assert "# " in line, f"parameter line without a '# help' comment: {line!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path):
    import papermill as pm

    nb = json.loads(path.read_text())
    params = nb.get("metadata", {}).get("workbench", {}).get("ci_parameters", {})
    pm.execute_notebook(str(path), str(tmp_path / path.name), parameters=params, kernel_name="python3",
                        cwd=str(ROOT), progress_bar=False)
