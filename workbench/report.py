"""Curated notebooks as parametrised reports: list them, validate parameters, execute, convert to HTML.

``report()`` runs notebooks with papermill into executed ``.ipynb`` files and standalone HTML (plotly
figures embedded, so they show offline; code cells hidden unless ``show_code=True``) plus an
``index.html`` linking every report.  Runs fan out through :func:`workbench.sweep.run`, so any executor
the sweep engine accepts (threads, processes, a Dask client) runs many reports at once.

Unlike papermill, which only warns, an unknown parameter is an error naming the valid ones.
"""
from __future__ import annotations

import ast
import difflib
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import pandas as pd

from .pages import index_page, summary_of, to_html
from .parameters import Declaration, resolve_path, split_help
from .parameters import check as check_parameter
from .progress import ProgressLike
from .results import Result

PathLike = Union[str, os.PathLike]


def _checkout_notebooks() -> Path:
    """``notebooks/`` next to the package: present in a source checkout (editable install)."""
    return Path(__file__).resolve().parents[1] / "notebooks"


def _has_notebooks(d: Path) -> bool:
    return d.is_dir() and any(d.glob("*.ipynb"))


def notebook_dir(directory: Optional[PathLike] = None) -> Path:
    """Where the curated notebooks live.

    In order: ``directory`` (the command line's ``--notebooks``), ``$WORKBENCH_NOTEBOOKS``, the source
    checkout's ``notebooks/`` next to the package, ``./notebooks``.  An installed wheel carries no
    notebooks, so outside a checkout pass the directory of a clone.
    """
    if directory is not None or os.environ.get("WORKBENCH_NOTEBOOKS"):
        d = Path(directory if directory is not None else os.environ["WORKBENCH_NOTEBOOKS"]).expanduser()
        source = "--notebooks" if directory is not None else "$WORKBENCH_NOTEBOOKS"
        if not _has_notebooks(d):
            raise FileNotFoundError(f"{source}={d}: no *.ipynb notebooks there; pass the notebooks/ folder "
                                    "of a workbench checkout")
        return d
    for d in (_checkout_notebooks(), Path.cwd() / "notebooks"):
        if _has_notebooks(d):
            return d
    raise FileNotFoundError(
        f"no curated notebooks found (looked in {_checkout_notebooks()} and {Path.cwd() / 'notebooks'}); "
        "pass --notebooks DIR (or set WORKBENCH_NOTEBOOKS) to the notebooks/ folder of a workbench checkout")


@dataclass
class Parameter:
    name: str
    default: Any
    help: str
    declaration: Optional[Declaration] = None  # what the parameter accepts (workbench.parameters)


def _parameters_cell(nb: Mapping[str, Any]) -> Optional[Mapping[str, Any]]:
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return cell
    return None


def parameters_of(path: PathLike) -> List[Parameter]:
    """The parameters of a notebook: name, default and the ``# help`` text of each line."""
    nb = json.loads(Path(path).read_text())
    cell = _parameters_cell(nb)
    if cell is None:
        return []
    source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    out = []
    lines = source.splitlines()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            line = lines[node.lineno - 1]
            decl, help_text = split_help(line.split("#", 1)[1] if "#" in line else "")
            out.append(Parameter(node.targets[0].id, ast.literal_eval(node.value), help_text, decl))
    return out


def notebooks(directory: Optional[PathLike] = None) -> Dict[str, Path]:
    """Name -> path of every curated notebook in :func:`notebook_dir` (``directory``), tour first."""
    paths = sorted(notebook_dir(directory).glob("*.ipynb"), key=lambda p: (p.stem != "tour", p.stem))
    return {p.stem: p for p in paths}


def ci_parameters(path: PathLike) -> Dict[str, Any]:
    nb = json.loads(Path(path).read_text())
    return dict(nb.get("metadata", {}).get("workbench", {}).get("ci_parameters", {}))


def validate(name: str, params: Mapping[str, Any], known: Sequence[Parameter]) -> None:
    """Raise ``ValueError`` for a parameter the notebook does not have (naming the valid ones) or a value its
    declaration refuses (naming the parameter, what it expects and what it got)."""
    by_name = {p.name: p for p in known}
    for key, value in params.items():
        if key not in by_name:
            close = difflib.get_close_matches(key, list(by_name), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"notebook {name!r} has no parameter {key!r}.{hint} Valid parameters: "
                             f"{', '.join(by_name) or '(none)'}")
        check_parameter(key, value, by_name[key].declaration, notebook=name)


def resolve_paths(params: Mapping[str, Any], known: Sequence[Parameter]) -> Dict[str, Any]:
    """Relative paths of spec parameters made absolute: notebooks run in the checkout, not where the caller is."""
    by_name = {p.name: p for p in known}
    return {k: resolve_path(v, by_name[k].declaration) if k in by_name else v for k, v in params.items()}


def split_parameters(params: Mapping[str, Any], names: Sequence[str],
                     directory: Optional[PathLike] = None) -> Dict[str, Dict[str, Any]]:
    """Route ``{"key": v, "notebook.key": v, "notebook": {...}}`` to each notebook's own dict.

    A bare ``key`` goes to every selected notebook that has it (and must exist in at least one).
    """
    per: Dict[str, Dict[str, Any]] = {n: {} for n in names}
    available = notebooks(directory)
    known = {n: [p.name for p in parameters_of(available[n])] for n in names}
    for key, value in params.items():
        if key in per and isinstance(value, Mapping):
            per[key].update(value)
        elif "." in key and key.split(".", 1)[0] in per:
            nb, k = key.split(".", 1)
            per[nb][k] = value
        else:
            targets = [n for n in names if key in known[n]]
            if not targets:
                valid = sorted({k for ks in known.values() for k in ks})
                close = difflib.get_close_matches(key, valid, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"no selected notebook has a parameter {key!r}.{hint} "
                                 f"Valid parameters: {', '.join(valid)}")
            for n in targets:
                per[n][key] = value
    return per


class _PapermillInferenceFilter(logging.Filter):
    """Drop papermill's parameter-inference warnings.  Parameters are validated here already (with
    Python's own parser, so a ``# help`` comment holding ``=`` is fine), where papermill's line-based
    guess would report valid parameters as unknown."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("Passed unknown parameter:", "Unable to parse line"))


def _quiet_papermill_inference() -> None:
    for name in ("papermill", "papermill.translators"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _PapermillInferenceFilter) for f in logger.filters):
            logger.addFilter(_PapermillInferenceFilter())


def run_one(notebook: str, out: str, parameters: Dict[str, Any], small: bool = False, show_code: bool = False,
            kernel: str = "python3", notebooks_dir: Optional[str] = None, **_key: Any) -> Dict[str, Any]:
    """Execute one notebook and convert it; returns a status record (never raises on a failing notebook)."""
    import papermill as pm

    path = notebooks(notebooks_dir)[notebook]
    _quiet_papermill_inference()
    params = {**(ci_parameters(path) if small else {}), **parameters}
    validate(notebook, params, parameters_of(path))
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    executed = outdir / f"{notebook}.ipynb"
    start = time.perf_counter()
    record = {"notebook": notebook, "parameters": params, "ipynb": executed.name, "html": f"{notebook}.html",
              "status": "ok", "error": "", "seconds": 0.0}
    try:
        pm.execute_notebook(str(path), str(executed), parameters=params, kernel_name=kernel,
                            cwd=str(path.parent.parent), progress_bar=False, log_output=False)
    except Exception as exc:  # the partial notebook is still converted, with the error in it
        record["status"] = "failed"
        record["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
    if executed.exists():
        import nbformat

        nb = nbformat.read(str(executed), as_version=4)
        nb.metadata.pop("widgets", None)  # live widget state: megabytes of script per figure, no use offline
        nbformat.write(nb, str(executed))
        record.update(summary_of(nb))
        to_html(executed, outdir / record["html"], show_code=show_code, title=record["title"] or notebook)
    else:
        record["html"] = ""
    record["seconds"] = round(time.perf_counter() - start, 2)
    return record


@dataclass
class ReportResult(Result):
    """One row per notebook run: parameters, status, time, file names; ``index`` is the index page."""

    runs: List[Dict[str, Any]] = field(default_factory=list)
    index: str = ""

    kind = "report"

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.runs)

    @property
    def ok(self) -> bool:
        return all(r["status"] == "ok" for r in self.runs)


def _forget_unusable(store, cells: List[Dict[str, Any]], out: Path) -> None:
    """Drop stored runs that failed or whose files are gone, so they run again."""
    from . import sweep

    for cell in cells:
        key = sweep.cell_key(cell)
        if key not in store:
            continue
        try:
            record = store.read(key)["value"]
            usable = record.get("status") == "ok" and record.get("html") and (out / record["html"]).exists()
        except Exception:
            usable = False
        if not usable:
            store.file(key).unlink(missing_ok=True)


def _importable_here() -> None:
    """Let the notebooks' kernels import the caller's own modules (import-path specs such as ``mynets:Net``)."""
    here = os.getcwd()
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if here not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([here, *parts])


def report(names: Optional[Sequence[str]] = None, *, out: PathLike = "report",
           parameters: Optional[Mapping[str, Any]] = None, small: bool = False, show_code: bool = False,
           executor: Any = None, max_workers: Optional[int] = None, progress: ProgressLike = True,
           title: str = "Workbench report", notebooks_dir: Optional[PathLike] = None,
           resume: bool = True) -> ReportResult:
    """Run the named notebooks (all by default) into ``out/`` as executed notebooks and HTML, plus an index.

    ``parameters``: ``{"key": v}`` for every notebook that has ``key``, ``{"notebook.key": v}`` or
    ``{"notebook": {...}}`` for one.  ``small=True`` starts from each notebook's CI parameters.
    ``notebooks_dir``: where the notebooks are (see :func:`notebook_dir`).  With a Dask client, ``out``
    and the notebooks must be at the same paths on the workers.  Parameters are checked and ``out`` must be
    writable, with disk space, before any notebook runs.  With ``resume`` (default) a notebook that already
    ran to the end into ``out`` with the same parameters and the same notebook source is not run again
    (an interrupted report picks up where it stopped); ``resume=False`` runs everything.
    """
    from . import sweep

    nbdir = str(notebook_dir(notebooks_dir).resolve())
    available = notebooks(nbdir)
    names = list(names) if names else list(available)
    for n in names:
        if n not in available:
            raise ValueError(f"no notebook {n!r}; available: {', '.join(available)}")
    per = split_parameters(dict(parameters or {}), names, nbdir)
    for n in names:
        known = parameters_of(available[n])
        per[n] = resolve_paths(per[n], known)
        base = ci_parameters(available[n]) if small else {}
        validate(n, {**base, **per[n]}, known)
    _importable_here()
    out = sweep.ensure_writable(out, what="--out")
    cells = [dict(notebook=n, out=str(out), parameters=per[n], small=small, show_code=show_code,
                  notebooks_dir=nbdir, source=hashlib.sha1(available[n].read_bytes()).hexdigest()[:16])
             for n in names]
    store = sweep.Store(out / ".runs") if resume else None
    if store is not None:
        _forget_unusable(store, cells, out)
    res = sweep.run(run_one, cells, store=store, executor=executor, max_workers=max_workers, progress=progress,
                    on_error="skip", recompute=not resume)
    loaded = set(res.loaded)
    runs = []
    for cell in cells:
        if cell in res:
            runs.append(dict(res[cell], resumed=sweep.cell_key(cell) in loaded))
        else:
            err = res.errors.get(sweep.cell_key(cell)) if hasattr(res, "errors") else None
            runs.append({"notebook": cell["notebook"], "parameters": cell["parameters"], "ipynb": "", "html": "",
                         "status": "failed", "error": repr(err), "seconds": 0.0})
    index = out / "index.html"
    index.write_text(index_page(runs, title), encoding="utf-8")
    return ReportResult(settings=dict(names=names, out=str(out), small=small, show_code=show_code,
                                      executor=str(executor), notebooks_dir=nbdir), runs=runs, index=str(index))
