"""Paired A/B of whole source trees (or environments): which one trains faster?

    python benchmarks/compare_trees.py --bench cpu-small --rounds 4 \
        --variant main=/tmp/main --variant this=.
    python benchmarks/compare_trees.py --bench cpu-small --rounds 4 \
        --variant restart=. --variant no-restart=.:SCALING_HOST_MALLOC=0

A variant is LABEL=TREE[:NAME=VALUE...]: a checkout of this project (its throughput.py runs
with that tree first on PYTHONPATH) and environment variables for it. Two trees cannot share
one process, so each round runs every variant's `benchmarks/throughput.py --json` as a
subprocess, in turns, and machine drift spreads over all of them; then prints each variant's
median tokens/s and the median of its per-round ratio to the first variant.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys


def parse_variant(text: str) -> tuple[str, str, dict]:
    label, _, rest = text.partition("=")
    tree, *assignments = rest.split(":")
    return label, os.path.abspath(tree), dict(a.split("=", 1) for a in assignments)


def run_once(tree: str, env: dict, bench: str, steps: int, extra: list[str]) -> float:
    """tokens/s (median of `steps` steps) of one throughput.py process in `tree`."""
    environ = dict(os.environ, PYTHONPATH=tree, **env)
    out = subprocess.run([sys.executable, "benchmarks/throughput.py", "--bench", bench,
                          "--steps", str(steps), "--json", *extra], cwd=tree, env=environ,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out[out.index("["):])[0]["tokens_per_s"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", default="cpu-small")
    parser.add_argument("--variant", action="append", required=True, metavar="LABEL=TREE[:K=V]")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per process")
    parser.add_argument("--set", nargs="*", default=[], help="passed to throughput.py --set")
    args = parser.parse_args(argv)
    variants = [parse_variant(v) for v in args.variant]
    extra = ["--set", *args.set] if args.set else []
    rates: dict[str, list[float]] = {label: [] for label, _, _ in variants}
    for r in range(args.rounds):
        order = variants if r % 2 == 0 else variants[::-1]  # neither always goes first
        for label, tree, env in order:
            rates[label].append(run_once(tree, env, args.bench, args.steps, extra))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{label} {rates[label][-1]:,.0f}" for label, _, _ in variants), flush=True)
    first = variants[0][0]
    print(f"{args.bench}: tokens/s, median of {args.rounds} processes each")
    print(f"{'variant':<16} {'median':>9} {'min-max':>17} {'paired ratio':>13}")
    for label, _, _ in variants:
        ratios = [a / b for a, b in zip(rates[label], rates[first])]
        print(f"{label:<16} {statistics.median(rates[label]):9,.0f} "
              f"{min(rates[label]):8,.0f}-{max(rates[label]):<8,.0f} "
              f"{statistics.median(ratios):13.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
