"""`scaling plot RUN_DIR... -o out.png`: loss and throughput curves of runs.

Panels: loss vs step; loss vs tokens seen (log-log); loss vs training FLOPs (log-log);
tokens/s vs step. Training loss is a line, eval loss markers of the same colour; one colour
per run, labelled with the run name and its parameter count.

Reads runs with `scaling.runs` (same forgiving reader as `scaling report`): problems are one
warning each on stderr. Exit status: 0 if at least one run was plotted, else 2.
"""
from __future__ import annotations

import argparse
import sys

from scaling import runs as runs_lib


def _tokens(run: runs_lib.Run, records: list[dict]) -> tuple[list, list]:
    """(tokens seen, record) pairs: the logged counter, else step x batch x seq_len."""
    xs, kept = [], []
    for record in records:
        tokens = runs_lib.number(record.get("tokens_seen"))
        step = runs_lib.number(record.get("step"))
        if tokens is None and step is not None:
            tokens = run.tokens_at(step)
        if tokens is not None and tokens > 0:
            xs.append(tokens)
            kept.append(record)
    return xs, kept


def _flops(run: runs_lib.Run, records: list[dict]) -> tuple[list, list]:
    """(training FLOPs, record) pairs: flops_seen, else tokens x flops_per_token."""
    xs, kept = [], []
    tokens, with_tokens = _tokens(run, records)
    tokens_of = {id(r): t for r, t in zip(with_tokens, tokens)}
    for record in records:
        flops = runs_lib.number(record.get("flops_seen"))
        if flops is None and id(record) in tokens_of and run.flops_per_token:
            flops = tokens_of[id(record)] * run.flops_per_token
        if flops is not None and flops > 0:
            xs.append(flops)
            kept.append(record)
    return xs, kept


def _eval_x(run: runs_lib.Run, x_of_train: dict[float, float]) -> list[tuple[float, float]]:
    """Place eval points on an x axis known at train steps (interpolated between steps)."""
    import numpy as np
    steps, losses = run.series("eval_loss", run.evals)
    if not x_of_train or not steps:
        return []
    known_steps = np.array(sorted(x_of_train))
    known_x = np.array([x_of_train[s] for s in known_steps])
    points = []
    for step, loss in zip(steps, losses):
        if known_steps[0] <= step <= known_steps[-1]:
            points.append((float(np.interp(step, known_steps, known_x)), loss))
    return points


def plot_runs(runs: list[runs_lib.Run], out_path: str, title: str | None = None) -> None:
    """Draw the four panels for `runs` and save to `out_path`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    ax_step, ax_tokens, ax_flops, ax_speed = axes.flat
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, run in enumerate(runs):
        color = colors[i % len(colors)]
        label = f"{run.name} ({runs_lib.human_count(run.params)})" if run.params else run.name
        steps, losses = run.series("loss")
        ax_step.plot(steps, losses, color=color, label=label)
        eval_steps, eval_losses = run.series("eval_loss", run.evals)
        ax_step.plot(eval_steps, eval_losses, "o", color=color, markersize=4)

        for ax, to_x in ((ax_tokens, _tokens), (ax_flops, _flops)):
            xs, records = to_x(run, run.train)
            pairs = [(x, runs_lib.number(r.get("loss"))) for x, r in zip(xs, records)]
            pairs = [(x, y) for x, y in pairs if y is not None and y > 0]
            ax.plot([x for x, _ in pairs], [y for _, y in pairs], color=color, label=label)
            x_at_step = {runs_lib.number(r["step"]): x for x, r in zip(xs, records)}
            points = [(x, y) for x, y in _eval_x(run, x_at_step) if y > 0]
            ax.plot([x for x, _ in points], [y for _, y in points], "o", color=color,
                    markersize=4)

        speed_steps, speeds = run.series("tokens_per_s")
        ax_speed.plot(speed_steps, speeds, color=color, label=label)

    ax_step.set(xlabel="step", ylabel="loss", title="loss (lines: train, dots: eval)")
    ax_tokens.set(xlabel="tokens seen", ylabel="loss", xscale="log", yscale="log",
                  title="loss vs tokens")
    ax_flops.set(xlabel="training FLOPs (model)", ylabel="loss", xscale="log", yscale="log",
                 title="loss vs compute")
    ax_speed.set(xlabel="step", ylabel="tokens/s", title="throughput")
    for ax in axes.flat:
        ax.grid(True, which="both", alpha=0.3)
    ax_step.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scaling plot", description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="run directories (or a directory of runs)")
    parser.add_argument("-o", "--output", default="runs.png", help="image file (default runs.png)")
    parser.add_argument("--title", default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    readable = runs_lib.load_for_command(args.runs, "scaling plot")
    if readable is None:
        return 2
    try:
        plot_runs(readable, args.output, args.title)
    except Exception as e:   # e.g. an unwritable output path
        print(f"scaling plot: could not write {args.output}: {type(e).__name__}: {e}",
              file=sys.stderr)
        return 2
    print(f"wrote {args.output} ({len(readable)} run{'s' if len(readable) != 1 else ''})")
    return 0
