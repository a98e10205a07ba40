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

`--isoflop` runs Chinchilla's approach 2 on the finished runs: runs are grouped by
compute budget (config.json's sweep_member.budget_flops or sweep.flops, else 6·N·D; within
5 %), a parabola in log N per budget gives N*(C), and N*(C) ∝ C^a, D*(C) ∝ C^b are printed
with bootstrap intervals beside the published exponents; the plot (default isoflop.png) is Hoffmann et
al.'s Figure 3. It also fits approach 3, L(N, D) = E + A/N^alpha + B/D^beta (Huber on log
loss), whenever there are enough runs, and prints both a's; `--approach3` fits only that.
`--points FILE.json` takes (flops, params, tokens, loss) points instead of runs:

    scaling fit --isoflop runs/isoflop
    scaling fit --isoflop --points tests/fixtures/chinchilla_synthetic.json --plot iso.png

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
    parser.add_argument("run_dirs", nargs="*", help="run directories, or sweep directories")
    parser.add_argument("--isoflop", action="store_true",
                        help="Chinchilla approach 2 (iso-FLOP parabolas, N*(C) ∝ C^a) and "
                             "approach 3 (L(N, D)) on the finished runs")
    parser.add_argument("--approach3", action="store_true",
                        help="only the L(N, D) = E + A/N^alpha + B/D^beta fit (approach 3)")
    parser.add_argument("--points", default=None,
                        help="JSON file with (flops, params, tokens, loss) points instead of "
                             "run directories, e.g. tests/fixtures/chinchilla_synthetic.json")
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

    if args.isoflop or args.approach3:
        return _chinchilla(args)
    if not args.run_dirs:
        parser.error("give run directories (or --points with --isoflop/--approach3)")
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


def _rows_from_runs(args):
    """(flops, params, tokens, loss, name) of each finished run; skipped runs on stderr."""
    from scaling import fit as fit_lib  # noqa: PLC0415
    from scaling.runs import read_runs  # noqa: PLC0415

    rows = []
    for run in read_runs(args.run_dirs):
        p, why = fit_lib.run_points(run, args.metric)
        if p is not None and (not p.finished or p.final_loss is None or not p.tokens):
            p, why = None, f"{run.name}: unfinished (no run_end with a final eval)"
        if p is None:
            print(f"scaling fit: skipped {why}", file=sys.stderr)
            continue
        # N as the sweep counted it in C = 6·N·D (all parameters for flops_params=total),
        # else Kaplan's non-embedding N: the parabolas' N* and D* = C / (6·N*) then agree.
        n = fit_lib.budget_params_of(run) or p.non_embedding_params
        flops = p.budget_flops or 6.0 * n * p.tokens
        rows.append((flops, n, p.tokens, p.final_loss, p.name))
    return rows


def _rows_from_file(path):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    points = doc["points"] if isinstance(doc, dict) else doc
    return [(p.get("flops") or 6.0 * p["params"] * p["tokens"], p["params"], p["tokens"],
             p["loss"], p.get("name", f"#{k}")) for k, p in enumerate(points)]


def _chinchilla(args) -> int:
    """--isoflop (approaches 2 and 3) or --approach3 alone."""
    from scaling import approach3, isoflop  # noqa: PLC0415
    from scaling.fit import UNITS  # noqa: PLC0415

    if args.points:
        try:
            rows = _rows_from_file(args.points)
        except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
            print(f"scaling fit: error: --points {args.points}: unreadable "
                  f"({type(e).__name__}: {e}); want {{\"points\": [{{\"params\", "
                  "\"tokens\", \"loss\", optional \"flops\"}, ...]}", file=sys.stderr)
            return 2
    elif args.run_dirs:
        rows = _rows_from_runs(args)
    else:
        print("scaling fit: error: give run directories or --points FILE", file=sys.stderr)
        return 2
    if not rows:
        print("scaling fit: error: no finished runs with a final eval", file=sys.stderr)
        return 2
    flops, params, tokens, losses, names = map(list, zip(*rows))
    report, iso, surface, lines = {"metric": args.metric}, None, None, []
    try:
        if args.isoflop:
            iso = isoflop.fit_isoflop(flops, params, losses, names, boot=args.boot,
                                      seed=args.seed)
            lines += isoflop.format_isoflop(iso)
    except isoflop.IsoFlopError as e:
        print(f"scaling fit: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    try:
        surface = approach3.fit_loss_surface(params, tokens, losses, boot=args.boot,
                                             seed=args.seed)
        lines += approach3.format_loss_surface(surface, names)
        if iso is not None and iso.a is not None:
            _, lo, hi = surface.a_interval()
            _, lo2, hi2 = iso.a_interval
            lines.append(f"compute-optimal a: approach 2 {iso.a:.3f} [{lo2:.3f}, {hi2:.3f}], "
                         f"approach 3 {surface.a:.3f} [{lo:.3f}, {hi:.3f}]")
    except approach3.Approach3Error as e:
        if args.approach3 and not args.isoflop:
            print(f"scaling fit: error: {str(e).splitlines()[0]}", file=sys.stderr)
            return 2
        lines.append(f"approach 3 not fitted: {e}")

    out = None
    if iso is not None:
        out = args.out
        if out is None:
            single = len(args.run_dirs) == 1 and os.path.isdir(args.run_dirs[0])
            out = os.path.join(args.run_dirs[0], "isoflop.png") if single else "isoflop.png"
        isoflop.plot_isoflop(iso, out, ylabel=f"final {UNITS[args.metric]}",
                             extra_warnings=surface.warnings if surface else None,
                             surface=surface)
    if args.json:
        if iso is not None:
            report["isoflop"] = {
                "a": iso.a, "a_interval_95": iso.a_interval[1:], "b": iso.b,
                "b_interval_95": iso.b_interval[1:] if iso.a is not None else None,
                "budgets": [{"flops": b.flops, "n_opt": b.n_opt,
                             "n_opt_interval_95": b.n_opt_interval} for b in iso.budgets],
                "warnings": iso.warnings}
        if surface is not None:
            report["approach3"] = {
                **{k: getattr(surface, k) for k in approach3.NAMES},
                "intervals_95": {k: {"median": m, "lo": lo, "hi": hi}
                                 for k, (m, lo, hi) in surface.intervals.items()},
                "a": surface.a, "a_interval_95": surface.a_interval()[1:], "G": surface.G,
                "warnings": surface.warnings}
        report["plot"] = out
        print(json.dumps(report, indent=1))
    else:
        print("\n".join(lines))
        if out:
            print(f"plot: {out}")
    return 0
