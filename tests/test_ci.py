""".ci/run runs exactly the README's test command, and CI cannot silently skip the browser test."""
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_test_command() -> str:
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"Tests \(this is what `\.ci/run` runs\):\s*```bash\n(.+?)\n```", readme, re.S)
    assert m, "README needs the test command in a bash block after 'Tests (this is what `.ci/run` runs):'"
    return m.group(1).strip()


def test_ci_runs_the_readme_test_command():
    lines = [l.strip() for l in (ROOT / ".ci" / "run").read_text().splitlines()]
    commands = [l for l in lines if l and not l.startswith("#") and not l.startswith(("set ", "cd ", "export "))]
    assert commands == [_readme_test_command()]


def test_ci_requires_the_browser_test():
    text = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^export WORKBENCH_E2E_REQUIRED=1$", text, re.M)
    assert "bash scripts/e2e-setup.sh" in _readme_test_command()


def test_e2e_setup_fails_in_ci_without_chromium(tmp_path):
    # a PATH with only what the script itself needs: no chromium and no apt-get
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("bash", "id", "cat"):
        found = subprocess.run(["bash", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        (bindir / tool).symlink_to(found)
    script = str(ROOT / "scripts" / "e2e-setup.sh")

    def run(**env):
        return subprocess.run([str(bindir / "bash"), script], env={"PATH": str(bindir), **env},
                              capture_output=True, text=True)

    assert run().returncode == 0  # a developer's machine: skipped with a note
    for env in ({"CI": "true"}, {"WORKBENCH_E2E_REQUIRED": "1"}):
        done = run(**env)
        assert done.returncode == 1 and "required" in done.stderr
