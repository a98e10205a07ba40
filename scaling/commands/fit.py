"""`scaling fit RUN_DIRS... [-o fit.png] [--metric loss|bpb] [--boot 1000] [--json]`.

Fits L(N) = E + A·N^(-α) to the final eval losses of finished runs (N = non-embedding
parameters), L(C) = E + B·C^(-β) to the lower envelope of all runs' eval-loss-vs-compute
curves (C = 6·N·D), and N*(C) ∝ C^a where at least 3 sizes attain the envelope. Prints the
constants with 95 % bootstrap intervals and writes a plot of data and fit (default:
RUN_DIR/fit.png for one sweep directory, else ./fit.png). A directory without metrics.jsonl
stands for its run subdirectories, so `scaling fit runs/sweep` reads a whole sweep.

    scaling fit runs/sweep
    scaling fit runs/sweep/0-L1-d48 runs/sweep/1-L2-d64 runs/sweep/2-L2-d96 -o laws.png

`--metric bpb` fits eval bits per byte instead of loss per token: one axis for runs with
different tokenizers. A fit whose data contradict its law (losses rising with N, a constant
at its bound, intervals spanning orders of magnitude, too few runs on the frontier) prints
WARNING lines, rough constants only, and the warnings on the plot.

Exit codes: 0 fitted, 2 unusable input (fewer than 3 finished model sizes, no runs), with
one line saying why. Method and conventions: scaling/fit.py.
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scaling fit", description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", help="run directories, or sweep directories")
    parser.add_argument("-o", "--out", "--plot", default=None, help="plot file (png/pdf/svg)")
    parser.add_argument("--metric", choices=("loss", "bpb"), default="loss",
                        help="final eval loss (nats/token) or eval bits per byte (comparable "
                             "across tokenizers)")
    parser.add_argument("--boot", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--json", action="store_true", help="print the fitted constants as JSON")
    args = parser.parse_args(argv)

    from scaling import fit as fit_lib  # noqa: PLC0415
    from scaling.runs import read_runs  # noqa: PLC0415

    runs = read_runs(args.run_dirs)
    points, skipped = [], []
    for run in runs:
        p, why = fit_lib.run_points(run, args.metric)
        if p is None:
            skipped.append(why)
        else:
            points.append(p)
    for why in skipped:
        print(f"scaling fit: skipped {why}", file=sys.stderr)
    try:
        if not points:
            raise fit_lib.FitError("no usable runs (need metrics.jsonl with run_start and "
                                   "eval losses)")
        fits = fit_lib.fit_runs(points, boot=args.boot, seed=args.seed)
    except fit_lib.FitError as e:
        print(f"scaling fit: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2

    out = args.out
    if out is None:
        single = len(args.run_dirs) == 1 and os.path.isdir(args.run_dirs[0])
        out = os.path.join(args.run_dirs[0], "fit.png") if single else "fit.png"
    fit_lib.plot(fits, points, out, args.metric)

    if args.json:
        def constants(f):
            if f is None:
                return None
            return {"form": f.form, "E": f.E, "A": f.A, "alpha": f.alpha,
                    "intervals_95": {k: {"median": m, "lo": lo, "hi": hi}
                                     for k, (m, lo, hi) in f.intervals.items()},
                    "n_points": f.n_points, "bootstrap_refits": f.boot_used, "rmse": f.rmse,
                    "warnings": f.warnings}
        print(json.dumps({"metric": args.metric, "loss_vs_params": constants(fits.loss_vs_params),
                          "loss_vs_compute": constants(fits.loss_vs_compute),
                          "optimal_params_exponent": fits.optimal_params_exponent,
                          "optimal_params_note": fits.optimal_params_note,
                          "notes": fits.notes, "plot": out}, indent=1))
    else:
        print(fit_lib.format_report(fits, args.metric))
        print(f"plot: {out}")
    return 0
