"""The ``workbench`` command: ``report``, ``list`` and ``lab``.

    workbench list
    workbench report                          # every notebook, default parameters, into ./report
    workbench report spectra -p model=resnet -p bootstrap=500 --out out/
    workbench report --config params.yaml --executor processes --workers 2
    workbench report --scheduler tcp://127.0.0.1:8786      # fan out through a Dask cluster
    workbench lab
    workbench list --notebooks path/to/checkout/notebooks  # an installed wheel carries no notebooks
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional


def _parse_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _collect_parameters(pairs: List[str], config: Optional[str]) -> Dict[str, Any]:
    import yaml

    params: Dict[str, Any] = {}
    if config:
        data = yaml.safe_load(Path(config).read_text()) or {}
        if not isinstance(data, dict):
            raise SystemExit(f"--config {config}: expected a mapping of parameter -> value")
        params.update(data)
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"-p {pair!r}: write parameters as name=value (or notebook.name=value)")
        key, value = pair.split("=", 1)
        params[key.strip()] = _parse_value(value)
    return params


def _fail(command: str, exc: BaseException) -> int:
    print(f"workbench {command}: {exc}", file=sys.stderr)
    return 2


def cmd_list(args: argparse.Namespace) -> int:
    from .report import ci_parameters, notebooks, parameters_of

    try:
        found = notebooks(args.notebooks_dir)
    except FileNotFoundError as exc:
        return _fail("list", exc)
    for name, path in found.items():
        print(f"{name}  ({path})")
        small = ci_parameters(path)
        for p in parameters_of(path):
            ci = f"  [CI: {small[p.name]!r}]" if p.name in small else ""
            kind = f"[{p.declaration.text}] " if p.declaration is not None else ""
            print(f"    {p.name} = {p.default!r}  # {kind}{p.help}{ci}")
    print(spec_forms())
    return 0


def spec_forms() -> str:
    """What the model, data and graph parameters accept, for ``workbench list``."""
    from .data import SPEC_FORMS as DATA_FORMS
    from .models import SPEC_FORMS as MODEL_FORMS
    from .topology.readers import GRAPH_FILE_FORMS

    lines = ["", "Specs (relative paths are read from the current directory; -p model=./my-model):"]
    for title, forms in (("model, model_b", MODEL_FORMS), ("weights, weights_b", ("a .safetensors or .pt state "
                                                                                  "dict file",)),
                         ("data, train_data", DATA_FORMS),
                         ("graph", ("a built-in graph name", *GRAPH_FILE_FORMS))):
        lines.append(f"  {title}:")
        lines += [f"    - {f}" for f in forms]
    return "\n".join(lines)


def dask_client(address: str):
    """A ``distributed.Client`` connected to the scheduler at ``address`` (clear errors if that fails)."""
    try:
        from distributed import Client
    except ImportError:
        raise SystemExit("workbench report --scheduler needs dask.distributed: "
                         "pip install 'nn-workbench[dask]' (or pip install 'dask[distributed]')") from None
    try:
        return Client(address, timeout="20s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise SystemExit(f"workbench report --scheduler {address}: cannot reach a Dask scheduler there "
                         f"({type(exc).__name__}: {exc}); start one with `dask scheduler` or pass its "
                         "tcp://host:port address") from None


def cmd_report(args: argparse.Namespace) -> int:
    from .report import report

    if args.scheduler and args.executor:
        raise SystemExit("workbench report: give either --scheduler (a Dask cluster) or --executor, not both")
    params = _collect_parameters(args.param or [], args.config)
    client = dask_client(args.scheduler) if args.scheduler else None
    try:
        res = report(args.notebooks or None, out=args.out, parameters=params, small=args.small,
                     show_code=args.show_code, executor=client or args.executor, max_workers=args.workers,
                     title=args.title, notebooks_dir=args.notebooks_dir, resume=not args.fresh)
    except (ValueError, OSError) as exc:
        return _fail("report", exc)
    finally:
        if client is not None:
            client.close()
    for run in res.runs:
        status = ("ok (kept)" if run.get("resumed") else "ok") if run["status"] == "ok" else \
            f"FAILED ({run['error']})"
        print(f"{run['notebook']:24s} {status:10s} {run['seconds']:7.1f} s  {run['html']}")
    print(f"index: {res.index}")
    return 0 if res.ok else 1


def cmd_lab(args: argparse.Namespace) -> int:
    from .report import notebook_dir

    try:
        directory = notebook_dir(args.notebooks_dir)
    except FileNotFoundError as exc:
        return _fail("lab", exc)
    cmd = [sys.executable, "-m", "jupyter", "lab", f"--notebook-dir={directory}"]
    if args.port:
        cmd.append(f"--port={args.port}")
    if args.no_browser:
        cmd.append("--no-browser")
    return subprocess.call(cmd + list(args.extra or []))


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="workbench", description="Look inside neural networks and graphs.")
    sub = ap.add_subparsers(dest="command", required=True)
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--notebooks", dest="notebooks_dir", metavar="DIR", default=None,
                       help="folder of the curated notebooks (default: the checkout's notebooks/, then "
                            "./notebooks; $WORKBENCH_NOTEBOOKS also works)")
    p = sub.add_parser("list", parents=[where], help="show the curated notebooks and their parameters")
    p.set_defaults(fn=cmd_list)
    p = sub.add_parser("report", parents=[where], help="run notebooks into executed notebooks + standalone HTML")
    p.add_argument("notebooks", nargs="*", help="notebook names (default: all)")
    p.add_argument("--out", default="report", help="output directory (default: report)")
    p.add_argument("-p", "--param", action="append", metavar="NAME=VALUE",
                   help="a parameter (YAML value); NOTEBOOK.NAME=VALUE for one notebook; repeatable")
    p.add_argument("--config", help="YAML file of parameters (same keys as -p)")
    p.add_argument("--small", action="store_true", help="start from each notebook's small CI parameters")
    p.add_argument("--show-code", action="store_true", help="keep code cells in the HTML")
    p.add_argument("--executor", default=None, choices=[None, "serial", "threads", "processes"],
                   help="how to run several reports (default: one after the other)")
    p.add_argument("--workers", type=int, default=None, help="pool size for threads/processes")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="run the reports on a Dask cluster (e.g. tcp://127.0.0.1:8786); the workers must "
                        "see the notebooks and --out at the same paths")
    p.add_argument("--title", default="Workbench report")
    p.add_argument("--fresh", action="store_true",
                   help="run every notebook again (by default a notebook already run into --out with the same "
                        "parameters and source is kept)")
    p.set_defaults(fn=cmd_report)
    p = sub.add_parser("lab", parents=[where], help="open JupyterLab on the notebooks")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--no-browser", action="store_true")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="further arguments for jupyter lab "
                                                             "(e.g. --ServerApp.token=...)")
    p.set_defaults(fn=cmd_lab)
    return ap


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        if args.command != "lab":
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        args.extra = list(args.extra or []) + unknown  # options for jupyter lab itself
    return int(args.fn(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
