"""binder/ follows repo2docker's rules for a CPU launch that opens the tour notebook."""
import os
import re
import shutil
import subprocess
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"


def test_only_files_repo2docker_understands_and_nothing_that_overrides_them():
    names = {p.name for p in BINDER.iterdir()}
    assert {"runtime.txt", "requirements.txt", "postBuild"} <= names
    # a Dockerfile disables every other file; environment.yml makes requirements.txt ignored
    assert not names & {"Dockerfile", "environment.yml", "environment.yaml", "Pipfile", "setup.py"}


def test_runtime_is_a_supported_python():
    text = (BINDER / "runtime.txt").read_text().strip()
    m = re.fullmatch(r"python-3\.(\d+)", text)
    assert m, f"runtime.txt must read python-3.X, got {text!r}"
    assert 8 <= int(m.group(1)) <= 12


def test_requirements_parse_and_pin_cpu_torch():
    lines = [l.strip() for l in (BINDER / "requirements.txt").read_text().splitlines()]
    lines = [l for l in lines if l and not l.startswith("#")]
    reqs, options = [], []
    for line in lines:
        if line.startswith("-"):
            options.append(line)
        else:
            reqs.append(Requirement(line))  # raises on anything pip cannot parse
    assert any(o.split()[0] in ("--extra-index-url", "--index-url") and "download.pytorch.org/whl/cpu" in o
               for o in options)
    torch = [r for r in reqs if r.name == "torch"]
    assert len(torch) == 1 and "+cpu" in str(torch[0].specifier)


def test_postbuild_is_an_executable_script_that_installs_the_package():
    post = BINDER / "postBuild"
    assert os.access(post, os.X_OK), "postBuild must be executable"
    # what Binder clones is the committed mode, not this working tree's
    git = shutil.which("git")
    done = None
    if git and (ROOT / ".git").exists():
        done = subprocess.run([git, "ls-files", "-s", "binder/postBuild"], cwd=ROOT, capture_output=True, text=True)
    if done is not None and done.returncode == 0:  # skipped outside a checkout git can read
        assert done.stdout.strip(), "binder/postBuild is not committed"
        assert done.stdout.split()[0] == "100755", \
            f"postBuild is committed without the executable bit ({done.stdout.split()[0]}); " \
            "run git update-index --chmod=+x binder/postBuild"
    text = post.read_text()
    assert text.startswith("#!"), "postBuild needs a shebang line"
    assert re.search(r"pip install[^\n]*(-e \.|\s\.)(\s|$)", text)


def test_readme_badge_opens_the_tour_in_jupyterlab():
    readme = (ROOT / "README.md").read_text()
    badge = r"\[!\[[^\]]*\]\(https://mybinder\.org/badge_logo\.svg\)\]"
    m = re.search(badge + r"\((https://mybinder\.org/v2/[^)]+)\)", readme)
    assert m, "README needs a Binder badge"
    link = m.group(1)
    assert "urlpath=lab/tree/notebooks/tour.ipynb" in link
    assert (ROOT / "notebooks" / "tour.ipynb").exists()
