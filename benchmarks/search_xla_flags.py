"""Which XLA CPU flags speed up the train step? Each setting runs in its own process (XLA
reads XLA_FLAGS once), interleaved over several rounds so machine noise spreads evenly.

    python benchmarks/search_xla_flags.py --bench cpu-small --rounds 3

Prints the median tokens/s per setting and the ratio to the library's default flags.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CANDIDATES = {
    "none": "",
    "no-ynn-fusion": "--xla_cpu_experimental_ynn_fusion_type=",
    "fast-math": "--xla_cpu_enable_fast_math=true",
    "onednn": "--xla_cpu_use_onednn=true",
    "no-xnn-fusion": "--xla_cpu_experimental_xnn_fusion_type=",
    "concurrency-sched": "--xla_cpu_enable_concurrency_optimized_scheduler=true",
}


def measure(bench: str, flags: str, steps: int, extra: list[str]) -> float:
    env = dict(os.environ, XLA_FLAGS=flags, SCALING_XLA_FLAGS="none")
    out = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "throughput.py"),
                          "--bench", bench, "--steps", str(steps), "--json", *extra],
                         env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]["tokens_per_s"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", default="cpu-small")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--only", nargs="*", default=None, help="candidate names")
    parser.add_argument("--set", nargs="*", default=[], help="passed to throughput.py --set")
    args = parser.parse_args()
    names = args.only or list(CANDIDATES)
    extra = ["--set", *args.set] if args.set else []
    results = {n: [] for n in names}
    for r in range(args.rounds):
        for n in names:
            results[n].append(measure(args.bench, CANDIDATES[n], args.steps, extra))
            print(f"round {r + 1}: {n:<18} {results[n][-1]:,.0f} tok/s", flush=True)
    base = statistics.median(results[names[0]])
    print(f"\n{'setting':<18} {'median tok/s':>12} {'vs ' + names[0]:>10}  flags")
    for n in names:
        m = statistics.median(results[n])
        print(f"{n:<18} {m:>12,.0f} {m / base:>10.3f}  {CANDIDATES[n]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
