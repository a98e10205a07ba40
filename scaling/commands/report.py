"""`scaling report RUN_DIR... [--csv|--json]`: one row per run.

Columns: run, model, params, FLOPs/token, step, tokens seen, final train loss, final and best
eval loss, eval bits per byte, final eval accuracy, a fine-tuning task's other scores (F1, Matthews correlation,
Pearson / Spearman), median tokens/s, median MFU, peak memory, goodput. Rows go from the smallest model
to the largest. The table uses human units; --csv and --json give raw numbers.

Works on runs in progress or killed: problems are printed as one warning each on stderr.
Exit status: 0 if at least one run was read, else 2.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys

from scaling import runs as runs_lib

# (column title, summary key, formatter) for the human table.
_pct = lambda x: "-" if x is None else f"{100 * x:.1f}%"    # noqa: E731
_loss = lambda x: "-" if x is None else f"{x:.4f}"          # noqa: E731
_plain = lambda x: "-" if x is None else str(x)             # noqa: E731

COLUMNS = [
    ("run", "run", _plain),
    ("model", "model", _plain),
    ("params", "params", runs_lib.human_count),
    ("FLOPs/token", "flops_per_token", runs_lib.human_flops),
    ("step", "step", _plain),
    ("tokens", "tokens_seen", runs_lib.human_count),
    ("loss", "final_loss", _loss),
    ("eval loss", "final_eval_loss", _loss),
    ("best eval", "best_eval_loss", _loss),
    ("eval bpb", "final_eval_bpb", _loss),
    ("eval acc", "final_eval_accuracy", _pct),
    ("task score", "task_score", _plain),
    ("tok/s", "median_tokens_per_s", runs_lib.human_count),
    ("MFU", "median_mfu", _pct),
    ("peak mem", "peak_memory_bytes", runs_lib.human_bytes),
    ("goodput", "goodput", _pct),
]
NUMERIC_TITLES = {"params", "FLOPs/token", "step", "tokens", "loss", "eval loss", "best eval",
                  "eval bpb",
                  "eval acc", "tok/s", "MFU", "peak mem", "goodput"}
# A fine-tuning run's other scores, as "f1 0.812 mcc 0.40" in the task score column.
_SCORE_NAMES = {"final_eval_f1": "f1", "final_eval_macro_f1": "macro-f1",
                "final_eval_mcc": "mcc", "final_eval_pearson": "pearson",
                "final_eval_spearman": "spearman"}


def task_score(row: dict) -> str | None:
    parts = [f"{name} {row[key]:.3f}" for key, name in _SCORE_NAMES.items()
             if row.get(key) is not None]
    return " ".join(parts) or None


def format_table(rows: list[dict]) -> str:
    """An aligned text table: names left-aligned, numbers right-aligned."""
    cells = []
    for row in rows:
        line = []
        row = dict(row, task_score=task_score(row))
        for title, key, fmt in COLUMNS:
            text = fmt(row.get(key))
            if key == "peak_memory_bytes" and row.get("memory_kind") == "host" and text != "-":
                text += " host"
            line.append(text)
        cells.append(line)
    titles = [title for title, _, _ in COLUMNS]
    widths = [max(len(t), *(len(c[i]) for c in cells)) for i, t in enumerate(titles)]

    def fmt_line(values):
        return "  ".join(v.rjust(w) if t in NUMERIC_TITLES else v.ljust(w)
                         for v, w, t in zip(values, widths, titles)).rstrip()

    out = [fmt_line(titles), fmt_line(["-" * w for w in widths])]
    out += [fmt_line(c) for c in cells]
    conventions = {r.get("flops_convention") for r in rows if r.get("flops_convention")}
    if conventions:
        out.append(f"FLOPs/token convention: {', '.join(sorted(conventions))}")
    return "\n".join(out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scaling report", description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="run directories (or a directory of runs)")
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="CSV with raw numbers")
    fmt.add_argument("--json", action="store_true", help="a JSON list with raw numbers")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    readable = runs_lib.load_for_command(args.runs, "scaling report")
    if readable is None:
        return 2
    rows = [runs_lib.summarize(r) for r in readable]
    if args.json:
        print(json.dumps(rows, indent=1))
    elif args.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        print(format_table(rows))
    return 0
