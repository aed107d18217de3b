"""The ``workbench`` command: ``report``, ``list`` and ``lab``.

    workbench list
    workbench report                          # every notebook, default parameters, into ./report
    workbench report spectra -p model=resnet -p bootstrap=500 --out out/
    workbench report --config params.yaml --executor processes --workers 2
    workbench lab
"""
from __future__ import annotations

import argparse
import os
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


def cmd_list(args: argparse.Namespace) -> int:
    from .report import ci_parameters, notebooks, parameters_of

    for name, path in notebooks().items():
        print(f"{name}  ({path})")
        small = ci_parameters(path)
        for p in parameters_of(path):
            ci = f"  [CI: {small[p.name]!r}]" if p.name in small else ""
            print(f"    {p.name} = {p.default!r}  # {p.help}{ci}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import report

    params = _collect_parameters(args.param or [], args.config)
    try:
        res = report(args.notebooks or None, out=args.out, parameters=params, small=args.small,
                     show_code=args.show_code, executor=args.executor, max_workers=args.workers,
                     title=args.title)
    except ValueError as exc:
        print(f"workbench report: {exc}", file=sys.stderr)
        return 2
    for run in res.runs:
        status = "ok" if run["status"] == "ok" else f"FAILED ({run['error']})"
        print(f"{run['notebook']:24s} {status:10s} {run['seconds']:7.1f} s  {run['html']}")
    print(f"index: {res.index}")
    return 0 if res.ok else 1


def cmd_lab(args: argparse.Namespace) -> int:
    from .report import notebook_dir

    cmd = [sys.executable, "-m", "jupyter", "lab", f"--notebook-dir={notebook_dir()}"]
    if args.port:
        cmd.append(f"--port={args.port}")
    if args.no_browser:
        cmd.append("--no-browser")
    return subprocess.call(cmd + list(args.extra or []))


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="workbench", description="Look inside neural networks and graphs.")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="show the curated notebooks and their parameters")
    p.set_defaults(fn=cmd_list)
    p = sub.add_parser("report", help="run notebooks into executed notebooks + standalone HTML")
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
    p.add_argument("--title", default="Workbench report")
    p.set_defaults(fn=cmd_report)
    p = sub.add_parser("lab", help="open JupyterLab on the notebooks")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--no-browser", action="store_true")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="further arguments for jupyter lab")
    p.set_defaults(fn=cmd_lab)
    return ap


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.fn(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
