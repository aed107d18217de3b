"""Does the temperature direction of the three-regime model show on the built-in digits data?

The paper's reading (``docs/pruning.md``): at a fixed low density, a colder dense model (trained longer, with
larger batches or a smaller learning rate) is more often poorly connected after pruning (regime I), and a
hotter one less often.  This script maps each knob over several dense-model seeds and says, per knob and
density, in how many seeds the direction holds:

``holds`` and ``rho`` as in :func:`workbench.pruning.temperature_direction` (the rule of the regime labels,
and the Spearman correlation of coldness with mc: negative is the paper's direction).  Unlike that function,
one map per seed holds every density here, so the regime thresholds come from all of them.

Finished cells are kept in a store (``--store``), so an interrupted run resumes.  Output: a Markdown
table on stdout and in ``--out``.

Run: ``python benchmarks/phenomena_regimes.py [--quick] [--store DIR] [--out FILE]``
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import pandas as pd

from workbench import data as wdata, pruning

GRIDS = {
    "epochs": dict(values=[1, 2, 4, 8, 16, 32]),
    "lr": dict(values=[0.4, 0.2, 0.1, 0.05, 0.025], dense_epochs=20),
    "batch_size": dict(values=[8, 16, 32, 64, 128, 256], dense_epochs=20),
}
DENSITIES = [0.02, 0.03, 0.05, 0.1]
RETRAIN = {  # retraining with the mask fixed: a full run at a high rate, or a short fine-tune
    "train": dict(retrain_epochs=20, lr=0.2, seeds=[0, 1], points=25),
    "finetune": dict(retrain_epochs=5, lr=0.05, seeds=[0, 1], points=25),
}


def markdown(frame: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table (floats with 3 decimals)."""
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one knob (epochs), one seed, two densities")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="dense-model seeds")
    ap.add_argument("--knobs", nargs="+", default=list(GRIDS), choices=list(GRIDS))
    ap.add_argument("--densities", type=float, nargs="+", default=DENSITIES)
    ap.add_argument("--retrain", nargs="+", default=list(RETRAIN), choices=list(RETRAIN))
    ap.add_argument("--store", default=os.path.join("benchmarks", ".store-regimes"))
    ap.add_argument("--out", default=None, help="also write the Markdown table here")
    args = ap.parse_args(argv)
    knobs, seeds, densities = args.knobs, args.seeds, args.densities
    if args.quick:
        knobs, seeds, densities = ["epochs"], [0], [0.02, 0.1]
    test, train = wdata.pair("digits", None)
    rows, detail = [], []
    for retrain in args.retrain:
        for knob in knobs:
            for seed in seeds:
                start = time.perf_counter()
                res = pruning.analyze("mlp", test, train_data=train, knob=knob, densities=densities, seed=seed,
                                      store=args.store, threads=1, progress=False, **GRIDS[knob],
                                      **RETRAIN[retrain])
                for d in densities:
                    r = pruning.direction_at(res, d)
                    detail.append(dict(retrain=retrain, knob=knob, seed=seed, density=d, holds=r["holds"],
                                       rho=r["rho"], regimes=" ".join(r["regimes"]),
                                       mc=" ".join(f"{m:+.3f}" for m in r["mc"])))
                print(f"{retrain} {knob} seed {seed}: {time.perf_counter() - start:.0f} s, counts {res.counts}",
                      file=sys.stderr)
    detail = pd.DataFrame(detail)
    for (retrain, knob, d), g in detail.groupby(["retrain", "knob", "density"], sort=False):
        rows.append(dict(retrain=retrain, knob=knob, density=d, seeds=len(g), holds=int(g["holds"].sum()),
                         rho_mean=float(g["rho"].mean()), rho_max=float(g["rho"].max())))
    summary = pd.DataFrame(rows)
    text = ["## Temperature direction on digits (MLP)", "",
            "Knobs hot to cold: " + "; ".join(f"{k} {GRIDS[k]['values']}" for k in knobs) + ". Retraining: "
            + "; ".join(f"{k} {RETRAIN[k]['retrain_epochs']} epochs at lr {RETRAIN[k]['lr']}" for k in args.retrain)
            + ".", "",
        markdown(summary), "", "Per seed:", "",
        markdown(detail)]
    consistent = summary[summary["holds"] == summary["seeds"]]
    text += ["", ("Consistent (holds in every seed): " + ", ".join(
        f"{r.knob} at density {r.density:g} ({r.retrain})" for r in consistent.itertuples())) if len(consistent)
        else "The direction holds in every seed for no knob and density of this grid."]
    out = "\n".join(text)
    print(out)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(out + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
