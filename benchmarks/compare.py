"""Interleaved A/B of model settings: which variant has the faster train step?

    python benchmarks/compare.py --bench cpu-small --variant attention_impl=xla \
        --variant attention_impl=auto --rounds 4
    python benchmarks/compare.py --bench cpu-base --variant donate=true --variant donate=false

A variant is model overrides, plus `donate=true|false` for the train state's buffer donation
(default: as training does, see scaling.train_step.state_donation).

On a shared 2-core machine, separate benchmark runs drift by ±10 % from one minute to the
next, more than most single changes are worth. This compiles every variant in one process,
then times them in turns (a few steps each, round after round), so drift hits all variants
alike, and prints each one's median step time relative to the first, with the MFU against a
fp32 matmul probe taken at the end and the last loss (equal losses: same numerics).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import jax

from throughput import BENCHES, bench_config, compile_train_step, parse_overrides
from scaling.hardware import measure_cpu_matmul_peak
from scaling import runtime


def build(bench: str, overrides: dict, dtype: str):
    """[compiled step, state, batch, model FLOPs per step] for one variant."""
    overrides = dict(overrides)
    donate = overrides.pop("donate", None)
    job = dict(BENCHES[bench])
    config = bench_config(job.pop("config"), seq_len=job.pop("seq_len"), batch=job.pop("batch"),
                          dtype=dtype, overrides={**job, **overrides})
    compiled, state, batch, spec, _ = compile_train_step(config, donate)
    flops = spec.train_flops_per_sequence(config.data.seq_len) * config.train.batch_size
    return [compiled, state, batch, flops]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", default="cpu-small", choices=sorted(BENCHES))
    parser.add_argument("--variant", action="append", required=True, metavar="K=V[,K=V]",
                        help="model overrides of one variant; give two or more")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per turn")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args(argv)
    if len(args.variant) < 2:
        parser.error("--variant: give at least two to compare")

    built = {}
    for name in args.variant:
        t0 = time.perf_counter()
        built[name] = build(args.bench, parse_overrides(name.split(",")), args.dtype)
        print(f"compiled {name} in {time.perf_counter() - t0:.1f} s", flush=True)
    times: dict[str, list[float]] = {name: [] for name in built}
    losses = {}
    for entry in built.values():  # warm-up
        entry[1], metrics = entry[0](entry[1], entry[2])
        jax.block_until_ready(metrics)
    for r in range(args.rounds):
        for name, entry in built.items():
            for _ in range(args.steps):
                start = time.perf_counter()
                entry[1], metrics = entry[0](entry[1], entry[2])
                jax.block_until_ready(metrics)
                times[name].append(time.perf_counter() - start)
            losses[name] = float(metrics["loss"])
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    peak = measure_cpu_matmul_peak() if jax.devices()[0].platform == "cpu" else None
    base = statistics.median(times[args.variant[0]])
    print(f"{'variant':<40} {'step ms':>9} {'vs first':>9} {'MFU':>7}  last loss")
    for name, entry in built.items():
        median = statistics.median(times[name])
        mfu = f"{100 * entry[3] / median / peak:6.1f}%" if peak else "    n/a"
        print(f"{name:<40} {1e3 * median:9.1f} {median / base:9.3f} {mfu}  {losses[name]:.6f}")
    if peak:
        print(f"fp32 matmul probe: {peak / 1e9:.1f} GFLOP/s")
    return 0


if __name__ == "__main__":
    runtime.setup()  # as `scaling train` does, so steps time alike
    sys.exit(main())
